// Prefill products with int8 weights in integer arithmetic (AVX2; VNNI where present).
//
// Rows of x are quantized to int16 (as in decode, linear_i8.c) and multiplied with the int8
// weights widened to int16 by vpmaddwd, which does 16 multiply-adds per instruction against the
// 8 of a float32 FMA. The blocking follows the float kernel: depth blocks of PG_GEMM_KC, x packed
// once ("A pack": for each depth block, row blocks of PG_GEMM_MR rows, each [kc/2][MR] pairs of
// int16, consecutive k side by side), weight panels of 16 columns packed per task
// ([kc/2][16] pairs). Each depth block's int32 sums (at most 128 vpmaddwd lanes of < 2^23: below
// 2^30) are converted to float, times the row's x scale, and added to y.
#include "internal.h"
#include <math.h>
#include <string.h>

#define MR PG_GEMM_MR
#define KC PG_GEMM_KC
#define NR 16

typedef struct { const float *x; long ldx, M, K, mblocks; const float *xs; int16_t *dst; } pack16_job;

// Pairs in a depth block of length kc: ceil(kc / 2); an odd k is paired with a zero.
static inline long pairs(long kc) { return (kc + 1) / 2; }

// pg_x16_scale and pg_x16 (internal.h), the same values in vectors where this file has them.
static float x16_scale(const float *row, long K);
static void x16_values(const float *row, long n, float inv, int16_t *out);

static void pack16_task(void *p, long task, int thread) {
    (void)thread;
    const pack16_job *j = p;
    long kb = task / j->mblocks, b = task % j->mblocks;
    long kc0 = kb * KC, kc = j->K - kc0 < KC ? j->K - kc0 : KC, np = pairs(kc);
    // Depth blocks before this one hold mblocks * MR * 2 * pairs(KC) values each.
    int32_t *dst = (int32_t *)(j->dst + (size_t)kb * j->mblocks * MR * 2 * pairs(KC) + (size_t)b * MR * 2 * np);
    int16_t q[2 * ((KC + 1) / 2)];  // one row's values
    for (long i = 0; i < MR; i++) {
        long m = b * MR + i;
        if (m < j->M) x16_values(j->x + m * j->ldx + kc0, kc, 1.0f / j->xs[m], q);
        for (long k = m < j->M ? kc : 0; k < 2 * np; k++) q[k] = 0;
        for (long kp = 0; kp < np; kp++) memcpy(dst + kp * MR + i, q + 2 * kp, 4);  // pair kp, side by side
    }
}

typedef struct { const float *x; long ldx, K; float *xs; } scale16_job;

static void scale16_task(void *p, long m, int thread) {
    (void)thread;
    const scale16_job *j = p;
    j->xs[m] = x16_scale(j->x + m * j->ldx, j->K);
}

size_t pg_pack_a16_size(long M, long K) {
    long mblocks = (M + MR - 1) / MR, kblocks = (K + KC - 1) / KC;
    return (size_t)kblocks * (size_t)mblocks * MR * 2 * (size_t)pairs(KC);
}

void pg_pack_a16(const float *x, long ldx, long M, long K, int16_t *dst, float *xs) {
    scale16_job sj = { x, ldx, K, xs };
    pg_parallel_for(M, scale16_task, &sj);
    long mblocks = (M + MR - 1) / MR, kblocks = (K + KC - 1) / KC;
    pack16_job j = { x, ldx, M, K, mblocks, xs, dst };
    pg_parallel_for(mblocks * kblocks, pack16_task, &j);
}

#if PG_X86_SIMD
#include <immintrin.h>
#include "avx2_inline.h"
#define T_AVX2 __attribute__((target("avx2,fma")))

T_AVX2 static float x16_scale(const float *row, long K) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    long k = 0;
    for (; k + 8 <= K; k += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(row + k)), m);  // a NaN keeps m
    float mx = pg_hmax_avx2(m);
    for (; k < K; k++) mx = fmaxf(mx, fabsf(row[k]));
    return mx > 0 ? mx / 32767.0f : 1.0f;
}

