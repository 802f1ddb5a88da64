// Bad tokenizer files give a clear typed error, never a crash.

import Foundation
import Testing
import PaliGemmaTokenizer

@Suite struct ModelFileErrorTests {
    static func modelBytes() throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Fixtures.modelURL("gemma_bpe_2k")))
    }

    @Test func emptyFileIsRejected() {
        #expect(throws: TokenizerError.self) { try Tokenizer(sentencePieceModelBytes: [], name: "empty.model") }
    }

    /// Every truncation throws a TokenizerError; those that cut a field in half say where.
    @Test func truncatedModelsAreRejected() throws {
        let bytes = try Self.modelBytes()
        var malformed = 0
        var cuts = Array(stride(from: 1, to: bytes.count, by: max(1, bytes.count / 400)))
        cuts += [bytes.count - 1, bytes.count - 2, bytes.count - 7]
        for cut in cuts {
            do {
                _ = try Tokenizer(sentencePieceModelBytes: Array(bytes[..<cut]), name: "cut.model")
                Issue.record("truncation at \(cut) of \(bytes.count) bytes was accepted")
            } catch let error as TokenizerError {
                if case .malformedModel(let file, let offset, _) = error {
                    malformed += 1
                    #expect(file == "cut.model")
                    #expect(offset <= cut)
                }
            }
        }
        #expect(malformed > cuts.count / 2, "most cuts fall inside a field")
    }

    @Test func truncationMessageNamesFileAndExpectation() throws {
        let bytes = try Self.modelBytes()
        do {
            _ = try Tokenizer(sentencePieceModelBytes: Array(bytes[..<5]), name: "/m/tokenizer.model")
            Issue.record("accepted a truncated model")
        } catch let error as TokenizerError {
            #expect(error.description.hasPrefix("/m/tokenizer.model: not a valid SentencePiece model at byte"))
        }
    }

    /// Random corruption: either a TokenizerError, or a model that still encodes and decodes without crashing.
    @Test func corruptedModelsNeverCrash() throws {
        let bytes = try Self.modelBytes()
        var rng = SplitMix(seed: 7)
        var rejected = 0
        for trial in 0..<300 {
            var corrupt = bytes
            for _ in 0..<(1 + trial % 4) {
                let at = Int(rng.next() % UInt64(corrupt.count))
                corrupt[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            do {
                let t = try Tokenizer(sentencePieceModelBytes: corrupt, name: "corrupt.model")
                let ids = t.encode("caption en <loc0001> héllo 😀 123")
                _ = t.decode(ids + [Int32(t.vocabularySize), -1])
            } catch is TokenizerError {
                rejected += 1
            }
        }
        #expect(rejected > 0)
    }

    @Test func garbageIsRejected() {
        var rng = SplitMix(seed: 11)
        for length in [1, 2, 5, 64, 1000] {
            let garbage = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(throws: TokenizerError.self) { try Tokenizer(sentencePieceModelBytes: garbage) }
        }
    }

    @Test func unigramModelIsUnsupported() throws {
        // pieces {piece:"<unk>", type: UNKNOWN}, trainer_spec {model_type: UNIGRAM}
        let model: [UInt8] = [0x0a, 0x09, 0x0a, 0x05] + Array("<unk>".utf8) + [0x18, 0x02, 0x12, 0x02, 0x18, 0x01]
        #expect(throws: TokenizerError.unsupported(file: "u.model", component: "model_type UNIGRAM (only BPE is implemented)")) {
            try Tokenizer(sentencePieceModelBytes: model, name: "u.model")
        }
    }

    @Test func charsmapNormalizerIsUnsupported() throws {
        // pieces {"<unk>", UNKNOWN}, trainer_spec {BPE}, normalizer_spec {name "nmt_nfkc", charsmap 3 bytes}
        let model: [UInt8] = [0x0a, 0x09, 0x0a, 0x05] + Array("<unk>".utf8) + [0x18, 0x02, 0x12, 0x02, 0x18, 0x02]
            + [0x1a, 0x0f, 0x0a, 0x08] + Array("nmt_nfkc".utf8) + [0x12, 0x03, 1, 2, 3]
        do {
            _ = try Tokenizer(sentencePieceModelBytes: model, name: "n.model")
            Issue.record("accepted a charsmap normalizer")
        } catch let TokenizerError.unsupported(file, component) {
            #expect(file == "n.model")
            #expect(component.contains("nmt_nfkc"))
        }
    }

    @Test func unknownFieldsAreSkipped() throws {
        // A minimal BPE model plus unknown fields of every wire type at top level and inside a piece.
        let unk: [UInt8] = [0x0a, 0x05] + Array("<unk>".utf8) + [0x18, 0x02] + [0x50, 0x96, 0x01]  // + field 10 varint
        let a: [UInt8] = [0x0a, 0x01, 0x61, 0x15, 0, 0, 0x80, 0xbf] + [0x59, 1, 2, 3, 4, 5, 6, 7, 8]  // + field 11 fixed64
        var model: [UInt8] = [0x0a, UInt8(unk.count)] + unk + [0x0a, UInt8(a.count)] + a
        // trainer: BPE, unknown fields 5 and 9, bos_id -1 (a 10-byte negative varint), eos_id 1
        let trainer: [UInt8] = [0x18, 0x02, 0x28, 0x00, 0x48, 0x01, 0xC8, 0x02] + [UInt8](repeating: 0xff, count: 9) + [0x01]
            + [0xD0, 0x02, 0x01]
        model += [0x12, UInt8(trainer.count)] + trainer
        model += [0x7a, 0x02, 0x61, 0x62]  // field 15, length-delimited
        model += [0x1d, 1, 2, 3, 4]  // field 3 as fixed32? no: field 3 is normalizer_spec; use field 99 fixed32
        model.removeLast(5)
        model += [0x9d, 0x06, 1, 2, 3, 4]  // field 99, fixed32
        let t = try Tokenizer(sentencePieceModelBytes: model)
        #expect(t.vocabularySize == 2)
        #expect(t.id(of: "a") == 1)
        #expect(t.bosID == nil && t.eosID == 1 && t.unkID == 0)
    }

    @Test func wrongWireTypeIsRejected() {
        // ModelProto.pieces (field 1) written as a varint.
        #expect(throws: TokenizerError.self) { try Tokenizer(sentencePieceModelBytes: [0x08, 0x01]) }
    }

    @Test func duplicatePieceIsRejected() {
        let unk: [UInt8] = [0x0a, 0x05] + Array("<unk>".utf8) + [0x18, 0x02]
        let a: [UInt8] = [0x0a, 0x01, 0x61]
        let model: [UInt8] = [0x0a, UInt8(unk.count)] + unk + [0x0a, 3] + a + [0x0a, 3] + a + [0x12, 0x02, 0x18, 0x02]
        #expect(throws: TokenizerError.invalidVocabulary(file: "tokenizer.model", reason: "piece 'a' is defined twice")) {
            try Tokenizer(sentencePieceModelBytes: model)
        }
    }
}

