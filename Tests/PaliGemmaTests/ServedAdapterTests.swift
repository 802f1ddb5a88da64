import Foundation
import Testing
@testable import PaliGemma

/// Several LoRA adapters served on one base (`PaliGemmaModel.bind`, `LoRASet`): each sequence of
/// a batched forward takes its own adapter's terms on its own rows. Checked against PEFT's logits
/// for the same adapters (Fixtures/adapters, scripts/make_adapter_fixtures.py) and against models
/// loaded with the adapter applied to every row.
struct ServedAdapterTests {
    /// Text-row logits of the fixture prompt for three sequences in one batch: PEFT's adapter,
    /// none, and ours (each with image features made with its own adapter).
    @Test("one batch with PEFT's adapter, none, and ours gives PEFT's logits for each", arguments: AdapterTests.models)
    func mixedBatchMatchesPEFT(key: String) throws {
        let model = try PaliGemmaModel(directory: Fixtures.model("\(key)-f32"), configStrictness: .strict)
        let peft = try model.bind(LoRAAdapter(directory: AdapterTests.folder("\(key)-peft")), name: "peft")
        let ours = try model.bind(LoRAAdapter(directory: AdapterTests.folder("\(key)-ours")), name: "ours")
        #expect(peft.adaptsVision && ours.adaptsVision)
        let inputs = try AdapterTests.Inputs(key, try AdapterTests.logitsFile(), imageToken: model.config.imageTokenIndex)
        let adapters: [LoRASet?] = [peft, nil, ours]
        let batch = try adapters.map { a in
            SequenceInput(ids: inputs.ids, imageFeatures: try model.imageFeatures(pixels: [inputs.pixels], adapter: a),
                          prefixLength: inputs.prefix, cache: try model.makeCache(capacity: inputs.ids.count), logits: .all, adapter: a)
        }
        let logits = try model.forward(batch)
        let text = logits.map { $0.rows(inputs.imageTokens..<inputs.ids.count).values }
        try AdapterTests.compare(text[0], "\(key).peft.logits", label: "\(key) served peft")
        try AdapterTests.compare(text[1], "\(key).base.logits", label: "\(key) served base")
        try AdapterTests.compare(text[2], "\(key).ours.logits", label: "\(key) served ours")
        // Against the same adapter applied at load, on every row: the same arithmetic.
        for (name, i) in [("peft", 0), ("ours", 2)] {
            let loaded = try PaliGemmaModel(directory: Fixtures.model("\(key)-f32"), adapter: AdapterTests.folder("\(key)-\(name)"))
            let (d, at) = maxAbsDiff(text[i], try AdapterTests.textLogits(loaded, key))
            print("[\(key) served \(name)] vs applied at load: max |diff| \(d) at \(at)")
            #expect(d <= 1e-5, "\(key) \(name): \(d)")
        }
    }

    @Test("generation in one batch with mixed adapters equals each alone, and the staged prefill agrees", arguments: AdapterTests.models)
    func mixedGeneration(key: String) throws {
        let folder = Fixtures.model("\(key)-f32")
        let model = try PaliGemmaModel(directory: folder)
        let names = ["peft", "ours"]
        let served = try names.map { try model.bind(LoRAAdapter(directory: AdapterTests.folder("\(key)-\($0)")), name: $0) }
        let inputs = try AdapterTests.Inputs(key, try AdapterTests.logitsFile(), imageToken: model.config.imageTokenIndex)
        let options = GenerationOptions(maxNewTokens: 6, sampling: SamplingOptions(), stopTokens: [])
        // Alone: a model with the adapter applied at load (or none), generating greedily.
        var alone: [[Int]] = []
        for name in [nil] + names {
            let m = try PaliGemmaModel(directory: folder, adapter: name.map { AdapterTests.folder("\(key)-\($0)") })
            let features = try m.imageFeatures(pixels: inputs.pixels)
            alone.append(try m.generate(promptIDs: inputs.ids, imageFeatures: features, options: options).tokens)
        }
        // Together: one base model, every step one batched forward over the three.
        let adapters: [LoRASet?] = [nil] + served
        let generators = try adapters.map { a in
            let g = try TokenGenerator(model: model, promptIDs: inputs.ids,
                                       imageFeatures: try model.imageFeatures(pixels: [inputs.pixels], adapter: a), options: options)
            g.adapter = a
            return g
        }
        while generators.contains(where: { !$0.isFinished }) { try model.step(generators) }
        for (i, g) in generators.enumerated() {
            #expect(g.tokens == alone[i], "\(key) sequence \(i): \(g.tokens) vs \(alone[i])")
        }
        #expect(Set(alone).count > 1, "the adapters should change what \(key) says")
        // The staged prefill (the server's, vision included) gives the batched forward's last row.
        for a in adapters {
            var input = SequenceInput(ids: inputs.ids, prefixLength: inputs.prefix, cache: try model.makeCache(capacity: inputs.ids.count),
                                      adapter: a)
            let staged = try StagedPrefill(model: model, input: input, pixels: inputs.pixels).run()
            input.cache = try model.makeCache(capacity: inputs.ids.count)
            input.imageFeatures = try model.imageFeatures(pixels: [inputs.pixels], adapter: a)
            let direct = try model.forward([input])[0]
            #expect(staged.values == direct.values, "\(key) \(a?.name ?? "base"): staged prefill differs")
        }
    }

    @Test("binding refuses an adapter that does not fit, naming the tensor")
    func bindRefusesMisfits() throws {
        let pg1 = try PaliGemmaModel(directory: Fixtures.model("pg1-f32"))
        // pg2's adapter has other widths and layer counts.
        let error = thrownPaliGemmaError { _ = try pg1.bind(LoRAAdapter(directory: AdapterTests.folder("pg2-peft")), name: "x") }
        #expect(error != nil)
        #expect("\(error.map { "\($0)" } ?? "")".contains("lora_"), "\(String(describing: error))")
        // A module that is no linear layer of the model.
        var adapter = try LoRAAdapter(directory: AdapterTests.folder("pg1-peft"))
        let module = try #require(adapter.modules.values.first)
        adapter.modules = ["language_model.model.layers.99.self_attn.q_proj": module]
        let unknown = thrownPaliGemmaError { _ = try pg1.bind(adapter, name: "x") }
        #expect("\(unknown.map { "\($0)" } ?? "")".contains("not a linear layer"), "\(String(describing: unknown))")
    }
}
