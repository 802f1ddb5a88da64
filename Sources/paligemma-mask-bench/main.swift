// Times the VQ-VAE mask decoder (16 <seg> codes -> 64x64) and the placement of the mask into
// a 640x480 image, and prints one JSON object. Build with
// `swift build -c release --product paligemma-mask-bench`.
//
// Usage: paligemma-mask-bench VAE.npz [--repeat N]
//   (the test fixture Tests/PaliGemmaTests/Fixtures/masks/vae-random.npz has the real shapes)
import Foundation
import PaliGemma
import PaliGemmaJSON

/// The printed object (milliseconds to 3 decimals, the load to 1).
struct Report: Encodable {
    let decodeMedianMs, decodeMinMs: Double
    let iterations: Int
    let loadMs, placeMedianMs: Double
    let threads: Int

    enum CodingKeys: String, CodingKey {
        case decodeMedianMs = "decode_median_ms", decodeMinMs = "decode_min_ms", iterations, loadMs = "load_ms"
        case placeMedianMs = "place_640x480_median_ms", threads
    }
}

var arguments = CommandLine.arguments.dropFirst()[...]
var path: String?
var repeats = 200
while let argument = arguments.popFirst() {
    if argument == "--repeat", let value = arguments.popFirst(), let n = Int(value), n > 0 {
        repeats = n
    } else if path == nil, !argument.hasPrefix("-") {
        path = argument
    } else {
        path = nil
        break
    }
}
guard let path else {
    FileHandle.standardError.write(Data("usage: paligemma-mask-bench VAE.npz [--repeat N]\n".utf8))
    exit(64)
}
do {
    let clock = ContinuousClock()
    var decoder: MaskDecoder?
    let load = try clock.measure { decoder = try MaskDecoder(path: path) }
    guard let decoder else { exit(66) }
    let r = try decoder.benchmark(iterations: repeats)
    let loadMs = Double(load.components.seconds) * 1000 + Double(load.components.attoseconds) / 1e15
    func ms(_ x: Double) -> Double { JSONOutput.rounded(x, decimals: 3) }
    print(try JSONOutput.string(Report(
        decodeMedianMs: ms(r.decodeMedianMs), decodeMinMs: ms(r.decodeMinMs), iterations: r.iterations,
        loadMs: JSONOutput.rounded(loadMs, decimals: 1), placeMedianMs: ms(r.placeMedianMs), threads: r.threads)))
} catch {
    FileHandle.standardError.write(Data("paligemma-mask-bench: error: \(error)\n".utf8))
    exit(66)
}
