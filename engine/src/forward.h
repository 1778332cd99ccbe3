/*
 * forward.h - what the engine's scheduler needs of a compute context
 * beyond the public API: a context whose KV cache keeps a prefix index
 * (and extra blocks for it), and access to that cache.
 */
#ifndef QWEN_FORWARD_H
#define QWEN_FORWARD_H

#include "qwen.h"
#include "kv_cache.h"

/* qwen_ctx_new with extra_blocks more KV cache blocks, and with the prefix
 * index on when prefix_index is set (kv_cache.h). */
qwen_ctx      *qwen_ctx_new_cached(const qwen_model *model, const qwen_ctx_params *params,
                                   int extra_blocks, int prefix_index, char *err,
                                   size_t err_len);
qwen_kv_cache *qwen_ctx_kv_cache(qwen_ctx *ctx);
/* Bytes of one KV cache block (K and V, every layer and KV head) of a
 * context of model with params (its kernels and kv_format, resolved as
 * qwen_ctx_new resolves them); 0 for an unknown kv_format. */
size_t         qwen_kv_block_bytes(const qwen_model *model, const qwen_ctx_params *params);
/* 1 when a prompt token's K and V are bit for bit what the same token
 * generated would write (no separate prefill kernels for these weights):
 * then blocks holding generated positions may enter the prefix index. */
int            qwen_ctx_prompt_exact(const qwen_ctx *ctx);

#endif
