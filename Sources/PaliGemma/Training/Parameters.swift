import Foundation

// What training changes: float32 parameters with their gradients, and the linear layer that
// training runs (a frozen base in its stored dtype, with a trained float32 copy or a LoRA
// adapter beside it).
//
// Shape letters: T tokens, I in features, O out features, R LoRA rank.

/// A trained tensor: float32 values and a gradient of the same shape, named as in the
/// checkpoint (hub spelling) or, for LoRA, as in PEFT's adapter file without its
/// `base_model.model.` prefix.
public final class Parameter: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    public let value: Matrix
    public let grad: Matrix

    public init(name: String, shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *))
        self.name = name
        self.shape = shape
        let (rows, cols) = shape.count == 2 ? (shape[0], shape[1]) : (1, values.count)
        value = Matrix(rows: rows, cols: cols, values: values)
        grad = Matrix(rows: rows, cols: cols)
    }

    /// Gradient buffers of parallel workers 1, 2, … (worker 0 adds into `grad`); `Trainer` sums
    /// them into `grad` after a step's examples.
    var workerGrads: [Matrix] = []

    /// Where backward passes add this tensor's gradient: the calling worker's buffer.
    var gradientSink: Matrix {
        let w = TrainingWorker.current
        return w == 0 ? grad : workerGrads[w - 1]
    }

    /// Gives `count` workers their own gradient buffers (zero), or none for one worker.
    func prepareWorkers(_ count: Int) {
        guard workerGrads.count != count - 1 else { return }
        workerGrads = (1..<max(count, 1)).map { _ in Matrix(rows: grad.rows, cols: grad.cols) }
    }

    /// Adds every worker's gradient into `grad`, in worker order, and zeroes them.
    func reduceWorkers() {
        for g in workerGrads {
            Ops.add(grad, g)
            g.data.update(repeating: 0, count: g.count)
        }
    }

    public var count: Int { value.count }
    public func zeroGrad() {
        grad.data.update(repeating: 0, count: grad.count)
        for g in workerGrads { g.data.update(repeating: 0, count: g.count) }
    }
    /// The values as a vector (norm weights, biases).
    var vector: [Float] { value.values }
}

/// LoRA's settings, with PEFT's meaning: y = W x + s · B (A x), s = alpha / r (alpha / √r with
/// rsLoRA); A [R, I] kaiming-uniform, B [O, R] zero.
public struct LoRAConfig: Sendable, Equatable {
    public var rank: Int
    public var alpha: Float
    public var rslora: Bool
    /// Module names matched by their last component, as PEFT's `target_modules` list.
    public var targets: [String]

    public static let defaultTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    public init(rank: Int = 8, alpha: Float = 16, rslora: Bool = false, targets: [String] = LoRAConfig.defaultTargets) {
        self.rank = rank
        self.alpha = alpha
        self.rslora = rslora
        self.targets = targets
    }

    public var scale: Float { rslora ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
    /// Dropout on the adapter's input while training (PEFT's lora_dropout): each value of x is
    /// zeroed with this probability and the rest scaled by 1 / (1 - p).
    public var dropout: Float = 0

    /// Whether the module at `path` (e.g. `language_model.model.layers.0.self_attn.q_proj`) gets an
    /// adapter: PEFT's rule, the path equals a target or ends with "." + target.
    public func matches(_ path: String) -> Bool {
        targets.contains { path == $0 || path.hasSuffix("." + $0) }
    }
}

/// What a training run changes.
public enum TrainingMethod: Sendable, Equatable {
    /// Adapters on the matched modules; the base stays as stored.
    case lora(LoRAConfig)
    /// The decoder's attention matrices (q, k, v, o) in float32 copies (big_vision's recipe).
    case attention
    /// Every parameter, in float32 copies (small models).
    case full
}

/// Where LoRA dropout draws its masks: a seed per example (set by whoever runs it), mixed with
/// each layer's index, so a mask can be drawn again (recomputation, resumed runs).
final class DropoutState: @unchecked Sendable {
    /// Per worker (`TrainingWorker.current`), each touching only its own slot.
    private let seeds = UnsafeMutableBufferPointer<UInt64?>.allocate(capacity: TrainingWorker.limit)

    init() { seeds.initialize(repeating: nil) }
    deinit { seeds.deallocate() }

    /// The calling worker's seed; nil: no dropout (evaluation).
    var seed: UInt64? {
        get { seeds[TrainingWorker.current] }
        set { seeds[TrainingWorker.current] = newValue }
    }
}

/// Which parallel training worker the calling thread is (0 outside `run`): a thread-specific
/// value, so that backward passes deep in the layers add into that worker's gradient buffers.
enum TrainingWorker {
    /// Most workers at once.
    static let limit = 64
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    static var current: Int { Int(bitPattern: pthread_getspecific(key)) }

