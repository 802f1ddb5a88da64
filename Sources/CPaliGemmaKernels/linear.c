// pg_linear: splits the output columns into tasks for the pool and calls the kernel of the
// instruction-set level in use. The scalar kernel is the portable fallback and the reference
// the SIMD kernels are tested against.
#include "internal.h"
#include <math.h>
#include <stdlib.h>

void pg_linear_cols_scalar(const float *x, long ldx, const void *w, int dtype, long ldw, const float *bias,
                           float *y, long ldy, long M, long n0, long n1, long K, int thread) {
    float *row = pg_scratch(thread, 0, (size_t)(K > 0 ? K : 1));
    if (!row) return;
    for (long n = n0; n < n1; n++) {
        pg_convert_to_f32((const char *)w + (size_t)n * ldw * pg_dtype_size(dtype), dtype, row, K);
        float b = bias ? bias[n] : 0.0f;
        for (long m = 0; m < M; m++) {
            const float *xm = x + m * ldx;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            long k = 0;
            for (; k + 4 <= K; k += 4) {
                s0 += xm[k] * row[k];
                s1 += xm[k + 1] * row[k + 1];
                s2 += xm[k + 2] * row[k + 2];
                s3 += xm[k + 3] * row[k + 3];
            }
            for (; k < K; k++) s0 += xm[k] * row[k];
            y[m * ldy + n] = (s0 + s1) + (s2 + s3) + b;
        }
    }
}

void pg_matmul_kn_scalar(const float *x, long ldx, const float *w, long ldw, float *y, long ldy, long M, long N, long K) {
    for (long m = 0; m < M; m++) {
        float *ym = y + m * ldy;
        for (long n = 0; n < N; n++) ym[n] = 0.0f;
        for (long k = 0; k < K; k++) {
            float a = x[m * ldx + k];
            const float *wk = w + k * ldw;
            for (long n = 0; n < N; n++) ym[n] += a * wk[n];
        }
    }
}

void pg_matmul_cols_scalar(const float *x, long ldx, const void *w, int dtype, long ldw, float *y, long ldy, long M,
                           long n0, long n1, long K, int thread) {
    (void)thread;
    for (long m = 0; m < M; m++) {
        float *ym = y + m * ldy;
        for (long n = n0; n < n1; n++) ym[n] = 0.0f;
        for (long k = 0; k < K; k++) {
            float a = x[m * ldx + k];
            for (long n = n0; n < n1; n++) ym[n] += a * pg_load_as_f32(w, dtype, k * ldw + n);
        }
    }
}

typedef struct {
    const float *x; long ldx; const void *w; int dtype; long ldw; float *y; long ldy; long M, N, K, chunk; int isa;
    const float *apack;  // x packed once for all tasks (SIMD), else NULL
} matmul_job;

static void matmul_task(void *p, long task, int thread) {
    const matmul_job *j = p;
    long n0 = task * j->chunk, n1 = n0 + j->chunk < j->N ? n0 + j->chunk : j->N;
    if (j->apack && j->isa == PG_ISA_AVX512) {
        pg_gemm_packed_avx512(j->apack, j->w, j->dtype, 1, j->ldw, NULL, j->y, j->ldy, j->M, n0, n1, j->K, thread);
        return;
    }
    if (j->apack && j->isa == PG_ISA_AVX2) {
        pg_gemm_packed_avx2(j->apack, j->w, j->dtype, 1, j->ldw, NULL, j->y, j->ldy, j->M, n0, n1, j->K, thread);
        return;
    }
    switch (j->isa) {
    case PG_ISA_AVX512: pg_matmul_cols_avx512(j->x, j->ldx, j->w, j->dtype, j->ldw, j->y, j->ldy, j->M, n0, n1, j->K, thread); break;
    case PG_ISA_AVX2: pg_matmul_cols_avx2(j->x, j->ldx, j->w, j->dtype, j->ldw, j->y, j->ldy, j->M, n0, n1, j->K, thread); break;
    default: pg_matmul_cols_scalar(j->x, j->ldx, j->w, j->dtype, j->ldw, j->y, j->ldy, j->M, n0, n1, j->K, thread);
    }
}

