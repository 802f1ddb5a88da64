import Foundation

/// How weights are held in memory.
public enum Quantization: String, Sendable, CaseIterable {
    /// As stored in the checkpoint (float32, bfloat16 or float16; int8 or 4-bit where the
    /// folder stores them, see `WeightFormat.int8Stored` and `.int4Stored`).
    case none
    /// The decoder's matrices (and the output projection) quantized at load to int8 with one
    /// scale per output channel; the vision tower, norms and embedding lookup stay as stored.
    /// A folder that already stores them int8 (`paligemma quantize`) is mapped as it is; a 4-bit
    /// folder is refused (load it as it is).
    case int8
    /// The same matrices quantized at load to 4 bits, one float16 scale per group of 32 values
    /// of a row (`MatrixWeight.int4`): about a quarter of bf16's memory traffic, at a larger
    /// accuracy cost than int8 (docs/BENCHMARKS.md). Their input sizes must be multiples of 32,
    /// as in every published checkpoint. A quantized folder is refused (load it as it is).
    case int4
}

/// How a loaded model holds the matrices that int8 covers (the decoder's attention and MLP
/// matrices and the output projection), whatever `Quantization` was asked for.
public enum WeightFormat: String, Sendable, Codable {
    /// In the checkpoint's float dtype.
    case stored = "none"
    /// Quantized to int8 while loading (`Quantization.int8` on a float checkpoint).
    case int8Quantized = "int8"
    /// Stored int8 in the checkpoint (written by `QuantizedCheckpoint`), mapped without work.
    case int8Stored = "int8-stored"
    /// Quantized to 4-bit groups while loading (`Quantization.int4`).
    case int4Quantized = "int4"
    /// Stored 4-bit in the checkpoint (`paligemma quantize --bits 4`), mapped without work.
    case int4Stored = "int4-stored"

    /// Whether these matrices are quantized (int8 or 4-bit, at load or stored).
    public var isQuantized: Bool { self != .stored }
}

/// A matrix quantization may cover: its canonical name, shape [out, in], and the canonical name of the
/// tensor it is quantized from (itself, except the tied output projection, which is a
/// quantized copy of the embedding).
public struct QuantizableMatrix: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let source: String
}

/// Hands out a model's parameters by name, checking each against the shape the model expects,
/// and remembers which ones were taken so that loading can insist every tensor is used.
/// Without a checkpoint it hands out shape-only tensors, so a model can be built from a config
/// alone (to count parameters or list the expected tensors).
///
/// Stored int8 (see `QuantizedCheckpoint`): a matrix quantization covers may be stored as
/// `<name>.weight` (dtype I8, shape [out, in]) with `<name>.weight_scale` (F32, [out]), the
/// row scales: w[r, c] ≈ weight[r, c] · weight_scale[r]. For a tied output projection the int8
/// copy is `language_model.lm_head.weight` (+ `_scale`) beside the embedding. Stored 4-bit
/// (`paligemma quantize --bits 4`) is the same with `<name>.weight` U8 [out, in / 2] (the
/// kernels' PG_Q4 layout, see `MatrixWeight.int4`) and `<name>.weight_scale` F16
/// [out, in / 32], the group scales. Either every such matrix is stored quantized, one way,
/// or none is; I8 or U8 anywhere else is an error.
///
/// With a LoRA adapter, each linear layer takes the adapter's term for its module (canonical
/// path, e.g. `language_model.model.layers.0.self_attn.q_proj`), its shapes checked against the
/// layer's; `verifyAllUsed()` rejects an adapter module that no layer took.
public final class WeightLoader {
    let checkpoint: Checkpoint?
    let adapter: LoRAAdapter?
    private var adapterUsed: Set<String> = []
    let metaDType: DType
    public let quantization: Quantization
    private(set) var used: Set<String> = []
    private var ignoredPrefixes: [String] = []
    /// (canonical name, shape) of every parameter the model asked for, in order.
    public private(set) var declared: [(name: String, shape: [Int])] = []
    /// The matrices quantization covers, in the order the model asked for them.
    public private(set) var quantizableMatrices: [QuantizableMatrix] = []
    /// Those of `quantizableMatrices` found stored as int8, and those found in a float dtype.
    private var storedInt8: [String] = []
    private var storedInt4: [String] = []
    private var storedFloat: [String] = []

    /// Suffix of the row-scale tensor that goes with a stored int8 weight.
    public static let scaleSuffix = "_scale"

