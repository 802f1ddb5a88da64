// PaliGemma for Swift — layer 1: SIMD kernels chosen at run time, and a persistent thread pool.
//
// Conventions: activations are float32, row-major, with an explicit row stride (in elements).
// Weight matrices stay in their stored dtype (pg_dtype) and use PyTorch's Linear layout
// [out_features, in_features]. Every entry point is safe to call from any thread; parallel
// work is serialised through one pool.
#ifndef PG_KERNELS_H
#define PG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Weight element types. PG_I8 is symmetric int8 with one float scale per row (output channel),
/// produced by pg_quantize_q8; its matrices go through pg_linear_scaled. PG_Q4 is 4-bit with a
/// float16 scale per group of PG_Q4_GROUP values along a row, produced by pg_quantize_q4; its
/// matrices go through pg_linear_q4.
typedef enum { PG_F32 = 0, PG_BF16 = 1, PG_F16 = 2, PG_I8 = 3, PG_Q4 = 4 } pg_dtype;

/// The 4-bit format (PG_Q4), described here once (the Swift side, the quantized checkpoint
/// folders and the docs point to this comment). Values per scale group: PG_Q4_GROUP.
/// - Scales: float16 [rows, cols / 32], one per group of 32 consecutive values of a row
///   (cols must be a multiple of 32). A group's scale is m / -8 (rounded to float16, saturated
///   at ±65504) for its value m of largest magnitude; a group of zeros has scale 0.
/// - Values: q = clamp(round(v / scale), -8, 7), ties away from zero, so m itself is -8 and
///   values of the other sign beyond 7 steps are clamped to 7; w[r, 32g + i] = q · scale[r, g].
/// - Bytes: a matrix [rows, cols] is `rows * cols / 2` bytes, row after row; each value is stored
///   as q + 8, two to a byte, and group g's 16 bytes lie at 16g. Whole blocks of 8 groups
///   (128 bytes from 16 · 8b) interleave them: byte 32j + 4q + t of the block (j < 4, q < 8,
///   t < 4) holds value 4j + t of group 8b + q in its low nibble and value 16 + 4j + t in its
///   high nibble, so one 32-byte load holds 4 bytes of each of the 8 groups. Groups after the
///   last whole block: byte i of the group holds value i (low) and 16 + i (high).
#define PG_Q4_GROUP 32

// Instruction-set levels, lowest first. pg_isa() is the level in use.
typedef enum { PG_ISA_SCALAR = 0, PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2 } pg_isa_level;

/// Best level this CPU supports (AVX2 needs AVX2+FMA+F16C; AVX-512 needs F, BW, VL, DQ).
int pg_isa_supported(void);
/// Level in use. Defaults to pg_isa_supported(), or PALIGEMMA_ISA=scalar|avx2|avx512 if lower.
int pg_isa(void);
/// Forces a level (clamped to what the CPU supports); returns the level now in use.
int pg_set_isa(int level);
/// Sets the level for calls made from this thread only (clamped; a negative level goes back to
/// the process-wide one); returns the level now in use on this thread. Every kernel entry point
/// reads the level on the calling thread, so the pool's workers follow it for that call.
int pg_set_thread_isa(int level);
const char *pg_isa_name(int level);

/// Extensions beyond the ISA level, as bits of pg_cpu_features(). PG_FEAT_AMX_BF16 is set only
/// when the operating system also grants this process AMX's tile state.
/// PALIGEMMA_DISABLE_FEATURES=avx512-bf16,avx512-vnni,avx-vnni,amx-bf16 (any of them) leaves
/// those unused.
typedef enum { PG_FEAT_AVX512_BF16 = 1, PG_FEAT_AVX512_VNNI = 2, PG_FEAT_AVX_VNNI = 4, PG_FEAT_AMX_BF16 = 8 } pg_feature;
int pg_cpu_features(void);
/// The extensions kernels called from this thread may use: pg_cpu_features() limited by
/// pg_set_thread_features. The VNNI kernels give the same integers as the AVX2 ones, so limiting
/// them changes speed, not results; limiting AMX makes fast products use AVX512-BF16.
int pg_features(void);
/// Limits this thread's extensions to `mask` (-1: all the CPU has); returns the previous mask.
int pg_set_thread_features(int mask);

