/*
 * blas_bench.c - make bench's OpenBLAS comparison (issue: "measure OpenBLAS
 * sgemm for F32/BF16 prompt tokens, single-threaded inside our pool"): the
 * prompt-token matmul of M tokens by an N x K weight, on one thread, by
 *   - OpenBLAS cblas_sgemm on F32 weights (openblas_set_num_threads(1)),
 *   - OpenBLAS cblas_sbgemm on BF16 weights, where the build has it,
 *   - our best table's kernels as the forward pass calls them: F32 weights
 *     by vec_dot4; BF16 weights by the table's prompt GEMM where it has one
 *     (avx512: rows to BF16 panels, BF16 activations), else repacked
 *     (packed_dot), 4 tokens a call.
 * One JSON line per shape: GMAC/s of each (best of 5 runs).
 *   blas_bench [M]
 */
#include "bench_clock.h"
#include "kernels/kernels.h"
#include "repack.h"

#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void openblas_set_num_threads(int n);

typedef void (*sbgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
                          const void *a, int lda, const void *b, int ldb, float beta, float *c,
                          int ldc);

int
main(int argc, char **argv)
{
    static const int    shapes[][2] = { { 1024, 1024 }, { 3072, 1024 }, { 1024, 3072 } };
    const qwen_kernels *k = qwen_kernels_best();
    int                 M = argc > 1 ? atoi(argv[1]) : 200;
    sbgemm_fn           sbgemm = (sbgemm_fn) dlsym(RTLD_DEFAULT, "cblas_sbgemm");
    size_t              s;

    openblas_set_num_threads(1);
    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int        N = shapes[s][0], K = shapes[s][1], rep, r, t, i;
        float     *w = malloc((size_t) N * K * sizeof(float));
        float     *x = malloc((size_t) M * K * sizeof(float));
        float     *c = malloc((size_t) M * N * sizeof(float));
        qwen_bf16 *wb = malloc((size_t) N * K * sizeof(qwen_bf16));
        char      *packed = malloc(qwen_packed_group_bytes(QWEN_TYPE_BF16, K) * (N / 8));
        void      *xb = malloc((size_t) M * K * qwen_gemm_act_bytes(k));
        int32_t   *idx = malloc((size_t) M * sizeof(int32_t));
        void      *scratch = aligned_alloc(64, qwen_gemm_scratch_bytes(k, K));
        double     best[4] = { 1e9, 1e9, 1e9, 1e9 }, t0, macs = (double) M * N * K;
        float      res[32];

        for (i = 0; i < N * K; i++) {
            w[i] = (float) rand() / RAND_MAX - 0.5f;
        }
        for (i = 0; i < M * K; i++) {
            x[i] = (float) rand() / RAND_MAX - 0.5f;
        }
        qwen_quantize_row(QWEN_TYPE_BF16, w, wb, (int64_t) N * K);
        qwen_gemm_act(k, x, xb, (int64_t) M * K);
        for (t = 0; t < M; t++) {
            idx[t] = t;
        }
        for (r = 0; r < N / 8; r++) {
            qwen_pack_group(QWEN_TYPE_BF16, wb + (size_t) r * 8 * K, (size_t) K * 2, K,
                            packed + (size_t) r * qwen_packed_group_bytes(QWEN_TYPE_BF16, K));
        }
        for (rep = 0; rep < 5; rep++) {
            t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K,
                        0.0f, c, N);
            best[0] = fmin(best[0], now() - t0);
            if (sbgemm != NULL) {
                t0 = now();
                sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, wb, K,
                       0.0f, c, N);
                best[1] = fmin(best[1], now() - t0);
            }
            t0 = now();
            for (r = 0; r < N; r++) {
                for (t = 0; t + 4 <= M; t += 4) {
                    if (k->vec_dot4[QWEN_TYPE_F32] != NULL) {
                        k->vec_dot4[QWEN_TYPE_F32](K, w + (size_t) r * K, x + (size_t) t * K,
                                                   (size_t) K * sizeof(float), res);
                    } else {    /* the table's F32 path: one token at a time */
                        for (i = 0; i < 4; i++) {
                            res[i] = k->vec_dot[QWEN_TYPE_F32](K, w + (size_t) r * K,
                                                               x + (size_t) (t + i) * K);
                        }
                    }
                }
            }
            best[2] = fmin(best[2], now() - t0);
            if (k->gemm != NULL) {
                /* as mm_task calls it for prompt tokens: all rows, one call */
                t0 = now();
                k->gemm(QWEN_TYPE_BF16, wb, 0, (size_t) K * sizeof(qwen_bf16), K, 0, N, xb, M,
                        idx, c, (size_t) N, scratch);
                best[3] = fmin(best[3], now() - t0);
            } else if (k->packed_dot[QWEN_TYPE_BF16] != NULL) {
                t0 = now();
                for (r = 0; r < N / 8; r++) {
                    const char *g = packed + (size_t) r
                                    * qwen_packed_group_bytes(QWEN_TYPE_BF16, K);

                    for (t = 0; t < M; t += 4) {
                        k->packed_dot[QWEN_TYPE_BF16](K, g, x + (size_t) t * K,
                                                      (size_t) K * sizeof(float),
                                                      M - t < 4 ? M - t : 4, res);
                    }
                }
                best[3] = fmin(best[3], now() - t0);
            }
        }
        {
            char sb[32] = "null";

            if (sbgemm != NULL) {
                snprintf(sb, sizeof(sb), "%.2f", macs / best[1] / 1e9);
            }
            printf("{\"table\":\"%s\",\"tokens\":%d,\"rows\":%d,\"cols\":%d,"
                   "\"openblas_sgemm_gmac_s\":%.2f,\"openblas_sbgemm_gmac_s\":%s,"
                   "\"ours_f32_gmac_s\":%.2f,\"ours_bf16_gmac_s\":%.2f,\"ours_bf16_path\":\"%s\"}\n",
                   k->name, M, N, K, macs / best[0] / 1e9, sb, macs / best[2] / 1e9,
                   macs / best[3] / 1e9, k->gemm != NULL ? "gemm" : "packed_dot");
        }
        fflush(stdout);
        free(w); free(x); free(c); free(wb); free(packed); free(xb); free(idx); free(scratch);
    }
    return 0;
}
