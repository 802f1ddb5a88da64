import Foundation

// The Gemma decoder (PaliGemma 1) and Gemma 2 decoder (PaliGemma 2), as in the Gemma and
// Gemma 2 papers: RMSNorm with (1 + w), multi-query / grouped-query attention with rotary
// embeddings (half-split), GeGLU MLP, embeddings scaled by sqrt(width) and tied to the output.
// Gemma 2 adds norms after attention and MLP, attention-logit and final-logit soft caps,
// query scaling by query_pre_attn_scalar, and sliding-window attention on alternate layers.
//
// Shape letters: R rows in this call (the new tokens of every sequence of the batch, stacked),
// D width, H query heads, Hkv key/value heads, Dh head width, F MLP width, V vocabulary rows.

/// Where the rows of a batched decoder call belong: one segment per sequence (its rows, its
/// cache, its start and prefix), and each row's position.
struct DecoderBatch {
    let segments: [AttentionSegment]
    /// Position of every row, for the rotary embedding. Positions count from 1, as in
    /// transformers' PaliGemma (RoPE sees only differences).
    let positions: [Float]
    /// The rows of segments whose sequence has a served adapter.
    let routes: LoRARoutes
    /// Segment i's served adapter, where given.
    let adapters: [LoRASet?]

    /// `adapters[i]` (when given) is segment i's served adapter.
    init(segments: [AttentionSegment], adapters: [LoRASet?] = []) {
        self.segments = segments
        self.adapters = adapters
        positions = segments.flatMap { s in (0..<s.rows.count).map { Float(s.start + $0 + 1) } }
        routes = LoRARoutes(spans: zip(segments, adapters).compactMap { s, a in a.map { (s.rows, $0) } })
    }

    /// The last `keep[i]` rows of each segment i, stacked in order: which rows of this batch
    /// they are, and the batch they form (same caches and prefixes, rows renumbered).
    func keeping(_ keep: [Int]) -> (rows: [Range<Int>], batch: DecoderBatch) {
        precondition(keep.count == segments.count)
        var rows: [Range<Int>] = [], kept: [AttentionSegment] = []
        var at = 0
        for (s, n) in zip(segments, keep) {
            precondition(n >= 0 && n <= s.rows.count)
            rows.append(s.rows.upperBound - n..<s.rows.upperBound)
            kept.append(AttentionSegment(rows: at..<at + n, cache: s.cache, start: s.start + s.rows.count - n, prefix: s.prefix))
            at += n
        }
        return (rows, DecoderBatch(segments: kept, adapters: adapters))
    }
}

/// Attention with rotary embeddings over the KV cache and the prefix-LM mask.
struct GemmaAttention: Sendable {
    let q: Linear  // self_attn.q_proj [H·Dh, D]
    let k: Linear  // self_attn.k_proj [Hkv·Dh, D]
    let v: Linear  // self_attn.v_proj [Hkv·Dh, D]
    let o: Linear  // self_attn.o_proj [D, H·Dh]
    var matrices: [Linear] { [q, k, v, o] }
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let scale: Float
    let softcap: Float?
    let window: Int?
    let invFreq: [Float]

    init(_ w: Weights, config c: GemmaConfig, layer: Int) throws {
        let (d, hd) = (c.hiddenSize, c.headDim)
        q = try Linear(w("q_proj"), quantizable: true, inFeatures: d, outFeatures: c.numAttentionHeads * hd, bias: c.attentionBias)
        k = try Linear(w("k_proj"), quantizable: true, inFeatures: d, outFeatures: c.numKeyValueHeads * hd, bias: c.attentionBias)
        v = try Linear(w("v_proj"), quantizable: true, inFeatures: d, outFeatures: c.numKeyValueHeads * hd, bias: c.attentionBias)
        o = try Linear(w("o_proj"), quantizable: true, inFeatures: c.numAttentionHeads * hd, outFeatures: d, bias: c.attentionBias)
        heads = c.numAttentionHeads
        kvHeads = c.numKeyValueHeads
        headDim = hd
        scale = c.queryScale
        softcap = c.modelType == .gemma2 ? c.attnLogitSoftcapping : nil
        window = c.slidingWindow(layer: layer)
        // inv_freq[i] = 1 / theta^(2i / Dh), in float32 as the reference computes it.
        invFreq = (0..<hd / 2).map { 1 / powf(c.ropeTheta, Float(2 * $0) / Float(hd)) }
    }

