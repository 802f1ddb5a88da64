import Foundation

/// Timings of one request, in seconds (decode per token in milliseconds).
public struct RequestTimings: Codable, Sendable {
    public var load: Double = 0
    /// Image decoding and preprocessing.
    public var image: Double = 0
    public var vision: Double = 0
    public var prefill: Double = 0
    public var decode: Double = 0
    public var decodeMsPerToken: Double = 0
    public var total: Double = 0

    /// Time to first token: image, vision tower and prefill.
    public var ttft: Double { image + vision + prefill }

    enum CodingKeys: String, CodingKey {
        case load = "load_s", image = "image_s", vision = "vision_s", prefill = "prefill_s", decode = "decode_s"
        case decodeMsPerToken = "decode_ms_per_token", total = "total_s", ttft = "ttft_s"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(load, forKey: .load)
        try c.encode(image, forKey: .image)
        try c.encode(vision, forKey: .vision)
        try c.encode(prefill, forKey: .prefill)
        try c.encode(ttft, forKey: .ttft)
        try c.encode(decode, forKey: .decode)
        try c.encode(decodeMsPerToken, forKey: .decodeMsPerToken)
        try c.encode(total, forKey: .total)
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        load = try c.decode(Double.self, forKey: .load)
        image = try c.decode(Double.self, forKey: .image)
        vision = try c.decode(Double.self, forKey: .vision)
        prefill = try c.decode(Double.self, forKey: .prefill)
        decode = try c.decode(Double.self, forKey: .decode)
        decodeMsPerToken = try c.decode(Double.self, forKey: .decodeMsPerToken)
        total = try c.decode(Double.self, forKey: .total)
    }
}

/// The answer to one request.
public struct GenerationResult: Sendable {
    /// The answer with control tokens removed (loc/seg tokens stay: they are the answer).
    public var text: String
    /// Generated ids (without the stop token).
    public var tokens: [Int]
    /// The whole prompt: every image's tokens, <bos>, prompt, "\n".
    public var promptIDs: [Int]
    public var stopReason: StopReason
    public var timings: RequestTimings
    /// How many images the prompt held (I).
    public var imageCount: Int = 1
    /// The pixel tensors [I, 3, S, S] the model saw, one per image (kept only when asked).
    public var pixelValues: [Float]?
    /// Logits of each sampling step [steps, V] (kept only when asked): the last prompt position,
    /// then after each generated token.
    public var stepLogits: [[Float]]?
}

/// A model with its tokenizer and image preprocessor: text and pictures in, text out.
/// Immutable and shareable across threads; each `generate` call has its own state.
public final class PaliGemmaPipeline: Sendable {
    public let model: PaliGemmaModel
    public let tokenizer: Tokenizer
    public let preprocessor: ImagePreprocessor
    public let directory: URL
    public let loadSeconds: Double

    /// Loads the checkpoint folder `directory` (with a PEFT LoRA adapter folder applied when
    /// `adapter` is given), its tokenizer and preprocessor.
    public init(directory: URL, configStrictness: ConfigStrictness = .lenient, quantization: Quantization = .none,
                resize: ResizeFilter? = nil, adapter: URL? = nil) throws {
        let start = Date()
        self.directory = directory
        model = try PaliGemmaModel(directory: directory, configStrictness: configStrictness,
                                   quantization: quantization, adapter: adapter)
        tokenizer = try Tokenizer.load(directory: directory)
        let size = model.config.visionConfig.imageSize
        let configURL = directory.appendingPathComponent("preprocessor_config.json")
        var pre = FileManager.default.fileExists(atPath: configURL.path)
            ? try PreprocessorConfig(contentsOf: configURL)
            : PreprocessorConfig(height: size, width: size)
        guard pre.height == size, pre.width == size else {
            throw PaliGemmaError.config(path: configURL.path, key: "size",
                reason: "\(pre.width)x\(pre.height) differs from the vision tower's \(size)x\(size)")
        }
        if let n = pre.imageSeqLength, n != model.config.numImageTokens {
            throw PaliGemmaError.config(path: configURL.path, key: "image_seq_length",
                reason: "\(n) differs from the model's \(model.config.numImageTokens) image tokens")
        }
        pre.imageSeqLength = model.config.numImageTokens
        preprocessor = try ImagePreprocessor(config: pre, filter: resize)
        guard let bos = tokenizer.bosID, let eos = tokenizer.eosID else {
            throw PaliGemmaError.config(path: directory.path, key: nil, reason: "the tokenizer defines no <bos> or <eos> id")
        }
        guard Int(max(bos, eos)) < model.decoder.vocabRows, tokenizer.vocabularySize <= model.decoder.vocabRows else {
            throw PaliGemmaError.config(path: directory.path, key: nil,
                reason: "the tokenizer's \(tokenizer.vocabularySize) pieces do not fit the model's \(model.decoder.vocabRows) embedding rows")
        }
        loadSeconds = Date().timeIntervalSince(start)
    }

