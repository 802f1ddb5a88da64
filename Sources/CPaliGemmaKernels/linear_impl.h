// Matrix kernels written once over a vector abstraction and included by linear_avx2.c and
// linear_avx512.c with their own macros. Included files define:
//   PG_TARGET  function attribute selecting the instruction set
//   PG_NAME(x) name mangling (x ## _avx2)
//   VF, VW     vector type and width in floats
//   VZERO(), VSET1(f), VLOADU(p), VSTOREU(p, v), VADD(a, b), VFMA(a, b, c) = a*b+c, VHSUM(v)
//   VLOAD_BF16(p), VLOAD_F16(p)  load VW 16-bit values and widen to float
//   PG_GEMV_FOUR_ROWS  1: a one-row decode reads four weight rows side by side (gemv4); 0: one
//                      row at a time (gemv1), whichever streams faster on that level's CPUs
//   PG_TRANSPOSE(r)    (optional) in-register transpose of VW vectors of VW floats: full weight
//                      panels are packed through it, else column by column
//
// Prefill (M > PG_GEMV_ROWS): the weight columns are packed, KC at a time, into a float panel of
// NR = 2*VW columns, and a 6 x NR register-blocked micro-kernel sweeps all rows of x.
// Decode and batched decode (M <= PG_GEMV_ROWS): each weight row is streamed once and dotted
// with the few rows of x (from three rows on, two weight rows at a time; bf16 weights with 2 or
// more rows on the AVX2 level go to linear_avx2.c's register tiles instead, linear.c X_EO).

#define MR PG_GEMM_MR
#define NR (2 * VW)
#define KC PG_GEMM_KC
// Everything below is forced inline into one body per weight dtype, so that the dtype switch in
// load_w folds away and each inner loop is straight-line SIMD.
#define PG_INLINE PG_TARGET static inline __attribute__((always_inline))

PG_INLINE VF PG_NAME(load_w)(const void *w, int dtype, long i) {
    switch (dtype) {
    case PG_BF16: return VLOAD_BF16((const uint16_t *)w + i);
    case PG_F16: return VLOAD_F16((const uint16_t *)w + i);
    case PG_I8: return VLOAD_I8((const int8_t *)w + i);
    default: return VLOADU((const float *)w + i);
    }
}

// panel[k * NR + j] = w[nb + j][kc0 + k] as float (or, with kn, float32 w[kc0 + k][nb + j]);
// columns j >= nr are zero.
PG_INLINE void PG_NAME(pack)(float *panel, const void *w, int dtype, int kn, long ldw, long nb, long nr,
                                    long kc0, long kc) {
    if (kn) {  // already k-major: copy (and widen) rows of the panel
        for (long k = 0; k < kc; k++) {
            long src = (kc0 + k) * ldw + nb;
            float *dst = panel + k * NR;
            if (nr == NR) {
                for (int j = 0; j < NR; j += VW) VSTOREU(dst + j, PG_NAME(load_w)(w, dtype, src + j));
            } else {
                for (long j = 0; j < NR; j++) dst[j] = j < nr ? pg_load_as_f32(w, dtype, src + j) : 0.0f;
            }
        }
        return;
    }
#ifdef PG_TRANSPOSE
    if (nr == NR) {  // full panel: VW rows x VW k at a time through registers
        long k = 0;
        for (; k + VW <= kc; k += VW) {
            for (long j0 = 0; j0 < NR; j0 += VW) {
                VF r[VW];
                for (int t = 0; t < VW; t++) r[t] = PG_NAME(load_w)(w, dtype, (nb + j0 + t) * ldw + kc0 + k);
                PG_TRANSPOSE(r);
                for (int t = 0; t < VW; t++) VSTOREU(panel + (k + t) * NR + j0, r[t]);
            }
        }
        for (; k < kc; k++)
            for (long j = 0; j < NR; j++) panel[k * NR + j] = pg_load_as_f32(w, dtype, (nb + j) * ldw + kc0 + k);
        return;
    }
#endif
    for (long j = 0; j < NR; j++) {
        if (j >= nr) {
            for (long k = 0; k < kc; k++) panel[k * NR + j] = 0.0f;
            continue;
        }
        long row = (nb + j) * ldw + kc0;
        long k = 0;
        float tmp[VW];
        for (; k + VW <= kc; k += VW) {
            VSTOREU(tmp, PG_NAME(load_w)(w, dtype, row + k));
            for (int t = 0; t < VW; t++) panel[(k + t) * NR + j] = tmp[t];
        }
        for (; k < kc; k++) panel[k * NR + j] = pg_load_as_f32(w, dtype, row + k);
    }
}

