/*
 * test_kernels.c - every kernel of every table this CPU can run, against
 * plain double-precision loops over dequantized data, with explicit error
 * bounds. Quantized dots are checked twice: against the dequantized weights
 * times the dequantized activations (must agree to float rounding), and
 * against the unquantized activations (bounded by Q8 activation error).
 */
#include "test.h"
#include "kernels/kernels.h"
#include "elementwise.h"
#include "repack.h"
#include "qwen.h"

#include <stddef.h>
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

/* Activations back to F32 as the quantized dots see them. */
static void
dequant_act(int act, const void *xq, const float *x, float *xd, int64_t n)
{
    int64_t i;

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
}

static double
dabsdot(const float *a, const float *b, int64_t n)
{
    double  s = 0.0;
    int64_t i;

    for (i = 0; i < n; i++) {
        s += fabs((double) a[i] * b[i]);
    }
    return s;
}

/*
 * Quantized blocks of random bytes (every bit pattern of quants, packed
 * scales and mins; extreme Q8_0 activations too) with small finite f16
 * scales, against double sums of the dequantized data: 1e-5 of sum |w x|
 * allows float rounding only.
 */
static void
test_random_blocks(const qwen_kernels *k)
{
    static const int qtypes[] = { QWEN_TYPE_Q8_0, QWEN_TYPE_Q4_K, QWEN_TYPE_Q6_K };
    const int64_t    n = 512;
    size_t           t, j;
    int              trial, r;
    int64_t          i;
    float           *x = malloc(n * sizeof(float)), *wd = malloc(n * sizeof(float));
    float           *xd = malloc(n * sizeof(float));
    /* two weight rows (the second for vec_dot2x4) */
    uint8_t         *wq = malloc(2 * qwen_row_bytes(QWEN_TYPE_F32, n));
    char            *acts = malloc(4 * qwen_row_bytes(QWEN_TYPE_F32, n));

    for (t = 0; t < sizeof(qtypes) / sizeof(qtypes[0]); t++) {
        int    type = qtypes[t], act = qwen_act_type(type);
        size_t rb = qwen_row_bytes(type, n), stride = qwen_act_row_bytes(type, n);
        double worst = 0.0;
        int    same = 0, same2x4 = 0;

        for (trial = 0; trial < 8; trial++) {
            float out4[4], out8[8];

            for (j = 0; j < 2 * rb; j++) {
                wq[j] = (uint8_t) (frand() * 128.0f + 128.0f);
            }
            /* keep the f16 scales finite (random bits may be NaN / inf) */
            for (i = 0; i < 2 * n / qwen_type_block_size(type); i++) {
                uint8_t  *blk = wq + i * qwen_type_block_bytes(type);
                qwen_f16 d = qwen_f32_to_f16(0.01f * (frand() + 1.0f));
                qwen_f16 dmin = qwen_f32_to_f16(0.01f * (frand() + 1.0f));
                if (type == QWEN_TYPE_Q8_0) {
                    memcpy(blk + offsetof(block_q8_0, d), &d, sizeof(d));
                } else if (type == QWEN_TYPE_Q4_K) {
                    memcpy(blk + offsetof(block_q4_K, d), &d, sizeof(d));
                    memcpy(blk + offsetof(block_q4_K, dmin), &dmin, sizeof(dmin));
                } else {
                    memcpy(blk + offsetof(block_q6_K, d), &d, sizeof(d));
                }
            }
            if (type == QWEN_TYPE_Q8_0) {
                /* Q8_0 quantizers (ours, llama.cpp's) emit -127..127; the
                 * x86 kernels' sign trick relies on it, so -128 is left out */
                for (j = 0; j < 2 * rb; j++) {
                    if (j % sizeof(block_q8_0) >= offsetof(block_q8_0, qs) && wq[j] == 0x80) {
                        wq[j] = 0x81;
                    }
                }
                ((block_q8_0 *) wq)->qs[0] = ((block_q8_0 *) wq)->qs[1] = -127;
            }
            qwen_dequantize_row(type, wq, wd, n);
            for (r = 0; r < 4; r++) {
                for (i = 0; i < n; i++) x[i] = frand() * 2.0f;
                k->quantize_act(act, x, acts + r * stride, n);
                if (act == QWEN_TYPE_Q8_0 && (trial & 1)) {
                    /* extreme activations, not only what quantize_act makes */
                    block_q8_0 *qa = (block_q8_0 *) (acts + r * stride);
                    for (i = 0; i < n; i++) {
                        qa[i / QK8_0].qs[i % QK8_0] = (int8_t) (frand() * 127.5f);
                    }
                    qa[0].qs[0] = qa[0].qs[1] = -127;
                }
            }
            for (r = 0; r < 4; r++) {
                out4[r] = k->vec_dot[type](n, wq, acts + r * stride);
            }
            if (k->vec_dot4[type] != NULL) {
                k->vec_dot4[type](n, wq, acts, stride, out4);
            }
            for (r = 0; r < 4; r++) {
                float got = k->vec_dot[type](n, wq, acts + r * stride);
                dequant_act(act, acts + r * stride, x, xd, n);
                worst = fmax(worst, fabs(got - ddot(wd, xd, n)) / dabsdot(wd, xd, n));
                same += memcmp(&got, &out4[r], sizeof(float)) == 0;
            }
            /* both rows of a 2 x 4 tile equal their single dots */
            if (k->vec_dot2x4[type] != NULL) {
                k->vec_dot2x4[type](n, wq, rb, acts, stride, out8);
                for (r = 0; r < 8; r++) {
                    float got = k->vec_dot[type](n, wq + (r / 4) * rb,
                                                 acts + (r % 4) * stride);
                    same2x4 += memcmp(&got, &out8[r], sizeof(float)) == 0;
                }
            }
        }
        CHECK(worst < 1e-5, "%s %s random blocks: error %.3g of sum|w x|", k->name,
              qwen_type_name(type), worst);
        CHECK(same == 8 * 4, "%s %s random blocks: vec_dot4 not bit-identical (%d of 32)",
              k->name, qwen_type_name(type), same);
        if (k->vec_dot2x4[type] != NULL) {
            CHECK(same2x4 == 8 * 8, "%s %s random blocks: vec_dot2x4 not bit-identical "
                  "(%d of 64)", k->name, qwen_type_name(type), same2x4);
        }
    }
    free(x); free(wd); free(xd); free(wq); free(acts);
}

/*
 * Packed weights (repack.h): 8 rows of random blocks (every bit pattern,
 * finite scales) and, in the last trials, the extremes the 16-bit sums
 * must hold (every quant at its top, activations all -128 or all 127).
 * The scalar truth over the packed layout agrees with the file layout's
 * scalar dot to float rounding; a table's packed kernel gives the truth's
 * bits, for every number of tokens in the call.
 */
