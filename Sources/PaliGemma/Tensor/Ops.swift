import CPaliGemmaKernels
import Foundation

/// Instruction-set levels of the kernels.
public enum ISA: Int, Sendable, CaseIterable, Comparable {
    case scalar = 0, avx2 = 1, avx512 = 2
    public static func < (a: ISA, b: ISA) -> Bool { a.rawValue < b.rawValue }
    public var name: String { String(cString: pg_isa_name(Int32(rawValue))) }
}

/// Precision of the prefill products (vision tower, prompt prefill, training forward).
/// `exact`: float32 products of the weights as stored, what the parity tests check. `fast`: x and
/// the weights rounded to bfloat16 inside the product, sums in float32 (as PyTorch's bf16 matmuls),
/// on AMX or AVX512-BF16 where the CPU has them; elsewhere `fast` computes as `exact`.
public enum Precision: String, Sendable, CaseIterable {
    case exact, fast
    var kernelValue: Int32 { self == .fast ? Int32(PG_PRECISION_FAST.rawValue) : Int32(PG_PRECISION_EXACT.rawValue) }
    init(kernelValue: Int32) { self = kernelValue == Int32(PG_PRECISION_FAST.rawValue) ? .fast : .exact }
}

/// Kernels for `Precision.fast` products.
public enum FastKernel: Int, Sendable, CaseIterable {
    case none = 0, avx512BF16 = 1, amx = 2
    public var name: String { String(cString: pg_fast_kernel_name(Int32(rawValue))) }
    /// Whether this CPU (and, for AMX, the operating system) offers it.
    public var isSupported: Bool { pg_fast_kernel_supported(Int32(rawValue)) != 0 }
}

