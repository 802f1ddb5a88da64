// Small AVX-512 helpers shared by the AVX-512 kernel files (linear_avx512.c, gemm_bf16.c;
// include after <immintrin.h>, x86-64 only).
#ifndef PG_AVX512_INLINE_H
#define PG_AVX512_INLINE_H

/// In-register transpose of 16 vectors of 16 dwords: r[i] lane j -> r[j] lane i. Within each
/// 128-bit lane a 4 x 4 transpose per group of 4 vectors, then a 4 x 4 transpose of the lanes.
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void pg_transpose16_avx512(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // u[i + c], 128-bit lane L: rows i..i+3 at column 4L + c
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int c = 0; c < 4; c++) {  // then a 4 x 4 transpose of 128-bit lanes
        __m512i ab_lo = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), ab_hi = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
        __m512i cd_lo = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
        __m512i cd_hi = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0xDD);
        r[8 + c] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0xDD);
    }
}
#endif
