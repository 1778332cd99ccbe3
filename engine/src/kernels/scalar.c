/*
 * scalar.c - portable scalar kernels: the reference every SIMD kernel
 * is checked against, and the fallback on CPUs without a faster path.
 * Quantized dot products work block by block in integers, as the SIMD
 * versions do, so they agree with them to rounding.
 */
#include "kernels/kernels.h"
#include "repack.h"

#include <math.h>
#include <string.h>

int
qwen_act_type(int weight_type)
{
    switch (weight_type) {
    case QWEN_TYPE_Q8_0: return QWEN_TYPE_Q8_0;
    case QWEN_TYPE_Q4_K:
    case QWEN_TYPE_Q6_K: return QWEN_TYPE_Q8_K;
    default:             return QWEN_TYPE_F32;
    }
}

size_t
qwen_act_row_bytes(int weight_type, int64_t n)
{
    return qwen_row_bytes(qwen_act_type(weight_type), n);
}

static float
dot_f32(int64_t n, const void *w, const void *act)
{
    const float *x = w, *y = act;
    float        sum = 0.0f;
    int64_t      i;

    for (i = 0; i < n; i++) {
        sum += x[i] * y[i];
    }
    return sum;
}

static float
dot_f16(int64_t n, const void *w, const void *act)
{
    const qwen_f16 *x = w;
    const float    *y = act;
    float           sum = 0.0f;
    int64_t         i;

    for (i = 0; i < n; i++) {
        sum += qwen_f16_to_f32(x[i]) * y[i];
    }
    return sum;
}

static float
dot_bf16(int64_t n, const void *w, const void *act)
{
    const qwen_bf16 *x = w;
    const float     *y = act;
    float            sum = 0.0f;
    int64_t          i;

    for (i = 0; i < n; i++) {
        sum += qwen_bf16_to_f32(x[i]) * y[i];
    }
    return sum;
}

static float
dot_q8_0(int64_t n, const void *w, const void *act)
{
    const block_q8_0 *x = w, *y = act;
    float             sum = 0.0f;
    int64_t           b, nb = n / QK8_0;
    int               i, isum;

    for (b = 0; b < nb; b++) {
        isum = 0;
        for (i = 0; i < QK8_0; i++) {
            isum += x[b].qs[i] * y[b].qs[i];
        }
        sum += qwen_f16_to_f32(x[b].d) * qwen_f16_to_f32(y[b].d) * (float) isum;
    }
    return sum;
}

/* 6-bit scale and min of sub-block j of a Q4_K block (GGML's packing). */
static void
q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static float
dot_q4_K(int64_t n, const void *w, const void *act)
{
    const block_q4_K *x = w;
    const block_q8_K *y = act;
    float             sum = 0.0f;
    int64_t           b, nb = n / QK_K;
    int               j, l, isum, msum;
    uint8_t           sc, m;
    const uint8_t    *q4;
    const int8_t     *q8;

    for (b = 0; b < nb; b++) {
        isum = 0;
        msum = 0;
        q4 = x[b].qs;
        q8 = y[b].qs;
        /* 4 chunks of 64: low nibbles are sub-block 2c, high nibbles 2c+1 */
        for (j = 0; j < QK_K / 64; j++) {
            int s0 = 0, s1 = 0;
            for (l = 0; l < 32; l++) {
                s0 += (q4[l] & 0xF) * q8[l];
                s1 += (q4[l] >> 4) * q8[l + 32];
            }
            q4k_scale_min(2 * j, x[b].scales, &sc, &m);
            isum += sc * s0;
            msum += m * (y[b].bsums[4 * j] + y[b].bsums[4 * j + 1]);
            q4k_scale_min(2 * j + 1, x[b].scales, &sc, &m);
            isum += sc * s1;
            msum += m * (y[b].bsums[4 * j + 2] + y[b].bsums[4 * j + 3]);
            q4 += 32;
            q8 += 64;
        }
        sum += y[b].d * (qwen_f16_to_f32(x[b].d) * (float) isum
                         - qwen_f16_to_f32(x[b].dmin) * (float) msum);
    }
    return sum;
}

