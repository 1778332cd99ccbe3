/*
 * test_elementwise.c - the forward pass's per-token float stages
 * (elementwise.c): qwen_exp against libm's expf in ulps over its whole
 * range and at the clamps, SwiGLU's vector lanes against its scalar tail
 * bit for bit, RMS norm (also in place) and RoPE against double
 * references, with lengths that leave a tail. Built for arm64 too.
 */
#include "elementwise.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int32_t
ulps(float a, float b)
{
    int32_t x, y;

    memcpy(&x, &a, sizeof(x));
    memcpy(&y, &b, sizeof(y));
    return x > y ? x - y : y - x;
}

static float
val(int i)
{
    /* spread over a few orders of magnitude, both signs, no pattern a
     * vector lane could line up with */
    return (float) (sin(i * 0.7310) * (1.0 + (i % 13)) * ((i % 3) == 0 ? 4.0 : 0.25));
}

static void
test_exp(void)
{
    int32_t worst = 0;
    float   at = 0.0f, x;
    long    n = 0;

    for (x = -87.0f; x <= 88.0f; x += 1e-4f + fabsf(x) * 3e-6f, n++) {
        int32_t u = ulps(qwen_exp(x), expf(x));

        if (u > worst) {
            worst = u;
            at = x;
        }
    }
    CHECK(worst <= 2, "qwen_exp: %d ulp from expf at %.9g (bound 2, %ld points)", worst, at, n);
    CHECK(qwen_exp(0.0f) == 1.0f, "qwen_exp(0) = %.9g", qwen_exp(0.0f));
    /* beyond the clamps: the largest and the smallest normal results */
    CHECK(isfinite(qwen_exp(1000.0f)) && qwen_exp(1000.0f) > 2e38f,
          "qwen_exp(1000) = %g: finite, above 2e38", qwen_exp(1000.0f));
    CHECK(qwen_exp(-1000.0f) > 0.0f && qwen_exp(-1000.0f) < 1.2e-38f,
          "qwen_exp(-1000) = %g: positive, below 1.2e-38", qwen_exp(-1000.0f));
    printf("qwen_exp: within %d ulp of expf over [-87, 88] (%ld points)\n", worst, n);
}

static void
test_swiglu(void)
{
    enum { N = 4099 };
    static float g[N], u[N], g0[N];
    int          i, same = 0;
    double       worst = 0.0;

    for (i = 0; i < N; i++) {
        g[i] = g0[i] = (i - 2000) * 0.05f;   /* -100 .. 105 */
        u[i] = val(i);
    }
    qwen_swiglu(g, u, N);
    for (i = 0; i < N; i++) {
        float  want = g0[i] / (1.0f + qwen_exp(-g0[i])) * u[i];
        double t = g0[i] / (1.0 + exp(-(double) g0[i])) * u[i];

        same += memcmp(&want, &g[i], sizeof(float)) == 0;
        if (fabs(t) > 1e-30) {
            worst = fmax(worst, fabs(g[i] - t) / fabs(t));
        }
    }
    CHECK(same == N, "swiglu: %d of %d lanes differ from the scalar formula's bits", N - same, N);
    CHECK(worst < 2e-6, "swiglu: relative error %g against double (bound 2e-6)", worst);
}

static void
test_rmsnorm(void)
{
    static const int64_t sizes[] = { 1, 7, 128, 1027 };
    size_t               s;

    for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int64_t n = sizes[s], i;
        float  *x = malloc(n * sizeof(float)), *w = malloc(n * sizeof(float));
        float  *out = malloc(n * sizeof(float));
        double  ss = 0.0, worst = 0.0;

        for (i = 0; i < n; i++) {
            x[i] = val((int) i + 5);
            w[i] = 0.5f + (float) (i % 7) * 0.1f;
            ss += (double) x[i] * x[i];
        }
        qwen_rmsnorm(out, x, w, n, 1e-6f);
        for (i = 0; i < n; i++) {
            double t = x[i] / sqrt(ss / n + (double) 1e-6f) * w[i];

            worst = fmax(worst, fabs(out[i] - t) / fmax(fabs(t), 1e-30));
        }
        CHECK(worst < 4e-7, "rmsnorm n=%lld: relative error %g against double (bound 4e-7)",
              (long long) n, worst);
        qwen_rmsnorm(x, x, w, n, 1e-6f);   /* in place, as for q and k heads */
        CHECK(memcmp(x, out, n * sizeof(float)) == 0, "rmsnorm n=%lld in place differs",
              (long long) n);
        free(x);
        free(w);
        free(out);
    }
}

static void
test_rope_add(void)
{
    enum { HALF = 67 };
    float  v[2 * HALF], v0[2 * HALF], cs[HALF], sn[HALF], y[2 * HALF];
    double worst = 0.0;
    int    i, same = 0;

    for (i = 0; i < HALF; i++) {
        double a = i * 0.37 + 0.1;

        cs[i] = (float) cos(a);
        sn[i] = (float) sin(a);
    }
    for (i = 0; i < 2 * HALF; i++) {
        v[i] = v0[i] = val(i);
        y[i] = val(i + 100);
    }
    qwen_rope(v, cs, sn, HALF);
    for (i = 0; i < HALF; i++) {
        double a = v0[i], b = v0[i + HALF];
        double t0 = a * cs[i] - b * sn[i], t1 = a * sn[i] + b * cs[i];
        double mag = fabs(a) + fabs(b);

        worst = fmax(worst, fmax(fabs(v[i] - t0), fabs(v[i + HALF] - t1)) / mag);
    }
    CHECK(worst < 2.5e-7, "rope: error %g of |a| + |b| against double (bound 2.5e-7)", worst);
    memcpy(v, v0, sizeof(v));
    qwen_add(v, y, 2 * HALF);
    for (i = 0; i < 2 * HALF; i++) {
        float want = v0[i] + y[i];

        same += memcmp(&want, &v[i], sizeof(float)) == 0;
    }
    CHECK(same == 2 * HALF, "add: %d of %d sums differ", 2 * HALF - same, 2 * HALF);
}

int
main(void)
{
    test_exp();
    test_swiglu();
    test_rmsnorm();
    test_rope_add();
    TEST_MAIN_END();
}