/// Process-wide kernel settings: instruction set and thread count.
public enum Kernels {
    /// The best level this CPU supports.
    public static var supported: ISA { ISA(rawValue: Int(pg_isa_supported())) ?? .scalar }
    /// The level in use (PALIGEMMA_ISA may lower it).
    public static var isa: ISA { ISA(rawValue: Int(pg_isa())) ?? .scalar }
    /// Selects a level (clamped to what the CPU supports); returns the level now in use.
    @discardableResult public static func setISA(_ level: ISA) -> ISA {
        ISA(rawValue: Int(pg_set_isa(Int32(level.rawValue)))) ?? .scalar
    }
    /// Runs `body` with the kernels called from this thread at `level` (clamped to what the CPU
    /// supports), leaving other threads and the process-wide level alone. For tests that run a
    /// whole model at each level while other work goes on.
    public static func withISA<T>(_ level: ISA, _ body: () throws -> T) rethrows -> T {
        pg_set_thread_isa(Int32(level.rawValue))
        defer { pg_set_thread_isa(-1) }
        return try body()
    }
    /// Runs `body` with every kernel it calls on this thread alone (its own scratch memory, no
    /// pool): for workers that each take whole small problems at once.
    public static func withSerialThread<T>(_ body: () throws -> T) rethrows -> T {
        let old = pg_set_thread_serial(1)
        defer { pg_set_thread_serial(old) }
        return try body()
    }
    /// The precision of prefill products (and of decode steps, one sequence or up to 8, where the
    /// CPU has AVX512-BF16) on this thread (its override, else the process-wide one:
    /// `exact` unless PALIGEMMA_PRECISION=fast). Setting it sets the process-wide precision.
    public static var precision: Precision {
        get { Precision(kernelValue: pg_precision()) }
        set { pg_set_precision(newValue.kernelValue) }
    }
    /// Sets the process's precision as the inference front ends (the command line, the server
    /// benchmark) choose it: `option`, else PALIGEMMA_PRECISION (which the kernels read
    /// themselves), else fast wherever a fast kernel exists (AMX, or AVX512-BF16 without AMX),
    /// else exact; the library's own default stays exact. Where both exist AMX is the one used: on
    /// the Xeon measured `vdpbf16ps` ran at half the float32 FMA rate, while on AMD Zen 4 (no AMX)
    /// it runs at twice it (467 against 234 GFLOP/s, docs/BENCHMARKS.md).
    public static func useFrontEndPrecision(_ option: Precision?) {
        if let option {
            precision = option
        } else if ProcessInfo.processInfo.environment["PALIGEMMA_PRECISION"] == nil {
            precision = fastKernelInUse == .none ? .exact : .fast
        }
    }
    /// Runs `body` with the kernels called from this thread at `precision`.
    public static func withPrecision<T>(_ precision: Precision, _ body: () throws -> T) rethrows -> T {
        pg_set_thread_precision(precision.kernelValue)
        defer { pg_set_thread_precision(-1) }
        return try body()
    }
    /// The kernel `fast` products use on this machine (`.none`: `fast` computes as `exact`).
    public static var fastKernel: FastKernel { FastKernel(rawValue: Int(pg_fast_kernel())) ?? .none }
    /// Selects the kernel for `fast` products if supported; returns the one in use.
    @discardableResult public static func setFastKernel(_ kernel: FastKernel) -> FastKernel {
        FastKernel(rawValue: Int(pg_set_fast_kernel(Int32(kernel.rawValue)))) ?? .none
    }
    /// The kernel `fast` products actually run on from this thread: none below the AVX-512 level,
    /// and within the thread's extensions (`withFeatures`).
    public static var fastKernelInUse: FastKernel { FastKernel(rawValue: Int(pg_fast_kernel_at(pg_isa()))) ?? .none }
    /// The kernel this thread's products run on at its precision: `fastKernelInUse` with fast,
    /// none with exact.
    public static var fastKernelOfProducts: FastKernel { precision == .fast ? fastKernelInUse : .none }
    /// Extensions this CPU has beyond its ISA level, by name (avx512-bf16, avx512-vnni, avx-vnni, amx-bf16).
    public static var features: [String] {
        let f = Int(pg_cpu_features())
        return featureBits.filter { f & $0.0 != 0 }.map(\.1)
    }
    /// Runs `body` with the kernels called from this thread limited to the named extensions
    /// (`features`' names) of those the CPU has: for tests that compare a VNNI or AMX kernel with
    /// the one it replaces.
    public static func withFeatures<T>(_ names: Set<String>, _ body: () throws -> T) rethrows -> T {
        let mask = featureBits.filter { names.contains($0.1) }.reduce(0) { $0 | $1.0 }
        let old = pg_set_thread_features(Int32(mask))
        defer { pg_set_thread_features(old) }
        return try body()
    }
    private static let featureBits = [(Int(PG_FEAT_AVX512_BF16.rawValue), "avx512-bf16"), (Int(PG_FEAT_AVX512_VNNI.rawValue), "avx512-vnni"),
                                      (Int(PG_FEAT_AVX_VNNI.rawValue), "avx-vnni"), (Int(PG_FEAT_AMX_BF16.rawValue), "amx-bf16")]
    /// Asks the C library to keep freed memory for reuse (glibc: blocks up to 64 MiB from the
    /// heap, up to 1 GiB of free heap kept) instead of returning it to the system, where each
    /// layer's activations would be faulted in and zeroed again (the prefill and a training step
    /// run 6–9% faster; peak RSS is unchanged, but resident memory stays near its high mark).
    /// Process-wide: the command line calls it at start for commands that run to an end (not
    /// `serve`); an application embedding the library may too. Skipped where GLIBC_TUNABLES
    /// sets malloc tunables and where the allocator is not glibc's (a sanitizer's, another C
    /// library's). Returns whether it applied.
    @discardableResult
    public static func keepFreedMemory() -> Bool { pg_keep_freed_memory() == 1 }
    /// Threads used by parallel kernels (PALIGEMMA_THREADS, or the number of CPUs).
    public static var threads: Int {
        get { Int(pg_threads()) }
        set { pg_set_threads(Int32(newValue)) }
    }
}

/// Float32 ops on `Matrix` activations, each a thin call into the C kernels.
public enum Ops {
    /// y = (x · wᵀ) · scales + bias, with w [N, K] in its stored dtype, x [M, K], y [M, N];
    /// `scales` (per row of w) only for int8 weights.
    public static func linear(_ x: Matrix, _ w: Tensor, bias: [Float]?, scales: [Float]? = nil, into y: Matrix) {
        precondition(w.shape.count == 2 && w.shape[1] == x.cols && y.cols == w.shape[0] && y.rows == x.rows,
                     "linear: shapes x \(x.rows)x\(x.cols), w \(w.shape), y \(y.rows)x\(y.cols)")
        guard let wp = w.pointer, let kt = w.dtype.kernelType else { return }
        let (m, n, k) = (x.rows, w.shape[0], w.shape[1])
        withOptionalPointer(bias) { b in
            withOptionalPointer(scales) { s in
                pg_linear_scaled(x.data, k, wp, kt, k, s, b, y.data, n, m, n, k)
            }
        }
    }

    public static func linear(_ x: Matrix, _ w: Tensor, bias: [Float]?, scales: [Float]? = nil) -> Matrix {
        let y = Matrix(rows: x.rows, cols: w.shape[0])
        linear(x, w, bias: bias, scales: scales, into: y)
        return y
    }

