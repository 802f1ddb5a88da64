import Foundation
import CPaliGemmaKernels

// Attention for training: one sequence (or several stacked by rows, each attending only to
// itself), all of its tokens at once, keeping each head's probabilities for the backward pass.
// The same mask as inference (the prefix-LM rule with an optional window) and the same soft cap.
//
// Shape letters: T tokens, H query heads, Hkv key/value heads, Dh head width.

struct TrainAttention {
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let scale: Float
    let softcap: Float?
    let window: Int?
    /// Sequence indices below this see each other (T for the vision tower: no mask at all).
    let prefix: Int

    struct Saved {
        let q: Matrix, k: Matrix, v: Matrix  // [Tq, H·Dh], [T, Hkv·Dh], [T, Hkv·Dh] (after RoPE)
        let probs: [Matrix]  // per head [Tq, T]
        let capped: [Matrix]  // per head [Tq, T]: the soft-capped logits (with a soft cap)
    }

    /// The keys query i sees among t: key j is visible when j <= i inside the window (causal) or
    /// when i and j are both in the prefix. That is always one run: the prefix for a query inside
    /// it (its causal keys lie within), else the causal keys inside the window.
    func visibleColumns(_ i: Int, _ t: Int) -> Range<Int> {
        if i < prefix { return 0..<min(prefix, t) }
        return max(0, window.map { i - $0 + 1 } ?? 0)..<i + 1
    }

    // Products of head slices read in place: columns c0 ..< c0 + n of a [T, ·] matrix are its
    // data from c0 with the matrix's row stride, so no head is copied out.
    private static let f32 = Int32(PG_F32.rawValue)

    /// x[:, xc ..< xc + K] · w[:, wc ..< wc + K]ᵀ -> [x.rows, w.rows].
    static func productT(_ x: Matrix, _ xc: Int, _ w: Matrix, _ wc: Int, depth: Int) -> Matrix {
        let y = Matrix(rows: x.rows, cols: w.rows)
        pg_linear(x.data + xc, x.cols, w.data + wc, f32, w.cols, nil, y.data, y.cols, x.rows, w.rows, depth)
        return y
    }

    /// y[:, yc ..< yc + N] (=, or += with `accumulate`) a · w[:, wc ..< wc + N] for a [M, K], or
    /// aᵀ · w[:, wc ..< wc + N] for a [K, M] with `transposed`; w has K rows.
    static func product(_ a: Matrix, transposed: Bool = false, _ w: Matrix, _ wc: Int, width: Int, into y: Matrix, _ yc: Int,
                        accumulate: Bool) {
        let (m, k) = transposed ? (a.cols, a.rows) : (a.rows, a.cols)
        let part = accumulate ? Matrix(rows: m, cols: width) : nil
        let (out, ld) = part.map { ($0.data, width) } ?? (y.data + yc, y.cols)
        let kernel = transposed ? pg_matmul_ta : pg_matmul
        kernel(a.data, a.cols, w.data + wc, f32, w.cols, out, ld, m, width, k)
        if let part { addColumns(y, yc, part) }
    }

    static func addColumns(_ x: Matrix, _ c0: Int, _ part: Matrix) {
        for r in 0..<x.rows {
            let dst = x.row(r) + c0, src = part.row(r)
            for c in 0..<part.cols { dst[c] += src[c] }
        }
    }

    /// q [Tq, H·Dh], k and v [T, Hkv·Dh] -> [Tq, H·Dh]: the queries are the sequence's last Tq
    /// tokens (Tq <= T; all of them, or the rows a loss reads in a last layer).
    func forward(q: Matrix, k: Matrix, v: Matrix) -> (Matrix, Saved) {
        let t = k.rows, tq = q.rows, q0 = t - tq, group = heads / kvHeads
        precondition(tq <= t)
        let out = Matrix(rows: tq, cols: heads * headDim)
        var probs: [Matrix] = [], capped: [Matrix] = []
        for h in 0..<heads {
            let g = h / group
            let s = Self.productT(q, h * headDim, k, g * headDim, depth: headDim)  // [Tq, T]: logits, then probabilities
            if let cap = softcap {
                for i in 0..<s.count { s.data[i] = tanhf(s.data[i] * scale / cap) * cap }
                capped.append(s.rows(0..<tq))  // for the soft cap's derivative
            } else {
                Ops.scale(s, by: scale)
            }
            for i in 0..<tq {
                let seen = visibleColumns(q0 + i, t)
                pg_softmax_span(s.row(i), t, seen.lowerBound, seen.upperBound)
            }
            Self.product(s, v, g * headDim, width: headDim, into: out, h * headDim, accumulate: false)  // P V
            probs.append(s)
        }
        return (out, Saved(q: q, k: k, v: v, probs: probs, capped: capped))
    }

