import Foundation

// A PaliGemma model as training runs it: the loaded model's weights (frozen, as stored) with the
// parameters a method trains beside them, a forward pass over one example that keeps what the
// backward pass needs, the masked cross-entropy, and the backward pass (llm.c's pairs, block by
// block). Gradients add up over examples until `zeroGradients()`.
//
// Shape letters: N image tokens, Dv vision width, T tokens, D decoder width, F MLP width,
// S supervised positions, V vocabulary rows.

/// One training example: image, ids and labels as transformers' processor builds them
/// (`<image>`×N, `<bos>`, prefix, "\n", suffix, `<eos>`; labels = ids with -100 outside the
/// suffix and `<eos>`, unshifted: the logits at t are scored against labels[t + 1]).
public struct TrainingExample: Sendable {
    /// Each image's pixel tensor [C, S, S], in prompt order (usually one).
    public var images: [[Float]]
    /// Names each image (its file): images with the same key share one vision pass when run
    /// together. nil: an image of its own.
    public var imageKeys: [String?]
    public var ids: [Int]
    public var labels: [Int]
    /// Tokens of the bidirectional prefix (image, `<bos>`, prefix, "\n"): token_type_ids == 0.
    public var prefixLength: Int

    /// An example about one image.
    public init(pixels: [Float], ids: [Int], labels: [Int], prefixLength: Int, imageKey: String? = nil) {
        self.init(images: [pixels], ids: ids, labels: labels, prefixLength: prefixLength, imageKeys: [imageKey])
    }

    /// An example about several images (their tokens in `ids` in the same order).
    public init(images: [[Float]], ids: [Int], labels: [Int], prefixLength: Int, imageKeys: [String?]? = nil) {
        self.images = images
        self.imageKeys = imageKeys ?? [String?](repeating: nil, count: images.count)
        self.ids = ids
        self.labels = labels
        self.prefixLength = prefixLength
    }

    /// The first image's pixel tensor (empty without an image); setting it makes the example's
    /// only image.
    public var pixels: [Float] {
        get { images.first ?? [] }
        set { images = [newValue]; imageKeys = [nil] }
    }

    /// The image keys joined (nil when an image has no key); setting it keys the only image.
    public var imageKey: String? {
        get { imageKeys.contains(nil) || imageKeys.isEmpty ? nil : imageKeys.compactMap { $0 }.joined(separator: "\n") }
        set { imageKeys = [newValue] }
    }

    /// Positions whose logits are scored (t with labels[t + 1] != -100).
    var scoredPositions: [Int] { (0..<max(ids.count - 1, 0)).filter { labels[$0 + 1] != -100 } }

    /// The label the logits at scored position `p` are scored against (labels[p + 1]), checked
    /// against the vocabulary.
    func target(after p: Int, vocabulary: Int) throws -> Int {
        let target = labels[p + 1]
        guard target >= 0, target < vocabulary else {
            throw PaliGemmaError.input("label \(target) at position \(p + 1) is outside the vocabulary (0..<\(vocabulary))")
        }
        return target
    }
}

/// The vision tower's layers as training runs them.
struct TrainSigLIPLayer {
    let norm1: TrainNorm, norm2: TrainNorm
    let q: TrainLinear, k: TrainLinear, v: TrainLinear, out: TrainLinear
    let fc1: TrainLinear, fc2: TrainLinear
    let attention: TrainAttention
    let exactGelu: Bool

    /// What backward needs. The layer norms' outputs and the GELU's are not kept: backward
    /// recomputes them from x, x1 and h (cheap, and a third less memory held per layer).
    struct Saved {
        let x: Matrix, x1: Matrix
        let q: TrainLinear.Saved, k: TrainLinear.Saved, v: TrainLinear.Saved, out: TrainLinear.Saved
        let attention: [TrainAttention.Saved]
        let fc1: TrainLinear.Saved, fc2: TrainLinear.Saved
        let h: Matrix  // fc1 output, before the activation
    }

