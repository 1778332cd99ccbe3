/*
 * elementwise.h - the forward pass's per-token float stages (RMS norm,
 * RoPE, residual add, SwiGLU), written with GCC's vector extensions
 * (4 floats: SSE2 and NEON registers, gcc and clang) so every table runs
 * them vectorized without an entry per ISA; a table may run SwiGLU and the
 * norm wider (kernels.h: avx512's 16 floats). Each element gets the same
 * float operations, in the same order, whatever the vector width: results
 * never depend on a token's neighbours (batch invariance).
 */
#ifndef QWEN_ELEMENTWISE_H
#define QWEN_ELEMENTWISE_H

#include <stdint.h>

/* out = x / rms(x) * w; the sum of squares in double */
void  qwen_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
/* rotate the halves (v[i], v[i + half]) by the angles whose cos / sin are cs / sn */
void  qwen_rope(float *v, const float *cs, const float *sn, int half);
/* x += y */
void  qwen_add(float *x, const float *y, int64_t n);
/* g = silu(g) * u = g / (1 + e^-g) * u */
void  qwen_swiglu(float *g, const float *u, int64_t n);
/* e^x in float operations only (the SwiGLU's), within 2 ulp of expf for
 * |x| <= 87; saturates at e^+-87.3 beyond */
float qwen_exp(float x);

#endif
