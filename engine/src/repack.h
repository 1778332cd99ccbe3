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
