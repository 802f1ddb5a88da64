// Building blocks shared by the vision tower and the decoders.

/// y = x Wᵀ + b, with W [out, in] in its stored dtype (or int8 with row scales).
struct Linear: Sendable {
    let weight: Tensor
    let scales: [Float]?
    let bias: [Float]?

    /// Loads `<w>.weight` [outFeatures, inFeatures] and, if `bias`, `<w>.bias` [outFeatures].
    /// `quantizable` layers are quantized when the loader asks for it.
    init(_ w: Weights, quantizable: Bool = false, inFeatures: Int, outFeatures: Int, bias: Bool) throws {
        let tensor = try w.tensor("weight", shape: [outFeatures, inFeatures])
        if quantizable && w.loader.quantization == .int8 && tensor.hasData {
            (weight, scales) = Ops.quantizeInt8(tensor)
            Ops.releasePages(tensor)  // the stored copy is not read again
        } else {
            (weight, scales) = (tensor, nil)
        }
        self.bias = bias ? try w.vector("bias", count: outFeatures) : nil
    }

    init(weight: Tensor, scales: [Float]?, bias: [Float]?) {
        self.weight = weight
        self.scales = scales
        self.bias = bias
    }

    var outFeatures: Int { weight.shape[0] }

    func callAsFunction(_ x: Matrix) -> Matrix { Ops.linear(x, weight, bias: bias, scales: scales) }
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
