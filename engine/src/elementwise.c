/*
 * elementwise.c - see elementwise.h. Loops run 4 elements a vector and
 * finish with the same operations one element at a time.
 */
#include "elementwise.h"

#include <math.h>
#include <string.h>

typedef float   v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f
ld4(const float *p)
{
    v4f v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void
st4(float *p, v4f v)
{
    memcpy(p, &v, sizeof(v));
}

void
qwen_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
    /* eight independent double sums: one chain of dependent adds cost an
     * add's latency per element (5% of a prefill on x86); in double, the
     * order moves the float scale only in ties of ~1e-13 */
    double  s[8] = { 0.0 }, ss;
    float   scale;
    int64_t i;
    int     j;

    for (i = 0; i + 8 <= n; i += 8) {
        for (j = 0; j < 8; j++) {
            s[j] += (double) x[i + j] * x[i + j];
        }
    }
    for (; i < n; i++) {
        s[0] += (double) x[i] * x[i];
    }
    ss = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    scale = (float) (1.0 / sqrt(ss / (double) n + eps));
    for (i = 0; i + 4 <= n; i += 4) {
        st4(out + i, ld4(x + i) * scale * ld4(w + i));
    }
    for (; i < n; i++) {
        out[i] = x[i] * scale * w[i];
    }
}

void
qwen_rope(float *v, const float *cs, const float *sn, int half)
{
    int   i;
    float a, b;

    for (i = 0; i + 4 <= half; i += 4) {
        v4f va = ld4(v + i), vb = ld4(v + i + half), c = ld4(cs + i), s = ld4(sn + i);

        st4(v + i, va * c - vb * s);
        st4(v + i + half, va * s + vb * c);
    }
    for (; i < half; i++) {
        a = v[i];
        b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = a * sn[i] + b * cs[i];
    }
}

void
qwen_add(float *x, const float *y, int64_t n)
{
    int64_t i;

    for (i = 0; i + 4 <= n; i += 4) {
        st4(x + i, ld4(x + i) + ld4(y + i));
    }
    for (; i < n; i++) {
        x[i] += y[i];
    }
}

#include "elementwise_body.h"

#define CLAMP1(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))
#define TOINT1(x)         ((int32_t) (x))

float
qwen_exp(float x)
{
    float out;

    EXP_BODY(float, int32_t, CLAMP1, TOINT1, x, out);
    return out;
}

/* lanes of x below lo or above hi replaced (comparisons give all-ones masks) */
static inline v4f
clamp4(v4f x, float lo, float hi)
{
    v4f l = { lo, lo, lo, lo }, h = { hi, hi, hi, hi };
    v4i xi, li, hi_, m;

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

#define CLAMP4(x, lo, hi) clamp4(x, lo, hi)
#define TOINT4(x)         __builtin_convertvector(x, v4i)

static inline v4f
exp4(v4f x)
{
    v4f out;

    EXP_BODY(v4f, v4i, CLAMP4, TOINT4, x, out);
    return out;
}

void
qwen_swiglu(float *g, const float *u, int64_t n)
{
    int64_t i;

    for (i = 0; i + 4 <= n; i += 4) {
        v4f x = ld4(g + i);

        st4(g + i, x / (1.0f + exp4(-x)) * ld4(u + i));
    }
    for (; i < n; i++) {
        g[i] = g[i] / (1.0f + qwen_exp(-g[i])) * u[i];
    }
}