static float
dot_q6_K(int64_t n, const void *w, const void *act)
{
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    float             sum = 0.0f;
    int64_t           b, nb = n / QK_K;
    int               half, l, is, isum;
    int               sub[16];
    const uint8_t    *ql, *qh;
    const int8_t     *q8, *sc;

    for (b = 0; b < nb; b++) {
        ql = x[b].ql;
        qh = x[b].qh;
        sc = x[b].scales;
        q8 = y[b].qs;
        memset(sub, 0, sizeof(sub));
        for (half = 0; half < 2; half++) {
            for (l = 0; l < 32; l++) {
                int q1 = (int) ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = (int) ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (int) ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (int) ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                is = half * 8 + l / 16;
                sub[is + 0] += q1 * q8[l];
                sub[is + 2] += q2 * q8[l + 32];
                sub[is + 4] += q3 * q8[l + 64];
                sub[is + 6] += q4 * q8[l + 96];
            }
            ql += 64;
            qh += 32;
            q8 += 128;
        }
        isum = 0;
        for (is = 0; is < 16; is++) {
            isum += sc[is] * sub[is];
        }
        sum += qwen_f16_to_f32(x[b].d) * y[b].d * (float) isum;
    }
    return sum;
}

static void
quantize_act_ref(int act_type, const float *x, void *y, int64_t n)
{
    qwen_quantize_row(act_type, x, y, n);
}

static float
dot_f32_f16_ref(int64_t n, const float *x, const qwen_f16 *y)
{
    float   sum = 0.0f;
    int64_t i;

    for (i = 0; i < n; i++) {
        sum += x[i] * qwen_f16_to_f32(y[i]);
    }
    return sum;
}

static void
axpy_f16_ref(int64_t n, float a, const qwen_f16 *x, float *y)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        y[i] += a * qwen_f16_to_f32(x[i]);
    }
}

static void
f32_to_f16_ref(const float *x, qwen_f16 *y, int64_t n)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        y[i] = qwen_f32_to_f16(x[i]);
    }
}

void
qwen_attention_each(qwen_kv_attention_fn attention, int hd, int n_q, int m, const float *q,
                    size_t q_stride, const qwen_kv_view *kv, int n_pos, float scale,
                    float *scratch, float *out, size_t out_stride)
{
    int j;

    for (j = 0; j < m; j++) {
        attention(hd, n_q, q + j * q_stride, kv, n_pos + j, scale, scratch, out + j * out_stride);
    }
}

