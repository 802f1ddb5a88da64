// Internal declarations shared by the kernel files (not part of the public header).
#ifndef PG_INTERNAL_H
#define PG_INTERNAL_H
#include "pg_kernels.h"
#include <math.h>
#include <string.h>

// The x86-64 SIMD kernels are compiled on x86-64 unless PG_PORTABLE_ONLY is defined, which builds
// the portable fallback alone (to check it on an x86 machine).
#if defined(__x86_64__) && !defined(PG_PORTABLE_ONLY)
#define PG_X86_SIMD 1
#else
#define PG_X86_SIMD 0
#endif

static inline float pg_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float pg_f16_to_f32_scalar(uint16_t h);
uint16_t pg_f32_to_f16_scalar(float f);
uint16_t pg_f32_to_bf16_scalar(float f);

static inline float pg_load_as_f32(const void *base, int dtype, long i) {
    switch (dtype) {
    case PG_BF16: { uint16_t h; memcpy(&h, (const char *)base + 2 * i, 2); return pg_bf16_to_f32(h); }
    case PG_F16: { uint16_t h; memcpy(&h, (const char *)base + 2 * i, 2); return pg_f16_to_f32_scalar(h); }
    case PG_I8: return (float)((const int8_t *)base)[i];
    default: { float f; memcpy(&f, (const char *)base + 4 * i, 4); return f; }
    }
}

static inline size_t pg_dtype_size(int dtype) { return dtype == PG_F32 ? 4 : dtype == PG_I8 ? 1 : 2; }

/// Per-thread scratch memory that grows as needed and is reused across calls (never shrinks).
/// `slot` separates independent buffers used at the same time by one thread.
float *pg_scratch(int thread, int slot, size_t floats);

// Rows of x up to which products with float weights (f32, bf16, f16) stream each weight row once
// against all of them (decode, and batched decode of up to 8 sequences, bound by memory rather
// than arithmetic): in float32, or from 2 rows at FAST precision on vdpbf16ps
// (pg_gemv_bf16_cols); more rows go to the blocked prefill kernels. int8 and 4-bit weights
// switch at 4 rows.
#define PG_GEMV_ROWS 8
// How far ahead of its reads (bytes) the one-row decode loop prefetches each weight row.
#ifndef PG_GEMV_PREFETCH  // (a harness may set it)
#define PG_GEMV_PREFETCH 8192
#endif
// A 64-byte-aligned buffer of at least `bytes` owned by the calling thread (contents not kept
// when it grows), freed when the thread exits; NULL if it cannot be allocated. One per slot.
enum { PG_TBUF_MATMUL_A, PG_TBUF_LINEAR_X, PG_TBUF_LINEAR_SCALES, PG_TBUF_SCRATCH, PG_TBUF_SLOTS = PG_TBUF_SCRATCH + 4 };
void *pg_thread_buffer(int slot, size_t bytes);
/// Threads the next parallel call from this thread will use: 1 under pg_set_thread_serial.
int pg_threads_here(void);

// Blocking of the prefill matrix kernel, shared by every ISA: MR rows of x per micro-tile,
// KC-deep blocks. x packed for it ("A pack"): for each depth block kc0 (length kc), at offset
// Mpad * kc0, the row blocks one after another, each [kc][MR] (Mpad = M rounded up to MR).
#define PG_GEMM_MR 6
#define PG_GEMM_KC 256
/// Packs rows [0, M) of x into dst (Mpad * K floats) in that layout, on the pool.
void pg_pack_a(const float *x, long ldx, long M, long K, float *dst);
/// pg_pack_a of x = aᵀ for a [K, M] (row stride lda), read from a as it is.
void pg_pack_at(const float *a, long lda, long M, long K, float *dst);

/// One row block of the A pack: rows [b·MR, b·MR + MR) of x[:, kc0 : kc0 + kc] into
/// dst[k][i] (k-major, MR wide); rows at or beyond M are zero.
/// pg_pack_a_block of x = aᵀ for a [K, M]: MR consecutive values of each row of a.
static inline void pg_pack_at_block(const float *a, long lda, long M, long b, long kc0, long kc, float *dst) {
    long m0 = b * PG_GEMM_MR, n = M - m0 < PG_GEMM_MR ? M - m0 : PG_GEMM_MR;
    for (long k = 0; k < kc; k++) {
        const float *src = a + (kc0 + k) * lda + m0;
        float *d = dst + k * PG_GEMM_MR;
        long i = 0;
        for (; i < n; i++) d[i] = src[i];
        for (; i < PG_GEMM_MR; i++) d[i] = 0.0f;
    }
}

