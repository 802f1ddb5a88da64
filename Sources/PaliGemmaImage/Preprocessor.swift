// preprocessor_config.json and the SigLIP/PaliGemma pixel pipeline of transformers'
// PIL backend (SiglipImageProcessorPil): resize with Pillow, rescale (uint8 -> float64 *
// factor -> float32), normalise ((x - mean) / std in float32), channels first.
import Foundation

/// The fields of a Hugging Face `preprocessor_config.json` that affect pixels. Absent
/// fields take the SigLIP image processor's defaults.
public struct PreprocessorConfig: Codable, Sendable, Equatable {
    public var height: Int
    public var width: Int
    public var imageMean: [Double]
    public var imageStd: [Double]
    public var rescaleFactor: Double
    public var doResize: Bool
    public var doRescale: Bool
    public var doNormalize: Bool
    /// PIL.Image.Resampling value: 3 bicubic (default), 2 bilinear.
    public var resample: Int
    /// Number of image tokens the model expects (PaliGemma: (size / 14)^2), if given.
    public var imageSeqLength: Int?

    public init(height: Int = 224, width: Int = 224, imageMean: [Double] = [0.5, 0.5, 0.5],
                imageStd: [Double] = [0.5, 0.5, 0.5], rescaleFactor: Double = 1.0 / 255.0,
                doResize: Bool = true, doRescale: Bool = true, doNormalize: Bool = true,
                resample: Int = ResizeFilter.bicubic.pilValue, imageSeqLength: Int? = nil) {
        self.height = height
        self.width = width
        self.imageMean = imageMean
        self.imageStd = imageStd
        self.rescaleFactor = rescaleFactor
        self.doResize = doResize
        self.doRescale = doRescale
        self.doNormalize = doNormalize
        self.resample = resample
        self.imageSeqLength = imageSeqLength
    }

    /// Reads a preprocessor_config.json; errors name the file.
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ImageError.unreadable(file: url.path, reason: error.localizedDescription)
        }
        try self.init(json: data, name: url.path)
    }

    public init(json: Data, name: String = "preprocessor_config.json") throws {
        do {
            self = try JSONDecoder().decode(PreprocessorConfig.self, from: json)
        } catch let error as ImageError {
            throw error
        } catch {
            throw ImageError.invalidConfig(file: name, reason: String(describing: error))
        }
        try validate(name: name)
    }

    func validate(name: String) throws {
        guard height > 0, width > 0, height <= 1 << 16, width <= 1 << 16 else {
            throw ImageError.invalidConfig(file: name, reason: "size must be positive, got \(height)x\(width)")
        }
        guard imageMean.count == 3, imageStd.count == 3, imageStd.allSatisfy({ $0 != 0 }) else {
            throw ImageError.invalidConfig(file: name, reason: "image_mean and image_std need 3 values, std nonzero")
        }
        guard ResizeFilter(pilValue: resample) != nil else {
            throw ImageError.invalidConfig(file: name, reason: "resample \(resample) is not bilinear (2) or bicubic (3)")
        }
    }

    private enum Keys: String, CodingKey {
        case size, imageMean = "image_mean", imageStd = "image_std", rescaleFactor = "rescale_factor"
        case doResize = "do_resize", doRescale = "do_rescale", doNormalize = "do_normalize"
        case resample, imageSeqLength = "image_seq_length"
    }

    private enum SizeKeys: String, CodingKey {
        case height, width, shortestEdge = "shortest_edge"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let defaults = PreprocessorConfig()
        let hasSize = try c.contains(.size) && !c.decodeNil(forKey: .size)
        if hasSize {
            let size = try c.nestedContainer(keyedBy: SizeKeys.self, forKey: .size)
            if let edge = try size.decodeIfPresent(Int.self, forKey: .shortestEdge),
               !size.contains(.height) {
                height = edge
                width = edge
            } else {
                height = try size.decode(Int.self, forKey: .height)
                width = try size.decode(Int.self, forKey: .width)
            }
        } else {
            height = defaults.height
            width = defaults.width
        }
        imageMean = try Self.triple(c, .imageMean) ?? defaults.imageMean
        imageStd = try Self.triple(c, .imageStd) ?? defaults.imageStd
        rescaleFactor = try c.decodeIfPresent(Double.self, forKey: .rescaleFactor) ?? defaults.rescaleFactor
        doResize = try c.decodeIfPresent(Bool.self, forKey: .doResize) ?? true
        doRescale = try c.decodeIfPresent(Bool.self, forKey: .doRescale) ?? true
        doNormalize = try c.decodeIfPresent(Bool.self, forKey: .doNormalize) ?? true
        resample = try c.decodeIfPresent(Int.self, forKey: .resample) ?? defaults.resample
        imageSeqLength = try c.decodeIfPresent(Int.self, forKey: .imageSeqLength)
    }

    /// A list of three numbers, or one number meaning all channels.
    private static func triple(_ c: KeyedDecodingContainer<Keys>, _ key: Keys) throws -> [Double]? {
        guard c.contains(key) else { return nil }
        if try c.decodeNil(forKey: key) { return nil }
        if let one = try? c.decode(Double.self, forKey: key) { return [one, one, one] }
        return try c.decode([Double].self, forKey: key)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        var size = c.nestedContainer(keyedBy: SizeKeys.self, forKey: .size)
        try size.encode(height, forKey: .height)
        try size.encode(width, forKey: .width)
        try c.encode(imageMean, forKey: .imageMean)
        try c.encode(imageStd, forKey: .imageStd)
        try c.encode(rescaleFactor, forKey: .rescaleFactor)
        try c.encode(doResize, forKey: .doResize)
        try c.encode(doRescale, forKey: .doRescale)
        try c.encode(doNormalize, forKey: .doNormalize)
        try c.encode(resample, forKey: .resample)
        try c.encodeIfPresent(imageSeqLength, forKey: .imageSeqLength)
    }
}

