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

    /// The settings of the LoRA adapter applied to its linear layers (y += s · B (A x)) and
    /// the folder it came from, if loaded with one.
    public let adapterConfig: LoRAAdapterConfig?
    public let adapterDirectory: URL?

    /// Loads a checkpoint folder strictly: every tensor must be used and have the expected shape.
    /// With `adapter` (a PEFT LoRA adapter folder), every adapter tensor must fit a linear layer.
    public convenience init(directory: URL, configStrictness: ConfigStrictness = .lenient, quantization: Quantization = .none,
                            adapter: URL? = nil) throws {
        let checkpoint = try Checkpoint(directory: directory, configStrictness: configStrictness)
        try self.init(checkpoint: checkpoint, quantization: quantization, adapter: try adapter.map(LoRAAdapter.init(directory:)))
    }

    /// Builds the model from an opened checkpoint (and adapter), strictly (see `init(directory:)`).
    public convenience init(checkpoint: Checkpoint, quantization: Quantization = .none, adapter: LoRAAdapter? = nil) throws {
        let loader = WeightLoader(checkpoint: checkpoint, quantization: quantization, adapter: adapter)
        try self.init(config: checkpoint.config, loader: loader, directory: checkpoint.directory)
        try loader.verifyAllUsed()
    }

    init(config: PaliGemmaConfig, loader: WeightLoader, directory: URL?) throws {
        self.config = config
        self.directory = directory
        adapterConfig = loader.adapter?.config
        adapterDirectory = loader.adapter?.directory
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

    /// Throws when `pixels` is not [C, S, S] for this model; `image` (0-based) of `count` names it.
    public func checkPixels(_ pixels: [Float], image: Int = 0, of count: Int = 1) throws {
        guard pixels.count != pixelCount else { return }
        let v = config.visionConfig
        let which = count > 1 ? "image \(image + 1) of \(count): " : ""
        throw PaliGemmaError.input(which + "pixel values: got \(pixels.count) floats, expected \(v.numChannels)x\(v.imageSize)x\(v.imageSize) = \(pixelCount)")
    }

    /// The vision tower's output [N, Dv] for pixels [C, S, S] (CHW, normalised).
    public func visionFeatures(pixels: [Float]) throws -> Matrix {
        try checkPixels(pixels)
        return vision([pixels])
    }

    /// Image tokens for the decoder [N, D]: the projected vision features. They enter the
    /// decoder as they are (no sqrt(D) scaling, as in big_vision and transformers 5.x).
    public func imageFeatures(pixels: [Float]) throws -> Matrix {
        projector(try visionFeatures(pixels: pixels))
    }

    /// Image tokens for several images [I·N, D]: each image's tokens in turn, as the decoder
    /// reads them for a prompt over all of them (transformers' layout for a list of images).
    /// The images go through the vision tower together, `batch` at a time (default
    /// `SigLIPVisionTower.batch`; `paligemma bench --vision-batches` measures the choice).
    /// With `adapter` (a served adapter that `adaptsVision`), its terms apply throughout.
    public func imageFeatures(pixels images: [[Float]], batch: Int = SigLIPVisionTower.batch,
                              adapter: LoRASet? = nil) throws -> Matrix {
        for (i, pixels) in images.enumerated() { try checkPixels(pixels, image: i, of: images.count) }
        let batch = max(1, batch)
        if images.count <= batch { return project(vision(images, adapter: adapter), adapter: adapter) }
        let n = config.numImageTokens
        let all = Matrix(rows: n * images.count, cols: config.projectionDim)
        for first in stride(from: 0, to: images.count, by: batch) {
            let f = project(vision(Array(images[first..<min(first + batch, images.count)]), adapter: adapter), adapter: adapter)
            Ops.copyRows(f, 0..<f.rows, into: all, at: first * n)
        }
        return all
    }

    /// The projector alone, for features [N, Dv] -> [N, D] (with a served adapter's term).
    public func project(_ features: Matrix, adapter: LoRASet? = nil) -> Matrix {
        projector(features, routes: .all(features.rows, adapter))
    }

    /// Every linear layer an adapter may adapt: the vision tower's (patch embedding included),
    /// the projector and the decoder's attention and MLP matrices.
    var adaptableLayers: [Linear] {
        [vision.embeddings.patch] + vision.layers.flatMap { $0.attention.matrices + $0.mlp.matrices } + [projector]
            + decoder.layers.flatMap(\.matrices)
    }

    /// Binds a LoRA adapter to this model for serving beside others (see `LoRASet`), strictly:
    /// every module must name one of this model's adaptable linear layers, with A [R, in] and
    /// B [out, R] that fit it (errors name the tensor).
    public func bind(_ adapter: LoRAAdapter, name: String) throws -> LoRASet {
        let layers = Dictionary(adaptableLayers.map { ($0.module, $0) }, uniquingKeysWith: { a, _ in a })
        var terms: [String: LoRATerm] = [:]
        for (module, m) in adapter.modules.sorted(by: { $0.key < $1.key }) {
            guard let layer = layers[module] else {
                throw PaliGemmaError.weights(tensor: m.aKey, reason: "adapts '\(module)', which is not a linear layer of this model (adapters attach to the linear layers of the vision tower, projector and decoder)")
            }
            guard m.inFeatures == layer.weight.cols, m.aShape[0] == m.rank else {
                throw PaliGemmaError.weights(tensor: m.aKey, reason: "has shape \(m.aShape); for \(module) [\(layer.weight.rows), \(layer.weight.cols)] lora_A must be [\(m.rank), \(layer.weight.cols)]")
            }
            guard m.outFeatures == layer.weight.rows, m.bShape.dropFirst().reduce(1, *) == m.rank else {
                throw PaliGemmaError.weights(tensor: m.bKey, reason: "has shape \(m.bShape); for \(module) [\(layer.weight.rows), \(layer.weight.cols)] lora_B must be [\(layer.weight.rows), \(m.rank)]")
            }
            terms[module] = LoRATerm(m, scale: adapter.config.scale)
        }
        return LoRASet(name: name, config: adapter.config, terms: terms)
    }

    // MARK: Decoder side

    /// Bytes of KV cache one token takes (keys and values of every decoder layer, float32).
    public var kvBytesPerToken: Int { config.kvBytesPerToken }

    /// A pool of KV cache blocks for this model's decoder, holding `tokens` tokens in all
    /// (rounded up to whole blocks), for caches that come and go (see `KVCachePool`).
    public func makeCachePool(tokens: Int, blockTokens: Int = KVCachePool.defaultBlockTokens) throws -> KVCachePool {
        let t = config.textConfig
        return try KVCachePool(layers: t.numHiddenLayers, kvWidth: t.numKeyValueHeads * t.headDim, tokens: tokens,
                               blockTokens: blockTokens)
    }

    /// A cache with a pool of its own, able to hold `capacity` tokens.
    public func makeCache(capacity: Int) throws -> KVCache {
        let t = config.textConfig
        return try KVCache(layers: t.numHiddenLayers, capacity: capacity, kvWidth: t.numKeyValueHeads * t.headDim)
    }

    /// Embeds `ids` [T] into rows start..<start+T of x [_, D]: text ids through the scaled
    /// embedding, each `image_token_index` among the first `promptCount` ids (those in the
    /// prompt) replaced by the next row of `imageFeatures`. An image id after them was generated
    /// by the model and is embedded as the text token it is, as transformers does when decoding.
    func embed(ids: [Int], imageFeatures: Matrix?, into x: Matrix, at start: Int, promptCount: Int? = nil) throws {
        let d = config.textConfig.hiddenSize
        let imageID = config.imageTokenIndex
        let prompt = min(ids.count, max(0, promptCount ?? ids.count))
        let imageCount = ids[..<prompt].reduce(0) { $0 + ($1 == imageID ? 1 : 0) }
        let available = imageFeatures?.rows ?? 0
        guard imageCount == available else {
            throw PaliGemmaError.input("the ids hold \(imageCount) image tokens (id \(imageID)) but \(available) image feature rows were given")
        }
        if let f = imageFeatures, f.cols != d {
            throw PaliGemmaError.input("image features have width \(f.cols), the decoder expects \(d)")
        }
        var nextImage = 0
        for (t, id) in ids.enumerated() {
            if id == imageID, t < prompt, let f = imageFeatures {
                Ops.copyRows(f, nextImage..<nextImage + 1, into: x, at: start + t)
                nextImage += 1
            } else {
                guard id >= 0, id < decoder.vocabRows else {
                    throw PaliGemmaError.input("token id \(id) at position \(t) is outside the vocabulary (0..<\(decoder.vocabRows))")
                }
                decoder.embed(id, into: x, row: start + t)
            }
        }
    }

    /// Embeds `ids` [T] into [T, D] (see `embed(ids:imageFeatures:into:at:)`).
    public func embed(ids: [Int], imageFeatures: Matrix?) throws -> Matrix {
        let x = Matrix(rows: ids.count, cols: config.textConfig.hiddenSize)
        try embed(ids: ids, imageFeatures: imageFeatures, into: x, at: 0)
        return x
    }

    /// Runs `ids` through the decoder after the `cache.length` tokens already in the cache and
    /// appends them to it. Tokens at sequence index < `prefixLength` form the bidirectional
    /// prefix (image + <bos> + prompt + "\n"); the rest are causal. Returns logits [R, V] for
    /// the rows asked for (R = T, 1 or 0). The cache takes blocks from its pool as it grows.
    public func forward(ids: [Int], imageFeatures: Matrix?, prefixLength: Int, cache: KVCache,
                        logits rows: LogitRows = .last) throws -> Matrix {
        try forward([SequenceInput(ids: ids, imageFeatures: imageFeatures, prefixLength: prefixLength, cache: cache,
                                   logits: rows)])[0]
    }

    /// Refuses a batch that `forward` cannot run: an empty sequence, a negative prefix, a cache
    /// for another decoder shape or the same cache twice, more tokens than the model's positions.
    func validate(_ batch: [SequenceInput]) throws {
        let limit = config.textConfig.maxPositionEmbeddings
        for (i, s) in batch.enumerated() {
            let which = batch.count > 1 ? "sequence \(i): " : ""
            guard !s.ids.isEmpty else { throw PaliGemmaError.input(which + "forward needs at least one token") }
            guard s.prefixLength >= 0 else { throw PaliGemmaError.input(which + "prefix length must not be negative") }
            guard s.cache.pool.layers == config.textConfig.numHiddenLayers,
                  s.cache.pool.kvWidth == config.textConfig.numKeyValueHeads * config.textConfig.headDim else {
                throw PaliGemmaError.input(which + "the KV cache was made for another decoder shape")
            }
            guard s.cache.length + s.ids.count <= limit else {
                throw PaliGemmaError.input(which + "sequence of \(s.cache.length + s.ids.count) tokens exceeds the model's \(limit) positions")
            }
            for other in batch[..<i] where other.cache === s.cache {
                throw PaliGemmaError.input(which + "the same KV cache appears twice in one batch")
            }
        }
    }

    /// One forward pass over several sequences at once: their new rows are stacked into one
    /// matrix, so every linear layer reads its weights once for the whole batch, and attention
    /// runs per sequence over its own cache, positions and prefix. Sequence i may be prefilling
    /// a prompt (many ids) while others decode (one id each). Returns each sequence's logits, in
    /// order (see `LogitRows`). Equal, up to float32 rounding, to running each sequence alone.
    /// Nothing is changed when the inputs are refused; the caches grow only once all are valid.
    public func forward(_ batch: [SequenceInput]) throws -> [Matrix] {
        guard !batch.isEmpty else { return [] }
        try validate(batch)
        for s in batch { try s.cache.reserve(s.cache.length + s.ids.count) }

        let x = Matrix(rows: batch.reduce(0) { $0 + $1.ids.count }, cols: config.textConfig.hiddenSize)
        var segments: [AttentionSegment] = []
        var row = 0
        for s in batch {
            try embed(ids: s.ids, imageFeatures: s.imageFeatures, into: x, at: row, promptCount: s.prefixLength - s.cache.length)
            segments.append(AttentionSegment(rows: row..<row + s.ids.count, cache: s.cache, start: s.cache.length,
                                             prefix: s.prefixLength))
            row += s.ids.count
        }
        // The rows asked for (the last layer runs on them alone), through the output projection in one product.
        let wanted = zip(batch, segments).map { s, segment in
            switch s.logits {
            case .all: segment.rows.count
            case .last: 1
            case .none: 0
            }
        }
        let h = decoder(x, batch: DecoderBatch(segments: segments, adapters: batch.map(\.adapter)), keep: wanted)
        for s in batch { s.cache.length += s.ids.count }
        let logits = h.rows > 0 ? decoder.logits(h) : Matrix(rows: 0, cols: decoder.vocabRows)
        var at = 0
        return wanted.map { n in
            defer { at += n }
            return logits.rows(at..<at + n)
        }
    }
}

