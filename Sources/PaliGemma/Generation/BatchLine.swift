import Foundation
import PaliGemmaJSON

/// One line of a batch requests file (`paligemma generate --batch`): {"image": "path" (relative
/// to the requests file), "prompt": "..."} ("images": ["a", "b", ...] instead of "image" for one
/// prompt over several images, in order; or "video": "clip.mp4" with optional "frames", "stride",
/// "start"), or instead of "prompt" a task: {"task": "caption"|"describe"|"ocr"|"answer"|
/// "question"|"detect"|"segment", "lang": "en", "question"/"answer"/"labels"/"label": ...} (read by
/// `PaliGemmaTask`, which also gives the prompt and the error messages); optional "id",
/// "max_tokens", "temperature", "top_k", "top_p", "seed". A line that cannot be used becomes an
/// `Entry.invalid` with the reason, never an error thrown.
public enum BatchLine {
    /// A request's "id" as given (a string or an integer), or its line number.
    public enum ID: Sendable, Codable, Hashable {
        case string(String), number(Int)

        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .string(s) } else { self = .number(try c.decode(Int.self)) }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case let .string(s): try c.encode(s)
            case let .number(n): try c.encode(n)
            }
        }

        /// The key a result line is matched by when a run resumes.
        public var key: String {
            switch self {
            case let .string(s): return "id:" + s
            case let .number(n): return "id:\(n)"
            }
        }
    }

    /// A request line as decoded. Members of the wrong type count as absent (an "id" of another
    /// type gives way to the line number); the task is read from the same object.
    struct Decoded: Decodable {
        let id: ID?
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

    /// A usable request.
    public struct Request: Sendable {
        public let line: Int
        public let key: String
        public let id: ID
        /// As the line gave them ("image", "images" or "video"), resolved, for the result line.
        public let image: String?
        public let images: [String]?
        public let video: String?
        /// The files, resolved against the requests file's folder (the video file alone, for a video).
        public let paths: [String]
        /// How a video's frames are chosen (nil for images).
        public let sampling: FrameSampling?
        public let prompt: String
        public let options: GenerationOptions
    }

    /// A parsed request, or the reason its line is unusable.
    public enum Entry: Sendable {
        case request(Request)
        case invalid(line: Int, key: String, id: ID, error: String)
    }

    /// Reads line `line` (its text `raw`); relative paths are resolved against `base`, and members
    /// the line leaves out take `options` and `sampling` (the command line's).
    public static func parse(_ raw: String, line: Int, base: URL, options defaults: GenerationOptions,
                             sampling defaultSampling: FrameSampling) -> Entry {
        guard let request = try? JSONDecoder().decode(Decoded.self, from: Data(raw.utf8)) else {
            return .invalid(line: line, key: "id:\(line)", id: .number(line), error: "line \(line): not a JSON object")
        }
        let id = request.id ?? .number(line)
        func bad(_ message: String) -> Entry { .invalid(line: line, key: id.key, id: id, error: "line \(line): \(message)") }
        func describe(_ error: Error) -> String { (error as? LocalizedError)?.errorDescription ?? "\(error)" }
        let files: [String]
        var sampling: FrameSampling?
        switch (request.image, request.images) {
        case _ where request.video != nil:
            guard request.image == nil, request.images == nil else { return bad("give \"video\" or images, not both") }
            let s = FrameSampling(count: request.frames ?? defaultSampling.count, stride: request.stride ?? defaultSampling.stride,
                                  start: request.start ?? defaultSampling.start)
            if let problem = s.problem { return bad(problem) }
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
        var options = defaults
        if let v = request.maxTokens { options.maxNewTokens = v }
        if let v = request.temperature { options.sampling.temperature = Float(v) }
        if let v = request.topK { options.sampling.topK = v }
        if let v = request.topP { options.sampling.topP = Float(v) }
        if let v = request.seed, v >= 0 { options.sampling.seed = UInt64(v) }
        if options.maxNewTokens < 1 { return bad("\"max_tokens\" must be at least 1") }
        do { try options.sampling.validate() } catch { return bad(describe(error)) }
        return .request(Request(line: line, key: id.key, id: id, image: request.image.map { _ in paths[0] },
                                images: request.images == nil ? nil : paths, video: request.video.map { _ in paths[0] },
                                paths: paths, sampling: sampling, prompt: task.prompt, options: options))
    }

    /// What resuming needs from a line of the results file: its id (the line number when the id
    /// is of another type), and whether it records an error.
    public struct Answered: Decodable {
        public let id: ID?
        public let failed: Bool

        enum CodingKeys: String, CodingKey { case id, line, error }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            failed = c.contains(.error)
            if c.contains(.id) {
                id = c.decodeIfValid(ID.self, forKey: .id) ?? .number(c.decodeIfValid(Int.self, forKey: .line) ?? 0)
            } else {
                id = nil
            }
        }
    }
}
