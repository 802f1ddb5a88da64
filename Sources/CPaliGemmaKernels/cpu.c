// Run-time choice of the instruction-set level.
#include "pg_kernels.h"
#include "internal.h"
#include <stdlib.h>
#include <string.h>

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

static int g_supported = -1;
static int g_level = -1;
static _Thread_local int t_level = -1;  // this thread's override (pg_set_thread_isa), or -1

int pg_isa_supported(void) {
    if (g_supported < 0) g_supported = detect();
    return g_supported;
}

int pg_isa(void) {
    if (t_level >= 0) return t_level;
    if (g_level < 0) {
        int level = pg_isa_supported();
        const char *env = getenv("PALIGEMMA_ISA");
        if (env) {
            int want = level;
            if (strcmp(env, "scalar") == 0) want = PG_ISA_SCALAR;
            else if (strcmp(env, "avx2") == 0) want = PG_ISA_AVX2;
            else if (strcmp(env, "avx512") == 0) want = PG_ISA_AVX512;
            if (want < level) level = want;
        }
        g_level = level;
    }
    return g_level;
}

int pg_set_isa(int level) {
    int max = pg_isa_supported();
    if (level < PG_ISA_SCALAR) level = PG_ISA_SCALAR;
    g_level = level > max ? max : level;
    return g_level;
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
