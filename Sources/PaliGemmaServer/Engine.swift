import Foundation
import PaliGemma

// The continuous-batching engine: one thread owns the model; requests wait in a bounded queue,
// join the running batch at token boundaries (up to `maxBatch`), and every step of the running
// requests is one batched forward (`PaliGemmaModel.forward(_:)`: the weights are read once per
// step). A new request's prefill runs in pieces (a vision or decoder layer each, `StagedPrefill`)
// after each decode step, for up to `prefillShare` of that step's time. Requests that arrive
// together while nothing decodes form a burst: their prefills run whole, one after another, and
// all of them start streaming once the last is done, so that they decode in full batches from
// their first step (`burstPrefill`). Events reach each request's consumer through an
// AsyncStream; dropping the stream cancels the request.

/// An image ready for the engine: its size and content key, and its pixel tensor unless the
/// vision cache already holds its features (the HTTP side skips decoding on a hit).
public struct EngineImage: Sendable {
    /// SHA-256 of the image file's bytes: the vision cache's key.
    public var key: String
    public var width: Int
    public var height: Int
    /// The preprocessed pixel tensor [3, S, S]; nil when the cache held the features at lookup.
    public var pixels: [Float]?
}

/// One generation request.
public struct EngineRequest: Sendable {
    /// The whole prompt as the model sees it (`PaliGemmaPipeline.promptIDs`: every image's
    /// tokens, `<bos>`, prompt, "\n"), tokenized once where the request is checked.
    public var promptIDs: [Int]
    /// The prompt's images, in order (one or more).
    public var images: [EngineImage]
    public var options: GenerationOptions
    /// Strings that end generation; the answer stops before the first one (OpenAI's `stop`).
    public var stop: [String] = []
    /// When the request is cancelled if still running.
    public var deadline: Date?
    /// Polled before each step: true once the client has gone (the request is then cancelled).
    public var clientGone: (@Sendable () -> Bool)?
    /// The served adapter this request's rows take (nil: the base model). When it adapts the
    /// vision tower, the images' keys must say so (their features depend on it).
    public var adapter: LoRASet?

    public init(promptIDs: [Int], images: [EngineImage], options: GenerationOptions, stop: [String] = [], deadline: Date? = nil) {
        self.promptIDs = promptIDs
        self.images = images
        self.options = options
        self.stop = stop
        self.deadline = deadline
    }
}

/// Why a request ended.
public enum FinishReason: String, Sendable, Codable {
    /// The end-of-sequence token or a stop string.
    case stop
    /// max_tokens reached.
    case length
    /// The client went away or cancelled.
    case cancelled
    /// The request's deadline passed.
    case timeout
    /// The engine failed (the message is in `EngineSummary.error`).
    case error
}

/// What a request produced, when it ends.
public struct EngineSummary: Sendable {
    public var text: String
    public var tokens: [Int]
    public var promptTokens: Int
    public var finishReason: FinishReason
    public var error: String?
    /// Seconds in the queue before joining the batch.
    public var queueSeconds: Double = 0
    /// Vision tower and projector (0 when every image was a cache hit).
    public var visionSeconds: Double = 0
    /// Whether every image's features came from the vision cache.
    public var visionCached = false
    /// From submission to the first token.
    public var firstTokenSeconds: Double = 0
    /// From submission to the end.
    public var totalSeconds: Double = 0
}

/// What a request's consumer receives.
public enum EngineEvent: Sendable {
    /// A piece of the answer (valid UTF-8; may be empty for a token that completes nothing yet).
    case text(String)
    /// The end; always the last event.
    case finished(EngineSummary)
}

/// Why the engine refused a request.
public enum EngineRejection: Error, Sendable, Equatable {
    case queueFull(waiting: Int)
    case shuttingDown
}

/// Counts the engine reports (for /metrics and /health).
public struct EngineState: Sendable {
    public var running: Int
    public var waiting: Int
    /// Seconds since the loop last made progress while it had work; 0 when idle.
    public var stalledSeconds: Double
    public var accepting: Bool
}

