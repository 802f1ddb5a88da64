import Foundation
import Testing
@testable import PaliGemma

/// The prefill cut into pieces (`StagedPrefill`, which the server runs between decode steps)
/// does the same operations as the vision tower + projector + one-sequence `forward`, in the
/// same order: its logits, image features and KV cache must be equal bit for bit.
struct StagedPrefillTests {
    @Test("a staged prefill equals vision + forward exactly, with pixels or with cached features", arguments: ModelParityTests.names)
    func stagedEqualsForward(name: String) throws {
        let model = try PaliGemmaModel(directory: Fixtures.model(name))
        var rng = SeededRandom(UInt64(name.utf8.reduce(3) { $0 &* 31 &+ Int($1) }))
        let pixels = rng.floats(model.pixelCount)
        let n = model.config.numImageTokens
        let text = (0..<9).map { _ in 3 + Int(rng.next() % UInt64(min(model.decoder.vocabRows, model.config.imageTokenIndex) - 3)) }
        let ids = [Int](repeating: model.config.imageTokenIndex, count: n) + [2] + text

        let features = try model.imageFeatures(pixels: pixels)
        let cacheA = try model.makeCache(capacity: ids.count + 1)
        let want = try model.forward([SequenceInput(ids: ids, imageFeatures: features, prefixLength: ids.count, cache: cacheA)])[0]

        let cacheB = try model.makeCache(capacity: ids.count + 1)
        let staged = try StagedPrefill(model: model, input: SequenceInput(ids: ids, prefixLength: ids.count, cache: cacheB), pixels: pixels)
        let pieces = staged.remainingPieces
        #expect(pieces == model.config.visionConfig.numHiddenLayers + 2 * model.config.textConfig.numHiddenLayers + 3)
        var ran = 0
        var got: Matrix?
        while !staged.isFinished {
            #expect(staged.inVision == (ran < model.config.visionConfig.numHiddenLayers + 2))
            got = try staged.advance()
            ran += 1
        }
        #expect(ran == pieces)
        let logits = try #require(got)
        #expect(logits.values == want.values, "\(name): staged logits differ by \(maxAbsDiff(logits.values, want.values).diff)")
        #expect(staged.imageFeatures?.values == features.values)
        #expect(cacheB.length == cacheA.length)

        // The caches hold the same keys and values: one more token gives the same logits.
        let next = [text[0]]
        let a = try model.forward([SequenceInput(ids: next, prefixLength: ids.count, cache: cacheA)])[0]
        let b = try model.forward([SequenceInput(ids: next, prefixLength: ids.count, cache: cacheB)])[0]
        #expect(a.values == b.values)

        // With the image features given (a vision cache hit), only the decoder pieces run.
        let cacheC = try model.makeCache(capacity: ids.count)
        let fromFeatures = try StagedPrefill(model: model, input: SequenceInput(ids: ids, imageFeatures: features,
                                                                                prefixLength: ids.count, cache: cacheC))
        #expect(fromFeatures.remainingPieces == 2 * model.config.textConfig.numHiddenLayers + 1)
        #expect(try fromFeatures.run().values == want.values)
        print("[\(name)] staged prefill: \(pieces) pieces, logits identical to forward")
    }

