// Machine probes for the benchmark's physical floors: how fast this machine streams memory
// and how many float32 FMAs per second its cores can retire, both with the pool's threads.
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct { const char *buf; size_t slice; int isa; volatile float sink[256]; } read_job;

#if PG_X86_SIMD
#include <immintrin.h>
__attribute__((target("avx2"))) static float read_avx2(const char *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps((const float *)(p + i)));
        a1 = _mm256_add_ps(a1, _mm256_load_ps((const float *)(p + i + 32)));
    }
    __m256 s = _mm256_add_ps(a0, a1);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}
#endif

static float read_scalar(const char *p, size_t n) {
    const float *f = (const float *)p;
    float s0 = 0, s1 = 0;
    for (size_t i = 0; i + 16 <= n / 4; i += 16) { s0 += f[i]; s1 += f[i + 8]; }  // one load per 32 bytes
    return s0 + s1;
}

static void read_task(void *p, long task, int thread) {
    read_job *j = p;
    const char *slice = j->buf + (size_t)task * j->slice;
    float s;
#if PG_X86_SIMD
    if (j->isa >= PG_ISA_AVX2) s = read_avx2(slice, j->slice);
    else s = read_scalar(slice, j->slice);
#else
    s = read_scalar(slice, j->slice);
#endif
    j->sink[thread & 255] = s;
}

double pg_measure_read_gbs(size_t bytes, int reps) {
    // Several slices per thread, claimed dynamically, so that a late-waking thread costs little.
    long tasks = 8L * pg_threads();
    size_t slice = bytes / (size_t)tasks / 4096 * 4096;
    if (slice == 0) return 0;
    char *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, slice * (size_t)tasks) != 0) return 0;
    memset(buf, 1, slice * (size_t)tasks);  // fault every page in before timing
    read_job j = { buf, slice, pg_isa(), {0} };
    double best = 0;
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        double t0 = seconds();
        pg_parallel_for(tasks, read_task, &j);
        double t = seconds() - t0;
        double gbs = (double)(slice * (size_t)tasks) / t / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

typedef struct { long iters; int isa; volatile float sink[256]; } fma_job;

#if PG_X86_SIMD
// Twelve independent accumulators: enough to cover the FMA latency on both FMA pipes.
__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
    __m256 a[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long t = 0; t < iters; t++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}
__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
    __m512 a[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long t = 0; t < iters; t++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}
#endif

static void fma_task(void *p, long task, int thread) {
    fma_job *j = p;
    (void)task;
    float s = 0;
#if PG_X86_SIMD
    if (j->isa >= PG_ISA_AVX512) s = fma_avx512(j->iters);
    else if (j->isa >= PG_ISA_AVX2) s = fma_avx2(j->iters);
#endif
    j->sink[thread & 255] = s;
}

double pg_measure_fma_gflops(long iters) {
    int threads = pg_threads();
    int isa = pg_isa();
    int lanes = isa >= PG_ISA_AVX512 ? 16 : isa >= PG_ISA_AVX2 ? 8 : 0;
    if (lanes == 0) return 0;  // no vector FMA: no meaningful peak
    long tasks = 8L * threads;
    fma_job j = { iters > 0 ? iters : 1, isa, {0} };
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = seconds();
        pg_parallel_for(tasks, fma_task, &j);
        double t = seconds() - t0;
        double gf = (double)tasks * (double)j.iters * 12.0 * lanes * 2.0 / t / 1e9;
        if (gf > best) best = gf;
    }
    return best;
}

// ---- bf16 dot-product peaks (the FAST kernels' instructions) ----------------------------------------
typedef struct { long iters; int kernel; volatile float sink[256]; } bf16_job;

