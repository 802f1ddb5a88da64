import Foundation
import Testing
@testable import PaliGemma

/// `QuantizedCheckpoint` (`paligemma quantize`): a folder quantized once loads without quantizing
/// and computes exactly what quantizing at load computes; its files follow the hub's layout;
/// unsafe outputs, quantized inputs and corrupt int8 folders are refused with the tensor named.
struct QuantizedCheckpointTests {
    /// Quantizes a folder into a fresh temporary directory (`out` inside it).
    static func quantize(_ source: URL, maxShardBytes: Int = QuantizedCheckpoint.defaultMaxShardBytes,
                         chunkBytes: Int = QuantizedCheckpoint.defaultChunkBytes) throws -> (URL, QuantizedCheckpoint.Summary) {
        let out = try temporaryDirectory().appendingPathComponent("out")
        let summary = try QuantizedCheckpoint.write(Checkpoint(directory: source), to: out, maxShardBytes: maxShardBytes, chunkBytes: chunkBytes)
        return (out, summary)
    }

    /// Prompt + suffix logits (prefix-LM over the prompt, causal over the suffix) and the vision
    /// features of a parity fixture's inputs.
    static func logits(_ model: PaliGemmaModel, _ name: String) throws -> [Float] {
        let ref = try Fixtures.reference(name)
        let pixels = try ref.tensor("pixel_values").floats()
        let prompt = try ref.tensor("input_ids").ints()
        let ids = prompt + (try ref.tensor("suffix_ids").ints())
        let image = try model.imageFeatures(pixels: pixels)
        let out = try model.forward(ids: ids, imageFeatures: image, prefixLength: prompt.count,
                                    cache: model.makeCache(capacity: ids.count), logits: .all)
        return image.values + out.values
    }

