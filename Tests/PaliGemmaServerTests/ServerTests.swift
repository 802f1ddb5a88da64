import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import PaliGemma
import PaliGemmaJSON
@testable import PaliGemmaServer
import PaliGemmaVideo
import Testing

/// The server over real HTTP on loopback, with the bundled shapes model (real answers) and a
/// random model of the same shape (long answers).
@Suite("Server", .serialized)
struct ServerTests {
    /// What the library answers for a prompt, greedy: the server must say the same.
    static func libraryAnswer(_ prompt: String, image: String, model: URL = shapesModel, maxTokens: Int = 256) throws -> String {
        try libraryAnswer(prompt, images: [image], model: model, maxTokens: maxTokens)
    }

    static func libraryAnswer(_ prompt: String, images: [String], model: URL = shapesModel, maxTokens: Int = 256) throws -> String {
        let pipeline = try PaliGemmaPipeline(directory: model)
        let pictures = try images.map { try ImageDecoder.decode(contentsOf: repositoryRoot.appendingPathComponent($0)) }
        return try pipeline.generate(images: pictures, prompt: prompt, options: GenerationOptions(maxNewTokens: maxTokens)).text
    }

    @Test("health, models, metrics and the OpenAPI document")
    func smallEndpoints() async throws {
        let s = try await TestServer()
        let health = try await s.request(.GET, "/health")
        #expect(health.status == 200)
        #expect(health.json?["status"]?.stringValue == "ok")
        let models = try await s.request(.GET, "/v1/models")
        #expect(models.status == 200)
        guard case let .array(list)? = models.json?["data"] else { Issue.record("no data: \(models.body)"); return }
        #expect(list.first?["id"]?.stringValue == "shapes-tiny")
        #expect(list.first?["image_size"]?.intValue == 224)
        #expect(list.first?["image_tokens"]?.intValue == 64)
        let metrics = try await s.request(.GET, "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("paligemma_requests_running"))
        // The document lists exactly the served paths.
        let doc = try await s.request(.GET, "/openapi.json")
        guard case let .object(paths)? = doc.json?["paths"] else { Issue.record("no paths in the OpenAPI document"); return }
        #expect(Set(paths.map(\.key)) == Routes.paths)
        let missing = try await s.request(.GET, "/nope")
        #expect(missing.status == 404)
        #expect(missing.json?["error"]?["code"]?.stringValue == "not_found")
        let wrongMethod = try await s.request(.PUT, "/health")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers["allow"].first == "GET")
        #expect(try await s.request(.GET, "/v1/completions").headers["allow"].first == "POST")
        try await s.stop()
    }

    @Test("chat completions, plain and streamed, give the library's greedy answer")
    func chat() async throws {
        let prompt = "answer en how many shapes are there?"
        let expected = try Self.libraryAnswer(prompt, image: "Examples/shapes.png")
        #expect(expected == "3")
        let s = try await TestServer()
        let image = try dataURL("Examples/shapes.png")
        let plain = try await s.post("/v1/chat/completions", chatBody(prompt, image: image))
        #expect(plain.status == 200, "\(plain.body)")
        let json = try #require(plain.json)
        #expect(json["object"]?.stringValue == "chat.completion")
        #expect(json["choices"]?[0]?["message"]?["content"]?.stringValue == expected)
        #expect(json["choices"]?[0]?["finish_reason"]?.stringValue == "stop")
        let promptTokens = try PaliGemmaPipeline(directory: shapesModel).promptIDs(prompt).count
        #expect(json["usage"]?["prompt_tokens"]?.intValue == promptTokens)
        #expect(json["usage"]?["completion_tokens"]?.intValue ?? 0 >= 1)

        let streamed = try await s.post("/v1/chat/completions",
                                        chatBody(prompt, image: image, extra: ["stream": true, "stream_options": ["include_usage": true]]))
        #expect(streamed.status == 200)
        #expect(streamed.headers["content-type"].first == "text/event-stream")
        let events = sseEvents(streamed.body)
        #expect(events.last == "[DONE]")
        var text = ""
        var finish: String?
        var usage: JSONValue?
        for event in events.dropLast() {
            let chunk = try JSONParser.parse(Array(event.utf8))
            #expect(chunk["object"]?.stringValue == "chat.completion.chunk")
            if let content = chunk["choices"]?[0]?["delta"]?["content"]?.stringValue { text += content }
            if let f = chunk["choices"]?[0]?["finish_reason"]?.stringValue { finish = f }
            if let u = chunk["usage"], !u.isNull { usage = u }
        }
        #expect(text == expected)
        #expect(finish == "stop")
        #expect(usage?["prompt_tokens"]?.intValue == promptTokens)
        try await s.stop()
    }

