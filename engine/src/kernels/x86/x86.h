/*
 * x86.h - the AVX2 kernels under exported names, so the AVX-512 table
 * (a superset) can be a constant initializer that reuses them.
 */
#ifndef QWEN_KERNELS_X86_H
#define QWEN_KERNELS_X86_H

#include <string.h>

#include "kernels/kernels.h"
#include "repack.h"

const qwen_kernels *qwen_kernels_avx2(void);
float qwen_avx2_dot_f32(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_f16(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_bf16(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_q8_0(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_q4_K(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_q6_K(int64_t n, const void *w, const void *act);
void  qwen_avx2_dot4_f16(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_dot4_bf16(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_dot4_q8_0(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_dot4_q4_K(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_dot4_q6_K(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_quantize_act(int act_type, const float *x, void *y, int64_t n);
float qwen_avx2_dot_f32_f16(int64_t n, const float *x, const qwen_f16 *y);
void  qwen_avx2_axpy_f16(int64_t n, float a, const qwen_f16 *x, float *y);
void  qwen_avx2_f32_to_f16(const float *x, qwen_f16 *y, int64_t n);
void  qwen_avx2_kv_store_f16(int hd, const float *k, const float *v, void *kc, void *vc, int t);
void  qwen_avx2_attention_f16(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
                              float scale, float *scratch, float *out);
void  qwen_avx2_attention_f32(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
                              float scale, float *scratch, float *out);
void  qwen_avx2_attention_tokens_f16(int hd, int n_q, int m, const float *q, size_t q_stride,
                                     const qwen_kv_view *kv, int n_pos, float scale,
                                     float *scratch, float *out, size_t out_stride);
void  qwen_avx2_attention_tokens_f32(int hd, int n_q, int m, const float *q, size_t q_stride,
                                     const qwen_kv_view *kv, int n_pos, float scale,
                                     float *scratch, float *out, size_t out_stride);

#ifdef __AVX2__
#ifdef QWEN_X86_EMULATE_AVX512
#include "kernels/x86/avx512_emulated.h"    /* tests only: mk/x86emu.mk */
#else
#include <immintrin.h>
#endif

/* vpdpbusd / vpdpwssd on 256-bit registers: the avx512 table (EVEX, and
 * its emulated build, so these paths are tested on any x86 host) and the
 * avx2_vnni table (AVX-VNNI's VEX forms: Alder Lake and later cores
 * without AVX-512); the same integer sums as maddubs + madd, so the same
 * bits */
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(QWEN_X86_EMULATE_AVX512)
#define QWEN_X86_VNNI 1
#define qwen_dpbusd256 _mm256_dpbusd_epi32
#define qwen_dpwssd256 _mm256_dpwssd_epi32
#elif defined(__AVXVNNI__)
#define QWEN_X86_VNNI 1
#define qwen_dpbusd256 _mm256_dpbusd_avx_epi32
#define qwen_dpwssd256 _mm256_dpwssd_avx_epi32
#else
#define QWEN_X86_VNNI 0
#endif

/* acc + the products of 16-bit pairs summed into 32-bit lanes: one
 * vpdpwssd where VNNI is compiled in, vpmaddwd + vpaddd otherwise (the
 * same lanes: a pair's sum fits, and int32 adds wrap alike) */
static inline __m256i
qwen_madd_acc(__m256i acc, __m256i a, __m256i b)
{
#if QWEN_X86_VNNI
    return qwen_dpwssd256(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/* acc + unsigned x signed byte products, four to a 32-bit lane: one
 * vpdpbusd with VNNI, maddubs + madd + add otherwise (the same lanes while
 * maddubs' 16-bit pairs cannot saturate: u <= 128 against |s| <= 127) */
static inline __m256i
qwen_dpbusd_acc(__m256i acc, __m256i u, __m256i s)
{
#if QWEN_X86_VNNI
    return qwen_dpbusd256(acc, u, s);
#else
    return qwen_madd_acc(acc, _mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/* the sum of a vector's 8 floats, always in this order (bit-identical
 * results wherever it is used) */
static inline float
qwen_hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);

    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/*
 * qwen_hsum256 of eight vectors at once, lane k of the result the sum of
 * v[k]: the same three steps of adds on the same pairs (lane i + lane i + 4,
 * then lanes 0 + 2 and 1 + 3, then those two), so each is qwen_hsum256's
 * bits, in 21 operations where eight calls take 48.
 */
static inline __m256
qwen_hsum8x256(const __m256 *v)
{
    __m256 s[4], m[2], a, b;
    int    i;

    /* s[i]: v[k] lanes 0-3 + lanes 4-7, k = i and i + 4 in the halves */
#pragma GCC unroll 4
    for (i = 0; i < 4; i++) {
        s[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[i], v[i + 4], 0x20),
                             _mm256_permute2f128_ps(v[i], v[i + 4], 0x31));
    }
    /* per half, the sums of lanes 0 + 2 and 1 + 3 of two vectors */
#pragma GCC unroll 2
    for (i = 0; i < 2; i++) {
        m[i] = _mm256_add_ps(_mm256_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    }
    a = _mm256_shuffle_ps(m[0], m[1], _MM_SHUFFLE(2, 0, 2, 0));
    b = _mm256_shuffle_ps(m[0], m[1], _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_add_ps(a, b);
}

/* the largest of a vector's 8 floats */
static inline float
qwen_hmax256(__m256 v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/*
 * KV prefetches. Each region of a sequence's KV cache (QWEN_KV_BLOCK
 * positions of one layer and head) is a few KiB at a place of its own,
 * where the hardware prefetchers stop, so a pass reading regions in turn
 * would start each with memory latency. The passes ask for the lines one
 * region (QWEN_KV_AHEAD positions) ahead, into L2: the row layouts (f16,
 * f32) and BF16 position by position as they read (qwen_kv_prefetch_pos:
 * in those layouts a region's positions lie in order, pos_bytes each),
 * q8_0 a region at its first position (qwen_kv_prefetch_ahead), and the
 * first region before a pass starts (qwen_kv_prefetch_start).
 *
 * One decode step's attention at 400 positions (28 layers x 8 KV heads,
 * 2 query heads each), one thread, the cache from memory (make bench's
 * tests/bench/att_bench.c), us a call. AMD Zen 5: avx2 f16 20.4-24.4 with
 * no prefetch (all that was compiled before the asm helper), 19.4-22.0
 * with whole regions four ahead into L2, 10.4-12.1 position by position
 * 16-64 ahead into L1 (13.3 into L2); 6.4 with everything in cache. Every
 * line must be asked for: every second or fourth was as slow as none.
 * q8_0 regions four ahead into L2 / one ahead into L1: avx2 8.7-10.0 /
 * 7.3-8.9, avx512 6.4-7.4 / 5.2-6.0.
 * AMD Zen 4, one region ahead into L1 / into L2, alternating: avx2 f16
 * 21.4-24.7 / 9.7-14.0 (none: 25.3-25.9), f32 39.4-41.6 / 23.5-29.3,
 * q8_0 15.8-17.1 / 8.5-11.9; avx512 bf16 18.6-20.9 / 9.5-12.3, q8_0
 * 14.1-16.4 / 6.5-9.6; in cache the same. A region ahead is 128 lines,
 * far more than the few dozen misses L1 can have in flight: there a
 * prefetch into L1 waits for a slot as a load would, into L2 it does not.
 * Decode after an 800-token prompt (Q4_K_M, 2 threads): 1.20x (avx2),
 * 1.32x (avx512) into L2; Zen 5 may lose a little (its figures above).
 */
#define QWEN_KV_AHEAD 32    /* positions: one region */

/* A prefetch GCC keeps. GCC 12 at -O2 dropped the _mm_prefetch these
 * helpers had (an address loaded from the block table under a bounds
 * check, in the attention loops): no prefetch instruction was left in any
 * x86 attention kernel (-fno-aggressive-loop-optimizations kept them). An
 * asm volatile it may not remove; prefetcht1: into L2 (and L3). */
static inline void
qwen_prefetch_kv(const char *p)
{
    __asm__ __volatile__("prefetcht1 %0" : : "m"(*p));
}

/* The same into L1 (prefetcht0): for lines a far request has brought to
 * L2 already, so the request is short and does not hold one of L1's few
 * miss slots for a memory latency. */
static inline void
qwen_prefetch_kv_l1(const char *p)
{
    __asm__ __volatile__("prefetcht0 %0" : : "m"(*p));
}

/* bytes of base (kv->k or kv->v) from offset off of the region holding
 * position u, when the sequence has u */
static inline void
qwen_kv_prefetch_at(const qwen_kv_view *kv, const void *base, int u, int n_pos, size_t off,
                    size_t bytes)
{
    const char *p;
    size_t      o;

    if (u >= n_pos) {
        return;
    }
    p = (const char *) base + (size_t) kv->blocks[u / QWEN_KV_BLOCK] * kv->stride + off;
    for (o = 0; o < bytes; o += 64) {
        qwen_prefetch_kv(p + o);
    }
}

/* before a pass: the first region (bytes long) */
static inline void
qwen_kv_prefetch_start(const qwen_kv_view *kv, const void *base, int n_pos, size_t bytes)
{
    qwen_kv_prefetch_at(kv, base, 0, n_pos, 0, bytes);
}

/* at position t: the region QWEN_KV_AHEAD positions on when t starts one */
static inline void
qwen_kv_prefetch_ahead(const qwen_kv_view *kv, const void *base, int t, int n_pos, size_t bytes)
{
    if (t % QWEN_KV_BLOCK == 0) {
        qwen_kv_prefetch_at(kv, base, t + QWEN_KV_AHEAD, n_pos, 0, bytes);
    }
}

/* at positions t .. t + n - 1 (of one region): the same positions'
 * bytes QWEN_KV_AHEAD positions on */
static inline void
qwen_kv_prefetch_pos(const qwen_kv_view *kv, const void *base, int t, int n, int n_pos,
                     size_t pos_bytes)
{
    int u = t + QWEN_KV_AHEAD;

    qwen_kv_prefetch_at(kv, base, u, n_pos, (size_t) (u % QWEN_KV_BLOCK) * pos_bytes,
                        (size_t) n * pos_bytes);
}

/*
 * A decode step's row-format passes (avx2.c's attention_rows): the K pass
 * asks for both K's and V's lines of positions t .. t + n - 1 (of one
 * region) QWEN_KV_AHEAD on into L2, as qwen_kv_prefetch_pos, and for the
 * same lines again QWEN_KV_NEAR on into L1, so the V pass finds V in
 * cache. The V pass walks the positions four times, 32 values a time (two
 * heads' accumulators fill the 16 registers), so asking for its own lines
 * alone its first walk met all of V's memory with a quarter of its
 * arithmetic; the K pass has all of q.K's to hide both. The V pass still
 * asks for its own: past a few thousand positions (less with a smaller
 * L2) a call's V has left L2 before that pass reaches it (Zen 5, 1 MiB L2,
 * after 3000 positions: the same speed either way, two runs of 4
 * alternating rounds).
 * AMD Zen 5, decode (Q4_K_M, avx2 table, 2 threads, medians of 5
 * alternating runs) after a 700-token prompt: 89.2 tok/s each pass asking
 * for its own lines, 89.1 the K pass asking for both into L2 alone, 96.7
 * this, 97.6 every request into L1; after 1500: 59.6 and 69.4-69.8 (this,
 * near at 8 or 16). Zen 4 lost with requests a region ahead into L1
 * (the figures above), so the far ones stay into L2.
 */
#define QWEN_KV_NEAR 8    /* positions */

static inline void
qwen_kv_prefetch_decode(const qwen_kv_view *kv, int t, int n, int n_pos, size_t pos_bytes)
{
    int         u = t + QWEN_KV_AHEAD, w = t + QWEN_KV_NEAR;
    size_t      o, bytes = (size_t) n * pos_bytes, off;
    const char *pk, *pv;

    /* K and V share the block table */
    if (u < n_pos) {
        off = (size_t) kv->blocks[u / QWEN_KV_BLOCK] * kv->stride
              + (size_t) (u % QWEN_KV_BLOCK) * pos_bytes;
        pk = (const char *) kv->k + off;
        pv = (const char *) kv->v + off;
        for (o = 0; o < bytes; o += 64) {
            qwen_prefetch_kv(pk + o);
            qwen_prefetch_kv(pv + o);
        }
    }
    if (w < n_pos) {
        off = (size_t) kv->blocks[w / QWEN_KV_BLOCK] * kv->stride
              + (size_t) (w % QWEN_KV_BLOCK) * pos_bytes;
        pk = (const char *) kv->k + off;
        pv = (const char *) kv->v + off;
        for (o = 0; o < bytes; o += 64) {
            qwen_prefetch_kv_l1(pk + o);
            qwen_prefetch_kv_l1(pv + o);
        }
    }
}

/* The 128 six-bit quants of one half of a Q6_K block (ql: 64 bytes, qh: 32)
 * as 4 x 32 bytes, q[g] holding values 32g .. 32g + 31, each 0..63. */
static inline void
qwen_q6k_unpack_half(const uint8_t *ql, const uint8_t *qh, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    __m256i       l0 = _mm256_loadu_si256((const __m256i *) ql);
    __m256i       l1 = _mm256_loadu_si256((const __m256i *) (ql + 32));
    __m256i       h = _mm256_loadu_si256((const __m256i *) qh);

    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                           _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
}
/* Group g (values 32g .. 32g + 31) of that half alone: the same bytes as
 * qwen_q6k_unpack_half's q[g], for kernels that keep one group of several
 * rows in registers at a time. */
static inline __m256i
qwen_q6k_unpack_group(const uint8_t *ql, const uint8_t *qh, const int g)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    __m256i       l = _mm256_loadu_si256((const __m256i *) (ql + 32 * (g & 1)));
    __m256i       h = _mm256_loadu_si256((const __m256i *) qh);

    if (g >= 2) {
        l = _mm256_srli_epi16(l, 4);
    }
    return _mm256_or_si256(_mm256_and_si256(l, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * g), m3),
                                             4));
}
/* One Q8_0 block's products, as 8 exact int32 lanes of 4 each
 * (|x| <= 127 keeps maddubs' 16-bit pairs from saturating) */
static inline __m256i
qwen_q8_0_lanes(__m256i ax, __m256i sy)
{
    return qwen_dpbusd_acc(_mm256_setzero_si256(), ax, sy);
}

/* Block b of NR Q8_0 rows (w_stride bytes apart) into chain
 * acc[r][t * 2 + chain] of each row and token: each token's block is
 * loaded once for the rows */
static inline __attribute__((always_inline)) void
qwen_q8_0_block(const void *w, size_t w_stride, const void *act, size_t stride, int64_t b,
                __m256 acc[2][8], int chain, const int NR, const int NT)
{
    __m256i qx[2], ax[2];
    float   dw[2];
    int     t, r;

#pragma GCC unroll 2
    for (r = 0; r < NR; r++) {
        const block_q8_0 *x = (const block_q8_0 *) ((const char *) w + r * w_stride) + b;

        qx[r] = _mm256_loadu_si256((const __m256i *) x->qs);
        ax[r] = _mm256_sign_epi8(qx[r], qx[r]);
        dw[r] = _cvtsh_ss(x->d);
    }
#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        const block_q8_0 *y = (const block_q8_0 *) ((const char *) act + t * stride) + b;
        __m256i           qy = _mm256_loadu_si256((const __m256i *) y->qs);
        float             dy = _cvtsh_ss(y->d);

#pragma GCC unroll 2
        for (r = 0; r < NR; r++) {
            __m256i sy = _mm256_sign_epi8(qy, qx[r]);

            acc[r][t * 2 + chain] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dy),
                                                    _mm256_cvtepi32_ps(qwen_q8_0_lanes(ax[r], sy)),
                                                    acc[r][t * 2 + chain]);
        }
    }
}

/*
 * Q8_0 x Q8_0 for NR weight rows (1 or 2) x NT activation rows (1 or 4),
 * one template so a (row, token) result is the same bits whatever the
 * shape: even and odd blocks in two float chains (one chain waits on the
 * FMA latency), added at the end. out[r * NT + t].
 */
static inline __attribute__((always_inline)) void
qwen_q8_0_dot_rows(int64_t n, const void *w, size_t w_stride, const void *act, size_t stride,
                   float *out, const int NR, const int NT)
{
    __m256  acc[2][8];
    int64_t b, nb = n / QK8_0;
    int     t, r;

    for (r = 0; r < NR; r++) {
        for (t = 0; t < 2 * NT; t++) {
            acc[r][t] = _mm256_setzero_ps();
        }
    }
    for (b = 0; b + 2 <= nb; b += 2) {
        qwen_q8_0_block(w, w_stride, act, stride, b, acc, 0, NR, NT);
        qwen_q8_0_block(w, w_stride, act, stride, b + 1, acc, 1, NR, NT);
    }
    if (b < nb) {
        qwen_q8_0_block(w, w_stride, act, stride, b, acc, 0, NR, NT);
    }
    for (r = 0; r < NR; r++) {
        for (t = 0; t < NT; t++) {
            out[r * NT + t] = qwen_hsum256(_mm256_add_ps(acc[r][2 * t], acc[r][2 * t + 1]));
        }
    }
}

static inline __attribute__((always_inline)) void
qwen_q8_0_dot_n(int64_t n, const void *w, const void *act, size_t stride, float *out,
                const int NT)
{
    qwen_q8_0_dot_rows(n, w, 0, act, stride, out, 1, NT);
}

/*
 * Q4_K x Q8_K for NR weight rows (1 or 2, w_stride bytes apart) x NT
 * activation rows (1 or 4), one template for every shape so a (row, token)
 * result is the same bits whichever shape computed it. A weight block is
 * unpacked once for the NT tokens and each token's activations are loaded
 * once for the NR rows (2 x 4 halves the activation traffic of 1 x 4,
 * which streams every prompt token's activations past each row). Integer
 * sums per sub-block are scaled in 16 bits (maddubs, then a multiply-add
 * by the scale: one vpdpwssd where VNNI is compiled in, madd and add
 * otherwise - exact integers, so both give the same bits); the mins come
 * off through the activation's bsums. out[r * NT + t].
 */
static inline __attribute__((always_inline)) void
qwen_q4k_dot_rows(int64_t n, const void *w, size_t w_stride, const void *act, size_t stride,
                  float *out, const int NR, const int NT)
{
    const __m256i     mask = _mm256_set1_epi8(0xF);
    __m256            facc[2][4], macc[2][4];
    int64_t           b, nb = n / QK_K;
    int               j, t, c, r;
    uint8_t           sm[16];
    /* integer chains per token: one token alone needs four to hide the
     * multiply-add latency; four tokens are four chains already (two each
     * measured slower: 63 -> 53 GMAC/s) */
    const int         NC = NT == 1 && NR == 1 ? 4 : 1;

    for (r = 0; r < NR; r++) {
        for (t = 0; t < NT; t++) {
            facc[r][t] = _mm256_setzero_ps();
            macc[r][t] = _mm256_setzero_ps();
        }
    }
    for (b = 0; b < nb; b++) {
        __m256i           isum[2][4][4];   /* [row][token][chain] */
        __m256i           mins[2], scales[2];
        const block_q4_K *x[2];

        for (r = 0; r < NR; r++) {
            __m128i m16, sc16;

            x[r] = (const block_q4_K *) ((const char *) w + r * w_stride) + b;
            qwen_q4k_scales_mins(x[r]->scales, sm);
            sc16 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *) sm));
            m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *) (sm + 8)));
            mins[r] = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16),
                                       _mm_unpacklo_epi16(m16, m16));
            scales[r] = _mm256_set_m128i(sc16, sc16);
            for (t = 0; t < NT; t++) {
                for (c = 0; c < NC; c++) {
                    isum[r][t][c] = _mm256_setzero_si256();
                }
            }
        }
#pragma GCC unroll 4
        for (j = 0; j < QK_K / 64; j++) {
            int h;

            /* the low nibbles (sub-block 2j) of every row, then the high
             * ones (2j + 1): two rows' weights and scales stay in registers */
#pragma GCC unroll 2
            for (h = 0; h < 2; h++) {
                __m256i q[2], sc[2];
                int     ch = (2 * j + h) % NC;

#pragma GCC unroll 2
                for (r = 0; r < NR; r++) {
                    __m256i raw = _mm256_loadu_si256((const __m256i *) (x[r]->qs + 32 * j));

                    q[r] = h ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask)
                             : _mm256_and_si256(raw, mask);
                    sc[r] = _mm256_shuffle_epi8(scales[r], _mm256_set1_epi16(
                        (short) ((4 * j + 2 * h) | ((4 * j + 2 * h + 1) << 8))));
                }
#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    const int8_t *q8 = ((const block_q8_K *) ((const char *) act + t * stride))[b].qs
                                       + 64 * j + 32 * h;
                    __m256i       y8 = _mm256_loadu_si256((const __m256i *) q8);

#pragma GCC unroll 2
                    for (r = 0; r < NR; r++) {
                        __m256i p = _mm256_maddubs_epi16(q[r], y8);
                        isum[r][t][ch] = qwen_madd_acc(isum[r][t][ch], p, sc[r]);
                    }
                }
            }
        }
        /* integer sums: the same lane values however many chains made them */
#pragma GCC unroll 2
        for (r = 0; r < NR; r++) {
            float dw = _cvtsh_ss(x[r]->d), dmin = _cvtsh_ss(x[r]->dmin);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * stride) + b;
                __m256i           bs = _mm256_loadu_si256((const __m256i *) y->bsums);

                for (c = 1; c < NC; c++) {
                    isum[r][t][0] = _mm256_add_epi32(isum[r][t][0], isum[r][t][c]);
                }
                facc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * y->d),
                                             _mm256_cvtepi32_ps(isum[r][t][0]), facc[r][t]);
                macc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * y->d),
                                             _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins[r])),
                                             macc[r][t]);
            }
        }
    }
    for (r = 0; r < NR; r++) {
        for (t = 0; t < NT; t++) {
            out[r * NT + t] = qwen_hsum256(_mm256_sub_ps(facc[r][t], macc[r][t]));
        }
    }
}

