import Foundation
import PaliGemmaJSON

// Codable mirrors of a PaliGemma checkpoint's config.json. Missing keys take the defaults that
// transformers (5.x) uses for the same key, so a folder loads here exactly as it loads there.
// Keys nobody here knows are listed in `PaliGemmaConfig.unknownKeys` (or refused in strict
// mode); values this runtime does not implement are refused by name (see `ConfigKeys`).

/// `vision_config`: the SigLIP vision tower (transformers' SiglipVisionConfig).
public struct SigLIPConfig: Codable, Sendable, Equatable {
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var numChannels = 3
    public var imageSize = 224
    public var patchSize = 16
    public var hiddenAct = "gelu_pytorch_tanh"
    public var layerNormEps: Float = 1e-6
    /// Whether the checkpoint has the (unused) attention-pooling head.
    public var visionUseHead = true
    public var projectionDim: Int?

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numChannels = "num_channels", imageSize = "image_size", patchSize = "patch_size"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps", visionUseHead = "vision_use_head"
        case projectionDim = "projection_dim"
    }

    public init() {}

    /// PaliGemma's defaults when `vision_config` is absent altogether.
    public static var paliGemmaDefault: SigLIPConfig {
        var c = SigLIPConfig()
        c.hiddenSize = 1152
        c.intermediateSize = 4096
        c.numHiddenLayers = 27
        c.numAttentionHeads = 16
        c.patchSize = 14
        c.imageSize = 224
        c.visionUseHead = false
        return c
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SigLIPConfig()
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        numChannels = try c.decodeIfPresent(Int.self, forKey: .numChannels) ?? d.numChannels
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? d.layerNormEps
        visionUseHead = try c.decodeIfPresent(Bool.self, forKey: .visionUseHead) ?? d.visionUseHead
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim)
    }

    public var headDim: Int { hiddenSize / numAttentionHeads }
    public var patchesPerSide: Int { imageSize / patchSize }
    public var numPatches: Int { patchesPerSide * patchesPerSide }
}

/// `text_config`: the Gemma (PaliGemma 1) or Gemma 2 (PaliGemma 2) decoder.
public struct GemmaConfig: Codable, Sendable, Equatable {
    public enum Family: String, Codable, Sendable { case gemma, gemma2 }

