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
#define PG_TRANSPOSE8(r) transpose8_avx2(r)
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
void pg_matmul_cols_avx2(const float *x, long ldx, const void *w, int dtype, long ldw, float *y, long ldy, long M,
                         long n0, long n1, long K, int thread) {
    pg_matmul_cols_scalar(x, ldx, w, dtype, ldw, y, ldy, M, n0, n1, K, thread);
}
#endif
