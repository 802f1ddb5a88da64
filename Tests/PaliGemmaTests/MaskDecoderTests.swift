import Foundation
import PaliGemmaJSON
import Testing
@testable import PaliGemma

/// The VQ-VAE mask decoder and big_vision's mask placement against PyTorch / Pillow
/// references (scripts/make_mask_fixtures.py).
@Suite struct MaskDecoderTests {
    static func fixture(_ name: String) -> String { Fixtures.root.appendingPathComponent("masks/\(name)").path }
    static let decoder: Result<MaskDecoder, Error> = Result { try MaskDecoder(path: fixture("vae-random.npz")) }
    static let reference: Result<[String: NPYArray], Error> = Result { try NPZArchive(path: fixture("decoder_ref.npz")).arrays() }

    @Test func decoderMatchesPyTorch() throws {
        let decoder = try Self.decoder.get()
        let ref = try Self.reference.get()
        let codes = try #require(ref["codes"]), masks = try #require(ref["mask64"])
        #expect(codes.shape[1] == 16)
        #expect(masks.shape == [codes.shape[0], 64, 64])
        #expect(decoder.keyPrefix == "")
        var worst: Float = 0
        for i in 0..<codes.shape[0] {
            let c = codes.values[(i * 16)..<((i + 1) * 16)].map { Int($0) }
            let mine = try decoder.decode(codes: c)
            let (diff, at) = maxAbsDiff(mine, Array(masks.values[(i * 4096)..<((i + 1) * 4096)]))
            print("mask decoder case \(i): max |swift - torch| = \(diff) at \(at)")
            worst = max(worst, diff)
        }
        print("mask decoder: worst difference over \(codes.shape[0]) masks = \(worst)")
        #expect(worst < 1e-4)
    }

    @Test func decoderRejectsBadCodes() throws {
        let decoder = try Self.decoder.get()
        #expect(throws: PaliGemmaError.input("a mask needs 16 <seg> codes, got 15")) {
            try decoder.decode(codes: Array(repeating: 0, count: 15))
        }
        #expect(throws: PaliGemmaError.input("<seg> code 128 is outside 0...127")) {
            try decoder.decode(codes: Array(repeating: 0, count: 15) + [128])
        }
        #expect(throws: PaliGemmaError.input("<seg> code -1 is outside 0...127")) {
            try decoder.decode(codes: [-1] + Array(repeating: 0, count: 15))
        }
    }

    @Test func checkpointKeysAndPrefixes() throws {
        #expect(try MaskDecoder.keyPrefix(names: ["encoder.0.weight", "_vq_vae._embedding"], path: "v") == "")
        #expect(try MaskDecoder.keyPrefix(names: ["model._vq_vae._embedding", "model.decoder.0.weight"], path: "v") == "model.")
        #expect(try MaskDecoder.keyPrefix(names: ["vae/_vq_vae._embedding"], path: "v") == "vae/")
        #expect(throws: PaliGemmaError.self) { try MaskDecoder.keyPrefix(names: ["a._vq_vae._embedding", "b._vq_vae._embedding"], path: "v") }
        #expect(throws: PaliGemmaError.self) { try MaskDecoder.keyPrefix(names: ["x_vq_vae._embedding"], path: "v") }
        // An archive of other arrays is not a decoder checkpoint.
        let error = #expect(throws: PaliGemmaError.self) { try MaskDecoder(path: NPZTests.fixture("arrays.npz")) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("not a PaliGemma mask decoder checkpoint"))
    }
}

/// big_vision's placement (PIL bilinear resize into the truncated pixel box, threshold 0)
/// and COCO RLE against numpy / Pillow 13.0.0 / pycocotools 2.0.8.
@Suite struct MaskPlacementTests {
    struct Case {
        let mask: Int, width: Int, height: Int, locs: [Int], pixelBox: [Int], area: Int, cocoCounts: String
    }