/* a Q8_K block's 16 activation sums, added in pairs (2p, 2p + 1): the 8
 * sub-blocks of 32 columns, two int16 per int32 of pairs[4] */
static inline __attribute__((always_inline)) void
qwen_q8k_bsum_pairs(const block_q8_K *y, int32_t pairs[4])
{
    _mm_storeu_si128((__m128i *) pairs,
                     _mm_hadd_epi16(_mm_loadu_si128((const __m128i *) y->bsums),
                                    _mm_loadu_si128((const __m128i *) (y->bsums + 8))));
}

/* A super-block's row constants the end takes: d and dmin as floats, the
 * mins widened, (2p, 2p + 1) per lane. The dot makes them per 4 tokens,
 * the GEMM once per call with its restaged nibbles. */
typedef struct {
    __m256  d, dmin;
    __m256i mins[QK_K / 64];
} qwen_q4k_rows;

static inline __attribute__((always_inline)) void
qwen_q4kx8_rows(const block_q4_Kx8 *x, qwen_q4k_rows *c)
{
    int i;

    c->d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) x->d));
    c->dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) x->dmin));
#pragma GCC unroll 4
    for (i = 0; i < QK_K / 64; i++) {
        c->mins[i] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *) x->mins[i]));
    }
}

/* Super-block b's end for NT tokens: its integer sums isum[t] (per row)
 * scaled by d, the mins taken off through the activation's bsums, added to
 * out[t * 8 + r]: the scalar truth's float operations in its order (every
 * packed Q4_K kernel ends its super-blocks here). */
