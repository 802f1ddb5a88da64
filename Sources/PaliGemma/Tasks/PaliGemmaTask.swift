import PaliGemmaJSON

/// One thing to ask PaliGemma about an image: a task prompt the mix checkpoints were trained on,
/// or a prompt used as it is. It gives the exact prompt (`prompt`) and what the answer holds
/// (`answerFormat`), and reads and writes the JSON members every front end uses for it (batch
/// request lines today; the server's requests and the fine-tuning data, where it stands in for
/// the prefix, next):
///
///     {"prompt": "caption en"}                          .prompt("caption en"), used as it is
///     {"task": "caption", "lang": "de"}                 .caption(lang: "de")      "caption de"
///     {"task": "describe"}                              .describe(lang: "en")     "describe en"
///     {"task": "ocr"}                                   .ocr                      "ocr"
///     {"task": "answer", "question": "what is this?"}   .answer(question:lang:)   "answer en what is this?"
///     {"task": "question", "answer": "a cat"}           .question(answer:lang:)   "question en a cat"
///     {"task": "detect", "labels": ["cat", "dog"]}      .detect(labels:)          "detect cat ; dog"
///     {"task": "segment", "label": "cat"}               .segment(label:)          "segment cat"
///
/// Decoding: "prompt" (a string) wins over "task"; "lang" defaults to "en"; detect also takes a
/// single "label", segment also "labels" (the first is used). Members of the wrong type count as
/// absent. The members sit in the enclosing object, so a request decodes its task from its own
/// decoder (`try PaliGemmaTask(from: decoder)`) next to its other members, which are ignored
/// here. A request that names no task, an unknown task, or one without the member it needs throws
/// `PaliGemmaError.input` with one of:
///
///     needs "prompt" or "task"
///     unknown task "<name>"
///     task "answer" needs "question"
///     task "question" needs "answer"
///     task "detect" needs "labels"
///     task "segment" needs "label"
///
/// Encoding writes the same members (`{"task": "detect", "labels": [...]}`, `{"prompt": ...}`),
/// which decode back to an equal value.
public enum PaliGemmaTask: Sendable, Hashable, Codable {
    /// A short caption: "caption <lang>".
    case caption(lang: String = "en")
    /// A longer, detailed caption: "describe <lang>".
    case describe(lang: String = "en")
    /// The text in the image: "ocr".
    case ocr
    /// Visual question answering: "answer <lang> <question>".
    case answer(question: String, lang: String = "en")
    /// A question whose answer is given: "question <lang> <answer>".
    case question(answer: String, lang: String = "en")
    /// Boxes of the labelled objects: "detect <label> ; <label> ; ...".
    case detect(labels: [String])
    /// Boxes and masks of the labelled object: "segment <label>".
    case segment(label: String)
    /// A prompt used as it is.
    case prompt(String)

    /// The task names of the JSON member "task".
    public static let names = ["caption", "describe", "ocr", "answer", "question", "detect", "segment"]

    /// The prompt PaliGemma is given (the processor adds the image tokens, `<bos>` and "\n").
    public var prompt: String {
        switch self {
        case let .caption(lang): return "caption \(lang)"
        case let .describe(lang): return "describe \(lang)"
        case .ocr: return "ocr"
        case let .answer(question, lang): return "answer \(lang) \(question)"
        case let .question(answer, lang): return "question \(lang) \(answer)"
        case let .detect(labels): return "detect " + labels.joined(separator: " ; ")
        case let .segment(label): return "segment \(label)"
        case let .prompt(prompt): return prompt
        }
    }

    /// The value of the JSON member "task"; nil for a prompt used as it is.
    public var name: String? {
        switch self {
        case .caption: return "caption"
        case .describe: return "describe"
        case .ocr: return "ocr"
        case .answer: return "answer"
        case .question: return "question"
        case .detect: return "detect"
        case .segment: return "segment"
        case .prompt: return nil
        }
    }

    /// What the answer holds beyond its text, and so how it is read.
    public enum AnswerFormat: String, Sendable, Hashable {
        /// Text only (caption, describe, ocr, answer, question, and a prompt used as it is, even
        /// one that reads like a detect prompt).
        case text
        /// `<loc>` boxes with labels: `TaskOutput.parse` gives the detections.
        case boxes
        /// `<loc>` boxes with 16 `<seg>` codes each: `TaskOutput.parse` gives detections and
        /// segments, with masks when it is given a `MaskDecoder`.
        case masks
    }

    public var answerFormat: AnswerFormat {
        switch self {
        case .detect: return .boxes
        case .segment: return .masks
        case .caption, .describe, .ocr, .answer, .question, .prompt: return .text
        }
    }

    // MARK: JSON

    enum CodingKeys: String, CodingKey {
        case prompt, task, lang, question, answer, labels, label
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func member<T: Decodable>(_ type: T.Type, _ key: CodingKeys) -> T? { c.decodeIfValid(type, forKey: key) }
        if let prompt = member(String.self, .prompt) {
            self = .prompt(prompt)
            return
        }
        guard let task = member(String.self, .task) else { throw PaliGemmaError.input("needs \"prompt\" or \"task\"") }
        let lang = member(String.self, .lang) ?? "en"
        func needs(_ key: CodingKeys) -> PaliGemmaError { .input("task \"\(task)\" needs \"\(key.rawValue)\"") }
        switch task {
        case "caption": self = .caption(lang: lang)
        case "describe": self = .describe(lang: lang)
        case "ocr": self = .ocr
        case "answer":
            guard let question = member(String.self, .question) else { throw needs(.question) }
            self = .answer(question: question, lang: lang)
        case "question":
            guard let answer = member(String.self, .answer) else { throw needs(.answer) }
            self = .question(answer: answer, lang: lang)
        case "detect":
            guard let labels = member([String].self, .labels) ?? member(String.self, .label).map({ [$0] }), !labels.isEmpty else {
                throw needs(.labels)
            }
            self = .detect(labels: labels)
        case "segment":
            guard let label = member(String.self, .label) ?? member([String].self, .labels)?.first else { throw needs(.label) }
            self = .segment(label: label)
        default:
            throw PaliGemmaError.input("unknown task \"\(task)\"")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if case let .prompt(prompt) = self {
            try c.encode(prompt, forKey: .prompt)
            return
        }
        try c.encodeIfPresent(name, forKey: .task)
        switch self {
        case let .caption(lang), let .describe(lang):
            try c.encode(lang, forKey: .lang)
        case let .answer(question, lang):
            try c.encode(question, forKey: .question)
            try c.encode(lang, forKey: .lang)
        case let .question(answer, lang):
            try c.encode(answer, forKey: .answer)
            try c.encode(lang, forKey: .lang)
        case let .detect(labels):
            try c.encode(labels, forKey: .labels)
        case let .segment(label):
            try c.encode(label, forKey: .label)
        case .ocr, .prompt:
            break
        }
    }
}
