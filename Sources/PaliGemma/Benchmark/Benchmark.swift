import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One benchmark run of a checkpoint: load, vision tower, prefill, decode. Stable JSON keys.
public struct BenchmarkResult: Codable, Sendable {
    public var model: String
    /// How the decoder's matrices were held: "none" (as stored), "int8" or "int4" (quantized at
    /// load), or "int8-stored" or "int4-stored" (a folder written by `paligemma quantize`); see
    /// `WeightFormat`.
    public var quantization: String
    public var threads: Int
    public var isa: String
    /// "exact" or "fast" (`Precision`), and the kernel fast products ran on ("none" with exact,
    /// or where the CPU has none).
    public var precision: String
    public var fastKernel: String
    /// Images in the prompt (frames of a video), each through the vision tower on its own.
    public var images: Int
    /// Image tokens of all of them.
    public var imageTokens: Int
    public var promptTokens: Int
    public var newTokens: Int
    public var loadSeconds: Double
    public var visionSeconds: Double
    public var prefillSeconds: Double
    public var ttftSeconds: Double
    public var decodeMsPerToken: Double
    public var decodeMsMin: Double
    public var decodeMsMax: Double
    public var peakRSSBytes: Int
    /// Runs measured; the figures above are from the last one.
    public var runs: Int
    /// Time to first token of the first run, which also pays for mapping the weights in.
    public var firstTTFTSeconds: Double
    /// This machine's limits for the same work (`bench --floors`); nil when not measured.
    public var floors: BenchmarkFloors?
    /// Each stage's floor over its measured time (1 is the floor itself), against the floor of
    /// the instructions the run used: the bf16 peak for vision and prefill with fast products,
    /// the integer dot products' peaks for int8 and 4-bit matrices with exact ones, the float32
    /// FMA peak otherwise; nil without floors.
    public var visionFloorShare: Double?
    public var prefillFloorShare: Double?
    public var decodeFloorShare: Double?

    enum CodingKeys: String, CodingKey {
        case model, quantization, threads, isa, precision, fastKernel = "fast_kernel"
        case images, imageTokens = "image_tokens", promptTokens = "prompt_tokens", newTokens = "new_tokens"
        case loadSeconds = "load_s", visionSeconds = "vision_s", prefillSeconds = "prefill_s", ttftSeconds = "ttft_s"
        case decodeMsPerToken = "decode_ms_per_token", decodeMsMin = "decode_ms_min", decodeMsMax = "decode_ms_max"
        case peakRSSBytes = "peak_rss_bytes", runs, firstTTFTSeconds = "first_ttft_s", floors
        case visionFloorShare = "vision_floor_share", prefillFloorShare = "prefill_floor_share"
        case decodeFloorShare = "decode_floor_share"
    }
}

