// Row-wise normalisation, activations, soft caps, softmax and rotary embeddings, in float32.
// Transcendentals use libm (tanhf, erff, expf) for accuracy; they are a small share of the time.
#include "internal.h"
#include <math.h>

typedef struct {
    const float *x; long ldx; float *y; long ldy; long rows, n; const float *w, *b; float eps; int kind;
} norm_job;

// Row statistics in double, over 8 interleaved partial sums added in a fixed order at the end:
// with one running sum each element waited on the previous add (four cycles), and SigLIP's
// LayerNorms took 4.4% of the vision tower's time (Zen 5, 256 rows of 1152 twice a layer).
#define PG_NORM_LANES 8
static double row_sum(const float *x, long n, double center, int squares) {
    double s[PG_NORM_LANES] = { 0 };
    long i = 0;
    for (; i + PG_NORM_LANES <= n; i += PG_NORM_LANES)
        for (int t = 0; t < PG_NORM_LANES; t++) {
            double d = (double)x[i + t] - center;
            s[t] += squares ? d * d : d;
        }
    double total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) {
        double d = (double)x[i] - center;
        total += squares ? d * d : d;
    }
    return total;
}

static void norm_task(void *p, long r, int thread) {
    (void)thread;
    const norm_job *j = p;
    const float *x = j->x + r * j->ldx;
    float *y = j->y + r * j->ldy;
    long n = j->n;
    if (j->kind == 0) {  // LayerNorm, two-pass in double for the statistics
        double mean = row_sum(x, n, 0.0, 0) / (double)n;
        double var = row_sum(x, n, mean, 1) / (double)n;
        float inv = (float)(1.0 / sqrt(var + j->eps));
        float m = (float)mean;
        // One loop per case, each a straight line the compiler vectorizes (a test on w or b per
        // element kept the loop scalar); the same arithmetic as v * (w or 1) + (b or 0).
        const float *w = j->w, *b = j->b;
        if (w && b) for (long i = 0; i < n; i++) y[i] = ((x[i] - m) * inv) * w[i] + b[i];
        else if (w) for (long i = 0; i < n; i++) y[i] = ((x[i] - m) * inv) * w[i] + 0.0f;
        else if (b) for (long i = 0; i < n; i++) y[i] = ((x[i] - m) * inv) * 1.0f + b[i];
        else for (long i = 0; i < n; i++) y[i] = ((x[i] - m) * inv) * 1.0f + 0.0f;
    } else {  // Gemma RMSNorm
        double ss = row_sum(x, n, 0.0, 1);
        float inv = 1.0f / sqrtf((float)(ss / (double)n) + j->eps);
        const float *w = j->w;
        if (w) for (long i = 0; i < n; i++) y[i] = (x[i] * inv) * (1.0f + w[i]);
        else for (long i = 0; i < n; i++) y[i] = (x[i] * inv) * (1.0f + 0.0f);
    }
}

void pg_layer_norm(const float *x, long ldx, float *y, long ldy, long rows, long n, const float *w,
                   const float *b, float eps) {
    norm_job j = { x, ldx, y, ldy, rows, n, w, b, eps, 0 };
    pg_parallel_for(rows, norm_task, &j);
}

void pg_rms_norm(const float *x, long ldx, float *y, long ldy, long rows, long n, const float *w, float eps) {
    norm_job j = { x, ldx, y, ldy, rows, n, w, NULL, eps, 1 };
    pg_parallel_for(rows, norm_task, &j);
}

static inline float gelu_tanh1(float x) {
    const float c = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}
static inline float gelu_erf1(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }

#define PG_ELEMWISE_CHUNK 16384
typedef struct { float *a; const float *b; long n; float s; int kind; int isa; } ew_job;

static void ew_task(void *p, long t, int thread) {
    (void)thread;
    const ew_job *j = p;
    long i0 = t * PG_ELEMWISE_CHUNK, i1 = i0 + PG_ELEMWISE_CHUNK < j->n ? i0 + PG_ELEMWISE_CHUNK : j->n;
    float *a = j->a;
    if ((j->kind == 0 || j->kind == 2) && j->isa >= PG_ISA_AVX512)
        i0 += pg_gelu_tanh_avx512(a + i0, j->kind == 2 ? j->b + i0 : NULL, i1 - i0);
    else if ((j->kind == 0 || j->kind == 2) && j->isa >= PG_ISA_AVX2)
        i0 += pg_gelu_tanh_avx2(a + i0, j->kind == 2 ? j->b + i0 : NULL, i1 - i0);
    switch (j->kind) {
    case 0: for (long i = i0; i < i1; i++) a[i] = gelu_tanh1(a[i]); break;
    case 1: for (long i = i0; i < i1; i++) a[i] = gelu_erf1(a[i]); break;
    case 2: for (long i = i0; i < i1; i++) a[i] = gelu_tanh1(a[i]) * j->b[i]; break;
    case 3: for (long i = i0; i < i1; i++) a[i] = gelu_erf1(a[i]) * j->b[i]; break;
    case 4: for (long i = i0; i < i1; i++) a[i] = tanhf(a[i] / j->s) * j->s; break;
    case 5: for (long i = i0; i < i1; i++) a[i] += j->b[i]; break;
    case 6: for (long i = i0; i < i1; i++) a[i] *= j->s; break;
    }
}

static void elementwise(float *a, const float *b, long n, float s, int kind) {
    ew_job j = { a, b, n, s, kind, pg_isa() };
    pg_parallel_for((n + PG_ELEMWISE_CHUNK - 1) / PG_ELEMWISE_CHUNK, ew_task, &j);
}