    static func cases() throws -> [Case] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: MaskDecoderTests.fixture("placement.json"))))
        let json = try JSONParser.parse(bytes)
        return try #require(json.arrayValue).map { c in
            Case(mask: c["mask"]?.intValue ?? -1, width: c["width"]?.intValue ?? 0, height: c["height"]?.intValue ?? 0,
                 locs: c["locs"]?.arrayValue?.compactMap(\.intValue) ?? [],
                 pixelBox: c["pixel_box"]?.arrayValue?.compactMap(\.intValue) ?? [],
                 area: c["area"]?.intValue ?? -1, cocoCounts: c["coco_counts"]?.stringValue ?? "")
        }
    }

    static func mask64(_ ref: [String: NPYArray], _ i: Int) throws -> [Float] {
        let all = try #require(ref["mask64"])
        return Array(all.values[(i * 4096)..<((i + 1) * 4096)])
    }

    @Test func placementMatchesPillowExactly() throws {
        let ref = try MaskDecoderTests.reference.get()
        let expected = try NPZArchive(path: MaskDecoderTests.fixture("placement.npz")).arrays()
        let cases = try Self.cases()
        #expect(cases.count == 8)
        var worstResize: Float = 0
        for (i, c) in cases.enumerated() {
            let m64 = try Self.mask64(ref, c.mask)
            let box = MaskPlacement.pixelBox(locs: c.locs, imageWidth: c.width, imageHeight: c.height)
            #expect([box.x1, box.y1, box.x2, box.y2] == c.pixelBox, "case \(i)")
            if let resized = expected["resized_\(i)"] {
                let mine = MaskPlacement.resizeBilinear(m64, width: 64, height: 64, toWidth: box.x2 - box.x1, toHeight: box.y2 - box.y1)
                let (diff, at) = maxAbsDiff(mine, resized.values)
                print("placement case \(i): resized \(box.x2 - box.x1)x\(box.y2 - box.y1), max |swift - Pillow| = \(diff) at \(at)")
                worstResize = max(worstResize, diff)
            }
            let mask = try MaskPlacement.place(mask64: m64, locs: c.locs, imageWidth: c.width, imageHeight: c.height)
            let full = try #require(expected["full_\(i)"])
            let reference = full.values.map { UInt8($0) }
            let mismatched = zip(mask.pixels, reference).filter { $0 != $1 }.count
            print("placement case \(i): \(c.width)x\(c.height), area \(mask.area) (Pillow \(c.area)), \(mismatched) pixels differ")
            #expect(mismatched == 0, "case \(i)")
            #expect(mask.area == c.area)
            let sameCounts = mask.cocoCounts == c.cocoCounts  // (a Bool, so a failure does not print kilobytes)
            #expect(sameCounts, "case \(i): COCO counts differ from pycocotools")
            #expect(BinaryMask.decode(rleCounts: mask.rleCounts, width: c.width, height: c.height) == mask)
        }
        print("placement: worst resize difference \(worstResize)")
        #expect(worstResize <= 1e-6)
    }

    @Test func endToEndFromCodesMatchesReference() throws {
        let decoder = try MaskDecoderTests.decoder.get()
        let ref = try MaskDecoderTests.reference.get()
        let codes = try #require(ref["codes"])
        let expected = try NPZArchive(path: MaskDecoderTests.fixture("placement.npz")).arrays()
        var totalMismatched = 0
        for (i, c) in try Self.cases().enumerated() {
            let m64 = try decoder.decode(codes: codes.values[(c.mask * 16)..<((c.mask + 1) * 16)].map { Int($0) })
            let mask = try MaskPlacement.place(mask64: m64, locs: c.locs, imageWidth: c.width, imageHeight: c.height)
            let reference = try #require(expected["full_\(i)"]).values.map { UInt8($0) }
            totalMismatched += zip(mask.pixels, reference).filter { $0 != $1 }.count
        }
        print("end to end (codes -> Swift decoder -> placement): \(totalMismatched) pixels differ from PyTorch + Pillow")
        #expect(totalMismatched == 0)
    }

    @Test func rleConventions() {
        // 3 wide, 2 tall; column-major read: (0,0)=0 (0,1)=1 | (1,0)=1 (1,1)=1 | (2,0)=0 (2,1)=0
        let m = BinaryMask(width: 3, height: 2, pixels: [0, 1, 0,
                                                         1, 1, 0])
        #expect(m.rleCounts == [1, 3, 2])
        #expect(m.area == 3)
        let starts1 = BinaryMask(width: 1, height: 2, pixels: [1, 1])
        #expect(starts1.rleCounts == [0, 2])
        #expect(BinaryMask(width: 2, height: 2, pixels: [0, 0, 0, 0]).rleCounts == [4])
        #expect(BinaryMask.decode(rleCounts: [1, 3, 2], width: 3, height: 2) == m)
        #expect(BinaryMask.decode(rleCounts: [1, 3], width: 3, height: 2) == nil)  // does not cover the image
        #expect(BinaryMask.decode(rleCounts: [1, -3, 2], width: 3, height: 2) == nil)
    }

    @Test func placementRejectsBadInputs() {
        #expect(throws: PaliGemmaError.self) { try MaskPlacement.place(mask64: [0], locs: [0, 0, 1, 1], imageWidth: 4, imageHeight: 4) }
        #expect(throws: PaliGemmaError.self) {
            try MaskPlacement.place(mask64: Array(repeating: 1, count: 4096), locs: [0, 0, 1], imageWidth: 4, imageHeight: 4)
        }
        #expect(throws: PaliGemmaError.self) {
            try MaskPlacement.place(mask64: Array(repeating: 1, count: 4096), locs: [0, 0, 1023, 1023], imageWidth: 0, imageHeight: 4)
        }
    }
}
