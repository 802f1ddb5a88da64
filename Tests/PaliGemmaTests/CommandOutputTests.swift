import Foundation
import Testing
@testable import PaliGemma

/// What the command line writes: batch result lines (tasks, their errors, resuming from a results
/// file the earlier JSONSerialization writer left) and the one object of detect --json.
extension EndToEndTests {
    @Test func batchTasksErrorsAndResumeFromOldResults() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: Fixtures.root.appendingPathComponent("e2e/images/scene.jpg"),
                                         to: dir.appendingPathComponent("scene.jpg"))
        let lines = [
            #"{"id": "old", "image": "scene.jpg", "prompt": "caption en"}"#,
            #"{"id": 50, "image": "scene.jpg", "task": "describe"}"#,
            #"{"id": "retry", "image": "scene.jpg", "task": "ocr"}"#,
            #"{"image": "scene.jpg", "task": "answer"}"#,
            #"{"image": "scene.jpg", "task": "question", "answer": "a cat", "max_tokens": 2}"#,
            #"{"image": "scene.jpg", "task": "segment"}"#,
            #"{"image": "scene.jpg", "task": "detect", "labels": []}"#,
            #"{"image": "scene.jpg", "task": "fly"}"#,
            #"{"image": "scene.jpg"}"#,
            #"{"id": "gone", "image": "nope.jpg", "task": "ocr"}"#,
        ]
        let requests = dir.appendingPathComponent("requests.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: requests, atomically: true, encoding: .utf8)
        // Results as the earlier writer (JSONSerialization, sorted keys, compact) left them: "old"
        // and 50 answered, "retry" failed, and a last line cut off by an interrupted run.
        let image = dir.appendingPathComponent("scene.jpg").path
        let old = [
            #"{"generated_tokens":1,"id":"old","image":"\#(image)","line":1,"prompt":"caption en","prompt_tokens":19,"stop_reason":"eos","text":"x","timings":{"decode_ms_per_token":0,"decode_s":0,"image_s":0.001,"load_s":0.01,"prefill_s":0.002,"total_s":0.003,"ttft_s":0.003,"vision_s":0.001},"tokens":[9]}"#,
            #"{"generated_tokens":0,"id":50,"image":"\/escaped\/slashes.jpg","line":2,"prompt":"describe en","prompt_tokens":19,"stop_reason":"eos","text":"","timings":{},"tokens":[]}"#,
            #"{"error":"line 3: cannot decode","id":"retry","image":"\#(image)","line":3,"prompt":"ocr"}"#,
            #"{"generated_tokens":1,"id":"cut"#,
        ]
        let output = dir.appendingPathComponent("results.jsonl")
        try old.joined(separator: "\n").write(to: output, atomically: true, encoding: .utf8)
        let model = Fixtures.model("e2e-pg1")
        let run = try Self.run(["generate", "--model", model.path, "--batch", requests.path, "--output", output.path, "--max-tokens", "4"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("skipping 2 request(s)"), "\(run.stderr)")

        let written = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").dropFirst(old.count).map(String.init)
        #expect(written.count == lines.count - 2)
        #expect(written.allSatisfy { !Self.json($0).isEmpty })
        let byLine = Dictionary(written.map { line in (Self.json(line)["line"] as? Int ?? 0, Self.json(line)) }, uniquingKeysWith: { a, _ in a })
        let answerKeys: Set<String> = ["id", "line", "image", "prompt", "text", "tokens", "prompt_tokens", "generated_tokens",
                                       "stop_reason", "timings"]
        for (line, prompt) in [(3, "ocr"), (5, "question en a cat")] {
            let object = try #require(byLine[line])
            #expect(Set(object.keys) == answerKeys, "\(object)")
            #expect(object["prompt"] as? String == prompt)
            #expect(object["image"] as? String == image)
            #expect(Set((object["timings"] as? [String: Any])?.keys.map { $0 } ?? [])
                    == ["load_s", "image_s", "vision_s", "prefill_s", "ttft_s", "decode_s", "decode_ms_per_token", "total_s"])
        }
        #expect(byLine[3]?["id"] as? String == "retry")
        #expect(byLine[5]?["id"] as? Int == 5)
        #expect((byLine[5]?["tokens"] as? [Int])?.count ?? 9 <= 2)
        let errors: [Int: String] = [
            4: #"line 4: task "answer" needs "question""#,
            6: #"line 6: task "segment" needs "label""#,
            7: #"line 7: task "detect" needs "labels""#,
            8: #"line 8: unknown task "fly""#,
            9: #"line 9: needs "prompt" or "task""#,
        ]
        for (line, message) in errors {
            let object = try #require(byLine[line])
            #expect(Set(object.keys) == ["id", "line", "error"], "\(object)")
            #expect(object["error"] as? String == message)
            #expect(object["id"] as? Int == line)
        }
        let gone = try #require(byLine[10])
        #expect(Set(gone.keys) == ["id", "line", "image", "prompt", "error"])
        #expect(gone["prompt"] as? String == "ocr")
        #expect((gone["error"] as? String)?.contains("nope.jpg") == true)

        // The new lines resume the same way: "retry" and line 5 are answered now.
        let again = try Self.run(["generate", "--model", model.path, "--batch", requests.path, "--output", output.path, "--max-tokens", "4"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("skipping 4 request(s)"), "\(again.stderr)")
    }

    @Test func detectJSONIsOneObject() throws {
        let c = try Case("pg1-detect")
        let run = try Self.run(["detect", "--model", c.model.path, "--image", c.image.path, "--max-tokens", "10", "--json", "cat", "dog"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.split(separator: "\n").count == 1)
        let object = Self.json(run.stdout)
        #expect(Set(object.keys) == ["text", "tokens", "prompt_tokens", "generated_tokens", "stop_reason", "timings", "prompt",
                                     "image_size", "detections", "segments", "skipped", "masks_decoded"])
        #expect(object["prompt"] as? String == "detect cat ; dog")
        #expect(object["image_size"] as? [Int] == [120, 90])
        #expect(object["tokens"] as? [Int] == c.tokens)
    }
}
