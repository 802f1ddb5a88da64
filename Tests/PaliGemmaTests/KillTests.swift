import Foundation
import Testing
@testable import PaliGemma
#if canImport(Glibc)
import Glibc
#endif

/// Nothing a user has is lost when a command is killed (SIGKILL: no handler runs) at a random
/// moment: `quantize` and `merge` leave no folder or a complete one, `finetune` always keeps its
/// last saved state and adapter (or checkpoint) whole and resumes to the end, and a batch run
/// resumes to answer every request exactly once. Each command is killed a bounded number of times
/// at moments drawn (seeded) over the length of an uninterrupted run; the moments are printed.
/// The checks hold at any moment, so where exactly a kill lands changes what is exercised, never
/// whether the test passes.
@Suite(.serialized)
struct KillTests {
    static let kills = 6

    /// Runs the command line and kills it after `seconds`; true when it finished first.
    static func runKilled(_ arguments: [String], after seconds: Double, environment: [String: String] = [:]) throws -> Bool {
        let process = Process()
        process.executableURL = EndToEndTests.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["PALIGEMMA_PRECISION": "exact"]) { $1 }
            .merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(1_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return false
        }
        process.waitUntilExit()
        return true
    }

    /// Kill moments spread over `duration` (an uninterrupted run's), drawn from `seed`.
    static func moments(_ duration: Double, seed: UInt64) -> [Double] {
        var rng = SeededRandom(seed)
        return (0..<kills).map { _ in duration * Double(rng.next() % 10_000) / 10_000 }
    }

    static func timed(_ body: () throws -> EndToEndTests.Run) throws -> (EndToEndTests.Run, Double) {
        let start = Date()
        let run = try body()
        return (run, Date().timeIntervalSince(start))
    }

    /// Every file under `folder` (relative path -> bytes), hidden ones included.
    static func contents(_ folder: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let fm = FileManager.default
        guard let walker = fm.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey]) else { return out }
        for case let url as URL in walker where (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
            out[String(url.standardizedFileURL.path.dropFirst(folder.standardizedFileURL.path.count + 1))] = try Data(contentsOf: url)
        }
        return out
    }

    @Test("quantize and merge, killed at random moments, leave no output folder or a complete one")
    func quantizeAndMerge() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A float32 model of the bundled model's shape (more to write than the test fixtures) and
        // a LoRA adapter for it.
        let shapes = Fixtures.root.appendingPathComponent("../../../Models/shapes-tiny").standardized
        let modelURL = dir.appendingPathComponent("model")
        try RandomCheckpoint.write(configJSON: try RandomCheckpoint.configJSON(contentsOf: shapes.appendingPathComponent("config.json"), dtype: "float32"),
                                   dtype: .float32, to: modelURL, seed: 4)
        for file in ["tokenizer.model", "preprocessor_config.json"] {
            try FileManager.default.copyItem(at: shapes.appendingPathComponent(file), to: modelURL.appendingPathComponent(file))
        }
        let trainable = TrainableModel(model: try PaliGemmaModel(directory: modelURL), method: .lora(LoRAConfig(rank: 8, alpha: 16)), seed: 1)
        for p in trainable.parameters where p.name.hasSuffix("lora_B.weight") {
            var rng = SeededRandom(9); let v = rng.floats(p.count)
            p.value.data.update(from: v, count: v.count)
        }
        let adapterURL = dir.appendingPathComponent("adapter")
        try trainable.adapter(baseModel: modelURL.path).write(to: adapterURL)
        let (model, adapter) = (modelURL.path, adapterURL.path)
        let commands: [(name: String, arguments: (String) -> [String])] = [
            ("quantize", { ["quantize", "--model", model, "--output", $0, "--bits", "4"] }),
            ("merge", { ["merge", "--model", model, "--adapter", adapter, "--output", $0] }),
        ]
        for (c, command) in commands.enumerated() {
            let reference = dir.appendingPathComponent("\(command.name)-reference")
            let (run, seconds) = try Self.timed { try EndToEndTests.run(command.arguments(reference.path)) }
            #expect(run.status == 0, "\(run.stderr)")
            let want = try Self.contents(reference)
            #expect(!want.isEmpty)
            var complete = 0
            for (k, moment) in Self.moments(seconds, seed: UInt64(17 + c)).enumerated() {
                let output = dir.appendingPathComponent("\(command.name)-\(k)")
                let finished = try Self.runKilled(command.arguments(output.path), after: moment)
                if FileManager.default.fileExists(atPath: output.path) {
                    #expect(try Self.contents(output) == want, "\(command.name) killed at \(moment) s left a different folder")
                    complete += 1
                } else {
                    #expect(!finished, "\(command.name) finished without writing its folder")
                }
            }
            print("[\(command.name)] uninterrupted \(String(format: "%.2f", seconds)) s; killed at "
                  + Self.moments(seconds, seed: UInt64(17 + c)).map { String(format: "%.2f", $0) }.joined(separator: ", ")
                  + " s: \(complete) complete folders, \(Self.kills - complete) none")
        }
    }

    @Test("finetune killed at random moments keeps its last saved state and results whole, and resumes to the end",
          arguments: ["lora", "full"])
    func finetune(method: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = try FinetuneCommandTests.dataset(dir)
        let model = Fixtures.model("e2e-pg1").path
        let out = dir.appendingPathComponent("run")
        let state = out.appendingPathComponent("trainer_state.safetensors")
        func arguments(_ mode: String) -> [String] {
            ["finetune", "--model", model, "--train", train.path, "--output", out.path, "--method", method, "--steps", "10",
             "--save-every", "1", "--batch-size", "2", "--seed", "3", mode]
        }
        // One uninterrupted run for the length of a run, then kills, each continuing the last.
        let (first, seconds) = try Self.timed { try EndToEndTests.run(arguments("--overwrite")) }
        #expect(first.status == 0, "\(first.stderr)")
        try FileManager.default.removeItem(at: out)
        var savedStep = 0
        for moment in Self.moments(seconds, seed: method == "lora" ? 5 : 6) {
            _ = try Self.runKilled(arguments(savedStep > 0 ? "--resume" : "--overwrite"), after: moment)
            guard FileManager.default.fileExists(atPath: state.path) else {
                #expect(savedStep == 0, "\(method): the saved state was lost (killed at \(moment) s)")
                continue
            }
            let file = try SafetensorsFile(path: state.path)
            let step = Int(file.metadata["step"] ?? "") ?? -1
            #expect(step >= savedStep, "\(method): the state went back from step \(savedStep) to \(step)")
            savedStep = step
            if method == "lora" {
                _ = try LoRAAdapter(directory: out)
            } else {
                _ = try PaliGemmaModel(directory: out.appendingPathComponent("model"))
            }
        }
        let last = try EndToEndTests.run(arguments(savedStep > 0 ? "--resume" : "--overwrite"))
        #expect(last.status == 0, "\(last.stderr)")
        struct Line: Decodable { let step: Int }
        let steps = try String(contentsOf: out.appendingPathComponent("training_log.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)).step }
        #expect(steps == Array(1...10), "\(method): the log's steps \(steps)")
        print("[finetune \(method)] uninterrupted \(String(format: "%.2f", seconds)) s; after the kills the saved state was at step \(savedStep); resumed to step 10")
    }

    @Test("a batch run killed at random moments resumes to answer every request exactly once, as an uninterrupted run does")
    func batch() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try FinetuneCommandTests.dataset(dir)
        let prompts = ["caption en", "answer en what is this?", "detect circle", "ocr", "describe en", "caption es"]
        let images = ["scene.jpg", "scene.png", "wide.png"]
        let lines = prompts.enumerated().map { i, p in #"{"id": "r\#(i)", "image": "\#(images[i % 3])", "prompt": "\#(p)"}"# }
        let requests = dir.appendingPathComponent("requests.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: requests, atomically: true, encoding: .utf8)
        let model = Fixtures.model("e2e-pg1").path
        func arguments(_ output: URL) -> [String] {
            ["generate", "--model", model, "--batch", requests.path, "--output", output.path, "--max-tokens", "6"]
        }
        func answers(_ output: URL) throws -> [String: [String]] {
            var out: [String: [String]] = [:]
            for line in try String(contentsOf: output, encoding: .utf8).split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let id = object["id"] as? String, let text = object["text"] as? String else { continue }
                out[id, default: []].append(text)
            }
            return out
        }
        let reference = dir.appendingPathComponent("reference.jsonl")
        let (run, seconds) = try Self.timed { try EndToEndTests.run(arguments(reference)) }
        #expect(run.status == 0, "\(run.stderr)")
        let want = try answers(reference)
        #expect(want.count == prompts.count && want.values.allSatisfy { $0.count == 1 })
        let output = dir.appendingPathComponent("results.jsonl")
        for moment in Self.moments(seconds, seed: 9) { _ = try Self.runKilled(arguments(output), after: moment) }
        let last = try EndToEndTests.run(arguments(output))
        #expect(last.status == 0, "\(last.stderr)")
        let got = try answers(output)
        #expect(got == want, "after the kills: \(got)")
        print("[batch] uninterrupted \(String(format: "%.2f", seconds)) s; killed \(Self.kills) times, then resumed: every request answered once, as uninterrupted")
    }

    @Test("download killed at random moments: every file in the snapshot is whole; a rerun completes it")
    func download() throws {
        let hub = try FakeHub(files: FakeHub.standardFiles(weightBytes: 6_000_000))
        defer { hub.stop() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func environment(_ cache: URL) -> [String: String] { ["HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": cache.path, "HF_TOKEN": ""] }
        let wanted = ["config.json", "model.safetensors", "tokenizer.model"]
        func check(_ cache: URL, complete: Bool) throws -> Int {
            let snapshot = cache.appendingPathComponent("models--test-org--paligemma-tiny/snapshots/\(hub.commit)")
            var whole = 0
            for name in wanted {
                let path = snapshot.appendingPathComponent(name)
                guard FileManager.default.fileExists(atPath: path.path) else {
                    #expect(!complete, "\(name) missing after a complete download")
                    continue
                }
                #expect(try Data(contentsOf: path) == hub.file(name)?.data, "\(name) is in the snapshot but not whole")
                whole += 1
            }
            return whole
        }
        let reference = dir.appendingPathComponent("reference")
        let (run, seconds) = try Self.timed { try EndToEndTests.run(["download", hub.repo, "--quiet"], environment: environment(reference)) }
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try check(reference, complete: true) == wanted.count)
        let cache = dir.appendingPathComponent("cache")
        var seen: [Int] = []
        for moment in Self.moments(seconds, seed: 13) {
            _ = try Self.runKilled(["download", hub.repo, "--quiet"], after: moment, environment: environment(cache))
            seen.append(try check(cache, complete: false))
        }
        let last = try EndToEndTests.run(["download", hub.repo, "--quiet"], environment: environment(cache))
        #expect(last.status == 0, "\(last.stderr)")
        #expect(try check(cache, complete: true) == wanted.count)
        print("[download] uninterrupted \(String(format: "%.2f", seconds)) s; whole files in the snapshot after each kill: \(seen); then completed")
    }

    @Test("an overwritten folder is swapped with the new one in one step: the old or the new is always in place")
    func stagedFolderSwaps() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let destination = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: destination.appendingPathComponent("a.txt"))
        let folder = try StagedFolder(destination: destination, overwrite: true)
        try Data("new".utf8).write(to: folder.file("a.txt"))
        #expect(try String(contentsOf: destination.appendingPathComponent("a.txt"), encoding: .utf8) == "old")
        try folder.commit()
        #expect(try String(contentsOf: destination.appendingPathComponent("a.txt"), encoding: .utf8) == "new")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"], "the old folder is removed")
        #if os(Linux)
        // The swap itself: renameat2(RENAME_EXCHANGE) is found and works here.
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b")
        try FileManager.default.createDirectory(at: a, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(at: b, withIntermediateDirectories: false)
        try Data().write(to: a.appendingPathComponent("from-a"))
        #expect(StagedFolder.exchange(a.path, b.path))
        #expect(FileManager.default.fileExists(atPath: b.appendingPathComponent("from-a").path))
        #endif
    }
}