/// The observations the engine makes as it works (the server turns them into metrics).
public protocol EngineObserver: AnyObject, Sendable {
    func visionEncoded(seconds: Double, cached: Bool)
    func firstToken(seconds: Double, promptTokens: Int)
    func interToken(seconds: Double)
    func finished(_ summary: EngineSummary)
    /// One turn of the loop: a batched decode step over `decodeSequences` requests, then
    /// `prefillPieces` pieces of waiting prompts' prefills.
    func iteration(decodeSequences: Int, decodeSeconds: Double, prefillPieces: Int, prefillSeconds: Double)
}

public final class InferenceEngine: @unchecked Sendable {
    public let pipeline: PaliGemmaPipeline
    public let maxBatch: Int
    public let maxQueue: Int
    public let visionCache: VisionCache
    /// The time a step may give to prefill pieces, as a share of its decode step's time (at
    /// least one piece runs per step): how much longer running streams wait while a new
    /// request prefills, traded against that request's time to first token.
    public let prefillShare: Double
    /// The default share: a running stream's token then takes at most about 1.6 times as long
    /// while a request prefills. Since one sequence's decode step is 20% faster than a batched
    /// one (fast precision, Zen 5), 0.8 made 8 clients' p95 gap 2.17-2.37× one client's, past
    /// the 2× the load benchmark allows; 0.6 gave 1.92× at the same throughput
    /// (docs/BENCHMARKS.md).
    public static let defaultPrefillShare = 0.6
    /// Whether requests that arrive while nothing decodes are prefilled as a burst: the first
    /// prompt to finish its prefill holds its first token while the others that were queued or
    /// prefilling at that moment finish theirs (at most `maxBatch` in all), then all of them
    /// stream together. Each decode step then carries the whole burst (a step over 8 sequences
    /// costs about 1.4 times one sequence's, so steps over a few at a time, while the others
    /// prefill in slices, waste most of that), and nobody's stream pauses for a prefill; the
    /// price is the first request's time to first token, which becomes the burst's. Off: the
    /// first prompt streams as soon as it is ready and the others join it slice by slice.
    public let burstPrefill: Bool
    let pool: KVCachePool
    weak var observer: (any EngineObserver)?

    private let condition = NSCondition()
    private var waiting: [Job] = []
    private var running: [Job] = []
    private var accepting = true
    private var stopRequested = false
    private var loopExited = false
    private var lastProgress = Date()
    private var thread: Thread?
    /// The engine thread's own: how long prefill pieces take.
    private var pieceTimes = PrefillPieceTimes()
    /// The engine thread's own: the requests of the burst being prefilled, whose prefills must
    /// end before the held first tokens go out (nil when there is no burst).
    private var burst: [Job]?

    /// `contextTokens` is the most tokens (prompt + answer) one request may hold: the KV cache
    /// pool holds `maxBatch` of them.
    public init(pipeline: PaliGemmaPipeline, maxBatch: Int, maxQueue: Int, contextTokens: Int, visionCacheEntries: Int,
                prefillShare: Double = InferenceEngine.defaultPrefillShare, burstPrefill: Bool = true) throws {
        guard maxBatch >= 1 else { throw PaliGemmaError.input("max batch must be at least 1") }
        guard maxQueue >= 0 else { throw PaliGemmaError.input("max queue must be >= 0") }
        self.pipeline = pipeline
        self.maxBatch = maxBatch
        self.maxQueue = maxQueue
        self.prefillShare = max(0, prefillShare)
        self.burstPrefill = burstPrefill
        let blocks = (contextTokens + KVCachePool.defaultBlockTokens - 1) / KVCachePool.defaultBlockTokens
        pool = try pipeline.model.makeCachePool(tokens: maxBatch * blocks * KVCachePool.defaultBlockTokens)
        visionCache = VisionCache(capacity: visionCacheEntries)
    }

    /// Starts the loop thread (once).
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard thread == nil else { return }
        // Weak: the engine holds the thread and Foundation's Thread keeps its block after the
        // thread ends, so a strong capture was a cycle that kept the engine, its KV cache pool
        // and the model alive forever (found by LeakSanitizer: docs/RELIABILITY.md).
        let t = Thread(block: { [weak self] in self?.loop() })
        t.name = "paligemma-engine"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Queues a request. The stream yields its text pieces and ends with `.finished`; ending
    /// the iteration early (dropping the stream) cancels the request.
    public func submit(_ request: EngineRequest) throws -> AsyncStream<EngineEvent> {
        let (stream, continuation) = AsyncStream<EngineEvent>.makeStream(bufferingPolicy: .unbounded)
        let job = Job(request: request, continuation: continuation)
        job.observer = observer
        condition.lock()
        guard accepting else {
            condition.unlock()
            throw EngineRejection.shuttingDown
        }
        // Up to maxBatch run; up to maxQueue more wait.
        guard running.count + waiting.count < maxBatch + maxQueue else {
            let n = waiting.count
            condition.unlock()
            throw EngineRejection.queueFull(waiting: n)
        }
        waiting.append(job)
        condition.signal()
        condition.unlock()
        continuation.onTermination = { [weak job, weak self] _ in
            guard let job, let self else { return }
            job.cancel()
            self.wake()
        }
        return stream
    }

