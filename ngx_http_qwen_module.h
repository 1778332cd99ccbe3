
/*
 * ngx_http_qwen_module.h - what the glue's files share: the model record,
 * the configurations, the API routing tables, the metrics zone, the
 * per-request context, and their functions. Model math is the engine's
 * (qwen.h), JSON formats are the protocol layer's (qwen_proto.h).
 */

#ifndef _NGX_HTTP_QWEN_MODULE_H_INCLUDED_
#define _NGX_HTTP_QWEN_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <qwen.h>
#include <qwen_proto.h>


#define NGX_HTTP_QWEN_FLOAT_UNSET  (-1.0e30)

/* Workers (old and new generations together) whose engine gauges the
 * metrics zone keeps; more workers still count requests. */
#define NGX_HTTP_QWEN_METRICS_SLOTS  128


/* Engine settings: one set per model, shared by the locations serving it. */
typedef struct {
    ngx_int_t                    threads;    /* 0: cores / worker_processes */
    ngx_int_t                    slots;
    ngx_int_t                    ctx;
    ngx_int_t                    batch;
    ngx_int_t                    queue;
    ngx_uint_t                   kv_cache;   /* ngx_http_qwen_kv_caches[] */
    ngx_uint_t                   draft;      /* ngx_http_qwen_drafts[]: 1 ngram, 0 off */
    ngx_flag_t                   prefix_cache;        /* on / off */
    size_t                       prefix_cache_size;   /* bytes beyond the slots' */
} ngx_http_qwen_engine_conf_t;


/*
 * A model, loaded once at configuration time in the master (file pages
 * mapped read-only, repacked layouts in anonymous memory written before
 * the fork and never after), so every
 * worker forked afterwards shares one physical copy. The engine and its
 * eventfd connection are per worker, made in init_process
 * (ngx_http_qwen_engine.c).
 */
typedef struct {
    ngx_str_t                    path;       /* full path, NUL-terminated */
    qwen_model                  *model;
    qp_model_info               *info;       /* for the Ollama listings */
    const qwen_tokenizer        *tokenizer;
    const qwen_config           *config;
    time_t                       created;

    ngx_http_qwen_engine_conf_t  engine_conf;
    ngx_str_t                    engine_conf_location;
    ngx_uint_t                   used;       /* a location serves it */

    qwen_engine                 *engine;     /* per worker */
    ngx_int_t                    admit;      /* index in this worker's metrics
                                                slot admit[], or -1 */
    ngx_connection_t            *notify;     /* the engine's eventfd */
    ngx_log_t                   *log;
} ngx_http_qwen_model_t;


/*
 * The metrics zone: request counters summed by every worker into one
 * record, and per worker process a slot with its engines' gauges (running,
 * waiting, KV cache), claimed by pid at start and freed at exit, so a
 * scrape on any worker adds up the whole server.
 */
/* Models whose admission is counted across workers; more are admitted by
 * each worker's own queue alone. */
#define NGX_HTTP_QWEN_ADMIT_MODELS   8

/* What one worker holds of one model's server-wide capacity. */
typedef struct {
    uint32_t                     key;        /* ngx_crc32 of the model path, 0: none */
    ngx_uint_t                   held;       /* admitted, not yet ended */
    ngx_uint_t                   capacity;   /* qwen_slots + qwen_queue */
} ngx_http_qwen_admit_t;

typedef struct {
    ngx_pid_t                    pid;        /* 0: free */
    ngx_msec_t                   alive_at;   /* last seen alive by admission */
    qp_metrics                   gauges;
    ngx_http_qwen_admit_t        admit[NGX_HTTP_QWEN_ADMIT_MODELS];
} ngx_http_qwen_metrics_slot_t;


typedef struct {
    qp_metrics                   counters;
    ngx_http_qwen_metrics_slot_t slots[NGX_HTTP_QWEN_METRICS_SLOTS];
} ngx_http_qwen_metrics_sh_t;


typedef struct {
    ngx_http_qwen_metrics_sh_t  *sh;
    ngx_slab_pool_t             *shpool;
} ngx_http_qwen_metrics_t;


typedef struct {
    ngx_array_t                  models;     /* ngx_http_qwen_model_t * */
    ngx_uint_t                   used;       /* a qwen_* handler is set */
    ngx_shm_zone_t              *metrics_zone;
    ngx_int_t                    metrics_slot;   /* this worker's, or -1 */
    ngx_event_t                  metrics_timer;
    ngx_msec_t                   drain_timeout;  /* qwen_drain_timeout */
} ngx_http_qwen_main_conf_t;


typedef struct ngx_http_qwen_route_s  ngx_http_qwen_route_t;
typedef struct ngx_http_qwen_quota_zone_s  ngx_http_qwen_quota_zone_t;

