import Foundation
import Testing
@testable import PaliGemma

/// LoRA adapters in PEFT's format against PEFT 0.21.2 + transformers 5.24
/// (scripts/make_adapter_fixtures.py, fixtures in Fixtures/adapters): adapters PEFT wrote give
/// PEFT's logits here; adapters this runtime wrote give the same logits under PEFT; merged
/// folders equal the unmerged model and load in transformers with the same logits.
struct AdapterTests {
    static let bound: Float = 1e-4
    static let mergedBound: Float = 1e-5
    static let models = ["pg1", "pg2"]
    static let root = Fixtures.root.appendingPathComponent("adapters")

    static func folder(_ name: String) -> URL { root.appendingPathComponent(name) }
    static func logitsFile() throws -> SafetensorsFile { try SafetensorsFile(path: root.appendingPathComponent("logits.safetensors").path) }

    /// The fixed prompt of a model key: ids, pixels, prefix length and image token count.
    struct Inputs {
        let ids: [Int]
        let pixels: [Float]
        let prefix: Int
        let imageTokens: Int

        init(_ key: String, _ file: SafetensorsFile, imageToken: Int) throws {
            ids = try file.tensor("\(key).input_ids").ints()
            pixels = try file.tensor("\(key).pixel_values").floats()
            let types = try file.tensor("\(key).token_type_ids").ints()
            prefix = types.firstIndex(of: 1) ?? types.count
            imageTokens = ids.filter { $0 == imageToken }.count
        }
    }

    /// The logits of the text rows (from `<bos>` on), as the fixture stores them.
    static func textLogits(_ model: PaliGemmaModel, _ key: String) throws -> [Float] {
        let inputs = try Inputs(key, try logitsFile(), imageToken: model.config.imageTokenIndex)
        let features = try model.imageFeatures(pixels: inputs.pixels)
        let cache = try model.makeCache(capacity: inputs.ids.count)
        let logits = try model.forward(ids: inputs.ids, imageFeatures: features, prefixLength: inputs.prefix, cache: cache, logits: .all)
        return logits.rows(inputs.imageTokens..<inputs.ids.count).values
    }

    static func expected(_ name: String) throws -> [Float]? {
        let file = try logitsFile()
        guard file.entries[name] != nil else { return nil }
        return try file.tensor(name).floats()
    }

    static func compare(_ have: [Float], _ name: String, bound: Float = bound, label: String) throws {
        guard let want = try expected(name) else {
            Issue.record("\(name) is missing from logits.safetensors: run scripts/make_adapter_fixtures.py (see its header)")
            return
        }
        let (d, at) = maxAbsDiff(have, want)
        print("[\(label)] logits vs \(name): max |diff| \(d) at \(at) of \(want.count) (bound \(bound))")
        #expect(d <= bound, "\(label): \(d)")
    }

    // MARK: Adapters PEFT wrote

    @Test("an adapter PEFT wrote (transformers 5.x keys) gives PEFT's logits", arguments: models)
    func peftAdapter(key: String) throws {
        let base = try PaliGemmaModel(directory: Fixtures.model("\(key)-f32"), configStrictness: .strict)
        try Self.compare(try Self.textLogits(base, key), "\(key).base.logits", label: "\(key) base")
        let model = try PaliGemmaModel(directory: Fixtures.model("\(key)-f32"), configStrictness: .strict,
                                       adapter: Self.folder("\(key)-peft"))
        #expect(model.adapterConfig?.taskType == "CAUSAL_LM")
        try Self.compare(try Self.textLogits(model, key), "\(key).peft.logits", label: "\(key)-peft")
    }

