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

/// What one step of a `TokenGenerator` produced.
public struct TokenEvent: Sendable {
    /// The id drawn from the step's logits.
    public let id: Int
    /// Whether it is a stop token (it ends generation and is not part of the answer).
    public let isStopToken: Bool
    /// The answer text this token completes (valid UTF-8; empty without a detokenizer, for a
    /// stop token, or while a character is still incomplete).
    public let text: String
    /// Text still held by the detokenizer, released when this step ended generation.
    public internal(set) var tail: String = ""
}

/// One request's generation as a value driven from outside: it owns the request's KV cache,
/// sampler, stop rules, produced ids and (optionally) an incremental detokenizer, says what its
/// next forward pass should consume (`nextInput()`: the prompt first, then the last token), and
/// advances one token at a time given that pass's logits (`advance(logits:)`). A scheduler can
/// drive many of them through one batched forward (`PaliGemmaModel.step(_:)`); `generate` is
/// the same loop for one. When it finishes, its cache's blocks go back to their pool.
public final class TokenGenerator: @unchecked Sendable {
    public let promptIDs: [Int]
    public let options: GenerationOptions
    public let cache: KVCache
    /// The served adapter its forward passes route its rows to (nil: the model as loaded). The
    /// image features must have been made with it when it `adaptsVision`.
    public var adapter: LoRASet?
    private var imageFeatures: Matrix?
    private var sampler: Sampler
    private var detokenizer: StreamingDecoder?
    private var prefilled = false
    /// Generated ids, without the stop token.
    public private(set) var tokens: [Int] = []
    /// The answer so far (with a detokenizer).
    public private(set) var text = ""
    /// Why it finished (nil while it goes on).
    public private(set) var stopReason: StopReason?
    /// Text the detokenizer still held when generation finished (already part of `text`).
    public private(set) var tail = ""

    /// A request over `promptIDs` (image tokens, <bos>, prompt, "\n": the whole of it is the
    /// bidirectional prefix) with the image already in `imageFeatures`. The cache is taken from
    /// `pool` (a new pool of its own when nil); `detokenizer` turns ids into text as they come.
    public init(model: PaliGemmaModel, promptIDs: [Int], imageFeatures: Matrix?, options: GenerationOptions,
                pool: KVCachePool? = nil, detokenizer: StreamingDecoder? = nil) throws {
        try options.sampling.validate()
        guard options.maxNewTokens >= 0 else { throw PaliGemmaError.input("max new tokens must be >= 0") }
        guard !promptIDs.isEmpty else { throw PaliGemmaError.input("the prompt is empty") }
        let limit = model.config.textConfig.maxPositionEmbeddings
        guard promptIDs.count + options.maxNewTokens <= limit else {
            throw PaliGemmaError.input("prompt of \(promptIDs.count) tokens + \(options.maxNewTokens) new tokens exceeds the model's \(limit) positions")
        }
        self.promptIDs = promptIDs
        self.options = options
        self.imageFeatures = imageFeatures
        sampler = Sampler(options.sampling)
        self.detokenizer = detokenizer
        let needed = promptIDs.count + options.maxNewTokens
        if let pool {
            cache = try pool.makeCache()
        } else {
            cache = try model.makeCache(capacity: options.maxNewTokens > 0 ? needed : 1)
        }
        if options.maxNewTokens == 0 { finish(.maxTokens) }
    }

    public var isFinished: Bool { stopReason != nil }
    /// The bidirectional prefix: the whole prompt.
    public var prefixLength: Int { promptIDs.count }

    /// What this request's next forward pass consumes: the prompt (with its image), then the
    /// last generated token; nil once finished.
    public func nextInput() -> SequenceInput? {
        guard !isFinished else { return nil }
        if !prefilled {
            return SequenceInput(ids: promptIDs, imageFeatures: imageFeatures, prefixLength: prefixLength, cache: cache, adapter: adapter)
        }
        guard let last = tokens.last else { return nil }
        return SequenceInput(ids: [last], prefixLength: prefixLength, cache: cache, adapter: adapter)
    }

