// Prefill products in bfloat16 ("fast" precision, pg_set_precision): x and the weights rounded
// to bfloat16 (round to nearest even, as PyTorch's bf16 tensors are), products summed in float32.
//
// The product is formed transposed, yᵀ = W·xᵀ, so that the weights are read as they are stored
// (rows of K bf16 values, no packing) and only x is rearranged, once per call:
//   xt: x as bf16 pairs, transposed, in blocks of 32 rows of x: block b is [Kp / 2][32] pairs at
//       b·(Kp / 2)·32, pair (p, i) = (x[32b + i][2p], x[32b + i][2p + 1]) (Mp, Kp = M, K rounded
//       up to 32; the padding is zero). Its 16 x 16 quarters are the B operand of AMX's
//       tdpbf16ps (row stride 128 bytes), and its rows that of vdpbf16ps.
//   A block of 32 weight rows is the A operand (tiles of 16 rows x 32 k, row stride 2·ldw bytes),
//   read straight from the weights when they are bf16 and whole; otherwise (another dtype, the
//   last rows of N, K's last columns when K is not a multiple of 32) its depth chunk is first
//   copied, rounded and zero-padded. int8 weights (values -128..127, which bf16 holds exactly)
//   go the same way, their row scales applied with the bias when y is written, and 4-bit ones
//   as q · scale rounded to bf16.
// Each column task runs depth chunks of KC: per chunk, each block of 32 weight rows (kept in
// cache) against every 32-row block of x (the chunk of xt stays in L2 for all of the task's
// rows), the 32 x 32 sums of yᵀ carried between chunks in a scratch buffer (in tiles with AMX)
// and, in the last chunk, transposed into y as soon as each block is done, while its sums are
// still in L1 (storing every block after the last chunk read them back from L3: the task's sums
// outgrow L2). (A software prefetch of the next weight block, a share per block of x, cost more
// in stalls on its own instructions than it saved.)
// Through a k-major w (kn: dX = dY · W in training) the roles swap (gemm_kn): x's rows as bf16
// are the A operand and w's rows, paired along k, the B operand in xt's layout, so nothing is
// transposed; that ran the decoder's dX products 25-28% faster than copying w's blocks
// transposed into the A layout (harness, Zen 5: 645-652 -> 828-833 GFLOP/s with the prefetch).
#include "internal.h"
#include <stdlib.h>

#define BM 32  // rows of x per block
#define BN 32  // weight rows (columns of y) per block

size_t pg_xbf16_size(long M, long K) {
    return (size_t)((M + BM - 1) / BM * BM) * (size_t)((K + 31) / 32 * 32) * sizeof(uint16_t);
}

#if PG_X86_SIMD
#include <immintrin.h>
#include "avx512_inline.h"
#include "bf16_inline.h"

// Rows [m0, m0 + 16) x pairs [p0, p0 + 16) of xt from x (rows >= M and k >= K are zero).
PG_BF16_TARGET static void xt_block(const float *x, long ldx, long M, long K, long Kp, long m0, long p0, uint32_t *xt) {
    __m512i r[16];
    long k0 = 2 * p0;
    for (int i = 0; i < 16; i++)  // bf16 of x[m0 + i][k0 .. k0 + 32) in order: dword j = pair j
        r[i] = m0 + i < M ? pg_f32x32_to_bf16(x + (m0 + i) * ldx + k0, K - k0) : _mm512_setzero_si512();
    pg_transpose16_avx512(r);
    uint32_t *dst = xt + (m0 / BM) * (Kp / 2) * BM + m0 % BM;
    for (int p = 0; p < 16; p++) _mm512_storeu_si512(dst + (p0 + p) * BM, r[p]);
}

typedef struct { const float *x; long ldx, M, K, Kp; uint32_t *xt; } xt_job;

static void xt_task(void *p, long task, int thread) {
    (void)thread;
    const xt_job *j = p;
    long pb = j->Kp / 32;  // blocks of 16 pairs
    xt_block(j->x, j->ldx, j->M, j->K, j->Kp, task / pb * 16, task % pb * 16, j->xt);
}
#endif

void pg_x_to_bf16(const float *x, long ldx, long M, long K, uint16_t *dst) {
#if PG_X86_SIMD
    long Mp = (M + BM - 1) / BM * BM, Kp = (K + 31) / 32 * 32;
    xt_job j = { x, ldx, M, K, Kp, (uint32_t *)dst };
    pg_parallel_for(Mp / 16 * (Kp / 32), xt_task, &j);
#else
    (void)x; (void)ldx; (void)M; (void)K; (void)dst;  // never called: no fast kernel without x86 SIMD
#endif
}

#if PG_X86_SIMD
typedef struct { const float *x; long ldx, M, K, Kp; uint16_t *dst; } xrows_job;

// Row m of x as bf16 at dst + m·Kp (rows >= M and k >= K zero).
PG_BF16_TARGET static void xrows_task(void *p, long m, int thread) {
    (void)thread;
    const xrows_job *j = p;
    pg_row_to_bf16(j->x + (m < j->M ? m : 0) * j->ldx, m < j->M ? j->K : 0, j->Kp, j->dst + m * j->Kp);
}
#endif

