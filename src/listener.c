/*
 * listener.c: accept on one worker's SO_REUSEPORT socket (see listener.h).
 * Each worker has its own socket per listen address, so the kernel spreads
 * new connections evenly across workers without a shared accept lock.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "conn.h"
#include "listener.h"
#include "log.h"
#include "stats.h"
#include "worker.h"

#define SOMAXCONN_PATH	"/proc/sys/net/core/somaxconn"

int
listener_backlog(int want)
{
	FILE *f;
	int max = 0;

	if ((f = fopen(SOMAXCONN_PATH, "re")) != NULL) {
		if (fscanf(f, "%d", &max) != 1)
			max = 0;
		fclose(f);
	}
	if (max > 0 && want > max) {
		log_warnx("backlog = %d is above net.core.somaxconn (%d): the "
		    "listening sockets get %d (raise the sysctl for more)", want,
		    max, max);
		return max;
	}
	return want;
}

int
listener_probe(const struct tb_addr *a)
{
	int fd, one = 1, rc, saved;

	if ((fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	/* SO_REUSEADDR: connections of an earlier run in TIME_WAIT do not
	 * hold the port; without SO_REUSEPORT any listening socket does */
	rc = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (rc == 0 && a->ss.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (rc == 0)
		rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
	saved = errno;
	close(fd);
	errno = saved;
	return rc < 0 ? -1 : 0;
}

int
listener_socket(const struct tb_addr *a, int backlog)
{
	int fd, one = 1, saved;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (a->ss.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
	    listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct listener *l = arg;
	struct worker *w = l->w;

	if (w->draining) {
		close(fd);
		return;
	}
	(void)conn_new(w, fd, sa, (socklen_t)salen, l->lc, l->stats);
	if (w->n_conns >= w->max_conns) {
		/* At the limit: leave new connections in the kernel backlog. */
		struct listener *it;

		for (it = w->listeners; it != NULL; it = it->next) {
			if (!it->paused) {
				evconnlistener_disable(it->evl);
				it->paused = 1;
			}
		}
		log_warnx("worker %d: max_connections reached, pausing accept", w->id);
	}
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	if (l->paused && l->w->n_conns < l->w->max_conns && !l->w->draining) {
		evconnlistener_enable(l->evl);
		l->paused = 0;
	}
}

/* EMFILE/ENFILE: stop accepting for a moment instead of spinning. */
static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	struct timeval tv = { 1, 0 };
	int err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		log_warnx("%s: accept: %s; pausing for 1 s", l->addr, strerror(err));
		evconnlistener_disable(evl);
		l->paused = 1;
		evtimer_add(l->resume_ev, &tv);
		return;
	}
	log_warnx("%s: accept: %s", l->addr, strerror(err));
}

struct listener *
listener_new(struct worker *w, const struct tb_listener_conf *lc, int fd)
{
	struct listener *l;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		close(fd);
		return NULL;
	}
	l->w = w;
	listener_set_conf(l, lc);
	snprintf(l->addr, sizeof(l->addr), "%s", lc->listen.text);
	/*
	 * Backlog 0: fd is listening already (listener_socket, with the
	 * configured backlog). -1 would make libevent call listen(fd, 128)
	 * again, which shrinks the queue of the socket every worker shares
	 * with the control thread's copy.
	 */
	l->evl = evconnlistener_new(w->base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE, 0, fd);
	l->resume_ev = evtimer_new(w->base, resume_cb, l);
	if (l->evl == NULL || l->resume_ev == NULL) {
		if (l->evl == NULL)
			close(fd);
		listener_free(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->evl, accept_error_cb);
	return l;
}

void
listener_set_conf(struct listener *l, const struct tb_listener_conf *lc)
{
	l->lc = lc;
	/* A lookup under a lock: once per listener and reload, never per
	 * connection. */
	l->stats = stats_listener_get(lc->name);
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->evl != NULL)
		evconnlistener_free(l->evl);
	if (l->resume_ev != NULL)
		event_free(l->resume_ev);
	free(l);
}

void
listener_maybe_resume(struct listener *l)
{
	if (l->paused && !evtimer_pending(l->resume_ev, NULL))
		resume_cb(-1, 0, l);
}