static inline __attribute__((always_inline)) void
qwen_q4kx8_finish_rows(const qwen_q4k_rows *c, const void *act, size_t stride, int64_t b,
                       const __m256i *isum, float *out, const int NT)
{
    int t, i;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * stride) + b;
        int32_t           pairs[4];
        __m256i           msum = _mm256_setzero_si256();
        __m256            dy = _mm256_set1_ps(y->d), acc;

        qwen_q8k_bsum_pairs(y, pairs);
#pragma GCC unroll 4
        for (i = 0; i < QK_K / 64; i++) {
            msum = _mm256_add_epi32(msum,
                                    _mm256_madd_epi16(c->mins[i], _mm256_set1_epi32(pairs[i])));
        }
        acc = _mm256_fmadd_ps(_mm256_mul_ps(c->d, dy), _mm256_cvtepi32_ps(isum[t]),
                              _mm256_loadu_ps(out + 8 * t));
        acc = _mm256_fnmadd_ps(_mm256_mul_ps(c->dmin, dy), _mm256_cvtepi32_ps(msum), acc);
        _mm256_storeu_ps(out + 8 * t, acc);
    }
}

/* the same with the row constants made from the packed block x */
static inline __attribute__((always_inline)) void
qwen_q4kx8_finish(const block_q4_Kx8 *x, const void *act, size_t stride, int64_t b,
                  const __m256i *isum, float *out, const int NT)
{
    qwen_q4k_rows c;

    qwen_q4kx8_rows(x, &c);
    qwen_q4kx8_finish_rows(&c, act, stride, b, isum, out, NT);
}

/*
 * Packed Q4_K (repack.h) x Q8_K, QWEN_PACK_ROWS rows in the lanes of one
 * vector, NT tokens (1 .. 4). A 32-byte load is 4 columns of the 8 rows;
 * the token's 4 activation bytes of those columns are one broadcast, so
 * one maddubs is 32 products with no per-row work: the products of a
 * sub-block add up in 16 bits (8 steps of at most 2 x 15 x 128) and are
 * scaled once per sub-block (madd by the row's scale in both halves of its
 * lane), the mins come off through the activation's bsums. The sums
 * accumulate in out (in memory: registers are for the 4 tokens' integer
 * chains, and spilling them cost a quarter of the speed). Each lane does
 * the scalar truth's operations (qwen_packed_dot_ref) in its order, and
 * tokens never mix: the same bits for every NT. out[t * 8 + r].
 */
/* Keeps v's additions one chain: GCC otherwise reassociates a token's
 * integer sums into trees whose partial sums spill registers (measured:
 * prefill 107 -> 137 tok/s, one thread). */
#define QWEN_CHAIN(v) __asm__("" : "+x"(v))

#ifndef QWEN_PACK_PREFETCH
#define QWEN_PACK_PREFETCH 4
#endif

/*
 * Part s of steps of a block's bytes fetched ahead, a packed dot's loop
 * taking one part a step: the block's lines spread over its work, where
 * all of them asked at once (27 lines of a Q6_K block) left most of the
 * stream to demand misses. One core streaming packed Q6_K from memory
 * (AMD Zen 4, 256 MiB): 9 GB/s with the burst, 23-27 spread; Q4_K 19 ->
 * 28 (from L3 both ran 23-28 either way). Nothing with QWEN_PACK_PREFETCH
 * 0, so callers need no guard of their own.
 */
static inline __attribute__((always_inline)) void
qwen_prefetch_part(const void *block, size_t bytes, int s, int steps)
{
    size_t o = (bytes * (size_t) s / (size_t) steps) & ~(size_t) 63;
    size_t end = bytes * (size_t) (s + 1) / (size_t) steps;

    for (; QWEN_PACK_PREFETCH && o < end; o += 64) {
        _mm_prefetch((const char *) block + o, _MM_HINT_T0);
    }
}

/* Step k of half h of sub-block pair j of super-block b for NT tokens (1
 * .. 4): the 8 rows' 4-bit values q of 4 columns against each token's 4
 * bytes, added into its 16-bit sums acc16[t] (at most 8 steps of 2 x 15 x
 * 128): the packed Q4_K kernels' integers */
static inline __attribute__((always_inline)) void
qwen_q4kx8_step(__m256i q, const void *act, size_t stride, int64_t b, int j, int h, int k,
                __m256i *acc16, const int NT)
{
    int t;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        const int8_t *q8 = ((const block_q8_K *) ((const char *) act + t * stride))[b].qs
                           + 64 * j + 32 * h + 4 * k;
        int32_t       y4;

        memcpy(&y4, q8, 4);
        acc16[t] = _mm256_add_epi16(acc16[t], _mm256_maddubs_epi16(q, _mm256_set1_epi32(y4)));
        QWEN_CHAIN(acc16[t]);
    }
}

/* Sub-block s's scales of the 8 rows, (scale, scale) as 16-bit pairs in
 * each row's lane: one madd scales a sub-block's 16-bit sums */
static inline __m256i
qwen_q4kx8_scale_pair(const block_q4_Kx8 *x, int s)
{
    __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *) x->scales[s]));

    return _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16));
}