/// Precision of matrix products. EXACT: float32 products of the weights as stored (the parity
/// tests' mode). FAST: prefill products (pg_linear and pg_linear_scaled with more than 8 rows of
/// x for f32/bf16/f16 weights, more than 4 for int8 ones, and pg_linear_q4 with more than 4 and
/// each 4-bit value q · scale rounded to bf16; 1 to 8 rows with float weights (decode of one
/// sequence or a batch, bound by memory) stream each weight row once on vdpbf16ps where the
/// thread may use AVX512-BF16, else stay float32), and training's
/// products through the weights (pg_matmul_fast), with x and the weights
/// rounded to bfloat16 and the sums in float32, as PyTorch's
/// bf16 matmuls do, on a fast kernel where the CPU has one (pg_fast_kernel) and the calling
/// thread's ISA level is AVX-512; elsewhere FAST computes as EXACT.
typedef enum { PG_PRECISION_EXACT = 0, PG_PRECISION_FAST = 1 } pg_precision_mode;
/// The precision on this thread: its override, else the process-wide one (default EXACT, or
/// PALIGEMMA_PRECISION=fast).
int pg_precision(void);
/// Sets the process-wide precision; returns the precision now in use on this thread.
int pg_set_precision(int precision);
/// Sets the precision for calls made from this thread (and the pool's work for them); a negative
/// value goes back to the process-wide one. Returns the precision now in use on this thread.
int pg_set_thread_precision(int precision);
/// Kernels for FAST products: AMX (tdpbf16ps tiles) or AVX512-BF16 (vdpbf16ps).
typedef enum { PG_FAST_NONE = 0, PG_FAST_AVX512_BF16 = 1, PG_FAST_AMX = 2 } pg_fast_kernel_kind;
int pg_fast_kernel_supported(int kernel);
/// The kernel FAST uses: the best this CPU supports (AMX, then AVX512-BF16), or
/// PALIGEMMA_FAST_KERNEL=amx|avx512bf16|none when supported.
int pg_fast_kernel(void);
/// The kernel FAST products run on at ISA level `isa` from this thread: pg_fast_kernel(), within
/// the thread's extensions (pg_features: without AMX, AVX512-BF16), none below AVX-512.
int pg_fast_kernel_at(int isa);
/// Selects the FAST kernel if supported; returns the one now in use.
int pg_set_fast_kernel(int kernel);
const char *pg_fast_kernel_name(int kernel);

// ---- memory ------------------------------------------------------------------------------
/// Asks the C library to keep freed memory for reuse instead of handing it back to the system
/// at once (glibc: blocks up to 64 MiB from the heap, the heap's top kept up to 1 GiB): each
/// layer allocates and frees activations of several MB, and pages handed back are faulted and
/// zeroed again by the next layer. Process-wide, so front ends call it, not the library. Returns
/// 1 when applied; 0 where GLIBC_TUNABLES sets malloc tunables (left as the user set them); -1
/// where the allocator is not glibc's (another C library, or a sanitizer's); -2 if glibc refused.
int pg_keep_freed_memory(void);

// ---- threads -------------------------------------------------------------------------
/// Number of threads used by parallel kernels (default: online CPUs, or PALIGEMMA_THREADS).
int pg_threads(void);
void pg_set_threads(int n);
/// With `on` non-zero, every parallel kernel called from this thread runs on this thread alone,
/// on scratch memory of its own, so that several threads can each run whole small problems at
/// once (training workers) instead of queueing for the pool; 0 goes back to the pool. Returns
/// the previous setting.
int pg_set_thread_serial(int on);
typedef void (*pg_task_fn)(void *ctx, long task, int thread);
/// Runs fn(ctx, i, thread) for i in [0, ntasks) on the pool; returns when all are done.
/// Nested calls from inside a task run serially on the calling thread.
void pg_parallel_for(long ntasks, pg_task_fn fn, void *ctx);

// ---- conversions ----------------------------------------------------------------------
void pg_convert_to_f32(const void *src, int dtype, float *dst, long n);
void pg_convert_from_f32(const float *src, int dtype, void *dst, long n);
float pg_bf16_round(float x);   // round-to-nearest-even to bfloat16, returned as float
float pg_f16_round(float x);    // round to float16, returned as float

// ---- matrix multiply -----------------------------------------------------------------
/// y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]), for m < M, n < N, k < K.
/// x: float32 with row stride ldx; w: dtype, rows of K contiguous elements (row stride ldw);
/// bias: float32 or NULL; y: float32 with row stride ldy (must not alias x).
void pg_linear(const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
               float *y, long ldy, long M, long N, long K);
/// y[m, n] = scale[n] * sum_k x[m, k] * w[n, k] (+ bias[n]): pg_linear for int8 weights with
/// per-row scales (scale may be NULL for 1). With int8 weights each row of x is first quantized
/// to int16 (scale max|x| / 32767) and the sums run in integers — in decode (M <= 4) on every
/// level, in prefill on AVX2 and above — so x enters with a relative error of at most 1.5e-5
/// of its row's largest value.
void pg_linear_scaled(const float *x, long ldx, const void *w, int wdtype, long ldw, const float *scale,
                      const float *bias, float *y, long ldy, long M, long N, long K);
