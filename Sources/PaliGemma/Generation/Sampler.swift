import Foundation

/// How the next token is chosen. temperature 0 means greedy (argmax; the first index on ties,
/// as torch.argmax). Otherwise logits are divided by the temperature, filtered by top-k and
/// top-p (nucleus) the way transformers' warpers do it, and a token is drawn with a seeded
/// generator, so the same seed gives the same tokens.
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Float
    /// Keep the k most likely tokens (0: no limit).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: no limit).
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingOptions()

    public var isGreedy: Bool { temperature <= 0 || topK == 1 }

    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw PaliGemmaError.input("temperature must be >= 0, got \(temperature)") }
        guard topK >= 0 else { throw PaliGemmaError.input("top-k must be >= 0, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw PaliGemmaError.input("top-p must be in (0, 1], got \(topP)") }
    }
}

/// Per-request sampling state (the random generator).
public struct Sampler: Sendable {
    public let options: SamplingOptions
    private var rng: Xoshiro256

    public init(_ options: SamplingOptions) {
        self.options = options
        rng = Xoshiro256(seed: options.seed)
    }

    /// Index of the largest value; the first one on ties.
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        guard var bestValue = logits.first else { return 0 }
        var best = 0
        for i in 1..<logits.count where logits[i] > bestValue {
            best = i
            bestValue = logits[i]
        }
        return best
    }

    public mutating func next(_ logits: UnsafeBufferPointer<Float>) -> Int {
        if options.isGreedy || logits.count <= 1 { return Self.argmax(logits) }
        // Candidates sorted by logit, most likely first (ties: lower id first).
        var order = Array(0..<logits.count)
        order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if options.topK > 0 && options.topK < order.count {
            // transformers keeps every token whose logit reaches the k-th largest (ties included)
            let threshold = logits[order[options.topK - 1]]
            order = Array(order.prefix { logits[$0] >= threshold })
        }
        let t = options.temperature
        let maxLogit = Double(logits[order[0]] / t)
        var probs = order.map { exp(Double(logits[$0] / t) - maxLogit) }
        var sum = probs.reduce(0, +)
        if options.topP < 1 {
            // Keep the most likely tokens until their mass reaches top_p (at least one).
            var kept = 0
            var mass = 0.0
            while kept < probs.count {
                mass += probs[kept] / sum
                kept += 1
                if mass >= Double(options.topP) { break }
            }
            probs = Array(probs.prefix(kept))
            order = Array(order.prefix(kept))
            sum = probs.reduce(0, +)
        }
        let u = rng.nextDouble() * sum
        var acc = 0.0
        for (i, p) in probs.enumerated() {
            acc += p
            if u < acc { return order[i] }
        }
        return order[probs.count - 1]
    }
}
