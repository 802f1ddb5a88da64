import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One benchmark run of a checkpoint: load, vision tower, prefill, decode. Stable JSON keys.
public struct BenchmarkResult: Codable, Sendable {
    public var model: String
    public var quantization: String
    public var threads: Int
    public var isa: String
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

    enum CodingKeys: String, CodingKey {
        case model, quantization, threads, isa
        case imageTokens = "image_tokens", promptTokens = "prompt_tokens", newTokens = "new_tokens"
        case loadSeconds = "load_s", visionSeconds = "vision_s", prefillSeconds = "prefill_s", ttftSeconds = "ttft_s"
        case decodeMsPerToken = "decode_ms_per_token", decodeMsMin = "decode_ms_min", decodeMsMax = "decode_ms_max"
        case peakRSSBytes = "peak_rss_bytes"
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

    /// Loads `directory`, runs the vision tower on fixed pseudo-random pixels, prefills
    /// image tokens + <bos> + `promptTokens` text tokens + "\n", and decodes `newTokens` tokens
    /// greedily (stop tokens ignored, so every run decodes the same number).
    public static func run(directory: URL, promptTokens: Int, newTokens: Int,
                           quantization: Quantization = .none) throws -> BenchmarkResult {
        var clock = Date()
        let model = try PaliGemmaModel(directory: directory, quantization: quantization)
        let load = Date().timeIntervalSince(clock)
        var rng = Xoshiro256(seed: 1)
        let pixels = (0..<model.pixelCount).map { _ in Float(rng.nextDouble() * 2 - 1) }
        let n = model.config.numImageTokens
        // Ordinary text ids (3 ..< 20000, or the vocabulary if smaller), never the image token.
        let upper = UInt64(min(model.decoder.vocabRows, 20000))
        let textIDs = (0..<promptTokens).map { _ in
            let id = 3 + Int(rng.next() % (upper - 3))
            return id == model.config.imageTokenIndex ? 3 : id
        }
        let newline = min(108, Int(upper) - 1)
        let ids = [Int](repeating: model.config.imageTokenIndex, count: n) + [2] + textIDs + [newline]

        clock = Date()
        let image = try model.imageFeatures(pixels: pixels)
        let vision = Date().timeIntervalSince(clock)
        let out = try model.generate(promptIDs: ids, imageFeatures: image,
                                     options: GenerationOptions(maxNewTokens: max(newTokens, 1), stopTokens: []))
        let steps = out.timings.decodeSteps.map { $0 * 1000 }
        return BenchmarkResult(
            model: directory.path, quantization: quantization.rawValue, threads: Kernels.threads, isa: Kernels.isa.name, imageTokens: n,
            promptTokens: ids.count, newTokens: out.tokens.count, loadSeconds: load, visionSeconds: vision,
            prefillSeconds: out.timings.prefill, ttftSeconds: vision + out.timings.prefill,
            decodeMsPerToken: out.timings.decodeMillisecondsPerToken, decodeMsMin: steps.min() ?? 0,
            decodeMsMax: steps.max() ?? 0, peakRSSBytes: peakRSS)
    }
}