static void
test_packed(const qwen_kernels *k)
{
    static const int qtypes[] = { QWEN_TYPE_Q4_K, QWEN_TYPE_Q6_K, QWEN_TYPE_Q8_0,
                                  QWEN_TYPE_BF16 };
    const qwen_kernels *ref = qwen_kernels_ref();
    /* BF16: an odd number of column pairs (a kernel unrolled by two pairs
     * ends on one) */
    const int64_t    n_max = 770;
    size_t           t, j;
    int              trial, r, tok, nt;
    int64_t          i;
    float           *x = malloc(n_max * sizeof(float));
    uint8_t         *wq = malloc(QWEN_PACK_ROWS * qwen_row_bytes(QWEN_TYPE_F32, n_max));
    uint8_t         *packed = malloc(QWEN_PACK_ROWS * qwen_row_bytes(QWEN_TYPE_F32, n_max));
    char            *acts = malloc(4 * qwen_row_bytes(QWEN_TYPE_F32, n_max));

    for (t = 0; t < sizeof(qtypes) / sizeof(qtypes[0]); t++) {
        int     type = qtypes[t], act = qwen_act_type(type);
        int64_t n = type == QWEN_TYPE_BF16 ? n_max : 768;
        size_t rb = qwen_row_bytes(type, n), stride = qwen_act_row_bytes(type, n);
        double worst = 0.0;
        int    same = 0, tried = 0;

        if (k->packed_dot[type] == NULL && k != ref) {
            continue;
        }
        CHECK(qwen_packable(type, 16, n) && !qwen_packable(type, 12, n)
              && !qwen_packable(type, 16, type == QWEN_TYPE_BF16 ? 301 : 300),
              "%s packable shapes", qwen_type_name(type));
        CHECK(qwen_packed_group_bytes(type, n) == QWEN_PACK_ROWS * rb
              || type != QWEN_TYPE_Q8_0, "Q8_0 packs into the file's bytes");
        for (trial = 0; trial < 10; trial++) {
            float want[4 * QWEN_PACK_ROWS], got[4 * QWEN_PACK_ROWS];
            int   extreme = trial >= 8;

            if (type == QWEN_TYPE_BF16) {
                /* finite values (random bits would be NaN), extremes too */
                for (r = 0; r < QWEN_PACK_ROWS; r++) {
                    for (i = 0; i < n; i++) {
                        x[i] = frand() * (extreme ? 3e4f : 1.0f);
                    }
                    qwen_quantize_row(type, x, wq + r * rb, n);
                }
            }
            for (j = 0; j < QWEN_PACK_ROWS * rb && type != QWEN_TYPE_BF16; j++) {
                wq[j] = extreme ? 0xFF : (uint8_t) (frand() * 128.0f + 128.0f);
            }
            for (i = 0; i < QWEN_PACK_ROWS * n / qwen_type_block_size(type)
                        && type != QWEN_TYPE_BF16; i++) {
                uint8_t  *blk = wq + i * qwen_type_block_bytes(type);
                qwen_f16 d = qwen_f32_to_f16(0.01f * (frand() + 1.0f));
                qwen_f16 dmin = qwen_f32_to_f16(0.01f * (frand() + 1.0f));

                if (type == QWEN_TYPE_Q8_0) {
                    /* -128 included: |w| is 128 unsigned, the sign trick holds */
                    memcpy(blk + offsetof(block_q8_0, d), &d, sizeof(d));
                    if (extreme) {
                        memset(blk + offsetof(block_q8_0, qs), trial == 8 ? 0x80 : 0x7F, QK8_0);
                    }
                } else if (type == QWEN_TYPE_Q4_K) {
                    memcpy(blk + offsetof(block_q4_K, d), &d, sizeof(d));
                    memcpy(blk + offsetof(block_q4_K, dmin), &dmin, sizeof(dmin));
                } else {
                    memcpy(blk + offsetof(block_q6_K, d), &d, sizeof(d));
                    if (extreme) {   /* the top scale: 127 */
                        memset(blk + offsetof(block_q6_K, scales), 0x7F, QK_K / 16);
                    }
                }
            }
            qwen_pack_group(type, wq, rb, n, packed);
            if (k == ref) {
                /* and back: every row's file bytes, every bit pattern */
                uint8_t *back = malloc(rb);
                int      bad = 0;

                for (r = 0; r < QWEN_PACK_ROWS; r++) {
                    memset(back, 0xA5, rb);
                    qwen_unpack_row(type, packed, n, r, back);
                    bad += memcmp(back, wq + r * rb, rb) != 0;
                }
                CHECK(bad == 0, "%s unpack_row: %d of 8 rows differ from the file's bytes "
                      "(trial %d)", qwen_type_name(type), bad, trial);
                free(back);
            }
            for (r = 0; r < 4; r++) {
                for (i = 0; i < n; i++) x[i] = frand() * 2.0f;
                ref->quantize_act(act, x, acts + r * stride, n);
                if (extreme && act == QWEN_TYPE_Q8_0) {
                    /* Q8_0 activations are -127 .. 127 (qwen_quantize_row_q8_0) */
                    block_q8_0 *qa = (block_q8_0 *) (acts + r * stride);

                    for (i = 0; i < n; i++) {
                        qa[i / QK8_0].qs[i % QK8_0] = (int8_t) (trial == 8 ? 127 : -127);
                    }
                } else if (extreme && act == QWEN_TYPE_Q8_K) {
                    block_q8_K *qa = (block_q8_K *) (acts + r * stride);

                    for (i = 0; i < n; i++) {
                        qa[i / QK_K].qs[i % QK_K] = (int8_t) (trial == 8 ? -128 : 127);
                    }
                    for (i = 0; i < n / 16; i++) {
                        qa[i / 16].bsums[i % 16] = (int16_t) (16 * (trial == 8 ? -128 : 127));
                    }
                }
            }
            qwen_packed_dot_ref(type, n, packed, acts, stride, 4, want);
            for (tok = 0; tok < 4; tok++) {
                for (r = 0; r < QWEN_PACK_ROWS; r++) {
                    double plain = ref->vec_dot[type](n, wq + r * rb, acts + tok * stride);
                    double mag = 0.0;

                    /* |sum| bound: the plain dot over absolute values */
                    {
                        float *wd = malloc(n * sizeof(float)), *xd = malloc(n * sizeof(float));

                        qwen_dequantize_row(type, wq + r * rb, wd, n);
                        dequant_act(act, acts + tok * stride,
                                    (const float *) (acts + tok * stride), xd, n);
                        mag = dabsdot(wd, xd, n);
                        free(wd);
                        free(xd);
                    }
                    worst = fmax(worst, fabs(want[tok * QWEN_PACK_ROWS + r] - plain)
                                        / (mag > 0 ? mag : 1.0));
                }
            }
            if (k->packed_dot[type] == NULL) {
                continue;
            }
            if (k->packed_gemm[type] != NULL) {
                /* 67 tokens (two calls' worth of token pairs, an odd one
                 * last) and 8, the rows of the 4 made above in turn, their
                 * outputs scattered through idx (13: 8 + 4 + 1; 9 .. 11
                 * and 24, 25: last calls of every size, passes of 4, 5 and
                 * 6 tokens; 261: past the 256 tokens whose sums the avx2
                 * Q8_0 GEMM keeps apart); a table whose calls take two
                 * groups gets this one and its rows reversed */
                enum { MAXTOK = 261 };
                static const int counts[] = { 67, 13, 8, 9, 10, 11, 24, 25, MAXTOK };
                const int ng = k->packed_gemm_groups > 1 ? 2 : 1, nr = ng * QWEN_PACK_ROWS;
                size_t    gb = qwen_packed_group_bytes(type, n);
                int32_t   idx[MAXTOK];
                char     *many = malloc(MAXTOK * stride);
                char     *prepped = k->packed_gemm_act[act] != NULL
                                    ? malloc(k->packed_gemm_act_bytes(act, n, MAXTOK)) : NULL;
                float    *res = malloc(MAXTOK * (size_t) nr * sizeof(float));
                uint8_t  *grp = malloc(2 * gb), *rev = malloc(QWEN_PACK_ROWS * rb);
                size_t    c;

                for (r = 0; r < QWEN_PACK_ROWS; r++) {
                    memcpy(rev + r * rb, wq + (QWEN_PACK_ROWS - 1 - r) * rb, rb);
                }
                memcpy(grp, packed, gb);
                qwen_pack_group(type, rev, rb, n, grp + gb);
                for (tok = 0; tok < MAXTOK; tok++) {
                    memcpy(many + tok * stride, acts + (tok % 4) * stride, stride);
                }
                for (c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
                    int cnt = counts[c];

                    for (tok = 0; tok < cnt; tok++) {
                        idx[tok] = (tok * 7) % cnt;   /* 7 is prime to all but 8: below */
                    }
                    if (cnt == 8) {
                        for (tok = 0; tok < 8; tok++) idx[tok] = 7 - tok;
                    }
                    memset(res, 0xFF, MAXTOK * (size_t) nr * sizeof(float));
                    if (k->packed_gemm_act[act] != NULL) {
                        /* the GEMM's own activation layout, made in two
                         * calls as forward.c's threads do (from the token
                         * that starts the second group) */
                        int    g = k->packed_gemm_act_tokens;
                        size_t at = k->packed_gemm_act_bytes(act, n, g);

                        k->packed_gemm_act[act](n, many, stride, g, prepped);
                        k->packed_gemm_act[act](n, many + g * stride, stride, cnt - g,
                                                prepped + at);
                        k->packed_gemm[type](n, grp, prepped, at, cnt, res, (size_t) nr, idx);
                    } else {
                        k->packed_gemm[type](n, grp, many, stride, cnt, res, (size_t) nr, idx);
                    }
                    for (tok = 0; tok < cnt; tok++) {
                        for (r = 0; r < nr; r++) {
                            int row = r < QWEN_PACK_ROWS ? r : 2 * QWEN_PACK_ROWS - 1 - r;

                            same += memcmp(&res[idx[tok] * nr + r],
                                           &want[(tok % 4) * QWEN_PACK_ROWS + row],
                                           sizeof(float)) == 0;
                            tried++;
                        }
                    }
                }
                free(many);
                free(prepped);
                free(res);
                free(grp);
                free(rev);
            }
            if (k->packed_dot_multi[type] != NULL) {
                /* its groups: this one's rows turned by 3 rows a group (row
                 * r of group g is row (r + 3g) % 8 here), so no two alike */
                size_t   gb = qwen_packed_group_bytes(type, n);
                int      ng = k->packed_dot_multi_groups[type], g;
                uint8_t *rot = malloc(QWEN_PACK_ROWS * rb);
                uint8_t *many = malloc(QWEN_PACK_MULTI_MAX * gb);
                float    gotm[QWEN_PACK_MULTI_MAX * QWEN_PACK_ROWS];

                CHECK(ng >= 2 && ng <= QWEN_PACK_MULTI_MAX, "%s: %s multi-group dot of %d groups",
                      k->name, qwen_type_name(type), ng);
                for (g = 0; g < ng && g < QWEN_PACK_MULTI_MAX; g++) {
                    for (r = 0; r < QWEN_PACK_ROWS; r++) {
                        memcpy(rot + r * rb, wq + (r + 3 * g) % QWEN_PACK_ROWS * rb, rb);
                    }
                    qwen_pack_group(type, rot, rb, n, many + g * gb);
                }
                for (tok = 0; tok < 4 && ng <= QWEN_PACK_MULTI_MAX; tok++) {
                    k->packed_dot_multi[type](n, many, gb, acts + tok * stride, gotm);
                    for (r = 0; r < ng * QWEN_PACK_ROWS; r++) {
                        int row = (r % QWEN_PACK_ROWS + 3 * (r / QWEN_PACK_ROWS)) % QWEN_PACK_ROWS;

                        same += memcmp(&gotm[r], &want[tok * QWEN_PACK_ROWS + row],
                                       sizeof(float)) == 0;
                        tried++;
                    }
                }
                free(rot);
                free(many);
            }
            for (nt = 1; nt <= 4; nt++) {
                for (tok = 0; tok + nt <= 4; tok++) {
                    k->packed_dot[type](n, packed, acts + tok * stride, stride, nt, got);
                    for (r = 0; r < nt * QWEN_PACK_ROWS; r++) {
                        same += memcmp(&got[r], &want[tok * QWEN_PACK_ROWS + r],
                                       sizeof(float)) == 0;
                        tried++;
                    }
                }
            }
        }
        CHECK(worst < 1e-5, "%s packed %s: the scalar truth is %.3g of sum|w x| from the "
              "file layout's dot", k->name, qwen_type_name(type), worst);
        if (k->packed_dot[type] != NULL) {
            CHECK(same == tried && tried > 0, "%s packed %s: %d of %d results differ from the "
                  "scalar truth's bits", k->name, qwen_type_name(type), tried - same, tried);
        }
    }
    free(x); free(wq); free(packed); free(acts);
}