    /// Takes the logits row of the forward pass that consumed `nextInput()`: draws the next id,
    /// shows it to `control` (which may stop generation after it), and applies the stop rules:
    /// a stop token ends generation without being kept; otherwise the id is kept, and
    /// generation ends if `control` said stop (cancelled) or `maxNewTokens` are reached.
    @discardableResult
    public func advance(logits: UnsafeBufferPointer<Float>,
                        control: (TokenEvent, UnsafeBufferPointer<Float>) throws -> StreamControl = { _, _ in .continue })
        rethrows -> TokenEvent {
        precondition(!isFinished, "advance on a finished generator")
        prefilled = true
        imageFeatures = nil
        let id = sampler.next(logits)
        let isStop = options.stopTokens.contains(id)
        let piece = isStop || detokenizer == nil ? "" : detokenizer?.push(Int32(id)) ?? ""
        var event = TokenEvent(id: id, isStopToken: isStop, text: piece)
        let decision = try control(event, logits)
        if isStop {
            event.tail = finish(.stopToken)
            return event
        }
        tokens.append(id)
        text += piece
        if decision == .stop {
            event.tail = finish(.cancelled)
        } else if tokens.count >= options.maxNewTokens {
            event.tail = finish(.maxTokens)
        }
        return event
    }

    /// Stops generation now (a no-op once finished); returns the text the detokenizer held.
    @discardableResult
    public func cancel() -> String { isFinished ? "" : finish(.cancelled) }

    @discardableResult
    private func finish(_ reason: StopReason) -> String {
        stopReason = reason
        imageFeatures = nil
        cache.release()
        tail = detokenizer?.finish() ?? ""
        text += tail
        return tail
    }
}

extension PaliGemmaModel {
    /// One batched forward pass for every unfinished generator, then one `advance` each (in
    /// order); finished ones are skipped. Returns the events of the generators that ran.
    @discardableResult
    public func step(_ generators: [TokenGenerator]) throws -> [TokenEvent] {
        let active = generators.filter { !$0.isFinished }
        let inputs = active.compactMap { $0.nextInput() }
        guard !inputs.isEmpty else { return [] }
        let logits = try forward(inputs)
        return try zip(active, logits).map { g, l in try l.withRow(0) { try g.advance(logits: $0) } }
    }

    /// Prefills the prompt (its whole length is the bidirectional prefix) and decodes new tokens
    /// with the KV cache until a stop token, `maxNewTokens`, or the callback says stop.
    /// `onToken(id, logits)` sees each chosen id (stop tokens too) with the logits it was drawn
    /// from. The image must already be in `imageFeatures` (see `imageFeatures(pixels:)`).
    /// A `TokenGenerator` driven to the end.
    public func generate(promptIDs: [Int], imageFeatures: Matrix?, options: GenerationOptions,
                         onToken: (Int, UnsafeBufferPointer<Float>) throws -> StreamControl = { _, _ in .continue })
        throws -> GeneratedTokens {
        let generator = try TokenGenerator(model: self, promptIDs: promptIDs, imageFeatures: imageFeatures, options: options)
        return try run(generator) { event, logits in try onToken(event.id, logits) }
    }

    /// Drives one generator to the end, timing the prefill and each decode step.
    func run(_ generator: TokenGenerator,
             control: (TokenEvent, UnsafeBufferPointer<Float>) throws -> StreamControl) throws -> GeneratedTokens {
        var result = GeneratedTokens()
        var first = true
        while let input = generator.nextInput() {
            let clock = Date()
            let logits = try forward([input])[0]
            let seconds = Date().timeIntervalSince(clock)
            if first { result.timings.prefill = seconds } else { result.timings.decodeSteps.append(seconds) }
            first = false
            try logits.withRow(0) { row in _ = try generator.advance(logits: row, control: control) }
        }
        result.tokens = generator.tokens
        result.stopReason = generator.stopReason ?? .maxTokens
        return result
    }
}

extension Matrix {
    /// Calls `body` with row `r` as a buffer.
    func withRow<T>(_ r: Int, _ body: (UnsafeBufferPointer<Float>) throws -> T) rethrows -> T {
        try body(UnsafeBufferPointer(start: row(r), count: cols))
    }
}
