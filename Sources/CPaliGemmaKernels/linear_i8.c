// Decode-time products with int8 weights in integer arithmetic.
//
// With one to eight rows of x (decode and batched decode, exact), converting every int8 weight to
// float costs more than reading it from memory. Instead each row of x is quantized to int16 with its own scale
// (s = max|x| / 32767, a relative error of at most 1.5e-5 of the row's largest value, far below
// the 1/254 of the int8 weights), and the dot products run on int16 pairs (vpmaddwd on AVX2):
// 16 weights per load, widen and multiply-add, no float conversion until the end of a block.
//
// Overflow: |w| <= 128 and |x| <= 32767, so one vpmaddwd lane (two products) stays below 2^23
// and a block of I8_BLOCK / 16 = 128 of them (split over two accumulators) below 2^30; blocks are summed in float. The
// scalar kernel sums exactly in 64 bits.
#include "internal.h"
#include <math.h>

#define I8_BLOCK 2048

void pg_quantize_x16(const float *x, long ldx, long M, long K, int16_t *xq, float *xs) {
    for (long m = 0; m < M; m++) {
        const float *row = x + m * ldx;
        float s = pg_x16_scale(row, K), inv = 1.0f / s;
        for (long k = 0; k < K; k++) xq[m * K + k] = pg_x16(row[k], inv);
        xs[m] = s;
    }
}

// Values [from, cols) of a row times inv, clamped to ±127 and rounded half away from zero.
static void q8_values(const float *v, long from, long cols, float inv, int8_t *out) {
    for (long c = from; c < cols; c++) out[c] = (int8_t)pg_round_clamped(v[c] * inv, -127.0f, 127.0f);
}

void pg_quantize_q8_row_scalar(const float *v, long cols, int8_t *out, float *scale) {
    float mx = 0;
    for (long c = 0; c < cols; c++) mx = fmaxf(mx, fabsf(v[c]));
    float s = mx > 0 ? mx / 127.0f : 1.0f;
    *scale = s;
    q8_values(v, 0, cols, 1.0f / s, out);
}

// The exact integer sum of w[k] * xq[k] (64-bit: 2^22 per product).
static float dot_i8_scalar(const int8_t *w, const int16_t *xq, long K) {
    int64_t s = 0;
    for (long k = 0; k < K; k++) s += (int32_t)w[k] * (int32_t)xq[k];
    return (float)s;
}

void pg_gemv_i8_cols_scalar(const int16_t *xq, const float *xs, long M, long K, const int8_t *w, long ldw,
                            float *y, long ldy, long n0, long n1) {
    for (long n = n0; n < n1; n++)
        for (long m = 0; m < M; m++) y[m * ldy + n] = dot_i8_scalar(w + n * ldw, xq + m * K, K) * xs[m];
}

#if PG_X86_SIMD
#include <immintrin.h>
#include "avx2_inline.h"
#define T_AVX2 __attribute__((target("avx2,fma")))

T_AVX2 static inline __m256i madd16(const int8_t *w, __m256i xv) {
    return _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w)), xv);
}

// One weight row against one quantized row of x. Rows are read one after another, so the whole
// column range is a single sequential stream (side-by-side rows of a few KB each defeat the
// hardware prefetcher); the software prefetch runs PG_I8_AHEAD bytes ahead, into the next rows.
// A decode step's products over the 3B decoder's int8 weights (C harness, 2 threads, Zen 5, five
// alternating runs) took 49-52 ms 1 KB ahead and 47-48 ms 4 KB ahead with the read probe at
// 48-51 GB/s, 42 and 37-38 ms with it at 73-78 GB/s; 8 KB as 4 KB.
#define PG_I8_AHEAD 4096
T_AVX2 static float dot1_i8_avx2(const int16_t *xq, long K, const int8_t *r) {
    __m256 f = _mm256_setzero_ps();
    long kv = K & ~15L, k = 0;
    while (k < kv) {
        long kend = k + I8_BLOCK < kv ? k + I8_BLOCK : kv;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0;
        for (; k + 64 <= kend; k += 64) {
            _mm_prefetch((const char *)(r + k + PG_I8_AHEAD), _MM_HINT_T0);
            a0 = _mm256_add_epi32(a0, madd16(r + k, _mm256_loadu_si256((const __m256i *)(xq + k))));
            a1 = _mm256_add_epi32(a1, madd16(r + k + 16, _mm256_loadu_si256((const __m256i *)(xq + k + 16))));
            a0 = _mm256_add_epi32(a0, madd16(r + k + 32, _mm256_loadu_si256((const __m256i *)(xq + k + 32))));
            a1 = _mm256_add_epi32(a1, madd16(r + k + 48, _mm256_loadu_si256((const __m256i *)(xq + k + 48))));
        }
        for (; k < kend; k += 16) a0 = _mm256_add_epi32(a0, madd16(r + k, _mm256_loadu_si256((const __m256i *)(xq + k))));
        f = _mm256_add_ps(f, _mm256_cvtepi32_ps(_mm256_add_epi32(a0, a1)));
    }
    int32_t t = 0;
    for (; k < K; k++) t += r[k] * (int32_t)xq[k];
    return pg_hsum_avx2(f) + (float)t;
}

