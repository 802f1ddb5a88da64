import Foundation
import PaliGemma

// OpenAI's request and response shapes for /v1/chat/completions and /v1/completions (the
// members PaliGemma can honour; others are ignored, as OpenAI ignores unknown ones).

/// Sampling members both OpenAI endpoints share.
struct SamplingFields: Decodable {
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var temperature: Double?
    var topP: Double?
    var seed: Int?
    var stop: StopField?
    var n: Int?
    var stream: Bool?
    var streamOptions: StreamOptions?

    struct StreamOptions: Decodable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    enum CodingKeys: String, CodingKey {
        case maxTokens = "max_tokens", maxCompletionTokens = "max_completion_tokens", temperature
        case topP = "top_p", seed, stop, n, stream, streamOptions = "stream_options"
    }
}

/// `stop`: a string or an array of strings.
struct StopField: Decodable {
    var values: [String]

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            values = [s]
        } else {
            values = try c.decode([String].self)
        }
    }
}

struct ChatCompletionRequest: Decodable {
    var model: String?
    var messages: [Message]
    var sampling: SamplingFields

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        messages = try c.decode([Message].self, forKey: .messages)
        sampling = try SamplingFields(from: decoder)
    }

    enum CodingKeys: String, CodingKey { case model, messages }

    struct Message: Decodable {
        var role: String
        var content: Content?

        enum Content: Decodable {
            case text(String)
            case parts([Part])

            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let s = try? c.decode(String.self) {
                    self = .text(s)
                } else {
                    self = .parts(try c.decode([Part].self))
                }
            }
        }

        struct Part: Decodable {
            var type: String
            var text: String?
            var imageURL: ImageURL?
            /// {"url": ..., "frames", "stride", "start"} (vLLM's part type; the sampling members are ours).
            var videoURL: VideoReference?

            struct ImageURL: Decodable {
                var url: String

                init(from decoder: Decoder) throws {
                    // {"url": "..."}, or (as some clients send) the URL string itself.
                    if let s = try? decoder.singleValueContainer().decode(String.self) {
                        url = s
                    } else {
                        let c = try decoder.container(keyedBy: CodingKeys.self)
                        url = try c.decode(String.self, forKey: .url)
                    }
                }

                enum CodingKeys: String, CodingKey { case url }
            }

            enum CodingKeys: String, CodingKey { case type, text, imageURL = "image_url", videoURL = "video_url" }
        }
    }
}

struct CompletionRequest: Decodable {
    var model: String?
    var prompt: String
    /// "image" (one), "images" (several, in order) or "video"; `Routes.mediaList` checks that one is given.
    var image: String?
    var images: [String]?
    var video: VideoReference?
    var sampling: SamplingFields

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        prompt = try c.decode(String.self, forKey: .prompt)
        image = try c.decodeIfPresent(String.self, forKey: .image)
        images = try c.decodeIfPresent([String].self, forKey: .images)
        video = try c.decodeIfPresent(VideoReference.self, forKey: .video)
        sampling = try SamplingFields(from: decoder)
    }

    enum CodingKeys: String, CodingKey { case model, prompt, image, images, video }
}

// MARK: Responses

struct Usage: Encodable {
    let promptTokens: Int
    let completionTokens: Int
    var totalTokens: Int { promptTokens + completionTokens }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(completionTokens, forKey: .completionTokens)
        try c.encode(totalTokens, forKey: .totalTokens)
    }
}

/// OpenAI's finish_reason: "stop" or "length" (a cancelled request reports "stop").
func openAIFinishReason(_ reason: FinishReason) -> String { reason == .length ? "length" : "stop" }

/// A chat.completion, chat.completion.chunk or text_completion object.
struct CompletionObject<Payload: Encodable>: Encodable {
    let id: String
    let object: String
    let created: Int
    let model: String
    let choices: [Choice<Payload>]
    let usage: Usage?
    /// Whether "usage" is written (as null when there is none): always for a whole answer, in
    /// every chunk when stream_options.include_usage (null until the last, as OpenAI does).
    let writesUsage: Bool

    enum CodingKeys: String, CodingKey { case id, object, created, model, choices, usage }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        if writesUsage { try c.encode(usage, forKey: .usage) }
    }
}

/// One entry of "choices": index 0, the payload under its key ("message", "delta" or "text"),
/// finish_reason (null while streaming) and logprobs (null).
struct Choice<Payload: Encodable>: Encodable {
    let key: String
    let payload: Payload
    let finishReason: String?

    struct Key: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(0, forKey: Key("index"))
        try c.encode(payload, forKey: Key(key))
        try c.encode(finishReason, forKey: Key("finish_reason"))
        try c.encodeNil(forKey: Key("logprobs"))
    }
}

/// A chat message or a streamed delta: {"role": "assistant", "content": ...}, members omitted when nil.
struct ChatMessage: Encodable {
    let role: String?
    let content: String?
}