void pg_x_to_bf16_rows(const float *x, long ldx, long M, long K, uint16_t *dst) {
#if PG_X86_SIMD
    xrows_job j = { x, ldx, M, K, (K + 31) / 32 * 32, dst };
    pg_parallel_for((M + BM - 1) / BM * BM, xrows_task, &j);
#else
    (void)x; (void)ldx; (void)M; (void)K; (void)dst;  // never called: no fast kernel without x86 SIMD
#endif
}

// ---- weight blocks ---------------------------------------------------------------------------------
#if PG_X86_SIMD
// n values of a row in dtype (f32, f16, or int8, whose values bf16 holds exactly) as bf16.
PG_BF16_TARGET static void row_to_bf16(const void *src, int dtype, long n, uint16_t *dst) {
    long k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 v = dtype == PG_F16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + k)))
                 : dtype == PG_I8 ? _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)src + k))))
                 : _mm512_loadu_ps((const float *)src + k);
        _mm256_storeu_si256((__m256i *)(dst + k), (__m256i)_mm512_cvtneps_pbh(v));
    }
    for (; k < n; k++) dst[k] = pg_f32_to_bf16_scalar(pg_load_as_f32(src, dtype, k));
}

// Rows [nb, nb + nr) of w, columns [k0, k0 + kc), as bf16 into dst [BN][ldd] (rows >= nr and
// columns >= kc zero, up to width). 4-bit rows (ldw = K) come with their group scales; k0 and
// kc are then whole groups.
static void copy_block(uint16_t *dst, long ldd, long width, const void *w, int dtype, const uint16_t *q4scales,
                       long ldw, long nb, long nr, long k0, long kc) {
    for (long j = 0; j < BN; j++) {
        uint16_t *d = dst + j * ldd;
        long k = 0;
        if (j < nr) {
            size_t at = (size_t)((nb + j) * ldw + k0);
            if (dtype == PG_Q4) {
                long groups = ldw / PG_Q4_GROUP;
                pg_q4_row_to_bf16((const uint8_t *)w + (size_t)(nb + j) * (size_t)(ldw / 2), q4scales + (nb + j) * groups,
                                  groups, k0 / PG_Q4_GROUP, (k0 + kc) / PG_Q4_GROUP, d);
            }
            else if (dtype == PG_BF16) memcpy(d, (const uint16_t *)w + at, (size_t)kc * 2);
            else row_to_bf16((const char *)w + at * pg_dtype_size(dtype), dtype, kc, d);
            k = kc;
        }
        for (; k < width; k++) d[k] = 0;
    }
}

// 32 values of row k of a k-major w, columns [nb, nb + nr) (nr <= 32; the rest zero), as bf16
// (4-bit rows are converted in pairs_kn).
PG_BF16_TARGET static __m512i kn_segment(const void *w, int dtype, long ldw, long k, long nb, long nr) {
    __mmask32 m32 = nr >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << nr) - 1);
    __mmask16 lo = (__mmask16)m32, hi = (__mmask16)(m32 >> 16);
    size_t at = (size_t)k * (size_t)ldw + (size_t)nb;
    __m512 a, b;
    switch (dtype) {
    case PG_BF16: return _mm512_maskz_loadu_epi16(m32, (const uint16_t *)w + at);
    case PG_F16:
        a = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lo, (const uint16_t *)w + at));
        b = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(hi, (const uint16_t *)w + at + 16));
        break;
    case PG_I8:
        a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(lo, (const int8_t *)w + at)));
        b = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(hi, (const int8_t *)w + at + 16)));
        break;
    default:
        a = _mm512_maskz_loadu_ps(lo, (const float *)w + at);
        b = _mm512_maskz_loadu_ps(hi, (const float *)w + at + 16);
    }
    return (__m512i)_mm512_cvtne2ps_pbh(b, a);
}

// Software prefetch distance of pairs_kn, in pairs of rows: the rows are read 512 bytes at a
// time at a stride of a whole row, a pattern the hardware prefetchers do not follow. In a
// harness of dX = dY · W on the decoder's shapes (304 rows, bf16 W from memory, 2 threads, Zen 5)
// 0 / 2 / 4 / 8 / 16 pairs ran the product at 751 / 798 / 833 / 828 / 815 GFLOP/s (best of 3).
#define PF_PAIRS 8

// Blocks of a k-major w paired together (8 x 64 KB): its rows are read 512 bytes at a time.
#define KN_BLOCKS 8