    static func bytes(_ t: Tensor) -> [UInt8] {
        guard let p = t.pointer else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: t.byteCount))
    }

    // MARK: Exactness

    @Test("stored int8 gives bit-identical logits to quantizing at load", arguments: ModelParityTests.names)
    func loadsIdentically(name: String) throws {
        let (out, summary) = try Self.quantize(Fixtures.model(name), maxShardBytes: 60_000)
        #expect(summary.shards > 1)
        let atLoad = try PaliGemmaModel(directory: Fixtures.model(name), quantization: .int8)
        #expect(atLoad.weightFormat == .int8Quantized)
        let want = try Self.logits(atLoad, name)
        for asked in [Quantization.none, .int8] {  // int4 is refused on a quantized folder (Int4Tests)
            let stored = try PaliGemmaModel(directory: out, quantization: asked)
            #expect(stored.weightFormat == .int8Stored)
            let (d, at) = maxAbsDiff(try Self.logits(stored, name), want)
            print("[\(name)] stored int8 (asked \(asked)) vs int8 at load: max |diff| \(d) at \(at) of \(want.count); \(summary.line)")
            #expect(d == 0, "\(name): stored int8 differs from int8 at load by \(d) at \(at)")
        }
        let float = try PaliGemmaModel(directory: Fixtures.model(name))
        #expect(float.weightFormat == .stored)
        let (d, _) = maxAbsDiff(try Self.logits(float, name), want)
        print("[\(name)] float vs int8 (for scale): max |diff| \(d)")
        #expect(d > 0, "the comparison must be able to see int8")
    }

    @Test("an untied lm_head is quantized; a float copy of a tied one is dropped", arguments: [false, true])
    func outputProjection(tied: Bool) throws {
        let dir = try copyFixture("pg1-f32")
        var rng = SeededRandom(11)
        let head = rng.floats(320 * 64).map { $0 * 0.1 }
        try CheckpointTests.rewrite(dir) { items in
            if tied, let e = items.first(where: { $0.name == "language_model.model.embed_tokens.weight" }) {
                items.append(SafetensorsWriter.Item(name: "lm_head.weight", dtype: e.dtype, shape: e.shape, bytes: e.bytes))
            } else {
                items.append(.float32("lm_head.weight", shape: [320, 64], head))
            }
        }
        if !tied {
            let url = dir.appendingPathComponent("config.json")
            let text = try String(contentsOf: url, encoding: .utf8)
                .replacingOccurrences(of: "\"head_dim\": 16,", with: "\"head_dim\": 16, \"tie_word_embeddings\": false,")
            try text.write(to: url, atomically: true, encoding: .utf8)
            #expect(try Checkpoint(directory: dir).config.textConfig.tieWordEmbeddings == false)
        }
        let (out, summary) = try Self.quantize(dir)
        #expect(summary.tensorsDropped == (tied ? ["lm_head.weight"] : []))
        #expect(summary.tensorsQuantized == 2 * 7 + 1)
        let checkpoint = try Checkpoint(directory: out)
        let lmHead = try #require(try checkpoint.tensor(canonical: "language_model.lm_head.weight"))
        let embedding = try #require(try checkpoint.tensor(canonical: "language_model.model.embed_tokens.weight"))
        #expect(lmHead.dtype == .int8 && lmHead.shape == [320, 64] && embedding.dtype == .float32)
        let (q, _) = Ops.quantizeInt8(tied ? embedding : Tensor(values: head, shape: [320, 64]))
        #expect(Self.bytes(lmHead) == Self.bytes(q))
        let want = try Self.logits(PaliGemmaModel(directory: dir, quantization: .int8), "pg1-f32")
        let (d, at) = maxAbsDiff(try Self.logits(PaliGemmaModel(directory: out), "pg1-f32"), want)
        print("[pg1-f32 \(tied ? "tied + float lm_head copy" : "untied lm_head")] stored int8 vs int8 at load: max |diff| \(d) at \(at)")
        #expect(d == 0)
    }

    // MARK: The files

    @Test("files: index, I8 + F32 scales, other tensors and files byte-identical", arguments: ModelParityTests.names)
    func layout(name: String) throws {
        let source = try Checkpoint(directory: Fixtures.model(name))
        let (out, summary) = try Self.quantize(Fixtures.model(name), maxShardBytes: 60_000)
        let fm = FileManager.default
        let index = out.appendingPathComponent("model.safetensors.index.json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: index)) as? [String: Any])
        let weightMap = try #require(json["weight_map"] as? [String: String])
        let totalSize = (json["metadata"] as? [String: Any])?["total_size"] as? Int
        let shardNames = Set(weightMap.values)
        #expect(shardNames.count == summary.shards)
        #expect(shardNames == Set((1...summary.shards).map { String(format: "model-%05d-of-%05d.safetensors", $0, summary.shards) }))
        #expect(!fm.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        var dataBytes = 0
        var stored: [String: (file: SafetensorsFile, entry: SafetensorsEntry)] = [:]
        for shard in shardNames.sorted() {
            let file = try SafetensorsFile(path: out.appendingPathComponent(shard).path)
            #expect(file.metadata == ["format": "pt", QuantizedCheckpoint.metadataKey: QuantizedCheckpoint.metadataValueInt8])
            var end = 0
            for e in file.entries.values.sorted(by: { $0.begin < $1.begin }) {
                #expect(e.begin == end, "\(shard): gap before \(e.name)")
                #expect((file.dataOffset + e.begin) % e.dtype.size == 0, "\(shard): \(e.name) is not aligned")
                #expect(weightMap[e.name] == shard, "\(e.name) is in \(shard), the index says \(weightMap[e.name] ?? "nothing")")
                #expect(Checkpoint.canonicalName(e.name) == e.name, "\(e.name) is not in the canonical spelling")
                end = e.end
                stored[e.name] = (file, e)
            }
            #expect(file.dataOffset + end == file.storage.byteCount)
            dataBytes += end
        }
        #expect(Set(stored.keys) == Set(weightMap.keys))
        #expect(totalSize == dataBytes && summary.bytesOut == dataBytes)

        // Every int8 target is I8 with its F32 scales, equal to the quantizer's output.
        let targets = try PaliGemmaModel.quantizableMatrices(config: source.config)
        #expect(targets.count == source.config.textConfig.numHiddenLayers * 7 + 1)
        #expect(Set(stored.values.filter { $0.entry.dtype == .int8 }.map(\.entry.name)) == Set(targets.map(\.name)))
        var worst = 0
        for target in targets {
            let weight = try #require(stored[target.name])
            let scale = try #require(stored[target.name + "_scale"], "\(target.name): no scale")
            #expect(weight.entry.dtype == .int8 && weight.entry.shape == target.shape)
            #expect(scale.entry.dtype == .float32 && scale.entry.shape == [target.shape[0]])
            let (q, s) = Ops.quantizeInt8(try #require(try source.tensor(canonical: target.source)))
            let qs = Self.bytes(try weight.file.tensor(target.name))
            worst = max(worst, zip(qs, Self.bytes(q)).map { abs(Int(Int8(bitPattern: $0)) - Int(Int8(bitPattern: $1))) }.max() ?? 0)
            #expect(qs == Self.bytes(q), "\(target.name)")
            #expect(try scale.file.tensor(target.name + "_scale").floats() == s, "\(target.name)_scale")
        }
        print("[\(name)] \(targets.count) int8 matrices: worst step difference to Ops.quantizeInt8 \(worst); \(summary.line)")

        // Everything else byte-identical, in its stored dtype.
        var copied = 0
        for name in source.tensorNames where !targets.contains(where: { $0.name == name }) {
            let a = try #require(try source.tensor(canonical: name))
            let b = try #require(stored[name], "\(name) was not copied")
            #expect(b.entry.dtype == a.dtype && b.entry.shape == a.shape)
            #expect(Self.bytes(try b.file.tensor(name)) == Self.bytes(a), "\(name) differs")
            copied += 1
        }
        #expect(copied == summary.tensorsCopied)
        #expect(stored.count == copied + 2 * targets.count)

        // The other files, unchanged.
        let others = try fm.contentsOfDirectory(atPath: Fixtures.model(name).path).filter { !$0.contains("safetensors") }.sorted()
        #expect(summary.filesCopied == others)
        for file in others {
            #expect(try Data(contentsOf: out.appendingPathComponent(file)) == Data(contentsOf: Fixtures.model(name).appendingPathComponent(file)))
        }
        let written = try fm.contentsOfDirectory(atPath: out.path).sorted()
        #expect(written == (others + shardNames + ["model.safetensors.index.json"]).sorted())
        #expect(try CheckpointSummary(checkpoint: Checkpoint(directory: out)).parameterCount
                == (try CheckpointSummary(checkpoint: source).parameterCount))
    }

    @Test func smallPiecesAndOneFileWriteTheSameTensors() throws {
        let (whole, _) = try Self.quantize(Fixtures.model("pg2-bf16"))
        let (pieces, _) = try Self.quantize(Fixtures.model("pg2-bf16"), chunkBytes: 1000)
        let a = try Data(contentsOf: whole.appendingPathComponent("model.safetensors"))
        let b = try Data(contentsOf: pieces.appendingPathComponent("model.safetensors"))
        #expect(a == b, "writing in 1000-byte pieces changed the file")
        #expect(!FileManager.default.fileExists(atPath: whole.appendingPathComponent("model.safetensors.index.json").path))
        let checkpoint = try Checkpoint(directory: whole)
        let targets = try PaliGemmaModel.quantizableMatrices(config: checkpoint.config)
        let text = try CheckpointSummary(checkpoint: checkpoint).text(loadSeconds: 0)
        #expect(text.contains("I8") && text.contains("int8         \(targets.count) matrices"), "\(text)")
    }

    // MARK: Refusals

    static func error(_ body: () throws -> Void) -> PaliGemmaError? { thrownPaliGemmaError(body) }

    @Test func refusesUnsafeOutputs() throws {
        let source = try copyFixture("pg1-bf16")
        let checkpoint = try Checkpoint(directory: source)
        let before = try FileManager.default.contentsOfDirectory(atPath: source.path).sorted()
        let parent = try temporaryDirectory()

        let full = parent.appendingPathComponent("full")
        try FileManager.default.createDirectory(at: full, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: full.appendingPathComponent("notes.txt"))
        let cases: [(URL, String)] = [
            (full, "not empty"),
            (full.appendingPathComponent("notes.txt"), "not a folder"),
            (source, "checkpoint folder"),
            (source.appendingPathComponent("sub/int8"), "checkpoint folder"),
            (URL(fileURLWithPath: source.path + "/../" + source.lastPathComponent), "checkpoint folder"),
        ]
        for (output, expected) in cases {
            let e = Self.error { try QuantizedCheckpoint.write(checkpoint, to: output) }
            print("refused \(output.path): \(e.map { "\($0)" } ?? "-")")
            guard case let .io(path, reason)? = e else { Issue.record("\(output.path): \(String(describing: e))"); continue }
            #expect(path == output.standardizedFileURL.path && reason.contains(expected), "\(reason)")
        }
        #expect(try Data(contentsOf: full.appendingPathComponent("notes.txt")) == Data("keep".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: source.path).sorted() == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path) == ["full"])

        // An empty folder may be the output.
        let empty = parent.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try QuantizedCheckpoint.write(checkpoint, to: empty)
        #expect(try PaliGemmaModel(directory: empty).weightFormat == .int8Stored)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path).sorted() == ["empty", "full"])
    }

    @Test func refusesAQuantizedInput() throws {
        let (out, _) = try Self.quantize(Fixtures.model("pg2-f32"))
        #expect(QuantizedCheckpoint.isQuantized(try Checkpoint(directory: out)))
        #expect(!QuantizedCheckpoint.isQuantized(try Checkpoint(directory: Fixtures.model("pg2-f32"))))
        let e = Self.error { _ = try Self.quantize(out) }
        print("quantized input: \(e.map { "\($0)" } ?? "-")")
        guard case let .safetensors(path, _, reason)? = e else { Issue.record("\(String(describing: e))"); return }
        #expect(path.hasPrefix(out.path) && reason.contains("already quantized"))

        // Without the mark, an I8 tensor alone is enough.
        let dir = try copyFixture("pg1-f32")
        try CheckpointTests.rewrite(dir) { items in
            items.append(SafetensorsWriter.Item(name: "extra.weight", dtype: .int8, shape: [2], bytes: [1, 2]))
        }
        let e2 = Self.error { _ = try Self.quantize(dir) }
        guard case let .safetensors(_, tensor, reason)? = e2 else { Issue.record("\(String(describing: e2))"); return }
        #expect(tensor == "extra.weight" && reason.contains("already int8"))
    }

    @Test func aFailedRunLeavesNothing() throws {
        let source = try copyFixture("pg1-f32")
        let broken = source.appendingPathComponent("tokenizer.model")
        try FileManager.default.createSymbolicLink(atPath: broken.path, withDestinationPath: "/nonexistent/tokenizer.model")
        let parent = try temporaryDirectory()
        let output = parent.appendingPathComponent("out")
        let e = Self.error { try QuantizedCheckpoint.write(Checkpoint(directory: source), to: output) }
        print("failed run: \(e.map { "\($0)" } ?? "-")")
        guard case let .io(path, _)? = e else { Issue.record("\(String(describing: e))"); return }
        #expect(path == broken.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path).isEmpty)
    }

    // MARK: Corrupt int8 folders

    struct Corruption: CustomStringConvertible, Sendable {
        let description: String
        /// The tensor the error must name, and words it must contain.
        let tensor: String
        let words: [String]
        let edit: @Sendable (inout [SafetensorsWriter.Item]) -> Void
    }

    static let layer = "language_model.model.layers.1."
    static let corruptions: [Corruption] = [
        Corruption(description: "scale missing", tensor: layer + "mlp.up_proj.weight", words: ["scales", "missing"]) { items in
            items.removeAll { $0.name == layer + "mlp.up_proj.weight_scale" }
        },
        Corruption(description: "scale of the wrong shape", tensor: layer + "self_attn.q_proj.weight_scale", words: ["[65]", "F32 [64]"]) { items in
            replace(&items, layer + "self_attn.q_proj.weight_scale") { .float32($0.name, shape: [65], [Float](repeating: 0.01, count: 65)) }
        },
        Corruption(description: "scale in BF16", tensor: layer + "self_attn.k_proj.weight_scale", words: ["BF16", "F32"]) { items in
            replace(&items, layer + "self_attn.k_proj.weight_scale") {
                SafetensorsWriter.Item(name: $0.name, dtype: .bfloat16, shape: $0.shape, bytes: [UInt8](repeating: 0x3c, count: $0.shape[0] * 2))
            }
        },
        Corruption(description: "NaN scale", tensor: layer + "mlp.down_proj.weight_scale", words: ["nan", "finite"]) { items in
            replace(&items, layer + "mlp.down_proj.weight_scale") { .float32($0.name, shape: $0.shape, [Float](repeating: .nan, count: $0.shape[0])) }
        },
        Corruption(description: "I8 norm", tensor: layer + "input_layernorm.weight", words: ["I8", "only"]) { items in
            replace(&items, layer + "input_layernorm.weight") {
                SafetensorsWriter.Item(name: $0.name, dtype: .int8, shape: $0.shape, bytes: [UInt8](repeating: 1, count: $0.shape[0]))
            }
        },
        Corruption(description: "I8 vision matrix with scales", tensor: "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
                   words: ["I8", "only"]) { items in
            replace(&items, "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight") {
                SafetensorsWriter.Item(name: $0.name, dtype: .int8, shape: $0.shape, bytes: [UInt8](repeating: 1, count: $0.shape.reduce(1, *)))
            }
            items.append(.float32("vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight_scale", shape: [48], [Float](repeating: 1, count: 48)))
        },
        Corruption(description: "scales without an I8 weight", tensor: layer + "mlp.gate_proj.weight_scale", words: ["belong", "F32"]) { items in
            replace(&items, layer + "mlp.gate_proj.weight") { .float32($0.name, shape: $0.shape, [Float](repeating: 0.5, count: $0.shape.reduce(1, *))) }
        },
        Corruption(description: "one matrix float among int8", tensor: layer + "self_attn.o_proj.weight", words: ["F32", "every decoder matrix"]) { items in
            replace(&items, layer + "self_attn.o_proj.weight") { .float32($0.name, shape: $0.shape, [Float](repeating: 0.5, count: $0.shape.reduce(1, *))) }
            items.removeAll { $0.name == layer + "self_attn.o_proj.weight_scale" }
        },
        Corruption(description: "tied output projection missing", tensor: "language_model.lm_head.weight", words: ["missing", "int8"]) { items in
            items.removeAll { $0.name.hasPrefix("language_model.lm_head.") }
        },
        Corruption(description: "scales of a float norm", tensor: "language_model.model.norm.weight_scale", words: ["not a matrix"]) { items in
            items.append(.float32("language_model.model.norm.weight_scale", shape: [64], [Float](repeating: 1, count: 64)))
        },
    ]

    static func replace(_ items: inout [SafetensorsWriter.Item], _ name: String, _ make: (SafetensorsWriter.Item) -> SafetensorsWriter.Item) {
        guard let i = items.firstIndex(where: { $0.name == name }) else { Issue.record("no \(name)"); return }
        items[i] = make(items[i])
    }

    /// Applies `c` to the quantized folder `out` (which loads while intact) and expects loading
    /// it, as each of `asked` says, to fail naming `c.tensor` with `c.words`.
    static func expectRefused(_ c: Corruption, folder out: URL, asked: [Quantization]) throws {
        _ = try PaliGemmaModel(directory: out)  // intact, it loads
        try CheckpointTests.rewrite(out, c.edit)
        for quantization in asked {
            let e = Self.error { _ = try PaliGemmaModel(directory: out, quantization: quantization) }
            print("[\(c)] \(e.map { "\($0)" } ?? "-")")
            guard case let .weights(tensor, reason)? = e else { Issue.record("\(c): \(String(describing: e))"); continue }
            #expect(tensor == c.tensor, "\(c): names \(tensor)")
            for word in c.words { #expect(reason.lowercased().contains(word.lowercased()), "\(c): \(reason)") }
        }
    }

    @Test("corrupt int8 folders are refused, naming the tensor", arguments: corruptions)
    func corrupt(_ c: Corruption) throws {
        try Self.expectRefused(c, folder: Self.quantize(Fixtures.model("pg1-f32")).0, asked: [.none, .int8])
    }
}

// MARK: The command line

extension QuantizedCheckpointTests {
    @Test func cliQuantizeThenGenerate() throws {
        let c = try EndToEndTests.Case("pg2-answer")
        let parent = try temporaryDirectory()
        let output = parent.appendingPathComponent("int8")
        let q = try EndToEndTests.run(["quantize", "--model", c.model.path, "--output", output.path])
        print("quantize: \(q.stdout)", terminator: "")
        #expect(q.status == 0, "\(q.stderr)")
        #expect(q.stdout.hasPrefix("quantized ") && q.stdout.split(separator: "\n").count == 1 && q.stdout.contains(output.path))

        let args = ["--image", c.image.path, "--prompt", c.prompt, "--max-tokens", "10", "--json"]
        let stored = try EndToEndTests.run(["generate", "--model", output.path] + args)
        let atLoad = try EndToEndTests.run(["generate", "--model", c.model.path, "--quantize", "int8"] + args)
        let float = try EndToEndTests.run(["generate", "--model", c.model.path] + args)
        #expect(stored.status == 0 && atLoad.status == 0, "\(stored.stderr) \(atLoad.stderr)")
        let (a, b) = (EndToEndTests.json(stored.stdout), EndToEndTests.json(atLoad.stdout))
        let tokens = a["tokens"] as? [Int]
        print("quantized folder: \(tokens ?? []) \((a["text"] as? String ?? "").debugDescription); float: \(EndToEndTests.json(float.stdout)["tokens"] as? [Int] ?? [])")
        #expect(tokens != nil && tokens == b["tokens"] as? [Int])
        #expect(a["text"] as? String != nil && a["text"] as? String == b["text"] as? String)

        // The same output again, the folder itself, a quantized folder as input: one line, 66.
        for bad in [["--model", c.model.path, "--output", output.path],
                    ["--model", c.model.path, "--output", c.model.appendingPathComponent("int8").path],
                    ["--model", output.path, "--output", parent.appendingPathComponent("again").path]] {
            let r = try EndToEndTests.run(["quantize"] + bad)
            #expect(r.status == 66 && r.stderr.split(separator: "\n").count == 1, "\(bad): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(bad[1]) || r.stderr.contains(bad[3]), "\(r.stderr)")
        }
        #expect(try EndToEndTests.run(["quantize", "--model", c.model.path]).status == 64)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path) == ["int8"])

        let inspect = try EndToEndTests.run(["inspect", "--model", output.path])
        #expect(inspect.status == 0 && inspect.stdout.contains("I8") && inspect.stdout.contains("stored int8"), "\(inspect.stdout)")
        let bench = try EndToEndTests.run(["bench", "--model", output.path, "--new-tokens", "2", "--prompt-tokens", "2", "--json"])
        #expect(EndToEndTests.json(bench.stdout)["quantization"] as? String == "int8-stored", "\(bench.stdout) \(bench.stderr)")
    }
}
