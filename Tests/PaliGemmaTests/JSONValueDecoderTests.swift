import Foundation
import PaliGemmaJSON
import Testing
@testable import PaliGemma

/// `JSONValueDecoder`: Codable types decoded from a parsed `JSONValue` (config.json's one parse):
/// every container kind, numbers as integers or floating point, optionals, arrays, and errors
/// whose coding path names the member or item.
@Suite struct JSONValueDecoderTests {
    static func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try JSONValueDecoder().decode(type, from: JSONParser.parse(Array(json.utf8)))
    }

    /// The error decoding `json` as a `T` throws, or nil (recorded) when it decodes.
    static func error<T: Decodable>(_ type: T.Type, _ json: String) -> DecodingError? {
        do {
            _ = try decode(type, json)
            Issue.record("decoded \(json)")
        } catch let error as DecodingError {
            return error
        } catch {
            Issue.record("\(json): not a DecodingError: \(error)")
        }
        return nil
    }

    /// An error's coding path as `PaliGemmaConfig.parse` names it ("a.b.[1]").
    static func path(_ error: DecodingError?) -> String? { error?.keyPath }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    struct Scalars: Decodable, Equatable {
        var bool: Bool, string: String, int: Int, int8: Int8, int16: Int16, int32: Int32, int64: Int64
        var uint: UInt, uint8: UInt8, uint16: UInt16, uint32: UInt32, uint64: UInt64, float: Float, double: Double
    }

    @Test func keyedContainerReadsEveryScalarType() throws {
        let s = try Self.decode(Scalars.self, #"""
            {"bool": true, "string": "a/\"b\"\n", "int": -7, "int8": -128, "int16": 32767, "int32": -5, "int64": 4503599627370496,
             "uint": 7, "uint8": 255, "uint16": 0, "uint32": 4294967295, "uint64": 9007199254740992, "float": 1e-06, "double": 0.1}
            """#)
        #expect(s == Scalars(bool: true, string: "a/\"b\"\n", int: -7, int8: -128, int16: 32767, int32: -5, int64: 1 << 52,
                             uint: 7, uint8: 255, uint16: 0, uint32: 4_294_967_295, uint64: 1 << 53, float: 1e-6, double: 0.1))
    }

    /// Every escape JSON has, each decoded to its own character (a tab read as a space survived
    /// the earlier tests: mutation run, issue 17), and surrogate pairs joined.
    @Test func parserDecodesEveryEscape() throws {
        let text = #""\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00""#
        let value = try JSONParser.parse(Array(text.utf8))
        #expect(value.stringValue == "\"\\/\u{08}\u{0C}\n\r\tA\u{E9}\u{1F600}", "\(value)")
        for bad in [#""\x""#, #""\u12""#, #""a"#] {
            #expect(throws: JSONParseError.self, "\(bad) parsed") { try JSONParser.parse(Array(bad.utf8)) }
        }
    }

    @Test func keyedContainerKeysContainsAndNil() throws {
        struct Probe: Decodable {
            var keys: [String], hasA: Bool, hasZ: Bool, aIsNil: Bool, bIsNil: Bool, absentNil: DecodingError?
            enum Key: String, CodingKey { case a, b, c, z }
            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: Key.self)
                keys = c.allKeys.map(\.stringValue)
                hasA = c.contains(.a)
                hasZ = c.contains(.z)
                aIsNil = try c.decodeNil(forKey: .a)
                bIsNil = try c.decodeNil(forKey: .b)
                do { _ = try c.decodeNil(forKey: .z); absentNil = nil } catch let e as DecodingError { absentNil = e }
            }
        }
        // allKeys in file order, each once, only those the key type knows.
        let p = try Self.decode(Probe.self, #"{"c": 1, "a": null, "unknown": 2, "b": 0, "c": 3}"#)
        #expect(p.keys == ["c", "a", "b"])
        #expect(p.hasA && !p.hasZ && p.aIsNil && !p.bIsNil)
        guard case .keyNotFound(let key, _)? = p.absentNil else { Issue.record("decodeNil of an absent key: \(String(describing: p.absentNil))"); return }
        #expect(key.stringValue == "z")
    }

    @Test func repeatedKeyReadsAsTheFirstMember() throws {
        struct One: Decodable { var a: Int }
        #expect(try Self.decode(One.self, #"{"a": 1, "a": 2}"#).a == 1)
    }

    @Test func integersAndFloatingPoint() throws {
        struct I: Decodable { var a: Int }
        struct I8: Decodable { var a: Int8 }
        struct U: Decodable { var a: UInt }
        struct F: Decodable { var a: Float }
        struct D: Decodable { var a: Double }
        // An integer-valued number is an integer however it is spelled; and a Float or a Double.
        #expect(try Self.decode(I.self, #"{"a": 2}"#).a == 2)
        #expect(try Self.decode(I.self, #"{"a": 2.0}"#).a == 2)
        #expect(try Self.decode(I.self, #"{"a": 1e3}"#).a == 1000)
        #expect(try Self.decode(I.self, #"{"a": -0}"#).a == 0)
        #expect(try Self.decode(F.self, #"{"a": 2}"#).a == 2)
        #expect(try Self.decode(D.self, #"{"a": 10000}"#).a == 10000)
        #expect(try Self.decode(F.self, #"{"a": 1e-06}"#).a == Float(1e-6))
        #expect(try Self.decode(D.self, #"{"a": 1e-06}"#).a == 1e-6)
        #expect(try Self.decode(F.self, #"{"a": -2.5E+2}"#).a == -250)

        // A non-integer into an integer is a type mismatch naming the member.
        guard case .typeMismatch(let type, let context)? = Self.error(I.self, #"{"a": 1e-06}"#) else {
            Issue.record("1e-06 as Int is not a typeMismatch"); return
        }
        #expect(type == Int.self && context.codingPath.map(\.stringValue) == ["a"])
        #expect(context.debugDescription.contains("non-integer"), "\(context.debugDescription)")
        #expect(Self.path(Self.error(I.self, #"{"a": 1.5}"#)) == "a")

        // Out of range: data corrupted, naming the member and the type.
        for (error, typeName) in [(Self.error(I8.self, #"{"a": 128}"#), "Int8"), (Self.error(U.self, #"{"a": -1}"#), "UInt"),
                                  (Self.error(I.self, #"{"a": 1e30}"#), "Int"), (Self.error(F.self, #"{"a": 1e300}"#), "Float"),
                                  (Self.error(D.self, #"{"a": 1e999}"#), "Double")] {
            guard case .dataCorrupted(let context)? = error else { Issue.record("\(typeName): \(String(describing: error))"); continue }
            #expect(context.codingPath.map(\.stringValue) == ["a"] && context.debugDescription.contains("fit in \(typeName)"),
                    "\(context.debugDescription)")
        }
    }

    @Test func unkeyedContainer() throws {
        struct Walk: Decodable {
            var count: Int?, items: [String], indexes: [Int], atEnd: Bool, pastEnd: DecodingError?
            init(from decoder: any Decoder) throws {
                var c = try decoder.unkeyedContainer()
                count = c.count
                items = []
                indexes = []
                while !c.isAtEnd {
                    indexes.append(c.currentIndex)
                    if try c.decodeNil() { items.append("nil"); continue }
                    // decodeNil leaves a non-null item in place; a failed decode does too.
                    if let n = try? c.decode(Int.self) { items.append("int \(n)"); continue }
                    if var nested = try? c.nestedUnkeyedContainer() {
                        items.append("array of \(nested.count ?? -1): \(try nested.decode(Bool.self))")
                        continue
                    }
                    if let keyed = try? c.nestedContainer(keyedBy: AnyKey.self) {
                        items.append("object \(keyed.allKeys.map(\.stringValue))")
                        continue
                    }
                    items.append(try c.decode(String.self))
                }
                atEnd = c.isAtEnd
                do { _ = try c.decode(Int.self); pastEnd = nil } catch let e as DecodingError { pastEnd = e }
            }
        }
        let w = try Self.decode(Walk.self, #"[1, null, "two", [true, false], {"k": 0}, 3]"#)
        #expect(w.count == 6 && w.atEnd)
        #expect(w.items == ["int 1", "nil", "two", "array of 2: true", "object [\"k\"]", "int 3"])
        #expect(w.indexes == [0, 1, 2, 3, 4, 5])
        guard case .valueNotFound(_, let context)? = w.pastEnd else { Issue.record("past the end: \(String(describing: w.pastEnd))"); return }
        #expect(context.codingPath.first?.intValue == 6)
    }

    @Test func arraysAndNestedOptionals() throws {
        struct Inner: Decodable, Equatable { var x: Int?; var tags: [String]? }
        struct Outer: Decodable, Equatable {
            var inner: Inner?
            var list: [Inner]
            var grid: [[Float]]
            var maybe: [Int?]
            var byName: [String: Int]
            var empty: [Int]
        }
        let o = try Self.decode(Outer.self, #"""
            {"inner": {"tags": ["a", "b"]}, "list": [{"x": 1}, {"x": null, "tags": []}],
             "grid": [[1, 2.5], [], [1e-06]], "maybe": [1, null, 3], "byName": {"z": 1, "a": 2}, "empty": []}
            """#)
        #expect(o == Outer(inner: Inner(x: nil, tags: ["a", "b"]), list: [Inner(x: 1, tags: nil), Inner(x: nil, tags: [])],
                           grid: [[1, 2.5], [], [1e-6]], maybe: [1, nil, 3], byName: ["z": 1, "a": 2], empty: []))
        // An optional member: absent and null read as nil; present, as the value.
        struct Opt: Decodable { var inner: Inner? }
        #expect(try Self.decode(Opt.self, #"{}"#).inner == nil)
        #expect(try Self.decode(Opt.self, #"{"inner": null}"#).inner == nil)
        #expect(try Self.decode(Opt.self, #"{"inner": {"x": 4}}"#).inner == Inner(x: 4, tags: nil))
        // A top-level optional and top-level arrays.
        #expect(try Self.decode(Int?.self, "null") == nil)
        #expect(try Self.decode(Int?.self, "5") == 5)
        #expect(try Self.decode([[Int]].self, "[[1], [2, 3]]") == [[1], [2, 3]])
    }

    @Test func singleValueContainer() throws {
        enum Kind: String, Decodable { case gemma, gemma2 }
        struct Wrapped: Decodable, Equatable {
            var value: Double
            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                value = c.decodeNil() ? .nan : try c.decode(Double.self)
            }
        }
        #expect(try Self.decode(String.self, #""x""#) == "x")
        #expect(try Self.decode(Bool.self, "false") == false)
        #expect(try Self.decode(UInt8.self, " 7 ") == 7)
        #expect(try Self.decode(Kind.self, #""gemma2""#) == .gemma2)
        #expect(try Self.decode([Wrapped].self, "[0.5, null]").map(\.value.isNaN) == [false, true])
        // A raw value the enum lacks: data corrupted at the member's path.
        struct HasKind: Decodable { var kind: Kind }
        guard case .dataCorrupted(let context)? = Self.error(HasKind.self, #"{"kind": "gemma3"}"#) else {
            Issue.record("an unknown raw value is not dataCorrupted"); return
        }
        #expect(context.codingPath.map(\.stringValue) == ["kind"])
    }

    @Test func errorsNameThePath() throws {
        struct Text: Decodable { var hidden_size: Int; var layer_types: [String]? }
        struct Top: Decodable { var text_config: Text }

        // Wrong type, nested member.
        let wrongType = Self.error(Top.self, #"{"text_config": {"hidden_size": "big"}}"#)
        guard case .typeMismatch(let type, let context)? = wrongType else { Issue.record("\(String(describing: wrongType))"); return }
        #expect(type == Int.self && context.debugDescription == "Expected to decode Int but found a string instead.")
        #expect(Self.path(wrongType) == "text_config.hidden_size")
        // Wrong type, array item.
        #expect(Self.path(Self.error(Top.self, #"{"text_config": {"hidden_size": 1, "layer_types": ["a", 3]}}"#))
                == "text_config.layer_types.[1]")
        // Null where a value is needed.
        let null = Self.error(Top.self, #"{"text_config": {"hidden_size": null}}"#)
        guard case .valueNotFound? = null else { Issue.record("\(String(describing: null))"); return }
        #expect(Self.path(null) == "text_config.hidden_size")
        // Missing key: the path leads to its container; the error names the key.
        let missing = Self.error(Top.self, #"{"text_config": {}}"#)
        guard case .keyNotFound(let key, let missingContext)? = missing else { Issue.record("\(String(describing: missing))"); return }
        #expect(key.stringValue == "hidden_size" && missingContext.codingPath.map(\.stringValue) == ["text_config"])
        // A container of the wrong kind.
        #expect(Self.path(Self.error(Top.self, #"{"text_config": [1]}"#)) == "text_config")
        #expect(Self.path(Self.error(Top.self, #"{"text_config": {"hidden_size": 1, "layer_types": {}}}"#)) == "text_config.layer_types")
        guard case .typeMismatch? = Self.error(Top.self, "[]") else { Issue.record("an array as an object"); return }
        guard case .valueNotFound? = Self.error(Top.self, #"{"text_config": null}"#) else { Issue.record("null as an object"); return }
    }

    @Test func configErrorsNameTheKeyFromTheOneParse() {
        // JSONDecoder called a non-integer width corrupted data without a key; one parse names it.
        for (json, key) in [(#"{"text_config": {"hidden_size": 1.5}}"#, "text_config.hidden_size"),
                            (#"{"vision_config": {"layer_norm_eps": "small"}}"#, "vision_config.layer_norm_eps"),
                            (#"{"text_config": {"model_type": "gemma2", "layer_types": ["sliding_attention", 1]}}"#, "text_config.layer_types.[1]"),
                            (#"{"text_config": {"rope_parameters": {"rope_theta": "x"}}}"#, "text_config.rope_parameters.rope_theta")] {
            do {
                _ = try PaliGemmaConfig.parse(Data(json.utf8), path: "config.json", strictness: .strict)
                Issue.record("accepted \(json)")
            } catch PaliGemmaError.config(let path, let errorKey, _) {
                #expect(path == "config.json" && errorKey == key, "\(json)")
            } catch {
                Issue.record("\(json): \(error)")
            }
        }
    }

    @Test("decodes every fixture's config.json as JSONDecoder does", arguments: ["pg1-f32", "pg2-f32", "pg1-bf16", "pg2-bf16", "e2e-pg1", "e2e-pg2"])
    func sameAsJSONDecoder(name: String) throws {
        let data = try Data(contentsOf: Fixtures.model(name).appendingPathComponent("config.json"))
        let viaValue = try JSONValueDecoder().decode(PaliGemmaConfig.self, from: JSONParser.parse(Array(data)))
        #expect(viaValue == (try JSONDecoder().decode(PaliGemmaConfig.self, from: data)))
        #expect(viaValue == (try PaliGemmaConfig.parse(data, path: "config.json")))
    }
}
