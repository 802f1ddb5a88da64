// Ids and text must equal sentencepiece's (and transformers', except where documented) on the fixture corpus.

import Foundation
import Testing
import PaliGemmaTokenizer

/// Control tokens typed as text: sentencepiece spells them with ordinary pieces (we follow it),
/// transformers parses them as the special ids.
private let controlTexts = ["<bos>", "<eos>", "<pad>", "<unk>"]

@Suite struct ParityTests {
    static let allModels = Fixtures.gemmaModels + Fixtures.modelOnly

    @Test(arguments: allModels)
    func modelFileMatchesSentencePiece(_ name: String) throws {
        let corpus = try Fixtures.corpus()
        let expected = try Fixtures.expected(name)
        let tokenizer = try Tokenizer(sentencePieceModel: Fixtures.modelURL(name))
        #expect(tokenizer.vocabularySize == expected.pieces)
        #expect(corpus.count == expected.sentencepiece_ids.count)
        var report = MismatchReport()
        for (i, text) in corpus.enumerated() {
            report.check(tokenizer.encode(text), expected.sentencepiece_ids[i], "\(name) string \(i) \(text.debugDescription)")
        }
        #expect(report.count == 0, "\(name) tokenizer.model vs sentencepiece: \(report.summary)")
    }

    @Test(arguments: Fixtures.gemmaModels)
    func jsonFileMatchesSentencePiece(_ name: String) throws {
        let corpus = try Fixtures.corpus()
        let expected = try Fixtures.expected(name)
        let tokenizer = try Tokenizer(tokenizerJSON: Fixtures.jsonURL(name))
        #expect(tokenizer.source == .huggingFaceJSON)
        #expect(tokenizer.vocabularySize == expected.pieces)
        var report = MismatchReport()
        for (i, text) in corpus.enumerated() {
            report.check(tokenizer.encode(text), expected.sentencepiece_ids[i], "\(name) string \(i) \(text.debugDescription)")
        }
        #expect(report.count == 0, "\(name) tokenizer.json vs sentencepiece: \(report.summary)")
    }

    /// Where transformers disagrees with sentencepiece, the string must be one of the two documented cases,
    /// and everywhere else our ids equal transformers' (which equal sentencepiece's there).
    @Test(arguments: Fixtures.gemmaModels)
    func transformersDifferencesAreOnlyTheDocumentedOnes(_ name: String) throws {
        let corpus = try Fixtures.corpus()
        let expected = try Fixtures.expected(name)
        let tokenizer = try Tokenizer(tokenizerJSON: Fixtures.jsonURL(name))
        var undocumented: [String] = []
        var controlCases = 0
        for (key, hfIDs) in expected.transformers_ids_where_different {
            let text = corpus[Int(key) ?? 0]
            let hasControl = controlTexts.contains { text.contains($0) }
            // transformers matches user-defined pieces before turning spaces into "▁"; sentencepiece after.
            let hasLiteralSpaceSymbol = text.contains("\u{2581}")
            if hasControl { controlCases += 1 }
            if !hasControl && !hasLiteralSpaceSymbol { undocumented.append(text.debugDescription) }
            #expect(tokenizer.encode(text) != hfIDs)
        }
        #expect(undocumented.isEmpty, "transformers differs from sentencepiece on undocumented strings: \(undocumented.prefix(5))")
        #expect(controlCases > 50, "the corpus must exercise control tokens typed as text")
    }

