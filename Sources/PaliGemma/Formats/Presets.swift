import Foundation
import PaliGemmaJSON

/// config.json of the published checkpoints (as the hub ships them), for building models of
/// the real shapes without their weights: size checks, random-weight benchmarks.
public enum Presets {
    public static let names = ["paligemma-3b-224", "paligemma-3b-448", "paligemma-3b-896",
                               "paligemma2-3b-224", "paligemma2-3b-448", "paligemma2-3b-896",
                               "paligemma2-10b-224", "paligemma2-10b-448", "paligemma2-28b-224", "paligemma2-28b-448"]

    /// The config.json text of a preset, or nil for an unknown name.
    public static func json(_ name: String, dtype: String = "bfloat16") -> String? {
        let parts = name.split(separator: "-")
        guard parts.count == 3, let size = Int(parts[2]), [224, 448, 896].contains(size) else { return nil }
        switch (parts[0], parts[1]) {
        case ("paligemma", "3b"): return paliGemma1(imageSize: size, dtype: dtype)
        case ("paligemma2", "3b"): return paliGemma2(width: 2304, layers: 26, mlp: 9216, heads: 8, kvHeads: 4, headDim: 256, queryScalar: 256, imageSize: size, dtype: dtype)
        case ("paligemma2", "10b"): return paliGemma2(width: 3584, layers: 42, mlp: 14336, heads: 16, kvHeads: 8, headDim: 256, queryScalar: 256, imageSize: size, dtype: dtype)
        case ("paligemma2", "28b"): return paliGemma2(width: 4608, layers: 46, mlp: 36864, heads: 32, kvHeads: 16, headDim: 128, queryScalar: 144, imageSize: size, dtype: dtype)
        default: return nil
        }
    }

    public static func config(_ name: String) throws -> PaliGemmaConfig {
        guard let text = json(name) else {
            throw PaliGemmaError.input("unknown preset '\(name)' (known: \(names.joined(separator: ", ")))")
        }
        return try PaliGemmaConfig.parse(Data(text.utf8), path: "preset \(name)")
    }

    /// PaliGemma 1 (Gemma 2B decoder); `vocab` rows of the embedding (the hub pads to 257216).
    public static func paliGemma1(imageSize: Int, vocab: Int = 257216, dtype: String = "float32") -> String {
        let tokens = (imageSize / 14) * (imageSize / 14)
        return text(File(
            architectures: ["PaliGemmaForConditionalGeneration"], bosTokenId: 2, eosTokenId: 1, hiddenSize: 2048,
            ignoreIndex: -100, imageTokenIndex: 257152, modelType: "paligemma", numHiddenLayers: nil, padTokenId: 0,
            projectionDim: 2048, torchDtype: dtype, transformersVersion: "4.41.0.dev0",
            textConfig: .init(architectures: nil, attnLogitSoftcapping: nil, cacheImplementation: nil, finalLogitSoftcapping: nil,
                              headDim: nil, hiddenActivation: nil, hiddenSize: 2048, intermediateSize: 16384, modelType: "gemma",
                              numAttentionHeads: 8, numHiddenLayers: 18, numImageTokens: tokens, numKeyValueHeads: 1,
                              queryPreAttnScalar: nil, slidingWindow: nil, torchDtype: dtype, vocabSize: vocab),
            visionConfig: .init(imageSize: imageSize, numImageTokens: tokens, numPositions: nil, projectionDim: 2048,
                                projectorHiddenAct: "gelu_fast", torchDtype: nil)))
    }

    /// PaliGemma 2 (Gemma 2 decoders).
    public static func paliGemma2(width: Int, layers: Int, mlp: Int, heads: Int, kvHeads: Int, headDim: Int,
                                  queryScalar: Int, imageSize: Int, dtype: String = "bfloat16") -> String {
        let tokens = (imageSize / 14) * (imageSize / 14)
        return text(File(
            architectures: ["PaliGemmaForConditionalGeneration"], bosTokenId: 2, eosTokenId: 1, hiddenSize: 2048,
            ignoreIndex: nil, imageTokenIndex: 257152, modelType: "paligemma", numHiddenLayers: layers, padTokenId: 0,
            projectionDim: width, torchDtype: dtype, transformersVersion: "4.47.0.dev0",
            textConfig: .init(architectures: ["Gemma2ForCausalLM"], attnLogitSoftcapping: 50, cacheImplementation: "hybrid",
                              finalLogitSoftcapping: 30, headDim: headDim, hiddenActivation: "gelu_pytorch_tanh", hiddenSize: width,
                              intermediateSize: mlp, modelType: "gemma2", numAttentionHeads: heads, numHiddenLayers: layers,
                              numImageTokens: tokens, numKeyValueHeads: kvHeads, queryPreAttnScalar: queryScalar,
                              slidingWindow: 4096, torchDtype: dtype, vocabSize: 257216),
            visionConfig: .init(imageSize: imageSize, numImageTokens: tokens, numPositions: tokens, projectionDim: width,
                                projectorHiddenAct: nil, torchDtype: dtype)))
    }

