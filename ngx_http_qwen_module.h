
/*
 * ngx_http_qwen_module.h - types shared by the files of the nginx glue:
 * the per-model record (weights loaded in the master, one engine per
 * worker), the location configuration, the API routing table and the
 * per-request context. No model math and no JSON formats live here: the
 * engine (qwen.h) and the protocol layer (qwen_proto.h) do that.
 */

#ifndef _NGX_HTTP_QWEN_MODULE_H_INCLUDED_
#define _NGX_HTTP_QWEN_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <qwen.h>
#include <qwen_proto.h>


#define NGX_HTTP_QWEN_FLOAT_UNSET  (-1.0e30)


/* Engine settings: one set per model, shared by the locations serving it. */
typedef struct {
    ngx_int_t                    threads;    /* 0: cores / worker_processes */
    ngx_int_t                    slots;
    ngx_int_t                    ctx;
    ngx_int_t                    batch;
    ngx_int_t                    queue;
} ngx_http_qwen_engine_conf_t;


/*
 * A model, loaded once at configuration time in the master (file pages
 * mapped read-only, repacked layouts in shared anonymous memory), so every
 * worker forked afterwards shares one physical copy. The engine and its
 * eventfd connection are per worker, made in init_process.
 */
typedef struct {
    ngx_str_t                    path;       /* full path, NUL-terminated */
    qwen_model                  *model;
    const qwen_tokenizer        *tokenizer;
    const qwen_config           *config;
    time_t                       created;

    ngx_http_qwen_engine_conf_t  engine_conf;
    ngx_str_t                    engine_conf_location;
    ngx_uint_t                   used;       /* a location serves it */

    qwen_engine                 *engine;     /* per worker */
    ngx_connection_t            *notify;     /* the engine's eventfd */
    ngx_log_t                   *log;
} ngx_http_qwen_model_t;


typedef struct {
    ngx_array_t                  models;     /* ngx_http_qwen_model_t * */
} ngx_http_qwen_main_conf_t;


typedef struct ngx_http_qwen_route_s  ngx_http_qwen_route_t;
typedef struct ngx_http_qwen_loc_conf_s  ngx_http_qwen_loc_conf_t;

typedef ngx_int_t (*ngx_http_qwen_route_pt)(ngx_http_request_t *r,
    ngx_http_qwen_loc_conf_t *qlcf, ngx_http_qwen_route_t *route);


/* One endpoint of an API, matched by the end of the URI. */
struct ngx_http_qwen_route_s {
    ngx_str_t                    suffix;     /* "/chat/completions" */
    ngx_uint_t                   with_id;    /* suffix then "{id}" */
    ngx_uint_t                   methods;    /* NGX_HTTP_POST | ... */
    ngx_str_t                    allow;      /* for 405 answers */
    ngx_http_qwen_route_pt       handler;
    qp_api                       api;        /* generation endpoints */
    const char                  *id_prefix;  /* response ids */
};


/* What `qwen_api NAME;` selects: its endpoints and its error format. */
typedef struct {
    ngx_str_t                    name;
    ngx_http_qwen_route_t       *routes;     /* ends with a NULL handler */
    qp_api                       error_api;
} ngx_http_qwen_api_t;


struct ngx_http_qwen_loc_conf_s {
    ngx_http_qwen_model_t       *model;
    ngx_http_qwen_engine_conf_t  engine;

    ngx_http_qwen_api_t         *api;        /* not inherited */
    ngx_str_t                    location;

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
    ngx_str_t                    model_name;

    qp_config                    qp;         /* built at merge */
};


typedef struct {
    ngx_http_request_t          *request;
    ngx_http_qwen_loc_conf_t    *conf;
    ngx_http_qwen_route_t       *route;
    ngx_str_t                    id;         /* .../models/{id} */

    qp_request                  *preq;
    qp_response                 *resp;
    qwen_request                *req;
    qp_buf                       out;

    ngx_event_t                  timer;      /* qwen_timeout */
    ngx_chain_t                 *free;
    ngx_chain_t                 *busy;

    ngx_str_t                    error_body; /* nginx's own errors as JSON */

    unsigned                     own_response:1;
    unsigned                     replace_body:1;
    unsigned                     replaced:1;
    unsigned                     stream:1;
    unsigned                     header_sent:1;
    unsigned                     paused:1;
    unsigned                     stopped:1;
    unsigned                     finalized:1;
} ngx_http_qwen_ctx_t;


extern ngx_module_t  ngx_http_qwen_module;
extern ngx_http_qwen_api_t  ngx_http_qwen_apis[];


/* ngx_http_qwen_handler.c */
ngx_int_t ngx_http_qwen_handler(ngx_http_request_t *r);
void ngx_http_qwen_engine_events(ngx_http_qwen_model_t *m);

/* ngx_http_qwen_filter.c */
ngx_int_t ngx_http_qwen_filter_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_QWEN_MODULE_H_INCLUDED_ */
