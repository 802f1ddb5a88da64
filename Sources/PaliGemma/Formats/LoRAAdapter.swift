import Foundation
import PaliGemmaJSON

// LoRA adapters in PEFT's folder format: `adapter_config.json` and `adapter_model.safetensors`
// with keys `base_model.model.<module path>.lora_A.weight` [r, in] and `.lora_B.weight`
// [out, r]. A module adapted this way computes y = W x + s · B (A x), s = lora_alpha / r
// (lora_alpha / √r with use_rslora).
//
// Module paths are read in any spelling `Checkpoint.canonicalName` knows (transformers 4.x
// `language_model.model.layers.N...`, `vision_tower.vision_model.encoder...`; 5.x
// `model.language_model.layers.N...`, `model.vision_tower.encoder...`) and kept in the canonical
// (hub, 4.x) spelling. That is also the spelling written (`fileKey`), except for the projector,
// written `model.multi_modal_projector.linear`. PEFT 0.21.2 loads every key written this way on
// transformers 4.57 and 5.24, and all but the projector's on 4.51 (measured; PEFT 0.21.2's own
// 5.x keys load on 5.24 only). Why: the hub's adapters use the 4.x spelling; PEFT on
// transformers >= 4.52 renames it through transformers' checkpoint conversion mapping, except
// `multi_modal_projector.*` on 5.x, where PEFT's undo-a-renaming check mistakes
// `base_model.model.multi_modal_projector...` for an already-renamed key and drops it. The
// projector's 5.x name is its name in memory on every transformers since 4.52.

/// The settings of `adapter_config.json` that matter here. What PEFT can express but this
/// runtime does not implement is refused by name when read (`LoRAAdapter.init(directory:)`).
public struct LoRAAdapterConfig: Sendable, Equatable {
    /// `r`.
    public var rank: Int
    /// `lora_alpha`.
    public var alpha: Float
    /// `use_rslora`: scale alpha / √r instead of alpha / r.
    public var rslora: Bool
    /// `target_modules` as a list of module names (matched by suffix, as PEFT does), or empty
    /// when the file gives a regular expression (`targetPattern`) or null.
    public var targetModules: [String]
    /// `target_modules` when the file gives one string (PEFT matches it as a regular expression).
    public var targetPattern: String?
    /// `lora_dropout` (training only; inference ignores it).
    public var dropout: Float
    /// `base_model_name_or_path`.
    public var baseModel: String?
    /// `task_type` ("CAUSAL_LM" when written here).
    public var taskType: String?

    public init(rank: Int, alpha: Float, rslora: Bool = false, targetModules: [String], targetPattern: String? = nil,
                dropout: Float = 0, baseModel: String? = nil, taskType: String? = "CAUSAL_LM") {
        self.rank = rank
        self.alpha = alpha
        self.rslora = rslora
        self.targetModules = targetModules
        self.targetPattern = targetPattern
        self.dropout = dropout
        self.baseModel = baseModel
        self.taskType = taskType
    }

    /// s in y = W x + s · B (A x).
    public var scale: Float { rslora ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
}

/// One adapted module's matrices, float32, with their shapes as in the file: A [r, in] and
/// B [out, r] for a linear layer, A [r, C, kh, kw] and B [out, r, 1, 1] for a convolution (the
/// vision tower's patch embedding, whose weight is used as a matrix [out, C·kh·kw]).
public struct LoRAModule: Sendable, Equatable {
    public let a: [Float]
    public let aShape: [Int]
    public let b: [Float]
    public let bShape: [Int]
    /// The tensors' keys as stored (for messages), or as they would be written.
    public let aKey: String
    public let bKey: String

