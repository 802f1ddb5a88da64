// Building blocks shared by the vision tower and the decoders.

/// y = x Wᵀ + b, with W [out, in] as stored, or quantized (`MatrixWeight`); plus s · B (A x)
/// when the loader's LoRA adapter has this layer, and, on the rows a call routes to a served
/// adapter (`LoRARoutes`), that adapter's term for this layer.
struct Linear: Sendable {
    let weight: MatrixWeight
    let bias: [Float]?
    let lora: LoRATerm?
    /// The module's name, as adapters name it (`language_model.model.layers.0.self_attn.q_proj`).
    let module: String

    /// Loads `<w>.weight` [outFeatures, inFeatures] and, if `bias`, `<w>.bias` [outFeatures].
    /// `quantizable` layers may be stored int8 (with `<w>.weight_scale`) and are quantized
    /// when the loader asks for int8 or int4 (see `WeightLoader`). The adapter's term for the
    /// module `<w>` comes from the loader too.
    init(_ w: Weights, quantizable: Bool = false, inFeatures: Int, outFeatures: Int, bias: Bool) throws {
        let shape = [outFeatures, inFeatures]
        if quantizable {
            weight = try w.loader.quantizable(w.name("weight"), shape: shape)
        } else {
            weight = .dense(try w.tensor("weight", shape: shape))
        }
        self.bias = bias ? try w.vector("bias", count: outFeatures) : nil
        lora = try w.loader.lora(w.prefix, inFeatures: inFeatures, outFeatures: outFeatures)
        module = w.prefix
    }

    init(weight: MatrixWeight, bias: [Float]?, lora: LoRATerm? = nil, module: String) {
        self.weight = weight
        self.bias = bias
        self.lora = lora
        self.module = module
    }

    var outFeatures: Int { weight.rows }

    /// x [T, in] -> [T, out]; the rows in `routes` also take their served adapter's term.
    func callAsFunction(_ x: Matrix, routes: LoRARoutes = .none) -> Matrix {
        let y = Ops.linear(x, weight, bias: bias)
        lora?.add(x, to: y)
        for span in routes.spans {
            if let term = span.adapter.terms[module] { term.add(x, rows: span.rows, to: y) }
        }
        return y
    }

    /// dX = dY · (W + s·B·A) for dY [T, out] (training through a frozen layer).
    func backwardInput(_ dy: Matrix) -> Matrix {
        let dx = Ops.linearBackwardInput(dy, weight)
        if let lora { Ops.addScaled(dx, Ops.matmul(Ops.matmul(dy, lora.b), lora.a), lora.scale) }
        return dx
    }

    /// W + s·B·A as float32 [out, in].
    func mergedFloats() -> [Float] {
        let w = weight.floats()
        guard let lora else { return w }
        let merged = Matrix(rows: weight.rows, cols: weight.cols, values: w)
        Ops.addScaled(merged, lora.delta(rows: 0..<weight.rows), 1)
        return merged.values
    }
}

/// A LoRA adapter's term on a linear layer, PEFT's y += s · B (A x): A [R, in] and B [out, R]
/// in float32, whatever the base weight's dtype (float, int8 or 4-bit).
struct LoRATerm: Sendable {
    let a: Matrix  // lora_A [R, in]
    let b: Matrix  // lora_B [out, R]
    let scale: Float

    /// A module of an adapter file, as the matrices [R, in] and [out, R].
    init(_ m: LoRAModule, scale: Float) {
        a = Matrix(rows: m.rank, cols: m.inFeatures, values: m.a)
        b = Matrix(rows: m.outFeatures, cols: m.rank, values: m.b)
        self.scale = scale
    }

    /// y [T, out] += s · (x Aᵀ) Bᵀ for x [T, in].
    func add(_ x: Matrix, to y: Matrix) {
        Ops.addScaled(y, Ops.matmulTransposed(Ops.matmulTransposed(x, a), b), scale)
    }

    /// The same on rows `rows` of x and y only (the other rows are left as they are), with the
    /// same arithmetic as `add(_:to:)` on those rows alone.
    func add(_ x: Matrix, rows: Range<Int>, to y: Matrix) {
        guard rows.count != x.rows else { return add(x, to: y) }
        let d = Ops.matmulTransposed(Ops.matmulTransposed(x.rows(rows), a), b)  // [n, out]
        let base = y.row(rows.lowerBound)
        for i in 0..<d.count { base[i] += d.data[i] * scale }
    }

    /// Rows `rows` of s · B A [out, in]: what merging adds to the weight.
    func delta(rows: Range<Int>) -> Matrix {
        let d = Ops.matmul(b.rows(rows), a)
        Ops.scale(d, by: scale)
        return d
    }
}

/// A LoRA adapter bound to a loaded model for serving beside others on the same base: its terms
/// by module name, applied only to the rows a forward pass routes to it (`LoRARoutes`), so
/// requests with different adapters, or none, share one batched step (the base product once,
/// each sequence's low-rank term on its own rows). Made by `PaliGemmaModel.bind(_:name:)`.
public final class LoRASet: Sendable {
    /// The name requests choose it by.
    public let name: String
    public let config: LoRAAdapterConfig
    let terms: [String: LoRATerm]
    /// Whether it adapts the vision tower or the projector: image features then depend on it.
    public let adaptsVision: Bool

    init(name: String, config: LoRAAdapterConfig, terms: [String: LoRATerm]) {
        self.name = name
        self.config = config
        self.terms = terms
        adaptsVision = terms.keys.contains { !$0.hasPrefix("language_model.") }
    }

    /// Adapted modules.
    public var moduleCount: Int { terms.count }
}

/// Which rows of a forward pass take which served adapter (rows of other sequences, and those of
/// sequences without one, take none).
struct LoRARoutes: Sendable {
    var spans: [(rows: Range<Int>, adapter: LoRASet)]

    static let none = LoRARoutes(spans: [])

    /// Every one of `rows` rows to `adapter` (none when it is nil).
    static func all(_ rows: Int, _ adapter: LoRASet?) -> LoRARoutes {
        LoRARoutes(spans: adapter.map { [(0..<rows, $0)] } ?? [])
    }
}

/// LayerNorm with scale and shift (`<w>.weight`, `<w>.bias`).
struct LayerNorm: Sendable {
    let weight: [Float]
    let bias: [Float]
    let eps: Float

    init(_ w: Weights, size: Int, eps: Float) throws {
        weight = try w.vector("weight", count: size)
        bias = try w.vector("bias", count: size)
        self.eps = eps
    }

    func callAsFunction(_ x: Matrix) -> Matrix {
        let y = Matrix(rows: x.rows, cols: x.cols)
        Ops.layerNorm(x, weight: weight, bias: bias, eps: eps, into: y)
        return y
    }
}

/// Gemma's RMSNorm, x · rsqrt(mean(x²) + eps) · (1 + w), in float32 (`<w>.weight` holds w).
struct RMSNorm: Sendable {
    let weight: [Float]
    let eps: Float

    init(_ w: Weights, size: Int, eps: Float) throws {
        weight = try w.vector("weight", count: size)
        self.eps = eps
    }

    func callAsFunction(_ x: Matrix) -> Matrix {
        let y = Matrix(rows: x.rows, cols: x.cols)
        Ops.rmsNorm(x, weight: weight, eps: eps, into: y)
        return y
    }
}
