import Foundation
import PaliGemmaJSON

/// The JSON object of one answer, for `--json`, batch result lines and (later) the server:
/// text, tokens, prompt_tokens, generated_tokens, stop_reason, timings {load_s, image_s,
/// vision_s, prefill_s, ttft_s, decode_s, decode_ms_per_token, total_s}, the prompt when given,
/// and for a detect / segment answer the members of its `TaskResult` (image_size, detections,
/// segments, skipped, masks_decoded) in the same object. Written with `JSONOutput`.
public struct GenerationOutput: Encodable, Sendable {
    public var text: String
    public var tokens: [Int]
    public var promptTokens: Int
    public var generatedTokens: Int
    public var stopReason: StopReason
    public var timings: RequestTimings
    public var prompt: String?
    /// The answer parsed into boxes and masks (detect, segment); nil for a text answer.
    public var parsed: TaskResult?

    public init(_ result: GenerationResult, prompt: String? = nil, parsed: TaskResult? = nil) {
        text = result.text
        tokens = result.tokens
        promptTokens = result.promptIDs.count
        generatedTokens = result.tokens.count
        stopReason = result.stopReason
        timings = result.timings
        self.prompt = prompt
        self.parsed = parsed
    }

    /// The same object from its parts (the server builds it from the engine's summary).
    public init(text: String, tokens: [Int], promptTokens: Int, stopReason: StopReason, timings: RequestTimings,
                prompt: String? = nil, parsed: TaskResult? = nil) {
        self.text = text
        self.tokens = tokens
        self.promptTokens = promptTokens
        generatedTokens = tokens.count
        self.stopReason = stopReason
        self.timings = timings
        self.prompt = prompt
        self.parsed = parsed
    }

    enum CodingKeys: String, CodingKey {
        case text, tokens, promptTokens = "prompt_tokens", generatedTokens = "generated_tokens"
        case stopReason = "stop_reason", timings, prompt
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(text, forKey: .text)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(generatedTokens, forKey: .generatedTokens)
        try c.encode(stopReason, forKey: .stopReason)
        try c.encode(timings, forKey: .timings)
        try c.encodeIfPresent(prompt, forKey: .prompt)
        try parsed?.encode(to: encoder)  // its members join this object
    }
}

/// `--dump FILE.safetensors`: what the model saw and produced, for checking against a reference.
///   pixel_values float32 [I, 3, S, S] (I images); input_ids int64 [T] (the whole prompt);
///   logits float32 [steps, V]: the last prompt position, then after each generated token.
public enum DumpFile {
    public static func write(_ r: GenerationResult, to url: URL) throws {
        guard let pixels = r.pixelValues, let logits = r.stepLogits else {
            throw PaliGemmaError.input("the result was generated without keeping pixels and logits")
        }
        let images = max(r.imageCount, 1)
        let side = Int((Double(pixels.count / (3 * images))).squareRoot())
        let vocab = logits.first?.count ?? 0
        try SafetensorsWriter.write([
            .float32("pixel_values", shape: [images, 3, side, side], pixels),
            .int64("input_ids", shape: [r.promptIDs.count], r.promptIDs),
            .float32("logits", shape: [logits.count, vocab], logits.flatMap { $0 }),
        ], metadata: ["generator": "paligemma --dump"], to: url)
    }
}
