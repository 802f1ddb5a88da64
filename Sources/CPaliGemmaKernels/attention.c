// Attention over KV caches with the prefix-LM mask, for a batch of sequences at once. One task
// per (sequence, query block, head), or in decode per (sequence, key/value head, query) for a
// group of heads: a block's scores live in per-thread scratch [rows, S], so memory stays
// O(rows * S) per thread and no [heads, T, S] matrix is ever formed. Keys and values sit in
// blocks of `block_tokens` rows named by a block table (a paged cache), or in one contiguous run.
#include "internal.h"
#include <math.h>
#include <stdlib.h>

// Query rows per task. Each task packs all S keys and values for its products, so long
// sequences take bigger blocks (the packing is then shared by more rows); short ones keep
// blocks small enough to give every thread work.
#define PG_ATTN_QBLOCK_MAX 128

typedef struct {
    const float *q; long ldq; float *out; long ldo; long ldkv;
    int Hq, Hkv, D; long window; float scale, softcap; int isa;
    const pg_attn_seq *seqs; long nseq;
    const long *task0;  // first task of each sequence; task0[nseq] = all tasks
} attn_job;

// Per-sequence task layout: grouped decode (T <= 4 with grouped heads) or query blocks.
static long seq_qblock(const pg_attn_seq *s) {
    long qb = s->S >= 2048 ? 128 : s->S >= 256 ? 64 : 16;
    return qb > s->T ? s->T : qb;
}
static int seq_grouped(const pg_attn_seq *s, int Hq, int Hkv) {
    int g = Hq / Hkv;
    return s->T <= 4 && g > 1 && g <= PG_ATTN_QBLOCK_MAX;
}
static long seq_tasks(const pg_attn_seq *s, int Hq, int Hkv) {
    if (s->T <= 0) return 0;
    if (seq_grouped(s, Hq, Hkv)) return s->T * Hkv;
    long qb = seq_qblock(s);
    return (s->T + qb - 1) / qb * Hq;
}

// Keys and values [s0, s0 + n) of a sequence lie in one run starting at the returned row; n is
// cut at the end of the block holding s0.
static long kv_run(const pg_attn_seq *s, long s0, long *n) {
    if (!s->block_table || s->block_tokens <= 0) return s0;
    long b = s0 / s->block_tokens, off = s0 % s->block_tokens;
    if (*n > s->block_tokens - off) *n = s->block_tokens - off;
    return (long)s->block_table[b] * s->block_tokens + off;
}

static inline void axpy(int isa, float *y, float a, const float *x, long n) {
#if PG_X86_SIMD
    if (isa == PG_ISA_AVX512) { pg_axpy_f32_avx512(y, a, x, n); return; }
    if (isa == PG_ISA_AVX2) { pg_axpy_f32_avx2(y, a, x, n); return; }
#else
    (void)isa;
#endif
    for (long i = 0; i < n; i++) y[i] += a * x[i];
}

/// scores[t][s] = q_t . k_s for nq queries against n keys of one run, through the matrix kernel.
static void block_scores(int isa, const float *q, long ldq, long nq, const float *k, long ldkv, long n, int D,
                         float *scores, long ld, int thread) {
    switch (isa) {
#if PG_X86_SIMD
    case PG_ISA_AVX512: pg_linear_cols_avx512(q, ldq, k, PG_F32, ldkv, NULL, scores, ld, nq, 0, n, D, thread); break;
    case PG_ISA_AVX2: pg_linear_cols_avx2(q, ldq, k, PG_F32, ldkv, NULL, scores, ld, nq, 0, n, D, thread); break;
#endif
    default: pg_linear_cols_scalar(q, ldq, k, PG_F32, ldkv, NULL, scores, ld, nq, 0, n, D, thread);
    }
}

/// y[r] = p[r, :n] . v for a run of n values (y row stride ldy).
static void block_pv(int isa, const float *p, long ldp, const float *v, long ldkv, float *y, long ldy, long nq, int D,
                     long n, int thread) {
    switch (isa) {
#if PG_X86_SIMD
    case PG_ISA_AVX512: pg_matmul_kn_avx512(p, ldp, v, ldkv, y, ldy, nq, D, n, thread); break;
    case PG_ISA_AVX2: pg_matmul_kn_avx2(p, ldp, v, ldkv, y, ldy, nq, D, n, thread); break;
#endif
    default: (void)thread; pg_matmul_kn_scalar(p, ldp, v, ldkv, y, ldy, nq, D, n);
    }
}

