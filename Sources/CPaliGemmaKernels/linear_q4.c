// 4-bit weights (PG_Q4): quantizer, dequantizer and the matrix products.
//
// Format: PG_Q4, described once in pg_kernels.h (at PG_Q4_GROUP).
//
// Products: each group of 32 values of a row of x is quantized to int8 (dx = max|x| / 127, ties
// rounded away from zero), laid out like the nibbles, and the sums run in integers: vpmaddubsw
// multiplies the unsigned nibbles (q + 8) with x, and since every 16-bit lane then belongs to one
// group for the whole block, the 8 products of a block add up lane by lane (each lane at most
// 8 · 2 · 15 · 127 = 30480, inside int16); one vpmaddwd gives the 8 group sums, and taking off
// c = 8 · sum(x) (what the + 8 added) in int32 leaves the exact sum of q · x, converted and
// scaled by dw · dx once per block.
// With VNNI (AVX-VNNI or AVX512-VNNI+VL, where present) vpdpbusd forms the group sums directly
// in int32, the same integers. Decode (M <= 4) streams each weight row once; prefill runs the
// same kernel 4 rows of x at a time (with AVX512-VNNI, a tile of 3 weight rows by 3 rows of x)
// over blocks of weight rows that stay in L2. The scalar kernel computes the same integer group
// sums exactly, so every level and every M agree but for float rounding.
#include "internal.h"
#include <math.h>

#define G PG_Q4_GROUP
#define BLOCK 8  // groups per interleaved block

// Byte of a weight row holding value i (0-31) of group g (low nibble for i < 16).
static inline long w_byte(long groups, long g, int i) {
    int k = i % 16;
    if (g < groups / BLOCK * BLOCK) return (g / BLOCK) * (BLOCK * 16) + 32 * (k / 4) + 4 * (g % BLOCK) + k % 4;
    return g * 16 + k;
}

// Byte of a quantized x row holding value i of group g: the same order, low nibbles' values of
// each 32-byte chunk first, then the high ones' (64 bytes per chunk of a block).
static inline long x_byte(long groups, long g, int i) {
    int k = i % 16;
    if (g < groups / BLOCK * BLOCK) return (g / BLOCK) * (BLOCK * 32) + 64 * (k / 4) + (i < 16 ? 0 : 32) + 4 * (g % BLOCK) + k % 4;
    return g * 32 + i;
}

// ---- quantization --------------------------------------------------------------------------
// The float16 scale of a group whose value of largest magnitude is m, and 1 / the scale as
// stored (0 for a zero scale).
static inline uint16_t q4_scale(float m, float *inv) {
    float s = m / -8.0f;
    if (fabsf(s) > 65504.0f) s = copysignf(65504.0f, s);  // largest float16
    uint16_t h = pg_f32_to_f16_scalar(s);
    float d = pg_f16_to_f32_scalar(h);
    *inv = d != 0 ? 1.0f / d : 0.0f;
    return h;
}

// A group's 16 bytes (byte i = value i | value 16 + i << 4, each as q + 8) at base: blocked,
// spread as in a whole PG_Q4 block (base already offset by the group's place in it); else in order.
static inline void q4_place(uint8_t *base, int blocked, const int32_t bytes[G / 2]) {
    for (int i = 0; i < G / 2; i++) base[blocked ? 32 * (i / 4) + i % 4 : i] = (uint8_t)bytes[i];
}

static inline int q4_round(float v) { return v == v ? pg_round_clamped(v, -8.0f, 7.0f) : 0; }

// One group of 32 values: its float16 scale, and its 16 bytes at base (see q4_place).
static uint16_t q4_group_scalar(const float *e, uint8_t *base, int blocked) {
    float m = 0;
    for (int i = 0; i < G; i++)
        if (fabsf(e[i]) > fabsf(m)) m = e[i];
    float inv;
    uint16_t h = q4_scale(m, &inv);
    int32_t bytes[G / 2];
    for (int i = 0; i < G / 2; i++) bytes[i] = (q4_round(e[i] * inv) + 8) | ((q4_round(e[i + G / 2] * inv) + 8) << 4);
    q4_place(base, blocked, bytes);
    return h;
}

