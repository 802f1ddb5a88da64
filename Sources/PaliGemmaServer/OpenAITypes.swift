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

            enum CodingKeys: String, CodingKey { case type, text, imageURL = "image_url" }
        }
    }
}

struct CompletionRequest: Decodable {
    var model: String?
    var prompt: String
    var image: String
    var sampling: SamplingFields

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        prompt = try c.decode(String.self, forKey: .prompt)
        image = try c.decode(String.self, forKey: .image)
        sampling = try SamplingFields(from: decoder)
    }

    enum CodingKeys: String, CodingKey { case model, prompt, image }
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

struct ChatCompletion: Encodable {
    let id: String
    let object = "chat.completion"
    let created: Int
    let model: String
    let choices: [Choice]
    let usage: Usage

    struct Choice: Encodable {
        let index = 0
        let message: Message
        let finishReason: String
        enum CodingKeys: String, CodingKey { case index, message, finishReason = "finish_reason", logprobs }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(message, forKey: .message)
            try c.encode(finishReason, forKey: .finishReason)
            try c.encodeNil(forKey: .logprobs)
        }
    }

    struct Message: Encodable {
        let role = "assistant"
        let content: String
    }
}

struct ChatCompletionChunk: Encodable {
    let id: String
    let object = "chat.completion.chunk"
    let created: Int
    let model: String
    let choices: [Choice]
    /// Only in the last chunk when stream_options.include_usage (null before it, as OpenAI does).
    let usage: Usage?
    let includeUsageKey: Bool

    struct Choice: Encodable {
        let index = 0
        let delta: Delta
        let finishReason: String?
        enum CodingKeys: String, CodingKey { case index, delta, finishReason = "finish_reason", logprobs }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(delta, forKey: .delta)
            try c.encode(finishReason, forKey: .finishReason)
            try c.encodeNil(forKey: .logprobs)
        }
    }

    struct Delta: Encodable {
        let role: String?
        let content: String?
    }

    enum CodingKeys: String, CodingKey { case id, object, created, model, choices, usage }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        if includeUsageKey { try c.encode(usage, forKey: .usage) }
    }
}

struct TextCompletion: Encodable {
    let id: String
    let object = "text_completion"
    let created: Int
    let model: String
    let choices: [Choice]
    let usage: Usage?

    struct Choice: Encodable {
        let text: String
        let index = 0
        let finishReason: String?
        enum CodingKeys: String, CodingKey { case text, index, finishReason = "finish_reason", logprobs }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(text, forKey: .text)
            try c.encode(index, forKey: .index)
            try c.encode(finishReason, forKey: .finishReason)
            try c.encodeNil(forKey: .logprobs)
        }
    }

    enum CodingKeys: String, CodingKey { case id, object, created, model, choices, usage }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        if let usage { try c.encode(usage, forKey: .usage) }
    }
}
