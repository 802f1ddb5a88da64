// A minimal reader for the protobuf wire format: just what `tokenizer.model` needs.
//
// Fields are read in whatever order they appear; unknown fields are skipped by wire type.
// Every read is bounds-checked and reports the byte offset of a problem.

/// Wire types of the protobuf encoding.
enum WireType: UInt8 {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case startGroup = 3
    case endGroup = 4
    case fixed32 = 5
}

/// Why a protobuf read failed; converted to `TokenizerError.malformedModel` by the model reader.
struct ProtobufError: Error {
    let offset: Int
    let expected: String
}

/// Reads fields from a slice of a byte buffer.
struct ProtobufReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private(set) var offset: Int
    private let end: Int

    /// Reads `bytes[range]`. The buffer must outlive the reader.
    init(_ bytes: UnsafeBufferPointer<UInt8>, range: Range<Int>) {
        self.bytes = bytes
        self.offset = range.lowerBound
        self.end = range.upperBound
    }

    var isAtEnd: Bool { offset >= end }

    /// Reads the next field key: (field number, wire type).
    mutating func readKey() throws -> (field: Int, wireType: WireType) {
        let start = offset
        let key = try readVarint()
        guard let wire = WireType(rawValue: UInt8(key & 7)) else {
            throw ProtobufError(offset: start, expected: "a field key with a known wire type (got \(key & 7))")
        }
        let field = key >> 3
        guard field > 0, field < (1 << 29) else {
            throw ProtobufError(offset: start, expected: "a field number in 1..<2^29 (got \(field))")
        }
        return (Int(field), wire)
    }

    mutating func readVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = offset
        while true {
            guard offset < end else {
                throw ProtobufError(offset: start, expected: "a varint, but the data ends")
            }
            let byte = bytes[offset]
            offset += 1
            guard shift < 64 else {
                throw ProtobufError(offset: start, expected: "a varint of at most 10 bytes")
            }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Reads an `int32` field (negative values are sign-extended 10-byte varints).
    mutating func readInt32() throws -> Int32 {
        Int32(truncatingIfNeeded: Int64(bitPattern: try readVarint()))
    }

    mutating func readBool() throws -> Bool {
        try readVarint() != 0
    }

    mutating func readFixed32() throws -> UInt32 {
        guard end - offset >= 4 else {
            throw ProtobufError(offset: offset, expected: "4 bytes of a fixed32 field, but the data ends")
        }
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(bytes[offset + i]) << (8 * UInt32(i)) }
        offset += 4
        return value
    }

    mutating func readFloat() throws -> Float {
        Float(bitPattern: try readFixed32())
    }

    /// Reads a length prefix and returns the range of the payload, advancing past it.
    mutating func readLengthDelimited() throws -> Range<Int> {
        let start = offset
        let length = try readVarint()
        guard length <= UInt64(end - offset) else {
            throw ProtobufError(
                offset: start, expected: "\(length) bytes of a length-delimited field, but only \(end - offset) remain")
        }
        let range = offset..<(offset + Int(length))
        offset = range.upperBound
        return range
    }

    /// Reads a length-delimited field as UTF-8 text.
    mutating func readString() throws -> String {
        let start = offset
        let range = try readLengthDelimited()
        guard let text = String(validating: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) else {
            throw ProtobufError(offset: start, expected: "a UTF-8 string")
        }
        return text
    }

    /// Skips a field's value of the given wire type.
    mutating func skip(_ wire: WireType, field: Int) throws {
        switch wire {
        case .varint: _ = try readVarint()
        case .fixed64:
            guard end - offset >= 8 else {
                throw ProtobufError(offset: offset, expected: "8 bytes of a fixed64 field, but the data ends")
            }
            offset += 8
        case .lengthDelimited: _ = try readLengthDelimited()
        case .fixed32: _ = try readFixed32()
        case .startGroup:
            // Groups are obsolete; skip nested fields until the matching end-group key.
            while true {
                guard !isAtEnd else {
                    throw ProtobufError(offset: offset, expected: "the end of group \(field), but the data ends")
                }
                let key = try readKey()
                if key.wireType == .endGroup {
                    guard key.field == field else {
                        throw ProtobufError(offset: offset, expected: "end of group \(field), got end of \(key.field)")
                    }
                    return
                }
                try skip(key.wireType, field: key.field)
            }
        case .endGroup:
            throw ProtobufError(offset: offset, expected: "a field, not an unmatched end-group marker")
        }
    }

    /// Checks that a field has the wire type its schema declares.
    func expect(_ wire: WireType, _ wanted: WireType, field: String) throws {
        guard wire == wanted else {
            throw ProtobufError(offset: offset, expected: "field \(field) with wire type \(wanted), got \(wire)")
        }
    }
}
