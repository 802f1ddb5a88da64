import Foundation
import Testing
@testable import PaliGemma

struct TrainedCheckpointTests {
    @Test("a trained folder keeps the base's files and shards and holds the replaced values (float32 beside bf16, or as stored)",
          arguments: [("pg1-bf16", TrainedCheckpoint.Precision.float32), ("pg2-f32", .stored), ("pg2-bf16", .float32)])
    func write(name: String, precision: TrainedCheckpoint.Precision) throws {
        try Self.check(Fixtures.model(name), precision: precision)
    }

    @Test("a sharded bf16 base with float32 replacements: shards kept, the index rewritten with the new sizes")
    func shardedResized() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // pg2-f32 (three shards) converted to bf16, shard by shard.
        let folder = dir.appendingPathComponent("pg2-bf16-sharded")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let f32 = try Checkpoint(directory: Fixtures.model("pg2-f32"))
        for file in f32.files {
            let items = try file.names.map { n -> SafetensorsWriter.Item in
                let v = try file.tensor(n).floats()
                var bytes = [UInt8](repeating: 0, count: v.count * 2)
                v.withUnsafeBufferPointer { src in
                    bytes.withUnsafeMutableBytes { Ops.convertFromFloat(src.baseAddress!, to: .bfloat16, into: $0.baseAddress!, count: v.count) }
                }
                return SafetensorsWriter.Item(name: n, dtype: .bfloat16, shape: file.entries[n]!.shape, bytes: bytes)
            }
            try SafetensorsWriter.write(items, metadata: ["format": "pt"], to: folder.appendingPathComponent((file.path as NSString).lastPathComponent))
        }
        for other in ["config.json", SafetensorsIndex.fileName] {
            try FileManager.default.copyItem(at: Fixtures.model("pg2-f32").appendingPathComponent(other), to: folder.appendingPathComponent(other))
        }
        try Self.check(folder, precision: .float32, in: dir)
    }

    static func check(_ model: URL, precision: TrainedCheckpoint.Precision, in parent: URL? = nil) throws {
        let dir = try parent ?? temporaryDirectory()
        defer { if parent == nil { try? FileManager.default.removeItem(at: dir) } }
        let source = try Checkpoint(directory: model)
        let base = try PaliGemmaModel(directory: model)
        var rng = SeededRandom(9)
        let trained = TrainableModel(model: base, method: .attention)
        var replacements: [String: [Float]] = [:]
        for p in trained.parameters { replacements[p.name] = rng.floats(p.count) }
        let out = dir.appendingPathComponent("model")
        try TrainedCheckpoint.write(source, replacing: replacements, precision: precision, to: out)
        let written = try Checkpoint(directory: out)
        #expect(written.files.map { ($0.path as NSString).lastPathComponent } == source.files.map { ($0.path as NSString).lastPathComponent })
        #expect(written.tensorNames == source.tensorNames)
        for n in source.tensorNames {
            let (a, b) = (try #require(try written.tensor(canonical: n)), try #require(try source.tensor(canonical: n)))
            if let values = replacements[n] {
                let want = precision == .float32 ? values : values.map(b.dtype.round)
                #expect(a.floats() == want, "\(n) holds the replacement")
                #expect(a.dtype == (precision == .float32 ? .float32 : b.dtype))
            } else {
                #expect(a.dtype == b.dtype && a.floats() == b.floats(), "\(n) copied")
            }
        }
        _ = try PaliGemmaModel(checkpoint: written)
        #expect(throws: PaliGemmaError.self) {
            try TrainedCheckpoint.write(source, replacing: ["nope.weight": [1]], precision: precision, to: dir.appendingPathComponent("x"))
        }
    }
}
