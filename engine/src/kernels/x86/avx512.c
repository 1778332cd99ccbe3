/*
 * avx512.c - AVX-512 (F, BW, VL, BF16) kernels: the batched
 * prefill GEMM. Each call repacks 32 weight rows at a time into a BF16
 * panel laid out as [K/2][32 rows][2] (the pair layout vdpbf16ps wants),
 * then streams every prompt token's BF16 activations past it: one panel
 * load feeds up to 8 tokens x 32 rows of multiply-adds, so the weights are
 * read and dequantized once per call instead of once per token. Packed
 * weights (repack.h) give their panels straight from their groups.
 * Packed weights' own kernels: dots for generated tokens (Q4_K and Q6_K on
 * 512-bit registers, Q8_0 the AVX2 kernel with vpdpbusd) and, for steps of
 * 24 tokens or more, a Q4_K / Q6_K GEMM of 16 rows a call.
 * Also the Q6_K dot products with AVX-512 VNNI (vpdpbusd), attention
 * over a BF16 KV cache (vdpbf16ps) and over a Q8_0 one (vpdpbusd).
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512bf16 -mavx512vnni.
 *
 * avx512_vnni.c builds this file again without AVX512_BF16, as the table
 * for AVX-512 CPUs that have VNNI and no BF16 (Intel Cascade Lake and Ice
 * Lake: AWS c5, c6i): the same kernels, the GEMM's vdpbf16ps done as two
 * FMAs on the pair's halves widened to F32, BF16 rounding in integer
 * instructions, and no BF16 KV cache (as the avx2 table).
 */
#include "kernels/x86/x86.h"

#include <math.h>
#include <string.h>

#ifdef QWEN_AVX512_VNNI_TABLE
#define AVX512_BF16     0
#define AVX512_NAME     "avx512_vnni"
#define AVX512_TABLE_FN qwen_kernels_avx512_vnni
#else
#define AVX512_BF16     1
#define AVX512_NAME     "avx512"
#define AVX512_TABLE_FN qwen_kernels_avx512
#endif

#define PANEL QWEN_GEMM_PANEL_ROWS     /* 32: two zmm of rows */
#define TOKENS 8                       /* tokens per micro-kernel call */

/* qwen_f32_to_bf16 of 16 floats, each in the low half of its 32-bit lane
 * (its bits: round to nearest even, subnormals rounded like any value, a
 * NaN kept a NaN), where vcvtne2ps2bf16 would flush subnormals: the KV
 * cache and queries keep the reference's values */
static inline __m512i
bf16_round_words(__m512 v)
{
    const __m512i x = _mm512_castps_si512(v);
    const __m512i one = _mm512_set1_epi32(1);
    __m512i       r = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)),
                                       _mm512_and_si512(_mm512_srli_epi32(x, 16), one));
    /* |x| > inf's bits; both sides below 2^31, so a signed compare */
    __mmask16     nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));

    return _mm512_mask_or_epi32(_mm512_srli_epi32(r, 16), nan, _mm512_srli_epi32(x, 16),
                                _mm512_set1_epi32(0x40));
}

/* the 16 BF16 values in order */
static inline __m256i
bf16_round16(__m512 v)
{
    return _mm512_cvtepi32_epi16(bf16_round_words(v));
}

/* lo then hi (32 floats) as 32 BF16 values in order: vcvtne2ps2bf16, or
 * without AVX512_BF16 bf16_round16 twice (the same bits but for subnormal
 * inputs, which the instruction flushes and bf16_round16 rounds) */
static inline __m512i
bf16_pack32(__m512 hi, __m512 lo)
{
#if AVX512_BF16
    return (__m512i) _mm512_cvtne2ps_pbh(hi, lo);
#else
    return _mm512_inserti64x4(_mm512_castsi256_si512(bf16_round16(lo)), bf16_round16(hi), 1);
#endif
}

static void
f32_to_bf16(const float *x, qwen_bf16 *y, int64_t n)
{
    int64_t i = 0;

    for (; i + 32 <= n; i += 32) {
        _mm512_storeu_si512((void *) (y + i),
                            bf16_pack32(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i)));
    }
    for (; i < n; i++) {
        y[i] = qwen_f32_to_bf16(x[i]);
    }
}

#if !AVX512_BF16
/* The GEMM's activations (gemm_act_f32): each value rounded as
 * qwen_f32_to_bf16 and widened back, BF16 values the FMAs take as they are */
static void
gemm_act_f32(const float *x, float *y, int64_t n)
{
    int64_t i = 0;

    for (; i + 16 <= n; i += 16) {
        _mm512_storeu_si512((void *) (y + i),
                            _mm512_slli_epi32(bf16_round_words(_mm512_loadu_ps(x + i)), 16));
    }
    for (; i < n; i++) {
        y[i] = qwen_bf16_to_f32(qwen_f32_to_bf16(x[i]));
    }
}
#endif

/* Dequantizers to F32 for the panel: the same values as the reference
 * qwen_dequantize_row (scale x quant, in the same float operations). */
static void
dequant_q8_0(const block_q8_0 *x, float *y, int64_t n)
{
    int64_t b;

    for (b = 0; b < n / QK8_0; b++) {
        __m512  d = _mm512_set1_ps(_cvtsh_ss(x[b].d));
        __m128i lo = _mm_loadu_si128((const __m128i *) x[b].qs);
        __m128i hi = _mm_loadu_si128((const __m128i *) (x[b].qs + 16));
        _mm512_storeu_ps(y + 32 * b, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo))));
        _mm512_storeu_ps(y + 32 * b + 16,
                         _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi))));
    }
}

/* 32 unsigned quants q: y = q * scale - offset */
static inline void
store_u8x32(float *y, __m256i q, __m512 scale, __m512 offset)
{
    __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)));
    __m512 b = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1)));

    _mm512_storeu_ps(y, _mm512_fmsub_ps(a, scale, offset));
    _mm512_storeu_ps(y + 16, _mm512_fmsub_ps(b, scale, offset));
}

static void
dequant_q4_K(const block_q4_K *x, float *y, int64_t n)
{
    const __m256i mask = _mm256_set1_epi8(0xF);
    int64_t       b;
    int           j;
    uint8_t       sm[16];

    for (b = 0; b < n / QK_K; b++) {
        float d = _cvtsh_ss(x[b].d), dmin = _cvtsh_ss(x[b].dmin);

        qwen_q4k_scales_mins(x[b].scales, sm);
        for (j = 0; j < QK_K / 64; j++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *) (x[b].qs + 32 * j));
            /* value = d * sc * q - dmin * m */
            store_u8x32(y + 64 * j, _mm256_and_si256(raw, mask),
                        _mm512_set1_ps(d * sm[2 * j]), _mm512_set1_ps(dmin * sm[8 + 2 * j]));
            store_u8x32(y + 64 * j + 32, _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask),
                        _mm512_set1_ps(d * sm[2 * j + 1]),
                        _mm512_set1_ps(dmin * sm[8 + 2 * j + 1]));
        }
        y += QK_K;
    }
}

static void
dequant_q6_K(const block_q6_K *x, float *y, int64_t n)
{
    int64_t       b;
    int           half, g, i;

    for (b = 0; b < n / QK_K; b++) {
        const uint8_t *ql = x[b].ql, *qh = x[b].qh;
        const int8_t  *sc = x[b].scales;
        float          d = _cvtsh_ss(x[b].d);

        for (half = 0; half < 2; half++) {
            __m256i q[4];

            qwen_q6k_unpack_half(ql, qh, q);
            for (g = 0; g < 4; g++) {
                for (i = 0; i < 2; i++) {
                    /* 16 values of scale 8 half + 2 g + i: d * sc * (q - 32) */
                    __m128i q16 = i ? _mm256_extracti128_si256(q[g], 1)
                                    : _mm256_castsi256_si128(q[g]);
                    float   ds = d * sc[8 * half + 2 * g + i];
                    __m512  v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q16));
                    _mm512_storeu_ps(y + 128 * half + 32 * g + 16 * i,
                                     _mm512_mul_ps(_mm512_set1_ps(ds),
                                                   _mm512_sub_ps(v, _mm512_set1_ps(32.0f))));
                }
            }
            ql += 64;
            qh += 32;
        }
        y += QK_K;
    }
}

/* ------------------------------------------- SwiGLU and RMS norm, 16 wide */

#define QWEN_EW_WIDTH 16
#include "elementwise_wide.h"

/* ------------------------------------ panels straight from packed groups */

/*
 * A packed group's 32-byte step is 4 columns of its 8 rows (a 32-bit lane
 * a row): dequantized as two vectors of 4 rows x 4 columns, rounded to
 * BF16 by the instruction f32_to_bf16 uses, and the column pairs regrouped
 * (one permute) into the panel's [pair][row] order: two 32-byte stores of
 * 8 rows, no staging rows and no transpose. The values are those the file
 * rows' dequantizers give, by the same float operations per value.
 */

/* lane 4i + c: row i (0 .. 3) of lo, 4 + i of hi, of a vector of 8 rows */
static inline void
rows_to_lanes(const float v8[8], __m512 *lo, __m512 *hi)
{
    const __m512i ilo = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i ihi = _mm512_add_epi32(ilo, _mm512_set1_epi32(4));
    __m512        v = _mm512_castps256_ps512(_mm256_loadu_ps(v8));

    *lo = _mm512_permutexvar_ps(ilo, v);
    *hi = _mm512_permutexvar_ps(ihi, v);
}

/* pairs p and p + 1 of the group's 8 rows from 4 columns' values */
static inline void
put_pairs(uint32_t *panel, int64_t p, __m512 lo, __m512 hi)
{
    const __m512i order = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14,
                                            1, 3, 5, 7, 9, 11, 13, 15);
    __m512i       v = _mm512_permutexvar_epi32(order, bf16_pack32(hi, lo));

    _mm256_storeu_si256((__m256i *) (panel + p * PANEL), _mm512_castsi512_si256(v));
    _mm256_storeu_si256((__m256i *) (panel + (p + 1) * PANEL), _mm512_extracti64x4_epi64(v, 1));
}

/* the 8 rows' unsigned bytes of a step as floats, rows 0-3 and 4-7 */
static inline void
u8_lanes(__m256i q, __m512 *lo, __m512 *hi)
{
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1)));
}

static void
panel_q8_0x8(const block_q8_0x8 *x, int64_t K, uint32_t *panel)
{
    int64_t b;
    int     k, r;
    float   d[8];
    __m512  dlo, dhi;

    for (b = 0; b < K / QK8_0; b++) {
        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            d[r] = _cvtsh_ss(x[b].d[r]);
        }
        rows_to_lanes(d, &dlo, &dhi);
        for (k = 0; k < QK8_0 / 4; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *) x[b].qs[k]);
            __m512  lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
            __m512  hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));

            /* dequant_q8_0: d x q */
            put_pairs(panel, 16 * b + 2 * k, _mm512_mul_ps(dlo, lo), _mm512_mul_ps(dhi, hi));
        }
    }
}

static void
panel_q4_Kx8(const block_q4_Kx8 *x, int64_t K, uint32_t *panel)
{
    const __m256i mask = _mm256_set1_epi8(0xF);
    int64_t       b;
    int           j, h, k, r;
    float         sc[8], mn[8];
    __m512        slo, shi, mlo, mhi, lo, hi;

    for (b = 0; b < K / QK_K; b++) {
        for (j = 0; j < QK_K / 64; j++) {
            for (h = 0; h < 2; h++) {
                /* dequant_q4_K: q x (d x sc) - dmin x m */
                for (r = 0; r < QWEN_PACK_ROWS; r++) {
                    sc[r] = _cvtsh_ss(x[b].d[r]) * x[b].scales[2 * j + h][r];
                    mn[r] = _cvtsh_ss(x[b].dmin[r]) * x[b].mins[j][r][h];
                }
                rows_to_lanes(sc, &slo, &shi);
                rows_to_lanes(mn, &mlo, &mhi);
                for (k = 0; k < 8; k++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *) x[b].qs[j][k]);

                    u8_lanes(_mm256_and_si256(h ? _mm256_srli_epi16(v, 4) : v, mask), &lo, &hi);
                    put_pairs(panel, 128 * b + 32 * j + 16 * h + 2 * k,
                              _mm512_fmsub_ps(lo, slo, mlo), _mm512_fmsub_ps(hi, shi, mhi));
                }
            }
        }
    }
}