    @Test("feed-forward halves cut into pieces of rows give the same logits and cache, bit for bit", arguments: ModelParityTests.names)
    func feedForwardInRowPieces(name: String) throws {
        let model = try PaliGemmaModel(directory: Fixtures.model(name))
        var rng = SeededRandom(11)
        let pixels = rng.floats(model.pixelCount)
        let n = model.config.numImageTokens
        let text = (0..<56 - n).map { _ in 3 + Int(rng.next() % UInt64(min(model.decoder.vocabRows, model.config.imageTokenIndex) - 3)) }
        let ids = [Int](repeating: model.config.imageTokenIndex, count: n) + [2] + text
        let least = StagedPrefill.minimumRows
        #expect(ids.count > 3 * least)

        let whole = try model.makeCache(capacity: ids.count + 1)
        let want = try StagedPrefill(model: model, input: SequenceInput(ids: ids, prefixLength: ids.count, cache: whole), pixels: pixels).run()
        let cut = try model.makeCache(capacity: ids.count + 1)
        let staged = try StagedPrefill(model: model, input: SequenceInput(ids: ids, prefixLength: ids.count, cache: cut), pixels: pixels)
        // Asking for 1 row gets 16; a remainder under 16 goes with the piece before it.
        var sizes: [Int] = []
        var asked = [1, least + 3, least]
        while !staged.isFinished {
            guard case let .decoderFeedForward(left) = staged.nextPiece else {
                try staged.advance(rows: 1)  // other pieces ignore it
                continue
            }
            try staged.advance(rows: asked.isEmpty ? least : asked.removeFirst())
            if case let .decoderFeedForward(now) = staged.nextPiece { sizes.append(left - now) } else { sizes.append(left) }
        }
        let t = ids.count  // 57: 16 + 19 + 22 in the first layer, then 16 + 16 + 25; the last layer's only row is the prompt's last
        #expect(t == 57)
        let layers = model.config.textConfig.numHiddenLayers
        #expect(layers >= 2 && sizes == [16, 19, 22] + Array(repeating: [16, 16, 25], count: layers - 2).flatMap { $0 } + [1])
        let logits = try #require(staged.logits)
        #expect(logits.values == want.values, "\(name): row pieces change the logits by \(maxAbsDiff(logits.values, want.values).diff)")
        let next = [text[0]]
        let a = try model.forward([SequenceInput(ids: next, prefixLength: ids.count, cache: whole)])[0]
        let b = try model.forward([SequenceInput(ids: next, prefixLength: ids.count, cache: cut)])[0]
        #expect(a.values == b.values)
        print("[\(name)] feed-forward in \(sizes.count) row pieces (\(sizes.prefix(4)) …): logits identical")
    }

