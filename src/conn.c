/*
 * conn.c: client connection lifecycle (see conn.h). Reads request heads,
 * hands each request to proxy.c, answers framing errors itself, and keeps
 * the timeouts: client_idle_timeout between requests, client_header_timeout
 * from the first byte of a head to its end.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conn.h"
#include "h1.h"
#include "log.h"
#include "proxy.h"
#include "proxy_head.h"
#include "redact.h"
#include "sock.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"
#include "util.h"

static void conn_read_cb(struct sock *sk, void *arg);
static void conn_write_cb(struct sock *sk, void *arg);
static void conn_event_cb(struct sock *sk, int what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_free_cb(evutil_socket_t fd, short what, void *arg);
static void conn_next_cb(evutil_socket_t fd, short what, void *arg);
static void conn_try_head(struct conn *c);
static void conn_peek_cb(evutil_socket_t fd, short what, void *arg);

static const char *const state_names[] = {
	"tls_peek", "tls_handshake", "read_head", "proxying", "closing", "closed",
};

static void
timer_arm(struct conn *c, double secs)
{
	struct timeval tv = tb_timeval(secs);

	evtimer_add(c->timer, &tv);
}

void
conn_set_state(struct conn *c, enum conn_state s)
{
	/* Only forward moves, and back to READ_HEAD after a request. */
	if (c->state == CONN_CLOSED)
		return;
	if (s <= c->state && !(c->state == CONN_PROXYING && s == CONN_READ_HEAD)) {
		log_warnx("conn %s:%u: state %s -> %s refused", c->peer, c->peer_port,
		    state_names[c->state], state_names[s]);
		return;
	}
	if (log_get_level() >= TB_LOG_DEBUG)
		log_debug("conn %s:%u: %s -> %s", c->peer, c->peer_port,
		    state_names[c->state], state_names[s]);
	c->state = s;
	switch (s) {
	case CONN_TLS_PEEK:
		/* the handshake, like a head, has client_header_timeout */
		timer_arm(c, c->lc->client_header_timeout);
		break;
	case CONN_TLS_HANDSHAKE:
		break;
	case CONN_READ_HEAD:
		c->head_started = 0;
		c->scan_off = 0;
		c->next_parse = 0;
		timer_arm(c, c->lc->client_idle_timeout);
		break;
	case CONN_PROXYING:
		evtimer_del(c->timer);
		break;
	case CONN_CLOSING:
		/* Don't read what follows an error: its framing is unknown. */
		sock_disable(c->sk, SOCK_READING);
		timer_arm(c, c->lc->client_header_timeout);	/* bound the flush */
		break;
	case CONN_CLOSED:
		break;
	}
}

/* Give the connection its socket (plain, or TLS after the peek). */
static void
conn_attach_sock(struct conn *c, struct sock *sk)
{
	struct timeval wt = tb_timeval(c->lc->client_idle_timeout);

	c->sk = sk;
	sock_setcb(sk, conn_read_cb, conn_write_cb, conn_event_cb, c);
	sock_set_read_high(sk, CONN_READ_HIGH);
	/* A client that stops reading its response is cut off after
	 * client_idle_timeout; set once, it only counts while output waits. */
	sock_set_timeouts(sk, NULL, &wt);
	sock_enable(sk, SOCK_READING | SOCK_WRITING);
}

struct conn *
conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct tb_listener_conf *lc, struct stats_listener *stats)
{
	struct sock *sk = NULL;
	struct conn *c;
	int one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NULL;
	}
	c->fd = -1;
	c->w = w;
	c->cfg = config_ref(w->cfg);
	c->lc = lc;
	c->stats = stats;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, c->peer, sizeof(c->peer));
		c->peer_port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, c->peer, sizeof(c->peer));
		c->peer_port = ntohs(in6->sin6_port);
	} else {
		strcpy(c->peer, "unix");
	}
	c->peer_trusted = config_cidr_match(lc->trusted_proxies,
	    lc->n_trusted_proxies, sa);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->timer = evtimer_new(w->base, conn_timer_cb, c);
	c->next_ev = event_new(w->base, -1, 0, conn_next_cb, c);
	c->close_ev = evtimer_new(w->base, conn_free_cb, c);
	if (lc->tls != NULL) {
		/* Look at the first byte before TLS sees it (conn_peek_cb). */
		c->fd = fd;
		c->peek_ev = event_new(w->base, fd, EV_READ, conn_peek_cb, c);
		if (c->peek_ev == NULL || event_add(c->peek_ev, NULL) < 0)
			goto fail;
	} else if ((sk = sock_new(w->base, fd, NULL, SOCK_PLAIN)) == NULL) {
		goto fail;	/* sock_new closed fd */
	}
	if (c->timer == NULL || c->next_ev == NULL || c->close_ev == NULL)
		goto fail;
	TAILQ_INSERT_TAIL(&w->conns, c, link);
	w->n_conns++;
	STATS_INC(tb_stats.connections_active);
	STATS_INC(tb_stats.connections_total);
	if (sk == NULL) {
		/* c->state is CONN_TLS_PEEK (0) from calloc: the handshake, like
		 * a head, has client_header_timeout */
		timer_arm(c, c->lc->client_header_timeout);
		return c;
	}
	conn_attach_sock(c, sk);
	conn_set_state(c, CONN_READ_HEAD);
	return c;