    /// dOut [Tq, H·Dh] -> (dq [Tq, H·Dh], dk, dv [T, Hkv·Dh]).
    func backward(_ dOut: Matrix, _ saved: Saved) -> (Matrix, Matrix, Matrix) {
        let t = saved.k.rows, tq = dOut.rows, group = heads / kvHeads
        let dq = Matrix(rows: tq, cols: heads * headDim)
        let dk = Matrix(rows: t, cols: kvHeads * headDim), dv = Matrix(rows: t, cols: kvHeads * headDim)
        for h in 0..<heads {
            let g = h / group
            // The group's first head writes dk and dv, the others add to them.
            let shared = h % group != 0
            let p = saved.probs[h]
            Self.product(p, transposed: true, dOut, h * headDim, width: headDim, into: dv, g * headDim, accumulate: shared)  // Pᵀ dO
            let dp = Self.productT(dOut, h * headDim, saved.v, g * headDim, depth: headDim)  // dO Vᵀ [Tq, T]
            // Softmax backward: dS = P ⊙ (dP - Σ_j dP·P), then the soft cap and the scale.
            for i in 0..<tq {
                let pr = p.row(i), dr = dp.row(i)
                var dot: Float = 0
                for j in 0..<t { dot += pr[j] * dr[j] }
                for j in 0..<t { dr[j] = pr[j] * (dr[j] - dot) }
            }
            if let c = softcap { Ops.softcapBackward(dp, output: saved.capped[h], cap: c) }
            Ops.scale(dp, by: scale)
            Self.product(dp, saved.k, g * headDim, width: headDim, into: dq, h * headDim, accumulate: false)  // dS K
            Self.product(dp, transposed: true, saved.q, h * headDim, width: headDim, into: dk, g * headDim, accumulate: shared)  // dSᵀ Q
        }
        return (dq, dk, dv)
    }
}

/// One sequence of a batch stacked by rows: rows start..<start+count, the first `prefix` of them
/// bidirectional (Int.max: all of them, as in the vision tower).
struct RowSegment: Sendable, Equatable {
    let start: Int
    let count: Int
    let prefix: Int

    var rows: Range<Int> { start..<start + count }
}

extension TrainAttention {
    func with(prefix: Int) -> TrainAttention {
        TrainAttention(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale, softcap: softcap, window: window, prefix: prefix)
    }

    /// Attention within each segment of rows stacked in k and v [ΣT, Hkv·Dh]: no row sees
    /// another segment's rows. q [ΣTq, H·Dh] holds the rows `queries` names (segment i's last
    /// queries[i].count tokens; nil: every row). -> [ΣTq, H·Dh] and what each segment's backward needs.
    func forward(q: Matrix, k: Matrix, v: Matrix, segments: [RowSegment], queries: [RowSegment]? = nil) -> (Matrix, [Saved]) {
        let queries = queries ?? segments
        if segments.count == 1, segments[0].start == 0, segments[0].count == k.rows, queries[0].count == q.rows {
            let (out, s) = with(prefix: segments[0].prefix).forward(q: q, k: k, v: v)
            return (out, [s])
        }
        let out = Matrix(rows: q.rows, cols: heads * headDim)
        var saves: [Saved] = []
        for (s, sq) in zip(segments, queries) {
            let (o, saved) = with(prefix: s.prefix).forward(q: q.rows(sq.rows), k: k.rows(s.rows), v: v.rows(s.rows))
            Ops.copyRows(o, 0..<sq.count, into: out, at: sq.start)
            saves.append(saved)
        }
        return (out, saves)
    }

    /// dOut [ΣTq, H·Dh] -> (dq [ΣTq, H·Dh], dk, dv [ΣT, Hkv·Dh]), segment by segment.
    func backward(_ dOut: Matrix, _ saved: [Saved], segments: [RowSegment], queries: [RowSegment]? = nil) -> (Matrix, Matrix, Matrix) {
        let queries = queries ?? segments
        let total = segments.last.map { $0.start + $0.count } ?? 0
        if segments.count == 1, segments[0].start == 0, queries[0].count == dOut.rows {
            return with(prefix: segments[0].prefix).backward(dOut, saved[0])
        }
        let dq = Matrix(rows: dOut.rows, cols: heads * headDim)
        let dk = Matrix(rows: total, cols: kvHeads * headDim), dv = Matrix(rows: total, cols: kvHeads * headDim)
        for ((s, sq), sv) in zip(zip(segments, queries), saved) {
            let (q, k, v) = with(prefix: s.prefix).backward(dOut.rows(sq.rows), sv)
            Ops.copyRows(q, 0..<sq.count, into: dq, at: sq.start)
            Ops.copyRows(k, 0..<s.count, into: dk, at: s.start)
            Ops.copyRows(v, 0..<s.count, into: dv, at: s.start)
        }
        return (dq, dk, dv)
    }
}
