// AVX2 + FMA + F16C instantiation of linear_impl.h.
#include "internal.h"
#if PG_X86_SIMD
#include <immintrin.h>
#include "avx2_inline.h"

#define PG_TARGET __attribute__((target("avx2,fma,f16c")))
#define PG_NAME(x) x##_avx2
#define VF __m256
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VSET1(f) _mm256_set1_ps(f)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps(p, v)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VLOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define VLOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VLOAD_I8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))

#define VHSUM(v) pg_hsum_avx2(v)
// A one-row decode streams each weight row on its own (gemv1), not four side by side (gemv4): on
// an AMD Zen 1 (512 MB of bf16 weights, 2 threads, alternating runs) 16384 x 2048 took
// 21.5-22.3 ms one row at a time against 24.5-26.2 ms four at a time (24-25 GB/s against a read
// probe of 27-28), and 2048 x 16384 21.3-22.7 against 23.3-25.1 ms.
#define PG_GEMV_FOUR_ROWS 0

// In-register transpose of 8 vectors of 8 floats (r[t][j] -> r[j][t]).
#define PG_TRANSPOSE(r) transpose8_avx2(r)
PG_TARGET static inline __attribute__((always_inline)) void transpose8_avx2(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

#include "linear_impl.h"

// ---- Batched exact decode with bf16 weights (internal.h, pg_gemv_bf16_eo_cols_avx2) -------------
// A tile of R weight rows against MM rows of x keeps R * MM sums in registers, so each weight
// vector serves MM rows and each x vector R weight rows. The weights are read through the tile's
// bytes in order (R rows side by side), and a prefetch walks those bytes PG_GEMV_PREFETCH ahead:
// with rows of a few KB the hardware prefetchers, seeing R short streams, leave the next tile's
// rows to demand misses. C harness on an AMD Zen 1 (bf16 16384 x 2048 and 2048 x 16384, 2
// threads, best of 5, alternating with the two-rows-at-a-time loop of linear_impl.h): 2 rows of
// x 3.1-3.5 ms against 4.9-5.5, 3 rows 3.7-4.0 against 3.9-5.4, 4 rows 4.3-4.6 against 4.6-6.1,
// 5 and 6 rows 5.1-6.9 against 5.3-7.3, 7 rows 8.4-8.8 against 12.8-14.5, 8 rows 9.1-10.1 against
// 10.7-12.7; one row, bound by memory, stays on gemv1 (3.1-3.5).
// out[r * MM + m] = sum over k < K16 of x[m][k] w[n + r][k], x in pg_x_rows_eo's order.
#define PG_EO_TILE(R, MM)                                                                                   \
    PG_TARGET static void eo_tile_##R##_##MM(const float *x, long ldx, const uint16_t *w, long ldw, long n,   \
                                              long K16, float *out) {                                       \
        __m256 acc[R][MM];                                                                                  \
        for (int r = 0; r < R; r++)                                                                         \
            for (int m = 0; m < MM; m++) acc[r][m] = _mm256_setzero_ps();                                   \
        const __m256i high = _mm256_set1_epi32((int)0xffff0000u);                                          \
        const char *ahead = (const char *)(w + n * ldw) + PG_GEMV_PREFETCH;                                 \
        for (long k = 0; k < K16; k += 16) {                                                                \
            if ((k & 31) == 0)                                                                              \
                for (int r = 0; r < R; r++) __builtin_prefetch(ahead + (k / 32 * R + r) * 64, 0, 2);        \
            __m256i raw[R];                                                                                 \
            __m256 wv[R];                                                                                   \
            for (int r = 0; r < R; r++) {                                                                   \
                raw[r] = _mm256_loadu_si256((const __m256i *)(w + (n + r) * ldw + k));                      \
                wv[r] = _mm256_castsi256_ps(_mm256_slli_epi32(raw[r], 16));                                 \
            }                                                                                               \
            for (int m = 0; m < MM; m++) {                                                                  \
                __m256 xv = _mm256_loadu_ps(x + m * ldx + k);                                               \
                for (int r = 0; r < R; r++) acc[r][m] = _mm256_fmadd_ps(xv, wv[r], acc[r][m]);              \
            }                                                                                               \
            for (int r = 0; r < R; r++) wv[r] = _mm256_castsi256_ps(_mm256_and_si256(raw[r], high));        \
            for (int m = 0; m < MM; m++) {                                                                  \
                __m256 xv = _mm256_loadu_ps(x + m * ldx + k + 8);                                           \
                for (int r = 0; r < R; r++) acc[r][m] = _mm256_fmadd_ps(xv, wv[r], acc[r][m]);              \
            }                                                                                               \
        }                                                                                                   \
        for (int r = 0; r < R; r++)                                                                         \
            for (int m = 0; m < MM; m++) out[r * MM + m] = pg_hsum_avx2(acc[r][m]);                        \
    }
