import CZlib
import Foundation

// NumPy's .npy and .npz formats, read-only, float arrays only (what the mask decoder
// checkpoint `vae-oid.npz` holds).
//
// .npy: magic "\x93NUMPY", version byte pair (1.0, 2.0 or 3.0), a little-endian header
// length (u16 for v1, u32 for v2/v3), then a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (128, 512), }
// padded with spaces to a multiple of 64 bytes, then the raw array data.
//
// .npz: a zip archive of NAME.npy members, stored (method 0) or deflated (method 8), with
// ZIP64 extensions (numpy writes every member with force_zip64). Sizes and offsets come
// from the central directory; each member's CRC-32 is checked.

/// Element types the reader accepts.
public enum NPYDType: String, Sendable, Equatable {
    case float32, float16
}

/// A float array from a .npy file or .npz member, converted to float32 in C (row-major)
/// order whatever its stored dtype, byte order and memory order.
public struct NPYArray: Sendable, Equatable {
    public let shape: [Int]
    public let values: [Float]
    /// The dtype as stored in the file.
    public let storedDType: NPYDType

    public init(shape: [Int], values: [Float], storedDType: NPYDType = .float32) {
        self.shape = shape
        self.values = values
        self.storedDType = storedDType
    }
}

public enum NPY {
    /// Parses a whole .npy file. `path` and `member` only name the source in errors.
    public static func parse(_ bytes: [UInt8], path: String, member: String? = nil) throws -> NPYArray {
        func fail(_ reason: String) -> PaliGemmaError { .npz(path: path, member: member, reason: reason) }
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw fail("not a .npy file (missing the \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw fail("truncated .npy header") }
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
            headerStart = 12
        default:
            throw fail(".npy format version \(major).\(bytes[7]) is not supported (1, 2 or 3)")
        }
        guard headerStart + headerLength <= bytes.count else {
            throw fail(".npy header of \(headerLength) bytes runs past the end of the data (truncated?)")
        }
        // v1/v2 headers are latin-1, v3 UTF-8; the keys and values we accept are ASCII.
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        let (dtype, swap, fortran, shape) = try parseHeader(header, fail: fail)

        var count = 1
        for d in shape {
            guard d >= 0 else { throw fail("shape \(shape) has a negative dimension") }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= Int.max / 4 else { throw fail("shape \(shape) is too large") }
            count = product
        }
        let itemSize = dtype == .float32 ? 4 : 2
        let dataStart = headerStart + headerLength
        let dataBytes = bytes.count - dataStart
        guard dataBytes == count * itemSize else {
            throw fail("shape \(shape) of \(dtype.rawValue) needs \(count * itemSize) data bytes, found \(dataBytes)"
                       + (dataBytes < count * itemSize ? " (truncated?)" : ""))
        }

        var raw = Array(bytes[dataStart...])
        if swap {
            for i in stride(from: 0, to: raw.count, by: itemSize) { raw[i..<(i + itemSize)].reverse() }
        }
        var values = [Float](repeating: 0, count: count)
        if count > 0 {
            raw.withUnsafeBytes { src in
                values.withUnsafeMutableBufferPointer { dst in
                    if let s = src.baseAddress, let d = dst.baseAddress {
                        Ops.convertToFloat(s, dtype == .float32 ? .float32 : .float16, into: d, count: count)
                    }
                }
            }
        }
        if fortran && shape.count > 1 { values = fortranToC(values, shape: shape) }
        return NPYArray(shape: shape, values: values, storedDType: dtype)
    }