static inline __attribute__((always_inline)) void
qwen_q4kx8_dot(int64_t n, const void *w, const void *act, size_t stride, float *out,
               const int NT)
{
    const __m256i       mask = _mm256_set1_epi8(0xF);
    const block_q4_Kx8 *x = w;
    int64_t             b, nb = n / QK_K;
    int                 t, j, h, k;

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
            qwen_prefetch_part(x + b + QWEN_PACK_PREFETCH, sizeof(block_q4_Kx8), j, QK_K / 64);
#pragma GCC unroll 2
            for (h = 0; h < 2; h++) {
                __m256i acc16[4];
                __m256i sc = qwen_q4kx8_scale_pair(x + b, 2 * j + h);
#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    acc16[t] = _mm256_setzero_si256();
                }
#pragma GCC unroll 8
                for (k = 0; k < 8; k++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *) x[b].qs[j][k]);
                    __m256i q = h ? _mm256_and_si256(_mm256_srli_epi16(v, 4), mask)
                                  : _mm256_and_si256(v, mask);

                    qwen_q4kx8_step(q, act, stride, b, j, h, k, acc16, NT);
                }
#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    isum[t] = qwen_madd_acc(isum[t], acc16[t], sc);
                }
            }
        }
        qwen_q4kx8_finish(x + b, act, stride, b, isum, out, NT);
    }
}

/*
 * Prompt tokens of packed Q4_K (packed_gemm, two groups a call): each
 * super-block's nibbles are split once per call into bytes (restaged), and
 * every token streams past them four at a time; the dot above splits them
 * again for every 4 tokens (a shift and a mask per load: a tenth of a
 * prefill's time on Intel's cores), and its row constants for the end
 * once. The same integers and the same end per super-block, in order,
 * into sums that start at zero as the dot's out does: its bits.
 */
typedef struct {
    __m256i       q[QK_K / 64][2][8];   /* [j][h: low, high nibbles][step k] */
    __m256i       sc[QK_K / 64][2];     /* [j][h]: the rows' sub-block scales, 16-bit pairs */
    qwen_q4k_rows rows;                 /* d, dmin, mins for the end */
} qwen_q4k_stage;

#define QWEN_KQUANT_GEMM_SUMS 128   /* tokens whose sums a pass keeps (2 x 4 KiB) */

static inline void
qwen_q4k_restage(const block_q4_Kx8 *x, qwen_q4k_stage *st)
{
    const __m256i mask = _mm256_set1_epi8(0xF);
    int           j, k;

    qwen_q4kx8_rows(x, &st->rows);
    for (j = 0; j < QK_K / 64; j++) {
        /* the next super-block, a quarter a step (as the dot does) */
        qwen_prefetch_part(x + 1, sizeof(block_q4_Kx8), j, QK_K / 64);
#pragma GCC unroll 2
        for (k = 0; k < 2; k++) {
            st->sc[j][k] = qwen_q4kx8_scale_pair(x, 2 * j + k);
        }
#pragma GCC unroll 8
        for (k = 0; k < 8; k++) {
            __m256i v = _mm256_loadu_si256((const __m256i *) x->qs[j][k]);

            st->q[j][0][k] = _mm256_and_si256(v, mask);
            st->q[j][1][k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
        }
    }
}

/* NT tokens (1 .. 4) against super-block b of a group (x: its block b,
 * st: its restaged nibbles): qwen_q4kx8_dot's steps for that block */
static inline __attribute__((always_inline)) void
qwen_q4kx8_staged(const block_q4_Kx8 *x, const qwen_q4k_stage *st, const void *act,
                  size_t stride, int64_t b, float *out, const int NT)
{
    __m256i isum[4];
    int     t, j, h, k;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        isum[t] = _mm256_setzero_si256();
    }
    for (j = 0; j < QK_K / 64; j++) {
#pragma GCC unroll 2
        for (h = 0; h < 2; h++) {
            __m256i acc16[4];
            __m256i sc = _mm256_load_si256(&st->sc[j][h]);
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                acc16[t] = _mm256_setzero_si256();
            }
#pragma GCC unroll 8
            for (k = 0; k < 8; k++) {
                __m256i q = _mm256_load_si256(&st->q[j][h][k]);

                qwen_q4kx8_step(q, act, stride, b, j, h, k, acc16, NT);
            }
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                isum[t] = qwen_madd_acc(isum[t], acc16[t], sc);
            }
        }
    }
    qwen_q4kx8_finish_rows(&st->rows, act, stride, b, isum, out, NT);
}

/* Two packed K-quant groups (16 rows) against n_tok Q8_K rows (act + t *
 * act_stride): out[idx[t] * out_stride + r] (packed_gemm), each group's
 * super-blocks restaged (RESTAGE into a STAGE) in turn and the tokens
 * streamed past them four at a time (STAGED, NT = 1 .. 4). The sums build
 * up super-block by super-block in rows of their own, as the Q8_0 GEMM's
 * (tokens' rows of out fall in one L1 set). */
#define QWEN_KQUANT_GEMM(NAME, BLOCK, STAGE, RESTAGE, STAGED)                                 \
static inline void                                                                            \
NAME(int64_t n, const void *w, const void *act, size_t act_stride, int n_tok, float *out,     \
     size_t out_stride, const int32_t *idx)                                                   \
{                                                                                             \
    const BLOCK *x = w;                                                                       \
    int64_t      b, nb = n / QK_K;                                                            \
    STAGE        st;                                                                          \
    float        sums[2][QWEN_KQUANT_GEMM_SUMS * QWEN_PACK_ROWS];                             \
    int          t0, n0, t, nt, g;                                                            \
                                                                                              \
    for (t0 = 0; t0 < n_tok; t0 += n0) {                                                      \
        n0 = n_tok - t0 < QWEN_KQUANT_GEMM_SUMS ? n_tok - t0 : QWEN_KQUANT_GEMM_SUMS;         \
        memset(sums, 0, sizeof(sums));                                                        \
        for (g = 0; g < 2; g++) {                                                             \
            const BLOCK *xg = x + g * nb;                                                     \
                                                                                              \
            for (b = 0; b < nb; b++) {                                                        \
                RESTAGE(xg + b, &st);                                                         \
                for (t = 0; t < n0; t += nt) {                                                \
                    const char *a = (const char *) act + (size_t) (t0 + t) * act_stride;      \
                    float      *o = sums[g] + (size_t) t * QWEN_PACK_ROWS;                    \
                                                                                              \
                    nt = n0 - t < 4 ? n0 - t : 4;                                             \
                    switch (nt) {                                                             \
                    case 1: STAGED(xg + b, &st, a, act_stride, b, o, 1); break;               \
                    case 2: STAGED(xg + b, &st, a, act_stride, b, o, 2); break;               \
                    case 3: STAGED(xg + b, &st, a, act_stride, b, o, 3); break;               \
                    default: STAGED(xg + b, &st, a, act_stride, b, o, 4); break;              \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        for (t = 0; t < n0; t++) {                                                            \
            for (g = 0; g < 2; g++) {                                                         \
                memcpy(out + (size_t) idx[t0 + t] * out_stride + g * QWEN_PACK_ROWS,          \
                       sums[g] + (size_t) t * QWEN_PACK_ROWS, sizeof(float) * QWEN_PACK_ROWS); \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}

QWEN_KQUANT_GEMM(qwen_q4kx8_gemm, block_q4_Kx8, qwen_q4k_stage, qwen_q4k_restage,
                 qwen_q4kx8_staged)

/*
 * Packed Q8_0 (repack.h) x Q8_0, 8 rows in the lanes, NT tokens (1 .. 4):
 * per 4 columns |w| (once) times the token's broadcast bytes signed by w,
 * pairs to 32 bits (2 x 127 x 127 fits 16 bits, four do not), a block's
 * exact integer sum scaled once. The scalar truth's operations per lane.
 */
static inline __attribute__((always_inline)) void
qwen_q8_0x8_dot(int64_t n, const void *w, const void *act, size_t stride, float *out,
                const int NT)
{
    const block_q8_0x8 *x = w;
    __m256              acc[4];
    int64_t             b, nb = n / QK8_0;
    int                 t, k;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        acc[t] = _mm256_setzero_ps();
    }
    for (b = 0; b < nb; b++) {
        __m256i isum[4];
        __m256  d;

        /* a whole block (5 lines) a block: already spread over the stream */
        qwen_prefetch_part(x + b + 4 * QWEN_PACK_PREFETCH, sizeof(block_q8_0x8), 0, 1);
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            isum[t] = _mm256_setzero_si256();
        }
#pragma GCC unroll 8
        for (k = 0; k < QK8_0 / 4; k++) {
            __m256i v = _mm256_loadu_si256((const __m256i *) x[b].qs[k]);
            __m256i av = _mm256_sign_epi8(v, v);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                const int8_t *q8 = ((const block_q8_0 *) ((const char *) act + t * stride))[b].qs
                                   + 4 * k;
                int32_t       y4;

                memcpy(&y4, q8, 4);
                isum[t] = qwen_dpbusd_acc(isum[t], av, _mm256_sign_epi8(_mm256_set1_epi32(y4), v));
                QWEN_CHAIN(isum[t]);
            }
        }
        d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) x[b].d));
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            const block_q8_0 *y = (const block_q8_0 *) ((const char *) act + t * stride) + b;

            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(_cvtsh_ss(y->d))),
                                     _mm256_cvtepi32_ps(isum[t]), acc[t]);
        }
    }
#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        _mm256_storeu_ps(out + 8 * t, acc[t]);
    }
}

#if QWEN_X86_VNNI
/*
 * The packed Q8_0 GEMM's activations (packed_gemm_act, one token a group):
 * each Q8_0 block with its scale as a float (f16 widens exactly) and 128 x
 * the sum of its quants, which the GEMM below starts from.
 */
typedef struct {
    float   d;
    int32_t sum128;
    int8_t  qs[QK8_0];
} qwen_q8_0_gemm_act;