/*
 * Packed GEMMs over long rows (4352 columns: 136 Q8_0 blocks, 17 K-quant
 * super-blocks): past the stretches of blocks a GEMM restages or converts
 * at a time (the arm64 Q8_0 GEMM's 128 blocks of scales, the avx2 one's
 * passes of 8), where the sums carry over from one stretch to the next.
 * Each token's results are the packed dot's bits for it.
 */
static void
test_packed_gemm_long(const qwen_kernels *k)
{
    static const int types[] = { QWEN_TYPE_Q4_K, QWEN_TYPE_Q6_K, QWEN_TYPE_Q8_0 };
    const qwen_kernels *ref = qwen_kernels_ref();
    const int64_t       n = 4352;
    enum { TOK = 13 };
    size_t t;

    for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        int      type = types[t], act = qwen_act_type(type);
        size_t   rb = qwen_row_bytes(type, n), stride = qwen_act_row_bytes(type, n);
        size_t   gb = qwen_packed_group_bytes(type, n);
        int      ng = k->packed_gemm_groups > 1 ? 2 : 1, nr = ng * QWEN_PACK_ROWS;
        float   *x = malloc(n * sizeof(float)), *res, want[QWEN_PACK_ROWS];
        uint8_t *wq = malloc(QWEN_PACK_ROWS * rb), *grp = malloc(2 * gb);
        char    *acts = malloc(TOK * stride), *prepped = NULL;
        int32_t  idx[TOK];
        int      r, tok, g, same = 0, tried = 0;
        int64_t  i;

        if (k->packed_gemm[type] == NULL || k->packed_dot[type] == NULL) {
            free(x); free(wq); free(grp); free(acts);
            continue;
        }
        res = malloc(TOK * (size_t) nr * sizeof(float));
        for (g = 0; g < ng; g++) {
            for (r = 0; r < QWEN_PACK_ROWS; r++) {
                for (i = 0; i < n; i++) x[i] = frand();
                qwen_quantize_row(type, x, wq + r * rb, n);
            }
            qwen_pack_group(type, wq, rb, n, grp + g * gb);
        }
        for (tok = 0; tok < TOK; tok++) {
            for (i = 0; i < n; i++) x[i] = frand() * 2.0f;
            ref->quantize_act(act, x, acts + tok * stride, n);
            idx[tok] = (tok * 5) % TOK;
        }
        memset(res, 0xFF, TOK * (size_t) nr * sizeof(float));
        if (k->packed_gemm_act[act] != NULL) {
            prepped = malloc(k->packed_gemm_act_bytes(act, n, TOK));
            k->packed_gemm_act[act](n, acts, stride, TOK, prepped);
            k->packed_gemm[type](n, grp, prepped,
                                 k->packed_gemm_act_bytes(act, n, k->packed_gemm_act_tokens),
                                 TOK, res, (size_t) nr, idx);
        } else {
            k->packed_gemm[type](n, grp, acts, stride, TOK, res, (size_t) nr, idx);
        }
        for (tok = 0; tok < TOK; tok++) {
            for (g = 0; g < ng; g++) {
                k->packed_dot[type](n, grp + g * gb, acts + tok * stride, stride, 1, want);
                for (r = 0; r < QWEN_PACK_ROWS; r++) {
                    same += memcmp(&res[idx[tok] * nr + g * QWEN_PACK_ROWS + r], &want[r],
                                   sizeof(float)) == 0;
                    tried++;
                }
            }
        }
        CHECK(same == tried, "%s packed %s GEMM over %lld columns: %d of %d results differ "
              "from the packed dot's bits", k->name, qwen_type_name(type), (long long) n,
              tried - same, tried);
        free(x); free(wq); free(grp); free(acts); free(prepped); free(res);
    }
}

/*
 * A table's activation quantizers give the reference quantizer's bytes
 * (values, scales, block sums): random rows, a zero block, huge and tiny
 * magnitudes, exact .5 products (round half to even).
 */
static void
test_quantize_act(const qwen_kernels *k)
{
    static const int acts[] = { QWEN_TYPE_Q8_0, QWEN_TYPE_Q8_K };
    const int64_t    n = 1024;
    float           *x = malloc(n * sizeof(float));
    char            *a = malloc(qwen_row_bytes(QWEN_TYPE_F32, n));
    char            *b = malloc(qwen_row_bytes(QWEN_TYPE_F32, n));
    size_t           t;
    int              trial, same = 0;
    int64_t          i;

    for (t = 0; t < sizeof(acts) / sizeof(acts[0]); t++) {
        size_t rb = qwen_row_bytes(acts[t], n);

        same = 0;
        for (trial = 0; trial < 6; trial++) {
            for (i = 0; i < n; i++) {
                x[i] = frand() * (trial == 1 ? 3e30f : trial == 2 ? 1e-30f : 4.0f);
            }
            if (trial == 3) {
                memset(x + 256, 0, 256 * sizeof(float));   /* a zero block */
            }
            if (trial == 4) {    /* products that land on .5: 127 / 127 * (k + .5) */
                for (i = 0; i < n; i++) {
                    x[i] = (float) ((int) (frand() * 120.0f)) + 0.5f;
                }
                x[0] = 127.0f;
            }
            memset(a, 0x55, rb);
            memset(b, 0x55, rb);
            k->quantize_act(acts[t], x, a, n);
            qwen_quantize_row(acts[t], x, b, n);
            same += memcmp(a, b, rb) == 0;
        }
        CHECK(same == 6, "%s quantize_act %s: %d of 6 rows differ from the reference's bytes",
              k->name, qwen_type_name(acts[t]), 6 - same);
    }
    free(x); free(a); free(b);
}

