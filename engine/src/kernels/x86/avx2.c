/*
 * avx2.c - AVX2 + FMA + F16C kernels (Haswell and later, Zen).
 * Compiled with -mavx2 -mfma -mf16c and only called after cpuid says so.
 * Quantized dots follow the scalar reference's integer grouping: maddubs
 * (unsigned x signed bytes) into int16, madd by the sub-block scale into
 * int32, one float multiply per block.
 */
#include "kernels/x86/x86.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* avx2_vnni.c builds this file again with -mavxvnni as the avx2_vnni
 * table: the same kernels, with vpdpbusd / vpdpwssd where x86.h's
 * helpers have them, under names of its own */
#ifdef QWEN_AVX2_VNNI_TABLE
#define AVX2_SYM(f)   qwen_avx2_vnni_##f
#define AVX2_NAME     "avx2_vnni"
#define AVX2_TABLE_FN qwen_kernels_avx2_vnni
#else
#define AVX2_SYM(f)   qwen_avx2_##f
#define AVX2_NAME     "avx2"
#define AVX2_TABLE_FN qwen_kernels_avx2
#endif

/* F16C: one instruction instead of a call into the portable converter */
static inline float
f16(qwen_f16 h)
{
    return _cvtsh_ss(h);
}

static inline __m256
load_bf16x8(const qwen_bf16 *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *) p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static float
dot_f32(int64_t n, const void *w, const void *act)
{
    const float *x = w, *y = act;
    __m256       a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t      i = 0;
    float        sum;

    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    sum = qwen_hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) {
        sum += x[i] * y[i];
    }
    return sum;
}

/* shuffle masks that broadcast 16-bit lane i */
static inline __m256i
bcast16_mask(int i)
{
    return _mm256_set1_epi16((short) ((2 * i) | ((2 * i + 1) << 8)));
}

/*
 * Q6_K x Q8_K for NR weight rows (1 or 2, w_stride bytes apart) x NT
 * activation rows (1 or 4), one template so a (row, token) result is the
 * same bits whatever the shape: (q - 32) . y is computed as q . y minus
 * 32 x the activation's 16-value sums (bsums), so the offset costs one
 * madd per block instead of a second maddubs per group. One 32-value group
 * of every row at a time: the rows' quants and scales stay in registers
 * while each token's activations are loaded once for all rows.
 */
static inline __attribute__((always_inline)) void
q6k_dot_rows(int64_t n, const void *w, size_t w_stride, const void *act, size_t stride,
             float *out, const int NR, const int NT)
{
    __m256            facc[2][4];
    int64_t           b, nb = n / QK_K;
    int               half, g, t, r;

    for (r = 0; r < NR; r++) {
        for (t = 0; t < NT; t++) {
            facc[r][t] = _mm256_setzero_ps();
        }
    }
    for (b = 0; b < nb; b++) {
        __m256i           isum[2][4], scales16[2];
        const block_q6_K *x[2];

#pragma GCC unroll 2
        for (r = 0; r < NR; r++) {
            x[r] = (const block_q6_K *) ((const char *) w + r * w_stride) + b;
            scales16[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) x[r]->scales));
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * stride) + b;
                __m256i bs = _mm256_loadu_si256((const __m256i *) y->bsums);
                /* -32 * sum_j sc_j * bsum_j */
                isum[r][t] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                              _mm256_slli_epi32(_mm256_madd_epi16(bs, scales16[r]),
                                                                5));
            }
        }
        for (half = 0; half < 2; half++) {
#pragma GCC unroll 4
            for (g = 0; g < 4; g++) {
                __m256i q[2], s[2];

#pragma GCC unroll 2
                for (r = 0; r < NR; r++) {
                    /* lower lane: scale 2g, upper lane: scale 2g + 1 of this half */
                    __m128i h16 = half ? _mm256_extracti128_si256(scales16[r], 1)
                                       : _mm256_castsi256_si128(scales16[r]);

                    q[r] = qwen_q6k_unpack_group(x[r]->ql + 64 * half, x[r]->qh + 32 * half, g);
                    s[r] = _mm256_shuffle_epi8(_mm256_set_m128i(h16, h16), _mm256_set_m128i(
                        _mm256_castsi256_si128(bcast16_mask(2 * g + 1)),
                        _mm256_castsi256_si128(bcast16_mask(2 * g))));
                }
#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    const int8_t *q8 = ((const block_q8_K *) ((const char *) act + t * stride))[b].qs
                                       + 128 * half + 32 * g;
                    __m256i       y8 = _mm256_loadu_si256((const __m256i *) q8);

#pragma GCC unroll 2
                    for (r = 0; r < NR; r++) {
                        isum[r][t] = qwen_madd_acc(isum[r][t], _mm256_maddubs_epi16(q[r], y8),
                                                   s[r]);
                    }
                }
            }
        }
#pragma GCC unroll 2
        for (r = 0; r < NR; r++) {
            float dw = f16(x[r]->d);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * stride) + b;
                facc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * y->d),
                                             _mm256_cvtepi32_ps(isum[r][t]), facc[r][t]);
            }
        }
    }
    for (r = 0; r < NR; r++) {
        for (t = 0; t < NT; t++) {
            out[r * NT + t] = qwen_hsum256(facc[r][t]);
        }
    }
}

static inline __attribute__((always_inline)) void
q6k_dot_n(int64_t n, const void *w, const void *act, size_t stride, float *out, const int NT)
{
    q6k_dot_rows(n, w, 0, act, stride, out, 1, NT);
}

static inline __m256
load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) p));
}

/*
 * 16-bit float weights (BF16 or F16) x NT (1 or 2) F32 activation rows, 32
 * values per step in four chains per row: one chain waits on the FMA
 * latency (10 -> 20 GMAC/s for one core's single-row dot in L2). The 4-row
 * kernel is two 2-row passes (16 ymm registers hold 8 accumulators, not
 * 16), with the same per-row operations as the 1-row one, so a token's
 * result is the same bits whichever computed it.
 */