    @Test("completions and the typed task endpoints")
    func completionsAndTasks() async throws {
        let s = try await TestServer()
        let image = try dataURL("Examples/shapes.png")
        let caption = try Self.libraryAnswer("caption en", image: "Examples/shapes.png")
        let completion = try await s.post("/v1/completions", ["prompt": "caption en", "image": image])
        #expect(completion.status == 200, "\(completion.body)")
        #expect(completion.json?["choices"]?[0]?["text"]?.stringValue == caption)
        let streamed = try await s.post("/v1/completions", ["prompt": "caption en", "image": image, "stream": true])
        let pieces = sseEvents(streamed.body).dropLast().compactMap { try? JSONParser.parse(Array($0.utf8))["choices"]?[0]?["text"]?.stringValue }
        #expect(pieces.joined() == caption)

        let typed = try await s.post("/v1/caption", ["image": image])
        #expect(typed.status == 200, "\(typed.body)")
        #expect(typed.json?["text"]?.stringValue == caption)
        #expect(typed.json?["prompt"]?.stringValue == "caption en")
        #expect(typed.json?["timings"]?["ttft_s"] != nil)

        let answer = try await s.post("/v1/answer", ["image": image, "question": "how many shapes are there?"])
        #expect(answer.json?["text"]?.stringValue == "3")
        let noQuestion = try await s.post("/v1/answer", ["image": image])
        #expect(noQuestion.status == 400)
        #expect(noQuestion.json?["error"]?["param"]?.stringValue == "question")

        // detect: whatever the answer, its boxes are parsed into the image's pixels.
        let detectText = try Self.libraryAnswer("detect circle", image: "Examples/shapes.png")
        let detect = try await s.post("/v1/detect", ["image": image, "labels": ["circle"]])
        #expect(detect.status == 200, "\(detect.body)")
        #expect(detect.json?["text"]?.stringValue == detectText)
        #expect(detect.json?["image_size"]?[0]?.intValue == 224)
        let parsed = try TaskOutput.parse(text: detectText, imageWidth: 224, imageHeight: 224, maskDecoder: nil)
        guard case let .array(detections)? = detect.json?["detections"] else { Issue.record("no detections member"); return }
        #expect(detections.count == parsed.detections.count)
        try await s.stop()
    }

    @Test("several images: chat parts, \"images\" on completions and tasks give the library's answer; each image is cached on its own")
    func severalImages() async throws {
        let files = ["Examples/shapes.png", "Examples/shapes-four.png"]
        let prompt = "answer en how many shapes are there?"
        let expected = try Self.libraryAnswer(prompt, images: files, maxTokens: 16)
        let swapped = try Self.libraryAnswer(prompt, images: files.reversed(), maxTokens: 16)
        let s = try await TestServer()
        let urls = try files.map(dataURL)
        var chat = chatBody(prompt, image: urls[0], extra: ["max_tokens": 16])
        chat["messages"] = [["role": "user", "content": [["type": "text", "text": prompt],
                                                         ["type": "image_url", "image_url": ["url": urls[0]]],
                                                         ["type": "image_url", "image_url": ["url": urls[1]]]]]]
        let reply = try await s.post("/v1/chat/completions", chat)
        #expect(reply.status == 200, "\(reply.body)")
        #expect(reply.json?["choices"]?[0]?["message"]?["content"]?.stringValue == expected)
        let promptTokens = try PaliGemmaPipeline(directory: shapesModel).promptIDs(prompt, images: 2).count
        #expect(reply.json?["usage"]?["prompt_tokens"]?.intValue == promptTokens)
        #expect(try await s.metric("paligemma_vision_cache_hits_total") == 0)

        // The same two images in the other order: both features come from the cache.
        let completion = try await s.post("/v1/completions", ["prompt": prompt, "images": Array(urls.reversed()), "max_tokens": 16])
        #expect(completion.status == 200, "\(completion.body)")
        #expect(completion.json?["choices"]?[0]?["text"]?.stringValue == swapped)
        #expect(try await s.metric("paligemma_vision_cache_hits_total") == 2)
        let typed = try await s.post("/v1/answer", ["images": urls, "question": "how many shapes are there?", "max_tokens": 16])
        #expect(typed.status == 200, "\(typed.body)")
        #expect(typed.json?["text"]?.stringValue == expected)
        print("two images: \(expected.debugDescription), swapped: \(swapped.debugDescription)")
        try await s.stop()
    }

