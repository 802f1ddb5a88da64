import Foundation
import Testing
@testable import PaliGemma

// MARK: - Helpers

/// Collects download events (they arrive on URLSession's queue).
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [HubDownloadEvent] = []
    var events: [HubDownloadEvent] { lock.withLock { list } }
    var handler: HubProgressHandler { { [self] e in self.lock.withLock { self.list.append(e) } } }
}

private func hubError(_ body: () throws -> Void) -> HubError? {
    do { try body() } catch let PaliGemmaError.hub(e) { return e } catch { return nil }
    return nil
}

private let hashA = String(repeating: "a", count: 40)
private let hashB = "b" + String(repeating: "0", count: 39)

/// A cache as huggingface_hub leaves it: refs/main → A, refs/v1 → B, snapshots with symlinks.
private func makeFakeCache(_ root: URL, repo: String = "google/paligemma-test") throws {
    let fm = FileManager.default
    let folder = root.appendingPathComponent("models--" + repo.replacingOccurrences(of: "/", with: "--"))
    for dir in ["refs", "blobs", "snapshots/\(hashA)", "snapshots/\(hashB)"] {
        try fm.createDirectory(at: folder.appendingPathComponent(dir), withIntermediateDirectories: true)
    }
    try Data(hashA.utf8).write(to: folder.appendingPathComponent("refs/main"))
    try Data((hashB + "\n").utf8).write(to: folder.appendingPathComponent("refs/v1"))
    try Data("{}".utf8).write(to: folder.appendingPathComponent("blobs/1111"))
    try fm.createSymbolicLink(atPath: folder.appendingPathComponent("snapshots/\(hashA)/config.json").path,
                              withDestinationPath: "../../blobs/1111")
    try fm.createSymbolicLink(atPath: folder.appendingPathComponent("snapshots/\(hashB)/config.json").path,
                              withDestinationPath: "../../blobs/1111")
}

// MARK: - SHA-256

