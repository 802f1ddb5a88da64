import Foundation
import Testing
@testable import PaliGemma
import PaliGemmaVideo

/// Training data (`TrainingData`): ids, token types and labels equal to transformers'
/// `PaliGemmaProcessor(text=prefix, suffix=suffix)` for every pair of
/// Fixtures/finetune-data/processor.json (scripts/make_finetune_data_fixtures.py), the pixels of
/// an example equal to the processor's, and every error of `read(jsonl:)` with its line.
@Suite struct TrainingDataTests {
    struct Pair: Decodable {
        let prefix: String
        let suffix: String
        let input_ids: [Int]
        let token_type_ids: [Int]
        let labels: [Int]
        let reason: String?
        let sentencepiece_input_ids: [Int]?
    }

    struct Reference: Decodable {
        let model: String
        let image_seq_length: Int
        let image: String
        let image_pixels_equal: String
        let pairs: [Pair]
        let divergent: [Pair]
    }

    static func reference() throws -> Reference {
        let url = Fixtures.root.appendingPathComponent("finetune-data/processor.json")
        return try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }

    static func pipeline() throws -> PaliGemmaPipeline { try PaliGemmaPipeline(directory: Fixtures.model("e2e-pg1")) }

    static func types(_ prefixLength: Int, _ count: Int) -> [Int] {
        [Int](repeating: 0, count: prefixLength) + [Int](repeating: 1, count: count - prefixLength)
    }

    @Test("ids, token types and labels equal transformers' processor for every pair")
    func processorParity() throws {
        let ref = try Self.reference()
        let pipeline = try Self.pipeline()
        #expect(ref.model == "e2e-pg1" && ref.image_seq_length == pipeline.model.config.numImageTokens)
        #expect(ref.pairs.count >= 35)
        var failures = 0
        for p in ref.pairs {
            let t = TrainingData.tokens(prefix: p.prefix, suffix: p.suffix, pipeline: pipeline)
            let same = t.ids == p.input_ids && t.labels == p.labels && Self.types(t.prefixLength, t.ids.count) == p.token_type_ids
            if !same {
                failures += 1
                Issue.record("""
                    \(p.prefix.debugDescription) + \(p.suffix.debugDescription):
                      ids    \(t.ids)
                      want   \(p.input_ids)
                      labels \(t.labels)
                      want   \(p.labels)
                      prefix length \(t.prefixLength), want \(p.token_type_ids.filter { $0 == 0 }.count)
                    """)
            }
        }
        print("[training data] \(ref.pairs.count - failures)/\(ref.pairs.count) pairs identical to transformers' processor")
    }

    /// Where transformers' tokenizer disagrees with SentencePiece on the text itself, the ids are
    /// SentencePiece's (as at inference) and the layout, token types and labels still follow the processor.
    @Test func divergentPairsFollowSentencePiece() throws {
        let ref = try Self.reference()
        let pipeline = try Self.pipeline()
        #expect(ref.divergent.count == 2)
        for p in ref.divergent {
            let t = TrainingData.tokens(prefix: p.prefix, suffix: p.suffix, pipeline: pipeline)
            #expect(t.ids == p.sentencepiece_input_ids, "\(p.reason ?? "")")
            #expect(t.ids != p.input_ids)
            #expect(t.prefixLength == p.token_type_ids.filter { $0 == 0 }.count)
            #expect(t.labels == t.ids.enumerated().map { $0.offset < t.prefixLength ? -100 : $0.element })
        }
    }

    @Test("the layout: image tokens, <bos>, prompt, \\n, suffix, <eos>; loss on suffix and <eos> only")
    func layout() throws {
        let pipeline = try Self.pipeline()
        let tokenizer = pipeline.tokenizer
        let t = TrainingData.tokens(prefix: "caption en", suffix: "a red circle", pipeline: pipeline)
        #expect(Array(t.ids[..<t.prefixLength]) == pipeline.promptIDs("caption en"))
        #expect(Array(t.ids[t.prefixLength...]) == tokenizer.encode("a red circle").map(Int.init) + [1])
        #expect(t.labels == [Int](repeating: -100, count: t.prefixLength) + Array(t.ids[t.prefixLength...]))
        let empty = TrainingData.tokens(prefix: "", suffix: "", pipeline: pipeline)
        #expect(empty.ids == [Int](repeating: 3152, count: 16) + [2, 11, 1])
        #expect(empty.labels == [Int](repeating: -100, count: 18) + [1] && empty.prefixLength == 18)
        // Control spellings become their tokens, as in transformers.
        let control = TrainingData.tokens(prefix: "x", suffix: "a<eos>", pipeline: pipeline)
        #expect(Array(control.ids.suffix(2)) == [1, 1])
    }