    @Test("a video: its frames are the prompt's images (the library's answer), each frame cached under the clip's sampling")
    func video() async throws {
        let file = repositoryRoot.appendingPathComponent("Tests/PaliGemmaVideoTests/Fixtures/h264.mp4")
        let url = "data:video/mp4;base64," + (try Data(contentsOf: file)).base64EncodedString()
        let prompt = "answer en how many shapes are there?"
        let pipeline = try PaliGemmaPipeline(directory: shapesModel)
        func expected(_ sampling: FrameSampling) throws -> String {
            let frames = try VideoReader.frames(path: file.path, sampling: sampling).frames
            return try pipeline.generate(images: frames, prompt: prompt, options: GenerationOptions(maxNewTokens: 16)).text
        }
        let s = try await TestServer()
        let completion = try await s.post("/v1/completions", ["prompt": prompt, "max_tokens": 16,
                                                              "video": ["url": url, "frames": 4, "stride": 3]])
        #expect(completion.status == 200, "\(completion.body)")
        #expect(completion.json?["choices"]?[0]?["text"]?.stringValue == (try expected(FrameSampling(count: 4, stride: 3))))
        #expect(completion.json?["usage"]?["prompt_tokens"]?.intValue == pipeline.promptIDs(prompt, images: 4).count)
        #expect(try await s.metric("paligemma_vision_cache_hits_total") == 0)

        // The same clip and sampling again, as a chat video_url part: every frame from the cache.
        var chat = chatBody(prompt, image: url, extra: ["max_tokens": 16])
        chat["messages"] = [["role": "user", "content": [["type": "text", "text": prompt],
                                                         ["type": "video_url", "video_url": ["url": url, "frames": 4, "stride": 3]]]]]
        let reply = try await s.post("/v1/chat/completions", chat)
        #expect(reply.status == 200, "\(reply.body)")
        #expect(reply.json?["choices"]?[0]?["message"]?["content"]?.stringValue == (try expected(FrameSampling(count: 4, stride: 3))))
        #expect(try await s.metric("paligemma_vision_cache_hits_total") == 4)

        // The URL string alone takes the default sampling (16 frames, every 9th; this clip has 40,
        // so frames 0, 9, 18, 27, 36 repeat); a text task takes a video too.
        let typed = try await s.post("/v1/answer", ["video": url, "question": "how many shapes are there?", "max_tokens": 16])
        #expect(typed.status == 200, "\(typed.body)")
        #expect(typed.json?["text"]?.stringValue == (try expected(FrameSampling())))
        #expect(typed.json?["prompt_tokens"]?.intValue == pipeline.promptIDs(prompt, images: 16).count)
        try await s.stop()
    }

