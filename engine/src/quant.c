/*
 * quant.c - scalar reference for the element types of quant.h: sizes,
 * IEEE half / bfloat16 conversions, and quantize / dequantize of rows in
 * GGML's bit layouts (Q8_0, Q4_K, Q6_K, Q8_K), so GGUF files written by
 * llama.cpp load as they are and files we write load in llama.cpp.
 */
#include "quant.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------- sizes */

int qwen_type_block_size(int type)
{
    switch (type) {
    case QWEN_TYPE_F32:
    case QWEN_TYPE_F16:
    case QWEN_TYPE_BF16: return 1;
    case QWEN_TYPE_Q8_0: return QK8_0;
    case QWEN_TYPE_Q4_K:
    case QWEN_TYPE_Q6_K:
    case QWEN_TYPE_Q8_K: return QK_K;
    default:             return 0;
    }
}

size_t qwen_type_block_bytes(int type)
{
    switch (type) {
    case QWEN_TYPE_F32:  return sizeof(float);
    case QWEN_TYPE_F16:  return sizeof(qwen_f16);
    case QWEN_TYPE_BF16: return sizeof(qwen_bf16);
    case QWEN_TYPE_Q8_0: return sizeof(block_q8_0);
    case QWEN_TYPE_Q4_K: return sizeof(block_q4_K);
    case QWEN_TYPE_Q6_K: return sizeof(block_q6_K);
    case QWEN_TYPE_Q8_K: return sizeof(block_q8_K);
    default:             return 0;
    }
}

size_t qwen_row_bytes(int type, int64_t n)
{
    int bs = qwen_type_block_size(type);
    if (bs == 0 || n < 0 || n % bs != 0)
        return 0;
    return (size_t)(n / bs) * qwen_type_block_bytes(type);
}

int qwen_type_supported(int type)
{
    /* Q8_K is only an activation format: no weight is stored in it. */
    switch (type) {
    case QWEN_TYPE_F32: case QWEN_TYPE_F16: case QWEN_TYPE_BF16:
    case QWEN_TYPE_Q8_0: case QWEN_TYPE_Q4_K: case QWEN_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

/* Tensor type names as GGUF spells them. */
const char *qwen_type_name(int type)
{
    switch (type) {
    case QWEN_TYPE_F32:  return "F32";
    case QWEN_TYPE_F16:  return "F16";
    case QWEN_TYPE_BF16: return "BF16";
    case QWEN_TYPE_Q8_0: return "Q8_0";
    case QWEN_TYPE_Q4_K: return "Q4_K";
    case QWEN_TYPE_Q6_K: return "Q6_K";
    case QWEN_TYPE_Q8_K: return "Q8_K";
    case 2:  return "Q4_0";
    case 3:  return "Q4_1";
    case 6:  return "Q5_0";
    case 7:  return "Q5_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K";
    case 13: return "Q5_K";
    default: return "unknown";
    }
}

/* ------------------------------------------------------- conversions */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float qwen_f16_to_f32(qwen_f16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp  = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;

    if (exp == 0x1f)                        /* inf / NaN (payload kept) */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp != 0)                           /* normal: rebias 15 -> 127 */
        return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0)
        return bits_f32(sign);
    /* Subnormal half: every one is a normal float; shift the leading 1
     * into the implicit position. */
    exp = 113;
    while (!(mant & 0x400)) {
        mant <<= 1;
        exp--;
    }
    return bits_f32(sign | (exp << 23) | ((mant & 0x3ff) << 13));
}

