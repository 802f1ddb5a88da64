// SigLIP vision tower (So400m/14 in PaliGemma), as in "Sigmoid Loss for Language Image
// Pre-Training": patch embedding + learned positions, pre-LayerNorm transformer blocks,
// final LayerNorm. The attention-pooling head is not used by PaliGemma.
//
// Shape letters: N image tokens (patches), D vision width, H heads, Dh head width (D / H),
// F MLP width, C channels, S image side, P patch side, G patches per side (S / P).

/// Patch embedding (a PxP convolution with stride P, as a matrix multiply) plus positions.
struct SigLIPEmbeddings: Sendable {
    let config: SigLIPConfig
    /// `patch_embedding.weight` [D, C, P, P] viewed as [D, C·P·P] (a linear layer over the
    /// patches, with an adapter's [R, C, P, P] convolution viewed the same way); `.bias` [D].
    let patch: Linear
    /// `position_embedding.weight` [N, D].
    let position: Tensor

    init(_ w: Weights, config c: SigLIPConfig) throws {
        config = c
        let pw = w("patch_embedding"), kernel = [c.numChannels, c.patchSize, c.patchSize]
        let conv = try pw.tensor("weight", shape: [c.hiddenSize] + kernel)
        let columns = kernel.reduce(1, *)
        patch = Linear(weight: .dense(Tensor(storage: conv.storage, offset: conv.offset, shape: [c.hiddenSize, columns], dtype: conv.dtype)),
                       bias: try pw.vector("bias", count: c.hiddenSize),
                       lora: try w.loader.lora(pw.prefix, inFeatures: columns, outFeatures: c.hiddenSize, kernel: kernel))
        position = try w("position_embedding").tensor("weight", shape: [c.numPatches, c.hiddenSize])
    }

    /// pixels [C, S, S] (CHW) -> [N, D]
    func callAsFunction(_ pixels: [Float]) -> Matrix {
        let (p, ch, s) = (config.patchSize, config.numChannels, config.imageSize)
        // im2col: row (gy·G + gx), column (c·P + ky)·P + kx — the order of the conv weight.
        let patches = Ops.patches(pixels, channels: ch, size: s, patch: p)
        let x = patch(patches)
        let pos = Matrix(rows: x.rows, cols: x.cols)
        for r in 0..<pos.rows { Ops.gatherRow(position, r, into: pos, row: r) }
        Ops.add(x, pos)
        return x
    }
}

/// Multi-head self-attention over all image tokens (no mask), with biases.
struct SigLIPAttention: Sendable {
    let q: Linear  // self_attn.q_proj
    let k: Linear  // self_attn.k_proj
    let v: Linear  // self_attn.v_proj
    let out: Linear  // self_attn.out_proj
    var matrices: [Linear] { [q, k, v, out] }
    let heads: Int
    let headDim: Int

    init(_ w: Weights, config c: SigLIPConfig) throws {
        let d = c.hiddenSize
        q = try Linear(w("q_proj"), inFeatures: d, outFeatures: d, bias: true)
        k = try Linear(w("k_proj"), inFeatures: d, outFeatures: d, bias: true)
        v = try Linear(w("v_proj"), inFeatures: d, outFeatures: d, bias: true)
        out = try Linear(w("out_proj"), inFeatures: d, outFeatures: d, bias: true)
        heads = c.numAttentionHeads
        headDim = c.headDim
    }

    /// x [N, D] -> [N, D]
    func callAsFunction(_ x: Matrix) -> Matrix {
        let (qs, ks, vs) = (q(x), k(x), v(x))  // each [N, H·Dh]
        let mixed = Ops.selfAttention(q: qs, k: ks, v: vs, heads: heads, headDim: headDim,
                                      scale: 1 / Float(headDim).squareRoot())
        return out(mixed)
    }
}

/// fc1 -> gelu -> fc2.
struct SigLIPMLP: Sendable {
    let fc1: Linear  // mlp.fc1 [F, D]
    let fc2: Linear  // mlp.fc2 [D, F]
    var matrices: [Linear] { [fc1, fc2] }
    let exactGelu: Bool

    init(_ w: Weights, config c: SigLIPConfig) throws {
        fc1 = try Linear(w("fc1"), inFeatures: c.hiddenSize, outFeatures: c.intermediateSize, bias: true)
        fc2 = try Linear(w("fc2"), inFeatures: c.intermediateSize, outFeatures: c.hiddenSize, bias: true)
        exactGelu = Activation(name: c.hiddenAct) == .geluErf
    }

    func callAsFunction(_ x: Matrix) -> Matrix {
        let h = fc1(x)  // [N, F]
        Ops.gelu(h, exact: exactGelu)
        return fc2(h)
    }
}

/// x = x + attn(ln1(x)); x = x + mlp(ln2(x)).
struct SigLIPEncoderLayer: Sendable {
    let layerNorm1: LayerNorm  // layer_norm1
    let attention: SigLIPAttention  // self_attn
    let layerNorm2: LayerNorm  // layer_norm2
    let mlp: SigLIPMLP  // mlp

    init(_ w: Weights, config c: SigLIPConfig) throws {
        layerNorm1 = try LayerNorm(w("layer_norm1"), size: c.hiddenSize, eps: c.layerNormEps)
        attention = try SigLIPAttention(w("self_attn"), config: c)
        layerNorm2 = try LayerNorm(w("layer_norm2"), size: c.hiddenSize, eps: c.layerNormEps)
        mlp = try SigLIPMLP(w("mlp"), config: c)
    }

    func callAsFunction(_ x: Matrix) {
        Ops.add(x, attention(layerNorm1(x)))
        Ops.add(x, mlp(layerNorm2(x)))
    }
}

/// The whole tower: pixels [C, S, S] -> features [N, D] (after `post_layernorm`).
public struct SigLIPVisionTower: Sendable {
    public let config: SigLIPConfig
    let embeddings: SigLIPEmbeddings  // embeddings
    let layers: [SigLIPEncoderLayer]  // encoder.layers.{i}
    let postLayerNorm: LayerNorm  // post_layernorm

    init(_ w: Weights, config c: SigLIPConfig) throws {
        config = c
        embeddings = try SigLIPEmbeddings(w("embeddings"), config: c)
        layers = try (0..<c.numHiddenLayers).map { try SigLIPEncoderLayer(w("encoder.layers.\($0)"), config: c) }
        postLayerNorm = try LayerNorm(w("post_layernorm"), size: c.hiddenSize, eps: c.layerNormEps)
        if c.visionUseHead { w.loader.ignore(prefix: w.name("head.")) }
    }

    func callAsFunction(_ pixels: [Float]) -> Matrix {
        let x = embeddings(pixels)
        for layer in layers { layer(x) }
        return postLayerNorm(x)
    }
}
