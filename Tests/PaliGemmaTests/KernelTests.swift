import CPaliGemmaKernels
import Foundation
import Testing
@testable import PaliGemma

/// Every instruction-set path of the kernels against plain references, on random shapes with
/// ragged edges. Levels this CPU lacks cannot run here; the test prints which levels it ran.
struct KernelTests {
    static var levels: [ISA] { ISA.allCases.filter { $0 <= Kernels.supported } }

    /// Stores `values` in `dtype` (rounding as the checkpoint writer would) and returns the bytes
    /// plus the values as float32 after rounding.
    static func encode(_ values: [Float], _ dtype: DType) -> (bytes: [UInt8], rounded: [Float]) {
        var bytes = [UInt8](repeating: 0, count: values.count * dtype.size)
        bytes.withUnsafeMutableBytes { b in
            values.withUnsafeBufferPointer { pg_convert_from_f32($0.baseAddress, dtype.kernelType!, b.baseAddress, values.count) }
        }
        var rounded = [Float](repeating: 0, count: values.count)
        bytes.withUnsafeBytes { b in
            rounded.withUnsafeMutableBufferPointer { pg_convert_to_f32(b.baseAddress, dtype.kernelType!, $0.baseAddress, values.count) }
        }
        return (bytes, rounded)
    }

