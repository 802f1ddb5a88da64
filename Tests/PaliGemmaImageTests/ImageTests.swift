// Parity of decoding with Pillow + transformers' convert_to_rgb, over the fixture corpus.
import Foundation
import Testing
@testable import PaliGemmaImage

@Suite struct ManifestTests {
    @Test func manifestLoadsWithEveryCorpus() throws {
        let manifest = try #require(Fixtures.manifest, "Fixtures/manifest.json missing or unreadable")
        #expect(manifest.decode.count >= 60)
        #expect(manifest.orientation.count == 16)
        #expect(manifest.resize.count >= 180)
        #expect(manifest.tensor.count >= 8)
    }
}

@Suite struct DecodeParityTests {
    /// Every fixture decodes to exactly the RGB bytes Pillow + transformers produce
    /// (or, for the documented 16-bit rules, the rule's bytes).
    @Test(arguments: Fixtures.manifest?.decode ?? [])
    func decodedRGBMatchesReference(_ entry: Manifest.Decode) throws {
        let image = try ImageDecoder.decode(contentsOf: Fixtures.url(entry.file))
        #expect(image.width == entry.width)
        #expect(image.height == entry.height)
        let expected = try Fixtures.expectedRGB(entry.expected)
        let worst = maxAbsDiff(image.pixels, expected)
        let vsPillow = entry.pillowMaxAbsDiff.map { " (documented rule; Pillow itself differs by up to \($0))" } ?? ""
        print("decode \(entry.name) [\(entry.pillowMode)]: max abs diff \(worst)\(vsPillow)")
        #expect(worst == 0, "\(entry.name): \(entry.note)")
    }

    /// The PNG fixtures of expected values are read with the PNG decoder; check that path
    /// against raw bytes written by Pillow for an 8-bit RGB PNG.
    @Test func rgb8PNGDecodesToRawBytes() throws {
        let manifest = try #require(Fixtures.manifest)
        let entry = try #require(manifest.decode.first { $0.name == "png_rgb8" })
        #expect(entry.expected.hasSuffix(".rgb"))
        let image = try ImageDecoder.decode(contentsOf: Fixtures.url(entry.file))
        #expect(image.pixels == [UInt8](try Data(contentsOf: Fixtures.url(entry.expected))))
    }

    @Test func decodeFromDataMatchesDecodeFromFile() throws {
        let url = Fixtures.url("decode/jpeg_420.jpg")
        let fromFile = try ImageDecoder.decode(contentsOf: url)
        let fromData = try ImageDecoder.decode(data: Data(contentsOf: url), name: "<stdin>")
        #expect(fromFile == fromData)
        let probe = try ImageDecoder.probe(data: Data(contentsOf: url), name: "x")
        #expect(probe.format == .jpeg && probe.width == fromFile.width && probe.height == fromFile.height)
    }

    @Test func compositingOpaqueIsIdentityAndTransparentIsWhite() {
        for v in 0...255 {
            #expect(PixelConversion.compositeOnWhite(UInt8(v), alpha: 255) == UInt8(v))
            #expect(PixelConversion.compositeOnWhite(UInt8(v), alpha: 0) == 255)
        }
    }
}

@Suite struct OrientationTests {
    @Test(arguments: Fixtures.manifest?.orientation ?? [])
    func exifOrientationIgnoredByDefaultAndAppliedOnRequest(_ entry: Manifest.Orientation) throws {
        let url = Fixtures.url(entry.file)
        let plain = try ImageDecoder.decode(contentsOf: url)
        let plainDiff = maxAbsDiff(plain.pixels, try Fixtures.expectedRGB(entry.expectedPlain))
        let applied = try ImageDecoder.decode(contentsOf: url, options: DecodeOptions(applyEXIFOrientation: true))
        let appliedDiff = maxAbsDiff(applied.pixels, try Fixtures.expectedRGB(entry.expectedApplied))
        print("orientation \(entry.file): default max abs diff \(plainDiff), applied max abs diff \(appliedDiff)")
        #expect(plainDiff == 0)
        #expect(appliedDiff == 0)
        #expect(applied.width == entry.appliedWidth && applied.height == entry.appliedHeight)
    }
}