// Pairs of a k-major w (kn) for `blocks` blocks of 32 columns, one after another at dst +
// b·(width / 2)·32: block b covers w's columns [nb + 32b, nb + 32b + 32) (those at or past n1
// zero), its depths [k0, k0 + width) (those at or past K zero; width a multiple of 32), in xt's
// layout: pair (p, i) = (w[k0 + 2p][c], w[k0 + 2p + 1][c]) for column c = nb + 32b + i. Each row of
// w is read across all the blocks' columns at once, so the reads run along rows; two rows make
// each pair by one interleave, nothing is transposed. 4-bit rows (blocks <= KN_BLOCKS, nb a
// group's first column) are converted a span at a time, so that whole blocks of 8 groups go
// through pg_q4_row_to_bf16's transposes and each row's bytes are read once (one group per
// block and row took 8% of a LoRA step on a 4-bit base, Zen 4, most of it waiting on the loads).
PG_BF16_TARGET static void pairs_kn(uint32_t *dst, long width, const void *w, int dtype, const uint16_t *q4scales,
                                    long ldw, long K, long nb, long n1, long blocks, long k0) {
    int q4 = dtype == PG_Q4;
    long span = n1 - nb < blocks * BN ? n1 - nb : blocks * BN;  // columns the blocks read
    // Each row's bytes for them, prefetched PF_PAIRS pairs ahead into L1.
    size_t es = pg_dtype_size(dtype);
    size_t stride = q4 ? (size_t)(ldw / 2) : (size_t)ldw * es, at0 = q4 ? (size_t)(nb / 2) : (size_t)nb * es;
    long bytes = q4 ? span / 2 : span * (long)es;
    uint16_t rows[2][KN_BLOCKS * BN];  // 4-bit: rows k and k + 1 as bf16
    long groups = ldw / PG_Q4_GROUP, g0 = nb / PG_Q4_GROUP, gn = (span + PG_Q4_GROUP - 1) / PG_Q4_GROUP;
    for (long p = 0; p < width / 2; p++) {
        long k = k0 + 2 * p;
        if (k + 2 * PF_PAIRS + 1 < K) {
            const char *r0 = (const char *)w + (size_t)(k + 2 * PF_PAIRS) * stride + at0;
            const char *r1 = r0 + stride;
            for (long o = 0; o < bytes; o += 64) {
                __builtin_prefetch(r0 + o, 0, 3);
                __builtin_prefetch(r1 + o, 0, 3);
            }
        }
        for (int r = 0; q4 && r < 2; r++) {
            if (k + r < K)
                pg_q4_row_to_bf16((const uint8_t *)w + (size_t)(k + r) * stride, q4scales + (k + r) * groups, groups, g0,
                                  g0 + gn, rows[r]);
            else
                memset(rows[r], 0, sizeof rows[r]);
        }
        for (long b = 0; b < blocks; b++) {
            long c0 = nb + b * BN, nr = n1 - c0 < BN ? n1 - c0 : BN;
            __m512i x = _mm512_setzero_si512(), y = x;
            if (q4 && b < gn) {  // columns past n1 stay zero
                x = _mm512_loadu_si512(rows[0] + b * BN);
                y = _mm512_loadu_si512(rows[1] + b * BN);
            } else if (!q4) {
                if (k < K) x = kn_segment(w, dtype, ldw, k, c0, nr);
                if (k + 1 < K) y = kn_segment(w, dtype, ldw, k + 1, c0, nr);
            }
            __m512i lo, hi;
            pg_pairs_bf16(x, y, &lo, &hi);
            uint32_t *out = dst + b * (width / 2) * BM + p * BM;
            _mm512_storeu_si512(out, lo);
            _mm512_storeu_si512(out + 16, hi);
        }
    }
}

// ---- micro-kernels: one 32 x 32 block of yᵀ, c [BN][BM], over one depth chunk ------------------
typedef struct __attribute__((packed)) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

// Tiles 0-3: the four 16 x 16 float32 quarters of c; 4-5: weight rows 0-15 and 16-31 (16 x 32
// bf16); 6-7: xt's pairs for rows 0-15 and 16-31 of x (16 pairs x 16). (machine.c's probe uses
// the same configuration.)
__attribute__((target("amx-tile"))) void pg_amx_configure(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    _tile_loadconfig(&c);
}

__attribute__((target("amx-tile"))) void pg_amx_release(void) { _tile_release(); }

// c (+)= A[0..32)[0..kc) · xt block rows [0, kc/2), A rows at stride lda (elements), kc a multiple
// of 32; first: c starts from zero instead of its stored value.
__attribute__((target("amx-tile,amx-bf16")))
static void block_amx(const uint16_t *a, long lda, const uint32_t *xt, long kc, float *c, int first) {
    if (first) {
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    } else {
        _tile_loadd(0, c, BM * 4);
        _tile_loadd(1, c + 16, BM * 4);
        _tile_loadd(2, c + 16 * BM, BM * 4);
        _tile_loadd(3, c + 16 * BM + 16, BM * 4);
    }
    const uint16_t *a1 = a + 16 * lda;
    for (long k = 0; k < kc; k += 32) {
        const uint32_t *b = xt + (k / 2) * BM;
        __builtin_prefetch(b + 16 * BM * 4, 0, 3);  // xt four steps (8 KB) ahead
        _tile_loadd(4, a + k, lda * 2);
        _tile_loadd(6, b, BM * 4);
        _tile_loadd(7, b + 16, BM * 4);
        _tile_loadd(5, a1 + k, lda * 2);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, BM * 4);
    _tile_stored(1, c + 16, BM * 4);
    _tile_stored(2, c + 16 * BM, BM * 4);
    _tile_stored(3, c + 16 * BM + 16, BM * 4);
}