public enum Benchmark {
    /// Peak resident set size of this process, in bytes.
    public static var peakRSS: Int {
        var usage = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) * 1024
        #else
        getrusage(RUSAGE_SELF, &usage)
        return Int(usage.ru_maxrss)
        #endif
    }

    /// Fixed pseudo-random pixels [C, S, S] and a prompt of image tokens + <bos> + `promptTokens`
    /// ordinary text ids (3 ..< 20000, or the vocabulary if smaller, never the image token) + "\n".
    static func syntheticInput(_ model: PaliGemmaModel, promptTokens: Int, images: Int = 1) -> (pixels: [Float], ids: [Int]) {
        var rng = Xoshiro256(seed: 1)
        let pixels = (0..<model.pixelCount).map { _ in Float(rng.nextDouble() * 2 - 1) }
        let upper = UInt64(min(model.decoder.vocabRows, 20000))
        let text = (0..<promptTokens).map { _ in
            let id = 3 + Int(rng.next() % (upper - 3))
            return id == model.config.imageTokenIndex ? 3 : id
        }
        let newline = min(108, Int(upper) - 1)
        let image = [Int](repeating: model.config.imageTokenIndex, count: model.config.numImageTokens * max(images, 1))
        return (pixels, image + [2] + text + [newline])
    }

    /// Seconds the vision tower takes for `images` images encoded `batch` at a time, for each batch
    /// size in `batches`, measured in turn `rounds` times in one process (the best of each kept),
    /// so that the sizes are compared under the same conditions.
    public static func visionBatches(directory: URL, images: Int, batches: [Int], rounds: Int,
                                     quantization: Quantization = .none) throws -> [VisionBatchTiming] {
        let model = try PaliGemmaModel(directory: directory, quantization: quantization)
        let (pixels, _) = syntheticInput(model, promptTokens: 1, images: images)
        let all = [[Float]](repeating: pixels, count: max(images, 1))
        _ = try model.imageFeatures(pixels: [pixels])  // maps the vision weights in
        var seconds = [[Double]](repeating: [], count: batches.count)
        for _ in 0..<max(rounds, 1) {
            for (i, batch) in batches.enumerated() {
                let clock = Date()
                _ = try model.imageFeatures(pixels: all, batch: batch)
                seconds[i].append(Date().timeIntervalSince(clock))
            }
        }
        return zip(batches, seconds).map { VisionBatchTiming(batch: $0, images: max(images, 1), seconds: $1, best: $1.min() ?? 0) }
    }

    /// Loads `directory`, runs the vision tower on fixed pseudo-random pixels (`images` times, as
    /// for the frames of a video), prefills their image tokens + <bos> + `promptTokens` text
    /// tokens + "\n", and decodes `newTokens` tokens
    /// greedily (stop tokens ignored, so every run decodes the same number). The kernels run at
    /// the calling thread's precision (`Kernels.withPrecision`).
    public static func run(directory: URL, promptTokens: Int, newTokens: Int,
                           quantization: Quantization = .none, runs: Int = 1, floors: Bool = false,
                           images: Int = 1) throws -> BenchmarkResult {
        var clock = Date()
        let model = try PaliGemmaModel(directory: directory, quantization: quantization)
        let load = Date().timeIntervalSince(clock)
        let (pixels, ids) = syntheticInput(model, promptTokens: promptTokens, images: images)
        let n = model.config.numImageTokens * max(images, 1)

        // Probes before and after the timed runs, the best of each kept (BenchmarkFloors).
        let early = floors ? BenchmarkFloors.measure(model: model, promptTokens: ids.count) : nil
        var vision = 0.0, firstTTFT = 0.0
        var out = GeneratedTokens()
        for run in 0..<max(runs, 1) {
            clock = Date()
            let image = try model.imageFeatures(pixels: [[Float]](repeating: pixels, count: max(images, 1)))
            vision = Date().timeIntervalSince(clock)
            out = try model.generate(promptIDs: ids, imageFeatures: image,
                                     options: GenerationOptions(maxNewTokens: max(newTokens, 1), stopTokens: []))
            if run == 0 { firstTTFT = vision + out.timings.prefill }
        }
        let steps = out.timings.decodeSteps.map { $0 * 1000 }
        let fast = Kernels.fastKernelOfProducts
        var result = BenchmarkResult(
            model: directory.path, quantization: model.weightFormat.rawValue, threads: Kernels.threads, isa: Kernels.isa.name,
            precision: Kernels.precision.rawValue, fastKernel: fast.name, images: max(images, 1), imageTokens: n,
            promptTokens: ids.count, newTokens: out.tokens.count, loadSeconds: load, visionSeconds: vision,
            prefillSeconds: out.timings.prefill, ttftSeconds: vision + out.timings.prefill,
            decodeMsPerToken: out.timings.decodeMillisecondsPerToken, decodeMsMin: steps.min() ?? 0,
            decodeMsMax: steps.max() ?? 0, peakRSSBytes: peakRSS, runs: max(runs, 1), firstTTFTSeconds: firstTTFT,
            floors: floors ? BenchmarkFloors.measure(model: model, promptTokens: ids.count, bestOf: early) : nil)
        if let f = result.floors {
            let (visionFloor, prefillFloor) = f.stageFloors(fastProducts: fast != .none)
            result.visionFloorShare = vision > 0 ? visionFloor / vision : nil
            result.prefillFloorShare = out.timings.prefill > 0 ? prefillFloor / out.timings.prefill : nil
            result.decodeFloorShare = result.decodeMsPerToken > 0 ? f.decodeFloorMs / result.decodeMsPerToken : nil
        }
        return result
    }
}

/// How closely a cheaper way of running a checkpoint (quantized weights, fast products, or both)
/// follows the stored weights with exact products over a greedy run.
public struct Agreement: Codable, Sendable {
    /// The weights compared ("none" for the stored ones, "int8" or "int4").
    public var quantization: String
    /// The precision of the compared run's products ("exact" or "fast") and its fast kernel.
    public var precision: String
    public var fastKernel: String
    public var steps: Int
    /// Steps where the compared run picks the same next token as the reference (teacher-forced:
    /// both see the same tokens, those the reference chose).
    public var top1Agreement: Double
    public var maxLogitDiff: Double
    public var meanLogitDiff: Double
    /// Largest logit of the reference, for scale.
    public var maxAbsLogit: Double

    enum CodingKeys: String, CodingKey {
        case quantization, precision, fastKernel = "fast_kernel", steps
        case top1Agreement = "top1_agreement", maxLogitDiff = "max_logit_diff"
        case meanLogitDiff = "mean_logit_diff", maxAbsLogit = "max_abs_logit"
    }
}

