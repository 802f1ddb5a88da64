import Foundation
import Testing
@testable import PaliGemma
import PaliGemmaVideo

/// Image file + prompt in, answer out, against transformers' PaliGemmaProcessor + generate()
/// (scripts/make_e2e_fixtures.py): the library pipeline and the `paligemma` command line.
struct EndToEndTests {
    struct Case {
        let name: String
        let model: URL
        /// One or several images, in order.
        let images: [URL]
        var image: URL { images[0] }
        let prompt: String
        let text: String
        let inputIDs: [Int]
        let pixels: [Float]
        /// Generated ids without a final stop token.
        let tokens: [Int]
        let logits: [Float]
        let steps: Int

        init(_ name: String) throws {
            self.name = name
            let ref = try SafetensorsFile(path: Fixtures.root.appendingPathComponent("e2e/\(name).safetensors").path)
            model = Fixtures.model(ref.metadata["model"] ?? "")
            images = (ref.metadata["image"] ?? "").split(separator: ",").map {
                Fixtures.root.appendingPathComponent("e2e/images/\($0)")
            }
            prompt = ref.metadata["prompt"] ?? ""
            text = ref.metadata["text"] ?? ""
            inputIDs = try ref.tensor("input_ids").ints()
            pixels = try ref.tensor("pixel_values").floats()
            let generated = try ref.tensor("generated_ids").ints()
            tokens = generated.last == 1 ? Array(generated.dropLast()) : generated
            logits = try ref.tensor("logits").floats()
            steps = generated.count
        }
    }

    /// One image each, then two and three images in one prompt (PaliGemma 1 and 2).
    static let cases = ["pg1-caption", "pg1-detect", "pg2-answer", "pg2-ocr", "pg1-two-images", "pg2-three-images"]

    @Test("pipeline: prompt ids, pixels, tokens, text and logits equal transformers'", arguments: cases)
    func pipeline(name: String) throws {
        let c = try Case(name)
        let pipeline = try PaliGemmaPipeline(directory: c.model)
        #expect(pipeline.promptIDs(c.prompt, images: c.images.count) == c.inputIDs)
        let images = try c.images.map { try ImageDecoder.decode(contentsOf: $0) }
        let pixels = try images.flatMap { try pipeline.pixelValues($0) }
        let (dp, _) = maxAbsDiff(pixels, c.pixels)
        var streamed = ""
        let result = try pipeline.generate(images: images, prompt: c.prompt, options: GenerationOptions(maxNewTokens: 10),
                                           keepLogits: true) { streamed += $0; return .continue }
        let (dl, at) = maxAbsDiff(result.stepLogits?.flatMap { $0 } ?? [], c.logits)
        print("[\(name)] pixels max |diff| \(dp); step logits max |diff| \(dl) at \(at); text \(result.text.debugDescription)")
        #expect(dp <= 1e-6)
        #expect(dl <= 1e-4)
        #expect(result.tokens == c.tokens)
        #expect(result.text == c.text)
        #expect(streamed == result.text)
    }

    // MARK: The command line

