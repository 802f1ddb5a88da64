import Foundation
import PaliGemmaJSON
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One file of a repository listing.
public struct HubFile: Sendable, Equatable {
    /// Path in the repository (`model-00001-of-00002.safetensors`).
    public let name: String
    /// Size in bytes, when the listing gives it.
    public let size: Int64?
    /// The LFS sha256, for files stored with Git LFS.
    public let sha256: String?
}

/// Downloads a repository snapshot from the hub into the huggingface_hub cache layout
/// (see `HubCache`), as `snapshot_download` does:
///
/// 1. `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true` gives the commit and files;
/// 2. per file, `HEAD {endpoint}/{repo}/resolve/{commit}/{file}` gives the blob id (`X-Linked-Etag`
///    or `ETag`), the size (`X-Linked-Size` or `Content-Length`) and possibly a redirect (CDN);
/// 3. the body goes to `blobs/<etag>.incomplete` (resumed with `Range` after a dropped connection),
///    is checked (size; sha256 for LFS files), renamed to `blobs/<etag>`, and linked from
///    `snapshots/<commit>/<file>`;
/// 4. `refs/<revision>` is written last, so that a name never points at a half-fetched snapshot.
///
/// The token goes only to the endpoint's own host, never to a redirect target elsewhere.
public final class HubDownloader: Sendable {
    /// The files PaliGemma needs; weights in other formats (`*.bin`, `*.pth`, `*.gguf`, …) are skipped.
    public static let defaultInclude = [
        "config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.model", "tokenizer.json",
        "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json", "generation_config.json",
        "added_tokens.json",
    ]

    public let endpoint: String
    public let token: String?
    public let cache: HubCache
    public let offline: Bool
    let progress: HubProgressHandler?
    let http: HubHTTPClient
    let maxAttempts: Int
    let retryDelay: TimeInterval
    private let maxRedirects = 10

    /// - Parameters:
    ///   - endpoint: hub URL (`HF_ENDPOINT`), e.g. `https://huggingface.co`.
    ///   - token: sent as `Authorization: Bearer` to the endpoint's host only.
    ///   - offline: never touch the network; `download` only resolves from the cache.
    ///   - maxAttempts: tries per request when the connection fails (a transfer resumes where it stopped).
    ///   - retryDelay: seconds before the first retry; doubles each time.
    ///   - idleTimeout: a transfer with no new bytes for this long counts as a failed connection.
    public init(endpoint: String = HubEnvironment.defaultEndpoint, token: String? = nil, cache: HubCache,
                progress: HubProgressHandler? = nil, offline: Bool = false, maxAttempts: Int = 5,
                retryDelay: TimeInterval = 0.5, idleTimeout: TimeInterval = 60) {
        var e = endpoint
        while e.hasSuffix("/") { e.removeLast() }
        self.endpoint = e
        self.token = token
        self.cache = cache
        self.progress = progress
        self.offline = offline
        self.maxAttempts = max(1, maxAttempts)
        self.retryDelay = retryDelay
        self.http = HubHTTPClient(idleTimeout: idleTimeout)
    }

    /// Endpoint, token, cache and offline mode from the environment (see `HubEnvironment`).
    public convenience init(environment: [String: String] = ProcessInfo.processInfo.environment,
                            progress: HubProgressHandler? = nil) {
        let env = HubEnvironment(environment)
        self.init(endpoint: env.endpoint, token: env.token, cache: HubCache(root: env.cacheDirectory),
                  progress: progress, offline: env.isOffline)
    }

