import Foundation
import PaliGemmaJSON
import Testing
@testable import PaliGemma

func locTokens(_ codes: [Int]) -> String { codes.map { "<loc" + String(repeating: "0", count: 4 - String($0).count) + "\($0)>" }.joined() }
func segTokens(_ codes: [Int]) -> String { codes.map { "<seg" + String(repeating: "0", count: 3 - String($0).count) + "\($0)>" }.joined() }

/// Parsing of detect / segment answers: objects, labels, boxes and what gets skipped.
@Suite struct DetectionParsingTests {
    @Test func singleAndMultipleObjectsWithMultiWordLabels() {
        let one = DetectionParser.parse("<loc0100><loc0200><loc0900><loc0800> cat")
        #expect(one.objects == [ParsedObject(locs: [100, 200, 900, 800], segCodes: nil, label: "cat",
                                             text: "<loc0100><loc0200><loc0900><loc0800> cat")])
        #expect(one.skipped.isEmpty)

        let text = "<loc0000><loc0000><loc0511><loc1023> red sports car ; <loc0100><loc0200><loc0300><loc0400>  the big dog  ;"
        let many = DetectionParser.parse(text)
        #expect(many.objects.map(\.label) == ["red sports car", "the big dog"])
        #expect(many.objects.map(\.locs) == [[0, 0, 511, 1023], [100, 200, 300, 400]])
        #expect(many.skipped.isEmpty)

        // Without the " ; " separator (big_vision's parser accepts this too), with newlines and
        // spaces between tokens, and with <eos> left in the text.
        let loose = DetectionParser.parse("<loc0001> <loc0002>\n<loc0003> <loc0004> cat <loc0010><loc0020><loc0030><loc0040>dog<eos>")
        #expect(loose.objects.map(\.label) == ["cat", "dog"])
        #expect(loose.objects.map(\.locs) == [[1, 2, 3, 4], [10, 20, 30, 40]])
    }

    @Test func segmentationObjects() {
        let codes = [0, 1, 2, 3, 127, 64, 5, 6, 7, 8, 9, 10, 11, 12, 13, 100]
        let text = locTokens([10, 20, 500, 600]) + " " + segTokens(codes) + " person on the left ; "
            + locTokens([1, 2, 3, 4]) + " cup"
        let parsed = DetectionParser.parse(text)
        #expect(parsed.objects.count == 2)
        #expect(parsed.objects[0].segCodes == codes)
        #expect(parsed.objects[0].label == "person on the left")
        #expect(parsed.objects[1].segCodes == nil)
        #expect(parsed.skipped.isEmpty)
    }

    @Test func malformedPiecesAreSkippedWithReasons() {
        let cases: [(String, String)] = [
            ("<loc0100><loc0200><loc0300> cat", "only 3 of 4 location tokens"),
            ("<loc0100><loc0200><loc0300><loc0400><loc0500> cat", "5 location tokens, expected 4"),
            ("<loc0900><loc0200><loc0100><loc0800> cat", "empty or inverted box"),
            ("<loc0100><loc0800><loc0900><loc0200> cat", "empty or inverted box"),
            ("<loc0100><loc0200><loc0100><loc0800> flat", "empty or inverted box"),
            ("<loc1024><loc0200><loc0300><loc0400> cat", "location token <loc1024> is not one of <loc0000>...<loc1023>"),
            ("<loc12><loc0200><loc0300><loc0400> cat", "location token <loc12> is not one of"),
            ("I see a cat", "text without location tokens"),
            (segTokens([1, 2]) + locTokens([1, 2, 3, 4]) + " cat", "<loc> token after <seg> tokens"),
        ]
        for (text, reason) in cases {
            let parsed = DetectionParser.parse(text)
            #expect(parsed.objects.isEmpty, "\(text)")
            #expect(parsed.skipped.count == 1, "\(text)")
            #expect(parsed.skipped.first?.reason.contains(reason) == true, "\(text): \(parsed.skipped)")
            #expect(parsed.skipped.first?.text == text.trimmingCharacters(in: .whitespaces))
        }
        // A good box with broken seg tokens: kept as a detection, the mask is skipped.
        for (segs, reason) in [(segTokens([1, 2, 3, 4, 5, 6, 7]), "7 of 16 segment tokens"),
                               (segTokens(Array(0..<15)) + "<seg128>", "segment token <seg128> is not one of")] {
            let parsed = DetectionParser.parse(locTokens([1, 2, 300, 400]) + segs + " cat")
            #expect(parsed.objects.count == 1)
            #expect(parsed.objects.first?.segCodes == nil)
            #expect(parsed.skipped.first?.reason.contains("mask skipped: " + reason) == true, "\(parsed.skipped)")
        }
        // Mixed: the good objects survive around a bad one.
        let mixed = DetectionParser.parse("sure! " + locTokens([1, 2, 3, 4]) + " a ; <loc0005> b ; " + locTokens([5, 6, 7, 8]) + " c")
        #expect(mixed.objects.map(\.label) == ["a", "c"])
        #expect(mixed.skipped.map(\.reason) == ["text without location tokens", "only 1 of 4 location tokens"])
    }

    @Test func emptyOutputs() {
        for text in ["", "   ", "<eos>", " ; ; ", "\n"] {
            let parsed = DetectionParser.parse(text)
            #expect(parsed.objects.isEmpty, "\(text.debugDescription)")
            #expect(parsed.skipped.isEmpty, "\(text.debugDescription)")
        }
        // A box without a label is still a box.
        #expect(DetectionParser.parse(locTokens([1, 2, 3, 4])).objects.first?.label == "")
        // Other tags stay in the label text.
        #expect(DetectionParser.parse(locTokens([1, 2, 3, 4]) + " <unused0> x").objects.first?.label == "<unused0> x")
    }

    @Test func boxesFollowBigVisionsConvention() throws {
        // 1023 divides exactly: code c on a 1023-wide image is c pixels; y uses the height.
        let result = try TaskOutput.parse(text: locTokens([100, 200, 900, 1023]) + " cat", imageWidth: 1023, imageHeight: 2046, maskDecoder: nil)
        let d = try #require(result.detections.first)
        #expect(d.box == PixelBox(xMin: 200, yMin: 200, xMax: 1023, yMax: 1800))
        #expect(d.normalizedBox == NormalizedBox(xMin: 200.0 / 1023, yMin: 100.0 / 1023, xMax: 1, yMax: 900.0 / 1023))
        #expect(result.segments.isEmpty)
        #expect(throws: PaliGemmaError.self) { try TaskOutput.parse(text: "", imageWidth: 0, imageHeight: 5, maskDecoder: nil) }
    }

    @Test func imageSizeArgument() throws {
        #expect(try TaskOutput.parseImageSize("640x480") == (640, 480))
        #expect(try TaskOutput.parseImageSize("1X1") == (1, 1))
        for bad in ["640", "0x5", "axb", "640x480x3", "-1x4", "x480", ""] {
            #expect(throws: PaliGemmaError.self, "\(bad)") { try TaskOutput.parseImageSize(bad) }
        }
    }
}