fail:
	sock_free(sk);
	if (c->fd >= 0)
		close(c->fd);
	if (c->peek_ev != NULL)
		event_free(c->peek_ev);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->next_ev != NULL)
		event_free(c->next_ev);
	if (c->close_ev != NULL)
		event_free(c->close_ev);
	config_unref(c->cfg);
	free(c);
	return NULL;
}

/* A TLS connection that never got to a request: count why, log, close. */
static void
handshake_failed(struct conn *c, enum tls_fail reason, const char *why)
{
	if (c->stats != NULL)
		STATS_INC(c->stats->tls_failures[reason]);
	log_debug("%s: client %s: TLS handshake failed: %s", c->lc->name, c->peer, why);
	conn_close(c);
}

/*
 * Plain HTTP on the TLS port: answer in plain text, like nginx, so whoever
 * typed http:// learns why, then close. The request is read first, so that
 * closing does not reset the connection under the answer.
 */
static void
plain_http_reply(int fd)
{
	static const char reply[] =
	    "HTTP/1.1 400 Bad Request\r\n"
	    "Content-Type: text/plain\r\n"
	    "Content-Length: 38\r\n"
	    "Connection: close\r\n"
	    "\r\n"
	    "plain HTTP request sent to a TLS port\n";
	char sink[4096];
	int i;

	for (i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	(void)!send(fd, reply, sizeof(reply) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)shutdown(fd, SHUT_WR);
}

/*
 * The first byte of a TLS listener's connection: a handshake record (22)
 * starts TLS; a letter is someone speaking plain HTTP to the port; anything
 * else is not ours. MSG_PEEK leaves the byte for OpenSSL.
 */
static void
conn_peek_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct sock *sk;
	unsigned char b;
	ssize_t n;
	SSL *ssl;

	n = recv(fd, &b, 1, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		event_add(c->peek_ev, NULL);
		return;
	}
	if (n <= 0) {
		handshake_failed(c, TLS_FAIL_CLOSED, n == 0 ? "connection closed" :
		    strerror(errno));
		return;
	}
	if (b != 22) {
		if (isalpha(b))
			plain_http_reply(fd);
		handshake_failed(c, isalpha(b) ? TLS_FAIL_PLAIN_HTTP : TLS_FAIL_NOT_TLS,
		    isalpha(b) ? "plain HTTP request" : "not a TLS record");
		return;
	}
	if ((ssl = tls_server_ssl(c->lc->tls)) == NULL) {
		handshake_failed(c, TLS_FAIL_OTHER, "out of memory");
		return;
	}
	/* The sock owns fd and ssl from here, even when it fails. Clients
	 * often just close: SSL_OP_IGNORE_UNEXPECTED_EOF makes that an EOF,
	 * not an error (conn_close sends our close_notify, so what we send is
	 * never open to truncation). */
	c->fd = -1;
	if ((sk = sock_new(c->w->base, fd, ssl, SOCK_TLS_ACCEPT)) == NULL) {
		handshake_failed(c, TLS_FAIL_OTHER, "out of memory");
		return;
	}
	conn_set_state(c, CONN_TLS_HANDSHAKE);
	conn_attach_sock(c, sk);
}

/* The handshake is done: note what it settled, then read requests. */
static void
tls_done(struct conn *c)
{
	SSL *ssl = sock_ssl(c->sk);

	if ((c->tls = malloc(sizeof(*c->tls))) == NULL) {
		handshake_failed(c, TLS_FAIL_OTHER, "out of memory");
		return;
	}
	tls_server_info(ssl, c->tls);
	if (c->stats != NULL) {
		STATS_INC(c->stats->tls_handshakes);
		if (c->tls->resumed)
			STATS_INC(c->stats->tls_resumed);
	}
	conn_set_state(c, CONN_READ_HEAD);
	if (evbuffer_get_length(sock_input(c->sk)) > 0)
		conn_try_head(c);
}

/*
 * Close: stop every callback now, free the memory from the event loop later,
 * because we may be deep inside a callback of this connection or of its
 * upstream (STYLE.md 6).
 */