/// One sequence of a batched forward pass (`PaliGemmaModel.forward(_:)`).
public struct SequenceInput: Sendable {
    /// New tokens: a whole prompt when prefilling, one id when decoding.
    public var ids: [Int]
    /// Rows for the prompt's image tokens (nil when `ids` has none).
    public var imageFeatures: Matrix?
    /// Sequence indices below this form the bidirectional prefix.
    public var prefixLength: Int
    /// The sequence's cache: its length is where `ids` start; they are appended to it.
    public var cache: KVCache
    /// Which rows of logits to return for this sequence.
    public var logits: LogitRows
    /// The served adapter whose terms this sequence's rows take (nil: the model as loaded).
    public var adapter: LoRASet?

    public init(ids: [Int], imageFeatures: Matrix? = nil, prefixLength: Int, cache: KVCache, logits: LogitRows = .last,
                adapter: LoRASet? = nil) {
        self.ids = ids
        self.imageFeatures = imageFeatures
        self.prefixLength = prefixLength
        self.cache = cache
        self.logits = logits
        self.adapter = adapter
    }
}

extension PaliGemmaConfig {
    /// Bytes of KV cache one token takes: keys and values of every decoder layer, float32
    /// (2 · layers · Hkv · Dh · 4; 36,864 for PaliGemma 1, 212,992 for PaliGemma 2 3B).
    public var kvBytesPerToken: Int {
        let t = textConfig
        return t.numHiddenLayers * 2 * t.numKeyValueHeads * t.headDim * MemoryLayout<Float>.size
    }
}
