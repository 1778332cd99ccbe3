/*
 * kv_cache.c - the block pool behind the KV cache (kv_cache.h): block
 * tables per sequence, reference counts, a free list, and the prefix index
 * (a hash of each indexed block's tokens and the identity of the prefix
 * before it) with its least-recently-used list of unreferenced blocks.
 *
 * Why blocks can be shared exactly: a position's K and V depend only on the
 * tokens up to it (and on computing prompt tokens the same way, which
 * batch invariance guarantees), so a block indexed under the same tokens
 * after the same prefix holds the very bits a fresh prefill would write.
 * A prefix's identity is a serial number given when its last block enters
 * the index and never reused, so a block whose parent was evicted (and
 * its number given up) can no longer be reached, even if the parent's
 * memory now holds something else.
 */
#include "kv_cache.h"
#include "errors.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define B QWEN_KV_BLOCK

typedef struct {
    uint64_t serial;            /* this prefix's identity; 0: not indexed */
    uint64_t parent;            /* identity of the prefix before it (0: none) */
    uint64_t hash;
    int32_t  tokens[B];
    int32_t  hash_next;         /* bucket chain */
    int32_t  kid_next;          /* chain of the blocks with this parent's bucket */
    int32_t  lru_prev, lru_next;   /* unreferenced indexed blocks, -1 ends */
} kv_entry;

struct qwen_kv_cache {
    int         n_layers, n_kv_heads;
    size_t      pos_bytes;      /* one position of one KV head */
    size_t      region_bytes;   /* B positions of one (layer, head) */
    size_t      block_bytes;    /* every layer and head: one block */
    int         n_seqs, max_blocks, n_blocks;
    char       *k, *v;          /* [n_blocks][n_layers][n_kv_heads][B positions] */
    size_t      pool_bytes;     /* of k, as of v (mapped) */
    int32_t    *table;          /* [n_seqs][max_blocks], -1: unmapped */
    int32_t    *refs;           /* sequences mapping each block */
    int32_t    *free_list;      /* stack of free block ids */
    int         n_free;

    int         index;          /* keep blocks for later sequences */
    kv_entry   *ent;            /* [n_blocks] */
    int32_t    *buckets;        /* [n_buckets] by (parent, tokens), -1 empty */
    int32_t    *kids;           /* [n_buckets] by parent alone, -1 empty */
    uint32_t    bucket_mask;
    int32_t     lru_head, lru_tail;   /* head: least recently used */
    int         n_cached, n_indexed;
    uint64_t    next_serial;
    uint64_t    evictions;
};

/*
 * A zeroed pool on pages of its own (zeroed: a layout that reads a whole
 * tile past the last position sees finite values), on 2 MiB pages where
 * the kernel gives them (transparent huge pages, "madvise" mode as Debian
 * ships it) when blocks are large: attention reads every sequence's
 * blocks in turn, each region a few KiB at its own place in a pool of up
 * to gigabytes, and with 4 KiB pages nearly every region began with a TLB
 * miss. Only for blocks of a quarter of a huge page or more (Qwen3-0.6B:
 * 1.8 MiB in f16): a huge page is taken whole at its first touch, so small
 * blocks would make every worker hold megabytes it barely uses.
 */
#define HUGE_PAGE_BYTES ((size_t) 2 << 20)

static char *
pool_map(size_t bytes, size_t block_bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (block_bytes >= HUGE_PAGE_BYTES / 4) {
        (void) madvise(p, bytes, MADV_HUGEPAGE);    /* a hint: 4 KiB pages work too */
    }
#endif
    return p;
}

static void
pool_unmap(char *p, size_t bytes)
{
    if (p != NULL) {
        munmap(p, bytes);
    }
}

int
qwen_kv_blocks_for(int n_ctx)
{
    return (n_ctx + B - 1) / B;
}

