
/*
 * ngx_http_qwen_module.c - the module's configuration: directives, their
 * validation at `nginx -t`, and models loaded once in the master while the
 * configuration is read (so workers share one copy of the weights). The
 * workers' engines are in ngx_http_qwen_engine.c, request handling in
 * ngx_http_qwen_handler.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <unistd.h>

#include "ngx_http_qwen_module.h"


typedef struct {
    double                       low;
    double                       high;
} ngx_http_qwen_float_bounds_t;


/* A number within bounds, or "off" for the value off. */
typedef struct {
    ngx_int_t                    low;
    ngx_int_t                    high;
    ngx_int_t                    off;
} ngx_http_qwen_num_off_t;


static void *ngx_http_qwen_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_qwen_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_qwen_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_qwen_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_qwen_merge_engine(ngx_conf_t *cf,
    ngx_http_qwen_loc_conf_t *conf);
static char *ngx_http_qwen_build_qp(ngx_conf_t *cf,
    ngx_http_qwen_loc_conf_t *conf);
static ngx_int_t ngx_http_qwen_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_qwen_postconfiguration(ngx_conf_t *cf);

static char *ngx_http_qwen_model(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_http_qwen_model_t *ngx_http_qwen_model_get(ngx_conf_t *cf,
    ngx_str_t *path);
static void ngx_http_qwen_model_cleanup(void *data);
static char *ngx_http_qwen_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_qwen_ops(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_qwen_set_handler(ngx_conf_t *cf,
    ngx_http_qwen_loc_conf_t *qlcf, ngx_http_qwen_api_t *api);
static char *ngx_http_qwen_threads(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_qwen_prefix_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_qwen_queue_full_status(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_qwen_check_num_bounds(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_qwen_set_float(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_qwen_set_num_off(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_num_bounds_t  ngx_http_qwen_slots_bounds = {
    ngx_http_qwen_check_num_bounds, 1, 1024
};

static ngx_conf_num_bounds_t  ngx_http_qwen_ctx_bounds = {
    ngx_http_qwen_check_num_bounds, 16, 1 << 24
};

static ngx_conf_num_bounds_t  ngx_http_qwen_batch_bounds = {
    ngx_http_qwen_check_num_bounds, 1, 65536
};

static ngx_conf_num_bounds_t  ngx_http_qwen_queue_bounds = {
    ngx_http_qwen_check_num_bounds, 0, 1 << 20
};

static ngx_conf_num_bounds_t  ngx_http_qwen_top_k_bounds = {
    ngx_http_qwen_check_num_bounds, 0, 1 << 20
};

static ngx_conf_num_bounds_t  ngx_http_qwen_max_tokens_bounds = {
    ngx_http_qwen_check_num_bounds, 1, 1 << 24
};

static ngx_http_qwen_num_off_t  ngx_http_qwen_thinking_budget_bounds = {
    0, QP_THINKING_BUDGET_MAX, -1
};

static ngx_http_qwen_num_off_t  ngx_http_qwen_repetition_guard_bounds = {
    2, 1 << 20, 0
};

static ngx_http_qwen_float_bounds_t  ngx_http_qwen_temperature_bounds = {
    0.0, 2.0
};

static ngx_http_qwen_float_bounds_t  ngx_http_qwen_unit_bounds = {
    0.0, 1.0
};

static ngx_http_qwen_float_bounds_t  ngx_http_qwen_penalty_bounds = {
    -2.0, 2.0
};

static ngx_http_qwen_float_bounds_t  ngx_http_qwen_repetition_bounds = {
    0.01, 10.0
};

/* qwen_kv_cache values, in the engine's spelling (qwen_ctx_params) */
ngx_conf_enum_t  ngx_http_qwen_kv_caches[] = {
    { ngx_string("auto"), 0 },
    { ngx_string("f16"), 1 },
    { ngx_string("bf16"), 2 },
    { ngx_string("f32"), 3 },
    { ngx_string("q8_0"), 4 },
    { ngx_null_string, 0 }
};

/* qwen_draft: n-gram drafts or none (qwen_engine_params.draft) */
static ngx_conf_enum_t  ngx_http_qwen_drafts[] = {
    { ngx_string("off"), 0 },
    { ngx_string("ngram"), 1 },
    { ngx_null_string, 0 }
};

static ngx_conf_enum_t  ngx_http_qwen_reasoning_fields[] = {
    { ngx_string("reasoning_content"), 0 },
    { ngx_string("reasoning"), 1 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_qwen_commands[] = {

    { ngx_string("qwen_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_model,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_model_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, model_name),
      NULL },

    { ngx_string("qwen_drain_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_qwen_main_conf_t, drain_timeout),
      NULL },

    { ngx_string("qwen_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_qwen_ops,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_http_qwen_health_api },

    { ngx_string("qwen_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_qwen_ops,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_http_qwen_metrics_api },

    { ngx_string("qwen_tokenize"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_qwen_ops,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_http_qwen_tokenize_api },

    { ngx_string("qwen_detokenize"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_qwen_ops,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      &ngx_http_qwen_detokenize_api },

    { ngx_string("qwen_threads"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_threads,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, engine.threads),
      NULL },

    { ngx_string("qwen_slots"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, engine.slots),
      &ngx_http_qwen_slots_bounds },

    { ngx_string("qwen_ctx"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, engine.ctx),
      &ngx_http_qwen_ctx_bounds },

    { ngx_string("qwen_batch"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, engine.batch),
      &ngx_http_qwen_batch_bounds },

    { ngx_string("qwen_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, engine.queue),
      &ngx_http_qwen_queue_bounds },

    { ngx_string("qwen_draft"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, engine.draft),
      &ngx_http_qwen_drafts },

    { ngx_string("qwen_kv_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, engine.kv_cache),
      &ngx_http_qwen_kv_caches },

    { ngx_string("qwen_prefix_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_prefix_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_queue_full_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_queue_full_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("qwen_retry_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, retry_after),
      NULL },

    { ngx_string("qwen_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, timeout),
      NULL },

    { ngx_string("qwen_temperature"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_set_float,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, temperature),
      &ngx_http_qwen_temperature_bounds },

    { ngx_string("qwen_top_p"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_set_float,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, top_p),
      &ngx_http_qwen_unit_bounds },

    { ngx_string("qwen_min_p"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_set_float,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, min_p),
      &ngx_http_qwen_unit_bounds },

    { ngx_string("qwen_top_k"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, top_k),
      &ngx_http_qwen_top_k_bounds },

    { ngx_string("qwen_presence_penalty"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_set_float,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, presence_penalty),
      &ngx_http_qwen_penalty_bounds },

    { ngx_string("qwen_frequency_penalty"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_set_float,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, frequency_penalty),
      &ngx_http_qwen_penalty_bounds },

    { ngx_string("qwen_repetition_penalty"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_set_float,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, repetition_penalty),
      &ngx_http_qwen_repetition_bounds },

    { ngx_string("qwen_max_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, max_tokens),
      &ngx_http_qwen_max_tokens_bounds },

    { ngx_string("qwen_enable_thinking"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, enable_thinking),
      NULL },

    { ngx_string("qwen_reasoning_field"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, reasoning_field),
      &ngx_http_qwen_reasoning_fields },

    { ngx_string("qwen_thinking_budget"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_set_num_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, thinking_budget),
      &ngx_http_qwen_thinking_budget_bounds },

    { ngx_string("qwen_repetition_guard"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_qwen_set_num_off,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_qwen_loc_conf_t, repetition_guard),
      &ngx_http_qwen_repetition_guard_bounds },

    { ngx_string("qwen_limit_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_qwen_limit_tokens,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_qwen_module_ctx = {
    ngx_http_qwen_preconfiguration,        /* preconfiguration */
    ngx_http_qwen_postconfiguration,       /* postconfiguration */

    ngx_http_qwen_create_main_conf,        /* create main configuration */
    ngx_http_qwen_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_qwen_create_loc_conf,         /* create location configuration */
    ngx_http_qwen_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_qwen_module = {
    NGX_MODULE_V1,
    &ngx_http_qwen_module_ctx,             /* module context */
    ngx_http_qwen_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_qwen_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_qwen_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* ------------------------------------------------------ configuration */

static void *
ngx_http_qwen_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_main_conf_t));
    if (qmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&qmcf->models, cf->pool, 2,
                       sizeof(ngx_http_qwen_model_t *))
        != NGX_OK)
    {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     qmcf->used = 0;
     *     qmcf->metrics_zone = NULL;
     *     qmcf->metrics_timer = { 0 };
     */

    qmcf->metrics_slot = -1;
    qmcf->drain_timeout = NGX_CONF_UNSET_MSEC;

    return qmcf;
}


/* 25 s: a drain ends before SageMaker's SIGKILL, 30 s after its SIGTERM */
static char *
ngx_http_qwen_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_qwen_main_conf_t  *qmcf = conf;

    ngx_conf_init_msec_value(qmcf->drain_timeout, 25000);

    return NGX_CONF_OK;
}


static void *
ngx_http_qwen_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_qwen_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->api = NULL;
     *     conf->location = { 0, NULL };
     *     conf->model_name = { 0, NULL };
     *     conf->qp = { 0 };
     */

    conf->model = NGX_CONF_UNSET_PTR;
    conf->engine.threads = NGX_CONF_UNSET;
    conf->engine.slots = NGX_CONF_UNSET;
    conf->engine.ctx = NGX_CONF_UNSET;
    conf->engine.batch = NGX_CONF_UNSET;
    conf->engine.queue = NGX_CONF_UNSET;
    conf->engine.kv_cache = NGX_CONF_UNSET_UINT;
    conf->engine.draft = NGX_CONF_UNSET_UINT;
    conf->engine.prefix_cache = NGX_CONF_UNSET;
    conf->engine.prefix_cache_size = NGX_CONF_UNSET_SIZE;

    conf->queue_full_status = NGX_CONF_UNSET_UINT;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->retry_after = NGX_CONF_UNSET;

    conf->temperature = NGX_HTTP_QWEN_FLOAT_UNSET;
    conf->top_p = NGX_HTTP_QWEN_FLOAT_UNSET;
    conf->min_p = NGX_HTTP_QWEN_FLOAT_UNSET;
    conf->presence_penalty = NGX_HTTP_QWEN_FLOAT_UNSET;
    conf->frequency_penalty = NGX_HTTP_QWEN_FLOAT_UNSET;
    conf->repetition_penalty = NGX_HTTP_QWEN_FLOAT_UNSET;
    conf->top_k = NGX_CONF_UNSET;
    conf->max_tokens = NGX_CONF_UNSET;
    conf->enable_thinking = NGX_CONF_UNSET;
    conf->reasoning_field = NGX_CONF_UNSET_UINT;
    conf->thinking_budget = NGX_CONF_UNSET;
    conf->repetition_guard = NGX_CONF_UNSET;
    conf->limit_tokens = NGX_CONF_UNSET_PTR;

    return conf;
}


#define ngx_http_qwen_merge_float(conf, prev)                               \
    if (conf == NGX_HTTP_QWEN_FLOAT_UNSET) {                                \
        conf = prev;                                                         \
    }


static char *
ngx_http_qwen_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_qwen_loc_conf_t *prev = parent;
    ngx_http_qwen_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->model, prev->model, NULL);

    ngx_conf_merge_value(conf->engine.threads, prev->engine.threads, 0);
    ngx_conf_merge_value(conf->engine.slots, prev->engine.slots, 4);
    ngx_conf_merge_value(conf->engine.ctx, prev->engine.ctx, 0);
    ngx_conf_merge_value(conf->engine.batch, prev->engine.batch, 256);
    ngx_conf_merge_value(conf->engine.queue, prev->engine.queue, 16);
    ngx_conf_merge_uint_value(conf->engine.kv_cache, prev->engine.kv_cache, 0);
    ngx_conf_merge_uint_value(conf->engine.draft, prev->engine.draft, 1);
    ngx_conf_merge_value(conf->engine.prefix_cache, prev->engine.prefix_cache, 1);
    ngx_conf_merge_size_value(conf->engine.prefix_cache_size,
                              prev->engine.prefix_cache_size, 256 * 1024 * 1024);

    ngx_conf_merge_uint_value(conf->queue_full_status,
                              prev->queue_full_status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 300000);
    ngx_conf_merge_sec_value(conf->retry_after, prev->retry_after, 1);

    ngx_http_qwen_merge_float(conf->temperature, prev->temperature);
    ngx_http_qwen_merge_float(conf->top_p, prev->top_p);
    ngx_http_qwen_merge_float(conf->min_p, prev->min_p);
    ngx_http_qwen_merge_float(conf->presence_penalty,
                              prev->presence_penalty);
    ngx_http_qwen_merge_float(conf->frequency_penalty,
                              prev->frequency_penalty);
    ngx_http_qwen_merge_float(conf->repetition_penalty,
                              prev->repetition_penalty);
    ngx_conf_merge_value(conf->top_k, prev->top_k, NGX_CONF_UNSET);
    ngx_conf_merge_value(conf->max_tokens, prev->max_tokens, NGX_CONF_UNSET);
    ngx_conf_merge_value(conf->enable_thinking, prev->enable_thinking,
                         NGX_CONF_UNSET);
    ngx_conf_merge_uint_value(conf->reasoning_field, prev->reasoning_field,
                              NGX_CONF_UNSET_UINT);
    ngx_conf_merge_value(conf->thinking_budget, prev->thinking_budget, -1);
    ngx_conf_merge_value(conf->repetition_guard, prev->repetition_guard,
                         QP_REPETITION_GUARD_DEFAULT);
    ngx_conf_merge_str_value(conf->model_name, prev->model_name, "qwen3");
    ngx_conf_merge_ptr_value(conf->limit_tokens, prev->limit_tokens, NULL);

    /* qwen_api is not inherited, as proxy_pass is not */

    if (conf->api == NULL || conf->api->no_model) {
        return NGX_CONF_OK;
    }

    if (conf->model == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" in location \"%V\" has no model: "
                           "add \"qwen_model /path/to/model;\" to the "
                           "location or an enclosing block",
                           conf->api->routes[0].flags & NGX_HTTP_QWEN_ANY
                           ? (char *) conf->api->name.data : "qwen_api",
                           &conf->location);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_qwen_merge_engine(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_qwen_build_qp(cf, conf);
}


/*
 * Engine settings belong to the model's engine (one per worker): check them
 * against the model and against the other locations serving the model.
 */
static char *
ngx_http_qwen_merge_engine(ngx_conf_t *cf, ngx_http_qwen_loc_conf_t *conf)
{
    size_t                        kv_bytes, phys_bytes;
    long                          pages, page_size;
    ngx_int_t                     max_ctx;
    const char                   *kv_format;
    qwen_ctx_params               cp;
    ngx_http_qwen_model_t        *m;
    ngx_http_qwen_engine_conf_t  *e, *s;

    m = conf->model;
    e = &conf->engine;
    max_ctx = m->config->max_position_embeddings;

    if (e->ctx == 0) {
        e->ctx = ngx_min(4096, max_ctx);

    } else if (e->ctx > max_ctx) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"qwen_ctx %i\" in location \"%V\" is more than "
                           "the %i positions model \"%V\" supports "
                           "(max_position_embeddings)",
                           e->ctx, &conf->location, max_ctx, &m->path);
        return NGX_CONF_ERROR;
    }

    if (e->batch > e->ctx) {
        e->batch = e->ctx;
    }

    if (!qwen_kv_format_available(
             (char *) ngx_http_qwen_kv_caches[e->kv_cache].name.data))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"qwen_kv_cache %V\" in location \"%V\" needs "
                           "kernels this CPU lacks (the %s kernels have no "
                           "%V attention): use \"auto\", \"f32\", \"f16\" "
                           "or \"q8_0\"",
                           &ngx_http_qwen_kv_caches[e->kv_cache].name,
                           &conf->location, qwen_kernels_default(),
                           &ngx_http_qwen_kv_caches[e->kv_cache].name);
        return NGX_CONF_ERROR;
    }

    cp = qwen_ctx_default_params();
    cp.n_seqs = (int) e->slots;
    cp.n_ctx = (int) e->ctx;
    cp.kv_format = (char *) ngx_http_qwen_kv_caches[e->kv_cache].name.data;
    kv_format = qwen_kv_format_pick(m->model, &cp);

    if (kv_format == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"qwen_kv_cache %V\" in location \"%V\" cannot "
                           "hold the heads of model \"%V\" (%d dimensions)",
                           &ngx_http_qwen_kv_caches[e->kv_cache].name,
                           &conf->location, &m->path, m->config->head_dim);
        return NGX_CONF_ERROR;
    }

    /* the slots' own KV cache in its format, and what the prefix cache
     * keeps beyond it */
    kv_bytes = qwen_kv_cache_bytes(m->model, &cp)
               + (e->prefix_cache ? e->prefix_cache_size : 0);

    pages = sysconf(_SC_PHYS_PAGES);
    page_size = sysconf(_SC_PAGESIZE);

    if (pages > 0 && page_size > 0) {
        phys_bytes = (size_t) pages * (size_t) page_size;

        if (kv_bytes > phys_bytes / 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"qwen_slots %i\" x \"qwen_ctx %i\" and "
                               "\"qwen_prefix_cache\" in location \"%V\" "
                               "need %uz MiB of KV cache per worker (%s), "
                               "more than half of this machine's %uz MiB of "
                               "memory: lower qwen_slots, qwen_ctx or "
                               "qwen_prefix_cache, or take a smaller "
                               "qwen_kv_cache format",
                               e->slots, e->ctx, &conf->location,
                               kv_bytes >> 20, kv_format, phys_bytes >> 20);
            return NGX_CONF_ERROR;
        }
    }

    if (!m->used) {
        m->used = 1;
        m->engine_conf = *e;
        m->engine_conf_location = conf->location;
        m->info->kv_cache_bytes = kv_bytes;    /* what /api/ps reports */
        return NGX_CONF_OK;
    }

    s = &m->engine_conf;

    if (s->kv_cache != e->kv_cache) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "locations \"%V\" and \"%V\" serve model \"%V\" "
                           "with different \"qwen_kv_cache\" (%V/%V): a model "
                           "has one engine per worker",
                           &m->engine_conf_location, &conf->location, &m->path,
                           &ngx_http_qwen_kv_caches[s->kv_cache].name,
                           &ngx_http_qwen_kv_caches[e->kv_cache].name);
        return NGX_CONF_ERROR;
    }

    if (s->threads != e->threads || s->slots != e->slots
        || s->ctx != e->ctx || s->batch != e->batch || s->queue != e->queue
        || s->prefix_cache != e->prefix_cache
        || (e->prefix_cache && s->prefix_cache_size != e->prefix_cache_size)
        || s->draft != e->draft)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "locations \"%V\" and \"%V\" serve model \"%V\" "
                           "with different engine settings (threads %i/%i, "
                           "slots %i/%i, ctx %i/%i, batch %i/%i, "
                           "queue %i/%i, prefix cache %z/%z bytes, draft "
                           "%V/%V): a model has one engine per worker, so "
                           "set qwen_threads, qwen_slots, qwen_ctx, "
                           "qwen_batch, qwen_queue, qwen_prefix_cache and "
                           "qwen_draft alike",
                           &m->engine_conf_location, &conf->location,
                           &m->path, s->threads, e->threads,
                           s->slots, e->slots, s->ctx, e->ctx,
                           s->batch, e->batch, s->queue, e->queue,
                           s->prefix_cache ? (ssize_t) s->prefix_cache_size : -1,
                           e->prefix_cache ? (ssize_t) e->prefix_cache_size : -1,
                           &ngx_http_qwen_drafts[s->draft].name,
                           &ngx_http_qwen_drafts[e->draft].name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* The protocol layer's view of a location: names, defaults, limits. */
static char *
ngx_http_qwen_build_qp(ngx_conf_t *cf, ngx_http_qwen_loc_conf_t *conf)
{
    u_char     *name;
    qp_config  *qp;

    qp = &conf->qp;
    qp_config_defaults(qp);

    name = ngx_pnalloc(cf->pool, conf->model_name.len + 1);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(name, conf->model_name.data, conf->model_name.len + 1);
    qp->model_name = (const char *) name;

    qp->n_ctx = (int) conf->engine.ctx;

    if (conf->temperature != NGX_HTTP_QWEN_FLOAT_UNSET) {
        qp->sampling.temperature = (float) conf->temperature;
    }

    if (conf->top_p != NGX_HTTP_QWEN_FLOAT_UNSET) {
        qp->sampling.top_p = (float) conf->top_p;
    }

    if (conf->min_p != NGX_HTTP_QWEN_FLOAT_UNSET) {
        qp->sampling.min_p = (float) conf->min_p;
    }

    if (conf->presence_penalty != NGX_HTTP_QWEN_FLOAT_UNSET) {
        qp->sampling.presence_penalty = (float) conf->presence_penalty;
    }

    if (conf->frequency_penalty != NGX_HTTP_QWEN_FLOAT_UNSET) {
        qp->sampling.frequency_penalty = (float) conf->frequency_penalty;
    }

    if (conf->repetition_penalty != NGX_HTTP_QWEN_FLOAT_UNSET) {
        qp->sampling.repetition_penalty = (float) conf->repetition_penalty;
    }

    if (conf->top_k != NGX_CONF_UNSET) {
        qp->sampling.top_k = (int) conf->top_k;
    }

    if (conf->max_tokens != NGX_CONF_UNSET) {
        qp->max_tokens = (int) conf->max_tokens;
    }

    if (conf->enable_thinking != NGX_CONF_UNSET) {
        qp->enable_thinking = (int) conf->enable_thinking;
    }

    if (conf->reasoning_field != NGX_CONF_UNSET_UINT) {
        qp->reasoning_field = (int) conf->reasoning_field;
    }

    qp->thinking_budget = (int) conf->thinking_budget;
    qp->repetition_guard = (int) conf->repetition_guard;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_qwen_preconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_qwen_add_variables(cf, ngx_http_qwen_vars) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_qwen_add_variables(cf, ngx_http_qwen_quota_vars);
}


static ngx_int_t
ngx_http_qwen_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_qwen_module);

    /* the metrics zone only where qwen handlers are configured */

    if (qmcf->used && ngx_http_qwen_metrics_add_zone(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_qwen_filter_init(cf);
}


/* ----------------------------------------------------------- directives */

static char *
ngx_http_qwen_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t *qlcf = conf;

    ngx_str_t  *value, path;

    if (qlcf->model != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (path.len == 0) {
        return "needs a model path (a .gguf file or a Hugging Face "
               "directory)";
    }

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    qlcf->model = ngx_http_qwen_model_get(cf, &path);
    if (qlcf->model == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Load a model while the configuration is read (in the master, or in
 * `nginx -t`), once per path: locations naming the same file share it.
 * A pool cleanup frees it with the cycle, so after a reload the master
 * drops the old copy while old workers keep their own mapping.
 */
static ngx_http_qwen_model_t *
ngx_http_qwen_model_get(ngx_conf_t *cf, ngx_str_t *path)
{
    char                        err[QWEN_ERR_LEN];
    ngx_uint_t                  i;
    qwen_model                 *model;
    ngx_pool_cleanup_t         *cln;
    ngx_http_qwen_model_t      *m, **mp;
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_qwen_module);

    mp = qmcf->models.elts;
    for (i = 0; i < qmcf->models.nelts; i++) {
        if (mp[i]->path.len == path->len
            && ngx_strncmp(mp[i]->path.data, path->data, path->len) == 0)
        {
            return mp[i];
        }
    }

    m = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_model_t));
    if (m == NULL) {
        return NULL;
    }

    m->path.len = path->len;
    m->path.data = ngx_pnalloc(cf->pool, path->len + 1);
    if (m->path.data == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(m->path.data, path->data, path->len + 1);

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    err[0] = '\0';

    model = qwen_model_load((const char *) m->path.data, err, sizeof(err));
    if (model == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "qwen_model \"%V\" cannot be loaded: %s",
                           &m->path, err);
        return NULL;
    }

    m->model = model;
    m->config = qwen_model_config(model);
    m->tokenizer = qwen_model_tokenizer(model);
    m->created = ngx_time();

    cln->handler = ngx_http_qwen_model_cleanup;
    cln->data = m;

    m->info = ngx_pcalloc(cf->pool, sizeof(qp_model_info));
    if (m->info == NULL) {
        return NULL;
    }

    if (qp_model_info_from_model(model, (const char *) m->path.data, m->info)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, ngx_errno,
                           "qwen_model \"%V\": cannot stat the model for "
                           "its size and date", &m->path);
    }

    if (m->tokenizer == NULL) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "qwen_model \"%V\" has no tokenizer: only "
                           "prompts given as token ids can be served",
                           &m->path);

    } else {
        /* structured output's per-token tables (~2.5 MB, ~20 ms) are
         * built with the first grammar: here, so the workers share them
         * and their first constrained request does not pay for them */
        qwen_grammar  *g = qwen_grammar_new_json(m->tokenizer, NULL, err,
                                                 sizeof(err));

        qwen_grammar_free(g);
    }

    /* the kernel table this CPU got (dispatch.c): which of the x86 or
     * arm64 tables serves is the first thing to know about its speed */
    ngx_log_error(NGX_LOG_NOTICE, cf->log, 0,
                  "qwen: model \"%V\" loaded: %d layers, hidden %d, "
                  "%s, %uz MiB of weights, %s kernels",
                  &m->path, m->config->n_layers, m->config->hidden_size,
                  qwen_model_describe(model),
                  qwen_model_weight_bytes(model) >> 20, qwen_kernels_default());

    mp = ngx_array_push(&qmcf->models);
    if (mp == NULL) {
        return NULL;
    }

    *mp = m;

    return m;
}


static void
ngx_http_qwen_model_cleanup(void *data)
{
    ngx_http_qwen_model_t  *m = data;

    ngx_http_qwen_engine_stop(m);

    if (m->model) {
        qwen_model_free(m->model);
        m->model = NULL;
    }
}


static char *
ngx_http_qwen_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t *qlcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (qlcf->api != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_qwen_apis[i].name.len; i++) {
        if (ngx_http_qwen_apis[i].name.len == value[1].len
            && ngx_strncmp(ngx_http_qwen_apis[i].name.data, value[1].data,
                           value[1].len) == 0)
        {
            return ngx_http_qwen_set_handler(cf, qlcf,
                                             &ngx_http_qwen_apis[i]);
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown API \"%V\" in \"qwen_api\": the module "
                       "serves \"openai\", \"ollama\" and \"sagemaker\"",
                       &value[1]);

    return NGX_CONF_ERROR;
}


/*
 * qwen_health [saturated=200|503]; qwen_metrics; qwen_tokenize;
 * qwen_detokenize; - one operations endpoint served in this location,
 * whatever its URI (cmd->post is its API).
 */
static char *
ngx_http_qwen_ops(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t *qlcf = conf;

    ngx_str_t  *value;

    if (qlcf->api != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" cannot be combined with another qwen "
                           "handler (\"%V\") in one location",
                           &cmd->name, &qlcf->api->name);
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (value[1].len == 13
            && ngx_strncmp(value[1].data, "saturated=503", 13) == 0)
        {
            qlcf->health_saturated_503 = 1;

        } else if (!(value[1].len == 13
                     && ngx_strncmp(value[1].data, "saturated=200", 13) == 0))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"%V\": "
                               "expected \"saturated=200\" or "
                               "\"saturated=503\"", &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    return ngx_http_qwen_set_handler(cf, qlcf, cmd->post);
}


static char *
ngx_http_qwen_set_handler(ngx_conf_t *cf, ngx_http_qwen_loc_conf_t *qlcf,
    ngx_http_qwen_api_t *api)
{
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_qwen_main_conf_t  *qmcf;

    qlcf->api = api;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_qwen_handler;
    qlcf->location = clcf->name;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_qwen_module);
    qmcf->used = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_qwen_threads(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_int_t  *np, n;
    ngx_str_t  *value;

    np = (ngx_int_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 4 && ngx_strncmp(value[1].data, "auto", 4) == 0) {
        *np = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || n < 1 || n > 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"qwen_threads\": "
                           "expected \"auto\" or a number of compute "
                           "threads per worker from 1 to 256", &value[1]);
        return NGX_CONF_ERROR;
    }

    *np = n;

    return NGX_CONF_OK;
}


/* qwen_prefix_cache SIZE | off: memory for cached prefixes beyond the
 * slots' own KV cache (which idle slots lend too), or no prefix cache. */
static char *
ngx_http_qwen_prefix_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (qlcf->engine.prefix_cache != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        qlcf->engine.prefix_cache = 0;
        return NGX_CONF_OK;
    }

    size = ngx_parse_size(&value[1]);
    if (size == NGX_ERROR || (size_t) size > (size_t) 1 << 40) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"qwen_prefix_cache\": "
                           "expected \"off\" or a size up to 1024g "
                           "(e.g. 256m)", &value[1]);
        return NGX_CONF_ERROR;
    }

    qlcf->engine.prefix_cache = 1;
    qlcf->engine.prefix_cache_size = (size_t) size;

    return NGX_CONF_OK;
}


static char *
ngx_http_qwen_queue_full_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_qwen_loc_conf_t *qlcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (qlcf->queue_full_status != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = ngx_atoi(value[1].data, value[1].len);

    if (n != NGX_HTTP_TOO_MANY_REQUESTS
        && n != NGX_HTTP_SERVICE_UNAVAILABLE)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in "
                           "\"qwen_queue_full_status\": expected 429 or 503",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    qlcf->queue_full_status = (ngx_uint_t) n;

    return NGX_CONF_OK;
}


/*
 * The post handler of the integer directives (ngx_conf_set_num_slot):
 * ngx_conf_check_num_bounds with a message that names the directive and
 * the value, not only the bounds.
 */
static char *
ngx_http_qwen_check_num_bounds(ngx_conf_t *cf, void *post, void *data)
{
    ngx_conf_num_bounds_t  *bounds = post;
    ngx_int_t  *np = data;

    ngx_str_t  *value;

    if (*np >= bounds->low && *np <= bounds->high) {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\": expected a "
                       "number from %i to %i",
                       &value[1], &value[0], bounds->low, bounds->high);

    return NGX_CONF_ERROR;
}


/* A decimal number within the bounds given in cmd->post. */
static char *
ngx_http_qwen_set_float(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    char                          *end;
    double                        *fp, v;
    ngx_str_t                     *value;
    ngx_http_qwen_float_bounds_t  *bounds;

    fp = (double *) (p + cmd->offset);

    if (*fp != NGX_HTTP_QWEN_FLOAT_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    bounds = cmd->post;

    /* configuration words are NUL-terminated */

    errno = 0;
    v = strtod((const char *) value[1].data, &end);

    if (value[1].len == 0 || errno != 0
        || end != (char *) value[1].data + value[1].len
        || v != v || v < bounds->low || v > bounds->high)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\": expected a "
                           "number from %.2f to %.2f",
                           &value[1], &cmd->name, bounds->low, bounds->high);
        return NGX_CONF_ERROR;
    }

    *fp = v;

    return NGX_CONF_OK;
}


/* qwen_thinking_budget N | off; qwen_repetition_guard N | off: a number
 * within the bounds in cmd->post, or "off". */
static char *
ngx_http_qwen_set_num_off(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_int_t                *np, n;
    ngx_str_t                *value;
    ngx_http_qwen_num_off_t  *bounds;

    np = (ngx_int_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    bounds = cmd->post;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        *np = bounds->off;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n < bounds->low || n > bounds->high) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\": expected \"off\" "
                           "or a number from %i to %i",
                           &value[1], &cmd->name, bounds->low, bounds->high);
        return NGX_CONF_ERROR;
    }

    *np = n;

    return NGX_CONF_OK;
}
