/*
 * repack.h - weights repacked once at load into layouts the GEMM
 * microkernels read with no per-row work: QWEN_PACK_ROWS rows interleaved
 * so one vector holds the same few columns of every row (a vector lane is a
 * row: no horizontal sums), each block's scales next to its quants and
 * already unpacked. The layouts are ISA-neutral; each kernel table says
 * which packed types it reads (qwen_kernels.packed_dot).
 */
#ifndef QWEN_REPACK_H
#define QWEN_REPACK_H

#include "quant.h"

#define QWEN_PACK_ROWS 8

/*
 * Q4_K, 8 rows x 256 columns (one super-block of each row):
 *   d, dmin     each row's super-block scales (the file's halves, as they are)
 *   scales      [sub-block][row] 6-bit scales of the 32-column sub-blocks
 *   mins        [sub-block pair p][row][2]: mins of sub-blocks 2p, 2p + 1
 *   qs          [j][k][row][4]: for 64-column group j and step k (0..7) the
 *               row's 4 bytes at qs[32j + 4k]: low nibbles are columns
 *               64j + 4k .. + 3 (sub-block 2j), high nibbles the same 32
 *               columns on (sub-block 2j + 1), as in block_q4_K
 * So a 32-byte load is 4 columns of 8 rows, one 32-bit lane per row, and
 * the activation's 4 bytes for those columns are one broadcast.
 */
typedef struct {
    qwen_f16 d[QWEN_PACK_ROWS];
    qwen_f16 dmin[QWEN_PACK_ROWS];
    uint8_t  scales[QK_K / 32][QWEN_PACK_ROWS];
    uint8_t  mins[QK_K / 64][QWEN_PACK_ROWS][2];
    uint8_t  qs[QK_K / 64][8][QWEN_PACK_ROWS][4];
} block_q4_Kx8;

/*
 * Q6_K, 8 rows x 256 columns. Columns are grouped as in block_q4_Kx8 (low
 * nibbles of ql[j][k] are columns 64j + 4k .. + 3, high nibbles the same 32
 * columns on); the top two bits of two steps share a byte:
 *   d       each row's super-block scale
 *   scales  [pair p][row][2]: the 8-bit scales of 16-column sub-blocks 2p,
 *           2p + 1 (sub-block of column c: c / 16)
 *   ql      [j][k][row][4]: low 4 bits
 *   qh      [j][kp][row][4]: byte i holds bits 4-5 of, from bit 0 up, the
 *           low-nibble column and the high-nibble column of step 2kp, then
 *           of step 2kp + 1
 * Values are q - 32 for q in 0 .. 63, as in block_q6_K.
 */
typedef struct {
    qwen_f16 d[QWEN_PACK_ROWS];
    int8_t   scales[QK_K / 32][QWEN_PACK_ROWS][2];
    uint8_t  ql[QK_K / 64][8][QWEN_PACK_ROWS][4];
    uint8_t  qh[QK_K / 64][4][QWEN_PACK_ROWS][4];
} block_q6_Kx8;

/*
 * Q8_0, 8 rows x 32 columns (one block of each row), the file's bytes:
 *   d    each row's block scale
 *   qs   [k][row][4]: the row's values of columns 4k .. 4k + 3
 */
typedef struct {
    qwen_f16 d[QWEN_PACK_ROWS];
    int8_t   qs[QK8_0 / 4][QWEN_PACK_ROWS][4];
} block_q8_0x8;

/*
 * BF16, 8 rows x 2 columns, the file's bytes: [row][2], column 2p in the
 * low half of the row's 32 bits and 2p + 1 in the high half, so a shift
 * and a mask make the two columns' 8 rows floats. The layout the kernels
 * read; a group holds it compressed (below) and they decode it a block at
 * a time.
 */
typedef struct {
    qwen_bf16 v[QWEN_PACK_ROWS][2];
} block_bf16x8;

/*
 * A packed BF16 group, compressed without loss: BF16 decode streams every
 * weight once a token and is bound by the bytes, so a quarter fewer bytes
 * are a quarter less time (the values and every kernel's bits unchanged).
 * A value's high byte is its sign and the top 7 bits of its exponent (e7);
 * in a block of a weight nearly all take one of 16 values: either sign x 8
 * consecutive e7 from the block's base. So a block keeps each value's low
 * byte and a 4-bit code of its high byte (sign << 3 | e7 - base), and the
 * few values outside the window (zeros, outliers) as exceptions written
 * over the decoded block.
 *
 * The group: its stride (bytes to the next group: the tensor's largest
 * group, so groups lie nearly end to end and a GEMM of two groups finds
 * the second), qwen_bf16_head[blocks], padded to 64 bytes; then blocks of
 * QWEN_BF16_BLOCK_PAIRS column pairs (the last one shorter), each
 *   raw (head.raw: an odd pair count, or no smaller coded): block_bf16x8[np]
 *   coded: lo[np / 2][32]     low bytes of pairs 2u and 2u + 1 in the order
 *                             vpunpcklbw / vpunpckhbw interleave a 256-bit
 *                             register: [2u: words 0-7][2u + 1: words 0-7]
 *                             [2u: words 8-15][2u + 1: words 8-15], where
 *                             word 2r + c is row r's column 2p + c
 *          codes[np / 2][16]  byte k: lo byte k's code in the low nibble,
 *                             lo byte 16 + k's in the high one
 *          exc[n_exc]         (word 16p + 2r + c of the block, its value)
 *          to a multiple of 32 bytes, so every block starts 32-aligned.
 */
