/*
 * test_quant.c - tests of quant.c: block sizes, f16/bf16 conversion edge
 * cases (and an exhaustive check against the compiler's _Float16 where it
 * has one), hand-built blocks whose dequantized values are known exactly,
 * and round-trip error bounds on random data for every type.
 */
#include "quant.h"
#include "test.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(void)   /* [0, 1) */
{
    return (rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_normal(void)
{
    double u1 = rng_uniform(), u2 = rng_uniform();
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

static float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* RMS of the round-trip error relative to the RMS of the data. */
static double rel_rms_error(int type, const float *x, int64_t n)
{
    void *q = malloc(qwen_row_bytes(type, n));
    float *y = malloc((size_t)n * sizeof *y);
    if (!q || !y) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    qwen_quantize_row(type, x, q, n);
    qwen_dequantize_row(type, q, y, n);
    double se = 0, sx = 0;
    for (int64_t i = 0; i < n; i++) {
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        sx += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return sx > 0 ? sqrt(se / sx) : sqrt(se);
}

/* ------------------------------------------------------------- sizes */

static void test_sizes(void)
{
    CHECK(sizeof(block_q8_0) == 34, "q8_0 %zu", sizeof(block_q8_0));
    CHECK(sizeof(block_q4_K) == 144, "q4_K %zu", sizeof(block_q4_K));
    CHECK(sizeof(block_q6_K) == 210, "q6_K %zu", sizeof(block_q6_K));
    CHECK(sizeof(block_q8_K) == 292, "q8_K %zu", sizeof(block_q8_K));

    static const struct { int type, bs; size_t bytes; int sup; } t[] = {
        { QWEN_TYPE_F32, 1, 4, 1 },     { QWEN_TYPE_F16, 1, 2, 1 },
        { QWEN_TYPE_BF16, 1, 2, 1 },    { QWEN_TYPE_Q8_0, 32, 34, 1 },
        { QWEN_TYPE_Q4_K, 256, 144, 1 }, { QWEN_TYPE_Q6_K, 256, 210, 1 },
        { QWEN_TYPE_Q8_K, 256, 292, 0 }, { 2, 0, 0, 0 }, { 13, 0, 0, 0 },
        { -1, 0, 0, 0 },                { QWEN_TYPE_COUNT, 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        CHECK(qwen_type_block_size(t[i].type) == t[i].bs, "type %d", t[i].type);
        CHECK(qwen_type_block_bytes(t[i].type) == t[i].bytes, "type %d", t[i].type);
        CHECK(qwen_type_supported(t[i].type) == t[i].sup, "type %d", t[i].type);
    }
    CHECK(qwen_row_bytes(QWEN_TYPE_BF16, 1024) == 2048, "bf16 row");
    CHECK(qwen_row_bytes(QWEN_TYPE_Q8_0, 1024) == 32 * 34, "q8_0 row");
    CHECK(qwen_row_bytes(QWEN_TYPE_Q4_K, 3072) == 12 * 144, "q4_K row");
    CHECK(qwen_row_bytes(QWEN_TYPE_Q6_K, 1024) == 4 * 210, "q6_K row");
    CHECK(qwen_row_bytes(QWEN_TYPE_Q4_K, 64) == 0, "partial block row");
    CHECK(qwen_row_bytes(12345, 256) == 0, "unknown type row");
}

/* ------------------------------------------------------- conversions */

static void test_f16(void)
{
    static const struct { float f; uint16_t h; } exact[] = {
        { 0.0f, 0x0000 }, { -0.0f, 0x8000 }, { 1.0f, 0x3c00 }, { -2.0f, 0xc000 },
        { 0.5f, 0x3800 }, { 65504.0f, 0x7bff }, { -65504.0f, 0xfbff },
        { 6.103515625e-05f, 0x0400 },           /* 2^-14, smallest normal */
        { 5.9604644775390625e-08f, 0x0001 },    /* 2^-24, smallest subnormal */
        { 6.0975551605224609e-05f, 0x03ff },    /* largest subnormal */
        { INFINITY, 0x7c00 }, { -INFINITY, 0xfc00 },
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        CHECK(qwen_f32_to_f16(exact[i].f) == exact[i].h, "%g -> %04x",
              exact[i].f, qwen_f32_to_f16(exact[i].f));
        CHECK(bits_of(qwen_f16_to_f32(exact[i].h)) == bits_of(exact[i].f),
              "%04x -> %g", exact[i].h, qwen_f16_to_f32(exact[i].h));
    }

    /* Rounding: to nearest, ties to even, in normal and subnormal ranges. */
    CHECK(qwen_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie to even (down)");
    CHECK(qwen_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie to even (up)");
    CHECK(qwen_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01, "above tie");
    CHECK(qwen_f32_to_f16(65519.0f) == 0x7bff, "65519 stays finite");
    CHECK(qwen_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds to inf");
    CHECK(qwen_f32_to_f16(1e10f) == 0x7c00, "overflow to inf");
    CHECK(qwen_f32_to_f16(-1e10f) == 0xfc00, "overflow to -inf");
    CHECK(qwen_f32_to_f16(0x1p-25f) == 0x0000, "2^-25 ties to 0");
    CHECK(qwen_f32_to_f16(-0x1p-25f) == 0x8000, "-2^-25 ties to -0");
    CHECK(qwen_f32_to_f16(0x1.8p-25f) == 0x0001, "1.5 * 2^-25 -> 1 ulp");
    CHECK(qwen_f32_to_f16(0x1.8p-24f) == 0x0002, "1.5 ulp ties to 2");
    CHECK(qwen_f32_to_f16(0x1.4p-24f) == 0x0001, "1.25 ulp -> 1");
    CHECK(qwen_f32_to_f16(0x1p-30f) == 0x0000, "underflow to 0");
    CHECK(qwen_f32_to_f16(FLT_MIN) == 0x0000, "FLT_MIN to 0");
    CHECK(qwen_f32_to_f16(0x1.ff8p-15f) == 0x03ff, "largest subnormal");
    CHECK(qwen_f32_to_f16(0x1.ffbp-15f) == 0x03ff, "below the last tie");
    CHECK(qwen_f32_to_f16(0x1.ffcp-15f) == 0x0400, "last tie goes to min normal");
    CHECK(qwen_f32_to_f16(0x1.ffffffp-15f) == 0x0400, "just below min normal");

    /* NaN stays NaN (quiet), whatever its payload. */
    uint32_t nans[] = { 0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu };
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = qwen_f32_to_f16(f32_of(nans[i]));
        CHECK((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0, "nan %08x -> %04x",
              nans[i], h);
        CHECK((h & 0x8000) == ((nans[i] >> 16) & 0x8000), "nan sign %04x", h);
    }
    CHECK(isnan(qwen_f16_to_f32(0x7e00)) && isnan(qwen_f16_to_f32(0xfc01)),
          "f16 nan to f32");

    /* Every non-NaN half survives f16 -> f32 -> f16. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue;
        if (qwen_f32_to_f16(qwen_f16_to_f32((uint16_t)h)) != h)
            bad++;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);

#if defined(__FLT16_MAX__) && !defined(QWEN_NO_FLOAT16)
    /* Against the compiler's IEEE conversion on many float bit patterns:
     * every exponent, random mantissas, plus near-tie patterns. */
    int mismatch = 0;
    for (int i = 0; i < 4000000; i++) {
        uint32_t u = (uint32_t)rng_next();
        if (i & 1)                        /* put bits near the tie point */
            u = (u & 0xffffe000u) | ((i & 2) ? 0x1000u : 0x0fffu);
        float f = f32_of(u);
        if (isnan(f))
            continue;
        _Float16 r = (_Float16)f;
        uint16_t want;
        memcpy(&want, &r, 2);
        if (qwen_f32_to_f16(f) != want && mismatch++ < 5)
            fprintf(stderr, "f16 mismatch %08x: %04x want %04x\n", u,
                    qwen_f32_to_f16(f), want);
        _Float16 hv;
        memcpy(&hv, &want, 2);
        if (bits_of(qwen_f16_to_f32(want)) != bits_of((float)hv) && mismatch++ < 5)
            fprintf(stderr, "f16->f32 mismatch %04x\n", want);
    }
    CHECK(mismatch == 0, "%d mismatches against _Float16", mismatch);
#endif
}

static void test_bf16(void)
{
    CHECK(qwen_f32_to_bf16(1.0f) == 0x3f80, "1.0");
    CHECK(qwen_f32_to_bf16(-2.0f) == 0xc000, "-2.0");
    CHECK(qwen_f32_to_bf16(0.0f) == 0x0000 && qwen_f32_to_bf16(-0.0f) == 0x8000, "zeros");
    CHECK(qwen_f32_to_bf16(INFINITY) == 0x7f80 && qwen_f32_to_bf16(-INFINITY) == 0xff80, "inf");
    CHECK(qwen_f32_to_bf16(f32_of(0x3f808000u)) == 0x3f80, "tie to even (down)");
    CHECK(qwen_f32_to_bf16(f32_of(0x3f818000u)) == 0x3f82, "tie to even (up)");
    CHECK(qwen_f32_to_bf16(f32_of(0x3f808001u)) == 0x3f81, "above tie");
    CHECK(qwen_f32_to_bf16(f32_of(0x3f807fffu)) == 0x3f80, "below tie");
    CHECK(qwen_f32_to_bf16(FLT_MAX) == 0x7f80, "FLT_MAX rounds to inf");
    CHECK(qwen_f32_to_bf16(f32_of(0x7f7f7fffu)) == 0x7f7f, "largest finite stays");
    CHECK(qwen_f32_to_bf16(f32_of(0x00018000u)) == 0x0002, "subnormal tie to even");
    CHECK(qwen_f32_to_bf16(f32_of(0x00010001u)) == 0x0001, "subnormal rounds");
    uint32_t nans[] = { 0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7f80ffffu };
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = qwen_f32_to_bf16(f32_of(nans[i]));
        CHECK((h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0, "nan %08x -> %04x", nans[i], h);
    }
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
            continue;
        if (qwen_f32_to_bf16(qwen_bf16_to_f32((uint16_t)h)) != h)
            bad++;
        if (bits_of(qwen_bf16_to_f32((uint16_t)h)) != h << 16)
            bad++;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
}

/* ------------------------------------------------- hand-built blocks */

static void test_q8_0_known(void)
{
    /* d = 31.75 / 127 = 0.25 exactly; every value is a multiple of it. */
    float x[QK8_0];
    for (int i = 0; i < QK8_0; i++)
        x[i] = 0.25f * (float)((i * 37) % 255 - 127);
    x[5] = -31.75f;
    block_q8_0 b;
    qwen_quantize_row_q8_0(x, &b, QK8_0);
    CHECK(b.d == 0x3400, "d %04x", b.d);
    CHECK(b.qs[5] == -127, "qs[5] %d", b.qs[5]);
    CHECK(b.qs[1] == 37 - 127, "qs[1] %d", b.qs[1]);
    float y[QK8_0];
    qwen_dequantize_row(QWEN_TYPE_Q8_0, &b, y, QK8_0);
    CHECK(memcmp(x, y, sizeof x) == 0, "exact round trip");

    /* Zero block: d = 0 and zeros back, no NaN. */
    memset(x, 0, sizeof x);
    qwen_quantize_row_q8_0(x, &b, QK8_0);
    qwen_dequantize_row(QWEN_TYPE_Q8_0, &b, y, QK8_0);
    CHECK(b.d == 0 && y[0] == 0.0f && y[31] == 0.0f, "zero block");
}

/* Independent reading of the Q4_K layout, written from the format's
 * description rather than from quant.c. */
static void q4k_reference(const block_q4_K *b, float *y)
{
    float d = qwen_f16_to_f32(b->d), dmin = qwen_f16_to_f32(b->dmin);
    for (int v = 0; v < QK_K; v++) {
        int j = v / 32;                     /* sub-block */
        int sc, m;
        const uint8_t *q = b->scales;
        if (j < 4) { sc = q[j] & 63; m = q[j + 4] & 63; }
        else {
            sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            m  = (q[j + 4] >> 4)  | ((q[j] >> 6) << 4);
        }
        int chunk = v / 64, in = v % 64;
        uint8_t byte = b->qs[chunk * 32 + in % 32];
        int l = in < 32 ? (byte & 0xF) : (byte >> 4);
        y[v] = d * sc * l - dmin * m;
    }
}

static void test_q4_K_known(void)
{
    /* Sub-block scales 63, 1, 17, 40, 5, 33, 62, 48 and mins 0, 63, 7, 12,
     * 31, 2, 50, 63 (high bits exercised for j >= 4); d = 1/64 and
     * dmin = 1/32 are exact halves. Each sub-block holds 0 and 15 so that a
     * least-squares fit recovers the grid exactly. */
    static const int scs[8] = { 63, 1, 17, 40, 5, 33, 62, 48 };
    static const int mns[8] = { 0, 63, 7, 12, 31, 2, 50, 63 };
    block_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = qwen_f32_to_f16(1.0f / 64);
    b.dmin = qwen_f32_to_f16(1.0f / 32);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            b.scales[j] |= (uint8_t)scs[j];
            b.scales[j + 4] |= (uint8_t)mns[j];
        } else {
            b.scales[j + 4] = (uint8_t)((scs[j] & 0xF) | ((mns[j] & 0xF) << 4));
            b.scales[j - 4] |= (uint8_t)((scs[j] >> 4) << 6);
            b.scales[j] |= (uint8_t)((mns[j] >> 4) << 6);
        }
    }
    int L[QK_K];
    for (int v = 0; v < QK_K; v++)
        L[v] = (v % 32 == 0) ? 0 : (v % 32 == 1) ? 15 : (v * 7 + v / 32) % 16;
    for (int v = 0; v < QK_K; v++) {
        int chunk = v / 64, in = v % 64;
        b.qs[chunk * 32 + in % 32] |= (uint8_t)(in < 32 ? L[v] : L[v] << 4);
    }

    float want[QK_K], got[QK_K];
    q4k_reference(&b, want);
    qwen_dequantize_row(QWEN_TYPE_Q4_K, &b, got, QK_K);
    CHECK(memcmp(want, got, sizeof got) == 0, "dequantize matches the layout");
    /* Spot values computed by hand: v = 0 is sub-block 0, L = 0, min 0. */
    CHECK(got[0] == 0.0f, "got[0] %g", got[0]);
    /* v = 33: sub-block 1 (sc 1, m 63), L = 15: 15/64 - 63/32. */
    CHECK(got[33] == 15.0f / 64 - 63.0f / 32, "got[33] %g", got[33]);
    /* v = 225: sub-block 7 (sc 48, m 63), L = 15: 48*15/64 - 63/32. */
    CHECK(got[225] == 48.0f * 15 / 64 - 63.0f / 32, "got[225] %g", got[225]);

    /* Quantizing exactly representable values gives them back exactly. */
    block_q4_K b2;
    qwen_quantize_row_q4_K(got, &b2, QK_K);
    float back[QK_K];
    qwen_dequantize_row(QWEN_TYPE_Q4_K, &b2, back, QK_K);
    int diff = 0;
    for (int v = 0; v < QK_K; v++)
        diff += back[v] != got[v];
    CHECK(diff == 0, "%d values differ after re-quantizing an exact block", diff);
    CHECK(memcmp(&b, &b2, sizeof b) == 0, "re-quantized block has the same bytes");

    /* All-positive data: the min must clamp to 0, never go negative. */
    float pos[QK_K], posy[QK_K];
    for (int v = 0; v < QK_K; v++)
        pos[v] = 1.0f + (float)(v % 13) / 4;
    qwen_quantize_row_q4_K(pos, &b2, QK_K);
    qwen_dequantize_row(QWEN_TYPE_Q4_K, &b2, posy, QK_K);
    double err = 0;
    for (int v = 0; v < QK_K; v++)
        err = fmax(err, fabs(posy[v] - pos[v]));
    CHECK(err < 0.25, "positive block max error %g", err);
}

static void q6k_reference(const block_q6_K *b, float *y)
{
    float d = qwen_f16_to_f32(b->d);
    for (int v = 0; v < QK_K; v++) {
        int half = v / 128, in = v % 128, quarter = in / 32, l = in % 32;
        const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
        int lo = (quarter & 1) ? ql[l + 32] : ql[l];
        lo = (quarter & 2) ? lo >> 4 : lo & 0xF;
        int hi = (qh[l] >> (2 * quarter)) & 3;
        int sc = b->scales[8 * half + 2 * quarter + l / 16];
        y[v] = d * sc * ((lo | (hi << 4)) - 32);
    }
}

static void test_q6_K_known(void)
{
    /* d = -1/16 and negative int8 scales (-128 is the largest, as the
     * quantizer writes them); each sub-block holds q = -32 so the fit's
     * anchor element is exact. */
    block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = qwen_f32_to_f16(-1.0f / 16);
    static const int8_t scs[16] = { -128, -64, -32, -16, -8, -4, -2, -1,
                                    -96, -48, -24, -12, -6, -3, -112, -80 };
    memcpy(b.scales, scs, sizeof scs);
    int Q[QK_K];
    for (int v = 0; v < QK_K; v++)
        Q[v] = (v % 16 == 3) ? -32 : (v * 11 + v / 16) % 64 - 32;
    for (int v = 0; v < QK_K; v++) {
        int half = v / 128, in = v % 128, quarter = in / 32, l = in % 32;
        int u = Q[v] + 32;
        uint8_t *ql = b.ql + 64 * half, *qh = b.qh + 32 * half;
        ql[(quarter & 1) ? l + 32 : l] |= (uint8_t)((quarter & 2) ? (u & 0xF) << 4 : (u & 0xF));
        qh[l] |= (uint8_t)((u >> 4) << (2 * quarter));
    }

    float want[QK_K], got[QK_K];
    q6k_reference(&b, want);
    qwen_dequantize_row(QWEN_TYPE_Q6_K, &b, got, QK_K);
    CHECK(memcmp(want, got, sizeof got) == 0, "dequantize matches the layout");
    /* v = 3: sub-block 0, q = -32: (-1/16) * (-128) * (-32) = -256. */
    CHECK(got[3] == -256.0f, "got[3] %g", got[3]);
    /* v = 200: sub-block 12 (scale -6), q = (2200 + 12) % 64 - 32 = 4. */
    CHECK(got[200] == -1.0f / 16 * -6 * 4, "got[200] %g", got[200]);

    block_q6_K b2;
    qwen_quantize_row_q6_K(got, &b2, QK_K);
    float back[QK_K];
    qwen_dequantize_row(QWEN_TYPE_Q6_K, &b2, back, QK_K);
    int diff = 0;
    for (int v = 0; v < QK_K; v++)
        diff += back[v] != got[v];
    CHECK(diff == 0, "%d values differ after re-quantizing an exact block", diff);
    CHECK(memcmp(&b, &b2, sizeof b) == 0, "re-quantized block has the same bytes");
}

static void test_q8_K_known(void)
{
    float x[QK_K];
    for (int v = 0; v < QK_K; v++)
        x[v] = 0.5f * (float)((v * 29) % 255 - 127);
    block_q8_K b;
    qwen_quantize_row_q8_K(x, &b, QK_K);
    CHECK(b.d == 0.5f, "d %g", b.d);
    int bad = 0;
    for (int v = 0; v < QK_K; v++)
        bad += b.qs[v] != (v * 29) % 255 - 127;
    CHECK(bad == 0, "%d quants wrong", bad);
    for (int g = 0; g < QK_K / 16; g++) {
        int s = 0;
        for (int i = 0; i < 16; i++)
            s += (16 * g + i) * 29 % 255 - 127;
        CHECK(b.bsums[g] == s, "bsums[%d] %d want %d", g, b.bsums[g], s);
    }
    float y[QK_K];
    qwen_dequantize_row(QWEN_TYPE_Q8_K, &b, y, QK_K);
    CHECK(memcmp(x, y, sizeof x) == 0, "exact round trip");

    memset(x, 0, sizeof x);
    qwen_quantize_row_q8_K(x, &b, QK_K);
    CHECK(b.d == 0.0f && b.qs[7] == 0 && b.bsums[3] == 0, "zero block");
}

/* ------------------------------------------------ random round trips */

static void test_round_trip(void)
{
    enum { N = 256 * 512 };
    float *x = malloc(N * sizeof *x);
    if (!x) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    /* Gaussian weights with a per-row scale spread over 1e-3..10, as in a
     * real checkpoint. Bounds are relative RMS error (||y-x|| / ||x||):
     * about step/sqrt(12)/sigma for each format, with margin:
     *   f16 2^-11/sqrt(3) -> 4e-4, bf16 2^-8/sqrt(3) -> 3e-3,
     *   q8_0 (32 values, amax ~2.1 sigma) ~5e-3 -> 8e-3,
     *   q8_K (256 values, amax ~2.9 sigma) ~7e-3 -> 1e-2,
     *   q6_K ~2e-2 -> 3e-2, q4_K ~8e-2 -> 0.1. */
    for (int r = 0; r < N / 1024; r++) {
        double s = pow(10.0, -3.0 + 4.0 * rng_uniform());
        for (int i = 0; i < 1024; i++)
            x[r * 1024 + i] = (float)(s * rng_normal());
    }
    static const struct { int type; const char *name; double bound; } t[] = {
        { QWEN_TYPE_F32, "f32", 0.0 },     { QWEN_TYPE_F16, "f16", 4e-4 },
        { QWEN_TYPE_BF16, "bf16", 3e-3 },  { QWEN_TYPE_Q8_0, "q8_0", 8e-3 },
        { QWEN_TYPE_Q8_K, "q8_K", 1e-2 },  { QWEN_TYPE_Q6_K, "q6_K", 3e-2 },
        { QWEN_TYPE_Q4_K, "q4_K", 0.1 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        double e = rel_rms_error(t[i].type, x, N);
        printf("  %-5s gaussian relative rms error %.5f (bound %g)\n",
               t[i].name, e, t[i].bound);
        CHECK(e <= t[i].bound, "%s error %g > %g", t[i].name, e, t[i].bound);
    }

    /* Uniform data in [-1.5, -0.5]: Q4_K's min term has to do real work;
     * step ~ range/15 ~ 0.063, rms ~ step/sqrt(12) ~ 0.018 of rms(x) 1.04.
     * In [0.5, 1.5] the offset cannot be positive, so the grid spans
     * [0, 1.5]: step 0.1, relative rms ~0.028. Q6_K, symmetric, has step
     * 1.5/32: relative rms ~0.013. */
    for (int i = 0; i < N; i++)
        x[i] = (float)(-0.5 - rng_uniform());
    double e = rel_rms_error(QWEN_TYPE_Q4_K, x, N);
    CHECK(e < 0.021, "q4_K negative-offset uniform error %g", e);
    for (int i = 0; i < N; i++)
        x[i] = (float)(0.5 + rng_uniform());
    e = rel_rms_error(QWEN_TYPE_Q4_K, x, N);
    CHECK(e < 0.032, "q4_K positive-offset uniform error %g", e);
    e = rel_rms_error(QWEN_TYPE_Q6_K, x, N);
    CHECK(e < 0.015, "q6_K positive-offset uniform error %g", e);

    /* Per-element bound for Q8_0: half a step plus 127 times the f16
     * rounding of d (2^-11 relative): 0.5 + 127 / 2048 < 0.57 steps. */
    for (int i = 0; i < N; i++)
        x[i] = (float)rng_normal();
    block_q8_0 *q = malloc(N / QK8_0 * sizeof *q);
    float *y = malloc(N * sizeof *y);
    if (!q || !y) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    qwen_quantize_row_q8_0(x, q, N);
    qwen_dequantize_row(QWEN_TYPE_Q8_0, q, y, N);
    int over = 0;
    for (int i = 0; i < N; i++) {
        float d = qwen_f16_to_f32(q[i / QK8_0].d);
        if (fabsf(y[i] - x[i]) > 0.57f * d)
            over++;
    }
    CHECK(over == 0, "%d q8_0 values beyond half a step", over);

    /* Sparse rows (mostly zeros, a few spikes) and all-zero rows: no NaN,
     * zeros stay zero for the symmetric types. */
    memset(x, 0, N * sizeof *x);
    for (int i = 0; i < N; i += 97)
        x[i] = (i & 1) ? 3.0f : -1.5f;
    static const int qt[] = { QWEN_TYPE_Q8_0, QWEN_TYPE_Q4_K, QWEN_TYPE_Q6_K,
                              QWEN_TYPE_Q8_K };
    void *buf = malloc(qwen_row_bytes(QWEN_TYPE_Q8_K, N));
    if (!buf) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t k = 0; k < sizeof qt / sizeof qt[0]; k++) {
        qwen_quantize_row(qt[k], x, buf, N);
        qwen_dequantize_row(qt[k], buf, y, N);
        int nan = 0, zero_bad = 0;
        for (int i = 0; i < N; i++) {
            nan += isnan(y[i]) != 0;
            if (x[i] == 0.0f && qt[k] != QWEN_TYPE_Q4_K && y[i] != 0.0f)
                zero_bad++;
        }
        CHECK(nan == 0 && zero_bad == 0, "type %d sparse: %d nan, %d zeros moved",
              qt[k], nan, zero_bad);
        double se = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            se += (y[i] - x[i]) * (y[i] - x[i]);
            sx += x[i] * x[i];
        }
        CHECK(sqrt(se / sx) < 0.1, "type %d sparse error %g", qt[k], sqrt(se / sx));
    }
    memset(x, 0, N * sizeof *x);
    for (size_t k = 0; k < sizeof qt / sizeof qt[0]; k++) {
        qwen_quantize_row(qt[k], x, buf, N);
        qwen_dequantize_row(qt[k], buf, y, N);
        int nonzero = 0;
        for (int i = 0; i < N; i++)
            nonzero += y[i] != 0.0f;
        CHECK(nonzero == 0, "type %d zero row: %d nonzero", qt[k], nonzero);
    }

    /* Unsupported types: dequantize fills NaN so misuse is visible. */
    qwen_dequantize_row(2, buf, y, 4);
    CHECK(isnan(y[0]) && isnan(y[3]), "unsupported type gives NaN");

    free(buf);
    free(q);
    free(y);
    free(x);
}

int main(void)
{
    test_sizes();
    test_f16();
    test_bf16();
    test_q8_0_known();
    test_q4_K_known();
    test_q6_K_known();
    test_q8_K_known();
    test_round_trip();
    TEST_MAIN_END();
}
