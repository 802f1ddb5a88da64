import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes an int8 (or 4-bit) copy of a checkpoint folder, quantized once, that loads without
/// any work (memory-mapped like any folder): `paligemma quantize [--bits 4]`.
///
/// With `bits: 4` each covered matrix is instead `<name>.weight` U8 [out, in / 2] (the
/// kernels' PG_Q4 layout, defined in pg_kernels.h) with `<name>.weight_scale` F16 [out, in / 32]
/// (the group scales), the same values as `--quantize int4` computes at load, and the mark is
/// `paligemma_quantization: int4-group32`; every covered matrix needs an input size that is a
/// multiple of 32.
///
/// The folder it writes (read back by `WeightLoader`, which documents the same layout):
/// - every matrix quantization covers (`PaliGemmaModel.quantizableMatrices`: each decoder
///   layer's q/k/v/o and gate/up/down projections, and the output projection) is stored as
///   `<name>.weight`, dtype I8, shape [out, in], with its row scales `<name>.weight_scale`,
///   F32 [out]: w[r, c] ≈ weight[r, c] · weight_scale[r], scale = max|w[r, :]| / 127 (1 for an
///   all-zero row), values rounded half away from zero — the same quantizer as at load, so the
///   two give identical results;
/// - the output projection is always `language_model.lm_head.weight` (+ `_scale`); with tied
///   embeddings it is an int8 copy of the embedding, which stays as stored for the lookup;
/// - every other tensor is copied byte for byte in its stored dtype;
/// - names are the canonical spelling (`Checkpoint.canonicalName`, the hub's transformers 4.x
///   names), shards of at most `maxShardBytes` as `model-0000i-of-0000n.safetensors` with
///   `model.safetensors.index.json` (one shard: `model.safetensors`), each tensor aligned to its
///   element size; every file's `__metadata__` holds `format: pt` and
///   `paligemma_quantization: int8-per-channel`;
/// - every other file of the folder (config.json, tokenizer files, preprocessor_config.json, …)
///   is copied unchanged.
///
/// It streams: one tensor, in pieces of at most 64 MiB, is read, quantized and written at
/// a time, and the source's pages are released after use, so memory stays low at any size.
/// The folder is written under a temporary name beside the output and renamed into place only
/// after it loads strictly; on failure the temporary folder is removed.
public enum QuantizedCheckpoint {
    /// The `__metadata__` key (and its values for int8 and 4-bit folders) that marks a quantized
    /// folder's safetensors files.
    public static let metadataKey = "paligemma_quantization"
    public static let metadataValueInt8 = "int8-per-channel"
    public static let metadataValueInt4 = "int4-group32"
    public static let defaultMaxShardBytes = 2_000_000_000
    /// Largest piece of a tensor read and written at once.
    static let defaultChunkBytes = 64 << 20

    /// What a run wrote.
    public struct Summary: Sendable {
        public let output: URL
        /// Bits per quantized weight: 8 or 4.
        public let bits: Int
        /// Matrices written quantized, with their scales.
        public let tensorsQuantized: Int
        /// Tensors copied as stored.
        public let tensorsCopied: Int
        /// Stored names of tensors not written: a float copy of a tied output projection (the
        /// loader never reads it; the quantized `lm_head` replaces it).
        public let tensorsDropped: [String]
        /// Other files copied unchanged.
        public let filesCopied: [String]
        public let shards: Int
        /// Tensor data read and written, in bytes (headers excluded).
        public let bytesIn: Int
        public let bytesOut: Int
        public let seconds: Double

        /// One line for the command line.
        public var line: String {
            let dropped = tensorsDropped.isEmpty ? "" : ", dropped \(tensorsDropped.count) unused"
            return "quantized \(tensorsQuantized) tensors to int\(bits), copied \(tensorsCopied)\(dropped) and \(filesCopied.count) files: "
                + "\(Self.bytes(bytesIn)) -> \(Self.bytes(bytesOut)) in \(String(format: "%.2f", seconds)) s "
                + "(\(shards) \(shards == 1 ? "file" : "shards")): \(output.path)"
        }

        static func bytes(_ n: Int) -> String {
            let x = Double(n)
            if x >= 1e9 { return String(format: "%.2f GB", x / 1e9) }
            if x >= 1e6 { return String(format: "%.1f MB", x / 1e6) }
            return String(format: "%.1f kB", x / 1e3)
        }
    }

    /// Whether `checkpoint` already holds int8 or 4-bit tensors or the quantized-folder mark.
    public static func isQuantized(_ checkpoint: Checkpoint) -> Bool {
        checkpoint.files.contains { file in
            file.metadata[metadataKey] != nil || file.entries.values.contains { $0.dtype == .int8 || $0.dtype == .uint8 }
        }
    }