    /// x [R, D] -> [R, D]: each segment's rows attend over its own cache, to which their keys
    /// and values are appended first. With `queries` (rows of x [Q, D] and the batch they form,
    /// from `DecoderBatch.keeping`), every row's keys and values are appended but only those
    /// rows ask: -> [Q, D].
    func callAsFunction(_ x: Matrix, batch: DecoderBatch, layer: Int, queries: (x: Matrix, batch: DecoderBatch)? = nil) -> Matrix {
        let (ks, vs) = (k(x, routes: batch.routes), v(x, routes: batch.routes))  // [R, Hkv·Dh] each
        Ops.rope(ks, heads: kvHeads, dim: headDim, positions: batch.positions, invFreq: invFreq)
        for s in batch.segments { s.cache.store(layer: layer, start: s.start, keys: ks, values: vs, rows: s.rows) }
        let (qx, qb) = queries ?? (x, batch)
        let qs = q(qx, routes: qb.routes)  // [Q, H·Dh]
        Ops.rope(qs, heads: heads, dim: headDim, positions: qb.positions, invFreq: invFreq)
        let mixed = Ops.attention(qs, segments: qb.segments, layer: layer, heads: heads, kvHeads: kvHeads,
                                  headDim: headDim, window: window, scale: scale, softcap: softcap)
        return o(mixed, routes: qb.routes)
    }
}

/// GeGLU: down(act(gate(x)) * up(x)).
struct GemmaMLP: Sendable {
    let gate: Linear  // mlp.gate_proj [F, D]
    let up: Linear  // mlp.up_proj [F, D]
    let down: Linear  // mlp.down_proj [D, F]
    var matrices: [Linear] { [gate, up, down] }
    let exactGelu: Bool

    init(_ w: Weights, config c: GemmaConfig) throws {
        gate = try Linear(w("gate_proj"), quantizable: true, inFeatures: c.hiddenSize, outFeatures: c.intermediateSize, bias: false)
        up = try Linear(w("up_proj"), quantizable: true, inFeatures: c.hiddenSize, outFeatures: c.intermediateSize, bias: false)
        down = try Linear(w("down_proj"), quantizable: true, inFeatures: c.intermediateSize, outFeatures: c.hiddenSize, bias: false)
        exactGelu = Activation(name: c.hiddenAct) == .geluErf
    }

    func callAsFunction(_ x: Matrix, routes: LoRARoutes = .none) -> Matrix {
        let g = gate(x, routes: routes)  // [T, F]
        Ops.geglu(g, up(x, routes: routes), exact: exactGelu)
        return down(g, routes: routes)
    }
}

/// One decoder block.
///   Gemma:   h = x + attn(input_norm(x));                out = h + mlp(post_attention_norm(h))
///   Gemma 2: h = x + post_attention_norm(attn(input_norm(x)));
///            out = h + post_feedforward_norm(mlp(pre_feedforward_norm(h)))
/// (In Gemma `post_attention_layernorm` is the pre-MLP norm; in Gemma 2 it follows attention.)
struct GemmaDecoderLayer: Sendable {
    let inputNorm: RMSNorm  // input_layernorm
    let attention: GemmaAttention  // self_attn
    let postAttentionNorm: RMSNorm  // post_attention_layernorm
    let preFeedforwardNorm: RMSNorm?  // pre_feedforward_layernorm (Gemma 2)
    let postFeedforwardNorm: RMSNorm?  // post_feedforward_layernorm (Gemma 2)
    let mlp: GemmaMLP  // mlp
    var matrices: [Linear] { attention.matrices + mlp.matrices }

    init(_ w: Weights, config c: GemmaConfig, layer: Int) throws {
        let (d, eps) = (c.hiddenSize, c.rmsNormEps)
        inputNorm = try RMSNorm(w("input_layernorm"), size: d, eps: eps)
        attention = try GemmaAttention(w("self_attn"), config: c, layer: layer)
        postAttentionNorm = try RMSNorm(w("post_attention_layernorm"), size: d, eps: eps)
        if c.modelType == .gemma2 {
            preFeedforwardNorm = try RMSNorm(w("pre_feedforward_layernorm"), size: d, eps: eps)
            postFeedforwardNorm = try RMSNorm(w("post_feedforward_layernorm"), size: d, eps: eps)
        } else {
            preFeedforwardNorm = nil
            postFeedforwardNorm = nil
        }
        mlp = try GemmaMLP(w("mlp"), config: c)
    }

    /// Updates x [R, D] in place.
    func callAsFunction(_ x: Matrix, batch: DecoderBatch, layer: Int) {
        attentionBlock(x, batch: batch, layer: layer)
        feedForwardBlock(x, routes: batch.routes)
    }

    /// The first half, in place: h = x + attn(input_norm(x)) (Gemma 2: through post_attention_norm).
    func attentionBlock(_ x: Matrix, batch: DecoderBatch, layer: Int) {
        let a = attention(inputNorm(x), batch: batch, layer: layer)
        Ops.add(x, postFeedforwardNorm == nil ? a : postAttentionNorm(a))
    }

