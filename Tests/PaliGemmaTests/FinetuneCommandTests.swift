import Foundation
import Testing
@testable import PaliGemma

/// `paligemma finetune` and `paligemma eval` from the command line, on the tiny e2e model.
struct FinetuneCommandTests {
    static func dataset(_ dir: URL) throws -> URL {
        for name in ["scene.jpg", "scene.png", "wide.png"] {
            try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("e2e/images/\(name)"),
                                             to: dir.appendingPathComponent(name))
        }
        let lines = [#"{"image": "scene.jpg", "prefix": "caption en", "suffix": "a red circle"}"#,
                     #"{"image": "wide.png", "prefix": "caption en", "suffix": "a blue square"}"#,
                     #"{"image": "scene.png", "task": "detect", "labels": ["circle"], "suffix": "<loc0100><loc0200><loc0300><loc0400> circle"}"#]
        let url = dir.appendingPathComponent("train.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    @Test("finetune writes a PEFT adapter, a log, a loss curve and a resumable state; eval and generate use the adapter")
    func lora() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = try Self.dataset(dir)
        let model = Fixtures.model("e2e-pg1").path
        let out = dir.appendingPathComponent("run")
        let run = try EndToEndTests.run(["finetune", "--model", model, "--train", train.path, "--eval", train.path, "--output", out.path,
                                         "--steps", "8", "--lr", "3e-3", "--batch-size", "3", "--eval-every", "4", "--rank", "4", "--seed", "3"])
        #expect(run.status == 0, "\(run.stderr)")
        for name in ["adapter_config.json", "adapter_model.safetensors", "training_log.jsonl", "loss.png", "trainer_state.safetensors", "trainer_options.json"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), "\(name) missing")
        }
        struct Metrics: Decodable { let exact_match: Double; let vqa_accuracy: Double; let box_f1: Double? }
        struct Line: Decodable { let step: Int; let loss: Double; let lr: Double; let grad_norm: Double; let eval_loss: Double?; let eval: Metrics? }
        let lines = try String(contentsOf: out.appendingPathComponent("training_log.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
        #expect(lines.map(\.step) == Array(1...8))
        #expect(lines[7].loss < lines[0].loss, "the loss falls")
        #expect(lines.compactMap(\.eval_loss).count == 2)
        #expect(lines.compactMap(\.eval).count == 2 && lines.last?.eval?.box_f1 != nil, "task metrics at each evaluation, boxes for the detect line")
        // eval through the inference path with the written adapter gives the last evaluation loss.
        let evaluation = try EndToEndTests.run(["eval", "--model", model, "--adapter", out.path, "--data", train.path, "--json", "--max-tokens", "4"])
        #expect(evaluation.status == 0, "\(evaluation.stderr)")
        struct Report: Decodable { let examples: Int; let loss: Double }
        let report = try JSONDecoder().decode(Report.self, from: Data(evaluation.stdout.utf8))
        let last = try #require(lines.last?.eval_loss)
        #expect(report.examples == 3 && abs(report.loss - last) <= 1e-5 * last, "eval \(report.loss) vs training's \(last)")
        let generated = try EndToEndTests.run(["caption", "--model", model, "--adapter", out.path, "--image", dir.appendingPathComponent("scene.jpg").path,
                                               "--max-tokens", "3"])
        #expect(generated.status == 0, "\(generated.stderr)")
        // The folder is refused without --overwrite or --resume; --resume after the end changes nothing.
        let again = try EndToEndTests.run(["finetune", "--model", model, "--train", train.path, "--output", out.path, "--steps", "8"])
        #expect(again.status != 0 && again.stderr.contains("--overwrite"))
        let before = try Data(contentsOf: out.appendingPathComponent("adapter_model.safetensors"))
        // A line for a step after the saved state (as a crash after a save leaves) is dropped on resume.
        let logURL = out.appendingPathComponent("training_log.jsonl")
        let handle = try FileHandle(forWritingTo: logURL)
        handle.seekToEndOfFile()
        handle.write(Data(#"{"step": 9, "loss": 1.0, "lr": 0, "grad_norm": 0}"#.utf8))
        try handle.close()
        let resumed = try EndToEndTests.run(["finetune", "--model", model, "--train", train.path, "--eval", train.path, "--output", out.path,
                                             "--steps", "8", "--lr", "3e-3", "--batch-size", "3", "--eval-every", "4", "--rank", "4", "--seed", "3", "--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Data(contentsOf: out.appendingPathComponent("adapter_model.safetensors")) == before)
        let steps = try String(contentsOf: logURL, encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)).step }
        #expect(steps == Array(1...8), "the resumed log holds each step once: \(steps)")
        let changed = try EndToEndTests.run(["finetune", "--model", model, "--train", train.path, "--output", out.path, "--steps", "9", "--resume"])
        #expect(changed.status != 0 && changed.stderr.contains("options differ"))
    }

    @Test("eval --group-by: prefix groups in order of first appearance, shapes groups in the world's order, anything else refused")
    func evalGroups() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = try Self.dataset(dir)
        // The detect line first, so that appearance order and the shapes order differ.
        let lines = try String(contentsOf: train, encoding: .utf8).split(separator: "\n")
        let data = dir.appendingPathComponent("reordered.jsonl")
        try ([lines[2], lines[0], lines[1]].joined(separator: "\n") + "\n").write(to: data, atomically: true, encoding: .utf8)
        struct Report: Decodable {
            struct Group: Decodable { let name: String; let report: Inner }
            struct Inner: Decodable { let examples: Int }
            let examples: Int; let groups: [Group]?
        }
        /// Each group as "name: examples", in the report's order.
        func groups(_ by: String) throws -> [String]? {
            let run = try EndToEndTests.run(["eval", "--model", Fixtures.model("e2e-pg1").path, "--data", data.path, "--json",
                                             "--max-tokens", "2", "--group-by", by])
            #expect(run.status == 0, "\(run.stderr)")
            let report = try JSONDecoder().decode(Report.self, from: Data(run.stdout.utf8))
            #expect(report.examples == 3)
            return report.groups?.map { "\($0.name): \($0.report.examples)" }
        }
        #expect(try groups("prefix") == ["detect circle: 1", "caption en: 2"])
        #expect(try groups("shapes") == ["caption: 2", "caption, 1 object: 2", "detect: 1"])
        let bad = try EndToEndTests.run(["eval", "--model", Fixtures.model("e2e-pg1").path, "--data", data.path, "--group-by", "task"])
        #expect(bad.status != 0 && bad.stderr.contains("--group-by"), "\(bad.stderr)")
    }

    /// Two `--method full` steps at rate 0.01 on the tiny e2e model into `dir`/full, with `extra` options.
    static func fullRun(in dir: URL, _ extra: [String]) throws
        -> (train: URL, model: String, out: URL, trained: PaliGemmaModel, base: PaliGemmaModel) {
        let train = try dataset(dir)
        let model = Fixtures.model("e2e-pg1").path
        let out = dir.appendingPathComponent("full")
        let run = try EndToEndTests.run(["finetune", "--model", model, "--train", train.path, "--output", out.path, "--method", "full",
                                         "--steps", "2", "--lr", "0.01"] + extra)
        #expect(run.status == 0, "\(run.stderr)")
        return (train, model, out, try PaliGemmaModel(directory: out.appendingPathComponent("model")),
                try PaliGemmaModel(directory: Fixtures.model("e2e-pg1")))
    }

    @Test("finetune --method full writes a checkpoint folder that loads and generates; bad data names its line")
    func fullAndErrors() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, model, _, trained, base) = try Self.fullRun(in: dir, ["--optimizer", "sgd", "--schedule", "constant"])
        #expect(trained.decoder.norm.weight != base.decoder.norm.weight, "the trained folder holds the trained values")
        let bad = dir.appendingPathComponent("bad.jsonl")
        try "{\"image\": \"scene.jpg\", \"prefix\": \"caption en\", \"suffix\": \"a\"}\n{\"image\": \"scene.jpg\", \"sufix\": \"x\"}\n".write(to: bad, atomically: true, encoding: .utf8)
        let refused = try EndToEndTests.run(["finetune", "--model", model, "--train", bad.path, "--output", dir.appendingPathComponent("x").path])
        #expect(refused.status == 65 && refused.stderr.contains("line 2"), "\(refused.stderr)")
    }
}

