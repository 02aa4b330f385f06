/*
 * worker.c: a worker thread (see worker.h). The control thread posts
 * messages under w->lock and activates w->msg_ev; the worker applies them
 * on its own loop, so connection and listener state is never shared.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "conn.h"
#include "h1.h"
#include "listener.h"
#include "log.h"
#include "module.h"
#include "sock.h"
#include "upstream.h"
#include "worker.h"

static void
worker_log_ev(const char *what, int id)
{
	log_debug("worker %d: %s", id, what);
}

/* Apply a new config: keep sockets whose address is unchanged (so their
 * backlog and established connections are untouched), open new ones, close
 * the listeners that are gone. */
static void
apply_config(struct worker *w, struct tb_config *cfg, struct worker_listen *ls, size_t n)
{
	struct listener *old = w->listeners, *l, *next, **pp, *fresh = NULL;
	size_t i;

	for (i = 0; i < n; i++) {
		for (pp = &old; *pp != NULL; pp = &(*pp)->next)
			if (strcmp((*pp)->addr, ls[i].lc->listen.text) == 0)
				break;
		if (*pp != NULL) {
			l = *pp;
			*pp = l->next;
			listener_set_conf(l, ls[i].lc);
			close(ls[i].fd);	/* we already listen on a dup of it */
		} else {
			l = listener_new(w, ls[i].lc, ls[i].fd);
			if (l == NULL) {
				log_warnx("worker %d: cannot listen on %s", w->id,
				    ls[i].lc->listen.text);
				continue;
			}
		}
		l->next = fresh;
		fresh = l;
	}
	for (l = old; l != NULL; l = next) {
		next = l->next;
		listener_free(l);
	}
	w->listeners = fresh;
	config_unref(w->cfg);
	w->cfg = cfg;
	modules_worker_configure(w, cfg);
	w->max_conns = cfg->max_connections / (unsigned)cfg->workers;
	if (w->max_conns == 0)
		w->max_conns = 1;
	/* Existing connections keep their own config reference (conn->cfg), so
	 * in-flight requests finish with the upstream they started with. */
}

static void maybe_exit(struct worker *w);

static void
flush_wait_cb(evutil_socket_t fd, short what, void *arg)
{
	maybe_exit(arg);
}

/* Draining and no connection left: exit once the spans are written too
 * (the control thread's drain_timeout still bounds the wait). */
static void
maybe_exit(struct worker *w)
{
	struct timeval tick = { 0, 20000 };

	if (!w->draining || w->n_conns != 0)
		return;
	if (!modules_worker_flushed(w)) {
		event_base_once(w->base, -1, EV_TIMEOUT, flush_wait_cb, w, &tick);
		return;
	}
	event_base_loopexit(w->base, NULL);
}

static void
msg_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct tb_config *cfg;
	struct worker_listen *ls;
	size_t n;
	int drain, stop;
	struct conn *c, *next;
	struct listener *l, *lnext;

	{
		char buf[64];

		while (read(w->msg_pipe[0], buf, sizeof(buf)) > 0)
			;	/* the messages themselves are under w->lock */
	}
	pthread_mutex_lock(&w->lock);
	cfg = w->msg_cfg;
	ls = w->msg_listen;
	n = w->msg_n_listen;
	drain = w->msg_drain;
	stop = w->msg_stop;
	w->msg_cfg = NULL;
	w->msg_listen = NULL;
	w->msg_n_listen = 0;
	w->msg_drain = 0;
	pthread_mutex_unlock(&w->lock);

	if (cfg != NULL) {
		worker_log_ev("reconfigure", w->id);
		apply_config(w, cfg, ls, n);
	}
	free(ls);
	if (stop) {
		event_base_loopbreak(w->base);
		return;
	}
	if (drain && !w->draining) {
		worker_log_ev("drain", w->id);
		w->draining = 1;
		for (l = w->listeners; l != NULL; l = lnext) {
			lnext = l->next;
			listener_free(l);
		}
		w->listeners = NULL;
		for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
			next = TAILQ_NEXT(c, link);
			conn_drain(c);
		}
		maybe_exit(w);
	}
}

void
worker_conn_closed(struct worker *w)
{
	struct listener *l;

	w->n_conns--;
	for (l = w->listeners; l != NULL; l = l->next)
		listener_maybe_resume(l);
	maybe_exit(w);
}

