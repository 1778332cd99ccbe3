/*
 * qwen.h - the whole public API of the Qwen3 inference engine.
 *
 * A C library with no global mutable state: everything hangs off a model,
 * a compute context, an engine or a tokenizer object. Functions never print
 * or exit. Conventions, kept by every function below:
 *   - Objects come from qwen_X_new() / qwen_X_load(), which return the
 *     object or NULL with the reason in the caller's err buffer
 *     (QWEN_ERR_LEN bytes is enough); the few that can fail only for want
 *     of memory take no err. qwen_X_free(NULL) is a no-op.
 *   - Parameter structs start from qwen_X_default_params() and the caller
 *     changes the fields it cares about.
 *   - Other fallible calls return 0 on success and -1 on failure with err
 *     set; qwen_submit returns a qwen_status. Calls that produce a count
 *     (bytes, tokens, events) return it, or -1 where they can fail.
 *   - Predicates (qwen_X_available, qwen_grammar_allows...) return 1 or 0.
 */
#ifndef QWEN_H
#define QWEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QWEN_ERR_LEN 512

/* ---------------------------------------------------------------- model */

typedef struct qwen_model      qwen_model;
typedef struct qwen_ctx        qwen_ctx;
typedef struct qwen_tokenizer  qwen_tokenizer;

typedef struct {
    int   vocab_size;
    int   hidden_size;
    int   intermediate_size;
    int   n_layers;
    int   n_heads;
    int   n_kv_heads;
    int   head_dim;
    int   max_position_embeddings;
    int   tie_word_embeddings;
    float rope_theta;
    float rms_norm_eps;
} qwen_config;

/*
 * Load a model from a .gguf file or a Hugging Face directory (config.json,
 * model.safetensors or sharded model-*.safetensors with its index).
 * Weights are mmap'ed read-only; every header field, offset and shape is
 * validated against the file size before use. The tokenizer is loaded too
 * when the files carry one (tokenizer.json / tokenizer.ggml.* metadata).
 */
qwen_model *qwen_model_load(const char *path, char *err, size_t err_len);
/* The same, with the weights repacked for the named kernel table (NULL:
 * the best this CPU runs, as qwen_model_load does): the table the contexts
 * will name in qwen_ctx_params.kernels (`qwen --kernels avx2` on an
 * AVX-512 host then runs as on an AVX2-only one). */
qwen_model *qwen_model_load_for(const char *path, const char *kernels, char *err,
                                size_t err_len);
void qwen_model_free(qwen_model *model);
const qwen_config    *qwen_model_config(const qwen_model *model);
/* NULL when the model files hold no tokenizer. */
const qwen_tokenizer *qwen_model_tokenizer(const qwen_model *model);
/* Short description of the weight types, e.g. "Q4_K (Q6_K, F32)". */
const char *qwen_model_describe(const qwen_model *model);
/* Bytes of weights the forward pass reads for one token (for rooflines). */
size_t qwen_model_weight_bytes(const qwen_model *model);
/* Bytes of weights repacked at load for this CPU's kernels (0: none; the
 * environment's QWEN_REPACK=0 turns repacking off). */
size_t qwen_model_packed_bytes(const qwen_model *model);

/* ---------------------------------------------------------- compute ctx */

typedef struct {
    int n_threads;  /* compute threads owned by this context (>= 1) */
    int n_seqs;     /* sequences (KV cache slots) that can live at once */
    int n_ctx;      /* tokens per sequence */
    int n_batch;    /* most tokens one qwen_forward call may carry */
    const char *kernels; /* NULL: the best for this CPU; or "scalar", "avx2"... */
    /* KV cache format: "f32" (the exact reference), "f16", "bf16" (where the
     * kernels have a BF16 attention: AVX-512 BF16) or "q8_0" (8-bit values
     * with one scale per 32, half of f16's bytes; heads of a multiple of 32
     * dimensions). NULL or "auto": f32 for F32 weights, f16 for F16 ones,
     * bf16 for BF16 and quantized weights where the kernels have it (the
     * precision HF runs Qwen3 in), f16 otherwise. */
    const char *kv_format;
} qwen_ctx_params;

