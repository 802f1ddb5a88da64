// Small AVX512-BF16 helpers shared by the bf16 kernel files (gemm_bf16.c, attention_bf16.c;
// include after <immintrin.h>, x86-64 only).
#ifndef PG_BF16_INLINE_H
#define PG_BF16_INLINE_H

#define PG_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

/// 32 floats from src as bf16 (rounded to nearest even), those at or past `valid` zero.
PG_BF16_TARGET static inline __attribute__((always_inline)) __m512i pg_f32x32_to_bf16(const float *src, long valid) {
    __mmask16 lo = valid >= 16 ? 0xFFFF : valid <= 0 ? 0 : (__mmask16)((1u << valid) - 1);
    __mmask16 hi = valid >= 32 ? 0xFFFF : valid <= 16 ? 0 : (__mmask16)((1u << (valid - 16)) - 1);
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + 16), _mm512_maskz_loadu_ps(lo, src));
}

/// n floats of src as bf16 into dst, then zeros up to `width` (nothing written past it).
PG_BF16_TARGET static inline void pg_row_to_bf16(const float *src, long n, long width, uint16_t *dst) {
    for (long i = 0; i < width; i += 32) {
        long left = width - i;
        __mmask32 keep = left >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
        _mm512_mask_storeu_epi16(dst + i, keep, pg_f32x32_to_bf16(src + i, n - i));
    }
}

/// Two rows' 32 bf16 values x and y interleaved into pairs: dword i of *lo = (x[i], y[i]) for
/// i < 16, of *hi = (x[16 + i], y[16 + i]) (x in the low half, as vdpbf16ps pairs them).
PG_BF16_TARGET static inline __attribute__((always_inline)) void pg_pairs_bf16(__m512i x, __m512i y, __m512i *lo, __m512i *hi) {
    const __m512i first = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                           39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    *lo = _mm512_permutex2var_epi16(x, first, y);
    *hi = _mm512_permutex2var_epi16(x, _mm512_add_epi16(first, _mm512_set1_epi16(16)), y);
}

#endif