    public var state: EngineState {
        condition.lock()
        defer { condition.unlock() }
        let busy = !running.isEmpty || !waiting.isEmpty
        return EngineState(running: running.count, waiting: waiting.count,
                           stalledSeconds: busy && !loopExited ? Date().timeIntervalSince(lastProgress) : 0,
                           accepting: accepting)
    }

    /// Stops taking requests (new ones are refused with `.shuttingDown`) and waits until the
    /// queued and running ones finish; after `grace` seconds the rest are cancelled. Then the
    /// loop thread exits.
    public func drain(grace: Double) async {
        stopAccepting()
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline, !isIdle {
            try? await Task.sleep(for: .milliseconds(20))
        }
        stopLoop()
        while !hasExited {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    private func stopAccepting() {
        condition.withLock {
            accepting = false
            condition.broadcast()
        }
    }

    /// Cancels what is left and ends the loop.
    private func stopLoop() {
        condition.withLock {
            for job in waiting + running { job.cancel() }
            stopRequested = true
            condition.broadcast()
        }
    }

    private var isIdle: Bool {
        condition.withLock { waiting.isEmpty && running.isEmpty }
    }

    private var hasExited: Bool {
        condition.withLock { loopExited || thread == nil }
    }

    func wake() {
        condition.lock()
        condition.signal()
        condition.unlock()
    }

    // MARK: The loop (engine thread only)

    private func loop() {
        while true {
            condition.lock()
            while waiting.isEmpty && running.isEmpty && !stopRequested {
                lastProgress = Date()
                condition.wait()
            }
            if stopRequested {
                let rest = waiting + running
                waiting.removeAll()
                running.removeAll()
                loopExited = true
                condition.unlock()
                for job in rest { job.end(.cancelled) }
                return
            }
            var admitted: [Job] = []
            while running.count + admitted.count < maxBatch, !waiting.isEmpty {
                admitted.append(waiting.removeFirst())
            }
            running += admitted
            condition.unlock()

            for job in admitted { admit(job) }
            let active = running.filter { job in
                if job.isFinished { return false }
                if job.isCancelled { job.end(.cancelled); return false }
                if let deadline = job.request.deadline, Date() > deadline { job.end(.timeout); return false }
                return true
            }
            releaseBurst(active)
            let decoding = active.filter { $0.prefill == nil && $0.held == nil && !$0.isFinished }
            let decodeSeconds = decoding.isEmpty ? 0 : step(decoding)
            let prefilling = active.filter { $0.prefill != nil && !$0.isFinished }
            let (pieces, prefillSeconds) = prefilling.isEmpty ? (0, 0)
                : runPrefills(prefilling, budget: decoding.isEmpty ? .infinity : prefillShare * decodeSeconds)
            observer?.iteration(decodeSequences: decoding.count, decodeSeconds: decodeSeconds,
                                prefillPieces: pieces, prefillSeconds: prefillSeconds)

            condition.lock()
            running.removeAll { $0.isFinished }
            lastProgress = Date()
            condition.unlock()
        }
    }

    /// Makes the request's generator and its staged prefill (each image from the vision cache,
    /// or encoded piece by piece as part of the prefill).
    private func admit(_ job: Job) {
        guard !job.isCancelled else { return job.end(.cancelled) }
        job.summary.queueSeconds = Date().timeIntervalSince(job.submitted)
        do {
            var sources: [PrefillImage] = []
            for (i, image) in job.request.images.enumerated() {
                if let features = visionCache.features(for: image.key) {
                    sources.append(.features(features))
                    observer?.visionEncoded(seconds: 0, cached: true)
                } else if let pixels = image.pixels {
                    sources.append(.pixels(pixels))
                } else {
                    let which = job.request.images.count > 1 ? "image \(i + 1) left" : "the image left"
                    throw PaliGemmaError.input("\(which) the vision cache before it was encoded; send it again")
                }
            }
            job.summary.visionCached = sources.allSatisfy { if case .features = $0 { true } else { false } }
            let ids = job.request.promptIDs
            var options = job.request.options
            options.stopTokens.insert(pipeline.eosID)
            job.summary.promptTokens = ids.count
            let generator = try TokenGenerator(model: pipeline.model, promptIDs: ids, imageFeatures: nil, options: options,
                                               pool: pool, detokenizer: pipeline.tokenizer.streamingDecoder(skipSpecial: true))
            generator.adapter = job.request.adapter
            job.generator = generator
            if generator.isFinished { return job.end(.length) }
            guard let input = generator.nextInput() else { return job.end(.length) }
            job.prefill = try StagedPrefill(model: pipeline.model, input: input, images: sources)
        } catch {
            job.fail(error)
        }
    }

    /// One batched forward over the decoding requests, then one token each; returns its seconds.
    private func step(_ active: [Job]) -> Double {
        let inputs = active.compactMap { $0.generator?.nextInput() }
        guard inputs.count == active.count else {
            for job in active where job.generator?.nextInput() == nil { job.fail(PaliGemmaError.input("request has no input")) }
            return 0
        }
        let clock = Date()
        let logits: [Matrix]
        do {
            logits = try pipeline.model.forward(inputs)
        } catch {
            for job in active { job.fail(error) }
            return 0
        }
        let now = Date()
        for (job, rows) in zip(active, logits) {
            guard let generator = job.generator else { continue }
            let event = generator.advance(logits: UnsafeBufferPointer(start: rows.row(0), count: rows.cols)) { _, _ in .continue }
            job.received(event, at: now)
        }
        return now.timeIntervalSince(clock)
    }

    /// Runs prefill pieces, oldest request first, within `budget` seconds (at least one piece;
    /// a piece expected to overrun what is left waits for the next step). With nothing decoding
    /// the budget is unlimited, but the loop returns as soon as one prefill finishes, so that its
    /// request starts decoding while the next one prefills.
    private func runPrefills(_ jobs: [Job], budget: Double) -> (pieces: Int, seconds: Double) {
        let clock = Date()
        var pieces = 0
        for job in jobs {
            guard let prefill = job.prefill else { continue }
            while !prefill.isFinished {
                let piece = prefill.nextPiece
                guard case let .run(rows) = pieceTimes.plan(piece, elapsed: Date().timeIntervalSince(clock), budget: budget,
                                                            piecesRun: pieces) else { return (pieces, Date().timeIntervalSince(clock)) }
                let pieceClock = Date()
                do {
                    try prefill.advance(rows: rows)
                } catch {
                    job.fail(error)
                    break
                }
                pieces += 1
                let seconds = Date().timeIntervalSince(pieceClock)
                pieceTimes.record(piece, after: prefill.nextPiece, seconds: seconds)
                if piece == .vision { job.summary.visionSeconds += seconds }
                if prefill.isFinished {
                    if holds(job, budget: budget) {
                        job.prefill = nil
                        job.held = prefill
                    } else {
                        finishPrefill(job, prefill)
                    }
                    if budget == .infinity { return (pieces, Date().timeIntervalSince(clock)) }
                }
            }
        }
        return (pieces, Date().timeIntervalSince(clock))
    }

    /// Whether `job`, whose prefill has just ended, holds its first token for a burst: only with
    /// nothing decoding (an unlimited budget). The first to end opens the burst, whose members
    /// are the requests then prefilling or queued for the batch's free places.
    private func holds(_ job: Job, budget: Double) -> Bool {
        guard burstPrefill, budget == .infinity else { return false }
        if burst != nil { return true }
        let prefilling = running.filter { $0 !== job && !$0.isFinished && $0.prefill != nil }
        let free = maxBatch - running.count
        let queued = free > 0 ? condition.withLock { Array(waiting.prefix(free)) } : []
        guard !(prefilling + queued).isEmpty else { return false }
        burst = prefilling + queued
        return true
    }

    /// Once every member of the burst has ended its prefill (or its request has ended), the
    /// held first tokens go out, in the order the requests came.
    private func releaseBurst(_ active: [Job]) {
        guard let members = burst else { return }
        let done = members.allSatisfy { $0.isFinished || $0.held != nil || ($0.generator != nil && $0.prefill == nil) }
        guard done else { return }
        burst = nil
        for job in active {
            guard let prefill = job.held else { continue }
            job.held = nil
            finishPrefill(job, prefill)
        }
    }

    /// The prompt is in the cache: keep the features of the images it encoded, draw the first token.
    private func finishPrefill(_ job: Job, _ prefill: StagedPrefill) {
        job.prefill = nil
        var encoded = 0
        for (i, image) in job.request.images.enumerated() where image.pixels != nil && !visionCache.contains(image.key) {
            guard let features = prefill.features(ofImage: i) else { continue }
            visionCache.insert(features, for: image.key)
            encoded += 1
        }
        for _ in 0..<encoded { observer?.visionEncoded(seconds: job.summary.visionSeconds / Double(encoded), cached: false) }
        guard let generator = job.generator, let logits = prefill.logits, logits.rows == 1 else {
            return job.fail(PaliGemmaError.input("the prefill produced no logits"))
        }
        let event = generator.advance(logits: UnsafeBufferPointer(start: logits.row(0), count: logits.cols)) { _, _ in .continue }
        job.received(event, at: Date())
    }

    // MARK: Jobs

    final class Job: @unchecked Sendable {
        let request: EngineRequest
        let continuation: AsyncStream<EngineEvent>.Continuation
        let submitted = Date()
        var generator: TokenGenerator?
        /// The prompt's prefill while it runs (nil once the request decodes).
        var prefill: StagedPrefill?
        /// The prompt's finished prefill while its first token waits for the rest of a burst.
        var held: StagedPrefill?
        var summary: EngineSummary
        var stops: StopStringMatcher
        weak var observer: (any EngineObserver)?
        private var lastToken: Date?
        private let lock = NSLock()
        private var cancelled = false
        private(set) var isFinished = false

        init(request: EngineRequest, continuation: AsyncStream<EngineEvent>.Continuation) {
            self.request = request
            self.continuation = continuation
            summary = EngineSummary(text: "", tokens: [], promptTokens: 0, finishReason: .stop)
            stops = StopStringMatcher(request.stop)
        }

        var isCancelled: Bool { lock.withLock { cancelled } || request.clientGone?() == true }
        func cancel() { lock.withLock { cancelled = true } }

        /// A token was produced: pass its text on (held back while it may begin a stop string).
        func received(_ event: TokenEvent, at now: Date) {
            if let last = lastToken {
                observer?.interToken(seconds: now.timeIntervalSince(last))
            } else {
                summary.firstTokenSeconds = now.timeIntervalSince(submitted)
                observer?.firstToken(seconds: summary.firstTokenSeconds, promptTokens: summary.promptTokens)
            }
            lastToken = now
            if !event.isStopToken { summary.tokens.append(event.id) }
            let (released, hitStop) = stops.push(event.text + event.tail)
            if !released.isEmpty {
                summary.text += released
                continuation.yield(.text(released))
            }
            if hitStop {
                generator?.cancel()
                return end(.stop, flush: false)
            }
            guard let generator, generator.isFinished else { return }
            switch generator.stopReason {
            case .stopToken?: end(.stop)
            case .cancelled?: end(.cancelled)
            case .maxTokens?, nil: end(.length)
            }
        }

        func end(_ reason: FinishReason, flush: Bool = true) {
            guard !isFinished else { return }
            isFinished = true
            generator?.cancel()
            if flush {
                let rest = stops.flush()
                if !rest.isEmpty {
                    summary.text += rest
                    continuation.yield(.text(rest))
                }
            }
            summary.finishReason = reason
            summary.totalSeconds = Date().timeIntervalSince(submitted)
            observer?.finished(summary)
            continuation.yield(.finished(summary))
            continuation.finish()
        }

        func fail(_ error: Error) {
            summary.error = "\(error)"
            end(.error)
        }
    }
}

/// Finds OpenAI-style stop strings in streamed text: text is released as soon as it can no
/// longer be the start of a stop string; at a match, the text before it is released and the
/// rest dropped.
struct StopStringMatcher: Sendable {
    let stops: [String]
    private var held = ""

    init(_ stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Adds a piece; returns the text safe to release and whether a stop string was hit.
    mutating func push(_ piece: String) -> (String, Bool) {
        guard !stops.isEmpty else { return (piece, false) }
        held += piece
        if let range = stops.compactMap({ held.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
            let out = String(held[..<range.lowerBound])
            held = ""
            return (out, true)
        }
        // Keep the longest suffix of `held` that is a proper prefix of some stop string.
        var keep = 0
        for stop in stops {
            for n in stride(from: min(stop.count - 1, held.count), to: keep, by: -1) where held.hasSuffix(stop.prefix(n)) {
                keep = n
                break
            }
        }
        let cut = held.index(held.endIndex, offsetBy: -keep)
        let out = String(held[..<cut])
        held = String(held[cut...])
        return (out, false)
    }

    /// The text still held, at the end.
    mutating func flush() -> String {
        defer { held = "" }
        return held
    }
}

/// How long the last prefill piece of each kind took (a vision-tower piece, a decoder layer's
/// attention half, the output), and a feed-forward half's time per row, so that a step starts a
/// piece only where it is expected to end within the step's budget, and cuts feed-forward halves
/// to the rows that fit: the running streams then wait one decode step plus about the budget (or
/// one piece, when a single piece is longer).
struct PrefillPieceTimes {
    /// The fewest rows a feed-forward piece runs: its matrices are read once a piece, so a piece
    /// of few rows runs at a fraction of the kernel's speed.
    static let minimumFeedForwardRows = 64
    /// Feed-forward pieces run a multiple of this many rows (but the last): the bf16 prefill
    /// kernel works in blocks of 32 rows, so a piece of 133 rows would pad to 160.
    static let rowMultiple = 32
    private var vision: Double?
    private var attention: Double?
    private var output: Double?
    private var feedForwardPerRow: Double?

    /// Records a piece of kind `piece` that took `seconds`; `next` is the piece after it (to
    /// count the rows a feed-forward piece ran).
    mutating func record(_ piece: StagedPrefill.Piece, after next: StagedPrefill.Piece, seconds: Double) {
        switch piece {
        case .vision: vision = seconds
        case .decoderAttention: attention = seconds
        case .output: output = seconds
        case let .decoderFeedForward(before):
            var ran = before
            if case let .decoderFeedForward(left) = next { ran = before - left }
            if ran > 0 { feedForwardPerRow = seconds / Double(ran) }
        case .finished: break
        }
    }

    /// What to do with the next piece.
    enum Plan: Equatable {
        /// Leave it for the next step.
        case wait
        /// Run it; a feed-forward half with at most `rows` rows (nil: all that are left).
        case run(rows: Int?)
    }

    /// Whether the next piece may start `elapsed` seconds into a step's prefill time, and how many
    /// rows of a feed-forward half: always the first piece of the step, then only while a piece of
    /// its kind, as long as the last one, would still fit; feed-forward halves cut to the rows that
    /// fit, in multiples of `rowMultiple` (at least `minimumFeedForwardRows`). With an unlimited
    /// budget, everything.
    func plan(_ piece: StagedPrefill.Piece, elapsed: Double, budget: Double, piecesRun: Int) -> Plan {
        if budget == .infinity { return .run(rows: nil) }
        if piecesRun > 0 && elapsed >= budget { return .wait }
        let expected: Double?
        switch piece {
        case .vision: expected = vision
        case .decoderAttention: expected = attention
        case .output: expected = output
        case .finished: return .wait
        case .decoderFeedForward:
            guard let perRow = feedForwardPerRow, perRow > 0 else { return piecesRun == 0 ? .run(rows: nil) : .wait }
            // Clamped before the conversion: a huge --prefill-share must not overflow Int.
            let fit = Int(min(max(0, budget - elapsed) / perRow, 1e9)) / Self.rowMultiple * Self.rowMultiple
            if fit >= Self.minimumFeedForwardRows { return .run(rows: fit) }
            return piecesRun == 0 ? .run(rows: Self.minimumFeedForwardRows) : .wait
        }
        guard piecesRun > 0, let expected else { return .run(rows: nil) }
        return elapsed + expected <= budget ? .run(rows: nil) : .wait
    }
}
