// The JSON Lines reader under the training data and batch files: line splitting, and a line
// over the limit refused when the limit is passed, before the rest is read.

import Foundation
import Testing
@testable import PaliGemma

@Suite struct JSONLinesTests {
    func lines(_ bytes: [UInt8], max: Int = 64, chunk: Int) throws -> [(Int, String)] {
        var out: [(Int, String)] = []
        var reader = JSONLines(path: "f.jsonl", maxLineBytes: max)
        var i = 0
        while i < bytes.count {
            try reader.feed(Array(bytes[i..<min(i + chunk, bytes.count)])) { out.append(($0, String(decoding: $1, as: UTF8.self))) }
            i += chunk
        }
        try reader.finish { out.append(($0, String(decoding: $1, as: UTF8.self))) }
        return out
    }

    @Test func splitsLinesWhateverTheChunks() throws {
        let text = Array("\u{FEFF}{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}".utf8)
        for chunk in [1, 2, 3, 5, 1000] {
            let got = try lines(text, chunk: chunk)
            #expect(got.map(\.0) == [1, 2, 3, 4, 5], "chunk \(chunk)")
            #expect(got.map(\.1) == ["{\"a\":1}", "", "  ", "{\"b\":2}", "{\"c\":3}"], "chunk \(chunk)")
        }
        #expect(try lines([], chunk: 4).isEmpty)
        #expect(try lines(Array("x\n".utf8), chunk: 4).map(\.1) == ["x"])
    }

    @Test func aLongLineIsRefusedNamingItsNumber() throws {
        let text = Array(("{\"ok\":1}\n" + String(repeating: "x", count: 65) + "\n").utf8)
        for chunk in [1, 7, 1000] {
            do {
                _ = try lines(text, chunk: chunk)
                Issue.record("a 65-byte line passed a 64-byte limit (chunk \(chunk))")
            } catch let error as PaliGemmaError {
                #expect("\(error)".contains("f.jsonl, line 2: longer than 64 bytes"), "\(error)")
            }
        }
        // Exactly at the limit, with or without "\r\n", passes.
        let ok = Array((String(repeating: "y", count: 64) + "\r\n" + String(repeating: "z", count: 64)).utf8)
        #expect(try lines(ok, chunk: 10).map { $0.1.count } == [64, 64])
    }

    /// A 64 MiB line in a file is refused after reading about the limit, not the whole line:
    /// the reader's peak memory stays near the 1 MiB limit plus one 1 MiB chunk.
    @Test func aHugeLineInAFileIsRefusedEarly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pg-jsonl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("big.jsonl")
        try Data("{\"image\":\"a.png\"}\n".utf8).write(to: url)
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        let block = Data(repeating: 0x61, count: 1 << 20)
        for _ in 0..<64 { try handle.write(contentsOf: block) }
        try handle.close()
        var seen = 0
        do {
            try JSONLines.forEachLine(of: url) { _, _ in seen += 1 }
            Issue.record("a 64 MiB line was accepted")
        } catch let error as PaliGemmaError {
            #expect("\(error)".contains("line 2: longer than 1048576 bytes"), "\(error)")
        }
        #expect(seen == 1)
        // The training data reader and the batch command go through it.
        #expect(throws: PaliGemmaError.self) { try TrainingData.read(jsonl: url) }
    }
}