    public init(a: [Float], aShape: [Int], b: [Float], bShape: [Int], aKey: String, bKey: String) throws {
        guard aShape.count == 2 || aShape.count == 4, aShape.allSatisfy({ $0 > 0 }) else {
            throw PaliGemmaError.weights(tensor: aKey, reason: "has shape \(aShape); lora_A is [r, in] (or [r, C, kh, kw] for a convolution)")
        }
        guard bShape.count == aShape.count, bShape.count == 2 || bShape[2...] == [1, 1], bShape.allSatisfy({ $0 > 0 }) else {
            throw PaliGemmaError.weights(tensor: bKey,
                reason: "has shape \(bShape); lora_B is [out, r]\(aShape.count == 4 ? " or [out, r, 1, 1] beside a convolution's lora_A \(aShape)" : "")")
        }
        guard bShape[1] == aShape[0] else {
            throw PaliGemmaError.weights(tensor: bKey, reason: "has rank \(bShape[1]) but '\(aKey)' has rank \(aShape[0]) (shapes \(bShape) and \(aShape))")
        }
        guard a.count == aShape.reduce(1, *), b.count == bShape.reduce(1, *) else {
            throw PaliGemmaError.weights(tensor: aKey, reason: "holds \(a.count) and \(b.count) values for shapes \(aShape) and \(bShape)")
        }
        self.a = a
        self.aShape = aShape
        self.b = b
        self.bShape = bShape
        self.aKey = aKey
        self.bKey = bKey
    }

    public var rank: Int { aShape[0] }
    /// Columns of the adapted weight (for a convolution, C·kh·kw).
    public var inFeatures: Int { aShape.dropFirst().reduce(1, *) }
    public var outFeatures: Int { bShape[0] }
}

/// A PEFT LoRA adapter folder: its settings and every adapted module's A and B, keyed by the
/// module's canonical path (`language_model.model.layers.0.self_attn.q_proj`).
public struct LoRAAdapter: Sendable {
    public static let configFileName = "adapter_config.json"
    public static let weightsFileName = "adapter_model.safetensors"
    /// PEFT's prefix of every key (`PeftModel.base_model.model`).
    public static let keyPrefix = "base_model.model."

    public var config: LoRAAdapterConfig
    public var modules: [String: LoRAModule]
    /// The folder it was read from.
    public let directory: URL?
    /// Keys of adapter_config.json this runtime does not know (ignored; PEFT adds keys often).
    public let unknownConfigKeys: [String]

    public init(config: LoRAAdapterConfig, modules: [String: LoRAModule]) {
        self.config = config
        self.modules = modules
        directory = nil
        unknownConfigKeys = []
    }

    /// Reads a PEFT adapter folder. Refused by name: another PEFT method, DoRA, trained biases,
    /// fan_in_fan_out, per-module ranks or alphas, fully trained modules saved beside the
    /// adapter, LoRA on embeddings, and other LoRA variants; `adapter_model.bin` (pickle) is
    /// refused with a hint. Each module needs both A and B, with the configured rank.
    public init(directory: URL) throws {
        self.directory = directory
        let configURL = directory.appendingPathComponent(Self.configFileName)
        let weightsURL = directory.appendingPathComponent(Self.weightsFileName)
        let fm = FileManager.default
        guard fm.fileExists(atPath: configURL.path) else {
            throw PaliGemmaError.io(path: configURL.path, reason: "missing: a PEFT adapter folder needs adapter_config.json (and adapter_model.safetensors)")
        }
        (config, unknownConfigKeys) = try Self.readConfig(configURL)
        guard fm.fileExists(atPath: weightsURL.path) else {
            let bin = directory.appendingPathComponent("adapter_model.bin")
            if fm.fileExists(atPath: bin.path) {
                throw PaliGemmaError.io(path: bin.path,
                    reason: "is a pickled PyTorch file, which is not read here (it can run code); convert it with PEFT: PeftModel.from_pretrained(model, dir).save_pretrained(out, safe_serialization=True)")
            }
            throw PaliGemmaError.io(path: weightsURL.path, reason: "missing: a PEFT adapter folder needs adapter_model.safetensors")
        }
        modules = try Self.readWeights(try SafetensorsFile(path: weightsURL.path), rank: config.rank)
    }