#define QWEN_BF16_BLOCK_PAIRS 128   /* 8 rows x 256 columns, 4 KiB decoded */

typedef struct {
    uint8_t  base;    /* the window's first e7 (0 .. 120) */
    uint8_t  raw;
    uint16_t n_exc;
} qwen_bf16_head;

typedef struct {
    uint16_t word;
    uint16_t value;
} qwen_bf16_exc;

static inline int64_t
qwen_bf16_blocks(int64_t n)
{
    return (n / 2 + QWEN_BF16_BLOCK_PAIRS - 1) / QWEN_BF16_BLOCK_PAIRS;
}

/* the group's start: its stride, then the heads */
typedef struct {
    uint32_t stride;
    uint32_t reserved;
} qwen_bf16_group;

static inline const qwen_bf16_head *
qwen_bf16_heads(const void *group)
{
    return (const qwen_bf16_head *) ((const qwen_bf16_group *) group + 1);
}

static inline size_t
qwen_bf16_heads_bytes(int64_t n)
{
    return (sizeof(qwen_bf16_group) + (size_t) qwen_bf16_blocks(n) * sizeof(qwen_bf16_head) + 63)
           & ~(size_t) 63;
}

/* column pairs of block b */
static inline int
qwen_bf16_block_pairs(int64_t n, int64_t b)
{
    int64_t left = n / 2 - b * QWEN_BF16_BLOCK_PAIRS;

    return (int) (left < QWEN_BF16_BLOCK_PAIRS ? left : QWEN_BF16_BLOCK_PAIRS);
}

/* bytes of a block (np pairs) in the group, to the next one */
static inline size_t
qwen_bf16_block_bytes(const qwen_bf16_head *h, int np)
{
    if (h->raw) {
        return (size_t) np * sizeof(block_bf16x8);
    }
    return ((size_t) np * 24 + (size_t) h->n_exc * sizeof(qwen_bf16_exc) + 31) & ~(size_t) 31;
}

/* The code table of a block: code -> high byte (sign and e7). */
static inline uint8_t
qwen_bf16_code_byte(int base, int code)
{
    return (uint8_t) (((code >> 3) << 7) | (base + (code & 7)));
}

/* A coded block (np pairs, data after the heads) decoded into out. */
void   qwen_bf16_block_decode(const qwen_bf16_head *h, const uint8_t *data, int np,
                              block_bf16x8 *out);

/* A block as block_bf16x8[np]: a raw one where it is, a coded one decoded
 * into buf (x86.h's qwen_bf16_block_load is the vector twin). */
static inline const block_bf16x8 *
qwen_bf16_block_read(const qwen_bf16_head *h, const uint8_t *data, int np, block_bf16x8 *buf)
{
    if (h->raw) {
        return (const block_bf16x8 *) data;
    }
    qwen_bf16_block_decode(h, data, np, buf);
    return buf;
}

/* Bytes of one packed group of QWEN_PACK_ROWS rows of n columns of type,
 * at most (0 when the type has no packed layout or n does not suit it):
 * a packed BF16 group takes fewer (qwen_pack_group_size). */
size_t qwen_packed_group_bytes(int type, int64_t n);
/* The bytes qwen_pack_group writes for these 8 rows (a tensor's groups lie
 * its largest group's size apart: its packed_stride). */
size_t qwen_pack_group_size(int type, const void *rows, size_t row_bytes, int64_t n);
/* Whether a weight of rows x cols of type can be packed. */
int    qwen_packable(int type, int64_t rows, int64_t cols);
/* Rows [8g, 8g + 8) of a weight (row_bytes apart) into packed group g at
 * dst, the groups stride bytes apart (at least each one's
 * qwen_pack_group_size; qwen_packed_group_bytes always is). */
void   qwen_pack_group(int type, const void *rows, size_t row_bytes, int64_t n, void *dst,
                       size_t stride);
/* Row r (0 .. QWEN_PACK_ROWS-1) of a packed group back in the file's
 * bytes (qwen_row_bytes(type, n) of them): for kernels that read rows
 * (the prefill GEMM's panels) when only the packed copy is resident. */
void   qwen_unpack_row(int type, const void *group, int64_t n, int r, void *row);

#endif
