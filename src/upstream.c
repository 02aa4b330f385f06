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
#include <event2/event.h>
#include <openssl/ssl.h>

#include "log.h"
#include "sock.h"
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
uconn_destroy(struct upstream_conn *uc)
{
	if (uc->sk != NULL) {
		sock_tls_close(uc->sk, 1);	/* its session stays resumable */
		sock_free(uc->sk);
	}
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
		uconn_destroy(uc);
	}
	for (i = 0; i < UPSTREAM_TLS_SESSIONS; i++)
		SSL_SESSION_free(p->sessions[i].sess);
	free(p);
}

static void
idle_drop(struct upstream_conn *uc)
{
	struct upstream_pool *p = uc->pool;

	TAILQ_REMOVE(&p->idle, uc, link);
	p->n_idle--;
	uconn_destroy(uc);
}

/* Contract in upstream.h. */
void
upstream_stray(const struct upstream_conn *uc, const char *when)
{
	STATS_INC(tb_stats.upstream_pool_stray);
	log_warnx("upstream %s: bytes %s: connection closed, not reused", uc->key,
	    when);
}

/*
 * An idle connection must stay silent. Bytes are the upstream breaking
 * HTTP (more than its Content-Length, a second response...): they would be
 * the next request's response, so the connection goes at once, counted
 * and logged. An EOF or a reset is a server ending keep-alive, which RFC
 * 9112 9.5 lets it do at any time, and our idle timeout is ours: closed at
 * once too, counted by cause (upstream_pool_closed_total), logged at debug
 * only since a warning for every keep-alive expiry would drown the real
 * ones.
 */
static void
idle_read_cb(struct sock *sk, void *arg)
{
	struct upstream_conn *uc = arg;

	upstream_stray(uc, "on an idle connection");
	idle_drop(uc);
}

static void
idle_event_cb(struct sock *sk, int what, void *arg)
{
	struct upstream_conn *uc = arg;

	int why = (what & SOCK_TIMEOUT) ? STATS_IDLE_TIMEOUT :
	    (what & SOCK_EOF) ? STATS_IDLE_EOF : STATS_IDLE_ERROR;

	STATS_INC(tb_stats.upstream_pool_closed[why]);
	log_debug("upstream %s: idle connection %s", uc->key,
	    why == STATS_IDLE_TIMEOUT ? "timed out" : why == STATS_IDLE_EOF ?
	    "closed by the server" : "failed");
	idle_drop(uc);
}

/* What waits on a connection taken out of, or put into, the pool: stray
 * bytes are counted and logged (upstream_stray); an EOF is not. */
static int
stray_check(struct upstream_conn *uc, int peek)
{
	int st = sock_stray(uc->sk, peek);

	if (st == SOCK_STRAY_BYTES)
		upstream_stray(uc, "after a complete response");
	return st;
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
	struct upstream_conn *uc, *next;
	uint64_t tls_id = tls != NULL ? tls_client_id(tls) : 0;
	int fd = -1, one = 1;
	SSL *ssl;

	if (allow_reuse) {
		for (uc = TAILQ_FIRST(&p->idle); uc != NULL; uc = next) {
			next = TAILQ_NEXT(uc, link);
			if (uc->tls_id != tls_id || strcmp(uc->key, addr->text) != 0)
				continue;
			TAILQ_REMOVE(&p->idle, uc, link);
			p->n_idle--;
			/* Bytes or EOF may have arrived since it went idle, in
			 * this loop iteration: the idle watch has not run yet. */
			if (stray_check(uc, 1) != SOCK_STRAY_NONE) {
				uconn_destroy(uc);
				continue;
			}
			/* The borrower sets its callbacks and timeouts. Bytes
			 * that arrive from here until its request is written
			 * are not its response (sock_read_before_write). */
			sock_setcb(uc->sk, NULL, NULL, NULL, NULL);
			sock_mark_write(uc->sk);
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
	} else {
		ssl = NULL;
	}
	/* fd and ssl belong to the sock now, even if it failed */
	uc->sk = sock_new(p->base, fd, ssl, ssl != NULL ? SOCK_TLS_CONNECT : SOCK_PLAIN);
	fd = -1;
	if (uc->sk == NULL ||
	    sock_connect(uc->sk, (struct sockaddr *)&addr->ss, addr->len) < 0)
		goto fail;
	/* a server that talks first (after the TLS handshake, say) does not
	 * answer the request it has not seen */
	sock_mark_write(uc->sk);
	STATS_INC(tb_stats.upstream_connects);
	return uc;
fail:
	if (fd >= 0)
		close(fd);
	uconn_destroy(uc);
	return NULL;
}

void
upstream_put(struct upstream_conn *uc, int reusable)
{
	struct upstream_pool *p = uc->pool;
	struct timeval idle = { UPSTREAM_IDLE_TIMEOUT, 0 };

	/* Bytes after the response (more than its Content-Length said) or
	 * an EOF: not reusable. Bytes still in the socket (after a splice, or
	 * arriving later) are found when it is taken out again. */
	if (!reusable || p->n_idle >= UPSTREAM_IDLE_MAX ||
	    evbuffer_get_length(sock_output(uc->sk)) != 0 ||
	    stray_check(uc, 0) != SOCK_STRAY_NONE) {
		uconn_destroy(uc);
		return;
	}
	sock_setcb(uc->sk, idle_read_cb, NULL, idle_event_cb, uc);
	sock_set_read_high(uc->sk, 0);
	sock_set_write_low(uc->sk, 0);
	sock_set_timeouts(uc->sk, &idle, NULL);
	sock_disable(uc->sk, SOCK_WRITING);
	sock_enable(uc->sk, SOCK_READING);
	TAILQ_INSERT_HEAD(&p->idle, uc, link);
	p->n_idle++;
}

void
upstream_close(struct upstream_conn *uc)
{
	if (uc != NULL)
		uconn_destroy(uc);
}
