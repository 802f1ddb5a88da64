import Foundation

/// The image decoders and preprocessor_config.json as fuzz targets (see
/// `PaliGemma.FuzzEntryPoints`).
public enum ImageFuzzEntryPoints {
    /// The pixel budget under fuzzing: small, so that a header declaring a huge image is
    /// refused by the budget check (what is being tested) rather than slowing every run.
    static let maxPixels = 1 << 22

    public static let targets: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
        ("image", image),
        ("preprocessor-config", { bytes in
            guard let config = try? PreprocessorConfig(json: Data(bytes)) else { return }
            _ = try? ImagePreprocessor(config: config)
        }),
    ]

    /// Any image file: probed, decoded with and without EXIF orientation under the budget, and
    /// preprocessed to a small square.
    static func image(_ bytes: [UInt8]) {
        let data = Data(bytes)
        let probe = try? ImageDecoder.probe(data: data, name: "fuzz")
        guard let image = try? ImageDecoder.decode(data: data, name: "fuzz", options: DecodeOptions(applyEXIFOrientation: true, maxPixels: maxPixels))
        else { return }
        if let probe {
            precondition((probe.width, probe.height) == (image.width, image.height) || (probe.width, probe.height) == (image.height, image.width),
                         "probe and decode disagree on the size")
        }
        precondition(image.pixels.count == image.width * image.height * 3, "decoded buffer does not match its size")
        if let pre = try? ImagePreprocessor(config: PreprocessorConfig(height: 16, width: 16)) {
            _ = try? pre.pixelValues(for: image)
        }
    }
}