    /// x [ΣN, Dv]: the images' rows stacked, one segment each.
    func forward(_ x: Matrix, segments: [RowSegment]) -> (Matrix, Saved) {
        let n1 = norm1.layer(x)
        let (qs, sq) = q.forward(n1), (ks, sk) = k.forward(n1), (vs, sv) = v.forward(n1)
        let (mixed, sa) = attention.forward(q: qs, k: ks, v: vs, segments: segments)
        let (a, so) = out.forward(mixed)
        let x1 = x.rows(0..<x.rows)
        Ops.add(x1, a)
        let (h, s1) = fc1.forward(norm2.layer(x1))
        let g = gelu(h)
        let (m, s2) = fc2.forward(g)
        let y = x1.rows(0..<x1.rows)
        Ops.add(y, m)
        return (y, Saved(x: x, x1: x1, q: sq.droppingInput(), k: sk.droppingInput(), v: sv.droppingInput(), out: so,
                         attention: sa, fc1: s1.droppingInput(), fc2: s2.droppingInput(), h: h))
    }

    private func gelu(_ h: Matrix) -> Matrix {
        let g = h.rows(0..<h.rows)
        Ops.gelu(g, exact: exactGelu)
        return g
    }

    func backward(_ dy: Matrix, _ s: Saved, segments: [RowSegment]) -> Matrix {
        let dg = fc2.backward(dy, fc2.needsInput ? s.fc2.restoring(gelu(s.h)) : s.fc2) ?? Matrix(rows: 0, cols: 0)
        let dh = Ops.geluBackward(dg, input: s.h, exact: exactGelu)
        let dn2 = fc1.backward(dh, fc1.needsInput ? s.fc1.restoring(norm2.layer(s.x1)) : s.fc1) ?? Matrix(rows: 0, cols: 0)
        let dx1 = dy.rows(0..<dy.rows)
        Ops.add(dx1, norm2.layerBackward(dn2, x: s.x1))
        let dmixed = out.backward(dx1, s.out) ?? Matrix(rows: 0, cols: 0)
        let (dq, dk, dv) = attention.backward(dmixed, s.attention, segments: segments)
        let n1 = q.needsInput || k.needsInput || v.needsInput ? norm1.layer(s.x) : Matrix(rows: 0, cols: 0)
        let dn1 = TrainLinear.backward([(q, dq, s.q), (k, dk, s.k), (v, dv, s.v)], input: n1)
        let dx = dx1.rows(0..<dx1.rows)
        Ops.add(dx, norm1.layerBackward(dn1, x: s.x))
        return dx
    }
}

/// The decoder's layers as training runs them (Gemma and Gemma 2).
struct TrainGemmaLayer {
    let inputNorm: TrainNorm, postAttentionNorm: TrainNorm
    let preFeedforwardNorm: TrainNorm?, postFeedforwardNorm: TrainNorm?
    let q: TrainLinear, k: TrainLinear, v: TrainLinear, o: TrainLinear
    let gate: TrainLinear, up: TrainLinear, down: TrainLinear
    let heads: Int, kvHeads: Int, headDim: Int, scale: Float, softcap: Float?, window: Int?
    let invFreq: [Float]
    let exactGelu: Bool

    /// What backward needs. The norms' outputs and GeGLU's product are not kept: backward
    /// recomputes them from x, x1, g and u (the product alone is [T, F], the largest activation
    /// a layer holds after g and u). a and m: the attention and MLP outputs (Gemma 2's post-norms).
    struct Saved {
        let x: Matrix, x1: Matrix, a: Matrix?, m: Matrix?
        let q: TrainLinear.Saved, k: TrainLinear.Saved, v: TrainLinear.Saved, o: TrainLinear.Saved
        let attention: [TrainAttention.Saved]
        let gate: TrainLinear.Saved, up: TrainLinear.Saved, down: TrainLinear.Saved
        let g: Matrix, u: Matrix  // gate and up outputs, before GeGLU
    }

    /// The attention of one sequence (each segment sets its own prefix).
    var attention: TrainAttention {
        TrainAttention(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale, softcap: softcap, window: window, prefix: 0)
    }

    /// The norm before the MLP: Gemma 2's pre-feedforward norm, Gemma's post-attention norm.
    private var mlpNorm: TrainNorm { preFeedforwardNorm ?? postAttentionNorm }

    private func geglu(_ g: Matrix, _ u: Matrix) -> Matrix {
        let act = g.rows(0..<g.rows)
        Ops.geglu(act, u, exact: exactGelu)
        return act
    }

