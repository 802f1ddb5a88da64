// Public API behaviour: loading preference, special ids, PaliGemma tokens, BOS/EOS, streaming, commands.

import Foundation
import Testing
import PaliGemmaTokenizer

@Suite struct APITests {
    static func gemma() throws -> Tokenizer { try Tokenizer(sentencePieceModel: Fixtures.modelURL("gemma_bpe_2k")) }

    @Test func specialIDsAndPaliGemmaPieces() throws {
        for t in [try Self.gemma(), try Tokenizer(tokenizerJSON: Fixtures.jsonURL("gemma_bpe_2k"))] {
            #expect(t.padID == 0 && t.eosID == 1 && t.bosID == 2 && t.unkID == 3)
            let n = Int32(t.vocabularySize)
            #expect(t.id(of: "<loc0000>") == n - 1153)
            #expect(t.id(of: "<loc1023>") == n - 130)
            #expect(t.id(of: "<seg000>") == n - 129)
            #expect(t.id(of: "<seg127>") == n - 2)
            #expect(t.id(of: "<image>") == n - 1)
            #expect(t.id(of: "<no such piece>") == nil)
            #expect(t.pieceType(of: 2) == .control)
            #expect(t.pieceType(of: n - 1) == .userDefined)
            #expect(t.piece(for: n) == nil)
        }
    }

    @Test func locSegAndImageAreWholeTokens() throws {
        let t = try Self.gemma()
        let ids = t.encode("<image><image>detect cat\n<loc0000><loc1023><seg042> cat")
        let pieces = t.pieces(for: ids)
        #expect(pieces.prefix(2) == ["<image>", "<image>"])
        #expect(pieces.contains("<loc0000>") && pieces.contains("<loc1023>") && pieces.contains("<seg042>"))
        #expect(!pieces.contains("<"), "no loc/seg/image token may be split into characters: \(pieces)")
        // Near misses are ordinary text.
        #expect(t.pieces(for: t.encode("<loc1024>")).count > 1)
    }

    @Test func controlTokensTypedAsTextAreSpelledOut() throws {
        let t = try Self.gemma()
        for text in ["<bos>", "<eos>", "<pad>", "<unk>"] {
            let ids = t.encode(text)
            #expect(ids.count > 1, "\(text) must not become its special id: \(ids)")
            #expect(t.decode(ids) == text)
        }
    }

    @Test func bosAndEOS() throws {
        let t = try Self.gemma()
        #expect(t.encode("") == [])
        #expect(t.encode("", addBOS: true) == [2])
        #expect(t.encode("hi", addBOS: true, addEOS: true).first == 2)
        #expect(t.encode("hi", addBOS: true, addEOS: true).last == 1)
        #expect(t.encode("hi", addBOS: true, addEOS: true).dropFirst().dropLast() == ArraySlice(t.encode("hi")))
        #expect(t.encode("\n") == [t.id(of: "\n")!])
    }

    @Test func decodeKeepsOrSkipsSpecialTokens() throws {
        let t = try Self.gemma()
        let ids = [2] + t.encode("caption en") + [1, 0]
        #expect(t.decode(ids) == "caption en")
        #expect(t.decode(ids, skipSpecial: false) == "<bos>caption en<eos><pad>")
        #expect(t.decode([3]) == " \u{2047} ")
        #expect(t.decode([3], skipSpecial: false) == "<unk>")
        #expect(t.decode(t.encode("<loc0001> cat")) == "<loc0001> cat")
    }

    @Test func streamingHoldsBackSplitCharacters() throws {
        let t = try Self.gemma()
        let bytes = Array("😀".utf8).map { t.id(of: String(format: "<0x%02X>", $0))! }
        var d = t.streamingDecoder()
        #expect(d.push(bytes[0]) == "")
        #expect(d.push(bytes[1]) == "")
        #expect(d.push(bytes[2]) == "")
        #expect(d.push(bytes[3]) == "😀")
        #expect(d.finish() == "")
        var cut = t.streamingDecoder()
        #expect(cut.push(bytes[0]) == "")
        #expect(cut.finish() == "\u{FFFD}")
    }

    @Test func loadPrefersModelFileAndFallsBackToJSON() throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("pg-tok-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        try fm.copyItem(at: Fixtures.jsonURL("gemma_bpe_2k"), to: dir.appendingPathComponent("tokenizer.json"))
        #expect(try Tokenizer.load(directory: dir).source == .huggingFaceJSON)
        try fm.copyItem(at: Fixtures.modelURL("gemma_bpe_2k"), to: dir.appendingPathComponent("tokenizer.model"))
        let both = try Tokenizer.load(directory: dir)
        #expect(both.source == .sentencePieceModel)
        #expect(both.encode("detect cat ; dog") == (try Tokenizer(tokenizerJSON: dir.appendingPathComponent("tokenizer.json"))).encode("detect cat ; dog"))
    }

    @Test func tokenizeAndDetokenizeCommands() throws {
        let dir = Fixtures.directory.appendingPathComponent("gemma_bpe_2k")
        let t = try Self.gemma()
        let plain = try TokenizerCommands.tokenize(modelDirectory: dir, text: "caption en")
        #expect(plain == t.encode("caption en").map(String.init).joined(separator: " "))
        let withBOS = try TokenizerCommands.tokenize(modelDirectory: dir, text: "caption en", addBOS: true)
        #expect(withBOS.hasPrefix("2 "))
        let json = try TokenizerCommands.tokenize(modelDirectory: dir, text: "a\"b\n<image>", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect((object?["ids"] as? [Int])?.map(Int32.init) == t.encode("a\"b\n<image>"))
        #expect((object?["pieces"] as? [String]) == t.pieces(for: t.encode("a\"b\n<image>")))
        let ids = t.encode("answer en what is this?").map(String.init)
        #expect(try TokenizerCommands.detokenize(modelDirectory: dir, ids: ids) == "answer en what is this?")
        #expect(try TokenizerCommands.detokenize(modelDirectory: dir, ids: [ids.joined(separator: ",")]) == "answer en what is this?")
        #expect(throws: TokenizerError.invalidIDText("x1")) { try TokenizerCommands.detokenize(modelDirectory: dir, ids: ["x1"]) }
        #expect(throws: TokenizerError.idOutOfRange(id: 999_999, vocabularySize: t.vocabularySize)) {
            try TokenizerCommands.detokenize(modelDirectory: dir, ids: ["1", "999999"])
        }
    }
}