    /// Downloads the files of `repo` at `revision` (default `main`) that match `include`
    /// (shell patterns; default `defaultInclude`) and returns the snapshot folder.
    /// Files already in the cache are not fetched again. Offline, returns the cached snapshot or throws.
    @discardableResult
    public func download(repo: String, revision: String? = nil, include: [String]? = nil) throws -> URL {
        try HubNames.validate(repo: repo)
        let revision = revision ?? HubCache.defaultRevision
        try HubNames.validate(revision: revision)
        if offline {
            if let snapshot = try cache.resolve(repo: repo, revision: revision) { return snapshot }
            throw PaliGemmaError.hub(.offlineNotCached(repo: repo, revision: revision, cache: cache.root.path))
        }
        let (commit, all) = try listFiles(repo: repo, revision: revision)
        let files = try Self.select(all, include: include, repo: repo, revision: revision)
        let total = files.reduce(Int64(0)) { sum, f in f.size.map { sum + $0 } ?? sum }
        progress?(.listed(repo: repo, commit: commit, files: files.count,
                          bytes: files.allSatisfy { $0.size != nil } ? total : nil))
        for (i, file) in files.enumerated() {
            try fetch(repo: repo, commit: commit, file: file, index: i + 1, count: files.count)
        }
        try cache.writeRef(repo: repo, revision: revision, commit: commit)
        return cache.snapshotFolder(repo: repo, commit: commit)
    }