// Largest packed copy of x shared by the prefill tasks (rows beyond it are done in blocks).
#define PG_APACK_BYTES ((size_t)64 << 20)

// x [M, K] (or, transposed, x = aᵀ with a [K, M] at x) times w k-major. With SIMD, x is packed
// once for all column tasks (in row blocks under PG_APACK_BYTES) instead of once per task.
static void matmul_run(int isa, int transposed, const float *x, long ldx, const void *w, int wdtype, long ldw,
                       float *y, long ldy, long M, long N, long K) {
    if (isa > pg_isa_supported()) isa = pg_isa_supported();
    if (M <= 0 || N <= 0 || wdtype == PG_Q4) return;
    if (K <= 0) {
        for (long m = 0; m < M; m++)
            for (long n = 0; n < N; n++) y[m * ldy + n] = 0.0f;
        return;
    }
    int threads = pg_threads_here();
    long chunk = (N + 4L * threads - 1) / (4L * threads);
    chunk = (chunk + 31) / 32 * 32;
    if ((double)M * N * K < 65536.0) chunk = N;  // tiny: not worth waking the pool
    matmul_job j = { x, ldx, w, wdtype, ldw, y, ldy, M, N, K, chunk, isa, NULL };
    if (isa >= PG_ISA_AVX2 && (transposed || (M > 4 && chunk < N))) {
        void *abuf = NULL;
        long rows = (long)(PG_APACK_BYTES / sizeof(float) / (size_t)(K + 1)) / PG_GEMM_MR * PG_GEMM_MR;
        if (rows < PG_GEMM_MR) rows = PG_GEMM_MR;
        if (rows > M) rows = M;
        size_t abytes = (size_t)((rows + PG_GEMM_MR - 1) / PG_GEMM_MR * PG_GEMM_MR) * (size_t)K * sizeof(float);
        if ((abuf = pg_thread_buffer(PG_TBUF_MATMUL_A, abytes)) != NULL) {
            for (long m0 = 0; m0 < M; m0 += rows) {
                long mb = M - m0 < rows ? M - m0 : rows;
                matmul_job part = j;
                part.M = mb;
                part.y = y + m0 * ldy;
                if (transposed) pg_pack_at(x + m0, ldx, mb, K, abuf);
                else pg_pack_a(x + m0 * ldx, ldx, mb, K, abuf);
                part.apack = abuf;
                pg_parallel_for((N + chunk - 1) / chunk, matmul_task, &part);
            }
            return;
        }
        if (!transposed) {  // out of memory: the tasks pack x themselves
            pg_parallel_for((N + chunk - 1) / chunk, matmul_task, &j);
            return;
        }
    }
    if (transposed) {  // scalar (or out of memory): y[m] = sum_k a[k][m] w[k]
        for (long m = 0; m < M; m++) {
            float *ym = y + m * ldy;
            for (long n = 0; n < N; n++) ym[n] = 0.0f;
            for (long k = 0; k < K; k++) {
                float a = x[k * ldx + m];
                for (long n = 0; n < N; n++) ym[n] += a * pg_load_as_f32(w, wdtype, k * ldw + n);
            }
        }
        return;
    }
    pg_parallel_for((N + chunk - 1) / chunk, matmul_task, &j);
}

void pg_matmul(const float *x, long ldx, const void *w, int wdtype, long ldw, float *y, long ldy, long M, long N, long K) {
    matmul_run(pg_isa(), 0, x, ldx, w, wdtype, ldw, y, ldy, M, N, K);
}