static void
panel_q6_Kx8(const block_q6_Kx8 *x, int64_t K, uint32_t *panel)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    const __m512  k32 = _mm512_set1_ps(32.0f);
    int64_t       b;
    int           j, h, k, r, s;
    float         ds[8];
    __m512        slo[4], shi[4], lo, hi;

    for (b = 0; b < K / QK_K; b++) {
        for (j = 0; j < QK_K / 64; j++) {
            /* the 4 16-column sub-blocks of columns 64j .. 64j + 63 */
            for (s = 0; s < 4; s++) {
                for (r = 0; r < QWEN_PACK_ROWS; r++) {
                    ds[r] = _cvtsh_ss(x[b].d[r]) * x[b].scales[2 * j + s / 2][r][s % 2];
                }
                rows_to_lanes(ds, &slo[s], &shi[s]);
            }
            for (k = 0; k < 8; k++) {
                __m256i l = _mm256_loadu_si256((const __m256i *) x[b].ql[j][k]);
                __m256i qh = _mm256_srli_epi16(
                    _mm256_loadu_si256((const __m256i *) x[b].qh[j][k / 2]), 4 * (k % 2));

                for (h = 0; h < 2; h++) {
                    /* columns 64j + 32h + 4k .. + 3, values 0 .. 63 */
                    __m256i v = _mm256_or_si256(
                        _mm256_and_si256(h ? _mm256_srli_epi16(l, 4) : l, m4),
                        _mm256_slli_epi16(_mm256_and_si256(h ? _mm256_srli_epi16(qh, 2) : qh,
                                                           m3), 4));

                    /* dequant_q6_K: (d x sc) x (q - 32) */
                    s = 2 * h + k / 4;
                    u8_lanes(v, &lo, &hi);
                    put_pairs(panel, 128 * b + 32 * j + 16 * h + 2 * k,
                              _mm512_mul_ps(slo[s], _mm512_sub_ps(lo, k32)),
                              _mm512_mul_ps(shi[s], _mm512_sub_ps(hi, k32)));
                }
            }
        }
    }
}

/* Rows r .. r + nr - 1 (whole groups, nr <= 32) of a packed weight into
 * the panel, rows past nr zero: 0, or -1 when the type has no such path. */
static int
panel_packed(int type, const void *w, int64_t K, int64_t r, int nr, uint32_t *panel)
{
    size_t  gb = qwen_packed_group_bytes(type, K);
    int64_t p;
    int     g;

    if (type != QWEN_TYPE_Q8_0 && type != QWEN_TYPE_Q4_K && type != QWEN_TYPE_Q6_K
        && type != QWEN_TYPE_BF16)
    {
        return -1;
    }
    for (g = 0; g < PANEL / QWEN_PACK_ROWS; g++) {
        const void *grp = (const char *) w + (size_t) (r / QWEN_PACK_ROWS + g) * gb;
        uint32_t   *dst = panel + QWEN_PACK_ROWS * g;

        if (QWEN_PACK_ROWS * g >= nr) {
            for (p = 0; p < K / 2; p++) {
                _mm256_storeu_si256((__m256i *) (dst + p * PANEL), _mm256_setzero_si256());
            }
        } else if (type == QWEN_TYPE_BF16) {
            /* a group's pair p is the panel's pair p of its 8 rows */
            for (p = 0; p < K / 2; p++) {
                _mm256_storeu_si256((__m256i *) (dst + p * PANEL),
                    _mm256_loadu_si256((const __m256i *) grp + p));
            }
        } else if (type == QWEN_TYPE_Q8_0) {
            panel_q8_0x8(grp, K, dst);
        } else if (type == QWEN_TYPE_Q4_K) {
            panel_q4_Kx8(grp, K, dst);
        } else {
            panel_q6_Kx8(grp, K, dst);
        }
    }
    return 0;
}

/* One weight row to BF16. BF16 rows are copied; other types dequantized. */
static void
row_to_bf16(int type, const void *src, int64_t K, qwen_bf16 *dst, float *tmp)
{
    int64_t i = 0;

    switch (type) {
    case QWEN_TYPE_BF16:
        memcpy(dst, src, (size_t) K * sizeof(qwen_bf16));
        return;
    case QWEN_TYPE_F32:
        f32_to_bf16(src, dst, K);
        return;
    case QWEN_TYPE_F16:
        for (; i + 16 <= K; i += 16) {
            __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) ((const qwen_f16 *) src + i)));
            _mm512_storeu_ps(tmp + i, v);
        }
        for (; i < K; i++) {
            tmp[i] = qwen_f16_to_f32(((const qwen_f16 *) src)[i]);
        }
        break;
    case QWEN_TYPE_Q8_0:
        dequant_q8_0(src, tmp, K);
        break;
    case QWEN_TYPE_Q4_K:
        dequant_q4_K(src, tmp, K);
        break;
    case QWEN_TYPE_Q6_K:
        dequant_q6_K(src, tmp, K);
        break;
    default:
        qwen_dequantize_row(type, src, tmp, K);
        break;
    }
    f32_to_bf16(tmp, dst, K);
}

/* Transpose a 16 x 16 block of 32-bit elements held in 16 registers. */
static inline void
transpose16(__m512i r[16])
{
    __m512i t[16];
    int     i;

    for (i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (i = 0; i < 4; i++) {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/* Rows r .. r+nr-1 (nr <= 32) into the pair-interleaved panel; missing
 * rows are zero so the micro-kernel needs no row tail. */
static void
build_panel(int type, const void *w, int packed, size_t row_bytes, int64_t K, int64_t r,
            int nr, uint32_t *panel, qwen_bf16 *stage, float *tmp, void *row)
{
    size_t   gb = packed ? qwen_packed_group_bytes(type, K) : 0;
    int64_t  p, K2 = K / 2;
    int      i, h;
    __m512i  blk[16];

    if (packed && r % QWEN_PACK_ROWS == 0 && nr % QWEN_PACK_ROWS == 0
        && panel_packed(type, w, K, r, nr, panel) == 0)
    {
        return;
    }
    for (i = 0; i < PANEL; i++) {
        if (i < nr && packed) {
            /* a row outside whole groups: back in the file's bytes */
            qwen_unpack_row(type, (const char *) w + (size_t) ((r + i) / QWEN_PACK_ROWS) * gb,
                            K, (int) ((r + i) % QWEN_PACK_ROWS), row);
            row_to_bf16(type, row, K, stage + (size_t) i * K, tmp);
        } else if (i < nr) {
            row_to_bf16(type, (const char *) w + (size_t) (r + i) * row_bytes, K,
                        stage + (size_t) i * K, tmp);
        } else {
            memset(stage + (size_t) i * K, 0, (size_t) K * sizeof(qwen_bf16));
        }
    }
    /* panel[p][i] = pair p of row i, 16 pairs x 16 rows at a time */
    for (h = 0; h < 2; h++) {
        for (p = 0; p + 16 <= K2; p += 16) {
            for (i = 0; i < 16; i++) {
                blk[i] = _mm512_loadu_si512((const void *)
                    ((const uint32_t *) (stage + (size_t) (16 * h + i) * K) + p));
            }
            transpose16(blk);
            for (i = 0; i < 16; i++) {
                _mm512_storeu_si512((void *) (panel + (p + i) * PANEL + 16 * h), blk[i]);
            }
        }
        for (; p < K2; p++) {
            for (i = 0; i < 16; i++) {
                panel[p * PANEL + 16 * h + i] =
                    ((const uint32_t *) (stage + (size_t) (16 * h + i) * K))[p];
            }
        }
    }
}

/* Pair p of 16 rows: from a panel (PANEL rows a pair), or from two
 * consecutive packed BF16 groups gs words apart (8 rows a pair each), whose
 * pairs are the panel's in the same order: the same vector either way. */
static inline __attribute__((always_inline)) __m512i
rows16(const uint32_t *w, size_t gs, int64_t p, const int from_groups)
{
    if (!from_groups) {
        return _mm512_loadu_si512((const void *) (w + p * PANEL));
    }
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) (w + p * QWEN_PACK_ROWS))),
        _mm256_loadu_si256((const __m256i *) (w + gs + p * QWEN_PACK_ROWS)), 1);
}

#if AVX512_BF16
/* NT tokens x 32 rows: acc[t][h] holds rows 16h..16h+15 for token t. The
 * rows come from a panel, or (from_groups) from four packed BF16 groups
 * starting at panel, gs words apart: no panel is built for those. */
static inline __attribute__((always_inline)) void
micro_kernel(const uint32_t *panel, size_t gs, int64_t K2, const qwen_bf16 *xb, int64_t K,
             float **outs, __mmask16 m0, __mmask16 m1, const int NT, const int from_groups)
{
    const uint32_t *hi = from_groups ? panel + 2 * gs : panel + 16;
    __m512         acc[TOKENS][2];
    const uint32_t *x32[TOKENS];
    int64_t        p;
    int            t;

    /* fully unrolled so the 2 x NT accumulators live in registers */
#pragma GCC unroll 8
    for (t = 0; t < NT; t++) {
        acc[t][0] = _mm512_setzero_ps();
        acc[t][1] = _mm512_setzero_ps();
        x32[t] = (const uint32_t *) (xb + (size_t) t * K);
    }
    for (p = 0; p < K2; p++) {
        __m512bh w0 = (__m512bh) rows16(panel, gs, p, from_groups);
        __m512bh w1 = (__m512bh) rows16(hi, gs, p, from_groups);
#pragma GCC unroll 8
        for (t = 0; t < NT; t++) {
            __m512bh xv = (__m512bh) _mm512_set1_epi32((int) x32[t][p]);
            acc[t][0] = _mm512_dpbf16_ps(acc[t][0], w0, xv);
            acc[t][1] = _mm512_dpbf16_ps(acc[t][1], w1, xv);
        }
    }
#pragma GCC unroll 8
    for (t = 0; t < NT; t++) {
        _mm512_mask_storeu_ps(outs[t], m0, acc[t][0]);
        _mm512_mask_storeu_ps(outs[t] + 16, m1, acc[t][1]);
    }
}
#else
/*
 * The same without vdpbf16ps. A BF16 value is the upper half of its F32,
 * so a pair's odd element is the word with its low half cleared and the
 * even one the word shifted up 16: widen_panel turns each panel's 32 rows
 * of pairs into an F32 panel once, for all the call's tokens (pf: pair p
 * is 4 vectors, rows 0-15 even and odd, rows 16-31 even and odd; 128
 * bytes a column, in L2), and each vdpbf16ps becomes two FMAs
 * from it, odd then even as the instruction's definition orders them. The
 * tokens' activations come as F32 holding BF16 values (gemm_act_f32,
 * made once per matmul), from which each FMA broadcasts its value (a
 * load, no shuffle): widening them here cost each panel and token tile
 * its own copy, about a tenth of the GEMM's time.
 */

static inline __attribute__((always_inline)) void
widen_panel(const uint32_t *panel, size_t gs, int64_t K2, const int from_groups, float *pf)
{
    const uint32_t *hi = from_groups ? panel + 2 * gs : panel + 16;
    const __m512i   odd_mask = _mm512_set1_epi32((int) 0xffff0000u);
    int64_t         p;

    for (p = 0; p < K2; p++) {
        __m512i w0 = rows16(panel, gs, p, from_groups);
        __m512i w1 = rows16(hi, gs, p, from_groups);

        _mm512_store_si512((void *) (pf + 64 * p), _mm512_slli_epi32(w0, 16));
        _mm512_store_si512((void *) (pf + 64 * p + 16), _mm512_and_si512(w0, odd_mask));
        _mm512_store_si512((void *) (pf + 64 * p + 32), _mm512_slli_epi32(w1, 16));
        _mm512_store_si512((void *) (pf + 64 * p + 48), _mm512_and_si512(w1, odd_mask));
    }
}

static inline __attribute__((always_inline)) void
micro_kernel_f32(const float *pf, int64_t K2, const float *xf, int64_t K, float **outs,
                 __mmask16 m0, __mmask16 m1, const int NT)
{
    __m512  acc[TOKENS][2];
    int64_t p;
    int     t;

#pragma GCC unroll 8
    for (t = 0; t < NT; t++) {
        acc[t][0] = _mm512_setzero_ps();
        acc[t][1] = _mm512_setzero_ps();
    }
    for (p = 0; p < K2; p++) {
        const float *w = pf + 64 * p;
        __m512       w0e = _mm512_load_ps(w), w0o = _mm512_load_ps(w + 16);
        __m512       w1e = _mm512_load_ps(w + 32), w1o = _mm512_load_ps(w + 48);
#pragma GCC unroll 8
        for (t = 0; t < NT; t++) {
            __m512 xo = _mm512_set1_ps(xf[(size_t) t * K + 2 * p + 1]);
            __m512 xe = _mm512_set1_ps(xf[(size_t) t * K + 2 * p]);

            acc[t][0] = _mm512_fmadd_ps(w0e, xe, _mm512_fmadd_ps(w0o, xo, acc[t][0]));
            acc[t][1] = _mm512_fmadd_ps(w1e, xe, _mm512_fmadd_ps(w1o, xo, acc[t][1]));
        }
    }
#pragma GCC unroll 8
    for (t = 0; t < NT; t++) {
        _mm512_mask_storeu_ps(outs[t], m0, acc[t][0]);
        _mm512_mask_storeu_ps(outs[t] + 16, m1, acc[t][1]);
    }
}
#endif

