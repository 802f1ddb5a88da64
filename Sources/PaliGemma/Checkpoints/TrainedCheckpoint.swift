import Foundation

/// A checkpoint folder with some tensors replaced (what `finetune --method attention|full`
/// writes): the source's weight files, shards and tensor names kept, every tensor copied byte
/// for byte except the replaced ones, which are written from float32 values in float32 or in
/// the source tensor's dtype; the other files (config, tokenizer, preprocessor config) are copied. The folder is staged beside its final
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
        let names = Set(source.tensorNames)
        if let unknown = replacements.keys.sorted().first(where: { !names.contains($0) }) {
            throw PaliGemmaError.weights(tensor: unknown, reason: "is not a tensor of \(source.directory.path)")
        }
        let folder = try StagedFolder(destination: output, source: source.directory, overwrite: overwrite)
        _ = try CheckpointFolder.rewriteWeights(of: source, into: folder, chunkBytes: 64 << 20, wrote: { _ in }) { canonical, entry in
            guard let values = replacements[canonical] else { return nil }
            guard values.count == entry.shape.reduce(1, *) else {
                throw PaliGemmaError.weights(tensor: canonical, reason: "replacement has \(values.count) values for shape \(entry.shape)")
            }
            let dtype = precision == .float32 ? DType.float32 : entry.dtype
            return .init(dtype: dtype) { _, writer, wrote in
                var bytes = [UInt8](repeating: 0, count: values.count * dtype.size)
                values.withUnsafeBufferPointer { v in
                    bytes.withUnsafeMutableBytes { b in
                        if let src = v.baseAddress, let dst = b.baseAddress { Ops.convertFromFloat(src, to: dtype, into: dst, count: values.count) }
                    }
                }
                try bytes.withUnsafeBytes { try writer.write(entry.name, at: 0, $0) }
                wrote(bytes.count)
            }
        }
        _ = try CheckpointFolder.copyOtherFiles(of: source, into: folder.temporary)
        _ = try PaliGemmaModel(checkpoint: Checkpoint(directory: folder.temporary))
        try folder.commit()
    }
}
