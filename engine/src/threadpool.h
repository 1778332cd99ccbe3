/*
 * threadpool.h - a persistent pool of compute threads owned by one context.
 * qwen_pool_run() runs fn(arg, ith, nth) on every thread (the caller is
 * thread 0) and returns when all have finished: one barrier per call.
 * Idle workers spin briefly, then sleep on a condition variable, so a
 * pool with nothing to do costs no CPU.
 */
#ifndef QWEN_THREADPOOL_H
#define QWEN_THREADPOOL_H

typedef void (*qwen_task_fn)(void *arg, int ith, int nth);
typedef struct qwen_pool qwen_pool;

qwen_pool *qwen_pool_new(int n_threads);
void       qwen_pool_free(qwen_pool *pool);
void       qwen_pool_run(qwen_pool *pool, qwen_task_fn fn, void *arg);
int        qwen_pool_size(const qwen_pool *pool);

#endif
