import Foundation

// A prompt's prefill cut into pieces that can run between other work. PaliGemma's prompt is one
// bidirectional block (image tokens, <bos>, prompt, "\n"), so it cannot be split into token
// chunks the way a causal prompt can; it can be split by layer. The pieces, in order:
//
//   vision embedding · each SigLIP layer · post-LayerNorm + projector ·
//   token embedding + each decoder layer · final norm + logits of the last row
//
// A scheduler runs a few pieces per step between the decode steps of the running requests, so
// that they are not frozen for the whole prefill (see the server's engine). The pieces do the
// same operations on the same rows as `visionFeatures` + `project` + `forward` for this one
// sequence, in the same order, so the result is the same, bit for bit.
//
// Shape letters: N image tokens, Dv vision width, T prompt tokens, D decoder width, V vocabulary.

public final class StagedPrefill: @unchecked Sendable {
    public let model: PaliGemmaModel
    public let input: SequenceInput
    private var pixels: [Float]?
    private var stage: Stage
    /// The vision tower's hidden state [N, Dv] while it runs.
    private var visionHidden: Matrix?
    /// The image tokens for the decoder [N, D] (given, or computed by the vision pieces; kept
    /// after the end, e.g. for a cache of image features).
    public private(set) var imageFeatures: Matrix?
    /// The decoder's hidden state [T, D] while it runs.
    private var hidden: Matrix?
    private var batch: DecoderBatch?
    /// Logits [1, V] of the prompt's last position, once finished.
    public private(set) var logits: Matrix?

    enum Stage: Equatable {
        case visionEmbedding, visionLayer(Int), projection, decoderLayer(Int), output, finished
    }

    /// A prefill of `input` (whose cache must be empty of its rows: they are appended). The image
    /// comes as `imageFeatures` [N, D] (e.g. from a cache), or as `pixels` [C, S, S] run through
    /// the vision tower piece by piece; a prompt without image tokens needs neither.
    public init(model: PaliGemmaModel, input: SequenceInput, pixels: [Float]? = nil) throws {
        try model.validate([input])
        if input.imageFeatures == nil, let pixels, pixels.count != model.pixelCount {
            let v = model.config.visionConfig
            throw PaliGemmaError.input("pixel values: got \(pixels.count) floats, expected \(v.numChannels)x\(v.imageSize)x\(v.imageSize) = \(model.pixelCount)")
        }
        self.model = model
        self.input = input
        imageFeatures = input.imageFeatures
        if input.imageFeatures == nil, let pixels {
            self.pixels = pixels
            stage = .visionEmbedding
        } else {
            stage = .decoderLayer(0)
        }
    }

    public var isFinished: Bool { stage == .finished }

    /// Whether the next piece belongs to the vision tower or the projector.
    public var inVision: Bool {
        switch stage {
        case .visionEmbedding, .visionLayer, .projection: return true
        case .decoderLayer, .output, .finished: return false
        }
    }

    /// Pieces still to run.
    public var remainingPieces: Int {
        let visionLayers = model.vision.layers.count, decoderLayers = model.decoder.layers.count
        switch stage {
        case .visionEmbedding: return 1 + visionLayers + 1 + decoderLayers + 1
        case let .visionLayer(i): return visionLayers - i + 1 + decoderLayers + 1
        case .projection: return 1 + decoderLayers + 1
        case let .decoderLayer(i): return decoderLayers - i + 1
        case .output: return 1
        case .finished: return 0
        }
    }

    /// Runs the next piece; returns the logits [1, V] when it was the last one.
    @discardableResult
    public func advance() throws -> Matrix? {
        switch stage {
        case .visionEmbedding:
            visionHidden = model.vision.embeddings(pixels ?? [])
            pixels = nil
            stage = model.vision.layers.isEmpty ? .projection : .visionLayer(0)
        case let .visionLayer(i):
            if let x = visionHidden { model.vision.layers[i](x) }
            stage = i + 1 < model.vision.layers.count ? .visionLayer(i + 1) : .projection
        case .projection:
            if let x = visionHidden { imageFeatures = model.project(model.vision.postLayerNorm(x)) }
            visionHidden = nil
            stage = .decoderLayer(0)
        case let .decoderLayer(i):
            if i == 0 { try embed() }
            if let x = hidden, let batch { model.decoder.layers[i](x, batch: batch, layer: i) }
            stage = i + 1 < model.decoder.layers.count ? .decoderLayer(i + 1) : .output
        case .output:
            if hidden == nil { try embed() }  // a decoder without layers
            guard let x = hidden else { return nil }
            let h = model.decoder.norm(x)
            input.cache.length += input.ids.count
            logits = model.decoder.logits(h.rows(h.rows - 1..<h.rows))
            hidden = nil
            batch = nil
            stage = .finished
            return logits
        case .finished:
            return logits
        }
        return nil
    }

    /// Runs every remaining piece; returns the logits [1, V].
    public func run() throws -> Matrix {
        while !isFinished { try advance() }
        return logits ?? Matrix(rows: 0, cols: model.decoder.vocabRows)
    }

    /// The prompt's rows [T, D], and the cache space they will take.
    private func embed() throws {
        try input.cache.reserve(input.cache.length + input.ids.count)
        let x = Matrix(rows: input.ids.count, cols: model.config.textConfig.hiddenSize)
        try model.embed(ids: input.ids, imageFeatures: imageFeatures, into: x, at: 0,
                        promptCount: input.prefixLength - input.cache.length)
        hidden = x
        batch = DecoderBatch(segments: [AttentionSegment(rows: 0..<input.ids.count, cache: input.cache,
                                                         start: input.cache.length, prefix: input.prefixLength)])
    }
}
