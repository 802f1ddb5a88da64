// Building blocks shared by the vision tower and the decoders.

/// y = x Wᵀ + b, with W [out, in] as stored, or quantized (`MatrixWeight`); plus s · B (A x)
/// when the loader's LoRA adapter has this layer.
struct Linear: Sendable {
    let weight: MatrixWeight
    let bias: [Float]?
    let lora: LoRATerm?

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
    }

    init(weight: MatrixWeight, bias: [Float]?, lora: LoRATerm? = nil) {
        self.weight = weight
        self.bias = bias
        self.lora = lora
    }

    var outFeatures: Int { weight.rows }

    func callAsFunction(_ x: Matrix) -> Matrix {
        let y = Ops.linear(x, weight, bias: bias)
        lora?.add(x, to: y)
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

    /// Rows `rows` of s · B A [out, in]: what merging adds to the weight.
    func delta(rows: Range<Int>) -> Matrix {
        let d = Ops.matmul(b.rows(rows), a)
        Ops.scale(d, by: scale)
        return d
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
