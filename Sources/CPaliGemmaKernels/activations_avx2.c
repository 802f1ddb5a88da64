// Vectorised GELU (tanh approximation) and softmax pieces for AVX2 + FMA. tanh comes from a Cephes-style expf
// (range reduction by ln 2, degree-6 polynomial), accurate to a few float32 ulps; the kernel
// tests bound it against float64.
#include "internal.h"
#include <math.h>
#if PG_X86_SIMD
#include <immintrin.h>
#include "avx2_inline.h"

#define PG_TARGET __attribute__((target("avx2,fma")))

PG_TARGET static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(n));
}

// tanh(y) = sign(y) (1 - e) / (1 + e) with e = exp(-2 |y|).
PG_TARGET static inline __m256 tanh_avx2(__m256 y) {
    __m256 sign = _mm256_and_ps(y, _mm256_set1_ps(-0.0f));
    __m256 t = exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(_mm256_set1_ps(-0.0f), y)));
    __m256 th = _mm256_div_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), t), _mm256_add_ps(_mm256_set1_ps(1.0f), t));
    return _mm256_or_ps(th, sign);
}

// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
PG_TARGET static inline __m256 gelu_avx2(__m256 x) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 y = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), tanh_avx2(y)));
}

// Every element, the tail too (masked), through the same instructions, so that an element's
// result does not depend on where it sits in the array (a staged prefill must equal a forward
// pass over other row counts, bit for bit).
PG_TARGET long pg_gelu_tanh_avx2(float *a, const float *b, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = gelu_avx2(_mm256_loadu_ps(a + i));
        if (b) g = _mm256_mul_ps(g, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(a + i, g);
    }
    if (i < n) {
        __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i t = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)), lanes);
        __m256 g = gelu_avx2(_mm256_maskload_ps(a + i, t));
        if (b) g = _mm256_mul_ps(g, _mm256_maskload_ps(b + i, t));
        _mm256_maskstore_ps(a + i, t, g);
    }
    return n;
}

// Backward of GeGLU with the tanh GELU: dgate = da · up · gelu'(gate), dup = da · gelu(gate)
// (up NULL: the plain GELU, dgate = da · gelu'(gate), dup unused). Returns elements done.
PG_TARGET long pg_geglu_backward_avx2(const float *da, const float *gate, const float *up, float *dgate, float *dup, long n) {
    const __m256 k = _mm256_set1_ps(0.7978845608028654f), c = _mm256_set1_ps(0.044715f), c3 = _mm256_set1_ps(3 * 0.044715f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(gate + i), x2 = _mm256_mul_ps(x, x);
        __m256 u = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(c, x2), x, x));
        __m256 t = tanh_avx2(u);
        __m256 g = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, t));
        __m256 dt = _mm256_fnmadd_ps(t, t, one);  // 1 - t²
        __m256 slope = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(half, x), dt), _mm256_mul_ps(k, _mm256_fmadd_ps(c3, x2, one)),
                                       _mm256_mul_ps(half, _mm256_add_ps(one, t)));
        __m256 d = _mm256_loadu_ps(da + i);
        if (up) {
            __m256 v = _mm256_loadu_ps(up + i);
            _mm256_storeu_ps(dgate + i, _mm256_mul_ps(_mm256_mul_ps(d, v), slope));
            _mm256_storeu_ps(dup + i, _mm256_mul_ps(d, g));
        } else {
            _mm256_storeu_ps(dgate + i, _mm256_mul_ps(d, slope));
        }
    }
    return i;
}

// x[i] *= scale; returns max(x) (-inf for n = 0).
PG_TARGET float pg_scale_max_avx2(float *x, long n, float scale) {
    __m256 s = _mm256_set1_ps(scale), m = _mm256_set1_ps(-INFINITY);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), s);
        _mm256_storeu_ps(x + i, v);
        m = _mm256_max_ps(m, v);
    }
    float out[8], mx = -INFINITY;
    _mm256_storeu_ps(out, m);
    for (int t = 0; t < 8; t++) mx = out[t] > mx ? out[t] : mx;
    for (; i < n; i++) {
        x[i] *= scale;
        if (x[i] > mx) mx = x[i];
    }
    return mx;
}

// x[i] = exp(x[i] - shift) (0 where x[i] is -inf); returns the sum.
PG_TARGET float pg_exp_shift_sum_avx2(float *x, long n, float shift) {
    __m256 sh = _mm256_set1_ps(shift), acc = _mm256_setzero_ps(), ninf = _mm256_set1_ps(-INFINITY);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = _mm256_and_ps(exp_avx2(_mm256_sub_ps(v, sh)), _mm256_cmp_ps(v, ninf, _CMP_NEQ_OQ));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = pg_hsum_avx2(acc);
    for (; i < n; i++) {
        x[i] = x[i] == -INFINITY ? 0.0f : expf(x[i] - shift);
        sum += x[i];
    }
    return sum;
}
#else
// Never called: pg_isa() is scalar where this file has no SIMD.
long pg_gelu_tanh_avx2(float *a, const float *b, long n) { (void)a; (void)b; (void)n; return 0; }
long pg_geglu_backward_avx2(const float *da, const float *gate, const float *up, float *dgate, float *dup, long n) {
    (void)da; (void)gate; (void)up; (void)dgate; (void)dup; (void)n;
    return 0;
}
float pg_scale_max_avx2(float *x, long n, float scale) { (void)x; (void)n; (void)scale; return 0; }
float pg_exp_shift_sum_avx2(float *x, long n, float shift) { (void)x; (void)n; (void)shift; return 0; }
#endif