static inline void pg_pack_a_block(const float *x, long ldx, long M, long b, long kc0, long kc, float *dst) {
    for (long i = 0; i < PG_GEMM_MR; i++) {
        long m = b * PG_GEMM_MR + i;
        if (m < M) {
            const float *src = x + m * ldx + kc0;
            for (long k = 0; k < kc; k++) dst[k * PG_GEMM_MR + i] = src[k];
        } else {
            for (long k = 0; k < kc; k++) dst[k * PG_GEMM_MR + i] = 0.0f;
        }
    }
}

/// v clamped to [lo, hi] and rounded half away from zero: the rounding of the int8 and 4-bit
/// quantizers (their vector versions, pg_round_clamped_avx2, give the same integers).
static inline int pg_round_clamped(float v, float lo, float hi) {
    v = v > hi ? hi : v < lo ? lo : v;
    return (int)(v + (v >= 0 ? 0.5f : -0.5f));
}

/// Rows of x as int16 for the integer int8 kernels: scale max|row| / 32767 (1 for a zero row),
/// and each value divided by it, clamped and rounded to nearest.
static inline float pg_x16_scale(const float *row, long K) {
    float mx = 0;
    for (long k = 0; k < K; k++) mx = fmaxf(mx, fabsf(row[k]));
    return mx > 0 ? mx / 32767.0f : 1.0f;
}
static inline int16_t pg_x16(float v, float inv_scale) {
    float q = v * inv_scale;
    q = q > 32767.0f ? 32767.0f : q < -32767.0f ? -32767.0f : q;
    return (int16_t)lrintf(q);
}
/// The prefill kernel for columns [n0, n1) with x already packed by pg_pack_a (or pg_pack_at):
/// W(n, k) = w[n][k], or w[k][n] with kn (pg_matmul).
void pg_gemm_packed_avx2(const float *apack, const void *w, int wdtype, int kn, long ldw, const float *bias, float *y,
                         long ldy, long M, long n0, long n1, long K, int thread);
void pg_gemm_packed_avx512(const float *apack, const void *w, int wdtype, int kn, long ldw, const float *bias, float *y,
                           long ldy, long M, long n0, long n1, long K, int thread);

// Prefill with int8 weights in integer arithmetic (gemm_i8.c): x quantized per row to int16
// (scales xs) and packed in pairs of k; y[m][n] for n in [n0, n1) = xs[m] * sum_k x[m, k] w[n, k].
size_t pg_pack_a16_size(long M, long K);
void pg_pack_a16(const float *x, long ldx, long M, long K, int16_t *dst, float *xs);
void pg_gemm_i8_avx2(const int16_t *apack, const float *xs, const int8_t *w, long ldw, float *y, long ldy,
                     long M, long n0, long n1, long K, int thread, int features);

// FAST products (gemm_bf16.c): pg_x_to_bf16 rearranges x for them (pg_xbf16_size bytes, the
// layout "xt" described in gemm_bf16.c); pg_gemm_bf16_cols then gives y[m][n] for n in [n0, n1)
// = bias[n] + scale[n] · sum_k bf16(x[m][k]) bf16(w[n][k]) (scale NULL: 1) on `kernel`
// (PG_FAST_AMX or PG_FAST_AVX512_BF16); w f32, bf16, f16, int8, or 4-bit with its group scales
// q4scales (each value q · scale rounded to bf16). With kn, w is k-major ([K][N], row stride
// ldw; 4-bit: groups of 32 along N, ldw = N) and y[m][n] = sum_k bf16(x[m][k]) bf16(w[k][n]).
// With kn, x goes in as its rows rounded to bf16 instead, [Mp][Kp] zero-padded
// (pg_x_to_bf16_rows; the same pg_xbf16_size bytes).
size_t pg_xbf16_size(long M, long K);
#if PG_X86_SIMD
/// Groups [g0, g1) of one 4-bit weight row (its bytes and its groups' scales) as bf16 values into
/// dst (32 per group), rounded to nearest even; needs AVX512-BF16 (linear_q4.c).
void pg_q4_row_to_bf16(const uint8_t *row, const uint16_t *scales, long groups, long g0, long g1, uint16_t *dst);
/// AMX tile configuration of the fast kernel (eight tiles of 16 rows x 64 bytes) on this thread,
/// and its release; only where the CPU has AMX.
void pg_amx_configure(void);
void pg_amx_release(void);
/// One 32 x 32 block of float32 sums on vdpbf16ps: c[i][j] = sum_{p < kc/2} a[i][2p] xt[p][j].lo +
/// a[i][2p + 1] xt[p][j].hi, for 32 rows of bf16 a (row stride lda elements, kc even) against
/// xt's pairs ([kc/2][32] uint32, the layout of gemm_bf16.c's B operand). Needs AVX512-BF16.
void pg_bf16_block(const uint16_t *a, long lda, const uint32_t *xt, long kc, float *c);
#endif
void pg_x_to_bf16(const float *x, long ldx, long M, long K, uint16_t *dst);
void pg_x_to_bf16_rows(const float *x, long ldx, long M, long K, uint16_t *dst);
// FAST products of 1..PG_GEMV_ROWS rows of x (used for 2 and more: batched decode) with f32, bf16 or f16 weights, on
// vdpbf16ps, each weight row streamed once: pg_x_rows_to_bf16 writes x as bf16 in chunks of 32,
// the rows' chunks side by side (pg_xrows_bf16_size bytes, zero-padded; gemm_bf16.c), and
// pg_gemv_bf16_cols (M as given to it) then gives y[m][n]
// for n in [n0, n1) = bias[n] + sum_k bf16(x[m][k]) bf16(w[n][k]). Needs AVX512-BF16.
size_t pg_xrows_bf16_size(long M, long K);
void pg_x_rows_to_bf16(const float *x, long ldx, long M, long K, uint16_t *dst);
void pg_gemv_bf16_cols(const uint16_t *xr, long M, long K, const void *w, int dtype, long ldw, const float *bias,
                       float *y, long ldy, long n0, long n1);
