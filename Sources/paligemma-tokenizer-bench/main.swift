// Tokenizer benchmark: load time and encode throughput, printed as one JSON object.
//
//   paligemma-tokenizer-bench MODEL_DIR TEXT_FILE [IDS_OUT]
//
// Loads MODEL_DIR/tokenizer.model and MODEL_DIR/tokenizer.json (when present), encodes TEXT_FILE as one
// string (best of 3), and optionally writes the ids (one line, space-separated) for a parity check.
// Run by scripts/benchmark_tokenizer.py, which also times sentencepiece and Hugging Face tokenizers.

import Foundation
import PaliGemmaJSON
import PaliGemmaTokenizer

/// The printed object: times in seconds to 6 decimals; null for what was not measured.
struct Report: Encodable {
    let pieces, textBytes, ids: Int
    let loadModel: FiniteOrNull<Double>
    let loadJSON: FiniteOrNull<Double>?
    let encode, encodeMBPerSecond: FiniteOrNull<Double>
    let encodeJSON: FiniteOrNull<Double>?
    let jsonAgrees: Bool?
    let decode: FiniteOrNull<Double>
    let decodeRoundTrips: Bool

    enum CodingKeys: String, CodingKey {
        case pieces, textBytes = "text_bytes", ids, loadModel = "load_model_s", loadJSON = "load_json_s"
        case encode = "encode_s", encodeMBPerSecond = "encode_mb_per_s", encodeJSON = "encode_json_s"
        case jsonAgrees = "json_ids_equal_model_ids", decode = "decode_s", decodeRoundTrips = "decode_round_trips"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pieces, forKey: .pieces)
        try c.encode(textBytes, forKey: .textBytes)
        try c.encode(ids, forKey: .ids)
        try c.encode(loadModel, forKey: .loadModel)
        try c.encode(loadJSON, forKey: .loadJSON)  // null when there is no tokenizer.json
        try c.encode(encode, forKey: .encode)
        try c.encode(encodeMBPerSecond, forKey: .encodeMBPerSecond)
        try c.encode(encodeJSON, forKey: .encodeJSON)
        try c.encode(jsonAgrees, forKey: .jsonAgrees)
        try c.encode(decode, forKey: .decode)
        try c.encode(decodeRoundTrips, forKey: .decodeRoundTrips)
    }
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(1)
}

let arguments = CommandLine.arguments
guard arguments.count >= 3 else { fail("usage: paligemma-tokenizer-bench MODEL_DIR TEXT_FILE [IDS_OUT]") }
let directory = URL(fileURLWithPath: arguments[1])
guard let data = FileManager.default.contents(atPath: arguments[2]) else { fail("cannot read \(arguments[2])") }
let text = String(decoding: data, as: UTF8.self)

do {
    var modelTokenizer: Tokenizer?
    var loadModel = Double.infinity
    for _ in 0..<3 {
        loadModel = min(loadModel, try seconds { modelTokenizer = try Tokenizer(sentencePieceModel: directory.appendingPathComponent("tokenizer.model")) })
    }
    guard let tokenizer = modelTokenizer else { fail("no tokenizer") }

    var loadJSON: Double?
    var jsonTokenizer: Tokenizer?
    let jsonURL = directory.appendingPathComponent("tokenizer.json")
    if FileManager.default.fileExists(atPath: jsonURL.path) {
        var best = Double.infinity
        for _ in 0..<3 { best = min(best, try seconds { jsonTokenizer = try Tokenizer(tokenizerJSON: jsonURL) }) }
        loadJSON = best
    }

    var ids: [Int32] = []
    var encode = Double.infinity
    for _ in 0..<3 { encode = min(encode, seconds { ids = tokenizer.encode(text) }) }

    var encodeJSON: Double?
    var jsonAgrees: Bool?
    if let jsonTokenizer {
        var jsonIDs: [Int32] = []
        encodeJSON = seconds { jsonIDs = jsonTokenizer.encode(text) }
        jsonAgrees = jsonIDs == ids
    }

    var decoded = ""
    let decode = seconds { decoded = tokenizer.decode(ids) }

    if arguments.count >= 4 {
        try Data(ids.map(String.init).joined(separator: " ").utf8).write(to: URL(fileURLWithPath: arguments[3]))
        try Data(decoded.utf8).write(to: URL(fileURLWithPath: arguments[3] + ".decoded"))
    }
    let megabytes = Double(data.count) / 1_000_000
    func figure(_ x: Double) -> FiniteOrNull<Double> { FiniteOrNull(JSONOutput.rounded(x, decimals: 6)) }
    print(try JSONOutput.string(Report(
        pieces: tokenizer.vocabularySize, textBytes: data.count, ids: ids.count,
        loadModel: figure(loadModel), loadJSON: loadJSON.map(figure), encode: figure(encode),
        encodeMBPerSecond: figure(megabytes / encode), encodeJSON: encodeJSON.map(figure), jsonAgrees: jsonAgrees,
        decode: figure(decode), decodeRoundTrips: decoded == text)))
} catch {
    fail("error: \(error)")
}