#if PG_X86_SIMD
// vdpbf16ps: 24 independent accumulators (16 lanes x 2 products each per instruction).
__attribute__((target("avx512f,avx512bf16"))) static float dpbf16_avx512(long iters) {
    __m512 a[24];
    __m512bh b = (__m512bh)_mm512_set1_epi32(0x3F803F80), c = (__m512bh)_mm512_set1_epi32(0x3F7F3F7F);
    for (int i = 0; i < 24; i++) a[i] = _mm512_set1_ps((float)i);
    for (long t = 0; t < iters; t++)
        for (int i = 0; i < 24; i++) a[i] = _mm512_dpbf16_ps(a[i], b, c);
    __m512 s = a[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

// tdpbf16ps: four accumulator tiles (16 x 16 float32) from two A and two B tiles (16 x 32 bf16),
// as the kernel's block loop uses them (its tile configuration); each instruction is
// 16 · 16 · 32 multiply-adds.
__attribute__((target("amx-tile,amx-bf16"))) static float dpbf16_amx(long iters) {
    pg_amx_configure();
    uint16_t a[16 * 32] __attribute__((aligned(64)));
    float c[16 * 16] __attribute__((aligned(64)));
    for (int i = 0; i < 16 * 32; i++) a[i] = 0x3C00;  // 2^-7
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, a, 64); _tile_loadd(5, a, 64); _tile_loadd(6, a, 64); _tile_loadd(7, a, 64);
    for (long t = 0; t < iters; t++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    pg_amx_release();
    return c[0];
}
#endif

static void bf16_task(void *p, long task, int thread) {
    bf16_job *j = p;
    (void)task;
    float s = 0;
#if PG_X86_SIMD
    if (j->kernel == PG_FAST_AMX) s = dpbf16_amx(j->iters);
    else if (j->kernel == PG_FAST_AVX512_BF16) s = dpbf16_avx512(j->iters);
#endif
    j->sink[thread & 255] = s;
}

double pg_measure_bf16_gflops(int kernel, long iters) {
    if (kernel == PG_FAST_NONE || !pg_fast_kernel_supported(kernel)) return 0;
    // FLOPs (2 per multiply-add) of one round: 4 tiles x 16 x 16 x 32, or 24 x 16 lanes x 2 pairs.
    double per_round = kernel == PG_FAST_AMX ? 4.0 * 16 * 16 * 32 * 2 : 24.0 * 16 * 2 * 2;
    // AMX rounds are 32 times the work of a vdpbf16ps round: fewer of them for the same time.
    long n = kernel == PG_FAST_AMX ? (iters > 32 ? iters / 32 : 1) : (iters > 0 ? iters : 1);
    long tasks = 8L * pg_threads();
    bf16_job j = { n, kernel, {0} };
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = seconds();
        pg_parallel_for(tasks, bf16_task, &j);
        double t = seconds() - t0;
        double gf = (double)tasks * (double)n * per_round / t / 1e9;
        if (gf > best) best = gf;
    }
    return best;
}

// ---- integer dot-product peaks (the int8 and 4-bit kernels' instructions) ---------------------------
// Each probe runs the instruction the kernel of that weight form uses on this thread's features
// (gemm_i8.c, linear_q4.c), 256 bits wide as they are, on 12 independent accumulators.
typedef struct { long iters; int kind, features; volatile int sink[256]; } intdot_job;

#if PG_X86_SIMD
#define INTDOT_PROBE(name, isa_target, step)                                                            \
    __attribute__((target(isa_target))) static int name(long iters) {                                  \
        __m256i a[12], b = _mm256_set1_epi16(3), c = _mm256_set1_epi16(5);                          \
        (void)b;                                                                                    \
        for (int i = 0; i < 12; i++) a[i] = _mm256_set1_epi32(i);                                   \
        for (long t = 0; t < iters; t++)                                                            \
            for (int i = 0; i < 12; i++) a[i] = step(a[i], b, c);                                   \
        __m256i s = a[0];                                                                           \
        for (int i = 1; i < 12; i++) s = _mm256_add_epi32(s, a[i]);                                 \
        return _mm256_extract_epi32(s, 0);                                                          \
    }
// int16 pairs (int8 weights): vpmaddwd then vpaddd, or one vpdpwssd. The AVX2 forms multiply the
// accumulator itself (a, not b): with loop-invariant inputs the compiler hoists the multiply out of
// the loop and the probe times only the adds (it reported 15,000 GOP/s on a Zen 1).
#define PAIRS_AVX2(a, b, c) _mm256_add_epi32(a, _mm256_madd_epi16(a, c))
#define PAIRS_AVXVNNI(a, b, c) _mm256_dpwssd_avx_epi32(a, b, c)
#define PAIRS_AVX512VNNI(a, b, c) _mm256_dpwssd_epi32(a, b, c)
// uint8 x int8 quads (4-bit weights): vpmaddubsw then vpaddw (the kernel adds a block's products
// in int16 and turns them into int32 once per block), or one vpdpbusd.
#define QUADS_AVX2(a, b, c) _mm256_add_epi16(a, _mm256_maddubs_epi16(a, c))
#define QUADS_AVXVNNI(a, b, c) _mm256_dpbusd_avx_epi32(a, b, c)
#define QUADS_AVX512VNNI(a, b, c) _mm256_dpbusd_epi32(a, b, c)
INTDOT_PROBE(pairs_avx2, "avx2", PAIRS_AVX2)
INTDOT_PROBE(pairs_avxvnni, "avx2,avxvnni", PAIRS_AVXVNNI)
INTDOT_PROBE(pairs_avx512vnni, "avx2,avx512f,avx512vl,avx512vnni", PAIRS_AVX512VNNI)
INTDOT_PROBE(quads_avx2, "avx2", QUADS_AVX2)
INTDOT_PROBE(quads_avxvnni, "avx2,avxvnni", QUADS_AVXVNNI)
INTDOT_PROBE(quads_avx512vnni, "avx2,avx512f,avx512vl,avx512vnni", QUADS_AVX512VNNI)
#endif

// The instruction a kind's kernel uses with `features`: 0 plain AVX2, 1 AVX-VNNI, 2 AVX512-VNNI.
static int intdot_variant(int features) {
    return features & PG_FEAT_AVX_VNNI ? 1 : features & PG_FEAT_AVX512_VNNI ? 2 : 0;
}

const char *pg_int_dot_instruction(int kind) {
    if (pg_isa() < PG_ISA_AVX2) return "none";
    int v = intdot_variant(pg_features());
    if (kind == PG_INT_DOT_PAIRS) return v ? "vpdpwssd" : "vpmaddwd";
    return v ? "vpdpbusd" : "vpmaddubsw";
}

static void intdot_task(void *p, long task, int thread) {
    intdot_job *j = p;
    (void)task;
    int s = 0;
#if PG_X86_SIMD
    int v = intdot_variant(j->features);
    if (j->kind == PG_INT_DOT_PAIRS) s = v == 1 ? pairs_avxvnni(j->iters) : v == 2 ? pairs_avx512vnni(j->iters) : pairs_avx2(j->iters);
    else s = v == 1 ? quads_avxvnni(j->iters) : v == 2 ? quads_avx512vnni(j->iters) : quads_avx2(j->iters);
#endif
    j->sink[thread & 255] = s;
}

double pg_measure_int_dot_gops(int kind, long iters) {
    if (pg_isa() < PG_ISA_AVX2) return 0;  // the integer kernels need AVX2
    // Multiply-adds per instruction (256 bits): 16 for int16 pairs, 32 for uint8 x int8 quads.
    double per_round = 12.0 * (kind == PG_INT_DOT_PAIRS ? 16 : 32) * 2;
    long tasks = 8L * pg_threads();
    intdot_job j = { iters > 0 ? iters : 1, kind, pg_features(), {0} };
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = seconds();
        pg_parallel_for(tasks, intdot_task, &j);
        double t = seconds() - t0;
        double gops = (double)tasks * (double)j.iters * per_round / t / 1e9;
        if (gops > best) best = gops;
    }
    return best;
}