qwen_kv_cache *
qwen_kv_cache_new(int n_layers, int n_kv_heads, size_t pos_bytes, int n_seqs, int n_ctx,
                  int extra_blocks, int index, char *err, size_t err_len)
{
    qwen_kv_cache *kv;
    size_t         nb;
    int            i;
    uint32_t       buckets = 1;

    if (n_layers < 1 || n_kv_heads < 1 || pos_bytes == 0 || n_seqs < 1 || n_ctx < 1
        || extra_blocks < 0)
    {
        qwen_fail(err, err_len, "KV cache parameters out of range");
        return NULL;
    }
    kv = calloc(1, sizeof(*kv));
    if (kv == NULL) {
        qwen_fail(err, err_len, "out of memory");
        return NULL;
    }
    kv->n_layers = n_layers;
    kv->n_kv_heads = n_kv_heads;
    kv->pos_bytes = pos_bytes;
    kv->region_bytes = (size_t) B * pos_bytes;
    kv->block_bytes = (size_t) n_layers * n_kv_heads * kv->region_bytes;
    kv->n_seqs = n_seqs;
    kv->max_blocks = qwen_kv_blocks_for(n_ctx);
    /* every sequence can always grow to n_ctx: it maps at most max_blocks
     * blocks, so while one still needs a block, some block is neither
     * mapped nor beyond eviction */
    kv->n_blocks = n_seqs * kv->max_blocks + extra_blocks;
    kv->index = index;
    nb = (size_t) kv->n_blocks;
    kv->pool_bytes = nb * kv->block_bytes;
    kv->k = pool_map(kv->pool_bytes, kv->block_bytes);
    kv->v = pool_map(kv->pool_bytes, kv->block_bytes);
    kv->table = malloc((size_t) n_seqs * kv->max_blocks * sizeof(int32_t));
    kv->refs = calloc(nb, sizeof(int32_t));
    kv->free_list = malloc(nb * sizeof(int32_t));
    if (index) {
        while (buckets < nb) {
            buckets <<= 1;
        }
        kv->bucket_mask = buckets - 1;
        kv->ent = calloc(nb, sizeof(kv_entry));
        kv->buckets = malloc((size_t) buckets * sizeof(int32_t));
        kv->kids = malloc((size_t) buckets * sizeof(int32_t));
    }
    if (!kv->k || !kv->v || !kv->table || !kv->refs || !kv->free_list
        || (index && (!kv->ent || !kv->buckets || !kv->kids)))
    {
        qwen_fail(err, err_len, "cannot allocate the KV cache (%zu MiB for %d blocks of %d "
                  "positions)", 2 * nb * kv->block_bytes >> 20, kv->n_blocks, B);
        qwen_kv_cache_free(kv);
        return NULL;
    }
    for (i = 0; i < n_seqs * kv->max_blocks; i++) {
        kv->table[i] = -1;
    }
    /* popped from the end: block 0 first, so a lone sequence lies in order */
    for (i = 0; i < kv->n_blocks; i++) {
        kv->free_list[i] = kv->n_blocks - 1 - i;
    }
    kv->n_free = kv->n_blocks;
    if (index) {
        for (i = 0; i <= (int) kv->bucket_mask; i++) {
            kv->buckets[i] = -1;
            kv->kids[i] = -1;
        }
        kv->lru_head = kv->lru_tail = -1;
        kv->next_serial = 1;
    }
    return kv;
}

void
qwen_kv_cache_free(qwen_kv_cache *kv)
{
    if (kv == NULL) {
        return;
    }
    pool_unmap(kv->k, kv->pool_bytes);
    pool_unmap(kv->v, kv->pool_bytes);
    free(kv->table);
    free(kv->refs);
    free(kv->free_list);
    free(kv->ent);
    free(kv->buckets);
    free(kv->kids);
    free(kv);
}

size_t
qwen_kv_cache_pool_bytes(const qwen_kv_cache *kv)
{
    return 2 * (size_t) kv->n_blocks * kv->block_bytes;
}

/* ------------------------------------------------------------ the index */