// The block kernel's body: 8 weight rows x `nv` registers of 16 rows of x (nv = 2: the whole
// block; 1: its first 16 columns) in 8 · nv accumulators at a time.
PG_BF16_TARGET static inline __attribute__((always_inline)) void block_body(const uint16_t *a, long lda, const uint32_t *xt,
                                                                           long kc, float *c, int first, int rows, const int nv) {
    for (int r0 = 0; r0 < rows; r0 += 8) {
        __m512 acc[8][2];
        for (int i = 0; i < 8; i++)
            for (int v = 0; v < nv; v++) acc[i][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + (r0 + i) * BM + 16 * v);
        const uint16_t *ar = a + r0 * lda;
        for (long p = 0; p < kc / 2; p++) {
            __m512bh b[2];
            for (int v = 0; v < nv; v++) b[v] = (__m512bh)_mm512_loadu_si512(xt + p * BM + 16 * v);
            for (int i = 0; i < 8; i++) {
                uint32_t pair;
                memcpy(&pair, ar + i * lda + 2 * p, 4);
                __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair);
                for (int v = 0; v < nv; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, b[v]);
            }
        }
        for (int i = 0; i < 8; i++)
            for (int v = 0; v < nv; v++) _mm512_storeu_ps(c + (r0 + i) * BM + 16 * v, acc[i][v]);
    }
}

// The same with vdpbf16ps, 8 weight rows x 32 rows of x in 16 registers at a time. Only a's
// first `rows` rows (rounded up to 8; the rest padding) and, with `half`, xt's first 16 columns
// are summed; the other sums of c are left as they were, and nothing reads them. Each sum formed
// runs over the same products in the same order either way. `half` is for a last block of x
// with at most 16 rows (the rest padding): 8 registers at a time, about two thirds of a whole
// block's time (harness, Zen 4). Not 16 weight rows at a time there: rows 4 KB apart (a depth of
// 2048) all fall in one set of the 8-way L1, and 16 of them ran slower than the whole block.
PG_BF16_TARGET static void block_avx512bf16(const uint16_t *a, long lda, const uint32_t *xt, long kc, float *c,
                                            int first, int rows, int half) {
    if (half) block_body(a, lda, xt, kc, c, first, rows, 1);
    else block_body(a, lda, xt, kc, c, first, rows, 2);
}

// y[mb + i][nb + j] = c[j][i] (· scale[nb + j]) (+ bias[nb + j]) for i < mr, j < nr.
PG_BF16_TARGET static void store_transposed(const float *c, const float *scale, const float *bias, float *y, long ldy,
                                            long mb, long mr, long nb, long nr) {
    for (int j0 = 0; j0 < BN && j0 < nr; j0 += 16) {
        __mmask16 cols = nr - j0 >= 16 ? 0xFFFF : (__mmask16)((1u << (nr - j0)) - 1);
        __m512 b = bias ? _mm512_maskz_loadu_ps(cols, bias + nb + j0) : _mm512_setzero_ps();
        __m512 sc = scale ? _mm512_maskz_loadu_ps(cols, scale + nb + j0) : _mm512_set1_ps(1.0f);
        for (int i0 = 0; i0 < BM && i0 < mr; i0 += 16) {
            __m512i r[16];
            for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_si512(c + (j0 + j) * BM + i0);
            pg_transpose16_avx512(r);
            for (int i = 0; i < 16 && i0 + i < mr; i++)
                _mm512_mask_storeu_ps(y + (mb + i0 + i) * ldy + nb + j0, cols, _mm512_fmadd_ps((__m512)r[i], sc, b));
        }
    }
}

// y[mb + i][nb + j] = c[i][j] for i < mr, j < nr (c [BN][BM] holds y's block as it is: k-major w).
PG_BF16_TARGET static void store_rows(const float *c, float *y, long ldy, long mb, long mr, long nb, long nr) {
    for (int j0 = 0; j0 < BM && j0 < nr; j0 += 16) {
        __mmask16 cols = nr - j0 >= 16 ? 0xFFFF : (__mmask16)((1u << (nr - j0)) - 1);
        for (long i = 0; i < mr; i++) _mm512_mask_storeu_ps(y + (mb + i) * ldy + nb + j0, cols, _mm512_loadu_ps(c + i * BM + j0));
    }
}
#endif