// pg_x16 on 8 lanes: the clamp by comparisons (a NaN passes them), rounding to nearest even as
// lrintf; a NaN's lane is 0, as (int16_t)lrintf(NaN) is.
T_AVX2 static void x16_values(const float *row, long n, float inv, int16_t *out) {
    const __m256 iv = _mm256_set1_ps(inv), hi = _mm256_set1_ps(32767.0f), lo = _mm256_set1_ps(-32767.0f);
    long k = 0;
    for (; k + 16 <= n; k += 16) {
        __m256i r[2];
        for (int h = 0; h < 2; h++) {
            __m256 q = _mm256_mul_ps(_mm256_loadu_ps(row + k + 8 * h), iv);
            q = _mm256_blendv_ps(q, hi, _mm256_cmp_ps(q, hi, _CMP_GT_OQ));
            q = _mm256_blendv_ps(q, lo, _mm256_cmp_ps(q, lo, _CMP_LT_OQ));
            r[h] = _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(q, q, _CMP_UNORD_Q)), _mm256_cvtps_epi32(q));
        }
        _mm256_storeu_si256((__m256i *)(out + k), _mm256_permute4x64_epi64(_mm256_packs_epi32(r[0], r[1]), 0xd8));
    }
    for (; k < n; k++) out[k] = pg_x16(row[k], inv);
}

// 16 values of each of 16 rows (rows j and j + 8 in the two lanes of r[j]) into 8 panel pairs
// kp: within each lane an 8 x 8 transpose of 16-bit units (a unit = one pair of int8 of a row),
// then each lane's 8 pairs widened to int16.
T_AVX2 static inline void panel16_block(int16_t *out, __m256i r[8]) {
    __m256i a[8], b[8];
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm256_unpacklo_epi16(r[2 * i], r[2 * i + 1]);      // units 0-3 of rows 2i, 2i+1
        a[2 * i + 1] = _mm256_unpackhi_epi16(r[2 * i], r[2 * i + 1]);  // units 4-7
    }
    for (int h = 0; h < 2; h++)  // rows 0-3, then 4-7
        for (int i = 0; i < 2; i++) {
            b[4 * h + 2 * i] = _mm256_unpacklo_epi32(a[4 * h + i], a[4 * h + i + 2]);      // units 4i, 4i+1
            b[4 * h + 2 * i + 1] = _mm256_unpackhi_epi32(a[4 * h + i], a[4 * h + i + 2]);  // units 4i+2, 4i+3
        }
    for (int q = 0; q < 4; q++) {
        __m256i lo = _mm256_unpacklo_epi64(b[q], b[q + 4]), hi = _mm256_unpackhi_epi64(b[q], b[q + 4]);
        int kp = (q & 1) * 2 + (q >> 1) * 4;  // b[q] holds units kp, kp + 1
        _mm256_storeu_si256((__m256i *)(out + kp * NR * 2), _mm256_cvtepi8_epi16(_mm256_castsi256_si128(lo)));
        _mm256_storeu_si256((__m256i *)(out + kp * NR * 2 + 16), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(lo, 1)));
        _mm256_storeu_si256((__m256i *)(out + (kp + 1) * NR * 2), _mm256_cvtepi8_epi16(_mm256_castsi256_si128(hi)));
        _mm256_storeu_si256((__m256i *)(out + (kp + 1) * NR * 2 + 16), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(hi, 1)));
    }
}