    public init(checkpoint: Checkpoint, quantization: Quantization = .none, adapter: LoRAAdapter? = nil) {
        self.checkpoint = checkpoint
        metaDType = .float32
        self.quantization = quantization
        self.adapter = adapter
    }

    /// Shape-only loading.
    public init(shapesOnly dtype: DType = .bfloat16) {
        checkpoint = nil
        adapter = nil
        metaDType = dtype
        quantization = .none
    }

    var root: Weights { Weights(loader: self, prefix: "") }

    /// A matrix (or any tensor) in its stored dtype.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        declared.append((name, shape))
        guard let checkpoint else { return .meta(shape: shape, dtype: metaDType) }
        let stored = checkpoint.storedName(name)
        guard let t = try checkpoint.tensor(canonical: name) else {
            throw PaliGemmaError.weights(tensor: stored, reason: "missing from the checkpoint (expected shape \(shape))")
        }
        guard t.shape == shape else {
            throw PaliGemmaError.weights(tensor: stored, reason: "has shape \(t.shape), expected \(shape)")
        }
        guard t.dtype != .int8 && t.dtype != .uint8 else {
            throw PaliGemmaError.weights(tensor: stored, reason: "is quantized (\(t.dtype.rawValue)), but only the decoder's attention and MLP matrices and the output projection may be stored quantized")
        }
        guard t.dtype.isFloat else {
            throw PaliGemmaError.weights(tensor: stored, reason: "has dtype \(t.dtype.rawValue); weights must be F32, BF16 or F16")
        }
        used.insert(name)
        return t
    }

    /// A matrix quantization covers: stored quantized with its scales, or as stored and quantized here
    /// when the loader asks for int8 or int4.
    func quantizable(_ name: String, shape: [Int]) throws -> MatrixWeight {
        quantizableMatrices.append(QuantizableMatrix(name: name, shape: shape, source: name))
        if let stored = try storedQuantized(name, shape: shape) { return stored }
        let t = try tensor(name, shape: shape)
        guard t.hasData else { return .dense(t) }
        storedFloat.append(name)
        return try quantizeIfAsked(t, name: name)
    }

    /// The output projection `name` when tied to `embedding` (canonical name `embeddingName`):
    /// a stored int8 copy if the checkpoint has one, else the embedding itself (quantized when
    /// the loader asks for int8; the lookup keeps reading the stored embedding). A stored float
    /// copy of the tied matrix is not used.
    func tiedOutput(_ name: String, embedding: Tensor, embeddingName: String) throws -> MatrixWeight {
        quantizableMatrices.append(QuantizableMatrix(name: name, shape: embedding.shape, source: embeddingName))
        if let stored = try storedQuantized(name, shape: embedding.shape) { return stored }
        ignore(prefix: name)
        guard embedding.hasData else { return .dense(embedding) }
        storedFloat.append(name)
        return try quantizeIfAsked(embedding, name: embeddingName)
    }

    private func quantizeIfAsked(_ t: Tensor, name: String) throws -> MatrixWeight {
        guard quantization != .none else { return .dense(t) }
        if quantization == .int4 && t.shape[1] % MatrixWeight.int4Group != 0 {
            throw PaliGemmaError.weights(tensor: checkpoint?.storedName(name) ?? name,
                reason: "has \(t.shape[1]) input features; int4 quantizes groups of \(MatrixWeight.int4Group) along a row, so they must be a multiple of \(MatrixWeight.int4Group) (use int8)")
        }
        let q = Ops.quantize(t, bits: quantization == .int4 ? 4 : 8)
        Ops.releasePages(t)  // the stored copy is not read again (a tied embedding's lookup faults back only its rows)
        return q
    }

    /// `name` with its scales if the checkpoint stores it quantized (int8 with F32 row scales, or
    /// 4-bit as U8 [out, in / 2] with F16 group scales [out, in / 32]); nil if it is absent or in
    /// a float dtype (and then it must have no scale).
    private func storedQuantized(_ name: String, shape: [Int]) throws -> MatrixWeight? {
        guard let checkpoint else { return nil }
        let scaleName = name + Self.scaleSuffix
        let weight = try checkpoint.tensor(canonical: name)
        let scale = try checkpoint.tensor(canonical: scaleName)
        guard let weight, weight.dtype == .int8 || weight.dtype == .uint8 else {
            if scale != nil {
                throw PaliGemmaError.weights(tensor: checkpoint.storedName(scaleName),
                    reason: "scales belong to a quantized (I8 or U8) weight, but '\(checkpoint.storedName(name))' is \(weight.map { "stored as \($0.dtype.rawValue)" } ?? "missing")")
            }
            return nil
        }
        let stored = checkpoint.storedName(name)
        let storedScale = checkpoint.storedName(scaleName)
        if quantization == .int4 || (quantization == .int8 && weight.dtype == .uint8) {
            throw PaliGemmaError.weights(tensor: stored,
                reason: "is stored quantized (\(weight.dtype.rawValue)); --quantize \(quantization.rawValue) quantizes from the float weights, so load the float folder this was made from, or this folder as it is")
        }
        let result: MatrixWeight
        if weight.dtype == .uint8 {
            let group = MatrixWeight.int4Group
            let packedShape = [shape[0], shape[1] / 2], scaleShape = [shape[0], shape[1] / group]
            guard shape[1] % group == 0, weight.shape == packedShape else {
                throw PaliGemmaError.weights(tensor: stored,
                    reason: "has shape \(weight.shape); a 4-bit (U8) matrix [\(shape[0]), \(shape[1])] is stored as \(packedShape), two values a byte")
            }
            guard let scale else {
                throw PaliGemmaError.weights(tensor: stored,
                    reason: "is 4-bit (U8) but its group scales '\(name + Self.scaleSuffix)' (F16 \(scaleShape)) are missing")
            }
            guard scale.dtype == .float16, scale.shape == scaleShape, let p = scale.pointer else {
                throw PaliGemmaError.weights(tensor: storedScale,
                    reason: "has dtype \(scale.dtype.rawValue) and shape \(scale.shape); the group scales of '\(stored)' must be F16 \(scaleShape)")
            }
            let bits = UnsafeBufferPointer(start: p.assumingMemoryBound(to: UInt16.self), count: scale.count)
            if let bad = bits.firstIndex(where: { $0 & 0x7C00 == 0x7C00 }) {
                throw PaliGemmaError.weights(tensor: storedScale,
                    reason: "row \(bad / scaleShape[1]), group \(bad % scaleShape[1]) has a scale that is not finite")
            }
            storedInt4.append(name)
            result = .int4(packed: weight, scales: scale)
        } else {
            guard weight.shape == shape else {
                throw PaliGemmaError.weights(tensor: stored, reason: "has shape \(weight.shape), expected \(shape)")
            }
            guard let scale else {
                throw PaliGemmaError.weights(tensor: stored,
                    reason: "is int8 (I8) but its row scales '\(name + Self.scaleSuffix)' (F32 [\(shape[0])]) are missing")
            }
            guard scale.dtype == .float32, scale.shape == [shape[0]] else {
                throw PaliGemmaError.weights(tensor: storedScale,
                    reason: "has dtype \(scale.dtype.rawValue) and shape \(scale.shape); the row scales of '\(stored)' must be F32 [\(shape[0])]")
            }
            let scales = scale.floats()
            if let bad = scales.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
                throw PaliGemmaError.weights(tensor: storedScale, reason: "row \(bad) has scale \(scales[bad]); scales must be finite and not negative")
            }
            storedInt8.append(name)
            result = .int8(weight, scales: scales)
        }
        declared.append((name, shape))
        used.insert(name)
        used.insert(scaleName)
        return result
    }

    /// How the matrices int8 covers are held, given what was loaded so far.
    public var weightFormat: WeightFormat {
        if !storedInt8.isEmpty { return .int8Stored }
        if !storedInt4.isEmpty { return .int4Stored }
        guard checkpoint != nil else { return .stored }
        switch quantization {
        case .none: return .stored
        case .int8: return .int8Quantized
        case .int4: return .int4Quantized
        }
    }

    /// The adapter's term for the linear layer `module` [out, in] (a convolution's when `kernel`
    /// gives its [C, kh, kw]), or nil when the adapter has none for it.
    func lora(_ module: String, inFeatures: Int, outFeatures: Int, kernel: [Int]? = nil) throws -> LoRATerm? {
        guard let adapter, let m = adapter.modules[module] else { return nil }
        let r = m.rank
        let (aShape, bShape) = ([r] + (kernel ?? [inFeatures]), [outFeatures, r] + (kernel == nil ? [] : [1, 1]))
        let what = kernel == nil ? "the linear layer '\(module)' [\(outFeatures), \(inFeatures)]" : "the convolution '\(module)' [\(outFeatures)] + \(kernel ?? [])"
        guard m.aShape == aShape else {
            throw PaliGemmaError.weights(tensor: m.aKey, reason: "has shape \(m.aShape); for \(what) lora_A must be \(aShape)")
        }
        guard m.bShape == bShape else {
            throw PaliGemmaError.weights(tensor: m.bKey, reason: "has shape \(m.bShape); for \(what) lora_B must be \(bShape)")
        }
        adapterUsed.insert(module)
        return LoRATerm(m, scale: adapter.config.scale)
    }

    /// A small parameter (norm scale, bias) converted to float32.
    func vector(_ name: String, count: Int) throws -> [Float] {
        let t = try tensor(name, shape: [count])
        return t.hasData ? t.floats() : [Float](repeating: 0, count: count)
    }

    /// Declares tensors under `prefix` as known but unused (e.g. SigLIP's pooling head).
    func ignore(prefix: String) { ignoredPrefixes.append(prefix) }

    /// Throws if the checkpoint holds a tensor the model did not take.
    /// Throws too if some of the matrices int8 covers are stored int8 and others are not.
    /// Throws too if the adapter has a module no linear layer took.
    public func verifyAllUsed() throws {
        if let adapter, let (module, m) = adapter.modules.sorted(by: { $0.key < $1.key }).first(where: { !adapterUsed.contains($0.key) }) {
            let reason = module == "language_model.lm_head"
                ? "adapts the output projection, which is not supported (its weight is the tied embedding)"
                : "adapts '\(module)', which is not a linear layer of this model (adapters attach to the linear layers of the vision tower, projector and decoder)"
            throw PaliGemmaError.weights(tensor: m.aKey, reason: reason)
        }
        guard let checkpoint else { return }
        if let int8 = storedInt8.first, let int4 = storedInt4.first {
            // Name one of the fewer kind: the odd one out.
            let (odd, other) = storedInt8.count <= storedInt4.count ? ((int8, "int8 (I8)"), (int4, "4-bit (U8)")) : ((int4, "4-bit (U8)"), (int8, "int8 (I8)"))
            throw PaliGemmaError.weights(tensor: checkpoint.storedName(odd.0),
                reason: "is \(odd.1), but '\(checkpoint.storedName(other.0))' is \(other.1): a quantized folder stores every covered matrix one way")
        }
        if let quantized = storedInt8.first ?? storedInt4.first, let float = storedFloat.first {
            let what = checkpoint.dtype(canonical: float).map { "stored as \($0.rawValue)" } ?? "missing (the output projection of tied embeddings)"
            let how = storedInt8.isEmpty ? "4-bit (U8) with group scales" : "int8 with row scales"
            throw PaliGemmaError.weights(tensor: checkpoint.storedName(float),
                reason: "is \(what), but '\(checkpoint.storedName(quantized))' is quantized: a quantized folder stores every decoder matrix and the output projection as \(how)")
        }
        for name in checkpoint.tensorNames where !used.contains(name) {
            if name.hasSuffix(Self.scaleSuffix), checkpoint.index[String(name.dropLast(Self.scaleSuffix.count))] != nil {
                let weight = String(name.dropLast(Self.scaleSuffix.count))
                throw PaliGemmaError.weights(tensor: checkpoint.storedName(name),
                    reason: "row scales, but '\(checkpoint.storedName(weight))' is not a matrix that may be stored int8")
            }
            if ignoredPrefixes.contains(where: { name.hasPrefix($0) }) { continue }
            throw PaliGemmaError.weights(tensor: checkpoint.storedName(name),
                reason: "unexpected: the checkpoint has it but the model described by config.json has no such parameter")
        }
    }

    /// Number of scalar parameters declared.
    public var parameterCount: Int { declared.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

/// A position in the parameter tree: a loader plus a dotted name prefix.
struct Weights {
    let loader: WeightLoader
    let prefix: String

    func callAsFunction(_ child: String) -> Weights {
        Weights(loader: loader, prefix: prefix.isEmpty ? child : "\(prefix).\(child)")
    }

    func tensor(_ leaf: String, shape: [Int]) throws -> Tensor { try loader.tensor(name(leaf), shape: shape) }
    func vector(_ leaf: String, count: Int) throws -> [Float] { try loader.vector(name(leaf), count: count) }
    func name(_ leaf: String) -> String { prefix.isEmpty ? leaf : "\(prefix).\(leaf)" }
}