/// pg_linear_scaled on an explicit instruction-set level; for tests.
void pg_linear_scaled_isa(int isa, const float *x, long ldx, const void *w, int wdtype, long ldw, const float *scale,
                          const float *bias, float *y, long ldy, long M, long N, long K);
/// Quantizes rows x cols values of src (dtype) to int8 per row: scale[r] = max|row| / 127,
/// dst[r, c] = round(src[r, c] / scale[r]) (ties away from zero). Rows of zeros get scale 1.
void pg_quantize_q8(const void *src, int dtype, long rows, long cols, int8_t *dst, float *scale);
/// pg_quantize_q8 on an explicit instruction-set level (every level gives the same bytes); for tests.
void pg_quantize_q8_isa(int isa, const void *src, int dtype, long rows, long cols, int8_t *dst, float *scale);
/// Quantizes rows x cols values of src (dtype) to the PG_Q4 format above (cols must be a
/// multiple of PG_Q4_GROUP): dst holds rows * cols / 2 bytes, scales rows * cols / 32 float16
/// values.
void pg_quantize_q4(const void *src, int dtype, long rows, long cols, uint8_t *dst, uint16_t *scales);
/// pg_quantize_q4 on an explicit instruction-set level (every level gives the same bytes); for tests.
void pg_quantize_q4_isa(int isa, const void *src, int dtype, long rows, long cols, uint8_t *dst, uint16_t *scales);
/// The float32 values of a 4-bit matrix (rows x cols into dst, row-major).
void pg_dequantize_q4(const uint8_t *w, const uint16_t *scales, long rows, long cols, float *dst);
/// y[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]) for a 4-bit matrix w [N, K] with its group
/// scales (K a multiple of PG_Q4_GROUP; otherwise nothing is written). Each group of 32 values of
/// a row of x is first quantized to int8 (scale max|x| / 127) and the sums run in integers, so x
/// enters with an error of at most half a step of its group.
void pg_linear_q4(const float *x, long ldx, const uint8_t *w, const uint16_t *scales, const float *bias,
                  float *y, long ldy, long M, long N, long K);
/// pg_linear_q4 on an explicit instruction-set level; for tests.
void pg_linear_q4_isa(int isa, const float *x, long ldx, const uint8_t *w, const uint16_t *scales, const float *bias,
                      float *y, long ldy, long M, long N, long K);
/// pg_linear in FAST precision on an explicit kernel (nothing is written when the CPU lacks it);
/// for tests and benchmarks.
void pg_linear_fast_kernel(int kernel, const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
                           float *y, long ldy, long M, long N, long K);
/// pg_linear on an explicit instruction-set level (clamped to what the CPU supports); for tests.
void pg_linear_isa(int isa, const float *x, long ldx, const void *w, int wdtype, long ldw, const float *bias,
                   float *y, long ldy, long M, long N, long K);

/// y[m, n] = sum_k x[m, k] * w[k, n] for m < M, n < N, k < K: the product with w k-major
/// (row stride ldw) in its dtype (f32, bf16, f16, or i8 without scales), e.g. dX = dY · W for a
/// linear layer's W [out, in] (K = out, N = in), or dW = dYᵀ · X with float32 operands. x and y
/// float32 (y must not alias x); columns are split over the pool.
void pg_matmul(const float *x, long ldx, const void *w, int wdtype, long ldw, float *y, long ldy, long M, long N, long K);
/// pg_matmul in FAST precision, when this thread's precision is FAST, M > 4 and a fast kernel
/// exists (pg_fast_kernel_at: AMX or AVX512-BF16): x and w rounded to bfloat16, sums in float32.
/// w as pg_matmul takes it, or 4-bit (PG_Q4) with its group scales: a linear layer's W [out, in]
/// as pg_quantize_q4 stores it (ldw = N = in, a multiple of PG_Q4_GROUP; each value q · scale
/// rounded to bf16). Returns 1 when it wrote y, 0 (nothing written) when the product is not FAST.
int pg_matmul_fast(const float *x, long ldx, const void *w, int wdtype, long ldw, const uint16_t *q4scales, float *y,
                   long ldy, long M, long N, long K);
/// pg_matmul on an explicit instruction-set level; for tests.
void pg_matmul_isa(int isa, const float *x, long ldx, const void *w, int wdtype, long ldw, float *y, long ldy, long M,
                   long N, long K);