extension FinetuneCommandTests {
    @Test("README's fine-tuning example: 40 LoRA steps teach the tiny model the two captions")
    func readmeExample() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = Fixtures.root.appendingPathComponent("../../..").standardized
        let model = Fixtures.model("e2e-pg1").path
        let out = dir.appendingPathComponent("pg-lora").path
        let run = try EndToEndTests.run(["finetune", "--model", model, "--train", root.appendingPathComponent("Examples/finetune/captions.jsonl").path,
                                         "--output", out, "--steps", "40", "--lr", "1e-2", "--overwrite"])
        #expect(run.status == 0, "\(run.stderr)")
        for (image, caption) in [("scene.jpg", "a red circle"), ("wide.png", "a blue square")] {
            let c = try EndToEndTests.run(["caption", "--model", model, "--adapter", out,
                                           "--image", Fixtures.root.appendingPathComponent("e2e/images/\(image)").path])
            #expect(c.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == caption, "\(image): \(c.stdout) \(c.stderr)")
        }
    }
}

extension FinetuneCommandTests {
    @Test("finetune --freeze patch-embedding keeps SigLIP's patch embedding as stored and trains the rest; --adam-beta2 is kept for --resume")
    func frozenPatchEmbeddingAndBetas() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (train, model, out, trained, base) = try Self.fullRun(in: dir, ["--freeze", "patch-embedding", "--adam-beta2", "0.95"])
        #expect(trained.vision.embeddings.patch.weight.floats() == base.vision.embeddings.patch.weight.floats())
        #expect(trained.vision.embeddings.patch.bias == base.vision.embeddings.patch.bias)
        #expect(trained.vision.embeddings.position.floats() != base.vision.embeddings.position.floats(), "the positions are trained")
        #expect(trained.vision.postLayerNorm.weight != base.vision.postLayerNorm.weight, "the rest of the tower is trained")
        let record = try String(contentsOf: out.appendingPathComponent("trainer_options.json"), encoding: .utf8)
        #expect(record.contains("\"adamBeta2\""), "\(record)")
        // A resumed run must not change the betas under it.
        let changed = try EndToEndTests.run(["finetune", "--model", model, "--train", train.path, "--output", out.path, "--method", "full",
                                             "--freeze", "patch-embedding", "--steps", "2", "--lr", "0.01", "--resume"])
        #expect(changed.status != 0 && changed.stderr.contains("options differ"), "\(changed.stderr)")
        for bad in [["--adam-beta2", "1"], ["--adam-beta1=-0.1"]] {
            let refused = try EndToEndTests.run(["finetune", "--model", model, "--train", train.path, "--output", dir.appendingPathComponent("x").path] + bad)
            #expect(refused.status == 64 && refused.stderr.contains("--adam-beta1 and --adam-beta2"), "\(bad): \(refused.stderr)")
        }
    }
}