    /// The key a module's `lora_A` / `lora_B` (`half`) weight is written under (see the top of
    /// this file for the spelling).
    public static func fileKey(module: String, _ half: String) -> String {
        let path = module.hasPrefix("multi_modal_projector.") ? "model." + module : module
        return keyPrefix + path + "." + half + ".weight"
    }

    /// Whether `directory` holds an adapter (adapter_config.json) rather than a checkpoint.
    public static func isAdapterFolder(_ directory: URL) -> Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent(configFileName).path)
    }

    // MARK: Reading

    /// Keys whose value must be absent, null, false, or empty (`{}`, `[]`): each turns on
    /// something not implemented here.
    static let refusedKeys: [(key: String, what: String)] = [
        ("use_dora", "DoRA (weight-decomposed LoRA)"),
        ("fan_in_fan_out", "fan_in_fan_out (weights stored [in, out], as GPT-2's Conv1D)"),
        ("rank_pattern", "per-module ranks (rank_pattern)"),
        ("alpha_pattern", "per-module alphas (alpha_pattern)"),
        ("modules_to_save", "fully trained modules saved beside the adapter (modules_to_save)"),
        ("lora_bias", "a trained bias on lora_B (lora_bias)"),
        ("target_parameters", "LoRA on bare parameters (target_parameters)"),
        ("trainable_token_indices", "trained token embeddings (trainable_token_indices)"),
        ("layer_replication", "replicated layers (layer_replication)"),
        ("use_qalora", "QALoRA"),
        ("alora_invocation_tokens", "activated LoRA (alora_invocation_tokens)"),
        ("use_bdlora", "block-diagonal LoRA (use_bdlora)"),
        ("arrow_config", "Arrow routing among adapters (arrow_config)"),
        ("velora_config", "VeLoRA (velora_config)"),
        ("kasa_config", "KaSA (kasa_config)"),
        ("monteclora_config", "MonteCLoRA (monteclora_config)"),
    ]

    /// Keys known and not changing inference: bookkeeping, training-time and initialisation
    /// settings, and which modules were wrapped (the tensors present say that).
    static let knownKeys: Set<String> = [
        "peft_type", "r", "lora_alpha", "use_rslora", "target_modules", "lora_dropout", "bias", "task_type",
        "base_model_name_or_path", "revision", "inference_mode", "auto_mapping", "peft_version", "init_lora_weights",
        "layers_to_transform", "layers_pattern", "exclude_modules", "megatron_config", "megatron_core", "loftq_config",
        "eva_config", "corda_config", "lora_ga_config", "qalora_group_size", "ensure_weight_tying",
    ]