#if PG_X86_SIMD
#include <immintrin.h>
#include "avx2_inline.h"
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
// The loops over rows of x and chunks of a block must unroll so that their vectors stay in registers.
#if defined(__clang__)
#define PG_UNROLL _Pragma("clang loop unroll(full)")
#else
#define PG_UNROLL _Pragma("GCC unroll 4")
#endif

// q4_group_scalar in vectors, with the same result; a group holding a NaN goes to the scalar one.
T_AVX2 static uint16_t q4_group_avx2(const float *e, uint8_t *base, int blocked) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], a[4];
    PG_UNROLL for (int k = 0; k < 4; k++) { v[k] = _mm256_loadu_ps(e + 8 * k); a[k] = _mm256_andnot_ps(sign, v[k]); }
    __m256 nan = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v[0], v[0], _CMP_UNORD_Q), _mm256_cmp_ps(v[1], v[1], _CMP_UNORD_Q)),
                              _mm256_or_ps(_mm256_cmp_ps(v[2], v[2], _CMP_UNORD_Q), _mm256_cmp_ps(v[3], v[3], _CMP_UNORD_Q)));
    if (_mm256_movemask_ps(nan)) return q4_group_scalar(e, base, blocked);
    float top = pg_hmax_avx2(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
    // The first value of that magnitude, as the scalar loop picks it.
    uint32_t mask = 0;
    PG_UNROLL for (int k = 0; k < 4; k++)
        mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a[k], _mm256_set1_ps(top), _CMP_EQ_OQ)) << (8 * k);
    float inv;
    uint16_t h = q4_scale(top > 0 ? e[__builtin_ctz(mask)] : 0.0f, &inv);
    const __m256 iv = _mm256_set1_ps(inv), hi = _mm256_set1_ps(7.0f), lo = _mm256_set1_ps(-8.0f);
    const __m256i eight = _mm256_set1_epi32(8);
    __m256i q[4];
    PG_UNROLL for (int k = 0; k < 4; k++) q[k] = _mm256_add_epi32(pg_round_clamped_avx2(_mm256_mul_ps(v[k], iv), lo, hi), eight);
    int32_t bytes[G / 2];
    _mm256_storeu_si256((__m256i *)bytes, _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4)));
    _mm256_storeu_si256((__m256i *)(bytes + 8), _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4)));
    q4_place(base, blocked, bytes);
    return h;
}
#endif

typedef struct { const void *src; int dtype; long cols; uint8_t *dst; uint16_t *scales; int isa; } q4_quant_job;

static void q4_quant_task(void *p, long r, int thread) {
    const q4_quant_job *j = p;
    float *v = pg_scratch(thread, 3, (size_t)j->cols);
    if (!v) return;
    pg_convert_to_f32((const char *)j->src + (size_t)r * j->cols * pg_dtype_size(j->dtype), j->dtype, v, j->cols);
    long groups = j->cols / G;
    uint8_t *out = j->dst + (size_t)r * (size_t)(j->cols / 2);
    uint16_t *sc = j->scales + (size_t)r * (size_t)groups;
    for (long g = 0; g < groups; g++) {
        uint8_t *base = out + w_byte(groups, g, 0);
        int blocked = g < groups / BLOCK * BLOCK;
#if PG_X86_SIMD
        if (j->isa >= PG_ISA_AVX2) { sc[g] = q4_group_avx2(v + g * G, base, blocked); continue; }
#endif
        sc[g] = q4_group_scalar(v + g * G, base, blocked);
    }
}

void pg_quantize_q4_isa(int isa, const void *src, int dtype, long rows, long cols, uint8_t *dst, uint16_t *scales) {
    if (rows <= 0 || cols <= 0 || cols % G != 0) return;
    if (isa > pg_isa_supported()) isa = pg_isa_supported();
    q4_quant_job j = { src, dtype, cols, dst, scales, isa };
    pg_parallel_for(rows, q4_quant_task, &j);
}

void pg_quantize_q4(const void *src, int dtype, long rows, long cols, uint8_t *dst, uint16_t *scales) {
    pg_quantize_q4_isa(pg_isa(), src, dtype, rows, cols, dst, scales);
}

