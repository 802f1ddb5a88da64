// Errors reported by image decoding, preprocessing and writing. Every case that concerns
// a file names it, so a batch job can say which input was bad.

public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be read from disk.
    case unreadable(file: String, reason: String)
    /// The data is not in a format this package decodes, or uses an unsupported variant.
    case unsupportedFormat(file: String, reason: String)
    /// The codec rejected the data.
    case corrupt(file: String, reason: String)
    /// The data ends before the image does.
    case truncated(file: String, reason: String)
    /// The header declares a width or height of zero.
    case emptyImage(file: String, width: Int, height: Int)
    /// More pixels than the configured budget (a likely decompression bomb).
    case tooManyPixels(file: String, width: Int, height: Int, limit: Int)
    /// A preprocessor_config.json that cannot be used.
    case invalidConfig(file: String, reason: String)
    /// Writing an output file failed.
    case writeFailed(file: String, reason: String)
    /// A caller passed an impossible argument (bad buffer size, non-positive size...).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .unreadable(let file, let reason):
            return "\(file): cannot read file: \(reason)"
        case .unsupportedFormat(let file, let reason):
            return "\(file): unsupported image: \(reason)"
        case .corrupt(let file, let reason):
            return "\(file): corrupt image data: \(reason)"
        case .truncated(let file, let reason):
            return "\(file): truncated image: \(reason)"
        case .emptyImage(let file, let width, let height):
            return "\(file): image has zero size (\(width)x\(height))"
        case .tooManyPixels(let file, let width, let height, let limit):
            return "\(file): image is \(width)x\(height) = \(width * height) pixels, over the limit of "
                + "\(limit) (possible decompression bomb; raise DecodeOptions.maxPixels to allow it)"
        case .invalidConfig(let file, let reason):
            return "\(file): invalid preprocessor config: \(reason)"
        case .writeFailed(let file, let reason):
            return "\(file): cannot write: \(reason)"
        case .invalidArgument(let reason):
            return "invalid argument: \(reason)"
        }
    }
}