void pg_matmul_isa(int isa, const float *x, long ldx, const void *w, int wdtype, long ldw, float *y, long ldy, long M,
                   long N, long K) {
    matmul_run(isa, 0, x, ldx, w, wdtype, ldw, y, ldy, M, N, K);
}

void pg_matmul_ta(const float *a, long lda, const void *w, int wdtype, long ldw, float *y, long ldy, long M, long N,
                  long K) {
    matmul_run(pg_isa(), 1, a, lda, w, wdtype, ldw, y, ldy, M, N, K);
}

void pg_matmul_ta_isa(int isa, const float *a, long lda, const void *w, int wdtype, long ldw, float *y, long ldy,
                      long M, long N, long K) {
    matmul_run(isa, 1, a, lda, w, wdtype, ldw, y, ldy, M, N, K);
}


typedef struct {
    const float *x; long ldx; const void *w; int dtype; long ldw; const float *scale; const float *bias;
    float *y; long ldy; long M, N, K; long chunk; int isa;
    const int16_t *xq; const float *xs;  // x quantized to int16 (int8 weights, M <= PG_GEMV_ROWS, exact), else NULL
    const float *apack;                  // x packed once for all tasks (prefill, SIMD), else NULL
    const int16_t *apack16; const float *xs16;  // x as int16 pairs (int8 weights, prefill, AVX2), else NULL
    const uint16_t *q4scales;            // group scales of 4-bit weights (dtype PG_Q4)
    const int8_t *xq8; const float *dx8; const int32_t *cx8;  // x quantized per group to int8 (4-bit weights)
    int fast; const uint16_t *xb;        // FAST products: the kernel, and x as bf16 (gemm_bf16.c)
    int kn;                              // FAST products only: w k-major [K][N] (pg_matmul_fast)
    const uint16_t *xr;                  // FAST batched decode: x as bf16 rows (gemm_bf16.c), else NULL
    const float *xeo;                    // exact decode, bf16 weights (X_EO): x by pg_x_rows_eo, else NULL
    int features;                        // pg_features() of the calling thread
} linear_job;