// c[i][0..NR) += sum_k a[k * MR + i] * panel[k][0..NR) for i < MR (= instead of += when first);
// c row stride ldc.
PG_INLINE void PG_NAME(micro)(long kc, const float *a, const float *panel, float *c, long ldc, int first) {
    // C rows sit far apart in memory and are cold after the previous depth block: prefetch them
    // now and touch them only after the k loop, so the loads do not stall it.
    if (!first) {
        for (int i = 0; i < MR; i++) {
            __builtin_prefetch(c + i * ldc, 1, 3);
            __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
        }
    }
    VF c00 = VZERO(), c01 = VZERO(), c10 = VZERO(), c11 = VZERO(), c20 = VZERO(), c21 = VZERO();
    VF c30 = VZERO(), c31 = VZERO(), c40 = VZERO(), c41 = VZERO(), c50 = VZERO(), c51 = VZERO();
    for (long k = 0; k < kc; k++) {
        VF b0 = VLOADU(panel + k * NR), b1 = VLOADU(panel + k * NR + VW);
        const float *ak = a + k * MR;
        VF x;
        x = VSET1(ak[0]); c00 = VFMA(x, b0, c00); c01 = VFMA(x, b1, c01);
        x = VSET1(ak[1]); c10 = VFMA(x, b0, c10); c11 = VFMA(x, b1, c11);
        x = VSET1(ak[2]); c20 = VFMA(x, b0, c20); c21 = VFMA(x, b1, c21);
        x = VSET1(ak[3]); c30 = VFMA(x, b0, c30); c31 = VFMA(x, b1, c31);
        x = VSET1(ak[4]); c40 = VFMA(x, b0, c40); c41 = VFMA(x, b1, c41);
        x = VSET1(ak[5]); c50 = VFMA(x, b0, c50); c51 = VFMA(x, b1, c51);
    }
#define PG_ACC(i, v0, v1) \
    VSTOREU(c + i * ldc, VADD(VLOADU(c + i * ldc), v0)); VSTOREU(c + i * ldc + VW, VADD(VLOADU(c + i * ldc + VW), v1));
#define PG_SET(i, v0, v1) VSTOREU(c + i * ldc, v0); VSTOREU(c + i * ldc + VW, v1);
    if (first) {
        PG_SET(0, c00, c01) PG_SET(1, c10, c11) PG_SET(2, c20, c21)
        PG_SET(3, c30, c31) PG_SET(4, c40, c41) PG_SET(5, c50, c51)
    } else {
        PG_ACC(0, c00, c01) PG_ACC(1, c10, c11) PG_ACC(2, c20, c21)
        PG_ACC(3, c30, c31) PG_ACC(4, c40, c41) PG_ACC(5, c50, c51)
    }
#undef PG_ACC
#undef PG_SET
}

// Dot products of one weight row with `rows` (1..4) rows of x.
PG_INLINE void PG_NAME(gemv_row)(const float *x, long ldx, long rows, const void *w, int dtype,
                                        long row, long K, float out[4]) {
    VF acc0 = VZERO(), acc1 = VZERO(), acc2 = VZERO(), acc3 = VZERO();
    long k = 0;
    for (; k + VW <= K; k += VW) {
        VF wv = PG_NAME(load_w)(w, dtype, row + k);
        acc0 = VFMA(VLOADU(x + k), wv, acc0);
        if (rows > 1) acc1 = VFMA(VLOADU(x + ldx + k), wv, acc1);
        if (rows > 2) acc2 = VFMA(VLOADU(x + 2 * ldx + k), wv, acc2);
        if (rows > 3) acc3 = VFMA(VLOADU(x + 3 * ldx + k), wv, acc3);
    }
    out[0] = VHSUM(acc0); out[1] = VHSUM(acc1); out[2] = VHSUM(acc2); out[3] = VHSUM(acc3);
    for (; k < K; k++) {
        float wk = pg_load_as_f32(w, dtype, row + k);
        for (long m = 0; m < rows; m++) out[m] += x[m * ldx + k] * wk;
    }
}

