// Self-attention without a mask (the vision tower's) at FAST precision on vdpbf16ps, as PyTorch's
// bf16 attention computes it: q and k rounded to bf16 for the logits (float32 sums), the softmax
// in float32, the probabilities and v rounded to bf16 for the weighted sum (float32 sums).
// Both products go through gemm_bf16.c's 32 x 32 block kernel (pg_bf16_block):
//   logits: A = 32 query rows as bf16 [32][D], B = 32 keys as pairs along the head's width
//           ([D/2][32]): the width (72 in SigLIP) is the depth, with no padding to 32;
//   sums:   A = 32 rows of probabilities as bf16 [32][Sp], B = v as pairs along the tokens
//           ([Sp/2][32] per 32 columns of the head).
// One task per (head, chunk of query rows) pairs the head's keys and values once for the chunk.
// Letters: T tokens (queries = keys), H heads, D head width, Tp / Sp = T rounded up to 32.
#include "internal.h"

#define QB 32  // query rows per block (the block kernel's A rows)
#define KB 32  // keys (or head columns) per block (its B lanes)
#define PG_SA_MAX_D 512  // widest head taken (wider ones go to pg_attention)

typedef struct {
    const float *q, *k, *v; long ld; float *out; long ldo;
    long T, Tp, chunk; int H, D; float scale;
} sa_job;

#if PG_X86_SIMD
#include <immintrin.h>
#include "bf16_inline.h"