    /// `file` as config.json text, laid out as the hub writes it (`JSONOutput.fileData`). Its
    /// members are integers, strings and booleans, which always encode (only a non-finite
    /// floating-point number does not); were it to fail, the text is empty, and parsing it
    /// reports the preset as not valid JSON.
    static func text(_ file: File) -> String {
        (try? JSONOutput.fileData(file)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// The keys of a published config.json that the presets carry (absent when nil).
    struct File: Encodable {
        struct Text: Encodable {
            let architectures: [String]?
            let attnLogitSoftcapping: Int?
            let cacheImplementation: String?
            let finalLogitSoftcapping: Int?
            let headDim: Int?
            let hiddenActivation: String?
            let hiddenSize: Int
            let intermediateSize: Int
            let modelType: String
            let numAttentionHeads: Int
            let numHiddenLayers: Int
            let numImageTokens: Int
            let numKeyValueHeads: Int
            let queryPreAttnScalar: Int?
            let slidingWindow: Int?
            let torchDtype: String
            let vocabSize: Int

            enum CodingKeys: String, CodingKey {
                case architectures, attnLogitSoftcapping = "attn_logit_softcapping", cacheImplementation = "cache_implementation"
                case finalLogitSoftcapping = "final_logit_softcapping", headDim = "head_dim", hiddenActivation = "hidden_activation"
                case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", modelType = "model_type"
                case numAttentionHeads = "num_attention_heads", numHiddenLayers = "num_hidden_layers"
                case numImageTokens = "num_image_tokens", numKeyValueHeads = "num_key_value_heads"
                case queryPreAttnScalar = "query_pre_attn_scalar", slidingWindow = "sliding_window", torchDtype = "torch_dtype"
                case vocabSize = "vocab_size"
            }
        }

        /// SigLIP So400m/14 as every PaliGemma has it; the image size and what follows from it vary.
        struct Vision: Encodable {
            let hiddenSize = 1152
            let imageSize: Int
            let intermediateSize = 4304
            let modelType = "siglip_vision_model"
            let numAttentionHeads = 16
            let numHiddenLayers = 27
            let numImageTokens: Int
            let numPositions: Int?
            let patchSize = 14
            let projectionDim: Int
            let projectorHiddenAct: String?
            let torchDtype: String?
            let visionUseHead = false

            enum CodingKeys: String, CodingKey {
                case hiddenSize = "hidden_size", imageSize = "image_size", intermediateSize = "intermediate_size"
                case modelType = "model_type", numAttentionHeads = "num_attention_heads", numHiddenLayers = "num_hidden_layers"
                case numImageTokens = "num_image_tokens", numPositions = "num_positions", patchSize = "patch_size"
                case projectionDim = "projection_dim", projectorHiddenAct = "projector_hidden_act", torchDtype = "torch_dtype"
                case visionUseHead = "vision_use_head"
            }
        }

        let architectures: [String]
        let bosTokenId: Int
        let eosTokenId: Int
        let hiddenSize: Int
        let ignoreIndex: Int?
        let imageTokenIndex: Int
        let modelType: String
        let numHiddenLayers: Int?
        let padTokenId: Int
        let projectionDim: Int
        let torchDtype: String
        let transformersVersion: String
        let textConfig: Text
        let visionConfig: Vision

        enum CodingKeys: String, CodingKey {
            case architectures, bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", hiddenSize = "hidden_size"
            case ignoreIndex = "ignore_index", imageTokenIndex = "image_token_index", modelType = "model_type"
            case numHiddenLayers = "num_hidden_layers", padTokenId = "pad_token_id", projectionDim = "projection_dim"
            case torchDtype = "torch_dtype", transformersVersion = "transformers_version", textConfig = "text_config"
            case visionConfig = "vision_config"
        }
    }
}
