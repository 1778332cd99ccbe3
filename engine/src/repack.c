/*
 * repack.c - the packed weight layouts of repack.h, made from the file's
 * blocks (values unchanged: only where they sit).
 */
#include "repack.h"

#include <string.h>

size_t
qwen_packed_group_bytes(int type, int64_t n)
{
    if (type == QWEN_TYPE_BF16 && n > 0 && n % 2 == 0) {
        /* room for every block raw: the coded ones leave the rest unused */
        return (qwen_bf16_heads_bytes(n) + (size_t) (n / 2) * sizeof(block_bf16x8) + 63)
               & ~(size_t) 63;
    }
    if (type == QWEN_TYPE_Q8_0 && n > 0 && n % QK8_0 == 0) {
        return (size_t) (n / QK8_0) * sizeof(block_q8_0x8);
    }
    if (n <= 0 || n % QK_K != 0) {
        return 0;
    }
    if (type == QWEN_TYPE_Q4_K) {
        return (size_t) (n / QK_K) * sizeof(block_q4_Kx8);
    }
    if (type == QWEN_TYPE_Q6_K) {
        return (size_t) (n / QK_K) * sizeof(block_q6_Kx8);
    }
    return 0;
}

int
qwen_packable(int type, int64_t rows, int64_t cols)
{
    return rows > 0 && rows % QWEN_PACK_ROWS == 0 && qwen_packed_group_bytes(type, cols) > 0;
}

static void
pack_q4_K(const void *rows, size_t row_bytes, int64_t n, block_q4_Kx8 *dst)
{
    int64_t b, nb = n / QK_K;
    int     r, j, k;
    uint8_t sm[16];

    for (b = 0; b < nb; b++) {
        block_q4_Kx8 *o = dst + b;

        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            const block_q4_K *x = (const block_q4_K *) ((const char *) rows
                                                        + (size_t) r * row_bytes) + b;

            o->d[r] = x->d;
            o->dmin[r] = x->dmin;
            qwen_q4k_scales_mins(x->scales, sm);
            for (j = 0; j < QK_K / 32; j++) {
                o->scales[j][r] = sm[j];
                o->mins[j / 2][r][j % 2] = sm[8 + j];
            }
            for (j = 0; j < QK_K / 64; j++) {
                for (k = 0; k < 8; k++) {
                    memcpy(o->qs[j][k][r], x->qs + 32 * j + 4 * k, 4);
                }
            }
        }
    }
}

/* The 256 6-bit values of a Q6_K block in column order (block_q6_K's
 * packing: per half of 128, ql low nibbles, ql + 32 low, ql high, ql + 32
 * high, with qh's bit pairs 0-1, 2-3, 4-5, 6-7). */