    /// The rows of x that `keep` names (segment i's last keep[i].count rows), in order.
    static func keptRows(_ segments: [RowSegment], _ keep: [RowSegment]) -> [Range<Int>] {
        zip(segments, keep).map { s, k in s.start + s.count - k.count..<s.start + s.count }
    }

    /// x [ΣT, D]: the sequences' rows stacked, one segment each; positions per row. With `keep`
    /// (segment i's last keep[i].count rows, stacked as keep[i] says: the rows a loss reads
    /// after the last layer), every row's keys and values are formed but the queries,
    /// attention, output projection and MLP run on the kept rows only: -> [Σ keep, D].
    func forward(_ x: Matrix, positions: [Float], segments: [RowSegment], keep: [RowSegment]? = nil) -> (Matrix, Saved) {
        let n1 = inputNorm.rms(x)
        let (ks, sk) = k.forward(n1), (vs, sv) = v.forward(n1)
        Ops.rope(ks, heads: kvHeads, dim: headDim, positions: positions, invFreq: invFreq)
        let rows = keep.map { Self.keptRows(segments, $0) }
        let nq = rows.map { Ops.gatherRows(n1, $0) } ?? n1
        let (qs, sq) = q.forward(nq)
        let qPositions = rows.map { $0.flatMap { positions[$0] } } ?? positions
        Ops.rope(qs, heads: heads, dim: headDim, positions: qPositions, invFreq: invFreq)
        let (mixed, sa) = attention.forward(q: qs, k: ks, v: vs, segments: segments, queries: keep)
        let (a, so) = o.forward(mixed)
        let x1 = rows.map { Ops.gatherRows(x, $0) } ?? x.rows(0..<x.rows)
        Ops.add(x1, postFeedforwardNorm == nil ? a : postAttentionNorm.rms(a))
        let n2 = mlpNorm.rms(x1)
        let (g, sg) = gate.forward(n2), (u, su) = up.forward(n2)
        let (m, sd) = down.forward(geglu(g, u))
        let y = x1.rows(0..<x1.rows)
        Ops.add(y, postFeedforwardNorm?.rms(m) ?? m)
        let post = postFeedforwardNorm != nil
        return (y, Saved(x: x, x1: x1, a: post ? a : nil, m: post ? m : nil,
                         q: sq.droppingInput(), k: sk.droppingInput(), v: sv.droppingInput(), o: so, attention: sa,
                         gate: sg.droppingInput(), up: su.droppingInput(), down: sd.droppingInput(), g: g, u: u))
    }

    /// dy [ΣT, D] (with `keep`, as in forward: [Σ keep, D]) -> dx [ΣT, D].
    func backward(_ dy: Matrix, _ s: Saved, positions: [Float], segments: [RowSegment], keep: [RowSegment]? = nil) -> Matrix {
        var dm = dy
        if let post = postFeedforwardNorm, let m = s.m { dm = post.rmsBackward(dy, x: m) }
        let dact = down.backward(dm, down.needsInput ? s.down.restoring(geglu(s.g, s.u)) : s.down) ?? Matrix(rows: 0, cols: 0)
        let (dg, du) = Ops.gegluBackward(dact, gate: s.g, up: s.u, exact: exactGelu)
        let n2 = gate.needsInput || up.needsInput ? mlpNorm.rms(s.x1) : Matrix(rows: 0, cols: 0)
        let dn2 = gate.backward(dg, s.gate.restoring(n2)) ?? Matrix(rows: 0, cols: 0)
        if let d = up.backward(du, s.up.restoring(n2)) { Ops.add(dn2, d) }
        let dx1 = dy.rows(0..<dy.rows)
        Ops.add(dx1, mlpNorm.rmsBackward(dn2, x: s.x1))
        var da = dx1
        if postFeedforwardNorm != nil, let a = s.a { da = postAttentionNorm.rmsBackward(dx1, x: a) }
        let dmixed = o.backward(da, s.o) ?? Matrix(rows: 0, cols: 0)
        let (dq, dk, dv) = attention.backward(dmixed, s.attention, segments: segments, queries: keep)
        let rows = keep.map { Self.keptRows(segments, $0) }
        let qPositions = rows.map { $0.flatMap { positions[$0] } } ?? positions
        Ops.ropeBackward(dq, heads: heads, dim: headDim, positions: qPositions, invFreq: invFreq)
        Ops.ropeBackward(dk, heads: kvHeads, dim: headDim, positions: positions, invFreq: invFreq)
        let n1 = q.needsInput || k.needsInput || v.needsInput ? inputNorm.rms(s.x) : Matrix(rows: 0, cols: 0)
        guard let rows else {
            let dn1 = TrainLinear.backward([(q, dq, s.q), (k, dk, s.k), (v, dv, s.v)], input: n1)
            let dx = dx1.rows(0..<dx1.rows)
            Ops.add(dx, inputNorm.rmsBackward(dn1, x: s.x))
            return dx
        }
        // Kept rows take the queries' and the residual's gradients; every row the keys' and values'.
        let dn1 = TrainLinear.backward([(k, dk, s.k), (v, dv, s.v)], input: n1)
        if let d = q.backward(dq, s.q.restoring(q.needsInput ? Ops.gatherRows(n1, rows) : n1)) { Self.scatterAdd(d, rows, into: dn1) }
        let dx = inputNorm.rmsBackward(dn1, x: s.x)
        Self.scatterAdd(dx1, rows, into: dx)
        return dx
    }

