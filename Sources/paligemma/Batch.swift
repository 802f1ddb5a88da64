import Foundation
import PaliGemma
import PaliGemmaJSON
import PaliGemmaVideo
#if canImport(Glibc)
import Glibc
#endif

/// `generate --batch requests.jsonl --output results.jsonl`: loads the model once, answers each
/// line, appends one JSON line per request as it completes, keeps going past bad lines (their
/// error is recorded), and on restart skips requests already answered in the output. The next
/// image is decoded and preprocessed on another thread while the model works on the current one.
///
/// Request line: {"image": "path" (relative to the requests file), "prompt": "..."} ("images":
/// ["a", "b", ...] instead of "image" for one prompt over several images, in order; or "video":
/// "clip.mp4" with optional "frames", "stride", "start" as the command line's) or instead of
/// "prompt" a task: {"task": "caption"|"describe"|"ocr"|"answer"|"question"|"detect"|"segment",
/// "lang": "en", "question"/"answer"/"labels"/"label": ...} (read by `PaliGemmaTask`, which also
/// gives the prompt and the error messages); optional "id", "max_tokens",
/// "temperature", "top_k", "top_p", "seed". Result line: the request's "id" (or its line number),
/// "line", "image" (or "images"), "prompt", then text, tokens, prompt_tokens, stop_reason, timings — or "error".
struct BatchRunner {
    let arguments: GenerationArguments
    let input: String
    let output: String

