// AVX2 + FMA + F16C instantiation of linear_impl.h.
#include "internal.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define PG_TARGET __attribute__((target("avx2,fma,f16c")))
#define PG_NAME(x) x##_avx2
#define VF __m256
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VSET1(f) _mm256_set1_ps(f)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps(p, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VLOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define VLOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VLOAD_I8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))

PG_TARGET static inline float hsum_avx2(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
#define VHSUM(v) hsum_avx2(v)

#include "linear_impl.h"
#else
void pg_linear_cols_avx2(const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
                         float *y, long ldy, long M, long n0, long n1, long K, int thread) {
    pg_linear_cols_scalar(x, ldx, w, wdtype, ldw, bias, y, ldy, M, n0, n1, K, thread);
}
float pg_dot_f32_avx2(const float *a, const float *b, long n) {
    float s = 0; for (long i = 0; i < n; i++) s += a[i] * b[i]; return s;
}
void pg_axpy_f32_avx2(float *y, float a, const float *x, long n) { for (long i = 0; i < n; i++) y[i] += a * x[i]; }
#endif