/* 1 thread, 1 sequence of 4096 tokens, batches of 256, best kernels, auto
 * KV format. */
qwen_ctx_params qwen_ctx_default_params(void);
qwen_ctx *qwen_ctx_new(const qwen_model *model, const qwen_ctx_params *params,
                       char *err, size_t err_len);
void      qwen_ctx_free(qwen_ctx *ctx);
/* The KV cache format the context picked: "f32", "f16", "bf16" or "q8_0". */
const char *qwen_ctx_kv_format(const qwen_ctx *ctx);
/* Whether kv_format (NULL, "auto", "f32", "f16", "bf16", "q8_0") works
 * with the default kernels on this CPU. */
int         qwen_kv_format_available(const char *kv_format);
/* Kernel sets: "scalar" everywhere; x86: "avx2", "avx2_vnni" (AVX-VNNI),
 * "avx512" (AVX2 dots plus the BF16 prefill GEMM), "avx512_vnni" (the same
 * without AVX512_BF16); arm64: "neon"... */
int         qwen_kernels_available(const char *name);
const char *qwen_kernels_default(void);   /* the one a NULL name selects */
/* The KV cache format a context of model with these parameters gets
 * (kernels and kv_format; "auto" resolved for the model's weights), or
 * NULL when the kernels lack it or cannot hold the model's heads in it. */
const char *qwen_kv_format_pick(const qwen_model *model, const qwen_ctx_params *params);
/* Bytes of KV cache a context of model with these parameters holds
 * (n_seqs x n_ctx positions in the format its kernels and kv_format give);
 * 0 for an unknown kv_format. */
size_t    qwen_kv_cache_bytes(const qwen_model *model, const qwen_ctx_params *params);

/*
 * One token of a forward batch. A batch may mix sequences (batched decode)
 * and carry many tokens of one sequence (prefill). The token's key and value
 * are stored at position pos of sequence seq; attention sees positions
 * 0..pos of that sequence, so the caller fills positions in order.
 */
typedef struct {
    int32_t token;
    int32_t seq;
    int32_t pos;
    int32_t want_logits;
    int32_t prompt;   /* part of a prompt: may take the batched prefill
                       * kernels. A token's result depends only on this flag,
                       * never on what else shares the batch. */
} qwen_batch_entry;

/*
 * Run the model over a batch of n entries (n <= n_batch). For every entry
 * with want_logits set, vocab_size logits are written to logits, in batch
 * order. Entries of one sequence must be in increasing position order.
 */
int qwen_forward(qwen_ctx *ctx, const qwen_batch_entry *batch, int n,
                 float *logits, char *err, size_t err_len);

/* Greedy helper used by tests and the CLI: index of the largest logit. */
int32_t qwen_argmax(const float *logits, int n);

/* ------------------------------------------------------------- sampler */

typedef struct {
    float    temperature;         /* <= 0: greedy */
    int      top_k;               /* <= 0: off */
    float    top_p;               /* >= 1: off */
    float    min_p;               /* <= 0: off */
    float    repetition_penalty;  /* 1: off (CTRL-style, divides positive logits) */
    float    presence_penalty;    /* 0: off */
    float    frequency_penalty;   /* 0: off */
    int      penalty_last_n;      /* tokens of history the penalties see; -1 all */
    uint64_t seed;
} qwen_sampling_params;

typedef struct qwen_sampler qwen_sampler;

/* Qwen3's recommended sampling: temperature 0.7, top-k 20, top-p 0.8,
 * penalties off (over the last 64 tokens when turned on), seed 0. */
qwen_sampling_params qwen_sampling_default_params(void);
qwen_sampler *qwen_sampler_new(const qwen_sampling_params *p, int vocab_size);
/* The same, borrowing owner's vocabulary-sized scratch (1.8 MB for Qwen3)
 * instead of allocating its own: owner must outlive it, and all of them
 * sample on one thread (the engine keeps one owner for its scheduler). */