void
qwen_attention_generic(const qwen_kernels *k, int hd, int n_q, const float *q,
                       const qwen_kv_view *kv, int n_pos, float scale, float *scratch,
                       float *out)
{
    int    h, t;
    float  mx, sum, *sc;

    for (h = 0; h < n_q; h++) {
        sc = scratch + (size_t) h * n_pos;
        mx = -INFINITY;
        for (t = 0; t < n_pos; t++) {
            sc[t] = k->dot_f32_f16(hd, q + (size_t) h * hd, qwen_kv_row_k(kv, t, hd)) * scale;
            mx = sc[t] > mx ? sc[t] : mx;
        }
        sum = 0.0f;
        for (t = 0; t < n_pos; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        memset(out + (size_t) h * hd, 0, (size_t) hd * sizeof(float));
        for (t = 0; t < n_pos; t++) {
            k->axpy_f16(hd, sc[t] / sum, qwen_kv_row_v(kv, t, hd), out + (size_t) h * hd);
        }
    }
}

void
qwen_kv_store_bf16_ref(int hd, const float *k, const float *v, void *kc, void *vc, int t)
{
    int i;

    for (i = 0; i < hd; i++) {
        ((uint16_t *) kc)[qwen_kv_bf16_k_index(hd, t, i)] = qwen_f32_to_bf16(k[i]);
        ((uint16_t *) vc)[qwen_kv_bf16_v_index(hd, t, i)] = qwen_f32_to_bf16(v[i]);
    }
}

void
qwen_attention_bf16_ref(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
                        float scale, float *scratch, float *out)
{
    int    h, t, i;
    float  mx, sum, s, *sc, *o;

    for (h = 0; h < n_q; h++) {
        sc = scratch + (size_t) h * qwen_kv_rows(n_pos);
        o = out + (size_t) h * hd;
        mx = -INFINITY;
        for (t = 0; t < n_pos; t++) {
            s = 0.0f;
            const uint16_t *kc = qwen_kv_block_k(kv, t);

            for (i = 0; i < hd; i++) {
                s += qwen_bf16_to_f32(qwen_f32_to_bf16(q[(size_t) h * hd + i]))
                     * qwen_bf16_to_f32(kc[qwen_kv_bf16_k_index(hd, t % QWEN_KV_BLOCK, i)]);
            }
            sc[t] = s * scale;
            mx = sc[t] > mx ? sc[t] : mx;
        }
        sum = 0.0f;
        for (t = 0; t < n_pos; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        memset(o, 0, (size_t) hd * sizeof(float));
        for (t = 0; t < n_pos; t++) {
            float           p = qwen_bf16_to_f32(qwen_f32_to_bf16(sc[t]));
            const uint16_t *vc = qwen_kv_block_v(kv, t);

            for (i = 0; i < hd; i++) {
                o[i] += p * qwen_bf16_to_f32(vc[qwen_kv_bf16_v_index(hd, t % QWEN_KV_BLOCK, i)]);
            }
        }
        for (i = 0; i < hd; i++) {
            o[i] /= sum;
        }
    }
}

static void
kv_store_f16_ref(int hd, const float *k, const float *v, void *kc, void *vc, int t)
{
    f32_to_f16_ref(k, (qwen_f16 *) kc + (size_t) t * hd, hd);
    f32_to_f16_ref(v, (qwen_f16 *) vc + (size_t) t * hd, hd);
}

static void
attention_f16_ref(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
                  float scale, float *scratch, float *out)
{
    qwen_attention_generic(qwen_kernels_ref(), hd, n_q, q, kv, n_pos, scale, scratch, out);
}

void
qwen_kv_store_f32(int hd, const float *k, const float *v, void *kc, void *vc, int t)
{
    memcpy((float *) kc + (size_t) t * hd, k, (size_t) hd * sizeof(float));
    memcpy((float *) vc + (size_t) t * hd, v, (size_t) hd * sizeof(float));
}

/* e^(s - max) over the scores, returning their sum */
static float
softmax_exp_ref(float *sc, int n_pos)
{
    float mx = -INFINITY, sum = 0.0f;
    int   t;

    for (t = 0; t < n_pos; t++) {
        mx = sc[t] > mx ? sc[t] : mx;
    }
    for (t = 0; t < n_pos; t++) {
        sc[t] = expf(sc[t] - mx);
        sum += sc[t];
    }
    return sum;
}

void
qwen_attention_f32_ref(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
                       float scale, float *scratch, float *out)
{
    int          h, t, i;
    float        s, sum, *sc, *o;
    const float *qh, *kt, *vt;

    for (h = 0; h < n_q; h++) {
        sc = scratch + (size_t) h * qwen_kv_rows(n_pos);
        qh = q + (size_t) h * hd;
        o = out + (size_t) h * hd;
        for (t = 0; t < n_pos; t++) {
            kt = qwen_kv_row_k_f32(kv, t, hd);
            for (s = 0.0f, i = 0; i < hd; i++) {
                s += qh[i] * kt[i];
            }
            sc[t] = s * scale;
        }
        sum = softmax_exp_ref(sc, n_pos);
        memset(o, 0, (size_t) hd * sizeof(float));
        for (t = 0; t < n_pos; t++) {
            vt = qwen_kv_row_v_f32(kv, t, hd);
            for (i = 0; i < hd; i++) {
                o[i] += sc[t] * vt[i];
            }
        }
        for (i = 0; i < hd; i++) {
            o[i] /= sum;
        }
    }
}

/* ------------------------------------------------------- the q8_0 format */

/* 32 values to int8 and a scale, as the weights' Q8_0 (quant.c) */
static float
quantize32(const float *x, int8_t *qs)
{
    float amax = 0.0f, d, id;
    int   i;

    for (i = 0; i < 32; i++) {
        amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    }
    d = amax / 127.0f;
    id = d != 0.0f ? 1.0f / d : 0.0f;
    for (i = 0; i < 32; i++) {
        qs[i] = (int8_t) roundf(x[i] * id);
    }
    return d;
}

void
qwen_kv_quantize_q(int hd, const float *q, int8_t *qs, float *d)
{
    int b;

    for (b = 0; b < hd / 32; b++) {
        d[b] = quantize32(q + 32 * b, qs + 32 * b);
    }
}

void
qwen_kv_store_q8_0_ref(int hd, const float *k, const float *v, void *kc, void *vc, int t)
{
    int8_t   *kq = kc, *vq = vc, qs[32];
    qwen_f16 *ks = (qwen_f16 *) qwen_kv_q8_0_scales(kc, hd);
    qwen_f16 *vs = (qwen_f16 *) qwen_kv_q8_0_scales(vc, hd);
    int       b, i;

    for (b = 0; b < hd / 32; b++) {
        ks[b * QWEN_KV_BLOCK + t] = qwen_f32_to_f16(quantize32(k + 32 * b, qs));
        for (i = 0; i < 32; i++) {
            kq[qwen_kv_q8_0_k_index(t, 32 * b + i)] = qs[i];
        }
        vs[b * QWEN_KV_BLOCK + t] = qwen_f32_to_f16(quantize32(v + 32 * b, qs));
        memcpy(vq + qwen_kv_q8_0_v_index(hd, t, 32 * b), qs, 32);
    }
}

void
qwen_attention_q8_0_ref(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
                        float scale, float *scratch, float *out)
{
    int8_t          qs[QWEN_KV_MAX_HD];
    float           dq[QWEN_KV_MAX_HD / 32], sum, acc, w, *sc, *o;
    int             h, t, b, i, tt, isum, nb = hd / 32;
    const int8_t   *kq, *vq;
    const qwen_f16 *ks, *vs;

    for (h = 0; h < n_q; h++) {
        sc = scratch + (size_t) h * qwen_kv_rows(n_pos);
        o = out + (size_t) h * hd;
        qwen_kv_quantize_q(hd, q + (size_t) h * hd, qs, dq);
        for (t = 0; t < n_pos; t++) {
            kq = qwen_kv_block_k(kv, t);
            ks = qwen_kv_q8_0_scales(kq, hd);
            tt = t % QWEN_KV_BLOCK;
            acc = 0.0f;
            for (b = 0; b < nb; b++) {
                for (isum = 0, i = 32 * b; i < 32 * b + 32; i++) {
                    isum += qs[i] * kq[qwen_kv_q8_0_k_index(tt, i)];
                }
                acc = fmaf((float) isum, qwen_f16_to_f32(ks[b * QWEN_KV_BLOCK + tt]) * dq[b],
                           acc);
            }
            sc[t] = acc * scale;
        }
        sum = softmax_exp_ref(sc, n_pos);
        memset(o, 0, (size_t) hd * sizeof(float));
        for (t = 0; t < n_pos; t++) {
            vq = qwen_kv_block_v(kv, t);
            vs = qwen_kv_q8_0_scales(vq, hd);
            tt = t % QWEN_KV_BLOCK;
            for (b = 0; b < nb; b++) {
                w = sc[t] * qwen_f16_to_f32(vs[b * QWEN_KV_BLOCK + tt]);
                for (i = 32 * b; i < 32 * b + 32; i++) {
                    o[i] += w * (float) vq[qwen_kv_q8_0_v_index(hd, tt, i)];
                }
            }
        }
        for (i = 0; i < hd; i++) {
            o[i] /= sum;
        }
    }
}

/* ---------------------------------------------------------- the formats */

static const char *const kv_names[QWEN_KV_FORMAT_COUNT] = {
    [QWEN_KV_F32] = "f32", [QWEN_KV_F16] = "f16", [QWEN_KV_BF16] = "bf16",
    [QWEN_KV_Q8_0] = "q8_0",
};

int
qwen_kv_format_id(const char *name)
{
    int id;

    for (id = 0; name != NULL && id < QWEN_KV_FORMAT_COUNT; id++) {
        if (strcmp(name, kv_names[id]) == 0) {
            return id;
        }
    }
    return -1;
}

const char *
qwen_kv_format_name(int id)
{
    return id >= 0 && id < QWEN_KV_FORMAT_COUNT ? kv_names[id] : NULL;
}

size_t
qwen_kv_pos_bytes(int id, int hd)
{
    switch (id) {
    case QWEN_KV_F32:  return (size_t) hd * sizeof(float);
    case QWEN_KV_F16:
    case QWEN_KV_BF16: return (size_t) hd * 2;
    case QWEN_KV_Q8_0: return (size_t) hd + (size_t) hd / 32 * sizeof(qwen_f16);
    default:           return 0;
    }
}

/* hd the layout of format id can hold */
static int
kv_hd_suits(int id, int hd)
{
    if (hd < 1) {
        return 0;
    }
    switch (id) {
    case QWEN_KV_BF16: return hd % 2 == 0;
    case QWEN_KV_Q8_0: return hd % 32 == 0 && hd <= QWEN_KV_MAX_HD;
    default:           return 1;
    }
}

static int
kv_format_fill(int id, int hd, qwen_kv_store_fn store, qwen_kv_attention_fn attention,
               qwen_kv_format *out)
{
    if (id < 0 || id >= QWEN_KV_FORMAT_COUNT || store == NULL || attention == NULL
        || !kv_hd_suits(id, hd))
    {
        return -1;
    }
    out->id = id;
    out->name = kv_names[id];
    out->pos_bytes = qwen_kv_pos_bytes(id, hd);
    out->store = store;
    out->attention = attention;
    out->attention_tokens = NULL;
    return 0;
}

int
qwen_kv_format_of(const qwen_kernels *k, int id, int hd, qwen_kv_format *out)
{
    if (id < 0 || id >= QWEN_KV_FORMAT_COUNT
        || kv_format_fill(id, hd, k->kv_store[id], k->kv_attention[id], out) != 0)
    {
        return -1;
    }
    out->attention_tokens = k->kv_attention_tokens[id];
    return 0;
}

int
qwen_kv_format_ref(int id, int hd, qwen_kv_format *out)
{
    if (id == QWEN_KV_BF16) {
        return kv_format_fill(id, hd, qwen_kv_store_bf16_ref, qwen_attention_bf16_ref, out);
    }
    return qwen_kv_format_of(qwen_kernels_ref(), id, hd, out);
}

void
qwen_kv_read(int id, int hd, const void *kc, const void *vc, int t, float *k, float *v)
{
    const qwen_f16 *ks = qwen_kv_q8_0_scales(kc, hd), *vs = qwen_kv_q8_0_scales(vc, hd);
    int             i;

    for (i = 0; i < hd; i++) {
        switch (id) {
        case QWEN_KV_F32:
            k[i] = ((const float *) kc)[(size_t) t * hd + i];
            v[i] = ((const float *) vc)[(size_t) t * hd + i];
            break;
        case QWEN_KV_F16:
            k[i] = qwen_f16_to_f32(((const qwen_f16 *) kc)[(size_t) t * hd + i]);
            v[i] = qwen_f16_to_f32(((const qwen_f16 *) vc)[(size_t) t * hd + i]);
            break;
        case QWEN_KV_BF16:
            k[i] = qwen_bf16_to_f32(((const qwen_bf16 *) kc)[qwen_kv_bf16_k_index(hd, t, i)]);
            v[i] = qwen_bf16_to_f32(((const qwen_bf16 *) vc)[qwen_kv_bf16_v_index(hd, t, i)]);
            break;
        case QWEN_KV_Q8_0:
            k[i] = qwen_f16_to_f32(ks[(i / 32) * QWEN_KV_BLOCK + t])
                   * ((const int8_t *) kc)[qwen_kv_q8_0_k_index(t, i)];
            v[i] = qwen_f16_to_f32(vs[(i / 32) * QWEN_KV_BLOCK + t])
                   * ((const int8_t *) vc)[qwen_kv_q8_0_v_index(hd, t, i)];
            break;
        }
    }
}

/* The 2 x 4 tile as eight single dots: what every vec_dot2x4 must equal bit
 * for bit. The scalar table carries it so the forward pass's row-pair path
 * runs (and is tested) on every machine, not only on arm64 with i8mm. */
#define REF_DOT2X4(T)                                                               \
static void                                                                         \
dot2x4_##T(int64_t n, const void *w, size_t w_stride, const void *act,              \
           size_t act_stride, float *out8)                                          \
{                                                                                   \
    int r, t;                                                                       \
    for (r = 0; r < 2; r++) {                                                       \
        for (t = 0; t < 4; t++) {                                                   \
            out8[r * 4 + t] = dot_##T(n, (const char *) w + (size_t) r * w_stride,   \
                                      (const char *) act + (size_t) t * act_stride); \
        }                                                                           \
    }                                                                               \
}
REF_DOT2X4(q8_0)
REF_DOT2X4(q4_K)
REF_DOT2X4(q6_K)

