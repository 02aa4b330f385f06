/*
 * upstream.h: per-worker upstream connections with a keep-alive pool.
 *
 * Each worker owns one pool (no locks). A connection is either lent to one
 * request (the proxy sets its callbacks and owns it until it calls
 * upstream_put or upstream_close) or idle in the pool, watched for the peer
 * closing it and for the idle timeout.
 */
#ifndef TB_UPSTREAM_H
#define TB_UPSTREAM_H

#include <stdint.h>
#include <sys/queue.h>

#include "config.h"

struct event_base;
struct sock;
struct upstream_pool;
struct tls_client;

/* Idle keep-alive connections kept per upstream address, and for how long. */
#define UPSTREAM_IDLE_MAX	256
#define UPSTREAM_IDLE_TIMEOUT	30	/* seconds; below typical WSGI server keep-alive */
/* TLS sessions kept per worker for resumption: one per upstream. */
#define UPSTREAM_TLS_SESSIONS	32

struct upstream_conn {
	struct sock *sk;	/* owned */
	struct upstream_pool *pool;
	char key[128];		/* upstream address text: the pool key... */
	uint64_t tls_id;	/* ...with the TLS client context (0 = plain) */
	int reused;		/* 1 if it came out of the pool (retry rule) */
	TAILQ_ENTRY(upstream_conn) link;
};

struct upstream_pool *upstream_pool_new(struct event_base *base);
/* Closes every idle connection; lent ones must have been returned already. */
void upstream_pool_free(struct upstream_pool *p);

/*
 * A connection to addr, over TLS with tls' settings unless tls is NULL: an
 * idle pooled one when allow_reuse (reused = 1, already connected), else a
 * new one whose connect (and handshake) is started (reused = 0; the caller
 * learns the outcome from SOCK_CONNECTED, which for TLS comes after
 * the handshake, or an error event). A new TLS connection offers the last
 * session this worker got from the same upstream. Callbacks are unset; the
 * caller sets them and enables SOCK_READING|SOCK_WRITING. Returns NULL with errno
 * set when no socket could be made.
 */
struct upstream_conn *upstream_get(struct upstream_pool *p, const struct tb_addr *addr,
    const struct tls_client *tls, int allow_reuse);

/* Return a connection after a complete exchange: pooled if reusable and its
 * input is empty, closed otherwise. uc is not to be used afterwards. */
void upstream_put(struct upstream_conn *uc, int reusable);

/* Close and free (an aborted request). */
void upstream_close(struct upstream_conn *uc);

/*
 * Count and log (warning, with the upstream address) bytes an upstream
 * sent where no response may be: when says where ("on an idle
 * connection"...). The caller closes uc.
 */
void upstream_stray(const struct upstream_conn *uc, const char *when);

#endif
