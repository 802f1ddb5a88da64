import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Hugging Face hub cache, laid out exactly as huggingface_hub lays it out, so that
/// checkpoints downloaded by Python tools are found and ours are found by them:
///
///     <root>/models--ORG--NAME/
///         refs/<revision>                   the commit hash a branch or tag last resolved to
///         blobs/<etag>                      file contents (etag = git blob sha1, or sha256 for LFS)
///         blobs/<etag>.incomplete           a download in progress (resumable)
///         snapshots/<commit>/<filename>     relative symlink to ../../blobs/<etag>
///     <root>/.locks/models--ORG--NAME/<etag>.lock
public struct HubCache: Sendable {
    public static let defaultRevision = "main"

    /// The cache folder (`$HF_HUB_CACHE`, by default `~/.cache/huggingface/hub`).
    public let root: URL

    public init(root: URL) {
        self.root = root.standardizedFileURL
    }

    /// The cache the environment names (`HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`; see `HubEnvironment`).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.init(root: HubEnvironment(environment).cacheDirectory)
    }

    /// `<root>/models--ORG--NAME`.
    public func repoFolder(_ repo: String) -> URL {
        root.appendingPathComponent(HubNames.folderName(repo: repo), isDirectory: true)
    }

    /// The commit a revision stands for in this cache: a full commit hash is itself; a branch or
    /// tag name is read from `refs/<name>`; a short hash (7+ hex digits) matches one snapshot.
    /// Nil when the cache does not know the revision.
    public func commit(repo: String, revision: String? = nil) throws -> String? {
        try HubNames.validate(repo: repo)
        let revision = revision ?? Self.defaultRevision
        try HubNames.validate(revision: revision)
        if HubNames.isCommitHash(revision) { return revision }
        let folder = repoFolder(repo)
        let refURL = folder.appendingPathComponent("refs").appendingPathComponent(revision)
        if let data = FileManager.default.contents(atPath: refURL.path),
           let text = String(data: data, encoding: .utf8) {
            let hash = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if HubNames.isSafeBlobName(hash) { return hash }
        }
        let isHex = revision.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
        if isHex && revision.count >= 7 {
            let snapshots = (try? FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("snapshots").path)) ?? []
            let matches = snapshots.filter { HubNames.isCommitHash($0) && $0.hasPrefix(revision) }
            if matches.count == 1 { return matches[0] }
        }
        return nil
    }

    /// The snapshot folder for `repo` at `revision` (default `main`), or nil if it is not cached.
    public func resolve(repo: String, revision: String? = nil) throws -> URL? {
        guard let commit = try commit(repo: repo, revision: revision) else { return nil }
        let url = snapshotFolder(repo: repo, commit: commit)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return nil
        }
        return url
    }

    /// The cached copy of one file, or nil. Follows the snapshot symlink and checks the blob exists.
    public func cachedFile(repo: String, revision: String? = nil, filename: String) throws -> URL? {
        guard HubNames.isSafeRelativePath(filename), let snapshot = try resolve(repo: repo, revision: revision) else {
            return nil
        }
        let url = snapshot.appendingPathComponent(filename)
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    /// Human-readable list of the places `resolve` looked, for error messages.
    func searchedLocations(repo: String, revision: String?) -> [String] {
        let folder = repoFolder(repo)
        let revision = revision ?? Self.defaultRevision
        if HubNames.isCommitHash(revision) {
            return [folder.appendingPathComponent("snapshots/\(revision)").path]
        }
        return [folder.appendingPathComponent("refs/\(revision)").path + " (then snapshots/<commit>)"]
    }

    // MARK: - Paths and writes used by the downloader

    func snapshotFolder(repo: String, commit: String) -> URL {
        repoFolder(repo).appendingPathComponent("snapshots", isDirectory: true)
            .appendingPathComponent(commit, isDirectory: true)
    }

    func blobURL(repo: String, etag: String) -> URL {
        repoFolder(repo).appendingPathComponent("blobs", isDirectory: true).appendingPathComponent(etag)
    }

    func incompleteURL(repo: String, etag: String) -> URL {
        repoFolder(repo).appendingPathComponent("blobs", isDirectory: true).appendingPathComponent(etag + ".incomplete")
    }

    func pointerURL(repo: String, commit: String, filename: String) -> URL {
        snapshotFolder(repo: repo, commit: commit).appendingPathComponent(filename)
    }

    /// Writes `refs/<revision>` = commit (no newline, as huggingface_hub does), atomically.
    /// Nothing is written when the revision is the commit itself.
    func writeRef(repo: String, revision: String, commit: String) throws {
        guard revision != commit else { return }
        let url = repoFolder(repo).appendingPathComponent("refs").appendingPathComponent(revision)
        if let data = FileManager.default.contents(atPath: url.path), String(decoding: data, as: UTF8.self) == commit {
            return
        }
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(commit.utf8).write(to: url, options: .atomic)
        } catch {
            throw PaliGemmaError.hub(.cache(path: url.path, reason: "cannot write ref: \(error.localizedDescription)"))
        }
    }

    /// Points `snapshots/<commit>/<filename>` at `blobs/<etag>` with a relative symlink, replacing
    /// any previous entry atomically (a temporary link renamed over it).
    func link(repo: String, commit: String, filename: String, etag: String) throws {
        let pointer = pointerURL(repo: repo, commit: commit, filename: filename)
        let depth = filename.split(separator: "/").count - 1
        let target = String(repeating: "../", count: depth + 2) + "blobs/" + etag
        let dir = pointer.deletingLastPathComponent()
        let temporary = dir.appendingPathComponent(".\(pointer.lastPathComponent).\(UUID().uuidString).tmp")
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw PaliGemmaError.hub(.cache(path: dir.path, reason: "cannot create folder: \(error.localizedDescription)"))
        }
        guard symlink(target, temporary.path) == 0 else {
            throw PaliGemmaError.hub(.cache(path: temporary.path, reason: "cannot create symlink: \(String(cString: strerror(errno)))"))
        }
        guard rename(temporary.path, pointer.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary.path)
            throw PaliGemmaError.hub(.cache(path: pointer.path, reason: "cannot place symlink: \(reason)"))
        }
    }

    /// Runs `body` holding an exclusive lock on `.locks/models--ORG--NAME/<etag>.lock`, as
    /// huggingface_hub does, so that two downloads of one blob do not interleave.
    func withLock<T>(repo: String, etag: String, _ body: () throws -> T) throws -> T {
        let dir = root.appendingPathComponent(".locks", isDirectory: true)
            .appendingPathComponent(HubNames.folderName(repo: repo), isDirectory: true)
        let path = dir.appendingPathComponent(etag + ".lock").path
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw PaliGemmaError.hub(.cache(path: dir.path, reason: "cannot create lock folder: \(error.localizedDescription)"))
        }
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw PaliGemmaError.hub(.cache(path: path, reason: "cannot open lock: \(String(cString: strerror(errno)))"))
        }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else {
            throw PaliGemmaError.hub(.cache(path: path, reason: "cannot lock: \(String(cString: strerror(errno)))"))
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}