/*
 * Packed Q4_K (repack.h) x Q8_K: per row and token, a super-block's sums
 * are exact integers (scales applied per sub-block, mins through the
 * activation's bsums), added into one float accumulator in super-block
 * order as fmaf(d * dy, isum, acc), then fmaf(-(dmin * dy), msum, acc): the
 * operations the SIMD versions do in each lane.
 */
static void
packed_dot_q4_K(int64_t n, const void *w, const void *act, size_t act_stride, int nt,
                float *out)
{
    const block_q4_Kx8 *x = w;
    int64_t             b, nb = n / QK_K;
    int                 r, t, j, k, i, h;

    for (t = 0; t < nt; t++) {
        const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * act_stride);

        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            float acc = 0.0f;

            for (b = 0; b < nb; b++) {
                int32_t isum = 0, msum = 0;

                for (j = 0; j < QK_K / 64; j++) {
                    for (h = 0; h < 2; h++) {
                        int32_t s = 0;

                        for (k = 0; k < 8; k++) {
                            for (i = 0; i < 4; i++) {
                                uint8_t q = x[b].qs[j][k][r][i];

                                s += (h ? q >> 4 : q & 0xF) * y[b].qs[64 * j + 32 * h + 4 * k + i];
                            }
                        }
                        isum += s * x[b].scales[2 * j + h][r];
                        msum += x[b].mins[j][r][h]
                                * (y[b].bsums[4 * j + 2 * h] + y[b].bsums[4 * j + 2 * h + 1]);
                    }
                }
                acc = fmaf(qwen_f16_to_f32(x[b].d[r]) * y[b].d, (float) isum, acc);
                acc = fmaf(-(qwen_f16_to_f32(x[b].dmin[r]) * y[b].d), (float) msum, acc);
            }
            out[t * QWEN_PACK_ROWS + r] = acc;
        }
    }
}

