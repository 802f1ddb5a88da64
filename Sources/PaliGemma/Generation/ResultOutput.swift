import Foundation

/// JSON and safetensors forms of a `GenerationResult`, shared by the command line and (later) the server.
public enum ResultJSON {
    /// The result as a JSON-ready dictionary: text, tokens, prompt_tokens, stop_reason, timings.
    public static func dictionary(_ r: GenerationResult, prompt: String? = nil) -> [String: Any] {
        var timings: [String: Any] = [:]
        if let data = try? JSONEncoder().encode(r.timings),
           let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            timings = object
        }
        var out: [String: Any] = [
            "text": r.text,
            "tokens": r.tokens,
            "prompt_tokens": r.promptIDs.count,
            "generated_tokens": r.tokens.count,
            "stop_reason": r.stopReason.rawValue,
            "timings": timings,
        ]
        if let prompt { out["prompt"] = prompt }
        return out
    }

    /// One line of JSON.
    public static func object(_ r: GenerationResult, prompt: String? = nil) -> String {
        encode(dictionary(r, prompt: prompt))
    }

    public static func encode(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// `--dump FILE.safetensors`: what the model saw and produced, for checking against a reference.
///   pixel_values float32 [1, 3, S, S]; input_ids int64 [T] (the whole prompt);
///   logits float32 [steps, V]: the last prompt position, then after each generated token.
public enum DumpFile {
    public static func write(_ r: GenerationResult, to url: URL) throws {
        guard let pixels = r.pixelValues, let logits = r.stepLogits else {
            throw PaliGemmaError.input("the result was generated without keeping pixels and logits")
        }
        let side = Int((Double(pixels.count / 3)).squareRoot())
        let vocab = logits.first?.count ?? 0
        try SafetensorsWriter.write([
            .float32("pixel_values", shape: [1, 3, side, side], pixels),
            .int64("input_ids", shape: [r.promptIDs.count], r.promptIDs),
            .float32("logits", shape: [logits.count, vocab], logits.flatMap { $0 }),
        ], metadata: ["generator": "paligemma --dump"], to: url)
    }
}
