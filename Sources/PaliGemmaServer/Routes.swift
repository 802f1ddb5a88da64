import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PaliGemma
import PaliGemmaJSON

/// The HTTP routes (docs/SERVER.md): OpenAI's chat and text completions, the typed task
/// endpoints, tokenizer, models, health, metrics and the OpenAPI document.
struct Routes {
    let server: InferenceServer

    /// Every path served (the OpenAPI document lists exactly these; a test checks it).
    static let taskPaths = ["/v1/caption", "/v1/describe", "/v1/ocr", "/v1/answer", "/v1/detect", "/v1/segment"]
    static let paths: Set<String> = Set(["/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/v1/models",
                                         "/health", "/metrics", "/openapi.json"] + taskPaths)

    static let getPaths: Set<String> = ["/health", "/metrics", "/openapi.json", "/v1/models"]

    /// The method a served path takes (nil for a path not served).
    static func method(of path: String) -> HTTPRequest.Method? {
        guard paths.contains(path) else { return nil }
        return getPaths.contains(path) ? .get : .post
    }

    func register(on router: Router<ServerRequestContext>) {
        router.get("/health") { _, _ in health() }
        router.get("/metrics") { _, _ in metricsText() }
        router.get("/openapi.json") { _, _ in json(OpenAPIDocument.text) }
        router.get("/v1/models") { _, _ in try models() }
        router.post("/v1/chat/completions") { request, context in try await chatCompletions(request, context) }
        router.post("/v1/completions") { request, context in try await completions(request, context) }
        router.post("/tokenize") { request, _ in try await tokenize(request) }
        router.post("/detokenize") { request, _ in try await detokenize(request) }
        for path in Self.taskPaths {
            let task = String(path.dropFirst(4))
            router.post(RouterPath(path)) { request, context in try await taskEndpoint(task, request, context) }
        }
    }

    // MARK: Small endpoints