static void linear_task(void *p, long task, int thread) {
    const linear_job *j = p;
    long n0 = task * j->chunk;
    long n1 = n0 + j->chunk < j->N ? n0 + j->chunk : j->N;
    // With row scales the bias is added after scaling.
    const float *bias = j->scale ? NULL : j->bias;
    int separate_bias = j->xq || j->apack16 || j->dtype == PG_Q4;
    if (j->xb) {  // scales and bias applied as y is written
        pg_gemm_bf16_cols(j->fast, j->xb, j->M, j->K, j->w, j->dtype, j->kn, j->ldw, j->q4scales, j->scale, j->bias, j->y, j->ldy,
                          n0, n1, thread);
        return;
    }
    if (j->xr) {
        pg_gemv_bf16_cols(j->xr, j->M, j->K, j->w, j->dtype, j->ldw, bias, j->y, j->ldy, n0, n1);
    } else if (j->xeo && j->isa == PG_ISA_AVX512) {
        pg_gemv_bf16_eo1_cols_avx512(j->xeo, j->K, j->w, j->ldw, bias, j->y, n0, n1);
    } else if (j->xeo) {
        pg_gemv_bf16_eo_cols_avx2(j->xeo, j->M, j->K, j->w, j->ldw, bias, j->y, j->ldy, n0, n1);
    } else if (j->dtype == PG_Q4) {
        if (j->isa >= PG_ISA_AVX2) pg_gemm_q4_cols_avx2(j->xq8, j->dx8, j->cx8, j->M, j->K, j->w, j->q4scales, j->y, j->ldy, n0, n1, j->features);
        else pg_gemv_q4_cols_scalar(j->xq8, j->dx8, j->cx8, j->M, j->K, j->w, j->q4scales, j->y, j->ldy, n0, n1);
    } else if (j->apack16) {
        pg_gemm_i8_avx2(j->apack16, j->xs16, j->w, j->ldw, j->y, j->ldy, j->M, n0, n1, j->K, thread, j->features);
    } else if (j->xq) {
        if (j->isa >= PG_ISA_AVX2) pg_gemv_i8_cols_avx2(j->xq, j->xs, j->M, j->K, j->w, j->ldw, j->y, j->ldy, n0, n1);
        else pg_gemv_i8_cols_scalar(j->xq, j->xs, j->M, j->K, j->w, j->ldw, j->y, j->ldy, n0, n1);
    } else if (j->apack && j->isa == PG_ISA_AVX512) {
        pg_gemm_packed_avx512(j->apack, j->w, j->dtype, 0, j->ldw, bias, j->y, j->ldy, j->M, n0, n1, j->K, thread);
    } else if (j->apack && j->isa == PG_ISA_AVX2) {
        pg_gemm_packed_avx2(j->apack, j->w, j->dtype, 0, j->ldw, bias, j->y, j->ldy, j->M, n0, n1, j->K, thread);
    } else switch (j->isa) {
    case PG_ISA_AVX512:
        pg_linear_cols_avx512(j->x, j->ldx, j->w, j->dtype, j->ldw, bias, j->y, j->ldy, j->M, n0, n1, j->K, thread);
        break;
    case PG_ISA_AVX2:
        pg_linear_cols_avx2(j->x, j->ldx, j->w, j->dtype, j->ldw, bias, j->y, j->ldy, j->M, n0, n1, j->K, thread);
        break;
    default:
        pg_linear_cols_scalar(j->x, j->ldx, j->w, j->dtype, j->ldw, bias, j->y, j->ldy, j->M, n0, n1, j->K, thread);
    }
    if (separate_bias && !j->scale && j->bias) {
        for (long m = 0; m < j->M; m++)
            for (long n = n0; n < n1; n++) j->y[m * j->ldy + n] += j->bias[n];
    }
    if (j->scale) {
        for (long m = 0; m < j->M; m++) {
            float *row = j->y + m * j->ldy;
            for (long n = n0; n < n1; n++) row[n] = row[n] * j->scale[n] + (j->bias ? j->bias[n] : 0.0f);
        }
    }
}

static void linear_run(int isa, int fast, int kn, const float *x, long ldx, const void *w, int wdtype, long ldw,
                       const float *scale, const uint16_t *q4scales, const float *bias, float *y, long ldy, long M,
                       long N, long K);

// linear_run's `fast` when the entry point leaves the choice to the thread's precision.
#define FAST_BY_PRECISION (-1)

void pg_linear(const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
               float *y, long ldy, long M, long N, long K) {
    pg_linear_scaled_isa(pg_isa(), x, ldx, w, wdtype, ldw, NULL, bias, y, ldy, M, N, K);
}

void pg_linear_isa(int isa, const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
                   float *y, long ldy, long M, long N, long K) {
    pg_linear_scaled_isa(isa, x, ldx, w, wdtype, ldw, NULL, bias, y, ldy, M, N, K);
}

void pg_linear_scaled(const float *x, long ldx, const void *w, int wdtype, long ldw, const float *scale,
                      const float *bias, float *y, long ldy, long M, long N, long K) {
    pg_linear_scaled_isa(pg_isa(), x, ldx, w, wdtype, ldw, scale, bias, y, ldy, M, N, K);
}

void pg_linear_scaled_isa(int isa, const float *x, long ldx, const void *w, int wdtype, long ldw, const float *scale,
                          const float *bias, float *y, long ldy, long M, long N, long K) {
    if (wdtype == PG_Q4) return;  // needs its group scales: pg_linear_q4
    linear_run(isa, FAST_BY_PRECISION, 0, x, ldx, w, wdtype, ldw, scale, NULL, bias, y, ldy, M, N, K);
}