static inline void
qwen_q8_0s_prep(int64_t n, const void *act, size_t stride, int n_tok, void *out)
{
    qwen_q8_0_gemm_act *o = out;
    int64_t             b, nb = n / QK8_0;
    int                 t, i, sum;

    for (t = 0; t < n_tok; t++) {
        const block_q8_0 *y = (const block_q8_0 *) ((const char *) act + t * stride);

        for (b = 0; b < nb; b++, o++) {
            for (i = 0, sum = 0; i < QK8_0; i++) {
                sum += y[b].qs[i];
            }
            o->d = _cvtsh_ss(y[b].d);
            o->sum128 = 128 * sum;
            memcpy(o->qs, y[b].qs, QK8_0);
        }
    }
}

/*
 * Packed Q8_0 x those activations, 8 rows x NT tokens (1 .. 4): with VNNI
 * the weights need no sign trick, as vpdpbusd does not saturate: w + 128
 * (an xor, once per 4 columns for all the tokens) times the token's bytes,
 * from -128 x the block's sum, is the block's exact integer sum, one
 * vpdpbusd per 32 products a token where the dot pays a vpsignb too. The
 * same integers and the same float steps as qwen_q8_0x8_dot: its bits.
 */
static inline __attribute__((always_inline)) void
qwen_q8_0x8_gemm_tile(int64_t n, const block_q8_0x8 *x, const qwen_q8_0_gemm_act *y, int64_t nb,
                      float *out, const int NT)
{
    const __m256i flip = _mm256_set1_epi8((char) 0x80);
    __m256        acc[4];
    int64_t       b;
    int           t, k;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        acc[t] = _mm256_setzero_ps();
    }
    for (b = 0; b < n / QK8_0; b++) {
        __m256i isum[4];
        __m256  d;

#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            isum[t] = _mm256_set1_epi32(-y[t * nb + b].sum128);
        }
#pragma GCC unroll 8
        for (k = 0; k < QK8_0 / 4; k++) {
            __m256i u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *) x[b].qs[k]), flip);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                int32_t y4;

                memcpy(&y4, y[t * nb + b].qs + 4 * k, 4);
                isum[t] = qwen_dpbusd256(isum[t], u, _mm256_set1_epi32(y4));
                QWEN_CHAIN(isum[t]);
            }
        }
        d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) x[b].d));
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(y[t * nb + b].d)),
                                     _mm256_cvtepi32_ps(isum[t]), acc[t]);
        }
    }
#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        _mm256_storeu_ps(out + 8 * t, acc[t]);
    }
}

/* Two packed Q8_0 groups (the table's calls take two: its BF16 GEMM's
 * 16 rows), each in turn against n_tok tokens of qwen_q8_0s_prep's
 * layout (act_stride bytes a token), four at a time while the group sits
 * in L1: out[idx[t] * out_stride + r] (packed_gemm) */
static inline void
qwen_q8_0x8_gemm(int64_t n, const void *w, const void *act, size_t act_stride, int n_tok,
                 float *out, size_t out_stride, const int32_t *idx)
{
    const block_q8_0x8       *x = w;
    const qwen_q8_0_gemm_act *y = act;
    int64_t                   nb = (int64_t) (act_stride / sizeof(qwen_q8_0_gemm_act));
    float                     res[4 * QWEN_PACK_ROWS];
    int                       g, t, i, nt;

    for (g = 0; g < 2; g++, x += n / QK8_0, out += QWEN_PACK_ROWS) {
        for (t = 0; t < n_tok; t += 4) {
            nt = n_tok - t < 4 ? n_tok - t : 4;
            switch (nt) {
            case 1: qwen_q8_0x8_gemm_tile(n, x, y + t * nb, nb, res, 1); break;
            case 2: qwen_q8_0x8_gemm_tile(n, x, y + t * nb, nb, res, 2); break;
            case 3: qwen_q8_0x8_gemm_tile(n, x, y + t * nb, nb, res, 3); break;
            default: qwen_q8_0x8_gemm_tile(n, x, y + t * nb, nb, res, 4); break;
            }
            for (i = 0; i < nt; i++) {
                memcpy(out + (size_t) idx[t + i] * out_stride, res + i * QWEN_PACK_ROWS,
                       sizeof(float) * QWEN_PACK_ROWS);
            }
        }
    }
}
#else
/*
 * Without VNNI, the packed Q8_0 GEMM in 16-bit integers. The dot's sign
 * step spends three multiplier ops (vpsignb, vpmaddubsw, vpmaddwd) on 32
 * products, and these cores have two multipliers; two vpmaddwd do the same
 * 32 on operands widened beforehand: each token's quants once per matmul
 * (packed_gemm_act, below), the weights once per call (its two groups'
 * blocks restaged as the 8 rows' column pairs). A block's sum is the same
 * exact integer and is scaled by the same float steps: the dot's bits.
 */
typedef struct {
    int16_t qs[QK8_0];
    float   d;
} qwen_q8_0_gemm_act;

static inline void
qwen_q8_0w_prep(int64_t n, const void *act, size_t stride, int n_tok, void *out)
{
    qwen_q8_0_gemm_act *o = out;
    int64_t             b, nb = n / QK8_0;
    int                 t;

    for (t = 0; t < n_tok; t++) {
        const block_q8_0 *y = (const block_q8_0 *) ((const char *) act + t * stride);

        for (b = 0; b < nb; b++, o++) {
            __m128i lo = _mm_loadu_si128((const __m128i *) y[b].qs);
            __m128i hi = _mm_loadu_si128((const __m128i *) (y[b].qs + 16));

            _mm256_storeu_si256((__m256i *) o->qs, _mm256_cvtepi8_epi16(lo));
            _mm256_storeu_si256((__m256i *) (o->qs + 16), _mm256_cvtepi8_epi16(hi));
            o->d = _cvtsh_ss(y[b].d);
        }
    }
}

/* A restaged block: w[j] holds columns 2j, 2j + 1 of the 8 rows as 16-bit
 * pairs (one vpmaddwd against a token's broadcast pair gives 8 row sums),
 * d the rows' scales as floats. A call's two groups are restaged a pass of
 * blocks at a time (8.5 KiB, in L1 with the tokens' blocks), and every
 * token streamed past them. */
#define QWEN_Q80W_BLOCKS 8
#define QWEN_Q80W_TOKENS 4

typedef struct {
    __m256i w[QK8_0 / 2];
    __m256  d;
} qwen_q80w_stage;

static inline void
qwen_q80w_restage(const block_q8_0x8 *x, int nblk, qwen_q80w_stage *st)
{
    /* per 128-bit half (4 rows x 4 columns): columns 0-1 of the 4 rows,
     * then 2-3; the quadwords reordered so each 16 bytes is 8 rows' pair */
    const __m256i pairs = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                           0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    int           b, k;

    for (b = 0; b < nblk; b++) {
        /* the next pass's block, in flight while this pass computes */
        qwen_prefetch_part(x + b + QWEN_Q80W_BLOCKS, sizeof(block_q8_0x8), 0, 1);
#pragma GCC unroll 8
        for (k = 0; k < QK8_0 / 4; k++) {
            __m256i v = _mm256_loadu_si256((const __m256i *) x[b].qs[k]);

            v = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, pairs), 0xD8);
            st[b].w[2 * k] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v));
            st[b].w[2 * k + 1] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1));
        }
        st[b].d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) x[b].d));
    }
}

/* NT tokens (1 .. QWEN_Q80W_TOKENS; y: the first one's first block of the
 * pass, nb blocks a token) over nblk restaged blocks of both groups (st[0],
 * st[1]): each broadcast pair feeds both groups. The 16 row sums of token t
 * are carried in o[t] from block to block. */
static inline __attribute__((always_inline)) void
qwen_q80w_tile(qwen_q80w_stage (*st)[QWEN_Q80W_BLOCKS], int nblk, const qwen_q8_0_gemm_act *y,
               int64_t nb, float (*o)[2 * QWEN_PACK_ROWS], const int NT)
{
    int b, t, j;

    for (b = 0; b < nblk; b++) {
        __m256i is0[QWEN_Q80W_TOKENS], is1[QWEN_Q80W_TOKENS];

#pragma GCC unroll 16
        for (j = 0; j < QK8_0 / 2; j++) {
            __m256i w0 = _mm256_load_si256(&st[0][b].w[j]), w1 = _mm256_load_si256(&st[1][b].w[j]);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                int32_t y2;
                __m256i a, m0, m1;

                memcpy(&y2, y[t * nb + b].qs + 2 * j, 4);
                a = _mm256_set1_epi32(y2);
                m0 = _mm256_madd_epi16(w0, a);
                m1 = _mm256_madd_epi16(w1, a);
                is0[t] = j == 0 ? m0 : _mm256_add_epi32(is0[t], m0);
                is1[t] = j == 0 ? m1 : _mm256_add_epi32(is1[t], m1);
                QWEN_CHAIN(is0[t]);
                QWEN_CHAIN(is1[t]);
            }
        }
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            __m256 dy = _mm256_set1_ps(y[t * nb + b].d);

            _mm256_storeu_ps(o[t], _mm256_fmadd_ps(_mm256_mul_ps(st[0][b].d, dy),
                                                   _mm256_cvtepi32_ps(is0[t]),
                                                   _mm256_loadu_ps(o[t])));
            _mm256_storeu_ps(o[t] + 8, _mm256_fmadd_ps(_mm256_mul_ps(st[1][b].d, dy),
                                                       _mm256_cvtepi32_ps(is1[t]),
                                                       _mm256_loadu_ps(o[t] + 8)));
        }
    }
}

/* Two packed Q8_0 groups (the table's calls take two: its BF16 GEMM's
 * 16 rows) a pass of blocks at a time against n_tok tokens of
 * qwen_q8_0w_prep's layout (act_stride bytes a token): out[idx[t] *
 * out_stride + r] (packed_gemm). The sums build up block by block in rows
 * of their own, QWEN_Q80W_SUMS tokens at a time (16 KiB): in out, tokens'
 * rows lie a weight's row count of floats apart, a multiple of 4 KiB, so
 * all of them fall in one L1 set (avx2 Q8_0 prefill +3%, Zen 5). */
