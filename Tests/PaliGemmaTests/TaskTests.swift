import Foundation
import Testing
@testable import PaliGemma

/// `PaliGemmaTask`: the prompts, what each answer holds, and the JSON members every front end
/// reads a task from (decoding of every shape, every error message, encoding back).
@Suite struct TaskTests {
    static func decode(_ json: String) throws -> PaliGemmaTask {
        try JSONDecoder().decode(PaliGemmaTask.self, from: Data(json.utf8))
    }

    /// The message of the error decoding `json` throws (it must be `PaliGemmaError.input`).
    static func error(_ json: String) -> String? {
        do {
            let task = try decode(json)
            Issue.record("\(json) decoded as \(task)")
        } catch let PaliGemmaError.input(message) {
            return message
        } catch {
            Issue.record("\(json): \(error) is not PaliGemmaError.input")
        }
        return nil
    }

    @Test func promptsAreThePromptsTheMixCheckpointsKnow() {
        let cases: [(PaliGemmaTask, String)] = [
            (.caption(), "caption en"),
            (.caption(lang: "de"), "caption de"),
            (.describe(), "describe en"),
            (.describe(lang: "fr"), "describe fr"),
            (.ocr, "ocr"),
            (.answer(question: "how many cars are there?"), "answer en how many cars are there?"),
            (.answer(question: "was ist das?", lang: "de"), "answer de was ist das?"),
            (.question(answer: "two cars"), "question en two cars"),
            (.question(answer: "zwei", lang: "de"), "question de zwei"),
            (.detect(labels: ["cat"]), "detect cat"),
            (.detect(labels: ["cat", "red car", "dog"]), "detect cat ; red car ; dog"),
            (.segment(label: "the big dog"), "segment the big dog"),
            (.prompt("answer en what is this?"), "answer en what is this?"),
            (.prompt(""), ""),
        ]
        for (task, prompt) in cases {
            #expect(task.prompt == prompt, "\(task)")
        }
    }

    @Test func namesAndAnswerFormats() {
        let cases: [(PaliGemmaTask, String?, PaliGemmaTask.AnswerFormat)] = [
            (.caption(), "caption", .text), (.describe(), "describe", .text), (.ocr, "ocr", .text),
            (.answer(question: "q"), "answer", .text), (.question(answer: "a"), "question", .text),
            (.detect(labels: ["cat"]), "detect", .boxes), (.segment(label: "cat"), "segment", .masks),
            (.prompt("detect cat"), nil, .text),  // a prompt is used as it is, its answer as text
        ]
        for (task, name, format) in cases {
            #expect(task.name == name, "\(task)")
            #expect(task.answerFormat == format, "\(task)")
        }
        #expect(PaliGemmaTask.names == cases.compactMap(\.1))
    }

