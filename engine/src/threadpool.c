/*
 * threadpool.c - generation-counter pool. Publishing work bumps an atomic
 * generation; workers that are spinning see it within nanoseconds, sleeping
 * ones are woken by a broadcast. Completion is an atomic countdown the
 * caller spins on (work items are short: one matmul or attention step).
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void) 0)
#endif

/* Spin this long for the next job (matmuls of one step come microseconds
 * apart), yielding the core now and then in case it is oversubscribed
 * (several nginx workers x threads), then sleep. */
#define SPIN_ITERS  20000
#define YIELD_AFTER 2000
#define YIELD_EVERY 128

typedef struct {
    qwen_pool *pool;
    int        ith;
} worker_arg;

struct qwen_pool {
    int             n;
    pthread_t      *threads;
    worker_arg     *args;
    qwen_task_fn    fn;
    void           *arg;
    atomic_uint     generation;
    atomic_int      pending;
    atomic_int      stop;
    atomic_int      sleepers;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
};

static void *
worker_main(void *p)
{
    worker_arg *wa = p;
    qwen_pool  *pool = wa->pool;
    unsigned    seen = 0, gen;
    int         spins;

    for ( ;; ) {
        spins = 0;
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                if (spins > YIELD_AFTER && spins % YIELD_EVERY == 0) {
                    sched_yield();
                } else {
                    cpu_relax();
                }
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->generation) == seen) {
                pthread_cond_wait(&pool->cv, &pool->mu);
            }
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
        }
        seen = gen;
        if (atomic_load(&pool->stop)) {
            return NULL;
        }
        pool->fn(pool->arg, wa->ith, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

qwen_pool *
qwen_pool_new(int n_threads)
{
    qwen_pool *pool;
    int        i;

    if (n_threads < 1) {
        n_threads = 1;
    }
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        return NULL;
    }
    pool->n = n_threads;
    pool->threads = calloc((size_t) n_threads, sizeof(pthread_t));
    pool->args = calloc((size_t) n_threads, sizeof(worker_arg));
    if (pool->threads == NULL || pool->args == NULL) {
        free(pool->threads);
        free(pool->args);
        free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    for (i = 1; i < n_threads; i++) {
        pool->args[i].pool = pool;
        pool->args[i].ith = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, &pool->args[i]) != 0) {
            pool->n = i;     /* stop and join the ones that started */
            qwen_pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

static void
publish(qwen_pool *pool)
{
    /* seq_cst on both sides (Dekker): either the worker sees the new
     * generation before sleeping, or we see it among the sleepers */
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
}

void
qwen_pool_free(qwen_pool *pool)
{
    int i;

    if (pool == NULL) {
        return;
    }
    atomic_store(&pool->stop, 1);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (i = 1; i < pool->n; i++) {
        pthread_join(pool->threads[i], NULL);
    }
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool->args);
    free(pool);
}

void
qwen_pool_run(qwen_pool *pool, qwen_task_fn fn, void *arg)
{
    int spins;

    if (pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, pool->n - 1, memory_order_relaxed);
    publish(pool);
    fn(arg, 0, pool->n);
    /* wait for the others; a thread that lost its core to another process
     * only comes back if we give ours up */
    for (spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; spins++) {
        if (spins > YIELD_AFTER && spins % YIELD_EVERY == 0) {
            sched_yield();
        } else {
            cpu_relax();
        }
    }
}

int
qwen_pool_size(const qwen_pool *pool)
{
    return pool->n;
}
