/*
 * test_kernels.c - every kernel of every table this CPU can run, against
 * plain double-precision loops over dequantized data, with explicit error
 * bounds. Quantized dots are checked twice: against the dequantized weights
 * times the dequantized activations (must agree to float rounding), and
 * against the unquantized activations (bounded by Q8 activation error).
 */
#include "test.h"
#include "kernels.h"
#include "qwen.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x1234567;

static float
frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float) ((rng_state >> 40) / 16777216.0) * 2.0f - 1.0f;
}

static const int weight_types[] = {
    QWEN_TYPE_F32, QWEN_TYPE_F16, QWEN_TYPE_BF16, QWEN_TYPE_Q8_0, QWEN_TYPE_Q4_K,
    QWEN_TYPE_Q6_K
};

static double
ddot(const float *a, const float *b, int64_t n)
{
    double  s = 0.0;
    int64_t i;

    for (i = 0; i < n; i++) {
        s += (double) a[i] * b[i];
    }
    return s;
}

static double
dnorm(const float *a, int64_t n)
{
    return sqrt(ddot(a, a, n));
}

static void
test_table(const qwen_kernels *k)
{
    const int64_t n = 1024;
    float        *w = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float));
    float        *wd = malloc(n * sizeof(float)), *xd = malloc(n * sizeof(float));
    void         *wq = malloc(qwen_row_bytes(QWEN_TYPE_F32, n));
    void         *xq = malloc(qwen_row_bytes(QWEN_TYPE_F32, n));
    size_t        t;
    int           trial, act;
    int64_t       i;

    for (t = 0; t < sizeof(weight_types) / sizeof(weight_types[0]); t++) {
        int type = weight_types[t];
        double worst_exact = 0.0, worst_real = 0.0;

        for (trial = 0; trial < 20; trial++) {
            double got, exact, real, scale;

            for (i = 0; i < n; i++) {
                /* vary magnitude across blocks, as real weights do */
                w[i] = frand() * (1.0f + (float) ((i / 32) % 5));
                x[i] = frand() * 3.0f;
            }
            qwen_quantize_row(type, w, wq, n);
            qwen_dequantize_row(type, wq, wd, n);
            act = qwen_act_type(type);
            k->quantize_act(act, x, xq, n);
            if (act == QWEN_TYPE_F32) {
                memcpy(xd, x, n * sizeof(float));
            } else if (act == QWEN_TYPE_Q8_K) {
                const block_q8_K *b = xq;
                for (i = 0; i < n; i++) {
                    xd[i] = b[i / QK_K].d * b[i / QK_K].qs[i % QK_K];
                }
            } else {
                qwen_dequantize_row(act, xq, xd, n);
            }
            got = k->vec_dot[type](n, wq, xq);
            exact = ddot(wd, xd, n);
            real = ddot(wd, x, n);
            scale = dnorm(wd, n) * dnorm(x, n);
            worst_exact = fmax(worst_exact, fabs(got - exact) / scale);
            worst_real = fmax(worst_real, fabs(got - real) / scale);
        }
        /* the 4-row kernel must agree with the single-row one */
        if (k->vec_dot4[type] != NULL) {
            size_t  stride = qwen_act_row_bytes(type, n);
            char   *acts = malloc(4 * stride);
            float   out4[4], worst4 = 0.0f, single;
            int     r;
            for (r = 0; r < 4; r++) {
                for (i = 0; i < n; i++) x[i] = frand() * (float) (r + 1);
                k->quantize_act(act, x, acts + r * stride, n);
            }
            k->vec_dot4[type](n, wq, acts, stride, out4);
            for (r = 0; r < 4; r++) {
                single = k->vec_dot[type](n, wq, acts + r * stride);
                worst4 = fmaxf(worst4, fabsf(out4[r] - single) / (fabsf(single) + 1.0f));
            }
            CHECK(worst4 < 1e-5, "%s %s: vec_dot4 differs from vec_dot by %.3g", k->name,
                  qwen_type_name(type), worst4);
            free(acts);
        }
        /* float32 accumulation over 1024 terms: 1e-5 of |w||x| is generous;
         * Q8 activations add at most ~1% of |w||x| */
        CHECK(worst_exact < 1e-5, "%s %s: error %.3g vs dequantized data", k->name,
              qwen_type_name(type), worst_exact);
        CHECK(worst_real < (act == QWEN_TYPE_F32 ? 1e-5 : 1e-2),
              "%s %s: error %.3g vs unquantized activations", k->name,
              qwen_type_name(type), worst_real);
    }

    /* attention helpers over f16 */
    {
        qwen_f16 *h = malloc(n * sizeof(qwen_f16));
        float    *y = malloc(n * sizeof(float)), *yr = malloc(n * sizeof(float));
        double    ref = 0.0, maxerr = 0.0;
        int       bad = 0;

        for (i = 0; i < n; i++) {
            x[i] = frand();
            w[i] = frand() * 4.0f;
        }
        k->f32_to_f16(w, h, n);
        for (i = 0; i < n; i++) {
            bad += h[i] != qwen_f32_to_f16(w[i]);
            ref += (double) x[i] * qwen_f16_to_f32(h[i]);
        }
        CHECK(bad == 0, "%s f32_to_f16: %d values differ from the reference", k->name, bad);
        CHECK(fabs(k->dot_f32_f16(n, x, h) - ref) < 1e-5 * n, "%s dot_f32_f16: %g vs %g",
              k->name, k->dot_f32_f16(n, x, h), ref);
        for (i = 0; i < n; i++) {
            y[i] = yr[i] = x[i];
        }
        k->axpy_f16(n, 0.37f, h, y);
        for (i = 0; i < n; i++) {
            yr[i] += 0.37f * qwen_f16_to_f32(h[i]);
            maxerr = fmax(maxerr, fabs(y[i] - yr[i]));
        }
        CHECK(maxerr < 1e-5, "%s axpy_f16: max error %g", k->name, maxerr);
        free(h);
        free(y);
        free(yr);
    }

    /* odd lengths exercise the tails of float kernels */
    {
        int64_t m = 37;
        for (i = 0; i < m; i++) {
            w[i] = frand();
            x[i] = frand();
        }
        CHECK(fabs(k->vec_dot[QWEN_TYPE_F32](m, w, x) - ddot(w, x, m)) < 1e-5,
              "%s F32 tail", k->name);
    }
    free(w); free(x); free(wd); free(xd); free(wq); free(xq);
}

