/*
 * bf16.c - arm64 with BF16 (Neoverse V1/V2: Graviton3/4): the
 * batched prefill GEMM on BFMMLA, with the dotprod dots for decode. Each
 * call repacks 32 weight rows at a time into a BF16 panel of 2-row x 4-k
 * tiles (BFMMLA's operand), then streams prompt tokens past it in pairs:
 * one tile load feeds 8 tokens. An output element depends only on its own
 * token's activations. Compiled with -march=armv8.2-a+dotprod+bf16.
 */
#include "kernels/arm/arm.h"
#include "kernels/arm/packed.h"

#define PANEL  QWEN_GEMM_PANEL_ROWS    /* 32 rows: 16 row pairs */
#define CHUNK  (PANEL * 4)             /* bf16 values of one k-chunk of 4 */
#define TPAIRS 4                       /* token pairs per micro-kernel call */

QWEN_ARM_QUANT_KERNELS(bf16, 0)
QWEN_ARM_Q8_0_2X4(bf16)

/* f32 to bf16, round to nearest even in integer ops as qwen_f32_to_bf16
 * does: BFCVT would flush subnormals, the reference keeps them. */
ARM_INLINE uint16x4_t
bf16x4(float32x4_t v)
{
    uint32x4_t x = vreinterpretq_u32_f32(v);
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(1));
    uint32x4_t r = vaddq_u32(x, vaddq_u32(vdupq_n_u32(0x7fff), lsb));
    /* NaN: truncated with the quiet bit set, so none turns into inf */
    uint32x4_t nan = vcgtq_u32(vandq_u32(x, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));

    return vshrn_n_u32(vbslq_u32(nan, vorrq_u32(x, vdupq_n_u32(0x400000)), r), 16);
}

static void
f32_to_bf16(const float *x, qwen_bf16 *y, int64_t n)
{
    int64_t i = 0;

    for (; i + 4 <= n; i += 4) {
        vst1_u16(y + i, bf16x4(vld1q_f32(x + i)));
    }
    for (; i < n; i++) {
        y[i] = qwen_f32_to_bf16(x[i]);
    }
}

/*
 * Row i of a panel: chunk c (k = 4c .. 4c+3) of row i sits at
 * panel[c * CHUNK + (i / 2) * 8 + (i % 2) * 4]. Values past the last whole
 * chunk go to tail[] (K % 4 of them; none for real model shapes). Other
 * types are dequantized by the reference, so the values are the truth's.
 */
static void
panel_row(int type, const void *src, int64_t K, uint16_t *panel, int i, qwen_bf16 *tail,
          float *tmp)
{
    uint16_t    *dst = panel + (i / 2) * 8 + (i % 2) * 4;
    int64_t      c, k, K4 = K / 4;
    const float *f = tmp;

    if (src == NULL) {   /* padding row */
        for (c = 0; c < K4; c++) {
            vst1_u16(dst + c * CHUNK, vdup_n_u16(0));
        }
        for (k = 4 * K4; k < K; k++) {
            tail[k - 4 * K4] = 0;
        }
        return;
    }
    if (type == QWEN_TYPE_BF16) {
        const uint16_t *s = src;
        for (c = 0; c < K4; c++) {
            vst1_u16(dst + c * CHUNK, vld1_u16(s + 4 * c));
        }
        for (k = 4 * K4; k < K; k++) {
            tail[k - 4 * K4] = s[k];
        }
        return;
    }
    if (type == QWEN_TYPE_F32) {
        f = src;
    } else {
        qwen_dequantize_row(type, src, tmp, K);
    }
    for (c = 0; c < K4; c++) {
        vst1_u16(dst + c * CHUNK, bf16x4(vld1q_f32(f + 4 * c)));
    }
    for (k = 4 * K4; k < K; k++) {
        tail[k - 4 * K4] = qwen_f32_to_bf16(f[k]);
    }
}

/*
 * 2 NTP tokens x 8 rows (row pairs 4g .. 4g+3 of the panel). acc[tp][rp]
 * is the 2 x 2 tile [t0.r0, t0.r1, t1.r0, t1.r1] of token pair tp and row
 * pair rp. outs[j]: token j's output at the first of these rows, NULL for
 * the duplicate that pads an odd token count; nrow: rows to store (<= 8).
 */
ARM_INLINE void
micro_kernel(const uint16_t *pan, int64_t K4, const qwen_bf16 *const *xt, float *const *outs,
             int nrow, const int NTP)
{
    float32x4_t acc[TPAIRS][4];
    int64_t     c;
    int         tp, rp, j;

    for (tp = 0; tp < NTP; tp++) {
        for (rp = 0; rp < 4; rp++) {
            acc[tp][rp] = vdupq_n_f32(0.0f);
        }
    }
    for (c = 0; c < K4; c++) {
        bfloat16x8_t b[4], a[TPAIRS];

        for (rp = 0; rp < 4; rp++) {
            b[rp] = vreinterpretq_bf16_u16(vld1q_u16(pan + c * CHUNK + 8 * rp));
        }
        for (tp = 0; tp < NTP; tp++) {
            a[tp] = vreinterpretq_bf16_u16(vcombine_u16(vld1_u16(xt[2 * tp] + 4 * c),
                                                        vld1_u16(xt[2 * tp + 1] + 4 * c)));
        }
        for (tp = 0; tp < NTP; tp++) {
            for (rp = 0; rp < 4; rp++) {
                acc[tp][rp] = vbfmmlaq_f32(acc[tp][rp], a[tp], b[rp]);
            }
        }
    }
    for (tp = 0; tp < NTP; tp++) {
        for (j = 0; j < 2; j++) {
            float *o = outs[2 * tp + j];
            if (o == NULL) {
                continue;
            }
            for (rp = 0; rp < 4; rp++) {
                float32x2_t v = j ? vget_high_f32(acc[tp][rp]) : vget_low_f32(acc[tp][rp]);
                if (2 * rp + 2 <= nrow) {
                    vst1_f32(o + 2 * rp, v);
                } else if (2 * rp < nrow) {   /* odd row count: one row left */
                    o[2 * rp] = vget_lane_f32(v, 0);
                }
            }
        }
    }
}

