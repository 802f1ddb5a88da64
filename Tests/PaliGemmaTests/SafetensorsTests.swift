import Foundation
import PaliGemmaJSON
import Testing
@testable import PaliGemma

/// The safetensors reader: round trip, and a typed error naming file and tensor for each kind
/// of corruption.
struct SafetensorsTests {
    /// Raw file bytes from a header string and a data section.
    static func file(header: String, data: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        return out + Array(header.utf8) + data
    }

    static func write(_ bytes: [UInt8], name: String = "model.safetensors") throws -> URL {
        let url = try temporaryDirectory().appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    /// The error message opening `bytes` gives (fails the test if it opens).
    static func openError(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let url = try write(bytes)
        do {
            _ = try SafetensorsFile(path: url.path)
            Issue.record("opened a corrupt file", sourceLocation: sourceLocation)
            return ""
        } catch let error as PaliGemmaError {
            #expect(error.description.contains(url.path), "message does not name the file: \(error)", sourceLocation: sourceLocation)
            return error.description
        }
    }

    @Test func roundTrip() throws {
        let items: [SafetensorsWriter.Item] = [
            .float32("a.weight", shape: [2, 3], [1, 2, 3, 4, 5, -6]),
            .int64("ids", shape: [3], [7, -1, 1 << 40]),
            SafetensorsWriter.Item(name: "h", dtype: .bfloat16, shape: [2], bytes: [0x80, 0x3F, 0x00, 0xC0]),
            SafetensorsWriter.Item(name: "f", dtype: .float16, shape: [1], bytes: [0x00, 0x3C]),
            .float32("empty", shape: [0, 4], []),
        ]
        let url = try temporaryDirectory().appendingPathComponent("x.safetensors")
        try SafetensorsWriter.write(items, metadata: ["format": "pt"], to: url)
        let f = try SafetensorsFile(path: url.path)
        #expect(f.names == ["a.weight", "ids", "h", "f", "empty"])
        #expect(f.metadata == ["format": "pt"])
        #expect(try f.tensor("a.weight").floats() == [1, 2, 3, 4, 5, -6])
        #expect(try f.tensor("a.weight").shape == [2, 3])
        #expect(try f.tensor("ids").ints() == [7, -1, 1 << 40])
        #expect(try f.tensor("h").floats() == [1, -2])
        #expect(try f.tensor("f").floats() == [1])
        #expect(try f.tensor("empty").count == 0)
        #expect(throws: PaliGemmaError.self) { try f.tensor("missing") }
    }

    @Test func truncatedAndGarbage() throws {
        #expect(try Self.openError([1, 2, 3]).contains("too short"))
        #expect(try Self.openError(Self.file(header: "{}", data: []).dropLast(1).map { $0 }).contains("runs past the end"))
        var huge = [UInt8](repeating: 0xFF, count: 16)
        huge[7] = 0x00
        #expect(try Self.openError(huge).contains("exceeds"))
        #expect(try Self.openError(Self.file(header: "not json", data: [])).contains("not valid JSON"))
        #expect(try Self.openError(Self.file(header: "[1,2]", data: [])).contains("not a JSON object"))
        // data cut short: offsets point past the end of the file
        let ok = Self.file(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        let cut = try Self.openError(Array(ok.dropLast(3)))
        #expect(cut.contains("'w'") && cut.contains("outside"))
    }

    @Test func badEntries() throws {
        func header(_ h: String, _ n: Int = 16) -> [UInt8] { Self.file(header: h, data: [UInt8](repeating: 0, count: n)) }
        let dup = try Self.openError(header(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#))
        #expect(dup.contains("duplicate key 'w'"))
        let overlap = try Self.openError(header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#))
        #expect(overlap.contains("overlaps tensor 'a'"))
        // One shared byte is an overlap; touching ranges are not (a check loosened by one byte
        // survived the mutation run).
        let oneByte = try Self.openError(header(#"{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"I8","shape":[2],"data_offsets":[1,3]}}"#))
        #expect(oneByte.contains("overlaps tensor 'a'"), "\(oneByte)")
        let touching = try Self.write(header(#"{"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"I8","shape":[2],"data_offsets":[2,4]}}"#, 4))
        #expect(try SafetensorsFile(path: touching.path).names.count == 2)
        let mismatch = try Self.openError(header(#"{"a":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,8]}}"#))
        #expect(mismatch.contains("'a'") && mismatch.contains("needs 12 bytes"))
        // A span larger than the shape needs is refused too, not only a shorter one (a loosened
        // `<=` size check survived the mutation run; issue 17).
        let larger = try Self.openError(header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#))
        #expect(larger.contains("'a'") && larger.contains("needs 8 bytes") && larger.contains("span 12"))
        // A shape whose byte count overflows is refused with a message (the message's own
        // arithmetic once trapped there: found while writing the safetensors fuzz target).
        let huge = try Self.openError(header(#"{"a":{"dtype":"F32","shape":[1099511627776,4194304],"data_offsets":[0,4]}}"#))
        #expect(huge.contains("'a'") && huge.contains("too large"), "\(huge)")
        let dtype = try Self.openError(header(#"{"q":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}"#))
        #expect(dtype.contains("'q'") && dtype.contains("'F8_E4M3' is not supported"))
        let order = try Self.openError(header(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#))
        #expect(order.contains("not ordered"))
        let field = try Self.openError(header(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#))
        #expect(field.contains("unknown field 'extra'"))
        let negative = try Self.openError(header(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#))
        #expect(negative.contains("negative"))
        let noOffsets = try Self.openError(header(#"{"a":{"dtype":"F32","shape":[1]}}"#))
        #expect(noOffsets.contains("data_offsets"))
        let meta = try Self.openError(header(#"{"__metadata__":{"k":1}}"#))
        #expect(meta.contains("not a string"))
    }

    @Test func streamWriterFillsPiecesAndChecksCompleteness() throws {
        let url = try temporaryDirectory().appendingPathComponent("stream.safetensors")
        let tensors: [(name: String, dtype: DType, shape: [Int])] = [("a", .float32, [3]), ("b", .int8, [5])]
        let writer = try SafetensorsStreamWriter(path: url.path, tensors: tensors, metadata: ["format": "pt"])
        try [UInt8]([1, 2, 3, 4, 5]).withUnsafeBytes { try writer.write("b", $0) }
        try [Float]([3]).withUnsafeBytes { try writer.write("a", at: 8, $0) }
        try [Float]([1, 2]).withUnsafeBytes { try writer.write("a", $0) }
        #expect(throws: PaliGemmaError.self) { try [UInt8]([9]).withUnsafeBytes { try writer.write("b", at: 5, $0) } }
        #expect(throws: PaliGemmaError.self) { try [UInt8]([9]).withUnsafeBytes { try writer.write("c", $0) } }
        try writer.finish()
        let file = try SafetensorsFile(path: url.path)
        #expect(try file.tensor("a").floats() == [1, 2, 3])
        #expect(try file.tensor("b").floats() == [1, 2, 3, 4, 5])
        #expect(file.metadata == ["format": "pt"])
        // Same bytes as the in-memory writer.
        let same = SafetensorsWriter.encode([.float32("a", shape: [3], [1, 2, 3]),
                                             SafetensorsWriter.Item(name: "b", dtype: .int8, shape: [5], bytes: [1, 2, 3, 4, 5])],
                                            metadata: ["format": "pt"])
        #expect(Array(try Data(contentsOf: url)) == same)

        #expect(throws: PaliGemmaError.self) { _ = try SafetensorsStreamWriter(path: url.path, tensors: tensors, metadata: [:]) }  // exists
        let partial = try SafetensorsStreamWriter(path: url.path + ".2", tensors: tensors, metadata: [:])
        try [Float]([1, 2, 3]).withUnsafeBytes { try partial.write("a", $0) }
        do {
            try partial.finish()
            Issue.record("an incomplete file was accepted")
        } catch {
            #expect("\(error)".contains("'b'") && "\(error)".contains("0 of its 5 bytes"), "\(error)")
        }
    }

    @Test func randomCheckpointWritesShardsThatLoad() throws {
        let dir = try temporaryDirectory().appendingPathComponent("random")
        let config = try String(contentsOf: Fixtures.model("pg2-f32").appendingPathComponent("config.json"), encoding: .utf8)
        try RandomCheckpoint.write(configJSON: config, dtype: .bfloat16, to: dir, maxShardBytes: 100_000)
        let checkpoint = try Checkpoint(directory: dir)
        #expect(checkpoint.files.count > 1)
        _ = try PaliGemmaModel(checkpoint: checkpoint)  // strict: every tensor used, every shape right
        #expect(Set(checkpoint.tensorNames) == Set(try PaliGemmaModel.expectedTensors(config: checkpoint.config).map(\.name)))
        let tensor = try #require(try checkpoint.tensor(canonical: "language_model.model.layers.0.mlp.up_proj.weight"))
        let values = tensor.floats()
        let std = (values.reduce(0) { $0 + $1 * $1 } / Float(values.count)).squareRoot()
        print("random checkpoint: \(checkpoint.files.count) shards, up_proj std \(std) (want \(1 / Float(64).squareRoot()))")
        #expect(abs(std - 0.125) < 0.02)
    }

    @Test("random checkpoint with sinusoidal <loc> rows: those rows are the sinusoids, everything else as drawn without them")
    func randomCheckpointLocRows() throws {
        let root = try temporaryDirectory()
        let config = try String(contentsOf: Fixtures.model("pg1-f32").appendingPathComponent("config.json"), encoding: .utf8)
        let plain = root.appendingPathComponent("plain"), sinusoidal = root.appendingPathComponent("loc")
        try RandomCheckpoint.write(configJSON: config, dtype: .float32, to: plain, seed: 3)
        try RandomCheckpoint.write(configJSON: config, dtype: .float32, to: sinusoidal, seed: 3, locRows: 10..<20)
        let a = try Checkpoint(directory: plain), b = try Checkpoint(directory: sinusoidal)
        for name in a.tensorNames {
            let x = try #require(try a.tensor(canonical: name)).floats(), y = try #require(try b.tensor(canonical: name)).floats()
            guard name.hasSuffix("embed_tokens.weight") else {
                #expect(x == y, "\(name) differs")
                continue
            }
            let width = try #require(try a.tensor(canonical: name)).shape[1]
            for (i, (u, v)) in zip(x, y).enumerated() {
                let (row, col) = i.quotientAndRemainder(dividingBy: width)
                if (10..<20).contains(row) {
                    #expect(v == RandomCheckpoint.locEmbedding(row - 10, column: col, width: width))
                } else {
                    #expect(u == v, "row \(row) column \(col)")
                }
            }
        }
        // Neighbouring coordinates start close, far ones apart; the scale is the embedding's.
        func e(_ c: Int) -> [Float] { (0..<64).map { RandomCheckpoint.locEmbedding(c, column: $0, width: 64) } }
        func distance(_ p: [Float], _ q: [Float]) -> Float { zip(p, q).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot() }
        #expect(distance(e(500), e(501)) < distance(e(500), e(520)) && distance(e(500), e(520)) < distance(e(500), e(900)))
        let std = (e(123).reduce(0) { $0 + $1 * $1 } / 64).squareRoot()
        #expect(abs(std - 0.02) < 0.004, "std \(std)")
    }

    @Test("random checkpoint with sin-cos positions: SigLIP's table is the 2D grid's, everything else as drawn without it")
    func randomCheckpointGridPositions() throws {
        let root = try temporaryDirectory()
        let config = try String(contentsOf: Fixtures.model("pg1-f32").appendingPathComponent("config.json"), encoding: .utf8)
        let plain = root.appendingPathComponent("plain"), grid = root.appendingPathComponent("grid")
        try RandomCheckpoint.write(configJSON: config, dtype: .float32, to: plain, seed: 3)
        try RandomCheckpoint.write(configJSON: config, dtype: .float32, to: grid, seed: 3, sincosPositions: true)
        let a = try Checkpoint(directory: plain), b = try Checkpoint(directory: grid)
        var checked = 0
        for name in a.tensorNames {
            let x = try #require(try a.tensor(canonical: name)).floats(), y = try #require(try b.tensor(canonical: name)).floats()
            guard name.hasSuffix("position_embedding.weight") else {
                #expect(x == y, "\(name) differs")
                continue
            }
            let shape = try #require(try b.tensor(canonical: name)).shape
            let side = Int(Double(shape[0]).squareRoot()), width = shape[1]
            #expect(side * side == shape[0])
            for (i, v) in y.enumerated() {
                let (patch, channel) = i.quotientAndRemainder(dividingBy: width)
                #expect(v == RandomCheckpoint.gridPosition(row: patch / side, column: patch % side, channel: channel, width: width))
            }
            checked += 1
        }
        #expect(checked == 1)
        // Hand values at width 8 (two frequencies, 1 and 1/100): row 1, column 2.
        let expected: [Float] = [sin(1), sin(0.01), cos(1), cos(0.01), sin(2), sin(0.02), cos(2), cos(0.02)]
        let table = (0..<8).map { RandomCheckpoint.gridPosition(row: 1, column: 2, channel: $0, width: 8) }
        let worst = zip(table, expected).map { abs($0 - $1) }.max() ?? 1
        print("grid position hand values: worst difference \(worst)")
        #expect(worst < 1e-6)
    }

    /// model.safetensors.index.json: the hub's layout (two-space indent, keys sorted by code
    /// point, a final newline), read back by the checkpoint reader's parser.
    @Test func indexIsThePrettyPrintedSortedHubLayout() throws {
        let url = try temporaryDirectory().appendingPathComponent(SafetensorsIndex.fileName)
        try SafetensorsIndex.write(weightMap: [("layers.10.w", "model-00002-of-00002.safetensors"), ("layers.2.w", "model-00001-of-00002.safetensors"),
                                               ("a/\"b\"", "model-00001-of-00002.safetensors")], totalSize: 1234, to: url)
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(text == """
            {
              "metadata" : {
                "total_size" : 1234
              },
              "weight_map" : {
                "a/\\"b\\"" : "model-00001-of-00002.safetensors",
                "layers.10.w" : "model-00002-of-00002.safetensors",
                "layers.2.w" : "model-00001-of-00002.safetensors"
              }
            }

            """)
        let json = try JSONParser.parse(Array(text.utf8), rejectDuplicateKeys: true)
        #expect(json["metadata"]?["total_size"]?.intValue == 1234)
        #expect(json["weight_map"]?["a/\"b\""]?.stringValue == "model-00001-of-00002.safetensors")
        #expect(json["weight_map"]?.objectValue?.map(\.key) == ["a/\"b\"", "layers.10.w", "layers.2.w"])

        // A tensor listed twice is refused by name, and nothing is written.
        let twice = try temporaryDirectory().appendingPathComponent(SafetensorsIndex.fileName)
        #expect {
            try SafetensorsIndex.write(weightMap: [("x", "a.safetensors"), ("x", "b.safetensors")], totalSize: 1, to: twice)
        } throws: { error in
            guard case PaliGemmaError.safetensors(_, let tensor, let reason) = error else { return false }
            return tensor == "x" && reason.contains("twice")
        }
        #expect(!FileManager.default.fileExists(atPath: twice.path))
    }
}