extension FinetuneCommandTests {
    @Test("finetune --train twice: both files' lines, each image relative to its own file, as one merged file gives; kept for --resume")
    func severalTrainFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b/deeper")
        for folder in [a, b] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        let first = try Self.dataset(a)
        try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("e2e/images/wide.png"), to: b.appendingPathComponent("other.png"))
        let second = b.appendingPathComponent("more.jsonl")
        try #"{"image": "other.png", "prefix": "caption en", "suffix": "a green triangle"}"#.write(to: second, atomically: true, encoding: .utf8)
        // The same four lines in one file beside both folders.
        let merged = dir.appendingPathComponent("merged.jsonl")
        let lines = try String(contentsOf: first, encoding: .utf8).split(separator: "\n")
            .map { $0.replacingOccurrences(of: #""image": ""#, with: #""image": "a/"#) }
            + [#"{"image": "b/deeper/other.png", "prefix": "caption en", "suffix": "a green triangle"}"#]
        try (lines.joined(separator: "\n") + "\n").write(to: merged, atomically: true, encoding: .utf8)
        let model = Fixtures.model("e2e-pg1").path
        func train(_ files: [URL], into name: String, _ extra: [String] = []) throws -> (status: Int32, stderr: String, out: URL) {
            let out = dir.appendingPathComponent(name)
            let run = try EndToEndTests.run(["finetune", "--model", model, "--output", out.path, "--method", "full", "--optimizer", "sgd",
                                             "--schedule", "constant", "--steps", "2", "--lr", "0.01", "--batch-size", "4", "--shuffle", "--seed", "5"]
                                            + files.flatMap { ["--train", $0.path] } + extra)
            return (run.status, run.stderr, out)
        }
        let two = try train([first, second], into: "two"), one = try train([merged], into: "one")
        #expect(two.status == 0 && one.status == 0, "\(two.stderr) \(one.stderr)")
        #expect(two.stderr.contains("4 training examples"), "\(two.stderr)")
        let weights = { (out: URL) in try Data(contentsOf: out.appendingPathComponent("model/model.safetensors")) }
        #expect(try weights(two.out) == weights(one.out), "two files train as their merged lines do")
        #expect(try weights(two.out) != Data(contentsOf: Fixtures.model("e2e-pg1").appendingPathComponent("model.safetensors")))
        // --resume needs the same files, in the same order.
        let swapped = try train([second, first], into: "two", ["--resume"])
        #expect(swapped.status != 0 && swapped.stderr.contains("options differ"), "\(swapped.stderr)")
        let alone = try train([first], into: "two", ["--resume"])
        #expect(alone.status != 0 && alone.stderr.contains("options differ"), "\(alone.stderr)")
        let same = try train([first, second], into: "two", ["--resume"])
        #expect(same.status == 0, "\(same.stderr)")
    }
}
