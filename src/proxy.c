/*
 * proxy.c: relay one request between the client and an upstream (see
 * proxy.h). Bodies move between evbuffers without copying
 * (evbuffer_remove_buffer), or socket to socket by splice(2), and never
 * faster than the slower side takes them: past CONN_OUT_HIGH bytes queued
 * on one side we stop reading the other, and resume from the write
 * callback below CONN_OUT_LOW (STYLE.md 5).
 *
 * A request moves through one state (enum proxy_state) and ends in one
 * place, req_end(), however it ends (STYLE.md 14). The heads it writes are
 * built in proxy_head.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "h1.h"
#include "log.h"
#include "proxy.h"
#include "proxy_head.h"
#include "redact.h"
#include "sock.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"
#include "util.h"

static const struct proxy_hooks no_hooks;
static const struct proxy_hooks *hooks = &no_hooks;

/* How a request's connection goes on after req_end. */
enum req_after {
	REQ_NEXT = 0,	/* the exchange is complete: next request, or close if
			 * keep-alive does not hold */
	REQ_CLOSE,	/* cut the client connection now */
};

static void up_read_cb(struct sock *sk, void *arg);
static void up_write_cb(struct sock *sk, void *arg);
static void up_event_cb(struct sock *sk, int what, void *arg);
static int retry_fresh(struct proxy_req *r);
static void pump_request(struct proxy_req *r);
static void pump_response(struct proxy_req *r);
static void req_end(struct proxy_req *r, enum proxy_err err, enum req_after after);
static void reply_error(struct proxy_req *r, int status);

static const char *const state_names[PROXY_NSTATES] = {
	"sending", "waiting", "relaying", "flushing", "ended",
};

void
proxy_set_hooks(const struct proxy_hooks *h)
{
	hooks = h != NULL ? h : &no_hooks;
}

/* The one place a request changes state: forward only. */
static void
set_state(struct proxy_req *r, enum proxy_state s)
{
	if (s < r->state) {
		log_warnx("%s: request state %s -> %s refused", r->c->lc->name,
		    state_names[r->state % PROXY_NSTATES], state_names[s % PROXY_NSTATES]);
		return;
	}
	r->state = s;
}

