import Foundation

/// What can go wrong while finding or downloading a checkpoint. Thrown wrapped in
/// `PaliGemmaError.hub`. Every case names the repository, file or URL it is about.
public enum HubError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `--model` is neither an existing folder nor a hub id found in the cache.
    case modelNotFound(argument: String, searched: [String], repo: String?, revision: String?)
    /// The repository, revision or file does not exist on the hub (HTTP 404).
    case notFound(repo: String, revision: String, file: String?, url: String)
    /// HTTP 401/403: the repository is gated or private and the token is missing or lacks access.
    case unauthorized(repo: String, status: Int, url: String, tokenSent: Bool)
    /// Any other HTTP status.
    case http(status: Int, url: String, message: String)
    /// The connection failed (refused, dropped, timed out) after any retries.
    case network(url: String, reason: String)
    /// The downloaded bytes do not match the expected size or sha256; nothing was placed.
    case integrity(repo: String, file: String, expected: String, actual: String)
    /// The server's answer is not what the hub protocol promises (missing header, bad JSON, unsafe name).
    case protocolViolation(url: String, reason: String)
    /// `HF_HUB_OFFLINE` is set and the cache does not hold the requested revision.
    case offlineNotCached(repo: String, revision: String, cache: String)
    /// An argument is not a valid repository id, revision or include pattern.
    case invalidArgument(String)
    /// Writing into the cache failed.
    case cache(path: String, reason: String)

    public var description: String {
        switch self {
        case let .modelNotFound(argument, searched, repo, revision):
            var text = "model '\(argument)' not found: no such folder"
            if repo != nil { text += ", and no cached snapshot of the hub repository" }
            text += ". Looked in:\n" + searched.map { "  \($0)" }.joined(separator: "\n")
            if let repo { text += "\nTo fetch it: paligemma download \(repo)" + (revision.map { " --revision \($0)" } ?? "") }
            return text
        case let .notFound(repo, revision, file, url):
            if let file { return "\(repo): file '\(file)' not found at revision '\(revision)' (HTTP 404 from \(url))" }
            return "\(repo): repository or revision '\(revision)' not found (HTTP 404 from \(url)); check the spelling"
        case let .unauthorized(repo, status, url, tokenSent):
            let tokenHint = tokenSent
                ? "the token that was sent has no access to it"
                : "no token was sent (set HF_TOKEN, or log in so that $HF_HOME/token exists)"
            return "\(repo): access denied (HTTP \(status) from \(url)). The repository is gated or private (or does not exist) and "
                + "\(tokenHint). Accept the license at https://huggingface.co/\(repo) with your account, "
                + "then set HF_TOKEN to a token of that account (https://huggingface.co/settings/tokens)."
        case let .http(status, url, message):
            return "HTTP \(status) from \(url)" + (message.isEmpty ? "" : ": \(message)")
        case let .network(url, reason):
            return "network failure for \(url): \(reason)"
        case let .integrity(repo, file, expected, actual):
            return "\(repo): '\(file)' failed verification: expected \(expected), got \(actual); the file was not placed"
        case let .protocolViolation(url, reason):
            return "unexpected answer from \(url): \(reason)"
        case let .offlineNotCached(repo, revision, cache):
            return "\(repo) at revision '\(revision)' is not in the cache \(cache), and HF_HUB_OFFLINE is set, "
                + "so the network was not used. Unset HF_HUB_OFFLINE and run: paligemma download \(repo)"
        case let .invalidArgument(reason):
            return reason
        case let .cache(path, reason):
            return "\(path): \(reason)"
        }
    }
}
