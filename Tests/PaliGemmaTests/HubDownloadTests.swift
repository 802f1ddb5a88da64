import Foundation
import Testing
@testable import PaliGemma

/// End-to-end downloads against `FakeHub` on loopback.
@Suite struct HubDownloadTests {
    private static func downloader(_ hub: FakeHub, cache: URL, token: String? = nil, attempts: Int = 3,
                                   log: EventLog? = nil) -> HubDownloader {
        HubDownloader(endpoint: hub.endpoint, token: token, cache: HubCache(root: cache), progress: log?.handler,
                      maxAttempts: attempts, retryDelay: 0.01, idleTimeout: 10)
    }

    private static func hubError(_ body: () throws -> Void) -> HubError? {
        do { try body() } catch let PaliGemmaError.hub(e) { return e } catch { return nil }
        return nil
    }

    private static func list(_ url: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
    }

    private static func link(_ url: URL) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: url.path)
    }

    private static let defaultFiles = ["config.json", "model.safetensors", "tokenizer.model"]

    @Test func downloadsIntoHuggingFaceLayoutAndLocateFindsIt() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles())
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        let log = EventLog()
        let snapshot = try Self.downloader(hub, cache: cacheRoot, token: "hf_test", log: log).download(repo: hub.repo)

        let folder = cacheRoot.appendingPathComponent("models--test-org--paligemma-tiny")
        #expect(snapshot.path == folder.appendingPathComponent("snapshots/\(hub.commit)").path)
        #expect(Self.list(folder) == ["blobs", "refs", "snapshots"])
        #expect(try String(contentsOf: folder.appendingPathComponent("refs/main"), encoding: .utf8) == hub.commit)  // no newline
        #expect(Self.list(folder.appendingPathComponent("refs")) == ["main"])
        #expect(Self.list(folder.appendingPathComponent("snapshots")) == [hub.commit])
        #expect(Self.list(snapshot) == Self.defaultFiles)   // README.md, *.bin and extras/ skipped
        let expectedBlobs = Self.defaultFiles.compactMap { hub.file($0)?.etag }.sorted()
        #expect(Self.list(folder.appendingPathComponent("blobs")) == expectedBlobs)   // no .incomplete left
        for name in Self.defaultFiles {
            let file = try #require(hub.file(name))
            #expect(Self.link(snapshot.appendingPathComponent(name)) == "../../blobs/\(file.etag)", "\(name)")
            #expect(try Data(contentsOf: snapshot.appendingPathComponent(name)) == file.data, "\(name)")
        }
        #expect(try Data(contentsOf: folder.appendingPathComponent("blobs/\(hub.file("model.safetensors")!.sha256)"))
            == hub.file("model.safetensors")?.data)
        // huggingface_hub's lock folder.
        #expect(FileManager.default.fileExists(atPath: cacheRoot.appendingPathComponent(".locks/models--test-org--paligemma-tiny").path))

        // locate() finds it through HF_HUB_CACHE, by name and by commit.
        let env = ["HF_HUB_CACHE": cacheRoot.path]
        #expect(try ModelLocator.locate(hub.repo, environment: env).path == snapshot.path)
        #expect(try ModelLocator.locate(hub.repo, revision: hub.commit, environment: env).path == snapshot.path)

        // Token to the hub, never to the CDN on another port; LFS bodies came from the CDN.
        let mainResolve = hub.main.requests.filter { $0.path.contains("/resolve/") }
        #expect(!mainResolve.isEmpty && mainResolve.allSatisfy { $0.header("authorization") == "Bearer hf_test" })
        #expect(hub.cdn.requests.count == 2)
        #expect(hub.cdn.requests.allSatisfy { $0.header("authorization") == nil })
        #expect(hub.main.requests.first?.path.hasPrefix("/api/models/test-org/paligemma-tiny/revision/main") == true)

        // Events: listed, then started/finished per file.
        let events = log.events
        #expect(events.first == .listed(repo: hub.repo, commit: hub.commit, files: 3,
                                        bytes: Int64(Self.defaultFiles.compactMap { hub.file($0)?.data.count }.reduce(0, +))))
        #expect(events.filter { if case .finished = $0 { return true } else { return false } }.count == 3)

        // A second run fetches nothing: no new resolve or CDN requests.
        let before = (hub.main.requests.count, hub.cdn.requests.count)
        let again = try Self.downloader(hub, cache: cacheRoot, token: "hf_test").download(repo: hub.repo)
        #expect(again.path == snapshot.path)
        #expect(hub.main.requests.count == before.0 + 1)       // the listing only
        #expect(hub.cdn.requests.count == before.1)
    }

    @Test func revisionByTagByHashAndIncludePatterns() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles(weightBytes: 1000))
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        let folder = cacheRoot.appendingPathComponent("models--test-org--paligemma-tiny")

        let byHash = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo, revision: hub.commit, include: ["config.json"])
        #expect(Self.list(byHash) == ["config.json"])
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("refs").path))   // a hash writes no ref

        let byTag = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo, revision: "v1", include: ["extras/", "*.md"])
        #expect(byTag.path == byHash.path)
        #expect(Self.list(folder.appendingPathComponent("refs")) == ["v1"])
        #expect(Self.list(byTag) == ["README.md", "config.json", "extras"])
        let nested = try #require(hub.file("extras/notes.json"))
        #expect(Self.link(byTag.appendingPathComponent("extras/notes.json")) == "../../../blobs/\(nested.etag)")
        #expect(try Data(contentsOf: byTag.appendingPathComponent("extras/notes.json")) == nested.data)

        let none = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo, include: ["*.gguf"]) }
        guard case .invalidArgument = none else { Issue.record("expected invalidArgument, got \(String(describing: none))"); return }
    }

    @Test func resumesAfterDroppedConnectionOnTheNextRun() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles())
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        let weights = try #require(hub.file("model.safetensors"))
        hub.drop = (file: weights.name, bytes: 70_000, times: 1)
        let folder = cacheRoot.appendingPathComponent("models--test-org--paligemma-tiny")
        let incomplete = folder.appendingPathComponent("blobs/\(weights.sha256).incomplete")

        // One attempt only: the run fails with a network error and keeps the partial file.
        let error = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot, attempts: 1).download(repo: hub.repo) }
        guard case .network = error else { Issue.record("expected network error, got \(String(describing: error))"); return }
        #expect(HubDownloader.fileSize(incomplete.path) == 70_000)
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("blobs/\(weights.sha256)").path))
        #expect(Self.link(folder.appendingPathComponent("snapshots/\(hub.commit)/model.safetensors")) == nil)
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("refs/main").path))
        #expect(hub.file("config.json").map { (try? Data(contentsOf: folder.appendingPathComponent("snapshots/\(hub.commit)/config.json"))) == $0.data } == true)

        // The next run asks for the rest with Range and completes.
        let log = EventLog()
        let snapshot = try Self.downloader(hub, cache: cacheRoot, log: log).download(repo: hub.repo)
        #expect(try Data(contentsOf: snapshot.appendingPathComponent("model.safetensors")) == weights.data)
        #expect(hub.cdn.requests.contains { $0.header("range") == "bytes=70000-" })
        #expect(log.events.contains(.started(file: weights.name, index: 2, count: 3, size: Int64(weights.data.count), resumedFrom: 70_000)))
        #expect(!FileManager.default.fileExists(atPath: incomplete.path))
    }

    @Test func retriesWithinOneRunAndRestartsWhenRangeIsIgnored() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles())
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        let weights = try #require(hub.file("model.safetensors"))
        hub.drop = (file: weights.name, bytes: 50_000, times: 2)
        let log = EventLog()
        let snapshot = try Self.downloader(hub, cache: cacheRoot, attempts: 4, log: log).download(repo: hub.repo)
        #expect(try Data(contentsOf: snapshot.appendingPathComponent("model.safetensors")) == weights.data)
        #expect(log.events.filter { if case .retrying = $0 { return true } else { return false } }.count == 2)
        #expect(hub.cdn.requests.compactMap { $0.header("range") } == ["bytes=50000-", "bytes=100000-"])

        // A server that ignores Range: the partial file is restarted from zero, not appended to.
        let cache2 = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cache2) }
        hub.drop = (file: weights.name, bytes: 30_000, times: 1)
        hub.ignoreRange = true
        let again = try Self.downloader(hub, cache: cache2).download(repo: hub.repo)
        #expect(try Data(contentsOf: again.appendingPathComponent("model.safetensors")) == weights.data)
    }

    @Test func stalledTransferIsAbandonedAndResumed() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles())
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        let weights = try #require(hub.file("model.safetensors"))
        hub.drop = (file: weights.name, bytes: 40_000, times: 1)
        hub.stallSeconds = 1.5
        let log = EventLog()
        let d = HubDownloader(endpoint: hub.endpoint, cache: HubCache(root: cacheRoot), progress: log.handler,
                              maxAttempts: 3, retryDelay: 0.01, idleTimeout: 0.5)
        let start = Date()
        let snapshot = try d.download(repo: hub.repo)
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(try Data(contentsOf: snapshot.appendingPathComponent(weights.name)) == weights.data)
        #expect(log.events.contains(.retrying(file: weights.name, attempt: 2, reason: "no data for 0.5 s")))
        #expect(hub.cdn.requests.contains { $0.header("range") == "bytes=40000-" })
    }

    @Test func gatedRepositoryNeedsAToken() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles(weightBytes: 1000))
        defer { hub.stop() }
        hub.requiredToken = "hf_right"
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }

        let noToken = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo) }
        guard case let .unauthorized(repo, status, _, tokenSent) = noToken else {
            Issue.record("expected unauthorized, got \(String(describing: noToken))"); return
        }
        #expect(repo == hub.repo && status == 401 && !tokenSent)
        let text = noToken?.description ?? ""
        #expect(text.contains("Accept the license at https://huggingface.co/\(hub.repo)") && text.contains("HF_TOKEN"))

        let wrong = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot, token: "hf_wrong").download(repo: hub.repo) }
        guard case let .unauthorized(_, status2, _, tokenSent2) = wrong else { Issue.record("expected 403"); return }
        #expect(status2 == 403 && tokenSent2)
        #expect(!FileManager.default.fileExists(
            atPath: cacheRoot.appendingPathComponent("models--test-org--paligemma-tiny/refs/main").path))

        let snapshot = try Self.downloader(hub, cache: cacheRoot, token: "hf_right").download(repo: hub.repo)
        #expect(Self.list(snapshot) == Self.defaultFiles)
    }

    @Test func notFoundNamesRepositoryRevisionOrFile() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles(weightBytes: 1000))
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }

        let repoMissing = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot).download(repo: "test-org/nope") }
        guard case let .notFound(repo, _, file, _) = repoMissing else { Issue.record("got \(String(describing: repoMissing))"); return }
        #expect(repo == "test-org/nope" && file == nil)

        let revisionMissing = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo, revision: "v9") }
        guard case let .notFound(_, revision, _, _) = revisionMissing else { Issue.record("got \(String(describing: revisionMissing))"); return }
        #expect(revision == "v9")

        hub.missing = ["tokenizer.model"]
        let fileMissing = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo) }
        guard case let .notFound(_, _, file3, _) = fileMissing else { Issue.record("got \(String(describing: fileMissing))"); return }
        #expect(file3 == "tokenizer.model")
        #expect(fileMissing?.description.contains("tokenizer.model") == true)
    }

    @Test func checksumMismatchIsNeverPlaced() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles())
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        let weights = try #require(hub.file("model.safetensors"))
        hub.corrupt = [weights.name]
        let error = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo) }
        guard case let .integrity(_, file, expected, actual) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file == weights.name && expected == "sha256 \(weights.sha256)" && actual != expected)
        let folder = cacheRoot.appendingPathComponent("models--test-org--paligemma-tiny")
        #expect(!Self.list(folder.appendingPathComponent("blobs")).contains { $0.hasPrefix(weights.sha256) })   // neither blob nor .incomplete
        #expect(Self.link(folder.appendingPathComponent("snapshots/\(hub.commit)/model.safetensors")) == nil)
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("refs/main").path))
        #expect(Self.hubError { _ = try ModelLocator.locate(hub.repo, environment: ["HF_HUB_CACHE": cacheRoot.path]) } != nil)

        // Fixed server: the next run succeeds.
        hub.corrupt = []
        let snapshot = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo)
        #expect(try Data(contentsOf: snapshot.appendingPathComponent(weights.name)) == weights.data)
    }

    @Test func staleOrOversizedPartialFilesAreRepaired() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles())
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        let weights = try #require(hub.file("model.safetensors"))
        let tokenizer = try #require(hub.file("tokenizer.model"))
        let blobs = cacheRoot.appendingPathComponent("models--test-org--paligemma-tiny/blobs")
        try FileManager.default.createDirectory(at: blobs, withIntermediateDirectories: true)
        // Longer than the file: discarded. Wrong bytes in a prefix: detected by sha256, removed.
        try Data(repeating: 1, count: weights.data.count + 10).write(to: blobs.appendingPathComponent("\(weights.sha256).incomplete"))
        try Data(repeating: 9, count: 5_000).write(to: blobs.appendingPathComponent("\(tokenizer.sha256).incomplete"))

        let error = Self.hubError { _ = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo) }
        guard case let .integrity(_, file, _, _) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file == tokenizer.name)
        #expect(try Data(contentsOf: blobs.appendingPathComponent(weights.sha256)) == weights.data)
        #expect(!FileManager.default.fileExists(atPath: blobs.appendingPathComponent("\(tokenizer.sha256).incomplete").path))
        #expect(!FileManager.default.fileExists(atPath: blobs.appendingPathComponent(tokenizer.sha256).path))

        let snapshot = try Self.downloader(hub, cache: cacheRoot).download(repo: hub.repo)
        #expect(try Data(contentsOf: snapshot.appendingPathComponent(tokenizer.name)) == tokenizer.data)
    }

    @Test func offlineNeverTouchesTheNetwork() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles(weightBytes: 1000))
        defer { hub.stop() }
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        var env = ["HF_HUB_CACHE": cacheRoot.path, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "1", "HF_TOKEN": "x"]

        let offline = HubDownloader(environment: env)
        #expect(offline.offline && offline.endpoint == hub.endpoint && offline.token == "x")
        let error = Self.hubError { _ = try offline.download(repo: hub.repo) }
        guard case let .offlineNotCached(repo, revision, cache) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(repo == hub.repo && revision == "main" && cache == cacheRoot.path)
        #expect(hub.main.requests.isEmpty && hub.cdn.requests.isEmpty)

        env["HF_HUB_OFFLINE"] = "0"
        let online = try HubDownloader(environment: env).download(repo: hub.repo)
        let count = hub.main.requests.count
        env["HF_HUB_OFFLINE"] = "1"
        #expect(try HubDownloader(environment: env).download(repo: hub.repo).path == online.path)
        #expect(hub.main.requests.count == count)
    }

    @Test func networkFailureIsTypedAndBounded() throws {
        // A bound socket that never listens: connections are refused, and no other test's server
        // can be given the port meanwhile.
        let closed = try ClosedPort()
        defer { closed.close() }
        let endpoint = "http://127.0.0.1:\(closed.port)"
        let cacheRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: cacheRoot) }
        let d = HubDownloader(endpoint: endpoint, cache: HubCache(root: cacheRoot), maxAttempts: 2, retryDelay: 0.01)
        let start = Date()
        let error = Self.hubError { _ = try d.download(repo: "test-org/paligemma-tiny") }
        guard case let .network(url, _) = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(url.hasPrefix(endpoint))
        #expect(Date().timeIntervalSince(start) < 10)
        #expect(Self.hubError { _ = try d.download(repo: "not a repo") } == .invalidArgument(
            "'not a repo' is not a hub repository id (expected ORG/NAME, e.g. google/paligemma-3b-mix-224)"))
    }
}