    /// Runs `body` as worker `index` with its kernels on this thread alone.
    static func run<T>(_ index: Int, _ body: () throws -> T) rethrows -> T {
        precondition(index >= 0 && index < limit, "training worker \(index) out of 0..<\(limit)")
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: index))
        defer { pthread_setspecific(key, nil) }
        return try Kernels.withSerialThread(body)
    }
}

/// A linear layer as training runs it: y = x · Wᵀ + b with W the frozen base (as stored) or its
/// trained float32 copy, plus s · (x · Aᵀ) · Bᵀ with a LoRA adapter. An adapter the loaded model
/// already applies (`PaliGemmaModel(adapter:)`) is part of the frozen base (and merged into a
/// trained copy of W).
final class TrainLinear {
    let path: String
    let base: Linear
    let weight: Parameter?  // trained copy of W [O, I]
    let bias: Parameter?  // trained copy of b [O]
    let loraA: Parameter?  // [R, I]
    let loraB: Parameter?  // [O, R]
    let loraScale: Float
    let dropout: Float
    let dropoutState: DropoutState?
    let index: UInt64

    /// What backward needs from one forward call.
    struct Saved {
        /// The input, kept only where backward reads it (a trained weight or an adapter); empty
        /// where it is not needed or where the layer recomputes it (`droppingInput`).
        var x: Matrix
        let h: Matrix?  // x' · Aᵀ, x' = x (with dropout: x ⊙ keep)
        var keep: Matrix? = nil  // dropout's mask: 0 or 1 / (1 - p)

        /// Without the input: the layer holding it recomputes it for backward (`restoring`),
        /// which keeps a cheap product (a norm, an activation) out of the saved activations.
        func droppingInput() -> Saved { restoring(Matrix(rows: 0, cols: 0)) }
        /// With the input the layer recomputed.
        func restoring(_ input: Matrix) -> Saved {
            var s = self
            s.x = input
            return s
        }
    }

    /// Whether backward reads the forward input: for dW or for the adapter's gradients.
    var needsInput: Bool { weight != nil || loraA != nil }

    init(path: String, base: Linear, trainWeights: Bool, lora: LoRAConfig?, rng: inout Xoshiro256,
         dropoutState: DropoutState? = nil, index: Int = 0) {
        self.path = path
        self.base = base
        dropout = lora?.dropout ?? 0
        self.dropoutState = dropoutState
        self.index = UInt64(index)
        let (o, i) = (base.weight.rows, base.weight.cols)
        weight = trainWeights ? Parameter(name: path + ".weight", shape: [o, i], values: base.mergedFloats()) : nil
        bias = trainWeights ? base.bias.map { Parameter(name: path + ".bias", shape: [o], values: $0) } : nil
        if let lora {
            // kaiming_uniform_(a=√5) as PEFT (nn.Linear's default): bound 1/√I.
            let bound = 1 / Float(i).squareRoot()
            let a = (0..<lora.rank * i).map { _ in Float(rng.nextDouble() * 2 - 1) * bound }
            loraA = Parameter(name: path + ".lora_A.weight", shape: [lora.rank, i], values: a)
            loraB = Parameter(name: path + ".lora_B.weight", shape: [o, lora.rank], values: [Float](repeating: 0, count: o * lora.rank))
            loraScale = lora.scale
        } else {
            loraA = nil
            loraB = nil
            loraScale = 0
        }
    }

    var parameters: [Parameter] { [weight, bias, loraA, loraB].compactMap { $0 } }

    func forward(_ x: Matrix) -> (Matrix, Saved) {
        var y: Matrix
        if let weight {
            y = Ops.matmulTransposed(x, weight.value)
            if let b = bias?.value ?? base.bias.map({ Matrix(rows: 1, cols: $0.count, values: $0) }) {
                for r in 0..<y.rows { for c in 0..<y.cols { y[r, c] += b.data[c] } }
            }
        } else {
            y = base(x)
        }
        var h: Matrix?, keep: Matrix?
        if let loraA, let loraB {
            var xl = x
            if dropout > 0, let seed = dropoutState?.seed {
                // A mask drawn from (example seed, layer index): the same on every draw.
                var rng = Xoshiro256(seed: seed ^ (index &* 0x9E37_79B9_7F4A_7C15))
                let k = Matrix(rows: x.rows, cols: x.cols)
                let scale = 1 / (1 - dropout)
                for i in 0..<k.count { k.data[i] = rng.nextDouble() < Double(dropout) ? 0 : scale }
                xl = Matrix(rows: x.rows, cols: x.cols)
                for i in 0..<x.count { xl.data[i] = x.data[i] * k.data[i] }
                keep = k
            }
            let hx = Ops.matmulTransposed(xl, loraA.value)  // [T, R]
            Ops.addScaled(y, Ops.matmulTransposed(hx, loraB.value), loraScale)
            h = hx
        }
        return (y, Saved(x: needsInput ? x : Matrix(rows: 0, cols: 0), h: h, keep: keep))
    }

