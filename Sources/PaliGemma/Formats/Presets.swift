import Foundation

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
        return """
        {"architectures": ["PaliGemmaForConditionalGeneration"], "bos_token_id": 2, "eos_token_id": 1,
         "hidden_size": 2048, "ignore_index": -100, "image_token_index": 257152, "model_type": "paligemma",
         "pad_token_id": 0, "projection_dim": 2048, "torch_dtype": "\(dtype)", "transformers_version": "4.41.0.dev0",
         "text_config": {"hidden_size": 2048, "intermediate_size": 16384, "model_type": "gemma",
           "num_attention_heads": 8, "num_hidden_layers": 18, "num_image_tokens": \(tokens),
           "num_key_value_heads": 1, "torch_dtype": "\(dtype)", "vocab_size": \(vocab)},
         "vision_config": {"hidden_size": 1152, "image_size": \(imageSize), "intermediate_size": 4304,
           "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
           "num_image_tokens": \(tokens), "patch_size": 14, "projection_dim": 2048,
           "projector_hidden_act": "gelu_fast", "vision_use_head": false}}
        """
    }

    /// PaliGemma 2 (Gemma 2 decoders).
    public static func paliGemma2(width: Int, layers: Int, mlp: Int, heads: Int, kvHeads: Int, headDim: Int,
                                  queryScalar: Int, imageSize: Int, dtype: String = "bfloat16") -> String {
        let tokens = (imageSize / 14) * (imageSize / 14)
        return """
        {"architectures": ["PaliGemmaForConditionalGeneration"], "bos_token_id": 2, "eos_token_id": 1,
         "hidden_size": 2048, "image_token_index": 257152, "model_type": "paligemma", "num_hidden_layers": \(layers),
         "pad_token_id": 0, "projection_dim": \(width), "torch_dtype": "\(dtype)", "transformers_version": "4.47.0.dev0",
         "text_config": {"architectures": ["Gemma2ForCausalLM"], "attn_logit_softcapping": 50.0, "cache_implementation": "hybrid",
           "final_logit_softcapping": 30.0, "head_dim": \(headDim), "hidden_activation": "gelu_pytorch_tanh",
           "hidden_size": \(width), "intermediate_size": \(mlp), "model_type": "gemma2", "num_attention_heads": \(heads),
           "num_hidden_layers": \(layers), "num_image_tokens": \(tokens), "num_key_value_heads": \(kvHeads),
           "query_pre_attn_scalar": \(queryScalar), "sliding_window": 4096, "torch_dtype": "\(dtype)", "vocab_size": 257216},
         "vision_config": {"hidden_size": 1152, "image_size": \(imageSize), "intermediate_size": 4304,
           "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
           "num_image_tokens": \(tokens), "num_positions": \(tokens), "patch_size": 14, "projection_dim": \(width),
           "torch_dtype": "\(dtype)", "vision_use_head": false}}
        """
    }
}
