import Foundation
import PaliGemma
@testable import PaliGemmaServer
import Synchronization
import Testing

/// The engine's bursts: requests that arrive while nothing decodes start streaming together.
@Suite("Burst prefill", .serialized)
struct BurstPrefillTests {
    /// What the engine tells its observer, in order.
    final class Recorder: EngineObserver, @unchecked Sendable {
        enum Event: Equatable { case firstToken, step(sequences: Int) }
        private let events = Mutex<[Event]>([])
        var recorded: [Event] { events.withLock { $0 } }
        func visionEncoded(seconds: Double, cached: Bool) {}
        func firstToken(seconds: Double, promptTokens: Int) { events.withLock { $0.append(.firstToken) } }
        func interToken(seconds: Double) {}
        func finished(_ summary: EngineSummary) {}
        func iteration(decodeSequences: Int, decodeSeconds: Double, prefillPieces: Int, prefillSeconds: Double) {
            if decodeSequences > 0 { events.withLock { $0.append(.step(sequences: decodeSequences)) } }
        }
    }

    /// Three requests over three images: the first is queued alone; the other two are queued
    /// while the engine is about to run its prefill (from inside the first request's
    /// `clientGone`, which the engine polls before each turn), so they wait in the queue while
    /// it prefills. Returns the answers and what the observer saw.
    static func run(burst: Bool) async throws -> (answers: [String], events: [Recorder.Event]) {
        let pipeline = try PaliGemmaPipeline(directory: randomShapesModel)  // answers as long as asked
        let engine = try InferenceEngine(pipeline: pipeline, maxBatch: 4, maxQueue: 4, contextTokens: 512,
                                         visionCacheEntries: 8, burstPrefill: burst)
        let recorder = Recorder()
        engine.observer = recorder
        let prompts = ["caption en", "answer en how many shapes are there?", "detect circle"]
        let fills: [(UInt8, UInt8, UInt8)] = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
        var requests: [EngineRequest] = []
        for (prompt, fill) in zip(prompts, fills) {
            let image = RGBImage(width: 64, height: 48, fill: fill)
            let key = "burst-test-\(fill.0)-\(fill.1)-\(fill.2)"
            requests.append(EngineRequest(promptIDs: pipeline.promptIDs(prompt),
                                          images: [EngineImage(key: key, width: 64, height: 48, pixels: try pipeline.pixelValues(image))],
                                          options: GenerationOptions(maxNewTokens: 6)))
        }
        let later = Mutex<[AsyncStream<EngineEvent>]>([])
        let others = Array(requests.dropFirst())
        var first = requests[0]
        let submitted = Mutex(false)
        first.clientGone = {
            let now = submitted.withLock { done in
                defer { done = true }
                return !done
            }
            if now {
                for r in others { if let s = try? engine.submit(r) { later.withLock { $0.append(s) } } }
            }
            return false
        }
        let firstStream = try engine.submit(first)
        engine.start()
        var answers: [String] = []
        func collect(_ stream: AsyncStream<EngineEvent>) async {
            for await event in stream {
                if case let .finished(summary) = event { answers.append(summary.text) }
            }
        }
        await collect(firstStream)  // the others were queued before its first step
        for stream in later.withLock({ $0 }) { await collect(stream) }
        await engine.drain(grace: 5)
        return (answers, recorder.recorded)
    }

    @Test("requests queued while one prefills start together and decode in full batches; off, they join one by one")
    func burstStartsTogether() async throws {
        let on = try await Self.run(burst: true)
        #expect(on.answers.count == 3)
        // Three first tokens before any decode step, then five steps over all three.
        #expect(on.events == [.firstToken, .firstToken, .firstToken] + Array(repeating: .step(sequences: 3), count: 5), "\(on.events)")

        let off = try await Self.run(burst: false)
        #expect(off.answers.count == 3)
        // The first request streams alone while the others prefill.
        #expect(Array(off.events.prefix(2)) == [.firstToken, .step(sequences: 1)], "\(off.events)")
        // The same answers either way (greedy, the same kernels for every row).
        #expect(on.answers == off.answers)
    }
}