void pg_dequantize_q4(const uint8_t *w, const uint16_t *scales, long rows, long cols, float *dst) {
    if (rows <= 0 || cols <= 0 || cols % G != 0) return;
    long groups = cols / G;
    for (long r = 0; r < rows; r++) {
        const uint8_t *b = w + (size_t)r * (size_t)(cols / 2);
        for (long g = 0; g < groups; g++) {
            float d = pg_f16_to_f32_scalar(scales[r * groups + g]);
            float *o = dst + r * cols + g * G;
            for (int i = 0; i < G / 2; i++) {
                uint8_t v = b[w_byte(groups, g, i)];
                o[i] = (float)((v & 15) - 8) * d;
                o[i + G / 2] = (float)((v >> 4) - 8) * d;
            }
        }
    }
}

// ---- x -------------------------------------------------------------------------------------
// Each group of 32 values of a row is a pg_quantize_q8 row of 32 (scale max|x| / 127, rounded half
// away from zero), laid out as x_byte says, with dx [groups] (the scales) and c [groups] =
// 8 · the sum of the group's values, which turns the integer sum against unsigned nibbles (q + 8)
// into the sum against q.
static void quantize_x8_row(int isa, const float *row, long K, int8_t *out, float *dx, int32_t *c) {
    long groups = K / G;
    for (long g = 0; g < groups; g++) {
        int8_t q[G];
        if (isa >= PG_ISA_AVX2) pg_quantize_q8_row_avx2(row + g * G, G, q, dx + g);
        else pg_quantize_q8_row_scalar(row + g * G, G, q, dx + g);
        int32_t sum = 0;
        for (int i = 0; i < G; i++) sum += q[i];
        c[g] = 8 * sum;
        for (int i = 0; i < G; i += 4) memcpy(out + x_byte(groups, g, i), q + i, 4);  // runs of 4 stay together
    }
}

typedef struct { const float *x; long ldx, K; int8_t *xq; float *dx; int32_t *c; int isa; } x8_job;

static void x8_task(void *p, long m, int thread) {
    (void)thread;
    const x8_job *j = p;
    long groups = j->K / G;
    quantize_x8_row(j->isa, j->x + m * j->ldx, j->K, j->xq + m * j->K, j->dx + m * groups, j->c + m * groups);
}

void pg_quantize_x8_groups_pool(int isa, const float *x, long ldx, long M, long K, int8_t *xq, float *dx, int32_t *c) {
    x8_job j = { x, ldx, K, xq, dx, c, isa };
    if (M <= 4) {  // decode: not worth waking the pool
        for (long m = 0; m < M; m++) x8_task(&j, m, 0);
        return;
    }
    pg_parallel_for(M, x8_task, &j);
}

// Group g of weight row b against group g of quantized x row xq: the exact integer sum.
static inline int32_t q4_group_dot(const uint8_t *b, const int8_t *xq, long groups, long g) {
    int32_t t = 0;
    for (int i = 0; i < G / 2; i++) {
        uint8_t v = b[w_byte(groups, g, i)];
        t += ((v & 15) - 8) * (int32_t)xq[x_byte(groups, g, i)];
        t += ((v >> 4) - 8) * (int32_t)xq[x_byte(groups, g, i + G / 2)];
    }
    return t;
}

void pg_gemv_q4_cols_scalar(const int8_t *xq, const float *dx, const int32_t *c, long M, long K, const uint8_t *w,
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

#if PG_X86_SIMD
// One 32-byte chunk j of a block (4 bytes of each of its 8 groups: low nibbles lo, high nibbles
// hi) against row xp of x, added to that row's running sums: CHUNK(sum, lo, hi, xp, first); then
// FINISH(g32, sum) gives the block's 8 group sums in int32. AVX2: vpmaddubsw pairs added lane by
// lane in int16 (lane q holds group q's bytes, and no int16 sum saturates), one vpmaddwd at the
// end; VNNI: vpdpbusd straight into the int32 lanes. Both give the same integers.
#define CHUNK_AVX2(sum, lo, hi, xp, first) {                                                                     \
        __m256i t_ = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(xp))),     \
                                      _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)((xp) + 32)))); \
        sum = (first) ? t_ : _mm256_add_epi16(sum, t_); }
