
/*
 * ngx_http_qwen_quota.c - token quotas: `qwen_limit_tokens zone=NAME:SIZE
 * key=$variable rate=N/m [burst=M];`. A generation reserves its prompt
 * tokens plus its max_tokens from its key's budget before it reaches the
 * engine, is refused with 429 and Retry-After when the budget cannot cover
 * that, and gets back what it did not generate when it ends, however it
 * ends. The budgets are token buckets in a shared memory zone (an rbtree
 * keyed by the key's value and an LRU queue, as ngx_http_limit_req_module
 * keeps them) that every worker uses and a reload keeps. Answers from such
 * a location carry OpenAI's x-ratelimit-*-tokens headers, and the
 * $qwen_limit_tokens_* variables give the numbers to log_format.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_qwen_module.h"


/* the largest rate and burst: token counts in millitokens stay far from
 * int64's end, and doubles hold them exactly */
#define NGX_HTTP_QWEN_QUOTA_MAX  ((int64_t) 1 << 40)


/* A key's bucket. level: millitokens used (reserved or charged), leaking
 * at the zone's rate since last; the key may take burst - level. */
typedef struct {
    u_char                       color;
    u_char                       dummy;
    u_short                      len;
    ngx_queue_t                  queue;
    ngx_msec_t                   last;
    int64_t                      level;
    u_char                       data[1];
} ngx_http_qwen_quota_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;      /* most recently used first */
} ngx_http_qwen_quota_shctx_t;


/* The zone's configuration, one per zone name and configuration cycle
 * (shm_zone->data); the buckets live in sh. */
struct ngx_http_qwen_quota_zone_s {
    ngx_http_qwen_quota_shctx_t *sh;
    ngx_slab_pool_t             *shpool;
    ngx_http_complex_value_t     key;
    int64_t                      rate;       /* tokens per period */
    ngx_msec_t                   period;
    int64_t                      burst;      /* the bucket: tokens at once */
    ngx_str_t                    rate_text;  /* "6000/m", for messages */
};


/* A key's state as the headers and variables report it. */
typedef struct {
    int64_t                      limit;
    int64_t                      remaining;
    ngx_msec_t                   reset;      /* until the bucket is full */
} ngx_http_qwen_quota_state_t;


enum {
    NGX_HTTP_QWEN_QUOTA_VAR_LIMIT = 0,
    NGX_HTTP_QWEN_QUOTA_VAR_REMAINING,
    NGX_HTTP_QWEN_QUOTA_VAR_RESERVED,
    NGX_HTTP_QWEN_QUOTA_VAR_USED,
    NGX_HTTP_QWEN_QUOTA_VAR_REFUNDED,
    NGX_HTTP_QWEN_QUOTA_VAR_STATUS
};