static uint64_t
block_hash(uint64_t parent, const int32_t *tokens)
{
    uint64_t h = parent * 0x9E3779B97F4A7C15ull ^ 0xD6E8FEB86659FD93ull;
    int      i;

    for (i = 0; i < B; i++) {
        h ^= (uint32_t) tokens[i];
        h *= 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h;
}

static uint32_t
kid_bucket(const qwen_kv_cache *kv, uint64_t parent)
{
    return (uint32_t) ((parent * 0x9E3779B97F4A7C15ull) >> 32) & kv->bucket_mask;
}

static void
lru_unlink(qwen_kv_cache *kv, int32_t b)
{
    kv_entry *e = &kv->ent[b];

    if (e->lru_prev >= 0) {
        kv->ent[e->lru_prev].lru_next = e->lru_next;
    } else {
        kv->lru_head = e->lru_next;
    }
    if (e->lru_next >= 0) {
        kv->ent[e->lru_next].lru_prev = e->lru_prev;
    } else {
        kv->lru_tail = e->lru_prev;
    }
    kv->n_cached--;
}

/* most recently used end */
static void
lru_push(qwen_kv_cache *kv, int32_t b)
{
    kv_entry *e = &kv->ent[b];

    e->lru_next = -1;
    e->lru_prev = kv->lru_tail;
    if (kv->lru_tail >= 0) {
        kv->ent[kv->lru_tail].lru_next = b;
    } else {
        kv->lru_head = b;
    }
    kv->lru_tail = b;
    kv->n_cached++;
}

static void
index_remove(qwen_kv_cache *kv, int32_t b)
{
    kv_entry *e = &kv->ent[b];
    int32_t  *pp = &kv->buckets[e->hash & kv->bucket_mask];

    while (*pp != b) {
        pp = &kv->ent[*pp].hash_next;
    }
    *pp = e->hash_next;
    for (pp = &kv->kids[kid_bucket(kv, e->parent)]; *pp != b; pp = &kv->ent[*pp].kid_next) {
    }
    *pp = e->kid_next;
    e->serial = 0;
    kv->n_indexed--;
}

static int32_t
index_find(const qwen_kv_cache *kv, uint64_t parent, const int32_t *tokens, uint64_t hash)
{
    int32_t         b;
    const kv_entry *e;

    for (b = kv->buckets[hash & kv->bucket_mask]; b >= 0; b = e->hash_next) {
        e = &kv->ent[b];
        if (e->hash == hash && e->parent == parent
            && memcmp(e->tokens, tokens, sizeof(e->tokens)) == 0)
        {
            return b;
        }
    }
    return -1;
}

/* A block for new positions: a free one, else the least recently used
 * cached one leaves the index. -1 cannot happen while every sequence maps
 * at most max_blocks (see qwen_kv_cache_new). */
static int32_t
block_take(qwen_kv_cache *kv)
{
    int32_t b;

    if (kv->n_free > 0) {
        b = kv->free_list[--kv->n_free];
    } else if (kv->index && kv->lru_head >= 0) {
        b = kv->lru_head;
        lru_unlink(kv, b);
        index_remove(kv, b);
        kv->evictions++;
    } else {
        return -1;
    }
    kv->refs[b] = 1;
    return b;
}

/* ------------------------------------------------------------ sequences */

int
qwen_kv_prepare_write(qwen_kv_cache *kv, int seq, int pos, char *err, size_t err_len)
{
    int      j = pos / B;
    int32_t *slot;

    if (pos < 0 || j >= kv->max_blocks) {
        return qwen_fail(err, err_len, "position %d is outside the KV cache's %d positions",
                         pos, kv->max_blocks * B);
    }
    slot = &kv->table[(size_t) seq * kv->max_blocks + j];
    if (*slot < 0) {
        *slot = block_take(kv);
        if (*slot < 0) {
            return qwen_fail(err, err_len, "no free KV cache block");
        }
        return 0;
    }
    if (kv->refs[*slot] > 1 || (kv->index && kv->ent[*slot].serial != 0)) {
        return qwen_fail(err, err_len, "sequence %d position %d lies in a shared KV cache block",
                         seq, pos);
    }
    return 0;
}

void
qwen_kv_view_of(const qwen_kv_cache *kv, int seq, int layer, int head, qwen_kv_view *out)
{
    size_t region = ((size_t) layer * kv->n_kv_heads + head) * kv->region_bytes;

    out->k = kv->k + region;
    out->v = kv->v + region;
    out->blocks = kv->table + (size_t) seq * kv->max_blocks;
    out->stride = kv->block_bytes;
}

void
qwen_kv_region(const qwen_kv_cache *kv, int seq, int layer, int head, int pos, void **k,
               void **v)
{
    int32_t b = kv->table[(size_t) seq * kv->max_blocks + pos / B];
    size_t  off = (size_t) b * kv->block_bytes
                  + ((size_t) layer * kv->n_kv_heads + head) * kv->region_bytes;

    *k = kv->k + off;
    *v = kv->v + off;
}

void
qwen_kv_release(qwen_kv_cache *kv, int seq)
{
    int32_t *t = kv->table + (size_t) seq * kv->max_blocks;
    int      j;

    /* from the last block back: a prefix's tail leaves the cache before
     * its head, which more requests share */
    for (j = kv->max_blocks - 1; j >= 0; j--) {
        if (t[j] < 0) {
            continue;
        }
        if (--kv->refs[t[j]] == 0) {
            if (kv->index && kv->ent[t[j]].serial != 0) {
                lru_push(kv, t[j]);
            } else {
                kv->free_list[kv->n_free++] = t[j];
            }
        }
        t[j] = -1;
    }
}

/*
 * After the whole blocks: the indexed block after `parent` that starts
 * with the most of tokens[0 .. left) (fewer than a block) lends its first
 * positions. It is copied whole into a fresh block for seq, which then
 * writes its own positions after them: a block's positions depend only on
 * the tokens up to them, so the copy holds what a prefill would write, and
 * the source stays shared and unwritten. A copy of a block costs far less
 * than computing even one position of it. Returns the positions lent.
 */
static int
match_part(qwen_kv_cache *kv, int seq, int j, uint64_t parent, const int32_t *tokens,
           int left)
{
    int32_t         b, best = -1, fresh;
    int             i, most = 0;
    const kv_entry *e;

    if (left <= 0) {
        return 0;
    }
    left = left < B ? left : B - 1;
    for (b = kv->kids[kid_bucket(kv, parent)]; b >= 0; b = e->kid_next) {
        e = &kv->ent[b];
        if (e->parent != parent) {
            continue;
        }
        i = qwen_tokens_common(e->tokens, tokens, left);
        if (i > most) {
            most = i;
            best = b;
        }
    }
    if (best < 0) {
        return 0;
    }
    /* held while a block is taken: the least recently used block could
     * be this very one */
    if (kv->refs[best]++ == 0) {
        lru_unlink(kv, best);
    }
    fresh = block_take(kv);
    if (fresh >= 0) {
        memcpy(kv->k + (size_t) fresh * kv->block_bytes,
               kv->k + (size_t) best * kv->block_bytes, kv->block_bytes);
        memcpy(kv->v + (size_t) fresh * kv->block_bytes,
               kv->v + (size_t) best * kv->block_bytes, kv->block_bytes);
        kv->table[(size_t) seq * kv->max_blocks + j] = fresh;
    }
    if (--kv->refs[best] == 0) {
        lru_push(kv, best);
    }
    return fresh >= 0 ? most : 0;
}

int
qwen_kv_match(qwen_kv_cache *kv, int seq, const int32_t *tokens, int n, int max_tokens,
              int from, uint64_t *chain)
{
    int32_t *t = kv->table + (size_t) seq * kv->max_blocks;
    uint64_t parent = *chain;
    int32_t  b;
    int      j;

    if (!kv->index || from % B != 0) {
        return from;
    }
    for (j = from / B; (j + 1) * B <= n && (j + 1) * B <= max_tokens && j < kv->max_blocks
                       && t[j] < 0; j++)
    {
        b = index_find(kv, parent, tokens + (size_t) j * B,
                       block_hash(parent, tokens + (size_t) j * B));
        if (b < 0) {
            break;
        }
        if (kv->refs[b]++ == 0) {
            lru_unlink(kv, b);
        }
        t[j] = b;
        parent = kv->ent[b].serial;
    }
    *chain = parent;
    if (j < kv->max_blocks && t[j] < 0) {
        return j * B + match_part(kv, seq, j, parent, tokens + (size_t) j * B,
                                  (n < max_tokens ? n : max_tokens) - j * B);
    }
    return j * B;
}

void
qwen_kv_publish(qwen_kv_cache *kv, int seq, int j, const int32_t *tokens, uint64_t *chain)
{
    int32_t   b = kv->table[(size_t) seq * kv->max_blocks + j], found;
    uint64_t  hash;
    kv_entry *e;

    if (!kv->index || b < 0) {
        return;
    }
    hash = block_hash(*chain, tokens);
    found = index_find(kv, *chain, tokens, hash);
    if (found >= 0) {
        /* another sequence indexed the same prefix first: chain on it;
         * this sequence's copy stays private and is freed with it */
        *chain = kv->ent[found].serial;
        return;
    }
    e = &kv->ent[b];
    if (e->serial != 0) {
        *chain = e->serial;     /* mapped from the index already */
        return;
    }
    e->serial = kv->next_serial++;
    e->parent = *chain;
    e->hash = hash;
    memcpy(e->tokens, tokens, sizeof(e->tokens));
    e->hash_next = kv->buckets[hash & kv->bucket_mask];
    kv->buckets[hash & kv->bucket_mask] = b;
    e->kid_next = kv->kids[kid_bucket(kv, *chain)];
    kv->kids[kid_bucket(kv, *chain)] = b;
    kv->n_indexed++;
    *chain = e->serial;
}

void
qwen_kv_get_stats(const qwen_kv_cache *kv, qwen_kv_stats *out)
{
    out->n_blocks = kv->n_blocks;
    out->n_free = kv->n_free;
    out->n_cached = kv->n_cached;
    out->n_indexed = kv->n_indexed;
    out->evictions = kv->evictions;
}