void pg_linear_fast_kernel(int kernel, const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
                           float *y, long ldy, long M, long N, long K) {
    if (kernel == PG_FAST_NONE || !pg_fast_kernel_supported(kernel) || wdtype == PG_Q4) return;
    linear_run(pg_isa_supported(), kernel, 0, x, ldx, w, wdtype, ldw, NULL, NULL, bias, y, ldy, M, N, K);
}

void pg_linear_q4(const float *x, long ldx, const uint8_t *w, const uint16_t *scales, const float *bias,
                  float *y, long ldy, long M, long N, long K) {
    pg_linear_q4_isa(pg_isa(), x, ldx, w, scales, bias, y, ldy, M, N, K);
}

void pg_linear_q4_isa(int isa, const float *x, long ldx, const uint8_t *w, const uint16_t *scales, const float *bias,
                      float *y, long ldy, long M, long N, long K) {
    if (K % PG_Q4_GROUP != 0) return;
    linear_run(isa, FAST_BY_PRECISION, 0, x, ldx, w, PG_Q4, K, NULL, scales, bias, y, ldy, M, N, K);
}

// FAST products through a k-major w (e.g. dX = dY · W): gemm_bf16.c pairs w's rows into the
// layout both kernels take for their B operand, with x's rows as the A operand, so AMX runs them
// as well.
int pg_matmul_fast(const float *x, long ldx, const void *w, int wdtype, long ldw, const uint16_t *q4scales, float *y,
                   long ldy, long M, long N, long K) {
    int isa = pg_isa();
    if (M <= 4 || N <= 0 || K <= 0 || pg_precision() != PG_PRECISION_FAST) return 0;
    if (wdtype == PG_Q4 && (N % PG_Q4_GROUP != 0 || ldw != N || !q4scales)) return 0;
    int kernel = pg_fast_kernel_at(isa);
    if (kernel == PG_FAST_NONE) return 0;
    linear_run(isa, kernel, 1, x, ldx, w, wdtype, ldw, NULL, q4scales, NULL, y, ldy, M, N, K);
    return 1;
}