    static var binary: URL {
        let candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                          Bundle.main.bundleURL.deletingLastPathComponent(), Bundle.main.bundleURL,
                          Fixtures.root.appendingPathComponent("../../../.build/debug").standardized]
        for dir in candidates where FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("paligemma").path) {
            return dir.appendingPathComponent("paligemma")
        }
        return candidates[0].appendingPathComponent("paligemma")
    }

    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs the command line with exact products (the parity being checked) unless `environment`
    /// says otherwise; the variables named in `removing` are left unset.
    static func run(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:],
                    removing: Set<String> = []) throws -> Run {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment
            .merging(["PALIGEMMA_PRECISION": "exact"]) { $1 }.merging(environment) { $1 }
            .filter { !removing.contains($0.key) }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                   stderr: String(decoding: e, as: UTF8.self))
    }

    static func json(_ s: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any]) ?? [:]
    }

    @Test("paligemma generate --json --dump equals transformers' greedy run", arguments: cases)
    func cliGenerate(name: String) throws {
        let c = try Case(name)
        let dump = try temporaryDirectory().appendingPathComponent("dump.safetensors")
        let r = try Self.run(["generate", "--model", c.model.path] + c.images.flatMap { ["--image", $0.path] }
                             + ["--prompt", c.prompt, "--max-tokens", "10", "--json", "--dump", dump.path])
        #expect(r.status == 0, "\(r.stderr)")
        let object = Self.json(r.stdout)
        #expect(object["tokens"] as? [Int] == c.tokens)
        #expect(object["text"] as? String == c.text)
        #expect(object["prompt_tokens"] as? Int == c.inputIDs.count)
        #expect((object["timings"] as? [String: Any])?["prefill_s"] != nil)
        let file = try SafetensorsFile(path: dump.path)
        #expect(try file.tensor("input_ids").ints() == c.inputIDs)
        #expect(try file.tensor("input_ids").dtype == .int64)
        #expect(try file.tensor("pixel_values").shape == [c.images.count, 3, 56, 56])
        let (dp, _) = maxAbsDiff(try file.tensor("pixel_values").floats(), c.pixels)
        let logits = try file.tensor("logits")
        #expect(logits.shape == [c.steps, 3168])
        let (dl, _) = maxAbsDiff(logits.floats(), c.logits)
        print("[\(name)] cli: pixels |diff| \(dp), logits |diff| \(dl)")
        #expect(dp <= 1e-6 && dl <= 1e-4)
    }

    @Test("--precision fast (and PALIGEMMA_PRECISION=fast) generates; its logits stay near transformers' float32 ones")
    func cliFastPrecision() throws {
        let c = try Case("pg1-caption")
        let base = ["generate", "--model", c.model.path, "--image", c.image.path, "--prompt", c.prompt, "--max-tokens", "10", "--json"]
        let dump = try temporaryDirectory().appendingPathComponent("dump.safetensors")
        let r = try Self.run(base + ["--precision", "fast", "--dump", dump.path])
        #expect(r.status == 0, "\(r.stderr)")
        let viaEnvironment = try Self.run(base, environment: ["PALIGEMMA_PRECISION": "fast"])
        #expect(Self.json(viaEnvironment.stdout)["tokens"] as? [Int] == Self.json(r.stdout)["tokens"] as? [Int])
        // Where this CPU has no fast kernel, fast is exact; with one, the bf16 rounding of the
        // products moves these logits (magnitude ~5) by a few hundredths. This tiny random model's
        // top logits can be closer than that (0.02 apart at step 5), so fast may pick another
        // token there, as transformers' bf16 run may: step i's logits depend only on the tokens
        // before it, so the steps up to and including the first different token are compared.
        let tokens = Self.json(r.stdout)["tokens"] as? [Int] ?? []
        let same = zip(tokens, c.tokens).prefix { $0 == $1 }.count
        let steps = min(same + 1, c.steps), vocab = c.logits.count / c.steps
        let logits = try SafetensorsFile(path: dump.path).tensor("logits").floats()
        let (dl, _) = maxAbsDiff(Array(logits[0..<(steps * vocab)]), Array(c.logits[0..<(steps * vocab)]))
        print("cli --precision fast (\(Kernels.fastKernelInUse.name)): tokens \(tokens), transformers \(c.tokens); first \(steps) steps' logits |diff| \(dl)")
        #expect(same >= 1 && dl <= ModelParityTests.nativeBF16)
        let bad = try Self.run(base + ["--precision", "half"])
        #expect(bad.status != 0 && bad.stderr.contains("precision"), "\(bad.stderr)")
    }

    @Test("with neither --precision nor PALIGEMMA_PRECISION, the command line is fast wherever a bf16 kernel exists (AMX or AVX512-BF16), else exact")
    func defaultPrecision() throws {
        let model = Fixtures.model("pg1-f32").path
        let arguments = ["bench", "--model", model, "--new-tokens", "2", "--prompt-tokens", "2", "--json"]
        let r = try Self.run(arguments, removing: ["PALIGEMMA_PRECISION"])
        #expect(r.status == 0, "\(r.stderr)")
        let expected = Kernels.fastKernelInUse == .none ? "exact" : "fast"
        print("default precision with fast kernel \(Kernels.fastKernelInUse.name): \(Self.json(r.stdout)["precision"] ?? "none")")
        #expect(Self.json(r.stdout)["precision"] as? String == expected)
        // Without any bf16 kernel (features switched off for the process) the default is exact.
        let plain = try Self.run(arguments, environment: ["PALIGEMMA_DISABLE_FEATURES": "avx512-bf16,amx-bf16"],
                                 removing: ["PALIGEMMA_PRECISION"])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(Self.json(plain.stdout)["precision"] as? String == "exact")
    }

    @Test func streamingEqualsJSONAndStdinEqualsFile() throws {
        let c = try Case("pg2-answer")
        let base = ["--model", c.model.path, "--max-tokens", "10"]
        let streamed = try Self.run(["generate", "--image", c.image.path, "--prompt", c.prompt] + base)
        #expect(streamed.status == 0, "\(streamed.stderr)")
        #expect(streamed.stdout == c.text + "\n")
        let stdin = try Self.run(["generate", "--image", "-", "--prompt", c.prompt, "--json"] + base,
                                 stdin: try Data(contentsOf: c.image))
        #expect(Self.json(stdin.stdout)["text"] as? String == c.text)
        let shortcut = try Self.run(["answer", "--image", c.image.path, "--json", "what is in the image?"] + base)
        #expect(Self.json(shortcut.stdout)["tokens"] as? [Int] == c.tokens)
        let caption = try Case("pg1-caption")
        let short = try Self.run(["caption", "--model", caption.model.path, "--image", caption.image.path, "--max-tokens", "10", "--json"])
        #expect(Self.json(short.stdout)["tokens"] as? [Int] == caption.tokens)
    }

    @Test func seededSamplingIsReproducible() throws {
        let c = try Case("pg1-detect")
        let args = ["generate", "--model", c.model.path, "--image", c.image.path, "--prompt", c.prompt, "--max-tokens", "10",
                    "--temperature", "1.2", "--top-k", "40", "--top-p", "0.9", "--json"]
        let a = try Self.run(args + ["--seed", "5"]), b = try Self.run(args + ["--seed", "5"]), d = try Self.run(args + ["--seed", "6"])
        let ta = Self.json(a.stdout)["tokens"] as? [Int], tb = Self.json(b.stdout)["tokens"] as? [Int]
        #expect(ta != nil && ta == tb)
        #expect(ta != Self.json(d.stdout)["tokens"] as? [Int])
    }

    @Test func errorsGiveOneLineAndDistinctCodes() throws {
        let c = try Case("pg1-caption")
        let missingImage = try Self.run(["generate", "--model", c.model.path, "--image", "/no/such.jpg", "--prompt", "x"])
        #expect(missingImage.status == 65)
        #expect(missingImage.stderr.contains("/no/such.jpg") && missingImage.stderr.split(separator: "\n").count == 1)
        let notImage = try Self.run(["generate", "--model", c.model.path, "--image", c.model.appendingPathComponent("config.json").path, "--prompt", "x"])
        #expect(notImage.status == 65, "\(notImage.stderr)")
        let badModel = try Self.run(["generate", "--model", "/no/such/model", "--image", c.image.path, "--prompt", "x"])
        #expect(badModel.status == 66 && badModel.stderr.contains("/no/such/model"))
        let usage = try Self.run(["generate", "--model", c.model.path, "--image", c.image.path])
        #expect(usage.status == 64)
        let tooLong = try Self.run(["generate", "--model", c.model.path, "--image", c.image.path, "--prompt", "x", "--max-tokens", "9000"])
        #expect(tooLong.status == 65 && tooLong.stderr.contains("8192"), "\(tooLong.stderr)")
        // Several images: standard input only once; boxes need one image; the positions bound the count.
        let twoStdin = try Self.run(["generate", "--model", c.model.path, "--image", "-", "--image", "-", "--prompt", "x"])
        #expect(twoStdin.status == 64 && twoStdin.stderr.contains("only one --image can be -"), "\(twoStdin.stderr)")
        let twoDetect = try Self.run(["detect", "--model", c.model.path, "--image", c.image.path, "--image", c.image.path, "cat"])
        #expect(twoDetect.status == 64 && twoDetect.stderr.contains("give one --image"), "\(twoDetect.stderr)")
        let many = try Self.run(["generate", "--model", c.model.path, "--prompt", "x"]
                                + Array(repeating: ["--image", c.image.path], count: 520).flatMap { $0 })
        #expect(many.status == 65 && many.stderr.contains("520 images") && many.stderr.contains("8192"), "\(many.stderr)")
    }

    @Test func batchRunsResumesAndRecordsErrors() throws {
        let dir = try temporaryDirectory()
        let images = Fixtures.root.appendingPathComponent("e2e/images")
        for name in ["scene.jpg", "scene.png", "wide.png"] {
            try FileManager.default.copyItem(at: images.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        let requests = dir.appendingPathComponent("requests.jsonl")
        let lines = [
            #"{"id": "a", "image": "scene.jpg", "prompt": "caption en"}"#,
            #"{"image": "scene.png", "task": "detect", "labels": ["cat", "dog"]}"#,
            #"{"id": "missing", "image": "nope.jpg", "prompt": "caption en"}"#,
            #"not json"#,
            #"{"id": 7, "image": "wide.png", "task": "ocr", "max_tokens": 3}"#,
            #"{"id": "two", "images": ["scene.jpg", "wide.png"], "prompt": "answer en which image has text?"}"#,
            #"{"id": "both", "image": "scene.jpg", "images": ["wide.png"], "prompt": "caption en"}"#,
            #"{"id": "none", "images": [], "prompt": "caption en"}"#,
        ]
        try (lines.joined(separator: "\n") + "\n").write(to: requests, atomically: true, encoding: .utf8)
        let output = dir.appendingPathComponent("results.jsonl")
        let model = Fixtures.model("e2e-pg1")
        let first = try Self.run(["generate", "--model", model.path, "--batch", requests.path, "--output", output.path, "--max-tokens", "10"])
        #expect(first.status == 0, "\(first.stderr)")
        var results = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map { Self.json(String($0)) }
        #expect(results.count == 8)
        let byID = Dictionary(results.compactMap { r in (r["id"].map { "\($0)" }).map { ($0, r) } }, uniquingKeysWith: { a, _ in a })
        let caption = try Case("pg1-caption"), detect = try Case("pg1-detect")
        #expect(byID["a"]?["tokens"] as? [Int] == caption.tokens)
        #expect(byID["2"]?["tokens"] as? [Int] == detect.tokens)
        #expect((byID["missing"]?["error"] as? String)?.contains("nope.jpg") == true)
        #expect((byID["4"]?["error"] as? String)?.contains("not a JSON object") == true)
        #expect((byID["7"]?["tokens"] as? [Int])?.count == 3)
        #expect(byID["two"]?["tokens"] as? [Int] == (try Case("pg1-two-images")).tokens)
        #expect((byID["two"]?["images"] as? [String])?.map { URL(fileURLWithPath: $0).lastPathComponent } == ["scene.jpg", "wide.png"])
        #expect((byID["both"]?["error"] as? String)?.contains("not both") == true)
        #expect((byID["none"]?["error"] as? String)?.contains("\"images\" is empty") == true)
        // A second run skips the four answered requests and retries the four that failed.
        let second = try Self.run(["generate", "--model", model.path, "--batch", requests.path, "--output", output.path, "--max-tokens", "10"])
        #expect(second.status == 0)
        #expect(second.stderr.contains("skipping 4"), "\(second.stderr)")
        results = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map { Self.json(String($0)) }
        #expect(results.count == 12)
    }
}

extension EndToEndTests {
    @Test func detectSegmentAndParseCommands() throws {
        let c = try Case("pg1-detect")
        let vae = Fixtures.root.appendingPathComponent("masks/vae-random.npz").path
        let dir = try temporaryDirectory()
        let overlay = dir.appendingPathComponent("overlay.png").path
        let detect = try Self.run(["detect", "--model", c.model.path, "--image", c.image.path, "--max-tokens", "10",
                                   "--json", "--overlay", overlay, "cat", "dog"])
        #expect(detect.status == 0, "\(detect.stderr)")
        let object = Self.json(detect.stdout)
        #expect(object["tokens"] as? [Int] == c.tokens)  // same prompt as the pg1-detect case
        #expect(object["detections"] is [Any] && object["segments"] is [Any])
        let picture = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: overlay))
        #expect(picture.width == 120 && picture.height == 90)

        let codes = (0..<16).map { String(format: "<seg%03d>", ($0 * 7) % 128) }.joined()
        let answer = "<loc0100><loc0200><loc0900><loc0800>\(codes) cat ; <loc0000><loc0000><loc0512><loc1023> dog"
        let parsed = try Self.run(["parse", "--image-size", "640x480", "--vae", vae, "--json", "--masks", dir.path, answer])
        #expect(parsed.status == 0, "\(parsed.stderr)")
        let p = Self.json(parsed.stdout)
        let detections = p["detections"] as? [[String: Any]] ?? []
        let segments = p["segments"] as? [[String: Any]] ?? []
        #expect(detections.count == 2 && segments.count == 1)
        let mask64 = segments.first?["mask64"] as? [[Double]] ?? []
        #expect(mask64.count == 64 && mask64.allSatisfy { $0.count == 64 })
        #expect(segments.first?["mask_rle"] != nil)
        let box = detections.first?["box"] as? [Double] ?? []
        #expect(box.count == 4 && abs(box[0] - 200.0 / 1023 * 640) < 1e-6 && abs(box[3] - 900.0 / 1023 * 480) < 1e-6)
        let bad = try Self.run(["parse", "--image-size", "640by480", "x"])
        #expect(bad.status != 0 && bad.stderr.contains("640by480"))
    }
}