// Three weight rows for up to 4 rows of x (12 sums, 3 weight vectors and one x vector fill the
// 16 registers), two for 5 and 6; the leftover rows of a column range one at a time.
PG_EO_TILE(3, 1) PG_EO_TILE(3, 2) PG_EO_TILE(3, 3) PG_EO_TILE(3, 4) PG_EO_TILE(2, 5) PG_EO_TILE(2, 6)
PG_EO_TILE(1, 1) PG_EO_TILE(1, 2) PG_EO_TILE(1, 3) PG_EO_TILE(1, 4) PG_EO_TILE(1, 5) PG_EO_TILE(1, 6)
#undef PG_EO_TILE

void pg_gemv_bf16_eo_cols_avx2(const float *xeo, long M, long K, const uint16_t *w, long ldw, const float *bias,
                               float *y, long ldy, long n0, long n1) {
    long K16 = K / 16 * 16;
    // All rows of x in one pass up to 6; 7 and 8 in two (4 and the rest) over each tile's weight
    // rows while they are in L1.
    long tile = M == 5 || M == 6 ? 2 : 3;
    for (long n = n0; n < n1;) {
        long R = n1 - n >= tile ? tile : 1;
        for (long m0 = 0; m0 < M;) {
            long mm = M - m0 <= 6 ? M - m0 : 4;
            const float *x = xeo + m0 * K;
            float out[3 * 4];
            switch (R * 8 + mm) {
            case 3 * 8 + 1: eo_tile_3_1(x, K, w, ldw, n, K16, out); break;
            case 3 * 8 + 2: eo_tile_3_2(x, K, w, ldw, n, K16, out); break;
            case 3 * 8 + 3: eo_tile_3_3(x, K, w, ldw, n, K16, out); break;
            case 3 * 8 + 4: eo_tile_3_4(x, K, w, ldw, n, K16, out); break;
            case 2 * 8 + 5: eo_tile_2_5(x, K, w, ldw, n, K16, out); break;
            case 2 * 8 + 6: eo_tile_2_6(x, K, w, ldw, n, K16, out); break;
            case 1 * 8 + 1: eo_tile_1_1(x, K, w, ldw, n, K16, out); break;
            case 1 * 8 + 2: eo_tile_1_2(x, K, w, ldw, n, K16, out); break;
            case 1 * 8 + 3: eo_tile_1_3(x, K, w, ldw, n, K16, out); break;
            case 1 * 8 + 4: eo_tile_1_4(x, K, w, ldw, n, K16, out); break;
            case 1 * 8 + 5: eo_tile_1_5(x, K, w, ldw, n, K16, out); break;
            default: eo_tile_1_6(x, K, w, ldw, n, K16, out); break;
            }
            for (long r = 0; r < R; r++) {
                const uint16_t *wr = w + (n + r) * ldw;
                for (long m = 0; m < mm; m++) {
                    float s = out[r * mm + m];
                    for (long k = K16; k < K; k++) s += x[m * K + k] * pg_load_as_f32(wr, PG_BF16, k);
                    y[(m0 + m) * ldy + n + r] = s + (bias ? bias[n + r] : 0.0f);
                }
            }
            m0 += mm;
        }
        n += R;
    }
}
#else
void pg_linear_cols_avx2(const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
                         float *y, long ldy, long M, long n0, long n1, long K, int thread) {
    pg_linear_cols_scalar(x, ldx, w, wdtype, ldw, bias, y, ldy, M, n0, n1, K, thread);
}
void pg_gemm_packed_avx2(const float *apack, const void *w, int wdtype, int kn, long ldw, const float *bias, float *y,
                         long ldy, long M, long n0, long n1, long K, int thread) {
    (void)apack; (void)w; (void)wdtype; (void)kn; (void)ldw; (void)bias; (void)y; (void)ldy; (void)M; (void)n0; (void)n1;
    (void)K; (void)thread;  // never called: pg_isa() is scalar where this file has no SIMD
}
void pg_matmul_kn_avx2(const float *x, long ldx, const float *w, long ldw, float *y, long ldy, long M, long N, long K,
                       int thread) {
    (void)thread;
    pg_matmul_kn_scalar(x, ldx, w, ldw, y, ldy, M, N, K);
}
void pg_axpy_f32_avx2(float *y, float a, const float *x, long n) { for (long i = 0; i < n; i++) y[i] += a * x[i]; }
void pg_gemv_bf16_eo_cols_avx2(const float *xeo, long M, long K, const uint16_t *w, long ldw, const float *bias,
                               float *y, long ldy, long n0, long n1) {
    (void)xeo; (void)M; (void)K; (void)w; (void)ldw; (void)bias; (void)y; (void)ldy; (void)n0; (void)n1;  // never called
}
void pg_matmul_cols_avx2(const float *x, long ldx, const void *w, int dtype, long ldw, float *y, long ldy, long M,
                         long n0, long n1, long K, int thread) {
    pg_matmul_cols_scalar(x, ldx, w, dtype, ldw, y, ldy, M, n0, n1, K, thread);
}
#endif