// Dot products of two weight rows with `rows` (1..PG_GEMV_ROWS) rows of x: each load of x serves
// both weight rows, which halves the reads of x (for several rows of x these no longer fit L1
// beside the weight stream, and their reads, not the weights', bound the loop).
PG_INLINE void PG_NAME(gemv_row2)(const float *x, long ldx, const long rows, const void *w, int dtype,
                                         long row0, long row1, long K, float out0[PG_GEMV_ROWS],
                                         float out1[PG_GEMV_ROWS]) {
    VF a[PG_GEMV_ROWS], b[PG_GEMV_ROWS];
    for (long m = 0; m < rows; m++) a[m] = b[m] = VZERO();
    long k = 0;
    for (; k + VW <= K; k += VW) {
        VF w0 = PG_NAME(load_w)(w, dtype, row0 + k), w1 = PG_NAME(load_w)(w, dtype, row1 + k);
        for (long m = 0; m < rows; m++) {
            VF xv = VLOADU(x + m * ldx + k);
            a[m] = VFMA(xv, w0, a[m]);
            b[m] = VFMA(xv, w1, b[m]);
        }
    }
    for (long m = 0; m < rows; m++) {
        out0[m] = VHSUM(a[m]);
        out1[m] = VHSUM(b[m]);
    }
    for (; k < K; k++) {
        float w0 = pg_load_as_f32(w, dtype, row0 + k), w1 = pg_load_as_f32(w, dtype, row1 + k);
        for (long m = 0; m < rows; m++) {
            out0[m] += x[m * ldx + k] * w0;
            out1[m] += x[m * ldx + k] * w1;
        }
    }
}

// One row of x against one weight row (every row without PG_GEMV_FOUR_ROWS, else the last one to
// three rows of a range): four accumulators hide the FMA latency and a software prefetch runs
// ahead.
PG_INLINE float PG_NAME(gemv1)(const float *x, const void *w, int dtype, long row, long K) {
    VF a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO();
    const char *base = (const char *)w + (size_t)row * pg_dtype_size(dtype);
    long k = 0;
    for (; k + 4 * VW <= K; k += 4 * VW) {
        __builtin_prefetch(base + (k + 4 * VW) * pg_dtype_size(dtype) + 1024, 0, 3);
        a0 = VFMA(VLOADU(x + k), PG_NAME(load_w)(w, dtype, row + k), a0);
        a1 = VFMA(VLOADU(x + k + VW), PG_NAME(load_w)(w, dtype, row + k + VW), a1);
        a2 = VFMA(VLOADU(x + k + 2 * VW), PG_NAME(load_w)(w, dtype, row + k + 2 * VW), a2);
        a3 = VFMA(VLOADU(x + k + 3 * VW), PG_NAME(load_w)(w, dtype, row + k + 3 * VW), a3);
    }
    for (; k + VW <= K; k += VW) a0 = VFMA(VLOADU(x + k), PG_NAME(load_w)(w, dtype, row + k), a0);
    float out = VHSUM(VADD(VADD(a0, a1), VADD(a2, a3)));
    for (; k < K; k++) out += x[k] * pg_load_as_f32(w, dtype, row + k);
    return out;
}