void pg_gemm_bf16_cols(int kernel, const uint16_t *xb, long M, long K, const void *w, int dtype, int kn, long ldw,
                       const uint16_t *q4scales, const float *scale, const float *bias, float *y, long ldy, long n0,
                       long n1, int thread);

// ISA-specific matrix kernels. Each computes y rows [0,M) for columns [n0,n1) of pg_linear.
void pg_linear_cols_scalar(const float *x, long ldx, const void *w, int wdtype, long ldw,
                           const float *bias, float *y, long ldy, long M, long n0, long n1, long K,
                           int thread);
void pg_linear_cols_avx2(const float *x, long ldx, const void *w, int wdtype, long ldw,
                         const float *bias, float *y, long ldy, long M, long n0, long n1, long K,
                         int thread);
void pg_linear_cols_avx512(const float *x, long ldx, const void *w, int wdtype, long ldw,
                           const float *bias, float *y, long ldy, long M, long n0, long n1, long K,
                           int thread);
// Batched exact decode with bf16 weights on AVX2 (2..PG_GEMV_ROWS rows of x; linear_avx2.c). A
// 32-byte load of a weight row holds 16 bf16 values, lane i of its eight 32-bit lanes being
// w[2i] (low half) and w[2i + 1] (high half): a shift by 16 gives the even values as floats and a
// mask the odd ones, two vectors for two operations where widening 8 values takes two. x is
// prepared to match by pg_x_rows_eo(…, 16): each block of 16 of a row as its 8 even entries, then
// its 8 odd ones (the last K % 16 as they are), rows K apart (M * K floats).
// pg_gemv_bf16_eo_cols_avx2 then gives y[m][n] for n in [n0, n1) = bias[n] + sum_k x[m][k] w[n][k],
// in float32. The same on AVX-512 for one row of x (a single sequence's exact decode; linear_avx512.c):
// 64-byte loads of 32 values, x by pg_x_rows_eo(…, 32).
void pg_x_rows_eo(const float *x, long ldx, long M, long K, long block, float *dst);
void pg_gemv_bf16_eo_cols_avx2(const float *xeo, long M, long K, const uint16_t *w, long ldw, const float *bias,
                               float *y, long ldy, long n0, long n1);
void pg_gemv_bf16_eo1_cols_avx512(const float *xeo, long K, const uint16_t *w, long ldw, const float *bias, float *y,
                                  long n0, long n1);
// int8 weights against 1..PG_GEMV_ROWS rows of x quantized to int16 (linear_i8.c): y[m, n] for n in [n0, n1)
// = xs[m] * sum_k xq[m, k] * w[n, k] (the weight's row scale is applied by the caller).
void pg_quantize_x16(const float *x, long ldx, long M, long K, int16_t *xq, float *xs);
/// One row of pg_quantize_q8 (values already float32); every level gives the same bytes.
void pg_quantize_q8_row_scalar(const float *v, long cols, int8_t *out, float *scale);
void pg_quantize_q8_row_avx2(const float *v, long cols, int8_t *out, float *scale);
void pg_gemv_i8_cols_scalar(const int16_t *xq, const float *xs, long M, long K, const int8_t *w, long ldw,
                            float *y, long ldy, long n0, long n1);
