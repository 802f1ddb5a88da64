// Small AVX2 helpers shared by the AVX2 kernel files (include after <immintrin.h>, x86-64 only).
#ifndef PG_AVX2_INLINE_H
#define PG_AVX2_INLINE_H

/// The sum of the 8 lanes.
__attribute__((target("avx2"))) static inline float pg_hsum_avx2(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
#endif