// Depth of a chunk: the A block (32 rows x 1024, 64 KB) stays in L2 while the chunk runs over
// every row of x; longer chunks mean fewer reloads of the block sums between them.
#define KC 1024
#if PG_X86_SIMD
// One 32 x 32 block of sums on vdpbf16ps for other kernels (attention_bf16.c): c[i][j] = sum over
// pairs p < kc / 2 of a[i][2p..2p+1] · xt[p][j] (a's rows at stride lda, bf16).
PG_BF16_TARGET void pg_bf16_block(const uint16_t *a, long lda, const uint32_t *xt, long kc, float *c) {
    block_avx512bf16(a, lda, xt, kc, c, 1, BN, 0);
}
#endif

#if PG_X86_SIMD
// y = x · wᵀ (w [N][K]), formed transposed: per depth chunk, each block of 32 weight rows (the
// A operand, read in place when bf16 and whole) against every 32-row block of xt (the B operand).
PG_BF16_TARGET static void gemm_nk(int amx, const uint32_t *xt, long M, long K, const void *w, int dtype, long ldw,
                                   const uint16_t *q4scales, const float *scale, const float *bias, float *y, long ldy,
                                   long n0, long n1, int thread) {
    long Mp = (M + BM - 1) / BM * BM, Kp = (K + 31) / 32 * 32;
    long mblocks = Mp / BM, nblocks = (n1 - n0 + BN - 1) / BN;
    // yᵀ of the task: nblocks x mblocks blocks of [BN][BM] float32, carried between chunks.
    float *yt = pg_scratch(thread, 1, (size_t)nblocks * mblocks * BN * BM);
    uint16_t *copy = (uint16_t *)pg_scratch(thread, 0, (size_t)BN * KC / 2);
    if (!yt || !copy) return;
    if (amx) pg_amx_configure();
    for (long kc0 = 0; kc0 < Kp; kc0 += KC) {
        long kc = Kp - kc0 < KC ? Kp - kc0 : KC;
        for (long nbi = 0; nbi < nblocks; nbi++) {
            long nb = n0 + nbi * BN, nr = n1 - nb < BN ? n1 - nb : BN;
            // The A operand: the weights themselves, or a rounded, zero-padded copy of the chunk.
            const uint16_t *a;
            long lda;
            if (dtype == PG_BF16 && nr == BN && kc0 + kc <= K) {
                a = (const uint16_t *)w + nb * ldw + kc0;
                lda = ldw;
            } else {
                copy_block(copy, KC, kc, w, dtype, q4scales, ldw, nb, nr, kc0, (K - kc0 < kc ? K - kc0 : kc));
                a = copy;
                lda = KC;
            }
            for (long mbi = 0; mbi < mblocks; mbi++) {
                const uint32_t *b = xt + mbi * (Kp / 2) * BM + (kc0 / 2) * BM;
                float *c = yt + (nbi * mblocks + mbi) * BN * BM;
                long mb = mbi * BM, mr = M - mb < BM ? M - mb : BM;
                if (amx) block_amx(a, lda, b, kc, c, kc0 == 0);
                else block_avx512bf16(a, lda, b, kc, c, kc0 == 0, (int)nr, mr <= 16);
                if (kc0 + kc == Kp)  // the last chunk: y's block now, while its sums are in L1
                    store_transposed(c, scale, bias, y, ldy, mb, mr, nb, nr);
            }
        }
    }
    if (amx) pg_amx_release();
}

// y = x · w (w k-major [K][N]), the operands' roles swapped: x's rows as bf16 (xr, [Mp][Kp]) are
// the A operand, read in place, and w's columns, paired along k by pairs_kn, the B operand; the
// sums come out as y's blocks themselves. So w is interleaved, never transposed, and neither is
// x nor y. The products and their order per output are those of the other orientation (each
// vdpbf16ps lane sums the same two products), so the results are the same to the bit.
PG_BF16_TARGET static void gemm_kn(int amx, const uint16_t *xr, long M, long K, const void *w, int dtype, long ldw,
                                   const uint16_t *q4scales, float *y, long ldy, long n0, long n1, int thread) {
    long Mp = (M + BM - 1) / BM * BM, Kp = (K + 31) / 32 * 32;
    long mblocks = Mp / BM, nblocks = (n1 - n0 + BN - 1) / BN;
    long group = nblocks < KN_BLOCKS ? nblocks : KN_BLOCKS;
    float *acc = pg_scratch(thread, 1, (size_t)nblocks * mblocks * BN * BM);  // y's blocks, [BN][BM] each
    uint32_t *pairs = (uint32_t *)pg_scratch(thread, 0, (size_t)group * BM * KC / 2);
    if (!acc || !pairs) return;
    if (amx) pg_amx_configure();
    for (long kc0 = 0; kc0 < Kp; kc0 += KC) {
        long kc = Kp - kc0 < KC ? Kp - kc0 : KC;
        for (long nbi = 0; nbi < nblocks; nbi++) {
            long nb = n0 + nbi * BN;
            if (nbi % group == 0) {
                long left = nblocks - nbi;
                pairs_kn(pairs, kc, w, dtype, q4scales, ldw, K, nb, n1, left < group ? left : group, kc0);
            }
            const uint32_t *b = pairs + (nbi % group) * (kc / 2) * BM;
            long nr = n1 - nb < BN ? n1 - nb : BN;
            for (long mbi = 0; mbi < mblocks; mbi++) {
                float *c = acc + (nbi * mblocks + mbi) * BN * BM;
                long mb = mbi * BM, mr = M - mb < BM ? M - mb : BM;
                if (amx) block_amx(xr + mbi * BM * Kp + kc0, Kp, b, kc, c, kc0 == 0);
                else block_avx512bf16(xr + mbi * BM * Kp + kc0, Kp, b, kc, c, kc0 == 0, (int)mr, nr <= 16);
                if (kc0 + kc == Kp)  // the last chunk: y's block now, while its sums are in L1
                    store_rows(c, y, ldy, mb, mr, nb, nr);
            }
        }
    }
    if (amx) pg_amx_release();
}
#endif