void pg_gemv_i8_cols_avx2(const int16_t *xq, const float *xs, long M, long K, const int8_t *w, long ldw,
                          float *y, long ldy, long n0, long n1);
// 4-bit weights (linear_q4.c): x rows quantized to int8 per group of 32 (each group as a
// pg_quantize_q8 row of 32) in the kernels' interleaved block layout, with dx [M, K / 32] (scales)
// and c [M, K / 32] (8 · the group sum of the int8 values), rows spread over the pool (inline for M <= 4);
// y[m, n] for n in [n0, n1) = sum_g dw[n, g] dx[m, g] (integer group sum).
void pg_quantize_x8_groups_pool(int isa, const float *x, long ldx, long M, long K, int8_t *xq, float *dx, int32_t *c);
void pg_gemv_q4_cols_scalar(const int8_t *xq, const float *dx, const int32_t *c, long M, long K, const uint8_t *w,
                            const uint16_t *scales, float *y, long ldy, long n0, long n1);
void pg_gemv_q4_cols_avx2(const int8_t *xq, const float *dx, const int32_t *c, long M, long K, const uint8_t *w,
                          const uint16_t *scales, float *y, long ldy, long n0, long n1, int features);
/// The same for any M: blocks of weight rows against 4 rows of x at a time (above 8 rows with
/// AVX512-VNNI, tiles of 3 weight rows by 3 rows of x).
void pg_gemm_q4_cols_avx2(const int8_t *xq, const float *dx, const int32_t *c, long M, long K, const uint8_t *w,
                          const uint16_t *scales, float *y, long ldy, long n0, long n1, int features);
// y[m][n] = sum_k x[m][k] * w[k][n] (float32, w k-major with row stride ldw), single-threaded
// on `thread`'s scratch: the blocked kernel with panels copied instead of transposed.
void pg_matmul_kn_scalar(const float *x, long ldx, const float *w, long ldw, float *y, long ldy, long M, long N, long K);
void pg_matmul_kn_avx2(const float *x, long ldx, const float *w, long ldw, float *y, long ldy, long M, long N, long K,
                       int thread);
void pg_matmul_kn_avx512(const float *x, long ldx, const float *w, long ldw, float *y, long ldy, long M, long N, long K,
                         int thread);
// y[m][n] for n in [n0, n1) = sum_k x[m][k] * w[k][n], w k-major in its dtype (f32, bf16, f16, i8).
void pg_matmul_cols_scalar(const float *x, long ldx, const void *w, int dtype, long ldw, float *y, long ldy, long M,
                           long n0, long n1, long K, int thread);
void pg_matmul_cols_avx2(const float *x, long ldx, const void *w, int dtype, long ldw, float *y, long ldy, long M,
                         long n0, long n1, long K, int thread);
void pg_matmul_cols_avx512(const float *x, long ldx, const void *w, int dtype, long ldw, float *y, long ldy, long M,
                           long n0, long n1, long K, int thread);
void pg_axpy_f32_avx2(float *y, float a, const float *x, long n);
void pg_axpy_f32_avx512(float *y, float a, const float *x, long n);
/// gelu_tanh(a) (times b when given) in place with AVX2, every element (the tail masked); returns n.
long pg_gelu_tanh_avx2(float *a, const float *b, long n);
/// Backward of GeGLU (tanh GELU; up NULL for the plain GELU) with AVX2; returns elements done.
long pg_geglu_backward_avx2(const float *da, const float *gate, const float *up, float *dgate, float *dup, long n);
/// Softmax pieces with AVX2: x *= scale returning max(x); x = exp(x - shift) returning the sum
/// (exp from the same polynomial as the GELU, a few float32 ulps; -inf gives 0).
float pg_scale_max_avx2(float *x, long n, float scale);
float pg_exp_shift_sum_avx2(float *x, long n, float shift);
/// The same three on AVX-512 (activations_avx512.c; the GELU as x / (1 + exp(-2y)), every element
/// including the tail, so it returns n).
long pg_gelu_tanh_avx512(float *a, const float *b, long n);
float pg_scale_max_avx512(float *x, long n, float scale);
float pg_exp_shift_sum_avx512(float *x, long n, float shift);
/// The same on an explicit level (ops.c; the scalar level uses expf).
float pg_scale_max(int isa, float *x, long n, float scale);
float pg_exp_shift_sum(int isa, float *x, long n, float shift);
#endif