/*
 * Lengths that are not a multiple of any vector width, for the float
 * kernels' tails: dots (single and 4-row), attention helpers.
 */
static void
test_float_tails(const qwen_kernels *k)
{
    static const int64_t lens[] = { 1, 3, 4, 7, 15, 17, 33, 61, 100 };
    static const int     ftypes[] = { QWEN_TYPE_F32, QWEN_TYPE_F16, QWEN_TYPE_BF16 };
    enum { MAXN = 100 };
    float    w[MAXN], wd[MAXN], x[4 * MAXN], y[MAXN], yr[MAXN], out4[4];
    uint16_t wq[2 * MAXN];
    qwen_f16 h[MAXN];
    size_t   l, t;
    int      r, bad = 0, bad4 = 0, badh = 0;
    int64_t  i, n;
    double   worst = 0.0, worst_att = 0.0;

    for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        n = lens[l];
        for (i = 0; i < n; i++) w[i] = frand();
        for (i = 0; i < 4 * n; i++) x[i] = frand();
        for (t = 0; t < sizeof(ftypes) / sizeof(ftypes[0]); t++) {
            int type = ftypes[t];
            qwen_quantize_row(type, w, wq, n);
            qwen_dequantize_row(type, wq, wd, n);
            if (k->vec_dot4[type] != NULL) {
                k->vec_dot4[type](n, wq, x, n * sizeof(float), out4);
            }
            for (r = 0; r < 4; r++) {
                float got = k->vec_dot[type](n, wq, x + r * n);
                worst = fmax(worst, fabs(got - ddot(wd, x + r * n, n))
                                    / (dabsdot(wd, x + r * n, n) + 1e-30));
                if (k->vec_dot4[type] != NULL) {
                    bad4 += memcmp(&got, &out4[r], sizeof(float)) != 0;
                }
            }
        }
        k->f32_to_f16(w, h, n);
        for (i = 0; i < n; i++) {
            badh += h[i] != qwen_f32_to_f16(w[i]);
            y[i] = yr[i] = x[i];
            wd[i] = qwen_f16_to_f32(h[i]);
        }
        worst_att = fmax(worst_att, fabs(k->dot_f32_f16(n, x, h) - ddot(x, wd, n))
                                    / (dabsdot(x, wd, n) + 1e-30));
        k->axpy_f16(n, -1.5f, h, y);
        for (i = 0; i < n; i++) {
            yr[i] += -1.5f * wd[i];
            bad += fabsf(y[i] - yr[i]) > 1e-6f * (fabsf(yr[i]) + 1.0f);
        }
    }
    CHECK(worst < 1e-6, "%s float dots on odd lengths: error %.3g of sum|w x|", k->name, worst);
    CHECK(bad4 == 0, "%s float vec_dot4 on odd lengths: %d results not bit-identical", k->name,
          bad4);
    CHECK(badh == 0, "%s f32_to_f16 on odd lengths: %d values differ", k->name, badh);
    CHECK(worst_att < 1e-6, "%s dot_f32_f16 on odd lengths: error %.3g", k->name, worst_att);
    CHECK(bad == 0, "%s axpy_f16 on odd lengths: %d values off", k->name, bad);
}

/*
 * f32_to_f16 bit for bit against qwen_f32_to_f16 over every sign, exponent
 * and top mantissa bits (low bits random), exact round-to-nearest ties in
 * the normal and subnormal ranges, and the overflow edge; a length of
 * N - 3 runs the vector loop and the scalar tail. f32_to_bf16 likewise.
 */