/// pg_matmul of x = aᵀ for a [K, M] (row stride lda), read as it is: y = aᵀ · w, e.g.
/// dW = dYᵀ · X for dY [T, out] and X [T, in] (M = out, N = in, K = T).
void pg_matmul_ta(const float *a, long lda, const void *w, int wdtype, long ldw, float *y, long ldy, long M, long N,
                  long K);
/// pg_matmul_ta on an explicit instruction-set level; for tests.
void pg_matmul_ta_isa(int isa, const float *a, long lda, const void *w, int wdtype, long ldw, float *y, long ldy,
                      long M, long N, long K);

// ---- normalisation and activations ------------------------------------------------------
/// LayerNorm over rows of length n: y = (x - mean) / sqrt(var + eps) * w + b. y may alias x.
void pg_layer_norm(const float *x, long ldx, float *y, long ldy, long rows, long n,
                   const float *w, const float *b, float eps);
/// Gemma RMSNorm: y = x * rsqrt(mean(x^2) + eps) * (1 + w). y may alias x.
void pg_rms_norm(const float *x, long ldx, float *y, long ldy, long rows, long n,
                 const float *w, float eps);
/// In place: x = gelu_tanh(x) (PyTorch's approximate="tanh").
void pg_gelu_tanh(float *x, long n);
/// In place: x = gelu(x) with erf.
void pg_gelu_erf(float *x, long n);
/// In place: a = gelu_tanh(a) * b (GeGLU).
void pg_geglu(float *a, const float *b, long n, int exact_erf);
/// Backward of GeGLU a = gelu(gate) * up: dgate = da * up * gelu'(gate), dup = da * gelu(gate);
/// with up (and dup) NULL, the backward of the plain GELU: dgate = da * gelu'(gate).
void pg_geglu_backward(const float *da, const float *gate, const float *up, float *dgate, float *dup, long n, int exact_erf);
/// In place: x = tanh(x / cap) * cap.
void pg_softcap(float *x, long n, float cap);
/// In place: y += x.
void pg_add(float *y, const float *x, long n);
/// In place: x *= s.
void pg_scale(float *x, long n, float s);
/// One AdamW update's constants (torch.optim.AdamW): decay = 1 - lr·weight_decay, step_size =
/// lr / (1 - β1ᵗ), bias_correction2_sqrt = √(1 - β2ᵗ).
typedef struct { float decay, beta1, beta2, step_size, bias_correction2_sqrt, eps; } pg_adamw_step;
/// AdamW over `count` tensors of n[i] values at once (values p, gradients g, moments m and v):
/// p ·= decay; m += (1 - β1)(g - m); v = β2 v + (1 - β2) g²; p -= step_size · m / (√v /
/// bias_correction2_sqrt + eps), in that order of operations.
void pg_adamw(float *const *p, const float *const *g, float *const *m, float *const *v, const long *n, long count,
              pg_adamw_step step);
/// Σ x² over `count` tensors of n[i] values, summed in double in a fixed order (the same for
/// any number of threads).
double pg_sum_squares(const float *const *x, const long *n, long count);

/// In place softmax over rows.
void pg_softmax(float *x, long ld, long rows, long n);
/// In place softmax of one row's entries lo..<hi, the row's other entries (of n) set to zero (a
/// training attention row and its visible keys), on this level's exp (as inference's attention).
void pg_softmax_span(float *x, long n, long lo, long hi);

/// Rotary embedding, half-split ("rotate_half") layout, in place on `heads` vectors of length
/// dim (stride between heads: dim) for each of `rows` tokens (row stride ld). Token r has
/// position positions[r]. inv_freq has dim/2 entries.
void pg_rope(float *x, long ld, long rows, int heads, int dim, const float *positions,
             const float *inv_freq);

