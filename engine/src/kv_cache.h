/*
 * kv_cache.h - the KV cache as a pool of fixed-size blocks. Each sequence
 * maps its positions to blocks through a table, as an OS maps pages, so
 * blocks can be shared: the prefix index remembers full blocks of earlier
 * sequences by their tokens (and everything before them), and a later
 * sequence whose tokens start the same way maps those blocks instead of
 * computing them again. Blocks are reference counted by the sequences that
 * map them; unreferenced indexed blocks stay cached, least recently used
 * first out, until a sequence needs the room.
 *
 * Used by one thread at a time (the forward pass and the scheduler thread
 * that drives it); no locks.
 */
#ifndef QWEN_KV_CACHE_H
#define QWEN_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

typedef struct qwen_kv_cache qwen_kv_cache;

/*
 * A pool for n_seqs sequences of up to n_ctx positions each, plus
 * extra_blocks for the prefix index to keep between sequences. pos_bytes:
 * the bytes one position of one KV head takes in K (as in V). index: keep
 * full blocks for later sequences (the prefix cache) or not.
 */
qwen_kv_cache *qwen_kv_cache_new(int n_layers, int n_kv_heads, size_t pos_bytes, int n_seqs,
                                 int n_ctx, int extra_blocks, int index, char *err,
                                 size_t err_len);
void           qwen_kv_cache_free(qwen_kv_cache *kv);
size_t         qwen_kv_cache_pool_bytes(const qwen_kv_cache *kv);   /* K and V */
/* Blocks a sequence of n_ctx positions needs; positions per block is
 * QWEN_KV_BLOCK (kernels.h). */
int            qwen_kv_blocks_for(int n_ctx);

/*
 * Make sure position pos of seq has a block to be written (a fresh one
 * where unmapped). Returns 0, or -1 when pos is past the sequence's table
 * or its block is shared with another sequence (a shared block is never
 * written: it holds someone else's positions too).
 */
int  qwen_kv_prepare_write(qwen_kv_cache *kv, int seq, int pos, char *err, size_t err_len);
/* The view attention reads for (layer, KV head) of seq. */
void qwen_kv_view_of(const qwen_kv_cache *kv, int seq, int layer, int head, qwen_kv_view *out);
/* The (layer, KV head) regions of K and V in the block holding position
 * pos of seq (which must be mapped): position pos % QWEN_KV_BLOCK of them
 * is pos. */
void qwen_kv_region(const qwen_kv_cache *kv, int seq, int layer, int head, int pos, void **k,
                    void **v);

/* Unmap every block of seq: shared ones lose a reference, indexed ones
 * stay cached, the others are free again. */
void qwen_kv_release(qwen_kv_cache *kv, int seq);

/*
 * The prefix index. qwen_kv_match maps onto seq, after the `from` positions
 * it maps already (a multiple of QWEN_KV_BLOCK; 0 for an empty sequence),
 * the longest run of indexed blocks whose tokens equal tokens[from .. n)
 * after that prefix, up to max_tokens positions in all; then, in a fresh
 * block of its own, a copy of the indexed block that starts with the most
 * of the tokens after those (fewer than a block: a prompt that shares a
 * block's first positions with an earlier one need not compute them).
 * *chain is the identity of the first `from` positions (0 for none) and
 * becomes that of the whole blocks mapped; returns the positions mapped.
 */
int  qwen_kv_match(qwen_kv_cache *kv, int seq, const int32_t *tokens, int n, int max_tokens,
                   int from, uint64_t *chain);
/*
 * Block j of seq holds the positions of tokens[0 .. QWEN_KV_BLOCK) (now
 * written) after the prefix whose identity is *chain: add it to the index,
 * or, when the index already holds that prefix in another block, keep
 * that one. *chain becomes the identity of this prefix.
 */
void qwen_kv_publish(qwen_kv_cache *kv, int seq, int j, const int32_t *tokens,
                     uint64_t *chain);

typedef struct {
    int n_blocks;        /* in the pool */
    int n_free;          /* neither mapped nor cached */
    int n_cached;        /* indexed, mapped by nobody: evictable */
    int n_indexed;       /* indexed, mapped or not */
    uint64_t evictions;
} qwen_kv_stats;

void qwen_kv_get_stats(const qwen_kv_cache *kv, qwen_kv_stats *out);

/* How many of the first n tokens of a and b agree: what a block shares
 * with the start of another (partial matches in the cache and in a step). */
static inline int
qwen_tokens_common(const int32_t *a, const int32_t *b, int n)
{
    int i = 0;

    while (i < n && a[i] == b[i]) {
        i++;
    }
    return i;
}

#endif