static ngx_int_t ngx_http_qwen_quota_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_qwen_quota_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_qwen_quota_zone_t *ngx_http_qwen_quota_conf(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_qwen_quota_key(ngx_http_request_t *r,
    ngx_http_qwen_quota_zone_t *zone, ngx_str_t *key);
static ngx_http_qwen_quota_node_t *ngx_http_qwen_quota_lookup(
    ngx_http_qwen_quota_zone_t *zone, ngx_str_t *key, uint32_t hash);
static ngx_http_qwen_quota_node_t *ngx_http_qwen_quota_create(
    ngx_http_qwen_quota_zone_t *zone, ngx_str_t *key, uint32_t hash);
static int64_t ngx_http_qwen_quota_leak(ngx_http_qwen_quota_zone_t *zone,
    ngx_http_qwen_quota_node_t *qn, ngx_msec_t now);
static void ngx_http_qwen_quota_expire(ngx_http_qwen_quota_zone_t *zone,
    ngx_uint_t force);
static void ngx_http_qwen_quota_fill(ngx_http_qwen_quota_zone_t *zone,
    int64_t level, ngx_http_qwen_quota_state_t *st);
static ngx_int_t ngx_http_qwen_quota_peek(ngx_http_request_t *r,
    ngx_http_qwen_quota_state_t *st);
static u_char *ngx_http_qwen_quota_duration(u_char *p, ngx_msec_t ms);
static ngx_int_t ngx_http_qwen_quota_header(ngx_http_request_t *r,
    const char *name, u_char *value, size_t len);
static ngx_int_t ngx_http_qwen_quota_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/* Zones are told apart from the metrics zone (and kept across reloads)
 * by this tag. */
static ngx_uint_t  ngx_http_qwen_quota_tag;


ngx_http_variable_t  ngx_http_qwen_quota_vars[] = {

    { ngx_string("qwen_limit_tokens_limit"), NULL,
      ngx_http_qwen_quota_variable, NGX_HTTP_QWEN_QUOTA_VAR_LIMIT,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_limit_tokens_remaining"), NULL,
      ngx_http_qwen_quota_variable, NGX_HTTP_QWEN_QUOTA_VAR_REMAINING,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_limit_tokens_reserved"), NULL,
      ngx_http_qwen_quota_variable, NGX_HTTP_QWEN_QUOTA_VAR_RESERVED,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_limit_tokens_used"), NULL,
      ngx_http_qwen_quota_variable, NGX_HTTP_QWEN_QUOTA_VAR_USED,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_limit_tokens_refunded"), NULL,
      ngx_http_qwen_quota_variable, NGX_HTTP_QWEN_QUOTA_VAR_REFUNDED,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_limit_tokens_status"), NULL,
      ngx_http_qwen_quota_variable, NGX_HTTP_QWEN_QUOTA_VAR_STATUS,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* -------------------------------------------------------- the directive */

/*
 * qwen_limit_tokens zone=NAME:SIZE key=$variable rate=N/s|m|h|d [burst=M];
 * qwen_limit_tokens off;
 * Several locations may name one zone (one budget per key across them)
 * if they give it the same key, rate and burst.
 */
char *
ngx_http_qwen_limit_tokens(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_qwen_loc_conf_t  *qlcf = conf;

    u_char                            *p;
    ssize_t                            size;
    int64_t                            n;
    ngx_str_t                         *value, name, s, key, rate;
    ngx_uint_t                         i;
    ngx_msec_t                         period;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_qwen_quota_zone_t        *zone, *old;
    ngx_http_compile_complex_value_t   ccv;

    if (qlcf->limit_tokens != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        qlcf->limit_tokens = NULL;
        return NGX_CONF_OK;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_quota_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    name.len = 0;
    key.len = 0;
    size = 0;
    period = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            name.data = value[i].data + 5;

            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL || p == name.data) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "qwen_limit_tokens \"%V\": the zone needs "
                                   "a name and a size, as in "
                                   "\"zone=tokens:1m\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "qwen_limit_tokens \"%V\": invalid zone "
                                   "size \"%V\" (a size such as 64k or 1m)",
                                   &value[i], &s);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "qwen_limit_tokens \"%V\": zone \"%V\" "
                                   "is too small: at least %uzk",
                                   &value[i], &name,
                                   8 * ngx_pagesize / 1024);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {

            key.data = value[i].data + 4;
            key.len = value[i].len - 4;

            if (key.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "qwen_limit_tokens \"%V\": the key is "
                                   "empty: use a variable, as in "
                                   "\"key=$http_authorization\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &key;
            ccv.complex_value = &zone->key;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {

            rate.data = value[i].data + 5;
            rate.len = value[i].len - 5;

            p = rate.len > 2 ? rate.data + rate.len - 2 : NULL;

            if (p != NULL && p[0] == '/') {
                switch (p[1]) {
                case 's': period = 1000; break;
                case 'm': period = 60 * 1000; break;
                case 'h': period = 3600 * 1000; break;
                case 'd': period = 86400 * 1000; break;
                default: period = 0;
                }
            }

            n = period ? ngx_atoof(rate.data, rate.len - 2) : NGX_ERROR;

            if (n <= 0 || n > NGX_HTTP_QWEN_QUOTA_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "qwen_limit_tokens: invalid rate \"%V\": "
                                   "use tokens per second, minute, hour or "
                                   "day, as in \"rate=6000/m\" (1 to %L "
                                   "tokens)", &value[i],
                                   NGX_HTTP_QWEN_QUOTA_MAX);
                return NGX_CONF_ERROR;
            }

            zone->rate = n;
            zone->period = period;
            zone->rate_text = rate;
            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {

            n = ngx_atoof(value[i].data + 6, value[i].len - 6);

            if (n <= 0 || n > NGX_HTTP_QWEN_QUOTA_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "qwen_limit_tokens: invalid burst \"%V\": "
                                   "the most tokens a key may use at once, "
                                   "1 to %L", &value[i],
                                   NGX_HTTP_QWEN_QUOTA_MAX);
                return NGX_CONF_ERROR;
            }

            zone->burst = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "qwen_limit_tokens: invalid parameter \"%V\" "
                           "(zone=NAME:SIZE key=$variable rate=N/m "
                           "[burst=M])", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0 || key.len == 0 || zone->rate == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "qwen_limit_tokens needs %s: "
                           "\"qwen_limit_tokens zone=NAME:SIZE "
                           "key=$variable rate=N/m [burst=M];\"",
                           name.len == 0 ? "\"zone=NAME:SIZE\""
                           : key.len == 0 ? "\"key=$variable\""
                           : "\"rate=N/m\"");
        return NGX_CONF_ERROR;
    }

    if (zone->burst == 0) {
        /* a period's worth of tokens at once */
        zone->burst = zone->rate;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_qwen_quota_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data != NULL) {
        old = shm_zone->data;

        if (old->key.value.len != zone->key.value.len
            || ngx_strncmp(old->key.value.data, zone->key.value.data,
                           zone->key.value.len) != 0
            || old->rate != zone->rate || old->period != zone->period
            || old->burst != zone->burst)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "qwen_limit_tokens zone \"%V\" is already "
                               "used with key=%V rate=%V burst=%L: a zone "
                               "shared by several locations needs the same "
                               "key, rate and burst everywhere",
                               &name, &old->key.value, &old->rate_text,
                               old->burst);
            return NGX_CONF_ERROR;
        }

        qlcf->limit_tokens = shm_zone;
        return NGX_CONF_OK;
    }

    shm_zone->init = ngx_http_qwen_quota_init_zone;
    shm_zone->data = zone;

    qlcf->limit_tokens = shm_zone;

    return NGX_CONF_OK;
}