    /// With `matchControlPieces`, control pieces typed as text become their ids as in transformers:
    /// on every corpus string without a literal "▁" (the other documented difference) the ids equal
    /// transformers', from both files; strings without control spellings are encoded as before.
    @Test(arguments: Fixtures.gemmaModels)
    func matchingControlPiecesMatchesTransformers(_ name: String) throws {
        let corpus = try Fixtures.corpus()
        let expected = try Fixtures.expected(name)
        var report = MismatchReport()
        var controlCases = 0
        for tokenizer in [try Tokenizer(sentencePieceModel: Fixtures.modelURL(name)),
                          try Tokenizer(tokenizerJSON: Fixtures.jsonURL(name))] {
            for (i, text) in corpus.enumerated() where !text.contains("\u{2581}") {
                let transformers = expected.transformers_ids_where_different[String(i)] ?? expected.sentencepiece_ids[i]
                if controlTexts.contains(where: { text.contains($0) }) { controlCases += 1 }
                report.check(tokenizer.encode(text, matchControlPieces: true), transformers,
                             "\(name) \(tokenizer.source.rawValue) string \(i) \(text.debugDescription)")
            }
        }
        #expect(controlCases > 100, "the corpus must exercise control tokens typed as text")
        #expect(report.count == 0, "\(name) matchControlPieces vs transformers: \(report.summary)")

        let tokenizer = try Tokenizer(sentencePieceModel: Fixtures.modelURL(name))
        let (bos, eos, pad, unk) = (tokenizer.bosID ?? -1, tokenizer.eosID ?? -1, tokenizer.padID ?? -1, tokenizer.unkID ?? -1)
        #expect(tokenizer.encode("a<eos>b<bos><pad><unk>", matchControlPieces: true)
            == tokenizer.encode("a") + [eos] + tokenizer.encode("b") + [bos, pad, unk])
        #expect(tokenizer.encode("<eos", matchControlPieces: true) == tokenizer.encode("<eos"))
        #expect(tokenizer.encode("x<eos>", addBOS: true, addEOS: true, matchControlPieces: true)
            == [bos] + tokenizer.encode("x") + [eos, eos])
    }

    @Test(arguments: allModels)
    func decodeMatchesSentencePiece(_ name: String) throws {
        let expected = try Fixtures.expected(name)
        let tokenizer = try Tokenizer(sentencePieceModel: Fixtures.modelURL(name))
        var report = MismatchReport()
        for (i, ids) in expected.sentencepiece_ids.enumerated() {
            report.check(tokenizer.decode(ids), expected.sentencepiece_decode[i], "\(name) decode of string \(i) ids \(ids)")
        }
        for c in expected.decode_cases {
            report.check(tokenizer.decode(c.ids), c.text, "\(name) decode case \(c.pieces)")
            report.check(tokenizer.pieces(for: c.ids), c.pieces, "\(name) pieces of \(c.ids)")
        }
        #expect(report.count == 0, "\(name) decode vs sentencepiece: \(report.summary)")
        #expect(expected.decode_cases.contains { $0.text.contains("\u{FFFD}") }, "cases must include invalid UTF-8")
    }

    @Test(arguments: Fixtures.gemmaModels)
    func jsonDecodeMatchesSentencePiece(_ name: String) throws {
        let expected = try Fixtures.expected(name)
        let tokenizer = try Tokenizer(tokenizerJSON: Fixtures.jsonURL(name))
        var report = MismatchReport()
        for (i, ids) in expected.sentencepiece_ids.enumerated() {
            report.check(tokenizer.decode(ids), expected.sentencepiece_decode[i], "\(name) decode of string \(i)")
        }
        for c in expected.decode_cases {
            report.check(tokenizer.decode(c.ids), c.text, "\(name) decode case \(c.pieces)")
        }
        #expect(report.count == 0, "\(name) tokenizer.json decode vs sentencepiece: \(report.summary)")
    }

    /// decode(encode(s)) == s wherever sentencepiece round-trips.
    @Test(arguments: allModels)
    func roundTrip(_ name: String) throws {
        let corpus = try Fixtures.corpus()
        let expected = try Fixtures.expected(name)
        let tokenizer = try Tokenizer(sentencePieceModel: Fixtures.modelURL(name))
        var report = MismatchReport()
        var roundTrips = 0
        for (i, text) in corpus.enumerated() where expected.sentencepiece_decode[i] == text {
            roundTrips += 1
            report.check(tokenizer.decode(tokenizer.encode(text)), text, "\(name) round trip of string \(i)")
        }
        #expect(roundTrips > corpus.count / 2)
        #expect(report.count == 0, "\(name) round trip: \(report.summary)")
    }

    /// The streaming decoder emits the same text as `decode`, in valid pieces, whatever the chunking.
    @Test(arguments: allModels)
    func streamingDecoderMatchesDecode(_ name: String) throws {
        let expected = try Fixtures.expected(name)
        let tokenizer = try Tokenizer(sentencePieceModel: Fixtures.modelURL(name))
        var report = MismatchReport()
        let sequences = expected.sentencepiece_ids + expected.decode_cases.map(\.ids)
        var heldBack = 0
        for ids in sequences {
            var decoder = tokenizer.streamingDecoder()
            var text = ""
            var replacementsStreamed = 0
            for id in ids {
                let chunk = decoder.push(id)
                replacementsStreamed += chunk.unicodeScalars.filter { $0 == "\u{FFFD}" }.count
                if chunk.isEmpty { heldBack += 1 }
                text += chunk
            }
            text += decoder.finish()
            let whole = tokenizer.decode(ids)
            report.check(text, whole, "\(name) streaming \(ids)")
            // A character split over byte pieces is never emitted half-way as U+FFFD.
            report.check(
                replacementsStreamed <= whole.unicodeScalars.filter { $0 == "\u{FFFD}" }.count, true,
                "\(name) streaming emitted extra U+FFFD for \(ids)")
        }
        #expect(heldBack > 0, "fixtures must include characters split over byte pieces")
        #expect(report.count == 0, "\(name) streaming: \(report.summary)")
    }
}