    /// The input gradient of several projections of one input (attention's q, k and v): the sum
    /// of their dx, each adding its parameters' gradients; `input` restores the input they dropped.
    static func backward(_ parts: [(TrainLinear, dy: Matrix, Saved)], input: Matrix) -> Matrix {
        var sum: Matrix?
        for (layer, dy, saved) in parts {
            guard let d = layer.backward(dy, saved.restoring(input)) else { continue }
            if let sum { Ops.add(sum, d) } else { sum = d }
        }
        return sum ?? Matrix(rows: 0, cols: 0)
    }

    /// dy [T, O] -> dx [T, I]; adds the parameters' gradients.
    func backward(_ dy: Matrix, _ saved: Saved, needInput: Bool = true) -> Matrix? {
        if let weight { Ops.add(weight.gradientSink, Ops.matmulTransposedA(dy, saved.x)) }
        if let bias { Ops.addColumnSums(dy, into: bias.gradientSink.data) }
        var dx: Matrix?
        if needInput { dx = weight.map { Ops.matmulWeight(dy, $0.value) } ?? base.backwardInput(dy) }
        if let loraA, let loraB, let h = saved.h {
            // dy [T, O] is the wide operand of both products here, and each streams it once:
            // dB = s · dyᵀ h formed as (hᵀ dy)ᵀ (dy read as the k-major side, where dyᵀ h packed a
            // transposed copy of all of dy), and dh = dy · B [T, R] as (Bᵀ dyᵀ)ᵀ (dy's rows read
            // against B's R columns, where dy · B packed dy for an R-column product), in float32.
            Ops.addScaled(loraB.gradientSink, Ops.transpose(Ops.matmulTransposedA(h, dy)), loraScale)
            let dh = Ops.transpose(Kernels.withPrecision(.exact) { Ops.matmulTransposed(Ops.transpose(loraB.value), dy) })
            Ops.scale(dh, by: loraScale)
            if let keep = saved.keep {
                let xl = Matrix(rows: saved.x.rows, cols: saved.x.cols)
                for i in 0..<xl.count { xl.data[i] = saved.x.data[i] * keep.data[i] }
                Ops.add(loraA.gradientSink, Ops.matmulTransposedA(dh, xl))  // dA = dhᵀ x'
                if let dx {
                    let d = Ops.matmul(dh, loraA.value)
                    for i in 0..<d.count { dx.data[i] += d.data[i] * keep.data[i] }
                }
            } else {
                Ops.add(loraA.gradientSink, Ops.matmulTransposedA(dh, saved.x))  // dA = dhᵀ x
                if let dx { Ops.add(dx, Ops.matmul(dh, loraA.value)) }
            }
        }
        return dx
    }
}

/// A norm's weight (and bias) as training uses them: frozen values, or trained parameters.
struct TrainNorm {
    let weight: [Float]
    let bias: [Float]?
    let eps: Float
    let weightParameter: Parameter?
    let biasParameter: Parameter?

    init(path: String, weight: [Float], bias: [Float]?, eps: Float, trained: Bool) {
        self.weight = weight
        self.bias = bias
        self.eps = eps
        weightParameter = trained ? Parameter(name: path + ".weight", shape: [weight.count], values: weight) : nil
        biasParameter = trained ? bias.map { Parameter(name: path + ".bias", shape: [$0.count], values: $0) } : nil
    }

    var parameters: [Parameter] { [weightParameter, biasParameter].compactMap { $0 } }
    var currentWeight: [Float] { weightParameter?.vector ?? weight }
    var currentBias: [Float] { biasParameter?.vector ?? bias ?? [] }

    func rms(_ x: Matrix) -> Matrix {
        let y = Matrix(rows: x.rows, cols: x.cols)
        Ops.rmsNorm(x, weight: currentWeight, eps: eps, into: y)
        return y
    }

    func rmsBackward(_ dy: Matrix, x: Matrix) -> Matrix {
        Ops.rmsNormBackward(dy, x: x, weight: currentWeight, eps: eps, dw: weightParameter?.gradientSink.data)
    }

    func layer(_ x: Matrix) -> Matrix {
        let y = Matrix(rows: x.rows, cols: x.cols)
        Ops.layerNorm(x, weight: currentWeight, bias: currentBias, eps: eps, into: y)
        return y
    }

    func layerBackward(_ dy: Matrix, x: Matrix) -> Matrix {
        Ops.layerNormBackward(dy, x: x, weight: currentWeight, eps: eps, dw: weightParameter?.gradientSink.data,
                              db: biasParameter?.gradientSink.data)
    }
}