qwen_f16 qwen_f32_to_f16(float f)
{
    uint32_t x    = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax   = x & 0x7fffffffu;

    if (ax > 0x7f800000u)                   /* NaN: keep it a quiet NaN */
        return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x1ff);
    /* 65520 is halfway between 65504 (odd mantissa) and 2^16: ties go up. */
    if (ax >= 0x477ff000u)
        return sign | 0x7c00;
    if (ax >= 0x38800000u) {                /* normal half (>= 2^-14) */
        /* Round to nearest even on the 13 dropped bits; a carry out of
         * the mantissa correctly bumps the exponent. */
        uint32_t r = ax + 0xfffu + ((ax >> 13) & 1);
        return sign | (uint16_t)((r - (112u << 23)) >> 13);
    }
    /* Subnormal half: units of 2^-24. value = m * 2^(e - 150). */
    uint32_t e = ax >> 23;
    if (e < 102)                            /* below 2^-25: rounds to 0 */
        return sign;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;               /* 14..24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q++;                                /* may reach 0x400: min normal */
    return sign | (uint16_t)q;
}

float qwen_bf16_to_f32(qwen_bf16 h)
{
    return bits_f32((uint32_t)h << 16);
}

qwen_bf16 qwen_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    /* Truncating a NaN could leave an all-zero mantissa (= inf). */
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (qwen_bf16)((x >> 16) | 0x0040);
    /* Round to nearest even; overflow past the largest finite goes to
     * inf, subnormals are rounded like any other value (as PyTorch). */
    return (qwen_bf16)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* --------------------------------------------------------------- Q8_0 */

void qwen_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        float amax = 0.0f;
        for (int i = 0; i < QK8_0; i++)
            if (fabsf(x[i]) > amax)
                amax = fabsf(x[i]);
        float d  = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = qwen_f32_to_f16(d);
        for (int i = 0; i < QK8_0; i++)
            y[b].qs[i] = (int8_t)roundf(x[i] * id);
    }
}

static void dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK8_0; b++) {
        float d = qwen_f16_to_f32(x[b].d);
        for (int i = 0; i < QK8_0; i++)
            *y++ = d * x[b].qs[i];
    }
}

/* --------------------------------------------------------------- Q4_K */

/* The 6-bit scale and min of sub-block j as ggml packs them in 12 bytes:
 * sub-blocks 0-3 use the low 6 bits of bytes 0-3 (scales) and 4-7 (mins);
 * sub-blocks 4-7 keep their low 4 bits in the nibbles of bytes 8-11 and
 * their high 2 bits in the top bits of bytes 0-3 (scales) and 4-7 (mins). */
static inline void q4k_get_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m  = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m  = (q[j + 4] >> 4)  | ((q[j] >> 6) << 4);
    }
}

static inline void q4k_set_scale_min(int j, uint8_t *q, int sc, int m)
{
    if (j < 4) {
        q[j]     = (uint8_t)((q[j] & 0xc0) | sc);
        q[j + 4] = (uint8_t)((q[j + 4] & 0xc0) | m);
    } else {
        q[j + 4]  = (uint8_t)((sc & 0xf) | ((m & 0xf) << 4));
        q[j - 4] |= (uint8_t)((sc >> 4) << 6);
        q[j]     |= (uint8_t)((m >> 4) << 6);
    }
}

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/*
 * Fit x[0..n) ~ scale * L - min with L in 0..nmax, scale >= 0, min >= 0
 * (Q4_K cannot store a positive offset). Tries a few grid densities around
 * the plain min/max grid; for each grid the scale and offset are the
 * least-squares solution for the chosen L, and the fit with the smallest
 * squared error wins. Unweighted: it minimises the plain RMS error that the
 * tests measure. Same idea as ggml's make_qkx2_quants, fewer candidates.
 * On Gaussian weights: relative RMS error 0.0726, vs 0.0757 for the plain
 * min/max grid; 7 candidates keep the full model's quantization ~10 s.
 */