    @Test func decodesEveryShapeBatchLinesUse() throws {
        let cases: [(String, PaliGemmaTask)] = [
            (#"{"prompt": "caption en"}"#, .prompt("caption en")),
            (#"{"prompt": ""}"#, .prompt("")),
            (#"{"task": "caption"}"#, .caption(lang: "en")),
            (#"{"task": "caption", "lang": "de"}"#, .caption(lang: "de")),
            (#"{"task": "describe"}"#, .describe(lang: "en")),
            (#"{"task": "describe", "lang": "es"}"#, .describe(lang: "es")),
            (#"{"task": "ocr"}"#, .ocr),
            (#"{"task": "ocr", "lang": "de"}"#, .ocr),
            (#"{"task": "answer", "question": "what is this?"}"#, .answer(question: "what is this?", lang: "en")),
            (#"{"task": "answer", "question": "was?", "lang": "de"}"#, .answer(question: "was?", lang: "de")),
            (#"{"task": "question", "answer": "a cat"}"#, .question(answer: "a cat", lang: "en")),
            (#"{"task": "question", "answer": "eine Katze", "lang": "de"}"#, .question(answer: "eine Katze", lang: "de")),
            (#"{"task": "detect", "labels": ["cat", "dog"]}"#, .detect(labels: ["cat", "dog"])),
            (#"{"task": "detect", "label": "cat"}"#, .detect(labels: ["cat"])),
            (#"{"task": "detect", "labels": ["cat"], "label": "dog"}"#, .detect(labels: ["cat"])),
            (#"{"task": "segment", "label": "cat"}"#, .segment(label: "cat")),
            (#"{"task": "segment", "labels": ["cat", "dog"]}"#, .segment(label: "cat")),
            (#"{"task": "segment", "label": "cat", "labels": ["dog"]}"#, .segment(label: "cat")),
            // "prompt" wins over "task"; other members of the object are not the task's business.
            (#"{"prompt": "ocr", "task": "caption"}"#, .prompt("ocr")),
            (#"{"image": "a.jpg", "id": 3, "task": "ocr", "max_tokens": 5}"#, .ocr),
            // Members of the wrong type count as absent.
            (#"{"prompt": 5, "task": "ocr"}"#, .ocr),
            (#"{"task": "caption", "lang": 7}"#, .caption(lang: "en")),
            (#"{"task": "detect", "labels": "cat", "label": "dog"}"#, .detect(labels: ["dog"])),
            (#"{"task": "detect", "labels": [1, 2], "label": "dog"}"#, .detect(labels: ["dog"])),
        ]
        for (json, task) in cases {
            #expect(try Self.decode(json) == task, "\(json)")
        }
    }

    @Test func everyErrorSaysWhatIsMissing() {
        let cases: [(String, String)] = [
            (#"{}"#, #"needs "prompt" or "task""#),
            (#"{"image": "a.jpg"}"#, #"needs "prompt" or "task""#),
            (#"{"task": 3}"#, #"needs "prompt" or "task""#),
            (#"{"prompt": null}"#, #"needs "prompt" or "task""#),
            (#"{"task": "translate"}"#, #"unknown task "translate""#),
            (#"{"task": "Caption"}"#, #"unknown task "Caption""#),
            (#"{"task": "answer"}"#, #"task "answer" needs "question""#),
            (#"{"task": "answer", "question": 5}"#, #"task "answer" needs "question""#),
            (#"{"task": "answer", "answer": "x"}"#, #"task "answer" needs "question""#),
            (#"{"task": "question"}"#, #"task "question" needs "answer""#),
            (#"{"task": "question", "question": "x"}"#, #"task "question" needs "answer""#),
            (#"{"task": "detect"}"#, #"task "detect" needs "labels""#),
            (#"{"task": "detect", "labels": []}"#, #"task "detect" needs "labels""#),
            (#"{"task": "detect", "labels": [3]}"#, #"task "detect" needs "labels""#),
            (#"{"task": "segment"}"#, #"task "segment" needs "label""#),
            (#"{"task": "segment", "labels": []}"#, #"task "segment" needs "label""#),
            (#"{"task": "segment", "label": ["cat"]}"#, #"task "segment" needs "label""#),
        ]
        for (json, message) in cases {
            #expect(Self.error(json) == message, "\(json)")
        }
        // Not an object at all: Codable's own error.
        #expect(throws: DecodingError.self) { try Self.decode(#"["ocr"]"#) }
        #expect(throws: DecodingError.self) { try Self.decode(#""ocr""#) }
    }

    @Test func encodesTheSameMembersAndDecodesBack() throws {
        let cases: [(PaliGemmaTask, String)] = [
            (.caption(lang: "de"), #"{"lang":"de","task":"caption"}"#),
            (.describe(), #"{"lang":"en","task":"describe"}"#),
            (.ocr, #"{"task":"ocr"}"#),
            (.answer(question: "what is this?"), #"{"lang":"en","question":"what is this?","task":"answer"}"#),
            (.question(answer: "a/b", lang: "fr"), #"{"answer":"a/b","lang":"fr","task":"question"}"#),
            (.detect(labels: ["cat", "dog"]), #"{"labels":["cat","dog"],"task":"detect"}"#),
            (.segment(label: "cat"), #"{"label":"cat","task":"segment"}"#),
            (.prompt("caption en"), #"{"prompt":"caption en"}"#),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for (task, json) in cases {
            let encoded = String(decoding: try encoder.encode(task), as: UTF8.self)
            #expect(encoded == json)
            #expect(try Self.decode(encoded) == task)
        }
    }

    /// How a request type (batch line, server request, fine-tuning example) holds a task: its
    /// own members beside the task's, in one object.
    struct Example: Codable, Equatable {
        var image: String
        var task: PaliGemmaTask
        var suffix: String?

        enum CodingKeys: String, CodingKey { case image, suffix }

        init(image: String, task: PaliGemmaTask, suffix: String?) {
            self.image = image
            self.task = task
            self.suffix = suffix
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            image = try c.decode(String.self, forKey: .image)
            suffix = try c.decodeIfPresent(String.self, forKey: .suffix)
            task = try PaliGemmaTask(from: decoder)
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(image, forKey: .image)
            try c.encodeIfPresent(suffix, forKey: .suffix)
            try task.encode(to: encoder)
        }
    }

    @Test func sitsInTheObjectOfARequest() throws {
        let json = #"{"image": "a.jpg", "task": "detect", "labels": ["cat"], "suffix": "<loc0001><loc0002><loc0003><loc0004> cat"}"#
        let example = try JSONDecoder().decode(Example.self, from: Data(json.utf8))
        #expect(example == Example(image: "a.jpg", task: .detect(labels: ["cat"]), suffix: "<loc0001><loc0002><loc0003><loc0004> cat"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let encoded = String(decoding: try encoder.encode(example), as: UTF8.self)
        #expect(encoded == #"{"image":"a.jpg","labels":["cat"],"suffix":"<loc0001><loc0002><loc0003><loc0004> cat","task":"detect"}"#)
        #expect(try JSONDecoder().decode(Example.self, from: Data(encoded.utf8)) == example)
    }
}