#define FINISH_AVX2(g32, sum) g32 = _mm256_madd_epi16(sum, _mm256_set1_epi16(1));
#define CHUNK_VNNI(DP, sum, lo, hi, xp, first)                                                                   \
        sum = DP(DP((first) ? _mm256_setzero_si256() : sum, lo, _mm256_loadu_si256((const __m256i *)(xp))),    \
                 hi, _mm256_loadu_si256((const __m256i *)((xp) + 32)));
#define CHUNK_AVXVNNI(sum, lo, hi, xp, first) CHUNK_VNNI(_mm256_dpbusd_avx_epi32, sum, lo, hi, xp, first)
#define CHUNK_AVX512VNNI(sum, lo, hi, xp, first) CHUNK_VNNI(_mm256_dpbusd_epi32, sum, lo, hi, xp, first)
#define FINISH_VNNI(g32, sum) g32 = sum;

// Software prefetch of the weight rows this far ahead, into L1: 4 KB is four rows at a depth of
// 2048. A decode step's products over the 3B decoder's 4-bit weights (C harness, 2 threads, Zen 5,
// read probe 46-50 GB/s) took 29.4 ms with 1 KB, 27.9 with 2 KB, 26.2 with 4 KB, 26.7 with 8 KB;
// two rows of 2 at a time (two streams) were slower.
#define Q4_PF 4096

