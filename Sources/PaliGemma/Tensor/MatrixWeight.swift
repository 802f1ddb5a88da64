import CPaliGemmaKernels

/// A weight matrix W [rows, cols] (a linear layer's [out, in]) in the form the kernels multiply
/// with: as stored, int8 with row scales, or 4-bit groups.
public enum MatrixWeight: Sendable {
    /// In its stored float dtype (float32, bfloat16 or float16).
    case dense(Tensor)
    /// Symmetric int8 with one float scale per row: W[r, c] ≈ q[r, c] · scales[r].
    case int8(Tensor, scales: [Float])
    /// 4-bit, one float16 scale per group of 32 values of a row, in the kernels' PG_Q4 format
    /// (defined in pg_kernels.h): `packed` U8 [rows, cols / 2], `scales` F16 [rows, cols / 32].
    case int4(packed: Tensor, scales: Tensor)

    /// Values per scale group of `.int4`; its `cols` must be a multiple of it.
    public static let int4Group = Int(PG_Q4_GROUP)

    public var rows: Int {
        switch self {
        case .dense(let t), .int8(let t, _), .int4(let t, _): return t.shape[0]
        }
    }

    public var cols: Int {
        switch self {
        case .dense(let t), .int8(let t, _): return t.shape[1]
        case .int4(let packed, _): return packed.shape[1] * 2
        }
    }

    /// Number of weights (rows · cols).
    public var count: Int { rows * cols }

    /// Bytes a product with it reads: the weights and their scales.
    public var byteCount: Int {
        switch self {
        case .dense(let t): return t.byteCount
        case .int8(let t, let scales): return t.byteCount + scales.count * 4
        case .int4(let packed, let scales): return packed.byteCount + scales.byteCount
        }
    }

    /// All of W as float32 [rows · cols] (the dequantized values; for tests and small matrices).
    public func floats() -> [Float] {
        switch self {
        case .dense(let t): return t.floats()
        case .int8(let t, let scales):
            var v = t.floats()
            for r in 0..<rows { for c in 0..<cols { v[r * cols + c] *= scales[r] } }
            return v
        case .int4(let packed, let scales):
            guard let p = packed.pointer, let s = scales.pointer else { return [] }
            var out = [Float](repeating: 0, count: count)
            out.withUnsafeMutableBufferPointer {
                pg_dequantize_q4(p.assumingMemoryBound(to: UInt8.self), s.assumingMemoryBound(to: UInt16.self),
                                 rows, cols, $0.baseAddress)
            }
            return out
        }
    }
}
