import CPaliGemmaKernels

// Attention and the data movement the models need (patches, embedding rows, row copies), as ops,
// so that the model files reach the kernels only through `Ops`.
//
// Shape letters: R rows of a batched call (the new tokens of every sequence, stacked), H query
// heads, Hkv key/value heads, Dh head width, N image tokens.

/// One sequence's part of a batched attention call: its rows of q, its cache (already holding
/// the keys and values of those rows), where the rows sit in the sequence, and its prefix.
public struct AttentionSegment: Sendable {
    /// Rows of q (and of the output) that belong to this sequence.
    public let rows: Range<Int>
    public let cache: KVCache
    /// Sequence index of the first row.
    public let start: Int
    /// Sequence indices below this form the bidirectional prefix.
    public let prefix: Int

    public init(rows: Range<Int>, cache: KVCache, start: Int, prefix: Int) {
        self.rows = rows
        self.cache = cache
        self.start = start
        self.prefix = prefix
    }
}

extension Ops {
    /// Attention of the rows of q [R, H·Dh] over their sequences' caches in `layer`, under the
    /// prefix-LM mask (key j is visible from index i when j <= i, within `window` if given, or
    /// when both are in the prefix), with logits q·k·scale, soft-capped when `softcap` is set.
    /// Rows of different segments never see each other. Returns [R, H·Dh].
    public static func attention(_ q: Matrix, segments: [AttentionSegment], layer: Int, heads: Int, kvHeads: Int,
                                 headDim: Int, window: Int?, scale: Float, softcap: Float?) -> Matrix {
        precondition(q.cols == heads * headDim)
        let out = Matrix(rows: q.rows, cols: q.cols)
        // Every segment's block table, one after another, alive while the kernel reads them.
        let tables = segments.flatMap { $0.cache.blocks }
        tables.withUnsafeBufferPointer { t in
            var seqs: [pg_attn_seq] = []
            var offset = 0
            for segment in segments {
                let pool = segment.cache.pool
                precondition(pool.kvWidth == kvHeads * headDim && segment.rows.upperBound <= q.rows)
                seqs.append(pg_attn_seq(row0: segment.rows.lowerBound, T: segment.rows.count,
                                        S: segment.start + segment.rows.count, q_start: segment.start,
                                        prefix: segment.prefix, k: pool.keys[layer], v: pool.values[layer],
                                        block_table: t.baseAddress.map { $0 + offset }, block_tokens: pool.blockTokens))
                offset += segment.cache.blocks.count
            }
            seqs.withUnsafeBufferPointer { s in
                pg_attention_batch(q.data, q.cols, out.data, out.cols, s.baseAddress, s.count, kvHeads * headDim,
                                   Int32(heads), Int32(kvHeads), Int32(headDim), window ?? 0, scale, softcap ?? 0)
            }
        }
        return out
    }

    /// Full (unmasked) multi-head attention of N tokens among themselves: q, k, v [N, H·Dh] -> [N, H·Dh].
    /// With `blocks` > 1 the rows are that many sequences of N / blocks tokens each (several
    /// images stacked), each attending only among itself. At fast precision (where the CPU has
    /// AVX512-BF16) both products run in bf16 as PyTorch's bf16 attention does
    /// (`pg_self_attention`); at exact precision in float32.
    public static func selfAttention(q: Matrix, k: Matrix, v: Matrix, heads: Int, headDim: Int, scale: Float, blocks: Int = 1) -> Matrix {
        precondition(q.cols == heads * headDim && k.cols == q.cols && v.cols == q.cols && k.rows == q.rows && v.rows == q.rows)
        precondition(blocks >= 1 && q.rows % blocks == 0, "the rows do not split into \(blocks) equal sequences")
        let out = Matrix(rows: q.rows, cols: q.cols)
        let n = q.rows / blocks
        for b in 0..<blocks {
            let at = b * n * q.cols
            pg_self_attention(q.data + at, k.data + at, v.data + at, q.cols, out.data + at, out.cols, n, Int32(heads),
                              Int32(headDim), scale)
        }
        return out
    }

    /// The P×P patches of an image [C, S, S] (CHW) as rows [G·G, C·P·P] (G = S / P): row
    /// gy·G + gx, column (c·P + ky)·P + kx — the order of a PyTorch conv weight [D, C, P, P].
    public static func patches(_ pixels: [Float], channels ch: Int, size s: Int, patch p: Int) -> Matrix {
        let g = s / p
        precondition(pixels.count == ch * s * s && g * p == s)
        let out = Matrix(rows: g * g, cols: ch * p * p)
        pixels.withUnsafeBufferPointer { px in
            guard let base = px.baseAddress else { return }
            for gy in 0..<g {
                for gx in 0..<g {
                    let row = out.row(gy * g + gx)
                    for c in 0..<ch {
                        for ky in 0..<p {
                            (row + (c * p + ky) * p).update(from: base + c * s * s + (gy * p + ky) * s + gx * p, count: p)
                        }
                    }
                }
            }
        }
        return out
    }

    /// dst[row] = table[index] · scale, converting from the table's dtype (an embedding lookup).
    public static func gatherRow(_ table: Tensor, _ index: Int, scale: Float = 1, into dst: Matrix, row: Int) {
        precondition(table.shape.count == 2 && table.shape[1] == dst.cols && index >= 0 && index < table.shape[0])
        table.copyRow(index, to: dst.row(row))
        if scale != 1 { pg_scale(dst.row(row), dst.cols, scale) }
    }

    /// The rows of src in `ranges`, one range after another: [Σ counts, cols].
    public static func gatherRows(_ src: Matrix, _ ranges: [Range<Int>]) -> Matrix {
        let out = Matrix(rows: ranges.reduce(0) { $0 + $1.count }, cols: src.cols)
        var at = 0
        for r in ranges {
            copyRows(src, r, into: out, at: at)
            at += r.count
        }
        return out
    }

    /// dst[dstRow + i] = src[srcRows.lowerBound + i].
    public static func copyRows(_ src: Matrix, _ srcRows: Range<Int>, into dst: Matrix, at dstRow: Int) {
        precondition(src.cols == dst.cols && srcRows.upperBound <= src.rows && dstRow + srcRows.count <= dst.rows)
        dst.row(dstRow).update(from: src.row(srcRows.lowerBound), count: srcRows.count * src.cols)
    }
}