    /// dst[rows[i]] += src's rows, one range after another.
    static func scatterAdd(_ src: Matrix, _ rows: [Range<Int>], into dst: Matrix) {
        var at = 0
        for r in rows {
            Ops.addRows(src, at..<at + r.count, into: dst, at: r.lowerBound)
            at += r.count
        }
    }
}

/// Parts of the model that `full` training can leave frozen.
public enum ModelPart: String, Sendable, CaseIterable {
    /// SigLIP: patch and position embeddings, every layer, the final norm.
    case visionTower = "vision"
    /// SigLIP's patch embedding alone (its convolution's weight and bias): frozen at its random
    /// start, it keeps a from-scratch vision tower stable at learning rates where a trained one
    /// blows up (Chen et al., "An Empirical Study of Training Self-Supervised Vision
    /// Transformers", 2021).
    case patchEmbedding = "patch-embedding"
    case projector
    /// The decoder's layers and final norm.
    case decoder
    /// The token embedding (tied to the output head).
    case embeddings
}

/// The whole model for training: every block wrapped with what `method` trains.
public final class TrainableModel: @unchecked Sendable {
    public let model: PaliGemmaModel
    public let method: TrainingMethod
    /// Every trained tensor, in model order.
    public let parameters: [Parameter]
    let patch: TrainLinear
    let position: Parameter?
    let visionLayers: [TrainSigLIPLayer]
    let postLayerNorm: TrainNorm
    let projector: TrainLinear
    let embedding: Parameter?  // embed_tokens [V, D], tied to the output head
    let layers: [TrainGemmaLayer]
    let norm: TrainNorm
    /// Whether anything in the vision tower or projector is trained (else the image side runs
    /// as inference, without keeping activations).
    let trainsVision: Bool
    /// Whether anything below the projector is trained (else backward stops at the projector).
    let trainsVisionTower: Bool
    let dropoutState: DropoutState
    /// Recompute each layer's activations in the backward pass instead of keeping them from the
    /// forward pass (gradient checkpointing per layer): one more forward's work, and only one
    /// layer's activations held at a time.
    public var recompute = false
    /// The seed LoRA dropout draws the next example's masks from (the trainer sets it per
    /// example, so runs and resumed runs repeat).
    public var dropoutSeed: UInt64 {
        get { dropoutState.seed ?? 0 }
        set { dropoutState.seed = newValue }
    }

