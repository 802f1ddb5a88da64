// PNG output through libpng (8-bit gray, gray+alpha, RGB or RGBA).
import CImageCodecs
import Foundation

public enum PNGWriter {
    /// Pixel layouts PNGWriter can write; the raw value is the number of channels.
    public enum Layout: Int, Sendable {
        case gray = 1, grayAlpha = 2, rgb = 3, rgba = 4
    }

    /// Encodes interleaved 8-bit pixels (`width * height * layout.rawValue` bytes).
    public static func encode(pixels: [UInt8], width: Int, height: Int, layout: Layout) throws -> Data {
        let channels = layout.rawValue
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max),
              width.multipliedReportingOverflow(by: height).partialValue / height == width,
              pixels.count == width * height * channels else {
            throw ImageError.invalidArgument(
                "PNG of \(width)x\(height) \(layout) needs \(width)*\(height)*\(channels) bytes, got \(pixels.count)")
        }
        var output: UnsafeMutablePointer<UInt8>?
        var size = 0
        try pixels.withUnsafeBufferPointer { buffer in
            try CodecCall.run(name: "<png output>", what: "PNG encoding") { err in
                pgc_png_encode(buffer.baseAddress, Int32(width), Int32(height), Int32(channels), &output, &size, err)
            }
        }
        guard let output else { throw ImageError.invalidArgument("PNG encoder returned no data") }
        defer { pgc_free(output) }
        return Data(bytes: output, count: size)
    }

    /// Encodes an RGB image.
    public static func encode(_ image: RGBImage) throws -> Data {
        try encode(pixels: image.pixels, width: image.width, height: image.height, layout: .rgb)
    }

    /// Writes an RGB image to `url`.
    public static func write(_ image: RGBImage, to url: URL) throws {
        try write(pixels: image.pixels, width: image.width, height: image.height, layout: .rgb, to: url)
    }

    /// Writes interleaved pixels (e.g. a grayscale mask or an RGBA overlay) to `url`.
    public static func write(pixels: [UInt8], width: Int, height: Int, layout: Layout, to url: URL) throws {
        let data = try encode(pixels: pixels, width: width, height: height, layout: layout)
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw ImageError.writeFailed(file: url.path, reason: error.localizedDescription)
        }
    }
}