// One row of x against 4 weight rows at once (a single sequence's decode step), each row
// prefetched PG_GEMV_PREFETCH bytes ahead: where the rows are short (4 KB at a depth of 2048 in
// bf16) that reaches the next four rows, which the hardware prefetchers alone, seeing four
// streams that each stop after a few KB, leave to demand misses. In a harness over 512 MB of bf16
// weights (2 threads, Zen 4, six alternating runs) this took 13-18 ms where one row at a time
// had taken 16-21.
PG_INLINE void PG_NAME(gemv4)(const float *x, const void *w, int dtype, long ldw, long n,
                                     long K, float out[4]) {
    VF a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO();
    long r0 = n * ldw, r1 = r0 + ldw, r2 = r1 + ldw, r3 = r2 + ldw;
    long k = 0;
    size_t es = pg_dtype_size(dtype);
    const char *wb = (const char *)w;
    for (; k + VW <= K; k += VW) {
        VF xv = VLOADU(x + k);
        if (((size_t)k * es) % 64 == 0) {  // once per cache line of each row
            __builtin_prefetch(wb + ((size_t)r0 + (size_t)k) * es + PG_GEMV_PREFETCH, 0, 2);
            __builtin_prefetch(wb + ((size_t)r1 + (size_t)k) * es + PG_GEMV_PREFETCH, 0, 2);
            __builtin_prefetch(wb + ((size_t)r2 + (size_t)k) * es + PG_GEMV_PREFETCH, 0, 2);
            __builtin_prefetch(wb + ((size_t)r3 + (size_t)k) * es + PG_GEMV_PREFETCH, 0, 2);
        }
        a0 = VFMA(xv, PG_NAME(load_w)(w, dtype, r0 + k), a0);
        a1 = VFMA(xv, PG_NAME(load_w)(w, dtype, r1 + k), a1);
        a2 = VFMA(xv, PG_NAME(load_w)(w, dtype, r2 + k), a2);
        a3 = VFMA(xv, PG_NAME(load_w)(w, dtype, r3 + k), a3);
    }
    out[0] = VHSUM(a0); out[1] = VHSUM(a1); out[2] = VHSUM(a2); out[3] = VHSUM(a3);
    for (; k < K; k++) {
        float xk = x[k];
        out[0] += xk * pg_load_as_f32(w, dtype, r0 + k);
        out[1] += xk * pg_load_as_f32(w, dtype, r1 + k);
        out[2] += xk * pg_load_as_f32(w, dtype, r2 + k);
        out[3] += xk * pg_load_as_f32(w, dtype, r3 + k);
    }
}

PG_INLINE void PG_NAME(gemm)(const float *x, long ldx, const float *apre, const void *w, const int dtype, const int kn,
                             long ldw, const float *bias, float *y, long ldy, long M, long n0, long n1, long K, int thread);

PG_INLINE void PG_NAME(linear_cols)(const float *x, long ldx, const void *w, const int dtype, long ldw,
                                    const float *bias, float *y, long ldy, long M, long n0, long n1,
                                    long K, int thread) {
    if (M <= PG_GEMV_ROWS) {
        long n = n0;
        if (M == 1 && PG_GEMV_FOUR_ROWS) {
            for (; n + 4 <= n1; n += 4) {
                float out[4];
                PG_NAME(gemv4)(x, w, dtype, ldw, n, K, out);
                for (int j = 0; j < 4; j++) y[n + j] = out[j] + (bias ? bias[n + j] : 0.0f);
            }
        }
        if (M == 1) {
            for (; n < n1; n++) y[n] = PG_NAME(gemv1)(x, w, dtype, n * ldw, K) + (bias ? bias[n] : 0.0f);
        }
        if (M >= 3) {
            // Weight rows two at a time, one loop body per row count (a constant in each).
#define PG_GEMV_PAIRS(R)                                                                            \
            case R:                                                                                 \
                for (; n + 2 <= n1; n += 2) {                                                       \
                    float o0[PG_GEMV_ROWS], o1[PG_GEMV_ROWS];                                       \
                    PG_NAME(gemv_row2)(x, ldx, R, w, dtype, n * ldw, (n + 1) * ldw, K, o0, o1);      \
                    for (long m = 0; m < R; m++) {                                                  \
                        y[m * ldy + n] = o0[m] + (bias ? bias[n] : 0.0f);                           \
                        y[m * ldy + n + 1] = o1[m] + (bias ? bias[n + 1] : 0.0f);                   \
                    }                                                                               \
                }                                                                                   \
                break;
            switch (M) {
            PG_GEMV_PAIRS(3) PG_GEMV_PAIRS(4) PG_GEMV_PAIRS(5) PG_GEMV_PAIRS(6) PG_GEMV_PAIRS(7) PG_GEMV_PAIRS(8)
            default: break;
            }
#undef PG_GEMV_PAIRS
        }
        for (; n < n1; n++) {  // one or two rows of x, or the last weight row
            for (long m0 = 0; m0 < M; m0 += 4) {
                long rows = M - m0 < 4 ? M - m0 : 4;
                float out[4];
                PG_NAME(gemv_row)(x + m0 * ldx, ldx, rows, w, dtype, n * ldw, K, out);
                for (long m = 0; m < rows; m++) y[(m0 + m) * ldy + n] = out[m] + (bias ? bias[n] : 0.0f);
            }
        }
        return;
    }
    PG_NAME(gemm)(x, ldx, NULL, w, dtype, 0, ldw, bias, y, ldy, M, n0, n1, K, thread);
}