@Suite struct JSONFileErrorTests {
    static let valid = """
        {"model": {"type": "BPE", "vocab": {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "a": 4, "b": 5, "ab": 6, "\u{2581}": 7, "<x>": 8},
          "merges": [["a", "b"]], "unk_token": "<unk>", "byte_fallback": false, "dropout": null},
         "added_tokens": [{"id": 0, "content": "<pad>", "special": true}, {"id": 1, "content": "<eos>", "special": true},
           {"id": 2, "content": "<bos>", "special": true}, {"id": 3, "content": "<unk>", "special": true},
           {"id": 8, "content": "<x>", "special": false, "lstrip": false}],
         "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"},
         "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false},
         "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
           {"type": "ByteFallback"}, {"type": "Fuse"}]}}
        """

    static func load(_ text: String) throws -> Tokenizer {
        try Tokenizer(tokenizerJSONBytes: Array(text.utf8), name: "t.json")
    }

    static func unsupportedComponent(_ text: String) -> String? {
        do {
            _ = try load(text)
            return nil
        } catch let TokenizerError.unsupported(_, component) {
            return component
        } catch {
            return "other error: \(error)"
        }
    }

    @Test func minimalFileLoads() throws {
        let t = try Self.load(Self.valid)
        #expect(t.encode("ab a<x>b") == [6, 7, 4, 8, 5])
        #expect(t.bosID == 2 && t.eosID == 1 && t.padID == 0 && t.unkID == 3)
        #expect(t.encode("<bos>") != [2], "control tokens typed as text are not parsed")
        #expect(t.decode([2, 6, 7, 4, 1]) == "ab a")
    }

