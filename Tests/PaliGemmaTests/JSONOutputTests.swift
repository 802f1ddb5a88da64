import Foundation
import PaliGemmaJSON
import Testing
@testable import PaliGemma

/// The one way output JSON is written (`JSONOutput`, `FiniteOrNull`, the Encodable output types):
/// keys and values of every object, nulls, and one line per object.
@Suite struct JSONOutputTests {
    static func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static let result: GenerationResult = {
        var timings = RequestTimings()
        timings.load = 1.5
        timings.image = 0.25
        timings.vision = 0.5
        timings.prefill = 0.125
        timings.decode = 2
        timings.decodeMsPerToken = 40
        timings.total = 3
        return GenerationResult(text: "a cat/dog \"x\"", tokens: [5, 6, 7], promptIDs: Array(0..<20), stopReason: .stopToken,
                                timings: timings, pixelValues: nil, stepLogits: nil)
    }()

    @Test func configurationIsCompactSortedAndKeepsSlashes() throws {
        struct Sample: Encodable { let b = "x/y"; let a = [1, 2]; let c = "line\nbreak" }
        #expect(try JSONOutput.string(Sample()) == #"{"a":[1,2],"b":"x/y","c":"line\nbreak"}"#)
        #expect(JSONOutput.rounded(6.12345, decimals: 3) == 6.123)
        #expect(JSONOutput.rounded(0.05, decimals: 1) == 0.1)
    }

    @Test func fileConfigurationIsPrettySortedWithANewline() throws {
        struct Sample: Encodable { let b = "x/y"; let a = [1, 2]; let c = ["z": 1, "y": 2] }
        let text = String(decoding: try JSONOutput.fileData(Sample()), as: UTF8.self)
        #expect(text == "{\n  \"a\" : [\n    1,\n    2\n  ],\n  \"b\" : \"x/y\",\n  \"c\" : {\n    \"y\" : 2,\n    \"z\" : 1\n  }\n}\n")
        #expect(throws: EncodingError.self) { try JSONOutput.fileData([Float.infinity]) }
    }

    @Test func nonFiniteNumbersAreNull() throws {
        let values: [FiniteOrNull<Float>] = [1.5, .nan, .infinity, -.infinity, 0.1, -0.0].map(FiniteOrNull.init)
        #expect(try JSONOutput.string(values) == "[1.5,null,null,null,0.1,-0]")
        let doubles = [FiniteOrNull(1.0 / 3), FiniteOrNull(Double.nan)]
        #expect(try JSONOutput.string(doubles) == "[0.3333333333333333,null]")
        // Without the wrapper a non-finite number is an error, not invalid JSON.
        #expect(throws: EncodingError.self) { try JSONOutput.string([Double.nan]) }
    }