static inline __attribute__((always_inline)) void
half_dot_n(int64_t n, const uint16_t *x, const void *act, size_t stride, float *out,
           const int NT, const int is_bf16)
{
    const float *y[2];
    __m256       acc[2][4];
    int64_t      i = 0, k;
    int          t, j;
    float        sum;

    for (t = 0; t < NT; t++) {
        y[t] = (const float *) ((const char *) act + t * stride);
        for (j = 0; j < 4; j++) {
            acc[t][j] = _mm256_setzero_ps();
        }
    }
    for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 4
        for (j = 0; j < 4; j++) {
            __m256 wv = is_bf16 ? load_bf16x8(x + i + 8 * j) : load_f16x8(x + i + 8 * j);
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                acc[t][j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(y[t] + i + 8 * j), acc[t][j]);
            }
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 wv = is_bf16 ? load_bf16x8(x + i) : load_f16x8(x + i);
        for (t = 0; t < NT; t++) {
            acc[t][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(y[t] + i), acc[t][0]);
        }
    }
    for (t = 0; t < NT; t++) {
        sum = qwen_hsum256(_mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]),
                                    _mm256_add_ps(acc[t][2], acc[t][3])));
        for (k = i; k < n; k++) {
            sum += (is_bf16 ? qwen_bf16_to_f32(x[k]) : f16(x[k])) * y[t][k];
        }
        out[t] = sum;
    }
}

static float
dot_f16(int64_t n, const void *w, const void *act)
{
    float r;

    half_dot_n(n, w, act, 0, &r, 1, 0);
    return r;
}

static float
dot_bf16(int64_t n, const void *w, const void *act)
{
    float r;

    half_dot_n(n, w, act, 0, &r, 1, 1);
    return r;
}

static void
dot4_f16(int64_t n, const void *w, const void *act, size_t stride, float *out)
{
    half_dot_n(n, w, act, stride, out, 2, 0);
    half_dot_n(n, w, (const char *) act + 2 * stride, stride, out + 2, 2, 0);
}

static void
dot4_bf16(int64_t n, const void *w, const void *act, size_t stride, float *out)
{
    half_dot_n(n, w, act, stride, out, 2, 1);
    half_dot_n(n, w, (const char *) act + 2 * stride, stride, out + 2, 2, 1);
}

static float
dot_f32_f16(int64_t n, const float *x, const qwen_f16 *y)
{
    __m256  acc = _mm256_setzero_ps();
    int64_t i = 0;
    float   sum;

    for (; i + 8 <= n; i += 8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i),
                              _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (y + i))), acc);
    }
    sum = qwen_hsum256(acc);
    for (; i < n; i++) {
        sum += x[i] * f16(y[i]);
    }
    return sum;
}

static void
axpy_f16(int64_t n, float a, const qwen_f16 *x, float *y)
{
    __m256  va = _mm256_set1_ps(a);
    int64_t i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) {
        y[i] += a * f16(x[i]);
    }
}

/* ------------------------------------------------------------ attention */

/* e^x for x <= 0, 8 lanes: x = n ln2 + r with |r| <= ln2/2, e^r by the
 * Cephes polynomial, 2^n put in the exponent bits. Relative error ~1e-7;
 * below -87.3 the result is e^-87.3 (~1e-38), not 0. */
static inline __m256
exp_neg256(__m256 x)
{
    __m256 n, r, p;

    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)));
}

/* sc[t] = e^(sc[t] - max) for t < n, 8 at a time; returns their sum */
static float
softmax_exp(float *sc, int n)
{
    __m256 mx8 = _mm256_set1_ps(-INFINITY), sum8 = _mm256_setzero_ps(), e;
    float  mx, sum, m4[8];
    int    t, l;

    for (t = 0; t + 8 <= n; t += 8) {
        mx8 = _mm256_max_ps(mx8, _mm256_loadu_ps(sc + t));
    }
    _mm256_storeu_ps(m4, mx8);
    mx = -INFINITY;
    for (l = 0; l < 8; l++) {
        mx = m4[l] > mx ? m4[l] : mx;
    }
    for (; t < n; t++) {
        mx = sc[t] > mx ? sc[t] : mx;
    }
    for (t = 0; t + 8 <= n; t += 8) {
        e = exp_neg256(_mm256_sub_ps(_mm256_loadu_ps(sc + t), _mm256_set1_ps(mx)));
        _mm256_storeu_ps(sc + t, e);
        sum8 = _mm256_add_ps(sum8, e);
    }
    sum = qwen_hsum256(sum8);
    for (; t < n; t++) {
        sc[t] = expf(sc[t] - mx);
        sum += sc[t];
    }
    return sum;
}

/* o[i] /= sum for i < n (a multiple of 8): the softmax's sum divides the
 * output row, as in the scalar reference, not every probability (a
 * division a score cost as much as the score's 16 FMAs) */
static void
div_row(float *o, int n, float sum)
{
    __m256 sum8 = _mm256_set1_ps(sum);
    int    i;

    for (i = 0; i < n; i += 8) {
        _mm256_storeu_ps(o + i, _mm256_div_ps(_mm256_loadu_ps(o + i), sum8));
    }
}

/* 8 values of a row format as floats (F32: f32 rows, else f16) */
static inline __attribute__((always_inline)) __m256
load_row8(const void *row, int i, const int F32)
{
    if (F32) {
        return _mm256_loadu_ps((const float *) row + i);
    }
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const qwen_f16 *) row + i)));
}

static inline __attribute__((always_inline)) const void *
row_k(const qwen_kv_view *kv, int t, int hd, const int F32)
{
    return F32 ? (const void *) qwen_kv_row_k_f32(kv, t, hd)
               : (const void *) qwen_kv_row_k(kv, t, hd);
}

static inline __attribute__((always_inline)) const void *
row_v(const qwen_kv_view *kv, int t, int hd, const int F32)
{
    return F32 ? (const void *) qwen_kv_row_v_f32(kv, t, hd)
               : (const void *) qwen_kv_row_v(kv, t, hd);
}

/* scores[h][t] for NQ heads and P positions from t (1, 2 or 4): each K
 * row converted once, the P x NQ accumulators in registers. Several
 * positions give the multiply-add chains of one row (hd / 8 long, each
 * waiting on the last) others to overlap with: two FMA units of 4 cycles'
 * latency keep 8 chains busy; each score's operations stay its own, in
 * order. DEC: a decode step's pass, which asks for V's lines too
 * (qwen_kv_prefetch_decode); a prompt's passes read K several times and
 * V only after them, so they ask for K's alone. */
