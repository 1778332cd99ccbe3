/*
 * elementwise_body.h - e^x of elementwise.c as a macro over a vector type,
 * also for x86 tables that run the stages on wider vectors (kernels.h:
 * swiglu, rmsnorm) with the same operations per element. x86-64's
 * baseline build of elementwise.c has no fused multiply-add, so those
 * must be compiled without contraction (-ffp-contract=off) to give its
 * bits.
 */
#ifndef QWEN_ELEMENTWISE_BODY_H
#define QWEN_ELEMENTWISE_BODY_H

#include <string.h>

/*
 * e^x = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 (ln 2 in two
 * parts, so r is exact), e^r by Cephes expf's polynomial, 2^n put into the
 * exponent bits. The rounding adds and subtracts 1.5 * 2^23 (no rint call,
 * which SSE2 lacks). One body for vectors and scalars: T the float type,
 * TI the int type, CLAMP(x, lo, hi) and TOINT(x) their operations.
 */
#define EXP_BODY(T, TI, CLAMP, TOINT, x, out)                                    \
    do {                                                                         \
        T  xc = CLAMP(x, -87.33654f, 88.37626f), n, r, p, f1, f2;               \
        TI k, e1, e2;                                                            \
                                                                                 \
        n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;            \
        r = xc - n * 0.693359375f;                                               \
        r = r - n * -2.12194440e-4f;                                             \
        p = r * 1.9875691500e-4f + 1.3981999507e-3f;                             \
        p = p * r + 8.3334519073e-3f;                                            \
        p = p * r + 4.1665795894e-2f;                                            \
        p = p * r + 1.6666665459e-1f;                                            \
        p = p * r + 5.0000001201e-1f;                                            \
        p = p * (r * r) + r + 1.0f;                                              \
        /* 2^n, n in [-126, 128], as two factors (2^128 alone overflows) */     \
        k = TOINT(n);                                                            \
        e1 = ((k >> 1) + 127) << 23;                                             \
        e2 = ((k - (k >> 1)) + 127) << 23;                                       \
        memcpy(&f1, &e1, sizeof(f1));                                            \
        memcpy(&f2, &e2, sizeof(f2));                                            \
        (out) = p * f1 * f2;                                                     \
    } while (0)

#endif