static void
gemm_bf16(int type, const void *w, int packed, size_t row_bytes, int64_t K, int64_t r0,
          int64_t r1, const void *x_rows, int n_tok, const int32_t *idx, float *out,
          size_t out_stride, void *scratch)
{
#if AVX512_BF16
    const qwen_bf16 *xb = x_rows;
#else
    const float     *xf = x_rows;   /* BF16 values in F32 (gemm_act_f32) */
#endif
    uint32_t  *panel = scratch;
    qwen_bf16 *stage = (qwen_bf16 *) ((char *) scratch + (size_t) PANEL * K * sizeof(qwen_bf16));
    float     *tmp = (float *) ((char *) stage + (size_t) PANEL * K * sizeof(qwen_bf16));
    void      *row = (char *) tmp + (size_t) K * sizeof(float);
#if !AVX512_BF16
    /* the F32 panel, 64-byte aligned past the rest (qwen_gemm_scratch_bytes) */
    float     *pf = (float *) (((uintptr_t) row + (size_t) K * sizeof(qwen_bf16) + 63)
                               & ~(uintptr_t) 63);
#endif
    float     *outs[TOKENS];
    /* packed BF16: a group's words, and whether a panel reads them in place */
    size_t     gs = packed && type == QWEN_TYPE_BF16
                    ? qwen_packed_group_bytes(type, K) / sizeof(uint32_t) : 0;
    size_t     gb = gs * sizeof(uint32_t);
    const uint32_t *src;
    int64_t    r;
    int        nr, t0, nt, t, direct;
    __mmask16  m0, m1;

    for (r = r0; r < r1; r += PANEL) {
        nr = r1 - r < PANEL ? (int) (r1 - r) : PANEL;
        /* packed BF16 rows are read where they are: four whole groups */
        direct = type == QWEN_TYPE_BF16 && packed && r % QWEN_PACK_ROWS == 0 && nr == PANEL;
        if (direct) {
            src = (const uint32_t *) ((const char *) w + (size_t) (r / QWEN_PACK_ROWS) * gb);
        } else {
            build_panel(type, w, packed, row_bytes, K, r, nr, panel, stage, tmp, row);
            src = panel;
        }
        m0 = (__mmask16) (nr >= 16 ? 0xFFFF : (1u << nr) - 1);
        m1 = (__mmask16) (nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
#if !AVX512_BF16
        if (direct) {
            widen_panel(src, gs, K / 2, 1, pf);
        } else {
            widen_panel(src, 0, K / 2, 0, pf);
        }
#endif
        for (t0 = 0; t0 < n_tok; t0 += TOKENS) {
            nt = n_tok - t0 < TOKENS ? n_tok - t0 : TOKENS;
            for (t = 0; t < nt; t++) {
                outs[t] = out + (size_t) idx[t0 + t] * out_stride + r;
            }
            switch (nt) {
#if AVX512_BF16
#define MK(N) case N:                                                                   \
                if (direct) {                                                           \
                    micro_kernel(src, gs, K / 2, xb + (size_t) t0 * K, K, outs, m0, m1, N, 1); \
                } else {                                                                \
                    micro_kernel(src, 0, K / 2, xb + (size_t) t0 * K, K, outs, m0, m1, N, 0); \
                }                                                                       \
                break
#else
#define MK(N) case N:                                                                   \
                micro_kernel_f32(pf, K / 2, xf + (size_t) t0 * K, K, outs, m0, m1, N);  \
                break
#endif
            MK(1); MK(2); MK(3); MK(4); MK(5); MK(6); MK(7); MK(8);
#undef MK
            }
        }
    }
}

/* ---------------------------------------------------- VNNI dot products */

/*
 * Q6_K x Q8_K, NT activation rows, AVX-512 VNNI. 64 bytes of ql give 64
 * values in order (low nibbles) and the next 64 (high nibbles); qh adds two
 * bits per value. The -32 offset comes off through the bsums, as in AVX2.
 */
static inline __attribute__((always_inline)) void
q6k_dot_vnni(int64_t n, const void *w, const void *act, size_t stride, float *out,
             const int NT)
{
    const block_q6_K *x = w;
    const __m512i     m4 = _mm512_set1_epi8(0xF), m3 = _mm512_set1_epi8(3);
    /* per-16-bit-lane shift counts: 0 | 2 for values 0..63, 4 | 6 for 64..127 */
    const __m512i     sh_lo = _mm512_inserti64x4(_mm512_setzero_si512(),
                                                 _mm256_set1_epi16(2), 1);
    const __m512i     sh_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    __m512            facc[4];
    int64_t           b, nb = n / QK_K;
    int               half, t;
    /* vpackssdw(da, db) leaves, in 128-bit lane L, words 0-3 from da lanes
     * 4L..4L+3 (values 16L..16L+15: scale L of the 64) and words 4-7 from
     * db's (scale 4 + L); half 1 uses scales 8..15 */
    int16_t           idx[2][32];
    __m512i           pack_idx0, pack_idx1;

    for (t = 0; t < 32; t++) {
        idx[0][t] = (int16_t) ((t % 8 < 4 ? 0 : 4) + t / 8);
        idx[1][t] = (int16_t) (idx[0][t] + 8);
    }
    pack_idx0 = _mm512_loadu_si512((const void *) idx[0]);
    pack_idx1 = _mm512_loadu_si512((const void *) idx[1]);

    for (t = 0; t < NT; t++) {
        facc[t] = _mm512_setzero_ps();
    }
    for (b = 0; b < nb; b++) {
        __m512i isum[4];
        __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) x[b].scales));
        float   dw = _cvtsh_ss(x[b].d);

#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * stride) + b;
            __m256i bs = _mm256_loadu_si256((const __m256i *) y->bsums);
            __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, scales16), 5);
            /* -32 * sum_j sc_j * bsum_j in lanes 0..7 */
            isum[t] = _mm512_castsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), off));
            isum[t] = _mm512_zextsi256_si512(_mm512_castsi512_si256(isum[t]));
        }
        for (half = 0; half < 2; half++) {
            __m512i l = _mm512_loadu_si512((const void *) (x[b].ql + 64 * half));
            __m256i h256 = _mm256_loadu_si256((const __m256i *) (x[b].qh + 32 * half));
            __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(h256), h256, 1);
            __m512i qa = _mm512_or_si512(_mm512_and_si512(l, m4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(h, sh_lo), m3), 4));
            __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(h, sh_hi), m3), 4));
            /* the scale of each 16-bit lane after packing da and db */
            __m512i sw = _mm512_permutexvar_epi16(half ? pack_idx1 : pack_idx0,
                                                  _mm512_castsi256_si512(scales16));

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                const int8_t *q8 = ((const block_q8_K *) ((const char *) act + t * stride))[b].qs
                                   + 128 * half;
                __m512i da = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qa,
                                                 _mm512_loadu_si512((const void *) q8));
                __m512i db = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qb,
                                                 _mm512_loadu_si512((const void *) (q8 + 64)));
                /* |lane| <= 4 x 63 x 128 fits 16 bits: pack, then one
                 * vpdpwssd applies the scales and accumulates */
                isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_packs_epi32(da, db), sw);
            }
        }
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * stride) + b;
            facc[t] = _mm512_fmadd_ps(_mm512_set1_ps(dw * y->d), _mm512_cvtepi32_ps(isum[t]),
                                      facc[t]);
        }
    }
    for (t = 0; t < NT; t++) {
        out[t] = _mm512_reduce_add_ps(facc[t]);
    }
}

/* ------------------------------------------- attention over a BF16 KV cache */

/* e^x for x <= 0 (softmax scores minus their max): x = n ln2 + r with
 * |r| <= ln2/2, e^r by the Cephes polynomial, 2^n by vscalefps. Relative
 * error ~1e-7; below -104 the result is 0. */
static inline __m512
exp_neg_ps(__m512 x)
{
    __m512 n, r, p;

    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

#if AVX512_BF16   /* the BF16 KV cache's kernels: vdpbf16ps throughout */

/* n floats (a multiple of 16) to BF16 by bf16_round16: in order, so a
 * row's pairs are 32-bit words with the lower element in the low half
 * (vdpbf16ps's operand order) */
static inline void
bf16_round_row(const float *x, uint16_t *y, int n)
{
    int i;

    for (i = 0; i < n; i += 16) {
        _mm256_storeu_si256((__m256i *) (y + i), bf16_round16(_mm512_loadu_ps(x + i)));
    }
}

static void
kv_store_bf16(int hd, const float *k, const float *v, void *kc, void *vc, int t)
{
    uint32_t *kb = (uint32_t *) ((uint16_t *) kc + qwen_kv_bf16_k_index(hd, t, 0));
    uint16_t *vb = (uint16_t *) vc + qwen_kv_bf16_v_index(hd, t, 0);
    uint32_t  kp[128];
    uint16_t  vh[256];
    int       i;

    if (hd % 16 != 0 || hd > 256) {
        for (i = 0; i < hd / 2; i++) {
            kb[16 * i] = (uint32_t) qwen_f32_to_bf16(k[2 * i])
                         | (uint32_t) qwen_f32_to_bf16(k[2 * i + 1]) << 16;
        }
        for (i = 0; i < hd; i++) {
            vb[2 * i] = qwen_f32_to_bf16(v[i]);
        }
        return;
    }
    bf16_round_row(k, (uint16_t *) kp, hd);
    bf16_round_row(v, vh, hd);
    for (i = 0; i < hd / 2; i++) {
        kb[16 * i] = kp[i];
    }
    for (i = 0; i < hd; i++) {
        vb[2 * i] = vh[i];
    }
}

/* scores[h][t] = scale * q[h] . K[t] for NH heads, 16 positions per tile:
 * each K vector (a dimension pair of 16 positions) meets a broadcast q
 * pair, so no horizontal sums; 4 accumulators per head hide the latency.
 * A cache block holds two tiles. PF: each tile asks for the one
 * QWEN_KV_AHEAD positions on (a decode step's K comes from memory; a
 * prompt's, just written, mostly from cache, where the requests cost
 * more than they save: 2.7 against 1.7 us a call at 400 positions). */
static inline __attribute__((always_inline)) void
att_scores_bf16(int hd, const int NH, const uint32_t *qp, const qwen_kv_view *kv, int n_pos,
                float scale, float *scores, int rows, const int PF)
{
    int b, i, h, u;

    for (b = 0; b < (n_pos + 15) / 16; b++) {
        const uint16_t *kb = (const uint16_t *) qwen_kv_block_k(kv, 16 * b)
                             + (size_t) (b % (QWEN_KV_BLOCK / 16)) * 16 * hd;
        __m512          acc[4][4];

        if (PF) {
            qwen_kv_prefetch_pos(kv, kv->k, 16 * b, 16, n_pos, (size_t) hd * 2);
        }
#pragma GCC unroll 4
        for (h = 0; h < NH; h++) {
#pragma GCC unroll 4
            for (u = 0; u < 4; u++) {
                acc[h][u] = _mm512_setzero_ps();
            }
        }
        for (i = 0; i < hd / 2; i += 4) {
#pragma GCC unroll 4
            for (u = 0; u < 4; u++) {
                __m512bh kv = (__m512bh) _mm512_loadu_si512((const void *) (kb + 32 * (i + u)));
#pragma GCC unroll 4
                for (h = 0; h < NH; h++) {
                    acc[h][u] = _mm512_dpbf16_ps(acc[h][u], kv,
                        (__m512bh) _mm512_set1_epi32((int) qp[h * (hd / 2) + i + u]));
                }
            }
        }
#pragma GCC unroll 4
        for (h = 0; h < NH; h++) {
            __m512 s = _mm512_add_ps(_mm512_add_ps(acc[h][0], acc[h][1]),
                                     _mm512_add_ps(acc[h][2], acc[h][3]));
            _mm512_storeu_ps(scores + (size_t) h * rows + 16 * b,
                             _mm512_mul_ps(s, _mm512_set1_ps(scale)));
        }
    }
}

/* out[h] += sum over position pairs of p[h] pairs . V pairs, 16 dims per
 * vdpbf16ps, for NH heads and 128 dimensions starting at d0. */
static inline __attribute__((always_inline)) void
att_values_bf16(int hd, const int NH, const uint32_t *pp, int pp_stride, const qwen_kv_view *kv,
                int n_pos, int d0, float *out)
{
    __m512 o[4][8];
    int    t2, h, j, n_pairs = n_pos / 2;

#pragma GCC unroll 4
    for (h = 0; h < NH; h++) {
#pragma GCC unroll 8
        for (j = 0; j < 8; j++) {
            o[h][j] = _mm512_setzero_ps();
        }
    }
    for (t2 = 0; t2 < (n_pos + 1) / 2; t2++) {
        const uint16_t *vp = (const uint16_t *) qwen_kv_block_v(kv, 2 * t2)
                             + (size_t) (t2 % (QWEN_KV_BLOCK / 2)) * 2 * hd + 2 * d0;
        /* an odd last position: its pair partner is not written yet */
        __mmask32       keep = t2 < n_pairs ? 0xFFFFFFFFu : 0x55555555u;

        if (d0 == 0) {
            qwen_kv_prefetch_pos(kv, kv->v, 2 * t2, 2, n_pos, (size_t) hd * 2);
        }
#pragma GCC unroll 8
        for (j = 0; j < 8; j++) {
            __m512bh vv = (__m512bh) _mm512_maskz_loadu_epi16(keep, vp + 32 * j);
#pragma GCC unroll 4
            for (h = 0; h < NH; h++) {
                o[h][j] = _mm512_dpbf16_ps(o[h][j], vv,
                    (__m512bh) _mm512_set1_epi32((int) pp[(size_t) h * pp_stride + t2]));
            }
        }
    }
#pragma GCC unroll 4
    for (h = 0; h < NH; h++) {
#pragma GCC unroll 8
        for (j = 0; j < 8; j++) {
            _mm512_storeu_ps(out + (size_t) h * hd + d0 + 16 * j, o[h][j]);
        }
    }
}

#endif /* AVX512_BF16 */

/* sc[t] = e^(sc[t] - max) over t < n_pos, 0 from there up to rows (a
 * multiple of 16); returns the sum */
static float
softmax_exp512(float *sc, int n_pos, int rows)
{
    __m512    mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    __mmask16 m;
    float     mxs;
    int       t;

    for (t = 0; t < n_pos; t += 16) {
        m = n_pos - t >= 16 ? 0xFFFF : (__mmask16) ((1u << (n_pos - t)) - 1);
        mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, sc + t));
    }
    mxs = _mm512_reduce_max_ps(mx);
    for (t = 0; t < rows; t += 16) {
        m = t >= n_pos ? 0 : n_pos - t >= 16 ? 0xFFFF : (__mmask16) ((1u << (n_pos - t)) - 1);
        __m512 e = _mm512_maskz_mov_ps(m, exp_neg_ps(
            _mm512_sub_ps(_mm512_loadu_ps(sc + t), _mm512_set1_ps(mxs))));
        sum = _mm512_add_ps(sum, e);
        _mm512_storeu_ps(sc + t, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* an attention row's sums over its softmax's sum: o x (1 / sum) */
static inline void
att_normalize(float *o, int hd, float sum)
{
    __m512 inv = _mm512_set1_ps(1.0f / sum);
    int    i;

    for (i = 0; i < hd; i += 16) {
        _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(o + i), inv));
    }
}