qwen_sampler *qwen_sampler_new_sharing(const qwen_sampling_params *p, qwen_sampler *owner);
void          qwen_sampler_free(qwen_sampler *s);
/* Record a token of the sequence (prompt or generated) for the penalties. */
void          qwen_sampler_accept(qwen_sampler *s, int32_t token);
/* Choose the next token. logits (vocab_size floats) is used as scratch. */
int32_t       qwen_sampler_sample(qwen_sampler *s, float *logits);

/* Returns non-zero when token may come next (e.g. a grammar's verdict). */
typedef int (*qwen_token_filter)(void *ctx, int32_t token);
/*
 * Like qwen_sampler_sample, over the tokens allowed returns non-zero for
 * only: penalties, temperature, then top-k / min-p / top-p among allowed
 * tokens. Candidates are tested lazily in descending logit order, so the
 * cost is a few checks when the best tokens are allowed. Deterministic for
 * a seed. Returns -1 when no token is allowed.
 */
int32_t       qwen_sampler_sample_filtered(qwen_sampler *s, float *logits,
                                           qwen_token_filter allowed, void *ctx);
/*
 * Speculative decoding's acceptance of a proposed token (a deterministic
 * draft, e.g. copied from the prompt): the same distribution as sampling
 * (filtered when allowed is not NULL), drawn so that draft comes with its
 * own probability and anything else from the rest. Greedy: the argmax,
 * whatever the draft. The caller compares the result with draft.
 */
int32_t       qwen_sampler_sample_draft(qwen_sampler *s, float *logits, int32_t draft,
                                        qwen_token_filter allowed, void *ctx);
/* As sample_draft with a filter (draft -1: none), the candidates limited
 * to ids[0..n_ids) (every other token counts as refused), e.g. a
 * grammar's qwen_grammar_candidates: the vocabulary is not scanned. */
int32_t       qwen_sampler_sample_among(qwen_sampler *s, float *logits, const int32_t *ids,
                                        int n_ids, int32_t draft, qwen_token_filter allowed,
                                        void *ctx);

/* ------------------------------------------------------------- grammar */

/*
 * Constrained decoding to JSON. A grammar is immutable and reference
 * counted (thread-safe): requests and states keep their own reference, so
 * the creator may free it at once after qwen_submit. schema_json NULL is
 * JSON mode: any JSON object. Otherwise a JSON Schema (2020-12) subset
 * whose top level is an object, every keyword enforced token by token:
 * type (one or a list), properties (written in schema order, optional
 * ones may be left out, no others), required, additionalProperties,
 * items, prefixItems, minItems, maxItems, uniqueItems (enum/const items),
 * enum / const of any JSON value, anyOf, oneOf (branches that cannot
 * overlap), $ref to local definitions (recursion included), minLength,
 * maxLength, pattern (a regular-expression subset), format (date, time,
 * date-time, email, uuid, ipv4, ipv6, hostname), minimum, maximum,
 * exclusiveMinimum, exclusiveMaximum (integers digit by digit; other
 * numbers by sign and integer part), multipleOf (integers). Annotations
 * (title, description, default, examples, $schema, $id, $comment...) are
 * ignored; any other keyword is refused, err naming it and its JSON
 * Pointer ("#/properties/a: 'allOf' is not supported"). Whitespace
 * between tokens is bounded (16 bytes, 2 line breaks) so the model cannot
 * wander off in newlines; numbers are bounded (15 digits, exponent 2).
 */
typedef struct qwen_grammar       qwen_grammar;
typedef struct qwen_grammar_state qwen_grammar_state;

qwen_grammar *qwen_grammar_new_json(const qwen_tokenizer *tok, const char *schema_json,
                                    char *err, size_t err_len);
/* Tool calls: the answer's <tool_call> blocks (Qwen's added tokens) hold
 * JSON valid under call_schema_json (the schema of one call object, e.g.
 * an anyOf of {"name": const, "arguments": parameters}), each closed by
 * </tool_call>. required: the answer is calls only, the first at once;
 * else free text until the model opens a call. parallel: another call
 * may follow (whitespace between), else the end comes after one. */
qwen_grammar *qwen_grammar_new_tools(const qwen_tokenizer *tok, const char *call_schema_json,
                                     int required, int parallel, char *err, size_t err_len);
