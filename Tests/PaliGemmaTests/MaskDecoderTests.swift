import Foundation
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
