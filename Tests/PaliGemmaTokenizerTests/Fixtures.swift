// Loading the parity fixtures written by scripts/make_tokenizer_fixtures.py.

import Foundation
import PaliGemmaTokenizer

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// Models with both tokenizer.model and tokenizer.json (Gemma settings).
    static let gemmaModels = ["gemma_bpe_2k", "gemma_bpe_6k"]
    /// Models with only tokenizer.model (other normalizer settings).
    static let modelOnly = ["dummy_prefix_bpe_1k"]

    struct DecodeCase: Decodable {
        let ids: [Int32]
        let text: String
        let pieces: [String]
    }

    struct Expected: Decodable {
        let model: String
        let pieces: Int
        let sentencepiece_ids: [[Int32]]
        let transformers_ids_where_different: [String: [Int32]]
        let sentencepiece_decode: [String]
        let decode_cases: [DecodeCase]
    }

    static func corpus() throws -> [String] {
        try JSONDecoder().decode([String].self, from: Data(contentsOf: directory.appendingPathComponent("corpus.json")))
    }

    static func expected(_ model: String) throws -> Expected {
        try JSONDecoder().decode(
            Expected.self, from: Data(contentsOf: directory.appendingPathComponent(model).appendingPathComponent("expected.json")))
    }

    static func modelURL(_ model: String) -> URL {
        directory.appendingPathComponent(model).appendingPathComponent("tokenizer.model")
    }

    static func jsonURL(_ model: String) -> URL {
        directory.appendingPathComponent(model).appendingPathComponent("tokenizer.json")
    }
}

/// Summarises mismatches between produced and expected values for a test message.
struct MismatchReport {
    var count = 0
    var first: String?

    mutating func check<T: Equatable>(_ got: T, _ want: T, _ context: @autoclosure () -> String) {
        guard got != want else { return }
        count += 1
        if first == nil { first = "\(context())\n  got:  \(got)\n  want: \(want)" }
    }

    var summary: String { count == 0 ? "no mismatches" : "\(count) mismatches; first: \(first ?? "")" }
}
