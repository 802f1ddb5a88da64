import Foundation

// PaliGemma: SigLIP image tokens, projected linearly into the decoder's width, followed by
// text tokens, decoded by Gemma (PaliGemma 1) or Gemma 2 (PaliGemma 2) under a prefix-LM mask:
// image + <bos> + prompt + "\n" attend to each other fully; later tokens attend causally.
//
// Shape letters: N image tokens, Dv vision width, D decoder width, T tokens in a call,
// V vocabulary rows.

/// Which rows of logits a forward pass computes.
public enum LogitRows: Sendable {
    case all, last, none
}

/// A loaded PaliGemma model. Immutable once loaded, so one instance can serve many requests
/// concurrently; per-request state lives in `KVCache`.
public final class PaliGemmaModel: Sendable {
    public let config: PaliGemmaConfig
    public let vision: SigLIPVisionTower  // vision_tower.vision_model
    let projector: Linear  // multi_modal_projector.linear [D, Dv]
    public let decoder: GemmaDecoder  // language_model.model (+ language_model.lm_head)
    /// The folder it came from (nil when built from a config alone).
    public let directory: URL?
    /// How the decoder's matrices and the output projection are held: as stored, quantized to
    /// int8 or 4-bit at load, or stored int8 or 4-bit in the folder.
    public let weightFormat: WeightFormat

    /// Loads a checkpoint folder strictly: every tensor must be used and have the expected shape.
    public convenience init(directory: URL, configStrictness: ConfigStrictness = .lenient, quantization: Quantization = .none) throws {
        let checkpoint = try Checkpoint(directory: directory, configStrictness: configStrictness)
        try self.init(checkpoint: checkpoint, quantization: quantization)
    }

    /// Builds the model from an opened checkpoint, strictly (see `init(directory:)`).
    public convenience init(checkpoint: Checkpoint, quantization: Quantization = .none) throws {
        let loader = WeightLoader(checkpoint: checkpoint, quantization: quantization)
        try self.init(config: checkpoint.config, loader: loader, directory: checkpoint.directory)
        try loader.verifyAllUsed()
    }

    init(config: PaliGemmaConfig, loader: WeightLoader, directory: URL?) throws {
        self.config = config
        self.directory = directory
        let w = loader.root
        vision = try SigLIPVisionTower(w("vision_tower.vision_model"), config: config.visionConfig)
        projector = try Linear(w("multi_modal_projector.linear"), inFeatures: config.visionConfig.hiddenSize,
                               outFeatures: config.projectionDim, bias: true)
        decoder = try GemmaDecoder(w("language_model.model"), head: w("language_model.lm_head"), config: config.textConfig)
        weightFormat = loader.weightFormat
    }

    /// Every parameter the model described by `config` has, with its shape, in the hub's
    /// spelling (no weights needed).
    public static func expectedTensors(config: PaliGemmaConfig) throws -> [(name: String, shape: [Int])] {
        let loader = WeightLoader(shapesOnly: .bfloat16)
        _ = try PaliGemmaModel(config: config, loader: loader, directory: nil)
        return loader.declared
    }

    /// The matrices quantization covers (int8 or 4-bit) in the model described by `config` (canonical names): every
    /// decoder layer's q/k/v/o and gate/up/down projections, and the output projection
    /// `language_model.lm_head.weight` (quantized from the embedding when tied).
    public static func quantizableMatrices(config: PaliGemmaConfig) throws -> [QuantizableMatrix] {
        let loader = WeightLoader(shapesOnly: .bfloat16)
        _ = try PaliGemmaModel(config: config, loader: loader, directory: nil)
        return loader.quantizableMatrices
    }

    /// Number of parameters of the model described by `config` (tied output counted once).
    public static func parameterCount(config: PaliGemmaConfig) throws -> Int {
        try expectedTensors(config: config).reduce(0) { $0 + $1.shape.reduce(1, *) }
    }

    // MARK: Image side

    /// Pixel values [C, S, S] the vision tower expects.
    public var pixelCount: Int {
        let v = config.visionConfig
        return v.numChannels * v.imageSize * v.imageSize
    }

