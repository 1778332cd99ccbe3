
/*
 * ngx_http_qwen_engine.c - each worker's engines: started in init_process
 * for every model a location serves, stopped in exit_process, and woken
 * through the engine's eventfd, registered in the event loop as a
 * connection whose read handler drains the engine's news.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <unistd.h>

#include "ngx_http_qwen_module.h"


static ngx_int_t ngx_http_qwen_engine_start(ngx_cycle_t *cycle,
    ngx_http_qwen_model_t *m, ngx_int_t threads);
static void ngx_http_qwen_notify_handler(ngx_event_t *ev);


ngx_int_t
ngx_http_qwen_init_process(ngx_cycle_t *cycle)
{
    ngx_int_t                   threads;
    ngx_uint_t                  i;
    ngx_core_conf_t            *ccf;
    ngx_http_qwen_model_t     **mp;
    ngx_http_qwen_main_conf_t  *qmcf;

    /* compute threads only in workers: never in the master (fork) nor in
     * cache manager/loader processes */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_qwen_module);
    if (qmcf == NULL) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    threads = ngx_ncpu;
    if (ccf != NULL && ccf->worker_processes > 1) {
        threads = ngx_ncpu / ccf->worker_processes;
    }

    if (threads < 1) {
        threads = 1;
    }

    mp = qmcf->models.elts;
    for (i = 0; i < qmcf->models.nelts; i++) {
        if (!mp[i]->used) {
            continue;
        }

        /* a failed engine is logged; its locations answer 503 */
        (void) ngx_http_qwen_engine_start(cycle, mp[i], threads);
    }

    return ngx_http_qwen_metrics_init_process(cycle);
}


static ngx_int_t
ngx_http_qwen_engine_start(ngx_cycle_t *cycle, ngx_http_qwen_model_t *m,
    ngx_int_t threads)
{
    int                           fd;
    char                          err[QWEN_ERR_LEN];
    ngx_event_t                  *rev;
    ngx_connection_t             *c;
    qwen_engine_params            params;
    qwen_ctx_params               cp;
    ngx_http_qwen_engine_conf_t  *e;

    e = &m->engine_conf;

    params = qwen_engine_default_params();
    params.n_threads = (int) (e->threads ? e->threads : threads);
    params.n_slots = (int) e->slots;
    params.n_ctx = (int) e->ctx;
    params.n_batch = (int) e->batch;
    params.max_queue = (int) e->queue;
    params.kv_format = (char *) ngx_http_qwen_kv_caches[e->kv_cache].name.data;
    params.prefix_cache = (int) e->prefix_cache;
    params.draft = (int) e->draft;
    params.prefix_cache_bytes = e->prefix_cache ? e->prefix_cache_size : 0;

    err[0] = '\0';

    m->engine = qwen_engine_new(m->model, &params, err, sizeof(err));
    if (m->engine == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "qwen: cannot start the engine for model \"%V\" "
                      "(threads %d, slots %d, ctx %d): %s",
                      &m->path, params.n_threads, params.n_slots,
                      params.n_ctx, err);
        return NGX_ERROR;
    }

    fd = qwen_engine_notify_fd(m->engine);

    if (ngx_nonblocking(fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "qwen: " ngx_nonblocking_n " on the engine eventfd "
                      "failed");
        goto failed;
    }

    c = ngx_get_connection(fd, cycle->log);
    if (c == NULL) {
        goto failed;
    }

    c->data = m;
    m->notify = c;
    m->log = cycle->log;

    rev = c->read;
    rev->handler = ngx_http_qwen_notify_handler;
    rev->log = cycle->log;
    c->write->log = cycle->log;

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "qwen: cannot add the engine eventfd to the event "
                      "loop");
        goto failed;
    }

    /* the slots' KV cache, in the format the engine took */
    cp = qwen_ctx_default_params();
    cp.n_seqs = params.n_slots;
    cp.n_ctx = params.n_ctx;
    cp.kernels = params.kernels;
    cp.kv_format = qwen_engine_kv_format(m->engine);

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "qwen: engine for model \"%V\": threads %d, slots %d, "
                  "ctx %d, batch %d, queue %d, KV cache %uz MiB %s, "
                  "prefix cache %s%uz MiB more, drafts %s",
                  &m->path, params.n_threads, params.n_slots, params.n_ctx,
                  params.n_batch, params.max_queue,
                  qwen_kv_cache_bytes(m->model, &cp) >> 20,
                  qwen_engine_kv_format(m->engine),
                  params.prefix_cache ? "on, " : "off, ",
                  params.prefix_cache_bytes >> 20,
                  params.draft ? "ngram" : "off");

    return NGX_OK;

failed:

    ngx_http_qwen_engine_stop(m);

    return NGX_ERROR;
}


void
ngx_http_qwen_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i;
    ngx_http_qwen_model_t     **mp;
    ngx_http_qwen_main_conf_t  *qmcf;

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_qwen_module);
    if (qmcf == NULL) {
        return;
    }

    ngx_http_qwen_metrics_exit_process(cycle);

    mp = qmcf->models.elts;
    for (i = 0; i < qmcf->models.nelts; i++) {
        ngx_http_qwen_engine_stop(mp[i]);
    }
}


/* The engine owns its eventfd: take the connection out of the event loop
 * without closing the descriptor, then free the engine (which does). */
void
ngx_http_qwen_engine_stop(ngx_http_qwen_model_t *m)
{
    ngx_connection_t  *c;

    c = m->notify;

    if (c != NULL) {
        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
        }

        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
        m->notify = NULL;
    }

    if (m->engine != NULL) {
        qwen_engine_free(m->engine);
        m->engine = NULL;
    }
}


static void
ngx_http_qwen_notify_handler(ngx_event_t *ev)
{
    ssize_t                 n;
    uint64_t                count;
    ngx_connection_t       *c;
    ngx_http_qwen_model_t  *m;

    c = ev->data;
    m = c->data;

    n = read(c->fd, &count, sizeof(uint64_t));

    if (n == -1 && ngx_errno != NGX_EAGAIN) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, ngx_errno,
                      "qwen: read() from the engine eventfd failed");
    }

    if (m->engine != NULL) {
        ngx_http_qwen_engine_events(m);
    }
}
