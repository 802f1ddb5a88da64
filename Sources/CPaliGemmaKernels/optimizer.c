// Training's per-value passes over every trained tensor: AdamW's update and the sum of squares
// behind global-norm clipping. Both are bound by memory (AdamW reads four values and writes
// three per parameter), so each runs over all tensors at once, in chunks spread over the
// threads, with SSE2's four lanes where x86 has them (the same operations in the same order as
// the scalar loop, so the results do not depend on the lanes or the threads).
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#if PG_X86_SIMD
#include <immintrin.h>
#endif

#define PG_OPT_CHUNK 32768

// The chunks of `count` tensors of n[i] values, as (tensor, first value) pairs in order (NULL
// if there is no memory for the list: the callers then run the same chunks on their thread).
typedef struct { long tensor, start; } opt_chunk;

static opt_chunk *chunks_of(const long *n, long count, long *total) {
    long c = 0;
    for (long i = 0; i < count; i++) c += (n[i] + PG_OPT_CHUNK - 1) / PG_OPT_CHUNK;
    opt_chunk *list = malloc(sizeof(opt_chunk) * (size_t)(c > 0 ? c : 1));
    if (!list) return NULL;
    c = 0;
    for (long i = 0; i < count; i++)
        for (long s = 0; s < n[i]; s += PG_OPT_CHUNK) list[c++] = (opt_chunk){ i, s };
    *total = c;
    return list;
}

typedef struct {
    float *const *p; const float *const *g; float *const *m, *const *v; const long *n;
    const opt_chunk *chunks; pg_adamw_step step;
} adamw_job;

// One chunk: values [i, i + PG_OPT_CHUNK) of tensor k.
static void adamw_chunk(const adamw_job *j, long k, long i) {
    long end = i + PG_OPT_CHUNK < j->n[k] ? i + PG_OPT_CHUNK : j->n[k];
    float *p = j->p[k], *m = j->m[k], *v = j->v[k];
    const float *g = j->g[k];
    const pg_adamw_step s = j->step;
    const float c1 = 1.0f - s.beta1, c2 = 1.0f - s.beta2;
#if PG_X86_SIMD
    const __m128 decay = _mm_set1_ps(s.decay), vc1 = _mm_set1_ps(c1), vc2 = _mm_set1_ps(c2);
    const __m128 b2 = _mm_set1_ps(s.beta2), bc = _mm_set1_ps(s.bias_correction2_sqrt);
    const __m128 eps = _mm_set1_ps(s.eps), size = _mm_set1_ps(s.step_size);
    for (; i + 4 <= end; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i), mi = _mm_loadu_ps(m + i), vi = _mm_loadu_ps(v + i);
        __m128 pi = _mm_mul_ps(_mm_loadu_ps(p + i), decay);
        mi = _mm_add_ps(mi, _mm_mul_ps(vc1, _mm_sub_ps(gi, mi)));
        vi = _mm_add_ps(_mm_mul_ps(b2, vi), _mm_mul_ps(_mm_mul_ps(vc2, gi), gi));
        __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), bc), eps);
        pi = _mm_sub_ps(pi, _mm_div_ps(_mm_mul_ps(size, mi), denom));
        _mm_storeu_ps(p + i, pi);
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
    }
#endif
    for (; i < end; i++) {
        float gi = g[i], pi = p[i] * s.decay;
        float mi = m[i] + c1 * (gi - m[i]);
        float vi = s.beta2 * v[i] + c2 * gi * gi;
        float denom = sqrtf(vi) / s.bias_correction2_sqrt + s.eps;
        p[i] = pi - s.step_size * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

static void adamw_task(void *ctx, long t, int thread) {
    (void)thread;
    const adamw_job *j = ctx;
    adamw_chunk(j, j->chunks[t].tensor, j->chunks[t].start);
}

void pg_adamw(float *const *p, const float *const *g, float *const *m, float *const *v, const long *n, long count,
              pg_adamw_step step) {
    long total = 0;
    opt_chunk *chunks = chunks_of(n, count, &total);
    adamw_job j = { p, g, m, v, n, chunks, step };
    if (chunks) pg_parallel_for(total, adamw_task, &j);
    else  // no memory for the task list: the same chunks on this thread
        for (long k = 0; k < count; k++)
            for (long i = 0; i < n[k]; i += PG_OPT_CHUNK) adamw_chunk(&j, k, i);
    free(chunks);
}

typedef struct { const float *const *x; const long *n; const opt_chunk *chunks; double *sums; } sumsq_job;

static double sumsq_chunk(const float *x, long i, long n) {
    long end = i + PG_OPT_CHUNK < n ? i + PG_OPT_CHUNK : n;
    double s[4] = { 0, 0, 0, 0 };
    for (; i + 4 <= end; i += 4)
        for (int l = 0; l < 4; l++) s[l] += (double)x[i + l] * (double)x[i + l];
    for (; i < end; i++) s[0] += (double)x[i] * (double)x[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static void sumsq_task(void *ctx, long t, int thread) {
    (void)thread;
    const sumsq_job *j = ctx;
    long k = j->chunks[t].tensor;
    j->sums[t] = sumsq_chunk(j->x[k], j->chunks[t].start, j->n[k]);
}

double pg_sum_squares(const float *const *x, const long *n, long count) {
    long total = 0;
    opt_chunk *chunks = chunks_of(n, count, &total);
    double *sums = chunks ? malloc(sizeof(double) * (size_t)(total > 0 ? total : 1)) : NULL;
    double s = 0;
    if (sums) {
        sumsq_job j = { x, n, chunks, sums };
        pg_parallel_for(total, sumsq_task, &j);
        for (long t = 0; t < total; t++) s += sums[t];
    } else  // no memory for the task list: the same chunks, in the same order, on this thread
        for (long k = 0; k < count; k++)
            for (long i = 0; i < n[k]; i += PG_OPT_CHUNK) s += sumsq_chunk(x[k], i, n[k]);
    free(chunks);
    free(sums);
    return s;
}