static float fit_scale_min(const float *x, int n, int nmax, float *min_out)
{
    float xmin = x[0], xmax = x[0];
    double sx = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < xmin)
            xmin = x[i];
        if (x[i] > xmax)
            xmax = x[i];
        sx  += x[i];
        sxx += (double)x[i] * x[i];
    }
    if (xmin > 0.0f)
        xmin = 0.0f;
    if (xmax <= xmin) {                 /* constant (<= 0) sub-block */
        *min_out = -xmin;
        return 0.0f;
    }

    float best_scale = (xmax - xmin) / nmax, best_off = xmin;
    double best_err = INFINITY;
    static const float steps[] = { 0.0f, -0.5f, 0.5f, -1.0f, 1.0f, 1.5f, 2.0f };
    for (size_t c = 0; c < sizeof steps / sizeof steps[0]; c++) {
        float iscale = (nmax + steps[c]) / (xmax - xmin);
        int sl = 0, sll = 0;
        float sxl = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = clampi((int)rintf(iscale * (x[i] - xmin)), 0, nmax);
            sl  += l;
            sll += l * l;
            sxl += x[i] * (float)l;
        }
        double det = (double)n * sll - (double)sl * sl;
        if (det <= 0)
            continue;
        double s = (n * sxl - sl * sx) / det;
        double b = (sll * sx - sl * sxl) / det;
        if (b > 0) {                    /* offset must be <= 0 */
            b = 0;
            s = sxl / sll;
        }
        if (s <= 0)
            continue;
        /* Squared error of s*L + b from the sums, without a second pass. */
        double err = sxx + s * s * sll + n * b * b + 2 * s * b * sl
                     - 2 * s * sxl - 2 * b * sx;
        if (err < best_err) {
            best_err = err;
            best_scale = (float)s;
            best_off = (float)b;
        }
    }
    *min_out = -best_off;
    return best_scale;
}

void qwen_quantize_row_q4_K(const float *x, block_q4_K *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float scales[QK_K / 32], mins[QK_K / 32];
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < QK_K / 32; j++) {
            scales[j] = fit_scale_min(x + 32 * j, 32, 15, &mins[j]);
            max_scale = fmaxf(max_scale, scales[j]);
            max_min   = fmaxf(max_min, mins[j]);
        }

        /* Scales and mins become 6-bit multiples of d and dmin. */
        float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
        float inv_min   = max_min > 0 ? 63.0f / max_min : 0.0f;
        memset(y[b].scales, 0, sizeof y[b].scales);
        for (int j = 0; j < QK_K / 32; j++) {
            int ls = clampi((int)rintf(inv_scale * scales[j]), 0, 63);
            int lm = clampi((int)rintf(inv_min * mins[j]), 0, 63);
            q4k_set_scale_min(j, y[b].scales, ls, lm);
        }
        y[b].d    = qwen_f32_to_f16(max_scale / 63.0f);
        y[b].dmin = qwen_f32_to_f16(max_min / 63.0f);

        /* Requantize against the scales as stored, so rounding of the
         * 6-bit scales and f16 super-scales is compensated. */
        float d = qwen_f16_to_f32(y[b].d), dmin = qwen_f16_to_f32(y[b].dmin);
        uint8_t L[QK_K];
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m;
            q4k_get_scale_min(j, y[b].scales, &sc, &m);
            float ds = d * sc, dm = dmin * m;
            for (int i = 0; i < 32; i++) {
                int l = ds != 0.0f ? (int)rintf((x[32 * j + i] + dm) / ds) : 0;
                L[32 * j + i] = (uint8_t)clampi(l, 0, 15);
            }
        }
        /* Each 64-value chunk shares 32 bytes: low nibbles hold the first
         * 32 values, high nibbles the next 32. */
        for (int c = 0; c < QK_K / 64; c++)
            for (int i = 0; i < 32; i++)
                y[b].qs[32 * c + i] =
                    (uint8_t)(L[64 * c + i] | (L[64 * c + 32 + i] << 4));
    }
}

