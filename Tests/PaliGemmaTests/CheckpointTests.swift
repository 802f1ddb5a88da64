import Foundation
import Testing
@testable import PaliGemma

/// Strict loading: a folder loads only if every tensor is used and has the expected shape,
/// and each failure names the tensor or file.
struct CheckpointTests {
    /// Rewrites `model.safetensors` in `dir` after `edit` changes its list of tensors.
    static func rewrite(_ dir: URL, _ edit: (inout [SafetensorsWriter.Item]) -> Void) throws {
        let url = dir.appendingPathComponent("model.safetensors")
        let file = try SafetensorsFile(path: url.path)
        var items = try file.names.map { name -> SafetensorsWriter.Item in
            let t = try file.tensor(name)
            let bytes = Array(UnsafeRawBufferPointer(start: t.pointer, count: t.byteCount))
            return SafetensorsWriter.Item(name: name, dtype: t.dtype, shape: t.shape, bytes: bytes)
        }
        edit(&items)
        try SafetensorsWriter.write(items, to: url)
    }

    static func loadError(_ dir: URL, configStrictness: ConfigStrictness = .strict) -> String {
        do {
            _ = try PaliGemmaModel(directory: dir, configStrictness: configStrictness)
            Issue.record("loaded a broken checkpoint")
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func loadsEveryFixture() throws {
        for name in ModelParityTests.names {
            let checkpoint = try Checkpoint(directory: Fixtures.model(name))
            let loader = WeightLoader(checkpoint: checkpoint)
            _ = try PaliGemmaModel(config: checkpoint.config, loader: loader, directory: nil)
            try loader.verifyAllUsed()
            #expect(Set(loader.declared.map(\.name)) == Set(checkpoint.tensorNames), "\(name)")
        }
    }

    @Test func missingTensor() throws {
        let dir = try copyFixture("pg1-f32")
        let victim = "language_model.model.layers.1.mlp.up_proj.weight"
        try Self.rewrite(dir) { $0.removeAll { $0.name == victim } }
        let message = Self.loadError(dir)
        #expect(message.contains(victim) && message.contains("missing"), "\(message)")
    }

    @Test func unexpectedTensor() throws {
        let dir = try copyFixture("pg1-f32")
        try Self.rewrite(dir) { $0.append(.float32("language_model.model.layers.9.extra.weight", shape: [2], [1, 2])) }
        let message = Self.loadError(dir)
        #expect(message.contains("language_model.model.layers.9.extra.weight") && message.contains("unexpected"), "\(message)")
    }

    @Test func misshapenTensor() throws {
        let dir = try copyFixture("pg1-f32")
        let victim = "vision_tower.vision_model.post_layernorm.bias"
        try Self.rewrite(dir) { items in
            if let i = items.firstIndex(where: { $0.name == victim }) {
                items[i] = .float32(victim, shape: [31], [Float](repeating: 0, count: 31))
            }
        }
        let message = Self.loadError(dir)
        #expect(message.contains(victim) && message.contains("[31]") && message.contains("[32]"), "\(message)")
    }

    @Test func integerWeight() throws {
        let dir = try copyFixture("pg1-f32")
        let victim = "multi_modal_projector.linear.bias"
        try Self.rewrite(dir) { items in
            if let i = items.firstIndex(where: { $0.name == victim }) { items[i] = .int64(victim, shape: [64], [Int](repeating: 0, count: 64)) }
        }
        let message = Self.loadError(dir)
        #expect(message.contains(victim) && message.contains("I64"), "\(message)")
    }

    @Test func sameWeightUnderTwoSpellings() throws {
        let dir = try copyFixture("pg1-f32")
        try Self.rewrite(dir) { $0.append(.float32("vision_tower.post_layernorm.bias", shape: [32], [Float](repeating: 0, count: 32))) }
        let message = Self.loadError(dir)
        #expect(message.contains("vision_tower.post_layernorm.bias") && message.contains("also appears"), "\(message)")
    }

    @Test func spellingsAreCanonicalised() {
        #expect(Checkpoint.canonicalName("vision_tower.encoder.layers.0.mlp.fc1.weight") == "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight")
        #expect(Checkpoint.canonicalName("model.vision_tower.vision_model.post_layernorm.bias") == "vision_tower.vision_model.post_layernorm.bias")
        #expect(Checkpoint.canonicalName("model.language_model.layers.3.self_attn.q_proj.weight") == "language_model.model.layers.3.self_attn.q_proj.weight")
        #expect(Checkpoint.canonicalName("model.multi_modal_projector.linear.weight") == "multi_modal_projector.linear.weight")
        #expect(Checkpoint.canonicalName("lm_head.weight") == "language_model.lm_head.weight")
        #expect(Checkpoint.canonicalName("language_model.model.norm.weight") == "language_model.model.norm.weight")
    }

    @Test func tiedHeadCopyIsAccepted() throws {
        let dir = try copyFixture("pg1-f32")
        try Self.rewrite(dir) { items in
            if let e = items.first(where: { $0.name == "language_model.model.embed_tokens.weight" }) {
                items.append(SafetensorsWriter.Item(name: "lm_head.weight", dtype: e.dtype, shape: e.shape, bytes: e.bytes))
            }
        }
        _ = try PaliGemmaModel(directory: dir)
    }

    @Test func folderProblems() throws {
        let empty = try temporaryDirectory()
        #expect(Self.loadError(empty).contains("config.json"))
        let noWeights = try temporaryDirectory()
        try FileManager.default.copyItem(at: Fixtures.model("pg1-f32").appendingPathComponent("config.json"),
                                         to: noWeights.appendingPathComponent("config.json"))
        #expect(Self.loadError(noWeights).contains("no model.safetensors"))
        let dir = try copyFixture("pg1-f32")
        try Data("{\"model_type\": \"paligemma\", \"vision_config\": ".utf8).write(to: dir.appendingPathComponent("config.json"))
        #expect(Self.loadError(dir).contains("not valid JSON"))
    }

    @Test func shardProblems() throws {
        let dir = try copyFixture("pg2-f32")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00003.safetensors"))
        #expect(Self.loadError(dir).contains("model-00002-of-00003.safetensors"))

        let dir2 = try copyFixture("pg2-f32")
        let indexURL = dir2.appendingPathComponent("model.safetensors.index.json")
        var index = try String(contentsOf: indexURL, encoding: .utf8)
        index = index.replacingOccurrences(of: "\"weight_map\": {", with: "\"weight_map\": {\"language_model.model.ghost.weight\": \"model-00001-of-00003.safetensors\", ")
        try index.write(to: indexURL, atomically: true, encoding: .utf8)
        let message = Self.loadError(dir2)
        #expect(message.contains("language_model.model.ghost.weight") && message.contains("absent"), "\(message)")
    }

    @Test func unknownConfigKey() throws {
        let dir = try copyFixture("pg1-f32")
        let url = dir.appendingPathComponent("config.json")
        var text = try String(contentsOf: url, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"head_dim\": 16,", with: "\"head_dim\": 16, \"mystery_option\": true,")
        try text.write(to: url, atomically: true, encoding: .utf8)
        let message = Self.loadError(dir)
        #expect(message.contains("text_config.mystery_option") && message.contains("unknown"), "\(message)")
        _ = try PaliGemmaModel(directory: dir, configStrictness: .lenient)
    }
}