// Four weight rows against one quantized row of x: for long rows (8 KB and more) four
// independent streams keep more loads in flight than one.
T_AVX2 static void dot4_i8_avx2(const int16_t *xq, long K, const int8_t *r0, long ldw, float out[4]) {
    const int8_t *r1 = r0 + ldw, *r2 = r1 + ldw, *r3 = r2 + ldw;
    __m256 f0 = _mm256_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;
    long kv = K & ~15L, k = 0;
    while (k < kv) {
        long kend = k + I8_BLOCK < kv ? k + I8_BLOCK : kv;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (; k < kend; k += 16) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + k));
            a0 = _mm256_add_epi32(a0, madd16(r0 + k, xv));
            a1 = _mm256_add_epi32(a1, madd16(r1 + k, xv));
            a2 = _mm256_add_epi32(a2, madd16(r2 + k, xv));
            a3 = _mm256_add_epi32(a3, madd16(r3 + k, xv));
        }
        f0 = _mm256_add_ps(f0, _mm256_cvtepi32_ps(a0));
        f1 = _mm256_add_ps(f1, _mm256_cvtepi32_ps(a1));
        f2 = _mm256_add_ps(f2, _mm256_cvtepi32_ps(a2));
        f3 = _mm256_add_ps(f3, _mm256_cvtepi32_ps(a3));
    }
    int32_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    for (; k < K; k++) {
        int32_t xk = xq[k];
        t0 += r0[k] * xk; t1 += r1[k] * xk; t2 += r2[k] * xk; t3 += r3[k] * xk;
    }
    out[0] = pg_hsum_avx2(f0) + (float)t0; out[1] = pg_hsum_avx2(f1) + (float)t1;
    out[2] = pg_hsum_avx2(f2) + (float)t2; out[3] = pg_hsum_avx2(f3) + (float)t3;
}

// pg_quantize_q8_row_scalar in vectors, with the same result; a row holding a NaN goes to the
// scalar one.
T_AVX2 void pg_quantize_q8_row_avx2(const float *v, long cols, int8_t *out, float *scale) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 mx = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    long c = 0, cv = cols & ~31L;
    for (; c + 8 <= cols; c += 8) {
        __m256 x = _mm256_loadu_ps(v + c);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, x));
    }
    float m = pg_hmax_avx2(mx);
    for (; c < cols; c++) {
        if (v[c] != v[c]) { nan = _mm256_set1_ps(-1.0f); break; }
        m = fmaxf(m, fabsf(v[c]));
    }
    if (_mm256_movemask_ps(nan)) { pg_quantize_q8_row_scalar(v, cols, out, scale); return; }
    float s = m > 0 ? m / 127.0f : 1.0f;
    *scale = s;
    __m256 inv = _mm256_set1_ps(1.0f / s);
    const __m256 top = _mm256_set1_ps(127.0f), bottom = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (c = 0; c < cv; c += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = pg_round_clamped_avx2(_mm256_mul_ps(_mm256_loadu_ps(v + c + 8 * k), inv), bottom, top);
        __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)(out + c), _mm256_permutevar8x32_epi32(b, order));
    }
    q8_values(v, cv, cols, 1.0f / s, out);
}

// Batched decode (2 to 8 rows of x): a tile of R weight rows against MM rows of x keeps R * MM
// int32 sums in registers, so each widened weight vector serves MM rows and each x vector R
// weight rows (one row at a time widened each weight vector once per x row, and 4 rows took 2.5
// times one row's time on a Zen 1). Each sum is one vpmaddwd chain per block of I8_BLOCK depths
// (128 lane pairs of at most 2^23: below 2^30), converted to float per block. The weights are read
// through the tile's bytes in order, a prefetch walking them PG_GEMV_PREFETCH ahead (as the bf16
// tiles in linear_avx2.c). out[r * MM + m] = the sum over k < kv (a multiple of 16).
#define I8_TILE(R, MM)                                                                                        \
    T_AVX2 static void i8_tile_##R##_##MM(const int16_t *xq, long K, const int8_t *w, long ldw, long n, long kv, \
                                          float *out) {                                                       \
        float sums[R * MM] = { 0 };                                                                           \
        const char *ahead = (const char *)(w + n * ldw) + PG_GEMV_PREFETCH;                                   \
        for (long k = 0; k < kv;) {                                                                           \
            long kend = k + I8_BLOCK < kv ? k + I8_BLOCK : kv;                                                \
            __m256i acc[R][MM];                                                                               \
            for (int r = 0; r < R; r++)                                                                       \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm256_setzero_si256();                              \
            for (; k < kend; k += 16) {                                                                       \
                if ((k & 63) == 0)                                                                            \
                    for (int r = 0; r < R; r++) _mm_prefetch(ahead + (k / 64 * R + r) * 64, _MM_HINT_T1);     \
                __m256i wv[R];                                                                                \
                for (int r = 0; r < R; r++)                                                                   \
                    wv[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + (n + r) * ldw + k)));  \
                for (int m = 0; m < MM; m++) {                                                                \
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + m * K + k));                       \
                    for (int r = 0; r < R; r++) acc[r][m] = _mm256_add_epi32(acc[r][m], _mm256_madd_epi16(wv[r], xv)); \
                }                                                                                             \
            }                                                                                                 \
            for (int r = 0; r < R; r++)                                                                       \
                for (int m = 0; m < MM; m++) sums[r * MM + m] += pg_hsum_avx2(_mm256_cvtepi32_ps(acc[r][m])); \
        }                                                                                                     \
        for (int i = 0; i < R * MM; i++) out[i] = sums[i];                                                    \
    }
