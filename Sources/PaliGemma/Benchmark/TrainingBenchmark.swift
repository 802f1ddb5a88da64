import Foundation

/// Timing of training steps on a checkpoint (`paligemma bench --train`).
public struct TrainingBenchmarkResult: Codable, Sendable {
    public var method: String
    public var trainableValues: Int
    public var imageTokens: Int
    public var promptTokens: Int
    public var suffixTokens: Int
    /// Seconds of each step (forward, backward, clipping and the optimiser update), in order;
    /// the first also pages the weights in.
    public var stepSeconds: [Double]
    /// The last step's seconds, and examples per second at that speed.
    public var secondsPerStep: Double
    public var examplesPerSecond: Double
    public var loss: [Double]
    public var peakRSSBytes: Int
    public var threads: Int
    public var isa: String
    public var weights: String
    public var recompute: Bool

    enum CodingKeys: String, CodingKey {
        case method, trainableValues = "trainable_values", imageTokens = "image_tokens", promptTokens = "prompt_tokens"
        case suffixTokens = "suffix_tokens", stepSeconds = "step_seconds", secondsPerStep = "seconds_per_step"
        case examplesPerSecond = "examples_per_second", loss, peakRSSBytes = "peak_rss_bytes", threads, isa, weights, recompute
    }
}

extension Benchmark {
    /// Loads `directory` and runs `runs` training steps (AdamW, batch 1) of `method` on one
    /// synthetic example: fixed pseudo-random pixels, image tokens + <bos> + `promptTokens` text
    /// ids + "\n" as the prefix, `suffixTokens` text ids + <eos> as the supervised suffix.
    public static func trainingStep(directory: URL, method: TrainingMethod, promptTokens: Int, suffixTokens: Int,
                                    quantization: Quantization, runs: Int, recompute: Bool = false) throws -> TrainingBenchmarkResult {
        let model = try PaliGemmaModel(directory: directory, quantization: quantization)
        let (pixels, prefix) = syntheticInput(model, promptTokens: promptTokens)
        var rng = Xoshiro256(seed: 2)
        let upper = UInt64(min(model.decoder.vocabRows, 20000))
        let suffix = (0..<suffixTokens).map { _ in 3 + Int(rng.next() % (upper - 3)) }.map { $0 == model.config.imageTokenIndex ? 3 : $0 } + [1]
        let ids = prefix + suffix
        let labels = [Int](repeating: -100, count: prefix.count) + suffix
        let example = TrainingExample(pixels: pixels, ids: ids, labels: labels, prefixLength: prefix.count)
        let trainable = TrainableModel(model: model, method: method)
        trainable.recompute = recompute
        var options = TrainingOptions()
        options.steps = max(runs, 1)
        let trainer = try Trainer(model: trainable, options: options, exampleCount: 1)
        var seconds: [Double] = [], losses: [Double] = []
        for _ in 0..<max(runs, 1) {
            let clock = Date()
            let report = try trainer.step([example])
            seconds.append(Date().timeIntervalSince(clock))
            losses.append(report.loss)
        }
        let name: String
        switch method {
        case .lora(let c): name = "lora r\(c.rank)"
        case .attention: name = "attention"
        case .full: name = "full"
        }
        let last = seconds.last ?? 0
        return TrainingBenchmarkResult(method: name, trainableValues: trainable.trainableCount, imageTokens: model.config.numImageTokens,
                                       promptTokens: promptTokens, suffixTokens: suffixTokens, stepSeconds: seconds, secondsPerStep: last,
                                       examplesPerSecond: last > 0 ? 1 / last : 0, loss: losses, peakRSSBytes: peakRSS,
                                       threads: Kernels.threads, isa: Kernels.isa.name, weights: model.weightFormat.rawValue,
                                       recompute: recompute)
    }
}