// NAME(b, s, groups, K, xq, dx, c, MM, out): one weight row against MM (1-4) rows of quantized x,
// full blocks of 8 groups in SIMD (chunk by chunk, each unpacked once for the MM rows), the rest
// scalar. Each block's sums less c (the + 8's share) are the exact sums of q · x.
#define PG_Q4_ROW(NAME, TARGET, CHUNK, FINISH)                                                                   \
TARGET static inline __attribute__((always_inline)) void NAME##_rows(                                            \
        const uint8_t *b, const uint16_t *s, long groups, long K, const int8_t *xq, const float *dx, const int32_t *c, \
        const long MM, float *out) {                                                                           \
    const __m256i low = _mm256_set1_epi8(15);                                                                  \
    __m256 acc[4];                                                                                             \
    PG_UNROLL for (long m = 0; m < MM; m++) acc[m] = _mm256_setzero_ps();                                      \
    long g = 0;                                                                                                \
    for (; g + BLOCK <= groups; g += BLOCK) {                                                                  \
        const uint8_t *wb = b + g * 16;                                                                        \
        _mm_prefetch((const char *)(wb + Q4_PF), _MM_HINT_T0);                                                 \
        _mm_prefetch((const char *)(wb + Q4_PF + 64), _MM_HINT_T0);                                            \
        __m256i sum[4];                                                                                        \
        PG_UNROLL for (int j = 0; j < 4; j++) {                                                                \
            __m256i v = _mm256_loadu_si256((const __m256i *)(wb + 32 * j));                                    \
            __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);        \
            PG_UNROLL for (long m = 0; m < MM; m++) CHUNK(sum[m], lo, hi, xq + m * K + g * 32 + 64 * j, j == 0) \
        }                                                                                                      \
        __m256 sw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + g)));                                \
        PG_UNROLL for (long m = 0; m < MM; m++) {                                                              \
            __m256i g32;                                                                                       \
            FINISH(g32, sum[m])                                                                                \
            g32 = _mm256_sub_epi32(g32, _mm256_loadu_si256((const __m256i *)(c + m * groups + g)));            \
            __m256 sc = _mm256_mul_ps(sw, _mm256_loadu_ps(dx + m * groups + g));                               \
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(g32), sc, acc[m]);                                     \
        }                                                                                                      \
    }                                                                                                          \
    PG_UNROLL for (long m = 0; m < MM; m++) {                                                                  \
        float t = pg_hsum_avx2(acc[m]);                                                                        \
        for (long r = g; r < groups; r++)                                                                      \
            t += pg_f16_to_f32_scalar(s[r]) * dx[m * groups + r] * (float)q4_group_dot(b, xq + m * K, groups, r); \
        out[m] = t;                                                                                            \
    }                                                                                                          \
}                                                                                                              \
TARGET static void NAME(const uint8_t *b, const uint16_t *s, long groups, long K, const int8_t *xq,             \
                        const float *dx, const int32_t *c, long MM, float *out) {                              \
    switch (MM) {                                                                                              \
    case 1: NAME##_rows(b, s, groups, K, xq, dx, c, 1, out); break;                                           \
    case 2: NAME##_rows(b, s, groups, K, xq, dx, c, 2, out); break;                                           \
    case 3: NAME##_rows(b, s, groups, K, xq, dx, c, 3, out); break;                                           \
    default: NAME##_rows(b, s, groups, K, xq, dx, c, 4, out); break;                                          \
    }                                                                                                          \
}
PG_Q4_ROW(q4_row_avx2, T_AVX2, CHUNK_AVX2, FINISH_AVX2)
PG_Q4_ROW(q4_row_avxvnni, __attribute__((target("avx2,fma,f16c,avxvnni"))), CHUNK_AVXVNNI, FINISH_VNNI)
PG_Q4_ROW(q4_row_avx512vnni, __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni"))), CHUNK_AVX512VNNI, FINISH_VNNI)

typedef void (*q4_row_fn)(const uint8_t *, const uint16_t *, long, long, const int8_t *, const float *, const int32_t *,
                          long, float *);

T_AVX2 void pg_gemv_q4_cols_avx2(const int8_t *xq, const float *dx, const int32_t *c, long M, long K, const uint8_t *w,
                                 const uint16_t *scales, float *y, long ldy, long n0, long n1, int features) {
    long groups = K / G;
    q4_row_fn row = features & PG_FEAT_AVX_VNNI ? q4_row_avxvnni
                  : features & PG_FEAT_AVX512_VNNI ? q4_row_avx512vnni : q4_row_avx2;
    for (long n = n0; n < n1; n++) {
        const uint8_t *b = w + (size_t)n * (size_t)(K / 2);
        const uint16_t *s = scales + (size_t)n * (size_t)groups;
        float out[4];
        row(b, s, groups, K, xq, dx, c, M < 4 ? M : 4, out);
        for (long m = 0; m < M; m++) y[m * ldy + n] = out[m];
    }
}

// Prefill's tile with AVX512-VNNI (whose 32 vector registers hold it): 3 weight rows against MM
// (1-3) rows of x, each chunk of x loaded once for the 3 weight rows and each chunk of weights
// unpacked once for the 3 x rows: one row of weights against 4 of x took a load of x per
// vpdpbusd. The sums start at -c instead of taking c off at the end (the same integers), and each
// pair of rows sums exactly as q4_row_avx512vnni_rows does, so the results are the same bits.
// The first pass over a block of weight rows (pf) prefetches them as the row kernel does.
// 2 x 4 and 4 x 2 tiles were slower (C harness, the 3B decoder's products over 266 rows, Zen 4:
// one row at a time 387 GOP/s, 2 x 4 516-525, 4 x 2 470-481, 3 x 3 536-554).
#define Q4_TILE_ROWS 3
#define Q4_TILE_X 3
__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni"))) static inline __attribute__((always_inline)) void
q4_tile_avx512vnni_rows(const uint8_t *b, const uint16_t *s, long groups, long K, const int8_t *xq, const float *dx,
                        const int32_t *c, const long MM, int pf, float out[Q4_TILE_ROWS][Q4_TILE_X]) {
    const __m256i low = _mm256_set1_epi8(15);
    const long wstride = K / 2;
    __m256 acc[Q4_TILE_ROWS][Q4_TILE_X];
    PG_UNROLL for (int r = 0; r < Q4_TILE_ROWS; r++) PG_UNROLL for (long m = 0; m < MM; m++) acc[r][m] = _mm256_setzero_ps();
    long g = 0;
    for (; g + BLOCK <= groups; g += BLOCK) {
        if (pf)
            PG_UNROLL for (int r = 0; r < Q4_TILE_ROWS; r++) {
                _mm_prefetch((const char *)(b + r * wstride + g * 16 + Q4_PF), _MM_HINT_T0);
                _mm_prefetch((const char *)(b + r * wstride + g * 16 + Q4_PF + 64), _MM_HINT_T0);
            }
        __m256i sum[Q4_TILE_ROWS][Q4_TILE_X], negc[Q4_TILE_X];  // the sums start at -c: the + 8's share comes off as they run
        PG_UNROLL for (long m = 0; m < MM; m++)
            negc[m] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_loadu_si256((const __m256i *)(c + m * groups + g)));
        PG_UNROLL for (int j = 0; j < 4; j++) {
            __m256i lo[Q4_TILE_ROWS], hi[Q4_TILE_ROWS];
            PG_UNROLL for (int r = 0; r < Q4_TILE_ROWS; r++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(b + r * wstride + g * 16 + 32 * j));
                lo[r] = _mm256_and_si256(v, low);
                hi[r] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            }
            PG_UNROLL for (long m = 0; m < MM; m++) {
                const int8_t *xp = xq + m * K + g * 32 + 64 * j;
                __m256i x0 = _mm256_loadu_si256((const __m256i *)xp), x1 = _mm256_loadu_si256((const __m256i *)(xp + 32));
                PG_UNROLL for (int r = 0; r < Q4_TILE_ROWS; r++)
                    sum[r][m] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(j == 0 ? negc[m] : sum[r][m], lo[r], x0), hi[r], x1);
            }
        }
        __m256 sw[Q4_TILE_ROWS];
        PG_UNROLL for (int r = 0; r < Q4_TILE_ROWS; r++) sw[r] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + r * groups + g)));
        PG_UNROLL for (long m = 0; m < MM; m++) {
            __m256 dxm = _mm256_loadu_ps(dx + m * groups + g);
            PG_UNROLL for (int r = 0; r < Q4_TILE_ROWS; r++)
                acc[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][m]), _mm256_mul_ps(sw[r], dxm), acc[r][m]);
        }
    }
    PG_UNROLL for (int r = 0; r < Q4_TILE_ROWS; r++) PG_UNROLL for (long m = 0; m < MM; m++) {
        float t = pg_hsum_avx2(acc[r][m]);
        for (long q = g; q < groups; q++)
            t += pg_f16_to_f32_scalar(s[r * groups + q]) * dx[m * groups + q] * (float)q4_group_dot(b + r * wstride, xq + m * K, groups, q);
        out[r][m] = t;
    }
}