/// Turns an `RGBImage` into the model's pixel tensor.
public struct ImagePreprocessor: Sendable {
    public let config: PreprocessorConfig
    public let filter: ResizeFilter
    /// Per channel, the float for each uint8 value (rescale and normalise folded in).
    private let tables: [[Float]]

    /// `filter` overrides the config's `resample` (e.g. `.bilinear` to match big_vision).
    public init(config: PreprocessorConfig = PreprocessorConfig(), filter: ResizeFilter? = nil) throws {
        try config.validate(name: "preprocessor config")
        self.config = config
        self.filter = filter ?? ResizeFilter(pilValue: config.resample) ?? .bicubic
        self.tables = (0..<3).map { channel in
            (0..<256).map { value in
                Self.transform(UInt8(value), channel: channel, config: config)
            }
        }
    }

    /// transformers' arithmetic for one sample: numpy rescale in float64 then float32,
    /// then float32 (x - mean) / std with mean and std rounded to float32.
    static func transform(_ value: UInt8, channel: Int, config: PreprocessorConfig) -> Float {
        var x = config.doRescale ? Float(Double(value) * config.rescaleFactor) : Float(value)
        if config.doNormalize {
            x = (x - Float(config.imageMean[channel])) / Float(config.imageStd[channel])
        }
        return x
    }

    /// [3, height, width] for the configured size (the input size when not resizing).
    public func outputShape(for image: RGBImage) -> [Int] {
        config.doResize ? [3, config.height, config.width] : [3, image.height, image.width]
    }

    /// The image resized as transformers would (unchanged when do_resize is false).
    public func resizedImage(_ image: RGBImage) throws -> RGBImage {
        guard config.doResize else { return image }
        return try image.resized(width: config.width, height: config.height, filter: filter)
    }

    /// The pixel tensor, channels first: values[c * H * W + y * W + x].
    public func pixelValues(for image: RGBImage) throws -> [Float] {
        let resized = try resizedImage(image)
        let plane = resized.width * resized.height
        return [Float](unsafeUninitializedCapacity: plane * 3) { out, initialized in
            resized.pixels.withUnsafeBufferPointer { src in
                tables[0].withUnsafeBufferPointer { t0 in
                    tables[1].withUnsafeBufferPointer { t1 in
                        tables[2].withUnsafeBufferPointer { t2 in
                            for i in 0..<plane {
                                out[i] = t0[Int(src[i * 3])]
                                out[plane + i] = t1[Int(src[i * 3 + 1])]
                                out[2 * plane + i] = t2[Int(src[i * 3 + 2])]
                            }
                        }
                    }
                }
            }
            initialized = plane * 3
        }
    }
}