void pg_gelu_tanh(float *x, long n) { elementwise(x, NULL, n, 0, 0); }
void pg_gelu_erf(float *x, long n) { elementwise(x, NULL, n, 0, 1); }
void pg_geglu(float *a, const float *b, long n, int exact_erf) { elementwise(a, b, n, 0, exact_erf ? 3 : 2); }
void pg_softcap(float *x, long n, float cap) { elementwise(x, NULL, n, cap, 4); }
void pg_add(float *y, const float *x, long n) { elementwise(y, x, n, 0, 5); }
void pg_scale(float *x, long n, float s) { elementwise(x, NULL, n, s, 6); }

typedef struct { const float *da, *gate, *up; float *dgate, *dup; long n; int exact, isa; } geglu_bw_job;

static void geglu_bw_task(void *p, long t, int thread) {
    (void)thread;
    const geglu_bw_job *j = p;
    long i0 = t * PG_ELEMWISE_CHUNK, i1 = i0 + PG_ELEMWISE_CHUNK < j->n ? i0 + PG_ELEMWISE_CHUNK : j->n;
    if (!j->exact && j->isa >= PG_ISA_AVX2)
        i0 += pg_geglu_backward_avx2(j->da + i0, j->gate + i0, j->up ? j->up + i0 : NULL, j->dgate + i0, j->dup ? j->dup + i0 : NULL, i1 - i0);
    for (long i = i0; i < i1; i++) {
        float x = j->gate[i], g, slope;
        if (j->exact) {
            float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
            g = x * cdf;
            slope = cdf + x * expf(-0.5f * x * x) * 0.3989422804014327f;
        } else {
            const float k = 0.7978845608028654f;
            float th = tanhf(k * (x + 0.044715f * x * x * x));
            g = 0.5f * x * (1.0f + th);
            slope = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * k * (1.0f + 3.0f * 0.044715f * x * x);
        }
        if (j->up) {
            j->dgate[i] = j->da[i] * j->up[i] * slope;
            j->dup[i] = j->da[i] * g;
        } else {
            j->dgate[i] = j->da[i] * slope;
        }
    }
}

void pg_geglu_backward(const float *da, const float *gate, const float *up, float *dgate, float *dup, long n, int exact_erf) {
    geglu_bw_job j = { da, gate, up, dgate, dup, n, exact_erf, pg_isa() };
    pg_parallel_for((n + PG_ELEMWISE_CHUNK - 1) / PG_ELEMWISE_CHUNK, geglu_bw_task, &j);
}

float pg_scale_max(int isa, float *x, long n, float scale) {
    if (isa >= PG_ISA_AVX512) return pg_scale_max_avx512(x, n, scale);
    if (isa >= PG_ISA_AVX2) return pg_scale_max_avx2(x, n, scale);
    float mx = -INFINITY;
    for (long i = 0; i < n; i++) {
        x[i] *= scale;
        if (x[i] > mx) mx = x[i];
    }
    return mx;
}

float pg_exp_shift_sum(int isa, float *x, long n, float shift) {
    if (isa >= PG_ISA_AVX512) return pg_exp_shift_sum_avx512(x, n, shift);
    if (isa >= PG_ISA_AVX2) return pg_exp_shift_sum_avx2(x, n, shift);
    float sum = 0;
    for (long i = 0; i < n; i++) {
        x[i] = x[i] == -INFINITY ? 0.0f : expf(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

static void softmax_row(float *x, long n) {
    float mx = -INFINITY;
    for (long i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) {  // every entry masked
        for (long i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    float sum = pg_exp_shift_sum(PG_ISA_SCALAR, x, n, mx);
    float inv = 1.0f / sum;
    for (long i = 0; i < n; i++) x[i] *= inv;
}

typedef struct { float *x; long ld, n; } softmax_job;
static void softmax_task(void *p, long r, int thread) {
    (void)thread;
    const softmax_job *j = p;
    softmax_row(j->x + r * j->ld, j->n);
}

void pg_softmax(float *x, long ld, long rows, long n) {
    softmax_job j = { x, ld, n };
    pg_parallel_for(rows, softmax_task, &j);
}

void pg_softmax_span(float *x, long n, long lo, long hi) {
    if (lo < 0) lo = 0;
    if (hi > n) hi = n;
    if (hi <= lo) {
        for (long i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    float mx = -INFINITY;
    for (long i = lo; i < hi; i++) mx = x[i] > mx ? x[i] : mx;
    for (long i = 0; i < lo; i++) x[i] = 0.0f;
    for (long i = hi; i < n; i++) x[i] = 0.0f;
    if (mx == -INFINITY) {  // every visible entry masked
        for (long i = lo; i < hi; i++) x[i] = 0.0f;
        return;
    }
    float sum = pg_exp_shift_sum(pg_isa(), x + lo, hi - lo, mx);
    for (long i = lo; i < hi; i++) x[i] /= sum;
}

void pg_rope(float *x, long ld, long rows, int heads, int dim, const float *positions, const float *inv_freq) {
    int half = dim / 2;
    for (long r = 0; r < rows; r++) {
        float pos = positions[r];
        for (int i = 0; i < half; i++) {
            float angle = pos * inv_freq[i];  // float32 product, as the reference computes it
            float c = cosf(angle), s = sinf(angle);
            for (int h = 0; h < heads; h++) {
                float *v = x + r * ld + (long)h * dim;
                float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
}