// panel[(kp * NR + j) * 2 + t] = w[nb + j][kc0 + 2 kp + t] as int16 (0 beyond kc or nr).
T_AVX2 static void pack_panel16(int16_t *panel, const int8_t *w, long ldw, long nb, long nr, long kc0, long kc) {
    long np = pairs(kc);
    if (nr == NR && kc % 16 == 0) {
        const int8_t *row = w + nb * ldw + kc0;
        for (long k = 0; k < kc; k += 16) {
            __m256i r[8];
            for (int j = 0; j < 8; j++)
                r[j] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(row + j * ldw + k))),
                                               _mm_loadu_si128((const __m128i *)(row + (j + 8) * ldw + k)), 1);
            panel16_block(panel + k * NR, r);
        }
        return;
    }
    for (long j = 0; j < NR; j++) {
        if (j >= nr) {
            for (long kp = 0; kp < np; kp++) ((int32_t *)panel)[kp * NR + j] = 0;
            continue;
        }
        const int8_t *row = w + (nb + j) * ldw + kc0;
        long k = 0;
        for (; k + 16 <= kc; k += 16) {
            __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + k)));
            int32_t pr[8];
            _mm256_storeu_si256((__m256i *)pr, v);
            for (int t = 0; t < 8; t++) ((int32_t *)panel)[(k / 2 + t) * NR + j] = pr[t];
        }
        for (; k < 2 * np; k++) panel[((k / 2) * NR + j) * 2 + (k & 1)] = k < kc ? row[k] : 0;
    }
}

// c[i][0..16) (+)= xs[i] * sum_kp a[kp][i] . panel[kp][0..16) for i < MR, with DOT(acc, x, b) =
// acc + the pairwise int16 products of x and b summed per int32 lane: vpmaddwd + vpaddd on AVX2,
// one vpdpwssd with VNNI (the same integers, so the same results).
#define PG_MICRO16(NAME, TARGET, DOT)                                                                              \
TARGET static void NAME(long np, const int16_t *a, const int16_t *panel, float *c, long ldc, const float *xs,      \
                        int first) {                                                                               \
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;                   \
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;                                      \
    const int32_t *ap = (const int32_t *)a;                                                                        \
    for (long kp = 0; kp < np; kp++) {                                                                             \
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(panel + kp * NR * 2));                                   \
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(panel + kp * NR * 2 + 16));                              \
        const int32_t *ak = ap + kp * MR;                                                                          \
        __m256i x;                                                                                                 \
        x = _mm256_set1_epi32(ak[0]); c00 = DOT(c00, x, b0); c01 = DOT(c01, x, b1);                                \
        x = _mm256_set1_epi32(ak[1]); c10 = DOT(c10, x, b0); c11 = DOT(c11, x, b1);                                \
        x = _mm256_set1_epi32(ak[2]); c20 = DOT(c20, x, b0); c21 = DOT(c21, x, b1);                                \
        x = _mm256_set1_epi32(ak[3]); c30 = DOT(c30, x, b0); c31 = DOT(c31, x, b1);                                \
        x = _mm256_set1_epi32(ak[4]); c40 = DOT(c40, x, b0); c41 = DOT(c41, x, b1);                                \
        x = _mm256_set1_epi32(ak[5]); c50 = DOT(c50, x, b0); c51 = DOT(c51, x, b1);                                \
    }                                                                                                              \
    PG_OUT(0, c00, c01) PG_OUT(1, c10, c11) PG_OUT(2, c20, c21) PG_OUT(3, c30, c31) PG_OUT(4, c40, c41)            \
    PG_OUT(5, c50, c51)                                                                                            \
}
#define PG_OUT(i, v0, v1) { \
        __m256 s = _mm256_set1_ps(xs[i]); \
        __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(v0), s), f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(v1), s); \
        if (!first) { f0 = _mm256_add_ps(f0, _mm256_loadu_ps(c + i * ldc)); f1 = _mm256_add_ps(f1, _mm256_loadu_ps(c + i * ldc + 8)); } \
        _mm256_storeu_ps(c + i * ldc, f0); _mm256_storeu_ps(c + i * ldc + 8, f1); }
