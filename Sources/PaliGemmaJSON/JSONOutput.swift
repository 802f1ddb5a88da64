// The one way the package writes JSON: `Encodable` values through one encoder configuration, so
// every output object (`--json` of every command, batch result lines, the benchmarks; later the
// server's replies) is written alike: compact, one line, keys sorted, "/" not escaped, numbers in
// the shortest form that reads back to the same value. Reading goes through `JSONParser` (large
// or strict files: safetensors headers, tokenizer.json, config.json, decoded into Codable types
// from the same parse by `JSONValueDecoder`) or `Codable` (`JSONDecoder`).
//
// JSON *files* in the hub's layout (model.safetensors.index.json, the presets' config.json)
// are Encodable types too, through the second configuration, `fileEncoder`: pretty-printed,
// keys sorted. Only the safetensors header keeps a hand writer: its format fixes the bytes
// (offsets, padding).
//
// Also here: the reading rule request lines share (`decodeIfValid`: a member of the wrong type
// counts as not given).

import Foundation

public enum JSONOutput {
    /// A new encoder with the shared configuration for output objects: sorted keys, slashes not
    /// escaped, compact.
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

    /// A new encoder for JSON files written as the hub writes them (Python's `json.dumps(indent=2,
    /// sort_keys=True)`): pretty-printed with two-space indentation, keys sorted by code point,
    /// slashes not escaped. Foundation writes `"key" : value` where Python writes `"key": value`;
    /// readers see the same JSON.
    public static var fileEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// `value` as the bytes of a JSON file: `fileEncoder`'s text and a final newline. Throws
    /// `EncodingError` for a non-finite `Float` or `Double`.
    public static func fileData<T: Encodable>(_ value: T) throws -> Data {
        var data = try fileEncoder.encode(value)
        data.append(0x0A)
        return data
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
