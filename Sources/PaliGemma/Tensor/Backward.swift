import CPaliGemmaKernels
import Foundation

// Products and backward ops for training (llm.c's forward/backward pairs): the models' training
// forward keeps what these need, and they turn output gradients into input and parameter
// gradients. Matrix products run in the kernels; the elementwise ops are plain loops over rows.
//
// Shape letters: M rows (tokens), K depth, N columns, D width.

extension Ops {
    /// a · b for a [M, K] and b [K, N] (float32) -> [M, N].
    public static func matmul(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.cols == b.rows, "matmul: \(a.rows)x\(a.cols) · \(b.rows)x\(b.cols)")
        let y = Matrix(rows: a.rows, cols: b.cols)
        pg_matmul(a.data, a.cols, b.data, Int32(PG_F32.rawValue), b.cols, y.data, y.cols, a.rows, b.cols, a.cols)
        return y
    }

    /// a · bᵀ for a [M, K] and b [N, K] (float32) -> [M, N].
    public static func matmulTransposed(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.cols == b.cols, "matmulTransposed: \(a.rows)x\(a.cols) · (\(b.rows)x\(b.cols))ᵀ")
        let y = Matrix(rows: a.rows, cols: b.rows)
        pg_linear(a.data, a.cols, b.data, Int32(PG_F32.rawValue), b.cols, nil, y.data, y.cols, a.rows, b.rows, a.cols)
        return y
    }

    /// a · b as `matmul`, for b a weight (dX = dY · W through a trained float32 W): at the thread's
    /// precision, so FAST rounds both to bf16 (float32 sums) where a fast kernel exists.
    public static func matmulWeight(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.cols == b.rows, "matmulWeight: \(a.rows)x\(a.cols) · \(b.rows)x\(b.cols)")
        let y = Matrix(rows: a.rows, cols: b.cols)
        weightProduct(a, UnsafeRawPointer(b.data), Int32(PG_F32.rawValue), into: y)
        return y
    }

    /// y = x · w for w k-major [x.cols, y.cols] (row stride y.cols) in `dtype` (not 4-bit), at the
    /// thread's precision: `pg_matmul_fast` where FAST applies, else float32 `pg_matmul`.
    private static func weightProduct(_ x: Matrix, _ w: UnsafeRawPointer, _ dtype: Int32, into y: Matrix) {
        if pg_matmul_fast(x.data, x.cols, w, dtype, y.cols, nil, y.data, y.cols, x.rows, y.cols, x.cols) == 0 {
            pg_matmul(x.data, x.cols, w, dtype, y.cols, y.data, y.cols, x.rows, y.cols, x.cols)
        }
    }

    /// aᵀ · b for a [K, M] and b [K, N] (float32) -> [M, N] (e.g. dW = dYᵀ · X).
    public static func matmulTransposedA(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.rows == b.rows, "matmulTransposedA: (\(a.rows)x\(a.cols))ᵀ · \(b.rows)x\(b.cols)")
        let y = Matrix(rows: a.cols, cols: b.cols)
        pg_matmul_ta(a.data, a.cols, b.data, Int32(PG_F32.rawValue), b.cols, y.data, y.cols, a.cols, b.cols, a.rows)
        return y
    }

    /// xᵀ.
    public static func transpose(_ x: Matrix) -> Matrix {
        let y = Matrix(rows: x.cols, cols: x.rows)
        for r in 0..<x.rows {
            let src = x.row(r)
            for c in 0..<x.cols { y.data[c * x.rows + r] = src[c] }
        }
        return y
    }

    /// dX = dY · W for a linear layer y = x · Wᵀ with W [N, K] in any of its forms: dY [M, N] ->
    /// [M, K], at the thread's precision (FAST: bf16 products on the weights as stored, 4-bit
    /// ones included, where a fast kernel exists). int8 weights apply their row scales to dY
    /// first; in EXACT, 4-bit weights are expanded to float32 one block of rows at a time.
    public static func linearBackwardInput(_ dy: Matrix, _ w: MatrixWeight) -> Matrix {
        precondition(dy.cols == w.rows)
        let dx = Matrix(rows: dy.rows, cols: w.cols)
        switch w {
        case .dense(let t):
            guard let p = t.pointer, let kt = t.dtype.kernelType else { return dx }
            weightProduct(dy, p, kt, into: dx)
        case .int8(let t, let scales):
            guard let p = t.pointer else { return dx }
            let scaled = Matrix(rows: dy.rows, cols: dy.cols)
            for r in 0..<dy.rows {
                for c in 0..<dy.cols { scaled[r, c] = dy[r, c] * scales[c] }
            }
            weightProduct(scaled, p, Int32(PG_I8.rawValue), into: dx)
        case .int4(let packed, let scales):
            guard let p = packed.pointer, let s = scales.pointer else { return dx }
            if pg_matmul_fast(dy.data, dy.cols, p, Int32(PG_Q4.rawValue), w.cols, s.assumingMemoryBound(to: UInt16.self),
                              dx.data, dx.cols, dy.rows, w.cols, w.rows) != 0 { return dx }
            let block = max(1, min(w.rows, (1 << 22) / max(w.cols, 1)))  // rows of W expanded at a time (16 MB)
            let part = Matrix(rows: dy.rows, cols: w.cols)
            var r0 = 0
            while r0 < w.rows {
                let n = min(block, w.rows - r0)
                let wf = Matrix(rows: n, cols: w.cols)
                pg_dequantize_q4(p.assumingMemoryBound(to: UInt8.self) + r0 * w.cols / 2,
                                 s.assumingMemoryBound(to: UInt16.self) + r0 * (w.cols / MatrixWeight.int4Group),
                                 n, w.cols, wf.data)
                pg_matmul(dy.data + r0, dy.cols, wf.data, Int32(PG_F32.rawValue), wf.cols, part.data, part.cols,
                          dy.rows, w.cols, n)
                add(dx, part)
                r0 += n
            }
        }
        return dx
    }

    /// Column sums of dy [M, N] added into `into` [N] (a bias gradient).
    public static func addColumnSums(_ dy: Matrix, into g: UnsafeMutablePointer<Float>) {
        for r in 0..<dy.rows {
            let row = dy.row(r)
            for c in 0..<dy.cols { g[c] += row[c] }
        }
    }

    /// Backward of `rmsNorm` (y = x · r · (1 + w), r = rsqrt(mean(x²) + eps)) for rows of x:
    /// returns dx and adds dw += Σ_rows dy · x · r into `dw` when given.
    public static func rmsNormBackward(_ dy: Matrix, x: Matrix, weight: [Float], eps: Float,
                                       dw: UnsafeMutablePointer<Float>?) -> Matrix {
        let dx = Matrix(rows: x.rows, cols: x.cols)
        let n = x.cols
        for r in 0..<x.rows {
            let xr = x.row(r), g = dy.row(r), o = dx.row(r)
            var ss: Float = 0
            for c in 0..<n { ss += xr[c] * xr[c] }
            let rs = 1 / (ss / Float(n) + eps).squareRoot()
            var dot: Float = 0
            for c in 0..<n { dot += g[c] * (1 + weight[c]) * xr[c] }
            let k = dot * rs * rs * rs / Float(n)
            for c in 0..<n {
                o[c] = g[c] * (1 + weight[c]) * rs - xr[c] * k
                dw?[c] += g[c] * xr[c] * rs
            }
        }
        return dx
    }

    /// Backward of `layerNorm` (y = (x - mean) · r · w + b, r = rsqrt(var + eps)) for rows of x:
    /// returns dx and adds dw += Σ dy · x̂, db += Σ dy when given.
    public static func layerNormBackward(_ dy: Matrix, x: Matrix, weight: [Float], eps: Float,
                                         dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?) -> Matrix {
        let dx = Matrix(rows: x.rows, cols: x.cols)
        let n = x.cols
        var xhat = [Float](repeating: 0, count: n)
        for r in 0..<x.rows {
            let xr = x.row(r), g = dy.row(r), o = dx.row(r)
            var mean: Float = 0
            for c in 0..<n { mean += xr[c] }
            mean /= Float(n)
            var variance: Float = 0
            for c in 0..<n { variance += (xr[c] - mean) * (xr[c] - mean) }
            let rs = 1 / (variance / Float(n) + eps).squareRoot()
            var sumD: Float = 0, sumDX: Float = 0
            for c in 0..<n {
                xhat[c] = (xr[c] - mean) * rs
                let d = g[c] * weight[c]
                sumD += d
                sumDX += d * xhat[c]
                dw?[c] += g[c] * xhat[c]
                db?[c] += g[c]
            }
            let (mD, mDX) = (sumD / Float(n), sumDX / Float(n))
            for c in 0..<n { o[c] = rs * (g[c] * weight[c] - mD - xhat[c] * mDX) }
        }
        return dx
    }

    /// Backward of `gelu` given its input h: dh = dy · gelu'(h).
    public static func geluBackward(_ dy: Matrix, input h: Matrix, exact: Bool) -> Matrix {
        precondition(dy.count == h.count)
        let dh = Matrix(rows: h.rows, cols: h.cols)
        pg_geglu_backward(dy.data, h.data, nil, dh.data, nil, h.count, exact ? 1 : 0)
        return dh
    }

    /// Backward of GeGLU a = act(gate) · up: (dgate, dup).
    public static func gegluBackward(_ da: Matrix, gate: Matrix, up: Matrix, exact: Bool) -> (Matrix, Matrix) {
        precondition(da.count == gate.count && gate.count == up.count)
        let dg = Matrix(rows: gate.rows, cols: gate.cols), du = Matrix(rows: up.rows, cols: up.cols)
        pg_geglu_backward(da.data, gate.data, up.data, dg.data, du.data, gate.count, exact ? 1 : 0)
        return (dg, du)
    }

    /// Backward of the soft cap y = tanh(x / c) · c, given its output y: dx = dy · (1 - (y/c)²).
    public static func softcapBackward(_ dy: Matrix, output y: Matrix, cap: Float) {
        for i in 0..<dy.count {
            let t = y.data[i] / cap
            dy.data[i] *= 1 - t * t
        }
    }

    /// Backward of `rope`: the rotation by the opposite angles, in place on dy.
    public static func ropeBackward(_ dy: Matrix, heads: Int, dim: Int, positions: [Float], invFreq: [Float]) {
        rope(dy, heads: heads, dim: dim, positions: positions.map { -$0 }, invFreq: invFreq)
    }

    /// Cross-entropy of one row of logits z [count] against `target`: log Σ exp(z) - z[target]
    /// (in float64 sums). With `gradient`, writes (softmax(z) - onehot(target)) · weight there.
    public static func crossEntropy(_ z: UnsafePointer<Float>, count: Int, target: Int,
                                    gradient: UnsafeMutablePointer<Float>? = nil, weight: Float = 1) -> Double {
        var mx = -Float.infinity
        for j in 0..<count { mx = max(mx, z[j]) }
        var sum = 0.0
        for j in 0..<count { sum += exp(Double(z[j] - mx)) }
        if let g = gradient {
            for j in 0..<count { g[j] = Float(exp(Double(z[j] - mx)) / sum) * weight }
            g[target] -= weight
        }
        return log(sum) + Double(mx) - Double(z[target])
    }

    /// x += y · s.
    public static func addScaled(_ x: Matrix, _ y: Matrix, _ s: Float) {
        precondition(x.count == y.count)
        for i in 0..<x.count { x.data[i] += y.data[i] * s }
    }
}