/*
 * Packed Q6_K x Q8_K: per row and token, the exact integer sum over a
 * super-block of scale * q * y minus 32 * scale * (the sub-block's
 * activation sum), then fmaf(d * dy, sum, acc) in super-block order.
 */
static void
packed_dot_q6_K(int64_t n, const void *w, const void *act, size_t act_stride, int nt,
                float *out)
{
    const block_q6_Kx8 *x = w;
    int64_t             b, nb = n / QK_K;
    int                 r, t, j, k, i, h;

    for (t = 0; t < nt; t++) {
        const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * act_stride);

        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            float acc = 0.0f;

            for (b = 0; b < nb; b++) {
                int32_t isum = 0, msum = 0;

                for (j = 0; j < QK_K / 64; j++) {
                    for (h = 0; h < 2; h++) {
                        for (k = 0; k < 8; k++) {
                            int sb = 4 * j + 2 * h + k / 4;
                            int sc = x[b].scales[sb / 2][r][sb % 2];

                            for (i = 0; i < 4; i++) {
                                isum += sc * qwen_q6kx8_value(x + b, j, h, k, r, i)
                                        * y[b].qs[64 * j + 32 * h + 4 * k + i];
                            }
                        }
                    }
                }
                for (i = 0; i < QK_K / 16; i++) {
                    msum += x[b].scales[i / 2][r][i % 2] * y[b].bsums[i];
                }
                acc = fmaf(qwen_f16_to_f32(x[b].d[r]) * y[b].d, (float) (isum - 32 * msum), acc);
            }
            out[t * QWEN_PACK_ROWS + r] = acc;
        }
    }
}