/* A reload keeps the buckets (same zone name and size); the rate and
 * burst may change, the key may not (the stored values would mean
 * something else). */
static ngx_int_t
ngx_http_qwen_quota_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_qwen_quota_zone_t  *ozone = data;

    size_t                       len;
    ngx_int_t                    rc;
    ngx_http_qwen_quota_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone != NULL) {
        if (zone->key.value.len != ozone->key.value.len
            || ngx_strncmp(zone->key.value.data, ozone->key.value.data,
                           zone->key.value.len) != 0)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "qwen_limit_tokens zone \"%V\" uses the key "
                          "\"%V\" while it used \"%V\" before the reload: "
                          "rename the zone to start new budgets",
                          &shm_zone->shm.name, &zone->key.value,
                          &ozone->key.value);
            return NGX_ERROR;
        }
    }

    rc = ngx_http_qwen_zone_record(shm_zone, ozone ? ozone->shpool : NULL,
                                   ozone ? ozone->sh : NULL,
                                   sizeof(ngx_http_qwen_quota_shctx_t),
                                   &zone->shpool, (void **) &zone->sh);
    if (rc != NGX_DONE) {
        return rc;
    }

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_qwen_quota_rbtree_insert);

    ngx_queue_init(&zone->sh->queue);

    len = sizeof(" in qwen_limit_tokens zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in qwen_limit_tokens zone \"%V\"%Z",
                &shm_zone->shm.name);

    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_qwen_quota_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t           **p;
    ngx_http_qwen_quota_node_t   *qn, *qnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            qn = (ngx_http_qwen_quota_node_t *) &node->color;
            qnt = (ngx_http_qwen_quota_node_t *) &temp->color;

            p = (ngx_memn2cmp(qn->data, qnt->data, qn->len, qnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* ------------------------------------------------------------ requests */

/* The location's zone, where it limits a generation API. */
static ngx_http_qwen_quota_zone_t *
ngx_http_qwen_quota_conf(ngx_http_request_t *r)
{
    ngx_http_qwen_api_t       *api;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    if (qlcf == NULL || qlcf->limit_tokens == NULL
        || qlcf->limit_tokens == NGX_CONF_UNSET_PTR || qlcf->api == NULL)
    {
        return NULL;
    }

    /* the operations endpoints (qwen_health, qwen_metrics...) generate
     * nothing: not limited */
    for (api = ngx_http_qwen_apis; api->name.len; api++) {
        if (api == qlcf->api) {
            return qlcf->limit_tokens->data;
        }
    }

    return NULL;
}


/* NGX_OK with the key, NGX_DECLINED when the request is not limited (an
 * empty key, as limit_req does, or one too long to keep). */
static ngx_int_t
ngx_http_qwen_quota_key(ngx_http_request_t *r,
    ngx_http_qwen_quota_zone_t *zone, ngx_str_t *key)
{
    if (ngx_http_complex_value(r, &zone->key, key) != NGX_OK) {
        return NGX_ERROR;
    }

    if (key->len == 0) {
        return NGX_DECLINED;
    }

    if (key->len > 65535) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "qwen_limit_tokens: the value of the key \"%V\" is "
                      "more than 65535 bytes: not limited",
                      &zone->key.value);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * Before the engine sees a generation: reserve n_prompt + max_tokens (the
 * rest of the context when the request sets no max_tokens) from the key's
 * bucket. NGX_OK: admitted, or not limited; NGX_DECLINED: refused, the
 * answer is sent and *rc is what the handler returns.
 */
ngx_int_t
ngx_http_qwen_quota_reserve(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    size_t n_prompt, ngx_int_t max_tokens, ngx_int_t *rc)
{
    u_char                      *msg;
    int64_t                      cost, level, room, wait;
    uint32_t                     hash;
    ngx_int_t                    gen, krc;
    ngx_str_t                    key;
    ngx_msec_t                   now;
    ngx_http_qwen_quota_zone_t  *zone;
    ngx_http_qwen_quota_node_t  *qn;
    ngx_http_qwen_quota_state_t  st;

    zone = ngx_http_qwen_quota_conf(r);

    if (zone == NULL) {
        return NGX_OK;
    }

    krc = ngx_http_qwen_quota_key(r, zone, &key);

    if (krc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (krc != NGX_OK) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    /* what the engine may generate at most: max_tokens, within the
     * context the prompt leaves */
    gen = ctx->conf->engine.ctx - (ngx_int_t) n_prompt;

    if (max_tokens > 0 && max_tokens < gen) {
        gen = max_tokens;
    }

    if (gen < 0) {
        gen = 0;
    }

    cost = (int64_t) n_prompt + gen;
    hash = ngx_crc32_short(key.data, key.len);

    msg = ngx_pnalloc(r->pool, 512);
    if (msg == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    if (cost > zone->burst) {
        ctx->quota.status = NGX_HTTP_QWEN_QUOTA_REJECTED;

        (void) ngx_snprintf(msg, 512,
                            "request too large for the token quota: it "
                            "needs %L tokens (%uz prompt + %i max_tokens), "
                            "more than the %L a key may use at once "
                            "(qwen_limit_tokens rate=%V burst=%L); lower "
                            "max_tokens%Z", cost, n_prompt, gen,
                            zone->burst, &zone->rate_text, zone->burst);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: token quota: %L tokens asked, more than the "
                      "burst of %L of zone \"%V\"", cost, zone->burst,
                      &ctx->conf->limit_tokens->shm.name);

        ngx_http_qwen_metrics_refused(QP_REFUSED_QUOTA);

        *rc = ngx_http_qwen_send_error_code(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                            "tokens", "rate_limit_exceeded",
                                            (const char *) msg, 0);
        return NGX_DECLINED;
    }

    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    qn = ngx_http_qwen_quota_lookup(zone, &key, hash);

    if (qn == NULL) {
        qn = ngx_http_qwen_quota_create(zone, &key, hash);

        if (qn == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "qwen_limit_tokens zone \"%V\" is full: no room "
                          "for another key (make the zone larger)",
                          &ctx->conf->limit_tokens->shm.name);

            ngx_http_qwen_metrics_refused(QP_REFUSED_QUOTA);

            *rc = ngx_http_qwen_send_error(r, ctx,
                                           NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "server_error",
                                           "the token quota zone is full",
                                           ctx->conf->retry_after);
            return NGX_DECLINED;
        }
    }

    level = ngx_http_qwen_quota_leak(zone, qn, now);
    room = zone->burst * 1000 - level;

    if (room < 0) {
        /* a reload lowered the burst below what the key holds */
        room = 0;
    }

    if (cost * 1000 > room) {
        ngx_shmtx_unlock(&zone->shpool->mutex);

        /* when the bucket will have leaked enough */
        wait = (int64_t) ((double) (cost * 1000 - room) * zone->period
                          / ((double) zone->rate * 1000.0));
        wait = (wait + 999) / 1000;

        if (wait < 1) {
            wait = 1;
        }

        ctx->quota.status = NGX_HTTP_QWEN_QUOTA_REJECTED;

        (void) ngx_snprintf(msg, 512,
                            "rate limit reached for tokens: this key may "
                            "use %L tokens now, the request needs %L "
                            "(%uz prompt + %i max_tokens); limit %L at "
                            "%V; please try again in %Ls%Z",
                            room / 1000, cost, n_prompt, gen, zone->burst,
                            &zone->rate_text, wait);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "qwen: token quota: %L tokens asked, %L left in "
                      "zone \"%V\", retry after %L s", cost, room / 1000,
                      &ctx->conf->limit_tokens->shm.name, wait);

        ngx_http_qwen_metrics_refused(QP_REFUSED_QUOTA);

        *rc = ngx_http_qwen_send_error_code(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                            "tokens", "rate_limit_exceeded",
                                            (const char *) msg,
                                            (time_t) wait);
        return NGX_DECLINED;
    }

    qn->level = level + cost * 1000;

    ngx_http_qwen_quota_fill(zone, qn->level, &st);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ctx->quota.zone = zone;
    ctx->quota.key = key;
    ctx->quota.hash = hash;
    ctx->quota.reserved = cost;
    ctx->quota.status = NGX_HTTP_QWEN_QUOTA_PASSED;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "qwen: token quota: reserved %L, %L of %L left, "
                   "full in %M ms", cost, st.remaining, st.limit, st.reset);

    return NGX_OK;
}


