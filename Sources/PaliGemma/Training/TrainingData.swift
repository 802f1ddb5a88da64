import Foundation
import PaliGemmaJSON

// Training data: JSONL files read and checked line by line, and examples built exactly as
// transformers' `PaliGemmaProcessor(images=image, text=prefix, suffix=suffix)` builds them
// (scripts/make_finetune_data_fixtures.py records what it returns; TrainingDataTests compares).
//
// What the processor does (transformers 5.24, processing_paligemma.py):
//   first sequence   "<image>" x N + "<bos>" + prefix + "\n"        token_type_ids 0
//   second sequence  suffix + "<eos>" (the eos text is appended)    token_type_ids 1
//   labels           input_ids with -100 where token_type_ids == 0 (not shifted)
// The second sequence is tokenized on its own: no `<bos>`, and no "▁" in front (Gemma's
// tokenizer adds no dummy prefix), so `suffix` gives the ids `Tokenizer.encode(suffix)` gives.
// transformers' tokenizer reads `<bos>`, `<eos>`, `<pad>` and `<unk>` typed in the text as those
// tokens; `tokens` does too (`encode(_:matchControlPieces:)`), and `read` refuses such text.
// Otherwise text is tokenized with SentencePiece's rules, as everywhere in this runtime; they
// give transformers' ids except for a literal "▁" (U+2581) beside spaces and runs of spaces longer
// than the tokenizer's longest "▁" run piece, where transformers' converted tokenizer disagrees
// with SentencePiece itself (the fixture lists such pairs).

/// One line of a training JSONL file.
public struct TrainingRecord: Sendable, Equatable {
    /// 1-based line number in the file.
    public let line: Int
    /// The image files, in prompt order (one, or several from "images"), or the video file
    /// (with `video` set); a relative path in the file is relative to the JSONL file's folder.
    public let images: [URL]
    /// For a "video" line: which of its frames are the prompt's images.
    public let video: FrameSampling?
    /// The first (usually the only) image.
    public var image: URL { images[0] }
    /// The prompt: "prefix" as given, or the prompt of the task given in its place.
    public let prefix: String
    /// The target text (may be empty: the example then teaches `<eos>` alone, as transformers does).
    public let suffix: String

    public init(line: Int, image: URL, prefix: String, suffix: String) {
        self.init(line: line, images: [image], prefix: prefix, suffix: suffix)
    }

    public init(line: Int, images: [URL], prefix: String, suffix: String) {
        self.init(line: line, images: images, video: nil, prefix: prefix, suffix: suffix)
    }

    /// A line over a video's frames: `file`, sampled by `sampling`.
    public init(line: Int, video file: URL, sampling: FrameSampling, prefix: String, suffix: String) {
        self.init(line: line, images: [file], video: sampling, prefix: prefix, suffix: suffix)
    }

    init(line: Int, images: [URL], video: FrameSampling?, prefix: String, suffix: String) {
        precondition(!images.isEmpty, "a training record has at least one image")
        self.line = line
        self.images = images
        self.video = video
        self.prefix = prefix
        self.suffix = suffix
    }
}