static inline __attribute__((always_inline)) void
tokens_k_at(int hd, const int NQ, const int P, const float *q, const qwen_kv_view *kv, int t,
            int t1, float scale, float *scores, int rows, const int F32, const int DEC)
{
    const void *kt[4];
    __m256      acc[4][4];
    int         i, h, j;

#pragma GCC unroll 4
    for (j = 0; j < P; j++) {
        kt[j] = row_k(kv, t + j, hd, F32);
        if (DEC) {
            qwen_kv_prefetch_decode(kv, t + j, 1, t1, (size_t) hd * (F32 ? 4 : 2));
        } else {
            qwen_kv_prefetch_pos(kv, kv->k, t + j, 1, t1, (size_t) hd * (F32 ? 4 : 2));
        }
#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            acc[j][h] = _mm256_setzero_ps();
        }
    }
    for (i = 0; i < hd; i += 8) {
#pragma GCC unroll 4
        for (j = 0; j < P; j++) {
            __m256 kv8 = load_row8(kt[j], i, F32);
#pragma GCC unroll 4
            for (h = 0; h < NQ; h++) {
                acc[j][h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t) h * hd + i), kv8,
                                            acc[j][h]);
            }
        }
    }
    if (NQ * P == 8) {
        /* the eight sums in one vector (qwen_hsum256's bits): head h's P
         * positions in a row (att_bench prompt attention +5%) */
        __m256 v[8], r;
        __m128 lo, hi;

#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
#pragma GCC unroll 4
            for (j = 0; j < P; j++) {
                v[h * P + j] = acc[j][h];
            }
        }
        r = _mm256_mul_ps(qwen_hsum8x256(v), _mm256_set1_ps(scale));
        lo = _mm256_castps256_ps128(r);
        hi = _mm256_extractf128_ps(r, 1);
        if (P == 4) {
            _mm_storeu_ps(scores + t, lo);
            _mm_storeu_ps(scores + (size_t) rows + t, hi);
        } else {
            _mm_storel_pi((__m64 *) (scores + t), lo);
            _mm_storeh_pi((__m64 *) (scores + (size_t) rows + t), lo);
            _mm_storel_pi((__m64 *) (scores + (size_t) 2 * rows + t), hi);
            _mm_storeh_pi((__m64 *) (scores + (size_t) 3 * rows + t), hi);
        }
        return;
    }
#pragma GCC unroll 4
    for (j = 0; j < P; j++) {
#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            scores[(size_t) h * rows + t + j] = qwen_hsum256(acc[j][h]) * scale;
        }
    }
}

/* scores[h][t] = scale * q[h] . K[t] for NQ heads and positions t0 ..
 * t1 - 1, rows `rows` floats apart, four positions a step up to 2 heads
 * (8 chains; 4 heads have them at two, and 16 accumulators would spill) */
static inline __attribute__((always_inline)) void
tokens_k(int hd, const int NQ, const float *q, const qwen_kv_view *kv, int t0, int t1,
         float scale, float *scores, int rows, const int F32, const int DEC)
{
    int t = t0;

    if (NQ <= 2) {
        for (; t + 4 <= t1; t += 4) {
            tokens_k_at(hd, NQ, 4, q, kv, t, t1, scale, scores, rows, F32, DEC);
        }
    }
    for (; t + 2 <= t1; t += 2) {
        tokens_k_at(hd, NQ, 2, q, kv, t, t1, scale, scores, rows, F32, DEC);
    }
    if (t < t1) {
        tokens_k_at(hd, NQ, 1, q, kv, t, t1, scale, scores, rows, F32, DEC);
    }
}

/* o[r] += sum over positions t0 .. t1 - 1 of p[r][t] V[t] for NH rows (1
 * to 4), 8J values at a time (J 4 up to 2 rows, else 2: the J x NH
 * accumulators stay in the 16 registers), continuing the sums o holds or
 * from zero: per lane one fused multiply-add a position, in order. It
 * asks for V's lines ahead even after a decode step's K pass has (see
 * qwen_kv_prefetch_decode) */
static inline __attribute__((always_inline)) void
tokens_v(int hd, const int NH, const int J, const float *const *p, const qwen_kv_view *kv,
         int t0, int t1, float *const *o, int zero, const int F32)
{
    size_t row_bytes = (size_t) hd * (F32 ? 4 : 2);
    int    i, t, h, j, tb, te;

    /* a block's rows at a time (32 positions, 8 KiB of f16 at hd 128), all
     * the chunks of values over them while they sit in L1: chunk by chunk
     * over every position, each walk met V in L2 again. The rows lie
     * row_bytes apart, so a position costs a pointer step, not a table
     * lookup. */
    for (tb = t0; tb < t1; tb = te) {
        const char *vb = row_v(kv, tb, hd, F32);

        te = (tb / QWEN_KV_BLOCK + 1) * QWEN_KV_BLOCK;
        te = te < t1 ? te : t1;
        for (i = 0; i < hd; i += 8 * J) {
            const char *vt = vb;
            __m256      acc[4][4];

#pragma GCC unroll 4
            for (h = 0; h < NH; h++) {
#pragma GCC unroll 4
                for (j = 0; j < J; j++) {
                    acc[h][j] = zero && tb == t0 ? _mm256_setzero_ps()
                                                 : _mm256_loadu_ps(o[h] + i + 8 * j);
                }
            }
            for (t = tb; t < te; t++, vt += row_bytes) {
                __m256 vv[4];

                if (i == 0) {
                    qwen_kv_prefetch_pos(kv, kv->v, t, 1, t1, row_bytes);
                }
#pragma GCC unroll 4
                for (j = 0; j < J; j++) {
                    vv[j] = load_row8(vt, i + 8 * j, F32);
                }
#pragma GCC unroll 4
                for (h = 0; h < NH; h++) {
                    __m256 ph = _mm256_set1_ps(p[h][t]);
#pragma GCC unroll 4
                    for (j = 0; j < J; j++) {
                        acc[h][j] = _mm256_fmadd_ps(ph, vv[j], acc[h][j]);
                    }
                }
            }
#pragma GCC unroll 4
            for (h = 0; h < NH; h++) {
#pragma GCC unroll 4
                for (j = 0; j < J; j++) {
                    _mm256_storeu_ps(o[h] + i + 8 * j, acc[h][j]);
                }
            }
        }
    }
}