    func health() -> Response {
        do {
            let backend = try server.readyBackend()
            let state = backend.engine.state
            if !state.accepting {
                return json(#"{"status":"shutting_down"}"#, status: .serviceUnavailable)
            }
            if state.stalledSeconds > server.options.stallSeconds {
                return json(#"{"status":"stalled","stalled_seconds":\#(Int(state.stalledSeconds))}"#, status: .serviceUnavailable)
            }
            return json(#"{"status":"ok","running":\#(state.running),"waiting":\#(state.waiting)}"#)
        } catch let e as ServerError {
            return json(#"{"status":\#(jsonQuoted(e.code == "loading" ? "loading" : e.code)),"message":\#(jsonQuoted(e.message))}"#,
                        status: .serviceUnavailable)
        } catch {
            return json(#"{"status":"error"}"#, status: .serviceUnavailable)
        }
    }

    func metricsText() -> Response {
        if let backend = server.backend { server.metrics.update(backend.engine.state) }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: server.metrics.registry.emitToString())))
    }

    struct ModelList: Encodable {
        let object = "list"
        let data: [Model]

        struct Model: Encodable {
            let id: String
            let object = "model"
            let created: Int
            let ownedBy = "paligemma-swift"
            let imageSize: Int
            let imageTokens: Int
            let maxPositions: Int
            let capabilities: [String]
            /// For a served adapter: the base model's id, and the adapter's settings.
            var parent: String?
            var adapter: AdapterInfo?
            enum CodingKeys: String, CodingKey {
                case id, object, created, ownedBy = "owned_by", imageSize = "image_size", imageTokens = "image_tokens"
                case maxPositions = "max_positions", capabilities, parent, adapter
            }
        }

        struct AdapterInfo: Encodable {
            let rank: Int
            let alpha: Float
            let modules: Int
            let adaptsVision: Bool
            enum CodingKeys: String, CodingKey { case rank, alpha, modules, adaptsVision = "adapts_vision" }
        }
    }

    func models() throws -> Response {
        let backend = try server.readyBackend()
        let config = backend.pipeline.model.config
        var capabilities = ["chat.completions", "completions", "caption", "describe", "ocr", "answer", "detect", "segment"]
        if backend.maskDecoder != nil { capabilities.append("masks") }
        let model = ModelList.Model(id: backend.modelID, created: server.startTime, imageSize: config.visionConfig.imageSize,
                                    imageTokens: config.numImageTokens, maxPositions: config.textConfig.maxPositionEmbeddings,
                                    capabilities: capabilities)
        let adapters = backend.adapters.map { a in
            var m = ModelList.Model(id: a.name, created: server.startTime, imageSize: model.imageSize, imageTokens: model.imageTokens,
                                    maxPositions: model.maxPositions, capabilities: capabilities)
            m.parent = backend.modelID
            m.adapter = ModelList.AdapterInfo(rank: a.config.rank, alpha: a.config.alpha, modules: a.moduleCount, adaptsVision: a.adaptsVision)
            return m
        }
        return try json(ModelList(data: [model] + adapters))
    }

    struct TokenizeBody: Decodable {
        let prompt: String?
        let text: String?
        let addSpecialTokens: Bool?
        enum CodingKeys: String, CodingKey { case prompt, text, addSpecialTokens = "add_special_tokens" }
    }

    struct TokenizeResult: Encodable {
        let tokens: [Int]
        let count: Int
        let maxPositions: Int
        enum CodingKeys: String, CodingKey { case tokens, count, maxPositions = "max_positions" }
    }

    /// {"prompt": "caption en"} → the ids the model sees (image tokens, <bos>, prompt, "\n");
    /// with "add_special_tokens": false, the text's own ids.
    func tokenize(_ request: Request) async throws -> Response {
        let backend = try server.readyBackend()
        let body: TokenizeBody = try await decodeBody(request)
        guard let text = body.prompt ?? body.text else { throw ServerError.badRequest("'prompt' is required", param: "prompt") }
        let ids = body.addSpecialTokens ?? true
            ? backend.pipeline.promptIDs(text)
            : backend.pipeline.tokenizer.encode(text).map(Int.init)
        return try json(TokenizeResult(tokens: ids, count: ids.count, maxPositions: backend.pipeline.model.config.textConfig.maxPositionEmbeddings))
    }

    struct DetokenizeBody: Decodable { let tokens: [Int] }
    struct DetokenizeResult: Encodable { let text: String }

    /// {"tokens": [...]} → {"text": ...} (special pieces written out).
    func detokenize(_ request: Request) async throws -> Response {
        let backend = try server.readyBackend()
        let body: DetokenizeBody = try await decodeBody(request)
        let vocabulary = backend.pipeline.tokenizer.vocabularySize
        if let (i, bad) = body.tokens.enumerated().first(where: { $0.element < 0 || $0.element >= vocabulary }) {
            throw ServerError.badRequest("'tokens[\(i)]' is \(bad), outside the vocabulary of \(vocabulary) pieces", param: "tokens[\(i)]")
        }
        return try json(DetokenizeResult(text: backend.pipeline.tokenizer.decode(body.tokens.map { Int32($0) }, skipSpecial: false)))
    }

    // MARK: Generation

    /// A request's "image", "images" or "video" as references with the field each came from.
    func mediaList(image: String?, images: [String]?, video: VideoReference?) throws -> [MediaReference] {
        switch (image, images, video) {
        case let (image?, nil, nil): return [.image(image, field: "image")]
        case let (nil, images?, nil): return images.enumerated().map { .image($0.element, field: "images[\($0.offset)]") }
        case let (nil, nil, video?): return [.video(video, field: "video")]
        case (nil, nil, nil): throw ServerError.badRequest("'image' is required (or 'images', a list, or 'video')", param: "image", code: "missing_image")
        default: throw ServerError.badRequest("give one of 'image', 'images' and 'video'", param: video != nil ? "video" : "images")
        }
    }

    /// Checks a request's prompt, sampling and limits and reads its images and video frames (in
    /// the request's order, each frame an image); the result goes to the engine.
    func prepare(prompt: String, media: [MediaReference], sampling s: SamplingFields,
                 backend: ServingBackend, adapter: LoRASet? = nil) async throws -> (EngineRequest, imageSeconds: Double) {
        let options = server.options
        guard !media.isEmpty else {
            throw ServerError.badRequest("PaliGemma needs an image; 'images' is empty", param: "images", code: "missing_image")
        }
        let images = media.filter { if case .image = $0 { true } else { false } }
        guard images.count <= options.images.maxImages else {
            throw ServerError.badRequest("the request has \(images.count) images; this server takes at most \(options.images.maxImages)",
                                         param: images[options.images.maxImages].field, code: "too_many_images")
        }
        var frames = 0
        var samplings: [String: FrameSampling] = [:]  // by the video's field
        for case let .video(video, field) in media {
            let sampling = try video.checkedSampling(field: field)
            samplings[field] = sampling
            frames += sampling.count
            guard frames <= options.images.maxVideoFrames else {
                throw ServerError.badRequest("the request asks for \(frames) video frames; this server takes at most \(options.images.maxVideoFrames) (--max-video-frames)",
                                             param: field + ".frames", code: "too_many_frames")
            }
        }
        if let n = s.n, n != 1 { throw ServerError.badRequest("'n' must be 1: PaliGemma answers once per request", param: "n") }
        let maxTokens = s.maxCompletionTokens ?? s.maxTokens ?? options.defaultMaxTokens
        let maxField = s.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens"
        guard maxTokens >= 1, maxTokens <= options.maxTokensLimit else {
            throw ServerError.badRequest("'\(maxField)' is \(maxTokens); it must be 1 to \(options.maxTokensLimit) on this server", param: maxField)
        }
        let temperature = s.temperature ?? 0
        guard temperature >= 0, temperature <= 2, temperature.isFinite else {
            throw ServerError.badRequest("'temperature' must be between 0 and 2", param: "temperature")
        }
        let topP = s.topP ?? 1
        guard topP > 0, topP <= 1 else { throw ServerError.badRequest("'top_p' must be in (0, 1]", param: "top_p") }
        let stop = s.stop?.values ?? []
        guard stop.count <= 4 else { throw ServerError.badRequest("'stop' takes at most 4 strings", param: "stop") }
        let config = backend.pipeline.model.config
        let ids = backend.pipeline.promptIDs(prompt, images: images.count + frames)
        let textTokens = ids.count - config.numImageTokens * (images.count + frames) - 1
        guard textTokens <= options.maxPromptTokens else {
            throw ServerError.badRequest("the prompt is \(textTokens) tokens, over the server's limit of \(options.maxPromptTokens)",
                                         param: "prompt", code: "prompt_too_long")
        }
        guard ids.count + maxTokens <= config.textConfig.maxPositionEmbeddings else {
            throw ServerError.badRequest("the prompt's \(ids.count) tokens + \(maxTokens) new tokens exceed the model's \(config.textConfig.maxPositionEmbeddings) positions",
                                         param: maxField, code: "prompt_too_long")
        }
        let clock = Date()
        // Image features made with an adapter that adapts the vision tower are its own.
        let keySuffix = adapter.map { $0.adaptsVision ? "#adapter=" + $0.name : "" } ?? ""
        let imageInput = ImageInput(policy: options.images, pipeline: backend.pipeline, cache: backend.engine.visionCache, keySuffix: keySuffix)
        let videoInput = VideoInput(policy: options.images, pipeline: backend.pipeline, cache: backend.engine.visionCache, keySuffix: keySuffix)
        var engineImages: [EngineImage] = []
        for reference in media {
            switch reference {
            case let .image(url, field): engineImages.append(try await imageInput.load(url, field: field))
            case let .video(video, field):
                engineImages += try await videoInput.load(video, sampling: samplings[field] ?? video.sampling, field: field)
            }
        }
        let imageSeconds = Date().timeIntervalSince(clock)
        let sampling = SamplingOptions(temperature: Float(temperature), topK: 0, topP: Float(topP),
                                       seed: UInt64(bitPattern: Int64(s.seed ?? 0)))
        var request = EngineRequest(promptIDs: ids, images: engineImages,
                                    options: GenerationOptions(maxNewTokens: maxTokens, sampling: sampling, stopTokens: []),
                                    stop: stop, deadline: Date().addingTimeInterval(options.requestTimeout))
        request.adapter = adapter
        return (request, imageSeconds)
    }

    /// Queues a request; the engine cancels it at its next step once `gone` is set or the
    /// client's connection has closed.
    func submit(_ request: EngineRequest, to backend: ServingBackend, context: ServerRequestContext,
                gone: Mutex<Bool> = Mutex(false)) throws -> AsyncStream<EngineEvent> {
        var request = request
        let channel = context.channel
        request.clientGone = { gone.withLock { $0 } || !channel.isActive }
        do {
            return try backend.engine.submit(request)
        } catch EngineRejection.queueFull(let waiting) {
            throw ServerError(.serviceUnavailable, "the server is busy: \(waiting) requests are waiting; retry later",
                              code: "queue_full", retryAfter: 1)
        } catch EngineRejection.shuttingDown {
            throw ServerError(.serviceUnavailable, "the server is shutting down", code: "shutting_down", retryAfter: 5)
        }
    }

    /// Runs a request to the end; cancelled if the client goes away first. Watching for that
    /// means reading the connection while the answer is made, after which Hummingbird closes
    /// it, so the response says `Connection: close` (see `closing`).
    func complete(_ request: EngineRequest, backend: ServingBackend, body: Request,
                  context: ServerRequestContext) async throws -> EngineSummary {
        let gone = Mutex(false)
        let stream = try submit(request, to: backend, context: context, gone: gone)
        return try await body.body.consumeWithInboundCloseHandler({ _ in
            var summary: EngineSummary?
            for await event in stream {
                if case let .finished(s) = event { summary = s }
            }
            guard let summary else { throw CancellationError() }
            return summary
        }, onInboundClosed: { gone.withLock { $0 = true } })
    }

    /// A response that tells the client this connection ends with it.
    func closing(_ response: Response) -> Response {
        var response = response
        response.headers[.connection] = "close"
        return response
    }

    /// The error a non-streaming request reports for a summary that did not end well.
    func check(_ summary: EngineSummary) throws {
        switch summary.finishReason {
        case .error: throw ServerError(.internalServerError, "generation failed: \(summary.error ?? "unknown error")", code: "generation_failed")
        case .timeout: throw ServerError(.gatewayTimeout, "the request ran past the server's \(Int(server.options.requestTimeout)) s limit", code: "timeout")
        case .stop, .length, .cancelled: return
        }
    }

    // MARK: OpenAI

    func chatCompletions(_ request: Request, _ context: ServerRequestContext) async throws -> Response {
        let backend = try server.readyBackend()
        var request = request
        let body = try await collect(&request)
        let chat: ChatCompletionRequest = try decode(body)
        let (prompt, media) = try chatPromptAndMedia(chat.messages)
        let (engineRequest, _) = try await prepare(prompt: prompt, media: media, sampling: chat.sampling, backend: backend,
                                                   adapter: try backend.adapter(named: chat.model))
        let id = "chatcmpl-" + Self.randomID()
        let created = Int(Date().timeIntervalSince1970)
        let model = chat.model ?? backend.modelID
        if chat.sampling.stream == true {
            let stream = try submit(engineRequest, to: backend, context: context)
            let includeUsage = chat.sampling.streamOptions?.includeUsage == true
            return sse { writer in
                func chunk(_ delta: ChatMessage?, finish: String?, usage: Usage? = nil) throws -> String {
                    try JSONOutput.string(CompletionObject(
                        id: id, object: "chat.completion.chunk", created: created, model: model,
                        choices: delta.map { [Choice(key: "delta", payload: $0, finishReason: finish)] } ?? [],
                        usage: usage, writesUsage: includeUsage))
                }
                try await writer.event(try chunk(.init(role: "assistant", content: ""), finish: nil))
                for await event in stream {
                    switch event {
                    case let .text(piece):
                        guard !piece.isEmpty else { continue }
                        try await writer.event(try chunk(.init(role: nil, content: piece), finish: nil))
                    case let .finished(summary):
                        if let failure = Self.streamFailure(summary, timeout: server.options.requestTimeout) {
                            try await writer.event(try JSONOutput.string(failure.body))
                        } else {
                            try await writer.event(try chunk(.init(role: nil, content: nil), finish: openAIFinishReason(summary.finishReason)))
                            if includeUsage {
                                try await writer.event(try chunk(nil, finish: nil,
                                    usage: Usage(promptTokens: summary.promptTokens, completionTokens: summary.tokens.count)))
                            }
                        }
                    }
                }
                try await writer.event("[DONE]")
            }
        }
        let summary = try await complete(engineRequest, backend: backend, body: request, context: context)
        try check(summary)
        return closing(try json(CompletionObject(
            id: id, object: "chat.completion", created: created, model: model,
            choices: [Choice(key: "message", payload: ChatMessage(role: "assistant", content: summary.text),
                             finishReason: openAIFinishReason(summary.finishReason))],
            usage: Usage(promptTokens: summary.promptTokens, completionTokens: summary.tokens.count), writesUsage: true)))
    }

    /// The last user message's text (its text parts joined by a space) and its images and
    /// videos, in order.
    func chatPromptAndMedia(_ messages: [ChatCompletionRequest.Message]) throws -> (String, [MediaReference]) {
        guard let last = messages.last else { throw ServerError.badRequest("'messages' is empty", param: "messages") }
        let index = messages.count - 1
        guard last.role == "user" else {
            throw ServerError.badRequest("the last message must have role \"user\" (it is \"\(last.role)\")", param: "messages[\(index)].role")
        }
        if server.options.chatHistory == .reject, messages.count > 1 {
            let what = messages.dropLast().contains { $0.role == "system" || $0.role == "developer" } ? "system messages" : "earlier turns"
            throw ServerError.badRequest("PaliGemma is single-turn: send one user message (this request has \(what)); "
                                         + "a server started with --chat-history last-user-message uses the last user message only",
                                         param: "messages", code: "multi_turn")
        }
        var texts: [String] = []
        var media: [MediaReference] = []
        switch last.content {
        case let .text(s)?:
            texts = [s]
        case let .parts(parts)?:
            for (i, part) in parts.enumerated() {
                let field = "messages[\(index)].content[\(i)]"
                switch part.type {
                case "text":
                    guard let t = part.text else { throw ServerError.badRequest("'\(field).text' is required", param: field + ".text") }
                    texts.append(t)
                case "image_url":
                    guard let u = part.imageURL?.url else {
                        throw ServerError.badRequest("'\(field).image_url.url' is required", param: field + ".image_url")
                    }
                    media.append(.image(u, field: field + ".image_url.url"))
                case "video_url":
                    guard let v = part.videoURL else {
                        throw ServerError.badRequest("'\(field).video_url.url' is required", param: field + ".video_url")
                    }
                    media.append(.video(v, field: field + ".video_url"))
                default:
                    throw ServerError.badRequest("'\(field).type' is \"\(part.type)\"; PaliGemma takes \"text\", \"image_url\" and \"video_url\" parts",
                                                 param: field + ".type")
                }
            }
        case nil:
            throw ServerError.badRequest("'messages[\(index)].content' is required", param: "messages[\(index)].content")
        }
        guard !media.isEmpty else {
            throw ServerError.badRequest("PaliGemma needs an image: add an image_url (or video_url) part to the last user message",
                                         param: "messages[\(index)].content", code: "missing_image")
        }
        let prompt = texts.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }.joined(separator: " ")
        return (prompt, media)
    }