    /// Wraps `model` for `method`; LoRA's A matrices are drawn from `seed` (B starts at zero).
    /// With `full`, the parts in `freeze` stay as stored.
    public init(model: PaliGemmaModel, method: TrainingMethod, seed: UInt64 = 0, freeze: Set<ModelPart> = []) {
        self.model = model
        self.method = method
        var rng = Xoshiro256(seed: seed)
        var linearCount = 0
        let dropoutState = DropoutState()
        self.dropoutState = dropoutState
        let fullAll = method == .full
        var full = fullAll && !freeze.contains(.visionTower)
        func lin(_ path: String, _ base: Linear, attention: Bool = false) -> TrainLinear {
            var lora: LoRAConfig?
            if case .lora(let c) = method, c.matches(path) { lora = c }
            linearCount += 1
            return TrainLinear(path: path, base: base, trainWeights: full || (attention && method == .attention), lora: lora, rng: &rng,
                               dropoutState: dropoutState, index: linearCount)
        }
        let vt = model.vision, vp = "vision_tower.vision_model"
        let e = vt.embeddings
        full = fullAll && !freeze.contains(.visionTower) && !freeze.contains(.patchEmbedding)
        patch = lin(vp + ".embeddings.patch_embedding", e.patch)
        full = fullAll && !freeze.contains(.visionTower)
        position = full ? Parameter(name: vp + ".embeddings.position_embedding.weight", shape: e.position.shape, values: e.position.floats()) : nil
        visionLayers = vt.layers.enumerated().map { i, l in
            let p = "\(vp).encoder.layers.\(i)"
            let a = l.attention
            return TrainSigLIPLayer(
                norm1: TrainNorm(path: p + ".layer_norm1", weight: l.layerNorm1.weight, bias: l.layerNorm1.bias, eps: l.layerNorm1.eps, trained: full),
                norm2: TrainNorm(path: p + ".layer_norm2", weight: l.layerNorm2.weight, bias: l.layerNorm2.bias, eps: l.layerNorm2.eps, trained: full),
                q: lin(p + ".self_attn.q_proj", a.q), k: lin(p + ".self_attn.k_proj", a.k), v: lin(p + ".self_attn.v_proj", a.v),
                out: lin(p + ".self_attn.out_proj", a.out), fc1: lin(p + ".mlp.fc1", l.mlp.fc1), fc2: lin(p + ".mlp.fc2", l.mlp.fc2),
                attention: TrainAttention(heads: a.heads, kvHeads: a.heads, headDim: a.headDim, scale: 1 / Float(a.headDim).squareRoot(),
                                          softcap: nil, window: nil, prefix: Int.max),
                exactGelu: l.mlp.exactGelu)
        }
        postLayerNorm = TrainNorm(path: vp + ".post_layernorm", weight: vt.postLayerNorm.weight, bias: vt.postLayerNorm.bias,
                                  eps: vt.postLayerNorm.eps, trained: full)
        full = fullAll && !freeze.contains(.projector)
        projector = lin("multi_modal_projector.linear", model.projector)
        let dec = model.decoder, dp = "language_model.model"
        full = fullAll && !freeze.contains(.embeddings)
        embedding = full ? Parameter(name: dp + ".embed_tokens.weight", shape: dec.embedTokens.shape, values: dec.embedTokens.floats()) : nil
        full = fullAll && !freeze.contains(.decoder)
        layers = dec.layers.enumerated().map { i, l in
            let p = "\(dp).layers.\(i)"
            let a = l.attention
            func norm(_ n: RMSNorm?, _ name: String) -> TrainNorm? {
                n.map { TrainNorm(path: p + "." + name, weight: $0.weight, bias: nil, eps: $0.eps, trained: full) }
            }
            return TrainGemmaLayer(
                inputNorm: TrainNorm(path: p + ".input_layernorm", weight: l.inputNorm.weight, bias: nil, eps: l.inputNorm.eps, trained: full),
                postAttentionNorm: TrainNorm(path: p + ".post_attention_layernorm", weight: l.postAttentionNorm.weight, bias: nil,
                                             eps: l.postAttentionNorm.eps, trained: full),
                preFeedforwardNorm: norm(l.preFeedforwardNorm, "pre_feedforward_layernorm"),
                postFeedforwardNorm: norm(l.postFeedforwardNorm, "post_feedforward_layernorm"),
                q: lin(p + ".self_attn.q_proj", a.q, attention: true), k: lin(p + ".self_attn.k_proj", a.k, attention: true),
                v: lin(p + ".self_attn.v_proj", a.v, attention: true), o: lin(p + ".self_attn.o_proj", a.o, attention: true),
                gate: lin(p + ".mlp.gate_proj", l.mlp.gate), up: lin(p + ".mlp.up_proj", l.mlp.up), down: lin(p + ".mlp.down_proj", l.mlp.down),
                heads: a.heads, kvHeads: a.kvHeads, headDim: a.headDim, scale: a.scale, softcap: a.softcap, window: a.window,
                invFreq: a.invFreq, exactGelu: l.mlp.exactGelu)
        }
        norm = TrainNorm(path: dp + ".norm", weight: dec.norm.weight, bias: nil, eps: dec.norm.eps, trained: full)
        var params: [Parameter] = patch.parameters + [position].compactMap { $0 }
        for l in visionLayers {
            params += l.norm1.parameters + l.q.parameters + l.k.parameters + l.v.parameters + l.out.parameters
            params += l.norm2.parameters + l.fc1.parameters + l.fc2.parameters
        }
        params += postLayerNorm.parameters
        let visionCount = params.count
        params += projector.parameters
        trainsVision = !params.isEmpty
        params += [embedding].compactMap { $0 }
        for l in layers {
            params += l.inputNorm.parameters + l.q.parameters + l.k.parameters + l.v.parameters + l.o.parameters
            params += l.postAttentionNorm.parameters + (l.preFeedforwardNorm?.parameters ?? [])
            params += l.gate.parameters + l.up.parameters + l.down.parameters + (l.postFeedforwardNorm?.parameters ?? [])
        }
        params += norm.parameters
        parameters = params
        trainsVisionTower = visionCount > 0
    }