void          qwen_grammar_free(qwen_grammar *g);    /* drops one reference */

/* Per-sequence automaton state (holds a reference to g); NULL: no memory. */
qwen_grammar_state *qwen_grammar_state_new(const qwen_grammar *g);
void          qwen_grammar_state_free(qwen_grammar_state *st);
/* May token come next? End-of-generation tokens are allowed only once the
 * top-level value is complete; added tokens (<think>...) never. */
int           qwen_grammar_allows(const qwen_grammar_state *st, int32_t token);
/* Advance by a token (0), or -1 leaving st unchanged when not allowed. */
int           qwen_grammar_accept(qwen_grammar_state *st, int32_t token);
/* Advance by raw bytes, all or nothing (tests, prefix checks). */
int           qwen_grammar_accept_bytes(qwen_grammar_state *st, const char *bytes, size_t n);
/* Non-zero once a complete top-level value was read. */
int           qwen_grammar_complete(const qwen_grammar_state *st);
/* A token budget: the number of tokens that may still follow the next
 * one (the caller sets it before each choice). A token is then allowed
 * only if the bytes still needed to close the value validly fit in it,
 * so a generation cut by max_tokens ends with the shortest valid
 * completion instead of mid-value. Tokens cover one byte at least, so a
 * budget of min_close tokens always suffices; a smaller one (a few tokens
 * of several bytes could still make it) allows only tokens that shorten
 * the way to the close, so the answer closes as soon as tokens allow. */
void          qwen_grammar_set_budget(qwen_grammar_state *st, int32_t tokens);
/* The fewest bytes that complete a valid value from here (0: complete). */
int32_t       qwen_grammar_min_close(const qwen_grammar_state *st);
/* Non-zero once the budget refused a token the schema alone allowed. */
int           qwen_grammar_budget_hit(const qwen_grammar_state *st);
/* The tokens that may be allowed here (a superset, from per-byte token
 * lists made with the grammar), into ids[0..cap): their number, or -1
 * when there are more than cap (inside a string nearly every token is a
 * candidate: the sampler's own partial selection is cheaper then). */
int32_t       qwen_grammar_candidates(const qwen_grammar_state *st, int32_t *ids, int32_t cap);

/* ------------------------------------------------------------ scheduler */

/*
 * A serving engine: one compute context, its threads, and a continuous
 * batching scheduler. Requests are submitted from any thread (nginx's event
 * loop); a scheduler thread admits them into KV cache slots, prefills in
 * chunks interleaved with decode steps of the running sequences, samples,
 * and publishes token events. It wakes the submitter through an eventfd
 * (qwen_engine_notify_fd) whenever a request has news; the submitter then
 * drains qwen_engine_ready() and qwen_request_poll(). No call here blocks
 * on inference.
 */
typedef struct qwen_engine  qwen_engine;
typedef struct qwen_request qwen_request;

typedef struct {
    int         n_threads;   /* compute threads (>= 1) */
    int         n_slots;     /* sequences decoded together */
    int         n_ctx;       /* tokens per slot (prompt + output) */
    int         n_batch;     /* most tokens per forward step (prefill chunk) */
    int         max_queue;   /* requests waiting for a slot before submit refuses */
    const char *kernels;     /* NULL: best for this CPU */
    const char *kv_format;   /* NULL: auto (qwen_ctx_params.kv_format) */
    /* Prefix cache: KV blocks of 32 positions that earlier requests
     * computed (prompts, and answers where prompt and generated tokens
     * compute alike) are kept, and a request whose tokens start the same
     * way maps them instead of prefilling them again, in any slot, shared
     * by every request using them. The results are the same bits as a
     * fresh prefill. Unused blocks are dropped least recently used first
     * when a request needs room. prefix_cache_bytes: memory kept for them
     * beyond the slots' own (which idle slots lend too); 0 with
     * prefix_cache on still caches in idle slots' room. */
    int         prefix_cache;       /* 1: on (the default) */
    size_t      prefix_cache_bytes;
    /* N-gram (prompt lookup) drafts: when the last tokens of a sequence
     * occurred earlier in it (an answer copying its prompt), the tokens that
     * followed there are proposed and checked in one step with the next
     * token; the longest run the model agrees with is taken (speculative
     * sampling: the output's distribution, and greedy output itself, are
     * those without drafts). Fewer drafts as more slots are busy, none
     * when all are. Requests may override it (qwen_request_params.draft). */
    int         draft;              /* 1: on (the default), 0: off */
} qwen_engine_params;