/* Packed Q8_0 x Q8_0: per row and token, a block's exact integer sum, then
 * fmaf(dw * dy, sum, acc) in block order. */
static void
packed_dot_q8_0(int64_t n, const void *w, const void *act, size_t act_stride, int nt,
                float *out)
{
    const block_q8_0x8 *x = w;
    int64_t             b, nb = n / QK8_0;
    int                 r, t, k, i;

    for (t = 0; t < nt; t++) {
        const block_q8_0 *y = (const block_q8_0 *) ((const char *) act + t * act_stride);

        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            float acc = 0.0f;

            for (b = 0; b < nb; b++) {
                int32_t isum = 0;

                for (k = 0; k < QK8_0 / 4; k++) {
                    for (i = 0; i < 4; i++) {
                        isum += x[b].qs[k][r][i] * y[b].qs[4 * k + i];
                    }
                }
                acc = fmaf(qwen_f16_to_f32(x[b].d[r]) * qwen_f16_to_f32(y[b].d), (float) isum,
                           acc);
            }
            out[t * QWEN_PACK_ROWS + r] = acc;
        }
    }
}

/* Packed BF16 x F32: even and odd columns in two fmaf chains, added at
 * the end. */
static void
packed_dot_bf16(int64_t n, const void *w, const void *act, size_t act_stride, int nt,
                float *out)
{
    const block_bf16x8 *x = w;
    int64_t             p;
    int                 r, t;

    for (t = 0; t < nt; t++) {
        const float *y = (const float *) ((const char *) act + t * act_stride);

        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            float a0 = 0.0f, a1 = 0.0f;

            for (p = 0; p < n / 2; p++) {
                a0 = fmaf(qwen_bf16_to_f32(x[p].v[r][0]), y[2 * p], a0);
                a1 = fmaf(qwen_bf16_to_f32(x[p].v[r][1]), y[2 * p + 1], a1);
            }
            out[t * QWEN_PACK_ROWS + r] = a0 + a1;
        }
    }
}

