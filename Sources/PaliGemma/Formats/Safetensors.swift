import Foundation
import PaliGemmaJSON

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
        func fail(_ tensor: String?, _ reason: String) -> PaliGemmaError {
            .safetensors(path: path, tensor: tensor, reason: reason)
        }
        guard storage.byteCount >= 8 else {
            throw fail(nil, "file is \(storage.byteCount) bytes, too short for the 8-byte header length (truncated?)")
        }
        let headerLength = UInt64(littleEndian: storage.base.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw fail(nil, "header length \(headerLength) exceeds the 100 MB limit (not a safetensors file?)")
        }
        let n = Int(headerLength)
        guard 8 + n <= storage.byteCount else {
            throw fail(nil, "header length \(n) runs past the end of the \(storage.byteCount)-byte file (truncated?)")
        }
        let header: JSONValue
        do {
            header = try JSONParser.parse(Array(UnsafeRawBufferPointer(start: storage.base + 8, count: n)), rejectDuplicateKeys: true)
        } catch {
            throw fail(nil, "header is not valid JSON: \(error)")
        }
        guard let members = header.objectValue else { throw fail(nil, "header is not a JSON object") }

        let dataSize = storage.byteCount - 8 - n
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
        self.path = path
        self.storage = storage
        self.dataOffset = 8 + n
        self.entries = entries
        self.names = names
        self.metadata = metadata
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
            guard let d = v.intValue, d >= 0 else { throw fail(name, "shape \(shapeValues) has a non-integer or negative size") }
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
        guard !overflow, bytes == end - begin else {
            throw fail(name, "shape \(shape) of \(dtype.rawValue) needs \(count * dtype.size) bytes but data_offsets span \(end - begin)")
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
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let meta = metadata.sorted { $0.key < $1.key }.map { "\(jsonQuoted($0.key)):\(jsonQuoted($0.value))" }
            parts.append("\"__metadata__\":{\(meta.joined(separator: ","))}")
        }
        var offset = 0
        for item in items {
            let shape = item.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonQuoted(item.name)):{\"dtype\":\"\(item.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + item.bytes.count)]}")
            offset += item.bytes.count
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for item in items { out.append(contentsOf: item.bytes) }
        return out
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