    @Test func generationOutputKeysAndValues() throws {
        let line = try JSONOutput.string(GenerationOutput(Self.result, prompt: "caption en"))
        #expect(!line.contains("\n"))
        let object = try Self.object(line)
        #expect(Set(object.keys) == ["text", "tokens", "prompt_tokens", "generated_tokens", "stop_reason", "timings", "prompt"])
        #expect(object["text"] as? String == "a cat/dog \"x\"")
        #expect(object["tokens"] as? [Int] == [5, 6, 7])
        #expect(object["prompt_tokens"] as? Int == 20)
        #expect(object["generated_tokens"] as? Int == 3)
        #expect(object["stop_reason"] as? String == "eos")
        #expect(object["prompt"] as? String == "caption en")
        let timings = try #require(object["timings"] as? [String: Double])
        #expect(timings == ["load_s": 1.5, "image_s": 0.25, "vision_s": 0.5, "prefill_s": 0.125, "ttft_s": 0.875,
                            "decode_s": 2, "decode_ms_per_token": 40, "total_s": 3])
        // Without a prompt there is no "prompt" member.
        let bare = try Self.object(try JSONOutput.string(GenerationOutput(Self.result)))
        #expect(bare["prompt"] == nil)
        #expect(bare.count == 6)
    }

    /// inspect --json: one compact line, keys sorted, the summary's values and the config.
    @Test("inspect --json: keys, values and the config, one sorted line", arguments: ["pg1-f32", "pg2-bf16"])
    func inspectKeysAndValues(name: String) throws {
        let summary = try CheckpointSummary(checkpoint: Checkpoint(directory: Fixtures.model(name)))
        let line = try summary.json(loadSeconds: 0.25)
        #expect(!line.contains("\n") && !line.contains("\\/"))
        let value = try JSONParser.parse(Array(line.utf8))
        let keys = try #require(value.objectValue).map(\.key)
        #expect(keys == ["config", "data_bytes", "directory", "dtypes", "family", "file_bytes", "files", "image_size",
                         "image_tokens", "int4_tensors", "int8_tensors", "load_s", "parameters", "tensors"])
        let object = try Self.object(line)
        #expect(object["directory"] as? String == summary.directory)
        #expect(object["family"] as? String == (name.hasPrefix("pg2") ? "gemma2" : "gemma"))
        #expect(object["image_size"] as? Int == summary.config.visionConfig.imageSize)
        #expect(object["image_tokens"] as? Int == summary.config.numImageTokens)
        #expect(object["files"] as? [String] == summary.files)
        #expect(object["tensors"] as? Int == summary.tensorCount && object["parameters"] as? Int == summary.parameterCount)
        #expect(object["dtypes"] as? [String: Int] == summary.dtypes)
        #expect(object["data_bytes"] as? Int == summary.dataBytes && object["file_bytes"] as? Int == summary.fileBytes)
        #expect(object["int8_tensors"] as? Int == 0 && object["int4_tensors"] as? Int == 0)
        #expect(object["load_s"] as? Double == 0.25)
        // The config member reads back as the same config.
        let config = try #require(value["config"])
        #expect(config["model_type"]?.stringValue == "paligemma")
        #expect(try JSONValueDecoder().decode(PaliGemmaConfig.self, from: config) == summary.config)

        // The command prints the same object.
        let run = try EndToEndTests.run(["inspect", "--model", Fixtures.model(name).path, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let printed = try Self.object(run.stdout)
        #expect(Set(printed.keys) == Set(keys) && printed["parameters"] as? Int == summary.parameterCount)
        #expect(run.stdout.split(separator: "\n").count == 1)
    }

    /// detect / segment --json: one object, the answer's members and the parsed result's side by side.
    @Test func parsedAnswerMembersJoinTheObject() throws {
        let decoder = try MaskDecoderTests.decoder.get()
        let parsed = try TaskOutput.parse(text: TaskOutputTests.text, imageWidth: 160, imageHeight: 120, maskDecoder: decoder)
        let line = try JSONOutput.string(GenerationOutput(Self.result, prompt: "segment cat", parsed: parsed))
        #expect(!line.contains("\n"))
        let object = try Self.object(line)
        #expect(Set(object.keys) == ["text", "tokens", "prompt_tokens", "generated_tokens", "stop_reason", "timings", "prompt",
                                     "image_size", "detections", "segments", "skipped", "masks_decoded"])
        // The same members and values as the result alone.
        let joined = try JSONParser.parse(Array(line.utf8))
        guard case let .object(alone) = try JSONParser.parse(Array(try parsed.json().utf8)) else {
            Issue.record("not an object")
            return
        }
        #expect(alone.count == 5)
        for member in alone {
            #expect(joined[member.key] == member.value, "\(member.key)")
        }
        #expect(object["image_size"] as? [Int] == [160, 120])
        #expect(object["masks_decoded"] as? Bool == true)
    }

    @Test func taskResultMembers() throws {
        let decoder = try MaskDecoderTests.decoder.get()
        let text = TaskOutputTests.text + " ; " + locTokens([5, 5, 1, 1]) + " bad"
        let result = try TaskOutput.parse(text: text, imageWidth: 160, imageHeight: 120, maskDecoder: decoder)
        let object = try Self.object(try result.json())
        #expect(Set(object.keys) == ["image_size", "detections", "segments", "skipped", "masks_decoded"])
        let detections = try #require(object["detections"] as? [[String: Any]])
        #expect(detections.map { Set($0.keys) } == [["label", "box", "box_normalized"], ["label", "box", "box_normalized"]])
        let segments = try #require(object["segments"] as? [[String: Any]])
        #expect(segments.map { Set($0.keys) }
                == [["label", "box", "box_normalized", "mask_box", "seg_codes", "mask64", "mask_rle", "area"]])
        let segment = try #require(result.segments.first)
        #expect(segments[0]["mask_box"] as? [Int] == [segment.maskBox.x1, segment.maskBox.y1, segment.maskBox.x2, segment.maskBox.y2])
        #expect(segments[0]["seg_codes"] as? [Int] == TaskOutputTests.codes)
        let rle = try #require(segments[0]["mask_rle"] as? [String: Any])
        #expect(Set(rle.keys) == ["size", "counts"])
        let skipped = try #require(object["skipped"] as? [[String: String]])
        #expect(skipped.count == 1)
        #expect(Set(skipped[0].keys) == ["text", "reason"])
        #expect(skipped[0]["reason"]?.contains("empty or inverted box") == true)

        // Without a checkpoint the mask members are there, as null.
        let bare = try Self.object(try TaskOutput.parse(text: text, imageWidth: 160, imageHeight: 120, maskDecoder: nil).json())
        let bareSegment = try #require((bare["segments"] as? [[String: Any]])?.first)
        #expect(bareSegment["mask64"] is NSNull && bareSegment["mask_rle"] is NSNull && bareSegment["area"] is NSNull)
        #expect(bare["masks_decoded"] as? Bool == false)

        // A non-finite mask value is written as null, not as invalid JSON.
        var mask64 = try #require(segment.mask64)
        mask64[3] = .nan
        mask64[64] = .infinity
        let odd = TaskResult(imageWidth: 160, imageHeight: 120, detections: [], segments: [Segment(
            label: "x", box: segment.box, normalizedBox: segment.normalizedBox, locs: segment.locs, segCodes: segment.segCodes,
            maskBox: segment.maskBox, mask64: mask64, mask: segment.mask)], skipped: [], masksDecoded: true)
        let rows = try #require((try Self.object(try odd.json())["segments"] as? [[String: Any]])?.first?["mask64"] as? [[Any]])
        #expect(rows[0][3] is NSNull && rows[1][0] is NSNull)
        #expect((rows[0][2] as? Double).map(Float.init) == mask64[2])
    }
}