// Blocked product for any M: y[m][n] = bias[n] + sum_k x[m][k] * W(n, k), W(n, k) = w[n][k], or
// w[k][n] with kn. x comes packed by pg_pack_a in apre, or is packed here per depth block.
PG_INLINE void PG_NAME(gemm)(const float *x, long ldx, const float *apre, const void *w, const int dtype, const int kn,
                             long ldw, const float *bias, float *y, long ldy, long M, long n0, long n1, long K, int thread) {
    if (K <= 0) {
        for (long m = 0; m < M; m++)
            for (long n = n0; n < n1; n++) y[m * ldy + n] = bias ? bias[n] : 0.0f;
        return;
    }
    long mblocks = (M + MR - 1) / MR;
    float *panel = pg_scratch(thread, 0, (size_t)KC * NR);
    float *apack = apre ? NULL : pg_scratch(thread, 2, (size_t)mblocks * MR * KC);
    if (!panel || (!apre && !apack)) return;
    float edge[MR * NR];
    for (long kc0 = 0; kc0 < K; kc0 += KC) {
        long kc = K - kc0 < KC ? K - kc0 : KC;
        if (apre) apack = (float *)apre + mblocks * MR * kc0;
        // x[:, kc0:kc0+kc] in blocks of MR rows, k-major inside a block: apack[b][k][i].
        for (long b = 0; !apre && b < mblocks; b++) pg_pack_a_block(x, ldx, M, b, kc0, kc, apack + b * MR * kc);
        size_t es = pg_dtype_size(dtype);
        long row_lines = (long)((kc * es + 63) / 64);
        for (long nb = n0; nb < n1; nb += NR) {
            long nr = n1 - nb < NR ? n1 - nb : NR;
            PG_NAME(pack)(panel, w, dtype, kn, ldw, nb, nr, kc0, kc);
            // While this panel is in use, bring the next one's weight rows into L2 a few lines per
            // tile: read cold and strided, they would otherwise stall the next pack.
            long next_rows = kn ? 0 : (n1 - nb - NR < NR ? n1 - nb - NR : NR);
            long pf_total = next_rows > 0 ? next_rows * row_lines : 0, pf_done = 0;
            const char *pf_base = (const char *)w + ((size_t)(nb + NR) * ldw + kc0) * es;
            for (long mb = 0; mb < M; mb += MR) {
                long mr = M - mb < MR ? M - mb : MR;
                for (long target = pf_total * (mb / MR + 1) / mblocks; pf_done < target; pf_done++)
                    __builtin_prefetch(pf_base + (size_t)(pf_done / row_lines) * ldw * es + (size_t)(pf_done % row_lines) * 64, 0, 2);
                const float *a = apack + (mb / MR) * MR * kc;
                float *c = y + mb * ldy + nb;
                if (mr == MR && nr == NR) {
                    PG_NAME(micro)(kc, a, panel, c, ldy, kc0 == 0);
                } else {
                    if (kc0 > 0)
                        for (long i = 0; i < mr; i++)
                            for (long j = 0; j < nr; j++) edge[i * NR + j] = c[i * ldy + j];
                    PG_NAME(micro)(kc, a, panel, edge, NR, kc0 == 0);
                    for (long i = 0; i < mr; i++)
                        for (long j = 0; j < nr; j++) c[i * ldy + j] = edge[i * NR + j];
                }
            }
        }
    }
    if (bias)
        for (long m = 0; m < M; m++)
            for (long n = n0; n < n1; n++) y[m * ldy + n] += bias[n];
}

