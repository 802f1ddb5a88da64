// Times decode + resize + normalise of an image file for PaliGemma's square sizes and
// prints one JSON object (JSONOutput: sorted keys). Used by scripts/bench_image.py; build with
// `swift build -c release --product paligemma-image-bench`.
//
// Usage: paligemma-image-bench IMAGE [--sizes 224,896] [--repeat N] [--filter bicubic|bilinear]
import Foundation
import PaliGemmaImage
import PaliGemmaJSON

struct Options {
    var path = ""
    var sizes = [224, 896]
    var repeats = 7
    var filter = ResizeFilter.bicubic
}

func parse(_ arguments: [String]) -> Options? {
    var options = Options()
    var rest = arguments.dropFirst()[...]
    while let argument = rest.popFirst() {
        switch argument {
        case "--sizes":
            guard let value = rest.popFirst() else { return nil }
            let sizes = value.split(separator: ",").compactMap { Int($0) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 }) else { return nil }
            options.sizes = sizes
        case "--repeat":
            guard let value = rest.popFirst(), let n = Int(value), n > 0 else { return nil }
            options.repeats = n
        case "--filter":
            guard let value = rest.popFirst(), let filter = ResizeFilter(rawValue: value) else { return nil }
            options.filter = filter
        default:
            guard options.path.isEmpty, !argument.hasPrefix("-") else { return nil }
            options.path = argument
        }
    }
    return options.path.isEmpty ? nil : options
}

func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1e3 + Double(attoseconds) / 1e15
}

/// Milliseconds of the timed runs, to 3 decimals.
struct Timing: Encodable {
    let min, median: Double

    init(_ samples: [Double]) {
        let sorted = samples.sorted()
        min = JSONOutput.rounded(sorted[0], decimals: 3)
        median = JSONOutput.rounded(sorted[sorted.count / 2], decimals: 3)
    }
}

/// One square size.
struct SizeResult: Encodable {
    let size: Int
    let filter: String
    let decode, resize, normalize, total: Timing
    /// The sum of the pixel values, to 3 decimals (the same input gives the same sum).
    let checksum: Double

    enum CodingKeys: String, CodingKey {
        case size, filter, decode = "decode_ms", resize = "resize_ms", normalize = "normalize_ms", total = "total_ms", checksum
    }
}

/// The printed object.
struct Report: Encodable {
    let implementation = "swift"
    let file: String
    let width, height, repeats, cores: Int
    let results: [SizeResult]
}

guard let options = parse(CommandLine.arguments) else {
    FileHandle.standardError.write(Data("usage: paligemma-image-bench IMAGE [--sizes 224,896] [--repeat N] [--filter bicubic|bilinear]\n".utf8))
    exit(2)
}

do {
    let url = URL(fileURLWithPath: options.path)
    let clock = ContinuousClock()
    var results: [SizeResult] = []
    var imageSize = (0, 0)
    for size in options.sizes {
        let preprocessor = try ImagePreprocessor(config: PreprocessorConfig(height: size, width: size), filter: options.filter)
        var decode: [Double] = [], resize: [Double] = [], normalize: [Double] = [], total: [Double] = []
        var checksum: Double = 0
        for _ in 0..<(options.repeats + 1) {  // the first run warms caches and is dropped
            let t0 = clock.now
            let image = try ImageDecoder.decode(contentsOf: url)
            let t1 = clock.now
            let resized = try preprocessor.resizedImage(image)
            let t2 = clock.now
            let values = try preprocessor.pixelValues(for: resized)  // already the target size: no resize
            let t3 = clock.now
            imageSize = (image.width, image.height)
            checksum = values.reduce(0) { $0 + Double($1) }
            decode.append(milliseconds(t1 - t0))
            resize.append(milliseconds(t2 - t1))
            normalize.append(milliseconds(t3 - t2))
            total.append(milliseconds(t3 - t0))
        }
        results.append(SizeResult(
            size: size, filter: options.filter.rawValue,
            decode: Timing(Array(decode.dropFirst())), resize: Timing(Array(resize.dropFirst())),
            normalize: Timing(Array(normalize.dropFirst())), total: Timing(Array(total.dropFirst())),
            checksum: JSONOutput.rounded(checksum, decimals: 3)))
    }
    print(try JSONOutput.string(Report(
        file: options.path, width: imageSize.0, height: imageSize.1, repeats: options.repeats,
        cores: ProcessInfo.processInfo.activeProcessorCount, results: results)))
} catch {
    FileHandle.standardError.write(Data("paligemma-image-bench: \(error)\n".utf8))
    exit(1)
}