/*
 * Attention of n_q query heads over one KV head of a row format (f16 or
 * f32): each K and V row is converted once for all the heads of the group
 * (GQA). Scores go to scratch; the V pass walks 32-value chunks so the
 * accumulators of up to 2 heads stay in registers. hd must be a multiple
 * of 32 (Qwen3: 128), else the scalar version runs.
 */
static inline __attribute__((always_inline)) void
attention_rows(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
               float scale, float *scratch, float *out, const int F32)
{
    size_t region = (size_t) QWEN_KV_BLOCK * hd * (F32 ? 4 : 2);
    int    h, h0;
    float  sums[4];

    qwen_kv_prefetch_start(kv, kv->k, n_pos, region);
    qwen_kv_prefetch_start(kv, kv->v, n_pos, region);
    switch (n_q) {
    case 1: tokens_k(hd, 1, q, kv, 0, n_pos, scale, scratch, n_pos, F32, 1); break;
    case 2: tokens_k(hd, 2, q, kv, 0, n_pos, scale, scratch, n_pos, F32, 1); break;
    default: tokens_k(hd, 4, q, kv, 0, n_pos, scale, scratch, n_pos, F32, 1); break;
    }
    for (h = 0; h < n_q; h++) {
        sums[h] = softmax_exp(scratch + (size_t) h * n_pos, n_pos);
    }
    for (h0 = 0; h0 < n_q; h0 += 2) {
        const float *p[2] = { scratch + (size_t) h0 * n_pos, scratch + (size_t) (h0 + 1) * n_pos };
        float       *o[2] = { out + (size_t) h0 * hd, out + (size_t) (h0 + 1) * hd };

        if (h0 + 1 < n_q) {
            tokens_v(hd, 2, 4, p, kv, 0, n_pos, o, 1, F32);
        } else {
            tokens_v(hd, 1, 4, p, kv, 0, n_pos, o, 1, F32);
        }
    }
    for (h = 0; h < n_q; h++) {
        div_row(out + (size_t) h * hd, hd, sums[h]);
    }
}

/*
 * m consecutive tokens of a sequence (qwen_kv_attention_tokens_fn) over a
 * row format: passes of 4 query rows (2 tokens of a GQA pair, 4 single
 * heads) convert each K and V row once for the rows over the positions
 * all the pass's tokens see, then a later token's few more on its own.
 * Each token gets attention_rows' bits.
 */
static inline __attribute__((always_inline)) void
attention_rows_tokens(int hd, int n_q, int m, const float *q, size_t q_stride,
                      const qwen_kv_view *kv, int n_pos, float scale, float *scratch,
                      float *out, size_t out_stride, const int F32)
{
    size_t       region = (size_t) QWEN_KV_BLOCK * hd * (F32 ? 4 : 2);
    int          rows = qwen_kv_rows(n_pos + m - 1), per, j0, np, nr, r, j, h;
    float        qb[4 * 256], sums[QWEN_KV_ATT_TOKENS * 2];
    const float *p[4];
    float       *o[4];

    per = 4 / n_q;
    qwen_kv_prefetch_start(kv, kv->k, n_pos, region);
    for (j0 = 0; j0 < m; j0 += per) {
        float *sc0 = scratch + (size_t) j0 * n_q * rows;

        np = m - j0 < per ? m - j0 : per;
        nr = np * n_q;
        for (j = 0; j < np; j++) {
            memcpy(qb + (size_t) j * n_q * hd, q + (j0 + j) * q_stride,
                   (size_t) n_q * hd * sizeof(float));
        }
        switch (nr) {
        case 1: tokens_k(hd, 1, qb, kv, 0, n_pos + j0, scale, sc0, rows, F32, 0); break;
        case 2: tokens_k(hd, 2, qb, kv, 0, n_pos + j0, scale, sc0, rows, F32, 0); break;
        case 3: tokens_k(hd, 3, qb, kv, 0, n_pos + j0, scale, sc0, rows, F32, 0); break;
        default: tokens_k(hd, 4, qb, kv, 0, n_pos + j0, scale, sc0, rows, F32, 0); break;
        }
        for (j = 1; j < np; j++) {
            if (n_q == 1) {
                tokens_k(hd, 1, q + (j0 + j) * q_stride, kv, n_pos + j0, n_pos + j0 + j, scale,
                         sc0 + (size_t) j * rows, rows, F32, 0);
            } else {
                tokens_k(hd, 2, q + (j0 + j) * q_stride, kv, n_pos + j0, n_pos + j0 + j, scale,
                         sc0 + (size_t) j * 2 * rows, rows, F32, 0);
            }
        }
    }
    for (j = 0; j < m; j++) {
        for (h = 0; h < n_q; h++) {
            sums[j * n_q + h] = softmax_exp(scratch + (size_t) (j * n_q + h) * rows, n_pos + j);
        }
    }
    qwen_kv_prefetch_start(kv, kv->v, n_pos, region);
    for (j0 = 0; j0 < m; j0 += per) {
        np = m - j0 < per ? m - j0 : per;
        nr = np * n_q;
        for (r = 0; r < nr; r++) {
            j = j0 + r / n_q;
            p[r] = scratch + (size_t) (j * n_q + r % n_q) * rows;
            o[r] = out + j * out_stride + (size_t) (r % n_q) * hd;
        }
        switch (nr) {
        case 1: tokens_v(hd, 1, 4, p, kv, 0, n_pos + j0, o, 1, F32); break;
        case 2: tokens_v(hd, 2, 4, p, kv, 0, n_pos + j0, o, 1, F32); break;
        case 3: tokens_v(hd, 3, 2, p, kv, 0, n_pos + j0, o, 1, F32); break;
        default: tokens_v(hd, 4, 2, p, kv, 0, n_pos + j0, o, 1, F32); break;
        }
        for (j = 1; j < np; j++) {
            if (n_q == 1) {
                tokens_v(hd, 1, 4, p + j, kv, n_pos + j0, n_pos + j0 + j, o + j, 0, F32);
            } else {
                tokens_v(hd, 2, 4, p + 2 * j, kv, n_pos + j0, n_pos + j0 + j, o + 2 * j, 0, F32);
            }
        }
    }
    for (j = 0; j < m; j++) {
        for (h = 0; h < n_q; h++) {
            div_row(out + j * out_stride + (size_t) h * hd, hd, sums[j * n_q + h]);
        }
    }
}