static void linear_run(int isa, int fast, int kn, const float *x, long ldx, const void *w, int wdtype, long ldw,
                       const float *scale, const uint16_t *q4scales, const float *bias, float *y, long ldy, long M,
                       long N, long K) {
    if (isa > pg_isa_supported()) isa = pg_isa_supported();
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (long m = 0; m < M; m++)
            for (long n = 0; n < N; n++) y[m * ldy + n] = bias ? bias[n] : 0.0f;
        return;
    }
    // FAST products for more than the decode rows (those are bound by memory), at the thread's precision.
    // Rows streamed against each weight row (decode) below the blocked kernels.
    long stream_rows = wdtype == PG_I8 || wdtype == PG_Q4 ? 4 : PG_GEMV_ROWS;
    // Decode (1..8 rows) of float weights at FAST precision: still streamed, on vdpbf16ps.
    int decode_bf16 = 0;
    if (fast == FAST_BY_PRECISION) {
        int kernel = pg_precision() == PG_PRECISION_FAST ? pg_fast_kernel_at(isa) : PG_FAST_NONE;
        fast = M > stream_rows ? kernel : PG_FAST_NONE;
        decode_bf16 = kernel != PG_FAST_NONE && M >= 1 && M <= PG_GEMV_ROWS && (pg_features() & PG_FEAT_AVX512_BF16) &&
                      (wdtype == PG_F32 || wdtype == PG_BF16 || wdtype == PG_F16);
    }
    // int8 weights against up to 8 exact rows: x quantized to int16, weight rows streamed (linear_i8.c).
    int i8_stream = wdtype == PG_I8 && M <= PG_GEMV_ROWS && fast == PG_FAST_NONE;
    int threads = pg_threads_here();
    // Column chunks: a multiple of 32, about four per thread so that uneven tasks balance out.
    long chunk = (N + 4L * threads - 1) / (4L * threads);
    chunk = (chunk + 31) / 32 * 32;
    // Each task packs all of x for its columns: with many rows and few columns, one task per thread.
    if (M > stream_rows && !i8_stream && chunk < 128 && fast == PG_FAST_NONE) chunk = ((N + threads - 1) / threads + 15) / 16 * 16;
    if ((double)M * N * K < 65536.0) chunk = N;  // tiny: not worth waking the pool
    linear_job job = { x, ldx, w, wdtype, ldw, scale, bias, y, ldy, M, N, K, chunk, isa, NULL, NULL, NULL, NULL, NULL,
                       q4scales, NULL, NULL, NULL, fast, NULL, kn, NULL, NULL, pg_features() };
    // How x is prepared once for all tasks, in row blocks that keep the copy under PG_APACK_BYTES:
    //   X_Q16:    int16 rows (int8 weights, decode and batched decode; linear_i8.c)
    //   X_Q8G:    int8 groups of 32 (4-bit weights; linear_q4.c), needed: no fallback
    //   X_PACK16: int16 pairs in the prefill layout (int8 weights, prefill, AVX2; gemm_i8.c)
    //   X_PACK:   float32 in the prefill layout (prefill, SIMD, several tasks)
    //   X_BF16:   bf16 rows (FAST products; gemm_bf16.c), needed: no fallback
    //   X_ROWS16: bf16 rows of x, plain (FAST decode, one sequence or batched; gemm_bf16.c)
    //   X_EO:     float32 rows, each block of 16 (32) split into even and odd entries (exact
    //             decode with bf16 weights: batched on the AVX2 level, linear_avx2.c; one row on
    //             the AVX-512 level, linear_avx512.c)
    // The buffers belong to the calling thread and only grow, so steady-state decoding allocates nothing.
    enum { X_NONE, X_Q16, X_Q8G, X_PACK16, X_PACK, X_BF16, X_ROWS16, X_EO } kind = X_NONE;
    if (fast != PG_FAST_NONE) kind = X_BF16;
    else if (decode_bf16) kind = X_ROWS16;
    else if (isa == PG_ISA_AVX2 && wdtype == PG_BF16 && M >= 2 && M <= PG_GEMV_ROWS && K >= 16) kind = X_EO;
    else if (isa == PG_ISA_AVX512 && wdtype == PG_BF16 && M == 1 && K >= 32) kind = X_EO;
    else if (wdtype == PG_Q4) kind = X_Q8G;
    else if (i8_stream) kind = X_Q16;
    else if (M > 4 && isa >= PG_ISA_AVX2 && wdtype == PG_I8) kind = X_PACK16;
    else if (M > stream_rows && isa >= PG_ISA_AVX2 && chunk < N) kind = X_PACK;
    // Prefill with x prepared once for all tasks (X_PACK, X_BF16): two column tasks per thread, not
    // four. Each task sweeps all of x once per depth block, and the vision tower's (256 x 1152
    // floats, 1.2 MB) outgrows L2, so every further task of a thread streams it from L3 again.
    // Vision tower's products (C harness, 2 threads, Zen 4): exact 185-186 -> 193-200 GFLOP/s, fast
    // 378-393 -> 414-420 (one task per thread: the same); decoder-shaped products unchanged.
    if ((kind == X_PACK || kind == X_BF16) && M > stream_rows)
        job.chunk = chunk = ((N + 2L * threads - 1) / (2L * threads) + 31) / 32 * 32;
    if (kind != X_NONE) {
        void *abuf = NULL, *sbuf = NULL;
        long groups = K / PG_Q4_GROUP, rows = M;
        size_t abytes = 0, sbytes = 0;
        switch (kind) {
        case X_Q16:
            abytes = (size_t)M * (size_t)K * sizeof(int16_t);
            sbytes = (size_t)M * sizeof(float);
            break;
        case X_Q8G:
            rows = (long)(PG_APACK_BYTES / (size_t)(K + 8 * groups));
            if (rows < 4) rows = 4;
            if (rows > M) rows = M;
            abytes = (size_t)rows * (size_t)K;
            sbytes = (size_t)rows * (size_t)groups * (sizeof(float) + sizeof(int32_t));  // dx, then c
            break;
        case X_PACK16:
        case X_PACK: {
            size_t esize = kind == X_PACK16 ? sizeof(int16_t) : sizeof(float);
            rows = (long)(PG_APACK_BYTES / esize / (size_t)(K + 1)) / PG_GEMM_MR * PG_GEMM_MR;
            if (rows < PG_GEMM_MR) rows = PG_GEMM_MR;
            if (rows > M) rows = M;
            abytes = kind == X_PACK16 ? pg_pack_a16_size(rows, K) * esize
                                      : (size_t)((rows + PG_GEMM_MR - 1) / PG_GEMM_MR * PG_GEMM_MR) * (size_t)K * esize;
            sbytes = kind == X_PACK16 ? (size_t)rows * sizeof(float) : 1;
            break;
        }
        case X_ROWS16:
            abytes = pg_xrows_bf16_size(M, K);
            sbytes = 1;
            break;
        case X_EO:
            abytes = (size_t)M * (size_t)K * sizeof(float);
            sbytes = 1;
            break;
        case X_BF16: {
            size_t row_bytes = (size_t)((K + 31) / 32 * 32) * sizeof(uint16_t);
            rows = (long)(PG_APACK_BYTES / row_bytes) / 32 * 32;
            if (rows < 32) rows = 32;
            if (rows > M) rows = M;
            abytes = pg_xbf16_size(rows, K);
            sbytes = 1;
            break;
        }
        default:
            break;
        }
        if ((abuf = pg_thread_buffer(PG_TBUF_LINEAR_X, abytes)) != NULL && (sbuf = pg_thread_buffer(PG_TBUF_LINEAR_SCALES, sbytes)) != NULL) {
            for (long m0 = 0; m0 < M; m0 += rows) {
                long mb = M - m0 < rows ? M - m0 : rows;
                linear_job part = job;
                part.x = x + m0 * ldx;
                part.y = y + m0 * ldy;
                part.M = mb;
                switch (kind) {
                case X_Q16:
                    pg_quantize_x16(part.x, ldx, mb, K, abuf, sbuf);
                    part.xq = abuf;
                    part.xs = sbuf;
                    break;
                case X_Q8G: {
                    int32_t *c8 = (int32_t *)((float *)sbuf + (size_t)mb * (size_t)groups);
                    pg_quantize_x8_groups_pool(isa, part.x, ldx, mb, K, abuf, sbuf, c8);
                    part.xq8 = abuf;
                    part.dx8 = sbuf;
                    part.cx8 = c8;
                    break;
                }
                case X_BF16:
                    if (kn) pg_x_to_bf16_rows(part.x, ldx, mb, K, abuf);
                    else pg_x_to_bf16(part.x, ldx, mb, K, abuf);
                    part.xb = abuf;
                    break;
                case X_ROWS16:
                    pg_x_rows_to_bf16(part.x, ldx, mb, K, abuf);
                    part.xr = abuf;
                    break;
                case X_EO:
                    pg_x_rows_eo(part.x, ldx, mb, K, isa == PG_ISA_AVX512 ? 32 : 16, abuf);
                    part.xeo = abuf;
                    break;
                case X_PACK16:
                    pg_pack_a16(part.x, ldx, mb, K, abuf, sbuf);
                    part.apack16 = abuf;
                    part.xs16 = sbuf;
                    break;
                default:
                    pg_pack_a(part.x, ldx, mb, K, abuf);
                    part.apack = abuf;
                }
                pg_parallel_for((N + chunk - 1) / chunk, linear_task, &part);
            }
            return;
        }
        if (kind == X_Q8G || kind == X_BF16) {  // out of memory, and these have no path without it: no silent zeros
            for (long m = 0; m < M; m++)
                for (long n = 0; n < N; n++) y[m * ldy + n] = NAN;
            return;
        }
        // Otherwise the tasks convert the weights and pack x themselves.
    }
    pg_parallel_for((N + chunk - 1) / chunk, linear_task, &job);
}

