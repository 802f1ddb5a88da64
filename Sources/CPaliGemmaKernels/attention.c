// Attention over a KV cache with the prefix-LM mask. One task per (query block, head), or in
// decode per (key/value head, query) for a group of heads: a block's scores live in per-thread
// scratch [rows, S], so memory stays O(rows * S) per thread and no [heads, T, S] matrix is ever
// formed.
#include "internal.h"
#include <math.h>

// Query rows per task. Each task packs all S keys and values for its products, so long
// sequences take bigger blocks (the packing is then shared by more rows); short ones keep
// blocks small enough to give every thread work.
#define PG_ATTN_QBLOCK_MAX 128

typedef struct {
    const float *q; long ldq; const float *k, *v; long ldkv; float *out; long ldo;
    long T, S; int Hq, Hkv, D; long q_start, prefix, window; float scale, softcap; int isa;
    long qblock;
} attn_job;

static inline void axpy(int isa, float *y, float a, const float *x, long n) {
    if (isa == PG_ISA_AVX512) { pg_axpy_f32_avx512(y, a, x, n); return; }
    if (isa == PG_ISA_AVX2) { pg_axpy_f32_avx2(y, a, x, n); return; }
    for (long i = 0; i < n; i++) y[i] += a * x[i];
}

/// scores[t][s] = q_t . k_s for a block of queries against keys [0, S), through the matrix kernel.
static void block_scores(int isa, const float *q, long ldq, long nq, const float *k, long ldkv, long S, int D,
                         float *scores, int thread) {
    switch (isa) {
    case PG_ISA_AVX512: pg_linear_cols_avx512(q, ldq, k, PG_F32, ldkv, NULL, scores, S, nq, 0, S, D, thread); break;
    case PG_ISA_AVX2: pg_linear_cols_avx2(q, ldq, k, PG_F32, ldkv, NULL, scores, S, nq, 0, S, D, thread); break;
    default: pg_linear_cols_scalar(q, ldq, k, PG_F32, ldkv, NULL, scores, S, nq, 0, S, D, thread);
    }
}

// Attention for `nq` query rows that share key/value head kvh: row r reads q at q0 + r * qs,
// writes out at o0 + r * os, and sits at sequence position pos0 + r * pos_step.
static void attend(const attn_job *j, int kvh, const float *q0, long qs, float *o0, long os, long nq,
                   long pos0, long pos_step, int thread) {
    float *scores = pg_scratch(thread, 1, (size_t)nq * j->S);
    if (!scores) return;
    // All the block's logits at once (a small matrix multiply), then mask and softmax row by row.
    block_scores(j->isa, q0, qs, nq, j->k + (long)kvh * j->D, j->ldkv, j->S, j->D, scores, thread);
    long blo = j->S, bhi = -1;  // union of the rows' visible spans
    long lo_of[PG_ATTN_QBLOCK_MAX], hi_of[PG_ATTN_QBLOCK_MAX];
    for (long r = 0; r < nq; r++) {
        long i = pos0 + r * pos_step;
        float *row = scores + r * j->S;
        // Visible keys form at most two ranges: [0, prefix) when i is in the prefix, and the
        // causal window (i - window, i]. For a prefix row the first contains the second, and
        // otherwise only the second applies, so the visible keys are exactly one span [lo, hi].
        long lo = 0, hi = i < j->S - 1 ? i : j->S - 1;
        int in_prefix = i < j->prefix;
        if (in_prefix && j->prefix - 1 > hi) hi = j->prefix - 1 < j->S - 1 ? j->prefix - 1 : j->S - 1;
        if (j->window > 0 && !in_prefix) lo = i - j->window + 1 > 0 ? i - j->window + 1 : 0;
        long n = hi - lo + 1;
        float *x = row + lo, mx = -INFINITY;
        if (n > 0) {
            if (j->softcap > 0) {
                for (long s = 0; s < n; s++) {
                    x[s] = tanhf(x[s] * j->scale / j->softcap) * j->softcap;
                    if (x[s] > mx) mx = x[s];
                }
            } else {
                mx = pg_scale_max(j->isa, x, n, j->scale);
            }
        }
        if (mx == -INFINITY) n = 0, hi = lo - 1;  // nothing visible (only when the cache is empty)
        float sum = pg_exp_shift_sum(j->isa, x, n, mx);
        float inv = sum > 0 ? 1.0f / sum : 0.0f;
        for (long s = 0; s < n; s++) x[s] *= inv;
        lo_of[r] = lo;
        hi_of[r] = hi;
        if (hi >= lo) {
            if (lo < blo) blo = lo;
            if (hi > bhi) bhi = hi;
        }
    }
    // out[r] = sum_s p[r, s] v[s, kvh]: for a block, one matrix multiply over the union of the
    // spans (zeros where a row sees nothing); for one to four rows, a weighted sum of V rows.
    const float *vh = j->v + (long)kvh * j->D;
    if (nq > 4 && bhi >= blo) {
        for (long r = 0; r < nq; r++) {
            float *row = scores + r * j->S;
            for (long s = blo; s < lo_of[r] && s <= bhi; s++) row[s] = 0.0f;
            for (long s = hi_of[r] + 1 > blo ? hi_of[r] + 1 : blo; s <= bhi; s++) row[s] = 0.0f;
        }
        long n = bhi - blo + 1;
        switch (j->isa) {
        case PG_ISA_AVX512: pg_matmul_kn_avx512(scores + blo, j->S, vh + blo * j->ldkv, j->ldkv, o0, os, nq, j->D, n, thread); break;
        case PG_ISA_AVX2: pg_matmul_kn_avx2(scores + blo, j->S, vh + blo * j->ldkv, j->ldkv, o0, os, nq, j->D, n, thread); break;
        default: pg_matmul_kn_scalar(scores + blo, j->S, vh + blo * j->ldkv, j->ldkv, o0, os, nq, j->D, n);
        }
        return;
    }
    for (long r = 0; r < nq; r++) {
        const float *row = scores + r * j->S;
        float *o = o0 + r * os;
        for (int d = 0; d < j->D; d++) o[d] = 0.0f;
        for (long s = lo_of[r]; s <= hi_of[r]; s++)
            if (row[s] != 0.0f) axpy(j->isa, o, row[s], vh + s * j->ldkv, j->D);
    }
}

