// The one way the package writes JSON: `Encodable` values through one encoder configuration, so
// every output object (`--json` of every command, batch result lines, the benchmarks; later the
// server's replies) is written alike: compact, one line, keys sorted, "/" not escaped, numbers in
// the shortest form that reads back to the same value. Reading goes through `JSONParser` (large
// or strict files: safetensors headers, tokenizer.json) or `Codable` (`JSONDecoder`).
//
// The byte-exact writers of file formats (the safetensors header and index) stay their own:
// the format, not this configuration, decides their bytes.
//
// Also here: the reading rule request lines share (`decodeIfValid`: a member of the wrong type
// counts as not given).

import Foundation

public enum JSONOutput {
    /// A new encoder with the shared configuration: sorted keys, slashes not escaped, compact.
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// `value` as JSON text on one line. Throws `EncodingError` for a non-finite `Float` or
    /// `Double` (JSON has no NaN or infinity; wrap numbers that may be in `FiniteOrNull`).
    public static func string<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// `x` rounded to `decimals` places, for reports that keep fewer digits than a `Double`
    /// holds (the value "%.3f" would print, as a number).
    public static func rounded(_ x: Double, decimals: Int) -> Double {
        let scale = pow(10, Double(decimals))
        return (x * scale).rounded() / scale
    }
}

/// A floating-point number written as a JSON number, or as null when it is NaN or infinite.
/// A `Float` is written in the shortest form that reads back as the same `Float`.
public struct FiniteOrNull<Value: BinaryFloatingPoint & Encodable & Sendable>: Encodable, Sendable {
    public var value: Value

    public init(_ value: Value) { self.value = value }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if value.isFinite { try c.encode(value) } else { try c.encodeNil() }
    }
}

extension KeyedDecodingContainer {
    /// The member `key` as a `T`, or nil when it is absent, null or of another type: for request
    /// lines where a member of the wrong type counts as not given (batch lines, `PaliGemmaTask`).
    public func decodeIfValid<T: Decodable>(_ type: T.Type, forKey key: Key) -> T? {
        (try? decodeIfPresent(type, forKey: key)) ?? nil
    }
}