#if AVX512_BF16
/*
 * Attention of n_q query heads over one KV head in the BF16 layout of
 * kernels.h. Scores, softmax (vector exp) and the BF16 probabilities all
 * live in scratch: the probabilities of head h overwrite the front half of
 * its scores, as pairs. hd a multiple of 128 up to 256 (Qwen3: 128);
 * anything else takes the scalar version.
 */
static void
attention_bf16(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
               float *scratch, float *out)
{
    uint32_t qp[4 * 128];
    int      rows = qwen_kv_rows(n_pos), h0, nh, h, t, d0;
    float    sums[4];

    if (hd % 128 != 0 || hd > 256) {
        qwen_attention_bf16_ref(hd, n_q, q, kv, n_pos, scale, scratch, out);
        return;
    }
    /* the first regions of K and V; past them the passes ask QWEN_KV_AHEAD
     * positions on */
    qwen_kv_prefetch_start(kv, kv->k, n_pos, (size_t) QWEN_KV_BLOCK * hd * 2);
    qwen_kv_prefetch_start(kv, kv->v, n_pos, (size_t) QWEN_KV_BLOCK * hd * 2);
    for (h0 = 0; h0 < n_q; h0 += nh) {
        float *sc0 = scratch + (size_t) h0 * rows;

        nh = n_q - h0 >= 4 ? 4 : n_q - h0 >= 2 ? 2 : 1;
        for (h = 0; h < nh; h++) {
            bf16_round_row(q + (size_t) (h0 + h) * hd, (uint16_t *) (qp + h * (hd / 2)), hd);
        }
        switch (nh) {
        case 4: att_scores_bf16(hd, 4, qp, kv, n_pos, scale, sc0, rows, 1); break;
        case 2: att_scores_bf16(hd, 2, qp, kv, n_pos, scale, sc0, rows, 1); break;
        default: att_scores_bf16(hd, 1, qp, kv, n_pos, scale, sc0, rows, 1); break;
        }
        for (h = 0; h < nh; h++) {
            float *sc = sc0 + (size_t) h * rows;

            sums[h] = softmax_exp512(sc, n_pos, rows);
            /* to BF16 pairs in place: 32 floats become 16 pairs behind the read */
            for (t = 0; t < rows; t += 32) {
                __m512bh pb = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(sc + t + 16),
                                                  _mm512_loadu_ps(sc + t));
                _mm512_storeu_si512((void *) ((uint32_t *) sc + t / 2), (__m512i) pb);
            }
        }
        for (d0 = 0; d0 < hd; d0 += 128) {
            switch (nh) {
            case 4: att_values_bf16(hd, 4, (const uint32_t *) sc0, rows, kv, n_pos, d0,
                                    out + (size_t) h0 * hd); break;
            case 2: att_values_bf16(hd, 2, (const uint32_t *) sc0, rows, kv, n_pos, d0,
                                    out + (size_t) h0 * hd); break;
            default: att_values_bf16(hd, 1, (const uint32_t *) sc0, rows, kv, n_pos, d0,
                                     out + (size_t) h0 * hd); break;
            }
        }
        for (h = 0; h < nh; h++) {
            att_normalize(out + (size_t) (h0 + h) * hd, hd, sums[h]);
        }
    }
}

/*
 * o[r] (r < NH rows, 16J dimensions from d0) += the position pairs t2a ..
 * t2b - 1 of probability pairs pp[r] against the V pairs, continuing the
 * sums o holds (from zero when zero is set). A row's last pair is masked
 * as attention_bf16 masks it when its n_pos[r] is odd. Per lane the
 * vdpbf16ps of att_values_bf16 in the same order: its bits.
 */
static inline __attribute__((always_inline)) void
att_values_rows(int hd, const int NH, const int J, const uint32_t *const *pp,
                const qwen_kv_view *kv, int t2a, int t2b, const int *n_pos, int d0,
                float *const *o, int zero, const int whole)
{
    __m512 acc[4][4];
    int    t2, r, j;

#pragma GCC unroll 4
    for (r = 0; r < NH; r++) {
#pragma GCC unroll 4
        for (j = 0; j < J; j++) {
            acc[r][j] = zero ? _mm512_setzero_ps() : _mm512_loadu_ps(o[r] + d0 + 16 * j);
        }
    }
    for (t2 = t2a; t2 < t2b; t2++) {
        const uint16_t *vp = (const uint16_t *) qwen_kv_block_v(kv, 2 * t2)
                             + (size_t) (t2 % (QWEN_KV_BLOCK / 2)) * 2 * hd + 2 * d0;

#pragma GCC unroll 4
        for (j = 0; j < J; j++) {
            __m512bh vv = (__m512bh) _mm512_loadu_si512((const void *) (vp + 32 * j));
            __m512bh vm;

            if (whole) {
                /* every row sees these pairs whole: no test per row (the
                 * tests and the masked loads were a third of the loop) */
#pragma GCC unroll 4
                for (r = 0; r < NH; r++) {
                    acc[r][j] = _mm512_dpbf16_ps(acc[r][j], vv,
                                                 (__m512bh) _mm512_set1_epi32((int) pp[r][t2]));
                }
                continue;
            }
            vm = (__m512bh) _mm512_maskz_loadu_epi16(0x55555555u, vp + 32 * j);
#pragma GCC unroll 4
            for (r = 0; r < NH; r++) {
                /* a row's odd last position: its pair partner not written
                 * yet when the row's token ran alone */
                acc[r][j] = _mm512_dpbf16_ps(acc[r][j], t2 < n_pos[r] / 2 ? vv : vm,
                                             (__m512bh) _mm512_set1_epi32((int) pp[r][t2]));
            }
        }
    }
#pragma GCC unroll 4
    for (r = 0; r < NH; r++) {
#pragma GCC unroll 4
        for (j = 0; j < J; j++) {
            _mm512_storeu_ps(o[r] + d0 + 16 * j, acc[r][j]);
        }
    }
}

/* att_values_rows over all of hd (64 dimensions a pass) for nr rows; whole:
 * every row sees the pairs t2a .. t2b - 1 whole (t2b <= each n_pos / 2) */
static void
att_values_rows_hd(int hd, int nr, const uint32_t *const *pp, const qwen_kv_view *kv, int t2a,
                   int t2b, const int *n_pos, float *const *o, int zero, int whole)
{
    int d0;

#define QWEN_ATT_V(NH, W) att_values_rows(hd, NH, 4, pp, kv, t2a, t2b, n_pos, d0, o, zero, W)
    for (d0 = 0; d0 < hd; d0 += 64) {
        if (whole) {
            switch (nr) {
            case 1: QWEN_ATT_V(1, 1); break;
            case 2: QWEN_ATT_V(2, 1); break;
            case 3: QWEN_ATT_V(3, 1); break;
            default: QWEN_ATT_V(4, 1); break;
            }
            continue;
        }
        switch (nr) {
        case 1: QWEN_ATT_V(1, 0); break;
        case 2: QWEN_ATT_V(2, 0); break;
        case 3: QWEN_ATT_V(3, 0); break;
        default: QWEN_ATT_V(4, 0); break;
        }
    }
#undef QWEN_ATT_V
}

/*
 * m consecutive tokens of a sequence (qwen_kv_attention_tokens_fn) over
 * the BF16 layout: passes of 4 query rows (2 tokens of a GQA pair, or 4
 * single heads) share each K tile's loads in the scores and, over the
 * position pairs every token of the pass sees, each V pair's loads; a
 * later token's last pairs follow on its own. Scores past a row's n_pos
 * are computed and dropped by its softmax, as attention_bf16 drops those
 * of its last tile. Each token gets attention_bf16's bits.
 */
static void
attention_tokens_bf16(int hd, int n_q, int m, const float *q, size_t q_stride,
                      const qwen_kv_view *kv, int n_pos, float scale, float *scratch,
                      float *out, size_t out_stride)
{
    uint32_t        qp[4 * 64];
    const uint32_t *pp[4];
    float          *o[4], sums[QWEN_KV_ATT_TOKENS][2];
    int             rows = qwen_kv_rows(n_pos + m - 1), np_[4], per, j0, np, nr, r, j, h, t;

    if (hd != 128 || n_q > 2 || m > QWEN_KV_ATT_TOKENS) {
        qwen_attention_each(attention_bf16, hd, n_q, m, q, q_stride, kv, n_pos, scale, scratch,
                            out, out_stride);
        return;
    }
    per = 4 / n_q;
    for (j0 = 0; j0 < m; j0 += per) {
        float *sc0 = scratch + (size_t) j0 * n_q * rows;

        np = m - j0 < per ? m - j0 : per;
        nr = np * n_q;
        for (r = 0; r < nr; r++) {
            bf16_round_row(q + (j0 + r / n_q) * q_stride + (size_t) (r % n_q) * hd,
                           (uint16_t *) (qp + r * (hd / 2)), hd);
        }
        switch (nr) {
        case 4: att_scores_bf16(hd, 4, qp, kv, n_pos + j0 + np - 1, scale, sc0, rows, 0); break;
        case 3: att_scores_bf16(hd, 3, qp, kv, n_pos + j0 + np - 1, scale, sc0, rows, 0); break;
        case 2: att_scores_bf16(hd, 2, qp, kv, n_pos + j0 + np - 1, scale, sc0, rows, 0); break;
        default: att_scores_bf16(hd, 1, qp, kv, n_pos + j0 + np - 1, scale, sc0, rows, 0); break;
        }
    }
    for (j = 0; j < m; j++) {
        for (h = 0; h < n_q; h++) {
            float *sc = scratch + (size_t) (j * n_q + h) * rows;

            sums[j][h] = softmax_exp512(sc, n_pos + j, rows);
            for (t = 0; t < rows; t += 32) {
                __m512bh pb = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(sc + t + 16),
                                                  _mm512_loadu_ps(sc + t));
                _mm512_storeu_si512((void *) ((uint32_t *) sc + t / 2), (__m512i) pb);
            }
        }
    }
    for (j0 = 0; j0 < m; j0 += per) {
        np = m - j0 < per ? m - j0 : per;
        nr = np * n_q;
        for (r = 0; r < nr; r++) {
            j = j0 + r / n_q;
            pp[r] = (const uint32_t *) (scratch + (size_t) (j * n_q + r % n_q) * rows);
            o[r] = out + j * out_stride + (size_t) (r % n_q) * hd;
            np_[r] = n_pos + j;
        }
        /* the pairs every row sees whole, then each later token's rest */
        att_values_rows_hd(hd, nr, pp, kv, 0, (n_pos + j0) / 2, np_, o, 1, 1);
        for (r = 0; r < nr; r += n_q) {
            att_values_rows_hd(hd, n_q, pp + r, kv, (n_pos + j0) / 2, (np_[r] + 1) / 2,
                               np_ + r, o + r, 0, 0);
        }
    }
    for (j = 0; j < m; j++) {
        for (h = 0; h < n_q; h++) {
            att_normalize(out + j * out_stride + (size_t) h * hd, hd, sums[j][h]);
        }
    }
}
#endif /* AVX512_BF16 */

/* ------------------------------------------- attention over a Q8_0 KV cache */

/*
 * q8_0 scores of NQ heads for a whole region (32 positions, the layout in
 * kernels.h) with VNNI: per 4-dimension group two 64-byte loads hold the
 * 32 positions; flipping their sign bits makes them k + 128 (unsigned), so
 * one vpdpbusd per head and 16 positions adds (k + 128) . q, and 128 x the
 * block's sum of q comes off once per block (exact integers). Per block
 * acc = fma(isum, dK * dq, acc), as the scalar reference: the same scores
 * bit for bit.
 */