// One task per (head, block of query rows).
static void attn_task(void *p, long task, int thread) {
    const attn_job *j = p;
    long nqb = (j->T + j->qblock - 1) / j->qblock;
    int h = (int)(task / nqb);
    long t0 = (task % nqb) * j->qblock;
    long t1 = t0 + j->qblock < j->T ? t0 + j->qblock : j->T;
    int kvh = h / (j->Hq / j->Hkv);
    attend(j, kvh, j->q + t0 * j->ldq + (long)h * j->D, j->ldq, j->out + t0 * j->ldo + (long)h * j->D, j->ldo,
           t1 - t0, j->q_start + t0, 1, thread);
}

// Decode with grouped keys (GQA/MQA): one task per (key/value head, query row) covering the
// group's query heads, which sit side by side in the row. The group reads its keys and values
// once instead of once per head.
static void attn_group_task(void *p, long task, int thread) {
    const attn_job *j = p;
    int g = j->Hq / j->Hkv;
    int kvh = (int)(task % j->Hkv);
    long t = task / j->Hkv;
    attend(j, kvh, j->q + t * j->ldq + (long)kvh * g * j->D, j->D, j->out + t * j->ldo + (long)kvh * g * j->D, j->D,
           g, j->q_start + t, 0, thread);
}

void pg_attention(const float *q, long ldq, const float *k, const float *v, long ldkv, float *out, long ldo,
                  long T, long S, int Hq, int Hkv, int D, long q_start, long prefix, long window, float scale,
                  float softcap) {
    pg_attention_isa(pg_isa(), q, ldq, k, v, ldkv, out, ldo, T, S, Hq, Hkv, D, q_start, prefix, window, scale, softcap);
}

void pg_attention_isa(int isa, const float *q, long ldq, const float *k, const float *v, long ldkv, float *out,
                      long ldo, long T, long S, int Hq, int Hkv, int D, long q_start, long prefix, long window,
                      float scale, float softcap) {
    if (isa > pg_isa_supported()) isa = pg_isa_supported();
    if (T <= 0 || Hq <= 0 || Hkv <= 0 || Hq % Hkv != 0) return;
    long qblock = S >= 2048 ? 128 : S >= 256 ? 64 : 16;
    if (qblock > T) qblock = T;
    attn_job j = { q, ldq, k, v, ldkv, out, ldo, T, S, Hq, Hkv, D, q_start, prefix, window, scale, softcap,
                   isa, qblock };
    int g = Hq / Hkv;
    if (T <= 4 && g > 1 && g <= PG_ATTN_QBLOCK_MAX) {
        pg_parallel_for(T * Hkv, attn_group_task, &j);
        return;
    }
    long nqb = (T + qblock - 1) / qblock;
    pg_parallel_for(nqb * Hq, attn_task, &j);
}