#define QWEN_Q80W_SUMS 256

static inline void
qwen_q8_0x8_gemm(int64_t n, const void *w, const void *act, size_t act_stride, int n_tok,
                 float *out, size_t out_stride, const int32_t *idx)
{
    const block_q8_0x8       *x = w;
    const qwen_q8_0_gemm_act *y = act;
    int64_t                   b0, nb = (int64_t) (act_stride / sizeof(qwen_q8_0_gemm_act));
    int64_t                   nbw = n / QK8_0;
    qwen_q80w_stage           st[2][QWEN_Q80W_BLOCKS];
    float                     sums[QWEN_Q80W_SUMS][2 * QWEN_PACK_ROWS];
    int                       t0, n0, t, nt, nblk;

    for (t0 = 0; t0 < n_tok; t0 += n0) {
        n0 = n_tok - t0 < QWEN_Q80W_SUMS ? n_tok - t0 : QWEN_Q80W_SUMS;
        memset(sums, 0, sizeof(sums[0]) * (size_t) n0);
        for (b0 = 0; b0 < nbw; b0 += nblk) {
            nblk = nbw - b0 < QWEN_Q80W_BLOCKS ? (int) (nbw - b0) : QWEN_Q80W_BLOCKS;
            qwen_q80w_restage(x + b0, nblk, st[0]);
            qwen_q80w_restage(x + nbw + b0, nblk, st[1]);
            for (t = 0; t < n0; t += nt) {
                const qwen_q8_0_gemm_act *yt = y + (t0 + t) * nb + b0;

                nt = n0 - t < QWEN_Q80W_TOKENS ? n0 - t : QWEN_Q80W_TOKENS;
                switch (nt) {
                case 1: qwen_q80w_tile(st, nblk, yt, nb, sums + t, 1); break;
                case 2: qwen_q80w_tile(st, nblk, yt, nb, sums + t, 2); break;
                case 3: qwen_q80w_tile(st, nblk, yt, nb, sums + t, 3); break;
                default: qwen_q80w_tile(st, nblk, yt, nb, sums + t, 4); break;
                }
            }
        }
        for (t = 0; t < n0; t++) {
            memcpy(out + (size_t) idx[t0 + t] * out_stride, sums[t], sizeof(sums[t]));
        }
    }
}
#endif

/* The bytes of n_tok tokens in the Q8_0 GEMM's activation layout (either) */
static inline size_t
qwen_q8_0_gemm_act_bytes(int act_type, int64_t n, int n_tok)
{
    (void) act_type;
    return (size_t) n_tok * (size_t) (n / QK8_0) * sizeof(qwen_q8_0_gemm_act);
}

/*
 * Packed BF16 (repack.h) x F32, 8 rows in the lanes, NT tokens (1 .. 4):
 * a 32-byte load is 2 columns of the 8 rows, widened by a shift and a
 * mask; each token's column value is one broadcast, even and odd columns
 * in two FMA chains (eight in flight for four tokens), added at the end:
 * the scalar truth's operations per lane.
 */
static inline __attribute__((always_inline)) void
qwen_bf16x8_dot(int64_t n, const void *w, const void *act, size_t stride, float *out,
                const int NT)
{
    const __m256i       hi = _mm256_set1_epi32((int) 0xFFFF0000u);
    const block_bf16x8 *x = w;
    __m256              a0[4], a1[4];
    int64_t             p, np = n / 2;
    int                 t;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        a0[t] = _mm256_setzero_ps();
        a1[t] = _mm256_setzero_ps();
    }
#pragma GCC unroll 2
    for (p = 0; p < np; p++) {
        __m256i v = _mm256_loadu_si256((const __m256i *) x[p].v);
        __m256  we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        __m256  wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));

#if QWEN_PACK_PREFETCH
        if ((p & 1) == 0) {
            _mm_prefetch((const char *) (x + p + 64 * QWEN_PACK_PREFETCH), _MM_HINT_T0);
        }
#endif
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            const float *y = (const float *) ((const char *) act + t * stride) + 2 * p;

            a0[t] = _mm256_fmadd_ps(we, _mm256_broadcast_ss(y), a0[t]);
            a1[t] = _mm256_fmadd_ps(wo, _mm256_broadcast_ss(y + 1), a1[t]);
        }
    }
#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        _mm256_storeu_ps(out + 8 * t, _mm256_add_ps(a0[t], a1[t]));
    }
}

/*
 * One token against G consecutive packed BF16 groups (packed_dot_multi):
 * each group's two chains as qwen_bf16x8_dot keeps them (its bits). One
 * group's two wait on the FMA's latency (28 GB/s from L2 here, Zen 5);
 * four groups' eight are in flight together (73). Each group's prefetch
 * runs on into the next call's same group, G groups on: running into its
 * neighbour, which this call reads already, left the next call's starts to
 * demand misses (two groups read 16-21 GB/s from memory that way, one
 * group alone 21-27, two groups so 29: dot_bench, one core).
 */
static inline __attribute__((always_inline)) void
qwen_bf16x8_groups(int64_t n, const void *w, size_t group_bytes, const void *act, float *out,
                   const int G)
{
    const __m256i       hi = _mm256_set1_epi32((int) 0xFFFF0000u);
    const block_bf16x8 *x[QWEN_PACK_MULTI_MAX];
    const float        *y = act;
    __m256              a0[QWEN_PACK_MULTI_MAX], a1[QWEN_PACK_MULTI_MAX];
    int64_t             p, np = n / 2;
    int                 g;

#pragma GCC unroll 4
    for (g = 0; g < G; g++) {
        x[g] = (const block_bf16x8 *) ((const char *) w + g * group_bytes);
        a0[g] = _mm256_setzero_ps();
        a1[g] = _mm256_setzero_ps();
    }
    for (p = 0; p < np; p++) {
        __m256 ye = _mm256_broadcast_ss(y + 2 * p), yo = _mm256_broadcast_ss(y + 2 * p + 1);

#if QWEN_PACK_PREFETCH
        if ((p & 1) == 0) {
            int64_t a = p + 64 * QWEN_PACK_PREFETCH;

            a += a >= np ? (G - 1) * np : 0;
#pragma GCC unroll 4
            for (g = 0; g < G; g++) {
                _mm_prefetch((const char *) (x[g] + a), _MM_HINT_T0);
            }
        }
#endif
#pragma GCC unroll 4
        for (g = 0; g < G; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *) x[g][p].v);

            a0[g] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), ye, a0[g]);
            a1[g] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)), yo, a1[g]);
        }
    }
#pragma GCC unroll 4
    for (g = 0; g < G; g++) {
        _mm256_storeu_ps(out + 8 * g, _mm256_add_ps(a0[g], a1[g]));
    }
}

#define QWEN_BF16_MULTI_GROUPS 4

static inline void
qwen_bf16x8_multi(int64_t n, const void *w, size_t group_bytes, const void *act, float *out)
{
    qwen_bf16x8_groups(n, w, group_bytes, act, out, QWEN_BF16_MULTI_GROUPS);
}

/*
 * Packed BF16 x F32 for prompts (packed_gemm, two groups a call; the
 * avx2 table says from how many tokens on).
 * The dot above pays a broadcast per FMA (one group of 8 rows) and keeps 8
 * chains for 4 tokens: about 15 MACs a cycle here against the FMA pipes'
 * 19-22 (microbenchmark, Zen 5). Here 6 tokens x 16 rows take 12 chains,
 * each broadcast serving both groups: over a stretch of columns the even
 * columns' chains first (a0 of the dot), then the odd columns' (a1) over
 * the same stretch, its weights still in L1, the chains kept in memory
 * between passes. Every chain gets the dot's FMAs in the dot's order and
 * the two add at the end as there: packed_dot's bits.
 */
#define QWEN_BF16_GEMM_TOKENS 6
#define QWEN_BF16_GEMM_PAIRS  128   /* a stretch: 16 rows x 256 columns, 8 KiB */
_Static_assert(QWEN_BF16_GEMM_TOKENS == 6 && QWEN_PACKED_GEMM_MIN_TOKENS >= 8,
               "the GEMM's passes take 4, 5 or 6 tokens");

/* One pair of columns (p) of both groups, widened, into the 2 x NT chains */
static inline __attribute__((always_inline)) void
qwen_bf16x8_gemm_step(__m256 w0, __m256 w1, const float *const *y, int64_t p, const int odd,
                      __m256 *a, const int NT)
{
    int t;

#pragma GCC unroll 6
    for (t = 0; t < NT; t++) {
        __m256 b = _mm256_broadcast_ss(y[t] + 2 * p + odd);

        a[2 * t] = _mm256_fmadd_ps(w0, b, a[2 * t]);
        a[2 * t + 1] = _mm256_fmadd_ps(w1, b, a[2 * t + 1]);
    }
}

/* The even columns of pair p widened without a shift: the 32 bytes from 2
 * before it hold each lane's even value in the high half (the low half,
 * the lane before's odd value, masked off). On Intel cores a shift takes
 * one of the FMAs' two ports, an AND can take a third (Xeon, AVX-512 host:
 * gemm_bench's avx2 BF16 +2-4%, prefill of 200 +3%). Pair 0 of a group
 * has no bytes of its own before it: the pass shifts there. */
static inline __m256
qwen_bf16x8_even_at(const block_bf16x8 *x, int64_t p, __m256i hi)
{
    return _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_loadu_si256((const __m256i *) ((const char *) x[p].v - 2)), hi));
}

