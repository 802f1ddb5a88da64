import Foundation

/// What writing a checkpoint folder from another takes (quantized and merged copies): tensor bytes
/// copied in pieces, and the folder's other files.
enum CheckpointFolder {
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