static void
attention_f16(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
              float *scratch, float *out)
{
    if (hd % 32 != 0 || (n_q != 1 && n_q != 2 && n_q != 4)) {
        qwen_attention_generic(qwen_kernels_avx2(), hd, n_q, q, kv, n_pos, scale, scratch,
                               out);
        return;
    }
    attention_rows(hd, n_q, q, kv, n_pos, scale, scratch, out, 0);
}

static void
attention_f32(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
              float *scratch, float *out)
{
    if (hd % 32 != 0 || (n_q != 1 && n_q != 2 && n_q != 4)) {
        qwen_attention_f32_ref(hd, n_q, q, kv, n_pos, scale, scratch, out);
        return;
    }
    attention_rows(hd, n_q, q, kv, n_pos, scale, scratch, out, 1);
}

/* the tokens of a row format (F32: f32 rows, else f16), or one at a time
 * where the passes do not take the heads (hd not a multiple of 32 or above
 * the stack's copy of the queries, more than a GQA pair) */
static inline __attribute__((always_inline)) void
attention_tokens(int hd, int n_q, int m, const float *q, size_t q_stride, const qwen_kv_view *kv,
                 int n_pos, float scale, float *scratch, float *out, size_t out_stride,
                 const int F32)
{
    if (hd % 32 != 0 || hd > 256 || n_q > 2 || m > QWEN_KV_ATT_TOKENS) {
        qwen_attention_each(F32 ? attention_f32 : attention_f16, hd, n_q, m, q, q_stride, kv,
                            n_pos, scale, scratch, out, out_stride);
        return;
    }
    attention_rows_tokens(hd, n_q, m, q, q_stride, kv, n_pos, scale, scratch, out, out_stride,
                          F32);
}

static void
attention_tokens_f16(int hd, int n_q, int m, const float *q, size_t q_stride,
                     const qwen_kv_view *kv, int n_pos, float scale, float *scratch, float *out,
                     size_t out_stride)
{
    attention_tokens(hd, n_q, m, q, q_stride, kv, n_pos, scale, scratch, out, out_stride, 0);
}

static void
attention_tokens_f32(int hd, int n_q, int m, const float *q, size_t q_stride,
                     const qwen_kv_view *kv, int n_pos, float scale, float *scratch, float *out,
                     size_t out_stride)
{
    attention_tokens(hd, n_q, m, q, q_stride, kv, n_pos, scale, scratch, out, out_stride, 1);
}

/*
 * q8_0 scores of NQ heads for the 8 positions at c of a region's K (the
 * layout in kernels.h): per 4-dimension group one 32-byte load holds the
 * 8 positions, each head's 4 quantized query values are broadcast against
 * it (maddubs of |k| and q signed by k, madd into int32: exact), and per
 * 32-dimension block the integer sums take K's and q's scales:
 * acc = fma(isum, dK * dq, acc) in block order, as the scalar reference.
 */
static inline __attribute__((always_inline)) void
q8_scores8(int hd, const int NQ, const int8_t *qs, const float *dq, const int8_t *kq, int c,
           __m256 *acc)
{
    const qwen_f16 *ks = qwen_kv_q8_0_scales(kq, hd);
    int             b, g, h, nb = hd / 32;

#pragma GCC unroll 4
    for (h = 0; h < NQ; h++) {
        acc[h] = _mm256_setzero_ps();
    }
    for (b = 0; b < nb; b++) {
        __m256i isum[4];
        __m256  dk;

#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            isum[h] = _mm256_setzero_si256();
        }
#pragma GCC unroll 8
        for (g = 0; g < 8; g++) {
            __m256i k8 = _mm256_loadu_si256((const __m256i *)
                (kq + (size_t) (8 * b + g) * (QWEN_KV_BLOCK * 4) + 4 * c));
            __m256i ak = _mm256_abs_epi8(k8);

#pragma GCC unroll 4
            for (h = 0; h < NQ; h++) {
                int32_t qg;

                memcpy(&qg, qs + (size_t) h * hd + 32 * b + 4 * g, 4);
                isum[h] = qwen_dpbusd_acc(isum[h], ak,
                                          _mm256_sign_epi8(_mm256_set1_epi32(qg), k8));
            }
        }
        dk = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (ks + b * QWEN_KV_BLOCK + c)));
#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[h]),
                                     _mm256_mul_ps(dk, _mm256_set1_ps(dq[h * nb + b])), acc[h]);
        }
    }
}

/* scores[h][t] for NQ heads (h at h * rows), whole 8-position chunks: past
 * n_pos they hold anything, softmax reads only n_pos */
static inline __attribute__((always_inline)) void
q8_scores(int hd, const int NQ, const int8_t *qs, const float *dq, const qwen_kv_view *kv,
          int n_pos, float scale, float *scores, int rows)
{
    int t, h;

    for (t = 0; t < n_pos; t += 8) {
        __m256 acc[4];

        qwen_kv_prefetch_ahead(kv, kv->k, t, n_pos,
                               qwen_kv_pos_bytes(QWEN_KV_Q8_0, hd) * QWEN_KV_BLOCK);
        q8_scores8(hd, NQ, qs, dq, qwen_kv_block_k(kv, t), t % QWEN_KV_BLOCK, acc);
#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            _mm256_storeu_ps(scores + (size_t) h * rows + t,
                             _mm256_mul_ps(acc[h], _mm256_set1_ps(scale)));
        }
    }
}

/*
 * out[h] += sum over the np positions of one region of w . V for NH (1 or
 * 2) heads and 32-dimension block b, w = p[h][t] * V's scale (from wv):
 * each V row's 32 int8 converted once for both heads, 4 x NH accumulators
 * in registers.
 */
