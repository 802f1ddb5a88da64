// AVX-512 (F, BW, VL, DQ) instantiation of linear_impl.h.
#include "internal.h"
#if PG_X86_SIMD
#include <immintrin.h>

#define PG_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define PG_NAME(x) x##_avx512
#define VF __m512
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VSET1(f) _mm512_set1_ps(f)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VLOAD_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define VLOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VLOAD_I8(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p))))
#define VHSUM(v) _mm512_reduce_add_ps(v)
// A one-row decode reads four weight rows side by side (gemv4 in linear_impl.h), as measured on
// a Zen 4; AVX2 machines read one at a time (linear_avx2.c).
#define PG_GEMV_FOUR_ROWS 1

#include "linear_impl.h"
#else
void pg_linear_cols_avx512(const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
                           float *y, long ldy, long M, long n0, long n1, long K, int thread) {
    pg_linear_cols_scalar(x, ldx, w, wdtype, ldw, bias, y, ldy, M, n0, n1, K, thread);
}
void pg_gemm_packed_avx512(const float *apack, const void *w, int wdtype, int kn, long ldw, const float *bias, float *y,
                         long ldy, long M, long n0, long n1, long K, int thread) {
    (void)apack; (void)w; (void)wdtype; (void)kn; (void)ldw; (void)bias; (void)y; (void)ldy; (void)M; (void)n0; (void)n1;
    (void)K; (void)thread;  // never called: pg_isa() is scalar where this file has no SIMD
}
void pg_matmul_kn_avx512(const float *x, long ldx, const float *w, long ldw, float *y, long ldy, long M, long N, long K,
                       int thread) {
    (void)thread;
    pg_matmul_kn_scalar(x, ldx, w, ldw, y, ldy, M, N, K);
}
void pg_axpy_f32_avx512(float *y, float a, const float *x, long n) { for (long i = 0; i < n; i++) y[i] += a * x[i]; }
void pg_matmul_cols_avx512(const float *x, long ldx, const void *w, int dtype, long ldw, float *y, long ldy, long M,
                         long n0, long n1, long K, int thread) {
    pg_matmul_cols_scalar(x, ldx, w, dtype, ldw, y, ldy, M, n0, n1, K, thread);
}
#endif
