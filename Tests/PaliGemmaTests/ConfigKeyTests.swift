import Foundation
import Testing
@testable import PaliGemma

/// config.json keys: a key this runtime does not know loads and is reported once (or is refused
/// in strict mode); a value known to change the computation in a way not implemented is refused
/// by name in either mode.
struct ConfigKeyTests {
    static func parse(_ json: String, _ strictness: ConfigStrictness = .lenient) throws -> PaliGemmaConfig {
        try PaliGemmaConfig.parse(Data(json.utf8), path: "config.json", strictness: strictness)
    }

    /// A fixture folder copied, with `edit` applied to its config.json text.
    static func folder(_ name: String, editing edit: (String) -> String) throws -> URL {
        let dir = try copyFixture(name)
        let url = dir.appendingPathComponent("config.json")
        let text = try String(contentsOf: url, encoding: .utf8)
        let edited = edit(text)
        #expect(edited != text, "the edit did not apply")
        try edited.write(to: url, atomically: true, encoding: .utf8)
        return dir
    }

    /// pg1-f32 / e2e-pg1 with a harmless unknown key in each section.
    static func withUnknownKeys(_ name: String) throws -> URL {
        try folder(name) {
            $0.replacingOccurrences(of: "\"head_dim\": 16,", with: "\"head_dim\": 16, \"mystery_option\": true,")
                .replacingOccurrences(of: "\"ignore_index\": -100,", with: "\"ignore_index\": -100, \"my_tool_version\": \"1.2\",")
                .replacingOccurrences(of: "\"projector_hidden_act\": \"gelu_fast\",",
                                      with: "\"projector_hidden_act\": \"gelu_fast\", \"lora_rank\": 8,")
        }
    }

    static let unknown = ["my_tool_version", "text_config.mystery_option", "vision_config.lora_rank"]

    // MARK: Refused by name

    struct Refusal: CustomTestStringConvertible, Sendable {
        let json: String
        let key: String
        var testDescription: String { key }
    }

