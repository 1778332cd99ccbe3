/*
 * batch_invariance.h - shared by the forward-pass tests. n_seqs sequences
 * decoded in one batch (rows through the 4-token and 2 x 4 kernels, the
 * leftover tokens through the single dots) must give, bit for bit, the
 * logits each gets decoded alone. Both contexts prefill the prompts the
 * same way, one sequence per call.
 */
#ifndef QWEN_BATCH_INVARIANCE_H
#define QWEN_BATCH_INVARIANCE_H

#include <stdlib.h>
#include <string.h>

#include "qwen.h"
#include "test.h"

#define BI_MAX_SEQS   8
#define BI_MAX_PROMPT 32

/* The number of logits that differ between the batched decode step and
 * the same steps alone; -1 after a failure (already CHECKed).
 * prompts: [n_seqs][n_prompt] token ids. */
static int
decode_batch_mismatches(const qwen_model *m, const char *kern, int vocab, int n_seqs,
                        int n_prompt, const int32_t *prompts)
{
    qwen_ctx_params  p = { 2, n_seqs, 64, BI_MAX_PROMPT, kern, NULL };
    qwen_ctx        *together, *alone;
    qwen_batch_entry e[BI_MAX_PROMPT];
    float           *logits = malloc((size_t) n_seqs * vocab * sizeof(float));
    float           *one = malloc((size_t) vocab * sizeof(float));
    char             err[QWEN_ERR_LEN];
    int32_t          next[BI_MAX_SEQS];
    int              s, i, bad = -1;

    together = qwen_ctx_new(m, &p, err, sizeof(err));
    CHECK(together != NULL, "context: %s", err);
    alone = qwen_ctx_new(m, &p, err, sizeof(err));
    CHECK(alone != NULL, "context: %s", err);
    if (together == NULL || alone == NULL || logits == NULL || one == NULL
        || n_seqs > BI_MAX_SEQS || n_prompt > BI_MAX_PROMPT)
    {
        goto done;
    }
    for (s = 0; s < n_seqs; s++) {
        for (i = 0; i < n_prompt; i++) {
            e[i] = (qwen_batch_entry) { prompts[s * n_prompt + i], s, i, i == n_prompt - 1, 1 };
        }
        if (qwen_forward(together, e, n_prompt, one, err, sizeof(err)) != 0
            || qwen_forward(alone, e, n_prompt, one, err, sizeof(err)) != 0)
        {
            CHECK(0, "prefill: %s", err);
            goto done;
        }
        next[s] = qwen_argmax(one, vocab);
    }
    for (s = 0; s < n_seqs; s++) {
        e[s] = (qwen_batch_entry) { next[s], s, n_prompt, 1, 0 };
    }
    i = qwen_forward(together, e, n_seqs, logits, err, sizeof(err));
    CHECK(i == 0, "batched decode: %s", err);
    if (i != 0) {
        goto done;
    }
    bad = 0;
    for (s = 0; s < n_seqs; s++) {
        i = qwen_forward(alone, &e[s], 1, one, err, sizeof(err));
        CHECK(i == 0, "decode alone: %s", err);
        if (i != 0) {
            bad = -1;
            goto done;
        }
        for (i = 0; i < vocab; i++) {
            bad += memcmp(&one[i], &logits[(size_t) s * vocab + i], sizeof(float)) != 0;
        }
    }
done:
    free(logits);
    free(one);
    qwen_ctx_free(together);
    qwen_ctx_free(alone);
    return bad;
}

#endif
