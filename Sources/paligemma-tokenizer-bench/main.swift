// Tokenizer benchmark: load time and encode throughput, printed as one JSON object.
//
//   paligemma-tokenizer-bench MODEL_DIR TEXT_FILE [IDS_OUT]
//
// Loads MODEL_DIR/tokenizer.model and MODEL_DIR/tokenizer.json (when present), encodes TEXT_FILE as one
// string (best of 3), and optionally writes the ids (one line, space-separated) for a parity check.
// Run by scripts/benchmark_tokenizer.py, which also times sentencepiece and Hugging Face tokenizers.

import Foundation
import PaliGemmaTokenizer

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
    func fmt(_ x: Double?) -> String { x.map { String(format: "%.6f", $0) } ?? "null" }
    print("""
        {"pieces": \(tokenizer.vocabularySize), "text_bytes": \(data.count), "ids": \(ids.count), \
        "load_model_s": \(fmt(loadModel)), "load_json_s": \(fmt(loadJSON)), \
        "encode_s": \(fmt(encode)), "encode_mb_per_s": \(fmt(megabytes / encode)), \
        "encode_json_s": \(fmt(encodeJSON)), "json_ids_equal_model_ids": \(jsonAgrees.map(String.init) ?? "null"), \
        "decode_s": \(fmt(decode)), "decode_round_trips": \(decoded == text)}
        """)
} catch {
    fail("error: \(error)")
}
