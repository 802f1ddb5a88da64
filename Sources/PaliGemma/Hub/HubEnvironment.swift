import Foundation

/// The environment variables huggingface_hub reads, interpreted the same way:
///
/// - cache: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`;
///   `HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
///   `~` and `$VAR` / `${VAR}` are expanded, as Python's expanduser/expandvars do.
/// - endpoint: `HF_ENDPOINT` (default `https://huggingface.co`, trailing `/` dropped).
/// - token: `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the file `HF_TOKEN_PATH`
///   (default `$HF_HOME/token`).
/// - offline: `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set to 1, ON, YES or TRUE.
public struct HubEnvironment: Sendable {
    public static let defaultEndpoint = "https://huggingface.co"

    public let variables: [String: String]

    public init(_ variables: [String: String] = ProcessInfo.processInfo.environment) {
        self.variables = variables
    }

    private func value(_ name: String) -> String? {
        guard let v = variables[name], !v.isEmpty else { return nil }
        return v
    }

    /// `HF_HOME`, expanded.
    public var home: String {
        if let h = value("HF_HOME") { return expand(h) }
        let base = value("XDG_CACHE_HOME").map(expand) ?? (homeDirectory + "/.cache")
        return base + "/huggingface"
    }

    /// The hub cache folder (holding `models--ORG--NAME` folders).
    public var cacheDirectory: URL {
        let path = value("HF_HUB_CACHE") ?? value("HUGGINGFACE_HUB_CACHE")
        return URL(fileURLWithPath: path.map(expand) ?? home + "/hub", isDirectory: true)
    }

    /// The hub endpoint, without a trailing slash.
    public var endpoint: String {
        var e = value("HF_ENDPOINT") ?? Self.defaultEndpoint
        while e.hasSuffix("/") { e.removeLast() }
        return e
    }

    /// Where `huggingface-cli login` / `hf auth login` stores the token.
    public var tokenPath: String {
        value("HF_TOKEN_PATH").map(expand) ?? home + "/token"
    }

    /// The access token, if any is configured.
    public var token: String? {
        for name in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
            if let t = value(name)?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty { return t }
        }
        guard let data = FileManager.default.contents(atPath: tokenPath),
              let text = String(data: data, encoding: .utf8) else { return nil }
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    /// True when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) asks never to touch the network.
    public var isOffline: Bool {
        let raw = value("HF_HUB_OFFLINE") ?? value("TRANSFORMERS_OFFLINE")
        guard let raw else { return false }
        return ["1", "ON", "YES", "TRUE"].contains(raw.uppercased())
    }

    private var homeDirectory: String {
        value("HOME") ?? NSHomeDirectory()
    }

    /// `~` / `~/x` and `$VAR` / `${VAR}` expansion; unknown variables are left as written.
    func expand(_ path: String) -> String {
        var p = path
        if p == "~" {
            p = homeDirectory
        } else if p.hasPrefix("~/") {
            p = homeDirectory + p.dropFirst()
        }
        guard p.contains("$") else { return p }
        var out = ""
        var i = p.startIndex
        let isNameChar: (Character) -> Bool = { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
        while i < p.endIndex {
            let c = p[i]
            guard c == "$" else { out.append(c); i = p.index(after: i); continue }
            let next = p.index(after: i)
            if next < p.endIndex, p[next] == "{", let close = p[next...].firstIndex(of: "}") {
                let name = String(p[p.index(after: next)..<close])
                out += variables[name] ?? String(p[i...close])
                i = p.index(after: close)
            } else {
                var end = next
                while end < p.endIndex, isNameChar(p[end]) { end = p.index(after: end) }
                let name = String(p[next..<end])
                out += name.isEmpty ? "$" : (variables[name] ?? "$" + name)
                i = end
            }
        }
        return out
    }
}

/// Names the hub accepts, checked before any of them becomes part of a path or URL.
enum HubNames {
    /// `ORG/NAME` or `NAME`: letters, digits, `-`, `_`, `.`; no `--` or `..`; at most 96 characters.
    static func isValidRepoID(_ id: String) -> Bool {
        guard !id.isEmpty, id.count <= 96, !id.contains("--"), !id.contains(".."), !id.hasSuffix(".git") else {
            return false
        }
        let parts = id.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else { return false }
        return parts.allSatisfy { part in
            guard let first = part.first, let last = part.last else { return false }
            let allowed = part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
            return allowed && !"-.".contains(first) && !"-.".contains(last)
        }
    }

    /// A full commit id, as the hub and huggingface_hub write them.
    static func isCommitHash(_ s: String) -> Bool {
        s.utf8.count == 40 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// A relative path with no empty, `.` or `..` component, no backslash or control character.
    /// Revisions (`refs/pr/1`) and repository file names must pass this before touching the disk.
    static func isSafeRelativePath(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 1024, !s.hasPrefix("/") else { return false }
        guard !s.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "\\" || $0.value == 0x7f }) else { return false }
        return s.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }

    /// A blob id (etag) safe to use as one file name.
    static func isSafeBlobName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 128
            && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) } && !s.hasPrefix(".")
    }

    /// `models--ORG--NAME`.
    static func folderName(repo: String) -> String {
        (["models"] + repo.split(separator: "/").map(String.init)).joined(separator: "--")
    }

    static func validate(repo: String) throws {
        guard isValidRepoID(repo) else {
            throw PaliGemmaError.hub(.invalidArgument(
                "'\(repo)' is not a hub repository id (expected ORG/NAME, e.g. google/paligemma-3b-mix-224)"))
        }
    }

    static func validate(revision: String) throws {
        guard isSafeRelativePath(revision) else {
            throw PaliGemmaError.hub(.invalidArgument("'\(revision)' is not a valid revision (a branch, tag or commit hash)"))
        }
    }
}
