import PaliGemmaJSON

/// The config.json keys this runtime knows, per section. Keys that change nothing about
/// inference here (generation defaults, training settings, bookkeeping that transformers and
/// the hub write) are listed as known; anything else is reported as unknown, so a checkpoint
/// that needs a feature this runtime lacks fails loudly instead of running wrongly.
enum ConfigKeys {
    /// Written by transformers' PretrainedConfig (4.x and 5.x) into every section.
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
        "attn_implementation", "_attn_implementation", "initializer_range", "use_cache",
        "attention_dropout", "dropout", "gradient_checkpointing",
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
        "rms_norm_eps", "rope_theta", "rope_parameters", "rope_scaling", "attention_bias",
        "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping", "sliding_window",
        "layer_types", "num_image_tokens", "use_bidirectional_attention", "cache_implementation",
    ])

    /// The first unknown key, as a dotted path ("text_config.foo"), or nil.
    static func firstUnknown(in json: JSONValue) -> String? {
        guard let top = json.objectValue else { return nil }
        for (key, value) in top {
            if !paliGemma.contains(key) { return key }
            if key == "vision_config", let section = value.objectValue {
                if let bad = section.first(where: { !vision.contains($0.0) }) { return "vision_config.\(bad.0)" }
            }
            if key == "text_config", let section = value.objectValue {
                if let bad = section.first(where: { !text.contains($0.0) }) { return "text_config.\(bad.0)" }
                if let scaling = section.first(where: { $0.0 == "rope_scaling" })?.1, !scaling.isNull {
                    return "text_config.rope_scaling"
                }
            }
        }
        return nil
    }
}