    @Test("bad videos and video requests get a clear 4xx naming the field")
    func badVideos() async throws {
        let s = try await TestServer { $0.images.maxVideoBytes = 8_000; $0.images.maxVideoFrames = 8 }
        func video(_ name: String) throws -> String {
            let data = try Data(contentsOf: repositoryRoot.appendingPathComponent("Tests/PaliGemmaVideoTests/Fixtures/" + name))
            return "data:video/mp4;base64," + data.base64EncodedString()
        }
        func expectError(_ reply: TestServer.Reply, _ status: Int, param: String? = nil, code: String? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(reply.status == status, "\(reply.body)", sourceLocation: sourceLocation)
            if let param { #expect(reply.json?["error"]?["param"]?.stringValue == param, "\(reply.body)", sourceLocation: sourceLocation) }
            if let code { #expect(reply.json?["error"]?["code"]?.stringValue == code, "\(reply.body)", sourceLocation: sourceLocation) }
            print("\(status) \(reply.json?["error"]?["message"]?.stringValue ?? reply.body)")
        }
        let clip = try video("h264.mp4")
        let image = try dataURL("Examples/shapes.png")
        func complete(_ video: Any, extra: [String: Any] = [:]) async throws -> TestServer.Reply {
            try await s.post("/v1/completions", ["prompt": "caption en", "max_tokens": 4, "video": video].merging(extra) { $1 })
        }
        expectError(try await complete(["url": clip, "frames": 9]), 400, param: "video.frames", code: "too_many_frames")
        expectError(try await complete(["url": clip, "frames": 0]), 400, param: "video.frames", code: "bad_sampling")
        expectError(try await complete(["url": clip, "stride": 10_000_000]), 400, param: "video.stride", code: "bad_sampling")
        expectError(try await complete(["url": clip, "frames": 2, "start": -1]), 400, param: "video.start", code: "bad_sampling")
        expectError(try await complete(["url": clip, "frames": 2, "start": 60]), 400, param: "video", code: "bad_video")
        expectError(try await complete(["frames": 2]), 400, param: "video.url")
        expectError(try await complete(["url": clip, "frames": 2], extra: ["image": image]), 400, param: "video")
        expectError(try await complete(["url": try video("audio.m4a"), "frames": 2]), 413, param: "video", code: "video_too_large")
        expectError(try await complete(["url": try video("truncated.mp4"), "frames": 8, "stride": 5]), 400, param: "video", code: "bad_video")
        expectError(try await complete(["url": "data:video/mp4;base64,AAAAAAAA", "frames": 2]), 400, param: "video", code: "bad_video")
        expectError(try await complete(["url": "data:video/mp4,abc", "frames": 2]), 400, param: "video", code: "bad_video")
        expectError(try await complete("https://example.com/a.mp4"), 400, param: "video.frames", code: "too_many_frames")  // 16 by default
        expectError(try await complete(["url": "https://example.com/a.mp4", "frames": 2]), 400, param: "video", code: "remote_videos_disabled")
        expectError(try await complete(["url": "/tmp/a.mp4", "frames": 2]), 400, param: "video", code: "local_videos_disabled")
        expectError(try await s.post("/v1/detect", ["video": clip, "labels": ["circle"]]), 400, param: "video", code: "too_many_images")
        var chat = chatBody("caption en", image: image)
        chat["messages"] = [["role": "user", "content": [["type": "video_url", "video_url": ["frames": 2]]]]]
        expectError(try await s.post("/v1/chat/completions", chat), 400, param: "messages[0].content[0].video_url.url")
        chat["messages"] = [["role": "user", "content": [["type": "video_url", "video_url": ["url": clip, "frames": 5]],
                                                         ["type": "video_url", "video_url": ["url": clip, "frames": 4]]]]]
        expectError(try await s.post("/v1/chat/completions", chat), 400, param: "messages[0].content[1].video_url.frames", code: "too_many_frames")
        #expect(try await s.metric("paligemma_http_responses_total{route=\"/v1/completions\",status=\"500\"}") == 0)
        try await s.stop()

        // A frame over the pixel limit is refused before it is converted.
        let small = try await TestServer { $0.images.maxFramePixels = 1_000 }
        expectError(try await small.post("/v1/completions", ["prompt": "caption en", "video": ["url": clip, "frames": 1]]), 413,
                    param: "video", code: "video_frame_too_many_pixels")
        expectError(try await small.post("/v1/completions", ["prompt": "caption en", "video": try video("audio.m4a")]), 400,
                    param: "video", code: "bad_video")
        try await small.stop()
    }

    @Test("requests running together are batched and each gets its own answer")
    func concurrentRequests() async throws {
        let prompts = ["caption en", "answer en how many shapes are there?", "answer en how many circles are there?",
                       "answer en how many squares are there?", "answer en what color is the circle?", "detect square"]
        let images = ["Examples/shapes.png", "Examples/shapes-four.png"]
        var expected: [String: String] = [:]
        for p in prompts { for i in images { expected[p + "|" + i] = try Self.libraryAnswer(p, image: i) } }
        // The answers are a few tokens long: with a generous prefill share each prompt joins the
        // batch within a step or two instead of trailing one piece a step behind the others.
        let s = try await TestServer { $0.maxBatch = 4; $0.prefillShare = 50 }
        let encoded = try images.map(dataURL)
        let results = try await withThrowingTaskGroup(of: (String, String?).self) { group in
            for p in prompts {
                for (i, name) in images.enumerated() {
                    group.addTask {
                        let r = try await s.post("/v1/completions", ["prompt": p, "image": encoded[i]])
                        return (p + "|" + name, r.json?["choices"]?[0]?["text"]?.stringValue)
                    }
                }
            }
            var out: [String: String?] = [:]
            for try await (k, v) in group { out[k] = v }
            return out
        }
        for (key, answer) in expected { #expect(results[key] == .some(answer), "\(key)") }
        // Several sequences shared steps, and the second question about each image hit the vision cache.
        let sequences = try await s.metric("paligemma_step_sequences_sum")
        let steps = try await s.metric("paligemma_step_sequences_count")
        #expect(sequences > steps)
        #expect(try await s.metric("paligemma_vision_cache_hits_total") >= 1)
        try await s.stop()
    }

    @Test("malformed requests get a 400 naming the field, never a 500")
    func badRequests() async throws {
        let s = try await TestServer { $0.maxBodyBytes = 200_000; $0.images.maxPixels = 100_000 }
        let image = try dataURL("Examples/shapes.png")
        func expectError(_ reply: TestServer.Reply, _ status: Int, param: String? = nil, code: String? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(reply.status == status, "\(reply.body)", sourceLocation: sourceLocation)
            #expect(reply.json?["error"]?["message"]?.stringValue != nil, sourceLocation: sourceLocation)
            if let param { #expect(reply.json?["error"]?["param"]?.stringValue == param, "\(reply.body)", sourceLocation: sourceLocation) }
            if let code { #expect(reply.json?["error"]?["code"]?.stringValue == code, "\(reply.body)", sourceLocation: sourceLocation) }
        }
        expectError(try await s.request(.POST, "/v1/chat/completions", body: "{not json"), 400, code: "bad_json")
        expectError(try await s.request(.POST, "/v1/chat/completions", body: "[1]"), 400)
        expectError(try await s.post("/v1/chat/completions", ["model": "x"]), 400, param: "messages")
        expectError(try await s.post("/v1/chat/completions", ["messages": "hi"]), 400, param: "messages")
        expectError(try await s.post("/v1/chat/completions", ["messages": [["role": "user", "content": 5]]]), 400, param: "messages[0].content")
        expectError(try await s.post("/v1/chat/completions", ["messages": [["role": "user", "content": "caption en"]]]), 400, code: "missing_image")
        var system = chatBody("caption en", image: image)
        system["messages"] = [["role": "system", "content": "be brief"]] + (system["messages"] as? [[String: Any]] ?? [])
        expectError(try await s.post("/v1/chat/completions", system), 400, code: "multi_turn")
        var fiveImages = chatBody("caption en", image: image)
        fiveImages["messages"] = [["role": "user", "content": Array(repeating: ["type": "image_url", "image_url": ["url": image]], count: 5)]]
        expectError(try await s.post("/v1/chat/completions", fiveImages), 400, param: "messages[0].content[4].image_url.url",
                    code: "too_many_images")
        expectError(try await s.post("/v1/completions", ["prompt": "caption en", "image": image, "images": [image]]), 400, param: "images")
        expectError(try await s.post("/v1/completions", ["prompt": "caption en", "images": [String]()]), 400, code: "missing_image")
        expectError(try await s.post("/v1/completions", ["prompt": "caption en"]), 400, code: "missing_image")
        expectError(try await s.post("/v1/completions", ["prompt": "caption en", "images": [image, "data:image/png,abc"]]), 400,
                    param: "images[1]", code: "bad_image")
        expectError(try await s.post("/v1/detect", ["images": [image, image], "labels": ["circle"]]), 400, code: "too_many_images")
        expectError(try await s.post("/v1/chat/completions", chatBody("caption en", image: image, extra: ["n": 2])), 400, param: "n")
        expectError(try await s.post("/v1/chat/completions", chatBody("caption en", image: image, extra: ["max_tokens": 100_000])), 400, param: "max_tokens")
        expectError(try await s.post("/v1/chat/completions", chatBody("caption en", image: image, extra: ["temperature": "hot"])), 400, param: "temperature")
        expectError(try await s.post("/v1/chat/completions", chatBody("caption en", image: image, extra: ["top_p": 0])), 400, param: "top_p")
        expectError(try await s.post("/v1/completions", ["prompt": String(repeating: "circle ", count: 600), "image": image]), 400, code: "prompt_too_long")
        expectError(try await s.post("/v1/completions", ["prompt": "caption en", "image": "data:image/png;base64,AAAA"]), 400, code: "bad_image")
        expectError(try await s.post("/v1/completions", ["prompt": "caption en", "image": "data:image/png,abc"]), 400, code: "bad_image")
        expectError(try await s.post("/v1/completions", ["prompt": "caption en", "image": "https://example.com/a.png"]), 400, code: "remote_images_disabled")
        expectError(try await s.post("/v1/completions", ["prompt": "caption en", "image": "/etc/passwd"]), 400, code: "local_images_disabled")
        // 500 x 500 is over this server's 100,000-pixel limit: refused from the header.
        let big = try PNGWriter.encode(RGBImage(width: 500, height: 500, fill: (200, 200, 200)))
        expectError(try await s.post("/v1/completions", ["prompt": "caption en", "image": "data:image/png;base64," + big.base64EncodedString()]),
                    413, code: "image_too_many_pixels")
        expectError(try await s.request(.POST, "/v1/completions", body: String(repeating: " ", count: 300_000)), 413, code: "body_too_large")
        expectError(try await s.post("/detokenize", ["tokens": [1, 99_999]]), 400, param: "tokens[1]")
        expectError(try await s.post("/v1/detect", ["image": image]), 400, param: "labels")
        // Nothing above reached the engine or failed inside it.
        #expect(try await s.metric("paligemma_http_responses_total{route=\"/v1/completions\",status=\"500\"}") == 0)
        #expect(try await s.request(.GET, "/health").status == 200)
        try await s.stop()
    }

    @Test("local images only under --media-root, with links resolved")
    func mediaRoot() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pg-media-\(getpid())")
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent("Examples/shapes.png"), to: root.appendingPathComponent("a.png"))
        try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("escape.png").path,
                                                   withDestinationPath: repositoryRoot.appendingPathComponent("Examples/shapes-four.png").path)
        let s = try await TestServer { $0.images.mediaRoot = root.path }
        let ok = try await s.post("/v1/answer", ["image": "a.png", "question": "how many shapes are there?"])
        #expect(ok.status == 200, "\(ok.body)")
        #expect(ok.json?["text"]?.stringValue == "3")
        #expect(try await s.post("/v1/caption", ["image": "../" + root.lastPathComponent + "/../etc/passwd"]).status >= 400)
        #expect(try await s.post("/v1/caption", ["image": "escape.png"]).status == 403)
        #expect(try await s.post("/v1/caption", ["image": "/etc/hostname"]).status == 403)
        #expect(try await s.post("/v1/caption", ["image": "missing.png"]).status == 400)
        try await s.stop()
    }

    @Test("API keys guard every route but /health")
    func apiKeys() async throws {
        let s = try await TestServer { $0.apiKeys = ["k1", "second-key"] }
        #expect(try await s.request(.GET, "/health").status == 200)
        let none = try await s.request(.GET, "/v1/models")
        #expect(none.status == 401)
        #expect(none.json?["error"]?["type"]?.stringValue == "authentication_error")
        #expect(try await s.request(.GET, "/v1/models", headers: [("Authorization", "Bearer k2")]).status == 401)
        #expect(try await s.request(.GET, "/v1/models", headers: [("Authorization", "Bearer k1")]).status == 200)
        #expect(try await s.request(.GET, "/v1/models", headers: [("X-Api-Key", "second-key")]).status == 200)
        #expect(try await s.request(.GET, "/metrics").status == 401)
        #expect(try await s.metric("") == 0)  // (metrics need the key too)
        try await s.stop()
    }

    @Test("a full queue answers 503 with Retry-After")
    func queueFull() async throws {
        let s = try await TestServer(model: randomShapesModel) { $0.maxBatch = 1; $0.maxQueue = 1; $0.maxTokensLimit = 4000 }
        let image = try dataURL("Examples/shapes.png")
        // The first runs long enough for the third to find the second waiting, even in a fast
        // build; the second is short, so that a slow build (ASan, a loaded machine) ends in time.
        async let first = s.post("/v1/completions", ["prompt": "caption en", "image": image, "max_tokens": 450])
        try await Task.sleep(for: .milliseconds(300))
        async let second = s.post("/v1/completions", ["prompt": "caption en", "image": image, "max_tokens": 5])
        try await Task.sleep(for: .milliseconds(300))
        let third = try await s.post("/v1/completions", ["prompt": "caption en", "image": image, "max_tokens": 5])
        #expect(third.status == 503, "\(third.body)")
        #expect(third.headers["retry-after"].first == "1")
        #expect(third.json?["error"]?["code"]?.stringValue == "queue_full")
        let (a, b) = try await (first, second)
        #expect(a.status == 200 && b.status == 200)
        #expect(a.json?["usage"]?["completion_tokens"]?.intValue ?? 0 > 100)
        #expect(try await s.metric("paligemma_requests_rejected_total{reason=\"queue_full\"}") == 1)
        try await s.stop()
    }

    @Test("a client that goes away frees its batch slot")
    func disconnect() async throws {
        let s = try await TestServer(model: randomShapesModel) { $0.maxTokensLimit = 4000 }
        let image = try dataURL("Examples/shapes.png")
        let body = try JSONSerialization.data(withJSONObject: ["prompt": "caption en", "image": image, "max_tokens": 4000, "stream": true])
        var request = HTTPClientRequest(url: s.base + "/v1/completions")
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: body))
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let reader = Task {
            let response = try await client.execute(request, timeout: .seconds(60))
            var seen = 0
            for try await chunk in response.body {
                seen += chunk.readableBytes
                if seen > 500 { return seen }
            }
            return seen
        }
        let seen = try await reader.value
        #expect(seen > 500)
        try await client.shutdown()  // closes the connection mid-stream
        var running = 1
        for _ in 0..<200 {
            running = s.server.backend?.engine.state.running ?? -1
            if running == 0 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(running == 0)
        #expect(try await s.metric("paligemma_requests_finished_total{reason=\"cancelled\"}") == 1)

        // A plain (non-streaming) request whose client gives up: noticed through its connection.
        let impatient = HTTPClient(eventLoopGroupProvider: .singleton)
        let plain = try JSONSerialization.data(withJSONObject: ["prompt": "caption en", "image": image, "max_tokens": 4000])
        var second = HTTPClientRequest(url: s.base + "/v1/completions")
        second.method = .POST
        second.body = .bytes(ByteBuffer(bytes: plain))
        await #expect(throws: (any Error).self) { _ = try await impatient.execute(second, timeout: .milliseconds(500)) }
        try await impatient.shutdown()
        for _ in 0..<200 {
            running = s.server.backend?.engine.state.running ?? -1
            if running == 0 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(running == 0)
        #expect(try await s.metric("paligemma_requests_finished_total{reason=\"cancelled\"}") == 2)
        try await s.stop()
    }

    @Test("a request past its deadline is cancelled with 504")
    func timeout() async throws {
        let s = try await TestServer(model: randomShapesModel) { $0.maxTokensLimit = 8000; $0.requestTimeout = 0.3 }
        let reply = try await s.post("/v1/completions", ["prompt": "caption en", "image": try dataURL("Examples/shapes.png"), "max_tokens": 8000])
        #expect(reply.status == 504, "\(reply.body)")
        #expect(reply.json?["error"]?["code"]?.stringValue == "timeout")
        try await s.stop()
    }

    @Test("shutdown lets running requests finish and refuses new ones")
    func shutdownDrain() async throws {
        // A long grace: under ASan on a loaded 2-core machine 400 tokens have taken over 30 s.
        let s = try await TestServer(model: randomShapesModel) { $0.maxTokensLimit = 4000; $0.shutdownGrace = 150 }
        let image = try dataURL("Examples/shapes.png")
        async let running = s.post("/v1/completions", ["prompt": "caption en", "image": image, "max_tokens": 400])
        try await Task.sleep(for: .milliseconds(200))
        let stopping = Task { await s.group.triggerGracefulShutdown() }
        try await Task.sleep(for: .milliseconds(50))
        let refused = try? await s.post("/v1/completions", ["prompt": "caption en", "image": image, "max_tokens": 5])
        if let refused { #expect(refused.status == 503, "\(refused.body)") }
        let reply = try await running
        #expect(reply.status == 200)
        #expect(reply.json?["usage"]?["completion_tokens"]?.intValue == 400)
        await stopping.value
        try await s.stop()
    }

    @Test("stop strings end the answer before them, also across streamed pieces")
    func stopStrings() {
        var m = StopStringMatcher(["circle", "\n\n"])
        var out = ""
        var hit = false
        for piece in ["a red ", "ci", "rc", "le and more"] {
            let (text, stop) = m.push(piece)
            out += text
            if stop { hit = true; break }
        }
        #expect(hit)
        #expect(out == "a red ")
        var n = StopStringMatcher(["xyz"])
        let (a, s1) = n.push("abcx")
        let (b, s2) = n.push("y")
        #expect(a == "abc" && b == "" && !s1 && !s2)
        #expect(n.flush() == "xy")
    }
}