/*
 * The worker's loop. With epoll's changelist, the event changes a loop
 * iteration makes are applied once per descriptor before epoll_wait: a
 * socket that starts and stops writing within one iteration (a small
 * response written at once) costs no epoll_ctl at all. libevent warns about
 * dup()ed descriptors registered in the same loop; a worker registers each
 * descriptor it owns once (its listening sockets are dups of the control
 * thread's, which are never in this loop).
 */
static struct event_base *
worker_base_new(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *b;

	if (ec == NULL)
		return NULL;
	(void)event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	b = event_base_new_with_config(ec);
	event_config_free(ec);
	return b;
}

int
worker_init(struct worker *w, int id, struct tb_config *cfg)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->msg_pipe[0] = w->msg_pipe[1] = -1;
	TAILQ_INIT(&w->conns);
	pthread_mutex_init(&w->lock, NULL);
	w->cfg = config_ref(cfg);
	w->max_conns = cfg->max_connections / (unsigned)cfg->workers;
	if (w->max_conns == 0)
		w->max_conns = 1;
	if ((w->base = worker_base_new()) == NULL)
		return -1;
	if ((w->pool = upstream_pool_new(w->base)) == NULL)
		return -1;
	if ((w->pipes = sock_pipes_new(WORKER_PIPES)) == NULL)
		return -1;
	if ((w->scratch = malloc(sizeof(*w->scratch))) == NULL)
		return -1;
	if (pipe2(w->msg_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	w->msg_ev = event_new(w->base, w->msg_pipe[0], EV_READ | EV_PERSIST, msg_cb, w);
	if (w->msg_ev == NULL || event_add(w->msg_ev, NULL) < 0)
		return -1;
	return 0;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	event_base_dispatch(w->base);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);	/* main.c reads it */
	return NULL;
}

int
worker_start(struct worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);

	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return 0;
}

static void
post(struct worker *w)
{
	/*
	 * A byte on the worker's pipe, not event_active(): that would need
	 * libevent's locking (evthread_use_pthreads), which costs a mutex on
	 * every event operation of every loop. A full pipe already means a
	 * wake-up is pending, so EAGAIN is fine.
	 */
	(void)!write(w->msg_pipe[1], "m", 1);
}

void
worker_reconfigure(struct worker *w, struct tb_config *cfg,
    const struct worker_listen *ls, size_t n)
{
	struct worker_listen *copy = NULL;
	size_t i;

	if (n > 0 && (copy = calloc(n, sizeof(*copy))) != NULL)
		memcpy(copy, ls, n * sizeof(*copy));
	if (n > 0 && copy == NULL) {
		for (i = 0; i < n; i++)
			close(ls[i].fd);
		n = 0;
	}
	pthread_mutex_lock(&w->lock);
	if (w->msg_cfg != NULL) {
		/* An older reconfiguration not yet applied: replace it. */
		config_unref(w->msg_cfg);
		for (i = 0; i < w->msg_n_listen; i++)
			close(w->msg_listen[i].fd);
		free(w->msg_listen);
	}
	w->msg_cfg = cfg;
	w->msg_listen = copy;
	w->msg_n_listen = n;
	pthread_mutex_unlock(&w->lock);
	post(w);
}

void
worker_drain(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->msg_drain = 1;
	pthread_mutex_unlock(&w->lock);
	post(w);
}

void
worker_stop(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->msg_stop = 1;
	pthread_mutex_unlock(&w->lock);
	post(w);
}

void
worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void
worker_free(struct worker *w)
{
	struct listener *l, *next;
	struct conn *c;
	size_t i;

	for (l = w->listeners; l != NULL; l = next) {
		next = l->next;
		listener_free(l);
	}
	w->listeners = NULL;
	/* Connections still open after a drain timeout are cut. */
	while ((c = TAILQ_FIRST(&w->conns)) != NULL) {
		conn_close(c);
		event_base_loop(w->base, EVLOOP_NONBLOCK);	/* runs the deferred frees */
	}
	upstream_pool_free(w->pool);
	sock_pipes_free(w->pipes);
	modules_worker_free(w);
	if (w->msg_ev != NULL)
		event_free(w->msg_ev);
	if (w->msg_pipe[0] >= 0)
		close(w->msg_pipe[0]);
	if (w->msg_pipe[1] >= 0)
		close(w->msg_pipe[1]);
	config_unref(w->msg_cfg);
	for (i = 0; i < w->msg_n_listen; i++)
		close(w->msg_listen[i].fd);
	free(w->msg_listen);
	free(w->scratch);
	config_unref(w->cfg);
	if (w->base != NULL)
		event_base_free(w->base);
	pthread_mutex_destroy(&w->lock);
}