void
qwen_packed_dot_ref(int type, int64_t n, const void *w, const void *act, size_t act_stride,
                    int nt, float *out)
{
    if (type == QWEN_TYPE_Q4_K) {
        packed_dot_q4_K(n, w, act, act_stride, nt, out);
    } else if (type == QWEN_TYPE_Q6_K) {
        packed_dot_q6_K(n, w, act, act_stride, nt, out);
    } else if (type == QWEN_TYPE_Q8_0) {
        packed_dot_q8_0(n, w, act, act_stride, nt, out);
    } else if (type == QWEN_TYPE_BF16) {
        packed_dot_bf16(n, w, act, act_stride, nt, out);
    }
}

static const qwen_kernels kernels_ref = {
    .name = "scalar",
    .vec_dot = {
        [QWEN_TYPE_F32] = dot_f32,
        [QWEN_TYPE_F16] = dot_f16,
        [QWEN_TYPE_BF16] = dot_bf16,
        [QWEN_TYPE_Q8_0] = dot_q8_0,
        [QWEN_TYPE_Q4_K] = dot_q4_K,
        [QWEN_TYPE_Q6_K] = dot_q6_K,
    },
    .vec_dot2x4 = {
        [QWEN_TYPE_Q8_0] = dot2x4_q8_0,
        [QWEN_TYPE_Q4_K] = dot2x4_q4_K,
        [QWEN_TYPE_Q6_K] = dot2x4_q6_K,
    },
    .quantize_act = quantize_act_ref,
    .dot_f32_f16 = dot_f32_f16_ref,
    .axpy_f16 = axpy_f16_ref,
    .f32_to_f16 = f32_to_f16_ref,
    .kv_store = {
        [QWEN_KV_F32] = qwen_kv_store_f32,
        [QWEN_KV_F16] = kv_store_f16_ref,
        [QWEN_KV_Q8_0] = qwen_kv_store_q8_0_ref,
    },
    .kv_attention = {
        [QWEN_KV_F32] = qwen_attention_f32_ref,
        [QWEN_KV_F16] = attention_f16_ref,
        [QWEN_KV_Q8_0] = qwen_attention_q8_0_ref,
    },
};

const qwen_kernels *
qwen_kernels_ref(void)
{
    return &kernels_ref;
}