/// TaskResult outputs: JSON shape, summary, overlay and mask PNGs read back, the parse command.
@Suite struct TaskOutputTests {
    static let codes = [3, 90, 17, 64, 127, 0, 45, 45, 12, 100, 8, 77, 31, 2, 99, 64]
    static let text = locTokens([100, 50, 900, 700]) + segTokens(codes) + " big cat ; " + locTokens([600, 600, 1000, 1000]) + " tiny \"mouse\""

    @Test func jsonListsDetectionsAndSegments() throws {
        let decoder = try MaskDecoderTests.decoder.get()
        let result = try TaskOutput.parse(text: Self.text, imageWidth: 160, imageHeight: 120, maskDecoder: decoder)
        #expect(result.detections.map(\.label) == ["big cat", "tiny \"mouse\""])
        #expect(result.detections.map(\.segmentIndex) == [0, nil])
        #expect(result.segments.count == 1)
        let segment = try #require(result.segments.first)
        let mask = try #require(segment.mask)
        #expect(segment.mask64 == (try decoder.decode(codes: Self.codes)))
        #expect(segment.maskBox == MaskBox(x1: 7, y1: 11, x2: 109, y2: 105))

        let json = try JSONParser.parse(Array(result.json().utf8))
        #expect(json["image_size"] == .array([.number(160), .number(120)]))
        let detections = try #require(json["detections"]?.arrayValue)
        #expect(detections.count == 2)
        #expect(detections[1]["label"]?.stringValue == "tiny \"mouse\"")
        let box: [Double] = try #require(detections[0]["box"]?.arrayValue).map(number)
        let expectedBox: [Double] = [50.0 / 1023 * 160, 100.0 / 1023 * 120, 700.0 / 1023 * 160, 900.0 / 1023 * 120]
        #expect(box == expectedBox)
        let normalized: [Double] = try #require(detections[0]["box_normalized"]?.arrayValue).map(number)
        let expectedNormalized: [Double] = [50.0 / 1023, 100.0 / 1023, 700.0 / 1023, 900.0 / 1023]
        #expect(normalized == expectedNormalized)
        let segments = try #require(json["segments"]?.arrayValue)
        #expect(segments.count == 1)
        let rows = try #require(segments[0]["mask64"]?.arrayValue)
        #expect(rows.count == 64)
        #expect(rows.allSatisfy { $0.arrayValue?.count == 64 })
        let flat: [Float] = rows.flatMap { $0.arrayValue ?? [] }.map { Float(number($0)) }
        #expect(flat == segment.mask64)  // shortest round-trip printing is exact
        #expect(segments[0]["mask_rle"]?["size"] == .array([.number(120), .number(160)]))
        #expect(segments[0]["mask_rle"]?["counts"]?.stringValue == mask.cocoCounts)
        #expect(segments[0]["area"]?.intValue == mask.area)
        #expect(mask.area > 0)
        #expect(mask.area < 102 * 94)
        #expect(json["masks_decoded"] == .bool(true))
        #expect(result.summary().contains("big cat"))
        #expect(result.summary().contains("mask \(mask.area) px"))

        // Without a checkpoint: the same objects, masks null.
        let bare = try TaskOutput.parse(text: Self.text, imageWidth: 160, imageHeight: 120, maskDecoder: nil)
        let bareJSON = try JSONParser.parse(Array(bare.json().utf8))
        #expect(bareJSON["segments"]?.arrayValue?.first?["mask64"] == .null)
        #expect(bareJSON["segments"]?.arrayValue?.first?["mask_rle"] == .null)
        #expect(bare.summary().contains("mask not decoded"))

        let empty = try JSONParser.parse(Array(try TaskOutput.parse(text: "no boxes here", imageWidth: 5, imageHeight: 5, maskDecoder: nil).json().utf8))
        #expect(empty["detections"] == .array([]))
        #expect(empty["skipped"]?.arrayValue?.first?["reason"]?.stringValue == "text without location tokens")
    }

