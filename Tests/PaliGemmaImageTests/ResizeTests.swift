// Parity of resizing with Pillow's Image.resize and of the pixel tensor with
// transformers' SiglipImageProcessorPil, over the fixture corpus.
import Foundation
import Testing
@testable import PaliGemmaImage

@Suite struct ResizeParityTests {
    /// Every resize equals Pillow's uint8 output: the full image where the fixture stores
    /// it, otherwise the CRC-32 of all bytes plus sampled pixels (whose worst difference
    /// is printed).
    @Test(arguments: Fixtures.manifest?.resize ?? [])
    func resizedUInt8MatchesPillow(_ entry: Manifest.Resize) throws {
        let filter = try #require(ResizeFilter(rawValue: entry.filter))
        let source = try TestImages.load(entry.source)
        let out = try source.resized(width: entry.width, height: entry.height, filter: filter)
        #expect(out.width == entry.width && out.height == entry.height)
        var sampleWorst = 0
        for s in entry.samples {
            let i = (s[1] * out.width + s[0]) * 3
            for c in 0..<3 { sampleWorst = max(sampleWorst, abs(Int(out.pixels[i + c]) - s[2 + c])) }
        }
        var message = "resize \(entry.testDescription): sampled max abs diff \(sampleWorst)"
        if let expected = entry.expected {
            let worst = maxAbsDiff(out.pixels, try Fixtures.expectedRGB(expected))
            message += ", full max abs diff \(worst)"
            #expect(worst == 0)
        }
        let crc = CRC32.checksum(out.pixels)
        print(message + (crc == entry.crc32 ? ", crc32 equal" : ", CRC32 DIFFERS"))
        #expect(sampleWorst == 0)
        #expect(crc == entry.crc32)
    }

    @Test func sameSizeIsIdentityAndBadSizesThrow() throws {
        let image = TestImages.pattern(width: 31, height: 17)
        #expect(try image.resized(width: 31, height: 17) == image)
        #expect(throws: ImageError.self) { try image.resized(width: 0, height: 5) }
        #expect(throws: ImageError.self) { try image.resized(width: 5, height: -1) }
    }
}

@Suite struct TensorParityTests {
    /// The float32 CHW tensor equals transformers' bit for bit: CRC-32 of all values,
    /// sampled values, and every value for the fixture that stores the full tensor.
    @Test(arguments: Fixtures.manifest?.tensor ?? [])
    func pixelValuesMatchTransformers(_ entry: Manifest.Tensor) throws {
        let filter = try #require(ResizeFilter(rawValue: entry.filter))
        let config = PreprocessorConfig(height: entry.size, width: entry.size)
        let preprocessor = try ImagePreprocessor(config: config, filter: filter)
        let image = try TestImages.load(entry.source)
        let values = try preprocessor.pixelValues(for: image)
        #expect(preprocessor.outputShape(for: image) == [3, entry.size, entry.size])
        #expect(values.count == 3 * entry.size * entry.size)
        var worst: Double = 0
        for s in entry.samples {
            worst = max(worst, abs(Double(values[Int(s[0])]) - s[1]))
        }
        var message = "tensor \(entry.testDescription): sampled max abs diff \(worst)"
        if let full = entry.full {
            let data = try Data(contentsOf: Fixtures.url(full))
            let expected = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(expected.count == values.count)
            var fullWorst: Float = 0
            for (a, b) in zip(values, expected) { fullWorst = max(fullWorst, abs(a - b)) }
            message += ", full max abs diff \(fullWorst)"
            #expect(fullWorst == 0)
        }
        let crc = CRC32.checksum(values)
        print(message + (crc == entry.crc32 ? ", crc32 equal" : ", CRC32 DIFFERS"))
        #expect(worst == 0)
        #expect(crc == entry.crc32)
    }

    /// A non-default mean/std: every uint8 value maps to transformers' float exactly.
    @Test func everyValueMapsLikeTransformersWithImageNetStatistics() throws {
        let lut = try #require(Fixtures.manifest?.lut)
        let data = try Data(contentsOf: Fixtures.url(lut.values))
        let expected = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }  // [3, 1, 256]
        #expect(expected.count == 3 * 256)
        let config = PreprocessorConfig(height: 1, width: 256, imageMean: lut.imageMean, imageStd: lut.imageStd,
                                        rescaleFactor: lut.rescaleFactor, doResize: false)
        var ramp = [UInt8](repeating: 0, count: 256 * 3)
        for v in 0..<256 { ramp[v * 3] = UInt8(v); ramp[v * 3 + 1] = UInt8(v); ramp[v * 3 + 2] = UInt8(v) }
        let values = try ImagePreprocessor(config: config).pixelValues(for: RGBImage(width: 256, height: 1, pixels: ramp))
        var worst: Float = 0
        for (a, b) in zip(values, expected) { worst = max(worst, abs(a - b)) }
        print("imagenet normalisation: max abs diff \(worst) over 768 values")
        #expect(values.count == expected.count)
        #expect(worst == 0)
    }
}

@Suite struct PreprocessorConfigTests {
    @Test func readsPaliGemmaConfig() throws {
        let json = """
        {"do_convert_rgb": null, "do_normalize": true, "do_rescale": true, "do_resize": true,
         "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
         "image_seq_length": 1024, "image_std": [0.5, 0.5, 0.5], "processor_class": "PaliGemmaProcessor",
         "resample": 2, "rescale_factor": 0.00392156862745098, "size": {"height": 448, "width": 448}}
        """
        let config = try PreprocessorConfig(json: Data(json.utf8))
        #expect(config.height == 448 && config.width == 448)
        #expect(config.imageSeqLength == 1024)
        #expect(config.rescaleFactor == 1.0 / 255.0)
        #expect(try ImagePreprocessor(config: config).filter == .bilinear)
    }

    @Test func absentFieldsTakeSiglipDefaults() throws {
        let config = try PreprocessorConfig(json: Data("{}".utf8))
        #expect(config == PreprocessorConfig())
        #expect(config.height == 224 && config.resample == 3 && config.imageMean == [0.5, 0.5, 0.5])
        let scalar = try PreprocessorConfig(json: Data(#"{"image_mean": 0.25, "size": {"shortest_edge": 96}}"#.utf8))
        #expect(scalar.imageMean == [0.25, 0.25, 0.25] && scalar.height == 96 && scalar.width == 96)
    }

    @Test func badConfigsNameTheFile() {
        for json in [#"{"size": {"height": 0, "width": 4}}"#, #"{"resample": 1}"#, #"{"image_std": [1, 0, 1]}"#, "[1"] {
            do {
                _ = try PreprocessorConfig(json: Data(json.utf8), name: "cfg.json")
                Issue.record("accepted \(json)")
            } catch let error as ImageError {
                guard case .invalidConfig(let file, _) = error else {
                    Issue.record("wrong error \(error)")
                    continue
                }
                #expect(file == "cfg.json")
            } catch {
                Issue.record("untyped error \(error)")
            }
        }
    }
}
