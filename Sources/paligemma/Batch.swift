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
/// Request lines are read by `BatchLine` (the library's, so that they can be fuzzed); members a
/// line leaves out take the command line's values. Result line: the request's "id" (or its line number),
/// "line", "image" (or "images"), "prompt", then text, tokens, prompt_tokens, stop_reason, timings — or "error".
struct BatchRunner {
    let arguments: GenerationArguments
    let input: String
    let output: String

    typealias RequestID = BatchLine.ID
    typealias Entry = BatchLine.Entry

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
                if !raw.trimmingCharacters(in: .whitespaces).isEmpty { entries.append(BatchLine.parse(raw, line: number, base: base, options: arguments.options, sampling: arguments.sampling)) }
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
            guard let answered = try? decoder.decode(BatchLine.Answered.self, from: Data(line.utf8)),
                  !answered.failed, let id = answered.id else { continue }
            keys.insert(id.key)
        }
        return keys
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