    func completions(_ request: Request, _ context: ServerRequestContext) async throws -> Response {
        let backend = try server.readyBackend()
        var request = request
        let body = try await collect(&request)
        let completion: CompletionRequest = try decode(body)
        let (engineRequest, _) = try await prepare(prompt: completion.prompt,
                                             media: try mediaList(image: completion.image, images: completion.images, video: completion.video),
                                             sampling: completion.sampling, backend: backend,
                                             adapter: try backend.adapter(named: completion.model))
        let id = "cmpl-" + Self.randomID()
        let created = Int(Date().timeIntervalSince1970)
        let model = completion.model ?? backend.modelID
        @Sendable func textCompletion(_ text: String, finish: String?, usage: Usage?) throws -> String {
            try JSONOutput.string(CompletionObject(id: id, object: "text_completion", created: created, model: model,
                                                   choices: [Choice(key: "text", payload: text, finishReason: finish)],
                                                   usage: usage, writesUsage: usage != nil))
        }
        if completion.sampling.stream == true {
            let stream = try submit(engineRequest, to: backend, context: context)
            let includeUsage = completion.sampling.streamOptions?.includeUsage == true
            return sse { writer in
                for await event in stream {
                    switch event {
                    case let .text(piece):
                        guard !piece.isEmpty else { continue }
                        try await writer.event(try textCompletion(piece, finish: nil, usage: nil))
                    case let .finished(summary):
                        if let failure = Self.streamFailure(summary, timeout: server.options.requestTimeout) {
                            try await writer.event(try JSONOutput.string(failure.body))
                        } else {
                            let usage = includeUsage ? Usage(promptTokens: summary.promptTokens, completionTokens: summary.tokens.count) : nil
                            try await writer.event(try textCompletion("", finish: openAIFinishReason(summary.finishReason), usage: usage))
                        }
                    }
                }
                try await writer.event("[DONE]")
            }
        }
        let summary = try await complete(engineRequest, backend: backend, body: request, context: context)
        try check(summary)
        return closing(json(try textCompletion(summary.text, finish: openAIFinishReason(summary.finishReason),
                                               usage: Usage(promptTokens: summary.promptTokens, completionTokens: summary.tokens.count))))
    }