/// Reading training files and turning their lines into `TrainingExample`s.
///
/// A line is a JSON object, big_vision's fields:
///
///     {"image": "images/cat.jpg", "prefix": "caption en", "suffix": "a cat on a sofa"}
///
/// or, in place of "prefix", a task with the members batch requests use (`PaliGemmaTask`), whose
/// prompt becomes the prefix:
///
///     {"image": "cat.jpg", "task": "detect", "labels": ["cat"], "suffix": "<loc0100><loc0200><loc0700><loc0800> cat"}
///     {"image": "cat.jpg", "task": "answer", "question": "what is this?", "lang": "en", "suffix": "a cat"}
///     {"image": "cat.jpg", "prompt": "caption en", "suffix": "a cat"}     ("prompt" is used as it is)
///     {"images": ["left.jpg", "right.jpg"], "prefix": "answer en which is bigger?", "suffix": "left"}
///     {"video": "clip.mp4", "frames": 16, "stride": 9, "prefix": "caption en", "suffix": "a dog runs"}
///
/// Several images ("images", in order, or a video's frames: "video" with optional "frames",
/// "stride", "start" as `FrameSampling` takes them, 16 / 9 / 0 by default) form one prompt as
/// transformers' processor lays out a list of images: each image's tokens in turn, then `<bos>`.
/// Video frames are decoded by `videoFrames` (set by the `paligemma` command from
/// PaliGemmaVideo; this library does not link FFmpeg).
///
/// Checked, for every line before anything is returned (blank lines are skipped; every bad line
/// is reported, each with its number):
/// - the line is UTF-8 JSON, an object, without repeated keys;
/// - every key is known: "image" or "images", "prefix", "suffix", and the task's "prompt", "task", "lang",
///   "question", "answer", "labels", "label" (so a typo such as "sufix" is caught), each of its type
///   (strings; "labels" a non-empty array of strings);
/// - "image" is given, not empty, and names an existing file (or "images", a non-empty array of
///   such paths, instead);
/// - exactly one of "prefix" and a task ("task" or "prompt"); a task is known, has the members it
///   needs and no member it does not use;
/// - "suffix" is given. An empty suffix is accepted (transformers accepts it: the loss is then on
///   `<eos>` alone), and so is an empty prefix (transformers' layout: image, `<bos>`, "\n");
/// - neither text contains "<image>" (transformers' processor refuses it: the image token count
///   no longer matches) nor `<bos>`, `<eos>`, `<pad>`, `<unk>` (transformers reads them as those
///   tokens, not as text: an `<eos>` in a suffix would teach the model to stop there; the
///   processor appends `<eos>` itself).
/// Images are not decoded here: `example` decodes them, with `PaliGemmaError.input` naming the
/// line and the file when one cannot be.
public enum TrainingData {
    /// Members a line may have.
    static let keys: Set<String> = ["image", "images", "video", "frames", "stride", "start", "prefix", "suffix", "prompt", "task", "lang", "question", "answer", "labels",
                                    "label"]
    /// Members each task reads (besides "task").
    static let taskMembers: [String: Set<String>] = [
        "caption": ["lang"], "describe": ["lang"], "ocr": [], "answer": ["question", "lang"],
        "question": ["answer", "lang"], "detect": ["labels", "label"], "segment": ["label", "labels"],
    ]
    /// Text transformers' processor reads as tokens, not text (PaliGemma's tokenizer's spellings).
    static let reservedSpellings = ["<image>", "<bos>", "<eos>", "<pad>", "<unk>"]
    /// Bad lines listed in one error at most; the rest are counted.
    static let reportedErrors = 20

    /// Reads and checks every line before returning (blank lines skipped). Throws
    /// `PaliGemmaError.io` when the file cannot be read, and one `PaliGemmaError.input` listing
    /// every bad line as "<file>, line <n>: <reason>" (one line each; after 20, a count), or
    /// saying the file holds no example.
    public static func read(jsonl: URL) throws -> [TrainingRecord] {
        var reader = RecordReader(path: jsonl.path, base: jsonl.deletingLastPathComponent())
        try JSONLines.forEachLine(of: jsonl) { reader.add($1, number: $0) }
        return try reader.finished()
    }

    /// `read(jsonl:)` on the file's bytes; `path` names it in errors, relative image paths are
    /// taken from `base`.
    static func read(jsonl bytes: [UInt8], path: String, base: URL) throws -> [TrainingRecord] {
        var reader = RecordReader(path: path, base: base)
        try JSONLines.forEachLine(of: bytes, path: path) { reader.add($1, number: $0) }
        return try reader.finished()
    }

    /// Collects the records and the errors of the lines, in order.
    struct RecordReader {
        let path: String
        let base: URL
        var records: [TrainingRecord] = []
        var errors: [String] = []
        var errorCount = 0

        init(path: String, base: URL) {
            self.path = path
            self.base = base
        }

        mutating func add(_ line: [UInt8], number: Int) {
            guard line.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) else { return }
            do {
                records.append(try record(line, number: number, base: base))
            } catch {
                guard case let .bad(reason) = error else { return }
                errorCount += 1
                if errors.count < reportedErrors { errors.append("\(path), line \(number): \(reason)") }
            }
        }

