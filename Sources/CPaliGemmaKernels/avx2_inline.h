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

/// The largest of the 8 lanes.
__attribute__((target("avx2"))) static inline float pg_hmax_avx2(__m256 v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/// pg_round_clamped (internal.h) on 8 lanes: clamp to [lo, hi], round half away from zero.
__attribute__((target("avx2"))) static inline __m256i pg_round_clamped_avx2(__m256 v, __m256 lo, __m256 hi) {
    __m256 t = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    __m256 half = _mm256_blendv_ps(_mm256_set1_ps(-0.5f), _mm256_set1_ps(0.5f), _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GE_OQ));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, half));
}
#endif
