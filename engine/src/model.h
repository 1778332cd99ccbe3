/*
 * model.h - the loaded model as the forward pass sees it: config, one
 * qwen_tensor per weight pointing into read-only mapped file pages (or into
 * anonymous memory written once at load for the few tensors that must be
 * converted, and for the repacked ones), and
 * the tokenizer when the files carry one.
 */
#ifndef QWEN_MODEL_H
#define QWEN_MODEL_H

#include "qwen.h"
#include "quant.h"

typedef struct {
    int         type;       /* enum qwen_type */
    int64_t     n_cols;     /* input features: elements per row */
    int64_t     n_rows;     /* output features */
    size_t      row_bytes;
    const void *data;
    /* the rows repacked at load (repack.h: groups of QWEN_PACK_ROWS rows)
     * for the tables that read them; NULL when not packed */
    const void *packed;
} qwen_tensor;

typedef struct {
    const float *attn_norm;     /* [hidden] */
    const float *q_norm;        /* [head_dim] */
    const float *k_norm;        /* [head_dim] */
    const float *ffn_norm;      /* [hidden] */
    qwen_tensor  wq, wk, wv, wo;
    qwen_tensor  w_gate, w_up, w_down;
} qwen_layer;

#define QWEN_MAX_MAPS 64

struct qwen_model {
    qwen_config     cfg;
    qwen_tensor     tok_embd;     /* [vocab, hidden] */
    qwen_tensor     output;       /* tok_embd when tied */
    const float    *output_norm;  /* [hidden] */
    qwen_layer     *layers;

    /* anon: anonymous memory written once at load (repacked weights,
     * converted norms; model.c's anon_alloc), as opposed to the file's
     * mapping */
    struct { void *addr; size_t len; int anon; } maps[QWEN_MAX_MAPS];
    int             n_maps;
    void           *shared;       /* anon_alloc'd: converted norms */
    size_t          shared_len;
    size_t          shared_used;
    size_t          packed_bytes; /* the weights repacked at load (repack.h) */

    qwen_tokenizer *tokenizer;
    char            describe[128];
};

/* Fault the model's shared weight pages into this process (model.c). */
void qwen_model_map_in(const qwen_model *m);

#endif