static inline __attribute__((always_inline)) void
q8_values_block(int hd, const int NH, const float (*wv)[QWEN_KV_BLOCK], const int8_t *vq,
                int np, int b, float *out)
{
    __m256 o[2][4];
    int    t, h, j;

#pragma GCC unroll 2
    for (h = 0; h < NH; h++) {
#pragma GCC unroll 4
        for (j = 0; j < 4; j++) {
            o[h][j] = _mm256_loadu_ps(out + (size_t) h * hd + 32 * b + 8 * j);
        }
    }
    for (t = 0; t < np; t++) {
        const int8_t *row = vq + qwen_kv_q8_0_v_index(hd, t, 32 * b);
        __m256        v[4];

#pragma GCC unroll 4
        for (j = 0; j < 4; j++) {
            v[j] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                _mm_loadl_epi64((const __m128i *) (row + 8 * j))));
        }
#pragma GCC unroll 2
        for (h = 0; h < NH; h++) {
            __m256 w = _mm256_broadcast_ss(&wv[h][t]);
#pragma GCC unroll 4
            for (j = 0; j < 4; j++) {
                o[h][j] = _mm256_fmadd_ps(w, v[j], o[h][j]);
            }
        }
    }
#pragma GCC unroll 2
    for (h = 0; h < NH; h++) {
#pragma GCC unroll 4
        for (j = 0; j < 4; j++) {
            _mm256_storeu_ps(out + (size_t) h * hd + 32 * b + 8 * j, o[h][j]);
        }
    }
}

/* out[h] = sum_t p[h][t] V[t] for nh heads (p at h * rows, unnormalized),
 * one region at a time, so V is read once, in order */
static void
q8_values(int hd, int nh, const float *p, int rows, const qwen_kv_view *kv, int n_pos,
          float *out)
{
    float wv[4][QWEN_KV_BLOCK];
    int   r, b, h, c, np;

    memset(out, 0, (size_t) nh * hd * sizeof(float));
    for (r = 0; r < n_pos; r += QWEN_KV_BLOCK) {
        const int8_t   *vq = qwen_kv_block_v(kv, r);
        const qwen_f16 *vs = qwen_kv_q8_0_scales(vq, hd);

        np = n_pos - r < QWEN_KV_BLOCK ? n_pos - r : QWEN_KV_BLOCK;
        qwen_kv_prefetch_ahead(kv, kv->v, r, n_pos,
                               qwen_kv_pos_bytes(QWEN_KV_Q8_0, hd) * QWEN_KV_BLOCK);
        for (b = 0; b < hd / 32; b++) {
            /* the weights of block b: whole chunks, only the first np read */
            for (h = 0; h < nh; h++) {
                for (c = 0; c < np; c += 8) {
                    _mm256_storeu_ps(&wv[h][c], _mm256_mul_ps(
                        _mm256_loadu_ps(p + (size_t) h * rows + r + c),
                        _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)
                                                        (vs + b * QWEN_KV_BLOCK + c)))));
                }
            }
            for (h = 0; h + 2 <= nh; h += 2) {
                q8_values_block(hd, 2, (const float (*)[QWEN_KV_BLOCK]) wv[h], vq, np, b,
                                out + (size_t) h * hd);
            }
            if (h < nh) {
                q8_values_block(hd, 1, (const float (*)[QWEN_KV_BLOCK]) wv[h], vq, np, b,
                                out + (size_t) h * hd);
            }
        }
    }
}

/*
 * Attention over the q8_0 layout, up to 4 query heads at a time: the
 * query quantized per 32 dimensions (qwen_kv_quantize_q), integer q . K
 * (q8_scores8: the reference's scores bit for bit), softmax with a vector
 * exp, then V dequantized once per row for the heads and weighted by the
 * probability times its scale.
 */
static void
attention_q8_0(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
               float *scratch, float *out)
{
    int8_t qs[4 * QWEN_KV_MAX_HD];
    float  dq[4 * QWEN_KV_MAX_HD / 32], sums[4];
    int    rows = qwen_kv_rows(n_pos), h0, nh, h, i, nb = hd / 32;
    size_t region = qwen_kv_pos_bytes(QWEN_KV_Q8_0, hd) * QWEN_KV_BLOCK;

    for (h0 = 0; h0 < n_q; h0 += nh) {
        float *sc0 = scratch + (size_t) h0 * rows, *o0 = out + (size_t) h0 * hd;

        nh = n_q - h0 < 4 ? n_q - h0 : 4;
        for (h = 0; h < nh; h++) {
            qwen_kv_quantize_q(hd, q + (size_t) (h0 + h) * hd, qs + (size_t) h * hd,
                               dq + h * nb);
        }
        qwen_kv_prefetch_start(kv, kv->k, n_pos, region);
        switch (nh) {
        case 1: q8_scores(hd, 1, qs, dq, kv, n_pos, scale, sc0, rows); break;
        case 2: q8_scores(hd, 2, qs, dq, kv, n_pos, scale, sc0, rows); break;
        case 3: q8_scores(hd, 3, qs, dq, kv, n_pos, scale, sc0, rows); break;
        default: q8_scores(hd, 4, qs, dq, kv, n_pos, scale, sc0, rows); break;
        }
        qwen_kv_prefetch_start(kv, kv->v, n_pos, region);
        for (h = 0; h < nh; h++) {
            sums[h] = softmax_exp(sc0 + (size_t) h * rows, n_pos);
        }
        q8_values(hd, nh, sc0, rows, kv, n_pos, o0);
        for (h = 0; h < nh; h++) {
            __m256 inv = _mm256_set1_ps(1.0f / sums[h]);
            float *o = o0 + (size_t) h * hd;

            for (i = 0; i < hd; i += 8) {
                _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), inv));
            }
        }
    }
}