__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni"))) static void
q4_tile_avx512vnni(const uint8_t *b, const uint16_t *s, long groups, long K, const int8_t *xq, const float *dx,
                   const int32_t *c, long MM, int pf, float out[Q4_TILE_ROWS][Q4_TILE_X]) {
    switch (MM) {
    case 1: q4_tile_avx512vnni_rows(b, s, groups, K, xq, dx, c, 1, pf, out); break;
    case 2: q4_tile_avx512vnni_rows(b, s, groups, K, xq, dx, c, 2, pf, out); break;
    default: q4_tile_avx512vnni_rows(b, s, groups, K, xq, dx, c, 3, pf, out); break;
    }
}

// Any M: the kernel on 4 rows of x at a time (for more than 8, the tile's 3 with AVX512-VNNI), over
// blocks of weight rows small enough to stay in L2 while every group of x rows passes over them
// (each weight byte is unpacked once per group of x rows and read from memory once per block).
T_AVX2 void pg_gemm_q4_cols_avx2(const int8_t *xq, const float *dx, const int32_t *c, long M, long K, const uint8_t *w,
                                 const uint16_t *scales, float *y, long ldy, long n0, long n1, int features) {
    long groups = K / G;
    long row_bytes = K / 2 + groups * 2;
    long nb_rows = (256L << 10) / row_bytes;
    if (nb_rows < 8) nb_rows = 8;
    // Decode and batched decode (up to 8 rows, where 2 passes of 4 rows were as fast: 133-135 ms a
    // step of 8 sequences on the 3B, against 136-138 in 3 passes of the tile) stay on the row kernel.
    int tile = M > PG_GEMV_ROWS && (features & PG_FEAT_AVX512_VNNI);
    for (long nb = n0; nb < n1; nb += nb_rows) {
        long ne = n1 - nb < nb_rows ? n1 : nb + nb_rows;
        long step = tile ? Q4_TILE_X : 4;
        for (long m = 0; m < M; m += step) {
            long mm = M - m < step ? M - m : step, n = nb;
            for (; tile && n + Q4_TILE_ROWS <= ne; n += Q4_TILE_ROWS) {
                float out[Q4_TILE_ROWS][Q4_TILE_X];
                q4_tile_avx512vnni(w + (size_t)n * (size_t)(K / 2), scales + (size_t)n * (size_t)groups, groups, K,
                                   xq + m * K, dx + m * groups, c + m * groups, mm, m == 0, out);
                for (long i = 0; i < mm; i++)
                    for (int r = 0; r < Q4_TILE_ROWS; r++) y[(m + i) * ldy + n + r] = out[r][i];
            }
            if (n < ne)
                pg_gemv_q4_cols_avx2(xq + m * K, dx + m * groups, c + m * groups, mm, K, w, scales, y + m * ldy, ldy, n,
                                     ne, features);
        }
    }
}