void
conn_close(struct conn *c)
{
	struct timeval now = { 0, 0 };

	if (c->state == CONN_CLOSED)
		return;
	conn_set_state(c, CONN_CLOSED);
	if (c->req != NULL) {
		proxy_req_free(c->req);
		c->req = NULL;
	}
	if (c->sk != NULL) {
		sock_setcb(c->sk, NULL, NULL, NULL, NULL);
		sock_disable(c->sk, SOCK_READING | SOCK_WRITING);
	}
	if (c->peek_ev != NULL)
		event_del(c->peek_ev);
	evtimer_del(c->timer);
	evtimer_add(c->close_ev, &now);
}

static void
conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct worker *w = c->w;

	TAILQ_REMOVE(&w->conns, c, link);
	if (c->sk != NULL) {
		if (c->tls != NULL)
			sock_tls_close(c->sk, !c->tls_bad);
		sock_free(c->sk);
	}
	if (c->fd >= 0)
		close(c->fd);
	if (c->peek_ev != NULL)
		event_free(c->peek_ev);
	proxy_req_free(c->ended);
	free(c->tls);
	event_free(c->timer);
	event_free(c->next_ev);
	event_free(c->close_ev);
	config_unref(c->cfg);
	free(c);
	STATS_DEC(tb_stats.connections_active);
	worker_conn_closed(w);
}

void
conn_send_error(struct conn *c, int status, int close_after)
{
	(void)proxy_head_error(sock_output(c->sk), status, close_after, NULL);
	sock_write_now(c->sk);
	if (close_after)
		conn_set_state(c, CONN_CLOSING);
}

void
conn_request_ended(struct conn *c, enum conn_after after)
{
	proxy_req_free(c->ended);	/* not in any call chain by now */
	c->ended = c->req;
	c->req = NULL;
	c->nreq++;
	if (after == CONN_AFTER_CLOSE) {
		conn_close(c);
		return;
	}
	if (after == CONN_AFTER_FLUSH_CLOSE || c->w->draining) {
		conn_set_state(c, CONN_CLOSING);
		if (evbuffer_get_length(sock_output(c->sk)) == 0)
			conn_close(c);
		return;
	}
	conn_set_state(c, CONN_READ_HEAD);
	/* Timeouts stay as set: the write timeout always, the read timeout was
	 * cleared when the request body ended (pump_request). A pipelined
	 * request inside OpenSSL is read by sock_enable; one already in the
	 * input is parsed from next_ev. */
	sock_enable(c->sk, SOCK_READING);
	event_active(c->next_ev, EV_TIMEOUT, 1);
}

/* From the loop, after a request ended: free it, start the next one. */
static void
conn_next_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	proxy_req_free(c->ended);
	c->ended = NULL;
	if (c->state == CONN_READ_HEAD && evbuffer_get_length(sock_input(c->sk)) > 0)
		conn_try_head(c);
}

void
conn_drain(struct conn *c)
{
	if ((c->state == CONN_READ_HEAD && !c->head_started) ||
	    c->state == CONN_TLS_PEEK || c->state == CONN_TLS_HANDSHAKE)
		conn_close(c);
	/* Otherwise conn_request_ended sees w->draining and closes. */
}

/* Answer a framing error of the head, then close. */
static void
head_error(struct conn *c, const struct h1_msg *m, int rc)
{
	/* 16 bytes in hex, and at most 8 runs of them withheld */
	char sample[2 * 16 + sizeof(REDACT_WITHHELD) * 9];
	size_t n = 0;
	struct evbuffer *in = sock_input(c->sk);
	unsigned char *p;
	size_t len = evbuffer_get_length(in), avail;

	/* Log a few bytes from the error on, in hex, never more (STYLE.md 3)
	 * and never a credential: a token after "X-Auth-Token :" is exactly
	 * where the parser stops (issue 13). */
	if (m->err_off < len) {
		n = len - m->err_off < 16 ? len - m->err_off : 16;
		p = evbuffer_pullup(in, (ssize_t)(m->err_off + n));
		/* all that is contiguous (the parsed head is): the rest of the
		 * line tells whether an '@' makes a target's authority userinfo */
		avail = evbuffer_get_contiguous_space(in);
		if (avail < m->err_off + n)
			avail = m->err_off + n;
		redact_head_sample((const char *)p, avail, m->err_off, n,
		    c->cfg->tracing.redact_query_params,
		    c->cfg->tracing.n_redact_query_params, sample,
		    sizeof(sample));
	} else {
		sample[0] = '\0';
	}
	log_info("%s: client %s: bad request head (%d %s at byte %zu: %s) [%s]",
	    c->lc->name, c->peer, m->err_status, m->err ? m->err : "?",
	    m->err_off, rc == -2 ? "limit" : "invalid", sample);
	STATS_INC(tb_stats.bad_requests);
	stats_request_done(c->stats, m->err_status, len, 0, 0);
	conn_send_error(c, m->err_status ? m->err_status : 400, 1);
}