    public var modelType: Family = .gemma
    public var vocabSize = 256000
    public var hiddenSize = 3072
    public var intermediateSize = 24576
    public var numHiddenLayers = 28
    public var numAttentionHeads = 16
    public var numKeyValueHeads = 16
    public var headDim = 256
    public var hiddenAct = "gelu_pytorch_tanh"
    public var maxPositionEmbeddings = 8192
    public var rmsNormEps: Float = 1e-6
    public var ropeTheta: Float = 10000
    public var attentionBias = false
    public var tieWordEmbeddings = true
    // Gemma 2 only (nil / unused for Gemma):
    public var queryPreAttnScalar: Float?
    public var attnLogitSoftcapping: Float?
    public var finalLogitSoftcapping: Float?
    public var slidingWindow: Int?
    /// "sliding_attention" or "full_attention" per layer.
    public var layerTypes: [String]?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim", hiddenAct = "hidden_act", hiddenActivation = "hidden_activation"
        case maxPositionEmbeddings = "max_position_embeddings", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeParameters = "rope_parameters", attentionBias = "attention_bias"
        case tieWordEmbeddings = "tie_word_embeddings", queryPreAttnScalar = "query_pre_attn_scalar"
        case attnLogitSoftcapping = "attn_logit_softcapping", finalLogitSoftcapping = "final_logit_softcapping"
        case slidingWindow = "sliding_window", layerTypes = "layer_types"
    }

    /// The part of `rope_parameters` used here (`ConfigKeys` refuses a type other than default).
    struct RopeParameters: Codable {
        var ropeTheta: Float?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta" }
    }

    public init(family: Family = .gemma) {
        modelType = family
        if family == .gemma2 {
            hiddenSize = 2304
            intermediateSize = 9216
            numHiddenLayers = 26
            numAttentionHeads = 8
            numKeyValueHeads = 4
            queryPreAttnScalar = 256
            attnLogitSoftcapping = 50
            finalLogitSoftcapping = 30
            slidingWindow = 4096
        }
    }

    /// PaliGemma's defaults when `text_config` is absent altogether.
    public static var paliGemmaDefault: GemmaConfig {
        var c = GemmaConfig(family: .gemma)
        c.hiddenSize = 2048
        c.numHiddenLayers = 18
        c.intermediateSize = 16384
        c.numAttentionHeads = 8
        c.numKeyValueHeads = 1
        c.vocabSize = 257152
        return c
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let family = try c.decodeIfPresent(Family.self, forKey: .modelType) ?? .gemma
        let d = GemmaConfig(family: family)
        modelType = family
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? d.numKeyValueHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? d.headDim
        // Gemma 2 spells it hidden_activation; Gemma's legacy "gelu" means the tanh approximation.
        var act = try c.decodeIfPresent(String.self, forKey: .hiddenActivation)
            ?? c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct
        if family == .gemma && act == "gelu" { act = "gelu_pytorch_tanh" }
        hiddenAct = act
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? d.maxPositionEmbeddings
        rmsNormEps = try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? d.rmsNormEps
        let rope = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
        ropeTheta = try rope?.ropeTheta ?? c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? d.ropeTheta
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? d.attentionBias
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? d.tieWordEmbeddings
        // For Gemma 2 an explicit null switches a soft cap or the window off.
        func optional<T: Decodable>(_ type: T.Type, _ key: CodingKeys, _ fallback: T?) throws -> T? {
            if !c.contains(key) { return fallback }
            if try c.decodeNil(forKey: key) { return nil }
            return try c.decode(T.self, forKey: key)
        }
        queryPreAttnScalar = try optional(Float.self, .queryPreAttnScalar, d.queryPreAttnScalar)
        attnLogitSoftcapping = try optional(Float.self, .attnLogitSoftcapping, d.attnLogitSoftcapping)
        finalLogitSoftcapping = try optional(Float.self, .finalLogitSoftcapping, d.finalLogitSoftcapping)
        slidingWindow = try optional(Int.self, .slidingWindow, d.slidingWindow)
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
        if family == .gemma2 && layerTypes == nil {
            layerTypes = (0..<numHiddenLayers).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(hiddenAct, forKey: modelType == .gemma2 ? .hiddenActivation : .hiddenAct)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        if modelType == .gemma2 {
            try c.encode(queryPreAttnScalar, forKey: .queryPreAttnScalar)
            try c.encode(attnLogitSoftcapping, forKey: .attnLogitSoftcapping)
            try c.encode(finalLogitSoftcapping, forKey: .finalLogitSoftcapping)
            try c.encode(slidingWindow, forKey: .slidingWindow)
            try c.encodeIfPresent(layerTypes, forKey: .layerTypes)
        }
    }

    /// Attention logit scale: head_dim^-0.5 (Gemma) or query_pre_attn_scalar^-0.5 (Gemma 2).
    public var queryScale: Float {
        if modelType == .gemma2, let s = queryPreAttnScalar { return 1 / s.squareRoot() }
        return 1 / Float(headDim).squareRoot()
    }

    /// Sliding window of layer `i`, or nil for global attention.
    public func slidingWindow(layer i: Int) -> Int? {
        guard modelType == .gemma2, let w = slidingWindow, let types = layerTypes, i < types.count else { return nil }
        return types[i] == "sliding_attention" ? w : nil
    }
}

/// The whole config.json of a PaliGemma checkpoint (transformers' PaliGemmaConfig).
public struct PaliGemmaConfig: Codable, Sendable, Equatable {
    public var visionConfig = SigLIPConfig.paliGemmaDefault
    public var textConfig = GemmaConfig.paliGemmaDefault
    public var imageTokenIndex = 256000
    public var projectionDim = 2048
    public var hiddenSize = 2048
    public var vocabSize = 257152
    /// Weight dtype recorded by the exporter ("float32", "bfloat16", ...), informational.
    public var dtype: String?
    /// Keys of the file this runtime does not know and ignored, as dotted paths
    /// ("text_config.foo"), in file order; set by `parse` in lenient mode (strict mode refuses
    /// them). Not written by `encode`. A caller shows them as one warning.
    public var unknownKeys: [String] = []

