
/*
 * ngx_http_qwen_engine.c - each worker's engines: started in init_process
 * for every model a location serves, stopped in exit_process, and woken
 * through the engine's eventfd, registered in the event loop as a
 * connection whose read handler drains the engine's news. And the worker's
 * drain (SIGWINCH, sent by the container's `serve` on SIGTERM): new
 * generations and /ping answer 503, running ones finish or, after
 * qwen_drain_timeout, end with an error; then the worker says it is
 * drained (process title, error log) and nginx is quit gracefully.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <signal.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "ngx_http_qwen_module.h"


static ngx_int_t ngx_http_qwen_engine_start(ngx_cycle_t *cycle,
    ngx_http_qwen_model_t *m, ngx_int_t threads, ngx_int_t workers);
static void ngx_http_qwen_notify_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_qwen_drain_init(ngx_cycle_t *cycle);
static void ngx_http_qwen_drain_exit(void);
static void ngx_http_qwen_drain_signal_handler(int signo);
static void ngx_http_qwen_drain_wake_handler(ngx_event_t *ev);
static void ngx_http_qwen_drain_start(ngx_cycle_t *cycle);
static void ngx_http_qwen_drain_deadline(ngx_event_t *ev);
static void ngx_http_qwen_drain_poll(ngx_event_t *ev);
static void ngx_http_qwen_drain_check(void);


/* NGX_HTTP_QWEN_DRAIN_SIGNAL is a no-op for nginx's master with `daemon
 * off;` (it only stops accepting in a daemon), so `kill -WINCH` may go to
 * nginx's whole process group. */
#define NGX_HTTP_QWEN_DRAIN_SIGNAL  SIGWINCH
#define NGX_HTTP_QWEN_DRAIN_POLL    200

ngx_uint_t  ngx_http_qwen_draining;

static volatile sig_atomic_t  ngx_http_qwen_drain_signaled;
static int                    ngx_http_qwen_drain_fd = -1;
static ngx_connection_t      *ngx_http_qwen_drain_conn;
static ngx_queue_t            ngx_http_qwen_generations;
static ngx_event_t            ngx_http_qwen_drain_timer;
static ngx_event_t            ngx_http_qwen_drain_poll_timer;
static ngx_msec_t             ngx_http_qwen_drain_timeout;
static ngx_uint_t             ngx_http_qwen_drained;
static ngx_uint_t             ngx_http_qwen_drain_quit_sent;


ngx_int_t
ngx_http_qwen_init_process(ngx_cycle_t *cycle)
{
    ngx_int_t                   threads, workers;
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

    workers = 1;
    threads = ngx_ncpu;
    if (ccf != NULL && ccf->worker_processes > 1) {
        workers = ccf->worker_processes;
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
        (void) ngx_http_qwen_engine_start(cycle, mp[i], threads, workers);
    }

    ngx_queue_init(&ngx_http_qwen_generations);
    ngx_http_qwen_drain_timeout = qmcf->drain_timeout;

    if (qmcf->used && ngx_http_qwen_drain_init(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_qwen_metrics_init_process(cycle);
}


static ngx_int_t
ngx_http_qwen_engine_start(ngx_cycle_t *cycle, ngx_http_qwen_model_t *m,
    ngx_int_t threads, ngx_int_t workers)
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
    /* the server's admission (ngx_http_qwen_admit) may queue here what
     * the other workers' slots and queues would have taken */
    params.max_queue = (int) (e->queue + (workers - 1) * (e->slots + e->queue));
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
    ngx_http_qwen_drain_exit();

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


/* ------------------------------------------------------------ the drain */

/*
 * The drain signal's handler only sets a flag and writes to an eventfd of
 * our own (both async-signal-safe): its read event starts the drain from
 * the event loop.
 */
static ngx_int_t
ngx_http_qwen_drain_init(ngx_cycle_t *cycle)
{
    ngx_connection_t  *c;
    struct sigaction   sa;

    ngx_http_qwen_drain_fd = eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC);
    if (ngx_http_qwen_drain_fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "qwen: eventfd() for the drain signal failed");
        return NGX_ERROR;
    }

    c = ngx_get_connection(ngx_http_qwen_drain_fd, cycle->log);
    if (c == NULL) {
        (void) close(ngx_http_qwen_drain_fd);
        ngx_http_qwen_drain_fd = -1;
        return NGX_ERROR;
    }

    ngx_http_qwen_drain_conn = c;
    c->data = cycle;
    c->read->handler = ngx_http_qwen_drain_wake_handler;
    c->read->log = cycle->log;
    c->write->log = cycle->log;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "qwen: cannot add the drain eventfd to the event loop");
        return NGX_ERROR;
    }

    ngx_memzero(&sa, sizeof(struct sigaction));
    sa.sa_handler = ngx_http_qwen_drain_signal_handler;
    sigemptyset(&sa.sa_mask);

    if (sigaction(NGX_HTTP_QWEN_DRAIN_SIGNAL, &sa, NULL) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "qwen: sigaction(SIGWINCH) for the drain failed");
        return NGX_ERROR;
    }

    ngx_http_qwen_drain_timer.handler = ngx_http_qwen_drain_deadline;
    ngx_http_qwen_drain_timer.log = cycle->log;
    ngx_http_qwen_drain_timer.data = cycle;
    ngx_http_qwen_drain_timer.cancelable = 1;

    ngx_http_qwen_drain_poll_timer.handler = ngx_http_qwen_drain_poll;
    ngx_http_qwen_drain_poll_timer.log = cycle->log;
    ngx_http_qwen_drain_poll_timer.data = cycle;
    ngx_http_qwen_drain_poll_timer.cancelable = 1;

    return NGX_OK;
}