static void
test_f16_conversion(const qwen_kernels *k)
{
    enum { N = 1 << 16 };
    static const uint32_t edges[] = {
        0x477fefffu, 0x477ff000u, 0x477ff001u, 0x477fe000u, 0x38800000u, 0x387fffffu,
        0x387ff000u, 0x33000000u, 0x33000001u, 0x32ffffffu, 0x33800000u, 0x33c00000u,
        0x7f800000u, 0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0x7f802000u, 0x00000001u,
        0x80000000u, 0xc77ff000u, 0xb3000001u, 0xffc12345u,
    };
    uint32_t *u = malloc(N * sizeof(uint32_t));
    qwen_f16 *h = malloc(N * sizeof(qwen_f16));
    int       pass, bad = 0, badb = 0, badf = 0;
    uint32_t  i, e, shift, rnd;

    for (pass = 0; pass < 3; pass++) {
        for (i = 0; i < N; i++) {
            rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
            rnd = (uint32_t) (rng_state >> 32);
            if (pass == 0) {
                u[i] = (i << 16) | (rnd & 0xffff);
            } else if (pass == 1) {
                /* exact and near ties of normal halves (13 dropped bits),
                 * and exact bf16 ties (16 dropped bits) */
                u[i] = i % 4 == 3 ? (rnd & ~0xffffu) | 0x8000u
                                  : (rnd & ~0x1fffu) | (0x1000u + (i % 3) - 1);
            } else {
                /* exact ties of subnormal halves: exponents 103..112 */
                e = 103 + i % 10;
                shift = 126 - e;
                u[i] = (rnd & 0x80000000u) | (e << 23)
                       | ((rnd & 0x7fffffu) & ~((1u << shift) - 1)) | (1u << (shift - 1));
            }
        }
        if (pass == 0) {
            memcpy(u, edges, sizeof(edges));
        }
        k->f32_to_f16((const float *) u, h, N - 3);
        k->f32_to_f16((const float *) u + N - 3, h + N - 3, 3);
        for (i = 0; i < N; i++) {
            float f;
            memcpy(&f, &u[i], sizeof(f));
            if (h[i] != qwen_f32_to_f16(f)) {
                if (bad++ < 5) {
                    fprintf(stderr, "  %s f32_to_f16(0x%08x) = 0x%04x, reference 0x%04x\n",
                            k->name, u[i], h[i], qwen_f32_to_f16(f));
                }
            }
        }
        /* the same values through the prefill's BF16 conversion. Known
         * exception, to be removed once fixed: AVX-512 BF16's VCVTNE2PS2BF16
         * flushes subnormal inputs to zero, the reference rounds them. */
        if (k->f32_to_bf16 != NULL) {
            int daz = strcmp(k->name, "avx512") == 0;
            k->f32_to_bf16((const float *) u, h, N - 3);
            k->f32_to_bf16((const float *) u + N - 3, h + N - 3, 3);
            for (i = 0; i < N; i++) {
                float f;
                memcpy(&f, &u[i], sizeof(f));
                if (!(daz && (u[i] & 0x7f800000u) == 0)) {
                    badb += h[i] != qwen_f32_to_bf16(f);
                }
            }
        }
        /* and the GEMM's F32 activations: those BF16 values, widened */
        if (k->gemm_act_f32 != NULL) {
            float *y = malloc(N * sizeof(float));

            k->gemm_act_f32((const float *) u, y, N - 3);
            k->gemm_act_f32((const float *) u + N - 3, y + N - 3, 3);
            for (i = 0; i < N; i++) {
                float f, r;
                memcpy(&f, &u[i], sizeof(f));
                r = qwen_bf16_to_f32(qwen_f32_to_bf16(f));
                badf += memcmp(&r, &y[i], sizeof(r)) != 0;
            }
            free(y);
        }
    }
    CHECK(bad == 0, "%s f32_to_f16: %d of %d values differ from the reference", k->name, bad,
          3 * N);
    CHECK(badb == 0, "%s f32_to_bf16: %d of %d values differ from the reference", k->name,
          badb, 3 * N);
    CHECK(badf == 0, "%s gemm_act_f32: %d of %d values differ from the reference", k->name,
          badf, 3 * N);
    free(u);
    free(h);
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
            dequant_act(act, xq, x, xd, n);
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
            int     same = 0;
            k->vec_dot4[type](n, wq, acts, stride, out4);
            for (r = 0; r < 4; r++) {
                single = k->vec_dot[type](n, wq, acts + r * stride);
                worst4 = fmaxf(worst4, fabsf(out4[r] - single) / (fabsf(single) + 1.0f));
                same += memcmp(&single, &out4[r], sizeof(float)) == 0;
            }
            CHECK(worst4 < 1e-5, "%s %s: vec_dot4 differs from vec_dot by %.3g", k->name,
                  qwen_type_name(type), worst4);
            /* batch invariance: a token's result must not depend on
             * whether it went through vec_dot4 or vec_dot */
            CHECK(same == 4, "%s %s: vec_dot4 not bit-identical to vec_dot (%d of 4)",
                  k->name, qwen_type_name(type), same);
            /* the 2 x 4 tile: this row and another, quantized as a model's */
            if (k->vec_dot2x4[type] != NULL) {
                size_t rb = qwen_row_bytes(type, n);
                char  *w2 = malloc(2 * rb);
                float  out8[8];

                memcpy(w2, wq, rb);
                for (i = 0; i < n; i++) w[i] = frand() * 0.5f;
                qwen_quantize_row(type, w, w2 + rb, n);
                k->vec_dot2x4[type](n, w2, rb, acts, stride, out8);
                same = 0;
                for (r = 0; r < 8; r++) {
                    single = k->vec_dot[type](n, w2 + (r / 4) * rb, acts + (r % 4) * stride);
                    same += memcmp(&single, &out8[r], sizeof(float)) == 0;
                }
                CHECK(same == 8, "%s %s: vec_dot2x4 not bit-identical to vec_dot (%d of 8)",
                      k->name, qwen_type_name(type), same);
                free(w2);
            }
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

/* A table's wider SwiGLU and RMS norm give elementwise.c's bits: lengths
 * with and without vector tails, values past exp's clamps, infinities,
 * subnormals, zeros. */
static void
test_elementwise(const qwen_kernels *k)
{
    static const int lens[] = { 3072, 1024, 128, 40, 37, 5 };
    float           *g1, *g2, *u, *w;
    size_t           c;
    int              i, trial, differ = 0, tried = 0;

    if (k->swiglu == NULL && k->rmsnorm == NULL) {
        return;
    }
    g1 = malloc(3072 * sizeof(float));
    g2 = malloc(3072 * sizeof(float));
    u = malloc(3072 * sizeof(float));
    w = malloc(3072 * sizeof(float));
    for (trial = 0; trial < 4; trial++) {
        for (i = 0; i < 3072; i++) {
            float big = trial == 1 ? 200.0f : trial == 2 ? 1e-3f : 8.0f;

            g1[i] = frand() * big;
            u[i] = frand() * 2.0f;
            w[i] = frand() + 1.0f;
            if (trial == 3) {
                static const float special[] = { INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f,
                                                 -1e-40f, 88.5f, -88.5f, 3e38f, -3e38f };
                g1[i] = special[i % 10];
            }
        }
        for (c = 0; c < sizeof(lens) / sizeof(lens[0]); c++) {
            int n = lens[c];

            if (k->swiglu != NULL) {
                memcpy(g2, g1, n * sizeof(float));
                float *ref = malloc(n * sizeof(float));
                memcpy(ref, g1, n * sizeof(float));
                qwen_swiglu(ref, u, n);
                k->swiglu(g2, u, n);
                differ += memcmp(ref, g2, n * sizeof(float)) != 0;
                tried++;
                free(ref);
            }
            if (k->rmsnorm != NULL && trial != 3) {
                float *ref = malloc(n * sizeof(float));

                qwen_rmsnorm(ref, g1, w, n, 1e-6f);
                k->rmsnorm(g2, g1, w, n, 1e-6f);
                differ += memcmp(ref, g2, n * sizeof(float)) != 0;
                tried++;
                free(ref);
            }
        }
    }
    CHECK(differ == 0 && tried > 0, "%s swiglu / rmsnorm: %d of %d calls differ from "
          "elementwise.c's bits", k->name, differ, tried);
    free(g1); free(g2); free(u); free(w);
}

/* The prefill GEMM against double sums of BF16-rounded weights and
 * activations: odd row ranges, a token count that is not a multiple of the
 * micro-kernel's, scattered output rows. */
static void
test_gemm(const qwen_kernels *k, const int K)
{
    enum { ROWS = 70, NT = 11 };
    float     *w = malloc(ROWS * K * sizeof(float)), *x = malloc(NT * K * sizeof(float));
    float     *out = calloc((size_t) 2 * NT * ROWS, sizeof(float)), *row = malloc(K * sizeof(float));
    qwen_bf16 *xb = malloc(NT * K * sizeof(qwen_bf16));
    /* what the gemm reads: xb, or its values in F32 (gemm_act_f32) */
    char      *xg = malloc(NT * K * qwen_gemm_act_bytes(k));
    /* aligned_alloc wants a multiple of the alignment (odd K gives none) */
    void      *scratch = aligned_alloc(64, (qwen_gemm_scratch_bytes(k, K) + 63) / 64 * 64);
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
        qwen_gemm_act(k, x, xg, (int64_t) NT * K);
        if (k->gemm_act_f32 != NULL) {
            /* the reference's BF16 values, bit for bit */
            for (i = 0, differ = 0; i < NT * K; i++) {
                float    f = qwen_bf16_to_f32(xb[i]);
                differ += memcmp(&f, xg + (size_t) i * sizeof(float), sizeof(f)) != 0;
            }
            CHECK(differ == 0, "%s gemm_act_f32: %d values differ from the reference", k->name,
                  differ);
        }
    }
    for (t = 0; t < sizeof(weight_types) / sizeof(weight_types[0]); t++) {
        int    type = weight_types[t];
        size_t rb = qwen_row_bytes(type, K);
        char  *wq;
        double worst = 0.0;

        if (K % qwen_type_block_size(type) != 0) {
            continue;   /* odd K: float types only */
        }
        wq = malloc(ROWS * rb);

        for (r = 0; r < ROWS; r++) qwen_quantize_row(type, w + r * K, wq + r * rb, K);
        memset(out, 0, (size_t) 2 * NT * ROWS * sizeof(float));
        k->gemm(type, wq, 0, rb, K, 3, ROWS, xg, NT, idx, out, ROWS, scratch);
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
        if (qwen_packable(type, 64, K)) {
            /* the packed copy of rows 0 .. 63 gives the file rows' bits,
             * rows 8 .. 60 asked for (two panels, the second ending in a
             * part of a group), then 16 .. 56 (a panel of whole groups
             * from an odd group, then one group alone) */
            static const int from[] = { 8, 16 }, to[] = { 61, 56 };
            size_t gb = qwen_packed_group_bytes(type, K);
            char  *pk = malloc(8 * gb);
            float *out2 = calloc((size_t) 2 * NT * ROWS, sizeof(float));
            int    differ = 0, c;

            for (r = 0; r < 64; r += QWEN_PACK_ROWS) {
                qwen_pack_group(type, wq + r * rb, rb, K, pk + (r / QWEN_PACK_ROWS) * gb);
            }
            for (c = 0; c < 2; c++) {
                memset(out, 0, (size_t) 2 * NT * ROWS * sizeof(float));
                memset(out2, 0, (size_t) 2 * NT * ROWS * sizeof(float));
                k->gemm(type, wq, 0, rb, K, from[c], to[c], xg, NT, idx, out, ROWS, scratch);
                k->gemm(type, pk, 1, 0, K, from[c], to[c], xg, NT, idx, out2, ROWS, scratch);
                for (i = 0; i < 2 * NT * ROWS; i++) {
                    differ += memcmp(&out[i], &out2[i], sizeof(float)) != 0;
                }
            }
            CHECK(differ == 0, "%s gemm %s from packed rows: %d results differ from the "
                  "file rows'", k->name, qwen_type_name(type), differ);
            free(pk);
            free(out2);
        }
        free(wq);
    }
    free(w); free(x); free(out); free(row); free(xb); free(xg); free(scratch);
}

/* A paged view over n_blocks blocks of regions holding QWEN_KV_BLOCK
 * positions of `pos_bytes` each, whose table runs backwards (block 0 of
 * the sequence is the pool's last): kernels must follow the table. */
