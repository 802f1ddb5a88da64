import CPaliGemmaKernels

/// A read-only n-dimensional array in its stored dtype: a view into a `Storage` (usually a
/// memory-mapped checkpoint). Weights stay in this form; kernels read them as they are.
/// A tensor without storage ("meta") carries only its shape, for size calculations.
public struct Tensor: Sendable {
    public let shape: [Int]
    public let dtype: DType
    let storage: Storage?
    let offset: Int

    public init(storage: Storage?, offset: Int, shape: [Int], dtype: DType) {
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.dtype = dtype
    }

    /// A tensor with a shape and no data.
    public static func meta(shape: [Int], dtype: DType) -> Tensor {
        Tensor(storage: nil, offset: 0, shape: shape, dtype: dtype)
    }

    /// An owned float32 tensor holding `values`.
    public init(values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "values do not fill the shape")
        let s = values.withUnsafeBytes { Storage.copying($0) }
        self.init(storage: s, offset: 0, shape: shape, dtype: .float32)
    }

    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { count * dtype.size }
    public var hasData: Bool { storage != nil }

    /// Pointer to the first element (nil for meta tensors).
    public var pointer: UnsafeRawPointer? { storage.map { $0.base + offset } }

    /// All elements converted to Float32 (a copy; meant for small tensors and tests).
    public func floats() -> [Float] {
        guard let p = pointer else { return [] }
        guard let kt = dtype.kernelType else { return ints().map(Float.init) }  // int64, int32
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { pg_convert_to_f32(p, kt, $0.baseAddress, count) }
        return out
    }

    /// All elements as Int (for integer tensors; floats are truncated).
    public func ints() -> [Int] {
        guard let p = pointer else { return [] }
        switch dtype {
        case .int64: return (0..<count).map { Int(p.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        case .int32: return (0..<count).map { Int(p.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        case .uint8: return (0..<count).map { Int(p.load(fromByteOffset: $0, as: UInt8.self)) }
        default: return floats().map { Int($0) }
        }
    }

    /// Row `i` of a 2-D tensor, converted into `dst` (which must hold shape[1] floats).
    func copyRow(_ i: Int, to dst: UnsafeMutablePointer<Float>) {
        guard let p = pointer, let kt = dtype.kernelType, shape.count == 2 else { return }
        pg_convert_to_f32(p + i * shape[1] * dtype.size, kt, dst, shape[1])
    }
}