void pg_gemm_bf16_cols(int kernel, const uint16_t *xb, long M, long K, const void *w, int dtype, int kn, long ldw,
                       const uint16_t *q4scales, const float *scale, const float *bias, float *y, long ldy, long n0,
                       long n1, int thread) {
#if PG_X86_SIMD
    if (kn) gemm_kn(kernel == PG_FAST_AMX, xb, M, K, w, dtype, ldw, q4scales, y, ldy, n0, n1, thread);
    else gemm_nk(kernel == PG_FAST_AMX, (const uint32_t *)xb, M, K, w, dtype, ldw, q4scales, scale, bias, y, ldy, n0, n1,
                 thread);
#else
    (void)kernel; (void)xb; (void)M; (void)K; (void)w; (void)dtype; (void)kn; (void)ldw; (void)q4scales; (void)scale; (void)bias; (void)y; (void)ldy;
    (void)n0; (void)n1; (void)thread;  // never called: no fast kernel without x86 SIMD
#endif
}

// ---- decode rows: a few rows of x streamed against each weight row -----------------------------
// FAST products of 2..PG_GEMV_ROWS rows of x (batched decode) are bound by memory, not by the
// multiply-adds: each weight row is read once and dotted with every row of x, as the float32
// streaming loop does (linear_impl.h, gemv_row2), but on vdpbf16ps with x rounded to bf16. With
// float32 x that loop is bound by its reads of x (8 rows of a 16384-deep product do not fit
// L1); bf16 x halves those bytes and each instruction does 32 products instead of 16.
// xr: x as bf16 in chunks of 32 values, the M rows' chunks side by side: chunk c of row m at
// (c·M + m)·32, zero past K (Kp = K rounded up to 32 in all), so x is read as one sequential
// stream beside the weight rows. Four weight rows are read side by side with a software
// prefetch ahead of them, against at most four rows of x at a time (gemv_bf16_quads). In a
// harness over 512 MB of bf16 weights (2 threads, Zen 4) 8 rows went from 34 to 16 ms at a
// depth of 2048 and from 32 to 20 ms at 16384, where one row's float32 loop takes 14-19 ms
// (docs/BENCHMARKS.md).

size_t pg_xrows_bf16_size(long M, long K) { return (size_t)M * (size_t)((K + 31) / 32 * 32) * sizeof(uint16_t); }

#if PG_X86_SIMD
PG_BF16_TARGET static void x_rows_to_bf16(const float *x, long ldx, long M, long K, uint16_t *dst) {
    long Kp = (K + 31) / 32 * 32;
    for (long m = 0; m < M; m++) {
        for (long k = 0; k < Kp; k += 32) _mm512_storeu_si512(dst + k * M + m * 32, pg_f32x32_to_bf16(x + m * ldx + k, K - k));
    }
}

// 32 weights of row `at` (element index) as bf16, those at or past `valid` zero; f32 and f16
// rounded to nearest even as copy_block rounds them.
PG_BF16_TARGET static inline __attribute__((always_inline)) __m512bh w32(const void *w, int dtype, size_t at, long valid) {
    __mmask32 m32 = valid >= 32 ? 0xFFFFFFFFu : (__mmask32)((1ull << valid) - 1);
    if (dtype == PG_BF16) return (__m512bh)_mm512_maskz_loadu_epi16(m32, (const uint16_t *)w + at);
    if (dtype == PG_F32) return (__m512bh)pg_f32x32_to_bf16((const float *)w + at, valid);
    __mmask16 lo = (__mmask16)m32, hi = (__mmask16)(m32 >> 16);
    return _mm512_cvtne2ps_pbh(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(hi, (const uint16_t *)w + at + 16)),
                               _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lo, (const uint16_t *)w + at)));
}

// Software prefetch of the weights: GEMV_PF bytes ahead of each row's read, into L2. The rows of
// a range are read side by side, four at a time, so this reaches the next group's rows where the
// rows are short; the hardware prefetchers alone leave the weight reads and the products in turn.
#define GEMV_PF 16384
#define GEMV_KB 512  // depth block of the passes over 5 to 8 rows of x
#define GEMV_PF_ONE 8192  // the same for one row of x (gemv_bf16_one): 4096-16384 measured alike

