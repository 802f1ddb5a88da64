import Foundation
import Testing
@testable import PaliGemma

/// config.json parsing: transformers' defaults for missing keys, legacy spellings, validation.
struct ConfigTests {
    static func parse(_ json: String) throws -> PaliGemmaConfig {
        try PaliGemmaConfig.parse(Data(json.utf8), path: "config.json", strictness: .strict)
    }

    static func error(_ json: String) -> String {
        do { _ = try parse(json); Issue.record("accepted \(json)"); return "" } catch { return "\(error)" }
    }

    @Test func paliGemmaDefaults() throws {
        let c = try Self.parse(#"{"model_type": "paligemma"}"#)
        #expect(c.visionConfig.hiddenSize == 1152 && c.visionConfig.numHiddenLayers == 27)
        #expect(c.visionConfig.intermediateSize == 4096 && c.visionConfig.patchSize == 14 && c.visionConfig.imageSize == 224)
        #expect(c.textConfig.modelType == .gemma && c.textConfig.hiddenSize == 2048 && c.textConfig.numHiddenLayers == 18)
        #expect(c.textConfig.numKeyValueHeads == 1 && c.textConfig.headDim == 256 && c.textConfig.vocabSize == 257152)
        #expect(c.imageTokenIndex == 256000 && c.numImageTokens == 256)
        #expect(c.textConfig.queryScale == 1.0 / 16)
    }

    @Test func sectionDefaultsComeFromTheSectionClass() throws {
        // A text_config dict takes GemmaConfig's / Gemma2Config's own defaults for missing keys.
        let c = try Self.parse(#"{"projection_dim": 2304, "text_config": {"model_type": "gemma2"}, "vision_config": {"hidden_size": 1152}}"#)
        let t = c.textConfig
        #expect(t.modelType == .gemma2 && t.hiddenSize == 2304 && t.numHiddenLayers == 26 && t.numKeyValueHeads == 4)
        #expect(t.queryPreAttnScalar == 256 && t.attnLogitSoftcapping == 50 && t.finalLogitSoftcapping == 30)
        #expect(t.slidingWindow == 4096)
        #expect(t.slidingWindow(layer: 0) == 4096 && t.slidingWindow(layer: 1) == nil && t.slidingWindow(layer: 2) == 4096)
        #expect(c.visionConfig.patchSize == 16 && c.visionConfig.visionUseHead)  // SiglipVisionConfig defaults
    }

    @Test func legacyAndNewSpellings() throws {
        let a = try Self.parse(#"{"image_token_id": 5, "projection_dim": 64, "torch_dtype": "bfloat16", "text_config": {"hidden_size": 64, "hidden_act": "gelu", "rope_theta": 500.0, "head_dim": 8}}"#)
        #expect(a.imageTokenIndex == 5 && a.dtype == "bfloat16")
        #expect(a.textConfig.hiddenAct == "gelu_pytorch_tanh" && a.textConfig.ropeTheta == 500)
        let b = try Self.parse(#"{"projection_dim": 64, "dtype": "float32", "text_config": {"hidden_size": 64, "rope_parameters": {"rope_theta": 20.0, "rope_type": "default"}}}"#)
        #expect(b.dtype == "float32" && b.textConfig.ropeTheta == 20)
        let g2 = try Self.parse(#"{"projection_dim": 2304, "text_config": {"model_type": "gemma2", "final_logit_softcapping": null, "hidden_activation": "gelu_pytorch_tanh"}}"#)
        #expect(g2.textConfig.finalLogitSoftcapping == nil)
        #expect(g2.textConfig.attnLogitSoftcapping == 50)
    }

    @Test func rejections() {
        #expect(Self.error(#"{"model_type": "llava"}"#).contains("not a PaliGemma"))
        #expect(Self.error(#"{"text_config": {"hidden_size": "big"}}"#).contains("text_config.hidden_size"))
        #expect(Self.error(#"{"projection_dim": 64, "text_config": {"hidden_size": 64, "num_attention_heads": 3, "num_key_value_heads": 2}}"#).contains("num_key_value_heads"))
        #expect(Self.error(#"{"vision_config": {"image_size": 100, "patch_size": 14}}"#).contains("image_size"))
        #expect(Self.error(#"{"projection_dim": 100}"#).contains("projection_dim"))
        #expect(Self.error(#"{"text_config": {"hidden_act": "relu"}}"#).contains("relu"))
        #expect(Self.error(#"{"text_config": {"rope_parameters": {"rope_type": "linear", "factor": 2}}}"#).contains("rope"))
        #expect(Self.error(#"{"foo": 1}"#).contains("'foo'"))
        #expect(Self.error(#"{"vision_config": {"use_magic": true}}"#).contains("vision_config.use_magic"))
        #expect(Self.error(#"{"text_config": {"model_type": "gemma2", "layer_types": ["full_attention"]}}"#).contains("layer_types"))
        #expect(Self.error("[]").contains("JSON object"))
    }
}