#define NGX_HTTP_QWEN_QUOTA_PASSED    1
#define NGX_HTTP_QWEN_QUOTA_REJECTED  2

/* A request's part of a token quota (ngx_http_qwen_quota.c). */
typedef struct {
    ngx_http_qwen_quota_zone_t  *zone;       /* NULL: nothing reserved */
    ngx_str_t                    key;
    uint32_t                     hash;
    int64_t                      reserved;   /* prompt + max_tokens */
    int64_t                      used;       /* prompt + generated */
    int64_t                      refunded;
    ngx_uint_t                   status;     /* NGX_HTTP_QWEN_QUOTA_* */
    unsigned                     settled:1;
} ngx_http_qwen_quota_req_t;

typedef struct ngx_http_qwen_loc_conf_s  ngx_http_qwen_loc_conf_t;
typedef struct ngx_http_qwen_ctx_s  ngx_http_qwen_ctx_t;

/* An endpoint: ctx holds the location's configuration and the route. */
typedef ngx_int_t (*ngx_http_qwen_route_pt)(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);


/* route flags */
#define NGX_HTTP_QWEN_ID       0x01   /* suffix then "{id}" */
#define NGX_HTTP_QWEN_ROOT     0x02   /* the location's own URI, or "/" */
#define NGX_HTTP_QWEN_ANY      0x04   /* any URI (a handler per location) */
#define NGX_HTTP_QWEN_BODY     0x08   /* the handler runs with the body in */
#define NGX_HTTP_QWEN_ENGINE   0x10   /* 503 at once if no engine runs */
#define NGX_HTTP_QWEN_PICK     0x20   /* SageMaker: the body picks the API */


/* One endpoint of an API, matched by the end of the URI. */
struct ngx_http_qwen_route_s {
    ngx_str_t                    suffix;     /* "/chat/completions" */
    ngx_uint_t                   flags;      /* NGX_HTTP_QWEN_* */
    ngx_uint_t                   methods;    /* NGX_HTTP_POST | ... */
    ngx_str_t                    allow;      /* for 405 answers */
    ngx_http_qwen_route_pt       handler;
    qp_api                       api;        /* generation endpoints */
    const char                  *id_prefix;  /* response ids */
};


/* What `qwen_api NAME;` (or an operations directive such as `qwen_health;`)
 * selects: its endpoints and its error format. */
typedef struct {
    ngx_str_t                    name;
    ngx_http_qwen_route_t       *routes;     /* ends with a NULL handler */
    qp_api                       error_api;
    ngx_uint_t                   no_model;   /* serves without qwen_model */
    ngx_uint_t                   custom_attributes;  /* SageMaker echo */
} ngx_http_qwen_api_t;


struct ngx_http_qwen_loc_conf_s {
    ngx_http_qwen_model_t       *model;
    ngx_http_qwen_engine_conf_t  engine;

    ngx_http_qwen_api_t         *api;        /* not inherited */
    ngx_str_t                    location;
    ngx_uint_t                   health_saturated_503;

    ngx_uint_t                   queue_full_status;
    ngx_msec_t                   timeout;
    time_t                       retry_after;

    double                       temperature;
    double                       top_p;
    double                       min_p;
    double                       presence_penalty;
    double                       frequency_penalty;
    double                       repetition_penalty;
    ngx_int_t                    top_k;
    ngx_int_t                    max_tokens;
    ngx_flag_t                   enable_thinking;
    ngx_uint_t                   reasoning_field;
    ngx_int_t                    thinking_budget;   /* -1: off */
    ngx_int_t                    repetition_guard;  /* 0: off */
    ngx_str_t                    model_name;
    ngx_shm_zone_t              *limit_tokens;   /* qwen_limit_tokens */

    qp_config                    qp;         /* built at merge */
};


struct ngx_http_qwen_ctx_s {
    ngx_http_request_t          *request;
    ngx_http_qwen_loc_conf_t    *conf;
    ngx_http_qwen_route_t       *route;
    ngx_str_t                    id;         /* .../models/{id} */
    qp_api                       api;        /* of this generation */
    u_char                      *body;       /* NUL-terminated copy */
    size_t                       body_len;

    qp_request                  *preq;
    qp_response                 *resp;
    qwen_request                *req;
    qp_buf                       out;

    ngx_event_t                  timer;      /* qwen_timeout */
    ngx_queue_t                  queue;      /* this worker's generations */
    ngx_chain_t                 *free;
    ngx_chain_t                 *busy;

    ngx_str_t                    error_body; /* nginx's own errors as JSON */

    ngx_http_qwen_quota_req_t    quota;

