// `Decodable` values from a parsed `JSONValue`, so a file that must be read by `JSONParser` (to
// see its keys, reject duplicates) is decoded into its Codable types from the same parse instead
// of a second pass through `JSONDecoder` (config.json).
//
// It decodes as `JSONDecoder` does, with two deliberate differences: a non-integer number read
// as an integer is a `typeMismatch` (JSONDecoder reports the whole input as corrupted), and
// every error's `codingPath` names the member or item (`text_config.hidden_size`,
// `layer_types[1]`). Numbers are `JSONValue`'s doubles: an integer reads as any integer type
// it fits exactly (a larger magnitude is `dataCorrupted` naming the value and type), and as
// `Float` or `Double`; integers beyond 2^53 are only as exact as a `Double`. An object that
// repeats a key reads as its first member, as `JSONValue`'s subscript does (parse with
// `rejectDuplicateKeys` to refuse such a file instead).

/// Decodes `Decodable` types from a `JSONValue`.
public struct JSONValueDecoder: Sendable {
    public init() {}

    /// `value` as a `T`. Throws `DecodingError` whose context's `codingPath` leads to the
    /// member or item at fault.
    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try T(from: ValueDecoder(value: value, codingPath: []))
    }
}

/// A member name or an array index in a coding path.
struct JSONCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        intValue = nil
    }

    init(intValue: Int) {
        stringValue = "Index \(intValue)"
        self.intValue = intValue
    }

    static let superKey = JSONCodingKey(stringValue: "super")
}

/// The decoder of one value at one coding path.
private struct ValueDecoder: Decoder, SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let members) = value else {
            throw mismatch([String: Any].self, container: "keyed")
        }
        return KeyedDecodingContainer(KeyedContainer<Key>(members: members, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else {
            throw mismatch([Any].self, container: "unkeyed")
        }
        return UnkeyedContainer(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    // MARK: Errors

    /// `typeMismatch` for a value that is not a `type`; `valueNotFound` when it is null.
    func mismatch(_ type: Any.Type, container: String? = nil) -> DecodingError {
        if value.isNull {
            let what = container.map { "\($0) decoding container" } ?? "value of type \(type)"
            return .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "Cannot get \(what) -- found null value instead"))
        }
        return .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "Expected to decode \(type) but found \(value.typeName) instead."))
    }

    // MARK: Single value

    func decodeNil() -> Bool { value.isNull }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard case .bool(let b) = value else { throw mismatch(type) }
        return b
    }

    func decode(_ type: String.Type) throws -> String {
        guard case .string(let s) = value else { throw mismatch(type) }
        return s
    }

    func decode(_ type: Double.Type) throws -> Double {
        guard case .number(let d) = value else { throw mismatch(type) }
        guard d.isFinite else { throw notRepresentable(d, type) }
        return d
    }

    func decode(_ type: Float.Type) throws -> Float {
        guard case .number(let d) = value else { throw mismatch(type) }
        guard d.isFinite, abs(d) <= Double(Float.greatestFiniteMagnitude) else { throw notRepresentable(d, type) }
        return Float(d)
    }

    /// A number too large for `type` (or a literal beyond `Double`'s range, parsed as infinite).
    func notRepresentable(_ d: Double, _ type: Any.Type) -> DecodingError {
        let number = d.isFinite ? "\(d)" : "beyond Double's range"
        return .dataCorrupted(.init(codingPath: codingPath, debugDescription: "Number \(number) does not fit in \(type)."))
    }

    func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard case .number(let d) = value else { throw mismatch(type) }
        guard d.isFinite else { throw notRepresentable(d, type) }
        guard d.rounded(.towardZero) == d else {
            throw DecodingError.typeMismatch(type, .init(codingPath: codingPath,
                debugDescription: "Expected to decode \(type) but found the non-integer number \(d) instead."))
        }
        guard let n = T(exactly: d) else { throw notRepresentable(d, type) }
        return n
    }

    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: self) }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let codingPath: [any CodingKey]
    /// Member names in file order, each once.
    private let keys: [String]
    /// The first value of each member name (as `JSONValue`'s subscript reads it).
    private let values: [String: JSONValue]

    init(members: [(key: String, value: JSONValue)], codingPath: [any CodingKey]) {
        var values: [String: JSONValue] = [:]
        var keys: [String] = []
        for (key, value) in members where values[key] == nil {
            values[key] = value
            keys.append(key)
        }
        self.keys = keys
        self.values = values
        self.codingPath = codingPath
    }

    var allKeys: [Key] { keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { values[key.stringValue] != nil }

    /// The decoder of member `key`; `keyNotFound` when it is absent.
    private func member(_ key: any CodingKey) throws -> ValueDecoder {
        guard let value = values[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath,
                debugDescription: "No value associated with key \"\(key.stringValue)\"."))
        }
        return ValueDecoder(value: value, codingPath: codingPath + [key])
    }

    func decodeNil(forKey key: Key) throws -> Bool { try member(key).decodeNil() }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try member(key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try member(key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try member(key).decode(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try member(key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try member(key).integer(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try member(key).integer(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try member(key).integer(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try member(key).integer(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try member(key).integer(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try member(key).integer(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try member(key).integer(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try member(key).integer(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try member(key).integer(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try member(key).integer(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try T(from: member(key)) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try member(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try member(key).unkeyedContainer()
    }

    /// As `JSONDecoder`: an absent member gives a decoder of null.
    func superDecoder() throws -> any Decoder { superDecoder(JSONCodingKey.superKey) }
    func superDecoder(forKey key: Key) throws -> any Decoder { superDecoder(key) }

    private func superDecoder(_ key: any CodingKey) -> any Decoder {
        ValueDecoder(value: values[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    private(set) var currentIndex = 0

    init(items: [JSONValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    /// The decoder of the current item; `valueNotFound` past the end.
    private func current(_ type: Any.Type) throws -> ValueDecoder {
        let path = codingPath + [JSONCodingKey(intValue: currentIndex)]
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(codingPath: path,
                debugDescription: "Unkeyed container is at end (\(items.count) items)."))
        }
        return ValueDecoder(value: items[currentIndex], codingPath: path)
    }

    /// Decodes the current item with `body` and steps forward when that succeeds, as
    /// `JSONDecoder` does.
    private mutating func next<T>(_ type: Any.Type, _ body: (ValueDecoder) throws -> T) throws -> T {
        let decoded = try body(current(type))
        currentIndex += 1
        return decoded
    }

    /// True (and a step forward) when the current item is null.
    mutating func decodeNil() throws -> Bool {
        guard try current(Any?.self).decodeNil() else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try next(type) { try $0.decode(type) } }
    mutating func decode(_ type: String.Type) throws -> String { try next(type) { try $0.decode(type) } }
    mutating func decode(_ type: Double.Type) throws -> Double { try next(type) { try $0.decode(type) } }
    mutating func decode(_ type: Float.Type) throws -> Float { try next(type) { try $0.decode(type) } }
    mutating func decode(_ type: Int.Type) throws -> Int { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next(type) { try $0.integer(type) } }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next(type) { try $0.integer(type) } }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next(type) { try T(from: $0) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next(KeyedDecodingContainer<NestedKey>.self) { try $0.container(keyedBy: type) }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next((any UnkeyedDecodingContainer).self) { try $0.unkeyedContainer() }
    }

    mutating func superDecoder() throws -> any Decoder { try next((any Decoder).self) { $0 } }
}
