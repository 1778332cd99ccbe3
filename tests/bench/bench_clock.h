/*
 * bench_clock.h - the monotonic clock make bench's C programs time with
 * (att_bench, blas_bench, dot_bench, peak_bench), in seconds.
 */
#ifndef QWEN_BENCH_CLOCK_H
#define QWEN_BENCH_CLOCK_H

#include <time.h>

static inline double
now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#endif /* QWEN_BENCH_CLOCK_H */