static inline __attribute__((always_inline)) void
q8_scores_region(int hd, const int NQ, const int8_t *qs, const float *dq, const int32_t *qsum,
                 const int8_t *kq, __m512 acc[][2])
{
    const qwen_f16 *ks = qwen_kv_q8_0_scales(kq, hd);
    const __m512i   flip = _mm512_set1_epi8((char) 0x80);
    int             b, g, h, nb = hd / 32;

#pragma GCC unroll 4
    for (h = 0; h < NQ; h++) {
        acc[h][0] = acc[h][1] = _mm512_setzero_ps();
    }
    for (b = 0; b < nb; b++) {
        __m512i isum[4][2];
        __m512  dk0, dk1;

#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            isum[h][0] = isum[h][1] = _mm512_setzero_si512();
        }
#pragma GCC unroll 8
        for (g = 0; g < 8; g++) {
            const int8_t *kg = kq + (size_t) (8 * b + g) * (QWEN_KV_BLOCK * 4);
            __m512i       u0 = _mm512_xor_si512(_mm512_loadu_si512((const void *) kg), flip);
            __m512i       u1 = _mm512_xor_si512(_mm512_loadu_si512((const void *) (kg + 64)),
                                                flip);

#pragma GCC unroll 4
            for (h = 0; h < NQ; h++) {
                int32_t qg;
                __m512i qb;

                memcpy(&qg, qs + (size_t) h * hd + 32 * b + 4 * g, 4);
                qb = _mm512_set1_epi32(qg);
                isum[h][0] = _mm512_dpbusd_epi32(isum[h][0], u0, qb);
                isum[h][1] = _mm512_dpbusd_epi32(isum[h][1], u1, qb);
            }
        }
        dk0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (ks + b * QWEN_KV_BLOCK)));
        dk1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)
                                                 (ks + b * QWEN_KV_BLOCK + 16)));
#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            __m512i corr = _mm512_set1_epi32(128 * qsum[h * nb + b]);
            __m512  d = _mm512_set1_ps(dq[h * nb + b]);

            acc[h][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(isum[h][0], corr)),
                                        _mm512_mul_ps(dk0, d), acc[h][0]);
            acc[h][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(isum[h][1], corr)),
                                        _mm512_mul_ps(dk1, d), acc[h][1]);
        }
    }
}

/* scores[h][t] for NQ heads (h at h * rows), whole regions: past n_pos they
 * hold anything, softmax_exp512 masks them */
static inline __attribute__((always_inline)) void
q8_scores(int hd, const int NQ, const int8_t *qs, const float *dq, const int32_t *qsum,
          const qwen_kv_view *kv, int n_pos, float scale, float *scores, int rows)
{
    int    r, h;
    __m512 acc[4][2];

    for (r = 0; r < n_pos; r += QWEN_KV_BLOCK) {
        qwen_kv_prefetch_ahead(kv, kv->k, r, n_pos,
                               qwen_kv_pos_bytes(QWEN_KV_Q8_0, hd) * QWEN_KV_BLOCK);
        q8_scores_region(hd, NQ, qs, dq, qsum, qwen_kv_block_k(kv, r), acc);
#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            _mm512_storeu_ps(scores + (size_t) h * rows + r,
                             _mm512_mul_ps(acc[h][0], _mm512_set1_ps(scale)));
            _mm512_storeu_ps(scores + (size_t) h * rows + r + 16,
                             _mm512_mul_ps(acc[h][1], _mm512_set1_ps(scale)));
        }
    }
}

/* out[h] += w . V over the np positions of one region for NH heads and the
 * 32 dimensions of block b, w = p[h][t] x V's scale (wv): each row's 32
 * int8 converted once for the heads */
static inline __attribute__((always_inline)) void
q8_values_block(int hd, const int NH, const float (*wv)[QWEN_KV_BLOCK], const int8_t *vq,
                int np, int b, float *out)
{
    __m512 o[4][2];
    int    t, h;

#pragma GCC unroll 4
    for (h = 0; h < NH; h++) {
        o[h][0] = _mm512_loadu_ps(out + (size_t) h * hd + 32 * b);
        o[h][1] = _mm512_loadu_ps(out + (size_t) h * hd + 32 * b + 16);
    }
    for (t = 0; t < np; t++) {
        const int8_t *row = vq + qwen_kv_q8_0_v_index(hd, t, 32 * b);
        __m512        v0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                               _mm_loadu_si128((const __m128i *) row)));
        __m512        v1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                               _mm_loadu_si128((const __m128i *) (row + 16))));

#pragma GCC unroll 4
        for (h = 0; h < NH; h++) {
            __m512 w = _mm512_set1_ps(wv[h][t]);
            o[h][0] = _mm512_fmadd_ps(w, v0, o[h][0]);
            o[h][1] = _mm512_fmadd_ps(w, v1, o[h][1]);
        }
    }
#pragma GCC unroll 4
    for (h = 0; h < NH; h++) {
        _mm512_storeu_ps(out + (size_t) h * hd + 32 * b, o[h][0]);
        _mm512_storeu_ps(out + (size_t) h * hd + 32 * b + 16, o[h][1]);
    }
}

/* out[h] = sum_t p[h][t] V[t] for nh heads (p at h * rows, zero past
 * n_pos), one region at a time so V is read once, in order */
static void
q8_values(int hd, int nh, const float *p, int rows, const qwen_kv_view *kv, int n_pos,
          float *out)
{
    float wv[4][QWEN_KV_BLOCK];
    int   r, b, h, np;

    memset(out, 0, (size_t) nh * hd * sizeof(float));
    for (r = 0; r < n_pos; r += QWEN_KV_BLOCK) {
        const int8_t   *vq = qwen_kv_block_v(kv, r);
        const qwen_f16 *vs = qwen_kv_q8_0_scales(vq, hd);

        np = n_pos - r < QWEN_KV_BLOCK ? n_pos - r : QWEN_KV_BLOCK;
        qwen_kv_prefetch_ahead(kv, kv->v, r, n_pos,
                               qwen_kv_pos_bytes(QWEN_KV_Q8_0, hd) * QWEN_KV_BLOCK);
        for (b = 0; b < hd / 32; b++) {
            const qwen_f16 *sb = vs + b * QWEN_KV_BLOCK;
            __m512          d0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) sb));
            __m512          d1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (sb + 16)));

            /* only the first np weights are read */
            for (h = 0; h < nh; h++) {
                _mm512_storeu_ps(&wv[h][0], _mm512_mul_ps(
                    _mm512_loadu_ps(p + (size_t) h * rows + r), d0));
                _mm512_storeu_ps(&wv[h][16], _mm512_mul_ps(
                    _mm512_loadu_ps(p + (size_t) h * rows + r + 16), d1));
            }
            switch (nh) {
            case 1: q8_values_block(hd, 1, (const float (*)[QWEN_KV_BLOCK]) wv, vq, np, b, out);
                    break;
            case 2: q8_values_block(hd, 2, (const float (*)[QWEN_KV_BLOCK]) wv, vq, np, b, out);
                    break;
            case 3: q8_values_block(hd, 3, (const float (*)[QWEN_KV_BLOCK]) wv, vq, np, b, out);
                    break;
            default: q8_values_block(hd, 4, (const float (*)[QWEN_KV_BLOCK]) wv, vq, np, b,
                                     out);
                     break;
            }
        }
    }
}

/*
 * Attention over the q8_0 layout, up to 4 query heads at a time: query
 * quantized per 32 dimensions (qwen_kv_quantize_q), integer q . K with
 * vpdpbusd, softmax with the vector exp, V dequantized once per row for
 * the heads and weighted by probability x scale.
 */
static void
attention_q8_0(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
               float *scratch, float *out)
{
    int8_t  qs[4 * QWEN_KV_MAX_HD];
    float   dq[4 * QWEN_KV_MAX_HD / 32], sums[4];
    int32_t qsum[4 * QWEN_KV_MAX_HD / 32];
    int     rows = qwen_kv_rows(n_pos), h0, nh, h, i, b, nb = hd / 32;
    size_t  region = qwen_kv_pos_bytes(QWEN_KV_Q8_0, hd) * QWEN_KV_BLOCK;

    for (h0 = 0; h0 < n_q; h0 += nh) {
        float *sc0 = scratch + (size_t) h0 * rows, *o0 = out + (size_t) h0 * hd;

        nh = n_q - h0 < 4 ? n_q - h0 : 4;
        for (h = 0; h < nh; h++) {
            qwen_kv_quantize_q(hd, q + (size_t) (h0 + h) * hd, qs + (size_t) h * hd,
                               dq + h * nb);
            for (b = 0; b < nb; b++) {
                qsum[h * nb + b] = 0;
                for (i = 0; i < 32; i++) {
                    qsum[h * nb + b] += qs[(size_t) h * hd + 32 * b + i];
                }
            }
        }
        qwen_kv_prefetch_start(kv, kv->k, n_pos, region);
        switch (nh) {
        case 1: q8_scores(hd, 1, qs, dq, qsum, kv, n_pos, scale, sc0, rows); break;
        case 2: q8_scores(hd, 2, qs, dq, qsum, kv, n_pos, scale, sc0, rows); break;
        case 3: q8_scores(hd, 3, qs, dq, qsum, kv, n_pos, scale, sc0, rows); break;
        default: q8_scores(hd, 4, qs, dq, qsum, kv, n_pos, scale, sc0, rows); break;
        }
        qwen_kv_prefetch_start(kv, kv->v, n_pos, region);
        for (h = 0; h < nh; h++) {
            sums[h] = softmax_exp512(sc0 + (size_t) h * rows, n_pos, rows);
        }
        q8_values(hd, nh, sc0, rows, kv, n_pos, o0);
        for (h = 0; h < nh; h++) {
            att_normalize(o0 + (size_t) h * hd, hd, sums[h]);
        }
    }
}

/* ------------------------------------------- attention over an F16 KV cache */

/*
 * The f16 rows of kernels.h's layout on 512-bit registers, where the avx2
 * table's passes convert and multiply 8 values an instruction. q . K: each
 * score a 16-lane chain of FMAs over its row in order, its two halves
 * added and summed as qwen_hsum256 sums; up to F16_ATT_ROWS query rows
 * share each K row's conversion (a prompt call's 4 tokens x a GQA pair: 8).
 * p . V: per output lane one FMA a position, in position order. A score
 * depends only on its query and K row, an output lane only on its row's
 * probabilities in order, so however rows and positions are grouped a
 * token gets the same bits: attention_tokens_f16 gives attention_f16's.
 * hd a multiple of 128 up to 256 (Qwen3: 128); else the avx2 kernels.
 * att_bench at 400 positions (Xeon, avx512_vnni, against the avx2 table's
 * kernels): a prompt's call 38.1 against 27.5 GMAC/s, a decode step in
 * cache 8.6 against 9.8 us (from memory: the same, at the bandwidth);
 * Q4_K_M, a 64-token prompt after 700 tokens 311-322 against 280-299 tok/s.
 */
#define F16_ATT_ROWS 8

/* scores sc[h][t + j] of NQ query rows and P positions from t. DEC: a
 * decode step's pass, which asks for V's lines too (qwen_kv_prefetch_decode) */
static inline __attribute__((always_inline)) void
f16_scores_at(int hd, const int NQ, const int P, const float *const *q, const qwen_kv_view *kv,
              int t, int n_pos, float scale, float *const *sc, const int DEC)
{
    const qwen_f16 *kt[8];
    __m512          acc[8][8];
    __m256          v[8 * 8];
    float           s8[8];
    int             i, j, h, n, k;

    /* a prompt's K lines for the P positions at once (one region: t is a
     * multiple of P); a decode step's K and V lines a position at a time,
     * as the avx2 pass asks: 8 positions' 64 lines in one burst made decode
     * after 700 tokens 3% slower (Q4_K_M: 50.7-50.9 against 51.9-52.4) */
    if (!DEC) {
        qwen_kv_prefetch_pos(kv, kv->k, t, P, n_pos, (size_t) hd * 2);
    }
#pragma GCC unroll 8
    for (j = 0; j < P; j++) {
        kt[j] = qwen_kv_row_k(kv, t + j, hd);
        if (DEC) {
            qwen_kv_prefetch_decode(kv, t + j, 1, n_pos, (size_t) hd * 2);
        }
#pragma GCC unroll 8
        for (h = 0; h < NQ; h++) {
            acc[j][h] = _mm512_setzero_ps();
        }
    }
    for (i = 0; i < hd; i += 16) {
#pragma GCC unroll 8
        for (j = 0; j < P; j++) {
            __m512 k16 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (kt[j] + i)));
#pragma GCC unroll 8
            for (h = 0; h < NQ; h++) {
                acc[j][h] = _mm512_fmadd_ps(_mm512_loadu_ps(q[h] + i), k16, acc[j][h]);
            }
        }
    }
    n = 0;
