/* upstream.c: per-worker upstream connections and keep-alive pool (see upstream.h). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "log.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"

TAILQ_HEAD(upstream_list, upstream_conn);

/* The newest TLS session an upstream gave this worker (tls.c's new-session
 * callback writes it through the SSL's app data). */
struct upstream_tls_session {
	uint64_t tls_id;		/* 0 = free slot */
	char key[128];
	SSL_SESSION *sess;
};

struct upstream_pool {
	struct event_base *base;
	struct upstream_list idle;	/* most recently used first */
	unsigned n_idle;
	struct upstream_tls_session sessions[UPSTREAM_TLS_SESSIONS];
	unsigned next_evict;		/* round robin once every slot is used */
};

struct upstream_pool *
upstream_pool_new(struct event_base *base)
{
	struct upstream_pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->base = base;
	TAILQ_INIT(&p->idle);
	return p;
}

static void
conn_destroy(struct upstream_conn *uc)
{
	if (uc->bev != NULL && uc->tls_id != 0)
		tls_shutdown(uc->bev, 1);	/* its session stays resumable */
	if (uc->bev != NULL)
		bufferevent_free(uc->bev);	/* BEV_OPT_CLOSE_ON_FREE closes the fd */
	free(uc);
}

void
upstream_pool_free(struct upstream_pool *p)
{
	struct upstream_conn *uc;
	unsigned i;

	if (p == NULL)
		return;
	while ((uc = TAILQ_FIRST(&p->idle)) != NULL) {
		TAILQ_REMOVE(&p->idle, uc, link);
		conn_destroy(uc);
	}
	for (i = 0; i < UPSTREAM_TLS_SESSIONS; i++)
		SSL_SESSION_free(p->sessions[i].sess);
	free(p);
}

unsigned
upstream_pool_idle(const struct upstream_pool *p)
{
	return p->n_idle;
}

static void
idle_drop(struct upstream_conn *uc)
{
	struct upstream_pool *p = uc->pool;

	TAILQ_REMOVE(&p->idle, uc, link);
	p->n_idle--;
	conn_destroy(uc);
}

/* An idle connection must stay silent: data or EOF means the server closed
 * it (or broke protocol), so it can't carry another request. */
static void
idle_read_cb(struct bufferevent *bev, void *arg)
{
	idle_drop(arg);
}

static void
idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
	idle_drop(arg);
}

/* The session slot of (tls_id, key): found, or a free or evicted one. */
static struct upstream_tls_session *
session_slot(struct upstream_pool *p, uint64_t tls_id, const char *key)
{
	struct upstream_tls_session *s, *free_slot = NULL;
	unsigned i;

	for (i = 0; i < UPSTREAM_TLS_SESSIONS; i++) {
		s = &p->sessions[i];
		if (s->tls_id == tls_id && strcmp(s->key, key) == 0)
			return s;
		if (s->tls_id == 0 && free_slot == NULL)
			free_slot = s;
	}
	if ((s = free_slot) == NULL) {
		s = &p->sessions[p->next_evict++ % UPSTREAM_TLS_SESSIONS];
		SSL_SESSION_free(s->sess);
		s->sess = NULL;
	}
	s->tls_id = tls_id;
	snprintf(s->key, sizeof(s->key), "%s", key);
	return s;
}

struct upstream_conn *
upstream_get(struct upstream_pool *p, const struct tb_addr *addr,
    const struct tls_client *tls, int allow_reuse)
{
	struct upstream_tls_session *slot;
	struct upstream_conn *uc;
	uint64_t tls_id = tls != NULL ? tls_client_id(tls) : 0;
	int fd = -1, one = 1;
	SSL *ssl;

	if (allow_reuse) {
		TAILQ_FOREACH(uc, &p->idle, link) {
			if (uc->tls_id != tls_id || strcmp(uc->key, addr->text) != 0)
				continue;
			TAILQ_REMOVE(&p->idle, uc, link);
			p->n_idle--;
			/* The borrower sets its callbacks and timeouts. */
			bufferevent_setcb(uc->bev, NULL, NULL, NULL, NULL);
			uc->reused = 1;
			STATS_INC(tb_stats.upstream_pool_reused);
			return uc;
		}
	}

	if ((uc = calloc(1, sizeof(*uc))) == NULL)
		return NULL;
	uc->pool = p;
	uc->tls_id = tls_id;
	snprintf(uc->key, sizeof(uc->key), "%s", addr->text);
	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	/* Small JSON calls dominate OpenStack traffic: don't let Nagle delay them. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (tls != NULL) {
		slot = session_slot(p, tls_id, addr->text);
		if ((ssl = tls_client_ssl(tls, slot->sess, &slot->sess)) == NULL) {
			errno = ENOMEM;
			goto fail;
		}
		/* Frees ssl itself on failure (BEV_OPT_CLOSE_ON_FREE). */
		uc->bev = bufferevent_openssl_socket_new(p->base, fd, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (uc->bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(uc->bev, 1);
	} else {
		uc->bev = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (uc->bev == NULL)
		goto fail;
	fd = -1;	/* owned by the bufferevent now */
	if (bufferevent_socket_connect(uc->bev, (struct sockaddr *)&addr->ss,
	    (int)addr->len) < 0)
		goto fail;
	STATS_INC(tb_stats.upstream_connects);
	return uc;
fail:
	if (fd >= 0)
		close(fd);
	conn_destroy(uc);
	return NULL;
}

void
upstream_put(struct upstream_conn *uc, int reusable)
{
	struct upstream_pool *p = uc->pool;
	struct timeval idle = { UPSTREAM_IDLE_TIMEOUT, 0 };

	if (!reusable || p->n_idle >= UPSTREAM_IDLE_MAX ||
	    evbuffer_get_length(bufferevent_get_input(uc->bev)) != 0 ||
	    evbuffer_get_length(bufferevent_get_output(uc->bev)) != 0) {
		conn_destroy(uc);
		return;
	}
	bufferevent_setcb(uc->bev, idle_read_cb, NULL, idle_event_cb, uc);
	bufferevent_setwatermark(uc->bev, EV_READ, 0, 0);
	bufferevent_set_timeouts(uc->bev, &idle, NULL);
	bufferevent_enable(uc->bev, EV_READ);
	TAILQ_INSERT_HEAD(&p->idle, uc, link);
	p->n_idle++;
}

void
upstream_close(struct upstream_conn *uc)
{
	if (uc != NULL)
		conn_destroy(uc);
}