/* Most tokens proposed for one sequence in one step. */
#define QWEN_DRAFT_MAX 8

/* 1 thread, 4 slots of 4096 tokens, batches of 256, a queue of 16, best
 * kernels, auto KV format, prefix cache on with no extra memory, drafts
 * on. */
qwen_engine_params qwen_engine_default_params(void);

typedef enum {
    QWEN_FINISH_NONE = 0,    /* still running */
    QWEN_FINISH_STOP,        /* end-of-generation token */
    QWEN_FINISH_LENGTH,      /* max_tokens or the slot's context reached */
    QWEN_FINISH_REPETITION,  /* the repetition guard stopped a loop (APIs say
                              * "length"; qwen_request_timing.repeat_span) */
    QWEN_FINISH_CANCELLED,   /* qwen_request_cancel / release */
    QWEN_FINISH_ERROR
} qwen_finish;

/* What qwen_submit returns. */
typedef enum {
    QWEN_OK           = 0,
    QWEN_E_INVALID    = -1,   /* bad parameters: err says which */
    QWEN_E_QUEUE_FULL = -2,   /* every slot busy and the queue full */
    QWEN_E_TOO_LONG   = -3,   /* prompt does not fit the slot's context */
    QWEN_E_SHUTDOWN   = -4    /* the engine is stopping */
} qwen_status;

#define QWEN_MAX_TOP_LOGPROBS 20
#define QWEN_MAX_FORCED       256  /* most think_close_ids */
#define QWEN_REPEAT_MAX_SPAN  64   /* longest span the repetition guard sees */
#define QWEN_REPEAT_MIN_TOKENS 64  /* fewest tokens a repetition it stops covers */

/* A fixed amount added to one token's logit before sampling (OpenAI's
 * logit_bias); -INFINITY bans the token. */
typedef struct {
    int32_t token;
    float   bias;
} qwen_logit_bias;

typedef struct {
    const int32_t       *prompt;         /* copied by submit */
    size_t               n_prompt;
    int                  max_tokens;     /* <= 0: until end of generation or context */
    qwen_sampling_params sampling;
    const int32_t       *stop_ids;       /* extra end-of-generation ids, copied */
    size_t               n_stop_ids;
    int                  ignore_eos;     /* do not stop on the model's EOG ids */
    int                  n_logprobs;     /* 0: none; else the chosen token's logprob
                                          * and this many top alternatives (<= 20) */
    const qwen_grammar  *grammar;        /* NULL: free text; else only tokens it
                                          * allows (the request keeps a reference;
                                          * no allowed token at all: FINISH_ERROR) */
    int32_t              grammar_after_token; /* > 0: the grammar applies only after
                                          * this token was generated (</think>: free
                                          * thinking, JSON answer); <= 0: at once */
    const qwen_logit_bias *logit_bias;   /* copied; applied before sampling and
                                          * logprobs */
    size_t               n_logit_bias;
    /*
     * Thinking budget. A thinking block opens when think_open_token is
     * generated (Qwen3's chat template leaves that to the model), or at
     * once with thinking_open (a template whose generation prompt ends
     * inside the block; the prompt itself is not searched, a user's text
     * may hold the markers), and ends at think_close_token. Once
     * thinking_budget tokens were generated inside it, the engine stops
     * sampling and generates think_close_ids instead, one per step: each
     * is fed back like a sampled token (its KV
     * is computed), published as a token event (with its logprob under
     * the model, if asked), counts against max_tokens and never stops the
     * request; then sampling goes on with the answer. Only the first block
     * is budgeted. think_close_token must be among think_close_ids; with a
     * grammar, grammar_after_token must be think_close_token and the ids
     * after it must be text the grammar takes (e.g. "\n\n").
     */
    int                  thinking_budget;    /* < 0: none; 0: close at once */
    int32_t              think_open_token;   /* <think> */
    int32_t              think_close_token;  /* </think> */
    const int32_t       *think_close_ids;    /* copied; 1 to QWEN_MAX_FORCED */
    size_t               n_think_close_ids;
    int                  thinking_open;      /* the prompt ends inside the block */
    /* Repetition guard, > 1: end the request with QWEN_FINISH_REPETITION
     * once its generated tokens end with one span of 1 to
     * QWEN_REPEAT_MAX_SPAN tokens written repeat_guard times in a row,
     * covering QWEN_REPEAT_MIN_TOKENS tokens at least (with 8: a single
     * token is stopped after 64 in a row, a span of 8 tokens or more after
     * 8 times). The last token of the loop is published, then the request
     * ends. Costs 64 compares per token. 0: off. */
    int                  repeat_guard;
    int                  draft;          /* n-gram drafts: -1 the engine's
                                          * setting (the default), 0 off, 1 on */
} qwen_request_params;