#pragma GCC unroll 8
    for (h = 0; h < NQ; h++) {
#pragma GCC unroll 8
        for (j = 0; j < P; j++) {
            v[n++] = _mm256_add_ps(_mm512_castps512_ps256(acc[j][h]),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                       _mm512_castps_pd(acc[j][h]), 1)));
        }
    }
    if (n % 8 == 0) {
        /* each 8 sums: 8 / P rows' P positions */
#pragma GCC unroll 2
        for (k = 0; k < n; k += 8) {
            _mm256_storeu_ps(s8, _mm256_mul_ps(qwen_hsum8x256(v + k), _mm256_set1_ps(scale)));
            for (h = 0; h < 8 / P; h++) {
                memcpy(sc[k / P + h] + t, s8 + h * P, sizeof(float) * (size_t) P);
            }
        }
        return;
    }
    for (k = 0; k < n; k++) {
        sc[k / P][t + k % P] = qwen_hsum256(v[k]) * scale;
    }
}

/* positions 0 .. n_pos - 1 */
static inline __attribute__((always_inline)) void
f16_scores(int hd, const int NQ, const float *const *q, const qwen_kv_view *kv, int n_pos,
           float scale, float *const *sc, const int DEC)
{
    const int P = NQ >= 8 ? 2 : NQ >= 4 ? 4 : 8;   /* 8 or 16 accumulators */
    int       t;

    for (t = 0; t + P <= n_pos; t += P) {
        f16_scores_at(hd, NQ, P, q, kv, t, n_pos, scale, sc, DEC);
    }
    for (; t < n_pos; t++) {
        f16_scores_at(hd, NQ, 1, q, kv, t, n_pos, scale, sc, DEC);
    }
}

/* nr rows in groups of 8, 4, 2, 1 */
static void
f16_scores_rows(int hd, int nr, const float *const *q, const qwen_kv_view *kv, int n_pos,
                float scale, float *const *sc, int dec)
{
    int r, g;

    for (r = 0; r < nr; r += g) {
        g = nr - r >= 8 ? 8 : nr - r >= 4 ? 4 : nr - r >= 2 ? 2 : 1;
#define F16_SCORES(G, D) f16_scores(hd, G, q + r, kv, n_pos, scale, sc + r, D)
        if (dec) {
            switch (g) {
            case 8: F16_SCORES(8, 1); break;
            case 4: F16_SCORES(4, 1); break;
            case 2: F16_SCORES(2, 1); break;
            default: F16_SCORES(1, 1); break;
            }
        } else {
            switch (g) {
            case 8: F16_SCORES(8, 0); break;
            case 4: F16_SCORES(4, 0); break;
            case 2: F16_SCORES(2, 0); break;
            default: F16_SCORES(1, 0); break;
            }
        }
#undef F16_SCORES
    }
}

/* o[h] += sum over positions t0 .. t1 - 1 of p[h][t] V[t] for NH rows,
 * 16J values at a time, continuing the sums o holds or from zero. A
 * block's rows at a time (32 positions, 8 KiB at hd 128), all the chunks
 * of values over them while they sit in L1, as the avx2 pass walks them */
static inline __attribute__((always_inline)) void
f16_values(int hd, const int NH, const int J, const float *const *p, const qwen_kv_view *kv,
           int t0, int t1, float *const *o, int zero)
{
    const size_t row_bytes = (size_t) hd * 2;
    int          i, t, h, j, tb, te;

    for (tb = t0; tb < t1; tb = te) {
        const char *vb = (const char *) qwen_kv_row_v(kv, tb, hd);

        te = (tb / QWEN_KV_BLOCK + 1) * QWEN_KV_BLOCK;
        te = te < t1 ? te : t1;
        for (i = 0; i < hd; i += 16 * J) {
            const char *vt = vb;
            __m512      acc[8][8];

#pragma GCC unroll 8
            for (h = 0; h < NH; h++) {
#pragma GCC unroll 8
                for (j = 0; j < J; j++) {
                    acc[h][j] = zero && tb == t0 ? _mm512_setzero_ps()
                                                 : _mm512_loadu_ps(o[h] + i + 16 * j);
                }
            }
            for (t = tb; t < te; t++, vt += row_bytes) {
                __m512 vv[8];

                if (i == 0) {
                    qwen_kv_prefetch_pos(kv, kv->v, t, 1, t1, row_bytes);
                }
#pragma GCC unroll 8
                for (j = 0; j < J; j++) {
                    vv[j] = _mm512_cvtph_ps(
                        _mm256_loadu_si256((const __m256i *) (vt + 2 * (i + 16 * j))));
                }
#pragma GCC unroll 8
                for (h = 0; h < NH; h++) {
                    __m512 ph = _mm512_set1_ps(p[h][t]);
#pragma GCC unroll 8
                    for (j = 0; j < J; j++) {
                        acc[h][j] = _mm512_fmadd_ps(ph, vv[j], acc[h][j]);
                    }
                }
            }
#pragma GCC unroll 8
            for (h = 0; h < NH; h++) {
#pragma GCC unroll 8
                for (j = 0; j < J; j++) {
                    _mm512_storeu_ps(o[h] + i + 16 * j, acc[h][j]);
                }
            }
        }
    }
}

/* nr rows in groups of 8 (32 values a chunk), 4 (64), 2 or 1 (128) */
static void
f16_values_rows(int hd, int nr, const float *const *p, const qwen_kv_view *kv, int t0, int t1,
                float *const *o, int zero)
{
    int r, g;

    for (r = 0; r < nr; r += g) {
        g = nr - r >= 8 ? 8 : nr - r >= 4 ? 4 : nr - r >= 2 ? 2 : 1;
        switch (g) {
        case 8: f16_values(hd, 8, 2, p + r, kv, t0, t1, o + r, zero); break;
        case 4: f16_values(hd, 4, 4, p + r, kv, t0, t1, o + r, zero); break;
        case 2: f16_values(hd, 2, 8, p + r, kv, t0, t1, o + r, zero); break;
        default: f16_values(hd, 1, 8, p + r, kv, t0, t1, o + r, zero); break;
        }
    }
}

static void
attention_f16(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
              float *scratch, float *out)
{
    const size_t region = (size_t) QWEN_KV_BLOCK * hd * 2;
    const float *qr[F16_ATT_ROWS] = { 0 };
    float       *sc[F16_ATT_ROWS] = { 0 }, *o[F16_ATT_ROWS] = { 0 }, sums[F16_ATT_ROWS];
    int          rows = qwen_kv_rows(n_pos), r;

    if (hd % 128 != 0 || hd > 256 || n_q > F16_ATT_ROWS) {
        qwen_avx2_attention_f16(hd, n_q, q, kv, n_pos, scale, scratch, out);
        return;
    }
    for (r = 0; r < n_q; r++) {
        qr[r] = q + (size_t) r * hd;
        sc[r] = scratch + (size_t) r * rows;
        o[r] = out + (size_t) r * hd;
    }
    qwen_kv_prefetch_start(kv, kv->k, n_pos, region);
    qwen_kv_prefetch_start(kv, kv->v, n_pos, region);
    f16_scores_rows(hd, n_q, qr, kv, n_pos, scale, sc, 1);
    for (r = 0; r < n_q; r++) {
        sums[r] = softmax_exp512(sc[r], n_pos, rows);
    }
    f16_values_rows(hd, n_q, (const float *const *) sc, kv, 0, n_pos, o, 1);
    for (r = 0; r < n_q; r++) {
        att_normalize(o[r], hd, sums[r]);
    }
}

/*
 * m consecutive tokens of a sequence (qwen_kv_attention_tokens_fn): all
 * their query rows (up to F16_ATT_ROWS) over every position the last one
 * sees, so each K row is converted once for them all; an earlier token's
 * scores past its own positions are computed and dropped by its softmax
 * (their rows are written: the call's tokens are stored). V: the positions
 * all tokens see for all rows, then each later token's few more.
 */
static void
attention_tokens_f16(int hd, int n_q, int m, const float *q, size_t q_stride,
                     const qwen_kv_view *kv, int n_pos, float scale, float *scratch, float *out,
                     size_t out_stride)
{
    const size_t region = (size_t) QWEN_KV_BLOCK * hd * 2;
    const float *qr[F16_ATT_ROWS] = { 0 };
    float       *sc[F16_ATT_ROWS] = { 0 }, *o[F16_ATT_ROWS] = { 0 }, sums[F16_ATT_ROWS];
    int          rows = qwen_kv_rows(n_pos + m - 1), nr = n_q * m, r, j;

    if (hd % 128 != 0 || hd > 256 || nr > F16_ATT_ROWS) {
        qwen_attention_each(attention_f16, hd, n_q, m, q, q_stride, kv, n_pos, scale, scratch,
                            out, out_stride);
        return;
    }
    for (r = 0; r < nr; r++) {
        j = r / n_q;
        qr[r] = q + j * q_stride + (size_t) (r % n_q) * hd;
        sc[r] = scratch + (size_t) r * rows;
        o[r] = out + j * out_stride + (size_t) (r % n_q) * hd;
    }
    qwen_kv_prefetch_start(kv, kv->k, n_pos, region);
    f16_scores_rows(hd, nr, qr, kv, n_pos + m - 1, scale, sc, 0);
    for (r = 0; r < nr; r++) {
        sums[r] = softmax_exp512(sc[r], n_pos + r / n_q, rows);
    }
    qwen_kv_prefetch_start(kv, kv->v, n_pos, region);
    f16_values_rows(hd, nr, (const float *const *) sc, kv, 0, n_pos, o, 1);
    for (j = 1; j < m; j++) {
        f16_values_rows(hd, n_q, (const float *const *) (sc + j * n_q), kv, n_pos, n_pos + j,
                        o + j * n_q, 0);
    }
    for (r = 0; r < nr; r++) {
        att_normalize(o[r], hd, sums[r]);
    }
}

/*
 * Float weights (F32, F16, BF16) x NT F32 activation rows: 64 values per
 * step in four chains per token. One chain waits on the FMA latency; four
 * (fully unrolled, so the accumulators stay in registers) took one core's
 * BF16 row dot from 10 to 24 GMAC/s in L2 and from 20 to 27 GB/s streamed,
 * BF16 decode from ~17-21 to ~27 tok/s on 2 threads. One template for 1
 * and 4 rows: a token's result is the same bits either way.
 */
static inline __attribute__((always_inline)) __m512
load_w16(const void *w, int64_t i, const int type)
{
    if (type == QWEN_TYPE_F32) {
        return _mm512_loadu_ps((const float *) w + i);
    }
    if (type == QWEN_TYPE_F16) {
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) ((const uint16_t *) w + i)));
    }
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *) ((const uint16_t *) w + i))),
        16));
}

static inline __attribute__((always_inline)) float
load_w1(const void *w, int64_t i, const int type)
{
    if (type == QWEN_TYPE_F32) {
        return ((const float *) w)[i];
    }
    if (type == QWEN_TYPE_F16) {
        return qwen_f16_to_f32(((const uint16_t *) w)[i]);
    }
    return qwen_bf16_to_f32(((const uint16_t *) w)[i]);
}

static inline __attribute__((always_inline)) void
float_dot_n(int64_t n, const void *w, const void *act, size_t stride, float *out, const int NT,
            const int type)
{
    const float *y[4];
    __m512       acc[4][4], wv;
    int64_t      i = 0, k;
    int          t, j;
    float        sum;

    for (t = 0; t < NT; t++) {
        y[t] = (const float *) ((const char *) act + t * stride);
        for (j = 0; j < 4; j++) {
            acc[t][j] = _mm512_setzero_ps();
        }
    }
    for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 4
        for (j = 0; j < 4; j++) {
            wv = load_w16(w, i + 16 * j, type);
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                acc[t][j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(y[t] + i + 16 * j), acc[t][j]);
            }
        }
    }
    for (; i + 16 <= n; i += 16) {
        wv = load_w16(w, i, type);
        for (t = 0; t < NT; t++) {
            acc[t][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(y[t] + i), acc[t][0]);
        }
    }
    for (t = 0; t < NT; t++) {
        sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]),
                                                 _mm512_add_ps(acc[t][2], acc[t][3])));
        for (k = i; k < n; k++) {
            sum = fmaf(load_w1(w, k, type), y[t][k], sum);
        }
        out[t] = sum;
    }
}

QWEN_X86_DOT_PAIR(dot_f32, dot4_f32, float_dot_n, QWEN_TYPE_F32)
QWEN_X86_DOT_PAIR(dot_f16, dot4_f16, float_dot_n, QWEN_TYPE_F16)
QWEN_X86_DOT_PAIR(dot_bf16, dot4_bf16, float_dot_n, QWEN_TYPE_BF16)
QWEN_X86_DOT_PAIR(dot_q8_0_vnni, dot4_q8_0_vnni, qwen_q8_0_dot_n)
QWEN_X86_DOT_PAIR(dot_q4_K_vnni, dot4_q4_K_vnni, qwen_q4k_dot_n)
QWEN_X86_DOT_2X4(dot2x4_q4_K_vnni, qwen_q4k_dot_rows)
QWEN_X86_DOT_2X4(dot2x4_q8_0_vnni, qwen_q8_0_dot_rows)
QWEN_X86_DOT_PAIR(dot_q6_K_vnni, dot4_q6_K_vnni, q6k_dot_vnni)
#if AVX512_BF16
/* The 512-bit packed Q4_K / Q6_K dots: the avx512 (BF16) table's. The
 * avx512_vnni build takes the 256-bit ones instead (measured below). */

/* vpermd indices placing steps 2kk and 2kk + 1 of an activation's 8
 * 4-byte lanes in the low and high 8 lanes (kk = 0 .. 3) */