    @Test("keys in transformers 4.x and 5.x spellings read the same", arguments: models)
    func bothSpellings(key: String) throws {
        let peft = try LoRAAdapter(directory: Self.folder("\(key)-peft"))
        #expect(peft.modules.keys.allSatisfy { $0.hasPrefix("language_model.model.") || $0.hasPrefix("vision_tower.vision_model.") || $0.hasPrefix("multi_modal_projector.") })
        #expect(peft.modules.values.contains { $0.aKey.hasPrefix("base_model.model.model.vision_tower.encoder.") })
        // Our writer spells them the 4.x way; the values read back equal.
        let dir = try temporaryDirectory().appendingPathComponent("a")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        try peft.write(to: dir)
        let back = try LoRAAdapter(directory: dir)
        #expect(back.config == peft.config)
        #expect(Set(back.modules.keys) == Set(peft.modules.keys))
        for (module, m) in peft.modules {
            let b = try #require(back.modules[module])
            #expect(b.a == m.a && b.b == m.b && b.aShape == m.aShape && b.bShape == m.bShape, "\(module)")
            #expect(b.aKey == LoRAAdapter.fileKey(module: module, "lora_A"))
            #expect(b.aKey.hasPrefix(module.hasPrefix("multi_modal_projector.") ? "base_model.model.model.multi_modal_projector." : "base_model.model." + module))
        }
        let base = Fixtures.model("\(key)-f32")
        let viaPEFT = try Self.textLogits(try PaliGemmaModel(directory: base, adapter: Self.folder("\(key)-peft")), key)
        let via4x = try Self.textLogits(try PaliGemmaModel(directory: base, adapter: dir), key)
        #expect(viaPEFT == via4x)
    }

    // MARK: Adapters this runtime writes