// Weight rows n .. n + 3 against R rows of xr, rows m0 .. m0 + R - 1 of M (R a constant in each
// expansion), over depths [k0, k1): 4·R float32 accumulators, each x chunk loaded once for four
// weight rows; the accumulators start from `acc` (zero where k0 = 0) and are left there.
// Holding the weights in registers is what rows of x from two on want: reading them again from
// L1 for each row of x as memory operands (C harness and the 3B model, Zen 5) made 2 sequences'
// decode step 4% faster and 4 sequences' 4% slower, 8 rows of x much slower (26 against 38 GB/s)
// where the rows are not 64-byte aligned, as tensors in a safetensors file need not be. One row
// of x has its own loop (gemv_bf16_one): through this one it read a decode step's 5 GB of bf16
// weights in 92-97 ms where loads alone took 70-73; through its own, 77-79 ms.
#define PG_GEMV_BF16_QUAD(R)                                                                          \
PG_BF16_TARGET static void gemv_bf16_quad##R(const uint16_t *xr, long M, long m0, long K, long k0, long k1, \
                                             const void *w, int dtype, long ldw, long n, __m512 *acc) { \
    __m512 a[4][R];                                                                                   \
    for (int j = 0; j < 4; j++)                                                                       \
        for (int m = 0; m < R; m++) a[j][m] = k0 == 0 ? _mm512_setzero_ps() : acc[j * R + m];        \
    size_t esz = dtype == PG_F32 ? 4 : 2, r[4];                                                       \
    for (int j = 0; j < 4; j++) r[j] = (size_t)(n + j) * (size_t)ldw;                                 \
    const uint16_t *xm = xr + m0 * 32;                                                                \
    for (long k = k0; k < k1; k += 32) {                                                              \
        __m512bh wv[4];                                                                               \
        for (int j = 0; j < 4; j++) {                                                                 \
            const char *at = (const char *)w + (r[j] + (size_t)k) * esz;                              \
            _mm_prefetch(at + GEMV_PF, _MM_HINT_T1);                                                  \
            if (esz == 4) _mm_prefetch(at + GEMV_PF + 64, _MM_HINT_T1);                               \
            wv[j] = w32(w, dtype, r[j] + (size_t)k, K - k);                                           \
        }                                                                                             \
        for (int m = 0; m < R; m++) {                                                                 \
            __m512bh xv = (__m512bh)_mm512_loadu_si512(xm + k * M + m * 32);                          \
            for (int j = 0; j < 4; j++) a[j][m] = _mm512_dpbf16_ps(a[j][m], xv, wv[j]);               \
        }                                                                                             \
    }                                                                                                 \
    for (int j = 0; j < 4; j++)                                                                       \
        for (int m = 0; m < R; m++) acc[j * R + m] = a[j][m];                                         \
}
PG_GEMV_BF16_QUAD(1) PG_GEMV_BF16_QUAD(2) PG_GEMV_BF16_QUAD(3) PG_GEMV_BF16_QUAD(4)
#undef PG_GEMV_BF16_QUAD

// Weight rows n .. n + 3 against all M rows of x (M <= 8): in passes of at most four rows of x,
// which take turns over depth blocks of GEMV_KB so that the second pass reads the weights the
// first has just brought in, while they are still in L1.
PG_BF16_TARGET static void gemv_bf16_quads(const uint16_t *xr, long M, long K, const void *w, int dtype, long ldw,
                                           long n, float *y, long ldy, const float *bias) {
    __m512 acc[2][16];
    long kb = M > 4 ? GEMV_KB : K;
    for (long k0 = 0; k0 < K; k0 += kb) {
        long k1 = K - k0 < kb ? K : k0 + kb;
        for (long m0 = 0, p = 0; m0 < M; m0 += 4, p++) {
            switch (M - m0 < 4 ? M - m0 : 4) {
            case 1: gemv_bf16_quad1(xr, M, m0, K, k0, k1, w, dtype, ldw, n, acc[p]); break;
            case 2: gemv_bf16_quad2(xr, M, m0, K, k0, k1, w, dtype, ldw, n, acc[p]); break;
            case 3: gemv_bf16_quad3(xr, M, m0, K, k0, k1, w, dtype, ldw, n, acc[p]); break;
            default: gemv_bf16_quad4(xr, M, m0, K, k0, k1, w, dtype, ldw, n, acc[p]); break;
            }
        }
    }
    for (long m0 = 0, p = 0; m0 < M; m0 += 4, p++) {
        long R = M - m0 < 4 ? M - m0 : 4;
        for (int j = 0; j < 4; j++) {
            float bj = bias ? bias[n + j] : 0.0f;
            for (long m = 0; m < R; m++) y[(m0 + m) * ldy + n + j] = _mm512_reduce_add_ps(acc[p][j * R + m]) + bj;
        }
    }
}