@Suite struct SHA256Tests {
    @Test func knownVectors() {
        #expect(SHA256.hash(Data()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hash(Data("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hash(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hash(Data(repeating: UInt8(ascii: "a"), count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func streamingEqualsOneShot() {
        var rng = SeededRandom(7)
        let data = Data((0..<10_007).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        for split in [1, 55, 56, 63, 64, 65, 127, 4096] {
            var h = SHA256()
            var i = 0
            while i < data.count { h.update(data.subdata(in: i..<min(i + split, data.count))); i += split }
            #expect(h.hexDigest() == SHA256.hash(data), "chunks of \(split)")
            #expect(h.count == UInt64(data.count))
        }
    }
}

// MARK: - Environment and cache lookup

@Suite struct HubEnvironmentTests {
    @Test func cacheDirectoryPrecedence() {
        let home = ["HOME": "/home/u"]
        #expect(HubEnvironment(home).cacheDirectory.path == "/home/u/.cache/huggingface/hub")
        #expect(HubEnvironment(home.merging(["XDG_CACHE_HOME": "/xdg"]) { $1 }).cacheDirectory.path == "/xdg/huggingface/hub")
        #expect(HubEnvironment(home.merging(["XDG_CACHE_HOME": "/xdg", "HF_HOME": "/hf"]) { $1 }).cacheDirectory.path == "/hf/hub")
        #expect(HubEnvironment(home.merging(["HF_HOME": "/hf", "HUGGINGFACE_HUB_CACHE": "/legacy"]) { $1 }).cacheDirectory.path == "/legacy")
        #expect(HubEnvironment(home.merging(["HF_HOME": "/hf", "HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HUB_CACHE": "/new"]) { $1 })
            .cacheDirectory.path == "/new")
        #expect(HubEnvironment(home.merging(["HF_HOME": "~/hf"]) { $1 }).cacheDirectory.path == "/home/u/hf/hub")
        #expect(HubEnvironment(home.merging(["HF_HUB_CACHE": "$HOME/c/${V}x/$NOPE", "V": "v"]) { $1 }).cacheDirectory.path
            == "/home/u/c/vx/$NOPE")
        #expect(HubEnvironment(home.merging(["HF_HOME": ""]) { $1 }).home == "/home/u/.cache/huggingface")
    }

    @Test func endpointTokenOffline() throws {
        #expect(HubEnvironment([:]).endpoint == "https://huggingface.co")
        #expect(HubEnvironment(["HF_ENDPOINT": "http://127.0.0.1:9/"]).endpoint == "http://127.0.0.1:9")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("file-token\n".utf8).write(to: dir.appendingPathComponent("token"))
        let base = ["HF_HOME": dir.path]
        #expect(HubEnvironment(base).token == "file-token")
        #expect(HubEnvironment(base.merging(["HUGGING_FACE_HUB_TOKEN": "legacy"]) { $1 }).token == "legacy")
        #expect(HubEnvironment(base.merging(["HUGGING_FACE_HUB_TOKEN": "legacy", "HF_TOKEN": "new"]) { $1 }).token == "new")
        #expect(HubEnvironment(["HF_HOME": dir.appendingPathComponent("none").path]).token == nil)
        for value in ["1", "true", "YES", "on"] { #expect(HubEnvironment(["HF_HUB_OFFLINE": value]).isOffline) }
        for value in ["0", "false", ""] { #expect(!HubEnvironment(["HF_HUB_OFFLINE": value]).isOffline) }
        #expect(HubEnvironment(["TRANSFORMERS_OFFLINE": "1"]).isOffline)
    }

    @Test func names() {
        for ok in ["google/paligemma-3b-mix-224", "gpt2", "a/b.c_d-e"] { #expect(HubNames.isValidRepoID(ok), "\(ok)") }
        for bad in ["", "a/b/c", "a--b/c", "../x", "a/..", "/abs", "a/b.git", "-a/b", "a b/c", "a/"] {
            #expect(!HubNames.isValidRepoID(bad), "\(bad)")
        }
        #expect(HubNames.folderName(repo: "google/paligemma-3b-mix-224") == "models--google--paligemma-3b-mix-224")
        #expect(HubNames.isSafeRelativePath("refs/pr/1"))
        for bad in ["../x", "a/../b", "/x", "a//b", "a\\b", "."] { #expect(!HubNames.isSafeRelativePath(bad), "\(bad)") }
        #expect(HubDownloader.normalizeEtag("W/\"abc\"") == "abc")
        #expect(HubDownloader.normalizeEtag("\"abc\"") == "abc")
    }
}

@Suite struct HubCacheTests {
    @Test func resolvesBranchTagHashAndShortHash() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try makeFakeCache(root)
        let cache = HubCache(root: root)
        let repo = "google/paligemma-test"
        #expect(try cache.resolve(repo: repo, revision: nil)?.lastPathComponent == hashA)
        #expect(try cache.resolve(repo: repo, revision: "main")?.lastPathComponent == hashA)
        #expect(try cache.resolve(repo: repo, revision: "v1")?.lastPathComponent == hashB)   // trailing newline tolerated
        #expect(try cache.resolve(repo: repo, revision: hashB)?.lastPathComponent == hashB)
        #expect(try cache.resolve(repo: repo, revision: "b000000")?.lastPathComponent == hashB)
        #expect(try cache.resolve(repo: repo, revision: "no-such-branch") == nil)
        #expect(try cache.resolve(repo: repo, revision: String(repeating: "c", count: 40)) == nil)
        #expect(try cache.resolve(repo: "google/other", revision: nil) == nil)
        let config = try #require(try cache.cachedFile(repo: repo, filename: "config.json"))
        #expect(try String(contentsOf: config, encoding: .utf8) == "{}")   // through the symlink
        #expect(try cache.cachedFile(repo: repo, filename: "model.safetensors") == nil)
        #expect(hubError { _ = try cache.resolve(repo: "bad//id", revision: nil) } != nil)
        #expect(hubError { _ = try cache.resolve(repo: repo, revision: "../../etc") } != nil)
    }

    @Test func locatorPrefersLocalFolderThenCache() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let hfHome = root.appendingPathComponent("hf")
        try makeFakeCache(hfHome.appendingPathComponent("hub"))
        let env = ["HF_HOME": hfHome.path, "HOME": root.path]

        // Cached hub id, by branch and by tag.
        let viaHub = try ModelLocator.locate("google/paligemma-test", revision: nil, environment: env, workingDirectory: root)
        #expect(viaHub.path == hfHome.path + "/hub/models--google--paligemma-test/snapshots/\(hashA)")
        let viaTag = try ModelLocator.locate("google/paligemma-test", revision: "v1", environment: env, workingDirectory: root)
        #expect(viaTag.lastPathComponent == hashB)

        // HF_HUB_CACHE overrides HF_HOME: the same id is then not found.
        let other = env.merging(["HF_HUB_CACHE": root.appendingPathComponent("empty").path]) { $1 }
        #expect(hubError { _ = try ModelLocator.locate("google/paligemma-test", revision: nil, environment: other, workingDirectory: root) } != nil)

        // A folder of the same name wins over the hub id.
        let local = root.appendingPathComponent("google/paligemma-test")
        try FileManager.default.createDirectory(at: local, withIntermediateDirectories: true)
        #expect(try ModelLocator.locate("google/paligemma-test", revision: nil, environment: env, workingDirectory: root).path == local.path)
        #expect(try ModelLocator.locate(local.path, environment: env).path == local.path)
        #expect(try ModelLocator.locate("~/google/paligemma-test", environment: env).path == local.path)

        // A file is not a checkpoint folder.
        let file = root.appendingPathComponent("file.txt")
        try Data().write(to: file)
        #expect(throws: PaliGemmaError.self) { _ = try ModelLocator.locate(file.path, environment: env) }
    }

    @Test func locatorErrorSaysWhereItLookedAndHowToDownload() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let env = ["HF_HUB_CACHE": root.path]
        let error = try #require(hubError {
            _ = try ModelLocator.locate("google/paligemma-3b-mix-224", revision: "v2", environment: env, workingDirectory: root)
        })
        guard case let .modelNotFound(argument, searched, repo, revision) = error else {
            Issue.record("wrong error \(error)"); return
        }
        #expect(argument == "google/paligemma-3b-mix-224" && repo == argument && revision == "v2")
        #expect(searched.contains { $0.contains(root.path + "/models--google--paligemma-3b-mix-224/refs/v2") })
        #expect(error.description.contains("paligemma download google/paligemma-3b-mix-224 --revision v2"))

        let notAnID = try #require(hubError { _ = try ModelLocator.locate("./missing/dir/x", environment: env) })
        guard case let .modelNotFound(_, _, repo2, _) = notAnID else { Issue.record("wrong error"); return }
        #expect(repo2 == nil)
    }
}