    /// y = x · Wᵀ + bias for a weight matrix in any of its forms, x [M, cols], y [M, rows].
    public static func linear(_ x: Matrix, _ w: MatrixWeight, bias: [Float]?, into y: Matrix) {
        switch w {
        case .dense(let t): linear(x, t, bias: bias, into: y)
        case .int8(let t, let scales): linear(x, t, bias: bias, scales: scales, into: y)
        case .int4(let packed, let scales):
            precondition(w.cols == x.cols && y.cols == w.rows && y.rows == x.rows,
                         "linear: shapes x \(x.rows)x\(x.cols), w [\(w.rows), \(w.cols)], y \(y.rows)x\(y.cols)")
            guard let p = packed.pointer, let s = scales.pointer else { return }
            withOptionalPointer(bias) { b in
                pg_linear_q4(x.data, x.cols, p.assumingMemoryBound(to: UInt8.self), s.assumingMemoryBound(to: UInt16.self),
                             b, y.data, y.cols, x.rows, w.rows, w.cols)
            }
        }
    }

    public static func linear(_ x: Matrix, _ w: MatrixWeight, bias: [Float]?) -> Matrix {
        let y = Matrix(rows: x.rows, cols: w.rows)
        linear(x, w, bias: bias, into: y)
        return y
    }

    /// A matrix quantized to int8 rows (`bits` 8, `MatrixWeight.int8`) or 4-bit groups (`bits` 4,
    /// `MatrixWeight.int4`, whose column count must be a multiple of `MatrixWeight.int4Group`).
    public static func quantize(_ w: Tensor, bits: Int) -> MatrixWeight {
        precondition(bits == 8 || bits == 4)
        if bits == 4 { return quantizeInt4(w) }
        let (q, scales) = quantizeInt8(w)
        return .int8(q, scales: scales)
    }

    /// A matrix quantized to 4-bit groups (`MatrixWeight.int4`); its column count must be a
    /// multiple of `MatrixWeight.int4Group`.
    public static func quantizeInt4(_ w: Tensor) -> MatrixWeight {
        precondition(w.shape.count == 2 && w.shape[1] % MatrixWeight.int4Group == 0)
        let (rows, cols) = (w.shape[0], w.shape[1])
        let packed = Storage.allocate(byteCount: rows * cols / 2)
        let scales = Storage.allocate(byteCount: rows * (cols / MatrixWeight.int4Group) * 2)
        if let p = w.pointer, let kt = w.dtype.kernelType {
            pg_quantize_q4(p, kt, rows, cols,
                           UnsafeMutableRawPointer(mutating: packed.base).assumingMemoryBound(to: UInt8.self),
                           UnsafeMutableRawPointer(mutating: scales.base).assumingMemoryBound(to: UInt16.self))
        }
        return .int4(packed: Tensor(storage: packed, offset: 0, shape: [rows, cols / 2], dtype: .uint8),
                     scales: Tensor(storage: scales, offset: 0, shape: [rows, cols / MatrixWeight.int4Group], dtype: .float16))
    }

    /// A matrix quantized to int8 per row: the int8 tensor and the row scales.
    public static func quantizeInt8(_ w: Tensor) -> (Tensor, [Float]) {
        precondition(w.shape.count == 2)
        let (rows, cols) = (w.shape[0], w.shape[1])
        let storage = Storage.allocate(byteCount: rows * cols)
        var scales = [Float](repeating: 1, count: rows)
        if let p = w.pointer, let kt = w.dtype.kernelType {
            scales.withUnsafeMutableBufferPointer { s in
                pg_quantize_q8(p, kt, rows, cols, UnsafeMutableRawPointer(mutating: storage.base).assumingMemoryBound(to: Int8.self), s.baseAddress)
            }
        }
        return (Tensor(storage: storage, offset: 0, shape: w.shape, dtype: .int8), scales)
    }

    /// Drops a mapped tensor's pages from the resident set (after it was copied elsewhere).
    public static func releasePages(_ t: Tensor) {
        t.storage?.releasePages(offset: t.offset, count: t.byteCount)
    }

    private static func withOptionalPointer<R>(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let a else { return body(nil) }
        return a.withUnsafeBufferPointer { body($0.baseAddress) }
    }