/* No prompt, no limit but the context, default sampling, no stop ids,
 * no logprobs, no grammar, no logit bias, no thinking budget, no
 * repetition guard. */
qwen_request_params qwen_request_default_params(void);

typedef struct {
    int32_t token;
    float   gap_ms;                           /* since this request's previous
                                               * token; -1 for its first */
    float   logprob;                          /* of the chosen token, if asked */
    int     n_top;
    int32_t top_ids[QWEN_MAX_TOP_LOGPROBS];
    float   top_logprobs[QWEN_MAX_TOP_LOGPROBS];
} qwen_token_event;

typedef struct {
    int      running;            /* requests in slots */
    int      waiting;            /* requests queued */
    int      n_slots;
    int      max_queue;
    uint64_t prompt_tokens;      /* totals since start */
    uint64_t generated_tokens;
    uint64_t finished[QWEN_FINISH_ERROR + 1];
    uint64_t steps;
    size_t   kv_tokens_used;     /* positions held by running requests */
    size_t   kv_tokens_total;    /* n_slots * n_ctx */
    uint64_t prefix_cache_queries;   /* prompt tokens looked up in the prefix cache */
    uint64_t prefix_cache_hits;      /* of them found there (not prefilled) */
    size_t   prefix_cache_blocks;    /* blocks cached for later requests */
    uint64_t drafted;                /* draft tokens proposed, totals since start */
    uint64_t draft_accepted;         /* of them taken */
} qwen_engine_stats;

typedef struct {
    double queued_ms;            /* submit to admission */
    double first_token_ms;       /* submit to first token, -1 before it */
    double total_ms;             /* submit to finish (or now) */
    size_t n_prompt;
    size_t n_generated;
    size_t n_cached;             /* prompt tokens taken from the prefix cache */
    size_t n_forced;             /* tokens the thinking budget generated */
    int    repeat_span;          /* QWEN_FINISH_REPETITION: tokens in the span
                                  * repeated (0 otherwise) */
    size_t n_drafted;            /* draft tokens proposed */
    size_t n_draft_accepted;     /* of them taken */
} qwen_request_timing;

/* The KV cache format the engine's context picked ("f16" or "bf16"). */
const char  *qwen_engine_kv_format(const qwen_engine *engine);
qwen_engine *qwen_engine_new(const qwen_model *model, const qwen_engine_params *params,
                             char *err, size_t err_len);
/* Cancels everything, joins the threads, frees the engine. Requests still
 * held by the caller stay valid until released. */
void         qwen_engine_free(qwen_engine *engine);
/* An eventfd, readable when requests have news; the caller reads it (8
 * bytes) to clear it before draining qwen_engine_ready(). */
int          qwen_engine_notify_fd(const qwen_engine *engine);
void         qwen_engine_get_stats(qwen_engine *engine, qwen_engine_stats *out);

/* QWEN_OK, or a QWEN_E_* code with err set. On success *out holds a
 * reference the caller must give back with qwen_request_release(). */
