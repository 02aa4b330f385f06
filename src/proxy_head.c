/*
 * proxy_head.c: the heads the relay writes (see proxy_head.h): forwarded
 * request heads, response heads, the proxy's own replies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "conn.h"
#include "fmt.h"
#include "h1.h"
#include "proxy.h"
#include "proxy_head.h"
#include "stats.h"
#include "tls.h"

void
hb_init(struct hbuf *b)
{
	b->p = b->stack;
	b->len = 0;
	b->cap = sizeof(b->stack);
	b->heap = 0;
	b->failed = 0;
}

void
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

int
hb_sink_add(void *arg, const char *name, size_t name_len,
    const char *value, size_t value_len)
{
	struct hbuf *b = arg;

	hb_field(b, name, name_len, value, value_len);
	return b->failed ? -1 : 0;
}

char *
proxy_head_target(const struct h1_msg *m)
{
	const char *t = m->target;
	size_t n = m->target_len, lead = 0;
	char *out;

	if (m->target_form == H1_TARGET_ABSOLUTE) {
		t = m->path;
		n = m->path_len;
		if (n == 0 && m->method_len == 7 &&
		    memcmp(m->method, "OPTIONS", 7) == 0) {
			t = "*";
			n = 1;
		} else if (n == 0 || t[0] == '?') {
			lead = 1;	/* path-abempty was empty: "/" */
		}
	}
	if ((out = malloc(lead + n + 1)) == NULL)
		return NULL;
	out[0] = '/';		/* kept only when lead is 1 */
	memcpy(out + lead, t, n);
	out[lead + n] = '\0';
	return out;
}

/*
 * Request fields the proxy removes, replaces or frames the message by. A
 * WSGI server (every OpenStack API) maps X_Forwarded_For and
 * X-Forwarded-For to the same HTTP_X_FORWARDED_FOR, so with
 * underscore_headers = allow the underscore twin of any of these is
 * removed as well: it must never pass for ours (the trace formats' twins
 * are the tracing hook's, trace.c).
 */
static const char *const owned_names[] = {
	"Host", "Content-Length", "Transfer-Encoding", "Connection",
	"Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "Expect",
	"Proxy-Authorization", "Forwarded", "X-Forwarded-For",
	"X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port",
	"X-Forwarded-Prefix", "X-Real-IP", NULL
};

/* The forwarding headers a peer not in trusted_proxies may not send. */
static const char *const forwarding_names[] = {
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-IP", NULL
};

static int
name_in(const struct tb_hdr *h, const char *const *names)
{
	size_t i;

	for (i = 0; names[i] != NULL; i++)
		if (hdr_name_is(h, names[i]))
			return 1;
	return 0;
}

/* 1 if h's name, with every '_' read as '-', is one the proxy owns. */
static int
underscore_twin(const struct tb_hdr *h, const struct tb_listener_conf *lc)
{
	char buf[80];
	struct tb_hdr t = { buf, h->name_len, NULL, 0 };
	size_t i;

	if (h->name_len >= sizeof(buf))	/* longer than any name we own */
		return 0;
	for (i = 0; i < h->name_len; i++)
		buf[i] = h->name[i] == '_' ? '-' : h->name[i];
	return name_in(&t, owned_names) ||
	    (lc->tls_client_subject_header != NULL &&
	    hdr_name_is(&t, lc->tls_client_subject_header));
}

/* An RFC 7239 node or host value: a token as it is, else a quoted-string
 * (IPv6 "[...]" and ports need the quotes; RFC 7239 section 6). */
static void
hb_forwarded_value(struct hbuf *b, const char *v)
{
	size_t i;

	for (i = 0; v[i] != '\0'; i++)
		if (!hdr_is_tchar((unsigned char)v[i]))
			break;
	if (v[i] == '\0' && i > 0) {
		hb_str(b, v);
		return;
	}
	HB_LIT(b, "\"");
	for (i = 0; v[i] != '\0'; i++) {
		if (v[i] == '"' || v[i] == '\\')
			HB_LIT(b, "\\");
		hb_add(b, &v[i], 1);
	}
	HB_LIT(b, "\"");
}

