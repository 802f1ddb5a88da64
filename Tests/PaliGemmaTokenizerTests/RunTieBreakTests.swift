// Runs of one character where the doubled piece exists and the tripled does not ("sss"):
// BPE's equal-scoring overlapping pairs must merge leftmost first, as sentencepiece does
// ("ss" + "s"). Fixture: scripts/make_tokenizer_tie_fixtures.py.

import Foundation
import Testing
import PaliGemmaTokenizer

@Suite struct RunTieBreakTests {
    struct Case: Decodable { let text: String; let ids: [Int32]; let pieces: [String] }
    struct Model: Decodable { let doubled_not_tripled: [String]; let cases: [Case] }
    struct File: Decodable { let models: [String: Model] }

    static let file: File? = try? JSONDecoder().decode(
        File.self, from: Data(contentsOf: Fixtures.directory.appendingPathComponent("runs.json")))

    @Test(arguments: Fixtures.gemmaModels + Fixtures.modelOnly)
    func runsMergeLeftmostFirst(_ name: String) throws {
        let model = try #require(Self.file?.models[name], "runs.json has no cases for \(name)")
        // The cases test the tie only if they hold runs that end in an unmerged single character.
        #expect(model.doubled_not_tripled.count >= 5)
        #expect(model.cases.contains { $0.pieces.suffix(2).first?.count == 2 && $0.pieces.last?.count == 1 })
        let tokenizers = [try Tokenizer(sentencePieceModel: Fixtures.modelURL(name))]
            + (Fixtures.gemmaModels.contains(name) ? [try Tokenizer(tokenizerJSON: Fixtures.jsonURL(name))] : [])
        for tokenizer in tokenizers {
            var wrong: [String] = []
            for c in model.cases where tokenizer.encode(c.text) != c.ids {
                wrong.append("\(c.text.debugDescription): \(tokenizer.pieces(for: tokenizer.encode(c.text))) (sentencepiece \(c.pieces))")
            }
            #expect(wrong.isEmpty, "\(name) (\(tokenizer.source)): \(wrong.count) of \(model.cases.count) runs differ: \(wrong.prefix(4))")
        }
    }
}
