import Foundation
@testable import PaliGemma

/// A fake Hugging Face hub on loopback, in the hub's URL scheme: a main server for the API and
/// `resolve` URLs, and a "CDN" server on another port that LFS files redirect to (302), with
/// Range support. Behaviour switches (gating, a dropped connection, corruption) are set per test.
final class FakeHub: @unchecked Sendable {
    struct File {
        let name: String
        let data: Data
        let lfs: Bool
        var sha256: String { SHA256.hash(data) }
        /// The blob id huggingface_hub names the blob by: sha256 for LFS, a git-style sha1 otherwise
        /// (faked here from the sha256: the client only uses it as a name).
        var etag: String { lfs ? sha256 : String(sha256.prefix(40)) }
    }

    let repo: String
    let commit: String
    let files: [File]
    /// Tags/branches besides `main` that resolve to `commit`.
    var tags: Set<String> = ["main", "v1"]
    /// When set, resolve URLs need `Authorization: Bearer <token>` (401 without, 403 with another).
    var requiredToken: String?
    /// Files the resolve endpoint answers 404 for although the listing has them.
    var missing: Set<String> = []
    /// The first `n` CDN GETs of this file (without Range, or with) close the connection after `bytes`.
    var drop: (file: String, bytes: Int, times: Int)?
    /// With `drop`: go silent this long before closing (to exercise the client's idle timeout).
    var stallSeconds: Double = 0
    /// Serve these files with one byte flipped (same length).
    var corrupt: Set<String> = []
    /// Ignore Range headers (answer 200 with the whole file).
    var ignoreRange = false

    private(set) var main: LocalHTTPServer!
    private(set) var cdn: LocalHTTPServer!
    private let lock = NSLock()

    init(repo: String = "test-org/paligemma-tiny", files: [File]) throws {
        self.repo = repo
        self.files = files
        self.commit = String(SHA256.hash(Data(repo.utf8)).prefix(40))
        cdn = try LocalHTTPServer { [unowned self] in self.serveCDN($0) }
        main = try LocalHTTPServer { [unowned self] in self.serveMain($0) }
    }

    func stop() {
        main.stop()
        cdn.stop()
    }

    var endpoint: String { main.baseURL }

    /// A small repository: two JSON files, an LFS safetensors file of `weightBytes`, an LFS
    /// tokenizer, and files the default filter must skip.
    static func standardFiles(weightBytes: Int = 150_000) -> [File] {
        var rng = SeededRandom(42)
        let weights = Data((0..<weightBytes).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        let tokenizer = Data((0..<20_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        return [
            File(name: "config.json", data: Data(#"{"model_type": "paligemma"}"#.utf8), lfs: false),
            File(name: "model.safetensors", data: weights, lfs: true),
            File(name: "tokenizer.model", data: tokenizer, lfs: true),
            File(name: "README.md", data: Data("# tiny\n".utf8), lfs: false),
            File(name: "pytorch_model.bin", data: Data(repeating: 7, count: 1000), lfs: true),
            File(name: "extras/notes.json", data: Data("{}".utf8), lfs: false),
        ]
    }

    func file(_ name: String) -> File? { files.first { $0.name == name } }

    // MARK: - Routes

    private func serveMain(_ r: LocalHTTPServer.Request) -> LocalHTTPServer.Response {
        let path = r.path.removingPercentEncoding ?? r.path
        let apiPrefix = "/api/models/\(repo)/revision/"
        if path.hasPrefix("/api/models/") {
            guard path.hasPrefix(apiPrefix) else { return notFound("RepoNotFound") }
            var revision = String(path.dropFirst(apiPrefix.count))
            if let q = revision.firstIndex(of: "?") { revision = String(revision[..<q]) }
            guard tags.contains(revision) || revision == commit else { return notFound("RevisionNotFound") }
            return .init(status: 200, headers: [("Content-Type", "application/json")], body: listing())
        }
        let resolvePrefix = "/\(repo)/resolve/"
        guard path.hasPrefix(resolvePrefix) else { return notFound("RepoNotFound") }
        let rest = path.dropFirst(resolvePrefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return notFound("EntryNotFound") }
        let revision = String(rest[..<slash])
        let name = String(rest[rest.index(after: slash)...])
        guard tags.contains(revision) || revision == commit else { return notFound("RevisionNotFound") }
        if let required = requiredToken {
            guard let auth = r.header("authorization") else {
                return .init(status: 401, headers: [("X-Error-Code", "GatedRepo")], body: Data("gated".utf8))
            }
            guard auth == "Bearer \(required)" else {
                return .init(status: 403, headers: [("X-Error-Code", "GatedRepo")], body: Data("no access".utf8))
            }
        }
        guard let file = file(name), !missing.contains(name) else { return notFound("EntryNotFound") }
        if file.lfs {
            return .init(status: 302, headers: [
                ("Location", "\(cdn.baseURL)/blobs/\(file.sha256)?name=\(name)"),
                ("X-Linked-Etag", "\"\(file.etag)\""),
                ("X-Linked-Size", "\(file.data.count)"),
                ("X-Repo-Commit", commit),
            ], body: Data("redirecting".utf8))
        }
        return .init(status: 200, headers: [("ETag", "\"\(file.etag)\""), ("X-Repo-Commit", commit)], body: file.data)
    }

    private func serveCDN(_ r: LocalHTTPServer.Request) -> LocalHTTPServer.Response {
        let path = r.path.split(separator: "?").first.map(String.init) ?? r.path
        guard path.hasPrefix("/blobs/"), let file = files.first(where: { $0.lfs && $0.sha256 == path.dropFirst(7) }) else {
            return .init(status: 404)
        }
        var data = file.data
        if corrupt.contains(file.name), !data.isEmpty { data[data.count / 2] ^= 0xFF }
        var dropAfter: Int?
        if r.method == "GET" {
            lock.withLock {
                if let d = drop, d.file == file.name, d.times > 0 {
                    dropAfter = d.bytes
                    drop = (d.file, d.bytes, d.times - 1)
                }
            }
        }
        if !ignoreRange, let range = r.header("range"), range.hasPrefix("bytes="), range.hasSuffix("-"),
           let start = Int(range.dropFirst(6).dropLast()) {
            guard start < data.count else {
                return .init(status: 416, headers: [("Content-Range", "bytes */\(data.count)")])
            }
            return .init(status: 206, headers: [("Content-Range", "bytes \(start)-\(data.count - 1)/\(data.count)")],
                         body: data.subdata(in: start..<data.count), dropAfter: dropAfter,
                         stallSeconds: dropAfter == nil ? 0 : stallSeconds)
        }
        return .init(status: 200, headers: [("ETag", "\"\(file.sha256)\"")], body: data, dropAfter: dropAfter,
                     stallSeconds: dropAfter == nil ? 0 : stallSeconds)
    }

    private func notFound(_ code: String) -> LocalHTTPServer.Response {
        .init(status: 404, headers: [("X-Error-Code", code)], body: Data("\(code)".utf8))
    }

    private func listing() -> Data {
        let siblings = files.map { f -> String in
            let lfs = f.lfs ? #", "lfs": {"sha256": "\#(f.sha256)", "size": \#(f.data.count), "pointerSize": 134}"# : ""
            return #"{"rfilename": "\#(f.name)", "size": \#(f.data.count), "blobId": "\#(f.etag)"\#(lfs)}"#
        }
        let json = #"{"id": "\#(repo)", "sha": "\#(commit)", "gated": \#(requiredToken == nil ? "false" : "\"manual\""), "siblings": [\#(siblings.joined(separator: ", "))]}"#
        return Data(json.utf8)
    }
}
