import Foundation

/// Writes a copy of a checkpoint folder with a LoRA adapter merged into its weights:
/// `paligemma merge`. Each adapted matrix becomes W + s·B·A (PEFT's `merge_and_unload`),
/// computed in float32 and rounded once to W's stored dtype; every other tensor is copied byte for
/// byte. The files keep the source's names, tensor names (in the spelling they were stored in),
/// order, dtypes, shards, index and metadata, and the folder's other files (config.json,
/// tokenizer, preprocessor_config.json, ...) are copied, so whatever loaded the base loads the
/// merged folder (this runtime and transformers; tested).
///
/// A quantized base (int8 or 4-bit, `paligemma quantize`) is refused: its matrices are rounded to
/// a coarse grid, and s·B·A, small beside W, would mostly vanish when requantizing. Merge into
/// the float folder and quantize the result.
///
/// Like `QuantizedCheckpoint`, it streams (a block of rows of one matrix at a time) into a
/// hidden folder renamed into place once it loads strictly; an existing non-empty output and an
/// output inside the source are refused.
public enum MergedCheckpoint {
    /// What a run wrote.
    public struct Summary: Sendable {
        public let output: URL
        /// Weights W + s·B·A written.
        public let tensorsMerged: Int
        /// Tensors copied as stored.
        public let tensorsCopied: Int
        /// Other files copied unchanged.
        public let filesCopied: [String]
        public let seconds: Double

        /// One line for the command line.
        public var line: String {
            "merged the adapter into \(tensorsMerged) weights, copied \(tensorsCopied) tensors and \(filesCopied.count) files in "
                + "\(String(format: "%.2f", seconds)) s: \(output.path)"
        }
    }

    /// Writes `source` with `adapter` merged to `output` (which must not exist, or be an empty
    /// folder, and must lie outside `source`'s folder). `progress(done, total)` counts bytes of
    /// tensor data written.
    @discardableResult
    public static func write(_ source: Checkpoint, adapter: LoRAAdapter, to output: URL, chunkBytes: Int = 64 << 20,
                             progress: (Int, Int) -> Void = { _, _ in }) throws -> Summary {
        let start = Date()
        let destination = output.standardizedFileURL
        try StagedFolder.checkDestination(destination, source: source.directory, overwrite: false)
        for file in source.files {
            let quantized = file.metadata[QuantizedCheckpoint.metadataKey] != nil
                ? file.names.first : file.names.first(where: { file.entries[$0]?.dtype == .int8 || file.entries[$0]?.dtype == .uint8 })
            if quantized != nil {
                throw PaliGemmaError.safetensors(path: file.path, tensor: quantized,
                    reason: "belongs to a quantized (int8 or 4-bit) folder: merging adds s·B·A to the weights, and requantizing would round most of that small change away; merge into the float folder it was made from, then quantize the result")
            }
        }
        // Every adapter tensor must fit a linear layer (and the base must load strictly).
        _ = try PaliGemmaModel(checkpoint: source, adapter: adapter)

        let folder = try StagedFolder(destination: destination, source: source.directory)
        let total = source.dataBytes
        var written = 0
        let (merged, copied) = try CheckpointFolder.rewriteWeights(of: source, into: folder, chunkBytes: chunkBytes,
                                                                   wrote: { written += $0; progress(written, total) }) { canonical, entry in
            guard canonical.hasSuffix(".weight"), let m = adapter.modules[String(canonical.dropLast(".weight".count))] else { return nil }
            return .init(dtype: entry.dtype) { t, writer, wrote in
                try merge(t, LoRATerm(m, scale: adapter.config.scale), as: entry.name, into: writer, chunkBytes: chunkBytes, wrote: wrote)
            }
        }
        let files = try CheckpointFolder.copyOtherFiles(of: source, into: folder.temporary)
        guard merged == adapter.modules.count else {
            throw PaliGemmaError.weights(tensor: adapter.modules.keys.sorted().first ?? "",
                                         reason: "the adapter has \(adapter.modules.count) modules but \(merged) weights were merged")
        }
        _ = try PaliGemmaModel(checkpoint: Checkpoint(directory: folder.temporary))
        try folder.commit()
        return Summary(output: destination, tensorsMerged: merged, tensorsCopied: copied, filesCopied: files,
                       seconds: Date().timeIntervalSince(start))
    }

    /// Writes W + s·B·A for a weight W [out, in] (a convolution's [out, C, kh, kw] viewed as
    /// [out, C·kh·kw]) a block of rows at a time, in W's dtype.
    private static func merge(_ t: Tensor, _ lora: LoRATerm, as name: String, into writer: SafetensorsStreamWriter, chunkBytes: Int,
                              wrote: (Int) -> Void) throws {
        guard let p = t.pointer, t.dtype.isFloat, let rows = t.shape.first, rows == lora.b.rows,
              t.count == rows * lora.a.cols else {
            throw PaliGemmaError.weights(tensor: name, reason: "has shape \(t.shape) and dtype \(t.dtype.rawValue); merging needs float weights matching the adapter [\(lora.b.rows), \(lora.a.cols)]")
        }
        let cols = lora.a.cols
        let rowBytes = cols * t.dtype.size
        let block = max(1, chunkBytes / max(cols * 4, 1))
        var out = [UInt8](repeating: 0, count: min(block, rows) * rowBytes)
        var r = 0
        while r < rows {
            let n = min(block, rows - r)
            let w = lora.delta(rows: r..<r + n)  // s · B A, rows r..<r+n
            let stored = Matrix(rows: n, cols: cols)
            Ops.convertToFloat(p + r * rowBytes, t.dtype, into: stored.data, count: n * cols)
            Ops.add(w, stored)
            try out.withUnsafeMutableBytes { buffer in
                guard let base = buffer.baseAddress else { return }
                Ops.convertFromFloat(w.data, to: t.dtype, into: base, count: n * cols)
                try writer.write(name, at: r * rowBytes, UnsafeRawBufferPointer(start: base, count: n * rowBytes))
            }
            t.storage?.releasePages(offset: t.offset + r * rowBytes, count: n * rowBytes)
            r += n
            wrote(n * rowBytes)
        }
    }
}