/* Copy a header value into a fixed field, truncated. */
static void
copy_field(char *dst, size_t dstlen, const char *src, size_t len)
{
	if (len >= dstlen)
		len = dstlen - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* The sink that appends "name: value\r\n" to an evbuffer (hooks add through it). */
static int
sink_add_evbuffer(void *arg, const char *name, size_t name_len,
    const char *value, size_t value_len)
{
	struct evbuffer *b = arg;

	if (evbuffer_add(b, name, name_len) < 0 || evbuffer_add(b, ": ", 2) < 0 ||
	    evbuffer_add(b, value, value_len) < 0 || evbuffer_add(b, "\r\n", 2) < 0)
		return -1;
	return 0;
}

static int
method_is(const struct proxy_req *r, const char *m)
{
	return strcmp(r->method, m) == 0;
}

/* Everything of the request body has gone to the upstream (or there is none). */
static int
req_body_done(const struct proxy_req *r)
{
	switch (r->req_body) {
	case H1_BODY_LENGTH:
		return r->req_remaining == 0;
	case H1_BODY_CHUNKED:
		return r->req_chunk.state == H1_CHUNK_DONE;
	case H1_BODY_NONE:
	case H1_BODY_EOF:	/* never for requests */
		break;
	}
	return 1;
}

/*
 * upstream_timeout bounds each wait on the upstream: for it to take body
 * bytes (write) and, once the whole request is sent, for response bytes
 * (read). A long upload is not a slow response, so no read timeout before.
 */
static void
upstream_timeouts(struct proxy_req *r)
{
	struct timeval tv;

	tv = tb_timeval(r->c->lc->upstream_timeout);
	sock_set_timeouts(r->uc->sk, req_body_done(r) ? &tv : NULL, &tv);
}

/* Lend an upstream connection to r and send the head; 0/-1. */
static int
upstream_attach(struct proxy_req *r, int allow_reuse)
{
	const struct tb_listener_conf *lc = r->c->lc;
	struct upstream_conn *uc;
	struct timeval tv;
	struct evbuffer *out;

	uc = upstream_get(r->c->w->pool, &lc->upstream_addr, lc->tls_up, allow_reuse);
	if (uc == NULL) {
		log_warn("%s: upstream %s", lc->name, lc->upstream_addr.text);
		return -1;
	}
	r->uc = uc;
	sock_setcb(uc->sk, up_read_cb, up_write_cb, up_event_cb, r);
	sock_set_read_high(uc->sk, CONN_READ_HIGH);
	if (uc->reused) {
		r->connect_us = -1;
		upstream_timeouts(r);
	} else {
		/* While connecting, the write timeout is the connect timeout;
		 * a TLS handshake also waits to read, under the same bound. */
		tv = tb_timeval(lc->upstream_connect_timeout);
		sock_set_timeouts(uc->sk, lc->tls_up != NULL ? &tv : NULL, &tv);
	}
	sock_enable(uc->sk, SOCK_READING | SOCK_WRITING);
	out = sock_output(uc->sk);
	if (evbuffer_add(out, r->fwd_head, r->fwd_head_len) < 0)
		return -1;
	sock_write_now(uc->sk);	/* a new one writes once connected */
	return 0;
}

/* Keep the first Host, User-Agent and Referer for logs and spans: one pass
 * over the fields instead of a search per name. */
static void
capture_fields(struct proxy_req *r, const struct h1_msg *m)
{
	const struct tb_hdr *h;
	char *dst;
	size_t i, dlen;

	/* RFC 9112 3.2.2: an absolute-form target's authority is the host */
	if (m->target_form == H1_TARGET_ABSOLUTE)
		copy_field(r->host, sizeof(r->host), m->authority, m->authority_len);
	for (i = 0; i < m->n_hdrs; i++) {
		h = &m->hdrs[i];
		if (hdr_name_is(h, "Host")) {
			dst = r->host;
			dlen = sizeof(r->host);
		} else if (hdr_name_is(h, "User-Agent")) {
			dst = r->user_agent;
			dlen = sizeof(r->user_agent);
		} else if (hdr_name_is(h, "Referer")) {
			/* a URL too: a temporary URL's signature, userinfo */
			if (r->referer[0] == '\0')
				redact_target(h->value, h->value_len,
				    r->c->cfg->tracing.redact_query_params,
				    r->c->cfg->tracing.n_redact_query_params,
				    r->referer, sizeof(r->referer));
			continue;
		} else {
			continue;
		}
		if (dst[0] == '\0')
			copy_field(dst, dlen, h->value, h->value_len);
	}
}

/*
 * The Connection options of m joined by commas, for the trailer section of
 * its chunked body (RFC 9110 7.6.1: the fields they name go from trailers
 * too): malloc'd, or NULL when the body is not chunked, m has none, or
 * memory is short (then only h1_trailer_forbidden's fixed set goes).
 */
static char *
connection_options(const struct h1_msg *m)
{
	const struct tb_hdr *h;
	size_t i, n = 0;
	char *s, *q;

	if (m->body != H1_BODY_CHUNKED)
		return NULL;
	for (i = 0; i < m->n_hdrs; i++)
		if (hdr_name_is(&m->hdrs[i], "Connection"))
			n += m->hdrs[i].value_len + 1;
	if (n == 0 || (s = malloc(n)) == NULL)
		return NULL;
	for (i = 0, q = s; i < m->n_hdrs; i++) {
		h = &m->hdrs[i];
		if (!hdr_name_is(h, "Connection"))
			continue;
		if (q != s)
			*q++ = ',';
		memcpy(q, h->value, h->value_len);
		q += h->value_len;
	}
	*q = '\0';
	return s;
}

/* The client connection may carry another request after this one only if
 * the client's framing is intact and nobody asked to close. */
static void
keepalive_unless_body_pending(struct proxy_req *r)
{
	if (req_body_done(r) && !(r->flags & PROXY_F_CLIENT_CLOSE))
		r->flags |= PROXY_F_KEEPALIVE;
	else
		r->flags &= ~PROXY_F_KEEPALIVE;
}

/* 1 if a field name of m holds '_' (underscore_headers). */
static int
has_underscore_name(const struct h1_msg *m)
{
	size_t i;

	for (i = 0; i < m->n_hdrs; i++)
		if (memchr(m->hdrs[i].name, '_', m->hdrs[i].name_len) != NULL)
			return 1;
	return 0;
}

struct proxy_req *
proxy_start(struct conn *c, const struct h1_msg *m, size_t head_len)
{
	struct evbuffer *in = sock_input(c->sk);
	struct hbuf hb, *b = NULL;
	struct proxy_req *r;
	struct timeval tv;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		goto fail_nomem;
	r->c = c;
	r->t_start_ns = tb_mono_ns();
	clock_gettime(CLOCK_REALTIME, &r->t_start_wall);
	r->connect_us = -1;
	r->first_byte_us = -1;
	r->bytes_in = head_len;
	copy_field(r->method, sizeof(r->method), m->method, m->method_len);
	/* origin-form: what goes upstream is what is logged and traced */
	if ((r->target = proxy_head_target(m)) == NULL)
		goto fail_nomem;
	r->log_target = redact_target_dup(r->target, strlen(r->target),
	    c->cfg->tracing.redact_query_params,
	    c->cfg->tracing.n_redact_query_params);
	if (r->log_target == NULL)
		goto fail_nomem;
	r->version_minor = m->version_minor;
	if (method_is(r, "HEAD"))
		r->flags |= PROXY_F_HEAD;
	if ((r->flags & PROXY_F_HEAD) || method_is(r, "GET") || method_is(r, "OPTIONS") ||
	    method_is(r, "PUT") || method_is(r, "DELETE") || method_is(r, "TRACE"))
		r->flags |= PROXY_F_IDEMPOTENT;
	if (m->flags & H1_F_CONN_CLOSE)
		r->flags |= PROXY_F_CLIENT_CLOSE;
	r->req_body = m->body;
	r->req_remaining = m->body == H1_BODY_LENGTH ? m->content_length : 0;
	h1_chunk_init(&r->req_chunk, 0);
	r->req_conn = connection_options(m);
	if ((m->flags & H1_F_EXPECT_CONTINUE) && m->body != H1_BODY_NONE)
		r->flags |= PROXY_F_EXPECT;
	copy_field(r->upstream_addr, sizeof(r->upstream_addr), c->lc->upstream_addr.text,
	    strlen(c->lc->upstream_addr.text));
	capture_fields(r, m);
	c->req = r;
	if (m->flags & H1_F_UPGRADE)	/* Upgrade is not forwarded (hop-by-hop) */
		log_debug("%s: client %s: upgrade not supported, served as a plain request",
		    c->lc->name, c->peer);

	/* CONNECT tunnels, an Expect we don't know and, if so configured,
	 * field names with '_' are refused cleanly; with a body we won't
	 * read, the connection closes after. */
	if (method_is(r, "CONNECT") || (m->flags & H1_F_EXPECT_OTHER) ||
	    (c->cfg->underscore_headers == TB_UNDERSCORE_REJECT &&
	    has_underscore_name(m))) {
		evbuffer_drain(in, head_len);
		if (m->body != H1_BODY_NONE)
			r->flags |= PROXY_F_CLIENT_CLOSE;
		keepalive_unless_body_pending(r);
		if (method_is(r, "CONNECT")) {
			reply_error(r, 405);
		} else if (m->flags & H1_F_EXPECT_OTHER) {
			reply_error(r, 417);
		} else {
			STATS_INC(tb_stats.underscore[1]);
			log_info("%s: client %s: refused: a field name with '_' "
			    "(underscore_headers = reject)", c->lc->name, c->peer);
			reply_error(r, 400);
		}
		return r;
	}

	/* The forwarded head is kept (for one retry): copied off the stack,
	 * or taken over when it outgrew the stack buffer. */
	b = &hb;
	hb_init(b);
	if (proxy_head_forward(b, r, m, hooks->on_request) < 0)
		goto fail_nomem;
	r->fwd_head_len = b->len;
	if (b->heap) {
		r->fwd_head = b->p;	/* take it over */
		b->heap = 0;
	} else {
		if ((r->fwd_head = malloc(r->fwd_head_len)) == NULL)
			goto fail_nomem;
		memcpy(r->fwd_head, b->p, r->fwd_head_len);
	}
	b = NULL;
	evbuffer_drain(in, head_len);	/* m points into it until here */

	if (upstream_attach(r, 1) < 0) {
		STATS_INC(tb_stats.upstream_errors[STATS_UP_CONNECT_REFUSED]);
		r->err = PROXY_ERR_UPSTREAM_UNAVAILABLE;
		keepalive_unless_body_pending(r);
		reply_error(r, 502);
		return r;
	}
	set_state(r, req_body_done(r) ? PROXY_WAITING : PROXY_SENDING);
	if (r->flags & PROXY_F_EXPECT) {
		/* We answer 100-continue ourselves (and strip Expect): the body then
		 * streams to the upstream as it arrives. */
		evbuffer_add(sock_output(c->sk), "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	if (r->state == PROXY_SENDING) {
		/* A client that stops sending its body is cut off after idle
		 * timeout (the write timeout is set for the connection's life). */
		tv = tb_timeval(c->lc->client_idle_timeout);
		sock_set_timeouts(c->sk, &tv, &tv);
		pump_request(r);
	}
	return r;

fail_nomem:
	log_warnx("%s: out of memory starting a request", c->lc->name);
	if (b != NULL)
		hb_free(b);
	if (r != NULL) {
		free(r->target);
		free(r->log_target);
		free(r->req_conn);
		free(r->fwd_head);
		free(r);
	}
	c->req = NULL;
	conn_send_error(c, 503, 1);
	return NULL;
}

/* Count, trace and log the request: once, from req_end or proxy_req_free. */
static void
report(struct proxy_req *r)
{
	struct conn *c = r->c;
	struct timespec now;
	char line[2048], tbuf[64];
	struct tm tm;
	int n;

	r->duration_us = (tb_mono_ns() - r->t_start_ns) / 1000;
	clock_gettime(CLOCK_REALTIME, &now);
	r->t_end_wall = now;
	stats_request_done(c->stats, r->status, r->bytes_in, r->bytes_out, r->duration_us);
	if (hooks->on_complete != NULL)
		hooks->on_complete(r);
	if (log_access_enabled()) {
		gmtime_r(&r->t_start_wall.tv_sec, &tm);
		strftime(tbuf, sizeof(tbuf), "%d/%b/%Y:%H:%M:%S +0000", &tm);
		/* combined log format + upstream address, upstream time, total time */
		n = snprintf(line, sizeof(line),
		    "%s - - [%s] \"%s %.1024s HTTP/1.%d\" %d %llu \"%s\" \"%s\" %s %.3f %.3f%s",
		    c->peer, tbuf, r->method, r->log_target, r->version_minor, r->status,
		    (unsigned long long)r->bytes_out, r->referer[0] ? r->referer : "-",
		    r->user_agent[0] ? r->user_agent : "-", r->upstream_addr,
		    r->first_byte_us >= 0 ? (double)r->first_byte_us / 1e6 : -1.0,
		    (double)r->duration_us / 1e6, r->log_extra);
		if (n > 0)
			log_access(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
}

/*
 * The one exit of a request (STYLE.md 14), however it ended; err says how
 * (PROXY_OK: a complete exchange, unless an error was recorded before).
 * Reports once, aborts the upstream connection if r still holds it (a
 * complete exchange gave it back already), and hands the connection on:
 * the next request from the connection's own event, or a close. The
 * connection frees r later; callers return right after.
 */
static void
req_end(struct proxy_req *r, enum proxy_err err, enum req_after after)
{
	if (r->state == PROXY_ENDED)
		return;
	if (r->err == PROXY_OK)
		r->err = err;
	set_state(r, PROXY_ENDED);
	if (r->uc != NULL) {
		upstream_close(r->uc);	/* mid-exchange: never reused */
		r->uc = NULL;
	}
	report(r);
	if (after == REQ_NEXT && (r->flags & PROXY_F_KEEPALIVE))
		conn_request_ended(r->c, CONN_AFTER_NEXT);
	else if (after == REQ_NEXT)
		conn_request_ended(r->c, CONN_AFTER_FLUSH_CLOSE);
	else
		conn_request_ended(r->c, CONN_AFTER_CLOSE);
}

void
proxy_req_free(struct proxy_req *r)
{
	if (r == NULL)
		return;
	/* Every request is logged, counted and traced once, however it ended
	 * (its connection closed under it: a drain timeout...). */
	if (r->state != PROXY_ENDED)
		report(r);
	if (r->uc != NULL) {
		upstream_close(r->uc);	/* mid-exchange: never reused */
		r->uc = NULL;
	}
	if (hooks->on_free != NULL)
		hooks->on_free(r);
	free(r->target);
	free(r->log_target);
	free(r->req_conn);
	free(r->resp_conn);
	free(r->fwd_head);
	free(r);
}

/* --- bodies -------------------------------------------------------------- */

/* Move n bytes from in to out; for the dechunk case, drop them instead. */
static void
move_bytes(struct evbuffer *in, struct evbuffer *out, size_t n)
{
	if (out != NULL)
		evbuffer_remove_buffer(in, out, n);
	else
		evbuffer_drain(in, n);
}

/*
 * A chunked body's trailer section: held in `in` until it is whole (at most
 * the decoder's max_trailer_bytes; ch->trailer_bytes of it parsed), then
 * moved to out without the fields no trailer may carry, both directions
 * (h1_trailer_filter, conn: the message's Connection options or NULL); out
 * NULL drops it whole (an HTTP/1.0 client has no trailers). 1 when the body
 * is complete, 0 for more input, -1 on bad framing or no memory (ch->err).
 */
static int
move_trailers(struct h1_chunk *ch, const char *conn, struct evbuffer *in,
    struct evbuffer *out, uint64_t *moved)
{
	size_t avail = evbuffer_get_length(in), held, n;
	struct evbuffer_iovec v;
	unsigned char *p;

	while (ch->state != H1_CHUNK_DONE) {
		held = ch->trailer_bytes;
		if (avail <= held)
			return 0;
		n = avail - held < 1024 ? avail - held : 1024;
		p = evbuffer_pullup(in, (ssize_t)(held + n));
		if (h1_chunk_parse(ch, (const char *)p + held, n) < 0)
			return -1;
	}
	held = ch->trailer_bytes;
	p = evbuffer_pullup(in, (ssize_t)held);
	if (out != NULL) {
		if (evbuffer_reserve_space(out, (ev_ssize_t)held, &v, 1) != 1) {
			ch->err = "out of memory for the trailer section";
			return -1;
		}
		v.iov_len = h1_trailer_filter((const char *)p, held, conn,
		    conn != NULL ? strlen(conn) : 0, v.iov_base, NULL);
		evbuffer_commit_space(out, &v, 1);
	}
	evbuffer_drain(in, held);
	*moved += held;
	return 1;
}

/*
 * Move body bytes from in to out under framing state (LENGTH or CHUNKED).
 * out NULL... never for requests. keep_framing: chunk framing bytes are
 * forwarded too (else dropped, for HTTP/1.0 clients). conn: for the
 * trailers (move_trailers). Stops when out passes CONN_OUT_HIGH. Returns 1
 * when the body is complete, 0 when more is needed or output is full, -1
 * on bad chunked framing. *moved counts the bytes taken from in.
 */
static int
move_body(enum h1_body kind, uint64_t *remaining, struct h1_chunk *ch,
    const char *conn, struct evbuffer *in, struct evbuffer *out, int keep_framing,
    uint64_t *moved)
{
	size_t avail, n;
	ssize_t k;
	unsigned char *p;

	for (;;) {
		if (evbuffer_get_length(out) >= CONN_OUT_HIGH)
			return 0;
		avail = evbuffer_get_length(in);
		switch (kind) {
		case H1_BODY_LENGTH:
			if (*remaining == 0)
				return 1;
			if (avail == 0)
				return 0;
			n = avail < *remaining ? avail : (size_t)*remaining;
			move_bytes(in, out, n);
			*remaining -= n;
			*moved += n;
			break;
		case H1_BODY_EOF:
			if (avail == 0)
				return 0;
			move_bytes(in, out, avail);
			*moved += avail;
			break;
		case H1_BODY_CHUNKED:
			if (ch->state == H1_CHUNK_DONE)
				return 1;
			/* TRAILER .. FINAL_LF: the states between are the section */
			if (ch->state >= H1_CHUNK_TRAILER)
				return move_trailers(ch, conn, in,
				    keep_framing ? out : NULL, moved);
			if (avail == 0)
				return 0;
			if (ch->state == H1_CHUNK_DATA) {
				n = avail < ch->remaining ? avail : (size_t)ch->remaining;
				move_bytes(in, out, n);
				h1_chunk_data(ch, n);
				*moved += n;
				break;
			}
			n = avail < 1024 ? avail : 1024;
			p = evbuffer_pullup(in, (ssize_t)n);
			k = h1_chunk_parse(ch, (const char *)p, n);
			if (k < 0)
				return -1;
			if (k > 0) {
				move_bytes(in, keep_framing ? out : NULL, (size_t)k);
				*moved += (uint64_t)k;
			}
			break;
		case H1_BODY_NONE:
			return 1;
		}
	}
}

/* Bodies at least this large (or read-until-close) go by splice(2) when
 * both sides are plain: below it, the few syscalls a relay costs are not
 * won back (bench/bulk.sh). */
#define PROXY_SPLICE_MIN	(128 * 1024)

/*
 * Hand the next body bytes from src to dst to the kernel when it pays:
 * [DEFAULT] splice = auto for responses, all for request bodies too (by
 * measurement, bench/README.md: responses go faster spliced, while request
 * bodies went 10-20 % faster copied through our large reads and writes, at
 * no more CPU); both sides plain, a length known from the framing (the
 * rest of a Content-Length body, the data of the current chunk, or up to
 * EOF), nothing buffered on either side (sock_splice checks the last two).
 * A request body is one whose src is the client. 1 when a relay started.
 */
static int
try_splice(const struct proxy_req *r, struct sock *src, struct sock *dst,
    enum h1_body body, uint64_t remaining, const struct h1_chunk *ch)
{
	uint64_t n;

	if (r->c->cfg->splice == TB_SPLICE_OFF ||
	    (r->c->cfg->splice == TB_SPLICE_AUTO && src == r->c->sk))
		return 0;
	switch (body) {
	case H1_BODY_LENGTH:
		n = remaining;
		break;
	case H1_BODY_CHUNKED:
		n = ch->state == H1_CHUNK_DATA ? ch->remaining : 0;
		break;
	case H1_BODY_EOF:
		n = SOCK_SPLICE_TO_EOF;
		break;
	default:
		return 0;
	}
	if (n < PROXY_SPLICE_MIN || sock_splice(src, dst, r->c->w->pipes, n) < 0)
		return 0;
	STATS_INC(tb_stats.splices);
	return 1;
}

/* Count what a relay moved against the body's framing; 1 while it runs
 * (a sock that relays nothing: 0 bytes, not running). */
static int
take_spliced(struct sock *src, enum h1_body body, uint64_t *remaining,
    struct h1_chunk *ch, uint64_t *total)
{
	int running;
	uint64_t n = sock_splice_take(src, &running);

	if (n == 0)
		return running;
	if (body == H1_BODY_LENGTH)
		*remaining -= n;
	else if (body == H1_BODY_CHUNKED)
		h1_chunk_data(ch, n);
	*total += n;
	STATS_ADD(tb_stats.spliced_bytes, n);
	return running;
}

/* --- request body: client -> upstream ------------------------------------ */

static void
pump_request(struct proxy_req *r)
{
	struct conn *c = r->c;
	struct evbuffer *in, *out;
	struct timeval tv;
	uint64_t moved = 0;
	int rc;

	if ((r->state != PROXY_SENDING && r->state != PROXY_RELAYING) ||
	    req_body_done(r) || r->uc == NULL)
		return;
	in = sock_input(c->sk);
	out = sock_output(r->uc->sk);
	/* A relay still running has the body; one that ended left its count. */
	if (take_spliced(c->sk, r->req_body, &r->req_remaining, &r->req_chunk, &r->bytes_in))
		return;
	rc = move_body(r->req_body, &r->req_remaining, &r->req_chunk, r->req_conn, in, out,
	    1, &moved);
	r->bytes_in += moved;
	if (rc < 0) {
		log_info("%s: client %s: bad chunked body (%s)", c->lc->name, c->peer,
		    r->req_chunk.err ? r->req_chunk.err : "?");
		STATS_INC(tb_stats.bad_requests);
		r->err = PROXY_ERR_BAD_REQUEST_BODY;
		if (r->state == PROXY_SENDING) {
			upstream_close(r->uc);
			r->uc = NULL;
			r->flags &= ~PROXY_F_KEEPALIVE;	/* the framing is lost */
			reply_error(r, 400);
		} else {
			req_end(r, PROXY_ERR_BAD_REQUEST_BODY, REQ_CLOSE);
		}
		return;
	}
	if (rc == 1) {
		tv = tb_timeval(c->lc->client_idle_timeout);
		sock_set_timeouts(c->sk, NULL, &tv);
		if (r->state == PROXY_SENDING)
			set_state(r, PROXY_WAITING);
		if (r->connect_us >= 0 || r->uc->reused)
			upstream_timeouts(r);
		if (moved > 0)
			sock_write_now(r->uc->sk);
		return;
	}
	if (evbuffer_get_length(out) >= CONN_OUT_HIGH) {
		/* Upstream is slower than the client: stop reading the client
		 * until the upstream's output drains below the low mark. */
		sock_disable(c->sk, SOCK_READING);
		sock_set_write_low(r->uc->sk, CONN_OUT_LOW);
		return;
	}
	if (moved > 0)
		sock_write_now(r->uc->sk);
	else
		try_splice(r, c->sk, r->uc->sk, r->req_body, r->req_remaining, &r->req_chunk);
}

/* --- the proxy's own replies --------------------------------------------- */

/*
 * Answer r with the proxy's own reply (status set here), carrying the
 * hooks' response headers (the trace id, so the client can find the failed
 * request's trace). The request ends once it is flushed
 * (proxy_client_drained); without keep-alive nothing more is read.
 */
static void
reply_error(struct proxy_req *r, int status)
{
	struct evbuffer *b = NULL;
	struct tb_hdr_sink sink;
	struct conn *c = r->c;
	int close_after = !(r->flags & PROXY_F_KEEPALIVE);

	r->status = status;
	if (hooks->on_response != NULL && (b = evbuffer_new()) != NULL) {
		sink.add = sink_add_evbuffer;
		sink.arg = b;
		hooks->on_response(r, NULL, &sink);
	}
	r->bytes_out += proxy_head_error(sock_output(c->sk), status, close_after, b);
	if (b != NULL)
		evbuffer_free(b);
	set_state(r, PROXY_FLUSHING);
	if (close_after)
		sock_disable(c->sk, SOCK_READING);	/* its framing is unknown */
	sock_enable(c->sk, SOCK_WRITING);
	sock_set_write_low(c->sk, 0);
	sock_write_now(c->sk);
}

/* The request failed before any response byte reached the client. */
static void
fail_before_response(struct proxy_req *r, int status, enum proxy_err err)
{
	r->err = err;
	if (r->uc != NULL) {
		upstream_close(r->uc);
		r->uc = NULL;
	}
	/* The client's body framing is only known if we read all of it. */
	keepalive_unless_body_pending(r);
	reply_error(r, status);
}

/* --- response: upstream -> client ---------------------------------------- */

/* Build and queue the response head for the client. */
static void
send_response_head(struct proxy_req *r, const struct h1_msg *m)
{
	struct conn *c = r->c;
	struct hbuf hb, *b = &hb;
	int i_rid;

	r->status = m->status;
	r->resp_body = m->body;
	r->resp_remaining = m->body == H1_BODY_LENGTH ? m->content_length : 0;
	h1_chunk_init(&r->resp_chunk, 0);
	r->resp_conn = connection_options(m);
	if (m->body == H1_BODY_CHUNKED && r->version_minor == 0)
		r->flags |= PROXY_F_DECHUNK;
	if (m->body != H1_BODY_EOF && !(m->flags & H1_F_CONN_CLOSE) &&
	    !h1_connection_has(m, "close"))
		r->flags |= PROXY_F_UP_REUSABLE;
	if (!(r->flags & (PROXY_F_CLIENT_CLOSE | PROXY_F_DECHUNK)) && !c->w->draining &&
	    m->body != H1_BODY_EOF && req_body_done(r))
		r->flags |= PROXY_F_KEEPALIVE;
	if ((i_rid = hdr_find(m->hdrs, m->n_hdrs, 0, "X-OpenStack-Request-ID")) >= 0)
		copy_field(r->request_id, sizeof(r->request_id), m->hdrs[i_rid].value,
		    m->hdrs[i_rid].value_len);

	hb_init(b);
	if (proxy_head_response(b, r, m, hooks->on_response) == 0) {
		r->bytes_out += b->len;
		evbuffer_add(sock_output(c->sk), b->p, b->len);
	} else {
		log_warnx("%s: out of memory building a response head", c->lc->name);
		r->flags &= ~PROXY_F_KEEPALIVE;	/* the client gets nothing; close it */
	}
	hb_free(b);
}

/* Upstream delivered everything: give its connection back, flush, end. */
static void
response_complete(struct proxy_req *r)
{
	struct conn *c = r->c;
	int body_done = req_body_done(r);

	set_state(r, PROXY_FLUSHING);
	if (r->uc != NULL) {
		upstream_put(r->uc, (r->flags & PROXY_F_UP_REUSABLE) && body_done);
		r->uc = NULL;
	}
	/* Early answer (e.g. 413): the rest of the body can't be framed. */
	if (!body_done)
		r->flags &= ~PROXY_F_KEEPALIVE;
	sock_set_write_low(c->sk, 0);
	sock_enable(c->sk, SOCK_WRITING);
	if (evbuffer_get_length(sock_output(c->sk)) == 0)
		proxy_client_drained(r);	/* ends r */
	else
		sock_write_now(c->sk);		/* ends r once written */
}

static void
pump_response(struct proxy_req *r)
{
	struct conn *c = r->c;
	struct evbuffer *in, *out;
	struct h1_msg *m = c->w->scratch;
	struct h1_limits lim;
	struct evbuffer_ptr start, found;
	size_t len, parse_len;
	unsigned char *p;
	uint64_t moved = 0;
	int rc;

	if (r->uc == NULL)
		return;
	in = sock_input(r->uc->sk);
	out = sock_output(c->sk);

	if ((r->state == PROXY_SENDING || r->state == PROXY_WAITING) &&
	    sock_read_before_write(r->uc->sk) > 0) {
		/* Sent before our request went out: not its response, whatever
		 * it looks like (the stray bytes of an earlier exchange). */
		upstream_stray(r->uc, "before the request was written");
		if (!retry_fresh(r))
			fail_before_response(r, 502, PROXY_ERR_UPSTREAM_BAD);
		return;
	}
	while (r->state == PROXY_SENDING || r->state == PROXY_WAITING) {
		len = evbuffer_get_length(in);
		if (len == 0)
			return;
		if (r->first_byte_us < 0)
			r->first_byte_us = (int64_t)((tb_mono_ns() - r->t_start_ns) / 1000);
		evbuffer_ptr_set(in, &start, r->resp_scan_off > 3 ? r->resp_scan_off - 3 : 0,
		    EVBUFFER_PTR_SET);
		found = evbuffer_search(in, "\r\n\r\n", 4, &start);
		lim.max_head_bytes = c->lc->max_header_bytes;
		lim.max_line = c->lc->max_header_bytes;
		lim.max_headers = H1_MAX_HEADERS_CAP;
		if (found.pos < 0) {
			r->resp_scan_off = len;
			if (len < r->resp_next_parse && len <= lim.max_head_bytes)
				return;
			r->resp_next_parse = len * 2;
			parse_len = len;
		} else {
			parse_len = (size_t)found.pos + 4;
		}
		if (parse_len > lim.max_head_bytes + 1)
			parse_len = lim.max_head_bytes + 1;
		p = evbuffer_pullup(in, (ssize_t)parse_len);
		rc = h1_parse_response((const char *)p, parse_len, &lim,
		    (r->flags & PROXY_F_HEAD) != 0, m);
		if (rc == 0)
			return;
		if (rc < 0) {
			log_warnx("%s: upstream %s: bad response head (%s at byte %zu)",
			    c->lc->name, r->upstream_addr, m->err ? m->err : "?", m->err_off);
			STATS_INC(tb_stats.upstream_errors[STATS_UP_BAD_RESPONSE]);
			fail_before_response(r, 502, PROXY_ERR_UPSTREAM_BAD);
			return;
		}
		if (m->status < 200) {
			/* Interim responses: we sent our own 100 Continue already,
			 * and upgrades are refused, so drop them (101 is an error). */
			if (m->status == 101) {
				STATS_INC(tb_stats.upstream_errors[STATS_UP_BAD_RESPONSE]);
				fail_before_response(r, 502, PROXY_ERR_UPSTREAM_BAD);
				return;
			}
			evbuffer_drain(in, (size_t)rc);
			r->resp_scan_off = 0;
			r->resp_next_parse = 0;
			continue;
		}
		free(r->fwd_head);	/* no retry once a response started */
		r->fwd_head = NULL;
		send_response_head(r, m);
		evbuffer_drain(in, (size_t)rc);
		set_state(r, PROXY_RELAYING);
		if (r->resp_body == H1_BODY_NONE) {
			response_complete(r);
			return;
		}
	}
	if (r->state != PROXY_RELAYING)
		return;
	if (take_spliced(r->uc->sk, r->resp_body, &r->resp_remaining, &r->resp_chunk,
	    &r->bytes_out))
		return;

	rc = move_body(r->resp_body, &r->resp_remaining, &r->resp_chunk, r->resp_conn, in, out,
	    !(r->flags & PROXY_F_DECHUNK), &moved);
	r->bytes_out += moved;
	if (rc < 0) {
		log_warnx("%s: upstream %s: bad chunked response body (%s)", c->lc->name,
		    r->upstream_addr, r->resp_chunk.err ? r->resp_chunk.err : "?");
		STATS_INC(tb_stats.upstream_errors[STATS_UP_BAD_RESPONSE]);
		req_end(r, PROXY_ERR_UPSTREAM_ABORTED, REQ_CLOSE);
		return;
	}
	if (rc == 1 || ((r->flags & PROXY_F_UP_EOF) && evbuffer_get_length(in) == 0)) {
		response_complete(r);
		return;
	}
	if (evbuffer_get_length(out) >= CONN_OUT_HIGH) {
		/* Client is slower than the upstream: stop reading upstream. */
		sock_disable(r->uc->sk, SOCK_READING);
		sock_set_write_low(c->sk, CONN_OUT_LOW);
		return;
	}
	if (moved > 0)
		sock_write_now(c->sk);
	else
		try_splice(r, r->uc->sk, c->sk, r->resp_body, r->resp_remaining, &r->resp_chunk);
}

/*
 * A pooled connection that failed before any response byte: the request
 * goes again, once, on a fresh connection if it may (idempotent, no body).
 * 1 when it did; else r->uc may be closed or not, the caller fails r.
 */
static int
retry_fresh(struct proxy_req *r)
{
	if (!r->uc->reused || !(r->flags & PROXY_F_IDEMPOTENT) ||
	    r->req_body != H1_BODY_NONE || (r->flags & PROXY_F_RETRIED))
		return 0;
	STATS_INC(tb_stats.upstream_errors[STATS_UP_RETRIED]);
	r->flags |= PROXY_F_RETRIED;
	upstream_close(r->uc);
	r->uc = NULL;
	return upstream_attach(r, 0) == 0;
}

static void
up_read_cb(struct sock *sk, void *arg)
{
	pump_response(arg);
}

/* Upstream output drained below the low mark: resume reading the client. */
static void
up_write_cb(struct sock *sk, void *arg)
{
	struct proxy_req *r = arg;

	if ((r->state == PROXY_SENDING || r->state == PROXY_RELAYING) && !req_body_done(r)) {
		sock_set_write_low(sk, 0);
		sock_enable(r->c->sk, SOCK_READING);
		pump_request(r);
	}
}

static void
up_event_cb(struct sock *sk, int what, void *arg)
{
	struct proxy_req *r = arg;
	struct conn *c = r->c;
	const struct tb_listener_conf *lc = c->lc;
	int connecting = r->uc != NULL && !r->uc->reused && r->connect_us < 0;
	int no_response = r->state == PROXY_SENDING || r->state == PROXY_WAITING;
	char why[256];

	if (what & SOCK_CONNECTED) {
		/* over TLS: connected and the handshake done */
		r->connect_us = (int64_t)((tb_mono_ns() - r->t_start_ns) / 1000);
		if (lc->tls_up != NULL) {
			STATS_INC(tb_stats.upstream_tls_handshakes);
			if (SSL_session_reused(sock_ssl(sk)))
				STATS_INC(tb_stats.upstream_tls_resumed);
		}
		upstream_timeouts(r);
		return;
	}
	if (connecting && lc->tls_up != NULL && !(what & SOCK_TIMEOUT) &&
	    tls_client_failure(sock_ssl(sk), sock_ssl_error(sk), why, sizeof(why))) {
		/* Not the network: verification, protocol or cipher. Say why. */
		STATS_INC(tb_stats.upstream_errors[STATS_UP_TLS_HANDSHAKE]);
		log_warnx("%s: upstream %s: TLS handshake failed: %s", lc->name,
		    r->upstream_addr, why);
		fail_before_response(r, 502, PROXY_ERR_UPSTREAM_UNAVAILABLE);
		return;
	}

	if ((what & SOCK_EOF) && r->state == PROXY_RELAYING && r->resp_body == H1_BODY_EOF) {
		/* Read-until-close body (RFC 9112 6.3 rule 8): this is its end,
		 * once what is still buffered has gone to the client. */
		r->flags |= PROXY_F_UP_EOF;
		r->flags &= ~PROXY_F_UP_REUSABLE;
		pump_response(r);
		return;
	}

	/* A pooled connection the server had closed: retry once, fresh. */
	if (no_response && evbuffer_get_length(sock_input(sk)) == 0 &&
	    !(what & SOCK_TIMEOUT) && retry_fresh(r))
		return;

	if (no_response) {
		if (what & SOCK_TIMEOUT) {
			STATS_INC(tb_stats.upstream_errors[connecting ? STATS_UP_CONNECT_TIMEOUT :
			    STATS_UP_TIMEOUT]);
			log_info("%s: upstream %s: %s timeout", lc->name, r->upstream_addr,
			    connecting ? "connect" : "response");
			fail_before_response(r, 504, PROXY_ERR_UPSTREAM_TIMEOUT);
		} else {
			STATS_INC(tb_stats.upstream_errors[connecting ? STATS_UP_CONNECT_REFUSED :
			    STATS_UP_RESET]);
			log_info("%s: upstream %s: %s", lc->name, r->upstream_addr,
			    connecting ? "connect failed" : "closed before a response");
			fail_before_response(r, 502, PROXY_ERR_UPSTREAM_UNAVAILABLE);
		}
		return;
	}
	/* Mid-body: the client has a partial response; all we can do is cut it. */
	STATS_INC(tb_stats.upstream_errors[(what & SOCK_TIMEOUT) ? STATS_UP_TIMEOUT :
	    STATS_UP_RESET]);
	log_info("%s: upstream %s: failed mid-response", lc->name, r->upstream_addr);
	req_end(r, PROXY_ERR_UPSTREAM_ABORTED, REQ_CLOSE);
}

/* --- client side events (from conn.c) ------------------------------------ */

void
proxy_client_readable(struct proxy_req *r)
{
	pump_request(r);
	/* Otherwise: pipelined bytes wait in the input (read watermark bounds them). */
}

void
proxy_client_drained(struct proxy_req *r)
{
	struct conn *c = r->c;

	if (r->state == PROXY_FLUSHING) {
		if (evbuffer_get_length(sock_output(c->sk)) == 0)
			req_end(r, PROXY_OK, REQ_NEXT);
		return;
	}
	if (r->state == PROXY_RELAYING && r->uc != NULL) {
		sock_set_write_low(c->sk, 0);
		sock_enable(r->uc->sk, SOCK_READING);
		pump_response(r);
	}
}

void
proxy_client_gone(struct proxy_req *r, int eof)
{
	/* A half-close after the whole response is queued: flush, then go. */
	if (eof && r->state == PROXY_FLUSHING) {
		r->flags &= ~PROXY_F_KEEPALIVE;
		proxy_client_drained(r);
		return;
	}
	/* The upstream request is aborted: its connection is closed, not reused. */
	if (r->status == 0)
		r->status = 499;	/* nginx's "client closed request", for logs */
	req_end(r, PROXY_ERR_CLIENT_GONE, REQ_CLOSE);
}