static void
ngx_http_qwen_drain_exit(void)
{
    if (ngx_http_qwen_drain_timer.timer_set) {
        ngx_del_timer(&ngx_http_qwen_drain_timer);
    }

    if (ngx_http_qwen_drain_poll_timer.timer_set) {
        ngx_del_timer(&ngx_http_qwen_drain_poll_timer);
    }

    if (ngx_http_qwen_drain_conn != NULL) {
        ngx_close_connection(ngx_http_qwen_drain_conn);
        ngx_http_qwen_drain_conn = NULL;
        ngx_http_qwen_drain_fd = -1;
    }
}


static void
ngx_http_qwen_drain_signal_handler(int signo)
{
    int       err;
    ssize_t   n;
    uint64_t  one = 1;

    err = errno;

    ngx_http_qwen_drain_signaled = 1;

    /* a full counter (never) would only mean the wake-up is pending */
    if (ngx_http_qwen_drain_fd != -1) {
        n = write(ngx_http_qwen_drain_fd, &one, sizeof(uint64_t));
        (void) n;
    }

    errno = err;
}


static void
ngx_http_qwen_drain_wake_handler(ngx_event_t *ev)
{
    ssize_t            n;
    uint64_t           count;
    ngx_connection_t  *c;

    c = ev->data;

    n = read(c->fd, &count, sizeof(uint64_t));

    if (n == -1 && ngx_errno != NGX_EAGAIN) {
        ngx_log_error(NGX_LOG_ALERT, ev->log, ngx_errno,
                      "qwen: read() from the drain eventfd failed");
    }

    if (ngx_http_qwen_drain_signaled && !ngx_http_qwen_draining) {
        ngx_http_qwen_drain_start(c->data);
    }
}


static void
ngx_http_qwen_drain_start(ngx_cycle_t *cycle)
{
    ngx_uint_t   n;
    ngx_queue_t  *q;

    n = 0;

    for (q = ngx_queue_head(&ngx_http_qwen_generations);
         q != ngx_queue_sentinel(&ngx_http_qwen_generations);
         q = ngx_queue_next(q))
    {
        n++;
    }

    ngx_http_qwen_draining = 1;

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "qwen: draining: new generations and /ping are answered "
                  "503; %ui running generation%s get%s up to %M ms "
                  "(qwen_drain_timeout)", n, n == 1 ? "" : "s",
                  n == 1 ? "s" : "", ngx_http_qwen_drain_timeout);

    ngx_add_timer(&ngx_http_qwen_drain_timer, ngx_http_qwen_drain_timeout);
    ngx_add_timer(&ngx_http_qwen_drain_poll_timer, NGX_HTTP_QWEN_DRAIN_POLL);

    ngx_http_qwen_drain_check();
}


