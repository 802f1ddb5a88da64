import Foundation

/// Hands out a model's parameters by name, checking each against the shape the model expects,
/// and remembers which ones were taken so that loading can insist every tensor is used.
/// Without a checkpoint it hands out shape-only tensors, so a model can be built from a config
/// alone (to count parameters or list the expected tensors).
/// How weights are held in memory.
public enum Quantization: String, Sendable, CaseIterable {
    /// As stored in the checkpoint (float32, bfloat16 or float16).
    case none
    /// The decoder's matrices (and the output projection) quantized at load to int8 with one
    /// scale per output channel; the vision tower, norms and embedding lookup stay as stored.
    case int8
}

public final class WeightLoader {
    let checkpoint: Checkpoint?
    let metaDType: DType
    public let quantization: Quantization
    private(set) var used: Set<String> = []
    private var ignoredPrefixes: [String] = []
    /// (canonical name, shape) of every parameter the model asked for, in order.
    public private(set) var declared: [(name: String, shape: [Int])] = []

    public init(checkpoint: Checkpoint, quantization: Quantization = .none) {
        self.checkpoint = checkpoint
        metaDType = .float32
        self.quantization = quantization
    }

    /// Shape-only loading.
    public init(shapesOnly dtype: DType = .bfloat16) {
        checkpoint = nil
        metaDType = dtype
        quantization = .none
    }

    var root: Weights { Weights(loader: self, prefix: "") }

    /// A matrix (or any tensor) in its stored dtype.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        declared.append((name, shape))
        guard let checkpoint else { return .meta(shape: shape, dtype: metaDType) }
        let stored = checkpoint.storedName(name)
        guard let t = try checkpoint.tensor(canonical: name) else {
            throw PaliGemmaError.weights(tensor: stored, reason: "missing from the checkpoint (expected shape \(shape))")
        }
        guard t.shape == shape else {
            throw PaliGemmaError.weights(tensor: stored, reason: "has shape \(t.shape), expected \(shape)")
        }
        guard t.dtype.isFloat else {
            throw PaliGemmaError.weights(tensor: stored, reason: "has dtype \(t.dtype.rawValue); weights must be F32, BF16 or F16")
        }
        used.insert(name)
        return t
    }

    /// A small parameter (norm scale, bias) converted to float32.
    func vector(_ name: String, count: Int) throws -> [Float] {
        let t = try tensor(name, shape: [count])
        return t.hasData ? t.floats() : [Float](repeating: 0, count: count)
    }

    /// Declares tensors under `prefix` as known but unused (e.g. SigLIP's pooling head).
    func ignore(prefix: String) { ignoredPrefixes.append(prefix) }

    /// Throws if the checkpoint holds a tensor the model did not take.
    public func verifyAllUsed() throws {
        guard let checkpoint else { return }
        for name in checkpoint.tensorNames where !used.contains(name) {
            if ignoredPrefixes.contains(where: { name.hasPrefix($0) }) { continue }
            throw PaliGemmaError.weights(tensor: checkpoint.storedName(name),
                reason: "unexpected: the checkpoint has it but the model described by config.json has no such parameter")
        }
    }

    /// Number of scalar parameters declared.
    public var parameterCount: Int { declared.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

/// A position in the parameter tree: a loader plus a dotted name prefix.
struct Weights {
    let loader: WeightLoader
    let prefix: String

    func callAsFunction(_ child: String) -> Weights {
        Weights(loader: loader, prefix: prefix.isEmpty ? child : "\(prefix).\(child)")
    }

    func tensor(_ leaf: String, shape: [Int]) throws -> Tensor { try loader.tensor(name(leaf), shape: shape) }
    func vector(_ leaf: String, count: Int) throws -> [Float] { try loader.vector(name(leaf), count: count) }
    func name(_ leaf: String) -> String { prefix.isEmpty ? leaf : "\(prefix).\(leaf)" }
}
