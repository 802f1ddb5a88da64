// Loads Fixtures/manifest.json (written by scripts/make_image_fixtures.py with Pillow and
// transformers) and provides the helpers the parity tests share.
import Foundation
import Testing
@testable import PaliGemmaImage

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ relative: String) -> URL {
        directory.appendingPathComponent(relative)
    }

    /// nil when the manifest is missing or unreadable; `ManifestTests` fails in that case,
    /// so the parametrised tests cannot pass vacuously.
    static let manifest: Manifest? = {
        guard let data = try? Data(contentsOf: url("manifest.json")) else { return nil }
        return try? JSONDecoder().decode(Manifest.self, from: data)
    }()

    /// Expected RGB bytes: raw `.rgb` files as they are, `.png` files through the PNG
    /// decoder (8-bit RGB PNG decoding is itself checked against raw bytes).
    static func expectedRGB(_ relative: String) throws -> [UInt8] {
        if relative.hasSuffix(".rgb") {
            return [UInt8](try Data(contentsOf: url(relative)))
        }
        return try ImageDecoder.decode(contentsOf: url(relative)).pixels
    }
}

struct Manifest: Decodable, Sendable {
    struct Decode: Decodable, Sendable, CustomTestStringConvertible {
        let name, file, note, expected, source: String
        let width, height: Int
        let pillowMode: String
        let pillowMaxAbsDiff: Int?
        var testDescription: String { name }

        enum CodingKeys: String, CodingKey {
            case name, file, note, expected, source, width, height
            case pillowMode = "pillow_mode", pillowMaxAbsDiff = "pillow_max_abs_diff"
        }
    }

    struct Orientation: Decodable, Sendable, CustomTestStringConvertible {
        let file: String
        let orientation: Int
        let expectedPlain, expectedApplied: String
        let appliedWidth, appliedHeight: Int
        var testDescription: String { file }

        enum CodingKeys: String, CodingKey {
            case file, orientation, expectedPlain = "expected_plain", expectedApplied = "expected_applied"
            case appliedWidth = "applied_width", appliedHeight = "applied_height"
        }
    }

    /// Either a generated pattern of the given size or a fixture file.
    struct Source: Decodable, Sendable, CustomStringConvertible {
        let pattern: [Int]?
        let file: String?
        var description: String {
            if let pattern { return "pattern \(pattern[0])x\(pattern[1])" }
            return file ?? "?"
        }
    }

    struct Resize: Decodable, Sendable, CustomTestStringConvertible {
        let source: Source
        let width, height: Int
        let filter: String
        let crc32: UInt32
        let samples: [[Int]]  // x, y, r, g, b
        let expected: String?
        var testDescription: String { "\(source) -> \(width)x\(height) \(filter)" }
    }

    struct Tensor: Decodable, Sendable, CustomTestStringConvertible {
        let source: Source
        let size: Int
        let filter: String
        let crc32: UInt32
        let samples: [[Double]]  // flat index, value
        let full: String?
        var testDescription: String { "\(source) -> \(size) \(filter)" }
    }

    struct LUT: Decodable, Sendable {
        let imageMean, imageStd: [Double]
        let rescaleFactor: Double
        let values: String

        enum CodingKeys: String, CodingKey {
            case imageMean = "image_mean", imageStd = "image_std", rescaleFactor = "rescale_factor", values
        }
    }

    let decode: [Decode]
    let orientation: [Orientation]
    let resize: [Resize]
    let tensor: [Tensor]
    let lut: LUT
}

enum TestImages {
    /// The integer pattern of make_image_fixtures.py's `pattern(w, h)`.
    static func pattern(width: Int, height: Int) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let i = (y * width + x) * 3
                pixels[i] = UInt8(((x ^ y) * 3 + (x * x) / 7 + y) & 255)
                pixels[i + 1] = UInt8(((x * 5 + y * 3) ^ ((x * y) >> 4)) & 255)
                pixels[i + 2] = ((x / 8 + y / 8) % 2) == 1 ? 255 : 0
            }
        }
        return RGBImage(uncheckedWidth: width, height: height, pixels: pixels)
    }

    static func load(_ source: Manifest.Source) throws -> RGBImage {
        if let p = source.pattern {
            return pattern(width: p[0], height: p[1])
        }
        return try ImageDecoder.decode(contentsOf: Fixtures.url(source.file ?? ""))
    }
}

/// Largest absolute difference between two equally long byte arrays (Int.max when the
/// lengths differ, so a size mismatch can never look like a match).
func maxAbsDiff(_ a: [UInt8], _ b: [UInt8]) -> Int {
    guard a.count == b.count else { return Int.max }
    var worst = 0
    for i in 0..<a.count {
        worst = max(worst, abs(Int(a[i]) - Int(b[i])))
    }
    return worst
}

/// zlib's CRC-32, to compare against the hashes Python's zlib.crc32 wrote.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func checksum(_ floats: [Float]) -> UInt32 {
        floats.withUnsafeBytes { checksum($0) }  // little-endian float32, as numpy "<f4"
    }
}