    /// A request's "id" as given (a string or an integer), or its line number.
    enum RequestID: Sendable, Codable {
        case string(String), number(Int)

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .string(s) } else { self = .number(try c.decode(Int.self)) }
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case let .string(s): try c.encode(s)
            case let .number(n): try c.encode(n)
            }
        }
    }

    /// A request line as decoded. Members of the wrong type count as absent (an "id" of another
    /// type gives way to the line number); the task is read from the same object.
    struct RequestLine: Decodable {
        let id: RequestID?
        let image: String?
        /// nil when absent; .failure when present but not a list of strings.
        let images: Result<[String], Error>?
        let video: String?
        let frames: Int?, stride: Int?
        let start: Double?
        let task: Result<PaliGemmaTask, Error>
        let maxTokens: Int?, topK: Int?, seed: Int?
        let temperature: Double?, topP: Double?

        enum CodingKeys: String, CodingKey {
            case id, image, images, video, frames, stride, start, maxTokens = "max_tokens", temperature, topK = "top_k", topP = "top_p", seed
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)  // throws unless the line is an object
            func member<T: Decodable>(_ key: CodingKeys) -> T? { c.decodeIfValid(T.self, forKey: key) }
            id = member(.id)
            image = member(.image)
            images = c.contains(.images) ? Result { try c.decode([String].self, forKey: .images) } : nil
            video = member(.video)
            frames = member(.frames)
            stride = member(.stride)
            start = member(.start)
            task = Result { try PaliGemmaTask(from: decoder) }
            maxTokens = member(.maxTokens)
            temperature = member(.temperature)
            topK = member(.topK)
            topP = member(.topP)
            seed = member(.seed)
        }
    }

    struct Request: Sendable {
        let line: Int
        let key: String
        let id: RequestID
        /// As the line gave them ("image" or "images"), for the result line.
        let image: String?
        let images: [String]?
        let video: String?
        /// The files, resolved against the requests file's folder (the video file alone, for a video).
        let paths: [String]
        /// How a video's frames are chosen (nil for images).
        let sampling: FrameSampling?
        let prompt: String
        let options: GenerationOptions
    }

    /// A parsed request, or the reason its line is unusable.
    enum Entry: Sendable {
        case request(Request)
        case invalid(line: Int, key: String, id: RequestID, error: String)
    }

    func run() {
        do {
            let inputURL = URL(fileURLWithPath: input)
            let base = inputURL.deletingLastPathComponent()
            var entries: [Entry] = []
            try JSONLines.forEachLine(of: inputURL) { number, bytes in
                guard let raw = String(validating: bytes, as: UTF8.self) else {
                    entries.append(.invalid(line: number, key: "id:\(number)", id: .number(number), error: "line \(number): not UTF-8 text"))
                    return
                }
                if !raw.trimmingCharacters(in: .whitespaces).isEmpty { entries.append(parse(raw, line: number, base: base)) }
            }
            let done = try finishedKeys()
            let pending = entries.filter { entry in
                switch entry {
                case let .request(r): return !done.contains(r.key)
                case let .invalid(_, key, _, _): return !done.contains(key)
                }
            }
            let skipped = entries.count - pending.count
            let pipeline = try arguments.loadPipeline()
            let sink = try JSONLinesFile(path: output, append: true)
            let progress = BatchProgress(total: pending.count, skipped: skipped)
            let prefetch = Prefetcher(entries: pending, pipeline: pipeline, applyEXIF: arguments.applyEXIFOrientation)
            var failures = 0
            for _ in pending.indices {
                guard let (entry, pixels) = prefetch.next() else { break }
                switch entry {
                case let .invalid(line, _, id, error):
                    failures += 1
                    try sink.write(ResultLine(id: id, line: line, error: error))
                case let .request(r):
                    let written: ResultLine
                    do {
                        let result = try pipeline.generate(pixels: try pixels.get(), prompt: r.prompt, options: r.options)
                        written = ResultLine(id: r.id, line: r.line, image: r.image, images: r.images, video: r.video,
                                             answer: GenerationOutput(result, prompt: r.prompt))
                    } catch {
                        failures += 1
                        written = ResultLine(id: r.id, line: r.line, image: r.image, images: r.images, video: r.video,
                                             prompt: r.prompt, error: describe(error))
                    }
                    try sink.write(written)
                }
                progress.step()
            }
            progress.finish(failures: failures)
        } catch {
            fail(error)
        }
    }

    /// One line of the results file: the request's id and line, the image and prompt when the
    /// request had them, then the answer's members (`GenerationOutput`, prompt included) or "error".
    struct ResultLine: Encodable {
        let id: RequestID
        let line: Int
        var image: String? = nil
        var images: [String]? = nil
        var video: String? = nil
        var prompt: String? = nil
        var answer: GenerationOutput? = nil
        var error: String? = nil

        enum CodingKeys: String, CodingKey { case id, line, image, images, video, prompt, error }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(line, forKey: .line)
            try c.encodeIfPresent(image, forKey: .image)
            try c.encodeIfPresent(images, forKey: .images)
            try c.encodeIfPresent(video, forKey: .video)
            try c.encodeIfPresent(prompt, forKey: .prompt)
            try c.encodeIfPresent(error, forKey: .error)
            try answer?.encode(to: encoder)  // its members join this object
        }
    }

    /// What resuming needs from a result line: its id (the line number when the id is of another
    /// type), and whether it records an error.
    struct AnsweredLine: Decodable {
        let id: RequestID?
        let failed: Bool

        enum CodingKeys: String, CodingKey { case id, line, error }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            failed = c.contains(.error)
            if c.contains(.id) {
                id = c.decodeIfValid(RequestID.self, forKey: .id) ?? .number(c.decodeIfValid(Int.self, forKey: .line) ?? 0)
            } else {
                id = nil
            }
        }
    }

    /// Keys of requests already answered without error in the output file (lines that are not
    /// JSON objects, such as one cut off by an interrupted run, are passed over).
    func finishedKeys() throws -> Set<String> {
        guard FileManager.default.fileExists(atPath: output) else { return [] }
        let text: String
        do { text = try String(contentsOfFile: output, encoding: .utf8) } catch {
            throw PaliGemmaError.io(path: output, reason: "exists but cannot be read: \(error.localizedDescription)")
        }
        var keys = Set<String>()
        let decoder = JSONDecoder()
        for line in text.split(separator: "\n") {
            guard let answered = try? decoder.decode(AnsweredLine.self, from: Data(line.utf8)),
                  !answered.failed, let id = answered.id else { continue }
            keys.insert(Self.key(id))
        }
        return keys
    }

    static func key(_ id: RequestID) -> String {
        switch id {
        case let .string(s): return "id:" + s
        case let .number(n): return "id:\(n)"
        }
    }

    func parse(_ raw: String, line: Int, base: URL) -> Entry {
        guard let request = try? JSONDecoder().decode(RequestLine.self, from: Data(raw.utf8)) else {
            return .invalid(line: line, key: "id:\(line)", id: .number(line), error: "line \(line): not a JSON object")
        }
        let id = request.id ?? .number(line)
        let key = Self.key(id)
        func bad(_ message: String) -> Entry { .invalid(line: line, key: key, id: id, error: "line \(line): \(message)") }
        let files: [String]
        var sampling: FrameSampling?
        switch (request.image, request.images) {
        case _ where request.video != nil:
            guard request.image == nil, request.images == nil else { return bad("give \"video\" or images, not both") }
            let s = FrameSampling(count: request.frames ?? arguments.frames, stride: request.stride ?? arguments.stride,
                                  start: request.start ?? arguments.start)
            do { try s.validate() } catch { return bad(describe(error)) }
            sampling = s
            files = [request.video ?? ""]
        case (.some, .some): return bad("give \"image\" or \"images\", not both")
        case let (image?, nil): files = [image]
        case let (nil, images?):
            guard let list = try? images.get() else { return bad("\"images\" must be a list of file paths") }
            guard !list.isEmpty else { return bad("\"images\" is empty") }
            files = list
        case (nil, nil): return bad("missing \"image\" (a file path) or \"images\" (a list of them)")
        }
        guard files.allSatisfy({ !$0.isEmpty }) else { return bad("an image path is empty") }
        let paths = files.map { $0.hasPrefix("/") ? $0 : base.appendingPathComponent($0).path }
        let task: PaliGemmaTask
        do { task = try request.task.get() } catch { return bad(describe(error)) }
        var options = arguments.options
        if let v = request.maxTokens { options.maxNewTokens = v }
        if let v = request.temperature { options.sampling.temperature = Float(v) }
        if let v = request.topK { options.sampling.topK = v }
        if let v = request.topP { options.sampling.topP = Float(v) }
        if let v = request.seed, v >= 0 { options.sampling.seed = UInt64(v) }
        if options.maxNewTokens < 1 { return bad("\"max_tokens\" must be at least 1") }
        do { try options.sampling.validate() } catch { return bad(describe(error)) }
        return .request(Request(line: line, key: key, id: id, image: request.image.map { _ in paths[0] },
                                images: request.images == nil ? nil : paths, video: request.video.map { _ in paths[0] },
                                paths: paths, sampling: sampling, prompt: task.prompt, options: options))
    }
}

