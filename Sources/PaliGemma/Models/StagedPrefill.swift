import Foundation

// A prompt's prefill cut into pieces that can run between other work. PaliGemma's prompt is one
// bidirectional block (image tokens, <bos>, prompt, "\n"), so it cannot be split into token
// chunks the way a causal prompt can; it can be split by layer. The pieces, in order:
//
//   for each image to encode: vision embedding · each SigLIP layer · post-LayerNorm + projector
//   then: token embedding + each decoder layer · final norm + logits of the last row
//
// A scheduler runs a few pieces per step between the decode steps of the running requests, so
// that they are not frozen for the whole prefill (see the server's engine). The pieces do the
// same operations on the same rows as `visionFeatures` + `project` + `forward` for this one
// sequence, in the same order, so the result is the same, bit for bit. A served adapter
// (`input.adapter`) applies to the vision pieces too (`imageFeatures(pixels:adapter:)`).
//
// Shape letters: I images, N image tokens per image, Dv vision width, T prompt tokens, D decoder
// width, V vocabulary.

/// Where one image of a staged prefill comes from.
public enum PrefillImage: Sendable {
    /// Its image tokens [N, D], ready (e.g. from a cache of image features).
    case features(Matrix)
    /// Its pixel tensor [C, S, S], run through the vision tower piece by piece.
    case pixels([Float])
}

public final class StagedPrefill: @unchecked Sendable {
    public let model: PaliGemmaModel
    public let input: SequenceInput
    /// Per image: the pixels still to encode (nil once encoded, or when given as features).
    private var pixels: [[Float]?]
    /// Per image: its image tokens [N, D], given or once encoded.
    private var perImage: [Matrix?]
    private var stage: Stage = .finished  // set in init, once the images are known
    /// The vision tower's hidden state [N, Dv] while it runs.
    private var visionHidden: Matrix?
    /// The image tokens for the decoder [I·N, D] (given, or assembled once every image is
    /// encoded; kept after the end).
    public private(set) var imageFeatures: Matrix?
    /// The decoder's hidden state [T, D] while it runs.
    private var hidden: Matrix?
    private var batch: DecoderBatch?
    /// Logits [1, V] of the prompt's last position, once finished.
    public private(set) var logits: Matrix?

    enum Stage: Equatable {
        case visionEmbedding(image: Int), visionLayer(image: Int, Int), projection(image: Int)
        case decoderLayer(Int), output, finished
    }

    /// A prefill of `input` (whose cache must be empty of its rows: they are appended). The image
    /// comes as `input.imageFeatures` [N, D] (e.g. from a cache), or as `pixels` [C, S, S] run
    /// through the vision tower piece by piece; a prompt without image tokens needs neither.
    public convenience init(model: PaliGemmaModel, input: SequenceInput, pixels: [Float]? = nil) throws {
        try self.init(model: model, input: input, images: input.imageFeatures == nil ? pixels.map { [.pixels($0)] } ?? [] : [])
    }

    /// A prefill of `input` over several images, in prompt order, each given as features or as
    /// pixels to encode (images after `input.imageFeatures`, which then must be nil).
    public init(model: PaliGemmaModel, input: SequenceInput, images: [PrefillImage]) throws {
        try model.validate([input])
        let n = model.config.numImageTokens, width = model.config.textConfig.hiddenSize
        guard input.imageFeatures == nil || images.isEmpty else {
            throw PaliGemmaError.input("a staged prefill takes its images from the input or from the list, not both")
        }
        for (i, image) in images.enumerated() {
            switch image {
            case let .pixels(p):
                try model.checkPixels(p, image: i, of: images.count)
            case let .features(f) where f.rows != n || f.cols != width:
                let which = images.count > 1 ? "image \(i + 1) of \(images.count): " : ""
                throw PaliGemmaError.input(which + "image features are [\(f.rows), \(f.cols)], expected [\(n), \(width)]")
            default: break
            }
        }
        self.model = model
        self.input = input
        imageFeatures = input.imageFeatures
        pixels = images.map { if case let .pixels(p) = $0 { p } else { nil } }
        perImage = images.map { if case let .features(f) = $0 { f } else { nil } }
        stage = nextVisionStage(after: -1)
    }

    public var isFinished: Bool { stage == .finished }

    /// Whether the next piece belongs to the vision tower or the projector.
    public var inVision: Bool {
        switch stage {
        case .visionEmbedding, .visionLayer, .projection: return true
        case .decoderLayer, .output, .finished: return false
        }
    }

    /// The tokens [N, D] of image `i` (given or encoded here), once known.
    public func features(ofImage i: Int) -> Matrix? { perImage.indices.contains(i) ? perImage[i] : nil }

    /// Pieces still to run.
    public var remainingPieces: Int {
        let visionLayers = model.vision.layers.count, decoderLayers = model.decoder.layers.count
        let perImagePieces = 1 + visionLayers + 1, decoderPieces = decoderLayers + 1
        func later(_ i: Int) -> Int { pixels[(i + 1)...].filter { $0 != nil }.count * perImagePieces }
        switch stage {
        case let .visionEmbedding(i): return perImagePieces + later(i) + decoderPieces
        case let .visionLayer(i, l): return visionLayers - l + 1 + later(i) + decoderPieces
        case let .projection(i): return 1 + later(i) + decoderPieces
        case let .decoderLayer(i): return decoderLayers - i + 1
        case .output: return 1
        case .finished: return 0
        }
    }

    /// Runs the next piece; returns the logits [1, V] when it was the last one.
    @discardableResult
    public func advance() throws -> Matrix? {
        switch stage {
        case let .visionEmbedding(i):
            visionHidden = model.vision.embeddings([pixels[i] ?? []], adapter: input.adapter)
            pixels[i] = nil
            stage = model.vision.layers.isEmpty ? .projection(image: i) : .visionLayer(image: i, 0)
        case let .visionLayer(i, l):
            if let x = visionHidden { model.vision.layers[l](x, images: 1, adapter: input.adapter) }
            stage = l + 1 < model.vision.layers.count ? .visionLayer(image: i, l + 1) : .projection(image: i)
        case let .projection(i):
            if let x = visionHidden { perImage[i] = model.project(model.vision.postLayerNorm(x), adapter: input.adapter) }
            visionHidden = nil
            stage = nextVisionStage(after: i)
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

    /// The next image after `i` still to encode; once there is none, every image's tokens
    /// assembled in order and the decoder's first piece.
    private func nextVisionStage(after i: Int) -> Stage {
        if let next = pixels.indices.first(where: { $0 > i && pixels[$0] != nil }) { return .visionEmbedding(image: next) }
        let ready = perImage.compactMap { $0 }
        if ready.count == 1 {
            imageFeatures = ready[0]
        } else if !ready.isEmpty {
            let all = Matrix(rows: ready.reduce(0) { $0 + $1.rows }, cols: ready[0].cols)
            var row = 0
            for f in ready {
                Ops.copyRows(f, 0..<f.rows, into: all, at: row)
                row += f.rows
            }
            imageFeatures = all
        }
        return .decoderLayer(0)
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
                                                         start: input.cache.length, prefix: input.prefixLength)],
                             adapters: [input.adapter])
    }
}
