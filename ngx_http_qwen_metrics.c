
/*
 * ngx_http_qwen_metrics.c - what the module reports about its requests: the
 * "qwen_metrics" shared memory zone where every worker adds its finished
 * requests and keeps its engines' gauges (/metrics on any worker shows the
 * whole server; counters survive a reload), and the $qwen_ variables.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <signal.h>

#include "ngx_http_qwen_module.h"


#define NGX_HTTP_QWEN_METRICS_REFRESH  1000


enum {
    NGX_HTTP_QWEN_VAR_PROMPT_TOKENS = 0,
    NGX_HTTP_QWEN_VAR_COMPLETION_TOKENS,
    NGX_HTTP_QWEN_VAR_TTFT,
    NGX_HTTP_QWEN_VAR_TOKENS_PER_SECOND,
    NGX_HTTP_QWEN_VAR_FINISH_REASON,
    NGX_HTTP_QWEN_VAR_QUEUE_TIME,
    NGX_HTTP_QWEN_VAR_CACHED_TOKENS
};


static ngx_int_t ngx_http_qwen_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_qwen_metrics_t *ngx_http_qwen_metrics_get(
    ngx_cycle_t *cycle, ngx_http_qwen_main_conf_t **qmcfp);
static ngx_uint_t ngx_http_qwen_pid_alive(ngx_pid_t pid);
static void ngx_http_qwen_metrics_timer(ngx_event_t *ev);
static void ngx_http_qwen_admit_init(ngx_http_qwen_metrics_slot_t *slot,
    ngx_http_qwen_main_conf_t *qmcf);
static ngx_int_t ngx_http_qwen_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


ngx_http_variable_t  ngx_http_qwen_vars[] = {

    { ngx_string("qwen_prompt_tokens"), NULL, ngx_http_qwen_variable,
      NGX_HTTP_QWEN_VAR_PROMPT_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_completion_tokens"), NULL, ngx_http_qwen_variable,
      NGX_HTTP_QWEN_VAR_COMPLETION_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_ttft"), NULL, ngx_http_qwen_variable,
      NGX_HTTP_QWEN_VAR_TTFT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_tokens_per_second"), NULL, ngx_http_qwen_variable,
      NGX_HTTP_QWEN_VAR_TOKENS_PER_SECOND, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_finish_reason"), NULL, ngx_http_qwen_variable,
      NGX_HTTP_QWEN_VAR_FINISH_REASON, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_queue_time"), NULL, ngx_http_qwen_variable,
      NGX_HTTP_QWEN_VAR_QUEUE_TIME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("qwen_cached_tokens"), NULL, ngx_http_qwen_variable,
      NGX_HTTP_QWEN_VAR_CACHED_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* ----------------------------------------------------------------- zone */

ngx_int_t
ngx_http_qwen_metrics_add_zone(ngx_conf_t *cf)
{
    size_t                      size;
    ngx_shm_zone_t             *zone;
    ngx_http_qwen_metrics_t    *ctx;
    ngx_http_qwen_main_conf_t  *qmcf;
    static ngx_str_t            name = ngx_string("qwen_metrics");

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_qwen_module);

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_qwen_metrics_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    /* the slab pool's own pages, then the record */
    size = ngx_align(sizeof(ngx_http_qwen_metrics_sh_t), ngx_pagesize)
           + 16 * ngx_pagesize;

    zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_qwen_module);
    if (zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "qwen: cannot add the \"%V\" shared memory zone "
                           "(%uz bytes)", &name, size);
        return NGX_ERROR;
    }

    zone->init = ngx_http_qwen_metrics_init_zone;
    zone->data = ctx;

    qmcf->metrics_zone = zone;

    return NGX_OK;
}


/*
 * A zone's record in its slab pool, as nginx's own zones keep theirs: a
 * reload hands over the old cycle's (old_sh), a zone that already existed
 * keeps it in the pool's data, else it is allocated here. NGX_OK: an
 * existing record, NGX_DONE: a new one (zeroed) for the caller to set up.
 */
ngx_int_t
ngx_http_qwen_zone_record(ngx_shm_zone_t *shm_zone, ngx_slab_pool_t *old_pool,
    void *old_sh, size_t size, ngx_slab_pool_t **pool, void **sh)
{
    if (old_sh != NULL) {
        *pool = old_pool;
        *sh = old_sh;
        return NGX_OK;
    }

    *pool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        *sh = (*pool)->data;
        return NGX_OK;
    }

    *sh = ngx_slab_calloc(*pool, size);
    if (*sh == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "qwen: cannot allocate %uz bytes in the \"%V\" zone",
                      size, &shm_zone->shm.name);
        return NGX_ERROR;
    }

    (*pool)->data = *sh;

    return NGX_DONE;
}