// Three weight rows against up to 4 rows of x (12 sums, 3 weight vectors and one x vector in the 16
// registers); 5 to 8 rows as passes of 4 and the rest over each tile while it is in L1; the
// leftover rows of a column range one at a time.
I8_TILE(3, 1) I8_TILE(3, 2) I8_TILE(3, 3) I8_TILE(3, 4) I8_TILE(1, 1) I8_TILE(1, 2) I8_TILE(1, 3) I8_TILE(1, 4)
#undef I8_TILE

T_AVX2 static void gemv_i8_tiles_avx2(const int16_t *xq, const float *xs, long M, long K, const int8_t *w, long ldw,
                                      float *y, long ldy, long n0, long n1) {
    long kv = K & ~15L;
    for (long n = n0; n < n1;) {
        long R = n1 - n >= 3 ? 3 : 1;
        for (long m0 = 0; m0 < M;) {
            long mm = M - m0 < 4 ? M - m0 : 4;
            const int16_t *x = xq + m0 * K;
            float out[3 * 4];
            switch (R * 8 + mm) {
            case 3 * 8 + 1: i8_tile_3_1(x, K, w, ldw, n, kv, out); break;
            case 3 * 8 + 2: i8_tile_3_2(x, K, w, ldw, n, kv, out); break;
            case 3 * 8 + 3: i8_tile_3_3(x, K, w, ldw, n, kv, out); break;
            case 3 * 8 + 4: i8_tile_3_4(x, K, w, ldw, n, kv, out); break;
            case 1 * 8 + 1: i8_tile_1_1(x, K, w, ldw, n, kv, out); break;
            case 1 * 8 + 2: i8_tile_1_2(x, K, w, ldw, n, kv, out); break;
            case 1 * 8 + 3: i8_tile_1_3(x, K, w, ldw, n, kv, out); break;
            default: i8_tile_1_4(x, K, w, ldw, n, kv, out); break;
            }
            for (long r = 0; r < R; r++) {
                const int8_t *wr = w + (n + r) * ldw;
                for (long m = 0; m < mm; m++) {
                    int32_t t = 0;
                    for (long k = kv; k < K; k++) t += wr[k] * (int32_t)x[m * K + k];
                    y[(m0 + m) * ldy + n + r] = (out[r * mm + m] + (float)t) * xs[m0 + m];
                }
            }
            m0 += mm;
        }
        n += R;
    }
}

T_AVX2 void pg_gemv_i8_cols_avx2(const int16_t *xq, const float *xs, long M, long K, const int8_t *w, long ldw,
                                 float *y, long ldy, long n0, long n1) {
    if (M >= 2) {
        gemv_i8_tiles_avx2(xq, xs, M, K, w, ldw, y, ldy, n0, n1);
        return;
    }
    // One row of x (memory-bound): 4 weight rows at a time on long rows, else one at a time.
    long n = n0;
    if (K >= 8192) {
        for (; n + 4 <= n1; n += 4) {
            float out[4];
            dot4_i8_avx2(xq, K, w + n * ldw, ldw, out);
            for (int j = 0; j < 4; j++) y[n + j] = out[j] * xs[0];
        }
    }
    for (; n < n1; n++) y[n] = dot1_i8_avx2(xq, K, w + n * ldw) * xs[0];
}
#else
void pg_quantize_q8_row_avx2(const float *v, long cols, int8_t *out, float *scale) {
    pg_quantize_q8_row_scalar(v, cols, out, scale);
}
void pg_gemv_i8_cols_avx2(const int16_t *xq, const float *xs, long M, long K, const int8_t *w, long ldw,
                          float *y, long ldy, long n0, long n1) {
    pg_gemv_i8_cols_scalar(xq, xs, M, K, w, ldw, y, ldy, n0, n1);
}
#endif