    // MARK: Files

    /// A temporary folder with an image ("img.png", "sub/scene.jpg") and a folder ("dir").
    static func folder() throws -> URL {
        let dir = try temporaryDirectory()
        let images = Fixtures.root.appendingPathComponent("e2e/images")
        try FileManager.default.copyItem(at: images.appendingPathComponent("scene.png"), to: dir.appendingPathComponent("img.png"))
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: images.appendingPathComponent("scene.jpg"),
                                         to: dir.appendingPathComponent("sub/scene.jpg"))
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("dir"), withIntermediateDirectories: true)
        return dir
    }

    static func write(_ text: String, in dir: URL, name: String = "train.jsonl") throws -> URL {
        let url = dir.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    /// The message of the `PaliGemmaError.input` that reading `url` throws.
    static func readError(_ url: URL) -> String? {
        do {
            let records = try TrainingData.read(jsonl: url)
            Issue.record("\(url.lastPathComponent) read as \(records)")
        } catch let PaliGemmaError.input(message) {
            return message
        } catch {
            Issue.record("\(error) is not PaliGemmaError.input")
        }
        return nil
    }

    @Test func readsBothFormsAndResolvesPaths() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let absolute = dir.appendingPathComponent("img.png").path
        let lines = [
            #"{"image": "img.png", "prefix": "caption en", "suffix": "a red circle"}"#,
            "",
            "   \t",
            #"{"suffix": "<loc0001><loc0002><loc0003><loc0004> cat", "task": "detect", "labels": ["cat", "dog"], "image": "sub/scene.jpg"}"#,
            #"{"image": "./sub/../img.png", "task": "answer", "question": "what is it?", "lang": "de", "suffix": ""}"#,
            #"{"image": "\#(absolute)", "prompt": "caption es", "suffix": "un círculo"}"#,
            #"{"image": "img.png", "task": "caption", "suffix": "x"}"#,
            #"{"image": "img.png", "task": "segment", "labels": ["cat"], "suffix": "x"}"#,
            #"{"image": "img.png", "task": "detect", "label": "cat", "suffix": "x"}"#,
            #"{"image": "img.png", "task": "ocr", "suffix": "x"}"#,
            #"{"image": "img.png", "task": "question", "answer": "a cat", "suffix": "x"}"#,
            #"{"image": "img.png", "task": "describe", "lang": "fr", "suffix": "x"}"#,
            #"{"image": "img.png", "prefix": "", "suffix": "x"}"#,
            #"{"images": ["sub/scene.jpg", "img.png"], "prefix": "answer en which?", "suffix": "x"}"#,
            #"{"video": "img.png", "frames": 2, "stride": 3, "start": 0.5, "prefix": "caption en", "suffix": "x"}"#,
        ]
        // CRLF line ends and a byte order mark are accepted; no newline at the end either.
        let url = try Self.write("\u{FEFF}" + lines.joined(separator: "\r\n"), in: dir)
        let records = try TrainingData.read(jsonl: url)
        let img = dir.appendingPathComponent("img.png").standardizedFileURL
        let scene = dir.appendingPathComponent("sub/scene.jpg").standardizedFileURL
        #expect(records == [
            TrainingRecord(line: 1, image: img, prefix: "caption en", suffix: "a red circle"),
            TrainingRecord(line: 4, image: scene, prefix: "detect cat ; dog", suffix: "<loc0001><loc0002><loc0003><loc0004> cat"),
            TrainingRecord(line: 5, image: img, prefix: "answer de what is it?", suffix: ""),
            TrainingRecord(line: 6, image: img, prefix: "caption es", suffix: "un círculo"),
            TrainingRecord(line: 7, image: img, prefix: "caption en", suffix: "x"),
            TrainingRecord(line: 8, image: img, prefix: "segment cat", suffix: "x"),
            TrainingRecord(line: 9, image: img, prefix: "detect cat", suffix: "x"),
            TrainingRecord(line: 10, image: img, prefix: "ocr", suffix: "x"),
            TrainingRecord(line: 11, image: img, prefix: "question en a cat", suffix: "x"),
            TrainingRecord(line: 12, image: img, prefix: "describe fr", suffix: "x"),
            TrainingRecord(line: 13, image: img, prefix: "", suffix: "x"),
            TrainingRecord(line: 14, images: [scene, img], prefix: "answer en which?", suffix: "x"),
            TrainingRecord(line: 15, video: img, sampling: FrameSampling(count: 2, stride: 3, start: 0.5), prefix: "caption en", suffix: "x"),
        ])
    }

    @Test("an example: the processor's pixels and ids, from a prefix line and from a task line")
    func exampleEqualsProcessor() throws {
        let ref = try Self.reference()
        let pipeline = try Self.pipeline()
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try Self.write("""
            {"image": "sub/scene.jpg", "prefix": "caption en", "suffix": "a red circle"}
            {"image": "sub/scene.jpg", "task": "detect", "labels": ["cat", "dog"], "suffix": "<loc0001><loc0002><loc0003><loc0004> cat ; <loc0005><loc0006><loc0007><loc0008> dog"}
            """, in: dir)
        let pixels = try SafetensorsFile(path: Fixtures.root.appendingPathComponent(ref.image_pixels_equal).path)
            .tensor("pixel_values").floats()
        for record in try TrainingData.read(jsonl: url) {
            let example = try TrainingData.example(record, pipeline: pipeline)
            let pair = try #require(ref.pairs.first { $0.prefix == record.prefix && $0.suffix == record.suffix })
            let (dp, _) = maxAbsDiff(example.pixels, pixels)
            #expect(dp <= 1e-6, "line \(record.line): pixels max |diff| \(dp)")
            #expect(example.ids == pair.input_ids && example.labels == pair.labels)
            #expect(Self.types(example.prefixLength, example.ids.count) == pair.token_type_ids)
        }
    }

    @Test("a video line: its sampled frames (PaliGemmaVideo's) become the example's images, in order")
    func videoExample() throws {
        let pipeline = try Self.pipeline()
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = Fixtures.root.appendingPathComponent("../../PaliGemmaVideoTests/Fixtures/h264.mp4").standardized
        try FileManager.default.copyItem(at: clip, to: dir.appendingPathComponent("clip.mp4"))
        let url = try Self.write(#"{"video": "clip.mp4", "frames": 4, "stride": 9, "prefix": "caption en", "suffix": "a square"}"#, in: dir)
        let record = try #require(try TrainingData.read(jsonl: url).first)
        TrainingData.videoDecoder = { file, sampling in try VideoReader.frames(path: file.path, sampling: sampling).frames }
        let example = try TrainingData.example(record, pipeline: pipeline)
        let frames = try VideoReader.frames(path: clip.path, sampling: FrameSampling(count: 4, stride: 9)).frames
        #expect(example.images.count == 4)
        #expect(example.images == (try frames.map { try pipeline.pixelValues($0) }))
        let n = pipeline.model.config.numImageTokens
        #expect(example.ids.prefix(4 * n).allSatisfy { $0 == pipeline.model.config.imageTokenIndex })
        #expect(example.ids[4 * n] == 2)
        #expect(Set(example.imageKeys.compactMap { $0 }).count == 4)
        // A file the decoder cannot read: the error names the line and the file.
        try Data("not a video".utf8).write(to: dir.appendingPathComponent("bad.mp4"))
        let bad = try Self.write("\n" + #"{"video": "bad.mp4", "prefix": "caption en", "suffix": "x"}"#, in: dir, name: "bad.jsonl")
        let badRecord = try #require(try TrainingData.read(jsonl: bad).first)
        var message = ""
        do { _ = try TrainingData.example(badRecord, pipeline: pipeline) } catch let PaliGemmaError.input(m) { message = m }
        #expect(message.hasPrefix("line 2: ") && message.contains("bad.mp4: not a readable video file"), "\(message)")
    }

    @Test func exampleNamesTheLineOfAnImageThatCannotBeDecoded() throws {
        let pipeline = try Self.pipeline()
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("not an image".utf8).write(to: dir.appendingPathComponent("bad.png"))
        let url = try Self.write("\n\n" + #"{"image": "bad.png", "prefix": "p", "suffix": "s"}"#, in: dir)
        let record = try #require(try TrainingData.read(jsonl: url).first)
        #expect(record.line == 3)
        #expect(throws: PaliGemmaError.input("line 3: \(dir.appendingPathComponent("bad.png").path): unsupported image: "
            + "not a JPEG, PNG or PNM file (first bytes 6e 6f 74 20 61 6e 20 69)")) {
            try TrainingData.example(record, pipeline: pipeline)
        }
    }

    /// Every error of `read(jsonl:)`: the bad line is line 3, after a good line and a blank line.
    @Test(arguments: [
        ("oops", "not JSON: expected a value at byte 0"),
        ("null", "not a JSON object (got null)"),
        (#"{"image": "img.png", "prefix": "p", "suffix": "s"} x"#, "not JSON: expected end of input after the top-level value at byte 51"),
        (#"{"image": "img.png", "prefix": "p", "suffix": "s", "suffix": "t"}"#, "not JSON: duplicate key 'suffix' at byte 51"),
        ("[1, 2]", "not a JSON object (got an array)"),
        (#""caption""#, "not a JSON object (got a string)"),
        (#"{"image": "img.png", "prefix": "p", "sufix": "s"}"#,
         #"unknown key "sufix" (a line has "image", "prefix" or a task, and "suffix")"#),
        (#"{"image": "img.png", "prefix": "p", "suffix": "s", "id": 3, "weight": 1}"#,
         #"unknown keys "id", "weight" (a line has "image", "prefix" or a task, and "suffix")"#),
        (#"{"prefix": "p", "suffix": "s"}"#, #"missing "image" (the image file's path), "images" (a list of them) or "video""#),
        (#"{"video": "img.png", "image": "img.png", "prefix": "p", "suffix": "s"}"#, #"give "video" or images, not both"#),
        (#"{"image": "img.png", "frames": 4, "prefix": "p", "suffix": "s"}"#, #""frames" without "video""#),
        (#"{"video": "clip.mp4", "prefix": "p", "suffix": "s"}"#, "video file DIR/clip.mp4 does not exist"),
        (#"{"video": "img.png", "frames": 0, "prefix": "p", "suffix": "s"}"#, "the frame count must be 1 to 4096 (got 0)"),
        (#"{"video": "img.png", "stride": 1.5, "prefix": "p", "suffix": "s"}"#, #""stride" must be a whole number, got a number"#),
        (#"{"video": "img.png", "start": "1s", "prefix": "p", "suffix": "s"}"#, #""start" must be a number of seconds, got a string"#),
        (#"{"video": 3, "prefix": "p", "suffix": "s"}"#, #""video" must be a string, got a number"#),
        (#"{"image": "img.png", "images": ["img.png"], "prefix": "p", "suffix": "s"}"#, #"give "image" or "images", not both"#),
        (#"{"images": [], "prefix": "p", "suffix": "s"}"#, #""images" must be a non-empty array of file paths, got []"#),
        (#"{"images": "img.png", "prefix": "p", "suffix": "s"}"#, #""images" must be a non-empty array of file paths, got a string"#),
        (#"{"images": ["img.png", 2], "prefix": "p", "suffix": "s"}"#, #""images" must hold strings, got a number"#),
        (#"{"images": ["img.png", ""], "prefix": "p", "suffix": "s"}"#, "an image path is empty"),
        (#"{"images": ["img.png", "nope.png"], "prefix": "p", "suffix": "s"}"#, "image file DIR/nope.png does not exist"),
        (#"{"image": 3, "prefix": "p", "suffix": "s"}"#, #""image" must be a string, got a number"#),
        (#"{"image": "", "prefix": "p", "suffix": "s"}"#, #""image" is empty"#),
        (#"{"image": "dir", "prefix": "p", "suffix": "s"}"#, "image DIR/dir is a folder, not a file"),
        (#"{"image": "nope.png", "prefix": "p", "suffix": "s"}"#, "image file DIR/nope.png does not exist"),
        (#"{"image": "img.png", "suffix": "s"}"#, #"needs "prefix" (the prompt) or a task ("task" or "prompt")"#),
        (#"{"image": "img.png", "prefix": null, "suffix": "s"}"#, #""prefix" must be a string, got null"#),
        (#"{"image": "img.png", "prefix": "p", "task": "ocr", "suffix": "s"}"#,
         #"both "prefix" and task members ("task") given: use one"#),
        (#"{"image": "img.png", "prompt": "p", "task": "ocr", "suffix": "s"}"#, #""prompt" is used as it is: "task" cannot go with it"#),
        (#"{"image": "img.png", "lang": "de", "suffix": "s"}"#, #""lang" without "task""#),
        (#"{"image": "img.png", "task": "caption", "question": "why?", "suffix": "s"}"#,
         #"task "caption" does not use "question""#),
        (#"{"image": "img.png", "task": "count", "suffix": "s"}"#,
         #"unknown task "count" (one of caption, describe, ocr, answer, question, detect, segment)"#),
        (#"{"image": "img.png", "task": "detect", "suffix": "s"}"#, #"task "detect" needs "labels""#),
        (#"{"image": "img.png", "task": "answer", "suffix": "s"}"#, #"task "answer" needs "question""#),
        (#"{"image": "img.png", "task": "detect", "labels": ["a"], "label": "b", "suffix": "s"}"#,
         #"give "labels" or "label", not both"#),
        (#"{"image": "img.png", "task": "detect", "labels": [], "suffix": "s"}"#, #""labels" must be a non-empty array of strings, got []"#),
        (#"{"image": "img.png", "task": "detect", "labels": "cat", "suffix": "s"}"#,
         #""labels" must be a non-empty array of strings, got a string"#),
        (#"{"image": "img.png", "task": "detect", "labels": ["cat", 2], "suffix": "s"}"#, #""labels" must hold strings, got a number"#),
        (#"{"image": "img.png", "prefix": "p"}"#, #"missing "suffix" (the target text)"#),
        (#"{"image": "img.png", "prefix": "p", "suffix": ["s"]}"#, #""suffix" must be a string, got an array"#),
        (#"{"image": "img.png", "prefix": "p", "suffix": "a cat<eos>"}"#,
         #""suffix" contains "<eos>", which transformers reads as the <eos> token, not as text (the suffix gets its <eos> added)"#),
        (#"{"image": "img.png", "prefix": "<bos>caption", "suffix": "s"}"#,
         #"the prefix contains "<bos>", which transformers reads as the <bos> token, not as text"#),
        (#"{"image": "img.png", "task": "answer", "question": "<pad>?", "suffix": "s"}"#,
         #"the prefix contains "<pad>", which transformers reads as the <pad> token, not as text"#),
        (#"{"image": "img.png", "prefix": "p", "suffix": "<unk>"}"#,
         #""suffix" contains "<unk>", which transformers reads as the <unk> token, not as text"#),
        (#"{"image": "img.png", "prefix": "<image>caption en", "suffix": "s"}"#,
         #"the prefix contains "<image>", the image placeholder (transformers' processor refuses it too)"#),
        (#"{"image": "img.png", "prefix": "p", "suffix": "a <image>"}"#,
         #""suffix" contains "<image>", the image placeholder (transformers' processor refuses it too)"#),
    ])
    func readError(_ line: String, _ reason: String) throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = #"{"image": "img.png", "prefix": "caption en", "suffix": "a cat"}"#
        let url = try Self.write([good, "", line, good].joined(separator: "\n") + "\n", in: dir)
        let want = "\(url.path), line 3: " + reason.replacingOccurrences(of: "DIR", with: dir.standardizedFileURL.path)
        #expect(Self.readError(url) == want)
    }

    @Test func readErrorsThatAreNotJSON() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("train.jsonl")
        try Data([0x0A, 0x7B, 0x22, 0xFF, 0x22, 0x7D, 0x0A]).write(to: url)  // line 2: {"\xFF"}
        #expect(Self.readError(url) == "\(url.path), line 2: not UTF-8 text")
        _ = try Self.write("\n  \n\r\n", in: dir)
        #expect(Self.readError(url) == "\(url.path): no training examples (the file has no non-blank line)")
        _ = try Self.write("", in: dir)
        #expect(Self.readError(url) == "\(url.path): no training examples (the file has no non-blank line)")
        let missing = dir.appendingPathComponent("missing.jsonl")
        #expect(throws: PaliGemmaError.self) { try TrainingData.read(jsonl: missing) }
        do { _ = try TrainingData.read(jsonl: missing) } catch let PaliGemmaError.io(path, _) { #expect(path == missing.path) }
    }

    /// Every bad line is listed with its number (the first 20, then a count), and nothing is returned.
    @Test func everyBadLineIsListed() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = #"{"image": "img.png", "prefix": "caption en", "suffix": "a cat"}"#
        var lines = [good, #"{"image": "img.png", "prefix": "p", "sufix": "s"}"#, good, "", "oops", good]
        var url = try Self.write(lines.joined(separator: "\n"), in: dir)
        #expect(Self.readError(url) == """
            \(url.path), line 2: unknown key "sufix" (a line has "image", "prefix" or a task, and "suffix")
            \(url.path), line 5: not JSON: expected a value at byte 0
            """)
        lines = [good] + [String](repeating: "{}", count: 25)
        url = try Self.write(lines.joined(separator: "\n"), in: dir, name: "many.jsonl")
        let message = Self.readError(url) ?? ""
        let rows = message.split(separator: "\n").map(String.init)
        #expect(rows.count == 21)
        #expect(rows.first == "\(url.path), line 2: missing \"image\" (the image file's path), \"images\" (a list of them) or \"video\"")
        #expect(rows[19] == "\(url.path), line 21: missing \"image\" (the image file's path), \"images\" (a list of them) or \"video\"")
        #expect(rows.last == "\(url.path): 5 more bad lines")
    }
}