/* A reload keeps the zone (same name and size): counters go on. */
static ngx_int_t
ngx_http_qwen_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_qwen_metrics_t  *octx = data;

    ngx_int_t                 rc;
    ngx_http_qwen_metrics_t  *ctx;

    ctx = shm_zone->data;

    rc = ngx_http_qwen_zone_record(shm_zone, octx ? octx->shpool : NULL,
                                   octx ? octx->sh : NULL,
                                   sizeof(ngx_http_qwen_metrics_sh_t),
                                   &ctx->shpool, (void **) &ctx->sh);

    if (rc == NGX_DONE) {
        qp_metrics_init(&ctx->sh->counters);
        rc = NGX_OK;
    }

    return rc;
}


static ngx_http_qwen_metrics_t *
ngx_http_qwen_metrics_get(ngx_cycle_t *cycle,
    ngx_http_qwen_main_conf_t **qmcfp)
{
    ngx_http_qwen_metrics_t    *ctx;
    ngx_http_qwen_main_conf_t  *qmcf;

    if (cycle->conf_ctx == NULL
        || ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL)
    {
        return NULL;
    }

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_qwen_module);
    if (qmcf == NULL || qmcf->metrics_zone == NULL) {
        return NULL;
    }

    ctx = qmcf->metrics_zone->data;
    if (ctx == NULL || ctx->sh == NULL) {
        return NULL;
    }

    if (qmcfp != NULL) {
        *qmcfp = qmcf;
    }

    return ctx;
}


/* A worker that crashed never freed its slot: its gauges are skipped and
 * the slot is taken again. */
static ngx_uint_t
ngx_http_qwen_pid_alive(ngx_pid_t pid)
{
    if (pid == ngx_pid) {
        return 1;
    }

    return kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}


/* ------------------------------------------------------ worker lifetime */

ngx_int_t
ngx_http_qwen_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_int_t                   i, slot;
    ngx_event_t                *ev;
    ngx_http_qwen_metrics_t    *ctx;
    ngx_http_qwen_main_conf_t  *qmcf;

    ctx = ngx_http_qwen_metrics_get(cycle, &qmcf);
    if (ctx == NULL) {
        return NGX_OK;
    }

    slot = -1;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (i = 0; i < NGX_HTTP_QWEN_METRICS_SLOTS; i++) {
        if (ctx->sh->slots[i].pid == 0) {
            slot = i;
            break;
        }
    }

    if (slot == -1) {
        for (i = 0; i < NGX_HTTP_QWEN_METRICS_SLOTS; i++) {
            if (!ngx_http_qwen_pid_alive(ctx->sh->slots[i].pid)) {
                slot = i;
                break;
            }
        }
    }

    if (slot != -1) {
        ctx->sh->slots[slot].pid = ngx_pid;
        ctx->sh->slots[slot].alive_at = ngx_current_msec;
        qp_metrics_init(&ctx->sh->slots[slot].gauges);
        ngx_http_qwen_admit_init(&ctx->sh->slots[slot], qmcf);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    qmcf->metrics_slot = slot;

    if (slot == -1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "qwen: all %d slots of the \"qwen_metrics\" zone are "
                      "taken: this worker's requests are counted, its "
                      "engine gauges are not", NGX_HTTP_QWEN_METRICS_SLOTS);
        return NGX_OK;
    }

    ev = &qmcf->metrics_timer;
    ev->handler = ngx_http_qwen_metrics_timer;
    ev->data = qmcf;
    ev->log = cycle->log;
    ev->cancelable = 1;

    ngx_add_timer(ev, NGX_HTTP_QWEN_METRICS_REFRESH);

    ngx_http_qwen_metrics_refresh(cycle);

    return NGX_OK;
}


void
ngx_http_qwen_metrics_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_qwen_metrics_t    *ctx;
    ngx_http_qwen_main_conf_t  *qmcf;

    ctx = ngx_http_qwen_metrics_get(cycle, &qmcf);
    if (ctx == NULL) {
        return;
    }

    if (qmcf->metrics_timer.timer_set) {
        ngx_del_timer(&qmcf->metrics_timer);
    }

    if (qmcf->metrics_slot < 0) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->slots[qmcf->metrics_slot].pid == ngx_pid) {
        ctx->sh->slots[qmcf->metrics_slot].pid = 0;
        qp_metrics_init(&ctx->sh->slots[qmcf->metrics_slot].gauges);
        ngx_memzero(ctx->sh->slots[qmcf->metrics_slot].admit,
                    sizeof(ctx->sh->slots[0].admit));
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    qmcf->metrics_slot = -1;
}


