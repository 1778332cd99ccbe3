/*
 * repack.h - weights repacked once at load into layouts the GEMM
 * microkernels read with no per-row work: QWEN_PACK_ROWS rows interleaved
 * so one vector holds the same few columns of every row (a vector lane is a
 * row: no horizontal sums), each block's scales next to its quants and
 * already unpacked. The layouts are ISA-neutral but for Q6_K's values
 * (one per architecture); each kernel table says which packed types it
 * reads (qwen_kernels.packed_dot).
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
 * Q6_K, 8 rows x 256 columns. Columns are grouped as in block_q4_Kx8: step
 * k (0 .. 7) of 64-column group j is columns 64j + 4k .. + 3 (its "low"
 * columns, in the group's first 32) and the same 4 columns 32 on (its
 * "high" ones). Steps 2kp and 2kp + 1 make pair kp, whose four values per row and
 * column i are a (low, step 2kp), b (low, 2kp + 1), c (high, 2kp), e (high,
 * 2kp + 1).
 *   d       each row's super-block scale
 *   scales  [pair p][row][2]: the 8-bit scales of 16-column sub-blocks 2p,
 *           2p + 1 (sub-block of column c: c / 16)
 * The values, q in 0 .. 63 (q - 32 in block_q6_K), have one layout per
 * architecture the build targets (every table of a build reads it):
 *
 * x86 (vpmaddubsw, vpdpbusd: unsigned weights):
 *   ql      [j][k][row][4]: low 4 bits, low columns' in the low nibbles
 *   qh      [j][kp][row][4]: byte i holds bits 4-5 of, from bit 0 up, the
 *           low and the high column of step 2kp, then of step 2kp + 1
 *
 * arm64 (SDOT: signed weights): three planes per pair, each byte a value
 * as 4 (q - 32) in bits 2-7 (a signed byte, 4x the value), and e's 4 (e -
 * 32) split over their bits 0-1 (bits 6-7 in plane 0, 4-5 in plane 1, 2-3
 * in plane 2):
 *   q       [j][kp][half][plane][row][4]: half h is rows 4h .. 4h + 3;
 *           planes a, b, c
 * So a, b and c are one AND each and e three shifts-and-inserts: 6
 * operations for 4 vectors, already signed (x86's layout costs 9 and a
 * subtraction per vector there).
 */
typedef struct {
    qwen_f16 d[QWEN_PACK_ROWS];
    int8_t   scales[QK_K / 32][QWEN_PACK_ROWS][2];
#if defined(__aarch64__)
    uint8_t  q[QK_K / 64][4][2][3][QWEN_PACK_ROWS / 2][4];
#else
    uint8_t  ql[QK_K / 64][8][QWEN_PACK_ROWS][4];
    uint8_t  qh[QK_K / 64][4][QWEN_PACK_ROWS][4];
#endif
} block_q6_Kx8;

/* Value q (0 .. 63) of row r, column 64j + 32h + 4k + i of a packed Q6_K
 * block: the scalar truth's and the unpacker's view of either layout. */
static inline int
qwen_q6kx8_value(const block_q6_Kx8 *x, int j, int h, int k, int r, int i)
{
#if defined(__aarch64__)
    const uint8_t *p = x->q[j][k / 2][r / 4][0][r % 4];
    int            v;

    if (h == 0 || k % 2 == 0) {   /* a, b or c: bits 2-7 of its plane */
        v = p[(h ? 2 : k % 2) * 16 + i] >> 2;
    } else {                      /* e: bits 0-1 of the three planes */
        v = (p[i] & 3) << 4 | (p[16 + i] & 3) << 2 | (p[32 + i] & 3);
    }
    return v ^ 32;                /* 6-bit q - 32 back to q */
#else
    int v = h ? x->ql[j][k][r][i] >> 4 : x->ql[j][k][r][i] & 0xF;

    return v | ((x->qh[j][k / 2][r][i] >> (4 * (k % 2) + 2 * h)) & 3) << 4;
#endif
}

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
 * and a mask make the two columns' 8 rows floats.
 */
typedef struct {
    qwen_bf16 v[QWEN_PACK_ROWS][2];
} block_bf16x8;

/* Bytes of one packed group of QWEN_PACK_ROWS rows of n columns of type
 * (0 when the type has no packed layout or n does not suit it). */
size_t qwen_packed_group_bytes(int type, int64_t n);
/* Whether a weight of rows x cols of type can be packed. */
int    qwen_packable(int type, int64_t rows, int64_t cols);
/* Rows [8g, 8g + 8) of a weight (row_bytes apart) into packed group g. */
void   qwen_pack_group(int type, const void *rows, size_t row_bytes, int64_t n, void *dst);
/* Row r (0 .. QWEN_PACK_ROWS-1) of a packed group back in the file's
 * bytes (qwen_row_bytes(type, n) of them): for kernels that read rows
 * (the prefill GEMM's panels) when only the packed copy is resident. */
void   qwen_unpack_row(int type, const void *group, int64_t n, int r, void *row);

#endif