    /// The -ours fixtures: random A and B (seeded) on wide targets, built through
    /// `TrainableModel.adapter` (pg1 includes the patch embedding, a convolution in PEFT, and
    /// the projector; pg2 uses rsLoRA).
    static let ours: [String: (config: LoRAConfig, seed: UInt64)] = [
        "pg1": (LoRAConfig(rank: 4, alpha: 8, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                                       "out_proj", "fc2", "linear", "patch_embedding"]), 11),
        "pg2": (LoRAConfig(rank: 3, alpha: 4, rslora: true, targets: LoRAConfig.defaultTargets + ["fc1"]), 12),
    ]

    static func makeOurs(_ key: String) throws -> LoRAAdapter {
        let spec = try #require(ours[key])
        let model = try PaliGemmaModel(directory: Fixtures.model("\(key)-f32"))
        let trainable = TrainableModel(model: model, method: .lora(spec.config))
        var rng = SeededRandom(spec.seed)
        for p in trainable.parameters {
            let scale: Float = p.name.hasSuffix(".lora_A.weight") ? 0.25 : 0.3
            let values = rng.floats(p.count).map { $0 * scale }
            p.value.data.update(from: values, count: values.count)
        }
        return try trainable.adapter(baseModel: "Tests/PaliGemmaTests/Fixtures/models/\(key)-f32")
    }

    /// Set to a folder to (re)write the -ours fixtures and the merged folders the generator
    /// script loads in transformers (step 2 of scripts/make_adapter_fixtures.py).
    static let writeFixtures = ProcessInfo.processInfo.environment["PALIGEMMA_WRITE_ADAPTER_FIXTURES"]

    @Test("our writer writes today the committed adapter, and PEFT gives the same logits with it", arguments: models)
    func ourAdapter(key: String) throws {
        let adapter = try Self.makeOurs(key)
        let committed = Self.folder("\(key)-ours")
        if let out = Self.writeFixtures {
            try adapter.write(to: committed, overwrite: true)
            let merged = URL(fileURLWithPath: out).appendingPathComponent("\(key)-merged")
            try? FileManager.default.removeItem(at: merged)
            try MergedCheckpoint.write(try Checkpoint(directory: Fixtures.model("\(key)-f32")), adapter: adapter, to: merged)
            print("wrote \(committed.path) and \(merged.path)")
        }
        let dir = try temporaryDirectory().appendingPathComponent("ours")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        try adapter.write(to: dir)
        for file in [LoRAAdapter.weightsFileName, LoRAAdapter.configFileName] {
            let today = try Data(contentsOf: dir.appendingPathComponent(file))
            let before = try Data(contentsOf: committed.appendingPathComponent(file))
            #expect(today == before, "\(key)-ours/\(file) differs from what the writer makes today (\(today.count) vs \(before.count) bytes)")
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(LoRAAdapter.configFileName))) as? [String: Any]
        #expect(config?["task_type"] as? String == "CAUSAL_LM" && config?["peft_type"] as? String == "LORA" && config?["bias"] as? String == "none")
        let model = try PaliGemmaModel(directory: Fixtures.model("\(key)-f32"), adapter: committed)
        try Self.compare(try Self.textLogits(model, key), "\(key).ours.logits", label: "\(key)-ours under PEFT")
    }

    // MARK: Merging

    @Test("merged equals unmerged, keeps the base's files, and transformers loads it with the same logits", arguments: models)
    func merged(key: String) throws {
        let base = Fixtures.model("\(key)-f32")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("merged")
        let adapter = try LoRAAdapter(directory: Self.folder("\(key)-ours"))
        let summary = try MergedCheckpoint.write(try Checkpoint(directory: base), adapter: adapter, to: out)
        print(summary.line)
        #expect(summary.tensorsMerged == adapter.modules.count)
        let unmerged = try Self.textLogits(try PaliGemmaModel(directory: base, adapter: Self.folder("\(key)-ours")), key)
        let merged = try PaliGemmaModel(directory: out, configStrictness: .strict)
        #expect(merged.adapterConfig == nil)
        let logits = try Self.textLogits(merged, key)
        // Two float32 computations, (W + s·B·A) x and W x + s·B (A x): bounded relative to the
        // largest logit (about 6 and 3.6 here), as the gradient tests bound gradients.
        let (d, at) = maxAbsDiff(logits, unmerged)
        let largest = unmerged.map(abs).max() ?? 1
        print("[\(key) merged] vs unmerged: max |diff| \(d) at \(at), \(d / largest) of the largest logit \(largest) (bound \(Self.mergedBound))")
        #expect(d / largest <= Self.mergedBound)
        try Self.compare(logits, "\(key).merged.logits", label: "\(key) merged, in transformers")

        // The same files and tensor names as the folder transformers loaded (and as the base).
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(names == (try FileManager.default.contentsOfDirectory(atPath: base.path).sorted()))
        if let json = try Self.logitsFile().metadata["\(key).merged.files"],
           let files = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: [String]] {
            for (file, tensors) in files {
                let have = try SafetensorsFile(path: out.appendingPathComponent(file).path)
                #expect(have.names.sorted() == tensors, "\(file)")
            }
            #expect(Set(files.keys) == Set(names.filter { $0.hasSuffix(".safetensors") }))
        } else {
            Issue.record("\(key).merged.files is missing from logits.safetensors: run scripts/make_adapter_fixtures.py --merged")
        }
        // Untouched tensors are copied byte for byte.
        let source = try Checkpoint(directory: base), copy = try Checkpoint(directory: out)
        for name in source.tensorNames where !adapter.modules.keys.contains(where: { name == $0 + ".weight" }) {
            let a = try #require(try source.tensor(canonical: name)), b = try #require(try copy.tensor(canonical: name))
            #expect(a.dtype == b.dtype && a.floats() == b.floats(), "\(name)")
        }
    }

    @Test func mergeIntoBFloat16RoundsOnce() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = Fixtures.model("pg1-bf16")
        let trainable = TrainableModel(model: try PaliGemmaModel(directory: base),
                                       method: .lora(LoRAConfig(rank: 2, alpha: 3, targets: ["q_proj", "down_proj", "patch_embedding"])))
        var rng = SeededRandom(4)
        for p in trainable.parameters {
            let v = rng.floats(p.count).map { $0 * 0.2 }
            p.value.data.update(from: v, count: v.count)
        }
        let adapter = try trainable.adapter()
        try MergedCheckpoint.write(try Checkpoint(directory: base), adapter: adapter, to: dir.appendingPathComponent("m"))
        let source = try Checkpoint(directory: base), merged = try Checkpoint(directory: dir.appendingPathComponent("m"))
        var worst: Float = 0
        for (module, m) in adapter.modules {
            let w = try #require(try source.tensor(canonical: module + ".weight")), out = try #require(try merged.tensor(canonical: module + ".weight"))
            #expect(out.dtype == .bfloat16)
            let delta = Ops.matmul(Matrix(rows: m.outFeatures, cols: m.rank, values: m.b), Matrix(rows: m.rank, cols: m.inFeatures, values: m.a))
            let want = zip(w.floats(), delta.values).map { DType.bfloat16.round($0 + adapter.config.scale * $1) }
            let (d, _) = maxAbsDiff(out.floats(), want)
            worst = max(worst, d)
        }
        // float32 products may differ from this reference in the last bit, which can move a
        // value across a bfloat16 rounding boundary: at most one bfloat16 step (2^-7 relative).
        print("[pg1-bf16 merged] worst |diff| from round_bf16(W + s·B·A): \(worst)")
        #expect(worst <= 0.02)
    }

    @Test func mergeRefusesQuantizedBasesAndUnsafeOutputs() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let int8 = dir.appendingPathComponent("int8")
        try QuantizedCheckpoint.write(try Checkpoint(directory: Fixtures.model("pg1-f32")), to: int8)
        let adapter = try LoRAAdapter(directory: Self.folder("pg1-ours"))
        let e = Self.error { try MergedCheckpoint.write(try Checkpoint(directory: int8), adapter: adapter, to: dir.appendingPathComponent("m")) }
        print("quantized base: \(e.map { "\($0)" } ?? "-")")
        guard case let .safetensors(_, _, reason)? = e else { Issue.record("\(String(describing: e))"); return }
        #expect(reason.contains("quantized") && reason.contains("merge into the float folder"))
        let inside = Self.error { try MergedCheckpoint.write(try Checkpoint(directory: Fixtures.model("pg1-f32")), adapter: adapter,
                                                             to: Fixtures.model("pg1-f32").appendingPathComponent("merged")) }
        guard case let .io(_, reason2)? = inside else { Issue.record("\(String(describing: inside))"); return }
        #expect(reason2.contains("checkpoint folder being read"))
        // An adapter for another model is refused before anything is written.
        let other = Self.error { try MergedCheckpoint.write(try Checkpoint(directory: Fixtures.model("pg2-f32")), adapter: adapter,
                                                            to: dir.appendingPathComponent("m2")) }
        #expect(other != nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["int8"])
    }

    // MARK: Quantized bases

    @Test("an adapter on int8 and 4-bit bases adds the same term", arguments: [Quantization.int8, .int4])
    func quantizedBase(q: Quantization) throws {
        let base = Fixtures.model("pg1-f32"), adapter = Self.folder("pg1-ours")
        let float = try Self.textLogits(try PaliGemmaModel(directory: base, adapter: adapter), "pg1")
        let plain = try Self.textLogits(try PaliGemmaModel(directory: base, quantization: q), "pg1")
        let both = try Self.textLogits(try PaliGemmaModel(directory: base, quantization: q, adapter: adapter), "pg1")
        let floatBase = try Self.textLogits(try PaliGemmaModel(directory: base), "pg1")
        // The adapter's effect on the quantized base is its effect on the float base, up to
        // the quantization error (which also reaches the adapter's inputs).
        let effect = maxAbsDiff(float, floatBase).diff
        let error = maxAbsDiff(both, float).diff, quantError = maxAbsDiff(plain, floatBase).diff
        print("[pg1 \(q.rawValue) + adapter] adapter effect \(effect); vs float + adapter \(error); quantization alone \(quantError)")
        #expect(effect > 0.5 && maxAbsDiff(both, plain).diff > 0.5)
        #expect(error <= max(4 * quantError, 0.05))
    }

    // MARK: Training from and to adapters

    @Test func trainableModelLoadsAndWritesAdapters() throws {
        let model = try PaliGemmaModel(directory: Fixtures.model("pg1-f32"))
        let peft = try LoRAAdapter(directory: Self.folder("pg1-peft"))
        let trainable = TrainableModel(model: model, method: .lora(try LoRAConfig(adapter: peft.config)))
        try trainable.load(adapter: peft)
        let back = try trainable.adapter()
        #expect(Set(back.modules.keys) == Set(peft.modules.keys))
        for (module, m) in peft.modules {
            #expect(back.modules[module]?.a == m.a && back.modules[module]?.b == m.b
                    && back.modules[module]?.aShape == m.aShape && back.modules[module]?.bShape == m.bShape, "\(module)")
        }
        // Training's forward with the loaded adapter equals inference with it.
        let file = try Self.logitsFile()
        let inputs = try Inputs("pg1", file, imageToken: model.config.imageTokenIndex)
        let labels = inputs.ids.enumerated().map { $0.offset >= inputs.prefix ? $0.element : -100 }
        let example = TrainingExample(pixels: inputs.pixels, ids: inputs.ids, labels: labels, prefixLength: inputs.prefix)
        let (loss, count) = try trainable.loss(example)
        let logits = try #require(try Self.expected("pg1.peft.logits"))
        let v = logits.count / (inputs.ids.count - inputs.imageTokens)
        var want = 0.0
        for t in inputs.prefix - 1..<inputs.ids.count - 1 {
            let row = logits[(t - inputs.imageTokens) * v..<(t - inputs.imageTokens + 1) * v].map(Double.init)
            let mx = row.max() ?? 0
            want += log(row.reduce(0) { $0 + exp($1 - mx) }) + mx - row[row.startIndex + inputs.ids[t + 1]]
        }
        print("[pg1-peft] training loss \(loss / Double(count)) vs PEFT logits' \(want / Double(count))")
        #expect(abs(loss - want) / abs(want) <= 1e-5)

        // Mismatches are refused by name.
        let other = TrainableModel(model: model, method: .lora(LoRAConfig(rank: 4, alpha: 8)))
        let e = Self.error { try other.load(adapter: peft) }
        guard case let .weights(tensor, reason)? = e else { Issue.record("\(String(describing: e))"); return }
        print("load into other targets: \(tensor): \(reason)")
        let rank = TrainableModel(model: model, method: .lora(LoRAConfig(rank: 2, alpha: 4, targets: peft.config.targetModules)))
        guard case let .config(_, key, _)? = Self.error({ try rank.load(adapter: peft) }) else { Issue.record("rank mismatch accepted"); return }
        #expect(key == "lora_alpha" || key == "r")
    }

    /// An adapter the loaded model applies is part of the frozen base when training: the same
    /// loss and gradients as training on the merged folder.
    @Test func trainingOverAnAppliedAdapterEqualsTrainingTheMergedModel() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let adapter = try LoRAAdapter(directory: Self.folder("pg2-ours"))
        try MergedCheckpoint.write(try Checkpoint(directory: Fixtures.model("pg2-f32")), adapter: adapter, to: dir.appendingPathComponent("m"))
        let applied = try PaliGemmaModel(directory: Fixtures.model("pg2-f32"), adapter: Self.folder("pg2-ours"))
        let merged = try PaliGemmaModel(directory: dir.appendingPathComponent("m"))
        let file = try Self.logitsFile()
        let inputs = try Inputs("pg2", file, imageToken: applied.config.imageTokenIndex)
        let labels = inputs.ids.enumerated().map { $0.offset >= inputs.prefix ? $0.element : -100 }
        let example = TrainingExample(pixels: inputs.pixels, ids: inputs.ids, labels: labels, prefixLength: inputs.prefix)
        for method in [TrainingMethod.lora(LoRAConfig(rank: 2, alpha: 4, targets: ["q_proj", "fc1", "down_proj"])), .attention] {
            let (a, b) = (TrainableModel(model: applied, method: method, seed: 5), TrainableModel(model: merged, method: method, seed: 5))
            for p in a.parameters where p.name.hasSuffix("lora_B.weight") {
                var rng = SeededRandom(3); let v = rng.floats(p.count)
                p.value.data.update(from: v, count: v.count)
                b.parametersByName[p.name]?.value.data.update(from: v, count: v.count)
            }
            let (la, _) = try a.accumulate(example, weight: 1)
            let (lb, _) = try b.accumulate(example, weight: 1)
            var worst: Float = 0
            for p in a.parameters {
                let q = try #require(b.parametersByName[p.name])
                let largest = q.grad.values.map(abs).max() ?? 0
                worst = max(worst, maxAbsDiff(p.grad.values, q.grad.values).diff / max(largest, 1e-30))
            }
            print("[pg2 applied vs merged, \(method)] loss \(la) vs \(lb); worst gradient |diff| / largest \(worst)")
            #expect(abs(la - lb) / abs(lb) <= 1e-5)
            #expect(worst <= 1e-4)
        }
    }

    // MARK: Refusals

    static func error(_ body: () throws -> Void) -> PaliGemmaError? { thrownPaliGemmaError(body) }

    /// A copy of pg1-peft with its config edited.
    static func editedConfig(_ edit: (inout [String: Any]) -> Void) throws -> URL {
        let dir = try temporaryDirectory().appendingPathComponent("adapter")
        try FileManager.default.copyItem(at: folder("pg1-peft"), to: dir)
        let url = dir.appendingPathComponent(LoRAAdapter.configFileName)
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: url)
        return dir
    }

    @Test("adapter_config.json settings not implemented are refused by name", arguments: [
        ("use_dora", "true"), ("bias", "\"all\""), ("fan_in_fan_out", "true"), ("rank_pattern", #"{"q_proj": 8}"#),
        ("alpha_pattern", #"{"q_proj": 8}"#), ("modules_to_save", #"["lm_head"]"#), ("peft_type", "\"IA3\""), ("lora_bias", "true"),
        ("trainable_token_indices", "[1, 2]"), ("layer_replication", "[[0, 1]]"),
    ])
    func refusedSettings(key: String, value: String) throws {
        let dir = try Self.editedConfig { $0[key] = try? JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed) }
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        let e = Self.error { _ = try LoRAAdapter(directory: dir) }
        print("\(key) = \(value): \(e.map { "\($0)" } ?? "-")")
        guard case let .unsupportedConfig(path, k, _)? = e else { Issue.record("\(key): \(String(describing: e))"); return }
        #expect(k == key && path.hasSuffix("adapter_config.json"))
    }

    @Test func harmlessSettingsAreAccepted() throws {
        let dir = try Self.editedConfig {
            $0["layers_to_transform"] = [0, 1]; $0["layers_pattern"] = "layers"; $0["exclude_modules"] = ["fc2"]
            $0["rank_pattern"] = [String: Any](); $0["modules_to_save"] = NSNull(); $0["some_future_key"] = 3
            $0["target_modules"] = ".*proj"
        }
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        let adapter = try LoRAAdapter(directory: dir)
        #expect(adapter.unknownConfigKeys == ["some_future_key"])
        #expect(adapter.config.targetPattern == ".*proj" && adapter.config.targetModules.isEmpty)
        #expect(throws: PaliGemmaError.self) { _ = try LoRAConfig(adapter: adapter.config) }
    }

    /// A copy of pg1-peft whose tensors are edited: (key, shape, values) of the new file.
    static func editedTensors(_ edit: (inout [(String, [Int], [Float])]) -> Void) throws -> URL {
        let dir = try temporaryDirectory().appendingPathComponent("adapter")
        try FileManager.default.copyItem(at: folder("pg1-peft"), to: dir)
        let url = dir.appendingPathComponent(LoRAAdapter.weightsFileName)
        let file = try SafetensorsFile(path: url.path)
        var items = try file.names.map { ($0, file.entries[$0]?.shape ?? [], try file.tensor($0).floats()) }
        edit(&items)
        try FileManager.default.removeItem(at: url)
        try SafetensorsWriter.write(items.map { .float32($0.0, shape: $0.1, $0.2) }, metadata: ["format": "pt"], to: url)
        return dir
    }

    @Test func badTensorsAreRefusedByName() throws {
        let q = "base_model.model.model.language_model.layers.0.self_attn.q_proj"
        let cases: [(String, (inout [(String, [Int], [Float])]) -> Void, String)] = [
            ("a module the model lacks", { $0.append(("base_model.model.model.language_model.layers.7.self_attn.q_proj.lora_A.weight", [4, 64], [Float](repeating: 0, count: 256)))
                                          $0.append(("base_model.model.model.language_model.layers.7.self_attn.q_proj.lora_B.weight", [64, 4], [Float](repeating: 0, count: 256))) },
             "layers.7.self_attn.q_proj.lora_A.weight"),
            ("A without B", { $0.removeAll { $0.0 == q + ".lora_B.weight" } }, q + ".lora_A.weight"),
            ("wrong in-features", { items in
                if let i = items.firstIndex(where: { $0.0 == q + ".lora_A.weight" }) { items[i] = (items[i].0, [4, 32], Array(items[i].2.prefix(128))) } },
             q + ".lora_A.weight"),
            ("wrong rank", { items in
                for i in items.indices where items[i].0.hasPrefix(q) {
                    items[i] = items[i].0.hasSuffix("lora_A.weight") ? (items[i].0, [2, 64], Array(items[i].2.prefix(128))) : (items[i].0, [64, 2], Array(items[i].2.prefix(128)))
                } }, q + ".lora_A.weight"),
            ("an embedding adapter", { $0.append(("base_model.model.model.language_model.embed_tokens.lora_embedding_A", [4, 320], [Float](repeating: 0, count: 1280))) },
             "embed_tokens.lora_embedding_A"),
            ("a key without PEFT's prefix", { $0.append(("model.language_model.layers.0.mlp.up_proj.lora_A.weight", [4, 64], [Float](repeating: 0, count: 256))) },
             "model.language_model.layers.0.mlp.up_proj.lora_A.weight"),
            ("the output projection", { $0.append(("base_model.model.lm_head.lora_A.weight", [4, 64], [Float](repeating: 0, count: 256)))
                                        $0.append(("base_model.model.lm_head.lora_B.weight", [320, 4], [Float](repeating: 0, count: 1280))) },
             "lm_head.lora_A.weight"),
        ]
        for (what, edit, tensor) in cases {
            let dir = try Self.editedTensors(edit)
            defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
            let e = Self.error { _ = try PaliGemmaModel(directory: Fixtures.model("pg1-f32"), adapter: dir) }
            print("\(what): \(e.map { "\($0)" } ?? "-")")
            let named: String?
            switch e {
            case let .weights(t, _)?: named = t
            case let .safetensors(_, t, _)?: named = t
            default: named = nil
            }
            #expect(named?.hasSuffix(tensor) == true, "\(what): \(String(describing: e))")
        }
    }

    @Test func missingFilesAndPickles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        guard case let .io(path, _)? = Self.error({ _ = try LoRAAdapter(directory: dir) }) else { Issue.record("empty folder accepted"); return }
        #expect(path.hasSuffix("adapter_config.json"))
        try FileManager.default.copyItem(at: Self.folder("pg1-peft").appendingPathComponent(LoRAAdapter.configFileName),
                                         to: dir.appendingPathComponent(LoRAAdapter.configFileName))
        try Data([0x80, 0x02]).write(to: dir.appendingPathComponent("adapter_model.bin"))
        let e = Self.error { _ = try LoRAAdapter(directory: dir) }
        print("pickle: \(e.map { "\($0)" } ?? "-")")
        guard case let .io(binPath, reason)? = e else { Issue.record("\(String(describing: e))"); return }
        #expect(binPath.hasSuffix("adapter_model.bin") && reason.contains("safe_serialization"))
    }

    @Test func writerNeverOverwritesUnlessAsked() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let adapter = try LoRAAdapter(directory: Self.folder("pg2-peft"))
        let out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: out.appendingPathComponent("notes.txt"))
        guard case let .io(_, reason)? = Self.error({ try adapter.write(to: out) }) else { Issue.record("overwrote"); return }
        #expect(reason.contains("not empty"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
        try adapter.write(to: out, overwrite: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted() == [LoRAAdapter.configFileName, LoRAAdapter.weightsFileName])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
        #expect(try LoRAAdapter(directory: out).modules.count == adapter.modules.count)
    }

    // MARK: The command line

    @Test func cliAdapterAndMerge() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = Fixtures.model("e2e-pg1")
        let base = try PaliGemmaModel(directory: model)
        let trainable = TrainableModel(model: base, method: .lora(LoRAConfig(rank: 2, alpha: 16)), seed: 1)
        for p in trainable.parameters where p.name.hasSuffix("lora_B.weight") {
            var rng = SeededRandom(9); let v = rng.floats(p.count)
            p.value.data.update(from: v, count: v.count)
        }
        let adapter = dir.appendingPathComponent("lora")
        try trainable.adapter(baseModel: model.path).write(to: adapter)
        let image = Fixtures.root.appendingPathComponent("e2e/images/scene.jpg").path
        let pipeline = try PaliGemmaPipeline(directory: model, adapter: adapter)
        let want = try pipeline.generate(image: try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: image)), prompt: "caption en",
                                         options: GenerationOptions(maxNewTokens: 6))
        let plain = try PaliGemmaPipeline(directory: model).generate(image: try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: image)),
                                                                     prompt: "caption en", options: GenerationOptions(maxNewTokens: 6))
        #expect(want.tokens != plain.tokens, "the adapter should change the greedy answer")

        for command in [["generate", "--prompt", "caption en"], ["caption"]] {
            let r = try EndToEndTests.run(command + ["--model", model.path, "--adapter", adapter.path, "--image", image, "--max-tokens", "6", "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(EndToEndTests.json(r.stdout)["tokens"] as? [Int] == want.tokens, "\(command): \(r.stdout)")
        }
        let merged = dir.appendingPathComponent("merged")
        let m = try EndToEndTests.run(["merge", "--model", model.path, "--adapter", adapter.path, "--output", merged.path])
        #expect(m.status == 0 && m.stdout.contains("merged the adapter into"), "\(m.stderr)")
        let r = try EndToEndTests.run(["caption", "--model", merged.path, "--image", image, "--max-tokens", "6", "--json"])
        #expect(EndToEndTests.json(r.stdout)["tokens"] as? [Int] == want.tokens, "merged: \(r.stdout) \(r.stderr)")
        let again = try EndToEndTests.run(["merge", "--model", model.path, "--adapter", adapter.path, "--output", merged.path])
        #expect(again.status == 66 && again.stderr.contains("not empty"), "\(again.stderr)")
        let bad = try EndToEndTests.run(["caption", "--model", model.path, "--adapter", Self.folder("pg2-peft").path, "--image", image])
        #expect(bad.status == 66 && bad.stderr.contains("lora_"), "\(bad.stderr)")
    }
}
