/*
 * elementwise_wide.h - elementwise.c's SwiGLU and RMS norm on wider
 * vectors, for the x86 tables (kernels.h: swiglu, rmsnorm): a kernel file
 * defines QWEN_EW_WIDTH (floats a vector: 8 for AVX2, 16 for AVX-512) and
 * includes this once, getting ew_swiglu and ew_rmsnorm. Each element gets
 * elementwise.c's float operations in its order (x86-64's baseline build
 * of elementwise.c has no FMA, so neither do these: contraction off), and
 * the tails go to elementwise.c itself; test_kernels compares the bits.
 */
#ifndef QWEN_ELEMENTWISE_WIDE_H
#define QWEN_ELEMENTWISE_WIDE_H

#ifndef QWEN_EW_WIDTH
#error "define QWEN_EW_WIDTH (floats a vector) before including elementwise_wide.h"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "elementwise.h"
#include "elementwise_body.h"

/* contraction off (above): clang has its own pragma, and warns at GCC's */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

typedef float   ew_vf __attribute__((vector_size(4 * QWEN_EW_WIDTH)));
typedef int32_t ew_vi __attribute__((vector_size(4 * QWEN_EW_WIDTH)));
typedef float   ew_v4f __attribute__((vector_size(16)));
typedef double  ew_v4d __attribute__((vector_size(32)));

static inline ew_vf
ew_load(const float *p)
{
    ew_vf v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void
ew_store(float *p, ew_vf v)
{
    memcpy(p, &v, sizeof(v));
}

/* lanes below lo or above hi replaced; a NaN stays (elementwise.c's clamp) */
static inline ew_vf
ew_clamp(ew_vf x, float lo, float hi)
{
    ew_vf l = (ew_vf) {0} + lo, h = (ew_vf) {0} + hi;
    ew_vi xi, li, hi_, m;

    memcpy(&xi, &x, sizeof(xi));
    memcpy(&li, &l, sizeof(li));
    memcpy(&hi_, &h, sizeof(hi_));
    m = x < l;
    xi = (xi & ~m) | (li & m);
    m = x > h;
    xi = (xi & ~m) | (hi_ & m);
    memcpy(&x, &xi, sizeof(x));
    return x;
}

#define EW_TOINT(x) __builtin_convertvector(x, ew_vi)

static void
ew_swiglu(float *g, const float *u, int64_t n)
{
    int64_t i;

    for (i = 0; i + QWEN_EW_WIDTH <= n; i += QWEN_EW_WIDTH) {
        ew_vf x = ew_load(g + i), e;

        EXP_BODY(ew_vf, ew_vi, ew_clamp, EW_TOINT, -x, e);
        ew_store(g + i, x / (1.0f + e) * ew_load(u + i));
    }
    if (i < n) {
        qwen_swiglu(g + i, u + i, n - i);
    }
}

static void
ew_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
    /* lanes j of s0 and s1 are elementwise.c's s[j] and s[4 + j]: the
     * elements 8k + j in order (two 4-double halves: one 8-double vector
     * was scalarized on AVX2, 3x slower) */
    ew_v4d  s0 = { 0.0 }, s1 = { 0.0 };
    double  ss;
    float   scale;
    int64_t i;

    if (n % 8 != 0) {
        qwen_rmsnorm(out, x, w, n, eps);
        return;
    }
    for (i = 0; i < n; i += 8) {
        ew_v4f f0, f1;
        ew_v4d d0, d1;

        memcpy(&f0, x + i, sizeof(f0));
        memcpy(&f1, x + i + 4, sizeof(f1));
        d0 = __builtin_convertvector(f0, ew_v4d);
        d1 = __builtin_convertvector(f1, ew_v4d);
        s0 += d0 * d0;
        s1 += d1 * d1;
    }
    ss = ((s0[0] + s0[1]) + (s0[2] + s0[3])) + ((s1[0] + s1[1]) + (s1[2] + s1[3]));
    scale = (float) (1.0 / sqrt(ss / (double) n + eps));
    for (i = 0; i + QWEN_EW_WIDTH <= n; i += QWEN_EW_WIDTH) {
        ew_store(out + i, ew_load(x + i) * scale * ew_load(w + i));
    }
    for (; i < n; i++) {
        out[i] = x[i] * scale * w[i];
    }
}

#undef EW_TOINT
#if defined(__clang__)
#pragma STDC FP_CONTRACT DEFAULT
#else
#pragma GCC pop_options
#endif

#endif