    /// Row-wise LayerNorm into `y` (may be `x`).
    public static func layerNorm(_ x: Matrix, weight: [Float], bias: [Float], eps: Float, into y: Matrix) {
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                pg_layer_norm(x.data, x.cols, y.data, y.cols, x.rows, x.cols, w.baseAddress, b.baseAddress, eps)
            }
        }
    }

    /// Row-wise Gemma RMSNorm, x * rsqrt(mean(x²) + eps) * (1 + w), into `y` (may be `x`).
    public static func rmsNorm(_ x: Matrix, weight: [Float], eps: Float, into y: Matrix) {
        weight.withUnsafeBufferPointer { w in
            pg_rms_norm(x.data, x.cols, y.data, y.cols, x.rows, x.cols, w.baseAddress, eps)
        }
    }

    public static func geluTanh(_ x: Matrix) { pg_gelu_tanh(x.data, x.count) }

    /// a = act(a) * b, elementwise (GeGLU).
    public static func geglu(_ a: Matrix, _ b: Matrix, exact: Bool) {
        precondition(a.count == b.count)
        pg_geglu(a.data, b.data, a.count, exact ? 1 : 0)
    }

    public static func gelu(_ x: Matrix, exact: Bool) {
        if exact { pg_gelu_erf(x.data, x.count) } else { pg_gelu_tanh(x.data, x.count) }
    }

    /// x = tanh(x / cap) * cap.
    public static func softcap(_ x: Matrix, cap: Float) { pg_softcap(x.data, x.count, cap) }

    /// y += x.
    public static func add(_ y: Matrix, _ x: Matrix) {
        precondition(y.count == x.count)
        pg_add(y.data, x.data, y.count)
    }

    /// dst[dstRow + i] += src[srcRows.lowerBound + i].
    public static func addRows(_ src: Matrix, _ srcRows: Range<Int>, into dst: Matrix, at dstRow: Int) {
        precondition(src.cols == dst.cols && srcRows.upperBound <= src.rows && dstRow + srcRows.count <= dst.rows)
        pg_add(dst.row(dstRow), src.row(srcRows.lowerBound), srcRows.count * src.cols)
    }

    public static func scale(_ x: Matrix, by s: Float) { pg_scale(x.data, x.count, s) }

    public static func softmax(_ x: Matrix) { pg_softmax(x.data, x.cols, x.rows, x.cols) }

    /// Rotary embedding (half-split layout) on `heads` vectors of `dim` per row of x.
    public static func rope(_ x: Matrix, heads: Int, dim: Int, positions: [Float], invFreq: [Float]) {
        precondition(positions.count == x.rows && heads * dim == x.cols && invFreq.count == dim / 2)
        positions.withUnsafeBufferPointer { p in
            invFreq.withUnsafeBufferPointer { f in
                pg_rope(x.data, x.cols, x.rows, Int32(heads), Int32(dim), p.baseAddress, f.baseAddress)
            }
        }
    }
}

extension Kernels {
    /// Memory read bandwidth of this machine with the kernels' threads, in GB/s (best of `reps`
    /// passes over `bytes`, which should be far larger than the last-level cache).
    public static func measureReadBandwidth(bytes: Int = 1 << 30, reps: Int = 3) -> Double {
        pg_measure_read_gbs(bytes, Int32(reps))
    }
    /// float32 FMA peak of the kernels' threads at the ISA level in use, in GFLOP/s (0 on the
    /// scalar level); `rounds` of 12 vector FMAs per task (about 0.1 s per pass in a release build).
    public static func measureFMAPeak(rounds: Int = 2_500_000) -> Double { pg_measure_fma_gflops(rounds) }
    /// Peak of `kernel`'s bf16 dot-product instruction (tdpbf16ps or vdpbf16ps) on the kernels'
    /// threads, in GFLOP/s; 0 where the CPU lacks it.
    public static func measureBF16Peak(_ kernel: FastKernel, rounds: Int = 2_500_000) -> Double {
        pg_measure_bf16_gflops(Int32(kernel.rawValue), rounds)
    }
    /// Peak of the integer dot-product instruction the int8 (`pairs`: vpmaddwd or vpdpwssd) or
    /// 4-bit (`quads`: vpmaddubsw or vpdpbusd) kernels use here, in GOP/s; 0 below AVX2.
    public static func measureIntegerDotPeak(_ kind: IntegerDot, rounds: Int = 2_500_000) -> Double {
        pg_measure_int_dot_gops(Int32(kind.rawValue), rounds)
    }
}

/// The integer dot products of the quantized kernels: int16 pairs for int8 weights, uint8 x int8
/// quads for 4-bit weights.
public enum IntegerDot: Int, Sendable, CaseIterable {
    case pairs = 0, quads = 1
    /// The instruction its kernel uses on this thread ("vpmaddwd", "vpdpwssd", "vpmaddubsw",
    /// "vpdpbusd"; "none" below AVX2).
    public var instruction: String { String(cString: pg_int_dot_instruction(Int32(rawValue))) }
}
