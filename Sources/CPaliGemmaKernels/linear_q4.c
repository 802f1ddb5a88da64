// 4-bit weights (PG_Q4): quantizer, dequantizer and the decode and prefill products.
//
// Format (see pg_kernels.h): groups of 32 consecutive values of a row share one float16 scale;
// each value is a 4-bit q in [-8, 7], stored as q + 8, two to a byte (byte j of a group: value j
// in the low nibble, value j + 16 in the high one). The scale is m / -8 for the group's value m
// of largest magnitude, so that value is exact and the others are rounded to the nearest step.
//
// Decode (M <= 4): the weights are read once per token, so the product must cost less than the
// read. Each row of x is quantized to int8 per group of 32 (dx = max|x| / 127, ties rounded away
// from zero) and the products run in integers: vpmaddubsw multiplies the unsigned nibbles (q + 8)
// with x, two groups per 32-byte load (x is laid out pair by pair to match the nibble order);
// the group sums are scaled by dw · dx in float and the 8 · sum(x) that the + 8 added is taken
// off per group. The scalar kernel computes the same integer group sums exactly.
//
// Prefill (M > 4): compute-bound, so the weights are dequantized to float32, 64 rows at a time,
// and go through the float prefill kernel with x packed once (as for float weights); results are
// then those of float x against the dequantized weights.
#include "internal.h"
#include <math.h>

#define G PG_Q4_GROUP

// ---- quantization --------------------------------------------------------------------------
static inline int q4_round(float v) {
    if (!(v == v)) return 0;
    v = v > 7.0f ? 7.0f : v < -8.0f ? -8.0f : v;
    return (int)(v + (v >= 0 ? 0.5f : -0.5f));  // half away from zero
}

typedef struct { const void *src; int dtype; long cols; uint8_t *dst; uint16_t *scales; } q4_quant_job;