func describe(_ error: Error) -> String {
    (error as? LocalizedError)?.errorDescription ?? "\(error)"
}

/// Appends JSON lines (`JSONOutput`) to the output file.
/// Decodes and preprocesses images one request ahead, on a background thread.
final class Prefetcher: @unchecked Sendable {
    private let condition = NSCondition()
    private var ready: [(BatchRunner.Entry, Result<[[Float]], Error>)] = []
    private let capacity = 2

    init(entries: [BatchRunner.Entry], pipeline: PaliGemmaPipeline, applyEXIF: Bool) {
        let thread = Thread { [self] in
            for entry in entries {
                var pixels: Result<[[Float]], Error> = .success([])
                if case let .request(r) = entry {
                    pixels = Result {
                        if let sampling = r.sampling {
                            return try VideoReader.frames(path: r.paths[0], sampling: sampling).frames.map(pipeline.pixelValues)
                        }
                        return try r.paths.map { path in
                            let image = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: path),
                                                                options: DecodeOptions(applyEXIFOrientation: applyEXIF))
                            return try pipeline.pixelValues(image)
                        }
                    }
                }
                condition.lock()
                while ready.count >= capacity { condition.wait() }
                ready.append((entry, pixels))
                condition.broadcast()
                condition.unlock()
            }
        }
        thread.start()
    }

    func next() -> (BatchRunner.Entry, Result<[[Float]], Error>)? {
        condition.lock()
        defer { condition.unlock() }
        while ready.isEmpty { condition.wait() }
        let item = ready.removeFirst()
        condition.broadcast()
        return item
    }
}

/// A progress line on stderr: count, percent, rate and time left.
final class BatchProgress {
    let total: Int
    let start = Date()
    var done = 0
    let interactive = isatty(2) != 0

    init(total: Int, skipped: Int) {
        self.total = total
        if skipped > 0 { log("skipping \(skipped) request(s) already answered in the output") }
    }

    func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

    func step() {
        done += 1
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(done) / max(elapsed, 1e-9)
        let eta = Double(total - done) / max(rate, 1e-9)
        let line = String(format: "[%d/%d] %3.0f%%  %.2f req/s  ETA %@", done, total,
                          100 * Double(done) / Double(max(total, 1)), rate, Self.clock(eta))
        if interactive {
            FileHandle.standardError.write(Data(("\r" + line + "   ").utf8))
        } else {
            log(line)
        }
    }

    func finish(failures: Int) {
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
        let elapsed = Date().timeIntervalSince(start)
        log(String(format: "%d request(s) in %.1f s, %d failed", done, elapsed, failures))
    }

    /// A duration for a progress line: 3m05s, or 1h02m from an hour on ("?" when unknown).
    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