    /// Runs `call` (x, w bytes, bias or nil, y) and checks y [m, n] against float64 sums of
    /// `xRef` · `wRef`ᵀ + bias within `relative` · Σ|products| + 1e-6; records an issue and
    /// returns nil at the first miss, else the worst error as a share of its bound.
    static func checkLinear(_ label: String, _ m: Int, _ n: Int, _ k: Int, x: [Float], _ xRef: [Float], _ wBytes: [UInt8],
                            _ wRef: [Float], bias: [Float]?, relative: Double,
                            _ call: (UnsafePointer<Float>?, UnsafeRawPointer?, UnsafePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void) -> Double? {
        var y = [Float](repeating: .nan, count: m * n)
        let b = bias ?? []
        x.withUnsafeBufferPointer { xp in
            wBytes.withUnsafeBytes { wp in
                b.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer { call(xp.baseAddress, wp.baseAddress, bias == nil ? nil : bp.baseAddress, $0.baseAddress) }
                }
            }
        }
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var s = Double(bias?[j] ?? 0)
                var mag = abs(s)
                for t in 0..<k {
                    let p = Double(xRef[i * k + t]) * Double(wRef[j * k + t])
                    s += p
                    mag += abs(p)
                }
                let err = abs(Double(y[i * n + j]) - s)
                if err > mag * relative + 1e-6 || y[i * n + j].isNaN {
                    Issue.record("\(label): y[\(i),\(j)] = \(y[i * n + j]), want \(s)")
                    return nil
                }
                worst = max(worst, err / (mag * relative + 1e-6))
            }
        }
        return worst
    }

    @Test("pg_linear: every ISA level and dtype against a float64 reference")
    func linear() {
        print("kernel levels run here: \(Self.levels.map(\.name)) (supported: \(Kernels.supported.name))")
        var rng = SeededRandom(7)
        let shapes = [(1, 1, 1), (1, 17, 9), (1, 64, 300), (2, 33, 31), (3, 16, 8), (4, 100, 257), (5, 31, 40),
                      (6, 32, 256), (7, 65, 513), (8, 35, 70), (9, 20, 33), (13, 47, 100), (64, 96, 72), (37, 130, 259),
                      (1, 9, 4100),  // rows of 8 KB and more: the four-row decode path
                      (1, 3, 64), (1, 6, 33),  // one row, bf16 on AVX-512 (even/odd): lone rows, depth tails
                      // batched decode over long rows (bf16 on AVX2: tiles of 3 and 2 weight rows, passes of 4
                      // rows of x for 7 and 8, depths past the last block of 16)
                      (2, 7, 4100), (6, 8, 1040), (7, 4, 2050), (8, 5, 2080)]
        var worst = 0.0
        for level in Self.levels {
            for dtype in [DType.float32, .bfloat16, .float16] {
                for (m, n, k) in shapes {
                    let x = rng.floats(m * k)
                    let (wBytes, w) = Self.encode(rng.floats(n * k), dtype)
                    let bias = rng.floats(n)
                    for withBias in [true, false] {
                        let label = "\(level.name) \(dtype) m\(m) n\(n) k\(k) bias \(withBias)"
                        guard let err = Self.checkLinear(label, m, n, k, x: x, x, wBytes, w, bias: withBias ? bias : nil,
                                                         relative: 1e-6, { xp, wp, bp, yp in
                            pg_linear_isa(Int32(level.rawValue), xp, k, wp, dtype.kernelType!, k, bp, yp, n, m, n, k)
                        }) else { return }
                        worst = max(worst, err)
                    }
                }
            }
        }
        print("pg_linear: worst |diff| vs float64 reference \(worst) of its bound")
    }

    /// Fast kernels this CPU has (AMX needs the operating system's permission as well).
    static var fastKernels: [FastKernel] { [FastKernel.avx512BF16, .amx].filter(\.isSupported) }

    @Test("pg_linear in fast precision: each bf16 kernel and dtype against a float64 reference of the rounded operands")
    func linearFast() {
        print("fast kernels run here: \(Self.fastKernels.map(\.name)) (in use: \(Kernels.fastKernel.name))")
        var rng = SeededRandom(11)
        // Ragged rows, columns and depths: partial blocks of 32 rows and columns, K not a multiple
        // of 32, K over one depth chunk (1024), one row past the decode path.
        let shapes = [(5, 1, 1), (5, 17, 9), (33, 31, 40), (37, 130, 259), (64, 96, 64), (70, 33, 1100),
                      (40, 64, 2080), (300, 33, 37), (32, 32, 32)]
        var worst: Double = 0
        for kernel in Self.fastKernels {
            for dtype in [DType.float32, .bfloat16, .float16] {
                for (m, n, k) in shapes {
                    let x = rng.floats(m * k)
                    let (wBytes, w) = Self.encode(rng.floats(n * k), dtype)
                    let xr = x.map(pg_bf16_round), wr = w.map(pg_bf16_round)
                    let bias = rng.floats(n)
                    for withBias in [true, false] {
                        let label = "\(kernel.name) \(dtype) m\(m) n\(n) k\(k) bias \(withBias)"
                        // float32 sums in another order: a few float32 steps of the magnitude.
                        guard let err = Self.checkLinear(label, m, n, k, x: x, xr, wBytes, wr, bias: withBias ? bias : nil,
                                                         relative: 2e-6, { xp, wp, bp, yp in
                            pg_linear_fast_kernel(Int32(kernel.rawValue), xp, k, wp, dtype.kernelType!, k, bp, yp, n, m, n, k)
                        }) else { return }
                        worst = max(worst, err)
                    }
                }
            }
        }
        print("pg_linear fast: worst |diff| vs float64 reference of the bf16 operands \(worst) of its bound")
    }

    @Test("fast precision streams decode rows (1 to 8) of float weights on vdpbf16ps; CPUs without AVX512-BF16 stay float32")
    func linearFastDecodeRows() {
        var rng = SeededRandom(14)
        // Depths not a multiple of 32 (a masked last chunk) and over several 512-deep blocks (the
        // passes over 5 to 8 rows take turns by block), column counts not a multiple of 4 (one to
        // three last rows on their own).
        let shapes = [(37, 9), (3, 1), (64, 33), (2080, 17), (1100, 7), (600, 6)]
        let bf16 = Kernels.fastKernelInUse != .none && Kernels.features.contains("avx512-bf16")
        var worst: Double = 0
        for withFeatures in [true, false] where withFeatures || bf16 {
            let features = withFeatures ? Set(Kernels.features) : Set(Kernels.features).subtracting(["avx512-bf16", "amx-bf16"])
            let rounded = withFeatures && bf16
            for dtype in [DType.float32, .bfloat16, .float16] {
                for m in 1...8 {
                    for (k, n) in shapes {
                        let x = rng.floats(m * k)
                        let (wBytes, w) = Self.encode(rng.floats(n * k), dtype)
                        let bias = rng.floats(n)
                        // bf16 products for 1..8 rows with the extension; float32 ones otherwise.
                        let bf = rounded
                        let label = "decode rows, features \(features.sorted()) \(dtype) m\(m) k\(k) n\(n)"
                        guard let err = Self.checkLinear(label, m, n, k, x: x, bf ? x.map(pg_bf16_round) : x, wBytes,
                                                         bf ? w.map(pg_bf16_round) : w, bias: bias, relative: 2e-6, { xp, wp, bp, yp in
                            Kernels.withFeatures(features) {
                                Kernels.withPrecision(.fast) {
                                    pg_linear(xp, k, wp, dtype.kernelType!, k, bp, yp, n, m, n, k)
                                }
                            }
                        }) else { return }
                        worst = max(worst, err)
                    }
                }
            }
        }
        print("fast decode rows (bf16 products \(bf16 ? "ran" : "not on this CPU")): worst |diff| \(worst) of its bound")
    }

    @Test("fast precision with int8 weights: row scales and bias applied as y is written, on each bf16 kernel")
    func linearFastInt8() {
        var rng = SeededRandom(13)
        var worst: Double = 0
        for kernel in Self.fastKernels {
            let features: Set<String> = kernel == .amx ? Set(Kernels.features) : ["avx512-bf16"]
            for (m, n, k) in [(5, 17, 9), (37, 130, 259), (70, 33, 1100)] {
                let x = rng.floats(m * k)
                let q = (0..<(n * k)).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 256) - 128) }
                let scales = rng.floats(n).map { abs($0) * 0.01 + 1e-3 }, bias = rng.floats(n)
                var y = [Float](repeating: .nan, count: m * n)
                Kernels.withFeatures(features) {
                    Kernels.withPrecision(.fast) {
                        x.withUnsafeBufferPointer { xp in
                            q.withUnsafeBytes { wp in
                                scales.withUnsafeBufferPointer { sp in
                                    bias.withUnsafeBufferPointer { bp in
                                        y.withUnsafeMutableBufferPointer { yp in
                                            pg_linear_scaled(xp.baseAddress, k, wp.baseAddress, Int32(PG_I8.rawValue), k, sp.baseAddress,
                                                             bp.baseAddress, yp.baseAddress, n, m, n, k)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0, mag = 0.0
                        for t in 0..<k {
                            let p = Double(pg_bf16_round(x[i * k + t])) * Double(q[j * k + t])
                            s += p
                            mag += abs(p)
                        }
                        let want = s * Double(scales[j]) + Double(bias[j])
                        let err = abs(Double(y[i * n + j]) - want)
                        let bound = (mag * 2e-6 + 1e-6) * Double(scales[j]) + 1e-6
                        if err > bound || y[i * n + j].isNaN {
                            Issue.record("\(kernel.name) int8 m\(m) n\(n) k\(k): y[\(i),\(j)] = \(y[i * n + j]), want \(want)")
                            return
                        }
                        worst = max(worst, err / bound)
                    }
                }
            }
        }
        print("pg_linear_scaled int8, fast: worst |diff| = \(worst) of its bound on \(Self.fastKernels.map(\.name))")
    }

    @Test("fast precision routes pg_linear with float weights and more than 8 rows to the fast kernel, decode rows (1 to 8) to bf16 streaming where the CPU has AVX512-BF16, and leaves exact alone")
    func precisionSwitch() {
        var rng = SeededRandom(12)
        let (n, k) = (40, 96)
        let (wBytes, _) = Self.encode(rng.floats(n * k), .bfloat16)
        func run(_ m: Int, _ precision: Precision?, kernel: FastKernel? = nil) -> [Float] {
            var xr = SeededRandom(UInt64(m))
            let x = xr.floats(m * k)
            var y = [Float](repeating: .nan, count: m * n)
            x.withUnsafeBufferPointer { xp in
                wBytes.withUnsafeBytes { wp in
                    y.withUnsafeMutableBufferPointer { yp in
                        if let kernel {
                            pg_linear_fast_kernel(Int32(kernel.rawValue), xp.baseAddress, k, wp.baseAddress, DType.bfloat16.kernelType!,
                                                  k, nil, yp.baseAddress, n, m, n, k)
                        } else {
                            Kernels.withPrecision(precision ?? .exact) {
                                pg_linear(xp.baseAddress, k, wp.baseAddress, DType.bfloat16.kernelType!, k, nil, yp.baseAddress, n, m, n, k)
                            }
                        }
                    }
                }
            }
            return y
        }
        #expect(Kernels.precision == .exact || ProcessInfo.processInfo.environment["PALIGEMMA_PRECISION"] == "fast")
        let inside = Kernels.withPrecision(.fast) { Kernels.precision }
        #expect(inside == .fast)
        let decodeBF16 = Kernels.fastKernelInUse != .none && Kernels.features.contains("avx512-bf16")
        for m in [1, 2, 3, 5, 8] {
            let (fast, exact) = (run(m, .fast), run(m, .exact))
            if decodeBF16 { #expect(fast != exact, "decode rows in bf16 change some low bits: m \(m)") }
            else { #expect(fast == exact, "no AVX512-BF16: decode rows stay exact: m \(m)") }
        }
        let kernel = Kernels.fastKernelInUse
        let (fast, exact) = (run(9, .fast), run(9, .exact))
        if kernel == .none {
            #expect(fast == exact, "no fast kernel here: fast computes as exact")
            print("no fast kernel at this level: fast precision checked to equal exact")
        } else {
            let direct = run(9, nil, kernel: kernel)
            #expect(fast == direct, "fast precision runs \(kernel.name)")
            #expect(fast != exact, "bf16 rounding changes some low bits")
        }
        for unsupported in FastKernel.allCases where !unsupported.isSupported && unsupported != .none {
            let y = run(9, nil, kernel: unsupported)
            #expect(y.allSatisfy { $0.isNaN }, "an unsupported kernel writes nothing")
        }
    }

    @Test("pg_linear prefill with x packed in row blocks (packed copy over 64 MB)")
    func linearRowBlocks() {
        // 2100 x 8200 float32 rows are 69 MB packed: two row blocks share one packed buffer.
        let (m, n, k) = (2100, 40, 8200)
        var rng = SeededRandom(21)
        let x = rng.floats(m * k)
        let (wBytes, w) = Self.encode(rng.floats(n * k), .bfloat16)
        let bias = rng.floats(n)
        var y = [Float](repeating: .nan, count: m * n)
        x.withUnsafeBufferPointer { xp in
            wBytes.withUnsafeBytes { wp in
                bias.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer { yp in
                        pg_linear(xp.baseAddress, k, wp.baseAddress, DType.bfloat16.kernelType!, k, bp.baseAddress,
                                  yp.baseAddress, n, m, n, k)
                    }
                }
            }
        }
        var worst: Float = 0
        for i in [0, 5, 1000, 2039, 2040, 2093, 2099] {  // both blocks (the second starts at 2040), the ragged end
            for j in 0..<n {
                var s = Double(bias[j]), mag = abs(s)
                for t in 0..<k {
                    s += Double(x[i * k + t]) * Double(w[j * k + t])
                    mag += abs(Double(x[i * k + t]) * Double(w[j * k + t]))
                }
                let err = Float(abs(Double(y[i * n + j]) - s))
                worst = max(worst, err)
                #expect(err <= Float(mag) * 1e-6 + 1e-6, "y[\(i),\(j)] = \(y[i * n + j]), want \(s)")
            }
        }
        print("pg_linear row blocks: worst |diff| vs float64 reference \(worst)")
    }

    /// Plain attention with the prefix-LM mask, window and soft cap, in float64.
    static func referenceAttention(q: [Float], k: [Float], v: [Float], T: Int, S: Int, Hq: Int, Hkv: Int, D: Int,
                                   qStart: Int, prefix: Int, window: Int, scale: Float, softcap: Float) -> [Float] {
        var out = [Float](repeating: 0, count: T * Hq * D)
        for t in 0..<T {
            let i = qStart + t
            for h in 0..<Hq {
                let kh = h / (Hq / Hkv)
                var scores = [Double](repeating: -.infinity, count: S)
                for s in 0..<S {
                    let causal = s <= i && (window <= 0 || s > i - window)
                    let bidirectional = i < prefix && s < prefix
                    guard causal || bidirectional else { continue }
                    var dot = 0.0
                    for d in 0..<D { dot += Double(q[(t * Hq + h) * D + d]) * Double(k[(s * Hkv + kh) * D + d]) }
                    var x = dot * Double(scale)
                    if softcap > 0 { x = tanh(x / Double(softcap)) * Double(softcap) }
                    scores[s] = x
                }
                let mx = scores.max() ?? 0
                guard mx > -.infinity else { continue }
                let e = scores.map { $0 == -.infinity ? 0 : exp($0 - mx) }
                let sum = e.reduce(0, +)
                for d in 0..<D {
                    var acc = 0.0
                    for s in 0..<S { acc += e[s] / sum * Double(v[(s * Hkv + kh) * D + d]) }
                    out[(t * Hq + h) * D + d] = Float(acc)
                }
            }
        }
        return out
    }

    @Test("pg_attention: prefix-LM mask, sliding window, soft cap, GQA, cache offsets on every ISA level")
    func attention() {
        var rng = SeededRandom(11)
        // (T, S, Hq, Hkv, D, qStart, prefix, window, softcap)
        let cases = [(5, 5, 2, 2, 8, 0, 5, 0, Float(0)), (9, 9, 4, 1, 16, 0, 6, 0, 0), (9, 9, 4, 2, 12, 0, 6, 3, 2.5),
                     (1, 12, 4, 2, 16, 11, 8, 4, 0), (3, 20, 8, 4, 72, 17, 10, 0, 50), (17, 17, 2, 1, 33, 0, 17, 5, 1.0),
                     (1, 30, 2, 2, 24, 29, 30, 6, 0), (40, 40, 3, 1, 7, 0, 0, 0, 0),
                     // blocks of 16 rows whose visible spans differ (weighted sum of V as one product)
                     (37, 300, 4, 2, 72, 263, 270, 40, 0), (21, 90, 2, 1, 256, 69, 75, 9, 30), (33, 33, 2, 2, 40, 0, 33, 0, 0),
                     // long sequences: blocks of 64 (S >= 256) and 128 (S >= 2048) rows
                     (70, 600, 2, 1, 24, 530, 560, 50, 0), (130, 2100, 2, 2, 16, 1970, 2000, 0, 0),
                     // decode with grouped heads (one task per key/value head): 8 heads on 1, 6 on 1
                     (1, 700, 8, 1, 256, 699, 266, 0, 0), (2, 40, 6, 1, 32, 38, 30, 5, 0), (4, 50, 6, 2, 24, 46, 20, 0, 3)]
        var worst: Float = 0
        for level in Self.levels {
            for (T, S, Hq, Hkv, D, qStart, prefix, window, softcap) in cases {
                let q = rng.floats(T * Hq * D), k = rng.floats(S * Hkv * D), v = rng.floats(S * Hkv * D)
                let scale = 1 / Float(D).squareRoot() * 2
                var out = [Float](repeating: .nan, count: T * Hq * D)
                q.withUnsafeBufferPointer { qp in
                    k.withUnsafeBufferPointer { kp in
                        v.withUnsafeBufferPointer { vp in
                            out.withUnsafeMutableBufferPointer { op in
                                pg_attention_isa(Int32(level.rawValue), qp.baseAddress, Hq * D, kp.baseAddress, vp.baseAddress, Hkv * D,
                                                 op.baseAddress, Hq * D, T, S, Int32(Hq), Int32(Hkv), Int32(D),
                                                 qStart, prefix, window, scale, softcap)
                            }
                        }
                    }
                }
                let want = Self.referenceAttention(q: q, k: k, v: v, T: T, S: S, Hq: Hq, Hkv: Hkv, D: D, qStart: qStart,
                                                   prefix: prefix, window: window, scale: scale, softcap: softcap)
                let (d, at) = maxAbsDiff(out, want)
                worst = max(worst, d)
                #expect(d <= 1e-5, "\(level.name) T\(T) S\(S) Hq\(Hq) Hkv\(Hkv) D\(D) start\(qStart) prefix\(prefix) window\(window) cap\(softcap): \(d) at \(at)")
            }
        }
        print("pg_attention: worst |diff| vs float64 reference \(worst)")
    }

    @Test("pg_self_attention: fast precision on vdpbf16ps against a float64 reference of the bf16-rounded operands; exact precision is pg_attention")
    func selfAttentionFast() {
        var rng = SeededRandom(31)
        // (T, H, D): partial blocks of 32 queries and keys, heads narrower and wider than 32
        // columns and not a multiple of 32 (SigLIP's 72), an odd width (float32 at any precision).
        let cases = [(1, 1, 2), (5, 2, 8), (33, 3, 72), (70, 2, 40), (256, 4, 72), (100, 1, 130), (9, 2, 9)]
        var worst = 0.0
        for (T, H, D) in cases {
            let q = rng.floats(T * H * D).map { $0 * 3 }, k = rng.floats(T * H * D), v = rng.floats(T * H * D)
            let scale = 1 / Float(D).squareRoot()
            func run(_ precision: Precision) -> [Float] {
                var out = [Float](repeating: .nan, count: T * H * D)
                Kernels.withPrecision(precision) {
                    q.withUnsafeBufferPointer { qp in
                        k.withUnsafeBufferPointer { kp in
                            v.withUnsafeBufferPointer { vp in
                                out.withUnsafeMutableBufferPointer { op in
                                    pg_self_attention(qp.baseAddress, kp.baseAddress, vp.baseAddress, H * D, op.baseAddress, H * D, T,
                                                      Int32(H), Int32(D), scale)
                                }
                            }
                        }
                    }
                }
                return out
            }
            var direct = [Float](repeating: .nan, count: T * H * D)
            q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in
                        direct.withUnsafeMutableBufferPointer { op in
                            pg_attention(qp.baseAddress, H * D, kp.baseAddress, vp.baseAddress, H * D, op.baseAddress, H * D, T, T,
                                         Int32(H), Int32(H), Int32(D), 0, T, 0, scale, 0)
                        }
                    }
                }
            }
            let exact = run(.exact), fast = run(.fast)
            #expect(exact == direct, "T\(T) H\(H) D\(D): exact precision is pg_attention's float32")
            let bf16 = Kernels.isa == .avx512 && !Self.fastKernels.isEmpty && D % 2 == 0
            guard bf16 else {
                #expect(fast == direct, "T\(T) H\(H) D\(D): without the bf16 path fast is float32")
                continue
            }
            #expect(fast != direct, "T\(T) H\(H) D\(D): the bf16 path ran")
            // Reference: logits of the rounded q and k in float64, softmax in float64, the
            // probabilities and v rounded to bf16. A probability the kernel rounds the other way
            // (its float32 logits differ in the last bits) moves by one bf16 step (2^-7 of
            // itself); such flips are rare, so each output is held to 2^-10 of its magnitude
            // sum |p·v| (the worst seen is about 6e-5 of it).
            let r = { (x: Float) in Double(pg_bf16_round(x)) }
            for t in 0..<T {
                for h in 0..<H {
                    var logits = [Double](repeating: 0, count: T)
                    for s in 0..<T {
                        var dot = 0.0
                        for d in 0..<D { dot += r(q[(t * H + h) * D + d]) * r(k[(s * H + h) * D + d]) }
                        logits[s] = dot * Double(scale)
                    }
                    let mx = logits.max() ?? 0
                    let e = logits.map { exp($0 - mx) }, sum = e.reduce(0, +)
                    let p = e.map { r(Float($0 / sum)) }
                    for d in 0..<D {
                        var want = 0.0, mag = 0.0
                        for s in 0..<T {
                            want += p[s] * r(v[(s * H + h) * D + d])
                            mag += abs(p[s] * r(v[(s * H + h) * D + d]))
                        }
                        let err = abs(Double(fast[(t * H + h) * D + d]) - want), bound = mag / 1024
                        worst = max(worst, err / bound)
                        if !(err <= bound) {
                            Issue.record("T\(T) H\(H) D\(D): out[\(t), \(h), \(d)] = \(fast[(t * H + h) * D + d]), want \(want)")
                            return
                        }
                    }
                }
            }
        }
        print("pg_self_attention, fast: worst |diff| = \(worst) of its bound")
    }

    @Test("norms, activations, soft cap and softmax against float64 references")
    func elementwise() {
        var rng = SeededRandom(5)
        let rows = 7, n = 67
        let x = Matrix(rows: rows, cols: n, values: rng.floats(rows * n).map { $0 * 3 })
        let w = rng.floats(n), b = rng.floats(n)
        var worst: Float = 0
        func check(_ name: String, _ got: [Float], _ want: [Double], tol: Float = 2e-6) {
            let (d, at) = maxAbsDiff(got, want.map(Float.init))
            worst = max(worst, d)
            #expect(d <= tol, "\(name): \(d) at \(at)")
        }
        let ln = Matrix(rows: rows, cols: n)
        Ops.layerNorm(x, weight: w, bias: b, eps: 1e-6, into: ln)
        let rms = Matrix(rows: rows, cols: n)
        Ops.rmsNorm(x, weight: w, eps: 1e-6, into: rms)
        var wantLN: [Double] = [], wantRMS: [Double] = []
        for r in 0..<rows {
            let v = (0..<n).map { Double(x[r, $0]) }
            let mean = v.reduce(0, +) / Double(n)
            let varc = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
            let ms = v.map { $0 * $0 }.reduce(0, +) / Double(n)
            for i in 0..<n {
                wantLN.append((v[i] - mean) / (varc + 1e-6).squareRoot() * Double(w[i]) + Double(b[i]))
                wantRMS.append(v[i] / (ms + 1e-6).squareRoot() * (1 + Double(w[i])))
            }
        }
        check("layerNorm", ln.values, wantLN)
        check("rmsNorm", rms.values, wantRMS)
        // The kernels' other cases: LayerNorm without weight and/or bias, RMSNorm without weight.
        for (useW, useB) in [(true, false), (false, true), (false, false)] {
            var y = [Float](repeating: .nan, count: rows * n)
            x.values.withUnsafeBufferPointer { xp in
                w.withUnsafeBufferPointer { wp in
                    b.withUnsafeBufferPointer { bp in
                        y.withUnsafeMutableBufferPointer { yp in
                            pg_layer_norm(xp.baseAddress, n, yp.baseAddress, n, rows, n, useW ? wp.baseAddress : nil,
                                          useB ? bp.baseAddress : nil, 1e-6)
                        }
                    }
                }
            }
            let want = (0..<(rows * n)).map { at -> Double in
                let (r, i) = (at / n, at % n)
                let v = (0..<n).map { Double(x[r, $0]) }
                let mean = v.reduce(0, +) / Double(n)
                let varc = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
                return (v[i] - mean) / (varc + 1e-6).squareRoot() * (useW ? Double(w[i]) : 1) + (useB ? Double(b[i]) : 0)
            }
            check("layerNorm weight \(useW) bias \(useB)", y, want)
        }
        var rmsPlain = [Float](repeating: .nan, count: rows * n)
        x.values.withUnsafeBufferPointer { xp in
            rmsPlain.withUnsafeMutableBufferPointer { yp in pg_rms_norm(xp.baseAddress, n, yp.baseAddress, n, rows, n, nil, 1e-6) }
        }
        check("rmsNorm without weight", rmsPlain, (0..<(rows * n)).map { at in
            let r = at / n
            let ms = (0..<n).map { Double(x[r, $0]) * Double(x[r, $0]) }.reduce(0, +) / Double(n)
            return Double(x[r, at % n]) / (ms + 1e-6).squareRoot()
        })

        let g = Matrix(rows: rows, cols: n, values: x.values)
        Ops.gelu(g, exact: false)
        check("gelu_tanh", g.values, x.values.map { v in
            let d = Double(v)
            return 0.5 * d * (1 + tanh(0.7978845608028654 * (d + 0.044715 * d * d * d)))
        })
        let ge = Matrix(rows: rows, cols: n, values: x.values)
        Ops.gelu(ge, exact: true)
        check("gelu_erf", ge.values, x.values.map { 0.5 * Double($0) * (1 + erf(Double($0) / 2.squareRoot())) })
        let sc = Matrix(rows: rows, cols: n, values: x.values)
        Ops.softcap(sc, cap: 2.5)
        check("softcap", sc.values, x.values.map { tanh(Double($0) / 2.5) * 2.5 })
        let sm = Matrix(rows: rows, cols: n, values: x.values)
        Ops.softmax(sm)
        var wantSM: [Double] = []
        for r in 0..<rows {
            let v = (0..<n).map { Double(x[r, $0]) }
            let mx = v.max()!
            let e = v.map { exp($0 - mx) }
            let s = e.reduce(0, +)
            wantSM += e.map { $0 / s }
        }
        check("softmax", sm.values, wantSM)
        print("elementwise ops: worst |diff| \(worst)")
    }

    @Test("tanh GELU, GeGLU and softmax (whose exp the attention kernel shares) against float64 on every ISA level, tails and the exp's clamp included")
    func activationsEveryLevel() {
        var rng = SeededRandom(23)
        let rows = 5, n = 75  // 4 x 16 + 11 and 9 x 8 + 3: every vector width leaves a tail
        let x = rng.floats(rows * n).map { $0 * 14 }  // |x| up to 14: exp(-2y) clamps past about 6
        let up = rng.floats(rows * n)
        func gelu(_ v: Float) -> Double {
            let d = Double(v)
            return 0.5 * d * (1 + tanh(0.7978845608028654 * (d + 0.044715 * d * d * d)))
        }
        var wantSM: [Double] = []
        for r in 0..<rows {
            let v = (0..<n).map { Double(x[r * n + $0]) / 4 }
            let e = v.map { exp($0 - v.max()!) }
            wantSM += e.map { $0 / e.reduce(0, +) }
        }
        var worst = 0.0
        for level in KernelTests.levels {
            Kernels.withISA(level) {
                let g = Matrix(rows: rows, cols: n, values: x)
                Ops.gelu(g, exact: false)
                let gg = Matrix(rows: rows, cols: n, values: x)
                Ops.geglu(gg, Matrix(rows: rows, cols: n, values: up), exact: false)
                let sm = Matrix(rows: rows, cols: n, values: x.map { $0 / 4 })
                Ops.softmax(sm)
                for i in 0..<(rows * n) {
                    // Relative to the value's size: GELU(x) is about x for large x.
                    let e1 = abs(Double(g.data[i]) - gelu(x[i])) / max(1, abs(Double(x[i])))
                    let e2 = abs(Double(gg.data[i]) - gelu(x[i]) * Double(up[i])) / max(1, abs(Double(x[i])))
                    let e3 = abs(Double(sm.data[i]) - wantSM[i])
                    worst = max(worst, e1, e2, e3)
                    #expect(e1 <= 1e-6 && e2 <= 1e-6 && e3 <= 1e-6, "\(level.name) at \(i): x \(x[i]) gelu \(e1) geglu \(e2) softmax \(e3)")
                }
            }
        }
        // An element's GELU does not depend on where it sits: the same values in arrays of other
        // lengths and offsets give the same bits (the staged prefill relies on it).
        for level in KernelTests.levels {
            Kernels.withISA(level) {
                let whole = Matrix(rows: 1, cols: x.count, values: x)
                Ops.gelu(whole, exact: false)
                for (start, count) in [(0, 5), (3, 16), (7, 37), (50, 300)] {
                    let part = Matrix(rows: 1, cols: count, values: Array(x[start..<start + count]))
                    Ops.gelu(part, exact: false)
                    #expect((0..<count).allSatisfy { part.data[$0].bitPattern == whole.data[start + $0].bitPattern },
                            "\(level.name): GELU of x[\(start)..<\(start + count)] alone differs from the same values in the whole array")
                }
            }
        }
        print("GELU, GeGLU, softmax on every level: worst difference \(worst)")
    }

    @Test("rotary embedding (half-split) against a float64 reference")
    func rope() {
        var rng = SeededRandom(9)
        let heads = 3, dim = 16, rows = 5
        let x = Matrix(rows: rows, cols: heads * dim, values: rng.floats(rows * heads * dim))
        let original = x.values
        let positions: [Float] = [1, 2, 7, 100, 4000]
        let invFreq = (0..<dim / 2).map { 1 / powf(10000, Float(2 * $0) / Float(dim)) }
        Ops.rope(x, heads: heads, dim: dim, positions: positions, invFreq: invFreq)
        var want = original.map(Double.init)
        for r in 0..<rows {
            for h in 0..<heads {
                for i in 0..<dim / 2 {
                    let angle = Double(positions[r] * invFreq[i])
                    let a = Double(original[r * heads * dim + h * dim + i])
                    let b = Double(original[r * heads * dim + h * dim + i + dim / 2])
                    want[r * heads * dim + h * dim + i] = a * cos(angle) - b * sin(angle)
                    want[r * heads * dim + h * dim + i + dim / 2] = b * cos(angle) + a * sin(angle)
                }
            }
        }
        let (d, at) = maxAbsDiff(x.values, want.map(Float.init))
        print("rope: max |diff| \(d)")
        #expect(d <= 1e-5, "rope: \(d) at \(at)")
    }

    @Test("bfloat16 and float16 conversions round to nearest even and keep specials")
    func conversions() {
        // bf16: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> even (1); 1 + 3·2^-8 -> 1 + 2^-6
        #expect(pg_bf16_round(1 + 1.0 / 256) == 1)
        #expect(pg_bf16_round(1 + 3.0 / 256) == 1 + 1.0 / 64)
        #expect(pg_bf16_round(Float(2).squareRoot() * 32) == 45.25)  // sqrt(2048) in bf16
        #expect(pg_bf16_round(.infinity) == .infinity)
        #expect(pg_bf16_round(.nan).isNaN)
        // f16: max finite, overflow, subnormals, ties
        #expect(pg_f16_round(65504) == 65504)
        #expect(pg_f16_round(65520) == .infinity)
        #expect(pg_f16_round(Float(pow(2.0, -24.0))) == Float(pow(2.0, -24.0)))
        #expect(pg_f16_round(Float(pow(2.0, -25.0))) == 0)  // tie -> even (0)
        #expect(pg_f16_round(Float(pow(2.0, -25.0) * 3)) == Float(pow(2.0, -23.0)))
        #expect(pg_f16_round(1 + 1.0 / 2048) == 1)  // tie -> even
        #expect(pg_f16_round(-2.5) == -2.5)
        #expect(pg_f16_round(.nan).isNaN)
        // round trip of every f16 bit pattern through float32
        var mismatches = 0
        for bits in 0..<UInt16.max {
            if (bits & 0x7C00) == 0x7C00 && (bits & 0x3FF) != 0 { continue }  // NaNs
            var h = bits
            var f: Float = 0
            var back: UInt16 = 0
            pg_convert_to_f32(&h, Int32(PG_F16.rawValue), &f, 1)
            pg_convert_from_f32(&f, Int32(PG_F16.rawValue), &back, 1)
            if back != bits { mismatches += 1 }
        }
        #expect(mismatches == 0, "\(mismatches) float16 values do not survive a round trip")
    }

    @Test("the thread pool runs every task exactly once, also when nested")
    func threadPool() {
        final class Box: @unchecked Sendable { var hits = [Int32](repeating: 0, count: 1000) }
        let box = Box()
        box.hits.withUnsafeMutableBufferPointer { buf in
            pg_parallel_for(1000, { ctx, i, _ in
                let p = ctx!.assumingMemoryBound(to: Int32.self)
                pg_parallel_for(3, { ctx2, _, _ in
                    ctx2!.assumingMemoryBound(to: Int32.self).pointee += 1
                }, p + Int(i))
            }, buf.baseAddress)
        }
        #expect(box.hits.allSatisfy { $0 == 3 })
        #expect(Kernels.threads >= 1)
    }
}

extension KernelTests {
    @Test("keepFreedMemory applies with glibc's allocator unless GLIBC_TUNABLES sets malloc tunables")
    func keepFreedMemory() {
        let result = pg_keep_freed_memory()
        #if canImport(Glibc)
        // 1 applied; -1 under a sanitizer's allocator (the sanitizer passes of .ci/run); never
        // refused by glibc (-2), and 0 only for the user's own tunables.
        let own = ProcessInfo.processInfo.environment["GLIBC_TUNABLES"]?.contains("glibc.malloc.") == true
        if own { #expect(result == 0) } else { #expect(result == 1 || result == -1, "pg_keep_freed_memory gave \(result)") }
        #expect(Kernels.keepFreedMemory() == (result == 1))
        #else
        #expect(result == -1 && !Kernels.keepFreedMemory())
        #endif
    }
}