// Attention for `nq` query rows of sequence `s` that share key/value head kvh: row r reads q at
// q0 + r * qs, writes out at o0 + r * os, and sits at sequence position pos0 + r * pos_step.
static void attend(const attn_job *j, const pg_attn_seq *sq, int kvh, const float *q0, long qs, float *o0, long os,
                   long nq, long pos0, long pos_step, int thread) {
    const long S = sq->S;
    float *scores = pg_scratch(thread, 1, (size_t)nq * S);
    if (!scores) return;
    const float *kh = sq->k + (long)kvh * j->D, *vh = sq->v + (long)kvh * j->D;
    // All the block's logits at once (small matrix multiplies, one per run of keys), then mask
    // and softmax row by row.
    for (long s0 = 0; s0 < S;) {
        long n = S - s0, row = kv_run(sq, s0, &n);
        block_scores(j->isa, q0, qs, nq, kh + row * j->ldkv, j->ldkv, n, j->D, scores + s0, S, thread);
        s0 += n;
    }
    long blo = S, bhi = -1;  // union of the rows' visible spans
    long lo_of[PG_ATTN_QBLOCK_MAX], hi_of[PG_ATTN_QBLOCK_MAX];
    for (long r = 0; r < nq; r++) {
        long i = pos0 + r * pos_step;
        float *row = scores + r * S;
        // Visible keys form at most two ranges: [0, prefix) when i is in the prefix, and the
        // causal window (i - window, i]. For a prefix row the first contains the second, and
        // otherwise only the second applies, so the visible keys are exactly one span [lo, hi].
        long lo = 0, hi = i < S - 1 ? i : S - 1;
        int in_prefix = i < sq->prefix;
        if (in_prefix && sq->prefix - 1 > hi) hi = sq->prefix - 1 < S - 1 ? sq->prefix - 1 : S - 1;
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
    // out[r] = sum_s p[r, s] v[s, kvh]: for a block, matrix multiplies over the union of the
    // spans (zeros where a row sees nothing), one per run of values, the first stored and the
    // others added; for one to four rows, a weighted sum of V rows.
    if (nq > 4 && bhi >= blo) {
        for (long r = 0; r < nq; r++) {
            float *row = scores + r * S;
            for (long s = blo; s < lo_of[r] && s <= bhi; s++) row[s] = 0.0f;
            for (long s = hi_of[r] + 1 > blo ? hi_of[r] + 1 : blo; s <= bhi; s++) row[s] = 0.0f;
        }
        float *part = NULL;
        for (long s0 = blo; s0 <= bhi;) {
            long n = bhi + 1 - s0, row = kv_run(sq, s0, &n);
            if (s0 == blo) {
                block_pv(j->isa, scores + s0, S, vh + row * j->ldkv, j->ldkv, o0, os, nq, j->D, n, thread);
            } else {
                if (!part) part = pg_scratch(thread, 3, (size_t)nq * j->D);
                if (!part) return;
                block_pv(j->isa, scores + s0, S, vh + row * j->ldkv, j->ldkv, part, j->D, nq, j->D, n, thread);
                for (long r = 0; r < nq; r++) axpy(j->isa, o0 + r * os, 1.0f, part + r * j->D, j->D);
            }
            s0 += n;
        }
        return;
    }
    for (long r = 0; r < nq; r++) {
        const float *row = scores + r * S;
        float *o = o0 + r * os;
        for (int d = 0; d < j->D; d++) o[d] = 0.0f;
        for (long s = lo_of[r]; s <= hi_of[r];) {
            long n = hi_of[r] + 1 - s, run = kv_run(sq, s, &n);
            for (long t = 0; t < n; t++)
                if (row[s + t] != 0.0f) axpy(j->isa, o, row[s + t], vh + (run + t) * j->ldkv, j->D);
            s += n;
        }
    }
}

// Task -> (sequence, task within it): the sequences' task ranges are in increasing order.
static long find_seq(const attn_job *j, long task) {
    long lo = 0, hi = j->nseq - 1;
    while (lo < hi) {
        long mid = (lo + hi + 1) / 2;
        if (j->task0[mid] <= task) lo = mid; else hi = mid - 1;
    }
    return lo;
}

static void attn_task(void *p, long task, int thread) {
    const attn_job *j = p;
    long si = find_seq(j, task);
    const pg_attn_seq *s = &j->seqs[si];
    long t = task - j->task0[si];
    const float *q = j->q + s->row0 * j->ldq;
    float *out = j->out + s->row0 * j->ldo;
    if (seq_grouped(s, j->Hq, j->Hkv)) {
        // Decode with grouped keys (GQA/MQA): one task per (key/value head, query row) covering the
        // group's query heads, which sit side by side in the row. The group reads its keys and
        // values once instead of once per head.
        int g = j->Hq / j->Hkv;
        int kvh = (int)(t % j->Hkv);
        long r = t / j->Hkv;
        attend(j, s, kvh, q + r * j->ldq + (long)kvh * g * j->D, j->D, out + r * j->ldo + (long)kvh * g * j->D, j->D,
               g, s->q_start + r, 0, thread);
        return;
    }
    // One task per (head, block of query rows).
    long qb = seq_qblock(s), nqb = (s->T + qb - 1) / qb;
    int h = (int)(t / nqb);
    long t0 = (t % nqb) * qb;
    long t1 = t0 + qb < s->T ? t0 + qb : s->T;
    int kvh = h / (j->Hq / j->Hkv);
    attend(j, s, kvh, q + t0 * j->ldq + (long)h * j->D, j->ldq, out + t0 * j->ldo + (long)h * j->D, j->ldo,
           t1 - t0, s->q_start + t0, 1, thread);
}

void pg_attention_batch(const float *q, long ldq, float *out, long ldo, const pg_attn_seq *seqs, long nseq, long ldkv,
                        int Hq, int Hkv, int D, long window, float scale, float softcap) {
    pg_attention_batch_isa(pg_isa(), q, ldq, out, ldo, seqs, nseq, ldkv, Hq, Hkv, D, window, scale, softcap);
}

void pg_attention_batch_isa(int isa, const float *q, long ldq, float *out, long ldo, const pg_attn_seq *seqs,
                            long nseq, long ldkv, int Hq, int Hkv, int D, long window, float scale, float softcap) {
    if (isa > pg_isa_supported()) isa = pg_isa_supported();
    if (nseq <= 0 || Hq <= 0 || Hkv <= 0 || Hq % Hkv != 0) return;
    long stack_task0[17], *task0 = nseq < 17 ? stack_task0 : malloc(sizeof(long) * (size_t)(nseq + 1));
    if (!task0) return;
    task0[0] = 0;
    for (long i = 0; i < nseq; i++) task0[i + 1] = task0[i] + seq_tasks(&seqs[i], Hq, Hkv);
    attn_job j = { q, ldq, out, ldo, ldkv, Hq, Hkv, D, window, scale, softcap, isa, seqs, nseq, task0 };
    if (task0[nseq] > 0) pg_parallel_for(task0[nseq], attn_task, &j);
    if (task0 != stack_task0) free(task0);
}

void pg_attention(const float *q, long ldq, const float *k, const float *v, long ldkv, float *out, long ldo,
                  long T, long S, int Hq, int Hkv, int D, long q_start, long prefix, long window, float scale,
                  float softcap) {
    pg_attention_isa(pg_isa(), q, ldq, k, v, ldkv, out, ldo, T, S, Hq, Hkv, D, q_start, prefix, window, scale, softcap);
}

void pg_attention_isa(int isa, const float *q, long ldq, const float *k, const float *v, long ldkv, float *out,
                      long ldo, long T, long S, int Hq, int Hkv, int D, long q_start, long prefix, long window,
                      float scale, float softcap) {
    pg_attn_seq s = { 0, T, S, q_start, prefix, k, v, NULL, 0 };
    pg_attention_batch_isa(isa, q, ldq, out, ldo, &s, 1, ldkv, Hq, Hkv, D, window, scale, softcap);
}
