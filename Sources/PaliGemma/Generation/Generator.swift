import Foundation

/// Options of one generation request.
public struct GenerationOptions: Sendable {
    public var maxNewTokens: Int
    public var sampling: SamplingOptions
    /// Token ids that end generation (the eos id by default); they are not part of the answer.
    public var stopTokens: Set<Int>

    public init(maxNewTokens: Int = 64, sampling: SamplingOptions = .greedy, stopTokens: Set<Int> = [1]) {
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.stopTokens = stopTokens
    }
}

/// Wall-clock times of the stages of one request, in seconds.
public struct GenerationTimings: Sendable, Codable {
    public var image: Double = 0
    public var prefill: Double = 0
    /// One entry per decode step (each new token after the first).
    public var decodeSteps: [Double] = []

    public var decodeTotal: Double { decodeSteps.reduce(0, +) }
    /// Median decode step, in milliseconds.
    public var decodeMillisecondsPerToken: Double {
        guard !decodeSteps.isEmpty else { return 0 }
        let s = decodeSteps.sorted()
        return 1000 * (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
    }
}

/// Why generation stopped.
public enum StopReason: String, Sendable, Codable {
    case stopToken = "eos", maxTokens = "length", cancelled
}

/// The token-level result of one request.
public struct GeneratedTokens: Sendable {
    /// Generated ids, without the stop token.
    public var tokens: [Int] = []
    public var stopReason: StopReason = .maxTokens
    public var timings = GenerationTimings()
}

/// What a streaming callback is told after each new token.
public enum StreamControl: Sendable { case `continue`, stop }

extension PaliGemmaModel {
    /// Prefills the prompt (its whole length is the bidirectional prefix) and decodes new tokens
    /// with the KV cache until a stop token, `maxNewTokens`, or the callback says stop.
    /// `onToken(id, logits)` sees each chosen id (stop tokens too) with the logits it was drawn
    /// from. The image must already be in `imageFeatures` (see `imageFeatures(pixels:)`).
    public func generate(promptIDs: [Int], imageFeatures: Matrix?, options: GenerationOptions,
                         onToken: (Int, UnsafeBufferPointer<Float>) throws -> StreamControl = { _, _ in .continue })
        throws -> GeneratedTokens {
        try options.sampling.validate()
        guard options.maxNewTokens >= 0 else { throw PaliGemmaError.input("max new tokens must be >= 0") }
        guard !promptIDs.isEmpty else { throw PaliGemmaError.input("the prompt is empty") }
        let limit = config.textConfig.maxPositionEmbeddings
        guard promptIDs.count + options.maxNewTokens <= limit else {
            throw PaliGemmaError.input("prompt of \(promptIDs.count) tokens + \(options.maxNewTokens) new tokens exceeds the model's \(limit) positions")
        }
        var result = GeneratedTokens()
        guard options.maxNewTokens > 0 else { return result }
        let cache = makeCache(capacity: promptIDs.count + options.maxNewTokens)
        var sampler = Sampler(options.sampling)
        let prefix = promptIDs.count

        var clock = Date()
        var logits = try forward(ids: promptIDs, imageFeatures: imageFeatures, prefixLength: prefix, cache: cache, logits: .last)
        result.timings.prefill = Date().timeIntervalSince(clock)
        while true {
            let (id, control) = try logits.withRow(0) { row in
                let id = sampler.next(row)
                return (id, try onToken(id, row))
            }
            if options.stopTokens.contains(id) { result.stopReason = .stopToken; break }
            result.tokens.append(id)
            if control == .stop { result.stopReason = .cancelled; break }
            if result.tokens.count >= options.maxNewTokens { result.stopReason = .maxTokens; break }
            clock = Date()
            logits = try forward(ids: [id], imageFeatures: nil, prefixLength: prefix, cache: cache, logits: .last)
            result.timings.decodeSteps.append(Date().timeIntervalSince(clock))
        }
        return result
    }
}

extension Matrix {
    /// Calls `body` with row `r` as a buffer.
    func withRow<T>(_ r: Int, _ body: (UnsafeBufferPointer<Float>) throws -> T) rethrows -> T {
        try body(UnsafeBufferPointer(start: row(r), count: cols))
    }
}