/* qwen_drain_timeout has passed: what still generates ends with an error
 * (an error event on a stream, a 503 otherwise). */
static void
ngx_http_qwen_drain_deadline(ngx_event_t *ev)
{
    ngx_queue_t          *q;
    ngx_http_qwen_ctx_t  *ctx;

    if (!ev->timedout) {
        return;         /* cancelled at exit */
    }

    ev->timedout = 0;

    while (!ngx_queue_empty(&ngx_http_qwen_generations)) {
        q = ngx_queue_head(&ngx_http_qwen_generations);
        ctx = ngx_queue_data(q, ngx_http_qwen_ctx_t, queue);

        /* out first: the request (and ctx) may be freed by its end */
        ngx_queue_remove(q);
        ctx->queued = 0;

        ngx_http_qwen_shutdown(ctx);
    }

    ngx_http_qwen_drain_check();
}


/* Engines free a cancelled slot within a step and other workers drain on
 * their own: look again until every worker's gauges are zero. */
static void
ngx_http_qwen_drain_poll(ngx_event_t *ev)
{
    if (!ev->timedout) {
        return;
    }

    ev->timedout = 0;

    ngx_http_qwen_drain_check();

    if (!ngx_http_qwen_drain_quit_sent && !ngx_exiting && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_QWEN_DRAIN_POLL);
    }
}


/*
 * Nothing generates here any more (the engines free a cancelled slot
 * within a step): the worker says so in its process title, which `serve`
 * watches to quit nginx once every worker is drained. When no worker's
 * gauges (the metrics zone) show a generation, it asks the master itself;
 * a master of another user (root, with workers as nobody) cannot be
 * signalled, and serve's quit follows.
 */
static void
ngx_http_qwen_drain_check(void)
{
    ngx_err_t                   err;
    ngx_uint_t                  i, level;
    qp_metrics                  m;
    qwen_engine_stats           stats;
    ngx_http_qwen_model_t     **mp;
    ngx_http_qwen_main_conf_t  *qmcf;

    if (!ngx_http_qwen_draining || ngx_http_qwen_drain_quit_sent
        || !ngx_queue_empty(&ngx_http_qwen_generations))
    {
        return;
    }

    if (!ngx_http_qwen_drained) {
        qmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_http_qwen_module);
        mp = qmcf->models.elts;

        for (i = 0; i < qmcf->models.nelts; i++) {
            if (mp[i]->engine == NULL) {
                continue;
            }

            qwen_engine_get_stats(mp[i]->engine, &stats);

            if (stats.running + stats.waiting > 0) {
                return;
            }
        }

        ngx_http_qwen_drained = 1;

        ngx_setproctitle("worker process is drained");

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "qwen: drained: no generation left in this worker");
    }

    if (ngx_http_qwen_metrics_collect((ngx_cycle_t *) ngx_cycle, &m) == NGX_OK
        && m.requests_running + m.requests_waiting > 0)
    {
        return;     /* another worker still generates */
    }

    ngx_http_qwen_drain_quit_sent = 1;

    if (ngx_process != NGX_PROCESS_WORKER) {
        ngx_quit = 1;
        return;
    }

    if (kill(getppid(), SIGQUIT) == -1) {
        err = ngx_errno;
        level = (err == NGX_EPERM) ? NGX_LOG_INFO : NGX_LOG_ALERT;

        ngx_log_error(level, ngx_cycle->log, err,
                      "qwen: drained, but kill(%P, SIGQUIT) failed: the "
                      "master quits on its next SIGQUIT (docker/serve "
                      "sends it once every worker is drained)", getppid());
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "qwen: every worker is drained: asked the master process "
                  "(%P) to quit", getppid());
}


void
ngx_http_qwen_drain_add(ngx_http_qwen_ctx_t *ctx)
{
    ngx_queue_insert_tail(&ngx_http_qwen_generations, &ctx->queue);
    ctx->queued = 1;
}


void
ngx_http_qwen_drain_remove(ngx_http_qwen_ctx_t *ctx)
{
    if (!ctx->queued) {
        return;
    }

    ngx_queue_remove(&ctx->queue);
    ctx->queued = 0;

    ngx_http_qwen_drain_check();
}
