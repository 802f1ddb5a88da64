// The decoded image type shared by decoding, resizing, preprocessing and drawing.

/// An 8-bit RGB image, rows top to bottom, pixels interleaved as R, G, B.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes.
    public var pixels: [UInt8]

    /// Wraps existing pixels; throws `ImageError.invalidArgument` when the buffer does
    /// not hold exactly `width * height * 3` bytes or a dimension is not positive.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw ImageError.invalidArgument("image size must be positive, got \(width)x\(height)")
        }
        let (count, overflow) = width.multipliedReportingOverflow(by: height * 3)
        guard !overflow, height <= Int.max / 3, pixels.count == count else {
            throw ImageError.invalidArgument(
                "\(width)x\(height) RGB image needs \(width)*\(height)*3 bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A uniformly filled image (sizes below 1 are clamped to 1).
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        self.width = max(1, width)
        self.height = max(1, height)
        var pixels = [UInt8](repeating: 0, count: self.width * self.height * 3)
        for i in stride(from: 0, to: pixels.count, by: 3) {
            pixels[i] = fill.0
            pixels[i + 1] = fill.1
            pixels[i + 2] = fill.2
        }
        self.pixels = pixels
    }

    /// Internal initialiser for buffers whose size the caller has already established.
    init(uncheckedWidth width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The pixel at (x, y) as (r, g, b), or nil outside the image.
    public func pixel(x: Int, y: Int) -> (UInt8, UInt8, UInt8)? {
        guard x >= 0, y >= 0, x < width, y < height else { return nil }
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }
}
