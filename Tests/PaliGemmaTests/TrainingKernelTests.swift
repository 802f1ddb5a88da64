import CPaliGemmaKernels
import Foundation
import Testing
@testable import PaliGemma

/// The kernels training adds, at every ISA level, against float64 references.
struct TrainingKernelTests {
    @Test("pg_matmul and pg_matmul_ta (x read transposed; w k-major in f32, bf16, f16, i8) against a float64 reference on every ISA level")
    func matmul() {
        var rng = SeededRandom(17)
        var worst: Float = 0
        for level in KernelTests.levels {
            for (m, n, k) in [(1, 5, 3), (3, 40, 700), (7, 33, 300), (13, 64, 257), (40, 100, 64), (131, 520, 70)] {
                let x = rng.floats(m * k), wf = rng.floats(k * n)
                var xt = [Float](repeating: 0, count: k * m)  // [K, M]
                for i in 0..<m { for t in 0..<k { xt[t * m + i] = x[i * k + t] } }
                for dtype in [DType.float32, .bfloat16, .float16, .int8] {
                    // Weights as stored in dtype, and the float values they hold.
                    var bytes = [UInt8](repeating: 0, count: k * n * dtype.size)
                    var held = wf
                    if dtype == .int8 {
                        held = wf.map { Float(Int8(max(-127, min(127, ($0 * 100).rounded())))) }
                        bytes = held.map { UInt8(bitPattern: Int8($0)) }
                    } else {
                        held.withUnsafeBufferPointer { v in
                            bytes.withUnsafeMutableBytes { Ops.convertFromFloat(v.baseAddress!, to: dtype, into: $0.baseAddress!, count: k * n) }
                        }
                        bytes.withUnsafeBytes { b in
                            held.withUnsafeMutableBufferPointer { Ops.convertToFloat(b.baseAddress!, dtype, into: $0.baseAddress!, count: k * n) }
                        }
                    }
                    var y = [Float](repeating: .nan, count: m * n), yt = y
                    x.withUnsafeBufferPointer { xp in
                        bytes.withUnsafeBytes { wp in
                            y.withUnsafeMutableBufferPointer { yp in
                                pg_matmul_isa(Int32(level.rawValue), xp.baseAddress, k, wp.baseAddress, dtype.kernelType ?? 0, n,
                                              yp.baseAddress, n, m, n, k)
                            }
                        }
                    }
                    xt.withUnsafeBufferPointer { ap in
                        bytes.withUnsafeBytes { wp in
                            yt.withUnsafeMutableBufferPointer { yp in
                                pg_matmul_ta_isa(Int32(level.rawValue), ap.baseAddress, m, wp.baseAddress, dtype.kernelType ?? 0, n,
                                                 yp.baseAddress, n, m, n, k)
                            }
                        }
                    }
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0, mag = 0.0
                            for t in 0..<k {
                                s += Double(x[i * k + t]) * Double(held[t * n + j])
                                mag += abs(Double(x[i * k + t]) * Double(held[t * n + j]))
                            }
                            let err = Float(abs(Double(y[i * n + j]) - s)), errT = Float(abs(Double(yt[i * n + j]) - s))
                            worst = max(worst, max(err, errT) / Float(max(mag, 1)))
                            #expect(err <= Float(mag) * 1e-6 + 1e-6, "\(level.name) \(dtype) \(m)x\(n)x\(k) y[\(i),\(j)]")
                            #expect(errT <= Float(mag) * 1e-6 + 1e-6, "pg_matmul_ta \(level.name) \(dtype) \(m)x\(n)x\(k) y[\(i),\(j)]")
                        }
                    }
                }
            }
        }
        print("pg_matmul, pg_matmul_ta: worst |diff| / Σ|products| vs float64 \(worst)")
    }

    /// W [n, k] of a linear layer in `form` (float32, bfloat16, float16, int8 or int4), and the
    /// float values the fast kernels multiply by (before the rounding of dY): bf16 of each stored
    /// value, the int8 integers (their row scales go onto dY), bf16 of each 4-bit q · scale.
    static func weight(_ values: [Float], _ n: Int, _ k: Int, form: String) -> (MatrixWeight, [Float]) {
        let t = Tensor(values: values, shape: [n, k])
        switch form {
        case "int8":
            let (q, scales) = Ops.quantizeInt8(t)
            return (.int8(q, scales: scales), q.floats())
        case "int4":
            let w = Ops.quantizeInt4(t)
            return (w, w.floats().map(pg_bf16_round))
        default:
            let dtype: DType = form == "bfloat16" ? .bfloat16 : form == "float16" ? .float16 : .float32
            let (bytes, held) = KernelTests.encode(values, dtype)
            let storage = bytes.withUnsafeBytes { Storage.copying($0) }
            return (.dense(Tensor(storage: storage, offset: 0, shape: [n, k], dtype: dtype)), held.map(pg_bf16_round))
        }
    }

    @Test("dX = dY · W in fast precision (pg_matmul_fast through each weight form) on each bf16 kernel against a float64 reference of the rounded operands")
    func linearBackwardInputFast() {
        print("fast kernels run here: \(KernelTests.fastKernels.map(\.name))")
        var rng = SeededRandom(23)
        var worst = 0.0
        // (rows of dY, W's rows = depth, W's columns = dX's columns): ragged blocks of 32 rows and
        // columns, odd depths, depths over one chunk (1024), one row past the decode path; 4-bit
        // columns are whole groups of 32, and several groups of blocks of 8 (KN_BLOCKS).
        let shapes = [(5, 1, 1), (5, 17, 9), (33, 40, 31), (37, 259, 130), (70, 1100, 33), (40, 2080, 64), (300, 37, 600)]
        let q4Shapes = [(5, 17, 32), (33, 40, 96), (70, 1100, 352), (40, 64, 1056)]
        for kernel in KernelTests.fastKernels {
            let features: Set<String> = kernel == .amx ? Set(Kernels.features) : ["avx512-bf16"]
            for form in ["float32", "bfloat16", "float16", "int8", "int4"] {
                for (m, n, k) in form == "int4" ? q4Shapes : shapes {
                    let dy = rng.floats(m * n)
                    let (w, held) = Self.weight(rng.floats(n * k), n, k, form: form)
                    let dyMatrix = Matrix(rows: m, cols: n, values: dy)
                    let dx = Kernels.withFeatures(features) { Kernels.withPrecision(.fast) { Ops.linearBackwardInput(dyMatrix, w) } }
                    var scales = [Float](repeating: 1, count: n)
                    if case .int8(_, let s) = w { scales = s }
                    for i in 0..<m {
                        for j in 0..<k {
                            var dot = 0.0, mag = 0.0
                            for t in 0..<n {
                                let p = Double(pg_bf16_round(dy[i * n + t] * scales[t])) * Double(held[t * k + j])
                                dot += p
                                mag += abs(p)
                            }
                            let err = abs(Double(dx[i, j]) - dot), bound = mag * 2e-6 + 1e-6
                            worst = max(worst, err / bound)
                            if !(err <= bound) {
                                Issue.record("\(kernel.name) \(form) m\(m) n\(n) k\(k): dx[\(i),\(j)] = \(dx[i, j]), want \(dot)")
                                return
                            }
                        }
                    }
                }
            }
        }
        print("linearBackwardInput, fast: worst |diff| = \(worst) of its bound on \(KernelTests.fastKernels.map(\.name))")
    }

    @Test("dX in fast precision only with more than 4 rows: decode-sized dY and exact precision keep the float32 products")
    func linearBackwardInputPrecision() {
        var rng = SeededRandom(24)
        let (n, k) = (40, 96)
        let (w, _) = Self.weight(rng.floats(n * k), n, k, form: "bfloat16")
        for m in [4, 5] {
            let dy = Matrix(rows: m, cols: n, values: rng.floats(m * n))
            let exact = Kernels.withPrecision(.exact) { Ops.linearBackwardInput(dy, w) }
            let fast = Kernels.withPrecision(.fast) { Ops.linearBackwardInput(dy, w) }
            var direct = [Float](repeating: .nan, count: m * k)
            guard case .dense(let t) = w, let p = t.pointer else { Issue.record("not dense"); return }
            direct.withUnsafeMutableBufferPointer { y in
                pg_matmul(dy.data, n, p, DType.bfloat16.kernelType!, k, y.baseAddress, k, m, k, n)
            }
            #expect(exact.values == direct, "exact m\(m) is pg_matmul's float32 product")
            let differs = fast.values != direct
            #expect(differs == (m > 4 && !KernelTests.fastKernels.isEmpty), "fast m\(m): bf16 products \(differs)")
        }
    }

    @Test("GeGLU and GELU backward (tanh and erf) against float64 derivatives on every ISA level")
    func gegluBackward() {
        var rng = SeededRandom(19)
        let n = 20_011
        let gate = rng.floats(n).map { $0 * 6 }, up = rng.floats(n), da = rng.floats(n)
        var worst = 0.0
        for level in KernelTests.levels {
            Kernels.withISA(level) {
                for exact in [false, true] {
                    let (dg, du) = Ops.gegluBackward(Matrix(rows: 1, cols: n, values: da), gate: Matrix(rows: 1, cols: n, values: gate),
                                                     up: Matrix(rows: 1, cols: n, values: up), exact: exact)
                    let dh = Ops.geluBackward(Matrix(rows: 1, cols: n, values: da), input: Matrix(rows: 1, cols: n, values: gate), exact: exact)
                    for i in 0..<n {
                        let x = Double(gate[i])
                        let g: Double, slope: Double
                        if exact {
                            let cdf = 0.5 * (1 + erf(x / 2.0.squareRoot()))
                            g = x * cdf
                            slope = cdf + x * exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
                        } else {
                            let k = (2 / Double.pi).squareRoot(), t = tanh(k * (x + 0.044715 * x * x * x))
                            g = 0.5 * x * (1 + t)
                            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
                        }
                        let e1 = abs(Double(dg[0, i]) - Double(da[i]) * Double(up[i]) * slope)
                        let e2 = abs(Double(du[0, i]) - Double(da[i]) * g)
                        let e3 = abs(Double(dh[0, i]) - Double(da[i]) * slope)
                        worst = max(worst, e1, e2, e3)
                        #expect(e1 <= 2e-6 && e2 <= 1e-5 && e3 <= 2e-6, "\(level.name) exact \(exact) at \(i): x \(x)")
                    }
                }
            }
        }
        print("GeGLU/GELU backward: worst |diff| vs float64 \(worst)")
    }

    @Test("Training attention's softmax over a row's visible keys (pg_softmax_span) against float64 on every ISA level; the rest of the row zero")
    func softmaxSpan() {
        var rng = SeededRandom(31)
        let n = 77
        // Spans: the whole row, a prefix, a causal run, one key, tails shorter than the lanes,
        // bounds past the row (clamped), and none.
        let spans = [(0, n), (0, 64), (0, 13), (5, 6), (40, 77), (70, 77), (-3, 9), (60, 90), (20, 20)]
        var worst = 0.0
        for level in KernelTests.levels {
            Kernels.withISA(level) {
                for (lo, hi) in spans {
                    let x = rng.floats(n).map { $0 * 12 }
                    var row = x
                    row.withUnsafeMutableBufferPointer { pg_softmax_span($0.baseAddress, n, lo, hi) }
                    let a = max(lo, 0), b = min(hi, n)
                    let mx = a < b ? x[a..<b].map(Double.init).max() ?? 0 : 0
                    let sum = (a..<max(a, b)).reduce(0.0) { $0 + exp(Double(x[$1]) - mx) }
                    for i in 0..<n {
                        let want = i >= a && i < b ? exp(Double(x[i]) - mx) / sum : 0
                        let e = abs(Double(row[i]) - want)
                        worst = max(worst, e)
                        #expect(e <= 1e-6 && (want != 0 || row[i] == 0), "\(level.name) span \(lo)..<\(hi) at \(i): \(row[i]) vs \(want)")
                    }
                }
            }
        }
        print("pg_softmax_span: worst |p - float64| \(worst) (bound 1e-6)")
    }

    @Test("AdamW (pg_adamw) and the gradient norm (pg_sum_squares) over tensors of odd sizes across chunks, against float64")
    func optimizerKernels() {
        var rng = SeededRandom(29)
        // One value, a tail shorter than the vector lanes, and tensors over one and two chunks (32,768).
        let sizes = [1, 7, 32_771, 70_001]
        let parameters = sizes.enumerated().map { Parameter(name: "p\($0.offset)", shape: [$0.element], values: rng.floats($0.element)) }
        var reference = parameters.map { $0.value.values.map(Double.init) }
        var m = sizes.map { [Double](repeating: 0, count: $0) }, v = m
        let adamw = AdamW(parameters, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.05)
        var worstValue = 0.0, worstNorm = 0.0
        for (t, lr) in [Float(1e-2), 3e-3, 5e-4].enumerated() {
            for p in parameters { for i in 0..<p.count { p.grad.data[i] = rng.float() * (t == 1 ? 1e-3 : 1) } }
            let want = parameters.reduce(0.0) { s, p in s + (0..<p.count).reduce(0.0) { $0 + Double(p.grad.data[$1]) * Double(p.grad.data[$1]) } }
            let norm = clipGradientNorm(parameters, maxNorm: 0)
            worstNorm = max(worstNorm, abs(Double(norm) - want.squareRoot()) / want.squareRoot())
            adamw.step(lr: lr)
            let step = Double(t + 1), bc1 = 1 - pow(0.9, step), bc2 = (1 - pow(0.95, step)).squareRoot()
            for (k, p) in parameters.enumerated() {
                for i in 0..<p.count {
                    let g = Double(p.grad.data[i])
                    reference[k][i] *= 1 - Double(lr) * 0.05
                    m[k][i] = 0.9 * m[k][i] + 0.1 * g
                    v[k][i] = 0.95 * v[k][i] + 0.05 * g * g
                    reference[k][i] -= Double(lr) / bc1 * m[k][i] / (v[k][i].squareRoot() / bc2 + 1e-8)
                    worstValue = max(worstValue, abs(Double(p.value.data[i]) - reference[k][i]))
                }
            }
        }
        print("pg_adamw: worst |value - float64| \(worstValue) (bound 1e-6); pg_sum_squares: worst relative norm error \(worstNorm) (bound 1e-6)")
        #expect(worstValue <= 1e-6)
        #expect(worstNorm <= 1e-6)
    }
}