static void
f32_to_f16(const float *x, qwen_f16 *y, int64_t n)
{
    int64_t i = 0;

    for (; i + 8 <= n; i += 8) {
        _mm_storeu_si128((__m128i *) (y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) {
        y[i] = qwen_f32_to_f16(x[i]);
    }
}

static void
kv_store_f16(int hd, const float *k, const float *v, void *kc, void *vc, int t)
{
    f32_to_f16(k, (qwen_f16 *) kc + (size_t) t * hd, hd);
    f32_to_f16(v, (qwen_f16 *) vc + (size_t) t * hd, hd);
}

/* The Q8_K activation quantizer, qwen_quantize_row_q8_K's bits: the same
 * absmax, scale, product and round-to-nearest-even per value, the block
 * sums exact; prompt tokens quantize every matmul's input (~4% of prefill
 * with the scalar loop). */
static void
quantize_q8_K(const float *x, block_q8_K *y, int64_t n)
{
    const __m256  sign = _mm256_set1_ps(-0.0f);
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    int64_t       b;
    int           i;

    for (b = 0; b < n / QK_K; b++, x += QK_K) {
        __m256  m = _mm256_setzero_ps(), vs;
        float   amax, iscale;

        for (i = 0; i < QK_K; i += 8) {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
        }
        amax = qwen_hmax256(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof(y[b]));
            continue;
        }
        iscale = 127.0f / amax;
        vs = _mm256_set1_ps(iscale);
        for (i = 0; i < QK_K; i += 32) {
            __m256i q[4], p16a, p16b, p8, s;
            int     k;

            for (k = 0; k < 4; k++) {
                __m256 v = _mm256_round_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(x + i + 8 * k)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);

                q[k] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(v), lim), nlim);
            }
            /* packs work per 128-bit lane: the permute puts values back in order */
            p16a = _mm256_packs_epi32(q[0], q[1]);
            p16b = _mm256_packs_epi32(q[2], q[3]);
            p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b), order);
            _mm256_storeu_si256((__m256i *) (y[b].qs + i), p8);
            /* the two 16-value groups' sums: pairs, quads, then within each lane */
            s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, p8), ones16);
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            y[b].bsums[i / 16] = (int16_t) _mm256_extract_epi32(s, 0);
            y[b].bsums[i / 16 + 1] = (int16_t) _mm256_extract_epi32(s, 4);
        }
        y[b].d = 1.0f / iscale;
    }
}

/* The Q8_0 activation quantizer, qwen_quantize_row_q8_0's bits: its
 * roundf (half away from zero) as the truncation plus the sign where the
 * exact remainder is at least a half. */
static void
quantize_q8_0(const float *x, block_q8_0 *y, int64_t n)
{
    const __m256  sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f);
    const __m256  one = _mm256_set1_ps(1.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t       b;
    int           k;

    for (b = 0; b < n / QK8_0; b++, x += QK8_0) {
        __m256  v[4], m = _mm256_setzero_ps(), vid;
        __m256i q[4];
        float   amax, d, id;

        for (k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        amax = qwen_hmax256(m);
        d = amax / 127.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = qwen_f32_to_f16(d);
        vid = _mm256_set1_ps(id);
        for (k = 0; k < 4; k++) {
            __m256 p = _mm256_mul_ps(v[k], vid);
            __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(p, t)), half,
                                      _CMP_GE_OQ);

            t = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_or_ps(one, _mm256_and_ps(sign, p))));
            q[k] = _mm256_cvttps_epi32(t);
        }
        _mm256_storeu_si256((__m256i *) y[b].qs, _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])),
            order));
    }
}

static void
quantize_act(int act_type, const float *x, void *y, int64_t n)
{
    if (act_type == QWEN_TYPE_Q8_K) {
        quantize_q8_K(x, y, n);
        return;
    }
    if (act_type == QWEN_TYPE_Q8_0) {
        quantize_q8_0(x, y, n);
        return;
    }
    qwen_quantize_row(act_type, x, y, n);
}

/* exported names for the AVX-512 table (x86.h) */
#define ALIAS(name) __attribute__((alias(#name)))
float AVX2_SYM(dot_f32)(int64_t, const void *, const void *) ALIAS(dot_f32);
float AVX2_SYM(dot_f16)(int64_t, const void *, const void *) ALIAS(dot_f16);
float AVX2_SYM(dot_bf16)(int64_t, const void *, const void *) ALIAS(dot_bf16);
float AVX2_SYM(dot_q8_0)(int64_t, const void *, const void *) ALIAS(dot_q8_0);
float AVX2_SYM(dot_q4_K)(int64_t, const void *, const void *) ALIAS(dot_q4_K);
float AVX2_SYM(dot_q6_K)(int64_t, const void *, const void *) ALIAS(dot_q6_K);
void AVX2_SYM(dot4_f16)(int64_t, const void *, const void *, size_t, float *) ALIAS(dot4_f16);
void AVX2_SYM(dot4_bf16)(int64_t, const void *, const void *, size_t, float *) ALIAS(dot4_bf16);
void AVX2_SYM(dot4_q8_0)(int64_t, const void *, const void *, size_t, float *) ALIAS(dot4_q8_0);
void AVX2_SYM(dot4_q4_K)(int64_t, const void *, const void *, size_t, float *) ALIAS(dot4_q4_K);
void AVX2_SYM(dot4_q6_K)(int64_t, const void *, const void *, size_t, float *) ALIAS(dot4_q6_K);
void AVX2_SYM(quantize_act)(int, const float *, void *, int64_t) ALIAS(quantize_act);
float AVX2_SYM(dot_f32_f16)(int64_t, const float *, const qwen_f16 *) ALIAS(dot_f32_f16);
void AVX2_SYM(axpy_f16)(int64_t, float, const qwen_f16 *, float *) ALIAS(axpy_f16);
void AVX2_SYM(f32_to_f16)(const float *, qwen_f16 *, int64_t) ALIAS(f32_to_f16);
void AVX2_SYM(kv_store_f16)(int, const float *, const float *, void *, void *, int)
    ALIAS(kv_store_f16);
void AVX2_SYM(attention_f16)(int, int, const float *, const qwen_kv_view *, int, float, float *,
                             float *) ALIAS(attention_f16);
void AVX2_SYM(attention_f32)(int, int, const float *, const qwen_kv_view *, int, float, float *,
                             float *) ALIAS(attention_f32);
void AVX2_SYM(attention_tokens_f16)(int, int, int, const float *, size_t, const qwen_kv_view *,
                                    int, float, float *, float *, size_t)
    ALIAS(attention_tokens_f16);
void AVX2_SYM(attention_tokens_f32)(int, int, int, const float *, size_t, const qwen_kv_view *,
                                    int, float, float *, float *, size_t)
    ALIAS(attention_tokens_f32);

