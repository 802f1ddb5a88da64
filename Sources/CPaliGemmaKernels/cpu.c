// Run-time choice of the instruction-set level.
#include "pg_kernels.h"
#include "internal.h"
#include <stdlib.h>
#include <string.h>
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static int detect(void) {
#if PG_X86_SIMD
    __builtin_cpu_init();
    int level = PG_ISA_SCALAR;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        level = PG_ISA_AVX2;
    if (level == PG_ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        level = PG_ISA_AVX512;
    return level;
#else
    return PG_ISA_SCALAR;
#endif
}

// The process-wide settings below are read by every thread that runs a kernel and written
// once, lazily, by whichever thread gets there first (or by a pg_set_* call): relaxed atomic
// loads and stores, so those accesses are not data races (ThreadSanitizer found them).
static inline int get(const int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline int put(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); return v; }

static int g_supported = -1;
static int g_level = -1;
static _Thread_local int t_level = -1;  // this thread's override (pg_set_thread_isa), or -1

int pg_isa_supported(void) {
    if (get(&g_supported) < 0) put(&g_supported, detect());
    return get(&g_supported);
}

int pg_isa(void) {
    if (t_level >= 0) return t_level;
    if (get(&g_level) < 0) {
        int level = pg_isa_supported();
        const char *env = getenv("PALIGEMMA_ISA");
        if (env) {
            int want = level;
            if (strcmp(env, "scalar") == 0) want = PG_ISA_SCALAR;
            else if (strcmp(env, "avx2") == 0) want = PG_ISA_AVX2;
            else if (strcmp(env, "avx512") == 0) want = PG_ISA_AVX512;
            if (want < level) level = want;
        }
        put(&g_level, level);
    }
    return get(&g_level);
}

int pg_set_isa(int level) {
    int max = pg_isa_supported();
    if (level < PG_ISA_SCALAR) level = PG_ISA_SCALAR;
    put(&g_level, level > max ? max : level);
    return get(&g_level);
}

int pg_set_thread_isa(int level) {
    if (level < 0) {
        t_level = -1;
        return pg_isa();
    }
    int max = pg_isa_supported();
    t_level = level > max ? max : level;
    return t_level;
}

const char *pg_isa_name(int level) {
    switch (level) {
    case PG_ISA_AVX2: return "avx2+fma+f16c";
    case PG_ISA_AVX512: return "avx512f+bw+vl+dq";
    default: return "scalar";
    }
}

// ---- instruction-set extensions and the precision of products -----------------------------------
static int detect_features(void) {
    int f = 0;
#if PG_X86_SIMD
    __builtin_cpu_init();
    if (pg_isa_supported() < PG_ISA_AVX512) return 0;  // every extension below builds on AVX-512 F/BW/VL/DQ
    if (__builtin_cpu_supports("avx512bf16")) f |= PG_FEAT_AVX512_BF16;
    if (__builtin_cpu_supports("avx512vnni")) f |= PG_FEAT_AVX512_VNNI;
    if (__builtin_cpu_supports("avxvnni")) f |= PG_FEAT_AVX_VNNI;
#if defined(__linux__)
    // AMX's tile data is off for a process until it asks the kernel for it (arch_prctl
    // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): the request fails where the CPU, the kernel or a
    // hypervisor does not offer it, and then AMX is not used.
    if (__builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") && (f & PG_FEAT_AVX512_BF16) &&
        syscall(SYS_arch_prctl, 0x1023, 18) == 0)
        f |= PG_FEAT_AMX_BF16;
#endif
#endif
    return f;
}

static int g_features = -1;

int pg_cpu_features(void) {
    if (get(&g_features) < 0) {
        int f = detect_features();
        // PALIGEMMA_DISABLE_FEATURES: a comma-separated list of these names to leave unused.
        const char *off = getenv("PALIGEMMA_DISABLE_FEATURES");
        if (off) {
            if (strstr(off, "avx512-bf16")) f &= ~(PG_FEAT_AVX512_BF16 | PG_FEAT_AMX_BF16);  // AMX's path needs it
            if (strstr(off, "avx512-vnni")) f &= ~PG_FEAT_AVX512_VNNI;
            if (strstr(off, "avx-vnni")) f &= ~PG_FEAT_AVX_VNNI;
            if (strstr(off, "amx-bf16")) f &= ~PG_FEAT_AMX_BF16;
        }
        put(&g_features, f);
    }
    return get(&g_features);
}

static _Thread_local int t_feature_mask = -1;  // pg_set_thread_features; -1: all

int pg_features(void) { return pg_cpu_features() & t_feature_mask; }

int pg_set_thread_features(int mask) {
    int old = t_feature_mask;
    t_feature_mask = mask < 0 ? -1 : mask;
    return old;
}

static int g_precision = -1;
static _Thread_local int t_precision = -1;
static int g_fast_kernel = -1;

int pg_precision(void) {
    if (t_precision >= 0) return t_precision;
    if (get(&g_precision) < 0) {
        const char *env = getenv("PALIGEMMA_PRECISION");
        put(&g_precision, env && strcmp(env, "fast") == 0 ? PG_PRECISION_FAST : PG_PRECISION_EXACT);
    }
    return get(&g_precision);
}

int pg_set_precision(int precision) {
    put(&g_precision, precision == PG_PRECISION_FAST ? PG_PRECISION_FAST : PG_PRECISION_EXACT);
    return get(&g_precision);
}

int pg_set_thread_precision(int precision) {
    t_precision = precision < 0 ? -1 : precision == PG_PRECISION_FAST ? PG_PRECISION_FAST : PG_PRECISION_EXACT;
    return pg_precision();
}

int pg_fast_kernel_supported(int kernel) {
    int f = pg_cpu_features();
    switch (kernel) {
    case PG_FAST_AMX: return (f & PG_FEAT_AMX_BF16) != 0;
    case PG_FAST_AVX512_BF16: return (f & PG_FEAT_AVX512_BF16) != 0;
    default: return kernel == PG_FAST_NONE;
    }
}

int pg_fast_kernel(void) {
    if (get(&g_fast_kernel) < 0) {
        int best = pg_fast_kernel_supported(PG_FAST_AMX) ? PG_FAST_AMX
                 : pg_fast_kernel_supported(PG_FAST_AVX512_BF16) ? PG_FAST_AVX512_BF16 : PG_FAST_NONE;
        const char *env = getenv("PALIGEMMA_FAST_KERNEL");
        if (env) {
            int want = strcmp(env, "amx") == 0 ? PG_FAST_AMX : strcmp(env, "avx512bf16") == 0 ? PG_FAST_AVX512_BF16
                     : strcmp(env, "none") == 0 ? PG_FAST_NONE : best;
            if (pg_fast_kernel_supported(want)) best = want;
        }
        put(&g_fast_kernel, best);
    }
    return get(&g_fast_kernel);
}

int pg_fast_kernel_at(int isa) {
    if (isa < PG_ISA_AVX512) return PG_FAST_NONE;
    int kernel = pg_fast_kernel(), f = pg_features();
    if (kernel == PG_FAST_AMX && !(f & PG_FEAT_AMX_BF16)) kernel = PG_FAST_AVX512_BF16;  // limited on this thread
    if (kernel == PG_FAST_AVX512_BF16 && !(f & PG_FEAT_AVX512_BF16)) kernel = PG_FAST_NONE;
    return kernel;
}

int pg_set_fast_kernel(int kernel) {
    if (pg_fast_kernel_supported(kernel)) put(&g_fast_kernel, kernel);
    return pg_fast_kernel();
}

const char *pg_fast_kernel_name(int kernel) {
    switch (kernel) {
    case PG_FAST_AMX: return "amx-bf16";
    case PG_FAST_AVX512_BF16: return "avx512-bf16";
    default: return "none";
    }
}