    static func streamFailure(_ summary: EngineSummary, timeout: Double) -> ServerError? {
        switch summary.finishReason {
        case .error: return ServerError(.internalServerError, "generation failed: \(summary.error ?? "unknown error")", code: "generation_failed")
        case .timeout: return ServerError(.gatewayTimeout, "the request ran past the server's \(Int(timeout)) s limit", code: "timeout")
        case .stop, .length, .cancelled: return nil
        }
    }

    // MARK: Typed tasks

    struct TaskFields: Decodable {
        let image: String?
        let images: [String]?
        let video: VideoReference?
        /// The base model's id or a served adapter's name.
        let model: String?
    }

    /// POST /v1/<task>: the task's members (`PaliGemmaTask`'s JSON: lang, question, labels,
    /// label) with "image" (or "images" or "video" for a task answered in text) and the sampling members;
    /// answers the JSON of the CLI's --json.
    func taskEndpoint(_ name: String, _ request: Request, _ context: ServerRequestContext) async throws -> Response {
        let backend = try server.readyBackend()
        var request = request
        let value = try parse(try await collect(&request))
        guard case let .object(members) = value else { throw ServerError.badRequest("the body must be a JSON object") }
        let fields: TaskFields = try decode(value)
        let sampling: SamplingFields = try decode(value)
        if sampling.stream == true {
            throw ServerError.badRequest("the task endpoints do not stream; use /v1/completions with stream", param: "stream")
        }
        let task: PaliGemmaTask
        do {
            task = try JSONValueDecoder().decode(PaliGemmaTask.self, from:
                .object([(key: "task", value: .string(name))] + members.filter { $0.key != "task" && $0.key != "prompt" }))
        } catch PaliGemmaError.input(let message) {
            // `task "detect" needs "labels"`: the field is the last quoted word.
            let field = message.components(separatedBy: "\"").dropLast().last
            throw ServerError.badRequest(message.replacingOccurrences(of: "task \"\(name)\" needs", with: "/v1/\(name) needs"), param: field)
        }
        let media = try mediaList(image: fields.image, images: fields.images, video: fields.video)
        if task.answerFormat != .text, media.count > 1 || fields.video != nil {
            throw ServerError.badRequest("/v1/\(name) takes one image: its boxes are in that image's pixels",
                                         param: fields.video != nil ? "video" : "images", code: "too_many_images")
        }
        let (engineRequest, imageSeconds) = try await prepare(prompt: task.prompt, media: media, sampling: sampling, backend: backend,
                                                              adapter: try backend.adapter(named: fields.model))
        let summary = try await complete(engineRequest, backend: backend, body: request, context: context)
        try check(summary)
        var parsed: TaskResult?
        if task.answerFormat != .text {
            let decoder = task.answerFormat == .masks && TaskOutput.mentionsSegments(summary.text) ? backend.maskDecoder : nil
            parsed = try TaskOutput.parse(text: summary.text, imageWidth: engineRequest.images[0].width,
                                          imageHeight: engineRequest.images[0].height, maskDecoder: decoder)
        }
        var timings = RequestTimings()
        timings.load = backend.pipeline.loadSeconds
        timings.image = imageSeconds
        timings.vision = summary.visionSeconds
        timings.prefill = max(0, summary.firstTokenSeconds - summary.queueSeconds - summary.visionSeconds)
        timings.decode = max(0, summary.totalSeconds - summary.firstTokenSeconds)
        timings.decodeMsPerToken = summary.tokens.count > 1 ? 1000 * timings.decode / Double(summary.tokens.count - 1) : 0
        timings.total = summary.totalSeconds + imageSeconds
        let stopReason: StopReason = summary.finishReason == .length ? .maxTokens : summary.finishReason == .stop ? .stopToken : .cancelled
        return closing(try json(GenerationOutput(text: summary.text, tokens: summary.tokens, promptTokens: summary.promptTokens,
                                                 stopReason: stopReason, timings: timings, prompt: task.prompt, parsed: parsed)))
    }