static inline void
step_pair_select(__m512i sel[4])
{
    int kk;

    for (kk = 0; kk < 4; kk++) {
        sel[kk] = _mm512_add_epi32(_mm512_set1_epi32(2 * kk),
                                   _mm512_inserti64x4(_mm512_setzero_si512(),
                                                      _mm256_set1_epi32(1), 1));
    }
}

/*
 * Packed Q4_K x Q8_K on 512-bit registers (the AVX2 table's qwen_q4kx8_dot
 * with two steps a vector): one load is steps k and k + 1 of the 8 rows,
 * the low and high nibbles two vpdpbusd against the token's 4 activation
 * bytes of each step, placed in the step's half by one vpermd from the
 * sub-block's 32 bytes held in a register. A sub-block's two halves add
 * up before its scale multiplies them: the AVX2 kernel's integers, then
 * its float operations in its order, so the same bits. Half the
 * instructions per token: several tokens a call (drafts being verified,
 * sequences decoded together) are compute-bound.
 */
static inline __attribute__((always_inline)) void
q4kx8_dot_512(int64_t n, const void *w, const void *act, size_t stride, float *out,
              const int NT)
{
    const __m512i       mask = _mm512_set1_epi8(0xF);
    const block_q4_Kx8 *x = w;
    __m512i             sel[4];
    int64_t             b, nb = n / QK_K;
    int                 t, j, h, kk;

    step_pair_select(sel);
#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        _mm256_storeu_ps(out + 8 * t, _mm256_setzero_ps());
    }
    for (b = 0; b < nb; b++) {
        __m256i isum[4];

#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            isum[t] = _mm256_setzero_si256();
        }
        for (j = 0; j < QK_K / 64; j++) {
            __m512i acc[4][2], ya[4][2];

            /* a quarter of a block ahead a step (x86.h) */
            qwen_prefetch_part(x + b + QWEN_PACK_PREFETCH, sizeof(block_q4_Kx8), j, QK_K / 64);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                const int8_t *q8 = ((const block_q8_K *) ((const char *) act + t * stride))[b].qs
                                   + 64 * j;

                ya[t][0] = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) q8));
                ya[t][1] = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) (q8 + 32)));
                acc[t][0] = _mm512_setzero_si512();
                acc[t][1] = _mm512_setzero_si512();
            }
#pragma GCC unroll 4
            for (kk = 0; kk < 4; kk++) {
                __m512i v = _mm512_loadu_si512((const void *) x[b].qs[j][2 * kk]);
                __m512i lo = _mm512_and_si512(v, mask);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);

#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    acc[t][0] = _mm512_dpbusd_epi32(acc[t][0], lo,
                                                    _mm512_permutexvar_epi32(sel[kk], ya[t][0]));
                    acc[t][1] = _mm512_dpbusd_epi32(acc[t][1], hi,
                                                    _mm512_permutexvar_epi32(sel[kk], ya[t][1]));
                }
            }
#pragma GCC unroll 2
            for (h = 0; h < 2; h++) {
                __m256i sc = _mm256_cvtepu8_epi32(
                    _mm_loadl_epi64((const __m128i *) x[b].scales[2 * j + h]));

#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    __m256i s32 = _mm256_add_epi32(_mm512_castsi512_si256(acc[t][h]),
                                                   _mm512_extracti64x4_epi64(acc[t][h], 1));

                    isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(s32, sc));
                }
            }
        }
        qwen_q4kx8_finish(x + b, act, stride, b, isum, out, NT);
    }
}

QWEN_PACKED_DOT_ENTRY(packed_dot_q4_K, q4kx8_dot_512)

/*
 * Packed Q6_K x Q8_K on 512-bit registers, as q4kx8_dot_512 (two steps a
 * vector, activations placed by vpermd): steps 2kk and 2kk + 1 share the
 * 32 bytes of top bits qh[j][kk] (bits 0-3 and 4-7), so that load fills
 * both halves and the upper one shifts down by 4. Two kk's make a 16-column
 * sub-block: its 32-bit sums are scaled once. The -32 offset comes off
 * through the bsums as in the AVX2 kernel: its integers and float
 * operations, so the same bits.
 */
static inline __attribute__((always_inline)) void
q6kx8_dot_512(int64_t n, const void *w, const void *act, size_t stride, float *out,
              const int NT)
{
    const __m512i       m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
    const block_q6_Kx8 *x = w;
    __m512i             sel[4];
    int64_t             b, nb = n / QK_K;
    int                 t, j, kk;

    step_pair_select(sel);
#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        _mm256_storeu_ps(out + 8 * t, _mm256_setzero_ps());
    }
    for (b = 0; b < nb; b++) {
        __m256i isum[4];

#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            isum[t] = _mm256_setzero_si256();
        }
        for (j = 0; j < QK_K / 64; j++) {
            /* each row's scales (4j, 4j + 1) and (4j + 2, 4j + 3) in 16-bit pairs */
            __m256i p0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) x[b].scales[2 * j]));
            __m256i p1 = _mm256_cvtepi8_epi16(
                _mm_loadu_si128((const __m128i *) x[b].scales[2 * j + 1]));
            __m512i acc[4][2], ya[4][2];

            /* a quarter of a block ahead a step (x86.h) */
            qwen_prefetch_part(x + b + QWEN_PACK_PREFETCH, sizeof(block_q6_Kx8), j, QK_K / 64);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                const int8_t *q8 = ((const block_q8_K *) ((const char *) act + t * stride))[b].qs
                                   + 64 * j;

                ya[t][0] = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) q8));
                ya[t][1] = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) (q8 + 32)));
            }
#pragma GCC unroll 4
            for (kk = 0; kk < 4; kk++) {
                __m512i l = _mm512_loadu_si512((const void *) x[b].ql[j][2 * kk]);
                __m256i h = _mm256_loadu_si256((const __m256i *) x[b].qh[j][kk]);
                /* step 2kk + 1's top bits are bits 4-7 */
                __m512i qh = _mm512_inserti64x4(_mm512_castsi256_si512(h),
                                                _mm256_srli_epi16(h, 4), 1);
                __m512i lo, hi;

                lo = _mm512_or_si512(_mm512_and_si512(l, m4),
                                     _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30));
                hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                     _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30));
#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    if (kk % 2 == 0) {
                        acc[t][0] = _mm512_setzero_si512();
                        acc[t][1] = _mm512_setzero_si512();
                    }
                    acc[t][0] = _mm512_dpbusd_epi32(acc[t][0], lo,
                                                    _mm512_permutexvar_epi32(sel[kk], ya[t][0]));
                    acc[t][1] = _mm512_dpbusd_epi32(acc[t][1], hi,
                                                    _mm512_permutexvar_epi32(sel[kk], ya[t][1]));
                    if (kk % 2 == 1) {
                        /* sub-blocks 4j + kk / 2 (low nibbles) and 4j + 2 + kk / 2 */
                        __m256i sl = kk >= 2 ? _mm256_srai_epi32(p0, 16)
                                             : _mm256_srai_epi32(_mm256_slli_epi32(p0, 16), 16);
                        __m256i sh = kk >= 2 ? _mm256_srai_epi32(p1, 16)
                                             : _mm256_srai_epi32(_mm256_slli_epi32(p1, 16), 16);
                        __m256i s0 = _mm256_add_epi32(_mm512_castsi512_si256(acc[t][0]),
                                                      _mm512_extracti64x4_epi64(acc[t][0], 1));
                        __m256i s1 = _mm256_add_epi32(_mm512_castsi512_si256(acc[t][1]),
                                                      _mm512_extracti64x4_epi64(acc[t][1], 1));

                        isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(s0, sl));
                        isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(s1, sh));
                    }
                }
            }
        }
        qwen_q6kx8_finish(x + b, act, stride, b, isum, out, NT);
    }
}

QWEN_PACKED_DOT_ENTRY(packed_dot_q6_K, q6kx8_dot_512)
#else
/* avx512_vnni: the avx2_vnni kernels (vpdpbusd on ymm), the same bits as
 * the 512-bit ones and faster on Intel's cores for several tokens (Q4_K_M,
 * 4 / 8 sequences decoded together, 2 threads: 197 / 211 tok/s against 174
 * / 177 with the 512-bit dots, 185 / 200 on the avx2 table) */
QWEN_PACKED_DOT_ENTRY(packed_dot_q4_K, qwen_q4kx8_dot)
QWEN_PACKED_DOT_ENTRY(packed_dot_q6_K, qwen_q6kx8_dot)
#endif
QWEN_PACKED_DOT_ENTRY(packed_dot_q8_0, qwen_q8_0x8_dot)
QWEN_PACKED_DOT_ENTRY(packed_dot_bf16, qwen_bf16x8_dot)

/* ------------------------------------------- packed GEMM, 16 rows a call */

/*
 * Prompt tokens (and any step of 8 tokens or more) against two packed
 * groups at once: each super-block of the 16 rows is restaged on the stack
 * (quants unpacked to bytes, the two groups' steps side by side in one
 * 64-byte vector, scales widened to 32 bits), then every token streams
 * past it with one vpdpbusd per 16 rows x 4 columns, its 4 activation
 * bytes a broadcast. The integers are the packed dots' (exact, any order)
 * and each (row, token) gets their float operations in their order, so
 * the same bits as packed_dot: a token's result depends on nothing else
 * in the call.
 */
#define GEMM_TOKENS 8

typedef struct {
    uint8_t q[QK_K / 64][2][8][64];     /* [j][nibble h][step k]: 16 rows x 4 */
    int32_t sc[QK_K / 32][16];          /* sub-block scales, per row */
    int32_t mn[QK_K / 64][16];          /* mins of sub-blocks 2i, 2i + 1: 16-bit pairs */
    float   d[16], dmin[16];
} q4k_stage16;

/* the two groups' 8-row vectors side by side */
static inline __m512i
join(__m256i a, __m256i b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

static void
q4k_restage16(const block_q4_Kx8 *g0, const block_q4_Kx8 *g1, q4k_stage16 *st)
{
    const __m512i mask = _mm512_set1_epi8(0xF);
    int           j, k, r, sb;

    for (j = 0; j < QK_K / 64; j++) {
        for (k = 0; k < 8; k++) {
            __m512i v = join(_mm256_loadu_si256((const __m256i *) g0->qs[j][k]),
                             _mm256_loadu_si256((const __m256i *) g1->qs[j][k]));

            _mm512_storeu_si512((void *) st->q[j][0][k], _mm512_and_si512(v, mask));
            _mm512_storeu_si512((void *) st->q[j][1][k],
                                _mm512_and_si512(_mm512_srli_epi16(v, 4), mask));
        }
    }
    for (sb = 0; sb < QK_K / 32; sb++) {
        for (r = 0; r < 8; r++) {
            st->sc[sb][r] = g0->scales[sb][r];
            st->sc[sb][8 + r] = g1->scales[sb][r];
        }
    }
    for (sb = 0; sb < QK_K / 64; sb++) {
        for (r = 0; r < 8; r++) {
            st->mn[sb][r] = g0->mins[sb][r][0] | (int32_t) g0->mins[sb][r][1] << 16;
            st->mn[sb][8 + r] = g1->mins[sb][r][0] | (int32_t) g1->mins[sb][r][1] << 16;
        }
    }
    _mm256_storeu_ps(st->d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) g0->d)));
    _mm256_storeu_ps(st->d + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) g1->d)));
    _mm256_storeu_ps(st->dmin, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) g0->dmin)));
    _mm256_storeu_ps(st->dmin + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) g1->dmin)));
}

static inline int32_t
act4(const int8_t *q)
{
    int32_t v;

    memcpy(&v, q, 4);
    return v;
}

/* super-block b of NT tokens (act rows ys[t]) into their 16 outputs */
static inline __attribute__((always_inline)) void
q4k_gemm16_tokens(const q4k_stage16 *st, const block_q8_K *const *ys, int64_t b,
                  float *const *outs, const int NT)
{
    __m512i isum[GEMM_TOKENS], acc[GEMM_TOKENS];
    int     t, j, h, k, sb;

#pragma GCC unroll 8
    for (t = 0; t < NT; t++) {
        isum[t] = _mm512_setzero_si512();
    }
    for (j = 0; j < QK_K / 64; j++) {
        for (h = 0; h < 2; h++) {
#pragma GCC unroll 8
            for (t = 0; t < NT; t++) {
                acc[t] = _mm512_setzero_si512();
            }
#pragma GCC unroll 8
            for (k = 0; k < 8; k++) {
                __m512i w = _mm512_loadu_si512((const void *) st->q[j][h][k]);

#pragma GCC unroll 8
                for (t = 0; t < NT; t++) {
                    acc[t] = _mm512_dpbusd_epi32(acc[t], w, _mm512_set1_epi32(
                        act4(ys[t][b].qs + 64 * j + 32 * h + 4 * k)));
                }
            }
            {
                __m512i sc = _mm512_loadu_si512((const void *) st->sc[2 * j + h]);

#pragma GCC unroll 8
                for (t = 0; t < NT; t++) {
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(acc[t], sc));
                }
            }
        }
    }
    {
        __m512 d = _mm512_loadu_ps(st->d), dmin = _mm512_loadu_ps(st->dmin);

#pragma GCC unroll 8
        for (t = 0; t < NT; t++) {
            const block_q8_K *y = ys[t] + b;
            int32_t           pairs[4];
            __m512i           msum = _mm512_setzero_si512();
            __m512            dy = _mm512_set1_ps(y->d), o;

            qwen_q8k_bsum_pairs(y, pairs);
            for (sb = 0; sb < QK_K / 64; sb++) {
                msum = _mm512_dpwssd_epi32(msum, _mm512_loadu_si512((const void *) st->mn[sb]),
                                           _mm512_set1_epi32(pairs[sb]));
            }
            o = _mm512_fmadd_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(isum[t]),
                                _mm512_loadu_ps(outs[t]));
            o = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dy), _mm512_cvtepi32_ps(msum), o);
            _mm512_storeu_ps(outs[t], o);
        }
    }
}