static inline __attribute__((always_inline)) void
qwen_bf16x8_gemm_pass(const block_bf16x8 *x0, const block_bf16x8 *x1, const float *const *y,
                      int64_t p0, int64_t p1, const int odd, float *chains, const int NT)
{
    const __m256i hi = _mm256_set1_epi32((int) 0xFFFF0000u);
    __m256        a[2 * QWEN_BF16_GEMM_TOKENS];
    int64_t       p;
    int           t;

#pragma GCC unroll 12
    for (t = 0; t < 2 * NT; t++) {
        a[t] = _mm256_loadu_ps(chains + 8 * t);
    }
    if (!odd && p0 == 0) {
        __m256i v0 = _mm256_loadu_si256((const __m256i *) x0[0].v);
        __m256i v1 = _mm256_loadu_si256((const __m256i *) x1[0].v);

        qwen_bf16x8_gemm_step(_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)),
                              _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), y, 0, 0, a, NT);
        p0 = 1;
    }
    for (p = p0; p < p1; p++) {
        __m256 w0, w1;

        if (odd) {
            w0 = _mm256_castsi256_ps(
                _mm256_and_si256(_mm256_loadu_si256((const __m256i *) x0[p].v), hi));
            w1 = _mm256_castsi256_ps(
                _mm256_and_si256(_mm256_loadu_si256((const __m256i *) x1[p].v), hi));
        } else {
            w0 = qwen_bf16x8_even_at(x0, p, hi);
            w1 = qwen_bf16x8_even_at(x1, p, hi);
        }
#if QWEN_PACK_PREFETCH
        /* the first pass over a stretch reads it from memory (decode of
         * several sequences): ahead as the dot does, both groups */
        if (!odd && (p & 1) == 0) {
            _mm_prefetch((const char *) (x0 + p + 64 * QWEN_PACK_PREFETCH), _MM_HINT_T0);
            _mm_prefetch((const char *) (x1 + p + 64 * QWEN_PACK_PREFETCH), _MM_HINT_T0);
        }
#endif
        qwen_bf16x8_gemm_step(w0, w1, y, p, odd, a, NT);
    }
#pragma GCC unroll 12
    for (t = 0; t < 2 * NT; t++) {
        _mm256_storeu_ps(chains + 8 * t, a[t]);
    }
}

/* NT tokens (y[t], out rows o[t]) against the call's 16 rows */
static inline __attribute__((always_inline)) void
qwen_bf16x8_gemm_tile(int64_t n, const block_bf16x8 *x0, const block_bf16x8 *x1,
                      const float *const *y, float *const *o, const int NT)
{
    float   even_chains[2 * QWEN_BF16_GEMM_TOKENS * 8], odd_chains[2 * QWEN_BF16_GEMM_TOKENS * 8];
    int64_t p, p1, np = n / 2;
    int     t;

    memset(even_chains, 0, sizeof(even_chains));
    memset(odd_chains, 0, sizeof(odd_chains));
    for (p = 0; p < np; p = p1) {
        p1 = np - p > QWEN_BF16_GEMM_PAIRS ? p + QWEN_BF16_GEMM_PAIRS : np;
        qwen_bf16x8_gemm_pass(x0, x1, y, p, p1, 0, even_chains, NT);
        qwen_bf16x8_gemm_pass(x0, x1, y, p, p1, 1, odd_chains, NT);
    }
    for (t = 0; t < 2 * NT; t++) {
        _mm256_storeu_ps(o[t / 2] + 8 * (t % 2),
                         _mm256_add_ps(_mm256_loadu_ps(even_chains + 8 * t),
                                       _mm256_loadu_ps(odd_chains + 8 * t)));
    }
}

/* Two packed BF16 groups (16 rows) against n_tok F32 rows (act +
 * t * act_stride): out[idx[t] * out_stride + r] (packed_gemm) */
static inline void
qwen_bf16x8_gemm(int64_t n, const void *w, const void *act, size_t act_stride, int n_tok,
                 float *out, size_t out_stride, const int32_t *idx)
{
    const block_bf16x8 *x0 = w, *x1 = x0 + n / 2;
    const float        *y[QWEN_BF16_GEMM_TOKENS];
    float              *o[QWEN_BF16_GEMM_TOKENS];
    int                 t0, t, nt, passes;

    /* the tokens spread evenly over the passes (26: 6 + 4 x 5, not 4 x 6
     * + 2, whose 4 chains would wait on the FMA latency): from 8 tokens
     * on (forward.c's least), every pass takes 4, 5 or 6 */
    passes = (n_tok + QWEN_BF16_GEMM_TOKENS - 1) / QWEN_BF16_GEMM_TOKENS;
    for (t0 = 0; t0 < n_tok; t0 += nt, passes--) {
        nt = (n_tok - t0 + passes - 1) / passes;
        for (t = 0; t < nt; t++) {
            y[t] = (const float *) ((const char *) act + (size_t) (t0 + t) * act_stride);
            o[t] = out + (size_t) idx[t0 + t] * out_stride;
        }
        switch (nt) {
        case 4: qwen_bf16x8_gemm_tile(n, x0, x1, y, o, 4); break;
        case 5: qwen_bf16x8_gemm_tile(n, x0, x1, y, o, 5); break;
        default: qwen_bf16x8_gemm_tile(n, x0, x1, y, o, 6); break;
        }
    }
}

/* (s, s) in each 32-bit lane of the row's scale pair (even or odd one) */
static inline __m256i
qwen_pair_dup(__m256i v, const int odd)
{
    return odd ? _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(v, 0xF5), 0xF5)
               : _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(v, 0xA0), 0xA0);
}

/* A super-block's row constants the end takes: d as floats, the 16
 * sub-block scales widened to 16 bits (pairs per lane for the bsums). The
 * dot makes them per 4 tokens, the GEMM once per call with its restaged
 * values. */
typedef struct {
    __m256  d;
    __m256i scales[QK_K / 32];
} qwen_q6k_rows;

static inline __attribute__((always_inline)) void
qwen_q6kx8_rows(const block_q6_Kx8 *x, qwen_q6k_rows *c)
{
    int i;

    c->d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) x->d));
#pragma GCC unroll 8
    for (i = 0; i < QK_K / 32; i++) {
        c->scales[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) x->scales[i]));
    }
}

/* Super-block b's end for NT tokens of a packed Q6_K kernel: the -32
 * offset off through the bsums (scale x 16-column sum, pairs per int32),
 * the sums scaled by d and added to out[t * 8 + r] as the scalar truth
 * does. */
static inline __attribute__((always_inline)) void
qwen_q6kx8_finish_rows(const qwen_q6k_rows *c, const void *act, size_t stride, int64_t b,
                       const __m256i *isum, float *out, const int NT)
{
    int t, i;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        const block_q8_K *y = (const block_q8_K *) ((const char *) act + t * stride) + b;
        int32_t           pairs[8];
        __m256i           msum = _mm256_setzero_si256();

        memcpy(pairs, y->bsums, sizeof(pairs));
#pragma GCC unroll 8
        for (i = 0; i < QK_K / 32; i++) {
            msum = _mm256_add_epi32(msum,
                                    _mm256_madd_epi16(c->scales[i], _mm256_set1_epi32(pairs[i])));
        }
        _mm256_storeu_ps(out + 8 * t,
                         _mm256_fmadd_ps(_mm256_mul_ps(c->d, _mm256_set1_ps(y->d)),
                                         _mm256_cvtepi32_ps(_mm256_sub_epi32(
                                             isum[t], _mm256_slli_epi32(msum, 5))),
                                         _mm256_loadu_ps(out + 8 * t)));
    }
}

/* the same with the row constants made from the packed block x */
static inline __attribute__((always_inline)) void
qwen_q6kx8_finish(const block_q6_Kx8 *x, const void *act, size_t stride, int64_t b,
                  const __m256i *isum, float *out, const int NT)
{
    qwen_q6k_rows c;

    qwen_q6kx8_rows(x, &c);
    qwen_q6kx8_finish_rows(&c, act, stride, b, isum, out, NT);
}

/* Step kp of sub-block pair j of super-block b for NT tokens (1 .. 4):
 * the 8 rows' 6-bit values of steps 2kp, 2kp + 1 (lo0, lo1: low half of
 * the 64 columns; hi0, hi1: high half) against each token's bytes, the
 * products of a sub-block added in 16 bits and scaled by its rows' scale
 * pairs sl, sh into isum[t]: the packed Q6_K kernels' integers */
static inline __attribute__((always_inline)) void
qwen_q6kx8_step(__m256i lo0, __m256i hi0, __m256i lo1, __m256i hi1, __m256i sl, __m256i sh,
                const void *act, size_t stride, int64_t b, int j, int kp, __m256i *isum,
                const int NT)
{
    int t;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        const int8_t *q8 = ((const block_q8_K *) ((const char *) act + t * stride))[b].qs
                           + 64 * j + 8 * kp;
        int32_t       y[4];
        __m256i       pl, ph;

        memcpy(&y[0], q8, 4);
        memcpy(&y[1], q8 + 4, 4);
        memcpy(&y[2], q8 + 32, 4);
        memcpy(&y[3], q8 + 36, 4);
        pl = _mm256_add_epi16(_mm256_maddubs_epi16(lo0, _mm256_set1_epi32(y[0])),
                              _mm256_maddubs_epi16(lo1, _mm256_set1_epi32(y[1])));
        ph = _mm256_add_epi16(_mm256_maddubs_epi16(hi0, _mm256_set1_epi32(y[2])),
                              _mm256_maddubs_epi16(hi1, _mm256_set1_epi32(y[3])));
        isum[t] = qwen_madd_acc(isum[t], pl, sl);
        isum[t] = qwen_madd_acc(isum[t], ph, sh);
        QWEN_CHAIN(isum[t]);
    }
}