PG_BF16_TARGET static void sa_task(void *p, long task, int thread) {
    const sa_job *j = p;
    const long T = j->T, Tp = j->Tp, D = j->D, half = D / 2, dblocks = (D + KB - 1) / KB;
    const long chunks = (T + j->chunk - 1) / j->chunk;
    const int h = (int)(task / chunks);
    const long t0 = task % chunks * j->chunk, t1 = t0 + j->chunk < T ? t0 + j->chunk : T;
    // Scratch: keys' pairs [Tp/KB][D/2][KB], values' pairs [dblocks][Tp/2][KB], a block of query
    // rows [QB][D] and of probabilities [QB][Tp] as bf16, the block's logits [QB][Tp], one tile.
    size_t kt_n = (size_t)Tp * half, vt_n = (size_t)dblocks * Tp / 2 * KB, qb_n = (size_t)QB * half,
           pb_n = (size_t)QB * Tp / 2, sc_n = (size_t)QB * Tp, tile_n = (size_t)QB * KB;
    float *base = pg_scratch(thread, 2, kt_n + vt_n + qb_n + pb_n + sc_n + tile_n);
    if (!base) return;
    uint32_t *kt = (uint32_t *)base, *vt = kt + kt_n;
    uint16_t *qb = (uint16_t *)(vt + vt_n), *pb = qb + 2 * qb_n;
    float *sc = (float *)(pb + 2 * pb_n), *tile = sc + sc_n;
    const float *qh = j->q + (long)h * D, *kh = j->k + (long)h * D, *vh = j->v + (long)h * D;
    float *oh = j->out + (long)h * D;
    // The head's keys as pairs along the width, 32 keys per block (keys past T zero).
    uint32_t krow[PG_SA_MAX_D / 2];
    for (long s = 0; s < Tp; s++) {
        if (s < T) pg_row_to_bf16(kh + s * j->ld, D, D, (uint16_t *)krow);
        else memset(krow, 0, (size_t)half * 4);
        uint32_t *dst = kt + (s / KB) * half * KB + s % KB;
        for (long pi = 0; pi < half; pi++) dst[pi * KB] = krow[pi];
    }
    // Its values as pairs along the tokens, 32 of the head's columns per block (past D or T zero):
    // two rows' bf16 interleaved.
    for (long si = 0; si < Tp / 2; si++) {
        long s = 2 * si;
        for (long db = 0; db < dblocks; db++) {
            __m512i x = s < T ? pg_f32x32_to_bf16(vh + s * j->ld + db * KB, D - db * KB) : _mm512_setzero_si512();
            __m512i y = s + 1 < T ? pg_f32x32_to_bf16(vh + (s + 1) * j->ld + db * KB, D - db * KB) : _mm512_setzero_si512();
            uint32_t *dst = vt + db * (Tp / 2) * KB + si * KB;
            __m512i lo, hi;
            pg_pairs_bf16(x, y, &lo, &hi);
            _mm512_storeu_si512(dst, lo);
            _mm512_storeu_si512(dst + 16, hi);
        }
    }
    for (long r0 = t0; r0 < t1; r0 += QB) {
        long rows = t1 - r0 < QB ? t1 - r0 : QB;
        for (long r = 0; r < QB; r++) {
            if (r < rows) pg_row_to_bf16(qh + (r0 + r) * j->ld, D, D, qb + r * D);
            else memset(qb + r * D, 0, (size_t)D * 2);
        }
        // Logits [rows][T], 32 keys at a time.
        for (long sb = 0; sb < Tp / KB; sb++) {
            pg_bf16_block(qb, D, kt + sb * half * KB, D, tile);
            for (long r = 0; r < rows; r++) memcpy(sc + r * Tp + sb * KB, tile + r * KB, KB * sizeof(float));
        }
        // Softmax per row in float32, then the probabilities as bf16 (zero past T and past rows).
        for (long r = 0; r < QB; r++) {
            if (r < rows) {
                float *x = sc + r * Tp;
                float mx = pg_scale_max(PG_ISA_AVX512, x, T, j->scale);
                float sum = pg_exp_shift_sum(PG_ISA_AVX512, x, T, mx);
                float inv = sum > 0 ? 1.0f / sum : 0.0f;
                for (long s = 0; s < T; s++) x[s] *= inv;
                pg_row_to_bf16(x, T, Tp, pb + r * Tp);
            } else {
                memset(pb + r * Tp, 0, (size_t)Tp * 2);
            }
        }
        // out[rows][D] = P · v, 32 of the head's columns at a time.
        for (long db = 0; db < dblocks; db++) {
            pg_bf16_block(pb, Tp, vt + db * (Tp / 2) * KB, Tp, tile);
            long cols = D - db * KB < KB ? D - db * KB : KB;
            for (long r = 0; r < rows; r++) memcpy(oh + (r0 + r) * j->ldo + db * KB, tile + r * KB, (size_t)cols * sizeof(float));
        }
    }
}
#endif

void pg_self_attention(const float *q, const float *k, const float *v, long ld, float *out, long ldo, long T, int H,
                       int D, float scale) {
    if (T <= 0 || H <= 0 || D <= 0) return;
#if PG_X86_SIMD
    int isa = pg_isa();
    int fast = pg_precision() == PG_PRECISION_FAST && isa == PG_ISA_AVX512 && pg_fast_kernel_at(isa) != PG_FAST_NONE &&
               (pg_features() & PG_FEAT_AVX512_BF16) && D % 2 == 0 && D <= PG_SA_MAX_D;
    if (fast) {
        // Query rows per task: all of them, or fewer where that leaves under four tasks per thread.
        long threads = pg_threads_here(), chunk = T;
        long want = 4 * threads;
        if (H < want) {
            long parts = (want + H - 1) / H;
            chunk = (T + parts - 1) / parts;
            chunk = (chunk + QB - 1) / QB * QB;
            if (chunk < 128) chunk = T < 128 ? T : 128;
        }
        sa_job j = { q, k, v, ld, out, ldo, T, (T + 31) / 32 * 32, chunk, H, D, scale };
        pg_parallel_for((long)H * ((T + chunk - 1) / chunk), sa_task, &j);
        return;
    }
#endif
    pg_attention(q, ld, k, v, ld, out, ldo, T, T, H, H, D, 0, T, 0, scale, 0);
}