    enum CodingKeys: String, CodingKey {
        case visionConfig = "vision_config", textConfig = "text_config"
        case imageTokenIndex = "image_token_index", imageTokenId = "image_token_id"
        case projectionDim = "projection_dim", hiddenSize = "hidden_size", vocabSize = "vocab_size"
        case dtype, torchDtype = "torch_dtype", modelType = "model_type", tieWordEmbeddings = "tie_word_embeddings"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = PaliGemmaConfig()  // model types: see ConfigKeys
        visionConfig = try c.decodeIfPresent(SigLIPConfig.self, forKey: .visionConfig) ?? d.visionConfig
        textConfig = try c.decodeIfPresent(GemmaConfig.self, forKey: .textConfig) ?? d.textConfig
        // transformers 5.x ties the output projection by the top-level key (4.x by text_config's;
        // `ConfigKeys` refuses a file where the two disagree).
        if let tied = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) { textConfig.tieWordEmbeddings = tied }
        imageTokenIndex = try c.decodeIfPresent(Int.self, forKey: .imageTokenIndex)
            ?? c.decodeIfPresent(Int.self, forKey: .imageTokenId) ?? d.imageTokenIndex
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) ?? d.projectionDim
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        dtype = try c.decodeIfPresent(String.self, forKey: .dtype) ?? c.decodeIfPresent(String.self, forKey: .torchDtype)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("paligemma", forKey: .modelType)
        try c.encode(visionConfig, forKey: .visionConfig)
        try c.encode(textConfig, forKey: .textConfig)
        try c.encode(imageTokenIndex, forKey: .imageTokenIndex)
        try c.encode(projectionDim, forKey: .projectionDim)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encodeIfPresent(dtype, forKey: .dtype)
    }

    /// Image tokens the prompt must hold: (image_size / patch_size)².
    public var numImageTokens: Int { visionConfig.numPatches }

    /// Reads and validates `config.json` (see `parse`).
    public static func load(from url: URL, strictness: ConfigStrictness = .lenient) throws -> PaliGemmaConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try parse(data, path: url.path, strictness: strictness)
    }

    /// Parses and validates a config.json. A value this runtime does not implement is refused
    /// (`PaliGemmaError.unsupportedConfig`, naming the key); unknown keys are listed in
    /// `unknownKeys` (`.lenient`) or refused (`.strict`). One parse: the keys are checked on the
    /// parsed value and the config decoded from it (`JSONValueDecoder`).
    public static func parse(_ data: Data, path: String, strictness: ConfigStrictness = .lenient) throws -> PaliGemmaConfig {
        let json: JSONValue
        do { json = try JSONParser.parse(Array(data), rejectDuplicateKeys: true) } catch {
            throw PaliGemmaError.config(path: path, key: nil, reason: "not valid JSON: \(error)")
        }
        guard json.objectValue != nil else {
            throw PaliGemmaError.config(path: path, key: nil, reason: "expected a JSON object")
        }
        try ConfigKeys.checkSupported(json, path: path)
        let unknown = ConfigKeys.unknown(in: json)
        if strictness == .strict, let key = unknown.first {
            let others = unknown.dropFirst().joined(separator: ", ")
            throw PaliGemmaError.config(path: path, key: key,
                reason: "unknown config key (not a PaliGemma, SigLIP or Gemma setting), refused in strict mode" + (others.isEmpty ? "" : "; also unknown: \(others)"))
        }
        var config: PaliGemmaConfig
        do { config = try JSONValueDecoder().decode(PaliGemmaConfig.self, from: json) } catch let error as DecodingError {
            throw PaliGemmaError.config(path: path, key: error.keyPath, reason: error.reason)
        }
        try config.validate(path: path)
        config.unknownKeys = unknown
        return config
    }

    /// Checks the values that the model code relies on.
    public func validate(path: String) throws {
        func fail(_ key: String, _ reason: String) -> PaliGemmaError { .config(path: path, key: key, reason: reason) }
        let v = visionConfig, t = textConfig
        for (key, value) in [("vision_config.hidden_size", v.hiddenSize), ("vision_config.num_hidden_layers", v.numHiddenLayers),
                             ("vision_config.num_attention_heads", v.numAttentionHeads), ("vision_config.patch_size", v.patchSize),
                             ("vision_config.image_size", v.imageSize), ("vision_config.intermediate_size", v.intermediateSize),
                             ("vision_config.num_channels", v.numChannels),
                             ("text_config.hidden_size", t.hiddenSize), ("text_config.num_hidden_layers", t.numHiddenLayers),
                             ("text_config.num_attention_heads", t.numAttentionHeads), ("text_config.num_key_value_heads", t.numKeyValueHeads),
                             ("text_config.head_dim", t.headDim), ("text_config.intermediate_size", t.intermediateSize),
                             ("text_config.vocab_size", t.vocabSize)] where value <= 0 {
            throw fail(key, "must be positive, got \(value)")
        }
        guard v.hiddenSize % v.numAttentionHeads == 0 else {
            throw fail("vision_config.num_attention_heads", "\(v.numAttentionHeads) does not divide hidden_size \(v.hiddenSize)")
        }
        guard v.imageSize % v.patchSize == 0 else {
            throw fail("vision_config.image_size", "\(v.imageSize) is not a multiple of patch_size \(v.patchSize)")
        }
        guard t.numAttentionHeads % t.numKeyValueHeads == 0 else {
            throw fail("text_config.num_key_value_heads", "\(t.numKeyValueHeads) does not divide num_attention_heads \(t.numAttentionHeads)")
        }
        guard t.headDim % 2 == 0 else { throw fail("text_config.head_dim", "must be even for rotary embeddings, got \(t.headDim)") }
        for (key, act) in [("vision_config.hidden_act", v.hiddenAct), ("text_config.hidden_act", t.hiddenAct)]
            where Activation(name: act) == nil {
            throw fail(key, "activation '\(act)' is not supported (expected gelu_pytorch_tanh, gelu_new, gelu_fast or gelu)")
        }
        if let types = t.layerTypes {
            guard types.count == t.numHiddenLayers else {
                throw fail("text_config.layer_types", "has \(types.count) entries for \(t.numHiddenLayers) layers")
            }
            for type in types where type != "sliding_attention" && type != "full_attention" {
                throw fail("text_config.layer_types", "'\(type)' is not sliding_attention or full_attention")
            }
        }
        if let w = t.slidingWindow, w <= 0 { throw fail("text_config.sliding_window", "must be positive, got \(w)") }
        if let s = t.queryPreAttnScalar, s <= 0 { throw fail("text_config.query_pre_attn_scalar", "must be positive") }
        if let s = t.attnLogitSoftcapping, s <= 0 { throw fail("text_config.attn_logit_softcapping", "must be positive") }
        if let s = t.finalLogitSoftcapping, s <= 0 { throw fail("text_config.final_logit_softcapping", "must be positive") }
        guard imageTokenIndex >= 0 else { throw fail("image_token_index", "must not be negative") }
        guard projectionDim == t.hiddenSize else {
            throw fail("projection_dim", "\(projectionDim) differs from text_config.hidden_size \(t.hiddenSize); the projector must map into the decoder's width")
        }
    }
}

/// The activations the configs may name.
public enum Activation: Sendable, Equatable {
    case geluTanh, geluErf
    public init?(name: String) {
        switch name {
        case "gelu_pytorch_tanh", "gelu_new", "gelu_fast", "gelu_tanh": self = .geluTanh
        case "gelu": self = .geluErf
        default: return nil
        }
    }
}

extension DecodingError {
    var keyPath: String? {
        let path: [CodingKey]
        switch self {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c): path = c.codingPath
        @unknown default: return nil
        }
        let keys = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        return keys.isEmpty ? nil : keys.joined(separator: ".")
    }

    var reason: String {
        switch self {
        case let .typeMismatch(type, c): return "expected \(type): \(c.debugDescription)"
        case let .valueNotFound(type, c): return "expected \(type), found null: \(c.debugDescription)"
        case let .keyNotFound(key, _): return "missing key '\(key.stringValue)'"
        case let .dataCorrupted(c): return c.debugDescription
        @unknown default: return "invalid value"
        }
    }
}