/*
 * The generation has ended, however (or it never reached the engine):
 * charge used tokens and give the rest of the reservation back. Once.
 */
void
ngx_http_qwen_quota_settle(ngx_http_qwen_ctx_t *ctx, size_t used)
{
    int64_t                      refund, level;
    ngx_http_qwen_quota_zone_t  *zone;
    ngx_http_qwen_quota_node_t  *qn;

    zone = ctx->quota.zone;

    if (zone == NULL || ctx->quota.settled) {
        return;
    }

    ctx->quota.settled = 1;

    if ((int64_t) used > ctx->quota.reserved) {
        used = (size_t) ctx->quota.reserved;
    }

    refund = ctx->quota.reserved - (int64_t) used;

    ctx->quota.used = (int64_t) used;
    ctx->quota.refunded = refund;

    if (refund == 0) {
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* a bucket that leaked empty may have been dropped for room: it is
     * full, nothing to give back */
    qn = ngx_http_qwen_quota_lookup(zone, &ctx->quota.key, ctx->quota.hash);

    if (qn != NULL) {
        level = ngx_http_qwen_quota_leak(zone, qn, ngx_current_msec);
        level -= refund * 1000;
        qn->level = level > 0 ? level : 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* Under the zone's lock. */
static ngx_http_qwen_quota_node_t *
ngx_http_qwen_quota_lookup(ngx_http_qwen_quota_zone_t *zone, ngx_str_t *key,
    uint32_t hash)
{
    ngx_int_t                    rc;
    ngx_rbtree_node_t           *node, *sentinel;
    ngx_http_qwen_quota_node_t  *qn;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        qn = (ngx_http_qwen_quota_node_t *) &node->color;

        rc = ngx_memn2cmp(key->data, qn->data, key->len, (size_t) qn->len);

        if (rc == 0) {
            ngx_queue_remove(&qn->queue);
            ngx_queue_insert_head(&zone->sh->queue, &qn->queue);
            return qn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* A full bucket for a new key; keys whose buckets leaked full again make
 * room first, and the least recently used go when the zone is full.
 * Under the zone's lock. */
static ngx_http_qwen_quota_node_t *
ngx_http_qwen_quota_create(ngx_http_qwen_quota_zone_t *zone, ngx_str_t *key,
    uint32_t hash)
{
    size_t                       size;
    ngx_rbtree_node_t           *node;
    ngx_http_qwen_quota_node_t  *qn;

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_qwen_quota_node_t, data)
           + key->len;

    ngx_http_qwen_quota_expire(zone, 0);

    node = ngx_slab_alloc_locked(zone->shpool, size);

    if (node == NULL) {
        ngx_http_qwen_quota_expire(zone, 1);

        node = ngx_slab_alloc_locked(zone->shpool, size);
        if (node == NULL) {
            return NULL;
        }
    }

    node->key = hash;

    qn = (ngx_http_qwen_quota_node_t *) &node->color;

    qn->len = (u_short) key->len;
    qn->level = 0;
    qn->last = ngx_current_msec;

    ngx_memcpy(qn->data, key->data, key->len);

    ngx_rbtree_insert(&zone->sh->rbtree, node);
    ngx_queue_insert_head(&zone->sh->queue, &qn->queue);

    return qn;
}


/* The bucket's level now (millitokens), written back with its time. */
static int64_t
ngx_http_qwen_quota_leak(ngx_http_qwen_quota_zone_t *zone,
    ngx_http_qwen_quota_node_t *qn, ngx_msec_t now)
{
    double          leaked;
    ngx_msec_int_t  ms;

    ms = (ngx_msec_int_t) (now - qn->last);

    if (ms < 0) {
        ms = 0;
    }

    if (ms > 0 && qn->level > 0) {
        leaked = (double) zone->rate * 1000.0 * (double) ms
                 / (double) zone->period;

        qn->level = leaked >= (double) qn->level
                    ? 0 : qn->level - (int64_t) leaked;
    }

    if (ms > 0) {
        qn->last = now;
    }

    return qn->level;
}


/*
 * Drop up to two least recently used keys whose buckets have leaked full
 * (they mean nothing any more); with force, the least recently used key
 * goes first whatever its level (the zone is full). Under the lock.
 */
static void
ngx_http_qwen_quota_expire(ngx_http_qwen_quota_zone_t *zone, ngx_uint_t force)
{
    ngx_uint_t                   n;
    ngx_queue_t                 *q;
    ngx_rbtree_node_t           *node;
    ngx_http_qwen_quota_node_t  *qn;

    for (n = 0; n < 2 + force; n++) {

        if (ngx_queue_empty(&zone->sh->queue)) {
            return;
        }

        q = ngx_queue_last(&zone->sh->queue);
        qn = ngx_queue_data(q, ngx_http_qwen_quota_node_t, queue);

        if (!(force && n == 0)
            && ngx_http_qwen_quota_leak(zone, qn, ngx_current_msec) > 0)
        {
            return;
        }

        ngx_queue_remove(q);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) qn - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&zone->sh->rbtree, node);
        ngx_slab_free_locked(zone->shpool, node);
    }
}


static void
ngx_http_qwen_quota_fill(ngx_http_qwen_quota_zone_t *zone, int64_t level,
    ngx_http_qwen_quota_state_t *st)
{
    int64_t  room;

    room = zone->burst * 1000 - level;

    st->limit = zone->burst;
    st->remaining = room > 0 ? room / 1000 : 0;
    st->reset = (ngx_msec_t) ((double) level * zone->period
                              / ((double) zone->rate * 1000.0) + 0.999);
}


/* The key's state now, without changing it. NGX_DECLINED: not limited. */
static ngx_int_t
ngx_http_qwen_quota_peek(ngx_http_request_t *r,
    ngx_http_qwen_quota_state_t *st)
{
    int64_t                      level;
    uint32_t                     hash;
    ngx_int_t                    rc;
    ngx_str_t                    key;
    ngx_http_qwen_quota_zone_t  *zone;
    ngx_http_qwen_quota_node_t  *qn;

    zone = ngx_http_qwen_quota_conf(r);

    if (zone == NULL || zone->sh == NULL) {
        return NGX_DECLINED;
    }

    rc = ngx_http_qwen_quota_key(r, zone, &key);

    if (rc != NGX_OK) {
        return rc;
    }

    hash = ngx_crc32_short(key.data, key.len);
    level = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    qn = ngx_http_qwen_quota_lookup(zone, &key, hash);

    if (qn != NULL) {
        level = ngx_http_qwen_quota_leak(zone, qn, ngx_current_msec);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_qwen_quota_fill(zone, level, st);

    return NGX_OK;
}


/* --------------------------------------------------------------- headers */

/*
 * OpenAI's headers on every answer of a limited location (the header
 * filter calls this): the bucket's size, what the key may use now, and
 * when its bucket is full again ("1m30s", "250ms", as OpenAI writes them).
 */
ngx_int_t
ngx_http_qwen_quota_headers(ngx_http_request_t *r)
{
    u_char                       *p, *last;
    ngx_int_t                     rc;
    ngx_http_qwen_quota_state_t   st;

    rc = ngx_http_qwen_quota_peek(r, &st);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN + 32);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(p, "%L", st.limit);
    if (ngx_http_qwen_quota_header(r, "x-ratelimit-limit-tokens", p,
                                   last - p) != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = last;
    last = ngx_sprintf(p, "%L", st.remaining);
    if (ngx_http_qwen_quota_header(r, "x-ratelimit-remaining-tokens", p,
                                   last - p) != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = last;
    last = ngx_http_qwen_quota_duration(p, st.reset);

    return ngx_http_qwen_quota_header(r, "x-ratelimit-reset-tokens", p,
                                      last - p);
}


/* Go's time.Duration text, as OpenAI's reset headers: 0s, 250ms, 1.5s,
 * 6m0s, 1h2m3s. */
static u_char *
ngx_http_qwen_quota_duration(u_char *p, ngx_msec_t ms)
{
    ngx_msec_t  h, m, s, frac;

    if (ms < 1000) {
        return ngx_sprintf(p, ms ? "%Mms" : "0s", ms);
    }

    h = ms / 3600000;
    m = ms / 60000 % 60;
    s = ms / 1000 % 60;
    frac = ms % 1000;

    if (h) {
        p = ngx_sprintf(p, "%Mh", h);
    }

    if (h || m) {
        p = ngx_sprintf(p, "%Mm", m);
    }

    p = ngx_sprintf(p, "%M", s);

    if (frac) {
        p = ngx_sprintf(p, ".%03M", frac);

        while (p[-1] == '0') {
            p--;
        }
    }

    *p++ = 's';

    return p;
}


static ngx_int_t
ngx_http_qwen_quota_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = value;
    h->value.len = len;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/* ------------------------------------------------------------ variables */

/*
 * $qwen_limit_tokens_limit, $qwen_limit_tokens_remaining: the key's
 * bucket now (after this request's reservation or refund);
 * $qwen_limit_tokens_reserved: what this request reserved;
 * $qwen_limit_tokens_used, $qwen_limit_tokens_refunded: once it has ended,
 * what it was charged (prompt and generated tokens) and what went back;
 * $qwen_limit_tokens_status: PASSED or REJECTED. Empty where not limited.
 */
static ngx_int_t
ngx_http_qwen_quota_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                       *p;
    int64_t                       n;
    ngx_http_qwen_ctx_t          *ctx;
    ngx_http_qwen_quota_state_t   st;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_qwen_module);

    switch (data) {

    case NGX_HTTP_QWEN_QUOTA_VAR_LIMIT:
    case NGX_HTTP_QWEN_QUOTA_VAR_REMAINING:
        if (ngx_http_qwen_quota_peek(r->main, &st) != NGX_OK) {
            goto not_found;
        }

        n = data == NGX_HTTP_QWEN_QUOTA_VAR_LIMIT ? st.limit : st.remaining;
        break;

    case NGX_HTTP_QWEN_QUOTA_VAR_STATUS:
        if (ctx == NULL || ctx->quota.status == 0) {
            goto not_found;
        }

        if (ctx->quota.status == NGX_HTTP_QWEN_QUOTA_PASSED) {
            ngx_str_set(v, "PASSED");

        } else {
            ngx_str_set(v, "REJECTED");
        }

        v->valid = 1;
        v->no_cacheable = 1;
        v->not_found = 0;
        return NGX_OK;

    case NGX_HTTP_QWEN_QUOTA_VAR_RESERVED:
        if (ctx == NULL || ctx->quota.zone == NULL) {
            goto not_found;
        }

        n = ctx->quota.reserved;
        break;

    default: /* USED, REFUNDED */
        if (ctx == NULL || !ctx->quota.settled) {
            goto not_found;
        }

        n = data == NGX_HTTP_QWEN_QUOTA_VAR_USED ? ctx->quota.used
                                                 : ctx->quota.refunded;
        break;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%L", n) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;

not_found:

    v->not_found = 1;

    return NGX_OK;
}