    /// Reorders column-major (first index fastest) values into row-major order.
    static func fortranToC(_ values: [Float], shape: [Int]) -> [Float] {
        guard !values.isEmpty else { return values }
        let rank = shape.count
        var fortranStrides = [Int](repeating: 1, count: rank)
        for i in 1..<rank { fortranStrides[i] = fortranStrides[i - 1] * shape[i - 1] }
        var out = [Float](repeating: 0, count: values.count)
        var index = [Int](repeating: 0, count: rank)  // C-order multi-index, last fastest
        var source = 0
        for i in 0..<values.count {
            out[i] = values[source]
            var axis = rank - 1
            while axis >= 0 {
                index[axis] += 1
                source += fortranStrides[axis]
                if index[axis] < shape[axis] { break }
                source -= fortranStrides[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        return out
    }

    /// Reads descr, fortran_order and shape from the header dict (exactly those keys).
    private static func parseHeader(_ text: String, fail: (String) -> PaliGemmaError) throws
        -> (NPYDType, swap: Bool, fortran: Bool, shape: [Int]) {
        var parser = LiteralParser(text: Array(text.utf8))
        guard case let .dict(items)? = try? parser.parseValue() else {
            throw fail("header is not a Python dict literal: \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        var descr: String?, fortran: Bool?, shape: [Int]?
        for (key, value) in items {
            switch (key, value) {
            case let ("descr", .string(s)): descr = s
            case let ("fortran_order", .bool(b)): fortran = b
            case let ("shape", .tuple(t)):
                let dims = t.compactMap { if case let .int(i) = $0 { return i } else { return nil } }
                guard dims.count == t.count else { throw fail("header shape has non-integer entries") }
                shape = dims
            case ("descr", _):
                throw fail("structured dtypes are not supported (only float32 '<f4' and float16 '<f2' arrays)")
            default: throw fail("unexpected header entry '\(key)'")
            }
        }
        guard let descr, let fortran, let shape else {
            throw fail("header lacks one of 'descr', 'fortran_order', 'shape'")
        }
        let littleEndianHost = 1.littleEndian == 1
        let dtype: NPYDType, swap: Bool
        switch descr {
        case "<f4", "=f4": (dtype, swap) = (.float32, !littleEndianHost && descr == "<f4")
        case "<f2", "=f2": (dtype, swap) = (.float16, !littleEndianHost && descr == "<f2")
        case ">f4": (dtype, swap) = (.float32, littleEndianHost)
        case ">f2": (dtype, swap) = (.float16, littleEndianHost)
        default:
            throw fail("dtype '\(descr)' is not supported (only float32 '<f4' and float16 '<f2' arrays)")
        }
        return (dtype, swap, fortran, shape)
    }

    /// The Python literal subset that .npy headers use.
    private enum Literal { case string(String), int(Int), bool(Bool), tuple([Literal]), dict([(String, Literal)]) }

    private struct LiteralParser {
        let text: [UInt8]
        var i = 0
        struct Failure: Error {}

        init(text: [UInt8]) { self.text = text }

        mutating func skipSpace() { while i < text.count, [0x20, 0x0A, 0x0D, 0x09].contains(text[i]) { i += 1 } }

        mutating func take(_ c: UInt8) -> Bool {
            skipSpace()
            if i < text.count, text[i] == c { i += 1; return true }
            return false
        }

        mutating func parseValue(depth: Int = 0) throws -> Literal {
            skipSpace()
            guard i < text.count, depth < 8 else { throw Failure() }
            switch text[i] {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                let quote = text[i]
                i += 1
                let start = i
                while i < text.count, text[i] != quote { i += 1 }
                guard i < text.count else { throw Failure() }
                defer { i += 1 }
                return .string(String(decoding: text[start..<i], as: UTF8.self))
            case UInt8(ascii: "{"):
                i += 1
                var items: [(String, Literal)] = []
                while !take(UInt8(ascii: "}")) {
                    guard case let .string(key) = try parseValue(depth: depth + 1), take(UInt8(ascii: ":")) else {
                        throw Failure()
                    }
                    items.append((key, try parseValue(depth: depth + 1)))
                    if !take(UInt8(ascii: ",")) {
                        guard take(UInt8(ascii: "}")) else { throw Failure() }
                        break
                    }
                }
                return .dict(items)
            case UInt8(ascii: "("), UInt8(ascii: "["):  // tuples, and lists (structured dtypes)
                let close = text[i] == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "]")
                i += 1
                var items: [Literal] = []
                while !take(close) {
                    items.append(try parseValue(depth: depth + 1))
                    if !take(UInt8(ascii: ",")) {
                        guard take(close) else { throw Failure() }
                        break
                    }
                }
                return .tuple(items)
            default:
                let start = i
                while i < text.count, text[i] == UInt8(ascii: "_") || text[i] == UInt8(ascii: "-") || (text[i] >= 0x30 && text[i] <= 0x39)
                    || (text[i] | 0x20 >= UInt8(ascii: "a") && text[i] | 0x20 <= UInt8(ascii: "z")) { i += 1 }
                let word = String(decoding: text[start..<i], as: UTF8.self)
                if word == "True" { return .bool(true) }
                if word == "False" { return .bool(false) }
                // Python 2 era headers may write long integers as "128L".
                let digits = word.hasSuffix("L") ? String(word.dropLast()) : word
                guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let n = Int(digits) else { throw Failure() }
                return .int(n)
            }
        }
    }
}

/// A .npz archive read into memory, with its member directory parsed.
public struct NPZArchive: Sendable {
    public let path: String
    /// Array names (member names without ".npy"), in archive order.
    public let names: [String]
    private let bytes: [UInt8]
    private let members: [String: Member]

    /// Largest member accepted after inflation (the mask decoder checkpoint is ~10 MB).
    static let maxMemberBytes = 1 << 31

    struct Member: Sendable {
        let name: String
        let method: Int
        let flags: Int
        let crc: UInt32
        let compressedSize: Int
        let size: Int
        let localHeaderOffset: Int
    }

    public init(path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw PaliGemmaError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        try self.init(bytes: [UInt8](data), path: path)
    }

    /// Parses an archive held in memory; `path` names it in errors.
    public init(bytes: [UInt8], path: String) throws {
        self.path = path
        self.bytes = bytes
        let directory = try Self.readDirectory(bytes, path: path)
        var members: [String: Member] = [:]
        var names: [String] = []
        for member in directory where member.name.hasSuffix(".npy") {
            let name = String(member.name.dropLast(4))
            guard members[name] == nil else {
                throw PaliGemmaError.npz(path: path, member: member.name, reason: "appears twice in the archive")
            }
            members[name] = member
            names.append(name)
        }
        self.members = members
        self.names = names
    }

    /// The array stored as `NAME.npy`.
    public func array(_ name: String) throws -> NPYArray {
        guard let member = members[name] else {
            throw PaliGemmaError.npz(path: path, member: name + ".npy", reason: "no such array in the archive")
        }
        return try NPY.parse(try contents(of: member), path: path, member: member.name)
    }

    /// All arrays, by name.
    public func arrays() throws -> [String: NPYArray] {
        var out: [String: NPYArray] = [:]
        for name in names { out[name] = try array(name) }
        return out
    }

    private func contents(of m: Member) throws -> [UInt8] {
        func fail(_ reason: String) -> PaliGemmaError { .npz(path: path, member: m.name, reason: reason) }
        guard m.flags & 1 == 0 else { throw fail("is encrypted") }
        let h = m.localHeaderOffset
        guard h >= 0, h + 30 <= bytes.count, Self.u32(bytes, h) == 0x0403_4B50 else {
            throw fail("local header at offset \(h) is missing (truncated or corrupt archive)")
        }
        let start = h + 30 + Int(Self.u16(bytes, h + 26)) + Int(Self.u16(bytes, h + 28))
        guard start + m.compressedSize <= bytes.count else {
            throw fail("data (\(m.compressedSize) bytes at offset \(start)) runs past the end of the archive (truncated?)")
        }
        guard m.size <= Self.maxMemberBytes else { throw fail("\(m.size) bytes is too large") }
        let stored = bytes[start..<(start + m.compressedSize)]
        let output: [UInt8]
        switch m.method {
        case 0:
            guard m.compressedSize == m.size else { throw fail("stored member has mismatched sizes") }
            output = Array(stored)
        case 8:
            output = try Self.inflate(Array(stored), size: m.size, fail: fail)
        default:
            throw fail("compression method \(m.method) is not supported (stored or deflated only)")
        }
        let crc = output.withUnsafeBufferPointer { b in
            UInt32(crc32(0, b.baseAddress, uInt(b.count)))
        }
        guard crc == m.crc else {
            throw fail(String(format: "CRC-32 mismatch (stored %08x, computed %08x): corrupt archive", m.crc, crc))
        }
        return output
    }

    /// Raw-deflate decompression of exactly `size` bytes.
    private static func inflate(_ input: [UInt8], size: Int, fail: (String) -> PaliGemmaError) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: max(size, 1))
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw fail("zlib could not be initialised")
        }
        defer { inflateEnd(&stream) }
        var input = input
        let status = input.withUnsafeMutableBufferPointer { inBuf in
            output.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = inBuf.baseAddress
                stream.avail_in = uInt(inBuf.count)
                stream.next_out = outBuf.baseAddress
                stream.avail_out = uInt(size)
                return CZlib.inflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END, Int(stream.total_out) == size else {
            let what = status == Z_STREAM_END ? "inflated to \(stream.total_out) bytes, expected \(size)"
                : "deflate stream is corrupt or truncated (zlib status \(status))"
            throw fail(what)
        }
        return Array(output.prefix(size))
    }

    // MARK: zip structure

    static func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
    static func u64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }

    /// Reads the central directory (through the ZIP64 records when present).
    private static func readDirectory(_ b: [UInt8], path: String) throws -> [Member] {
        func fail(_ reason: String) -> PaliGemmaError { .npz(path: path, member: nil, reason: reason) }
        // End of central directory record: 22 bytes plus a comment of up to 65535 bytes.
        guard b.count >= 22 else { throw fail("file is \(b.count) bytes, too short for a zip archive (not an .npz?)") }
        var eocd = -1
        var at = b.count - 22
        while at >= max(0, b.count - 22 - 65535) {
            if u32(b, at) == 0x0605_4B50 { eocd = at; break }
            at -= 1
        }
        guard eocd >= 0 else { throw fail("no zip end-of-central-directory record (not an .npz archive, or truncated)") }
        var count = Int(u16(b, eocd + 10))
        var directorySize = Int(u32(b, eocd + 12))
        var directoryOffset = Int(u32(b, eocd + 16))
        if count == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            let locator = eocd - 20
            guard locator >= 0, u32(b, locator) == 0x0706_4B50 else { throw fail("ZIP64 locator missing") }
            let record = u64(b, locator + 8)
            guard record <= UInt64(b.count - 56), u32(b, Int(record)) == 0x0606_4B50 else {
                throw fail("ZIP64 end-of-central-directory record missing")
            }
            let r = Int(record)
            let values = [u64(b, r + 32), u64(b, r + 40), u64(b, r + 48)]
            guard values.allSatisfy({ $0 <= UInt64(b.count) }) else { throw fail("ZIP64 record out of range") }
            (count, directorySize, directoryOffset) = (Int(values[0]), Int(values[1]), Int(values[2]))
        }
        guard directoryOffset + directorySize <= b.count else {
            throw fail("central directory runs past the end of the file (truncated?)")
        }
        var members: [Member] = []
        var p = directoryOffset
        for _ in 0..<count {
            guard p + 46 <= b.count, u32(b, p) == 0x0201_4B50 else { throw fail("corrupt central directory entry") }
            let nameLength = Int(u16(b, p + 28)), extraLength = Int(u16(b, p + 30))
            let commentLength = Int(u16(b, p + 32))
            guard p + 46 + nameLength + extraLength + commentLength <= b.count else {
                throw fail("central directory entry runs past the end of the file")
            }
            let name = String(decoding: b[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            var size = UInt64(u32(b, p + 24)), compressed = UInt64(u32(b, p + 20))
            var offset = UInt64(u32(b, p + 42))
            // ZIP64 extended information (id 0x0001): only the fields saturated above, in order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = u16(b, e), length = Int(u16(b, e + 2))
                guard e + 4 + length <= extraEnd else { break }
                if id == 1 {
                    var f = e + 4
                    let fieldEnd = e + 4 + length
                    func next() throws -> UInt64 {
                        guard f + 8 <= fieldEnd else { throw fail("'\(name)': ZIP64 field too short") }
                        defer { f += 8 }
                        return u64(b, f)
                    }
                    if size == 0xFFFF_FFFF { size = try next() }
                    if compressed == 0xFFFF_FFFF { compressed = try next() }
                    if offset == 0xFFFF_FFFF { offset = try next() }
                }
                e += 4 + length
            }
            guard size <= UInt64(Int.max / 2), compressed <= UInt64(b.count), offset <= UInt64(b.count) else {
                throw fail("'\(name)': sizes or offset out of range")
            }
            members.append(Member(name: name, method: Int(u16(b, p + 10)), flags: Int(u16(b, p + 8)),
                                  crc: u32(b, p + 16), compressedSize: Int(compressed), size: Int(size),
                                  localHeaderOffset: Int(offset)))
            p += 46 + nameLength + extraLength + commentLength
        }
        return members
    }
}