/// --video: the frames VideoReader chooses (PyAV's, bit for bit: PaliGemmaVideoTests) as the
/// prompt's images, so the answer is the library's for those images.
extension EndToEndTests {
    static let videos = Fixtures.root.appendingPathComponent("../../PaliGemmaVideoTests/Fixtures").standardized

    @Test("generate --video answers as the library does for the chosen frames; batch lines take \"video\"")
    func video() throws {
        let model = Fixtures.model("e2e-pg1")
        let clip = Self.videos.appendingPathComponent("h264.mp4").path
        let pipeline = try PaliGemmaPipeline(directory: model)
        let frames = try VideoReader.frames(path: clip, sampling: FrameSampling(count: 4, stride: 9))
        let want = try pipeline.generate(images: frames.frames, prompt: "caption en", options: GenerationOptions(maxNewTokens: 6))
        let r = try Self.run(["generate", "--model", model.path, "--video", clip, "--frames", "4", "--stride", "9",
                              "--prompt", "caption en", "--max-tokens", "6", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Self.json(r.stdout)["tokens"] as? [Int] == want.tokens)
        #expect(Self.json(r.stdout)["prompt_tokens"] as? Int == want.promptIDs.count)
        #expect(r.stderr.contains("h264 64x48") && r.stderr.contains("indices 0, 9, 18, 27"), "\(r.stderr)")
        // 16 frames of a 40-frame video at stride 9: five frames, repeated in order.
        let short = try Self.run(["caption", "--model", model.path, "--video", clip, "--max-tokens", "2", "--json"])
        #expect(short.status == 0 && short.stderr.contains("so they repeat"), "\(short.stderr)")
        #expect(Self.json(short.stdout)["prompt_tokens"] as? Int ?? 0 > 16 * 16)

        let dir = try temporaryDirectory()
        let requests = dir.appendingPathComponent("requests.jsonl"), output = dir.appendingPathComponent("out.jsonl")
        try ([#"{"id": "v", "video": "\#(clip)", "frames": 4, "stride": 9, "prompt": "caption en", "max_tokens": 6}"#,
              #"{"id": "both", "video": "\#(clip)", "image": "x.png", "prompt": "caption en"}"#,
              #"{"id": "bad", "video": "\#(clip)", "stride": 0, "prompt": "caption en"}"#,
              #"{"id": "audio", "video": "\#(Self.videos.appendingPathComponent("audio.m4a").path)", "prompt": "caption en"}"#]
            .joined(separator: "\n") + "\n").write(to: requests, atomically: true, encoding: .utf8)
        let batch = try Self.run(["generate", "--model", model.path, "--batch", requests.path, "--output", output.path])
        #expect(batch.status == 0, "\(batch.stderr)")
        let lines = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map { Self.json(String($0)) }
        let byID = Dictionary(lines.compactMap { l in (l["id"] as? String).map { ($0, l) } }, uniquingKeysWith: { a, _ in a })
        #expect(byID["v"]?["tokens"] as? [Int] == want.tokens)
        #expect((byID["both"]?["error"] as? String)?.contains("not both") == true)
        #expect((byID["bad"]?["error"] as? String)?.contains("stride must be 1 to 1000000") == true)
        #expect((byID["audio"]?["error"] as? String)?.contains("no video stream") == true)

        // Errors: one line, exit 65 for a bad file, 64 for bad usage.
        let audio = try Self.run(["generate", "--model", model.path, "--video", Self.videos.appendingPathComponent("audio.m4a").path, "--prompt", "x"])
        #expect(audio.status == 65 && audio.stderr.contains("the file has no video stream"), "\(audio.stderr)")
        let both = try Self.run(["generate", "--model", model.path, "--video", clip, "--image", clip, "--prompt", "x"])
        #expect(both.status == 64 && both.stderr.contains("not both"), "\(both.stderr)")
        let detect = try Self.run(["detect", "--model", model.path, "--video", clip, "cat"])
        #expect(detect.status == 64, "\(detect.stderr)")
        let zero = try Self.run(["generate", "--model", model.path, "--video", clip, "--frames", "0", "--prompt", "x"])
        #expect(zero.status == 64 && zero.stderr.contains("frame count must be 1 to 4096"), "\(zero.stderr)")
    }
}