static void
gemm_bf16(int type, const void *w, int packed, size_t row_bytes, int64_t K, int64_t r0,
          int64_t r1, const void *xb_rows, int n_tok, const int32_t *idx, float *out,
          size_t out_stride, void *scratch)
{
    const qwen_bf16 *xb = xb_rows;   /* BF16 rows: this table has no gemm_act_f32 */
    uint16_t        *panel = scratch;
    /* past the panel and the staging area qwen_gemm_scratch_bytes counts */
    float           *tmp = (float *) ((char *) scratch + (size_t) PANEL * K * sizeof(qwen_bf16) * 2);
    /* then one packed row back in the file's bytes */
    void            *row = tmp + K;
    size_t           gb = packed ? qwen_packed_group_bytes(type, K) : 0;
    const void      *src;
    qwen_bf16        tail[PANEL][3];
    const qwen_bf16 *xt[2 * TPAIRS];
    float           *outs[2 * TPAIRS];
    int64_t          r, K4 = K / 4, k;
    int              nr, i, g, nrow, t0, nt, j;

    for (r = r0; r < r1; r += PANEL) {
        nr = r1 - r < PANEL ? (int) (r1 - r) : PANEL;
        for (i = 0; i < PANEL; i++) {
            src = i < nr ? (const char *) w + (size_t) (r + i) * row_bytes : NULL;
            if (i < nr && packed) {
                qwen_unpack_row(type, (const char *) w + (size_t) ((r + i) / QWEN_PACK_ROWS) * gb,
                                K, (int) ((r + i) % QWEN_PACK_ROWS), row);
                src = row;
            }
            panel_row(type, src, K, panel, i, tail[i], tmp);
        }
        for (g = 0; 8 * g < nr; g++) {
            nrow = nr - 8 * g < 8 ? nr - 8 * g : 8;
            for (t0 = 0; t0 < n_tok; t0 += 2 * TPAIRS) {
                nt = n_tok - t0 < 2 * TPAIRS ? n_tok - t0 : 2 * TPAIRS;
                for (j = 0; j < 2 * TPAIRS; j++) {
                    /* an odd last token pairs with itself; its twin is dropped */
                    xt[j] = xb + (size_t) (t0 + (j < nt ? j : nt - 1)) * K;
                    outs[j] = j < nt ? out + (size_t) idx[t0 + j] * out_stride + r + 8 * g : NULL;
                }
                switch ((nt + 1) / 2) {
                case 1: micro_kernel(panel + 32 * g, K4, xt, outs, nrow, 1); break;
                case 2: micro_kernel(panel + 32 * g, K4, xt, outs, nrow, 2); break;
                case 3: micro_kernel(panel + 32 * g, K4, xt, outs, nrow, 3); break;
                default: micro_kernel(panel + 32 * g, K4, xt, outs, nrow, 4); break;
                }
            }
        }
        /* the K % 4 last columns (odd shapes only) */
        for (k = 4 * K4; k < K; k++) {
            for (j = 0; j < n_tok; j++) {
                float  x = qwen_bf16_to_f32(xb[(size_t) j * K + k]);
                float *o = out + (size_t) idx[j] * out_stride + r;
                for (i = 0; i < nr; i++) {
                    o[i] += qwen_bf16_to_f32(tail[i][k - 4 * K4]) * x;
                }
            }
        }
    }
}

QWEN_ARM_PACKED_KERNELS(bf16)
QWEN_ARM_PACKED_GEMM(bf16)

static const qwen_kernels kernels_neon_bf16 = {
    .name = "neon_bf16",
    QWEN_NEON_FLOAT_ENTRIES,
    QWEN_ARM_QUANT_ENTRIES(bf16),
    QWEN_ARM_PACKED_ENTRIES(bf16),
    QWEN_ARM_PACKED_GEMM_ENTRIES(bf16),
    .vec_dot2x4[QWEN_TYPE_Q8_0] = bf16_dot2x4_q8_0,
    .kv_store[QWEN_KV_Q8_0] = qwen_kv_store_q8_0_ref,
    .kv_attention[QWEN_KV_Q8_0] = qwen_dotprod_attention_q8_0,
    .gemm = gemm_bf16,
    .f32_to_bf16 = f32_to_bf16,
};

const qwen_kernels *
qwen_kernels_neon_bf16(void)
{
    return &kernels_neon_bf16;
}