    /// The first half for the rows `rows` of x only (the batch `kept` they form), after every
    /// row's keys and values went to the caches: returns h for those rows [Q, D]. The last
    /// layer runs so, since nothing reads its other rows.
    func attentionBlock(_ x: Matrix, batch: DecoderBatch, layer: Int, keeping rows: [Range<Int>], _ kept: DecoderBatch) -> Matrix {
        let n = inputNorm(x)
        let h = Ops.gatherRows(x, rows)
        let a = attention(n, batch: batch, layer: layer, queries: (Ops.gatherRows(n, rows), kept))
        Ops.add(h, postFeedforwardNorm == nil ? a : postAttentionNorm(a))
        return h
    }

    /// The second half, in place: out = h + mlp(norm(h)). Each row on its own, so it may run on
    /// any subset of a call's rows (the staged prefill cuts it into pieces of rows).
    func feedForwardBlock(_ x: Matrix, routes: LoRARoutes) {
        if let preFeedforwardNorm, let postFeedforwardNorm {
            Ops.add(x, postFeedforwardNorm(mlp(preFeedforwardNorm(x), routes: routes)))
        } else {
            Ops.add(x, mlp(postAttentionNorm(x), routes: routes))
        }
    }
}

/// The decoder stack with its embedding, final norm and (tied) output projection.
public struct GemmaDecoder: Sendable {
    public let config: GemmaConfig
    let embedTokens: Tensor  // embed_tokens.weight [V, D]
    let layers: [GemmaDecoderLayer]  // layers.{i}
    let norm: RMSNorm  // norm
    /// Output projection [V, D]: `lm_head.weight` if untied, else the embedding (a quantized copy
    /// when quantizing, or the stored int8 `lm_head.weight`; the lookup keeps reading the
    /// stored embedding).
    let output: Linear
    /// sqrt(D) rounded to the embedding's dtype, as transformers computes it.
    public let embedScale: Float

    /// `w` is the decoder's scope (`language_model.model`); `head` the `lm_head` scope.
    init(_ w: Weights, head: Weights, config c: GemmaConfig) throws {
        config = c
        // Rows come from the checkpoint: hub files pad the vocabulary beyond vocab_size.
        embedTokens = try w("embed_tokens").tensor("weight", shape: [c.vocabSize, c.hiddenSize])
        layers = try (0..<c.numHiddenLayers).map { try GemmaDecoderLayer(w("layers.\($0)"), config: c, layer: $0) }
        norm = try RMSNorm(w("norm"), size: c.hiddenSize, eps: c.rmsNormEps)
        let outputWeight: MatrixWeight
        if c.tieWordEmbeddings {
            outputWeight = try w.loader.tiedOutput(head.name("weight"), embedding: embedTokens,
                                                   embeddingName: w("embed_tokens").name("weight"))
        } else {
            outputWeight = try w.loader.quantizable(head.name("weight"), shape: [c.vocabSize, c.hiddenSize])
        }
        output = Linear(weight: outputWeight, bias: nil, module: head.prefix)
        embedScale = embedTokens.dtype.round(Float(c.hiddenSize).squareRoot())
    }

    public var vocabRows: Int { embedTokens.shape[0] }

    /// Embedding row of `id`, times the embedding scale, into row `row` of x [_, D].
    func embed(_ id: Int, into x: Matrix, row: Int) {
        Ops.gatherRow(embedTokens, id, scale: embedScale, into: x, row: row)
    }

    /// Runs x [R, D] through every layer and the final norm. With `keep`, returns only the last
    /// keep[i] rows of each segment i, stacked in order ([Σ keep, D]): the last layer then
    /// appends every row's keys and values to the caches but runs its queries, attention,
    /// output projection and MLP on those rows alone (for a prompt's last row: about 1/L of
    /// the prefill's products saved), each row's values as they would be otherwise.
    func callAsFunction(_ x: Matrix, batch: DecoderBatch, keep: [Int]? = nil) -> Matrix {
        guard let keep else {
            for (i, layer) in layers.enumerated() { layer(x, batch: batch, layer: i) }
            return norm(x)
        }
        guard let last = layers.last else { return Ops.gatherRows(norm(x), batch.keeping(keep).rows) }
        for (i, layer) in layers.dropLast().enumerated() { layer(x, batch: batch, layer: i) }
        let (rows, kept) = batch.keeping(keep)
        let h = last.attentionBlock(x, batch: batch, layer: layers.count - 1, keeping: rows, kept)
        last.feedForwardBlock(h, routes: kept.routes)
        return norm(h)
    }

    /// h [R, D] -> logits [R, V], with the final soft cap when configured.
    func logits(_ h: Matrix) -> Matrix {
        let out = output(h)
        if config.modelType == .gemma2, let cap = config.finalLogitSoftcapping { Ops.softcap(out, cap: cap) }
        return out
    }
}
