import PaliGemmaJSON

/// How `config.json` keys this runtime does not know are treated. Keys known to change the
/// computation in a way this runtime does not implement are refused either way
/// (`PaliGemmaError.unsupportedConfig`).
public enum ConfigStrictness: Sendable {
    /// Load, and list the unknown keys in `PaliGemmaConfig.unknownKeys` so the caller can warn:
    /// checkpoints carry keys written by many transformers versions and tools.
    case lenient
    /// Refuse any unknown key (`PaliGemmaError.config` naming it); the tests load this way.
    case strict
}

/// The config.json keys this runtime knows, per section, and the values it refuses.
///
/// Known keys either are implemented or change nothing about inference here (generation
/// defaults, training settings, bookkeeping that transformers and the hub write). Among them:
/// `text_config.use_bidirectional_attention`, which transformers 5.x sets to true in every
/// PaliGemma config and which there only makes the image + prompt prefix bidirectional, as this
/// runtime always does (its token_type_ids mask is explicit; false changes nothing either), and
/// `vision_config.vision_use_head` (the pooling head is never run). Any other key is unknown:
/// reported, or refused in strict mode.
///
/// Refused by name (`checkSupported`), whatever the strictness: weights quantized by other tools
/// (`quantization_config`, `compression_config`), per-layer architecture overrides
/// (`per_layer_config`), a model type other than PaliGemma / Gemma or Gemma 2 / SigLIP, scaled
/// or partial rotary embeddings (`rope_scaling`, `rope_parameters.rope_type` other than
/// default, `partial_rotary_factor` other than 1, RoPE parameters per layer type), and a
/// top-level `tie_word_embeddings` that contradicts `text_config`'s (transformers 5.x follows
/// the top-level one, 4.x text_config's).
enum ConfigKeys {
    /// Written by transformers' PretrainedConfig (4.x and 5.x) into every section. The last three
    /// are refused by `checkSupported` unless null.
    static let common: Set<String> = [
        "_name_or_path", "architectures", "transformers_version", "model_type", "dtype", "torch_dtype",
        "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
        "tf_legacy_loss", "pruned_heads", "tie_word_embeddings", "chunk_size_feed_forward",
        "is_encoder_decoder", "is_decoder", "cross_attention_hidden_size", "add_cross_attention",
        "tie_encoder_decoder", "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
        "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
        "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
        "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate",
        "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
        "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
        "finetuning_task", "id2label", "label2id", "num_labels", "tokenizer_class", "prefix",
        "bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
        "task_specific_params", "problem_type", "_attn_implementation_autoset", "_commit_hash",
        "attn_implementation", "_attn_implementation", "experts_implementation", "initializer_range",
        "use_cache", "attention_dropout", "dropout", "gradient_checkpointing",
        "quantization_config", "compression_config", "per_layer_config",
    ]

    static let paliGemma: Set<String> = common.union([
        "vision_config", "text_config", "image_token_index", "image_token_id", "projection_dim",
        "hidden_size", "vocab_size", "ignore_index", "num_hidden_layers", "_vocab_size",
    ])

    static let vision: Set<String> = common.union([
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
        "image_size", "patch_size", "hidden_act", "layer_norm_eps", "vision_use_head", "projection_dim",
        "num_image_tokens", "num_positions", "projector_hidden_act",
    ])

    static let text: Set<String> = common.union([
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "hidden_act", "hidden_activation", "max_position_embeddings",
        "rms_norm_eps", "rope_theta", "rope_parameters", "rope_scaling", "partial_rotary_factor",
        "attention_bias", "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping",
        "sliding_window", "layer_types", "num_image_tokens", "use_bidirectional_attention",
        "cache_implementation",
    ])

    /// Every unknown key, as a dotted path ("text_config.foo"), in file order.
    static func unknown(in json: JSONValue) -> [String] {
        guard let top = json.objectValue else { return [] }
        var keys: [String] = []
        for (key, value) in top {
            if !paliGemma.contains(key) { keys.append(key); continue }
            let known: Set<String>? = key == "vision_config" ? vision : key == "text_config" ? text : nil
            if let known, let section = value.objectValue {
                keys += section.map(\.key).filter { !known.contains($0) }.map { "\(key).\($0)" }
            }
        }
        return keys
    }