/*
 * Look for a complete head in the input and start the request. The search
 * resumes where it stopped and a full parse runs only when the head end is
 * found or the input doubled, so a head trickled byte by byte costs linear
 * time, while garbage (bad method, bare LF) is still refused early.
 */
static void
conn_try_head(struct conn *c)
{
	struct evbuffer *in = sock_input(c->sk);
	size_t len = evbuffer_get_length(in), lim_len, parse_len;
	struct evbuffer_ptr start, found;
	struct h1_limits lim;
	struct h1_msg *m = c->w->scratch;
	unsigned char *p;
	int rc;

	if (len == 0)
		return;
	if (!c->head_started) {
		c->head_started = 1;
		timer_arm(c, c->lc->client_header_timeout);
	}
	lim.max_head_bytes = c->lc->max_header_bytes;
	lim.max_line = c->lc->max_header_bytes < 8192 ? c->lc->max_header_bytes : 8192;
	lim.max_headers = c->lc->max_headers;
	lim_len = lim.max_head_bytes + 1;

	evbuffer_ptr_set(in, &start, c->scan_off > 3 ? c->scan_off - 3 : 0, EVBUFFER_PTR_SET);
	found = evbuffer_search(in, "\r\n\r\n", 4, &start);
	if (found.pos >= 0) {
		parse_len = (size_t)found.pos + 4;
	} else {
		c->scan_off = len;
		if (len < c->next_parse && len < lim_len)
			return;
		c->next_parse = len * 2;
		parse_len = len;
	}
	if (parse_len > lim_len)
		parse_len = lim_len;
	p = evbuffer_pullup(in, (ssize_t)parse_len);
	rc = h1_parse_request((const char *)p, parse_len, &lim, m);
	if (rc == 0) {
		if (parse_len >= lim_len) {	/* cannot happen with a sane parser */
			m->err_status = 431;
			m->err = "head too large";
			m->err_off = parse_len;
			head_error(c, m, -2);
		}
		return;
	}
	if (rc < 0) {
		head_error(c, m, rc);
		return;
	}
	conn_set_state(c, CONN_PROXYING);
	c->req = proxy_start(c, m, (size_t)rc);
	/* proxy_start answered an error itself when it returned NULL. */
}

static void
conn_read_cb(struct sock *sk, void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_READ_HEAD:
		conn_try_head(c);
		break;
	case CONN_PROXYING:
		proxy_client_readable(c->req);
		break;
	case CONN_TLS_PEEK:
	case CONN_TLS_HANDSHAKE:
	case CONN_CLOSING:
	case CONN_CLOSED:
		break;
	}
}

static void
conn_write_cb(struct sock *sk, void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_PROXYING:
		proxy_client_drained(c->req);
		break;
	case CONN_CLOSING:
		if (evbuffer_get_length(sock_output(sk)) == 0)
			conn_close(c);
		break;
	case CONN_TLS_PEEK:
	case CONN_TLS_HANDSHAKE:
	case CONN_READ_HEAD:
	case CONN_CLOSED:
		break;
	}
}

static void
conn_event_cb(struct sock *sk, int what, void *arg)
{
	struct conn *c = arg;
	char why[256];

	/* A TLS error after the handshake (a bad record, say): the session
	 * must not be resumed. */
	if (c->tls != NULL && (what & SOCK_ERROR) && sock_ssl_error(sk) != 0)
		c->tls_bad = 1;
	if (c->state == CONN_TLS_HANDSHAKE) {
		if (what & SOCK_CONNECTED)
			tls_done(c);
		else if (what & SOCK_TIMEOUT)
			handshake_failed(c, TLS_FAIL_TIMEOUT, "write timeout");
		else
			handshake_failed(c, tls_server_failure(sock_ssl(sk), sock_ssl_error(sk),
			    (what & SOCK_EOF) != 0, why, sizeof(why)), why);
		return;
	}

	if (c->state == CONN_PROXYING && c->req != NULL) {
		proxy_client_gone(c->req, (what & SOCK_EOF) && (what & SOCK_READING));
		return;
	}
	conn_close(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_TLS_PEEK:
	case CONN_TLS_HANDSHAKE:
		handshake_failed(c, TLS_FAIL_TIMEOUT, "no handshake within client_header_timeout");
		break;
	case CONN_READ_HEAD:
		if (c->head_started) {
			log_info("%s: client %s: request head timeout", c->lc->name, c->peer);
			stats_request_done(c->stats, 408, 0, 0, 0);
			conn_send_error(c, 408, 1);
			return;
		}
		conn_close(c);		/* idle keep-alive connection */
		break;
	case CONN_CLOSING:
	case CONN_PROXYING:
	case CONN_CLOSED:
		conn_close(c);
		break;
	}
}