/*
 * Packed Q6_K (repack.h) x Q8_K, 8 rows in the lanes, NT tokens (1 .. 4):
 * as qwen_q4kx8_dot, but a step's 6-bit values take their top bits from
 * the shared qh bytes, and products of 0..63 by a byte add only two at a
 * time in 16 bits before the sub-block's scale multiplies them. The - 32
 * comes off once per super-block through the activation's bsums. The
 * scalar truth's operations in each lane: the same bits for every NT.
 */
static inline __attribute__((always_inline)) void
qwen_q6kx8_dot(int64_t n, const void *w, const void *act, size_t stride, float *out,
               const int NT)
{
    const __m256i       m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    const block_q6_Kx8 *x = w;
    int64_t             b, nb = n / QK_K;
    int                 t, j, kp;

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
            /* lanes (sc[4j], sc[4j + 1]) and (sc[4j + 2], sc[4j + 3]) */
            __m256i p0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) x[b].scales[2 * j]));
            __m256i p1 = _mm256_cvtepi8_epi16(
                _mm_loadu_si128((const __m128i *) x[b].scales[2 * j + 1]));

#pragma GCC unroll 4
            for (kp = 0; kp < 4; kp++) {
                __m256i qh = _mm256_loadu_si256((const __m256i *) x[b].qh[j][kp]);
                __m256i l0 = _mm256_loadu_si256((const __m256i *) x[b].ql[j][2 * kp]);
                __m256i l1 = _mm256_loadu_si256((const __m256i *) x[b].ql[j][2 * kp + 1]);
                __m256i lo0 = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                              _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                __m256i hi0 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                              _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                __m256i lo1 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                              _mm256_and_si256(qh, m30));
                __m256i hi1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
                /* steps 2kp, 2kp + 1 lie in one sub-block of each half */
                __m256i sl = qwen_pair_dup(p0, kp >= 2), sh = qwen_pair_dup(p1, kp >= 2);

                /* two lines of a block ahead a step of 16 (27 in all) */
                qwen_prefetch_part(x + b + QWEN_PACK_PREFETCH, sizeof(block_q6_Kx8), 4 * j + kp,
                                   QK_K / 16);

                qwen_q6kx8_step(lo0, hi0, lo1, hi1, sl, sh, act, stride, b, j, kp, isum, NT);
            }
        }
        qwen_q6kx8_finish(x + b, act, stride, b, isum, out, NT);
    }
}

/*
 * Prompt tokens of packed Q6_K (packed_gemm, two groups a call), as the
 * Q4_K GEMM: each super-block's 6-bit values are put together once per
 * call (restaged, with the scale pairs each step takes), then every token
 * streams past them four at a time; the dot spends a third of its
 * instructions putting them together again for every 4 tokens. The same
 * integers and the same end per super-block (its row constants made once
 * too), in order: its bits.
 */
typedef struct {
    __m256i       q[QK_K / 64][4][4];   /* [j][kp]: lo0, hi0, lo1, hi1 */
    __m256i       sc[QK_K / 64][2][2];  /* [j][kp >= 2]: sl, sh */
    qwen_q6k_rows rows;                 /* d and the scales for the end */
} qwen_q6k_stage;

static inline void
qwen_q6k_restage(const block_q6_Kx8 *x, qwen_q6k_stage *st)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    int           j, kp;

    qwen_q6kx8_rows(x, &st->rows);
    for (j = 0; j < QK_K / 64; j++) {
        __m256i p0 = st->rows.scales[2 * j], p1 = st->rows.scales[2 * j + 1];

        st->sc[j][0][0] = qwen_pair_dup(p0, 0);
        st->sc[j][0][1] = qwen_pair_dup(p1, 0);
        st->sc[j][1][0] = qwen_pair_dup(p0, 1);
        st->sc[j][1][1] = qwen_pair_dup(p1, 1);
#pragma GCC unroll 4
        for (kp = 0; kp < 4; kp++) {
            __m256i qh = _mm256_loadu_si256((const __m256i *) x->qh[j][kp]);
            __m256i l0 = _mm256_loadu_si256((const __m256i *) x->ql[j][2 * kp]);
            __m256i l1 = _mm256_loadu_si256((const __m256i *) x->ql[j][2 * kp + 1]);

            /* the next super-block, as the dot fetches ahead */
            qwen_prefetch_part(x + 1, sizeof(block_q6_Kx8), 4 * j + kp, QK_K / 16);
            st->q[j][kp][0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                              _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            st->q[j][kp][1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                              _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            st->q[j][kp][2] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(qh, m30));
            st->q[j][kp][3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
        }
    }
}

/* NT tokens (1 .. 4) against super-block b of a group (x: its block b,
 * st: its restaged values): qwen_q6kx8_dot's steps for that block */
static inline __attribute__((always_inline)) void
qwen_q6kx8_staged(const block_q6_Kx8 *x, const qwen_q6k_stage *st, const void *act,
                  size_t stride, int64_t b, float *out, const int NT)
{
    __m256i isum[4];
    int     t, j, kp;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        isum[t] = _mm256_setzero_si256();
    }
    for (j = 0; j < QK_K / 64; j++) {
#pragma GCC unroll 4
        for (kp = 0; kp < 4; kp++) {
            __m256i lo0 = _mm256_load_si256(&st->q[j][kp][0]);
            __m256i hi0 = _mm256_load_si256(&st->q[j][kp][1]);
            __m256i lo1 = _mm256_load_si256(&st->q[j][kp][2]);
            __m256i hi1 = _mm256_load_si256(&st->q[j][kp][3]);
            __m256i sl = _mm256_load_si256(&st->sc[j][kp >= 2][0]);
            __m256i sh = _mm256_load_si256(&st->sc[j][kp >= 2][1]);

            qwen_q6kx8_step(lo0, hi0, lo1, hi1, sl, sh, act, stride, b, j, kp, isum, NT);
        }
    }
    qwen_q6kx8_finish_rows(&st->rows, act, stride, b, isum, out, NT);
}

QWEN_KQUANT_GEMM(qwen_q6kx8_gemm, block_q6_Kx8, qwen_q6k_stage, qwen_q6k_restage,
                 qwen_q6kx8_staged)

/* the vec_dot / vec_dot4 shape (one row) */
static inline __attribute__((always_inline)) void
qwen_q4k_dot_n(int64_t n, const void *w, const void *act, size_t stride, float *out,
               const int NT)
{
    qwen_q4k_dot_rows(n, w, 0, act, stride, out, 1, NT);
}
#endif

/* vec_dot and vec_dot4 entry points of a dot template (NT = 1 and 4; any
 * further template arguments follow NT) */
#define QWEN_X86_DOT_PAIR(DOT, DOT4, TMPL, ...)                                    \
static float                                                                       \
DOT(int64_t n, const void *w, const void *act)                                     \
{                                                                                  \
    float r;                                                                       \
    TMPL(n, w, act, 0, &r, 1, ##__VA_ARGS__);                                      \
    return r;                                                                      \
}                                                                                  \
static void                                                                        \
DOT4(int64_t n, const void *w, const void *act, size_t stride, float *out)         \
{                                                                                  \
    TMPL(n, w, act, stride, out, 4, ##__VA_ARGS__);                                \
}

/* the vec_dot2x4 entry point of a rows template (NR = 2, NT = 4) */
#define QWEN_X86_DOT_2X4(DOT2X4, TMPL)                                             \
static void                                                                        \
DOT2X4(int64_t n, const void *w, size_t w_stride, const void *act, size_t stride,  \
       float *out8)                                                                \
{                                                                                  \
    TMPL(n, w, w_stride, act, stride, out8, 2, 4);                                 \
}

/* The AVX2 table's entries (with the f32 and f16 KV formats); a superset
 * table passes its own float and quantized dots (f32_4: NULL for 4 x
 * vec_dot) and f16 attention, and adds its other KV formats. */
#define QWEN_AVX2_ENTRIES(f32, f16, bf16, f32_4, f16_4, bf16_4, q8, q8_4, q4k, q6k, q4k4, \
                          q6k4, att_f16, att_f16_tokens)                   \
    .vec_dot = {                                                           \
        [QWEN_TYPE_F32] = f32,                                             \
        [QWEN_TYPE_F16] = f16,                                             \
        [QWEN_TYPE_BF16] = bf16,                                           \
        [QWEN_TYPE_Q8_0] = q8,                                             \
        [QWEN_TYPE_Q4_K] = q4k,                                            \
        [QWEN_TYPE_Q6_K] = q6k,                                            \
    },                                                                     \
    .vec_dot4 = {                                                          \
        [QWEN_TYPE_F32] = f32_4,                                           \
        [QWEN_TYPE_F16] = f16_4,                                           \
        [QWEN_TYPE_BF16] = bf16_4,                                         \
        [QWEN_TYPE_Q8_0] = q8_4,                                           \
        [QWEN_TYPE_Q4_K] = q4k4,                                           \
        [QWEN_TYPE_Q6_K] = q6k4,                                           \
    },                                                                     \
    .quantize_act = qwen_avx2_quantize_act,                                \
    .dot_f32_f16 = qwen_avx2_dot_f32_f16,                                  \
    .axpy_f16 = qwen_avx2_axpy_f16,                                        \
    .f32_to_f16 = qwen_avx2_f32_to_f16,                                    \
    .kv_store[QWEN_KV_F32] = qwen_kv_store_f32,                            \
    .kv_store[QWEN_KV_F16] = qwen_avx2_kv_store_f16,                       \
    .kv_attention[QWEN_KV_F32] = qwen_avx2_attention_f32,                  \
    .kv_attention[QWEN_KV_F16] = att_f16,                                  \
    .kv_attention_tokens[QWEN_KV_F32] = qwen_avx2_attention_tokens_f32,    \
    .kv_attention_tokens[QWEN_KV_F16] = att_f16_tokens

#endif