// ---- machine probes (benchmark floors) -----------------------------------------------------
/// Best of `reps` passes reading `bytes` of memory with all pool threads, in GB/s.
double pg_measure_read_gbs(size_t bytes, int reps);
/// float32 FMA rate of all pool threads at the current ISA level (register-only, `iters` rounds
/// of 12 vector FMAs per task, 8 tasks per thread), in GFLOP/s; 0 on the scalar level.
double pg_measure_fma_gflops(long iters);
/// Rate of a FAST kernel's bf16 dot-product instruction on all pool threads (register- or
/// tile-only: vdpbf16ps on 24 accumulators, or tdpbf16ps on four 16 x 16 tiles), in GFLOP/s
/// (2 per multiply-add); 0 when the CPU lacks it. `iters` sets the length as for the FMA probe.
double pg_measure_bf16_gflops(int kernel, long iters);
/// Integer dot products of the quantized kernels: int16 pairs (int8 weights: vpmaddwd, or
/// vpdpwssd with VNNI) and uint8 x int8 quads (4-bit weights: vpmaddubsw, or vpdpbusd).
typedef enum { PG_INT_DOT_PAIRS = 0, PG_INT_DOT_QUADS = 1 } pg_int_dot_kind;
/// Rate of the instruction that kind's kernel uses with this thread's features, 256 bits wide as
/// in the kernels, on all pool threads (12 accumulators, `iters` rounds, 8 tasks per thread), in
/// GOP/s (2 per multiply-add); 0 below AVX2.
double pg_measure_int_dot_gops(int kind, long iters);
/// That instruction's name ("vpmaddwd", "vpdpwssd", "vpmaddubsw", "vpdpbusd"; "none" below AVX2).
const char *pg_int_dot_instruction(int kind);

// ---- attention -------------------------------------------------------------------------
/// Scaled dot-product attention for T queries against S cached keys/values, with the
/// prefix-LM mask, optional attention-logit soft cap and optional sliding window.
///   q:   [T, Hq, D]  (row stride ldq between tokens)
///   k,v: [S, Hkv, D] (row stride ldkv); key j sits at sequence index j
///   out: [T, Hq, D]  (row stride ldo)
/// Query t sits at sequence index q_start + t. Key j is visible from query index i when
///   (j <= i && (window <= 0 || j > i - window)) || (i < prefix && j < prefix).
/// Logits are q.k * scale, then softcap (if > 0): tanh(x/softcap)*softcap.
void pg_attention(const float *q, long ldq, const float *k, const float *v, long ldkv,
                  float *out, long ldo, long T, long S, int Hq, int Hkv, int D,
                  long q_start, long prefix, long window, float scale, float softcap);
/// pg_attention on an explicit instruction-set level (clamped to what the CPU supports); for tests.
void pg_attention_isa(int isa, const float *q, long ldq, const float *k, const float *v, long ldkv,
                      float *out, long ldo, long T, long S, int Hq, int Hkv, int D,
                      long q_start, long prefix, long window, float scale, float softcap);
/// Self-attention of T tokens among themselves with no mask (the vision tower): q, k, v and out
/// [T, H, D] at row stride ld (ldo for out), logits q.k * scale. At the thread's FAST precision
/// where AVX512-BF16 is present (and D is even) both products run on vdpbf16ps as PyTorch's bf16
/// attention computes them: q and k rounded to bf16 for the logits, the softmax in float32, the
/// probabilities and v rounded to bf16 for the weighted sum, sums in float32
/// (attention_bf16.c); otherwise it is pg_attention in float32.
void pg_self_attention(const float *q, const float *k, const float *v, long ld, float *out, long ldo, long T, int H,
                       int D, float scale);


/// One sequence of a batched attention call: its rows of q and out, and its keys and values.
/// Key (and value) j of the sequence is row r of k (v), row stride ldkv, where r = j without a
/// block table, and r = block_table[j / block_tokens] * block_tokens + j % block_tokens with one
/// (a paged cache: fixed-size blocks of rows, anywhere in k and v, in sequence order).
typedef struct {
    long row0;             // first row of this sequence in q and out
    long T;                // its query rows (new tokens)
    long S;                // keys visible to it: the cache length after this call
    long q_start;          // sequence index of its first query row
    long prefix;           // prefix-LM: indices < prefix see each other
    const float *k, *v;    // base of its keys and values (offset to key/value head 0)
    const int32_t *block_table;  // NULL: contiguous
    long block_tokens;     // rows per block (with a block table)
} pg_attn_seq;

/// pg_attention for several sequences in one call: sequence i's T rows of q start at row
/// seqs[i].row0 (rows of different sequences never see each other), each with its own cache,
/// positions and prefix; window, scale and soft cap are the layer's. All (sequence, head, query
/// block) tasks share the pool at once.
void pg_attention_batch(const float *q, long ldq, float *out, long ldo, const pg_attn_seq *seqs, long nseq, long ldkv,
                        int Hq, int Hkv, int D, long window, float scale, float softcap);
/// pg_attention_batch on an explicit instruction-set level; for tests.
void pg_attention_batch_isa(int isa, const float *q, long ldq, float *out, long ldo, const pg_attn_seq *seqs,
                            long nseq, long ldkv, int Hq, int Hkv, int D, long window, float scale, float softcap);

#ifdef __cplusplus
}
#endif
#endif