PG_TARGET void PG_NAME(pg_linear_cols)(const float *x, long ldx, const void *w, int dtype, long ldw,
                                       const float *bias, float *y, long ldy, long M, long n0, long n1,
                                       long K, int thread) {
    switch (dtype) {
    case PG_BF16: PG_NAME(linear_cols)(x, ldx, w, PG_BF16, ldw, bias, y, ldy, M, n0, n1, K, thread); break;
    case PG_F16: PG_NAME(linear_cols)(x, ldx, w, PG_F16, ldw, bias, y, ldy, M, n0, n1, K, thread); break;
    case PG_I8: PG_NAME(linear_cols)(x, ldx, w, PG_I8, ldw, bias, y, ldy, M, n0, n1, K, thread); break;
    default: PG_NAME(linear_cols)(x, ldx, w, PG_F32, ldw, bias, y, ldy, M, n0, n1, K, thread); break;
    }
}

PG_TARGET void PG_NAME(pg_gemm_packed)(const float *apack, const void *w, int dtype, int kn, long ldw,
                                       const float *bias, float *y, long ldy, long M, long n0, long n1, long K,
                                       int thread) {
    switch (dtype) {
    case PG_BF16: PG_NAME(gemm)(NULL, 0, apack, w, PG_BF16, kn, ldw, bias, y, ldy, M, n0, n1, K, thread); break;
    case PG_F16: PG_NAME(gemm)(NULL, 0, apack, w, PG_F16, kn, ldw, bias, y, ldy, M, n0, n1, K, thread); break;
    case PG_I8: PG_NAME(gemm)(NULL, 0, apack, w, PG_I8, kn, ldw, bias, y, ldy, M, n0, n1, K, thread); break;
    default: PG_NAME(gemm)(NULL, 0, apack, w, PG_F32, kn, ldw, bias, y, ldy, M, n0, n1, K, thread); break;
    }
}

PG_TARGET void PG_NAME(pg_matmul_cols)(const float *x, long ldx, const void *w, int dtype, long ldw, float *y,
                                       long ldy, long M, long n0, long n1, long K, int thread) {
    switch (dtype) {
    case PG_BF16: PG_NAME(gemm)(x, ldx, NULL, w, PG_BF16, 1, ldw, NULL, y, ldy, M, n0, n1, K, thread); break;
    case PG_F16: PG_NAME(gemm)(x, ldx, NULL, w, PG_F16, 1, ldw, NULL, y, ldy, M, n0, n1, K, thread); break;
    case PG_I8: PG_NAME(gemm)(x, ldx, NULL, w, PG_I8, 1, ldw, NULL, y, ldy, M, n0, n1, K, thread); break;
    default: PG_NAME(gemm)(x, ldx, NULL, w, PG_F32, 1, ldw, NULL, y, ldy, M, n0, n1, K, thread); break;
    }
}

PG_TARGET void PG_NAME(pg_matmul_kn)(const float *x, long ldx, const float *w, long ldw, float *y, long ldy,
                                     long M, long N, long K, int thread) {
    PG_NAME(gemm)(x, ldx, NULL, w, PG_F32, 1, ldw, NULL, y, ldy, M, 0, N, K, thread);
}

PG_TARGET void PG_NAME(pg_axpy_f32)(float *y, float alpha, const float *x, long n) {
    VF av = VSET1(alpha);
    long i = 0;
    for (; i + VW <= n; i += VW) VSTOREU(y + i, VFMA(av, VLOADU(x + i), VLOADU(y + i)));
    for (; i < n; i++) y[i] += alpha * x[i];
}

#undef MR
#undef NR
#undef KC
#undef PG_INLINE
#undef PG_GEMV_FOUR_ROWS