#define DOT_AVX2(acc, x, b) _mm256_add_epi32(acc, _mm256_madd_epi16(x, b))
#define DOT_AVXVNNI(acc, x, b) _mm256_dpwssd_avx_epi32(acc, x, b)
#define DOT_AVX512VNNI(acc, x, b) _mm256_dpwssd_epi32(acc, x, b)
PG_MICRO16(micro16_avx2, T_AVX2, DOT_AVX2)
PG_MICRO16(micro16_avxvnni, __attribute__((target("avx2,fma,avxvnni"))), DOT_AVXVNNI)
PG_MICRO16(micro16_avx512vnni, __attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni"))), DOT_AVX512VNNI)
#undef PG_OUT

typedef void (*micro16_fn)(long, const int16_t *, const int16_t *, float *, long, const float *, int);

// The micro-kernel for `features` (pg_features of the calling thread).
static micro16_fn micro16_for(int f) {
    return f & PG_FEAT_AVX_VNNI ? micro16_avxvnni : f & PG_FEAT_AVX512_VNNI ? micro16_avx512vnni : micro16_avx2;
}

T_AVX2 void pg_gemm_i8_avx2(const int16_t *apack, const float *xs, const int8_t *w, long ldw, float *y, long ldy,
                            long M, long n0, long n1, long K, int thread, int features) {
    long mblocks = (M + MR - 1) / MR;
    micro16_fn micro16 = micro16_for(features);
    int16_t *panel = (int16_t *)pg_scratch(thread, 0, (size_t)pairs(KC) * NR);  // int16 pairs: one float each
    if (!panel) return;
    float edge[MR * NR], exs[MR];
    for (long kc0 = 0; kc0 < K; kc0 += KC) {
        long kc = K - kc0 < KC ? K - kc0 : KC, np = pairs(kc);
        const int16_t *ablock = apack + (size_t)(kc0 / KC) * mblocks * MR * 2 * pairs(KC);
        for (long nb = n0; nb < n1; nb += NR) {
            long nr = n1 - nb < NR ? n1 - nb : NR;
            pack_panel16(panel, w, ldw, nb, nr, kc0, kc);
            // The next panel's weights into L2 while this one's products run: packing reads 16
            // rows ldw apart, and waiting on memory for them was most of its time.
            for (long j = nb + NR; j < nb + 2 * NR && j < n1; j++)
                for (long k = 0; k < kc; k += 64) _mm_prefetch((const char *)(w + j * ldw + kc0 + k), _MM_HINT_T1);
            for (long mb = 0; mb < M; mb += MR) {
                long mr = M - mb < MR ? M - mb : MR;
                const int16_t *a = ablock + (mb / MR) * MR * 2 * np;
                float *c = y + mb * ldy + nb;
                if (mr == MR && nr == NR) {
                    micro16(np, a, panel, c, ldy, xs + mb, kc0 == 0);
                } else {
                    for (long i = 0; i < MR; i++) exs[i] = i < mr ? xs[mb + i] : 0.0f;
                    if (kc0 > 0)
                        for (long i = 0; i < mr; i++)
                            for (long jj = 0; jj < nr; jj++) edge[i * NR + jj] = c[i * ldy + jj];
                    micro16(np, a, panel, edge, NR, exs, kc0 == 0);
                    for (long i = 0; i < mr; i++)
                        for (long jj = 0; jj < nr; jj++) c[i * ldy + jj] = edge[i * NR + jj];
                }
            }
        }
    }
}
#else
static float x16_scale(const float *row, long K) { return pg_x16_scale(row, K); }
static void x16_values(const float *row, long n, float inv, int16_t *out) {
    for (long k = 0; k < n; k++) out[k] = pg_x16(row[k], inv);
}
void pg_gemm_i8_avx2(const int16_t *apack, const float *xs, const int8_t *w, long ldw, float *y, long ldy,
                     long M, long n0, long n1, long K, int thread, int features) {
    (void)features;
    (void)apack; (void)xs; (void)w; (void)ldw; (void)y; (void)ldy; (void)M; (void)n0; (void)n1; (void)K;
    (void)thread;  // never called: pg_isa() is scalar where this file has no SIMD
}
#endif