    static func readConfig(_ url: URL) throws -> (LoRAAdapterConfig, [String]) {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: url)) } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try readConfig(bytes, path: url.path)
    }

    /// The adapter_config.json `bytes` (`path` names it in errors) and its unknown keys.
    static func readConfig(_ bytes: [UInt8], path: String) throws -> (LoRAAdapterConfig, [String]) {
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes, rejectDuplicateKeys: true)
        } catch {
            throw PaliGemmaError.config(path: path, key: nil, reason: "not valid JSON: \(error)")
        }
        guard let members = json.objectValue else { throw PaliGemmaError.config(path: path, key: nil, reason: "not a JSON object") }
        // What is not implemented is refused by name before decoding (one parse, as config.json).
        let type = json["peft_type"]?.stringValue
        guard type == "LORA" else {
            throw PaliGemmaError.unsupportedConfig(path: path, key: "peft_type",
                reason: "\(type.map { "'\($0)'" } ?? "missing"); only LoRA adapters (\"LORA\") are implemented")
        }
        for (key, what) in refusedKeys {
            guard let v = json[key] else { continue }
            let off: Bool
            switch v {
            case .null: off = true
            case .bool(let b): off = !b
            case .array(let a): off = a.isEmpty
            case .object(let o): off = o.isEmpty
            default: off = false
            }
            guard off else { throw PaliGemmaError.unsupportedConfig(path: path, key: key, reason: "\(what) is not implemented") }
        }
        if let bias = json["bias"]?.stringValue, bias != "none" {
            throw PaliGemmaError.unsupportedConfig(path: path, key: "bias", reason: "'\(bias)': trained biases are not implemented (only \"none\")")
        }
        let file: AdapterConfigFile
        do { file = try JSONValueDecoder().decode(AdapterConfigFile.self, from: json) } catch let error as DecodingError {
            throw PaliGemmaError.config(path: path, key: error.keyPath, reason: error.reason)
        }
        guard file.r >= 1 else { throw PaliGemmaError.config(path: path, key: "r", reason: "\(file.r); the rank must be at least 1") }
        guard file.loraAlpha.isFinite else { throw PaliGemmaError.config(path: path, key: "lora_alpha", reason: "must be finite") }
        var names: [String] = [], pattern: String?
        switch file.targetModules {
        case .names(let n)?: names = n
        case .pattern(let p)?: pattern = p
        case nil: break
        }
        let config = LoRAAdapterConfig(rank: file.r, alpha: file.loraAlpha, rslora: file.useRslora ?? false, targetModules: names,
                                       targetPattern: pattern, dropout: file.loraDropout ?? 0,
                                       baseModel: file.baseModelNameOrPath, taskType: file.taskType)
        let refused = Set(refusedKeys.map(\.key))
        let unknown = members.map(\.key).filter { !knownKeys.contains($0) && !refused.contains($0) }
        return (config, unknown)
    }

    static func readWeights(_ file: SafetensorsFile, rank: Int) throws -> [String: LoRAModule] {
        func fail(_ key: String, _ reason: String) -> PaliGemmaError { .safetensors(path: file.path, tensor: key, reason: reason) }
        // canonical module path -> (A, B) as (key, tensor)
        var halves: [String: (a: (String, Tensor)?, b: (String, Tensor)?)] = [:]
        var storedPath: [String: String] = [:]
        for key in file.names {
            guard key.hasPrefix(keyPrefix) else {
                throw fail(key, "does not start with '\(keyPrefix)', as every key of a PEFT LoRA adapter does")
            }
            let name = String(key.dropFirst(keyPrefix.count))
            let isA = name.hasSuffix(".lora_A.weight"), isB = name.hasSuffix(".lora_B.weight")
            guard isA || isB else {
                let reason: String
                if name.contains("lora_embedding_") { reason = "LoRA on an embedding is not implemented" }
                else if name.contains("lora_magnitude_vector") { reason = "DoRA (weight-decomposed LoRA) is not implemented" }
                else if name.contains(".lora_B.bias") { reason = "a trained bias on lora_B (lora_bias) is not implemented" }
                else if name.contains("modules_to_save") || name.contains("original_module") {
                    reason = "fully trained modules saved beside the adapter (modules_to_save) are not implemented"
                } else { reason = "is not a LoRA weight ('<module>.lora_A.weight' or '<module>.lora_B.weight')" }
                throw fail(key, reason)
            }
            let stored = String(name.dropLast(".lora_A.weight".count))
            let module = Checkpoint.canonicalName(stored)
            if let other = storedPath[module], other != stored {
                throw fail(key, "adapts the same module as '\(keyPrefix)\(other)...' (two spellings of '\(module)')")
            }
            storedPath[module] = stored
            let t = try file.tensor(key)
            guard t.dtype.isFloat else { throw fail(key, "has dtype \(t.dtype.rawValue); LoRA weights must be F32, BF16 or F16") }
            if isA { halves[module, default: (nil, nil)].a = (key, t) } else { halves[module, default: (nil, nil)].b = (key, t) }
        }
        var modules: [String: LoRAModule] = [:]
        for (module, pair) in halves {
            let stored = keyPrefix + (storedPath[module] ?? module)
            guard let (aKey, a) = pair.a else { throw fail(stored + ".lora_B.weight", "has no matching '\(stored).lora_A.weight'") }
            guard let (bKey, b) = pair.b else { throw fail(aKey, "has no matching '\(stored).lora_B.weight'") }
            let m = try LoRAModule(a: a.floats(), aShape: a.shape, b: b.floats(), bShape: b.shape, aKey: aKey, bKey: bKey)
            guard m.rank == rank else {
                throw fail(aKey, "has rank \(m.rank) (shape \(a.shape)) but adapter_config.json says r = \(rank)")
            }
            if let bad = m.a.firstIndex(where: { !$0.isFinite }) { throw fail(aKey, "value \(bad) is not finite") }
            if let bad = m.b.firstIndex(where: { !$0.isFinite }) { throw fail(bKey, "value \(bad) is not finite") }
            modules[module] = m
        }
        guard !modules.isEmpty else { throw PaliGemmaError.safetensors(path: file.path, tensor: nil, reason: "holds no LoRA weights") }
        return modules
    }

    // MARK: Writing

    /// Writes the adapter as PEFT does: `adapter_config.json` (PEFT's long-standing LoraConfig
    /// fields, so old and new PEFT versions read it; keys sorted, two-space indent, as
    /// `JSONOutput.fileData` writes files) and `adapter_model.safetensors` (F32, keys `fileKey`:
    /// `base_model.model.<module path>.lora_A.weight`, in name order, metadata `format: pt`).
    /// The folder appears complete or not at all; an existing non-empty folder is replaced only
    /// with `overwrite`.
    public func write(to directory: URL, overwrite: Bool = false) throws {
        let folder = try StagedFolder(destination: directory, overwrite: overwrite)
        var items: [SafetensorsWriter.Item] = []
        for (module, m) in modules {
            items.append(.float32(Self.fileKey(module: module, "lora_A"), shape: m.aShape, m.a))
            items.append(.float32(Self.fileKey(module: module, "lora_B"), shape: m.bShape, m.b))
        }
        items.sort { $0.name < $1.name }
        try SafetensorsWriter.write(items, metadata: ["format": "pt"], to: folder.file(Self.weightsFileName))
        let url = folder.file(Self.configFileName)
        do {
            try JSONOutput.fileData(AdapterConfigFile(config)).write(to: url)
        } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot write: \(error.localizedDescription)")
        }
        try folder.commit()
    }
}