    @Test func invalidJSONIsRejected() {
        for text in ["", "{", "{\"model\": ", "[1, 2", "{\"a\": tru}", "nul", "{\"model\": {\"type\": \"BPE\"}} x"] {
            #expect(throws: TokenizerError.self) { try Self.load(text) }
        }
        do {
            _ = try Self.load("{")
        } catch let error as TokenizerError {
            #expect(error.description.hasPrefix("t.json: invalid tokenizer.json: expected valid JSON"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func missingSectionsAreRejected() {
        #expect(throws: TokenizerError.malformedJSON(file: "t.json", expected: "an object 'model'")) {
            try Self.load("{}")
        }
        #expect(throws: TokenizerError.self) { try Self.load(Self.valid.replacingOccurrences(of: "\"merges\"", with: "\"merged\"")) }
        #expect(throws: TokenizerError.self) { try Self.load(Self.valid.replacingOccurrences(of: "\"a\": 4", with: "\"a\": \"4\"")) }
    }

    @Test func unsupportedComponentsAreNamed() {
        let cases: [(String, String, String)] = [
            ("\"type\": \"BPE\"", "\"type\": \"Unigram\"", "model.type Unigram"),
            ("\"normalizer\": {\"type\": \"Replace\"", "\"normalizer\": {\"type\": \"NFKC\", \"x\": {\"type\": \"Replace\"}, \"y\": {\"type\": \"Replace\"}", "normalizer NFKC"),
            ("\"pre_tokenizer\": {\"type\": \"Split\"", "\"pre_tokenizer\": {\"type\": \"Metaspace\"", "pre_tokenizer Metaspace"),
            ("{\"type\": \"ByteFallback\"}", "{\"type\": \"ByteLevel\"}", "decoder ByteLevel"),
            ("\"lstrip\": false", "\"lstrip\": true", "added token '<x>' with lstrip=true"),
            ("\"dropout\": null", "\"dropout\": 0.1", "model.dropout"),
            ("{\"String\": \" \"}, \"content\": \"\u{2581}\"}", "{\"Regex\": \" {2,}\"}, \"content\": \" \"}", "normalizer Replace(Regex \" {2,}\")"),
        ]
        for (from, to, component) in cases {
            let text = Self.valid.replacingOccurrences(of: from, with: to)
            #expect(text != Self.valid, "case \(component) must change the file")
            let got = Self.unsupportedComponent(text)
            #expect(got?.hasPrefix(component) == true, "expected unsupported '\(component)', got \(got ?? "success")")
        }
    }

    @Test func inconsistentVocabularyIsRejected() {
        let badMerge = Self.valid.replacingOccurrences(of: "[[\"a\", \"b\"]]", with: "[[\"a\", \"z\"]]")
        #expect(throws: TokenizerError.self) { try Self.load(badMerge) }
        let gap = Self.valid.replacingOccurrences(of: "\"<x>\": 8}", with: "\"<x>\": 80}")
        #expect(throws: TokenizerError.self) { try Self.load(gap) }
        let clash = Self.valid.replacingOccurrences(of: "\"b\": 5", with: "\"b\": 4")
        #expect(throws: TokenizerError.self) { try Self.load(clash) }
    }

    @Test func missingFilesAreReported() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pg-tok-empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: TokenizerError.noTokenizerFile(directory: dir.path)) { try Tokenizer.load(directory: dir) }
        #expect(throws: TokenizerError.self) { try Tokenizer(sentencePieceModel: dir.appendingPathComponent("nope.model")) }
    }
}

/// A small deterministic generator for the corruption tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