    /// Whether LoRA dropout is on (its masks are drawn per example, so examples run one by one).
    public var hasDropout: Bool {
        if case .lora(let c) = method { return c.dropout > 0 }
        return false
    }

    /// The trained tensors by name.
    public var parametersByName: [String: Parameter] { Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0) }) }

    public func zeroGradients() { for p in parameters { p.zeroGrad() } }

    /// Number of trained values.
    public var trainableCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Runs `example` forward and backward: returns the sum of its cross-entropies over the
    /// scored positions and their count, and adds `weight` times the gradient of that sum to
    /// every parameter's gradient (weight = 1 / tokens in the batch gives transformers' mean).
    public func accumulate(_ example: TrainingExample, weight: Float) throws -> (loss: Double, count: Int) {
        try run([example], weights: [weight], backward: true)[0]
    }

    /// `accumulate` for several examples at once, stacked by rows into one matrix per layer (each
    /// attends only to itself): example i's gradient counts `weights[i]` times. Examples with
    /// the same `imageKey` share one pass of the vision tower, its gradient summed over them.
    /// Per example, its summed cross-entropy and scored-position count.
    public func accumulate(_ examples: [TrainingExample], weights: [Float]) throws -> [(loss: Double, count: Int)] {
        precondition(weights.count == examples.count)
        return try run(examples, weights: weights, backward: true)
    }

    /// The example's summed cross-entropy and scored-position count, without gradients
    /// (teacher-forced evaluation).
    public func loss(_ example: TrainingExample) throws -> (loss: Double, count: Int) {
        try run([example], weights: [0], backward: false)[0]
    }

    func run(_ examples: [TrainingExample], weights: [Float], backward: Bool) throws -> [(loss: Double, count: Int)] {
        let seed = dropoutState.seed
        if !backward { dropoutState.seed = nil }  // dropout only while training
        defer { dropoutState.seed = seed }
        let c = model.config
        let n = c.numImageTokens
        // Rows: example e's tokens are rows segments[e]; its j-th image is images[imageOf[e][j]].
        var segments: [RowSegment] = [], imageOf: [[Int]] = [], images: [[Float]] = [], keys: [String: Int] = [:]
        var total = 0
        for (e, example) in examples.enumerated() {
            let t = example.ids.count
            guard t > 1, example.labels.count == t else {
                throw PaliGemmaError.input("a training example needs at least 2 tokens and one label per token (got \(t) ids, \(example.labels.count) labels)")
            }
            segments.append(RowSegment(start: total, count: t, prefix: example.prefixLength))
            total += t
            let imageCount = example.ids.filter { $0 == c.imageTokenIndex }.count
            guard imageCount > 0 else { imageOf.append([]); continue }
            guard imageCount == n * example.images.count else {
                throw PaliGemmaError.input("example \(e) has \(imageCount) <image> tokens; \(example.images.count) image(s) take \(n) each")
            }
            guard example.imageKeys.count == example.images.count else {
                throw PaliGemmaError.input("example \(e) has \(example.imageKeys.count) image keys for \(example.images.count) images")
            }
            var mine: [Int] = []
            for (k, (pixels, key)) in zip(example.images, example.imageKeys).enumerated() {
                try model.checkPixels(pixels, image: k, of: example.images.count)
                if let key, let i = keys[key] {
                    mine.append(i)
                } else {
                    if let key { keys[key] = images.count }
                    mine.append(images.count)
                    images.append(pixels)
                }
            }
            imageOf.append(mine)
        }
        // Image side: every distinct image's N rows stacked, [I·N, D] after the projector.
        var visionSaves: [TrainSigLIPLayer.Saved] = [], visionInputs: [Matrix] = []
        var beforePost: Matrix?, projectorSave: TrainLinear.Saved?, patchSave: TrainLinear.Saved?
        let imageSegments = images.indices.map { RowSegment(start: $0 * n, count: n, prefix: Int.max) }
        var features: Matrix?
        if !images.isEmpty {
            if trainsVision {  // trained vision parameters count in evaluation too
                let v = c.visionConfig
                let patches = Matrix(rows: images.count * n, cols: v.numChannels * v.patchSize * v.patchSize)
                for (i, pixels) in images.enumerated() {
                    Ops.copyRows(Ops.patches(pixels, channels: v.numChannels, size: v.imageSize, patch: v.patchSize), 0..<n,
                                 into: patches, at: i * n)
                }
                let (x0, ps) = patch.forward(patches)
                patchSave = ps
                let pos = position?.value ?? {
                    let m = Matrix(rows: n, cols: x0.cols)
                    for r in 0..<n { Ops.gatherRow(model.vision.embeddings.position, r, into: m, row: r) }
                    return m
                }()
                for i in images.indices { Ops.addRows(pos, 0..<n, into: x0, at: i * n) }
                var x = x0
                for layer in visionLayers {
                    let (y, s) = layer.forward(x, segments: imageSegments)
                    if backward { if recompute { visionInputs.append(x) } else { visionSaves.append(s) } }
                    x = y
                }
                beforePost = x
                let (f, s) = projector.forward(postLayerNorm.layer(x))
                projectorSave = s
                features = f
            } else {
                features = try model.imageFeatures(pixels: images)
            }
        }
        // Decoder input: image rows from their image's features, text rows from the (scaled)
        // embedding. imageRows[k] is the decoder row that took feature row featureRows[k].
        let d = c.textConfig.hiddenSize
        let scale = model.decoder.embedScale
        let x0 = Matrix(rows: total, cols: d)
        var imageRows: [Int] = [], featureRows: [Int] = []
        var positions: [Float] = []
        positions.reserveCapacity(total)
        for (e, example) in examples.enumerated() {
            var k = 0
            for (i, id) in example.ids.enumerated() {
                let row = segments[e].start + i
                positions.append(Float(i + 1))
                if id == c.imageTokenIndex, let f = features, k < imageOf[e].count * n {
                    let feature = imageOf[e][k / n] * n + k % n  // the k-th image token: its image's row
                    Ops.copyRows(f, feature..<feature + 1, into: x0, at: row)
                    imageRows.append(row)
                    featureRows.append(feature)
                    k += 1
                } else {
                    guard id >= 0, id < model.decoder.vocabRows else {
                        throw PaliGemmaError.input("token id \(id) at position \(i) is outside the vocabulary (0..<\(model.decoder.vocabRows))")
                    }
                    if let embedding {
                        for j in 0..<d { x0[row, j] = embedding.value[id, j] * scale }
                    } else {
                        model.decoder.embed(id, into: x0, row: row)
                    }
                }
            }
        }
        // The last layer runs its queries, attention, output projection and MLP only on the rows
        // the loss reads: each example's rows from its first scored position on (its last row
        // when none is scored), stacked as `keep` says. Nothing reads the others' outputs.
        var keep: [RowSegment] = [], kept = 0
        for (example, segment) in zip(examples, segments) {
            let count = segment.count - (example.scoredPositions.first ?? segment.count - 1)
            keep.append(RowSegment(start: kept, count: count, prefix: segment.prefix))
            kept += count
        }
        func keeping(_ i: Int) -> [RowSegment]? { i == layers.count - 1 ? keep : nil }
        var saves: [TrainGemmaLayer.Saved] = [], inputs: [Matrix] = []
        var x = x0
        for (i, layer) in layers.enumerated() {
            let (y, s) = layer.forward(x, positions: positions, segments: segments, keep: keeping(i))
            if backward { if recompute { inputs.append(x) } else { saves.append(s) } }
            x = y
        }
        // x: the kept rows (all rows for a decoder without layers).
        let keptRows = layers.isEmpty ? segments : keep
        let h = norm.rms(x)
        // Scored rows only through the output head: row r of the logits is row scoredRows[r] of
        // h, of example scoredExample[r].
        var scoredRows: [Int] = [], scoredExample: [Int] = [], targets: [Int] = []
        for (e, example) in examples.enumerated() {
            for p in example.scoredPositions {
                scoredRows.append(keptRows[e].start + p - (segments[e].count - keptRows[e].count))
                scoredExample.append(e)
                targets.append(try example.target(after: p, vocabulary: model.decoder.vocabRows))
            }
        }
        let hs = Matrix(rows: scoredRows.count, cols: d)
        for (r, p) in scoredRows.enumerated() { Ops.copyRows(h, p..<p + 1, into: hs, at: r) }
        let logits: Matrix
        if let embedding {
            logits = Ops.matmulTransposed(hs, embedding.value)
        } else {
            logits = Ops.linear(hs, model.decoder.output.weight, bias: nil)
        }
        let cap = c.textConfig.modelType == .gemma2 ? c.textConfig.finalLogitSoftcapping : nil
        if let cap { Ops.softcap(logits, cap: cap) }
        // Cross-entropy and its gradient, (softmax - onehot) · weight.
        var results = examples.map { (loss: 0.0, count: $0.scoredPositions.count) }
        let dlogits = Matrix(rows: logits.rows, cols: logits.cols)
        for r in 0..<logits.rows {
            let e = scoredExample[r]
            results[e].loss += Ops.crossEntropy(logits.row(r), count: logits.cols, target: targets[r], gradient: dlogits.row(r),
                                                weight: weights[e])
        }
        guard backward, !scoredRows.isEmpty else { return results }
        if let cap { Ops.softcapBackward(dlogits, output: logits, cap: cap) }
        // Back through the output head (tied to the embedding).
        let dhs: Matrix
        if let embedding {
            dhs = Ops.matmulWeight(dlogits, embedding.value)
            Ops.add(embedding.gradientSink, Ops.matmulTransposedA(dlogits, hs))
        } else {
            dhs = Ops.linearBackwardInput(dlogits, model.decoder.output.weight)
        }
        let dh = Matrix(rows: x.rows, cols: d)
        for (r, p) in scoredRows.enumerated() { Ops.copyRows(dhs, r..<r + 1, into: dh, at: p) }
        var dx = norm.rmsBackward(dh, x: x)
        for (i, layer) in layers.enumerated().reversed() {
            let s = recompute ? layer.forward(inputs[i], positions: positions, segments: segments, keep: keeping(i)).1 : saves[i]
            dx = layer.backward(dx, s, positions: positions, segments: segments, keep: keeping(i))
        }
        if let embedding {
            let sink = embedding.gradientSink
            for (e, example) in examples.enumerated() {
                for (i, id) in example.ids.enumerated() where id != c.imageTokenIndex {
                    let row = segments[e].start + i
                    for j in 0..<d { sink[id, j] += dx[row, j] * scale }
                }
            }
        }
        if trainsVision, let beforePost, let projectorSave, !imageRows.isEmpty {
            // Each feature row's gradient: the sum over the decoder rows that read it.
            let df = Matrix(rows: images.count * n, cols: d)
            for (row, f) in zip(imageRows, featureRows) { Ops.addRows(dx, row..<row + 1, into: df, at: f) }
            guard let dpost = projector.backward(df, projectorSave, needInput: trainsVisionTower) else { return results }
            var dv = postLayerNorm.layerBackward(dpost, x: beforePost)
            for (i, layer) in visionLayers.enumerated().reversed() {
                let s = recompute ? layer.forward(visionInputs[i], segments: imageSegments).1 : visionSaves[i]
                dv = layer.backward(dv, s, segments: imageSegments)
            }
            if let position {
                for i in images.indices { Ops.addRows(dv, i * n..<(i + 1) * n, into: position.gradientSink, at: 0) }
            }
            if let patchSave, !patch.parameters.isEmpty { _ = patch.backward(dv, patchSave, needInput: false) }
        }
        return results
    }
}