        func finished() throws -> [TrainingRecord] {
            var errors = errors
            if errorCount > errors.count {
                errors.append("\(path): \(errorCount - errors.count) more bad lines")
            }
            guard errors.isEmpty else { throw PaliGemmaError.input(errors.joined(separator: "\n")) }
            guard !records.isEmpty else {
                throw PaliGemmaError.input("\(path): no training examples (the file has no non-blank line)")
            }
            return records
        }
    }

    /// Ids, labels and prefix length for `prefix` + `suffix`, as transformers'
    /// `PaliGemmaProcessor(text=prefix, suffix=suffix)` builds them for this pipeline's model:
    /// ids `<image>` x N (for each of `images` images), `<bos>`, prefix + "\n", suffix, `<eos>`;
    /// labels the ids with -100 on the first I·N + 1 + |prefix + "\n"| positions (token_type_ids 0, counted by `prefixLength`), not
    /// shifted. `<bos>`, `<eos>`, `<pad>`, `<unk>` typed in the text become those tokens, as in
    /// transformers (`read(jsonl:)` refuses such text); a text holding "<image>", which
    /// transformers refuses, gets the `<image>` id there. See the top of this file for where
    /// transformers' tokenizer and SentencePiece's rules (followed here) disagree.
    public static func tokens(prefix: String, suffix: String, images: Int = 1, pipeline: PaliGemmaPipeline)
        -> (ids: [Int], labels: [Int], prefixLength: Int)
    {
        let tokenizer = pipeline.tokenizer
        let config = pipeline.model.config
        let first = [Int](repeating: config.imageTokenIndex, count: config.numImageTokens * images) + [Int(tokenizer.bosID ?? 2)]
            + tokenizer.encode(prefix + "\n", matchControlPieces: true).map(Int.init)
        let second = tokenizer.encode(suffix, matchControlPieces: true).map(Int.init) + [pipeline.eosID]
        return (first + second, [Int](repeating: -100, count: first.count) + second, first.count)
    }

    /// The whole example: the images decoded and preprocessed as for inference (EXIF orientation
    /// not applied, as Pillow and so transformers do), plus `tokens(...)`. An image that cannot be
    /// decoded throws `PaliGemmaError.input` naming the line and the file.
    public static func example(_ record: TrainingRecord, pipeline: PaliGemmaPipeline) throws -> TrainingExample {
        if let sampling = record.video {
            let frames = try videoFrames(record.images[0], sampling: sampling, line: record.line)
            let t = tokens(prefix: record.prefix, suffix: record.suffix, images: frames.count, pipeline: pipeline)
            let key = "\(record.images[0].path)#\(sampling.count)x\(sampling.stride)@\(sampling.start)#"
            return TrainingExample(images: try frames.map { try pipeline.pixelValues($0) }, ids: t.ids, labels: t.labels,
                                   prefixLength: t.prefixLength, imageKeys: frames.indices.map { key + String($0) })
        }
        return example(record, images: try record.images.map { try pixels(of: $0, line: record.line, pipeline: pipeline) }, pipeline: pipeline)
    }

    /// Decodes a video's frames for training lines: set by whoever links a video decoder (the
    /// `paligemma` command sets it to PaliGemmaVideo's `VideoReader`). nil: video lines fail
    /// with an error saying so.
    public static var videoDecoder: (@Sendable (URL, FrameSampling) throws -> [RGBImage])? {
        get { decoderBox.lock.withLock { decoderBox.decoder } }
        set { decoderBox.lock.withLock { decoderBox.decoder = newValue } }
    }
    private final class DecoderBox: @unchecked Sendable {
        let lock = NSLock()
        var decoder: (@Sendable (URL, FrameSampling) throws -> [RGBImage])?
    }
    private static let decoderBox = DecoderBox()

    static func videoFrames(_ file: URL, sampling: FrameSampling, line: Int) throws -> [RGBImage] {
        guard let decoder = videoDecoder else {
            throw PaliGemmaError.input("line \(line): a video line needs a video decoder (TrainingData.videoDecoder; the paligemma command sets it)")
        }
        do { return try decoder(file, sampling) } catch {
            throw PaliGemmaError.input("line \(line): \((error as? LocalizedError)?.errorDescription ?? "\(error)")")
        }
    }

    /// One image file decoded and preprocessed as `example` does it; the error names the line.
    public static func pixels(of image: URL, line: Int, pipeline: PaliGemmaPipeline) throws -> [Float] {
        do {
            return try pipeline.pixelValues(ImageDecoder.decode(contentsOf: image))
        } catch {
            throw PaliGemmaError.input("line \(line): \(error)")
        }
    }

    /// `pixels(of:line:pipeline:)` for each (line, file), by up to `threads` threads at once, in
    /// order (the first failure by position is thrown).
    public static func pixels(of images: [(line: Int, url: URL)], pipeline: PaliGemmaPipeline, threads: Int) throws -> [[Float]] {
        try parallelMap(images, threads: threads) { try pixels(of: $0.url, line: $0.line, pipeline: pipeline) }
    }

    /// The example with its image's pixels already preprocessed (by `example` for another
    /// record of the same image).
    public static func example(_ record: TrainingRecord, pixels: [Float], pipeline: PaliGemmaPipeline) -> TrainingExample {
        example(record, images: [pixels], pipeline: pipeline)
    }

    /// The example with each of its images' pixels already preprocessed, in order.
    public static func example(_ record: TrainingRecord, images: [[Float]], pipeline: PaliGemmaPipeline) -> TrainingExample {
        let t = tokens(prefix: record.prefix, suffix: record.suffix, images: images.count, pipeline: pipeline)
        return TrainingExample(images: images, ids: t.ids, labels: t.labels, prefixLength: t.prefixLength,
                               imageKeys: record.images.map(\.path))
    }

    /// `example` for each record, built by up to `threads` threads at once (in record order;
    /// the first failing record's error, by position, is thrown).
    public static func examples(_ records: [TrainingRecord], pipeline: PaliGemmaPipeline, threads: Int) throws -> [TrainingExample] {
        try parallelMap(records, threads: threads) { try example($0, pipeline: pipeline) }
    }

    static func parallelMap<T: Sendable, R>(_ items: [T], threads: Int, _ body: @Sendable (T) throws -> R) throws -> [R] {
        let workers = min(max(threads, 1), items.count)
        guard workers > 1 else { return try items.map(body) }
        let results = WorkerSlots<Result<R, Error>>(items.count)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: items.count, by: workers) { results[i] = Result { try body(items[i]) } }
        }
        return try results.values.map { try $0.get() }
    }

    // MARK: One line

    enum LineError: Error { case bad(String) }

    static func record(_ line: [UInt8], number: Int, base: URL) throws(LineError) -> TrainingRecord {
        guard String(validating: line, as: UTF8.self) != nil else { throw .bad("not UTF-8 text") }
        let value: JSONValue
        do { value = try JSONParser.parse(line, rejectDuplicateKeys: true) } catch {
            throw .bad("not JSON: \(error)")
        }
        guard let members = value.objectValue else { throw .bad("not a JSON object (got \(value.typeName))") }
        let unknown = members.map(\.key).filter { !keys.contains($0) }
        if !unknown.isEmpty {
            throw .bad("unknown key\(unknown.count == 1 ? "" : "s") \(unknown.map(jsonQuoted).joined(separator: ", ")) "
                + "(a line has \"image\", \"prefix\" or a task, and \"suffix\")")
        }
        func string(_ key: String) throws(LineError) -> String? {
            guard let v = value[key] else { return nil }
            guard let s = v.stringValue else { throw .bad("\(jsonQuoted(key)) must be a string, got \(v.typeName)") }
            return s
        }
        for (key, v) in members {
            if ["images", "frames", "stride", "start"].contains(key) {
                continue  // checked below
            } else if key != "labels" {
                _ = try string(key)
            } else if let items = v.arrayValue, !items.isEmpty {
                if let item = items.first(where: { $0.stringValue == nil }) {
                    throw .bad("\"labels\" must hold strings, got \(item.typeName)")
                }
            } else {
                throw .bad("\"labels\" must be a non-empty array of strings, got \(v.arrayValue == nil ? v.typeName : "[]")")
            }
        }

        let files: [String]
        let video = try videoSampling(value)
        switch (try string("image"), value["images"]) {
        case _ where video != nil:
            guard value["image"] == nil, value["images"] == nil else { throw .bad("give \"video\" or images, not both") }
            guard let file = try string("video"), !file.isEmpty else { throw .bad("\"video\" is empty") }
            files = [file]
        case (.some, .some): throw .bad("give \"image\" or \"images\", not both")
        case (nil, nil): throw .bad("missing \"image\" (the image file's path), \"images\" (a list of them) or \"video\"")
        case let (image?, nil): files = [image]
        case let (nil, list?):
            guard let items = list.arrayValue, !items.isEmpty else {
                throw .bad("\"images\" must be a non-empty array of file paths, got \(list.arrayValue == nil ? list.typeName : "[]")")
            }
            files = try items.map { item throws(LineError) in
                guard let s = item.stringValue else { throw .bad("\"images\" must hold strings, got \(item.typeName)") }
                return s
            }
        }
        var urls: [URL] = []
        for image in files {
            guard !image.isEmpty else { throw .bad(files.count == 1 && value["image"] != nil ? "\"image\" is empty" : "an image path is empty") }
            let url = (image.hasPrefix("/") ? URL(fileURLWithPath: image) : base.appendingPathComponent(image))
                .standardizedFileURL
            var isDirectory: ObjCBool = false
            let kind = video == nil ? "image" : "video"
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
                throw .bad("\(kind) file \(url.path) does not exist")
            }
            guard !isDirectory.boolValue else { throw .bad("\(kind) \(url.path) is a folder, not a file") }
            urls.append(url)
        }

        let prefix = try prefixText(value)
        guard let suffix = try string("suffix") else { throw .bad("missing \"suffix\" (the target text)") }
        for (name, text) in [("the prefix", prefix), ("\"suffix\"", suffix)] {
            if let s = reservedSpellings.first(where: { text.contains($0) }) {
                throw .bad(s == "<image>"
                    ? "\(name) contains \"<image>\", the image placeholder (transformers' processor refuses it too)"
                    : "\(name) contains \"\(s)\", which transformers reads as the \(s) token, not as text"
                        + (s == "<eos>" ? " (the suffix gets its <eos> added)" : ""))
            }
        }
        return TrainingRecord(line: number, images: urls, video: video, prefix: prefix, suffix: suffix)
    }

    /// A "video" line's sampling ("frames", "stride", "start", each optional), nil for images;
    /// those members without "video" are an error.
    static func videoSampling(_ value: JSONValue) throws(LineError) -> FrameSampling? {
        let members = ["frames", "stride", "start"].filter { value[$0] != nil }
        guard value["video"] != nil else {
            if let m = members.first { throw .bad("\(jsonQuoted(m)) without \"video\"") }
            return nil
        }
        var sampling = FrameSampling()
        for key in ["frames", "stride"] {
            guard let v = value[key] else { continue }
            guard let n = v.intValue else { throw .bad("\(jsonQuoted(key)) must be a whole number, got \(v.typeName)") }
            if key == "frames" { sampling.count = n } else { sampling.stride = n }
        }
        if let v = value["start"] {
            guard case let .number(s) = v else { throw .bad("\"start\" must be a number of seconds, got \(v.typeName)") }
            sampling.start = s
        }
        if let problem = sampling.problem { throw .bad(problem) }
        return sampling
    }

    /// The prefix: "prefix" as given, or the prompt of the task in its place.
    static func prefixText(_ value: JSONValue) throws(LineError) -> String {
        let given = keys.subtracting(["image", "images", "video", "frames", "stride", "start", "prefix", "suffix"]).filter { value[$0] != nil }.sorted()
        if let prefix = value["prefix"]?.stringValue {
            guard given.isEmpty else {
                throw .bad("both \"prefix\" and task members (\(given.map(jsonQuoted).joined(separator: ", "))) given: use one")
            }
            return prefix
        }
        if let prompt = value["prompt"]?.stringValue {
            let others = given.filter { $0 != "prompt" }
            guard others.isEmpty else {
                throw .bad("\"prompt\" is used as it is: \(others.map(jsonQuoted).joined(separator: ", ")) cannot go with it")
            }
            return prompt
        }
        guard let task = value["task"]?.stringValue else {
            if given.isEmpty { throw .bad("needs \"prefix\" (the prompt) or a task (\"task\" or \"prompt\")") }
            throw .bad("\(given.map(jsonQuoted).joined(separator: ", ")) without \"task\"")
        }
        guard let uses = taskMembers[task] else {
            throw .bad("unknown task \(jsonQuoted(task)) (one of \(PaliGemmaTask.names.joined(separator: ", ")))")
        }
        let unused = given.filter { $0 != "task" && !uses.contains($0) }
        guard unused.isEmpty else {
            throw .bad("task \(jsonQuoted(task)) does not use \(unused.map(jsonQuoted).joined(separator: ", "))")
        }
        if value["labels"] != nil && value["label"] != nil { throw .bad("give \"labels\" or \"label\", not both") }
        do {
            return try JSONValueDecoder().decode(PaliGemmaTask.self, from: value).prompt
        } catch {
            throw .bad("\(error)")
        }
    }
}