    /* for the $qwen_ variables, set once the generation has ended */
    qwen_request_timing          timing;
    qp_histogram                 itl;        /* inter-token gaps so far */
    size_t                       completion_tokens;
    const char                  *finish_reason;

    unsigned                     own_response:1;
    unsigned                     replace_body:1;
    unsigned                     replaced:1;
    unsigned                     stream:1;
    unsigned                     header_sent:1;
    unsigned                     paused:1;
    unsigned                     stopped:1;
    unsigned                     finalized:1;
    unsigned                     done:1;     /* timing and reason are set */
    unsigned                     queued:1;   /* in the generations queue */
    unsigned                     admitted:1; /* counted in the metrics zone */
};


extern ngx_module_t  ngx_http_qwen_module;
extern ngx_http_qwen_api_t  ngx_http_qwen_apis[];
extern ngx_http_qwen_api_t  ngx_http_qwen_health_api;
extern ngx_http_qwen_api_t  ngx_http_qwen_metrics_api;
extern ngx_http_qwen_api_t  ngx_http_qwen_tokenize_api;
extern ngx_http_qwen_api_t  ngx_http_qwen_detokenize_api;
extern ngx_conf_enum_t  ngx_http_qwen_kv_caches[];


/* ngx_http_qwen_engine.c */
ngx_int_t ngx_http_qwen_init_process(ngx_cycle_t *cycle);
void ngx_http_qwen_exit_process(ngx_cycle_t *cycle);
void ngx_http_qwen_engine_stop(ngx_http_qwen_model_t *m);
extern ngx_uint_t  ngx_http_qwen_draining;
void ngx_http_qwen_drain_add(ngx_http_qwen_ctx_t *ctx);
void ngx_http_qwen_drain_remove(ngx_http_qwen_ctx_t *ctx);

/* ngx_http_qwen_handler.c */
ngx_int_t ngx_http_qwen_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_qwen_generate(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
void ngx_http_qwen_engine_events(ngx_http_qwen_model_t *m);
void ngx_http_qwen_shutdown(ngx_http_qwen_ctx_t *ctx);
ngx_int_t ngx_http_qwen_send_body(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_uint_t status, const char *content_type,
    const char *data, size_t len);
ngx_int_t ngx_http_qwen_send_error(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_uint_t status, const char *type,
    const char *message, time_t retry_after);
ngx_int_t ngx_http_qwen_send_error_code(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_uint_t status, const char *type,
    const char *code, const char *message, time_t retry_after);
ngx_int_t ngx_http_qwen_send_qp_error(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, qp_error *err);

/* ngx_http_qwen_metrics.c */
ngx_int_t ngx_http_qwen_metrics_add_zone(ngx_conf_t *cf);
ngx_int_t ngx_http_qwen_metrics_init_process(ngx_cycle_t *cycle);
void ngx_http_qwen_metrics_exit_process(ngx_cycle_t *cycle);
void ngx_http_qwen_metrics_refresh(ngx_cycle_t *cycle);
void ngx_http_qwen_metrics_request(ngx_http_qwen_ctx_t *ctx);
ngx_int_t ngx_http_qwen_metrics_collect(ngx_cycle_t *cycle, qp_metrics *m);
void ngx_http_qwen_metrics_refused(qp_refusal why);
ngx_int_t ngx_http_qwen_zone_record(ngx_shm_zone_t *shm_zone,
    ngx_slab_pool_t *old_pool, void *old_sh, size_t size,
    ngx_slab_pool_t **pool, void **sh);
ngx_int_t ngx_http_qwen_admit(ngx_http_qwen_ctx_t *ctx, ngx_uint_t *held,
    ngx_uint_t *capacity);
void ngx_http_qwen_admit_release(ngx_http_qwen_ctx_t *ctx);
ngx_int_t ngx_http_qwen_admit_full(ngx_http_qwen_model_t *m);
ngx_int_t ngx_http_qwen_add_variables(ngx_conf_t *cf,
    ngx_http_variable_t *vars);
extern ngx_http_variable_t  ngx_http_qwen_vars[];

/* ngx_http_qwen_quota.c */
char *ngx_http_qwen_limit_tokens(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_qwen_quota_reserve(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, size_t n_prompt, ngx_int_t max_tokens,
    ngx_int_t *rc);
void ngx_http_qwen_quota_settle(ngx_http_qwen_ctx_t *ctx, size_t used);
ngx_int_t ngx_http_qwen_quota_headers(ngx_http_request_t *r);
extern ngx_http_variable_t  ngx_http_qwen_quota_vars[];

/* ngx_http_qwen_filter.c */
ngx_int_t ngx_http_qwen_filter_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_QWEN_MODULE_H_INCLUDED_ */