/// adapter_config.json's members as read and written here. Reading decodes the settings that
/// matter (the rest was checked on the parsed value); writing sets PEFT's long-standing fields.
struct AdapterConfigFile: Codable {
    /// `target_modules`: module names, or one regular expression.
    enum Targets: Codable {
        case names([String]), pattern(String)

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let p = try? c.decode(String.self) { self = .pattern(p) } else { self = .names(try c.decode([String].self)) }
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .names(let n): try c.encode(n)
            case .pattern(let p): try c.encode(p)
            }
        }
    }

    var peftType: String?
    var r: Int
    var loraAlpha: Float
    var useRslora: Bool?
    var targetModules: Targets?
    var loraDropout: Float?
    var baseModelNameOrPath: String?
    var taskType: String?
    var bias: String?
    var fanInFanOut: Bool?
    var useDora: Bool?
    var inferenceMode: Bool?
    var initLoraWeights: Bool?

    enum CodingKeys: String, CodingKey {
        case peftType = "peft_type", r, loraAlpha = "lora_alpha", useRslora = "use_rslora", targetModules = "target_modules"
        case loraDropout = "lora_dropout", baseModelNameOrPath = "base_model_name_or_path", taskType = "task_type", bias
        case fanInFanOut = "fan_in_fan_out", useDora = "use_dora", inferenceMode = "inference_mode"
        case initLoraWeights = "init_lora_weights"
    }

    /// The file PEFT would write for `c`.
    init(_ c: LoRAAdapterConfig) {
        peftType = "LORA"
        r = c.rank
        loraAlpha = c.alpha
        useRslora = c.rslora
        targetModules = c.targetPattern.map(Targets.pattern) ?? .names(c.targetModules)
        loraDropout = c.dropout
        baseModelNameOrPath = c.baseModel
        taskType = c.taskType
        bias = "none"
        fanInFanOut = false
        useDora = false
        inferenceMode = true
        initLoraWeights = true
    }
}