    /// One tensor of the output, or a matrix and its scales.
    private enum Unit {
        case copy(name: String, tensor: Tensor)
        case quantize(name: String, source: Tensor, bits: Int)

        var name: String {
            switch self {
            case let .copy(name, _), let .quantize(name, _, _): return name
            }
        }

        /// (name, dtype, shape) of each tensor written.
        var tensors: [(name: String, dtype: DType, shape: [Int])] {
            switch self {
            case let .copy(name, t): return [(name, t.dtype, t.shape)]
            case let .quantize(name, t, bits) where bits == 4:
                let (rows, cols) = (t.shape[0], t.shape[1])
                return [(name, .uint8, [rows, cols / 2]),
                        (name + WeightLoader.scaleSuffix, .float16, [rows, cols / MatrixWeight.int4Group])]
            case let .quantize(name, t, _):
                return [(name, .int8, t.shape), (name + WeightLoader.scaleSuffix, .float32, [t.shape[0]])]
            }
        }

        var bytes: Int { tensors.reduce(0) { $0 + $1.shape.reduce(1, *) * $1.dtype.size } }
    }

    /// Writes the int8 (`bits` 8) or 4-bit (`bits` 4) copy of `source` to `output` (which must
    /// not exist, or be an empty folder, and must lie outside `source`'s folder).
    /// `progress(done, total)` counts bytes of tensor data written.
    @discardableResult
    public static func write(_ source: Checkpoint, to output: URL, bits: Int = 8, maxShardBytes: Int = defaultMaxShardBytes,
                             progress: (Int, Int) -> Void = { _, _ in }) throws -> Summary {
        try write(source, to: output, bits: bits, maxShardBytes: maxShardBytes, chunkBytes: defaultChunkBytes, progress: progress)
    }