static int
qwen_kv_blocks_test(int n_pos)
{
    return (n_pos + QWEN_KV_BLOCK - 1) / QWEN_KV_BLOCK;
}

static void
paged_view(void *kbase, void *vbase, int32_t *table, int n_blocks, size_t pos_bytes,
           qwen_kv_view *view)
{
    int j;

    for (j = 0; j < n_blocks; j++) {
        table[j] = n_blocks - 1 - j;
    }
    view->k = kbase;
    view->v = vbase;
    view->blocks = table;
    view->stride = (size_t) QWEN_KV_BLOCK * pos_bytes;
}

/* Attention in double over the given K and V rows ([n_pos][hd]) for n_q
 * heads; the largest difference from out. */
static double
exact_attention_error(int hd, int n_q, const float *q, const float *kf, const float *vf,
                      int n_pos, double scale, const float *out, double *p)
{
    double worst = 0.0, s, mx, sum, o;
    int    h, t, i;

    for (h = 0; h < n_q; h++) {
        mx = -INFINITY;
        for (t = 0; t < n_pos; t++) {
            for (s = 0.0, i = 0; i < hd; i++) {
                s += (double) q[h * hd + i] * kf[(size_t) t * hd + i];
            }
            p[t] = scale * s;
            mx = fmax(mx, p[t]);
        }
        for (sum = 0.0, t = 0; t < n_pos; t++) {
            p[t] = exp(p[t] - mx);
            sum += p[t];
        }
        for (i = 0; i < hd; i++) {
            for (o = 0.0, t = 0; t < n_pos; t++) {
                o += p[t] * vf[(size_t) t * hd + i];
            }
            worst = fmax(worst, fabs(o / sum - out[h * hd + i]));
        }
    }
    return worst;
}

/*
 * One KV format of a table (kv_store / kv_attention) against the format's
 * scalar truth (qwen_kv_format_ref: the same bytes stored, attention
 * within `ref`), against exact attention in double over the values the
 * cache holds (within `stored`: what the kernel rounds besides the cache,
 * q and probabilities) and over the unrounded ones (within `exact`), on a
 * paged cache whose table runs backwards, the pool filled with NaN bytes
 * past the positions written (nothing there may be read: rounded tiles,
 * whole 8- or 16-position chunks, an odd last pair). Group sizes 1 to 5,
 * 1 to 700 positions, heads of 32 to 256 dimensions (as the format allows).
 */
static void
test_kv_format(const qwen_kernels *k, int id, double b_ref, double b_stored, double b_exact)
{
    static const int n_qs[] = { 1, 2, 3, 4, 5 }, hds[] = { 32, 64, 128, 256 };
    static const int n_poss[] = { 1, 2, 7, 15, 16, 17, 33, 64, 257, 700 };
    const int        max_hd = 256, max_pos = 700, rows = qwen_kv_rows(max_pos);
    const int        n_blk = qwen_kv_blocks_test(max_pos);
    const size_t     pool = (size_t) n_blk * QWEN_KV_BLOCK * qwen_kv_pos_bytes(id, max_hd);
    float           *kf = malloc((size_t) max_pos * max_hd * sizeof(float));
    float           *vf = malloc((size_t) max_pos * max_hd * sizeof(float));
    float           *ks = malloc((size_t) max_pos * max_hd * sizeof(float));
    float           *vs = malloc((size_t) max_pos * max_hd * sizeof(float));
    float           *q = malloc(5 * max_hd * sizeof(float));
    float           *o1 = malloc(5 * max_hd * sizeof(float));
    float           *o2 = malloc(5 * max_hd * sizeof(float));
    float           *sc = malloc((size_t) 5 * rows * sizeof(float));
    /* attention_tokens: 4 tokens' queries and outputs, rows apart by a
     * stride that is not n_q * hd */
    const size_t     tstride = 5 * max_hd + 8;
    float           *qt = malloc(QWEN_KV_ATT_TOKENS * tstride * sizeof(float));
    float           *ot = malloc(QWEN_KV_ATT_TOKENS * tstride * sizeof(float));
    float           *sct = malloc((size_t) QWEN_KV_ATT_TOKENS * 5 * rows * sizeof(float));
    double          *p = malloc((size_t) max_pos * sizeof(double));
    char            *kc1 = malloc(pool), *vc1 = malloc(pool), *kc2 = malloc(pool), *vc2 = malloc(pool);
    int32_t          table[64];
    qwen_kv_view     v1, v2;
    qwen_kv_format   f, ref;
    double           worst_ref = 0.0, worst_stored = 0.0, worst_exact = 0.0;
    int              same_bytes = 1, n_hd = 0, a, b, c, i, t, hd, n_pos, mt, j, n_tok_calls = 0;
    int              tokens_same = 1;
    const char      *name = qwen_kv_format_name(id);

    for (i = 0; i < max_pos * max_hd; i++) {
        kf[i] = frand() * 2.0f;
        vf[i] = frand();
    }
    for (i = 0; i < 5 * max_hd; i++) q[i] = frand();
    for (i = 0; i < (int) (QWEN_KV_ATT_TOKENS * tstride); i++) qt[i] = frand();
    for (c = 0; c < 4; c++) {
        hd = hds[c];
        if (qwen_kv_format_of(k, id, hd, &f) != 0) {
            continue;
        }
        n_hd++;
        CHECK(qwen_kv_format_ref(id, hd, &ref) == 0 && strcmp(f.name, name) == 0
              && f.pos_bytes == ref.pos_bytes && f.pos_bytes == qwen_kv_pos_bytes(id, hd),
              "%s %s: descriptor", k->name, name);
        paged_view(kc1, vc1, table, n_blk, f.pos_bytes, &v1);
        paged_view(kc2, vc2, table, n_blk, f.pos_bytes, &v2);
        for (b = 0; b < (int) (sizeof(n_poss) / sizeof(n_poss[0])); b++) {
            n_pos = n_poss[b];
            memset(kc1, 0xff, pool); memset(vc1, 0xff, pool);
            memset(kc2, 0xff, pool); memset(vc2, 0xff, pool);
            for (t = 0; t < n_pos; t++) {
                ref.store(hd, kf + (size_t) t * hd, vf + (size_t) t * hd,
                          (void *) qwen_kv_block_k(&v1, t), (void *) qwen_kv_block_v(&v1, t),
                          t % QWEN_KV_BLOCK);
                f.store(hd, kf + (size_t) t * hd, vf + (size_t) t * hd,
                        (void *) qwen_kv_block_k(&v2, t), (void *) qwen_kv_block_v(&v2, t),
                        t % QWEN_KV_BLOCK);
                qwen_kv_read(id, hd, qwen_kv_block_k(&v2, t), qwen_kv_block_v(&v2, t),
                             t % QWEN_KV_BLOCK, ks + (size_t) t * hd, vs + (size_t) t * hd);
            }
            same_bytes &= memcmp(kc1, kc2, pool) == 0 && memcmp(vc1, vc2, pool) == 0;
            for (a = 0; a < (int) (sizeof(n_qs) / sizeof(n_qs[0])); a++) {
                ref.attention(hd, n_qs[a], q, &v1, n_pos, 0.3f, sc, o1);
                f.attention(hd, n_qs[a], q, &v2, n_pos, 0.3f, sc, o2);
                for (i = 0; i < n_qs[a] * hd; i++) {
                    worst_ref = fmax(worst_ref, fabs(o1[i] - o2[i]));
                    if (o2[i] != o2[i]) {
                        worst_ref = INFINITY;   /* NaN: something past n_pos was read */
                    }
                }
                worst_stored = fmax(worst_stored, exact_attention_error(hd, n_qs[a], q, ks, vs,
                                                                        n_pos, 0.3, o2, p));
                worst_exact = fmax(worst_exact, exact_attention_error(hd, n_qs[a], q, kf, vf,
                                                                      n_pos, 0.3, o2, p));
                /* m tokens at once, the last at n_pos: each token's bits
                 * as the single-token call gives them */
                for (mt = 1; f.attention_tokens != NULL && mt <= QWEN_KV_ATT_TOKENS
                             && mt <= n_pos; mt++) {
                    memset(ot, 0xff, QWEN_KV_ATT_TOKENS * tstride * sizeof(float));
                    f.attention_tokens(hd, n_qs[a], mt, qt, tstride, &v2, n_pos - mt + 1, 0.3f,
                                       sct, ot, tstride);
                    n_tok_calls++;
                    for (j = 0; j < mt; j++) {
                        f.attention(hd, n_qs[a], qt + j * tstride, &v2, n_pos - mt + 1 + j, 0.3f,
                                    sc, o2);
                        tokens_same &= memcmp(o2, ot + j * tstride,
                                              (size_t) n_qs[a] * hd * sizeof(float)) == 0;
                    }
                }
            }
        }
    }
    printf("kernels %s: %s KV attention, max error %.3g vs the scalar format, %.3g vs exact on "
           "the stored values, %.3g vs exact\n", k->name, name, worst_ref, worst_stored,
           worst_exact);
    CHECK(n_hd > 0, "%s %s: no head size tested", k->name, name);
    CHECK(tokens_same, "%s %s attention_tokens: each token's bits as attention alone gives "
          "them (%d calls of 1 to %d tokens)", k->name, name, n_tok_calls, QWEN_KV_ATT_TOKENS);
    CHECK(same_bytes, "%s %s kv_store: the same bytes as the scalar format", k->name, name);
    /* outputs are averages of values in [-1, 1] */
    CHECK(worst_ref < b_ref, "%s %s attention: max error %.3g vs the scalar format (bound %g)",
          k->name, name, worst_ref, b_ref);
    CHECK(worst_stored < b_stored, "%s %s attention: max error %.3g vs exact attention on the "
          "paged %s values (bound %g)", k->name, name, worst_stored, name, b_stored);
    CHECK(worst_exact < b_exact, "%s %s attention: max error %.3g vs exact attention (bound %g)",
          k->name, name, worst_exact, b_exact);
    free(kf); free(vf); free(ks); free(vs); free(q); free(o1); free(o2); free(sc); free(p);
    free(qt); free(ot); free(sct);
    free(kc1); free(vc1); free(kc2); free(vc2);
}

