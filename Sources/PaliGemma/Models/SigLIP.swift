// SigLIP vision tower (So400m/14 in PaliGemma), as in "Sigmoid Loss for Language Image
// Pre-Training": patch embedding + learned positions, pre-LayerNorm transformer blocks,
// final LayerNorm. The attention-pooling head is not used by PaliGemma.
//
// Shape letters: N image tokens (patches), D vision width, H heads, Dh head width (D / H),
// F MLP width, C channels, S image side, P patch side, G patches per side (S / P), I images
// encoded together (their rows stacked; attention stays within each image).

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
                       lora: try w.loader.lora(pw.prefix, inFeatures: columns, outFeatures: c.hiddenSize, kernel: kernel),
                       module: pw.prefix)
        position = try w("position_embedding").tensor("weight", shape: [c.numPatches, c.hiddenSize])
    }

    /// pixels I x [C, S, S] (CHW) -> [I·N, D]; with `adapter`, its terms on every row.
    func callAsFunction(_ images: [[Float]], adapter: LoRASet? = nil) -> Matrix {
        let (p, ch, s, n) = (config.patchSize, config.numChannels, config.imageSize, config.numPatches)
        // im2col: row (gy·G + gx), column (c·P + ky)·P + kx — the order of the conv weight.
        let patches: Matrix
        if images.count == 1 {
            patches = Ops.patches(images[0], channels: ch, size: s, patch: p)
        } else {
            patches = Matrix(rows: images.count * n, cols: ch * p * p)
            for (i, pixels) in images.enumerated() {
                Ops.copyRows(Ops.patches(pixels, channels: ch, size: s, patch: p), 0..<n, into: patches, at: i * n)
            }
        }
        let x = patch(patches, routes: .all(patches.rows, adapter))
        let pos = Matrix(rows: n, cols: x.cols)
        for r in 0..<n { Ops.gatherRow(position, r, into: pos, row: r) }
        for i in images.indices { Ops.addRows(pos, 0..<n, into: x, at: i * n) }
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

    /// x [I·N, D] -> [I·N, D], each image's N tokens attending among themselves.
    func callAsFunction(_ x: Matrix, images: Int, routes r: LoRARoutes = .none) -> Matrix {
        let (qs, ks, vs) = (q(x, routes: r), k(x, routes: r), v(x, routes: r))  // each [I·N, H·Dh]
        let mixed = Ops.selfAttention(q: qs, k: ks, v: vs, heads: heads, headDim: headDim,
                                      scale: 1 / Float(headDim).squareRoot(), blocks: images)
        return out(mixed, routes: r)
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

    func callAsFunction(_ x: Matrix, routes: LoRARoutes = .none) -> Matrix {
        let h = fc1(x, routes: routes)  // [I·N, F]
        Ops.gelu(h, exact: exactGelu)
        return fc2(h, routes: routes)
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

    /// x [I·N, D], updated in place; with `adapter`, its terms on every row.
    func callAsFunction(_ x: Matrix, images: Int, adapter: LoRASet? = nil) {
        let routes = LoRARoutes.all(x.rows, adapter)
        Ops.add(x, attention(layerNorm1(x), images: images, routes: routes))
        Ops.add(x, mlp(layerNorm2(x), routes: routes))
    }
}

/// The whole tower: pixels I x [C, S, S] -> features [I·N, D] (after `post_layernorm`). Several
/// images go through it as one batch (each matrix read once for all of them), as many at a
/// time as `batch` allows.
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

    /// Images encoded in one pass at most: 4 at 224 px (1,024 rows) keep a So400m layer's MLP
    /// activations near 18 MB. On the 2-core AMX Xeon this project measures on, 1, 4, 8 and 16
    /// at a time took the same time per image within the machine's noise, except 8 and 16 with
    /// bf16 products, about 25% slower (docs/BENCHMARKS.md, `bench --vision-batches`).
    public static let batch = 4

    func callAsFunction(_ images: [[Float]], adapter: LoRASet? = nil) -> Matrix {
        let x = embeddings(images, adapter: adapter)
        for layer in layers { layer(x, images: images.count, adapter: adapter) }
        return postLayerNorm(x)
    }
}
