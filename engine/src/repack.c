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
        return (size_t) (n / 2) * sizeof(block_bf16x8);
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

/* Value q (0 .. 63) of row r at column 64j + 32h + 4k + i into a packed
 * Q6_K block (qwen_q6kx8_value's inverse; an x86 block starts zeroed). */
static void
q6kx8_set(block_q6_Kx8 *o, int j, int h, int k, int r, int i, int q)
{
#if defined(__aarch64__)
    uint8_t *p = o->q[j][k / 2][r / 4][0][r % 4];
    int      s = (q ^ 32) << 2;   /* 4 (q - 32) as a byte */

    if (h == 0 || k % 2 == 0) {
        uint8_t *c = p + (h ? 2 : k % 2) * 16 + i;

        *c = (uint8_t) ((*c & 3) | s);
    } else {                      /* e: its bits 6-7, 4-5, 2-3 in planes 0, 1, 2 */
        p[i] = (uint8_t) ((p[i] & 0xFC) | s >> 6);
        p[16 + i] = (uint8_t) ((p[16 + i] & 0xFC) | ((s >> 4) & 3));
        p[32 + i] = (uint8_t) ((p[32 + i] & 0xFC) | ((s >> 2) & 3));
    }
#else
    o->ql[j][k][r][i] |= (uint8_t) ((q & 0xF) << (4 * h));
    o->qh[j][k / 2][r][i] |= (uint8_t) ((q >> 4) << (4 * (k % 2) + 2 * h));
#endif
}

static void
pack_q6_K(const void *rows, size_t row_bytes, int64_t n, block_q6_Kx8 *dst)
{
    int64_t b, nb = n / QK_K;
    int     r, j, k, i, s, h;
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
                for (h = 0; h < 2; h++) {
                    for (k = 0; k < 8; k++) {
                        for (i = 0; i < 4; i++) {
                            q6kx8_set(o, j, h, k, r, i, v[64 * j + 32 * h + 4 * k + i]);
                        }
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

static void
pack_bf16(const void *rows, size_t row_bytes, int64_t n, block_bf16x8 *dst)
{
    int64_t p;
    int     r;

    for (r = 0; r < QWEN_PACK_ROWS; r++) {
        const qwen_bf16 *x = (const qwen_bf16 *) ((const char *) rows + (size_t) r * row_bytes);

        for (p = 0; p < n / 2; p++) {
            dst[p].v[r][0] = x[2 * p];
            dst[p].v[r][1] = x[2 * p + 1];
        }
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
    int     j, k, i, s, half, l, h;
    uint8_t v[QK_K];

    for (b = 0; b < n / QK_K; b++) {
        for (j = 0; j < QK_K / 64; j++) {
            for (h = 0; h < 2; h++) {
                for (k = 0; k < 8; k++) {
                    for (i = 0; i < 4; i++) {
                        v[64 * j + 32 * h + 4 * k + i]
                            = (uint8_t) qwen_q6kx8_value(src + b, j, h, k, r, i);
                    }
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
unpack_bf16(const block_bf16x8 *src, int64_t n, int r, qwen_bf16 *y)
{
    int64_t p;

    for (p = 0; p < n / 2; p++) {
        y[2 * p] = src[p].v[r][0];
        y[2 * p + 1] = src[p].v[r][1];
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

void
qwen_pack_group(int type, const void *rows, size_t row_bytes, int64_t n, void *dst)
{
    if (type == QWEN_TYPE_Q4_K) {
        pack_q4_K(rows, row_bytes, n, dst);
    } else if (type == QWEN_TYPE_Q6_K) {
        pack_q6_K(rows, row_bytes, n, dst);
    } else if (type == QWEN_TYPE_Q8_0) {
        pack_q8_0(rows, row_bytes, n, dst);
    } else if (type == QWEN_TYPE_BF16) {
        pack_bf16(rows, row_bytes, n, dst);
    }
}