static void q4_quant_task(void *p, long r, int thread) {
    const q4_quant_job *j = p;
    float *v = pg_scratch(thread, 3, (size_t)j->cols);
    if (!v) return;
    pg_convert_to_f32((const char *)j->src + (size_t)r * j->cols * pg_dtype_size(j->dtype), j->dtype, v, j->cols);
    long groups = j->cols / G;
    uint8_t *out = j->dst + (size_t)r * (size_t)(j->cols / 2);
    uint16_t *sc = j->scales + (size_t)r * (size_t)groups;
    for (long g = 0; g < groups; g++) {
        const float *e = v + g * G;
        float m = 0;
        for (int i = 0; i < G; i++)
            if (fabsf(e[i]) > fabsf(m)) m = e[i];
        float s = m / -8.0f;
        if (fabsf(s) > 65504.0f) s = copysignf(65504.0f, s);  // largest float16
        uint16_t h = pg_f32_to_f16_scalar(s);
        float d = pg_f16_to_f32_scalar(h);
        float inv = d != 0 ? 1.0f / d : 0.0f;
        sc[g] = h;
        for (int i = 0; i < G / 2; i++) {
            int q0 = q4_round(e[i] * inv) + 8, q1 = q4_round(e[i + G / 2] * inv) + 8;
            out[g * (G / 2) + i] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void pg_quantize_q4(const void *src, int dtype, long rows, long cols, uint8_t *dst, uint16_t *scales) {
    if (rows <= 0 || cols <= 0 || cols % G != 0) return;
    q4_quant_job j = { src, dtype, cols, dst, scales };
    pg_parallel_for(rows, q4_quant_task, &j);
}

void pg_dequantize_q4_rows_scalar(const uint8_t *w, const uint16_t *scales, long rows, long cols, float *dst) {
    long groups = cols / G;
    for (long r = 0; r < rows; r++) {
        const uint8_t *b = w + (size_t)r * (size_t)(cols / 2);
        for (long g = 0; g < groups; g++) {
            float d = pg_f16_to_f32_scalar(scales[r * groups + g]);
            float *o = dst + r * cols + g * G;
            for (int i = 0; i < G / 2; i++) {
                uint8_t v = b[g * (G / 2) + i];
                o[i] = (float)((v & 15) - 8) * d;
                o[i + G / 2] = (float)((v >> 4) - 8) * d;
            }
        }
    }
}

void pg_dequantize_q4(const uint8_t *w, const uint16_t *scales, long rows, long cols, float *dst) {
    if (rows <= 0 || cols <= 0 || cols % G != 0) return;
    pg_dequantize_q4_rows_scalar(w, scales, rows, cols, dst);
}

// ---- x for the decode kernel ---------------------------------------------------------------
// A quantized x row of `groups` groups holds its int8 values pair by pair: groups 2p and 2p + 1
// take the 64 bytes at 64p as values 0-15 of 2p, 0-15 of 2p + 1, 16-31 of 2p, 16-31 of 2p + 1
// (the order of the low and high nibbles of their 32 weight bytes); a last unpaired group is
// stored as it is. Beside it: dx [groups] (the scales) and c [groups] = 8 · dx · sum of the
// group's values, which turns the sum against unsigned nibbles (q + 8) into the sum against q.
static inline long xq_offset(long groups, long g, int i) {
    long p = g / 2;
    if (2 * p + 1 >= groups) return g * G + i;
    return 64 * p + (i < G / 2 ? 0 : 32) + (g & 1) * (G / 2) + (i % (G / 2));
}

void pg_quantize_x8_groups(const float *x, long ldx, long M, long K, int8_t *xq, float *dx, float *c) {
    long groups = K / G;
    for (long m = 0; m < M; m++) {
        const float *row = x + m * ldx;
        int8_t *out = xq + m * K;
        for (long g = 0; g < groups; g++) {
            const float *v = row + g * G;
            float mx = 0;
            for (int i = 0; i < G; i++) mx = fmaxf(mx, fabsf(v[i]));
            float s = mx > 0 ? mx / 127.0f : 1.0f, inv = 1.0f / s;
            int8_t q[G];
            int32_t sum = 0;
            for (int i = 0; i < G; i++) {
                float t = v[i] * inv;
                t = t > 127.0f ? 127.0f : t < -127.0f ? -127.0f : t;
                q[i] = (int8_t)(t + (t >= 0 ? 0.5f : -0.5f));  // half away from zero
                sum += q[i];
            }
            if ((g | 1) < groups) {  // in a pair
                int8_t *base = out + 64 * (g / 2) + (g & 1) * (G / 2);
                memcpy(base, q, G / 2);
                memcpy(base + 32, q + G / 2, G / 2);
            } else {
                memcpy(out + g * G, q, G);
            }
            dx[m * groups + g] = s;
            c[m * groups + g] = 8.0f * s * (float)sum;
        }
    }
}

// Group g of weight row b against group g of quantized x row xq: the exact integer sum.
static inline int32_t q4_group_dot(const uint8_t *b, const int8_t *xq, long groups, long g) {
    int32_t t = 0;
    for (int i = 0; i < G / 2; i++) {
        uint8_t v = b[g * (G / 2) + i];
        t += ((v & 15) - 8) * (int32_t)xq[xq_offset(groups, g, i)];
        t += ((v >> 4) - 8) * (int32_t)xq[xq_offset(groups, g, i + G / 2)];
    }
    return t;
}

void pg_gemv_q4_cols_scalar(const int8_t *xq, const float *dx, const float *c, long M, long K, const uint8_t *w,
                            const uint16_t *scales, float *y, long ldy, long n0, long n1) {
    (void)c;
    long groups = K / G;
    for (long n = n0; n < n1; n++) {
        const uint8_t *b = w + (size_t)n * (size_t)(K / 2);
        const uint16_t *s = scales + (size_t)n * (size_t)groups;
        for (long m = 0; m < M; m++) {
            float acc = 0;
            for (long g = 0; g < groups; g++)
                acc += pg_f16_to_f32_scalar(s[g]) * dx[m * groups + g] * (float)q4_group_dot(b, xq + m * K, groups, g);
            y[m * ldy + n] = acc;
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#include "avx2_inline.h"
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))

// One weight row against MM rows of quantized x; groups in blocks of 8 (4 pairs), the rest scalar.
// Per pair of groups: the unsigned nibbles (q + 8) against x with vpmaddubsw (pair sums of at
// most 2 · 15 · 127, two of them added: below 2^13), then vpmaddwd to 8 int32 lanes, 4 per group.
// Three vphaddd fold the 4 pairs' lanes into one sum per group (lanes: groups 0 2 4 6 1 3 5 7),
// converted and scaled once; the 8 · sum(x) part is taken off with c after the loop.
T_AVX2 static inline __attribute__((always_inline)) void q4_row_avx2(
        const uint8_t *b, const uint16_t *s, long groups, long K, const int8_t *xq, const float *dx, const float *c,
        const long MM, float *out) {
    const __m256i low = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    __m256 acc[4], corr[4];
    for (long m = 0; m < MM; m++) acc[m] = corr[m] = _mm256_setzero_ps();
    long g = 0;
    for (; g + 8 <= groups; g += 8) {
        _mm_prefetch((const char *)(b + g * (G / 2) + 1024), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + g * (G / 2) + 1088), _MM_HINT_T0);
        __m256 sw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + g)));
        __m256i lo[4], hi[4];
        for (int p = 0; p < 4; p++) {
            __m256i wb = _mm256_loadu_si256((const __m256i *)(b + (g + 2 * p) * (G / 2)));
            lo[p] = _mm256_and_si256(wb, low);
            hi[p] = _mm256_and_si256(_mm256_srli_epi16(wb, 4), low);
        }
        for (long m = 0; m < MM; m++) {
            const int8_t *xp = xq + m * K + g * G;
            __m256i i32[4];
            for (int p = 0; p < 4; p++) {
                __m256i pl = _mm256_maddubs_epi16(lo[p], _mm256_loadu_si256((const __m256i *)(xp + 64 * p)));
                __m256i ph = _mm256_maddubs_epi16(hi[p], _mm256_loadu_si256((const __m256i *)(xp + 64 * p + 32)));
                i32[p] = _mm256_madd_epi16(_mm256_add_epi16(pl, ph), ones);
            }
            __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(i32[0], i32[1]), _mm256_hadd_epi32(i32[2], i32[3]));
            __m256 sc = _mm256_permutevar8x32_ps(_mm256_mul_ps(sw, _mm256_loadu_ps(dx + m * groups + g)), order);
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), sc, acc[m]);
            corr[m] = _mm256_fmadd_ps(sw, _mm256_loadu_ps(c + m * groups + g), corr[m]);
        }
    }
    for (long m = 0; m < MM; m++) {
        float t = pg_hsum_avx2(_mm256_sub_ps(acc[m], corr[m]));
        for (long r = g; r < groups; r++)
            t += pg_f16_to_f32_scalar(s[r]) * dx[m * groups + r] * (float)q4_group_dot(b, xq + m * K, groups, r);
        out[m] = t;
    }
}

