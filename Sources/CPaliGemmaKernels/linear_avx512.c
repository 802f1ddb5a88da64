// AVX-512 (F, BW, VL, DQ) instantiation of linear_impl.h.
#include "internal.h"
#if PG_X86_SIMD
#include <immintrin.h>
#include "avx512_inline.h"

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

// Full weight panels are packed through pg_transpose16_avx512 (16 rows x 16 k at a time): column by
// column through a buffer (16 scalar stores per vector) took 8% of the vision tower's products.
#define PG_TRANSPOSE(r) transpose16_ps(r)
PG_TARGET static inline __attribute__((always_inline)) void transpose16_ps(__m512 r[16]) {
    __m512i v[16];
    for (int i = 0; i < 16; i++) v[i] = _mm512_castps_si512(r[i]);
    pg_transpose16_avx512(v);
    for (int i = 0; i < 16; i++) r[i] = _mm512_castsi512_ps(v[i]);
}

#include "linear_impl.h"

// ---- One sequence's exact decode with bf16 weights (internal.h, pg_gemv_bf16_eo1_cols_avx512) ------
// A 64-byte load holds 32 bf16 weights; a shift by 16 gives the even ones as floats and a mask the
// odd ones, against x split the same way by pg_x_rows_eo(…, 32): four operations per 32 weights
// where widening them (gemv4) takes six. Four weight rows side by side, prefetched
// PG_GEMV_PREFETCH ahead as gemv4 is. C harness over a decode step's 4 GB of bf16 decoder weights
// (2 threads, Zen 5, alternating): 122-126 ms against gemv4's 139-144 with the read probe at
// 47-50 GB/s, 92-96 against 104-108 at 72-79 GB/s.
PG_TARGET void pg_gemv_bf16_eo1_cols_avx512(const float *xeo, long K, const uint16_t *w, long ldw, const float *bias,
                                            float *y, long n0, long n1) {
    const long K32 = K / 32 * 32;
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    // Chunk k of weight row r: its even values into a, its odd ones into b.
#define PG_EO_ROW(r, a, b) {                                                                    \
        __m512i v = _mm512_loadu_si512((const void *)((r) + k));                               \
        a = _mm512_fmadd_ps(_mm512_loadu_ps(xeo + k), _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), a); \
        b = _mm512_fmadd_ps(_mm512_loadu_ps(xeo + k + 16), _mm512_castsi512_ps(_mm512_and_si512(v, high)), b); }
    long n = n0;
    for (; n + 4 <= n1; n += 4) {
        const uint16_t *r[4] = { w + n * ldw, w + (n + 1) * ldw, w + (n + 2) * ldw, w + (n + 3) * ldw };
        __m512 a[4], b[4];
        for (int j = 0; j < 4; j++) a[j] = b[j] = _mm512_setzero_ps();
        for (long k = 0; k < K32; k += 32) {
            for (int j = 0; j < 4; j++) __builtin_prefetch((const char *)(r[j] + k) + PG_GEMV_PREFETCH, 0, 2);
            for (int j = 0; j < 4; j++) PG_EO_ROW(r[j], a[j], b[j])
        }
        for (int j = 0; j < 4; j++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(a[j], b[j]));
            for (long k = K32; k < K; k++) s += xeo[k] * pg_load_as_f32(r[j], PG_BF16, k);
            y[n + j] = s + (bias ? bias[n + j] : 0.0f);
        }
    }
    for (; n < n1; n++) {
        const uint16_t *r = w + n * ldw;
        __m512 a = _mm512_setzero_ps(), b = a;
        for (long k = 0; k < K32; k += 32) PG_EO_ROW(r, a, b)
        float s = _mm512_reduce_add_ps(_mm512_add_ps(a, b));
        for (long k = K32; k < K; k++) s += xeo[k] * pg_load_as_f32(r, PG_BF16, k);
        y[n] = s + (bias ? bias[n] : 0.0f);
    }
#undef PG_EO_ROW
}
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
void pg_gemv_bf16_eo1_cols_avx512(const float *xeo, long K, const uint16_t *w, long ldw, const float *bias, float *y,
                                  long n0, long n1) {
    (void)xeo; (void)K; (void)w; (void)ldw; (void)bias; (void)y; (void)n0; (void)n1;  // never called without SIMD
}
#endif