    /// Throws `PaliGemmaError.unsupportedConfig` naming the first key whose value changes the
    /// computation in a way this runtime does not implement.
    static func checkSupported(_ json: JSONValue, path: String) throws {
        func refuse(_ key: String, _ reason: String) -> PaliGemmaError { .unsupportedConfig(path: path, key: key, reason: reason) }
        let text = json["text_config"].flatMap { $0.objectValue != nil ? $0 : nil }
        let vision = json["vision_config"].flatMap { $0.objectValue != nil ? $0 : nil }
        let sections = [("", json), ("text_config.", text), ("vision_config.", vision)].compactMap { p, s in s.map { (p, $0) } }

        let modelTypes: [(key: String, value: JSONValue?, allowed: [String], what: String)] = [
            ("model_type", json["model_type"], ["paligemma"], "is not a PaliGemma checkpoint"),
            ("text_config.model_type", text?["model_type"], ["gemma", "gemma2"],
             "is not a decoder this runtime implements (Gemma for PaliGemma 1, Gemma 2 for PaliGemma 2)"),
            ("vision_config.model_type", vision?["model_type"], ["siglip_vision_model"],
             "is not a vision tower this runtime implements (SigLIP)"),
        ]
        for (key, value, allowed, what) in modelTypes {
            guard let value, !value.isNull else { continue }
            if let name = value.stringValue, allowed.contains(name) { continue }
            let expected = allowed.map { "'\($0)'" }.joined(separator: " or ")
            throw refuse(key, "\(value.stringValue.map { "'\($0)'" } ?? value.typeName) \(what) (expected \(expected))")
        }

        for (prefix, section) in sections {
            for key in ["quantization_config", "compression_config"] {
                guard let q = section[key], !q.isNull else { continue }
                let method = q["quant_method"]?.stringValue.map { " ('\($0)')" } ?? ""
                throw refuse(prefix + key, "the weights are quantized by another tool\(method) in a form this runtime cannot read; "
                    + "load the float checkpoint (`paligemma quantize` or --quantize int8 / int4 make it smaller)")
            }
            if let p = section["per_layer_config"], !p.isNull {
                throw refuse(prefix + "per_layer_config", "per-layer overrides of the architecture are not implemented")
            }
        }

        if let text {
            if let scaling = text["rope_scaling"], !scaling.isNull {
                try checkRope(scaling, key: "text_config.rope_scaling", refuse)
            }
            if let parameters = text["rope_parameters"], !parameters.isNull {
                if let perType = parameters.objectValue?.first(where: { $0.value.objectValue != nil }) {
                    throw refuse("text_config.rope_parameters.\(perType.key)",
                        "RoPE parameters per layer type are not implemented; one set applies to every layer")
                }
                try checkRope(parameters, key: "text_config.rope_parameters", refuse)
            }
            try checkRotaryFactor(text, key: "text_config.partial_rotary_factor", refuse)

            if let top = json["tie_word_embeddings"]?.boolValue, let inner = text["tie_word_embeddings"]?.boolValue, top != inner {
                throw refuse("tie_word_embeddings",
                    "is \(top) but text_config.tie_word_embeddings is \(inner): transformers 5.x ties the output projection to the embedding "
                    + "by the top-level value and 4.x by text_config's, so which output projection the checkpoint means is unclear; make them agree")
            }
        }
    }

    /// A RoPE parameter object (`rope_parameters`, or 4.x's `rope_scaling`) must ask for the
    /// default rotary embedding over whole heads.
    private static func checkRope(_ value: JSONValue, key: String, _ refuse: (String, String) -> PaliGemmaError) throws {
        guard value.objectValue != nil else { throw refuse(key, "expected an object of RoPE parameters, got \(value.typeName)") }
        for typeKey in ["rope_type", "type"] {
            guard let type = value[typeKey], !type.isNull else { continue }
            guard type.stringValue == "default" else {
                throw refuse("\(key).\(typeKey)", "RoPE type \(type.stringValue.map { "'\($0)'" } ?? type.typeName) (scaled or extended "
                    + "rotary embeddings) is not implemented; only 'default' is")
            }
        }
        try checkRotaryFactor(value, key: "\(key).partial_rotary_factor", refuse)
    }

    /// `partial_rotary_factor`, if present, must be 1 (rotary embedding over the whole head).
    private static func checkRotaryFactor(_ section: JSONValue, key: String, _ refuse: (String, String) -> PaliGemmaError) throws {
        guard let factor = section["partial_rotary_factor"], !factor.isNull else { return }
        guard case .number(let value) = factor else { throw refuse(key, "expected a number, got \(factor.typeName)") }
        guard value == 1 else {
            throw refuse(key, "rotary embeddings over part of each head are not implemented (expected 1, got \(value))")
        }
    }
}