static void
q6k_values(const block_q6_K *x, uint8_t v[QK_K])
{
    int half, l;

    for (half = 0; half < 2; half++) {
        const uint8_t *ql = x->ql + 64 * half, *qh = x->qh + 32 * half;
        uint8_t       *o = v + 128 * half;

        for (l = 0; l < 32; l++) {
            o[l] = (uint8_t) ((ql[l] & 0xF) | ((qh[l] & 3) << 4));
            o[l + 32] = (uint8_t) ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            o[l + 64] = (uint8_t) ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            o[l + 96] = (uint8_t) ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

static void
pack_q6_K(const void *rows, size_t row_bytes, int64_t n, block_q6_Kx8 *dst)
{
    int64_t b, nb = n / QK_K;
    int     r, j, k, i, s, lo, hi;
    uint8_t v[QK_K];

    for (b = 0; b < nb; b++) {
        block_q6_Kx8 *o = dst + b;

        memset(o, 0, sizeof(*o));
        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            const block_q6_K *x = (const block_q6_K *) ((const char *) rows
                                                        + (size_t) r * row_bytes) + b;

            o->d[r] = x->d;
            q6k_values(x, v);
            for (s = 0; s < QK_K / 16; s++) {
                o->scales[s / 2][r][s % 2] = x->scales[s];
            }
            for (j = 0; j < QK_K / 64; j++) {
                for (k = 0; k < 8; k++) {
                    for (i = 0; i < 4; i++) {
                        lo = v[64 * j + 4 * k + i];
                        hi = v[64 * j + 32 + 4 * k + i];
                        o->ql[j][k][r][i] = (uint8_t) ((lo & 0xF) | ((hi & 0xF) << 4));
                        o->qh[j][k / 2][r][i] |= (uint8_t) (((lo >> 4) | ((hi >> 4) << 2))
                                                            << (4 * (k % 2)));
                    }
                }
            }
        }
    }
}

static void
pack_q8_0(const void *rows, size_t row_bytes, int64_t n, block_q8_0x8 *dst)
{
    int64_t b, nb = n / QK8_0;
    int     r, k;

    for (b = 0; b < nb; b++) {
        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            const block_q8_0 *x = (const block_q8_0 *) ((const char *) rows
                                                        + (size_t) r * row_bytes) + b;

            dst[b].d[r] = x->d;
            for (k = 0; k < QK8_0 / 4; k++) {
                memcpy(dst[b].qs[k][r], x->qs + 4 * k, 4);
            }
        }
    }
}

/* lo byte k (0 .. 31) of unit u's 32: its pair and word (repack.h) */
static inline int
bf16_lo_pair(int u, int k)
{
    return 2 * u + (k % 16) / 8;
}

static inline int
bf16_lo_word(int k)
{
    return 8 * (k / 16) + k % 8;
}

/* n values' e7 counted into four histograms in turn (so that runs of one
 * e7, the common case, do not wait on each other's increments) */
static void
bf16_count(const qwen_bf16 *v, int64_t n, int count[4][128])
{
    int64_t i;

    for (i = 0; i + 4 <= n; i += 4) {
        count[0][(v[i] >> 8) & 0x7F]++;
        count[1][(v[i + 1] >> 8) & 0x7F]++;
        count[2][(v[i + 2] >> 8) & 0x7F]++;
        count[3][(v[i + 3] >> 8) & 0x7F]++;
    }
    for (; i < n; i++) {
        count[0][(v[i] >> 8) & 0x7F]++;
    }
}

/* The window of a block of n_words values counted by bf16_count: its
 * base, and how many values fall outside it (the exceptions). */
static int
bf16_window(int count4[4][128], int n_words, int *n_exc)
{
    int count[128];
    int i, k, in, best = -1, base = 0;

    for (i = 0; i < 128; i++) {
        count[i] = count4[0][i] + count4[1][i] + count4[2][i] + count4[3][i];
    }
    for (in = 0, i = 0; i < 8; i++) {
        in += count[i];
    }
    for (k = 0; k <= 120; in += (k + 8 < 128 ? count[k + 8] : 0) - count[k], k++) {
        if (in > best) {
            best = in;
            base = k;
        }
    }
    *n_exc = n_words - best;
    return base;
}

/* whether a block is kept raw: an odd pair count, or no smaller coded */
static int
bf16_raw(int np, int n_exc)
{
    return np % 2 != 0
           || 24 * (size_t) np + sizeof(qwen_bf16_exc) * (size_t) n_exc
              >= np * sizeof(block_bf16x8);
}

/* A block at data, its head filled in; returns the bytes written. */
static size_t
pack_bf16_block(const block_bf16x8 *x, int np, qwen_bf16_head *h, uint8_t *data)
{
    const qwen_bf16 *v = x->v[0];   /* word 16p + 2r + c */
    int              count[4][128] = { { 0 } };
    int              k, u, n_exc, base;
    uint8_t         *lo, *codes, word[32], code[32];
    qwen_bf16_exc   *exc;

    bf16_count(v, 16 * np, count);
    base = bf16_window(count, 16 * np, &n_exc);
    memset(h, 0, sizeof(*h));
    if (bf16_raw(np, n_exc)) {
        h->raw = 1;
        memcpy(data, x, np * sizeof(block_bf16x8));
        return np * sizeof(block_bf16x8);
    }
    h->base = (uint8_t) base;
    h->n_exc = (uint16_t) n_exc;
    lo = data;
    codes = lo + 16 * (size_t) np;
    exc = (qwen_bf16_exc *) (codes + 8 * (size_t) np);
    for (k = 0; k < 32; k++) {
        word[k] = (uint8_t) (16 * bf16_lo_pair(0, k) + bf16_lo_word(k));
    }
    for (u = 0; u < np / 2; u++, v += 32, lo += 32, codes += 16) {
        for (k = 0; k < 32; k++) {
            unsigned d = (unsigned) ((v[word[k]] >> 8) & 0x7F) - (unsigned) base;

            lo[k] = (uint8_t) v[word[k]];
            code[k] = (uint8_t) ((v[word[k]] >> 15) << 3 | (d & 7));
            if (d >= 8) {
                exc->word = (uint16_t) (32 * u + word[k]);
                exc->value = v[word[k]];
                exc++;
            }
        }
        for (k = 0; k < 16; k++) {
            codes[k] = (uint8_t) (code[k] | code[k + 16] << 4);
        }
    }
    memset(exc, 0, qwen_bf16_block_bytes(h, np) - (size_t) ((uint8_t *) exc - data));
    return qwen_bf16_block_bytes(h, np);
}

void
qwen_bf16_block_decode(const qwen_bf16_head *h, const uint8_t *data, int np, block_bf16x8 *out)
{
    const uint8_t       *lo = data, *codes = data + 16 * (size_t) np;
    const qwen_bf16_exc *exc = (const qwen_bf16_exc *) (codes + 8 * (size_t) np);
    qwen_bf16           *v = out->v[0];
    int                  u, k, i, code;

    for (u = 0; u < np / 2; u++) {
        for (k = 0; k < 32; k++) {
            code = (codes[16 * u + k % 16] >> (k < 16 ? 0 : 4)) & 0xF;
            v[16 * bf16_lo_pair(u, k) + bf16_lo_word(k)] =
                (qwen_bf16) (qwen_bf16_code_byte(h->base, code) << 8 | lo[32 * u + k]);
        }
    }
    for (i = 0; i < h->n_exc; i++) {
        v[exc[i].word] = exc[i].value;
    }
}

/* Block b of 8 rows (row_bytes apart) in block_bf16x8 order */
static void
bf16_gather(const void *rows, size_t row_bytes, int64_t b, int np, block_bf16x8 *x)
{
    int64_t p;
    int     r;

    for (r = 0; r < QWEN_PACK_ROWS; r++) {
        const qwen_bf16 *y = (const qwen_bf16 *) ((const char *) rows + (size_t) r * row_bytes)
                             + 2 * b * QWEN_BF16_BLOCK_PAIRS;

        for (p = 0; p < np; p++) {
            x[p].v[r][0] = y[2 * p];
            x[p].v[r][1] = y[2 * p + 1];
        }
    }
}

/* pack_bf16's bytes: the blocks' windows counted from the rows as they are */
static size_t
pack_bf16_size(const void *rows, size_t row_bytes, int64_t n)
{
    qwen_bf16_head h;
    size_t         size = qwen_bf16_heads_bytes(n);
    int64_t        b;
    int            np, n_exc, r;
    int            count[4][128];

    for (b = 0; b < qwen_bf16_blocks(n); b++) {
        np = qwen_bf16_block_pairs(n, b);
        memset(count, 0, sizeof(count));
        for (r = 0; r < QWEN_PACK_ROWS; r++) {
            bf16_count((const qwen_bf16 *) ((const char *) rows + (size_t) r * row_bytes)
                       + 2 * b * QWEN_BF16_BLOCK_PAIRS, 2 * np, count);
        }
        (void) bf16_window(count, 16 * np, &n_exc);
        h.raw = (uint8_t) bf16_raw(np, n_exc);
        h.n_exc = (uint16_t) n_exc;
        size += qwen_bf16_block_bytes(&h, np);
    }
    return (size + 63) & ~(size_t) 63;
}

static void
pack_bf16(const void *rows, size_t row_bytes, int64_t n, void *dst, size_t stride)
{
    qwen_bf16_head *head = (qwen_bf16_head *) qwen_bf16_heads(dst);
    uint8_t        *data = (uint8_t *) dst + qwen_bf16_heads_bytes(n);
    block_bf16x8    x[QWEN_BF16_BLOCK_PAIRS];
    int64_t         b;
    int             np;

    memset(dst, 0, qwen_bf16_heads_bytes(n));
    ((qwen_bf16_group *) dst)->stride = (uint32_t) stride;
    for (b = 0; b < qwen_bf16_blocks(n); b++) {
        np = qwen_bf16_block_pairs(n, b);
        bf16_gather(rows, row_bytes, b, np, x);
        data += pack_bf16_block(x, np, head + b, data);
    }
}

/* ----------------------------------------------------- and back to rows */

/* The 12 bytes of 6-bit scales and mins (qwen_q4k_scales_mins' inverse). */
static void
q4k_scales_encode(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12])
{
    int j;

    for (j = 0; j < 4; j++) {
        out[j] = (uint8_t) ((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t) ((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t) ((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

static void
unpack_q4_K(const block_q4_Kx8 *src, int64_t n, int r, block_q4_K *y)
{
    int64_t b;
    int     j, k;
    uint8_t sc[8], m[8];

    for (b = 0; b < n / QK_K; b++) {
        y[b].d = src[b].d[r];
        y[b].dmin = src[b].dmin[r];
        for (j = 0; j < QK_K / 32; j++) {
            sc[j] = src[b].scales[j][r];
            m[j] = src[b].mins[j / 2][r][j % 2];
        }
        q4k_scales_encode(sc, m, y[b].scales);
        for (j = 0; j < QK_K / 64; j++) {
            for (k = 0; k < 8; k++) {
                memcpy(y[b].qs + 32 * j + 4 * k, src[b].qs[j][k][r], 4);
            }
        }
    }
}

static void
unpack_q6_K(const block_q6_Kx8 *src, int64_t n, int r, block_q6_K *y)
{
    int64_t b;
    int     j, k, i, s, half, l, sh;
    uint8_t v[QK_K];

    for (b = 0; b < n / QK_K; b++) {
        for (j = 0; j < QK_K / 64; j++) {
            for (k = 0; k < 8; k++) {
                for (i = 0; i < 4; i++) {
                    uint8_t q = src[b].ql[j][k][r][i], h = src[b].qh[j][k / 2][r][i];

                    sh = 4 * (k % 2);
                    v[64 * j + 4 * k + i] = (uint8_t) ((q & 0xF) | (((h >> sh) & 3) << 4));
                    v[64 * j + 32 + 4 * k + i] = (uint8_t) ((q >> 4)
                                                            | (((h >> (sh + 2)) & 3) << 4));
                }
            }
        }
        /* q6k_values' inverse */
        for (half = 0; half < 2; half++) {
            const uint8_t *o = v + 128 * half;
            uint8_t       *ql = y[b].ql + 64 * half, *qh = y[b].qh + 32 * half;

            for (l = 0; l < 32; l++) {
                ql[l] = (uint8_t) ((o[l] & 0xF) | ((o[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t) ((o[l + 32] & 0xF) | ((o[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t) ((o[l] >> 4) | ((o[l + 32] >> 4) << 2)
                                   | ((o[l + 64] >> 4) << 4) | ((o[l + 96] >> 4) << 6));
            }
        }
        for (s = 0; s < QK_K / 16; s++) {
            y[b].scales[s] = src[b].scales[s / 2][r][s % 2];
        }
        y[b].d = src[b].d[r];
    }
}

static void
unpack_q8_0(const block_q8_0x8 *src, int64_t n, int r, block_q8_0 *y)
{
    int64_t b;
    int     k;

    for (b = 0; b < n / QK8_0; b++) {
        y[b].d = src[b].d[r];
        for (k = 0; k < QK8_0 / 4; k++) {
            memcpy(y[b].qs + 4 * k, src[b].qs[k][r], 4);
        }
    }
}

static void
unpack_bf16(const void *src, int64_t n, int r, qwen_bf16 *y)
{
    const qwen_bf16_head *head = qwen_bf16_heads(src);
    const uint8_t        *data = (const uint8_t *) src + qwen_bf16_heads_bytes(n);
    block_bf16x8          buf[QWEN_BF16_BLOCK_PAIRS];
    const block_bf16x8   *x;
    int64_t               b, p;
    int                   np;

    for (b = 0; b < qwen_bf16_blocks(n); b++, y += 2 * np) {
        np = qwen_bf16_block_pairs(n, b);
        x = qwen_bf16_block_read(head + b, data, np, buf);
        for (p = 0; p < np; p++) {
            y[2 * p] = x[p].v[r][0];
            y[2 * p + 1] = x[p].v[r][1];
        }
        data += qwen_bf16_block_bytes(head + b, np);
    }
}

void
qwen_unpack_row(int type, const void *group, int64_t n, int r, void *row)
{
    if (type == QWEN_TYPE_Q4_K) {
        unpack_q4_K(group, n, r, row);
    } else if (type == QWEN_TYPE_Q6_K) {
        unpack_q6_K(group, n, r, row);
    } else if (type == QWEN_TYPE_Q8_0) {
        unpack_q8_0(group, n, r, row);
    } else if (type == QWEN_TYPE_BF16) {
        unpack_bf16(group, n, r, row);
    }
}

size_t
qwen_pack_group_size(int type, const void *rows, size_t row_bytes, int64_t n)
{
    if (type == QWEN_TYPE_BF16 && qwen_packed_group_bytes(type, n) > 0) {
        return pack_bf16_size(rows, row_bytes, n);
    }
    return qwen_packed_group_bytes(type, n);
}

void
qwen_pack_group(int type, const void *rows, size_t row_bytes, int64_t n, void *dst,
                size_t stride)
{
    if (type == QWEN_TYPE_Q4_K) {
        pack_q4_K(rows, row_bytes, n, dst);
    } else if (type == QWEN_TYPE_Q6_K) {
        pack_q6_K(rows, row_bytes, n, dst);
    } else if (type == QWEN_TYPE_Q8_0) {
        pack_q8_0(rows, row_bytes, n, dst);
    } else if (type == QWEN_TYPE_BF16) {
        pack_bf16(rows, row_bytes, n, dst, stride);
    }
}