extension Benchmark {
    /// Runs `steps` greedy steps with the stored weights and exact products, and the same tokens
    /// through the model held as `quantization` says with products at `precision`, comparing the
    /// logits at each step (the first is the prompt's last position). With fast precision the
    /// vision tower and the prompt's prefill differ (decode steps of one row are exact either way),
    /// so the steps after it show how far that difference carries through the cache.
    public static func agreement(directory: URL, promptTokens: Int, steps: Int, quantization: Quantization = .none,
                                 precision: Precision = .exact) throws -> Agreement {
        guard quantization != .none || precision != .exact else {
            throw PaliGemmaError.input("compare a quantization (int8 or int4) or fast precision with the stored weights")
        }
        let reference = try PaliGemmaModel(directory: directory)
        guard reference.weightFormat == .stored else {
            throw PaliGemmaError.input("\(directory.path) stores quantized weights already; compare the float folder it was quantized from")
        }
        let candidate = quantization == .none ? reference : try PaliGemmaModel(directory: directory, quantization: quantization)
        let (pixels, ids) = syntheticInput(reference, promptTokens: promptTokens)
        let capacity = ids.count + steps
        let (cacheA, cacheB) = (try reference.makeCache(capacity: capacity), try candidate.makeCache(capacity: capacity))
        var a = try Kernels.withPrecision(.exact) {
            try reference.forward(ids: ids, imageFeatures: reference.imageFeatures(pixels: pixels), prefixLength: ids.count, cache: cacheA)
        }
        var b = try Kernels.withPrecision(precision) {
            try candidate.forward(ids: ids, imageFeatures: candidate.imageFeatures(pixels: pixels), prefixLength: ids.count, cache: cacheB)
        }
        var agree = 0, maxDiff = 0.0, sumDiff = 0.0, maxAbs = 0.0, count = 0
        for step in 0..<steps {
            let (ra, rb) = (a.values, b.values)
            let ta = ra.withUnsafeBufferPointer { Sampler.argmax($0) }
            let tb = rb.withUnsafeBufferPointer { Sampler.argmax($0) }
            if ta == tb { agree += 1 }
            for i in 0..<ra.count {
                let d = Double(abs(ra[i] - rb[i]))
                maxDiff = max(maxDiff, d)
                sumDiff += d
                maxAbs = max(maxAbs, Double(abs(ra[i])))
            }
            count += ra.count
            if step + 1 < steps {
                a = try Kernels.withPrecision(.exact) { try reference.forward(ids: [ta], imageFeatures: nil, prefixLength: ids.count, cache: cacheA) }
                b = try Kernels.withPrecision(precision) { try candidate.forward(ids: [ta], imageFeatures: nil, prefixLength: ids.count, cache: cacheB) }
            }
        }
        let fast = precision == .fast ? Kernels.fastKernelInUse : .none
        return Agreement(quantization: quantization.rawValue, precision: precision.rawValue, fastKernel: fast.name, steps: steps,
                         top1Agreement: Double(agree) / Double(max(steps, 1)), maxLogitDiff: maxDiff,
                         meanLogitDiff: sumDiff / Double(max(count, 1)), maxAbsLogit: maxAbs)
    }
}

extension Benchmark {
    /// Decode steps of several sequences at once, as the server's continuous batching runs them:
    /// one prompt (image tokens + <bos> + `promptTokens` + "\n") is prefilled once, its KV cache
    /// copied to each of `sequences` sequences, and `steps` greedy decode steps of all of them
    /// are timed as single batched forward passes (weights read once a step). Each size in turn.
    public static func decodeBatches(directory: URL, promptTokens: Int, sequences: [Int], steps: Int,
                                     quantization: Quantization = .none) throws -> [DecodeBatchTiming] {
        let model = try PaliGemmaModel(directory: directory, quantization: quantization)
        let (pixels, ids) = syntheticInput(model, promptTokens: promptTokens)
        let image = try model.imageFeatures(pixels: pixels)
        let capacity = ids.count + max(steps, 1)
        let prompt = try model.makeCache(capacity: capacity)
        let first = try model.forward(ids: ids, imageFeatures: image, prefixLength: ids.count, cache: prompt)
        let firstToken = first.values.withUnsafeBufferPointer { Sampler.argmax($0) }
        return try sequences.map { count in
            let caches = try (0..<max(count, 1)).map { _ in
                let cache = try model.makeCache(capacity: capacity)
                try cache.copy(from: prompt)
                return cache
            }
            var tokens = [Int](repeating: firstToken, count: caches.count)
            var seconds: [Double] = []
            for _ in 0..<max(steps, 1) {
                let batch = zip(tokens, caches).map { SequenceInput(ids: [$0], prefixLength: ids.count, cache: $1) }
                let clock = Date()
                let logits = try model.forward(batch)
                seconds.append(Date().timeIntervalSince(clock))
                tokens = logits.map { $0.values.withUnsafeBufferPointer { Sampler.argmax($0) } }
            }
            let median = seconds.sorted()[seconds.count / 2]
            return DecodeBatchTiming(sequences: caches.count, steps: seconds.count, msPerStep: median * 1000,
                                     msMin: (seconds.min() ?? 0) * 1000, tokensPerSecond: Double(caches.count) / median)
        }
    }
}

/// Batched decode steps of `sequences` sequences (`Benchmark.decodeBatches`): the median and the
/// fastest step, and the tokens a second the median gives (sequences / median step).
public struct DecodeBatchTiming: Codable, Sendable {
    public let sequences: Int
    public let steps: Int
    public let msPerStep: Double
    public let msMin: Double
    public let tokensPerSecond: Double
}

/// The vision tower's time for `images` images encoded `batch` at a time (`Benchmark.visionBatches`).
public struct VisionBatchTiming: Codable, Sendable {
    public let batch: Int
    public let images: Int
    public let seconds: [Double]
    public let best: Double
}
