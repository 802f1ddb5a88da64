// dtype conversions (portable; the matrix kernels convert weights on the fly themselves).
#include "internal.h"
#include <math.h>

float pg_f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            do { e++; man <<= 1; } while ((man & 0x400) == 0);
            man &= 0x3ff;
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t pg_f32_to_bf16_scalar(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return (uint16_t)(u >> 16);
}

uint16_t pg_f32_to_f16_scalar(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);          // NaN
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);         // overflow -> inf
    if (absu < 0x38800000u) {                                           // subnormal or zero
        float a;
        memcpy(&a, &absu, 4);
        // scale so that the f16 subnormal unit (2^-24) becomes 1, then round to nearest even
        float scaled = a * 16777216.0f;
        uint32_t m = (uint32_t)nearbyintf(scaled);
        return (uint16_t)(sign | m);
    }
    uint32_t exp = ((absu >> 23) - 127 + 15);
    uint32_t man = absu & 0x7fffffu;
    uint32_t half = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;
    return (uint16_t)(sign | half);
}

void pg_convert_to_f32(const void *src, int dtype, float *dst, long n) {
    switch (dtype) {  // one loop per dtype, so each vectorises
    case PG_BF16: {
        const uint16_t *h = src;
        for (long i = 0; i < n; i++) { uint32_t u = (uint32_t)h[i] << 16; memcpy(&dst[i], &u, 4); }
        break;
    }
    case PG_I8: { const int8_t *q = src; for (long i = 0; i < n; i++) dst[i] = (float)q[i]; break; }
    case PG_F32: memcpy(dst, src, (size_t)n * 4); break;
    default: for (long i = 0; i < n; i++) dst[i] = pg_load_as_f32(src, dtype, i);
    }
}

void pg_convert_from_f32(const float *src, int dtype, void *dst, long n) {
    for (long i = 0; i < n; i++) {
        if (dtype == PG_F32) {
            memcpy((char *)dst + 4 * i, &src[i], 4);
        } else {
            uint16_t h = dtype == PG_BF16 ? pg_f32_to_bf16_scalar(src[i]) : pg_f32_to_f16_scalar(src[i]);
            memcpy((char *)dst + 2 * i, &h, 2);
        }
    }
}

float pg_bf16_round(float x) { return pg_bf16_to_f32(pg_f32_to_bf16_scalar(x)); }
float pg_f16_round(float x) { return pg_f16_to_f32_scalar(pg_f32_to_f16_scalar(x)); }