    static let refusals: [Refusal] = [
        .init(json: #"{"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": true}}"#, key: "quantization_config"),
        .init(json: #"{"text_config": {"quantization_config": {"quant_method": "gptq", "bits": 4}}}"#, key: "text_config.quantization_config"),
        .init(json: #"{"compression_config": {"quant_method": "compressed-tensors"}}"#, key: "compression_config"),
        .init(json: #"{"model_type": "llava"}"#, key: "model_type"),
        .init(json: #"{"text_config": {"model_type": "gemma3_text"}}"#, key: "text_config.model_type"),
        .init(json: #"{"vision_config": {"model_type": "clip_vision_model"}}"#, key: "vision_config.model_type"),
        .init(json: #"{"text_config": {"rope_scaling": {"type": "linear", "factor": 2.0}}}"#, key: "text_config.rope_scaling.type"),
        .init(json: #"{"text_config": {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}}"#, key: "text_config.rope_scaling.rope_type"),
        .init(json: #"{"text_config": {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}}}"#,
              key: "text_config.rope_parameters.rope_type"),
        .init(json: #"{"text_config": {"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}}}"#,
              key: "text_config.rope_parameters.partial_rotary_factor"),
        .init(json: #"{"text_config": {"partial_rotary_factor": 0.25}}"#, key: "text_config.partial_rotary_factor"),
        .init(json: #"{"text_config": {"model_type": "gemma2", "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1000000.0}, "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}}}"#,
              key: "text_config.rope_parameters.full_attention"),
        .init(json: #"{"per_layer_config": {"3": {"skip": ["mlp"]}}}"#, key: "per_layer_config"),
        .init(json: #"{"tie_word_embeddings": false, "text_config": {"tie_word_embeddings": true}}"#, key: "tie_word_embeddings"),
    ]

    @Test("a value this runtime does not implement is refused by name, in either mode", arguments: refusals)
    func refused(_ r: Refusal) {
        for strictness in [ConfigStrictness.lenient, .strict] {
            do {
                _ = try Self.parse(r.json, strictness)
                Issue.record("accepted \(r.json)")
            } catch let PaliGemmaError.unsupportedConfig(path, key, reason) {
                #expect(path == "config.json" && key == r.key, "\(key): \(reason)")
                #expect("\(PaliGemmaError.unsupportedConfig(path: path, key: key, reason: reason))".contains("'\(r.key)'"))
            } catch {
                Issue.record("\(r.key): unexpected error \(error)")
            }
        }
    }

    @Test func refusedInAFolderToo() throws {
        let dir = try Self.folder("pg1-f32") {
            $0.replacingOccurrences(of: "\"model_type\": \"paligemma\",",
                                    with: "\"model_type\": \"paligemma\", \"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 4},")
        }
        let message = CheckpointTests.loadError(dir, configStrictness: .lenient)
        #expect(message.contains("'quantization_config'") && message.contains("awq") && message.contains("not supported"), "\(message)")
    }

    @Test("known keys that change nothing here load silently, whatever their value")
    func harmlessKnownKeys() throws {
        let c = try Self.parse(#"""
            {"quantization_config": null, "per_layer_config": null, "tie_word_embeddings": true, "projection_dim": 3072,
             "text_config": {"use_bidirectional_attention": true, "rope_scaling": null, "tie_word_embeddings": true,
                             "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0}},
             "vision_config": {"vision_use_head": false, "model_type": "siglip_vision_model"}}
            """#, .strict)
        #expect(c.unknownKeys.isEmpty)
        let off = try Self.parse(#"{"projection_dim": 3072, "text_config": {"use_bidirectional_attention": false, "rope_scaling": {"rope_type": "default"}}}"#, .strict)
        #expect(off.unknownKeys.isEmpty)
    }

    @Test("a top-level tie_word_embeddings applies when text_config has none (transformers 5.x)")
    func topLevelTie() throws {
        #expect(try Self.parse(#"{"tie_word_embeddings": false}"#).textConfig.tieWordEmbeddings == false)
        #expect(try Self.parse(#"{"tie_word_embeddings": false, "projection_dim": 3072, "text_config": {"tie_word_embeddings": false}}"#).textConfig.tieWordEmbeddings == false)
        #expect(try Self.parse(#"{"projection_dim": 3072, "text_config": {"tie_word_embeddings": false}}"#).textConfig.tieWordEmbeddings == false)
        #expect(try Self.parse("{}").textConfig.tieWordEmbeddings)
    }

    // MARK: Unknown keys

    @Test("an unknown key loads, and is reported once, in file order, as a dotted path")
    func unknownKeysAreReported() throws {
        let dir = try Self.withUnknownKeys("pg1-f32")
        let model = try PaliGemmaModel(directory: dir)
        #expect(model.config.unknownKeys == Self.unknown)
        let checkpoint = try Checkpoint(directory: dir)
        #expect(checkpoint.config.unknownKeys == Self.unknown)
        // The keys change nothing: the same logits as the fixture itself.
        let plain = try PaliGemmaModel(directory: Fixtures.model("pg1-f32"), configStrictness: .strict)
        #expect(plain.config.unknownKeys.isEmpty)
        let ids = [2, 17, 42, 108]
        let a = try model.forward(ids: ids, imageFeatures: nil, prefixLength: 4, cache: model.makeCache(capacity: 8), logits: .all)
        let b = try plain.forward(ids: ids, imageFeatures: nil, prefixLength: 4, cache: plain.makeCache(capacity: 8), logits: .all)
        #expect(a.values == b.values)
    }

    @Test func thePipelineReportsThem() throws {
        let pipeline = try PaliGemmaPipeline(directory: Self.withUnknownKeys("e2e-pg1"))
        #expect(pipeline.model.config.unknownKeys == Self.unknown)
    }

    @Test("strict mode refuses an unknown key, naming it and the others")
    func strictModeRefusesThem() throws {
        let dir = try Self.withUnknownKeys("pg1-f32")
        do {
            _ = try Checkpoint(directory: dir, configStrictness: .strict)
            Issue.record("strict mode accepted unknown keys")
        } catch let PaliGemmaError.config(_, key, reason) {
            #expect(key == "my_tool_version")
            #expect(reason.contains("unknown") && reason.contains("text_config.mystery_option, vision_config.lora_rank"), "\(reason)")
        }
        #expect(throws: PaliGemmaError.self) { try Self.parse(#"{"text_config": {"foo": 1}}"#, .strict) }
        #expect(try Self.parse(#"{"projection_dim": 3072, "text_config": {"foo": 1}}"#).unknownKeys == ["text_config.foo"])
    }

    @Test("every fixture folder and preset loads in strict mode")
    func fixturesAreStrict() throws {
        let models = Fixtures.root.appendingPathComponent("models")
        let names = try FileManager.default.contentsOfDirectory(atPath: models.path).filter { !$0.hasPrefix(".") }.sorted()
        #expect(names.count >= 6)
        for name in names {
            let checkpoint = try Checkpoint(directory: Fixtures.model(name), configStrictness: .strict)
            #expect(checkpoint.config.unknownKeys.isEmpty, "\(name)")
        }
        for name in Presets.names {
            let json = try #require(Presets.json(name))
            #expect(try Self.parse(json, .strict).unknownKeys.isEmpty, "\(name)")
        }
    }

    // MARK: The command line

    static func warnings(_ stderr: String) -> [Substring] {
        stderr.split(separator: "\n").filter { $0.hasPrefix("paligemma: warning:") }
    }

    @Test("the command line prints one warning line naming the unknown keys")
    func commandLineWarnsOnce() throws {
        let expected = "paligemma: warning: config.json: ignoring unknown keys " + Self.unknown.joined(separator: ", ")
        let dir = try Self.withUnknownKeys("e2e-pg1")
        let image = Fixtures.root.appendingPathComponent("e2e/images/scene.jpg").path
        let generate = try EndToEndTests.run(["generate", "--model", dir.path, "--image", image, "--prompt", "caption en", "--max-tokens", "2"])
        #expect(generate.status == 0, "\(generate.stderr)")
        #expect(Self.warnings(generate.stderr) == [Substring(expected)], "\(generate.stderr)")
        let caption = try EndToEndTests.run(["caption", "--model", dir.path, "--image", image, "--max-tokens", "2", "--json"])
        #expect(caption.status == 0 && Self.warnings(caption.stderr) == [Substring(expected)], "\(caption.stderr)")
        let inspect = try EndToEndTests.run(["inspect", "--model", dir.path])
        #expect(inspect.status == 0 && Self.warnings(inspect.stderr) == [Substring(expected)], "\(inspect.stderr)")

        let quiet = try EndToEndTests.run(["inspect", "--model", dir.path, "--allow-unknown-config-keys"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "\(quiet.stderr)")
        let strict = try EndToEndTests.run(["inspect", "--model", dir.path, "--strict-config"])
        #expect(strict.status == 66 && strict.stderr.contains("'my_tool_version'"), "\(strict.stderr)")
        let clean = try EndToEndTests.run(["inspect", "--model", Fixtures.model("e2e-pg1").path, "--strict-config"])
        #expect(clean.status == 0 && clean.stderr.isEmpty, "\(clean.stderr)")
        let both = try EndToEndTests.run(["inspect", "--model", dir.path, "--strict-config", "--allow-unknown-config-keys"])
        #expect(both.status == 64)
    }

    @Test func commandLineRefusesByName() throws {
        let dir = try Self.folder("e2e-pg1") {
            $0.replacingOccurrences(of: "\"head_dim\": 16,", with: "\"head_dim\": 16, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0},")
        }
        let r = try EndToEndTests.run(["inspect", "--model", dir.path])
        #expect(r.status == 66 && r.stderr.contains("'text_config.rope_scaling.type'") && r.stderr.contains("linear"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
    }
}