typedef struct {
    uint8_t q[QK_K / 64][8][2][64];     /* [j][step k][low | high column]: values 0 .. 63 */
    int32_t sc[QK_K / 16][16];          /* 16-column sub-block scales, per row */
    int32_t sp[QK_K / 32][16];          /* scales of sub-blocks 2i, 2i + 1: 16-bit pairs */
    float   d[16];
} q6k_stage16;

static void
q6k_restage16(const block_q6_Kx8 *g0, const block_q6_Kx8 *g1, q6k_stage16 *st)
{
    const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
    int           j, k, r, sb;

    for (j = 0; j < QK_K / 64; j++) {
        for (k = 0; k < 8; k++) {
            __m512i l = join(_mm256_loadu_si256((const __m256i *) g0->ql[j][k]),
                             _mm256_loadu_si256((const __m256i *) g1->ql[j][k]));
            __m512i h = join(_mm256_loadu_si256((const __m256i *) g0->qh[j][k / 2]),
                             _mm256_loadu_si256((const __m256i *) g1->qh[j][k / 2]));

            /* step k's two bit pairs at bits 0-3 */
            h = k % 2 ? _mm512_srli_epi16(h, 4) : h;
            _mm512_storeu_si512((void *) st->q[j][k][0],
                                _mm512_or_si512(_mm512_and_si512(l, m4),
                                                _mm512_and_si512(_mm512_slli_epi16(h, 4), m30)));
            _mm512_storeu_si512((void *) st->q[j][k][1],
                                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                                _mm512_and_si512(_mm512_slli_epi16(h, 2), m30)));
        }
    }
    for (sb = 0; sb < QK_K / 16; sb++) {
        for (r = 0; r < 8; r++) {
            st->sc[sb][r] = g0->scales[sb / 2][r][sb % 2];
            st->sc[sb][8 + r] = g1->scales[sb / 2][r][sb % 2];
        }
    }
    for (sb = 0; sb < QK_K / 32; sb++) {
        for (r = 0; r < 8; r++) {
            st->sp[sb][r] = (uint16_t) g0->scales[sb][r][0]
                            | (int32_t) ((uint32_t) (uint16_t) g0->scales[sb][r][1] << 16);
            st->sp[sb][8 + r] = (uint16_t) g1->scales[sb][r][0]
                                | (int32_t) ((uint32_t) (uint16_t) g1->scales[sb][r][1] << 16);
        }
    }
    _mm256_storeu_ps(st->d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) g0->d)));
    _mm256_storeu_ps(st->d + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) g1->d)));
}

static inline __attribute__((always_inline)) void
q6k_gemm16_tokens(const q6k_stage16 *st, const block_q8_K *const *ys, int64_t b,
                  float *const *outs, const int NT)
{
    __m512i isum[GEMM_TOKENS], acc[GEMM_TOKENS];
    int     t, j, kq, h, kk, sb;

#pragma GCC unroll 8
    for (t = 0; t < NT; t++) {
        isum[t] = _mm512_setzero_si512();
    }
    for (j = 0; j < QK_K / 64; j++) {
#pragma GCC unroll 2
        for (kq = 0; kq < 2; kq++) {
#pragma GCC unroll 2
            for (h = 0; h < 2; h++) {
                /* steps 4kq .. 4kq + 3 of one half: sub-block 4j + 2h + kq */
#pragma GCC unroll 8
                for (t = 0; t < NT; t++) {
                    acc[t] = _mm512_setzero_si512();
                }
#pragma GCC unroll 4
                for (kk = 0; kk < 4; kk++) {
                    const int k = 4 * kq + kk;
                    __m512i   w = _mm512_loadu_si512((const void *) st->q[j][k][h]);

#pragma GCC unroll 8
                    for (t = 0; t < NT; t++) {
                        acc[t] = _mm512_dpbusd_epi32(acc[t], w, _mm512_set1_epi32(
                            act4(ys[t][b].qs + 64 * j + 32 * h + 4 * k)));
                    }
                }
                {
                    __m512i sc = _mm512_loadu_si512((const void *) st->sc[4 * j + 2 * h + kq]);

#pragma GCC unroll 8
                    for (t = 0; t < NT; t++) {
                        isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(acc[t], sc));
                    }
                }
            }
        }
    }
    {
        __m512 d = _mm512_loadu_ps(st->d);

#pragma GCC unroll 8
        for (t = 0; t < NT; t++) {
            const block_q8_K *y = ys[t] + b;
            int32_t           pairs[QK_K / 32];
            __m512i           msum = _mm512_setzero_si512();

            /* the 16-column sums in pairs, against the scales' pairs */
            memcpy(pairs, y->bsums, sizeof(pairs));
            for (sb = 0; sb < QK_K / 32; sb++) {
                msum = _mm512_dpwssd_epi32(msum, _mm512_loadu_si512((const void *) st->sp[sb]),
                                           _mm512_set1_epi32(pairs[sb]));
            }
            _mm512_storeu_ps(outs[t], _mm512_fmadd_ps(
                _mm512_mul_ps(d, _mm512_set1_ps(y->d)),
                _mm512_cvtepi32_ps(_mm512_sub_epi32(isum[t], _mm512_slli_epi32(msum, 5))),
                _mm512_loadu_ps(outs[t])));
        }
    }
}

/* The tokens of a call in blocks of GEMM_TOKENS: their rows and outputs. */
#define GEMM16_CALL(TYPE, BLOCK, STAGE, RESTAGE, TOKENS)                             \
static void                                                                         \
packed_gemm_##TYPE(int64_t n, const void *w, const void *act, size_t stride, int n_tok, \
                   float *out, size_t out_stride, const int32_t *idx)                \
{                                                                                   \
    const int64_t     nb = n / QK_K;                                                \
    const BLOCK      *g0 = w, *g1 = g0 + nb;                                        \
    STAGE             st;                                                           \
    const block_q8_K *ys[GEMM_TOKENS];                                              \
    float            *outs[GEMM_TOKENS];                                            \
    int64_t           b;                                                            \
    int               t0, t, nt;                                                    \
                                                                                    \
    for (t = 0; t < n_tok; t++) {                                                   \
        memset(out + (size_t) idx[t] * out_stride, 0, 16 * sizeof(float));         \
    }                                                                               \
    for (b = 0; b < nb; b++) {                                                      \
        RESTAGE(g0 + b, g1 + b, &st);                                               \
        /* 8 tokens a pass, then 4, then one at a time: three instances */  \
        for (t0 = 0; t0 < n_tok; t0 += nt) {                                        \
            nt = n_tok - t0 >= GEMM_TOKENS ? GEMM_TOKENS : n_tok - t0 >= 4 ? 4 : 1; \
            for (t = 0; t < nt; t++) {                                              \
                ys[t] = (const block_q8_K *) ((const char *) act                    \
                                              + (size_t) (t0 + t) * stride);        \
                outs[t] = out + (size_t) idx[t0 + t] * out_stride;                  \
            }                                                                       \
            if (nt == GEMM_TOKENS) {                                                \
                TOKENS(&st, ys, b, outs, GEMM_TOKENS);                              \
            } else if (nt == 4) {                                                   \
                TOKENS(&st, ys, b, outs, 4);                                        \
            } else {                                                                \
                TOKENS(&st, ys, b, outs, 1);                                        \
            }                                                                       \
        }                                                                           \
    }                                                                               \
}

GEMM16_CALL(q4_K, block_q4_Kx8, q4k_stage16, q4k_restage16, q4k_gemm16_tokens)
GEMM16_CALL(q6_K, block_q6_Kx8, q6k_stage16, q6k_restage16, q6k_gemm16_tokens)

static const qwen_kernels kernels_avx512 = {
    .name = AVX512_NAME,
    /* Q6_K in 512-bit VNNI, scales by vpackssdw + vpdpwssd (65 GMAC/s for
     * 4 rows on one Zen 4 core, 52 with per-lane vpmulld, which was 1.5x
     * the AVX2 kernel); Q4_K with vpdpwssd on 256-bit registers (the same
     * 512-bit scheme measured equal, 60 GMAC/s) */
    QWEN_AVX2_ENTRIES(dot_f32, dot_f16, dot_bf16, dot4_f32, dot4_f16, dot4_bf16,
                      dot_q8_0_vnni, dot4_q8_0_vnni, dot_q4_K_vnni, dot_q6_K_vnni,
                      dot4_q4_K_vnni, dot4_q6_K_vnni, attention_f16, attention_tokens_f16),
    /* batched decode of 8 sequences or more: 2 rows x 4 tokens (prompt
     * tokens take the GEMM); as in the AVX2 table */
    .dot2x4_min_tokens = 8,
    .vec_dot2x4 = {
        [QWEN_TYPE_Q8_0] = dot2x4_q8_0_vnni,
        [QWEN_TYPE_Q4_K] = dot2x4_q4_K_vnni,
    },
    .gemm = gemm_bf16,
#if !AVX512_BF16
    .gemm_act_f32 = gemm_act_f32,
#endif
    .f32_to_bf16 = f32_to_bf16,
    /* a prompt's SwiGLU and norms were 7% of a BF16 prefill at 4 wide */
    .swiglu = ew_swiglu,
    .rmsnorm = ew_rmsnorm,
    /* generated tokens over the packed rows (the AVX2 table's kernels with
     * vpdpbusd); prompt tokens' GEMM panels come from the same copy */
    .packed_dot[QWEN_TYPE_Q4_K] = packed_dot_q4_K,
    .packed_dot[QWEN_TYPE_Q6_K] = packed_dot_q6_K,
    .packed_dot[QWEN_TYPE_Q8_0] = packed_dot_q8_0,
    /* BF16 too (the AVX2 kernel: its bits): prompt tokens' GEMM reads the
     * packed groups in place, with no panel staged and transposed per 32
     * rows (that was most of a short prompt's time); one generated token
     * takes four groups a call (x86.h's qwen_bf16x8_groups says why two
     * groups a call had read slower than one, and what mended it) */
    .packed_dot[QWEN_TYPE_BF16] = packed_dot_bf16,
    .packed_dot_multi[QWEN_TYPE_BF16] = qwen_bf16x8_multi,
    .packed_dot_multi_groups[QWEN_TYPE_BF16] = QWEN_BF16_MULTI_GROUPS,
    /* steps of 8 tokens or more (prompts among them) on packed Q4_K and
     * Q6_K: 16 rows a call, one vpdpbusd per 16 rows x 4 columns a token */
    .packed_gemm[QWEN_TYPE_Q4_K] = packed_gemm_q4_K,
    .packed_gemm[QWEN_TYPE_Q6_K] = packed_gemm_q6_K,
    .packed_gemm_groups = 2,
    /* below, the 512-bit dots are faster: each call restages its 16 rows
     * (8 sequences decoded together: 150-180 tok/s through the GEMM,
     * 225-245 through the dots, 2 threads) */
    .packed_gemm_min_tokens = { [QWEN_TYPE_Q4_K] = 24, [QWEN_TYPE_Q6_K] = 24 },
#if !AVX512_BF16
    /* without vdpbf16ps, Q8_0 prompts take avx2_vnni's integer GEMM (one
     * vpdpbusd per 32 products a token, x86.h) rather than BF16 panels */
    .packed_gemm[QWEN_TYPE_Q8_0] = qwen_q8_0x8_gemm,
    .packed_gemm_act[QWEN_TYPE_Q8_0] = qwen_q8_0s_prep,
    .packed_gemm_act_bytes = qwen_q8_0_gemm_act_bytes,
    .packed_gemm_act_tokens = 1,
#endif
    /* BF16 KV cache (the dtype HF runs Qwen3's attention in): vdpbf16ps on
     * both passes, no f16 conversions or horizontal sums, half the
     * instructions of the f16 path */
#if AVX512_BF16
    .kv_store[QWEN_KV_BF16] = kv_store_bf16,
    .kv_attention[QWEN_KV_BF16] = attention_bf16,
    .kv_attention_tokens[QWEN_KV_BF16] = attention_tokens_bf16,
#endif
    /* q8_0: half of f16's bytes, q . K in vpdpbusd */
    .kv_store[QWEN_KV_Q8_0] = qwen_kv_store_q8_0_ref,
    .kv_attention[QWEN_KV_Q8_0] = attention_q8_0,
};

const qwen_kernels *
AVX512_TABLE_FN(void)
{
    return &kernels_avx512;
}
