import CPaliGemmaKernels

/// Element types of checkpoint tensors. Model weights may be float32, bfloat16 or float16, and
/// int8 for the matrices an int8 folder stores (`QuantizedCheckpoint`); the other integer types
/// appear only in auxiliary files (token ids in fixtures and dumps) and, for uint8, as packed
/// 4-bit weights (in memory, or stored by `QuantizedCheckpoint`).
public enum DType: String, Sendable, CaseIterable {
    case float32 = "F32"
    case bfloat16 = "BF16"
    case float16 = "F16"
    case int64 = "I64"
    case int32 = "I32"
    /// Symmetric int8 with a float scale per row; made by quantizing at load (`Quantization.int8`)
    /// or stored with its scales by `QuantizedCheckpoint`.
    case int8 = "I8"
    /// Bytes: the packed values of 4-bit weights (`MatrixWeight.int4`), two to a byte.
    case uint8 = "U8"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32, .int32: return 4
        case .bfloat16, .float16: return 2
        case .int64: return 8
        case .int8, .uint8: return 1
        }
    }

    /// Whether checkpoint weights may use this type.
    public var isFloat: Bool { self == .float32 || self == .bfloat16 || self == .float16 }

    /// The kernels' name for this type (nil for integers).
    var kernelType: Int32? {
        switch self {
        case .float32: return Int32(PG_F32.rawValue)
        case .bfloat16: return Int32(PG_BF16.rawValue)
        case .float16: return Int32(PG_F16.rawValue)
        case .int8: return Int32(PG_I8.rawValue)
        case .int64, .int32, .uint8: return nil
        }
    }

    /// `x` rounded to this type and back to Float (identity for float32).
    public func round(_ x: Float) -> Float {
        switch self {
        case .bfloat16: return pg_bf16_round(x)
        case .float16: return pg_f16_round(x)
        default: return x
        }
    }
}

extension Ops {
    /// count values of `dtype` (a float type) at src, as float32 into dst.
    public static func convertToFloat(_ src: UnsafeRawPointer, _ dtype: DType, into dst: UnsafeMutablePointer<Float>, count: Int) {
        guard let kt = dtype.kernelType else { return }
        pg_convert_to_f32(src, kt, dst, count)
    }

    /// count float32 values at src, rounded to `dtype` (a float type) into dst.
    public static func convertFromFloat(_ src: UnsafePointer<Float>, to dtype: DType, into dst: UnsafeMutableRawPointer, count: Int) {
        guard let kt = dtype.kernelType else { return }
        pg_convert_from_f32(src, kt, dst, count)
    }
}