#define T_Q4BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,f16c")))

// One group's 16 bytes (low nibble value i, high nibble 16 + i) times d as 32 bf16 at o.
T_Q4BF16 static inline void group_to_bf16(__m128i v, float d, uint16_t *o) {
    const __m128i low = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    __m128i lo = _mm_sub_epi8(_mm_and_si128(v, low), eight);
    __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low), eight);
    __m512 dv = _mm512_set1_ps(d);
    _mm256_storeu_si256((__m256i *)o, (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), dv)));
    _mm256_storeu_si256((__m256i *)(o + 16), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), dv)));
}

// Groups [g0, g1) of a 4-bit row as bf16 (q · scale, rounded to nearest even) into dst, for the
// fast products (gemm_bf16.c). In a whole block of 8 groups, dword j of group q is at 32j + 4q:
// an aligned block's 4 chunks are transposed in registers (group q in lane 0 of one register,
// q + 4 in lane 1), other groups of a block take their 4 dwords one by one (a gather took most
// of this function's time: 13.6% of a LoRA step on a 4-bit base, Zen 4).
T_Q4BF16 void pg_q4_row_to_bf16(const uint8_t *row, const uint16_t *scales, long groups, long g0, long g1, uint16_t *dst) {
    long whole = groups / BLOCK * BLOCK;
    for (long g = g0; g < g1;) {
        if (g % BLOCK == 0 && g + BLOCK <= g1 && g + BLOCK <= whole) {
            const uint8_t *b = row + g * 16;
            __m256i c0 = _mm256_loadu_si256((const __m256i *)b), c1 = _mm256_loadu_si256((const __m256i *)(b + 32));
            __m256i c2 = _mm256_loadu_si256((const __m256i *)(b + 64)), c3 = _mm256_loadu_si256((const __m256i *)(b + 96));
            __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);  // groups 0, 1 / 2, 3 (+4)
            __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
            __m256i u[4] = { _mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),     // groups 0 / 4, 1 / 5
                             _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3) };   // 2 / 6, 3 / 7
            float d[BLOCK];
            _mm256_storeu_ps(d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + g))));
            uint16_t *o = dst + (g - g0) * G;
            for (int q = 0; q < 4; q++) {
                group_to_bf16(_mm256_castsi256_si128(u[q]), d[q], o + q * G);
                group_to_bf16(_mm256_extracti128_si256(u[q], 1), d[q + 4], o + (q + 4) * G);
            }
            g += BLOCK;
            continue;
        }
        __m128i v;
        if (g < whole) {
            const uint8_t *b = row + (g / BLOCK) * (BLOCK * 16) + 4 * (g % BLOCK);
            int32_t dw[4];
            for (int j = 0; j < 4; j++) memcpy(dw + j, b + 32 * j, 4);
            v = _mm_loadu_si128((const __m128i *)dw);
        } else {
            v = _mm_loadu_si128((const __m128i *)(row + g * 16));
        }
        group_to_bf16(v, pg_f16_to_f32_scalar(scales[g]), dst + (g - g0) * G);
        g++;
    }
}
#else
void pg_gemv_q4_cols_avx2(const int8_t *xq, const float *dx, const int32_t *c, long M, long K, const uint8_t *w,
                          const uint16_t *scales, float *y, long ldy, long n0, long n1, int features) {
    (void)features;
    pg_gemv_q4_cols_scalar(xq, dx, c, M, K, w, scales, y, ldy, n0, n1);
}
void pg_gemm_q4_cols_avx2(const int8_t *xq, const float *dx, const int32_t *c, long M, long K, const uint8_t *w,
                          const uint16_t *scales, float *y, long ldy, long n0, long n1, int features) {
    (void)features;
    pg_gemv_q4_cols_scalar(xq, dx, c, M, K, w, scales, y, ldy, n0, n1);
}
#endif
