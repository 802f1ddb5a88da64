import CPaliGemmaKernels
import Foundation

// Optimisers, gradient clipping and learning-rate schedules, with PyTorch's and transformers'
// semantics (torch.optim.SGD / AdamW, clip_grad_norm_, get_cosine_schedule_with_warmup).

/// How the learning rate moves over the run.
public enum LearningRateSchedule: Sendable, Equatable {
    /// The base rate after a linear warmup from 0 (transformers' constant-with-warmup).
    case constant(warmupSteps: Int)
    /// Linear warmup from 0, then half a cosine down to 0 at `totalSteps`
    /// (transformers' `get_cosine_schedule_with_warmup`, num_cycles 0.5).
    case cosine(warmupSteps: Int, totalSteps: Int)

    /// The factor on the base rate for update `step` (0-based).
    public func factor(step: Int) -> Double {
        switch self {
        case .constant(let w):
            return step < w ? Double(step) / Double(max(1, w)) : 1
        case .cosine(let w, let total):
            if step < w { return Double(step) / Double(max(1, w)) }
            let progress = Double(step - w) / Double(max(1, total - w))
            return max(0, 0.5 * (1 + cos(Double.pi * progress)))
        }
    }
}

/// Global-norm clipping as `torch.nn.utils.clip_grad_norm_`: returns the norm before clipping,
/// and scales every gradient by min(1, maxNorm / (norm + 1e-6)) when maxNorm > 0.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    let grads: [UnsafePointer<Float>?] = parameters.map { UnsafePointer($0.grad.data) }
    let counts = parameters.map(\.grad.count)
    let norm = Float(pg_sum_squares(grads, counts, parameters.count).squareRoot())
    if maxNorm > 0 {
        let coefficient = min(1, maxNorm / (norm + 1e-6))
        if coefficient < 1 { for p in parameters { Ops.scale(p.grad, by: coefficient) } }
    }
    return norm
}

/// An optimiser over a fixed list of parameters; `step(lr:)` applies one update from their
/// gradients.
public protocol Optimizer: AnyObject {
    func step(lr: Float)
}

/// Plain SGD: p -= lr · g (torch.optim.SGD without momentum or weight decay).
public final class SGD: Optimizer {
    let parameters: [Parameter]
    public init(_ parameters: [Parameter]) { self.parameters = parameters }
    public func step(lr: Float) {
        for p in parameters {
            for i in 0..<p.count { p.value.data[i] -= lr * p.grad.data[i] }
        }
    }
}

/// AdamW with decoupled weight decay (torch.optim.AdamW): p ·= 1 - lr·wd; m = β1 m + (1-β1) g;
/// v = β2 v + (1-β2) g²; p -= lr / (1-β1ᵗ) · m / (√v / √(1-β2ᵗ) + ε), over every tensor at once
/// (`pg_adamw`: bound by memory, so spread over the threads).
public final class AdamW: Optimizer {
    let parameters: [Parameter]
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    /// First and second moments, per parameter.
    public private(set) var m: [Matrix], v: [Matrix]
    /// Updates taken so far.
    public internal(set) var t = 0

    public init(_ parameters: [Parameter], beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01) {
        self.parameters = parameters
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = parameters.map { Matrix(rows: $0.value.rows, cols: $0.value.cols) }
        v = parameters.map { Matrix(rows: $0.value.rows, cols: $0.value.cols) }
    }

    public func step(lr: Float) {
        t += 1
        let bc1 = 1 - pow(Double(beta1), Double(t)), bc2sqrt = (1 - pow(Double(beta2), Double(t))).squareRoot()
        let constants = pg_adamw_step(decay: Float(1 - Double(lr) * Double(weightDecay)), beta1: beta1, beta2: beta2,
                                      step_size: Float(Double(lr) / bc1), bias_correction2_sqrt: Float(bc2sqrt), eps: eps)
        let values: [UnsafeMutablePointer<Float>?] = parameters.map(\.value.data)
        let grads: [UnsafePointer<Float>?] = parameters.map { UnsafePointer($0.grad.data) }
        let firsts: [UnsafeMutablePointer<Float>?] = m.map(\.data), seconds: [UnsafeMutablePointer<Float>?] = v.map(\.data)
        pg_adamw(values, grads, firsts, seconds, parameters.map(\.count), parameters.count, constants)
    }
}