/// Turns the `--model` argument into a checkpoint folder.
public enum ModelLocator {
    /// A folder that exists wins; otherwise `argument` is read as a hub id (`ORG/NAME`) and looked
    /// up in the local hub cache at `revision` (default `main`). Never touches the network.
    ///
    /// Throws `PaliGemmaError.hub(.modelNotFound)` naming every place it looked and suggesting
    /// `paligemma download ORG/NAME`.
    public static func locate(
        _ argument: String,
        revision: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> URL {
        try locate(argument, revision: revision, environment: environment, workingDirectory: nil)
    }

    /// `locate`, with relative paths taken from `workingDirectory` (tests) instead of the process's.
    static func locate(_ argument: String, revision: String?, environment: [String: String],
                       workingDirectory: URL?) throws -> URL {
        let env = HubEnvironment(environment)
        let path = env.expand(argument)
        let local: URL
        if let workingDirectory, !path.hasPrefix("/") {
            local = workingDirectory.appendingPathComponent(path).standardizedFileURL
        } else {
            local = URL(fileURLWithPath: path).standardizedFileURL
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: local.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw PaliGemmaError.io(path: local.path, reason: "is a file; --model takes a checkpoint folder or a hub id (ORG/NAME)")
            }
            if let revision {
                throw PaliGemmaError.hub(.invalidArgument(
                    "--revision \(revision) applies to hub ids, but '\(argument)' is a local folder"))
            }
            return URL(fileURLWithPath: local.path, isDirectory: true)
        }
        var searched = [local.path + " (no such folder)"]
        guard HubNames.isValidRepoID(argument), !argument.hasPrefix("~") else {
            throw PaliGemmaError.hub(.modelNotFound(argument: argument, searched: searched, repo: nil, revision: revision))
        }
        let cache = HubCache(root: env.cacheDirectory)
        if let snapshot = try cache.resolve(repo: argument, revision: revision) {
            return snapshot
        }
        searched += cache.searchedLocations(repo: argument, revision: revision)
        throw PaliGemmaError.hub(.modelNotFound(argument: argument, searched: searched, repo: argument, revision: revision))
    }
}
