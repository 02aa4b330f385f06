/*
 * proxy.c: relay one request between the client and an upstream (see
 * proxy.h). Bodies move between evbuffers without copying
 * (evbuffer_remove_buffer) and never faster than the slower side takes
 * them: past CONN_OUT_HIGH bytes queued on one side we stop reading the
 * other, and resume from the write callback below CONN_OUT_LOW (STYLE.md 5).
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
#include "fmt.h"
#include "h1.h"
#include "log.h"
#include "proxy.h"
#include "sock.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

static const struct proxy_hooks no_hooks;
static const struct proxy_hooks *hooks = &no_hooks;

static void up_read_cb(struct sock *sk, void *arg);
static void up_write_cb(struct sock *sk, void *arg);
static void up_event_cb(struct sock *sk, int what, void *arg);
static void pump_request(struct proxy_req *r);
static void pump_response(struct proxy_req *r);
static void req_finish(struct proxy_req *r);
static void send_error_reply(struct proxy_req *r, int status, int close_after);

void
proxy_set_hooks(const struct proxy_hooks *h)
{
	hooks = h != NULL ? h : &no_hooks;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/*
 * A head is built in one flat buffer (on the stack unless it is large) and
 * handed to the output in one evbuffer_add: per-field evbuffer_add and
 * printf calls were a visible share of the per-request cost.
 */
struct hbuf {
	char *p;
	size_t len, cap;
	int heap;		/* p was malloc'd */
	int failed;		/* out of memory: the head is unusable */
	char stack[4096];
};

static void
hb_init(struct hbuf *b)
{
	b->p = b->stack;
	b->len = 0;
	b->cap = sizeof(b->stack);
	b->heap = 0;
	b->failed = 0;
}

static void
hb_free(struct hbuf *b)
{
	if (b->heap)
		free(b->p);
	b->p = NULL;
}

static int
hb_reserve(struct hbuf *b, size_t n)
{
	size_t cap;
	char *np;

	if (b->len + n <= b->cap)
		return 0;
	if (b->failed)
		return -1;
	for (cap = b->cap * 2; cap < b->len + n; cap *= 2)
		;
	if (b->heap)
		np = realloc(b->p, cap);
	else if ((np = malloc(cap)) != NULL)
		memcpy(np, b->p, b->len);
	if (np == NULL) {
		b->failed = 1;
		return -1;
	}
	b->p = np;
	b->cap = cap;
	b->heap = 1;
	return 0;
}

static void
hb_add(struct hbuf *b, const void *data, size_t n)
{
	if (hb_reserve(b, n) == 0) {
		memcpy(b->p + b->len, data, n);
		b->len += n;
	}
}

#define HB_LIT(b, lit)	hb_add((b), (lit), sizeof(lit) - 1)

static void
hb_str(struct hbuf *b, const char *s)
{
	hb_add(b, s, strlen(s));
}

static void
hb_u64(struct hbuf *b, uint64_t v)
{
	char d[FMT_U64_MAX];

	hb_add(b, d, fmt_u64(d, v));
}

/* "name: value\r\n" with one reservation. */
static void
hb_field(struct hbuf *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
	char *q;

	if (hb_reserve(b, nlen + vlen + 4) < 0)
		return;
	q = b->p + b->len;
	memcpy(q, name, nlen);
	q += nlen;
	*q++ = ':';
	*q++ = ' ';
	memcpy(q, value, vlen);
	q += vlen;
	*q++ = '\r';
	*q++ = '\n';
	b->len = (size_t)(q - b->p);
}

/* The sink the hooks add headers through. */
static int
sink_add_hbuf(void *arg, const char *name, size_t name_len,
    const char *value, size_t value_len)
{
	struct hbuf *b = arg;

	hb_field(b, name, name_len, value, value_len);
	return b->failed ? -1 : 0;
}

static int
method_is(const struct proxy_req *r, const char *m)
{
	return strcmp(r->method, m) == 0;
}