static void dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++) {
        float d = qwen_f16_to_f32(x[b].d), dmin = qwen_f16_to_f32(x[b].dmin);
        const uint8_t *q = x[b].qs;
        for (int c = 0; c < QK_K / 64; c++, q += 32) {
            int sc0, m0, sc1, m1;
            q4k_get_scale_min(2 * c, x[b].scales, &sc0, &m0);
            q4k_get_scale_min(2 * c + 1, x[b].scales, &sc1, &m1);
            float d0 = d * sc0, o0 = dmin * m0;
            float d1 = d * sc1, o1 = dmin * m1;
            for (int i = 0; i < 32; i++)
                *y++ = d0 * (q[i] & 0xf) - o0;
            for (int i = 0; i < 32; i++)
                *y++ = d1 * (q[i] >> 4) - o1;
        }
    }
}

/* --------------------------------------------------------------- Q6_K */

/*
 * Symmetric fit x ~ scale * L with L in -32..31. The element of largest
 * magnitude anchors the grid at -32 (the side with one more level); a few
 * slightly denser or coarser grids are tried and, for each, the scale is
 * the least-squares one; the smallest squared error wins (Gaussian weights:
 * relative RMS error 0.0174, vs 0.0183 for the amax grid alone).
 */
static float fit_scale_sym(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax == 0.0f)
        return 0.0f;

    float best_scale = -max / 32.0f;
    double best_gain = -1;
    static const float steps[] = { 0.0f, -0.4f, 0.4f, -0.8f, 0.8f, 1.2f };
    for (size_t c = 0; c < sizeof steps / sizeof steps[0]; c++) {
        float iscale = -(32.0f + steps[c]) / max;
        float sxl = 0.0f;
        int sll = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi((int)rintf(iscale * x[i]), -32, 31);
            sxl += x[i] * (float)l;
            sll += l * l;
        }
        /* With the LS scale sxl/sll the error is sxx - sxl^2/sll, so the
         * best candidate maximises sxl^2/sll. */
        if (sll > 0 && (double)sxl * sxl / sll > best_gain) {
            best_gain = (double)sxl * sxl / sll;
            best_scale = sxl / (float)sll;
        }
    }
    return best_scale;
}

void qwen_quantize_row_q6_K(const float *x, block_q6_K *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float scales[QK_K / 16];
        float amax = 0.0f, max_scale = 0.0f;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = fit_scale_sym(x + 16 * j, 16);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }

        uint8_t L[QK_K];
        if (amax == 0.0f) {
            memset(y[b].scales, 0, sizeof y[b].scales);
            y[b].d = qwen_f32_to_f16(0.0f);
            memset(L, 32, sizeof L);
        } else {
            /* int8 sub-scales; the largest maps to -128 (int8's extra
             * negative level), the sign goes into d. */
            float iscale = -128.0f / max_scale;
            for (int j = 0; j < QK_K / 16; j++)
                y[b].scales[j] = (int8_t)clampi((int)rintf(iscale * scales[j]),
                                                -128, 127);
            y[b].d = qwen_f32_to_f16(1.0f / iscale);
            float d = qwen_f16_to_f32(y[b].d);
            for (int j = 0; j < QK_K / 16; j++) {
                float ds = d * y[b].scales[j];
                for (int i = 0; i < 16; i++) {
                    int l = ds != 0.0f ? (int)rintf(x[16 * j + i] / ds) : 0;
                    L[16 * j + i] = (uint8_t)(clampi(l, -32, 31) + 32);
                }
            }
        }

        /* Per 128-value half: ql[i] carries values i (low) and i+64 (high),
         * ql[i+32] values i+32 and i+96; qh[i] the top 2 bits of all four. */
        uint8_t *ql = y[b].ql, *qh = y[b].qh;
        for (int h = 0; h < QK_K; h += 128, ql += 64, qh += 32) {
            for (int i = 0; i < 32; i++) {
                int q1 = L[h + i], q2 = L[h + i + 32];
                int q3 = L[h + i + 64], q4 = L[h + i + 96];
                ql[i]      = (uint8_t)((q1 & 0xf) | ((q3 & 0xf) << 4));
                ql[i + 32] = (uint8_t)((q2 & 0xf) | ((q4 & 0xf) << 4));
                qh[i] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) |
                                  ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

static void dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++) {
        float d = qwen_f16_to_f32(x[b].d);
        const uint8_t *ql = x[b].ql, *qh = x[b].qh;
        const int8_t *sc = x[b].scales;
        for (int h = 0; h < QK_K; h += 128, ql += 64, qh += 32, sc += 8) {
            for (int i = 0; i < 32; i++) {
                int is = i / 16;
                int q1 = ((ql[i] & 0xf)      | (((qh[i] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[i + 32] & 0xf) | (((qh[i] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[i] >> 4)       | (((qh[i] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[i + 32] >> 4)  | (((qh[i] >> 6) & 3) << 4)) - 32;
                y[h + i]      = d * sc[is + 0] * q1;
                y[h + i + 32] = d * sc[is + 2] * q2;
                y[h + i + 64] = d * sc[is + 4] * q3;
                y[h + i + 96] = d * sc[is + 6] * q4;
            }
        }
        y += QK_K;
    }
}

/* --------------------------------------------------------------- Q8_K */

void qwen_quantize_row_q8_K(const float *x, block_q8_K *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float amax = 0.0f;
        for (int i = 0; i < QK_K; i++)
            if (fabsf(x[i]) > amax)
                amax = fabsf(x[i]);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        /* d > 0 and |qs| <= 127: the kernels may rely on qs != -128. */
        float iscale = 127.0f / amax;
        for (int i = 0; i < QK_K; i++)
            y[b].qs[i] = (int8_t)clampi((int)rintf(iscale * x[i]), -127, 127);
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++)
                sum += y[b].qs[16 * g + i];
            y[b].bsums[g] = (int16_t)sum;
        }
        y[b].d = 1.0f / iscale;
    }
}

static void dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n / QK_K; b++)
        for (int i = 0; i < QK_K; i++)
            *y++ = x[b].d * x[b].qs[i];
}