int
proxy_head_forward(struct hbuf *b, struct proxy_req *r, const struct h1_msg *m,
    proxy_head_hook on_request)
{
	const struct tb_listener_conf *lc = r->c->lc;
	const int trusted = r->c->peer_trusted;
	uint8_t drop[H1_MAX_HEADERS_CAP / 8];
	uint8_t under[H1_MAX_HEADERS_CAP / 8];	/* names with '_', found once */
	unsigned n_under = 0, xff_open = 0;
	struct tb_hdr_sink sink = { hb_sink_add, b };
	const struct tb_hdr *h;
	const char *host = NULL;	/* the Host value forwarded, if any */
	size_t i, host_len = 0;
	int xff = -1, fwd = -1, has_proto = 0, has_fhost = 0;
	int absolute = m->target_form == H1_TARGET_ABSOLUTE;
	const char *proto = r->c->tls != NULL ? "https" : "http";

	memset(drop, 0, sizeof(drop));
	memset(under, 0, sizeof(under));
	/* m's method, whole: r->method is a copy cut for logs */
	hb_add(b, m->method, m->method_len);
	HB_LIT(b, " ");
	hb_str(b, r->target);
	HB_LIT(b, " HTTP/1.1\r\n");
	if (absolute) {
		/* RFC 9112 3.2.2: a proxy MUST replace the received Host by
		 * the target's authority (first, RFC 9112 3.2's SHOULD) */
		host = m->authority;
		host_len = m->authority_len;
		hb_field(b, "Host", 4, host, host_len);
	}
	for (i = 0; i < m->n_hdrs; i++) {
		h = &m->hdrs[i];
		if (memchr(h->name, '_', h->name_len) != NULL) {
			under[i / 8] |= (uint8_t)(1u << (i % 8));
			/* reject mode never gets here: proxy_start answered 400 */
			if (r->c->cfg->underscore_headers != TB_UNDERSCORE_ALLOW ||
			    underscore_twin(h, lc)) {
				drop[i / 8] |= (uint8_t)(1u << (i % 8));
				continue;
			}
		}
		if (hdr_name_is(h, "Host")) {
			if (absolute)
				drop[i / 8] |= (uint8_t)(1u << (i % 8));
			else if (host == NULL) {
				host = h->value;
				host_len = h->value_len;
			}
		} else if (h1_is_hop_by_hop(m, h) || hdr_name_is(h, "Content-Length") ||
		    hdr_name_is(h, "Expect") ||
		    (hdr_name_is(h, "Proxy-Authorization") && !lc->keep_proxy_authorization) ||
		    /* only we say who the client certificate names */
		    (lc->tls_client_subject_header != NULL &&
		    hdr_name_is(h, lc->tls_client_subject_header))) {
			drop[i / 8] |= (uint8_t)(1u << (i % 8));
		} else if (hdr_name_is(h, "X-Forwarded-For")) {
			/* written below, ours appended (trusted peers) */
			drop[i / 8] |= (uint8_t)(1u << (i % 8));
			if (xff < 0 && trusted)
				xff = (int)i;
		} else if (hdr_name_is(h, "Forwarded")) {
			drop[i / 8] |= (uint8_t)(1u << (i % 8));
			if (fwd < 0 && trusted)
				fwd = (int)i;
		} else if (name_in(h, forwarding_names)) {
			/* from a trusted proxy in front they pass, and the
			 * scheme and host it saw win over ours */
			if (!trusted)
				drop[i / 8] |= (uint8_t)(1u << (i % 8));
			else if (hdr_name_is(h, "X-Forwarded-Proto"))
				has_proto = 1;
			else if (hdr_name_is(h, "X-Forwarded-Host"))
				has_fhost = 1;
		}
	}
	if (on_request != NULL)
		on_request(r, m, drop, &sink);
	for (i = 0; i < m->n_hdrs; i++) {
		h = &m->hdrs[i];
		if (drop[i / 8] & (1u << (i % 8))) {
			/* ours above, or the tracing hook's twins of its own */
			n_under += (under[i / 8] >> (i % 8)) & 1u;
			continue;
		}
		hb_field(b, h->name, h->name_len, h->value, h->value_len);
	}
	if (n_under > 0)	/* one atomic add per request, not per field */
		STATS_ADD(tb_stats.underscore[0], n_under);
	if (host == NULL) {	/* HTTP/1.0 without Host */
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
	/* a trusted peer's chain, in order, then the peer itself; with
	 * x_forwarded off the trusted chain passes as it came */
	for (i = xff >= 0 ? (size_t)xff : m->n_hdrs; i < m->n_hdrs; i++) {
		h = &m->hdrs[i];
		if (!hdr_name_is(h, "X-Forwarded-For"))
			continue;
		if (!lc->x_forwarded)
			hb_field(b, h->name, h->name_len, h->value, h->value_len);
		else if (h->value_len > 0) {	/* "a, , b" helps nobody */
			if (xff_open++ == 0)
				HB_LIT(b, "X-Forwarded-For: ");
			hb_add(b, h->value, h->value_len);
			HB_LIT(b, ", ");
		}
	}
	if (lc->x_forwarded) {
		if (xff_open == 0)
			HB_LIT(b, "X-Forwarded-For: ");
		hb_str(b, r->c->peer);
		HB_LIT(b, "\r\n");
	}
	if (lc->x_forwarded) {
		if (!has_proto) {
			HB_LIT(b, "X-Forwarded-Proto: ");
			hb_str(b, proto);
			HB_LIT(b, "\r\n");
		}
		/* what Host says, whole (r->host is a copy cut for logs) */
		if (host_len > 0 && !has_fhost)
			hb_field(b, "X-Forwarded-Host", 16, host, host_len);
	}
	for (i = fwd >= 0 ? (size_t)fwd : m->n_hdrs; i < m->n_hdrs; i++)
		if (hdr_name_is(&m->hdrs[i], "Forwarded"))
			hb_field(b, m->hdrs[i].name, m->hdrs[i].name_len,
			    m->hdrs[i].value, m->hdrs[i].value_len);
	if (lc->forwarded_header) {
		/* RFC 7239 4: for, proto and host of the hop into us */
		HB_LIT(b, "Forwarded: for=");
		if (strchr(r->c->peer, ':') != NULL) {	/* IPv6: "[...]" */
			HB_LIT(b, "\"[");
			hb_str(b, r->c->peer);
			HB_LIT(b, "]\"");
		} else {
			hb_forwarded_value(b, r->c->peer);
		}
		HB_LIT(b, ";proto=");
		hb_str(b, proto);
		if (r->host[0] != '\0') {
			HB_LIT(b, ";host=");
			hb_forwarded_value(b, r->host);
		}
		HB_LIT(b, "\r\n");
	}
	if (lc->tls_client_subject_header != NULL && r->c->tls != NULL &&
	    r->c->tls->subject[0] != '\0')
		hb_field(b, lc->tls_client_subject_header,
		    strlen(lc->tls_client_subject_header), r->c->tls->subject,
		    strlen(r->c->tls->subject));
	HB_LIT(b, "\r\n");
	return b->failed ? -1 : 0;
}

int
proxy_head_response(struct hbuf *b, struct proxy_req *r, const struct h1_msg *m,
    void (*add)(struct proxy_req *r, const struct h1_msg *m, struct tb_hdr_sink *sink))
{
	struct tb_hdr_sink sink = { hb_sink_add, b };
	const struct tb_hdr *h;
	/* HEAD/304: CL describes the representation (RFC 9110 8.6), the
	 * client knows there is no content; a 204 has no CL at all (RFC 9110
	 * 8.6 "MUST NOT"), and a client taking it as a body length would wait
	 * for bytes that never come */
	int pass_cl = m->body == H1_BODY_NONE && m->status != 204;
	size_t i;

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
		/* RFC 9110 7.6.1: "Close" is a reserved field name; our own
		 * "Connection: close" would make the client drop it anyway */
		if (hdr_name_is(h, "Close"))
			continue;
		hb_field(b, h->name, h->name_len, h->value, h->value_len);
	}
	if (m->body == H1_BODY_LENGTH) {
		HB_LIT(b, "Content-Length: ");
		hb_u64(b, m->content_length);
		HB_LIT(b, "\r\n");
	} else if (m->body == H1_BODY_CHUNKED && !(r->flags & PROXY_F_DECHUNK)) {
		HB_LIT(b, "Transfer-Encoding: chunked\r\n");
	}
	if (add != NULL)
		add(r, m, &sink);
	if (!(r->flags & PROXY_F_KEEPALIVE))
		HB_LIT(b, "Connection: close\r\n");
	else if (r->version_minor == 0)
		HB_LIT(b, "Connection: keep-alive\r\n");
	HB_LIT(b, "\r\n");
	return b->failed ? -1 : 0;
}

size_t
proxy_head_error(struct evbuffer *out, int status, int close_after,
    struct evbuffer *extra)
{
	const char *reason = h1_reason(status);
	size_t before = evbuffer_get_length(out);
	int n;

	n = evbuffer_add_printf(out,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain\r\n"
	    "Content-Length: %zu\r\n"
	    "%s",
	    status, reason, strlen(reason) + 5,
	    close_after ? "Connection: close\r\n" : "");
	if (n > 0 && extra != NULL)
		evbuffer_add_buffer(out, extra);
	if (n > 0)
		(void)evbuffer_add_printf(out, "\r\n%d %s\n", status, reason);
	return evbuffer_get_length(out) - before;
}