/* The prefill GEMM against double sums of BF16-rounded weights and
 * activations: odd row ranges, a token count that is not a multiple of the
 * micro-kernel's, scattered output rows. */
static void
test_gemm(const qwen_kernels *k)
{
    enum { ROWS = 70, K = 512, NT = 11 };
    float     *w = malloc(ROWS * K * sizeof(float)), *x = malloc(NT * K * sizeof(float));
    float     *out = calloc((size_t) 2 * NT * ROWS, sizeof(float)), *row = malloc(K * sizeof(float));
    qwen_bf16 *xb = malloc(NT * K * sizeof(qwen_bf16));
    void      *scratch = aligned_alloc(64, qwen_gemm_scratch_bytes(K));
    int32_t    idx[NT];
    size_t     t;
    int        i, r, tok;

    for (i = 0; i < ROWS * K; i++) w[i] = frand();
    for (i = 0; i < NT * K; i++) x[i] = frand() * 2.0f;
    {
        int differ = 0;
        for (tok = 0; tok < NT; tok++) {
            idx[tok] = 2 * tok + 1;   /* every other output row */
            k->f32_to_bf16(x + tok * K, xb + tok * K, K);
            for (i = 0; i < K; i++) {
                differ += xb[tok * K + i] != qwen_f32_to_bf16(x[tok * K + i]);
            }
        }
        CHECK(differ == 0, "%s f32_to_bf16: %d values differ from the reference", k->name,
              differ);
    }
    for (t = 0; t < sizeof(weight_types) / sizeof(weight_types[0]); t++) {
        int    type = weight_types[t];
        size_t rb = qwen_row_bytes(type, K);
        char  *wq = malloc(ROWS * rb);
        double worst = 0.0;

        for (r = 0; r < ROWS; r++) qwen_quantize_row(type, w + r * K, wq + r * rb, K);
        memset(out, 0, (size_t) 2 * NT * ROWS * sizeof(float));
        k->gemm(type, wq, rb, K, 3, ROWS, xb, NT, idx, out, ROWS, scratch);
        for (r = 0; r < ROWS; r++) {
            qwen_dequantize_row(type, wq + r * rb, row, K);
            for (tok = 0; tok < NT; tok++) {
                double ref = 0.0, scale = 0.0;
                for (i = 0; i < K; i++) {
                    double a = qwen_bf16_to_f32(qwen_f32_to_bf16(row[i]));
                    double b = qwen_bf16_to_f32(xb[tok * K + i]);
                    ref += a * b;
                    scale += fabs(a * b);
                }
                if (r < 3) {
                    worst = fmax(worst, out[idx[tok] * ROWS + r] != 0.0f);   /* untouched */
                } else {
                    worst = fmax(worst, fabs(out[idx[tok] * ROWS + r] - ref) / scale);
                }
            }
        }
        CHECK(worst < 1e-5, "%s gemm %s: error %.3g of sum|w x|", k->name,
              qwen_type_name(type), worst);
        for (tok = 0; tok < NT; tok++) {
            CHECK(out[2 * tok * ROWS + 5] == 0.0f, "gemm wrote a row it was not given");
        }
        free(wq);
    }
    free(w); free(x); free(out); free(row); free(xb); free(scratch);
}

int
main(void)
{
    static const char *names[] = { "scalar", "avx2", "avx512", "neon", "neon_dotprod" };
    const qwen_kernels *k;
    size_t              i;
    int                 tested = 0;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        k = qwen_kernels_by_name(names[i]);
        if (k == NULL) {
            printf("kernels %s: not available on this CPU\n", names[i]);
            continue;
        }
        printf("kernels %s\n", k->name);
        test_table(k);
        if (k->gemm != NULL) {
            test_gemm(k);
        }
        tested++;
    }
    CHECK(tested >= 1, "no kernel table ran");
    CHECK(strcmp(qwen_kernels_best()->name, "scalar") == 0 || tested >= 2,
          "the best table must be one of the tested ones");
    TEST_MAIN_END();
}