// MARK: - Progress bar

@Suite struct ProgressBarTests {
    @Test func rendering() {
        #expect(TerminalProgressBar.formatBytes(999) == "999 B")
        #expect(TerminalProgressBar.formatBytes(1_500) == "1.50 kB")
        #expect(TerminalProgressBar.formatBytes(35_100_000) == "35.1 MB")
        #expect(TerminalProgressBar.formatBytes(2_920_000_000) == "2.92 GB")
        #expect(TerminalProgressBar.formatDuration(48) == "0:48")
        #expect(TerminalProgressBar.formatDuration(3723) == "1:02:03")
        let line = TerminalProgressBar.render(label: "model.safetensors", bytes: 500, size: 1000, bytesPerSecond: 100, width: 100)
        #expect(line == "model.safetensors [##########..........]  50%  500 B / 1.00 kB  100 B/s  ETA 0:05")
        let narrow = TerminalProgressBar.render(label: String(repeating: "x", count: 200), bytes: 1, size: nil, bytesPerSecond: nil, width: 40)
        #expect(narrow.count <= 40)
        let standard = TerminalProgressBar.render(label: "[2/2] model.safetensors", bytes: 866_000, size: 3_000_000,
                                                  bytesPerSecond: 1_650_000, width: 80)
        #expect(standard.hasPrefix("[2/2] model.safetensors [") && standard.count <= 80, "\(standard)")
    }
}