    @Test("three images, one of them cached: the staged prefill encodes the other two and equals forward exactly", arguments: ModelParityTests.names)
    func severalImages(name: String) throws {
        let model = try PaliGemmaModel(directory: Fixtures.model(name))
        var rng = SeededRandom(7)
        let pixels = (0..<3).map { _ in rng.floats(model.pixelCount) }
        let n = model.config.numImageTokens
        let ids = [Int](repeating: model.config.imageTokenIndex, count: 3 * n) + [2, 5, 6, 7]
        let features = try model.imageFeatures(pixels: pixels)
        #expect(features.rows == 3 * n)
        let cacheA = try model.makeCache(capacity: ids.count)
        let want = try model.forward(ids: ids, imageFeatures: features, prefixLength: ids.count, cache: cacheA)

        let cached = try model.imageFeatures(pixels: pixels[1])
        let cacheB = try model.makeCache(capacity: ids.count)
        let staged = try StagedPrefill(model: model, input: SequenceInput(ids: ids, prefixLength: ids.count, cache: cacheB),
                                       images: [.pixels(pixels[0]), .features(cached), .pixels(pixels[2])])
        let visionPieces = model.config.visionConfig.numHiddenLayers + 2
        #expect(staged.remainingPieces == 2 * visionPieces + 2 * model.config.textConfig.numHiddenLayers + 1)
        let got = try staged.run()
        #expect(got.values == want.values, "\(name): differ by \(maxAbsDiff(got.values, want.values).diff)")
        #expect(staged.imageFeatures?.values == features.values)
        #expect(staged.features(ofImage: 2)?.values == features.rows(2 * n..<3 * n).values)
        #expect(staged.features(ofImage: 1) === cached)

        // Wrong sizes are refused, naming the image.
        let cacheC = try model.makeCache(capacity: ids.count)
        #expect(throws: PaliGemmaError.self) {
            try StagedPrefill(model: model, input: SequenceInput(ids: ids, prefixLength: ids.count, cache: cacheC),
                              images: [.pixels(pixels[0]), .pixels([1, 2]), .pixels(pixels[2])])
        }
    }

    @Test("a staged prefill refuses what forward refuses")
    func refusals() throws {
        let model = try PaliGemmaModel(directory: Fixtures.model(ModelParityTests.names[0]))
        let cache = try model.makeCache(capacity: 8)
        #expect(throws: PaliGemmaError.self) { try StagedPrefill(model: model, input: SequenceInput(ids: [], prefixLength: 0, cache: cache)) }
        #expect(throws: PaliGemmaError.self) {
            try StagedPrefill(model: model, input: SequenceInput(ids: [model.config.imageTokenIndex], prefixLength: 1, cache: cache), pixels: [0, 1])
        }
        // Image tokens without an image: refused when the decoder's first piece embeds the prompt.
        let staged = try StagedPrefill(model: model, input: SequenceInput(ids: [model.config.imageTokenIndex, 2], prefixLength: 2, cache: cache))
        #expect(throws: PaliGemmaError.self) { try staged.run() }
    }

    @Test("a generated <image> id is fed back as the text token it is; in the prompt it needs image features")
    func generatedImageToken() throws {
        let model = try PaliGemmaModel(directory: Fixtures.model(ModelParityTests.names[0]))
        var rng = SeededRandom(5)
        let image = model.config.imageTokenIndex
        let ids = [Int](repeating: image, count: model.config.numImageTokens) + [2, 5, 6]
        let features = try model.imageFeatures(pixels: rng.floats(model.pixelCount))
        let cache = try model.makeCache(capacity: ids.count + 2)
        _ = try model.forward([SequenceInput(ids: ids, imageFeatures: features, prefixLength: ids.count, cache: cache)])
        // The model "generated" <image>: the next step embeds it from the embedding table, as
        // transformers does when decoding (pixel_values only enter at the prefill).
        let step = try model.forward([SequenceInput(ids: [image], prefixLength: ids.count, cache: cache)])[0]
        #expect(step.values.allSatisfy { $0.isFinite })
        let expected = try model.embed(ids: [5], imageFeatures: nil)  // any text id embeds without features
        #expect(expected.values.allSatisfy { $0.isFinite })
        // In the prompt (before prefixLength), image tokens without features are refused.
        let other = try model.makeCache(capacity: ids.count)
        #expect(throws: PaliGemmaError.self) {
            try model.forward([SequenceInput(ids: ids, prefixLength: ids.count, cache: other)])
        }
    }

    @Test("images encoded as one batch (and in chunks past the batch size) equal each image encoded alone", arguments: ModelParityTests.names)
    func batchedVisionEqualsOneByOne(name: String) throws {
        let model = try PaliGemmaModel(directory: Fixtures.model(name))
        var rng = SeededRandom(11)
        let count = SigLIPVisionTower.batch + 3  // one full batch, then a short one
        let images = (0..<count).map { _ in rng.floats(model.pixelCount) }
        let together = try model.imageFeatures(pixels: images)
        let n = model.config.numImageTokens
        var worst: Float = 0
        for (i, pixels) in images.enumerated() {
            let alone = try model.imageFeatures(pixels: pixels).values
            let rows = Array(together.values[i * n * together.cols..<(i + 1) * n * together.cols])
            worst = max(worst, maxAbsDiff(rows, alone).diff)
        }
        print("[\(name)] \(count) images batched against one by one: worst |diff| \(worst)")
        #expect(together.rows == count * n)
        #expect(worst <= 1e-5, "\(name): batched vision differs by \(worst)")
        // A wrong-sized image is named.
        var bad = images
        bad[4] = [Float](repeating: 0, count: 5)
        #expect(throws: PaliGemmaError.input("image 5 of \(count): pixel values: got 5 floats, expected "
                                             + "3x\(model.config.visionConfig.imageSize)x\(model.config.visionConfig.imageSize) = \(model.pixelCount)")) {
            try model.imageFeatures(pixels: bad)
        }
    }
}