    /// The commit `revision` points at and the repository's files (`GET /api/models/...`).
    public func listFiles(repo: String, revision: String? = nil) throws -> (commit: String, files: [HubFile]) {
        try HubNames.validate(repo: repo)
        let revision = revision ?? HubCache.defaultRevision
        try HubNames.validate(revision: revision)
        guard !offline else {
            throw PaliGemmaError.hub(.offlineNotCached(repo: repo, revision: revision, cache: cache.root.path))
        }
        let url = try makeURL("\(endpoint)/api/models/\(repo)/revision/\(Self.escape(revision, keepSlash: false))?blobs=true")
        let response = try retrying(file: nil, status: \.status) {
            try request("GET", url, followCrossOrigin: true)
        }
        try check(response, repo: repo, revision: revision, file: nil)
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](response.body)) } catch {
            throw PaliGemmaError.hub(.protocolViolation(url: url.absoluteString, reason: "file listing is not JSON: \(error)"))
        }
        guard let commit = json["sha"]?.stringValue, HubNames.isCommitHash(commit) else {
            throw PaliGemmaError.hub(.protocolViolation(url: url.absoluteString, reason: "no 40-hex 'sha' commit in the listing"))
        }
        guard let siblings = json["siblings"]?.arrayValue else {
            throw PaliGemmaError.hub(.protocolViolation(url: url.absoluteString, reason: "no 'siblings' array in the listing"))
        }
        var files: [HubFile] = []
        for entry in siblings {
            guard let name = entry["rfilename"]?.stringValue else {
                throw PaliGemmaError.hub(.protocolViolation(url: url.absoluteString, reason: "a sibling has no 'rfilename'"))
            }
            let lfs = entry["lfs"]
            let size = (lfs?["size"]?.intValue ?? entry["size"]?.intValue).map(Int64.init)
            let sha = lfs?["sha256"]?.stringValue?.lowercased()
            files.append(HubFile(name: name, size: size, sha256: sha))
        }
        return (commit, files)
    }

    /// The files matching `include` (shell patterns, `*` crossing `/` as in Python's fnmatch; a
    /// pattern ending in `/` means the whole folder). The default patterns match top-level files only.
    static func select(_ files: [HubFile], include: [String]?, repo: String, revision: String) throws -> [HubFile] {
        let patterns = (include ?? defaultInclude).map { $0.hasSuffix("/") ? $0 + "*" : $0 }
        let flags: Int32 = include == nil ? FNM_PATHNAME : 0
        let chosen = files.filter { f in patterns.contains { fnmatch($0, f.name, flags) == 0 } }
        guard !chosen.isEmpty else {
            throw PaliGemmaError.hub(.invalidArgument(
                "\(repo) at '\(revision)' has no file matching \(patterns.joined(separator: ", ")); it has: "
                + files.prefix(20).map(\.name).joined(separator: ", ")))
        }
        for f in chosen where !HubNames.isSafeRelativePath(f.name) {
            throw PaliGemmaError.hub(.protocolViolation(url: repo, reason: "unsafe file name '\(f.name)' in the listing"))
        }
        return chosen
    }

    // MARK: - One file

    private func fetch(repo: String, commit: String, file: HubFile, index: Int, count: Int) throws {
        let pointer = cache.pointerURL(repo: repo, commit: commit, filename: file.name)
        if let size = Self.fileSize(pointer.path), file.size == nil || file.size == size {
            progress?(.cached(file: file.name))
            return
        }
        let url = try makeURL("\(endpoint)/\(repo)/resolve/\(commit)/\(Self.escape(file.name, keepSlash: true))")
        let meta = try retrying(file: file.name, status: { $0.response.status }) { try head(url) }
        if !(300..<400).contains(meta.response.status) {    // a redirect to the CDN carries the metadata
            try check(meta.response, repo: repo, revision: commit, file: file.name)
        }
        let urlText = url.absoluteString
        guard let rawEtag = meta.response.header("x-linked-etag") ?? meta.response.header("etag") else {
            throw PaliGemmaError.hub(.protocolViolation(url: urlText, reason: "no ETag or X-Linked-Etag header"))
        }
        let etag = Self.normalizeEtag(rawEtag)
        guard HubNames.isSafeBlobName(etag) else {
            throw PaliGemmaError.hub(.protocolViolation(url: urlText, reason: "unusable ETag '\(rawEtag)'"))
        }
        if let c = meta.response.header("x-repo-commit"), c != commit {
            throw PaliGemmaError.hub(.protocolViolation(url: urlText, reason: "X-Repo-Commit \(c), expected \(commit)"))
        }
        var size = meta.response.header("x-linked-size").flatMap { Int64($0) }
        if size == nil, (200..<300).contains(meta.response.status) {
            size = meta.response.header("content-length").flatMap { Int64($0) }
        }
        if let s = size, let listed = file.size, s != listed {
            throw PaliGemmaError.hub(.protocolViolation(url: urlText, reason: "size \(s) differs from the listing's \(listed)"))
        }
        size = size ?? file.size
        let isSHA256 = etag.count == 64 && etag.allSatisfy(\.isHexDigit)
        let sha256 = file.sha256 ?? (isSHA256 ? etag.lowercased() : nil)
        if let sha256, isSHA256, sha256 != etag.lowercased() {
            throw PaliGemmaError.hub(.protocolViolation(url: urlText, reason: "ETag \(etag) differs from the listing's sha256 \(sha256)"))
        }

        let blob = cache.blobURL(repo: repo, etag: etag)
        try cache.withLock(repo: repo, etag: etag) {
            if let existing = Self.fileSize(blob.path), size == nil || existing == size {
                try cache.link(repo: repo, commit: commit, filename: file.name, etag: etag)
                progress?(.cached(file: file.name))
                return
            }
            let incomplete = cache.incompleteURL(repo: repo, etag: etag)
            try transfer(repo: repo, commit: commit, file: file.name, from: meta.location, to: incomplete,
                         size: size, sha256: sha256, index: index, count: count)
            guard rename(incomplete.path, blob.path) == 0 else {
                throw PaliGemmaError.hub(.cache(path: blob.path, reason: "cannot place blob: \(String(cString: strerror(errno)))"))
            }
            try cache.link(repo: repo, commit: commit, filename: file.name, etag: etag)
            progress?(.finished(file: file.name))
        }
    }

    /// HEAD, following same-host redirects only (renamed repositories); a redirect to another host
    /// (the CDN) is where the body will be fetched from, and its headers carry the metadata.
    private func head(_ url: URL) throws -> (response: HubHTTPResponse, location: URL) {
        var current = url
        for _ in 0..<maxRedirects {
            let r = try request("HEAD", current, followCrossOrigin: false)
            guard let next = r.redirectLocation else { return (r, current) }
            if !Self.sameOrigin(next, current) { return (r, next) }
            current = next
        }
        throw PaliGemmaError.hub(.protocolViolation(url: url.absoluteString, reason: "more than \(maxRedirects) redirects"))
    }

    /// Fetches into `incomplete`, resuming from its length, retrying dropped connections, then
    /// verifies size and sha256. On a mismatch the partial file is deleted; on a network failure it
    /// is kept for the next run to resume. Never touches the final blob path.
    private func transfer(repo: String, commit: String, file: String, from url: URL, to incomplete: URL,
                          size: Int64?, sha256: String?, index: Int, count: Int) throws {
        let sink = try BlobSink(url: incomplete, limit: size) { [progress] bytes in
            progress?(.progress(file: file, bytes: bytes, size: size))
        }
        defer { sink.close() }
        if let size, sink.length > size { try sink.truncate() }
        progress?(.started(file: file, index: index, count: count, size: size, resumedFrom: sink.length))
        var attempt = 1
        while true {
            if let size, sink.length >= size { break }
            let offset = sink.length
            sink.expectedStart = offset
            do {
                let r = try request("GET", url, extraHeaders: offset > 0 ? ["Range": "bytes=\(offset)-"] : [:],
                                    followCrossOrigin: true, sink: sink)
                if r.status == 416 && offset > 0 {
                    try sink.truncate()               // the partial file is no prefix the server knows
                    continue
                }
                try check(r, repo: repo, revision: commit, file: file)
                if let size, sink.length < size {
                    // The body ended without an error but short: the connection closed mid-file.
                    try pause(file: file, attempt: &attempt, reason: "connection closed after \(sink.length) bytes", url: url)
                    continue
                }
                break
            } catch let PaliGemmaError.hub(.network(_, reason)) {
                try pause(file: file, attempt: &attempt, reason: reason, url: url)
            }
        }
        try sink.sync()
        if let size, sink.length != size {
            try? sink.truncate()
            unlink(incomplete.path)
            throw PaliGemmaError.hub(.integrity(repo: repo, file: file, expected: "\(size) bytes", actual: "\(sink.length) bytes"))
        }
        if let sha256 {
            let actual = sink.hasher.hexDigest()
            if actual != sha256 {
                unlink(incomplete.path)
                throw PaliGemmaError.hub(.integrity(repo: repo, file: file, expected: "sha256 \(sha256)", actual: "sha256 \(actual)"))
            }
        }
    }

    private func pause(file: String, attempt: inout Int, reason: String, url: URL) throws {
        guard attempt < maxAttempts else {
            throw PaliGemmaError.hub(.network(url: url.absoluteString, reason: "\(reason) (after \(attempt) attempts; run again to resume)"))
        }
        progress?(.retrying(file: file, attempt: attempt + 1, reason: reason))
        Thread.sleep(forTimeInterval: retryDelay * Double(1 << min(attempt - 1, 5)))
        attempt += 1
    }

    /// Runs `body`, retrying network failures and 5xx answers (bounded by `maxAttempts`).
    private func retrying<T>(file: String?, status: (T) -> Int, _ body: () throws -> T) throws -> T {
        var attempt = 1
        while true {
            let reason: String
            do {
                let value = try body()
                guard status(value) >= 500, attempt < maxAttempts else { return value }
                reason = "HTTP \(status(value))"
            } catch let PaliGemmaError.hub(.network(url, why)) {
                // An unknown host is a setting (HF_ENDPOINT) or no network at all: retrying won't help.
                guard attempt < maxAttempts, why != HubHTTPClient.unknownHost else {
                    throw PaliGemmaError.hub(.network(url: url, reason: why))
                }
                reason = why
            }
            progress?(.retrying(file: file ?? "file listing", attempt: attempt + 1, reason: reason))
            Thread.sleep(forTimeInterval: retryDelay * Double(1 << min(attempt - 1, 5)))
            attempt += 1
        }
    }

    // MARK: - HTTP

    /// One request, following redirects (bounded); the token goes only to the endpoint's origin.
    private func request(_ method: String, _ url: URL, extraHeaders: [String: String] = [:],
                         followCrossOrigin: Bool, sink: HubBodySink? = nil) throws -> HubHTTPResponse {
        guard !offline else {      // a safety net: callers check offline mode before any request
            throw PaliGemmaError.hub(.invalidArgument("HF_HUB_OFFLINE is set; not contacting \(url.absoluteString)"))
        }
        let endpointURL = URL(string: endpoint)
        var current = url
        for _ in 0...maxRedirects {
            var headers = extraHeaders
            if let token, let e = endpointURL, Self.sameOrigin(current, e) { headers["Authorization"] = "Bearer \(token)" }
            let r: HubHTTPResponse
            do { r = try http.send(method: method, url: current, headers: headers, sink: sink) } catch {
                switch error {
                case let .connection(reason): throw PaliGemmaError.hub(.network(url: current.absoluteString, reason: reason))
                case let .sink(e): throw (e as? PaliGemmaError) ?? PaliGemmaError.hub(.cache(path: url.path, reason: "\(e)"))
                }
            }
            guard let next = r.redirectLocation else { return r }
            if !followCrossOrigin && !Self.sameOrigin(next, current) { return r }
            current = next
        }
        throw PaliGemmaError.hub(.protocolViolation(url: url.absoluteString, reason: "more than \(maxRedirects) redirects"))
    }

    /// Maps an HTTP status to a typed error; 2xx passes.
    private func check(_ r: HubHTTPResponse, repo: String, revision: String, file: String?) throws {
        switch r.status {
        case 200..<300: return
        case 401, 403:
            throw PaliGemmaError.hub(.unauthorized(repo: repo, status: r.status, url: r.url.absoluteString, tokenSent: token != nil))
        case 404:
            let code = r.header("x-error-code")
            let isFile = file != nil && code != "RepoNotFound" && code != "RevisionNotFound"
            throw PaliGemmaError.hub(.notFound(repo: repo, revision: revision, file: isFile ? file : nil, url: r.url.absoluteString))
        default:
            throw PaliGemmaError.hub(.http(status: r.status, url: r.url.absoluteString, message: r.errorMessage))
        }
    }

    private func makeURL(_ text: String) throws -> URL {
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https" else {
            throw PaliGemmaError.hub(.invalidArgument("'\(text)' is not an http(s) URL; check HF_ENDPOINT"))
        }
        return url
    }

    static func sameOrigin(_ a: URL, _ b: URL) -> Bool {
        func port(_ u: URL) -> Int? { u.port ?? (u.scheme == "https" ? 443 : u.scheme == "http" ? 80 : nil) }
        return a.scheme?.lowercased() == b.scheme?.lowercased() && a.host?.lowercased() == b.host?.lowercased() && port(a) == port(b)
    }

    /// Percent-encodes a path segment (or a path, keeping `/`), as Python's `quote` does.
    static func escape(_ s: String, keepSlash: Bool) -> String {
        var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-~")
        if keepSlash { allowed.insert("/") }
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    /// `W/"abc"` and `"abc"` → `abc`.
    static func normalizeEtag(_ raw: String) -> String {
        var e = raw.trimmingCharacters(in: .whitespaces)
        if e.hasPrefix("W/") { e.removeFirst(2) }
        if e.count >= 2, e.hasPrefix("\""), e.hasSuffix("\"") { e = String(e.dropFirst().dropLast()) }
        return e
    }

    /// Size of the file at `path` (following symlinks), or nil if there is none.
    static func fileSize(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(st.st_size)
    }
}
