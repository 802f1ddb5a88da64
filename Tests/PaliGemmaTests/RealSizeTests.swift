import Foundation
import PaliGemmaJSON
import Testing
@testable import PaliGemma

/// The published checkpoints' shapes, from their configs alone (no weights): config.json as
/// the hub ships them (values from the published configs and the facts sheet).
struct RealSizeTests {
    @Test("every preset parses and builds")
    func presets() throws {
        for name in Presets.names {
            let config = try Presets.config(name)
            #expect(try PaliGemmaModel.parameterCount(config: config) > 2_900_000_000, "\(name)")
        }
        #expect(throws: PaliGemmaError.self) { try Presets.config("paligemma-7b-224") }
    }

    @Test("preset config.json texts are encoded: the hub's layout, any dtype string escaped")
    func presetTextsAreEncoded() throws {
        for name in Presets.names {
            let text = try #require(Presets.json(name, dtype: "float16"))
            #expect(text.hasPrefix("{\n  \"architectures\" : [") && text.hasSuffix("}\n"), "\(name)")
            let json = try JSONParser.parse(Array(text.utf8), rejectDuplicateKeys: true)
            for section in [json, json["text_config"], json["vision_config"]] {
                let keys = try #require(section?.objectValue).map(\.key)
                #expect(keys == keys.sorted(), "\(name)")
            }
            #expect(json["torch_dtype"]?.stringValue == "float16" && json["text_config"]?["torch_dtype"]?.stringValue == "float16")
        }
        // A dtype name is a JSON string, whatever it holds.
        let odd = #"b"f\16"#
        let text = Presets.paliGemma1(imageSize: 224, dtype: odd)
        #expect(try JSONParser.parse(Array(text.utf8))["torch_dtype"]?.stringValue == odd)
        #expect(try PaliGemmaConfig.parse(Data(text.utf8), path: "config.json").dtype == odd)
    }

    static func tensors(_ json: String) throws -> [String: [Int]] {
        let config = try PaliGemmaConfig.parse(Data(json.utf8), path: "config.json")
        return Dictionary(uniqueKeysWithValues: try PaliGemmaModel.expectedTensors(config: config).map { ($0.name, $0.shape) })
    }

    @Test("PaliGemma 1 at 224 has 2,923,335,408 parameters (257,152-row vocabulary)")
    func paliGemma1Count() throws {
        let config = try PaliGemmaConfig.parse(Data(Presets.paliGemma1(imageSize: 224, vocab: 257152).utf8), path: "config.json")
        let n = try PaliGemmaModel.parameterCount(config: config)
        print("PaliGemma 1 224 (vocab 257152): \(n) parameters")
        #expect(n == 2_923_335_408)
        // The hub's files pad the embedding to 257,216 rows: 64 x 2048 more.
        let padded = try PaliGemmaConfig.parse(Data(Presets.paliGemma1(imageSize: 224).utf8), path: "config.json")
        #expect(try PaliGemmaModel.parameterCount(config: padded) == 2_923_335_408 + 64 * 2048)
    }

    @Test("PaliGemma 1 at 224, 448 and 896 have the published shapes")
    func paliGemma1Shapes() throws {
        for (size, tokens) in [(224, 256), (448, 1024), (896, 4096)] {
            let t = try Self.tensors(Presets.paliGemma1(imageSize: size))
            #expect(t["vision_tower.vision_model.embeddings.position_embedding.weight"] == [tokens, 1152])
            #expect(t["vision_tower.vision_model.embeddings.patch_embedding.weight"] == [1152, 3, 14, 14])
            #expect(t["vision_tower.vision_model.encoder.layers.26.mlp.fc1.weight"] == [4304, 1152])
            #expect(t["vision_tower.vision_model.encoder.layers.27.mlp.fc1.weight"] == nil)
            #expect(t["multi_modal_projector.linear.weight"] == [2048, 1152])
            #expect(t["language_model.model.embed_tokens.weight"] == [257216, 2048])
            #expect(t["language_model.model.layers.17.self_attn.q_proj.weight"] == [2048, 2048])
            #expect(t["language_model.model.layers.17.self_attn.k_proj.weight"] == [256, 2048])
            #expect(t["language_model.model.layers.17.mlp.gate_proj.weight"] == [16384, 2048])
            #expect(t["language_model.model.layers.18.mlp.gate_proj.weight"] == nil)
            #expect(t["language_model.model.layers.0.pre_feedforward_layernorm.weight"] == nil)
            #expect(t["language_model.lm_head.weight"] == nil)
        }
    }

    @Test("PaliGemma 2 3B, 10B and 28B have the published decoder shapes")
    func paliGemma2Shapes() throws {
        // (width, layers, MLP, heads, kv heads, head dim, query_pre_attn_scalar)
        let variants = [("3B", 2304, 26, 9216, 8, 4, 256, 256), ("10B", 3584, 42, 14336, 16, 8, 256, 256),
                        ("28B", 4608, 46, 36864, 32, 16, 128, 144)]
        for (name, width, layers, mlp, heads, kv, hd, qs) in variants {
            for size in [224, 448] {
                let json = Presets.paliGemma2(width: width, layers: layers, mlp: mlp, heads: heads, kvHeads: kv, headDim: hd,
                                           queryScalar: qs, imageSize: size)
                let config = try PaliGemmaConfig.parse(Data(json.utf8), path: "config.json")
                let t = try Self.tensors(json)
                let last = layers - 1
                #expect(t["language_model.model.layers.\(last).self_attn.q_proj.weight"] == [heads * hd, width], "\(name)")
                #expect(t["language_model.model.layers.\(last).self_attn.k_proj.weight"] == [kv * hd, width], "\(name)")
                #expect(t["language_model.model.layers.\(last).self_attn.o_proj.weight"] == [width, heads * hd], "\(name)")
                #expect(t["language_model.model.layers.\(last).mlp.down_proj.weight"] == [width, mlp], "\(name)")
                #expect(t["language_model.model.layers.\(last).pre_feedforward_layernorm.weight"] == [width], "\(name)")
                #expect(t["language_model.model.layers.\(last).post_feedforward_layernorm.weight"] == [width], "\(name)")
                #expect(t["language_model.model.layers.\(layers).mlp.down_proj.weight"] == nil, "\(name)")
                #expect(t["multi_modal_projector.linear.weight"] == [width, 1152], "\(name)")
                #expect(t["vision_tower.vision_model.embeddings.position_embedding.weight"] == [(size / 14) * (size / 14), 1152])
                #expect(config.textConfig.queryScale == 1 / Float(qs).squareRoot(), "\(name)")
                #expect(config.textConfig.slidingWindow(layer: 0) == 4096 && config.textConfig.slidingWindow(layer: 1) == nil)
                let n = try PaliGemmaModel.parameterCount(config: config)
                print("PaliGemma 2 \(name) \(size): \(n) parameters")
            }
        }
    }
}