/*
 * Build the head to forward: request line in HTTP/1.1, end-to-end fields in
 * their order, hop-by-hop fields removed (RFC 9110 7.6.1), framing fields
 * recomputed, X-Forwarded-* added for OpenStack's HTTPProxyToWSGI.
 */
static int
build_forward_head(struct proxy_req *r, const struct h1_msg *m, struct hbuf *b)
{
	const struct tb_listener_conf *lc = r->c->lc;
	uint8_t drop[H1_MAX_HEADERS_CAP / 8];
	struct tb_hdr_sink sink = { sink_add_hbuf, b };
	const struct tb_hdr *h;
	int xff = -1;
	size_t i;

	memset(drop, 0, sizeof(drop));
	hb_str(b, r->method);
	HB_LIT(b, " ");
	hb_str(b, r->target);
	HB_LIT(b, " HTTP/1.1\r\n");
	for (i = 0; i < m->n_hdrs; i++) {
		h = &m->hdrs[i];
		if (h1_is_hop_by_hop(m, h) || hdr_name_is(h, "Content-Length") ||
		    hdr_name_is(h, "Expect") || hdr_name_is(h, "X-Forwarded-Proto") ||
		    hdr_name_is(h, "X-Forwarded-Host") ||
		    (hdr_name_is(h, "Proxy-Authorization") && !lc->keep_proxy_authorization) ||
		    /* only we say who the client certificate names */
		    (lc->tls_client_subject_header != NULL &&
		    hdr_name_is(h, lc->tls_client_subject_header)))
			drop[i / 8] |= (uint8_t)(1u << (i % 8));
		else if (hdr_name_is(h, "X-Forwarded-For")) {
			drop[i / 8] |= (uint8_t)(1u << (i % 8));
			if (xff < 0)
				xff = (int)i;
		}
	}
	if (hooks->on_request != NULL)
		hooks->on_request(r, m, drop, &sink);
	for (i = 0; i < m->n_hdrs; i++) {
		if (drop[i / 8] & (1u << (i % 8)))
			continue;
		h = &m->hdrs[i];
		hb_field(b, h->name, h->name_len, h->value, h->value_len);
	}
	if (!(m->flags & H1_F_HAS_HOST)) {	/* HTTP/1.0 without Host */
		HB_LIT(b, "Host: ");
		hb_str(b, lc->upstream_host);
		HB_LIT(b, ":");
		hb_u64(b, lc->upstream_port);
		HB_LIT(b, "\r\n");
	}
	if (r->req_body == H1_BODY_LENGTH) {
		HB_LIT(b, "Content-Length: ");
		hb_u64(b, r->req_remaining);
		HB_LIT(b, "\r\n");
	} else if (r->req_body == H1_BODY_CHUNKED) {
		HB_LIT(b, "Transfer-Encoding: chunked\r\n");
	}
	if (lc->x_forwarded) {
		/* Append to every X-Forwarded-For value received, in order. */
		HB_LIT(b, "X-Forwarded-For: ");
		if (xff >= 0) {
			for (i = (size_t)xff; i < m->n_hdrs; i++) {
				h = &m->hdrs[i];
				if (!hdr_name_is(h, "X-Forwarded-For"))
					continue;
				hb_add(b, h->value, h->value_len);
				HB_LIT(b, ", ");
			}
		}
		hb_str(b, r->c->peer);
		if (r->c->tls != NULL)
			HB_LIT(b, "\r\nX-Forwarded-Proto: https\r\n");
		else
			HB_LIT(b, "\r\nX-Forwarded-Proto: http\r\n");
		if (r->host[0] != '\0') {
			HB_LIT(b, "X-Forwarded-Host: ");
			hb_str(b, r->host);
			HB_LIT(b, "\r\n");
		}
	} else if (xff >= 0) {
		/* Not ours to change: pass the received values through. */
		for (i = (size_t)xff; i < m->n_hdrs; i++)
			if (hdr_name_is(&m->hdrs[i], "X-Forwarded-For"))
				hb_field(b, m->hdrs[i].name, m->hdrs[i].name_len,
				    m->hdrs[i].value, m->hdrs[i].value_len);
	}
	if (lc->tls_client_subject_header != NULL && r->c->tls != NULL &&
	    r->c->tls->subject[0] != '\0')
		hb_field(b, lc->tls_client_subject_header,
		    strlen(lc->tls_client_subject_header), r->c->tls->subject,
		    strlen(r->c->tls->subject));
	HB_LIT(b, "\r\n");
	return b->failed ? -1 : 0;
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

	tv = config_timeval(r->c->lc->upstream_timeout);
	sock_set_timeouts(r->uc->sk, r->req_state == PROXY_BODY_DONE ? &tv : NULL, &tv);
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
		tv = config_timeval(lc->upstream_connect_timeout);
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

	for (i = 0; i < m->n_hdrs; i++) {
		h = &m->hdrs[i];
		if (hdr_name_is(h, "Host")) {
			dst = r->host;
			dlen = sizeof(r->host);
		} else if (hdr_name_is(h, "User-Agent")) {
			dst = r->user_agent;
			dlen = sizeof(r->user_agent);
		} else if (hdr_name_is(h, "Referer")) {
			dst = r->referer;
			dlen = sizeof(r->referer);
		} else {
			continue;
		}
		if (dst[0] == '\0')
			copy_field(dst, dlen, h->value, h->value_len);
	}
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
	r->t_start_ns = now_ns();
	clock_gettime(CLOCK_REALTIME, &r->t_start_wall);
	r->connect_us = -1;
	r->first_byte_us = -1;
	r->bytes_in = head_len;
	copy_field(r->method, sizeof(r->method), m->method, m->method_len);
	if ((r->target = malloc(m->target_len + 1)) == NULL)
		goto fail_nomem;
	memcpy(r->target, m->target, m->target_len);
	r->target[m->target_len] = '\0';
	r->version_minor = m->version_minor;
	r->is_head = method_is(r, "HEAD");
	r->idempotent = r->is_head || method_is(r, "GET") || method_is(r, "OPTIONS") ||
	    method_is(r, "PUT") || method_is(r, "DELETE") || method_is(r, "TRACE");
	r->client_close = (m->flags & H1_F_CONN_CLOSE) != 0;
	r->req_body = m->body;
	r->req_remaining = m->body == H1_BODY_LENGTH ? m->content_length : 0;
	r->req_state = m->body == H1_BODY_NONE ? PROXY_BODY_DONE : PROXY_BODY_PENDING;
	h1_chunk_init(&r->req_chunk, 0);
	r->expect_continue = (m->flags & H1_F_EXPECT_CONTINUE) && m->body != H1_BODY_NONE;
	copy_field(r->upstream_addr, sizeof(r->upstream_addr), c->lc->upstream_addr.text,
	    strlen(c->lc->upstream_addr.text));
	capture_fields(r, m);

	/* CONNECT tunnels and an Expect we don't know are refused cleanly. */
	if (method_is(r, "CONNECT") || (m->flags & H1_F_EXPECT_OTHER)) {
		int status = method_is(r, "CONNECT") ? 405 : 417;

		evbuffer_drain(in, head_len);
		c->req = r;
		r->status = status;
		r->resp_state = PROXY_RESP_DONE;
		r->req_state = PROXY_BODY_DONE;
		conn_send_error(c, status, m->body != H1_BODY_NONE);
		r->keepalive = m->body == H1_BODY_NONE && !r->client_close;
		r->upstream_reusable = 0;
		/* Completion is reported once the reply is flushed. */
		return r;
	}

	/* The forwarded head is kept (for one retry): copied off the stack,
	 * or taken over when it outgrew the stack buffer. */
	b = &hb;
	hb_init(b);
	if (build_forward_head(r, m, b) < 0)
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
	evbuffer_drain(in, head_len);
	c->req = r;

	if (upstream_attach(r, 1) < 0) {
		STATS_INC(tb_stats.upstream_errors[STATS_UP_CONNECT_REFUSED]);
		r->err = PROXY_ERR_UPSTREAM_UNAVAILABLE;
		r->status = 502;
		r->resp_state = PROXY_RESP_DONE;
		send_error_reply(r, 502, r->req_state != PROXY_BODY_DONE);
		r->keepalive = r->req_state == PROXY_BODY_DONE && !r->client_close;
		return r;
	}
	if (r->expect_continue) {
		/* We answer 100-continue ourselves (and strip Expect): the body then
		 * streams to the upstream as it arrives. */
		evbuffer_add(sock_output(c->sk), "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	if (r->req_state == PROXY_BODY_PENDING) {
		/* A client that stops sending its body is cut off after idle
		 * timeout (the write timeout is set for the connection's life). */
		tv = config_timeval(c->lc->client_idle_timeout);
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
		free(r->fwd_head);
		free(r);
	}
	c->req = NULL;
	conn_send_error(c, 503, 1);
	return NULL;
}

int
proxy_req_finished(const struct proxy_req *r)
{
	return r->resp_state == PROXY_RESP_DONE && r->req_state == PROXY_BODY_DONE;
}

void
proxy_req_free(struct proxy_req *r)
{
	if (r == NULL)
		return;
	/* Every request is logged, counted and traced once, however it ended
	 * (an error reply followed by a close, a drain timeout...). */
	if (!r->reported)
		req_finish(r);
	if (r->uc != NULL) {
		upstream_close(r->uc);	/* mid-exchange: never reused */
		r->uc = NULL;
	}
	if (hooks->on_free != NULL)
		hooks->on_free(r);
	free(r->target);
	free(r->fwd_head);
	free(r);
}

/* --- request body: client -> upstream ---------------------------------- */

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
 * Move body bytes from in to out under framing state (LENGTH or CHUNKED).
 * out NULL... never for requests. keep_framing: chunk framing bytes are
 * forwarded too (else dropped, for HTTP/1.0 clients). Stops when out passes
 * CONN_OUT_HIGH. Returns 1 when the body is complete, 0 when more is
 * needed or output is full, -1 on bad chunked framing. *moved counts the
 * bytes taken from in.
 */
static int
move_body(enum h1_body kind, uint64_t *remaining, struct h1_chunk *ch,
    struct evbuffer *in, struct evbuffer *out, int keep_framing, uint64_t *moved)
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
 * [DEFAULT] splice = auto, both sides plain, a length known from the
 * framing (the rest of a Content-Length body, the data of the current
 * chunk, or up to EOF), nothing buffered on either side (sock_splice
 * checks the last two). 1 when a relay started.
 */
static int
try_splice(const struct proxy_req *r, struct sock *src, struct sock *dst,
    enum h1_body body, uint64_t remaining, const struct h1_chunk *ch)
{
	uint64_t n;

	if (r->c->cfg->splice != TB_SPLICE_AUTO)
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

/* Count what a relay moved against the body's framing; 1 while it runs. */
static int
take_spliced(struct sock *src, enum h1_body body, uint64_t *remaining,
    struct h1_chunk *ch, uint64_t *total)
{
	int running;
	uint64_t n = sock_splice_take(src, &running);

	if (body == H1_BODY_LENGTH)
		*remaining -= n;
	else if (body == H1_BODY_CHUNKED && n > 0)
		h1_chunk_data(ch, n);
	*total += n;
	STATS_ADD(tb_stats.spliced_bytes, n);
	return running;
}

static void
pump_request(struct proxy_req *r)
{
	struct conn *c = r->c;
	struct evbuffer *in, *out;
	uint64_t moved = 0;
	int rc;

	if (r->req_state == PROXY_BODY_DONE || r->uc == NULL)
		return;
	in = sock_input(c->sk);
	out = sock_output(r->uc->sk);
	if (r->req_splicing) {
		if (take_spliced(c->sk, r->req_body, &r->req_remaining, &r->req_chunk,
		    &r->bytes_in))
			return;
		r->req_splicing = 0;
	}
	rc = move_body(r->req_body, &r->req_remaining, &r->req_chunk, in, out, 1, &moved);
	r->bytes_in += moved;
	if (rc < 0) {
		log_info("%s: client %s: bad chunked body (%s)", c->lc->name, c->peer,
		    r->req_chunk.err ? r->req_chunk.err : "?");
		STATS_INC(tb_stats.bad_requests);
		r->err = PROXY_ERR_BAD_REQUEST_BODY;
		if (r->resp_state == PROXY_RESP_HEAD) {
			upstream_close(r->uc);
			r->uc = NULL;
			r->status = 400;
			r->resp_state = PROXY_RESP_DONE;
			r->req_state = PROXY_BODY_DONE;
			r->keepalive = 0;
			conn_send_error(c, 400, 1);
			req_finish(r);
		} else {
			proxy_client_gone(r);
		}
		return;
	}
	if (rc == 1) {
		struct timeval tv;

		r->req_state = PROXY_BODY_DONE;
		tv = config_timeval(c->lc->client_idle_timeout);
		sock_set_timeouts(c->sk, NULL, &tv);
		if (r->connect_us >= 0 || r->uc->reused)
			upstream_timeouts(r);
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
	else if (try_splice(r, c->sk, r->uc->sk, r->req_body, r->req_remaining,
	    &r->req_chunk))
		r->req_splicing = 1;
}

/* --- response: upstream -> client -------------------------------------- */

/* Report and reset: the request is over (successfully or not). */
static void
req_finish(struct proxy_req *r)
{
	struct conn *c = r->c;
	struct timespec now;
	char line[2048], tbuf[64];
	struct tm tm;
	int n;

	if (r->reported)
		return;
	r->reported = 1;
	r->duration_us = (now_ns() - r->t_start_ns) / 1000;
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
		    c->peer, tbuf, r->method, r->target, r->version_minor, r->status,
		    (unsigned long long)r->bytes_out, r->referer[0] ? r->referer : "-",
		    r->user_agent[0] ? r->user_agent : "-", r->upstream_addr,
		    r->first_byte_us >= 0 ? (double)r->first_byte_us / 1e6 : -1.0,
		    (double)r->duration_us / 1e6, r->log_extra);
		if (n > 0)
			log_access(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
}

/* An error reply the proxy makes for r, with the hooks' response headers
 * (the trace id), so the client can find the failed request's trace. */
static void
send_error_reply(struct proxy_req *r, int status, int close_after)
{
	struct evbuffer *b = NULL;
	struct tb_hdr_sink sink;

	if (hooks->on_response != NULL && (b = evbuffer_new()) != NULL) {
		sink.add = sink_add_evbuffer;
		sink.arg = b;
		hooks->on_response(r, NULL, &sink);
	}
	conn_send_error_hdrs(r->c, status, close_after, b);
	if (b != NULL)
		evbuffer_free(b);
}

/* The request failed before any response byte reached the client. */
static void
fail_before_response(struct proxy_req *r, int status, enum proxy_err err)
{
	r->err = err;
	r->status = status;
	r->resp_state = PROXY_RESP_DONE;
	if (r->uc != NULL) {
		upstream_close(r->uc);
		r->uc = NULL;
	}
	/* The client's body framing is only known if we read all of it. */
	r->keepalive = r->req_state == PROXY_BODY_DONE && !r->client_close;
	sock_enable(r->c->sk, SOCK_WRITING);
	send_error_reply(r, status, !r->keepalive);
	if (r->keepalive) {
		/* conn_write_cb -> proxy_client_drained finishes it. */
		return;
	}
	req_finish(r);
	r->c->req = NULL;
	proxy_req_free(r);
}

/* Build and queue the response head for the client. */
static void
send_response_head(struct proxy_req *r, const struct h1_msg *m)
{
	struct conn *c = r->c;
	struct evbuffer *out = sock_output(c->sk);
	struct hbuf hb, *b = &hb;
	struct tb_hdr_sink sink = { sink_add_hbuf, b };
	const struct tb_hdr *h;
	int pass_cl = m->body == H1_BODY_NONE;	/* HEAD/304: CL describes the entity */
	size_t i;
	int i_rid;

	r->status = m->status;
	r->resp_body = m->body;
	r->resp_remaining = m->body == H1_BODY_LENGTH ? m->content_length : 0;
	h1_chunk_init(&r->resp_chunk, 0);
	r->dechunk = m->body == H1_BODY_CHUNKED && r->version_minor == 0;
	r->upstream_reusable = m->body != H1_BODY_EOF && !(m->flags & H1_F_CONN_CLOSE) &&
	    !h1_connection_has(m, "close");
	r->keepalive = !r->client_close && !c->w->draining && m->body != H1_BODY_EOF &&
	    !r->dechunk && r->req_state == PROXY_BODY_DONE;
	if ((i_rid = hdr_find(m->hdrs, m->n_hdrs, 0, "X-OpenStack-Request-ID")) >= 0)
		copy_field(r->request_id, sizeof(r->request_id), m->hdrs[i_rid].value,
		    m->hdrs[i_rid].value_len);

	hb_init(b);
	HB_LIT(b, "HTTP/1.1 ");
	hb_u64(b, (uint64_t)m->status);
	HB_LIT(b, " ");
	hb_add(b, m->reason, m->reason_len);
	HB_LIT(b, "\r\n");
	for (i = 0; i < m->n_hdrs; i++) {
		h = &m->hdrs[i];
		if (h1_is_hop_by_hop(m, h))
			continue;
		if (hdr_name_is(h, "Content-Length") && !pass_cl)
			continue;
		hb_field(b, h->name, h->name_len, h->value, h->value_len);
	}
	if (m->body == H1_BODY_LENGTH) {
		HB_LIT(b, "Content-Length: ");
		hb_u64(b, m->content_length);
		HB_LIT(b, "\r\n");
	} else if (m->body == H1_BODY_CHUNKED && !r->dechunk) {
		HB_LIT(b, "Transfer-Encoding: chunked\r\n");
	}
	if (hooks->on_response != NULL)
		hooks->on_response(r, m, &sink);
	if (!r->keepalive)
		HB_LIT(b, "Connection: close\r\n");
	else if (r->version_minor == 0)
		HB_LIT(b, "Connection: keep-alive\r\n");
	HB_LIT(b, "\r\n");
	if (!b->failed) {
		r->bytes_out += b->len;
		evbuffer_add(out, b->p, b->len);
	} else {
		log_warnx("%s: out of memory building a response head", c->lc->name);
		r->keepalive = 0;	/* the client gets nothing; close it */
	}
	hb_free(b);
}

/* Upstream delivered everything: give the connection back to the pool. */
static void
response_complete(struct proxy_req *r)
{
	sock_write_now(r->c->sk);
	r->resp_state = PROXY_RESP_DONE;
	if (r->uc != NULL) {
		upstream_put(r->uc, r->upstream_reusable && r->req_state == PROXY_BODY_DONE);
		r->uc = NULL;
	}
	if (r->req_state != PROXY_BODY_DONE) {
		/* Early answer (e.g. 413): the rest of the body can't be framed. */
		r->keepalive = 0;
		r->req_state = PROXY_BODY_DONE;
	}
	/* Done once the client output is flushed (conn_write_cb). */
	sock_set_write_low(r->c->sk, 0);
	sock_enable(r->c->sk, SOCK_WRITING);
	if (evbuffer_get_length(sock_output(r->c->sk)) == 0)
		proxy_client_drained(r);
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

	while (r->resp_state == PROXY_RESP_HEAD) {
		len = evbuffer_get_length(in);
		if (len == 0)
			return;
		if (r->first_byte_us < 0)
			r->first_byte_us = (int64_t)((now_ns() - r->t_start_ns) / 1000);
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
		rc = h1_parse_response((const char *)p, parse_len, &lim, r->is_head, m);
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
		r->resp_state = PROXY_RESP_BODY;
		if (r->resp_body == H1_BODY_NONE) {
			response_complete(r);
			return;
		}
	}
	if (r->resp_state != PROXY_RESP_BODY)
		return;
	if (r->resp_splicing) {
		if (take_spliced(r->uc->sk, r->resp_body, &r->resp_remaining,
		    &r->resp_chunk, &r->bytes_out))
			return;
		r->resp_splicing = 0;
	}

	rc = move_body(r->resp_body, &r->resp_remaining, &r->resp_chunk, in, out,
	    !r->dechunk, &moved);
	r->bytes_out += moved;
	if (rc < 0) {
		log_warnx("%s: upstream %s: bad chunked response body (%s)", c->lc->name,
		    r->upstream_addr, r->resp_chunk.err ? r->resp_chunk.err : "?");
		STATS_INC(tb_stats.upstream_errors[STATS_UP_BAD_RESPONSE]);
		r->err = PROXY_ERR_UPSTREAM_ABORTED;
		req_finish(r);
		conn_close(c);
		return;
	}
	if (rc == 1 || (r->upstream_eof && evbuffer_get_length(in) == 0)) {
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
	else if (try_splice(r, r->uc->sk, c->sk, r->resp_body, r->resp_remaining,
	    &r->resp_chunk))
		r->resp_splicing = 1;
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

	if (r->req_state == PROXY_BODY_PENDING) {
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
	char why[256];

	if (what & SOCK_CONNECTED) {
		/* over TLS: connected and the handshake done */
		r->connect_us = (int64_t)((now_ns() - r->t_start_ns) / 1000);
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

	if ((what & SOCK_EOF) && r->resp_state == PROXY_RESP_BODY &&
	    r->resp_body == H1_BODY_EOF) {
		/* Read-until-close body (RFC 9112 6.3 rule 8): this is its end,
		 * once what is still buffered has gone to the client. */
		r->upstream_eof = 1;
		r->upstream_reusable = 0;
		pump_response(r);
		return;
	}

	if (r->resp_state == PROXY_RESP_HEAD &&
	    evbuffer_get_length(sock_input(sk)) == 0 && !(what & SOCK_TIMEOUT) &&
	    r->uc->reused && r->idempotent && r->req_body == H1_BODY_NONE && !r->retried) {
		/* A pooled connection the server had closed: retry once, fresh. */
		STATS_INC(tb_stats.upstream_errors[STATS_UP_RETRIED]);
		r->retried = 1;
		upstream_close(r->uc);
		r->uc = NULL;
		if (upstream_attach(r, 0) == 0)
			return;
	}

	if (r->resp_state == PROXY_RESP_HEAD) {
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
	r->err = PROXY_ERR_UPSTREAM_ABORTED;
	req_finish(r);
	conn_close(c);
}

/* --- client side events (from conn.c) ---------------------------------- */

void
proxy_client_readable(struct proxy_req *r)
{
	if (r->req_state == PROXY_BODY_PENDING)
		pump_request(r);
	/* Otherwise: pipelined bytes wait in the input (read watermark bounds them). */
}

void
proxy_client_drained(struct proxy_req *r)
{
	struct conn *c = r->c;

	if (r->resp_state == PROXY_RESP_DONE) {
		if (evbuffer_get_length(sock_output(c->sk)) != 0)
			return;
		req_finish(r);
		conn_request_done(c, r->keepalive);
		return;
	}
	if (r->resp_state == PROXY_RESP_BODY && r->uc != NULL) {
		sock_set_write_low(c->sk, 0);
		sock_enable(r->uc->sk, SOCK_READING);
		pump_response(r);
	}
}

void
proxy_client_gone(struct proxy_req *r)
{
	struct conn *c = r->c;

	/* The upstream request is aborted: its connection is closed, not reused. */
	if (r->err == PROXY_OK)
		r->err = PROXY_ERR_CLIENT_GONE;
	if (r->status == 0)
		r->status = 499;	/* nginx's "client closed request", for logs */
	if (r->uc != NULL) {
		upstream_close(r->uc);
		r->uc = NULL;
	}
	req_finish(r);
	conn_close(c);
}
