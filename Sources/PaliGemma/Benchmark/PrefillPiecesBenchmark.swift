import Foundation

/// The decoder's prefill run in pieces as the server runs it (`StagedPrefill`, image features
/// given), with each feed-forward half cut into pieces of at most `rows` rows (`Benchmark.prefillPieces`).
public struct PrefillPiecesTiming: Codable, Sendable {
    /// The most rows a feed-forward piece ran; 0: each half in one piece.
    public let rows: Int
    /// Pieces the decoder's prefill took (attention halves, feed-forward pieces, the output).
    public let pieces: Int
    /// The whole prefill, each round.
    public let seconds: [Double]
    public let best: Double
    /// The longest feed-forward piece and the longest other piece, in the best round.
    public let slowestFeedForwardPiece: Double
    public let slowestOtherPiece: Double
    /// Whether the logits equal, bit for bit, those of the prefill with whole halves.
    public let identical: Bool
    /// The same prompt's prefill as one `forward` call, best of the same rounds (taking turns).
    public let forwardBest: Double

    enum CodingKeys: String, CodingKey {
        case rows, pieces, seconds, best, identical, forwardBest = "forward_best"
        case slowestFeedForwardPiece = "slowest_feed_forward_piece_s", slowestOtherPiece = "slowest_other_piece_s"
    }
}

extension Benchmark {
    /// Times the staged prefill of the synthetic prompt with feed-forward pieces of at most each
    /// of `rows` rows (0: whole halves, always measured first as the reference), the values taking
    /// turns for `rounds` rounds.
    public static func prefillPieces(directory: URL, promptTokens: Int, rows: [Int], rounds: Int,
                                     quantization: Quantization = .none) throws -> [PrefillPiecesTiming] {
        let model = try PaliGemmaModel(directory: directory, quantization: quantization)
        let (pixels, ids) = syntheticInput(model, promptTokens: promptTokens)
        let image = try model.imageFeatures(pixels: pixels)
        let sizes = [0] + rows.filter { $0 != 0 }
        var seconds = [[Double]](repeating: [], count: sizes.count)
        var slowest = [(Double, Double)](repeating: (0, 0), count: sizes.count)
        var pieces = [Int](repeating: 0, count: sizes.count)
        var logits = [[Float]?](repeating: nil, count: sizes.count)
        var forward = Double.infinity
        for _ in 0..<max(rounds, 1) {
            let cache = try model.makeCache(capacity: ids.count)
            let clock = Date()
            _ = try model.forward([SequenceInput(ids: ids, imageFeatures: image, prefixLength: ids.count, cache: cache)])
            forward = min(forward, Date().timeIntervalSince(clock))
            for (i, size) in sizes.enumerated() {
                let cache = try model.makeCache(capacity: ids.count)
                let prefill = try StagedPrefill(model: model, input: SequenceInput(ids: ids, imageFeatures: image,
                                                                                   prefixLength: ids.count, cache: cache))
                var ran = 0
                var longest = (0.0, 0.0)
                let clock = Date()
                while !prefill.isFinished {
                    let piece = prefill.nextPiece
                    let pieceClock = Date()
                    try prefill.advance(rows: size == 0 ? nil : size)
                    let t = Date().timeIntervalSince(pieceClock)
                    if case .decoderFeedForward = piece { longest.0 = max(longest.0, t) } else { longest.1 = max(longest.1, t) }
                    ran += 1
                }
                let total = Date().timeIntervalSince(clock)
                if seconds[i].isEmpty || total < (seconds[i].min() ?? .infinity) { slowest[i] = longest }
                seconds[i].append(total)
                pieces[i] = ran
                logits[i] = prefill.logits?.values
            }
        }
        return sizes.indices.map { i in
            PrefillPiecesTiming(rows: sizes[i], pieces: pieces[i], seconds: seconds[i], best: seconds[i].min() ?? 0,
                                slowestFeedForwardPiece: slowest[i].0, slowestOtherPiece: slowest[i].1,
                                identical: logits[i] != nil && logits[i] == logits[0], forwardBest: forward)
        }
    }
}