    /// The vision tower's output [N, Dv] for pixels [C, S, S] (CHW, normalised).
    public func visionFeatures(pixels: [Float]) throws -> Matrix {
        guard pixels.count == pixelCount else {
            let v = config.visionConfig
            throw PaliGemmaError.input("pixel values: got \(pixels.count) floats, expected \(v.numChannels)x\(v.imageSize)x\(v.imageSize) = \(pixelCount)")
        }
        return vision(pixels)
    }

    /// Image tokens for the decoder [N, D]: the projected vision features. They enter the
    /// decoder as they are (no sqrt(D) scaling, as in big_vision and transformers 5.x).
    public func imageFeatures(pixels: [Float]) throws -> Matrix {
        projector(try visionFeatures(pixels: pixels))
    }

    /// The projector alone, for features [N, Dv] -> [N, D].
    public func project(_ features: Matrix) -> Matrix { projector(features) }

    // MARK: Decoder side

    /// A cache able to hold `capacity` tokens.
    public func makeCache(capacity: Int) -> KVCache {
        let t = config.textConfig
        return KVCache(layers: t.numHiddenLayers, capacity: capacity, kvWidth: t.numKeyValueHeads * t.headDim)
    }

    /// Embeds `ids` [T] into [T, D]: text ids through the scaled embedding, each
    /// `image_token_index` replaced by the next row of `imageFeatures`.
    public func embed(ids: [Int], imageFeatures: Matrix?) throws -> Matrix {
        let d = config.textConfig.hiddenSize
        let imageID = config.imageTokenIndex
        let imageCount = ids.reduce(0) { $0 + ($1 == imageID ? 1 : 0) }
        let available = imageFeatures?.rows ?? 0
        guard imageCount == available else {
            throw PaliGemmaError.input("the ids hold \(imageCount) image tokens (id \(imageID)) but \(available) image feature rows were given")
        }
        if let f = imageFeatures, f.cols != d {
            throw PaliGemmaError.input("image features have width \(f.cols), the decoder expects \(d)")
        }
        let x = Matrix(rows: ids.count, cols: d)
        var nextImage = 0
        for (t, id) in ids.enumerated() {
            if id == imageID, let f = imageFeatures {
                x.row(t).update(from: f.row(nextImage), count: d)
                nextImage += 1
            } else {
                guard id >= 0, id < decoder.vocabRows else {
                    throw PaliGemmaError.input("token id \(id) at position \(t) is outside the vocabulary (0..<\(decoder.vocabRows))")
                }
                decoder.embed(id, into: x.row(t))
            }
        }
        return x
    }

    /// Runs `ids` through the decoder after the `cache.length` tokens already in the cache and
    /// appends them to it. Tokens at sequence index < `prefixLength` form the bidirectional
    /// prefix (image + <bos> + prompt + "\n"); the rest are causal. Returns logits [R, V] for
    /// the rows asked for (R = T, 1 or 0).
    public func forward(ids: [Int], imageFeatures: Matrix?, prefixLength: Int, cache: KVCache,
                        logits rows: LogitRows = .last) throws -> Matrix {
        guard !ids.isEmpty else { throw PaliGemmaError.input("forward needs at least one token") }
        let start = cache.length
        guard start + ids.count <= cache.capacity else {
            throw PaliGemmaError.input("sequence of \(start + ids.count) tokens exceeds the KV cache capacity \(cache.capacity)")
        }
        guard prefixLength >= 0 else { throw PaliGemmaError.input("prefix length must not be negative") }
        let x = try embed(ids: ids, imageFeatures: imageFeatures)
        let h = decoder(x, cache: cache, start: start, prefix: prefixLength)
        cache.length = start + ids.count
        switch rows {
        case .all: return decoder.logits(h)
        case .last: return decoder.logits(h.rows((h.rows - 1)..<h.rows))
        case .none: return Matrix(rows: 0, cols: decoder.vocabRows)
        }
    }
}
