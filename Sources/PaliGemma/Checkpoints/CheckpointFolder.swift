import Foundation

/// What writing a checkpoint folder from another takes (quantized, merged and trained copies):
/// tensor bytes copied in pieces, weight files rewritten with some tensors replaced, and the
/// folder's other files.
enum CheckpointFolder {
    /// How a tensor is written instead of being copied: its dtype in the new file, and what
    /// writes its bytes (reporting the bytes it wrote).
    struct Replacement {
        let dtype: DType
        let write: (Tensor, SafetensorsStreamWriter, (Int) -> Void) throws -> Void
    }

    /// Writes every weight file of `source` into `folder` under its own name, with the same
    /// tensor names, metadata and order (when a replacement changes a tensor's element size,
    /// larger elements come first so every tensor stays aligned), and the shard index when there
    /// is one (copied as it is, or rewritten with the new sizes). `replacement(canonical name,
    /// entry)` says how a tensor is written, or nil to copy it as stored. Returns how many
    /// tensors were replaced and copied.
    static func rewriteWeights(of source: Checkpoint, into folder: StagedFolder, chunkBytes: Int, wrote: (Int) -> Void,
                               replacement: (String, SafetensorsEntry) throws -> Replacement?) throws -> (replaced: Int, copied: Int) {
        var replaced = 0, copied = 0, resized = false, total = 0
        var weightMap: [(tensor: String, shard: String)] = []
        for file in source.files {
            let name = (file.path as NSString).lastPathComponent
            var layout = file.names.compactMap { file.entries[$0] }.sorted { $0.begin < $1.begin }
            let plans = try Dictionary(uniqueKeysWithValues: layout.map { ($0.name, try replacement(Checkpoint.canonicalName($0.name), $0)) })
            func dtype(_ e: SafetensorsEntry) -> DType { plans[e.name].flatMap { $0?.dtype } ?? e.dtype }
            if layout.contains(where: { dtype($0).size != $0.dtype.size }) {
                resized = true
                layout.sort { dtype($0).size != dtype($1).size ? dtype($0).size > dtype($1).size : $0.begin < $1.begin }
            }
            let writer = try SafetensorsStreamWriter(path: folder.file(name).path, tensors: layout.map { ($0.name, dtype($0), $0.shape) },
                                                     metadata: file.metadata)
            for entry in layout {
                let t = try file.tensor(entry.name)
                if let plan = plans[entry.name] ?? nil {
                    try plan.write(t, writer, wrote)
                    replaced += 1
                } else {
                    try copy(t, as: entry.name, into: writer, chunkBytes: chunkBytes, wrote: wrote)
                    copied += 1
                }
                total += entry.shape.reduce(1, *) * dtype(entry).size
                weightMap.append((entry.name, name))
            }
            try writer.finish()
        }
        let index = source.directory.appendingPathComponent(SafetensorsIndex.fileName)
        if FileManager.default.fileExists(atPath: index.path) {
            if resized {
                try SafetensorsIndex.write(weightMap: weightMap, totalSize: total, to: folder.file(SafetensorsIndex.fileName))
            } else {
                do {
                    try FileManager.default.copyItem(at: index.resolvingSymlinksInPath(), to: folder.file(SafetensorsIndex.fileName))
                } catch {
                    throw PaliGemmaError.io(path: index.path, reason: "cannot copy: \(error.localizedDescription)")
                }
            }
        }
        return (replaced, copied)
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