void pg_x_rows_eo(const float *x, long ldx, long M, long K, long block, float *dst) {
    long half = block / 2;
    for (long m = 0; m < M; m++) {
        const float *src = x + m * ldx;
        float *d = dst + m * K;
        long k = 0;
        for (; k + block <= K; k += block)
            for (long i = 0; i < half; i++) {
                d[k + i] = src[k + 2 * i];
                d[k + half + i] = src[k + 2 * i + 1];
            }
        for (; k < K; k++) d[k] = src[k];
    }
}

// ---- x packed once for the prefill kernel ----------------------------------------------------
typedef struct { const float *x; long ldx, M, K, mblocks; float *dst; int transposed; } pack_job;

static void pack_task(void *p, long task, int thread) {
    (void)thread;
    const pack_job *j = p;
    long kb = task / j->mblocks, b = task % j->mblocks;
    long kc0 = kb * PG_GEMM_KC, kc = j->K - kc0 < PG_GEMM_KC ? j->K - kc0 : PG_GEMM_KC;
    float *dst = j->dst + j->mblocks * PG_GEMM_MR * kc0 + b * PG_GEMM_MR * kc;
    if (j->transposed) pg_pack_at_block(j->x, j->ldx, j->M, b, kc0, kc, dst);
    else pg_pack_a_block(j->x, j->ldx, j->M, b, kc0, kc, dst);
}