static void
ngx_http_qwen_metrics_timer(ngx_event_t *ev)
{
    ngx_http_qwen_metrics_refresh((ngx_cycle_t *) ngx_cycle);

    /* cancelled at shutdown: ngx_event_cancel_timers() calls us once */
    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_QWEN_METRICS_REFRESH);
    }
}


/*
 * This worker's engine gauges (running, waiting, KV cache use), summed over
 * its models, into its slot: when a request ends, when the worker answers
 * /metrics, and every second on a cancelable timer, so a scrape sees every
 * worker's engine as of at most one second ago.
 */
void
ngx_http_qwen_metrics_refresh(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i;
    qp_metrics                  gauges, one;
    qwen_engine_stats           stats;
    ngx_http_qwen_model_t     **mp;
    ngx_http_qwen_metrics_t    *ctx;
    ngx_http_qwen_main_conf_t  *qmcf;

    ctx = ngx_http_qwen_metrics_get(cycle, &qmcf);
    if (ctx == NULL || qmcf->metrics_slot < 0) {
        return;
    }

    qp_metrics_init(&gauges);

    mp = qmcf->models.elts;
    for (i = 0; i < qmcf->models.nelts; i++) {
        if (mp[i]->engine == NULL) {
            continue;
        }

        qwen_engine_get_stats(mp[i]->engine, &stats);

        qp_metrics_init(&one);
        qp_metrics_set_engine(&one, &stats);
        qp_metrics_add(&gauges, &one);
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->slots[qmcf->metrics_slot].pid == ngx_pid) {
        ctx->sh->slots[qmcf->metrics_slot].gauges = gauges;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* --------------------------------------------------------- per request */

/* A generation ended (ctx->timing and ctx->finish_reason are set). */
void
ngx_http_qwen_metrics_request(ngx_http_qwen_ctx_t *ctx)
{
    ngx_http_qwen_metrics_t  *mctx;

    mctx = ngx_http_qwen_metrics_get((ngx_cycle_t *) ngx_cycle, NULL);
    if (mctx == NULL) {
        return;
    }

    ngx_shmtx_lock(&mctx->shpool->mutex);
    qp_metrics_request_done(&mctx->sh->counters, &ctx->timing,
                            ctx->finish_reason, &ctx->itl);
    ngx_shmtx_unlock(&mctx->shpool->mutex);

    ngx_http_qwen_metrics_refresh((ngx_cycle_t *) ngx_cycle);
}


/* The whole server: the counters plus every live worker's gauges. */
ngx_int_t
ngx_http_qwen_metrics_collect(ngx_cycle_t *cycle, qp_metrics *m)
{
    ngx_uint_t                     i;
    ngx_http_qwen_metrics_t       *ctx;
    ngx_http_qwen_metrics_slot_t  *slot;

    ctx = ngx_http_qwen_metrics_get(cycle, NULL);
    if (ctx == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_qwen_metrics_refresh(cycle);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    *m = ctx->sh->counters;

    for (i = 0; i < NGX_HTTP_QWEN_METRICS_SLOTS; i++) {
        slot = &ctx->sh->slots[i];

        if (slot->pid != 0 && ngx_http_qwen_pid_alive(slot->pid)) {
            qp_metrics_add(m, &slot->gauges);
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/* A request refused before the engine saw it (429/503). */
void
ngx_http_qwen_metrics_refused(qp_refusal why)
{
    ngx_http_qwen_metrics_t  *mctx;

    mctx = ngx_http_qwen_metrics_get((ngx_cycle_t *) ngx_cycle, NULL);
    if (mctx == NULL) {
        return;
    }

    ngx_shmtx_lock(&mctx->shpool->mutex);
    qp_metrics_refused(&mctx->sh->counters, why);
    ngx_shmtx_unlock(&mctx->shpool->mutex);
}


/* ------------------------------------------------------------ admission */

/*
 * Connections do not spread evenly over nginx workers, so one worker's
 * slots and queue can be full while another's idle. A request is refused
 * only when the whole server is full: the requests every live worker holds
 * for the model (running and queued) against the sum of their qwen_slots
 * and qwen_queue. A worker's engine therefore queues past its own
 * qwen_queue, up to what the other workers would have taken (a bound set
 * at start, ngx_http_qwen_engine.c). A crashed worker's slot is skipped
 * and freed: what it held died with it (each other worker's pid is checked
 * at most once a second, so a count may outlive its worker that long).
 */

static void
ngx_http_qwen_admit_init(ngx_http_qwen_metrics_slot_t *slot,
    ngx_http_qwen_main_conf_t *qmcf)
{
    ngx_uint_t              i, n;
    ngx_http_qwen_model_t  *m, **mp;

    ngx_memzero(slot->admit, sizeof(slot->admit));

    n = 0;
    mp = qmcf->models.elts;

    for (i = 0; i < qmcf->models.nelts; i++) {
        m = mp[i];
        m->admit = -1;

        if (m->engine == NULL || n == NGX_HTTP_QWEN_ADMIT_MODELS) {
            continue;
        }

        slot->admit[n].key = ngx_crc32_short(m->path.data, m->path.len) | 1;
        slot->admit[n].held = 0;
        slot->admit[n].capacity = m->engine_conf.slots + m->engine_conf.queue;
        m->admit = n++;
    }
}


/* The server's requests held for the model of key and their capacity, summed
 * over live workers (the zone's mutex held). */
static void
ngx_http_qwen_admit_sum(ngx_http_qwen_metrics_t *mctx, uint32_t key,
    ngx_uint_t *held, ngx_uint_t *capacity)
{
    ngx_uint_t                     i, j;
    ngx_http_qwen_admit_t         *a;
    ngx_http_qwen_metrics_slot_t  *slot;

    *held = 0;
    *capacity = 0;

    for (i = 0; i < NGX_HTTP_QWEN_METRICS_SLOTS; i++) {
        slot = &mctx->sh->slots[i];

        if (slot->pid == 0) {
            continue;
        }

        /* kill(pid, 0) at most once a second per worker, not per request:
         * a crashed worker's counts linger that long at most */
        if (slot->pid != ngx_pid
            && (ngx_msec_int_t) (ngx_current_msec - slot->alive_at) >= 1000)
        {
            if (!ngx_http_qwen_pid_alive(slot->pid)) {
                slot->pid = 0;   /* free for the worker that replaces it */
                continue;
            }

            slot->alive_at = ngx_current_msec;
        }

        for (j = 0; j < NGX_HTTP_QWEN_ADMIT_MODELS; j++) {
            a = &slot->admit[j];

            if (a->key == key) {
                *held += a->held;
                *capacity += a->capacity;
                break;
            }
        }
    }
}


/* /health's view: 1 when the whole server is full for the model, 0 when
 * it has room, -1 when admission is not counted here. */
ngx_int_t
ngx_http_qwen_admit_full(ngx_http_qwen_model_t *m)
{
    ngx_uint_t                  held, capacity;
    ngx_http_qwen_metrics_t    *mctx;
    ngx_http_qwen_main_conf_t  *qmcf;

    mctx = ngx_http_qwen_metrics_get((ngx_cycle_t *) ngx_cycle, &qmcf);
    if (mctx == NULL || qmcf->metrics_slot < 0 || m->admit < 0) {
        return -1;
    }

    ngx_shmtx_lock(&mctx->shpool->mutex);
    ngx_http_qwen_admit_sum(mctx, mctx->sh->slots[qmcf->metrics_slot].admit[m->admit].key,
                            &held, &capacity);
    ngx_shmtx_unlock(&mctx->shpool->mutex);

    return held >= capacity;
}


/*
 * NGX_OK: admitted and counted (ngx_http_qwen_admit_release gives it back);
 * NGX_BUSY: the server is full; NGX_DECLINED: not counted here (no zone
 * slot), the engine's own queue decides. held and capacity are the
 * server's, for the refusal's message.
 */
ngx_int_t
ngx_http_qwen_admit(ngx_http_qwen_ctx_t *ctx, ngx_uint_t *held,
    ngx_uint_t *capacity)
{
    ngx_uint_t                     sum, cap;
    ngx_http_qwen_admit_t         *mine;
    ngx_http_qwen_model_t         *m;
    ngx_http_qwen_metrics_t       *mctx;
    ngx_http_qwen_main_conf_t     *qmcf;

    m = ctx->conf->model;

    mctx = ngx_http_qwen_metrics_get((ngx_cycle_t *) ngx_cycle, &qmcf);
    if (mctx == NULL || qmcf->metrics_slot < 0 || m->admit < 0) {
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&mctx->shpool->mutex);

    mine = &mctx->sh->slots[qmcf->metrics_slot].admit[m->admit];
    ngx_http_qwen_admit_sum(mctx, mine->key, &sum, &cap);

    *held = sum;
    *capacity = cap;

    if (sum >= cap) {
        ngx_shmtx_unlock(&mctx->shpool->mutex);
        return NGX_BUSY;
    }

    mine->held++;

    ngx_shmtx_unlock(&mctx->shpool->mutex);

    ctx->admitted = 1;

    return NGX_OK;
}


void
ngx_http_qwen_admit_release(ngx_http_qwen_ctx_t *ctx)
{
    ngx_http_qwen_admit_t      *mine;
    ngx_http_qwen_model_t      *m;
    ngx_http_qwen_metrics_t    *mctx;
    ngx_http_qwen_main_conf_t  *qmcf;

    if (!ctx->admitted) {
        return;
    }

    ctx->admitted = 0;
    m = ctx->conf->model;

    mctx = ngx_http_qwen_metrics_get((ngx_cycle_t *) ngx_cycle, &qmcf);
    if (mctx == NULL || qmcf->metrics_slot < 0 || m->admit < 0) {
        return;
    }

    ngx_shmtx_lock(&mctx->shpool->mutex);

    mine = &mctx->sh->slots[qmcf->metrics_slot].admit[m->admit];

    if (mine->held > 0) {
        mine->held--;
    }

    ngx_shmtx_unlock(&mctx->shpool->mutex);
}


/* ------------------------------------------------------------ variables */

/* the variables of a table ending in an empty name (this file's, the
 * quotas') */
ngx_int_t
ngx_http_qwen_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * $qwen_prompt_tokens, $qwen_completion_tokens, $qwen_cached_tokens (the
 * prompt tokens the prefix cache gave): counts; $qwen_ttft and
 * $qwen_queue_time: seconds with millisecond resolution, as $request_time;
 * $qwen_tokens_per_second: the decode rate after the first token;
 * $qwen_finish_reason: stop, length, tool_calls, cancelled, timeout or
 * error. Empty (not found) outside generation requests, and for values not
 * known (yet).
 */
static ngx_int_t
ngx_http_qwen_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char               *p;
    double                value;
    size_t                n;
    const char           *s;
    qwen_request_timing   timing;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_qwen_module);

    if (ctx == NULL) {
        goto not_found;
    }

    if (ctx->done) {
        timing = ctx->timing;

    } else if (ctx->req != NULL) {
        /* still generating (or the client has just gone) */
        qwen_request_get_timing(ctx->req, &timing);

    } else {
        goto not_found;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 8);
    if (p == NULL) {
        return NGX_ERROR;
    }

    switch (data) {

    case NGX_HTTP_QWEN_VAR_PROMPT_TOKENS:
        v->len = ngx_sprintf(p, "%uz", timing.n_prompt) - p;
        break;

    case NGX_HTTP_QWEN_VAR_CACHED_TOKENS:
        v->len = ngx_sprintf(p, "%uz", timing.n_cached) - p;
        break;

    case NGX_HTTP_QWEN_VAR_COMPLETION_TOKENS:
        n = ctx->done ? ctx->completion_tokens : timing.n_generated;
        v->len = ngx_sprintf(p, "%uz", n) - p;
        break;

    case NGX_HTTP_QWEN_VAR_TTFT:
        if (timing.first_token_ms < 0) {
            goto not_found;
        }

        v->len = ngx_sprintf(p, "%.3f", timing.first_token_ms / 1000.0) - p;
        break;

    case NGX_HTTP_QWEN_VAR_TOKENS_PER_SECOND:
        if (timing.first_token_ms < 0 || timing.n_generated < 2
            || timing.total_ms <= timing.first_token_ms)
        {
            goto not_found;
        }

        value = (double) (timing.n_generated - 1) * 1000.0
                / (timing.total_ms - timing.first_token_ms);

        if (value > 1.0e9) {
            goto not_found;
        }

        v->len = ngx_sprintf(p, "%.1f", value) - p;
        break;

    case NGX_HTTP_QWEN_VAR_FINISH_REASON:
        if (!ctx->done || ctx->finish_reason == NULL) {
            goto not_found;
        }

        s = ctx->finish_reason;
        v->len = ngx_strlen(s);
        v->data = (u_char *) s;
        v->valid = 1;
        v->no_cacheable = 1;
        v->not_found = 0;
        return NGX_OK;

    default: /* NGX_HTTP_QWEN_VAR_QUEUE_TIME */
        if (timing.queued_ms < 0) {
            goto not_found;
        }

        v->len = ngx_sprintf(p, "%.3f", timing.queued_ms / 1000.0) - p;
        break;
    }

    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;

not_found:

    v->not_found = 1;

    return NGX_OK;
}
