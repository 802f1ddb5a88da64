import Foundation
import Prometheus

/// The server's Prometheus metrics, in a registry of its own (so several servers in one process,
/// as in the tests, keep separate counts). Names and meanings are listed in docs/SERVER.md.
public final class ServerMetrics: EngineObserver, @unchecked Sendable {
    public let registry = PrometheusCollectorRegistry()
    let running: Gauge
    let waiting: Gauge
    let promptTokens: Counter
    let generatedTokens: Counter
    let timeToFirstToken: ValueHistogram
    let interToken: ValueHistogram
    let imageEncode: ValueHistogram
    let stepSeconds: ValueHistogram
    let stepSequences: ValueHistogram
    let prefillSlice: ValueHistogram
    let visionCacheHits: Counter
    let visionCacheMisses: Counter
    let finishedCounters: [FinishReason: Counter]
    private let lock = NSLock()
    private var rejected: [String: Counter] = [:]
    private var responses: [String: Counter] = [:]
    /// The longest time running requests waited, beyond their decode step, for prefill pieces (seconds).
    public private(set) var worstPrefillStall: Double = 0

    init() {
        running = registry.makeGauge(descriptor: Self.descriptor("paligemma_requests_running", "Requests in the running batch."))
        waiting = registry.makeGauge(descriptor: Self.descriptor("paligemma_requests_waiting", "Requests queued behind the running batch."))
        promptTokens = registry.makeCounter(descriptor: Self.descriptor("paligemma_prompt_tokens_total", "Prompt tokens prefilled (image tokens included)."))
        generatedTokens = registry.makeCounter(descriptor: Self.descriptor("paligemma_generated_tokens_total", "Tokens generated."))
        let latency: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
        timeToFirstToken = registry.makeValueHistogram(descriptor: Self.descriptor("paligemma_time_to_first_token_seconds", "From a request's arrival at the engine to its first token."),
            buckets: latency)
        interToken = registry.makeValueHistogram(descriptor: Self.descriptor("paligemma_inter_token_seconds", "Between two tokens of one request."),
            buckets: latency)
        imageEncode = registry.makeValueHistogram(descriptor: Self.descriptor("paligemma_image_encode_seconds", "Vision tower and projector for one image (cache misses only)."),
            buckets: latency)
        stepSeconds = registry.makeValueHistogram(descriptor: Self.descriptor("paligemma_step_seconds", "One batched decode step of the running requests."),
            buckets: latency)
        stepSequences = registry.makeValueHistogram(descriptor: Self.descriptor("paligemma_step_sequences", "Requests in one batched decode step."),
            buckets: [1, 2, 4, 8, 16, 32, 64])
        prefillSlice = registry.makeValueHistogram(descriptor: Self.descriptor("paligemma_prefill_slice_seconds",
            "Prefill pieces run between two decode steps (the extra wait of running requests)."), buckets: latency)
        visionCacheHits = registry.makeCounter(descriptor: Self.descriptor("paligemma_vision_cache_hits_total", "Images whose features came from the vision cache."))
        visionCacheMisses = registry.makeCounter(descriptor: Self.descriptor("paligemma_vision_cache_misses_total", "Images encoded by the vision tower."))
        var finished: [FinishReason: Counter] = [:]
        for reason in [FinishReason.stop, .length, .cancelled, .timeout, .error] {
            finished[reason] = registry.makeCounter(descriptor: Self.descriptor("paligemma_requests_finished_total", "Requests that ended, by how."),
                labels: [("reason", reason.rawValue)])
        }
        finishedCounters = finished
    }

    /// A metric's name and help text.
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// A request refused before it ran, by reason (the error's code: queue_full, unauthorized, ...).
    func rejected(_ reason: String) {
        let counter = lock.withLock {
            if let c = rejected[reason] { return c }
            let c = registry.makeCounter(descriptor: Self.descriptor("paligemma_requests_rejected_total", "Requests refused, by reason."),
                labels: [("reason", reason)])
            rejected[reason] = c
            return c
        }
        counter.increment()
    }

    /// An HTTP response, by route and status code.
    func responded(route: String, status: Int) {
        let key = route + " " + String(status)
        let counter = lock.withLock {
            if let c = responses[key] { return c }
            let c = registry.makeCounter(descriptor: Self.descriptor("paligemma_http_responses_total", "HTTP responses, by route and status."),
                labels: [("route", route), ("status", String(status))])
            responses[key] = c
            return c
        }
        counter.increment()
    }

    func update(_ state: EngineState) {
        running.set(to: Double(state.running))
        waiting.set(to: Double(state.waiting))
    }

    // MARK: EngineObserver (called on the engine thread)

    public func visionEncoded(seconds: Double, cached: Bool) {
        if cached {
            visionCacheHits.increment()
        } else {
            visionCacheMisses.increment()
            imageEncode.record(seconds)
        }
    }

    public func firstToken(seconds: Double, promptTokens count: Int) {
        timeToFirstToken.record(seconds)
        promptTokens.increment(by: Int64(count))
        generatedTokens.increment()
    }

    public func interToken(seconds: Double) {
        interToken.record(seconds)
        generatedTokens.increment()
    }

    public func finished(_ summary: EngineSummary) {
        finishedCounters[summary.finishReason]?.increment()
    }

    public func iteration(decodeSequences: Int, decodeSeconds: Double, prefillPieces: Int, prefillSeconds: Double) {
        if decodeSequences > 0 {
            stepSeconds.record(decodeSeconds)
            stepSequences.record(Double(decodeSequences))
        }
        if prefillPieces > 0 {
            prefillSlice.record(prefillSeconds)
            if decodeSequences > 0 {
                lock.withLock { worstPrefillStall = max(worstPrefillStall, prefillSeconds) }
            }
        }
    }
}
