import Foundation

// A prompt's prefill cut into pieces that can run between other work. PaliGemma's prompt is one
// bidirectional block (image tokens, <bos>, prompt, "\n"), so it cannot be split into token
// chunks the way a causal prompt can; it can be split by layer. The pieces, in order:
//
//   for each image to encode: vision embedding · each SigLIP layer · post-LayerNorm + projector
//   then: token embedding · for each decoder layer: its attention half (every row), its
//   feed-forward half (every row, or cut into pieces of rows) · final norm + logits of the last row
//
// A scheduler runs a few pieces per step between the decode steps of the running requests, so
// that they are not frozen for the whole prefill (see the server's engine). The feed-forward half
// (nine tenths of a decoder layer's work) works on each row alone, so it can be cut into pieces of
// any number of rows to fill the time a step has left. The pieces do the same operations on the
// same rows as `visionFeatures` + `project` + `forward` for this one sequence, in the same order,
// so the result is the same, bit for bit (products of more than 8 rows take the same kernels,
// whose rows do not depend on each other; pieces are never smaller than `minimumRows`). A served
// adapter (`input.adapter`) applies to the vision pieces too (`imageFeatures(pixels:adapter:)`).
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
    /// The decoder's hidden state [T, D] while it runs ([1, D] from the last layer's attention on).
    private var hidden: Matrix?
    private var batch: DecoderBatch?
    /// Logits [1, V] of the prompt's last position, once finished.
    public private(set) var logits: Matrix?

    enum Stage: Equatable {
        case visionEmbedding(image: Int), visionLayer(image: Int, Int), projection(image: Int)
        /// Decoder layer i's attention half; its feed-forward half from row `row` on.
        case decoderAttention(Int), decoderFeedForward(Int, row: Int), output, finished
    }

    /// The smallest piece of a feed-forward half, in rows (a product of up to 8 rows takes the
    /// decode kernels, which sum in another order).
    public static let minimumRows = 16

    /// What the next piece is.
    public enum Piece: Equatable, Sendable {
        /// A piece of the vision tower or the projector.
        case vision
        /// A decoder layer's attention half (every row).
        case decoderAttention
        /// A decoder layer's feed-forward half, with `rows` rows still to run.
        case decoderFeedForward(rows: Int)
        /// The final norm and the last row's logits.
        case output
        case finished
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
    public var inVision: Bool { nextPiece == .vision }

    /// The kind of the next piece.
    public var nextPiece: Piece {
        switch stage {
        case .visionEmbedding, .visionLayer, .projection: return .vision
        case .decoderAttention: return .decoderAttention
        case let .decoderFeedForward(_, row): return .decoderFeedForward(rows: (hidden?.rows ?? input.ids.count) - row)
        case .output: return .output
        case .finished: return .finished
        }
    }

    /// The tokens [N, D] of image `i` (given or encoded here), once known.
    public func features(ofImage i: Int) -> Matrix? { perImage.indices.contains(i) ? perImage[i] : nil }

    /// Pieces still to run, each feed-forward half counted as one (as `advance()` runs it).
    public var remainingPieces: Int {
        let visionLayers = model.vision.layers.count, decoderLayers = model.decoder.layers.count
        let perImagePieces = 1 + visionLayers + 1, decoderPieces = 2 * decoderLayers + 1
        func later(_ i: Int) -> Int { pixels[(i + 1)...].filter { $0 != nil }.count * perImagePieces }
        switch stage {
        case let .visionEmbedding(i): return perImagePieces + later(i) + decoderPieces
        case let .visionLayer(i, l): return visionLayers - l + 1 + later(i) + decoderPieces
        case let .projection(i): return 1 + later(i) + decoderPieces
        case let .decoderAttention(i): return 2 * (decoderLayers - i) + 1
        case let .decoderFeedForward(i, _): return 2 * (decoderLayers - i)
        case .output: return 1
        case .finished: return 0
        }
    }

    /// Runs the next piece; returns the logits [1, V] when it was the last one. A feed-forward
    /// half runs at most `rows` of its remaining rows (at least `minimumRows`, and all of them
    /// where fewer than `minimumRows` would be left); nil runs them all.
    @discardableResult
    public func advance(rows: Int? = nil) throws -> Matrix? {
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
        case let .decoderAttention(i):
            if i == 0 { try embed() }
            if let x = hidden, let batch {
                if i + 1 < model.decoder.layers.count {
                    model.decoder.layers[i].attentionBlock(x, batch: batch, layer: i)
                } else {
                    // The last layer: every row's keys and values, then the last row alone (as `forward` runs it).
                    let (rows, kept) = batch.keeping([1])
                    hidden = model.decoder.layers[i].attentionBlock(x, batch: batch, layer: i, keeping: rows, kept)
                }
            }
            stage = .decoderFeedForward(i, row: 0)
        case let .decoderFeedForward(i, row):
            guard let x = hidden else { throw PaliGemmaError.input("staged prefill: the decoder's rows are missing at layer \(i)") }
            let total = x.rows, left = total - row
            var take = max(Self.minimumRows, rows ?? left)
            if take >= left || left - take < Self.minimumRows { take = left }
            let layer = model.decoder.layers[i]
            if take == total {
                layer.feedForwardBlock(x, routes: .all(total, input.adapter))
            } else {
                let part = x.rows(row..<row + take)
                layer.feedForwardBlock(part, routes: .all(take, input.adapter))
                Ops.copyRows(part, 0..<take, into: x, at: row)
            }
            if row + take < total {
                stage = .decoderFeedForward(i, row: row + take)
            } else {
                stage = i + 1 < model.decoder.layers.count ? .decoderAttention(i + 1) : .output
            }
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
        return .decoderAttention(0)
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
