// Building blocks shared by the vision tower and the decoders.

/// y = x Wᵀ + b, with W [out, in] as stored, or quantized (`MatrixWeight`).
struct Linear: Sendable {
    let weight: MatrixWeight
    let bias: [Float]?

    /// Loads `<w>.weight` [outFeatures, inFeatures] and, if `bias`, `<w>.bias` [outFeatures].
    /// `quantizable` layers may be stored int8 (with `<w>.weight_scale`) and are quantized
    /// when the loader asks for int8 or int4 (see `WeightLoader`).
    init(_ w: Weights, quantizable: Bool = false, inFeatures: Int, outFeatures: Int, bias: Bool) throws {
        let shape = [outFeatures, inFeatures]
        if quantizable {
            weight = try w.loader.quantizable(w.name("weight"), shape: shape)
        } else {
            weight = .dense(try w.tensor("weight", shape: shape))
        }
        self.bias = bias ? try w.vector("bias", count: outFeatures) : nil
    }

    init(weight: MatrixWeight, bias: [Float]?) {
        self.weight = weight
        self.bias = bias
    }

    var outFeatures: Int { weight.rows }

    func callAsFunction(_ x: Matrix) -> Matrix { Ops.linear(x, weight, bias: bias) }
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
