// Fixed-point convolution passes with the arithmetic of Pillow's Resample.c (8 bits per
// channel): int32 accumulators starting at 1 << (PRECISION_BITS - 1), coefficients with
// PRECISION_BITS fractional bits, and the result shifted and clipped to 0...255.
//
// The loops are written so the compiler can vectorise them; on x86-64 a second copy is
// compiled for AVX2 and picked at run time when the CPU has it, which is bit-identical
// because all arithmetic is integer. (Not target_clones: its ifunc resolver runs while the
// program is being relocated, before a sanitizer's runtime is ready, and crashes
// ThreadSanitizer builds.)
#include "pg_image_codecs.h"

#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)
#define HALF (1 << (PRECISION_BITS - 1))

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__)) && !defined(PG_PORTABLE_ONLY)
#define PGC_X86 1
#endif

static inline uint8_t clip8(int32_t v) {
    int32_t s = v >> PRECISION_BITS;
    return (uint8_t)(s < 0 ? 0 : (s > 255 ? 255 : s));
}

static inline __attribute__((always_inline))
void horizontal(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
                int out_width, int channels, int row_offset, int row_begin, int row_end,
                const int32_t *bounds, const int32_t *coeffs, int ksize) {
    for (int yy = row_begin; yy < row_end; yy++) {
        const uint8_t *line_in = in + (size_t)(yy + row_offset) * in_stride;
        uint8_t *line_out = out + (size_t)yy * out_stride;
        if (channels == 3) {
            for (int xx = 0; xx < out_width; xx++) {
                const int32_t xmin = bounds[xx * 2];
                const int32_t xmax = bounds[xx * 2 + 1];
                const int32_t *k = coeffs + (size_t)xx * ksize;
                const uint8_t *p = line_in + (size_t)xmin * 3;
                int32_t s0 = HALF, s1 = HALF, s2 = HALF;
                for (int x = 0; x < xmax; x++) {
                    s0 += p[x * 3 + 0] * k[x];
                    s1 += p[x * 3 + 1] * k[x];
                    s2 += p[x * 3 + 2] * k[x];
                }
                line_out[xx * 3 + 0] = clip8(s0);
                line_out[xx * 3 + 1] = clip8(s1);
                line_out[xx * 3 + 2] = clip8(s2);
            }
        } else {
            for (int xx = 0; xx < out_width; xx++) {
                const int32_t xmin = bounds[xx * 2];
                const int32_t xmax = bounds[xx * 2 + 1];
                const int32_t *k = coeffs + (size_t)xx * ksize;
                for (int c = 0; c < channels; c++) {
                    const uint8_t *p = line_in + (size_t)xmin * channels + c;
                    int32_t s = HALF;
                    for (int x = 0; x < xmax; x++) {
                        s += p[x * channels] * k[x];
                    }
                    line_out[xx * channels + c] = clip8(s);
                }
            }
        }
    }
}

static inline __attribute__((always_inline))
void vertical(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
              size_t row_bytes, int row_begin, int row_end,
              const int32_t *bounds, const int32_t *coeffs, int ksize) {
    // Accumulate a strip of the output row at a time so the int32 sums stay in cache.
    enum { strip = 1024 };
    int32_t acc[strip];
    for (int yy = row_begin; yy < row_end; yy++) {
        const int32_t ymin = bounds[yy * 2];
        const int32_t ymax = bounds[yy * 2 + 1];
        const int32_t *k = coeffs + (size_t)yy * ksize;
        uint8_t *line_out = out + (size_t)yy * out_stride;
        for (size_t x0 = 0; x0 < row_bytes; x0 += strip) {
            size_t n = row_bytes - x0 < strip ? row_bytes - x0 : strip;
            for (size_t i = 0; i < n; i++) {
                acc[i] = HALF;
            }
            for (int y = 0; y < ymax; y++) {
                const uint8_t *line_in = in + (size_t)(ymin + y) * in_stride + x0;
                const int32_t w = k[y];
                for (size_t i = 0; i < n; i++) {
                    acc[i] += line_in[i] * w;
                }
            }
            for (size_t i = 0; i < n; i++) {
                line_out[x0 + i] = clip8(acc[i]);
            }
        }
    }
}

#ifdef PGC_X86
__attribute__((target("avx2"))) static void horizontal_avx2(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
                                                            int out_width, int channels, int row_offset, int row_begin, int row_end,
                                                            const int32_t *bounds, const int32_t *coeffs, int ksize) {
    horizontal(in, in_stride, out, out_stride, out_width, channels, row_offset, row_begin, row_end, bounds, coeffs, ksize);
}

__attribute__((target("avx2"))) static void vertical_avx2(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
                                                          size_t row_bytes, int row_begin, int row_end,
                                                          const int32_t *bounds, const int32_t *coeffs, int ksize) {
    vertical(in, in_stride, out, out_stride, row_bytes, row_begin, row_end, bounds, coeffs, ksize);
}

static int has_avx2(void) {
    static int known = -1;  // every thread computes the same answer; relaxed atomics suffice
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

void pgc_resample_horizontal(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
                             int out_width, int channels, int row_offset, int row_begin, int row_end,
                             const int32_t *bounds, const int32_t *coeffs, int ksize) {
#ifdef PGC_X86
    if (has_avx2()) {
        horizontal_avx2(in, in_stride, out, out_stride, out_width, channels, row_offset, row_begin, row_end, bounds, coeffs, ksize);
        return;
    }
#endif
    horizontal(in, in_stride, out, out_stride, out_width, channels, row_offset, row_begin, row_end, bounds, coeffs, ksize);
}

void pgc_resample_vertical(const uint8_t *in, size_t in_stride, uint8_t *out, size_t out_stride,
                           size_t row_bytes, int row_begin, int row_end,
                           const int32_t *bounds, const int32_t *coeffs, int ksize) {
#ifdef PGC_X86
    if (has_avx2()) {
        vertical_avx2(in, in_stride, out, out_stride, row_bytes, row_begin, row_end, bounds, coeffs, ksize);
        return;
    }
#endif
    vertical(in, in_stride, out, out_stride, row_bytes, row_begin, row_end, bounds, coeffs, ksize);
}