T_AVX2 void pg_gemv_q4_cols_avx2(const int8_t *xq, const float *dx, const float *c, long M, long K, const uint8_t *w,
                                 const uint16_t *scales, float *y, long ldy, long n0, long n1) {
    long groups = K / G;
    for (long n = n0; n < n1; n++) {
        const uint8_t *b = w + (size_t)n * (size_t)(K / 2);
        const uint16_t *s = scales + (size_t)n * (size_t)groups;
        float out[4];
        switch (M) {
        case 1: q4_row_avx2(b, s, groups, K, xq, dx, c, 1, out); break;
        case 2: q4_row_avx2(b, s, groups, K, xq, dx, c, 2, out); break;
        case 3: q4_row_avx2(b, s, groups, K, xq, dx, c, 3, out); break;
        default: q4_row_avx2(b, s, groups, K, xq, dx, c, 4, out); break;
        }
        for (long m = 0; m < M; m++) y[m * ldy + n] = out[m];
    }
}

// Rows of 4-bit weights to float32, a group (16 bytes, 32 values) at a time.
T_AVX2 void pg_dequantize_q4_rows_avx2(const uint8_t *w, const uint16_t *scales, long rows, long cols, float *dst) {
    long groups = cols / G;
    const __m128i low = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    for (long r = 0; r < rows; r++) {
        const uint8_t *b = w + (size_t)r * (size_t)(cols / 2);
        for (long g = 0; g < groups; g++) {
            __m256 d = _mm256_set1_ps(pg_f16_to_f32_scalar(scales[r * groups + g]));
            __m128i v = _mm_loadu_si128((const __m128i *)(b + g * (G / 2)));
            __m128i lo = _mm_sub_epi8(_mm_and_si128(v, low), eight);
            __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low), eight);
            float *o = dst + r * cols + g * G;
            _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
            _mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
            _mm256_storeu_ps(o + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
            _mm256_storeu_ps(o + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
        }
    }
}
#else
void pg_gemv_q4_cols_avx2(const int8_t *xq, const float *dx, const float *c, long M, long K, const uint8_t *w,
                          const uint16_t *scales, float *y, long ldy, long n0, long n1) {
    pg_gemv_q4_cols_scalar(xq, dx, c, M, K, w, scales, y, ldy, n0, n1);
}
void pg_dequantize_q4_rows_avx2(const uint8_t *w, const uint16_t *scales, long rows, long cols, float *dst) {
    pg_dequantize_q4_rows_scalar(w, scales, rows, cols, dst);
}
#endif
