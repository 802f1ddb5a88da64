// Entry point for decoding: sniff the format, enforce the pixel budget, decode with the
// system codec, convert to 8-bit RGB the way transformers' PaliGemma processor does with
// Pillow, and optionally apply the EXIF orientation.
import Foundation

/// Options for `ImageDecoder`.
public struct DecodeOptions: Sendable, Equatable {
    /// Pillow's `Image.MAX_IMAGE_PIXELS` (it warns above this).
    public static let pillowWarningPixels = 89_478_485
    /// Pillow raises `DecompressionBombError` above twice its warning limit.
    public static let pillowErrorPixels = 2 * pillowWarningPixels

    /// Rotate/flip according to the EXIF orientation tag. Off by default, like Pillow's
    /// `Image.open` (and therefore transformers), which ignore it.
    public var applyEXIFOrientation: Bool
    /// Images with more pixels than this are rejected before any pixel is decoded;
    /// nil disables the check. Default: Pillow's error threshold (178,956,970 pixels).
    public var maxPixels: Int?

    public init(applyEXIFOrientation: Bool = false, maxPixels: Int? = DecodeOptions.pillowErrorPixels) {
        self.applyEXIFOrientation = applyEXIFOrientation
        self.maxPixels = maxPixels
    }
}

/// The container formats recognised by their first bytes.
public enum ImageFormat: String, Sendable {
    case jpeg, png, pnm

    static func sniff(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF {
            return .jpeg
        }
        let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        if bytes.count >= 8, zip(bytes.prefix(8), pngSignature).allSatisfy({ $0 == $1 }) {
            return .png
        }
        if bytes.count >= 2, bytes[0] == UInt8(ascii: "P"), (UInt8(ascii: "1")...UInt8(ascii: "6")).contains(bytes[1]) {
            return .pnm
        }
        return nil
    }
}

public enum ImageDecoder {
    /// Decodes an image file to 8-bit RGB. Throws `ImageError` naming the file.
    public static func decode(contentsOf url: URL, options: DecodeOptions = DecodeOptions()) throws -> RGBImage {
        let name = url.path
        let data: Data
        do {
            // Read, not memory-mapped: a file truncated while mapped would raise SIGBUS.
            data = try Data(contentsOf: url)
        } catch {
            throw ImageError.unreadable(file: name, reason: error.localizedDescription)
        }
        return try decode(data: data, name: name, options: options)
    }

    /// Decodes image bytes (e.g. read from stdin); `name` is used in error messages.
    public static func decode(data: Data, name: String, options: DecodeOptions = DecodeOptions()) throws -> RGBImage {
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) throws -> RGBImage in
            try decode(bytes: bytes, name: name, options: options)
        }
    }

    static func decode(bytes: UnsafeRawBufferPointer, name: String, options: DecodeOptions) throws -> RGBImage {
        guard !bytes.isEmpty else {
            throw ImageError.truncated(file: name, reason: "file is empty")
        }
        guard let format = ImageFormat.sniff(bytes) else {
            throw ImageError.unsupportedFormat(file: name, reason: "not a JPEG, PNG or PNM file (\(describeMagic(bytes)))")
        }
        let budget = PixelBudget(name: name, maxPixels: options.maxPixels)
        var image: RGBImage
        switch format {
        case .jpeg: image = try JPEGDecoding.decode(bytes, budget: budget)
        case .png: image = try PNGDecoding.decode(bytes, budget: budget)
        case .pnm: image = try PNMDecoding.decode(bytes, budget: budget)
        }
        if options.applyEXIFOrientation {
            let orientation: EXIFOrientation?
            switch format {
            case .jpeg: orientation = EXIFOrientation.fromJPEG(bytes)
            case .png: orientation = EXIFOrientation.fromPNG(bytes)
            case .pnm: orientation = nil
            }
            if let orientation {
                image = image.applying(orientation)
            }
        }
        return image
    }

    /// Reads only the header and returns (format, width, height) without decoding pixels.
    public static func probe(data: Data, name: String) throws -> (format: ImageFormat, width: Int, height: Int) {
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) throws -> (ImageFormat, Int, Int) in
            guard let format = ImageFormat.sniff(bytes) else {
                throw ImageError.unsupportedFormat(file: name, reason: "not a JPEG, PNG or PNM file (\(describeMagic(bytes)))")
            }
            switch format {
            case .jpeg:
                let info = try JPEGDecoding.readInfo(bytes, name: name)
                return (format, Int(info.width), Int(info.height))
            case .png:
                let info = try PNGDecoding.readInfo(bytes, name: name)
                return (format, Int(info.width), Int(info.height))
            case .pnm:
                let header = try PNMDecoding.readHeader(bytes, name: name)
                return (format, header.width, header.height)
            }
        }
    }

    private static func describeMagic(_ bytes: UnsafeRawBufferPointer) -> String {
        let head = bytes.prefix(12)
        if head.starts(with: [0x47, 0x49, 0x46]) { return "looks like GIF" }
        if head.starts(with: [0x42, 0x4D]) { return "looks like BMP" }
        if head.count >= 12, head.starts(with: Array("RIFF".utf8)), Array(head[8..<12]) == Array("WEBP".utf8) {
            return "looks like WebP"
        }
        if head.count >= 12, Array(head[4..<8]) == Array("ftyp".utf8) { return "looks like HEIF/AVIF" }
        if head.starts(with: [0x49, 0x49, 0x2A, 0x00]) || head.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) {
            return "looks like TIFF"
        }
        return "first bytes " + head.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
    }
}

/// Checks declared dimensions before any pixel memory is allocated.
struct PixelBudget {
    let name: String
    let maxPixels: Int?

    /// Throws for zero-size or over-budget images; returns the pixel count.
    @discardableResult
    func check(width: Int, height: Int) throws -> Int {
        guard width > 0, height > 0 else {
            throw ImageError.emptyImage(file: name, width: width, height: height)
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        if let maxPixels, overflow || pixels > maxPixels {
            throw ImageError.tooManyPixels(file: name, width: width, height: height, limit: maxPixels)
        }
        guard !overflow, pixels <= Int.max / 8 else {
            throw ImageError.unsupportedFormat(file: name, reason: "\(width)x\(height) is too large to address")
        }
        return pixels
    }
}