/* --------------------------------------------------------- dispatch */

void qwen_dequantize_row(int type, const void *x, float *y, int64_t n)
{
    switch (type) {
    case QWEN_TYPE_F32:
        memcpy(y, x, (size_t)n * sizeof(float));
        break;
    case QWEN_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            y[i] = qwen_f16_to_f32(((const qwen_f16 *)x)[i]);
        break;
    case QWEN_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            y[i] = qwen_bf16_to_f32(((const qwen_bf16 *)x)[i]);
        break;
    case QWEN_TYPE_Q8_0: dequantize_row_q8_0(x, y, n); break;
    case QWEN_TYPE_Q4_K: dequantize_row_q4_K(x, y, n); break;
    case QWEN_TYPE_Q6_K: dequantize_row_q6_K(x, y, n); break;
    case QWEN_TYPE_Q8_K: dequantize_row_q8_K(x, y, n); break;
    default:
        /* Callers check qwen_type_supported first; NaN makes a slip loud. */
        for (int64_t i = 0; i < n; i++)
            y[i] = NAN;
        break;
    }
}

void qwen_quantize_row(int type, const float *x, void *y, int64_t n)
{
    switch (type) {
    case QWEN_TYPE_F32:
        memcpy(y, x, (size_t)n * sizeof(float));
        break;
    case QWEN_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            ((qwen_f16 *)y)[i] = qwen_f32_to_f16(x[i]);
        break;
    case QWEN_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            ((qwen_bf16 *)y)[i] = qwen_f32_to_bf16(x[i]);
        break;
    case QWEN_TYPE_Q8_0: qwen_quantize_row_q8_0(x, y, n); break;
    case QWEN_TYPE_Q4_K: qwen_quantize_row_q4_K(x, y, n); break;
    case QWEN_TYPE_Q6_K: qwen_quantize_row_q6_K(x, y, n); break;
    case QWEN_TYPE_Q8_K: qwen_quantize_row_q8_K(x, y, n); break;
    default:
        break;  /* unsupported: no layout to write; callers check first */
    }
}