qwen_status qwen_submit(qwen_engine *engine, const qwen_request_params *params,
                 void *user_data, qwen_request **out, char *err, size_t err_len);
/* Requests with news since the last call (up to max); each is returned
 * once per batch of news. */
size_t qwen_engine_ready(qwen_engine *engine, qwen_request **out, size_t max);
void  *qwen_request_user_data(const qwen_request *req);
/* Move up to max pending token events out; *finish is set once the request
 * has ended and every event was taken. */
size_t qwen_request_poll(qwen_request *req, qwen_token_event *out, size_t max,
                         qwen_finish *finish);
/* Backpressure: a paused request keeps its slot but is left out of steps. */
void   qwen_request_pause(qwen_request *req, int paused);
/* Stop generating; the slot is freed within one engine step. */
void   qwen_request_cancel(qwen_request *req);
/* Give back the caller's reference (cancels the request if still running). */
void   qwen_request_release(qwen_request *req);
void   qwen_request_get_timing(qwen_request *req, qwen_request_timing *out);
const char *qwen_finish_name(qwen_finish f);   /* "stop", "length"... */

/* ----------------------------------------------------------- tokenizer */

typedef struct {
    int32_t *ids;
    size_t   n;
    size_t   cap;
} qwen_tokens;

void qwen_tokens_free(qwen_tokens *t);

/* Load tokenizer.json + tokenizer_config.json (+ generation_config.json)
 * from a Hugging Face directory. */
qwen_tokenizer *qwen_tokenizer_load_hf(const char *dir, char *err, size_t err_len);
void qwen_tokenizer_free(qwen_tokenizer *tok);

/*
 * Encode UTF-8 text exactly as Hugging Face's Qwen3 tokenizer does; ids are
 * appended to out. Thread-safe on a shared tokenizer. Invalid UTF-8 is an
 * error. Special/added tokens in the text are matched (never split).
 */
int  qwen_tokenize(const qwen_tokenizer *tok, const char *text, size_t len,
                   qwen_tokens *out, char *err, size_t err_len);

/* The bytes a token stands for (byte-level decoded); NULL for bad ids. */
const char *qwen_token_bytes(const qwen_tokenizer *tok, int32_t id, size_t *len);
int         qwen_tokenizer_vocab_size(const qwen_tokenizer *tok);
/* Token id of an exact token string, or -1. */
int32_t     qwen_token_id(const qwen_tokenizer *tok, const char *text, size_t len);
/* End-of-generation ids (<|im_end|>, <|endoftext|>...). */
int         qwen_token_is_eog(const qwen_tokenizer *tok, int32_t id);

/*
 * Streaming detokenizer: per sequence, returns only complete UTF-8; bytes of
 * a character split across tokens are kept for the next call.
 */
typedef struct {
    unsigned char pending[8];
    size_t        n_pending;
} qwen_detok;

/* Append the text of id to out (cap bytes); returns bytes written or -1. */
long qwen_detok_push(const qwen_tokenizer *tok, qwen_detok *st, int32_t id,
                     char *out, size_t cap);
/* Whole-sequence decode into a malloc'ed NUL-terminated string. */
char *qwen_detokenize(const qwen_tokenizer *tok, const int32_t *ids, size_t n,
                      size_t *len);

/* --------------------------------------------------------- chat template */

typedef struct {
    const char *role;              /* system, user, assistant, tool */
    const char *content;           /* may be NULL */
    const char *reasoning_content; /* assistant thinking, may be NULL */
    const char *tool_calls_json;   /* assistant: JSON array of calls, may be NULL */
} qwen_chat_message;

/*
 * Render Qwen3's chat template (tokenizer_config.json chat_template) byte for
 * byte: tools_json is a JSON array of tool definitions or NULL. Result is a
 * malloc'ed NUL-terminated string.
 */
int qwen_chat_render(const qwen_chat_message *msgs, size_t n_msgs,
                     const char *tools_json, int add_generation_prompt,
                     int enable_thinking, char **out, size_t *out_len,
                     char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* QWEN_H */
