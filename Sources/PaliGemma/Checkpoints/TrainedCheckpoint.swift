import Foundation

/// A checkpoint folder with some tensors replaced (what `finetune --method attention|full`
/// writes): every tensor of the source is copied byte for byte except the replaced ones, which
/// are written from float32 values in float32 or in the source tensor's dtype; the other files
/// (config, tokenizer, preprocessor config) are copied. The folder is staged beside its final
/// name and renamed into place once it loads strictly (`StagedFolder`), like a quantized folder.
public enum TrainedCheckpoint {
    /// How replaced tensors are stored.
    public enum Precision: Sendable {
        /// float32 (trained values keep every bit; transformers casts on load).
        case float32
        /// The source tensor's dtype (rounded to nearest even for bfloat16).
        case stored
    }

    /// Writes `source` with `replacements` (canonical name -> float32 values of the tensor's
    /// shape) to `output`, which must not exist or be an empty folder outside the source (with
    /// `overwrite`, an existing folder is replaced once the new one is complete).
    public static func write(_ source: Checkpoint, replacing replacements: [String: [Float]], precision: Precision,
                             to output: URL, overwrite: Bool = false) throws {
        var layout: [(name: String, dtype: DType, shape: [Int])] = []
        var tensors: [String: Tensor] = [:]
        for name in source.tensorNames {
            guard let t = try source.tensor(canonical: name) else { continue }
            tensors[name] = t
            if let values = replacements[name] {
                guard values.count == t.count else {
                    throw PaliGemmaError.weights(tensor: name, reason: "replacement has \(values.count) values for shape \(t.shape)")
                }
                layout.append((name, precision == .float32 ? .float32 : t.dtype, t.shape))
            } else {
                layout.append((name, t.dtype, t.shape))
            }
        }
        if let unknown = replacements.keys.sorted().first(where: { tensors[$0] == nil }) {
            throw PaliGemmaError.weights(tensor: unknown, reason: "is not a tensor of \(source.directory.path)")
        }
        // Larger elements first, then by name, so every tensor starts at a multiple of its size.
        layout.sort { $0.dtype.size != $1.dtype.size ? $0.dtype.size > $1.dtype.size : $0.name < $1.name }
        let folder = try StagedFolder(destination: output, source: source.directory, overwrite: overwrite)
        let writer = try SafetensorsStreamWriter(path: folder.file("model.safetensors").path, tensors: layout, metadata: ["format": "pt"])
        for (name, dtype, _) in layout {
            guard let t = tensors[name] else { continue }
            if let values = replacements[name] {
                var bytes = [UInt8](repeating: 0, count: values.count * dtype.size)
                values.withUnsafeBufferPointer { v in
                    bytes.withUnsafeMutableBytes { b in
                        if let src = v.baseAddress, let dst = b.baseAddress { Ops.convertFromFloat(src, to: dtype, into: dst, count: values.count) }
                    }
                }
                try bytes.withUnsafeBytes { try writer.write(name, at: 0, $0) }
            } else {
                try CheckpointFolder.copy(t, as: name, into: writer, chunkBytes: 64 << 20) { _ in }
            }
        }
        try writer.finish()
        _ = try CheckpointFolder.copyOtherFiles(of: source, into: folder.temporary)
        _ = try PaliGemmaModel(checkpoint: Checkpoint(directory: folder.temporary))
        try folder.commit()
    }
}