    func number(_ v: JSONValue) -> Double {
        switch v {
        case let .number(d): return d
        default: return .nan
        }
    }

    @Test func overlayAndMaskPNGsDecodeBack() throws {
        let decoder = try MaskDecoderTests.decoder.get()
        let result = try TaskOutput.parse(text: Self.text, imageWidth: 160, imageHeight: 120, maskDecoder: decoder)
        let mask = try #require(result.segments.first?.mask)
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }

        let files = try result.writeMaskPNGs(directory: dir.path)
        #expect(files.map { URL(fileURLWithPath: $0).lastPathComponent } == ["mask-00-big_cat.png"])
        let png = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: files[0]))
        #expect(png.width == 160)
        #expect(png.height == 120)
        let decodedMask = (0..<(160 * 120)).map { png.pixels[3 * $0] == 255 ? UInt8(1) : 0 }
        #expect(decodedMask == mask.pixels)
        #expect(png.pixels.allSatisfy { $0 == 0 || $0 == 255 })

        let overlayPath = dir.appendingPathComponent("overlay.png").path
        try result.writeOverlayPNG(to: overlayPath)
        let overlay = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: overlayPath))
        #expect(overlay.width == 160)
        #expect(overlay.height == 120)
        let red = RGBColor.palette[0], green = RGBColor.palette[1]
        func at(_ x: Int, _ y: Int) -> [UInt8] { Array(overlay.pixels[(3 * (y * 160 + x))..<(3 * (y * 160 + x) + 3)]) }
        // Box outlines in the object's colour: left edge of box 0 at x = 7 (floor 7.8), right
        // edge of box 1 at x = 156 (ceil 156.4 - 1).
        #expect(at(7, 60) == [red.r, red.g, red.b])
        #expect(at(156, 100) == [green.r, green.g, green.b])
        // Inside box 0, away from outline, label and box 1: masked pixels are tinted, others untouched.
        func blend(_ c: UInt8) -> UInt8 { UInt8((48 * (1 - 0.45) + Double(c) * 0.45).rounded()) }
        var tinted = 0, plain = 0
        for y in 30..<90 {
            for x in 12..<85 {
                let expected = mask.pixels[y * 160 + x] == 1 ? [blend(red.r), blend(red.g), blend(red.b)] : [48, 48, 48]
                #expect(at(x, y) == expected, "(\(x), \(y))")
                if mask.pixels[y * 160 + x] == 1 { tinted += 1 } else { plain += 1 }
            }
        }
        #expect(tinted > 100)
        #expect(plain > 100)
        #expect(at(2, 2) == [48, 48, 48])  // outside every box
        // A background image of the wrong size is refused.
        #expect(throws: PaliGemmaError.self) { try result.overlay(on: RGBImage(width: 10, height: 10)) }
    }

    /// `paligemma parse` (the output stage detect and segment share): files, stderr notes, JSON,
    /// summary, and the error for a --vae that names a missing file.
    @Test func parseCommandEndToEnd() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let vae = MaskDecoderTests.fixture("vae-random.npz")
        let text = Self.text + " ; " + locTokens([5, 5, 1, 1]) + " bad"
        let masks = dir.appendingPathComponent("masks"), overlay = dir.appendingPathComponent("o.png")
        let run = try EndToEndTests.run(["parse", "--image-size", "160x120", "--vae", vae, "--json",
                                         "--masks", masks.path, "--overlay", overlay.path, text])
        #expect(run.status == 0, "\(run.stderr)")
        let written = try FileManager.default.contentsOfDirectory(atPath: masks.path).filter { $0.hasSuffix(".png") }
        #expect(written.count + (FileManager.default.fileExists(atPath: overlay.path) ? 1 : 0) == 2)
        let notes = run.stderr.split(separator: "\n").filter { $0.hasPrefix("paligemma: note: ") }
        #expect(notes.count == 1)
        #expect(notes.first?.contains("empty or inverted box") == true)
        let json = try JSONParser.parse(Array(run.stdout.utf8))
        let expected = try TaskOutput.parse(text: text, imageWidth: 160, imageHeight: 120, maskDecoder: MaskDecoder(path: vae))
        #expect(json["segments"]?.arrayValue?.first?["area"]?.intValue == expected.segments.first?.mask?.area)

        let summary = try EndToEndTests.run(["parse", "--image-size", "160x120", "--vae", vae, text])
        #expect(summary.stdout.hasPrefix("2 objects in 160x120"), "\(summary.stderr)")

        // --vae naming a missing file is an error that says where to get the checkpoint.
        let missing = try EndToEndTests.run(["parse", "--image-size", "160x120", "--vae", dir.appendingPathComponent("nope.npz").path, text])
        #expect(missing.status == 66)
        #expect(missing.stderr.contains("storage.googleapis.com/big_vision/paligemma/vae-oid.npz"))
    }

    @Test func checkpointDiscovery() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("paligemma-3b-mix-224")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        let env = ["HOME": dir.appendingPathComponent("home").path]
        let none = try MaskDecoder.locateCheckpoint(explicit: nil, modelDirectory: model.path, environment: env)
        #expect(none.path == nil)
        let expectedSearch: [String] = [model.appendingPathComponent("vae-oid.npz").path, dir.appendingPathComponent("vae-oid.npz").path,
                                        dir.appendingPathComponent("home/.cache/paligemma/vae-oid.npz").path]
        #expect(none.searched == expectedSearch)
        try Data([1]).write(to: dir.appendingPathComponent("vae-oid.npz"))
        #expect(try MaskDecoder.locateCheckpoint(explicit: nil, modelDirectory: model.path, environment: env).path
                == dir.appendingPathComponent("vae-oid.npz").path)
        let fromEnv = try MaskDecoder.locateCheckpoint(explicit: nil, modelDirectory: nil, environment: ["PALIGEMMA_VAE": "/x/vae.npz"])
        #expect(fromEnv.searched == ["/x/vae.npz"])
        #expect(fromEnv.path == nil)
        #expect(MaskDecoder.missingCheckpointHint.contains("gs://big_vision/paligemma/vae-oid.npz"))
    }

    @Test func decoderBenchmarkRuns() throws {
        let bench = try MaskDecoderTests.decoder.get().benchmark(iterations: 3)
        print("mask decoder (debug build): median \(bench.decodeMedianMs) ms, placement \(bench.placeMedianMs) ms")
        #expect(bench.iterations == 3)
        #expect(bench.decodeMedianMs > 0)
    }
}