/* Every KV format the table has: f32, f16 and q8_0 must be there. */
static void
test_kv_formats(const qwen_kernels *k)
{
    qwen_kv_format f;

    CHECK(k->kv_store[QWEN_KV_F32] && k->kv_store[QWEN_KV_F16] && k->kv_store[QWEN_KV_Q8_0]
          && k->kv_attention[QWEN_KV_F32] && k->kv_attention[QWEN_KV_F16]
          && k->kv_attention[QWEN_KV_Q8_0], "%s: f32, f16 and q8_0 KV formats", k->name);
    CHECK((k->kv_store[QWEN_KV_BF16] == NULL) == (k->kv_attention[QWEN_KV_BF16] == NULL),
          "%s: bf16 store and attention come together", k->name);
    /* f32 stores the values; nothing else rounds */
    test_kv_format(k, QWEN_KV_F32, 1e-5, 1e-5, 1e-5);
    /* f16 only rounds the cache: within 1e-5 of exact attention on its
     * values (the values themselves move the output by ~1e-3) */
    test_kv_format(k, QWEN_KV_F16, 1e-5, 1e-5, 2e-3);
    if (k->kv_store[QWEN_KV_BF16] != NULL) {
        /* values whose rounding is the hard part: ties to even both ways,
         * subnormals, the largest float (to inf), NaNs whose top mantissa
         * bits are zero (truncated, inf), -0; every position of a block */
        static const uint32_t special[] = {
            0x3f808000u, 0x3f818000u, 0xbf808000u, 0x00000001u, 0x00018000u, 0x807fffffu,
            0x7f7fffffu, 0xff7fffffu, 0x7f800001u, 0xff800001u, 0x7fc00000u, 0x80000000u,
            0x7f800000u, 0x3f7fffffu, 0x00008000u, 0x0000ffffu,
        };
        enum { HD = 128 };
        size_t   region = (size_t) QWEN_KV_BLOCK * HD * sizeof(uint16_t);
        uint8_t *k1 = malloc(region), *v1 = malloc(region), *k2 = malloc(region);
        uint8_t *v2 = malloc(region);
        float    kv[2][HD];
        int      t, i, same = 1;

        memset(k1, 0x5a, region); memset(v1, 0x5a, region);
        memset(k2, 0x5a, region); memset(v2, 0x5a, region);
        for (t = 0; t < QWEN_KV_BLOCK; t++) {
            for (i = 0; i < HD; i++) {
                uint32_t b = special[(i + t) % 16];

                memcpy(&kv[0][i], &b, sizeof(b));
                b = special[(i * 7 + t) % 16];
                memcpy(&kv[1][i], &b, sizeof(b));
            }
            qwen_kv_store_bf16_ref(HD, kv[0], kv[1], k1, v1, t);
            k->kv_store[QWEN_KV_BF16](HD, kv[0], kv[1], k2, v2, t);
        }
        same = memcmp(k1, k2, region) == 0 && memcmp(v1, v2, region) == 0;
        CHECK(same, "%s bf16 kv_store: NaNs, subnormals, ties and overflow rounded as "
              "qwen_f32_to_bf16", k->name);
        free(k1); free(v1); free(k2); free(v2);
        /* both round q and the probabilities to BF16; they differ only
         * where an exp rounds to the other side of a BF16 step. BF16 keeps
         * 8 bits. */
        test_kv_format(k, QWEN_KV_BF16, 2e-3, 2e-2, 2e-2);
    }
    /* the same integer scores as the scalar version; a vector exp and
     * another order of the V sums. Besides the cache the query is
     * quantized to 8 bits (rounding it moves the scores as much as
     * rounding K does): 1.0-2.3% of the largest value on these peaked
     * random scores (std ~3.5), measured over the tables' data */
    test_kv_format(k, QWEN_KV_Q8_0, 1e-5, 3e-2, 3e-2);
    /* q8_0's layout needs whole 32-dimension blocks */
    CHECK(qwen_kv_format_of(k, QWEN_KV_Q8_0, 48, &f) != 0
          && qwen_kv_format_of(k, QWEN_KV_Q8_0, 2 * QWEN_KV_MAX_HD, &f) != 0
          && qwen_kv_format_of(k, QWEN_KV_F16, 48, &f) == 0
          && qwen_kv_format_of(k, QWEN_KV_FORMAT_COUNT, 128, &f) != 0
          && qwen_kv_format_of(k, -1, 128, &f) != 0, "%s: head sizes per format", k->name);
}

/*
 * Two tables that must give the same bits (avx2_vnni is avx2 with each
 * maddubs + madd + add of a Q8_0 product, or madd + add of a K-quant
 * scale, as one vpdpbusd / vpdpwssd: the same integer sums; avx512 and
 * avx512_vnni): every
 * quantized dot, 4-token and 2x4 variant and packed kernel on random
 * blocks, the largest quants and scales among them.
 */
