import Foundation
import PaliGemmaJSON
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's entry in a safetensors header.
public struct SafetensorsEntry: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range within the data section (after the header).
    public let begin: Int
    public let end: Int
}

/// A memory-mapped safetensors file with a fully validated header.
///
/// Layout: 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data section that the offsets index.
public final class SafetensorsFile: Sendable {
    public let path: String
    public let entries: [String: SafetensorsEntry]
    /// Tensor names in header order.
    public let names: [String]
    public let metadata: [String: String]
    let storage: Storage
    let dataOffset: Int

    /// Largest header accepted (the format's own limit is 100 MB).
    static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        let storage = try Storage.map(path: path)
        let header = try Self.header(UnsafeRawBufferPointer(start: storage.base, count: storage.byteCount), path: path)
        self.path = path
        self.storage = storage
        self.dataOffset = header.dataOffset
        self.entries = header.entries
        self.names = header.names
        self.metadata = header.metadata
    }

    /// What the header of a whole file (`file`: all its bytes) says, fully checked against the
    /// file's size; `path` only names the file in errors.
    static func header(_ file: UnsafeRawBufferPointer, path: String) throws
        -> (entries: [String: SafetensorsEntry], names: [String], metadata: [String: String], dataOffset: Int)
    {
        func fail(_ tensor: String?, _ reason: String) -> PaliGemmaError {
            .safetensors(path: path, tensor: tensor, reason: reason)
        }
        guard file.count >= 8, let base = file.baseAddress else {
            throw fail(nil, "file is \(file.count) bytes, too short for the 8-byte header length (truncated?)")
        }
        let headerLength = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw fail(nil, "header length \(headerLength) exceeds the 100 MB limit (not a safetensors file?)")
        }
        let n = Int(headerLength)
        guard 8 + n <= file.count else {
            throw fail(nil, "header length \(n) runs past the end of the \(file.count)-byte file (truncated?)")
        }
        let header: JSONValue
        do {
            header = try JSONParser.parse(Array(UnsafeRawBufferPointer(start: base + 8, count: n)), rejectDuplicateKeys: true)
        } catch {
            throw fail(nil, "header is not valid JSON: \(error)")
        }
        guard let members = header.objectValue else { throw fail(nil, "header is not a JSON object") }

        let dataSize = file.count - 8 - n
        var entries: [String: SafetensorsEntry] = [:]
        var names: [String] = []
        var metadata: [String: String] = [:]
        for (name, value) in members {
            if name == "__metadata__" {
                guard let meta = value.objectValue else { throw fail(nil, "__metadata__ is not an object") }
                for (k, v) in meta {
                    guard let s = v.stringValue else { throw fail(nil, "__metadata__['\(k)'] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            let entry = try Self.entry(name: name, value: value, dataSize: dataSize, fail: fail)
            entries[name] = entry
            names.append(name)
        }
        // No two tensors may share bytes.
        let sorted = entries.values.filter { $0.end > $0.begin }.sorted { $0.begin < $1.begin }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.begin < a.end {
            throw fail(b.name, "data [\(b.begin), \(b.end)) overlaps tensor '\(a.name)' at [\(a.begin), \(a.end))")
        }
        return (entries, names, metadata, 8 + n)
    }

    private static func entry(name: String, value: JSONValue, dataSize: Int,
                              fail: (String?, String) -> PaliGemmaError) throws -> SafetensorsEntry {
        guard let fields = value.objectValue else { throw fail(name, "entry is not an object") }
        for (key, _) in fields where !["dtype", "shape", "data_offsets"].contains(key) {
            throw fail(name, "unknown field '\(key)' (expected dtype, shape, data_offsets)")
        }
        guard let dtypeName = value["dtype"]?.stringValue else { throw fail(name, "missing or non-string 'dtype'") }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw fail(name, "dtype '\(dtypeName)' is not supported (expected F32, BF16 or F16 for weights; I64, I32, I8 for other data)")
        }
        guard let shapeValues = value["shape"]?.arrayValue else { throw fail(name, "missing or non-array 'shape'") }
        var shape: [Int] = []
        var count = 1
        for v in shapeValues {
            guard let d = v.intValue, d >= 0 else {
                var given = v.typeName
                if case let .number(d) = v { given = "\(d)" }
                throw fail(name, "shape has a size that is not an integer from 0 to 10^15 (\(given)); a negative or non-integer size is not a shape")
            }
            shape.append(d)
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail(name, "shape \(shape) is too large") }
            count = p
        }
        guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
              let begin = offsets[0].intValue, let end = offsets[1].intValue else {
            throw fail(name, "'data_offsets' must be two integers [begin, end]")
        }
        guard begin >= 0, begin <= end else { throw fail(name, "data_offsets [\(begin), \(end)] are not ordered") }
        guard end <= dataSize else {
            throw fail(name, "data_offsets [\(begin), \(end)] lie outside the \(dataSize)-byte data section (truncated?)")
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else { throw fail(name, "shape \(shape) of \(dtype.rawValue) is too large") }
        guard bytes == end - begin else {
            throw fail(name, "shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes but data_offsets span \(end - begin)")
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// The named tensor, pointing into the mapped file (no copy).
    public func tensor(_ name: String) throws -> Tensor {
        guard let e = entries[name] else {
            throw PaliGemmaError.safetensors(path: path, tensor: name, reason: "no such tensor in the file")
        }
        return Tensor(storage: storage, offset: dataOffset + e.begin, shape: e.shape, dtype: e.dtype)
    }
}

/// Writes safetensors files (for dumps and tests). The file appears atomically: it is written
/// under a temporary name beside the destination and renamed into place.
public enum SafetensorsWriter {
    public struct Item {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let bytes: [UInt8]
        public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }
        public static func float32(_ name: String, shape: [Int], _ values: [Float]) -> Item {
            Item(name: name, dtype: .float32, shape: shape, bytes: values.withUnsafeBytes { Array($0) })
        }
        public static func int64(_ name: String, shape: [Int], _ values: [Int]) -> Item {
            Item(name: name, dtype: .int64, shape: shape, bytes: values.map { Int64($0) }.withUnsafeBytes { Array($0) })
        }
    }

    public static func encode(_ items: [Item], metadata: [String: String] = [:]) -> [UInt8] {
        let (headerBytes, size) = header(items.map { ($0.name, $0.dtype, $0.shape) }, metadata: metadata)
        var out = [UInt8]()
        out.reserveCapacity(headerBytes.count + size)
        out.append(contentsOf: headerBytes)
        for item in items { out.append(contentsOf: item.bytes) }
        return out
    }

    /// The 8-byte length and the JSON header (padded with spaces to a multiple of 8 bytes, so
    /// the data section starts aligned) for tensors laid out one after another in this order,
    /// and the size of the data section.
    static func header(_ tensors: [(name: String, dtype: DType, shape: [Int])], metadata: [String: String]) -> (bytes: [UInt8], dataSize: Int) {
        var parts: [String] = []
        if !metadata.isEmpty {
            let meta = metadata.sorted { $0.key < $1.key }.map { "\(jsonQuoted($0.key)):\(jsonQuoted($0.value))" }
            parts.append("\"__metadata__\":{\(meta.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * t.dtype.size
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonQuoted(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var headerBytes = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        return (out, offset)
    }

    public static func write(_ items: [Item], metadata: [String: String] = [:], to url: URL) throws {
        let data = Data(encode(items, metadata: metadata))
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot write: \(error.localizedDescription)")
        }
    }
}

/// Writes one safetensors file whose tensors are filled in piece by piece, in any order, so that
/// no more than a piece of one tensor needs to be in memory (for checkpoints of many GB). The
/// header goes first; `finish()` checks that every byte of every tensor was written.
final class SafetensorsStreamWriter {
    let path: String
    private var fd: Int32
    private let dataOffset: Int
    /// name -> (byte offset of the tensor in the file, byte count, bytes written so far)
    private var slots: [String: (offset: Int, count: Int, written: Int)] = [:]

    /// Creates the file (which must not exist) with `tensors` laid out in this order.
    init(path: String, tensors: [(name: String, dtype: DType, shape: [Int])], metadata: [String: String]) throws {
        self.path = path
        let (header, _) = SafetensorsWriter.header(tensors, metadata: metadata)
        dataOffset = header.count
        var offset = header.count
        for t in tensors {
            let count = t.shape.reduce(1, *) * t.dtype.size
            slots[t.name] = (offset, count, 0)
            offset += count
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PaliGemmaError.io(path: path, reason: "cannot create: \(String(cString: strerror(errno)))") }
        try header.withUnsafeBytes { try write($0, at: 0) }
        if offset > header.count, ftruncate(fd, off_t(offset)) != 0 {
            throw PaliGemmaError.io(path: path, reason: "cannot size the file to \(offset) bytes: \(String(cString: strerror(errno)))")
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Writes `bytes` into tensor `name`, starting `at` bytes into the tensor.
    func write(_ name: String, at start: Int = 0, _ bytes: UnsafeRawBufferPointer) throws {
        guard let slot = slots[name] else {
            throw PaliGemmaError.safetensors(path: path, tensor: name, reason: "not in the header being written")
        }
        guard start >= 0, start + bytes.count <= slot.count else {
            throw PaliGemmaError.safetensors(path: path, tensor: name,
                reason: "writing bytes [\(start), \(start + bytes.count)) past its \(slot.count) bytes")
        }
        try write(bytes, at: slot.offset + start)
        slots[name]?.written += bytes.count
    }

    private func write(_ bytes: UnsafeRawBufferPointer, at fileOffset: Int) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, base + done, min(bytes.count - done, 1 << 30), off_t(fileOffset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw PaliGemmaError.io(path: path, reason: "cannot write: \(String(cString: n < 0 ? strerror(errno) : strerror(EIO)))")
            }
            done += n
        }
    }

    /// Closes the file after checking that every tensor was written in full.
    func finish() throws {
        for (name, slot) in slots.sorted(by: { $0.value.offset < $1.value.offset }) where slot.written != slot.count {
            throw PaliGemmaError.safetensors(path: path, tensor: name, reason: "\(slot.written) of its \(slot.count) bytes were written")
        }
        let status = close(fd)
        fd = -1
        guard status == 0 else { throw PaliGemmaError.io(path: path, reason: "cannot close: \(String(cString: strerror(errno)))") }
    }
}

/// `model.safetensors.index.json` as the hub writes it: the total tensor bytes and the shard
/// holding each tensor, pretty-printed with sorted keys (`JSONOutput.fileEncoder`).
enum SafetensorsIndex {
    static let fileName = "model.safetensors.index.json"

    /// The file's object: `{"metadata": {"total_size": N}, "weight_map": {tensor: shard}}`.
    struct File: Encodable {
        struct Metadata: Encodable {
            let totalSize: Int
            enum CodingKeys: String, CodingKey { case totalSize = "total_size" }
        }

        let metadata: Metadata
        let weightMap: [String: String]
        enum CodingKeys: String, CodingKey { case metadata, weightMap = "weight_map" }
    }

    /// Writes the index; a tensor listed twice is an error naming it.
    static func write(weightMap: [(tensor: String, shard: String)], totalSize: Int, to url: URL) throws {
        var map: [String: String] = [:]
        for (tensor, shard) in weightMap {
            guard map.updateValue(shard, forKey: tensor) == nil else {
                throw PaliGemmaError.safetensors(path: url.path, tensor: tensor, reason: "listed twice in the weight map being written")
            }
        }
        let data: Data
        do { data = try JSONOutput.fileData(File(metadata: .init(totalSize: totalSize), weightMap: map)) } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot encode the index: \(error)")
        }
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// The hub's name of shard `i` (from 0) of `count`.
    static func shardName(_ i: Int, of count: Int) -> String {
        count == 1 ? "model.safetensors" : String(format: "model-%05d-of-%05d.safetensors", i + 1, count)
    }
}