// One row of x (a single sequence's decode step) against weight rows n .. n + 3: four
// accumulators, each full weight chunk a memory operand of its product, the last partial one
// masked. The sums run in the order gemv_bf16_quad1 runs them, so a row of x gives the same bits
// alone as batched.
PG_BF16_TARGET static inline __attribute__((always_inline)) void gemv_bf16_one(
    const uint16_t *x, long K, const void *w, const int dtype, long ldw, long n, float *y, const float *bias) {
    const size_t esz = dtype == PG_F32 ? 4 : 2;
    size_t r[4];
    for (int j = 0; j < 4; j++) r[j] = (size_t)(n + j) * (size_t)ldw;
    const char *wb = (const char *)w;
    __m512 a[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
    long k = 0;
    for (; k + 32 <= K; k += 32) {
        for (int j = 0; j < 4; j++) {  // the chunk's line(s) GEMV_PF_ONE ahead: two for float32 weights
            _mm_prefetch(wb + (r[j] + (size_t)k) * esz + GEMV_PF_ONE, _MM_HINT_T1);
            if (esz == 4) _mm_prefetch(wb + (r[j] + (size_t)k) * esz + GEMV_PF_ONE + 64, _MM_HINT_T1);
        }
        __m512bh xv = (__m512bh)_mm512_loadu_si512(x + k);
        for (int j = 0; j < 4; j++) a[j] = _mm512_dpbf16_ps(a[j], xv, w32(w, dtype, r[j] + (size_t)k, 32));
    }
    if (k < K) {
        __m512bh xv = (__m512bh)_mm512_loadu_si512(x + k);
        for (int j = 0; j < 4; j++) a[j] = _mm512_dpbf16_ps(a[j], xv, w32(w, dtype, r[j] + (size_t)k, K - k));
    }
    for (int j = 0; j < 4; j++) y[n + j] = _mm512_reduce_add_ps(a[j]) + (bias ? bias[n + j] : 0.0f);
}

// Weight rows n0 .. n1 (a multiple of 4 apart) against one row of x: one body per weight dtype.
PG_BF16_TARGET static void gemv_bf16_ones(const uint16_t *x, long K, const void *w, int dtype, long ldw, long n0,
                                          long n1, float *y, const float *bias) {
    switch (dtype) {
    case PG_BF16: for (long n = n0; n < n1; n += 4) gemv_bf16_one(x, K, w, PG_BF16, ldw, n, y, bias); break;
    case PG_F16: for (long n = n0; n < n1; n += 4) gemv_bf16_one(x, K, w, PG_F16, ldw, n, y, bias); break;
    default: for (long n = n0; n < n1; n += 4) gemv_bf16_one(x, K, w, PG_F32, ldw, n, y, bias); break;
    }
}

// The last one to three weight rows of a range, one row of x at a time.
PG_BF16_TARGET static void gemv_bf16_row(const uint16_t *xr, long M, long K, const void *w, int dtype,
                                         long ldw, long n, float *y, long ldy, const float *bias) {
    for (long m = 0; m < M; m++) {
        __m512 a = _mm512_setzero_ps();
        for (long k = 0; k < K; k += 32)
            a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512(xr + k * M + m * 32), w32(w, dtype, (size_t)n * (size_t)ldw + (size_t)k, K - k));
        y[m * ldy + n] = _mm512_reduce_add_ps(a) + (bias ? bias[n] : 0.0f);
    }
}
#endif

void pg_x_rows_to_bf16(const float *x, long ldx, long M, long K, uint16_t *dst) {
#if PG_X86_SIMD
    x_rows_to_bf16(x, ldx, M, K, dst);
#else
    (void)x; (void)ldx; (void)M; (void)K; (void)dst;  // never called: no fast kernel without x86 SIMD
#endif
}

void pg_gemv_bf16_cols(const uint16_t *xr, long M, long K, const void *w, int dtype, long ldw, const float *bias,
                       float *y, long ldy, long n0, long n1) {
#if PG_X86_SIMD
    // Four weight rows at a time against at most four rows of x: 8 rows of x go in two passes of
    // four over the same weight rows, the second reading them from cache. (One pass over all 8
    // rows streamed the whole of x, 32 KB at a depth of 2048, past each weight pair: it did not
    // stay in L1, and 8 rows took 34 ms where 7 took 27 in a harness over 512 MB of weights.)
    long n = n0;
    if (M == 1) {
        n = n0 + (n1 - n0) / 4 * 4;
        gemv_bf16_ones(xr, K, w, dtype, ldw, n0, n, y, bias);
    }
    for (; n + 4 <= n1; n += 4) gemv_bf16_quads(xr, M, K, w, dtype, ldw, n, y, ldy, bias);
    for (; n < n1; n++) gemv_bf16_row(xr, M, K, w, dtype, ldw, n, y, ldy, bias);
#else
    (void)xr; (void)M; (void)K; (void)w; (void)dtype; (void)ldw; (void)bias; (void)y; (void)ldy; (void)n0; (void)n1;
#endif
}