static void
test_same_bits(const qwen_kernels *a, const qwen_kernels *b)
{
    static const int qtypes[] = { QWEN_TYPE_Q8_0, QWEN_TYPE_Q4_K, QWEN_TYPE_Q6_K };
    const int64_t    n = 768;
    const int        nr = QWEN_PACK_MULTI_MAX * QWEN_PACK_ROWS;
    size_t           t, j;
    int              trial, r, nt, differ = 0, calls = 0;
    int64_t          i;
    float           *x = malloc(4 * n * sizeof(float));
    uint8_t         *wq = malloc(nr * qwen_row_bytes(QWEN_TYPE_F32, n));
    uint8_t         *packed = malloc(nr * qwen_row_bytes(QWEN_TYPE_F32, n));
    char            *acts = malloc(4 * qwen_row_bytes(QWEN_TYPE_F32, n));

    for (t = 0; t < sizeof(qtypes) / sizeof(qtypes[0]); t++) {
        int    type = qtypes[t], act = qwen_act_type(type);
        size_t rb = qwen_row_bytes(type, n), stride = qwen_act_row_bytes(type, n);
        size_t gb = qwen_packed_group_bytes(type, n);

        for (trial = 0; trial < 6; trial++) {
            float oa[4 * QWEN_PACK_MULTI_MAX * QWEN_PACK_ROWS];
            float ob[4 * QWEN_PACK_MULTI_MAX * QWEN_PACK_ROWS];
            int   extreme = trial >= 4;

            for (j = 0; j < nr * rb; j++) {
                wq[j] = extreme ? (trial == 4 ? 0x81 : 0x7F) : (uint8_t) (frand() * 128.0f + 128.0f);
            }
            for (i = 0; i < nr * n / qwen_type_block_size(type); i++) {
                uint8_t  *blk = wq + i * qwen_type_block_bytes(type);
                qwen_f16 d = qwen_f32_to_f16(0.01f * (frand() + 1.0f));

                memcpy(blk + (type == QWEN_TYPE_Q8_0   ? offsetof(block_q8_0, d)
                              : type == QWEN_TYPE_Q4_K ? offsetof(block_q4_K, d)
                                                       : offsetof(block_q6_K, d)),
                       &d, sizeof(d));
                if (type == QWEN_TYPE_Q4_K) {
                    memcpy(blk + offsetof(block_q4_K, dmin), &d, sizeof(d));
                }
                if (type == QWEN_TYPE_Q8_0) {
                    /* -127 .. 127, as Q8_0 quantizers emit */
                    for (j = offsetof(block_q8_0, qs); j < sizeof(block_q8_0); j++) {
                        blk[j] = blk[j] == 0x80 ? 0x81 : blk[j];
                    }
                }
            }
            for (i = 0; i < 4 * n; i++) {
                /* the last trial: every activation at its block's maximum */
                x[i] = extreme ? (i % 2 ? -1.0f : 1.0f) : frand();
            }
            for (r = 0; r < 4; r++) {
                a->quantize_act(act, x + r * n, acts + r * stride, n);
            }
            calls++;
            oa[0] = a->vec_dot[type](n, wq, acts);
            ob[0] = b->vec_dot[type](n, wq, acts);
            differ += memcmp(oa, ob, sizeof(float)) != 0;
            if (a->vec_dot4[type] != NULL || b->vec_dot4[type] != NULL) {
                calls++;
                a->vec_dot4[type](n, wq, acts, stride, oa);
                b->vec_dot4[type](n, wq, acts, stride, ob);
                differ += memcmp(oa, ob, 4 * sizeof(float)) != 0;
            }
            if (a->vec_dot2x4[type] != NULL || b->vec_dot2x4[type] != NULL) {
                calls++;
                a->vec_dot2x4[type](n, wq, rb, acts, stride, oa);
                b->vec_dot2x4[type](n, wq, rb, acts, stride, ob);
                differ += memcmp(oa, ob, 8 * sizeof(float)) != 0;
            }
            if (a->packed_dot[type] == NULL && b->packed_dot[type] == NULL) {
                continue;
            }
            for (r = 0; r < nr / QWEN_PACK_ROWS; r++) {
                qwen_pack_group(type, wq + (size_t) r * QWEN_PACK_ROWS * rb, rb, n, packed + r * gb);
            }
            for (nt = 1; nt <= 4; nt++) {
                calls++;
                a->packed_dot[type](n, packed, acts, stride, nt, oa);
                b->packed_dot[type](n, packed, acts, stride, nt, ob);
                differ += memcmp(oa, ob, (size_t) nt * QWEN_PACK_ROWS * sizeof(float)) != 0;
            }
            if (a->packed_dot_multi[type] != NULL || b->packed_dot_multi[type] != NULL) {
                int ng = a->packed_dot_multi_groups[type];
                int fits = ng == b->packed_dot_multi_groups[type] && ng * QWEN_PACK_ROWS <= nr;

                calls++;
                differ += !fits;
                if (fits) {
                    a->packed_dot_multi[type](n, packed, gb, acts, oa);
                    b->packed_dot_multi[type](n, packed, gb, acts, ob);
                    differ += memcmp(oa, ob, (size_t) ng * QWEN_PACK_ROWS * sizeof(float)) != 0;
                }
            }
        }
    }
    CHECK(differ == 0 && calls > 0, "%s and %s: %d of %d quantized kernel calls differ in bits",
          a->name, b->name, differ, calls);
    if (differ == 0) {
        printf("%s and %s: the same bits in %d quantized kernel calls\n", a->name, b->name, calls);
    }
    free(x);
    free(wq);
    free(packed);
    free(acts);
}

/* Names, sizes and availability of the formats. */
static void
test_kv_format_names(void)
{
    static const char *names[] = { "f32", "f16", "bf16", "q8_0" };
    int                id;

    for (id = 0; id < QWEN_KV_FORMAT_COUNT; id++) {
        CHECK(strcmp(qwen_kv_format_name(id), names[id]) == 0
              && qwen_kv_format_id(names[id]) == id, "KV format %d is %s", id, names[id]);
    }
    CHECK(qwen_kv_format_id("int3") == -1 && qwen_kv_format_id(NULL) == -1
          && qwen_kv_format_id("auto") == -1 && qwen_kv_format_name(QWEN_KV_FORMAT_COUNT) == NULL,
          "unknown KV format names");
    /* Qwen3's heads: 512, 256, 256 and 136 bytes a position (q8_0: 128
     * values and 4 f16 scales, 53% of f16) */
    CHECK(qwen_kv_pos_bytes(QWEN_KV_F32, 128) == 512 && qwen_kv_pos_bytes(QWEN_KV_F16, 128) == 256
          && qwen_kv_pos_bytes(QWEN_KV_BF16, 128) == 256
          && qwen_kv_pos_bytes(QWEN_KV_Q8_0, 128) == 136, "bytes per position");
    CHECK(qwen_kv_format_available(NULL) && qwen_kv_format_available("auto")
          && qwen_kv_format_available("f32") && qwen_kv_format_available("f16")
          && qwen_kv_format_available("q8_0") && !qwen_kv_format_available("int3")
          && !qwen_kv_format_available("")
          && qwen_kv_format_available("bf16")
             == (qwen_kernels_best()->kv_store[QWEN_KV_BF16] != NULL),
          "qwen_kv_format_available");
}

int
main(void)
{
    static const char *names[] = { "scalar", "avx2", "avx2_vnni", "avx512", "avx512_vnni",
                                   "neon", "neon_dotprod", "neon_i8mm", "neon_bf16" };
    const qwen_kernels *k;
    const char         *expect;
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
        test_elementwise(k);
        if (k->gemm != NULL) {
            test_gemm(k, 512);
        }
        test_kv_formats(k);
        tested++;
    }
    /* edge cases, after the tests above so their random data stays as it was */
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        k = qwen_kernels_by_name(names[i]);
        if (k != NULL) {
            test_random_blocks(k);
            test_packed(k);
            test_packed_gemm_long(k);
            test_quantize_act(k);
            test_float_tails(k);
            test_f16_conversion(k);
            if (k->gemm != NULL) {
                test_gemm(k, 262);   /* K % 4 == 2: the tails of pair and quad tiles */
            }
        }
    }
    if (qwen_kernels_available("avx2") && qwen_kernels_available("avx2_vnni")) {
        test_same_bits(qwen_kernels_by_name("avx2"), qwen_kernels_by_name("avx2_vnni"));
    }
    /* avx512_vnni's quantized kernels are avx512's, or avx2_vnni's packed
     * dots where those were faster: the same bits either way (both run
     * under SIMDe, mk/x86emu.mk, on any x86 machine) */
    if (qwen_kernels_available("avx512") && qwen_kernels_available("avx512_vnni")) {
        test_same_bits(qwen_kernels_by_name("avx512"), qwen_kernels_by_name("avx512_vnni"));
    }
    test_kv_format_names();
    CHECK(tested >= 1, "no kernel table ran");
    CHECK(strcmp(qwen_kernels_best()->name, "scalar") == 0 || tested >= 2,
          "the best table must be one of the tested ones");
    CHECK(qwen_kernels_by_name("no-such-table") == NULL, "unknown table names give NULL");
    /* QWEN_EXPECT_KERNELS=name: the dispatcher must pick exactly that table
     * (make test-arm64 sets it for each emulated CPU model) */
    expect = getenv("QWEN_EXPECT_KERNELS");
    if (expect != NULL && *expect != '\0') {
        printf("kernels best: %s (expected %s)\n", qwen_kernels_best()->name, expect);
        CHECK(strcmp(qwen_kernels_best()->name, expect) == 0, "dispatch chose %s, expected %s",
              qwen_kernels_best()->name, expect);
        CHECK(qwen_kernels_by_name(expect) == qwen_kernels_best(), "%s by name", expect);
    }
    TEST_MAIN_END();
}
