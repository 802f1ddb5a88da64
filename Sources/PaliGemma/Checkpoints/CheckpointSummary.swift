import Foundation
import PaliGemmaJSON

/// What `paligemma inspect` reports about a checkpoint folder.
public struct CheckpointSummary: Sendable {
    public let directory: String
    public let config: PaliGemmaConfig
    public let files: [String]
    public let tensorCount: Int
    public let parameterCount: Int
    /// Parameters per dtype name ("BF16": n).
    public let dtypes: [String: Int]
    public let dataBytes: Int
    public let fileBytes: Int
    /// Matrices stored int8 with F32 row scales (`paligemma quantize`); 0 for a float folder.
    public let int8Tensors: Int
    /// Whether the output projection is stored as a quantized copy of the tied embedding.
    public let quantizedTiedOutput: Bool
    /// Matrices stored 4-bit (U8) with F16 group scales (`paligemma quantize --bits 4`).
    public let int4Tensors: Int

    public init(checkpoint: Checkpoint) throws {
        directory = checkpoint.directory.path
        config = checkpoint.config
        files = checkpoint.files.map { URL(fileURLWithPath: $0.path).lastPathComponent }
        var count = 0, params = 0, int8 = 0, int4 = 0
        var dtypes: [String: Int] = [:]
        let outputName = "language_model.lm_head.weight"
        let quantized: (DType?) -> Bool = { $0 == .int8 || $0 == .uint8 }
        let tiedCopy = config.textConfig.tieWordEmbeddings && quantized(checkpoint.dtype(canonical: outputName))
        for name in checkpoint.tensorNames {
            guard let t = try checkpoint.tensor(canonical: name) else { continue }
            count += 1
            dtypes[t.dtype.rawValue, default: 0] += t.count
            if t.dtype == .int8 { int8 += 1 }
            if t.dtype == .uint8 { int4 += 1 }
            // Parameters of the model: not the scales of quantized weights, nor a quantized copy
            // of the tied embedding; a 4-bit byte holds two.
            let isScale = name.hasSuffix(WeightLoader.scaleSuffix)
                && quantized(checkpoint.dtype(canonical: String(name.dropLast(WeightLoader.scaleSuffix.count))))
            if !isScale && !(tiedCopy && name == outputName) { params += t.dtype == .uint8 ? 2 * t.count : t.count }
        }
        int8Tensors = int8
        quantizedTiedOutput = tiedCopy
        int4Tensors = int4
        tensorCount = count
        parameterCount = params
        self.dtypes = dtypes
        dataBytes = checkpoint.dataBytes
        fileBytes = checkpoint.files.reduce(0) { $0 + $1.storage.byteCount }
    }

    public var family: String { config.textConfig.modelType == .gemma2 ? "PaliGemma 2 (Gemma 2 decoder)" : "PaliGemma 1 (Gemma decoder)" }

    public func text(loadSeconds: Double) -> String {
        let v = config.visionConfig, t = config.textConfig
        var lines = [
            "checkpoint   \(directory)",
            "model        \(family), \(v.imageSize)px, \(config.numImageTokens) image tokens",
            "vision       SigLIP width \(v.hiddenSize), \(v.numHiddenLayers) layers, MLP \(v.intermediateSize), \(v.numAttentionHeads) heads, patch \(v.patchSize)",
            "decoder      width \(t.hiddenSize), \(t.numHiddenLayers) layers, MLP \(t.intermediateSize), \(t.numAttentionHeads) heads / \(t.numKeyValueHeads) kv heads x \(t.headDim), vocab \(t.vocabSize)",
        ]
        if t.modelType == .gemma2 {
            let cap = { (x: Float?) in x.map { String($0) } ?? "off" }
            lines.append("gemma 2      query scale 1/sqrt(\(t.queryPreAttnScalar.map { String($0) } ?? "?")), attn soft cap \(cap(t.attnLogitSoftcapping)), final soft cap \(cap(t.finalLogitSoftcapping)), sliding window \(t.slidingWindow.map(String.init) ?? "off")")
        }
        lines.append("image token  \(config.imageTokenIndex)")
        lines.append("files        \(files.joined(separator: ", "))")
        lines.append("tensors      \(tensorCount)")
        lines.append("parameters   \(Self.grouped(parameterCount)) (\(String(format: "%.2f", Double(parameterCount) / 1e9))B)")
        lines.append("dtypes       " + dtypes.sorted { $0.key < $1.key }.map { "\($0.key) \(Self.grouped($0.value))" }.joined(separator: ", "))
        lines.append("bytes        \(Self.grouped(dataBytes)) of tensor data, \(Self.grouped(fileBytes)) on disk")
        if int8Tensors > 0 {
            let output = quantizedTiedOutput ? "; the output projection is an int8 copy of the tied embedding, which stays as stored" : ""
            lines.append("int8         \(int8Tensors) matrices stored int8 with F32 row scales (paligemma quantize), loaded without quantizing\(output)")
        }
        if int4Tensors > 0 {
            let output = quantizedTiedOutput ? "; the output projection is a 4-bit copy of the tied embedding, which stays as stored" : ""
            lines.append("int4         \(int4Tensors) matrices stored 4-bit (U8) with F16 scales per group of 32 (paligemma quantize --bits 4), loaded without quantizing\(output)")
        }
        lines.append("load         strict check passed in \(String(format: "%.3f", loadSeconds)) s")
        return lines.joined(separator: "\n")
    }

    /// `paligemma inspect --json`: the summary and the config as one compact line
    /// (`JSONOutput`). Throws `EncodingError` only for a non-finite number in the config.
    public func json(loadSeconds: Double) throws -> String {
        try JSONOutput.string(JSONReport(self, loadSeconds: loadSeconds))
    }

    /// The object `json(loadSeconds:)` writes.
    struct JSONReport: Encodable {
        let directory: String
        let family: String
        let imageSize: Int
        let imageTokens: Int
        let files: [String]
        let tensors: Int
        let parameters: Int
        let dtypes: [String: Int]
        let dataBytes: Int
        let fileBytes: Int
        let int8Tensors: Int
        let int4Tensors: Int
        let loadSeconds: FiniteOrNull<Double>
        let config: PaliGemmaConfig

        enum CodingKeys: String, CodingKey {
            case directory, family, imageSize = "image_size", imageTokens = "image_tokens", files, tensors, parameters, dtypes
            case dataBytes = "data_bytes", fileBytes = "file_bytes", int8Tensors = "int8_tensors", int4Tensors = "int4_tensors"
            case loadSeconds = "load_s", config
        }

        init(_ s: CheckpointSummary, loadSeconds: Double) {
            directory = s.directory
            family = s.config.textConfig.modelType.rawValue
            imageSize = s.config.visionConfig.imageSize
            imageTokens = s.config.numImageTokens
            files = s.files
            tensors = s.tensorCount
            parameters = s.parameterCount
            dtypes = s.dtypes
            dataBytes = s.dataBytes
            fileBytes = s.fileBytes
            int8Tensors = s.int8Tensors
            int4Tensors = s.int4Tensors
            self.loadSeconds = FiniteOrNull(loadSeconds)
            config = s.config
        }
    }

    static func grouped(_ n: Int) -> String {
        let s = String(n)
        var out = ""
        for (i, c) in s.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }
}