    /// `write` with the piece size as a parameter (the tests use small pieces).
    @discardableResult
    static func write(_ source: Checkpoint, to output: URL, bits: Int = 8, maxShardBytes: Int, chunkBytes: Int,
                      progress: (Int, Int) -> Void = { _, _ in }) throws -> Summary {
        guard bits == 8 || bits == 4 else { throw PaliGemmaError.input("bits must be 8 or 4, not \(bits)") }
        let start = Date()
        let fm = FileManager.default
        let destination = output.standardizedFileURL
        try checkDestination(destination, source: source.directory)
        for file in source.files {
            if let mark = file.metadata[metadataKey] {
                throw PaliGemmaError.safetensors(path: file.path, tensor: nil,
                    reason: "is already quantized (\(metadataKey) = \(mark)); use the folder as it is")
            }
            if let name = file.names.first(where: { file.entries[$0]?.dtype == .int8 || file.entries[$0]?.dtype == .uint8 }) {
                let dtype = file.entries[name]?.dtype == .int8 ? "int8 (I8)" : "4-bit (U8)"
                throw PaliGemmaError.safetensors(path: file.path, tensor: name,
                    reason: "is already \(dtype): the folder is already quantized; use it as it is")
            }
        }
        // The source must load strictly, so the copy will too.
        _ = try PaliGemmaModel(checkpoint: source)

        // Plan: what each tensor becomes, in name order.
        let targets = try PaliGemmaModel.quantizableMatrices(config: source.config)
        if bits == 4, let ragged = targets.first(where: { $0.shape[1] % MatrixWeight.int4Group != 0 }) {
            throw PaliGemmaError.weights(tensor: source.storedName(ragged.source),
                reason: "has \(ragged.shape[1]) input features; 4-bit weights are quantized in groups of \(MatrixWeight.int4Group) along a row, so they must be a multiple of \(MatrixWeight.int4Group) (use int8)")
        }
        let targetByName = Dictionary(targets.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        func sourceTensor(_ name: String) throws -> Tensor {
            guard let t = try source.tensor(canonical: name) else {
                throw PaliGemmaError.weights(tensor: source.storedName(name), reason: "missing from the checkpoint")
            }
            return t
        }
        var units: [Unit] = []
        var dropped: [String] = []
        for name in source.tensorNames {
            if let target = targetByName[name] {
                if target.source == name {
                    units.append(.quantize(name: name, source: try sourceTensor(name), bits: bits))
                } else {
                    dropped.append(source.storedName(name))  // a stored float copy of the tied output projection
                }
            } else {
                units.append(.copy(name: name, tensor: try sourceTensor(name)))
            }
        }
        for target in targets where target.source != target.name {
            units.append(.quantize(name: target.name, source: try sourceTensor(target.source), bits: bits))
        }
        units.sort { $0.name < $1.name }

        // Shards, in name order, each at most maxShardBytes unless one unit is larger.
        var shards: [[Unit]] = [[]]
        var shardBytes = 0
        for unit in units {
            if shardBytes > 0 && shardBytes + unit.bytes > maxShardBytes {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append(unit)
            shardBytes += unit.bytes
        }

        let parent = destination.deletingLastPathComponent()
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw PaliGemmaError.io(path: parent.path, reason: "cannot create: \(error.localizedDescription)")
        }
        let temporary = parent.appendingPathComponent(".\(destination.lastPathComponent).partial-\(UUID().uuidString.prefix(8))")
        do {
            try fm.createDirectory(at: temporary, withIntermediateDirectories: false)
        } catch {
            throw PaliGemmaError.io(path: temporary.path, reason: "cannot create: \(error.localizedDescription)")
        }
        var finished = false
        defer { if !finished { try? fm.removeItem(at: temporary) } }

        let total = units.reduce(0) { $0 + $1.bytes }
        var written = 0
        var weightMap: [(tensor: String, shard: String)] = []
        for (i, shard) in shards.enumerated() {
            let shardName = SafetensorsIndex.shardName(i, of: shards.count)
            // Larger elements first, then by name (as the safetensors library orders them), so
            // every tensor starts at a multiple of its element size.
            let layout = shard.flatMap(\.tensors).sorted {
                $0.dtype.size != $1.dtype.size ? $0.dtype.size > $1.dtype.size : $0.name < $1.name
            }
            let writer = try SafetensorsStreamWriter(path: temporary.appendingPathComponent(shardName).path, tensors: layout,
                                                     metadata: ["format": "pt", metadataKey: bits == 4 ? metadataValueInt4 : metadataValueInt8])
            for unit in shard {
                switch unit {
                case let .copy(name, tensor):
                    try copy(tensor, as: name, into: writer, chunkBytes: chunkBytes) { written += $0; progress(written, total) }
                case let .quantize(name, tensor, bits):
                    try quantize(tensor, as: name, bits: bits, into: writer, chunkBytes: chunkBytes) { written += $0; progress(written, total) }
                }
            }
            try writer.finish()
            weightMap += layout.map { ($0.name, shardName) }
        }
        if shards.count > 1 {
            try SafetensorsIndex.write(weightMap: weightMap, totalSize: total,
                                       to: temporary.appendingPathComponent(SafetensorsIndex.fileName))
        }
        let files = try copyOtherFiles(of: source, into: temporary)

        // The copy must load strictly, as stored int8 or 4-bit, before it takes the output's name
        // (config.json is the source's, already checked as the caller asked).
        let check = try PaliGemmaModel(checkpoint: Checkpoint(directory: temporary))
        guard check.weightFormat == (bits == 4 ? .int4Stored : .int8Stored) else {
            throw PaliGemmaError.weights(tensor: targets.first?.name ?? "", reason: "the written folder does not load as int\(bits)")
        }
        guard rename(temporary.path, destination.path) == 0 else {
            throw PaliGemmaError.io(path: destination.path,
                reason: "cannot move the finished folder into place: \(String(cString: strerror(errno)))")
        }
        finished = true
        return Summary(output: destination, bits: bits, tensorsQuantized: units.filter { if case .quantize = $0 { true } else { false } }.count,
                       tensorsCopied: units.filter { if case .copy = $0 { true } else { false } }.count,
                       tensorsDropped: dropped, filesCopied: files, shards: shards.count,
                       bytesIn: source.dataBytes, bytesOut: total, seconds: Date().timeIntervalSince(start))
    }

    /// Refuses an output that exists and is not an empty folder, or that is (or lies inside)
    /// the source folder.
    static func checkDestination(_ destination: URL, source: URL) throws {
        let fm = FileManager.default
        let (out, input) = (resolvedPath(destination), resolvedPath(source))
        if out == input || out.hasPrefix(input.hasSuffix("/") ? input : input + "/") {
            throw PaliGemmaError.io(path: destination.path,
                reason: "is the checkpoint folder being quantized or lies inside it (\(source.path)); choose another output folder")
        }
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: destination.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw PaliGemmaError.io(path: destination.path, reason: "exists and is not a folder; refusing to overwrite it")
            }
            let contents = (try? fm.contentsOfDirectory(atPath: destination.path)) ?? ["?"]
            guard contents.isEmpty else {
                throw PaliGemmaError.io(path: destination.path, reason: "exists and is not empty; refusing to overwrite it")
            }
        }
    }

    /// The path with symbolic links resolved as far as it exists.
    static func resolvedPath(_ url: URL) -> String {
        var existing = url.standardizedFileURL.path
        var rest: [String] = []
        while !FileManager.default.fileExists(atPath: existing), existing != "/", !existing.isEmpty {
            rest.insert((existing as NSString).lastPathComponent, at: 0)
            existing = (existing as NSString).deletingLastPathComponent
        }
        var base = existing
        if let real = realpath(existing, nil) {
            base = String(cString: real)
            free(real)
        }
        return rest.reduce(base) { ($0 as NSString).appendingPathComponent($1) }
    }

    /// Copies a tensor's bytes in pieces, releasing the source's pages after each.
    static func copy(_ t: Tensor, as name: String, into writer: SafetensorsStreamWriter, chunkBytes: Int, wrote: (Int) -> Void) throws {
        guard let p = t.pointer else { throw PaliGemmaError.weights(tensor: name, reason: "has no data") }
        var done = 0
        while done < t.byteCount {
            let n = min(max(chunkBytes, 1), t.byteCount - done)
            try writer.write(name, at: done, UnsafeRawBufferPointer(start: p + done, count: n))
            t.storage?.releasePages(offset: t.offset + done, count: n)
            done += n
            wrote(n)
        }
        Ops.releasePages(t)
    }

    /// Quantizes a matrix a block of rows at a time (rows are quantized independently, so the
    /// result equals `Ops.quantizeInt8` or `Ops.quantizeInt4` of the whole) and writes it with
    /// its scales.
    private static func quantize(_ t: Tensor, as name: String, bits: Int, into writer: SafetensorsStreamWriter, chunkBytes: Int,
                                 wrote: (Int) -> Void) throws {
        guard t.shape.count == 2, t.hasData else { throw PaliGemmaError.weights(tensor: name, reason: "is not a matrix with data") }
        let (rows, cols) = (t.shape[0], t.shape[1])
        let rowsPerBlock = max(1, chunkBytes / max(cols * t.dtype.size, 1))
        // Bytes per matrix row of the weight and of its scales, as stored.
        let (weightRowBytes, scaleRowBytes) = bits == 4 ? (cols / 2, cols / MatrixWeight.int4Group * 2) : (cols, 4)
        let scaleName = name + WeightLoader.scaleSuffix
        var r = 0
        while r < rows {
            let n = min(rowsPerBlock, rows - r)
            let block = Tensor(storage: t.storage, offset: t.offset + r * cols * t.dtype.size, shape: [n, cols], dtype: t.dtype)
            let weight: Tensor
            switch Ops.quantize(block, bits: bits) {
            case let .int8(q, scales):
                weight = q
                try scales.withUnsafeBytes { try writer.write(scaleName, at: r * scaleRowBytes, $0) }
            case let .int4(packed, scales):
                weight = packed
                guard let sp = scales.pointer else { throw PaliGemmaError.weights(tensor: name, reason: "quantization produced no data") }
                try writer.write(scaleName, at: r * scaleRowBytes, UnsafeRawBufferPointer(start: sp, count: n * scaleRowBytes))
            case .dense:
                throw PaliGemmaError.weights(tensor: name, reason: "quantization produced no data")
            }
            guard let wp = weight.pointer else { throw PaliGemmaError.weights(tensor: name, reason: "quantization produced no data") }
            try writer.write(name, at: r * weightRowBytes, UnsafeRawBufferPointer(start: wp, count: n * weightRowBytes))
            Ops.releasePages(block)
            r += n
            wrote(n * (weightRowBytes + scaleRowBytes))
        }
    }

    /// Copies every file of the source folder that is not a weight file (following symbolic
    /// links, as in the hub cache; hidden files and sub-folders are skipped). Returns the names.
    static func copyOtherFiles(of source: Checkpoint, into folder: URL) throws -> [String] {
        let fm = FileManager.default
        let weightFiles = Set(source.files.map { ($0.path as NSString).lastPathComponent })
        let names: [String]
        do {
            names = try fm.contentsOfDirectory(atPath: source.directory.path).sorted()
        } catch {
            throw PaliGemmaError.io(path: source.directory.path, reason: "cannot list: \(error.localizedDescription)")
        }
        var copied: [String] = []
        for name in names where !name.hasPrefix(".") && !weightFiles.contains(name) && !isWeightFileName(name) {
            let url = source.directory.appendingPathComponent(name)
            let target = url.resolvingSymlinksInPath()
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: target.path, isDirectory: &isDirectory) else {
                throw PaliGemmaError.io(path: url.path, reason: "cannot copy: it is a broken link or vanished")
            }
            if isDirectory.boolValue { continue }
            do {
                try fm.copyItem(at: target, to: folder.appendingPathComponent(name))
            } catch {
                throw PaliGemmaError.io(path: url.path, reason: "cannot copy: \(error.localizedDescription)")
            }
            copied.append(name)
        }
        return copied
    }

    /// Names a checkpoint's weights use: `model.safetensors`, the index, `model-*-of-*.safetensors`.
    static func isWeightFileName(_ name: String) -> Bool {
        name == "model.safetensors" || name == SafetensorsIndex.fileName
            || (name.hasPrefix("model-") && name.contains("-of-") && name.hasSuffix(".safetensors"))
    }
}
