import Foundation

// LoRA training to and from PEFT adapter files: start from an adapter (`--init-adapter`), and
// write the trained A and B as one.

extension LoRAConfig {
    /// The settings of `adapter` for training it further: its rank, alpha, rsLoRA and target
    /// module names. A regular-expression `target_modules` is refused (name the targets instead).
    public init(adapter: LoRAAdapterConfig) throws {
        guard adapter.targetPattern == nil else {
            throw PaliGemmaError.input("the adapter's target_modules is a regular expression ('\(adapter.targetPattern ?? "")'); training from it needs the module names as a list")
        }
        self.init(rank: adapter.rank, alpha: adapter.alpha, rslora: adapter.rslora, targets: adapter.targetModules)
    }
}

extension TrainableModel {
    /// Every linear layer, in model order.
    var linears: [TrainLinear] {
        [patch] + visionLayers.flatMap { [$0.q, $0.k, $0.v, $0.out, $0.fc1, $0.fc2] } + [projector]
            + layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down] }
    }

    /// The file shapes of a layer's A and B: [R, in] and [out, R], or for the patch embedding (a
    /// convolution in PEFT) [R, C, P, P] and [out, R, 1, 1].
    func adapterShapes(_ l: TrainLinear, rank r: Int) -> (a: [Int], b: [Int]) {
        let (o, i) = (l.base.weight.rows, l.base.weight.cols)
        guard l === patch else { return ([r, i], [o, r]) }
        let v = model.config.visionConfig
        return ([r, v.numChannels, v.patchSize, v.patchSize], [o, r, 1, 1])
    }

    /// Sets every LoRA A and B from `adapter` (training from an existing adapter instead of a
    /// fresh start): the adapter must adapt exactly the modules this model's targets adapt, with
    /// the same rank and scale (build the method with `LoRAConfig(adapter:)`).
    public func load(adapter: LoRAAdapter) throws {
        let configPath = adapter.directory?.appendingPathComponent(LoRAAdapter.configFileName).path ?? LoRAAdapter.configFileName
        guard case .lora(let c) = method else {
            throw PaliGemmaError.input("starting from a LoRA adapter needs the lora method")
        }
        let a = adapter.config
        guard a.rank == c.rank, abs(a.scale - c.scale) <= 1e-6 * abs(c.scale) else {
            throw PaliGemmaError.config(path: configPath, key: a.rank == c.rank ? "lora_alpha" : "r",
                reason: "r \(a.rank), lora_alpha \(a.alpha), use_rslora \(a.rslora) differ from the training's rank \(c.rank), alpha \(c.alpha), rsLoRA \(c.rslora)")
        }
        let adapted = linears.filter { $0.loraA != nil }
        let paths = Set(adapted.map(\.path))
        for (module, m) in adapter.modules.sorted(by: { $0.key < $1.key }) where !paths.contains(module) {
            throw PaliGemmaError.weights(tensor: m.aKey, reason: "adapts '\(module)', which the training's targets \(c.targets) do not adapt")
        }
        for l in adapted {
            guard let loraA = l.loraA, let loraB = l.loraB else { continue }
            guard let m = adapter.modules[l.path] else {
                throw PaliGemmaError.weights(tensor: LoRAAdapter.fileKey(module: l.path, "lora_A"),
                    reason: "missing from the adapter, but the training's targets \(c.targets) adapt '\(l.path)'")
            }
            let (aShape, bShape) = adapterShapes(l, rank: c.rank)
            guard m.aShape == aShape else { throw PaliGemmaError.weights(tensor: m.aKey, reason: "has shape \(m.aShape), expected \(aShape)") }
            guard m.bShape == bShape else { throw PaliGemmaError.weights(tensor: m.bKey, reason: "has shape \(m.bShape), expected \(bShape)") }
            loraA.value.data.update(from: m.a, count: m.a.count)
            loraB.value.data.update(from: m.b, count: m.b.count)
        }
    }

    /// The trained LoRA A and B as a PEFT adapter (write it with `LoRAAdapter.write(to:)`).
    /// `baseModel` becomes `base_model_name_or_path`.
    public func adapter(baseModel: String? = nil, dropout: Float = 0) throws -> LoRAAdapter {
        guard case .lora(let c) = method else {
            throw PaliGemmaError.input("only the lora method trains an adapter (attention and full write a checkpoint folder)")
        }
        var modules: [String: LoRAModule] = [:]
        for l in linears {
            guard let a = l.loraA, let b = l.loraB else { continue }
            let (aShape, bShape) = adapterShapes(l, rank: c.rank)
            modules[l.path] = try LoRAModule(a: a.value.values, aShape: aShape, b: b.value.values, bShape: bShape,
                                             aKey: LoRAAdapter.fileKey(module: l.path, "lora_A"),
                                             bKey: LoRAAdapter.fileKey(module: l.path, "lora_B"))
        }
        let config = LoRAAdapterConfig(rank: c.rank, alpha: c.alpha, rslora: c.rslora, targetModules: c.targets, dropout: dropout,
                                       baseModel: baseModel)
        return LoRAAdapter(config: config, modules: modules)
    }
}