void pg_pack_a(const float *x, long ldx, long M, long K, float *dst) {
    long mblocks = (M + PG_GEMM_MR - 1) / PG_GEMM_MR, kblocks = (K + PG_GEMM_KC - 1) / PG_GEMM_KC;
    pack_job j = { x, ldx, M, K, mblocks, dst, 0 };
    pg_parallel_for(mblocks * kblocks, pack_task, &j);
}

void pg_pack_at(const float *a, long lda, long M, long K, float *dst) {
    long mblocks = (M + PG_GEMM_MR - 1) / PG_GEMM_MR, kblocks = (K + PG_GEMM_KC - 1) / PG_GEMM_KC;
    pack_job j = { a, lda, M, K, mblocks, dst, 1 };
    pg_parallel_for(mblocks * kblocks, pack_task, &j);
}

// ---- int8 quantization --------------------------------------------------------------------
typedef struct { const void *src; int dtype; long cols; int8_t *dst; float *scale; int isa; } quant_job;

static void quant_task(void *p, long r, int thread) {
    const quant_job *j = p;
    const char *row = (const char *)j->src + (size_t)r * j->cols * pg_dtype_size(j->dtype);
    float *v = pg_scratch(thread, 3, (size_t)j->cols);
    if (!v) return;
    pg_convert_to_f32(row, j->dtype, v, j->cols);
    int8_t *out = j->dst + (size_t)r * j->cols;
    if (j->isa >= PG_ISA_AVX2) pg_quantize_q8_row_avx2(v, j->cols, out, j->scale + r);
    else pg_quantize_q8_row_scalar(v, j->cols, out, j->scale + r);
}

void pg_quantize_q8_isa(int isa, const void *src, int dtype, long rows, long cols, int8_t *dst, float *scale) {
    if (isa > pg_isa_supported()) isa = pg_isa_supported();
    quant_job j = { src, dtype, cols, dst, scale, isa };
    pg_parallel_for(rows, quant_task, &j);
}

void pg_quantize_q8(const void *src, int dtype, long rows, long cols, int8_t *dst, float *scale) {
    pg_quantize_q8_isa(pg_isa(), src, dtype, rows, cols, dst, scale);
}