    // MARK: Bodies and responses

    func collect(_ request: inout Request) async throws -> ByteBuffer {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > server.options.maxBodyBytes {
            throw ServerError.tooLarge("the request body is \(length) bytes, over the server's limit of \(server.options.maxBodyBytes)", code: "body_too_large")
        }
        do {
            return try await request.collectBody(upTo: server.options.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw ServerError.tooLarge("the request body is over the server's limit of \(server.options.maxBodyBytes) bytes", code: "body_too_large")
        }
    }

    func parse(_ buffer: ByteBuffer) throws -> JSONValue {
        do {
            return try JSONParser.parse(Array(buffer.readableBytesView))
        } catch let e as JSONParseError {
            throw ServerError.badRequest("the body is not valid JSON: \(e.message) at byte \(e.offset)", code: "bad_json")
        }
    }

    func decode<T: Decodable>(_ buffer: ByteBuffer) throws -> T { try decode(try parse(buffer)) }

    func decode<T: Decodable>(_ value: JSONValue) throws -> T {
        guard case .object = value else { throw ServerError.badRequest("the body must be a JSON object") }
        do {
            return try JSONValueDecoder().decode(T.self, from: value)
        } catch let e as DecodingError {
            throw ServerError.badRequest(e.clientMessage, param: e.fieldPath)
        }
    }

    func decodeBody<T: Decodable>(_ request: Request) async throws -> T {
        var request = request
        return try decode(try await collect(&request))
    }

    func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        json(try JSONOutput.string(value), status: status)
    }

    func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text + "\n")))
    }

    /// A server-sent-events response; `write` sends `data: ...` events.
    func sse(_ write: @escaping @Sendable (inout SSEWriter) async throws -> Void) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            var events = SSEWriter(writer: writer)
            try await write(&events)
            try await events.writer.finish(nil)
        })
    }

    static func randomID() -> String {
        (0..<12).map { _ in String("0123456789abcdefghijklmnopqrstuvwxyz".randomElement()!) }.joined()
    }
}

/// The request context: Hummingbird's core, plus the connection (to notice a client that left).
struct ServerRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Writes `data: <text>\n\n` events to a response body.
struct SSEWriter {
    var writer: any ResponseBodyWriter

    mutating func event(_ data: String) async throws {
        try await writer.write(ByteBuffer(string: "data: " + data + "\n\n"))
    }
}

/// One image or video of a request, with the field it came from (errors name it).
enum MediaReference {
    case image(String, field: String)
    case video(VideoReference, field: String)

    var field: String {
        switch self {
        case let .image(_, field), let .video(_, field): return field
        }
    }
}