QWEN_X86_DOT_PAIR(dot_q8_0, dot4_q8_0, qwen_q8_0_dot_n)
QWEN_X86_DOT_PAIR(dot_q4_K, dot4_q4_K, qwen_q4k_dot_n)
QWEN_X86_DOT_2X4(dot2x4_q8_0, qwen_q8_0_dot_rows)
QWEN_X86_DOT_2X4(dot2x4_q4_K, qwen_q4k_dot_rows)
QWEN_X86_DOT_2X4(dot2x4_q6_K, q6k_dot_rows)
QWEN_X86_DOT_PAIR(dot_q6_K, dot4_q6_K, q6k_dot_n)
QWEN_PACKED_DOT_ENTRY(packed_dot_q4_K, qwen_q4kx8_dot)
QWEN_PACKED_DOT_ENTRY(packed_dot_q6_K, qwen_q6kx8_dot)
QWEN_PACKED_DOT_ENTRY(packed_dot_q8_0, qwen_q8_0x8_dot)
QWEN_PACKED_DOT_ENTRY(packed_dot_bf16, qwen_bf16x8_dot)

/* SwiGLU and RMS norm 8 wide, elementwise.c's bits (4 wide they were 3%
 * of a Q8_0 prefill here) */
#define QWEN_EW_WIDTH 8
#include "elementwise_wide.h"

static const qwen_kernels kernels_avx2 = {
    .name = AVX2_NAME,
    QWEN_AVX2_ENTRIES(AVX2_SYM(dot_f32), AVX2_SYM(dot_f16), AVX2_SYM(dot_bf16), NULL,
                      AVX2_SYM(dot4_f16), AVX2_SYM(dot4_bf16), AVX2_SYM(dot_q8_0),
                      AVX2_SYM(dot4_q8_0), AVX2_SYM(dot_q4_K), AVX2_SYM(dot_q6_K),
                      AVX2_SYM(dot4_q4_K), AVX2_SYM(dot4_q6_K), qwen_avx2_attention_f16,
                      qwen_avx2_attention_tokens_f16),
    /* prompt tokens: 2 rows x 4 tokens per call loads each token's
     * activations once for two rows. From 8 tokens on: below, they sit in
     * L1 and the 1 x 4 kernel is faster (4 sequences decoded together: 65
     * vs 50 tok/s; prefill of 256 tokens: 103 -> 120 tok/s, 2 threads) */
    .dot2x4_min_tokens = 8,
    .swiglu = ew_swiglu,
    .rmsnorm = ew_rmsnorm,
    .vec_dot2x4 = {
        [QWEN_TYPE_Q8_0] = dot2x4_q8_0,
        [QWEN_TYPE_Q4_K] = dot2x4_q4_K,
        [QWEN_TYPE_Q6_K] = dot2x4_q6_K,
    },
    .packed_dot[QWEN_TYPE_Q4_K] = packed_dot_q4_K,
    .packed_dot[QWEN_TYPE_Q6_K] = packed_dot_q6_K,
    .packed_dot[QWEN_TYPE_Q8_0] = packed_dot_q8_0,
    .packed_dot[QWEN_TYPE_BF16] = packed_dot_bf16,
    .packed_dot_multi[QWEN_TYPE_BF16] = qwen_bf16x8_multi,
    .packed_dot_multi_groups[QWEN_TYPE_BF16] = QWEN_BF16_MULTI_GROUPS,
    .kv_store[QWEN_KV_Q8_0] = qwen_kv_store_q8_0_ref,
    .kv_attention[QWEN_KV_Q8_0] = attention_q8_0,
    /* steps of 24 tokens or more (prompts) on packed BF16: 16 rows x 6
     * tokens a pass, a broadcast for two FMAs (x86.h; prefill of 200
     * tokens +13-18%). Fewer tokens (decode of several sequences) take
     * the dot: the weights then come from memory, and its one stream (one
     * group a call) reads faster than the GEMM's two groups side by side
     * (8 sequences, 2 threads: 101-108 against 84 tok/s; prompts of 12 /
     * 24 / 48 tokens through the GEMM: -8%, +2%, +24%). Q8_0 below takes
     * the same two groups a call */
    .packed_gemm[QWEN_TYPE_BF16] = qwen_bf16x8_gemm,
    .packed_gemm_min_tokens[QWEN_TYPE_BF16] = 24,
    /* Q4_K / Q6_K: values unpacked once per call, not per 4 tokens
     * (x86.h) */
    .packed_gemm[QWEN_TYPE_Q4_K] = qwen_q4kx8_gemm,
    .packed_gemm[QWEN_TYPE_Q6_K] = qwen_q6kx8_gemm,
    .packed_gemm_groups = 2,
#if QWEN_X86_VNNI
    /* avx2_vnni: steps of 8 tokens or more (prompts) on packed Q8_0 take
     * the GEMM without the sign trick (x86.h), its activations laid out
     * once per matmul with their sums */
    .packed_gemm[QWEN_TYPE_Q8_0] = qwen_q8_0x8_gemm,
    .packed_gemm_act[QWEN_TYPE_Q8_0] = qwen_q8_0s_prep,
#else
    /* plain AVX2: steps of 40 tokens or more (prompts) on packed Q8_0
     * take the GEMM in 16-bit integers (x86.h), its activations widened
     * once per matmul. Its restaging pays from about 40 tokens on (Zen 4,
     * 2 threads, against the dot: prefill of 200 tokens +13%, 1 thread
     * +18%; of 40: +6%; of 32: -1%; of 16: -13%; 8 sequences decoded
     * together: -26%) */
    .packed_gemm[QWEN_TYPE_Q8_0] = qwen_q8_0x8_gemm,
    .packed_gemm_min_tokens[QWEN_TYPE_Q8_0] = 40,
    .packed_gemm_act[QWEN_TYPE_Q8_0] = qwen_q8_0w_prep,
#endif
    .packed_gemm_act_bytes = qwen_q8_0_gemm_act_bytes,
    .packed_gemm_act_tokens = 1,
};

const qwen_kernels *
AVX2_TABLE_FN(void)
{
    return &kernels_avx2;
}