    public var eosID: Int { Int(tokenizer.eosID ?? 1) }

    /// The prompt as transformers' PaliGemma processor builds it for `images` images:
    /// `<image>` x N for each image, `<bos>`, then prompt + "\n" tokenized together.
    public func promptIDs(_ prompt: String, images: Int = 1) -> [Int] {
        let n = model.config.numImageTokens * max(images, 0)
        let bos = Int(tokenizer.bosID ?? 2)
        return [Int](repeating: model.config.imageTokenIndex, count: n) + [bos]
            + tokenizer.encode(prompt + "\n").map(Int.init)
    }

    /// The pixel tensor [3, S, S] for an image.
    public func pixelValues(_ image: RGBImage) throws -> [Float] { try preprocessor.pixelValues(for: image) }

    /// Generates an answer about one image. `onText` receives the answer piece by piece (valid
    /// UTF-8 at every call; control tokens removed) and may stop generation.
    public func generate(image: RGBImage, prompt: String, options: GenerationOptions = GenerationOptions(),
                         keepPixels: Bool = false, keepLogits: Bool = false,
                         onText: (String) -> StreamControl = { _ in .continue }) throws -> GenerationResult {
        try generate(images: [image], prompt: prompt, options: options, keepPixels: keepPixels, keepLogits: keepLogits,
                     onText: onText)
    }

    /// Generates an answer about several images (at least one), in order: each goes through
    /// the vision tower on its own and their image tokens form one prefix, as transformers'
    /// processor lays them out for a list of images.
    public func generate(images: [RGBImage], prompt: String, options: GenerationOptions = GenerationOptions(),
                         keepPixels: Bool = false, keepLogits: Bool = false,
                         onText: (String) -> StreamControl = { _ in .continue }) throws -> GenerationResult {
        let clock = Date()
        let pixels = try images.map(pixelValues)
        let imageSeconds = Date().timeIntervalSince(clock)
        var result = try generate(pixels: pixels, prompt: prompt, options: options, keepLogits: keepLogits, onText: onText)
        result.timings.image = imageSeconds
        result.timings.total += imageSeconds
        if keepPixels { result.pixelValues = pixels.flatMap { $0 } }
        return result
    }

    /// Generates from a ready pixel tensor [3, S, S].
    public func generate(pixels: [Float], prompt: String, options: GenerationOptions = GenerationOptions(),
                         keepLogits: Bool = false,
                         onText: (String) -> StreamControl = { _ in .continue }) throws -> GenerationResult {
        try generate(pixels: [pixels], prompt: prompt, options: options, keepLogits: keepLogits, onText: onText)
    }

    /// Generates from ready pixel tensors [3, S, S], one per image, in order.
    public func generate(pixels: [[Float]], prompt: String, options: GenerationOptions = GenerationOptions(),
                         keepLogits: Bool = false,
                         onText: (String) -> StreamControl = { _ in .continue }) throws -> GenerationResult {
        let start = Date()
        guard !pixels.isEmpty else { throw PaliGemmaError.input("no image: PaliGemma needs at least one") }
        let ids = promptIDs(prompt, images: pixels.count)
        let limit = model.config.textConfig.maxPositionEmbeddings
        guard ids.count + options.maxNewTokens <= limit else {  // before the vision tower runs
            let images = pixels.count == 1 ? "" : " (\(pixels.count) images)"
            throw PaliGemmaError.input("prompt of \(ids.count) tokens\(images) + \(options.maxNewTokens) new tokens exceeds the model's \(limit) positions")
        }
        var options = options
        options.stopTokens.insert(eosID)
        let features = try model.imageFeatures(pixels: pixels)
        let visionSeconds = Date().timeIntervalSince(start)
        let generator = try TokenGenerator(model: model, promptIDs: ids, imageFeatures: features, options: options,
                                           detokenizer: tokenizer.streamingDecoder(skipSpecial: true))
        var logits: [[Float]] = []
        let out = try model.run(generator) { event, row in
            if keepLogits { logits.append(Array(row)) }
            return event.text.isEmpty ? .continue : onText(event.text)
        }
        let text = generator.text
        if !generator.tail.isEmpty { _ = onText(generator.tail) }
        var timings = RequestTimings()
        timings.load = loadSeconds
        timings.vision = visionSeconds
        timings.prefill = out.timings.prefill
        timings.decode = out.timings.decodeTotal
        timings.decodeMsPerToken = out.timings.decodeMillisecondsPerToken
        timings.total = Date().timeIntervalSince(start)
        return GenerationResult(text: text, tokens: out.tokens, promptIDs: ids, stopReason: out.stopReason,
                                timings: timings, imageCount: pixels.count, pixelValues: nil,
                                stepLogits: keepLogits ? logits : nil)
    }
}
