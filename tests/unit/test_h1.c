/*
 * test_h1.c: the HTTP/1.1 head parser and chunked decoder (src/h1.c,
 * src/h1_chunk.c).
 *
 * Every input is placed so that its last byte sits right before a
 * PROT_NONE page: any read past len faults under test instead of passing
 * silently (the picohttpparser trick). Valid messages are parsed whole and
 * at every truncation; chunked bodies are decoded at every two-piece split
 * and one byte at a time; hostile inputs must give the exact result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "h1.h"
#include "tb_test.h"

/* ---- guard page placement ---- */

#define GUARD_AREA	(256 * 1024)	/* room for the limit tests' big inputs */

static char *guard_base;
static size_t guard_len;	/* bytes before the PROT_NONE page */

static void
guard_init(void)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	void *p;

	guard_len = (GUARD_AREA + pg - 1) / pg * pg;
	p = mmap(NULL, guard_len + pg, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	if (mprotect((char *)p + guard_len, pg, PROT_NONE) != 0) {
		perror("mprotect");
		exit(2);
	}
	guard_base = p;
}

/* Copy s[0..n) so that it ends at the guard page; returns the copy. */
static const char *
guard_place(const char *s, size_t n)
{
	char *d;

	if (n > guard_len) {
		fprintf(stderr, "input too large for guard area\n");
		exit(2);
	}
	d = guard_base + guard_len - n;
	memmove(d, s, n);
	return d;
}

static const struct h1_limits lim_default = { 8192, 4096, 100 };

static int
parse(int is_req, int req_is_head, const char *s, size_t n,
    const struct h1_limits *lim, struct h1_msg *m)
{
	const char *g = guard_place(s, n);

	if (is_req)
		return h1_parse_request(g, n, lim, m);
	return h1_parse_response(g, n, lim, req_is_head, m);
}

/* ---- chunked decoding helper ---- */

struct dec {
	struct h1_chunk c;
	char out[4096];
	size_t out_len;
	size_t consumed;	/* framing + data bytes taken so far */
	int rc;			/* last negative result, 0 otherwise */
};

/*
 * Feed one piece (placed against the guard page) through the decoder the
 * way the proxy does: framing via h1_chunk_parse, data moved by hand.
 * Stops at DONE; returns 0, or the decoder's negative result.
 */
static int
dec_feed(struct dec *d, const char *s, size_t n)
{
	const char *p = guard_place(s, n);
	size_t pos = 0;
	ssize_t r;

	while (pos < n && d->c.state != H1_CHUNK_DONE) {
		if (d->c.state == H1_CHUNK_DATA) {
			uint64_t k = n - pos;

			if (k > d->c.remaining)
				k = d->c.remaining;
			if (d->out_len + k > sizeof(d->out))
				return -9;
			memcpy(d->out + d->out_len, p + pos, (size_t)k);
			d->out_len += (size_t)k;
			h1_chunk_data(&d->c, k);
			pos += (size_t)k;
			continue;
		}
		r = h1_chunk_parse(&d->c, p + pos, n - pos);
		if (r < 0) {
			d->rc = (int)r;
			return (int)r;
		}
		if (r == 0 && d->c.state != H1_CHUNK_DATA &&
		    d->c.state != H1_CHUNK_DONE)
			return -8;	/* no progress: decoder bug */
		if ((size_t)r > n - pos)
			return -7;	/* consumed more than given */
		pos += (size_t)r;
	}
	d->consumed += pos;
	return 0;
}

static void
dec_init(struct dec *d)
{
	memset(d, 0, sizeof(*d));
	h1_chunk_init(&d->c, 0);
}

/* ---- valid messages ---- */

struct vcase {
	const char *name;
	int is_req;
	int req_is_head;
	const char *head;
	const char *body;	/* raw body bytes (framing included) or NULL */
	const char *data;	/* decoded chunk data for CHUNKED */
	/* expectations */
	enum h1_body body_type;
	uint64_t cl;
	unsigned flags;
	size_t n_hdrs;
	int minor;
	int status;		/* responses */
	const char *method;	/* requests */
	const char *target;
};

static const struct vcase valid[] = {
	{ "GET", 1, 0,
	  "GET /v3/auth/tokens HTTP/1.1\r\nHost: keystone:5000\r\n"
	  "User-Agent: curl/8.0\r\nAccept: */*\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_HAS_HOST, 3, 1, 0, "GET", "/v3/auth/tokens" },
	{ "POST with CL", 1, 0,
	  "POST /servers HTTP/1.1\r\nHost: nova\r\nContent-Type: application/json\r\n"
	  "Content-Length: 13\r\n\r\n", "{\"a\":\"hello\"}", NULL,
	  H1_BODY_LENGTH, 13, H1_F_HAS_HOST | H1_F_HAS_CL, 3, 1, 0,
	  "POST", "/servers" },
	{ "CL 0", 1, 0,
	  "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_HAS_HOST | H1_F_HAS_CL, 2, 1, 0, "PUT", "/x" },
	{ "equal duplicate CL list", 1, 0,
	  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", "hello", NULL,
	  H1_BODY_LENGTH, 5, H1_F_HAS_HOST | H1_F_HAS_CL, 2, 1, 0, "POST", "/" },
	{ "equal duplicate CL fields", 1, 0,
	  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length:5\r\n\r\n",
	  "hello", NULL,
	  H1_BODY_LENGTH, 5, H1_F_HAS_HOST | H1_F_HAS_CL, 3, 1, 0, "POST", "/" },
	{ "chunked with extensions and trailers", 1, 0,
	  "POST /upload HTTP/1.1\r\nHost: glance\r\nTransfer-Encoding: chunked\r\n"
	  "Trailer: X-Checksum\r\n\r\n",
	  "5;name=value\r\nhello\r\n"
	  "0A;q=\"quoted \\\" str\" ; flag\r\n0123456789\r\n"
	  "000001\r\n!\r\n"
	  "0\r\nX-Checksum: abc\r\nX-Other:\tv \r\n\r\n",
	  "hello0123456789!",
	  H1_BODY_CHUNKED, 0, H1_F_HAS_HOST | H1_F_HAS_TE, 3, 1, 0,
	  "POST", "/upload" },
	{ "chunked plain, upper-case hex", 1, 0,
	  "POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: CHUNKED\r\n\r\n",
	  "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
	  "abcdefghijklmnopqrstuvwxyz",
	  H1_BODY_CHUNKED, 0, H1_F_HAS_HOST | H1_F_HAS_TE, 2, 1, 0, "POST", "/" },
	{ "HTTP/1.0 no keep-alive", 1, 0,
	  "GET / HTTP/1.0\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_CONN_CLOSE, 0, 0, 0, "GET", "/" },
	{ "HTTP/1.0 keep-alive", 1, 0,
	  "GET /a?b=c HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n",
	  NULL, NULL, H1_BODY_NONE, 0,
	  H1_F_CONN_KEEPALIVE | H1_F_HAS_HOST, 2, 0, 0, "GET", "/a?b=c" },
	{ "HTTP/1.0 expect ignored", 1, 0,
	  "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
	  "ok", NULL, H1_BODY_LENGTH, 2, H1_F_CONN_CLOSE | H1_F_HAS_CL, 2, 0, 0,
	  "POST", "/" },
	{ "Expect 100-continue", 1, 0,
	  "PUT /obj HTTP/1.1\r\nHost: swift\r\nExpect: 100-Continue\r\n"
	  "Content-Length: 3\r\n\r\n", "abc", NULL,
	  H1_BODY_LENGTH, 3,
	  H1_F_HAS_HOST | H1_F_EXPECT_CONTINUE | H1_F_HAS_CL, 3, 1, 0,
	  "PUT", "/obj" },
	{ "Expect other", 1, 0,
	  "GET / HTTP/1.1\r\nHost: h\r\nExpect: foo\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_HAS_HOST | H1_F_EXPECT_OTHER, 2, 1, 0, "GET", "/" },
	{ "Connection close + upgrade", 1, 0,
	  "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: close, Upgrade\r\n"
	  "Upgrade: websocket\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_HAS_HOST | H1_F_CONN_CLOSE | H1_F_UPGRADE, 3, 1,
	  0, "GET", "/ws" },
	{ "OWS trimmed, empty value, obs-text", 1, 0,
	  "OPTIONS * HTTP/1.1\r\nHost:h\r\nX-Empty:\r\nX-Pad: \t a b \t\r\n"
	  "X-Obs: caf\xc3\xa9\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_HAS_HOST, 4, 1, 0, "OPTIONS", "*" },
	{ "absolute-form target", 1, 0,
	  "GET http://nova:8774/v2.1/servers?x=%20 HTTP/1.1\r\nHost: nova:8774\r\n\r\n",
	  NULL, NULL, H1_BODY_NONE, 0, H1_F_HAS_HOST, 1, 1, 0,
	  "GET", "http://nova:8774/v2.1/servers?x=%20" },
	{ "absolute-form, userinfo, no path", 1, 0,
	  "GET http://u:p%40@nova:8774?x HTTP/1.1\r\nHost: other\r\n\r\n",
	  NULL, NULL, H1_BODY_NONE, 0, H1_F_HAS_HOST, 1, 1, 0,
	  "GET", "http://u:p%40@nova:8774?x" },
	{ "absolute-form HTTPS, IPv6, HTTP/1.0 no Host", 1, 0,
	  "HEAD HTTPS://[::1]:8443 HTTP/1.0\r\n\r\n",
	  NULL, NULL, H1_BODY_NONE, 0, H1_F_CONN_CLOSE, 0, 0, 0,
	  "HEAD", "HTTPS://[::1]:8443" },
	{ "CONNECT authority-form", 1, 0,
	  "CONNECT keystone:443 HTTP/1.1\r\nHost: keystone:443\r\n\r\n",
	  NULL, NULL, H1_BODY_NONE, 0, H1_F_HAS_HOST, 1, 1, 0,
	  "CONNECT", "keystone:443" },
	/* responses */
	{ "200 with CL", 0, 0,
	  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
	  "hello", NULL, H1_BODY_LENGTH, 5, H1_F_HAS_CL, 2, 1, 200, NULL, NULL },
	{ "200 empty reason with SP", 0, 0,
	  "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_HAS_CL, 1, 1, 200, NULL, NULL },
	{ "200 no reason no SP", 0, 0,
	  "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", "x", NULL,
	  H1_BODY_LENGTH, 1, H1_F_HAS_CL, 1, 1, 200, NULL, NULL },
	{ "200 chunked", 0, 0,
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	  "3\r\nabc\r\n0\r\n\r\n", "abc",
	  H1_BODY_CHUNKED, 0, H1_F_HAS_TE, 1, 1, 200, NULL, NULL },
	{ "200 gzip, chunked", 0, 0,
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	  "1\r\nz\r\n0\r\n\r\n", "z",
	  H1_BODY_CHUNKED, 0, H1_F_HAS_TE, 1, 1, 200, NULL, NULL },
	{ "200 TE gzip -> read to close", 0, 0,
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", NULL, NULL,
	  H1_BODY_EOF, 0, H1_F_HAS_TE, 1, 1, 200, NULL, NULL },
	{ "200 read until close", 0, 0,
	  "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "anything", NULL,
	  H1_BODY_EOF, 0, 0, 1, 1, 200, NULL, NULL },
	{ "HTTP/1.0 response", 0, 0,
	  "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", "ok", NULL,
	  H1_BODY_LENGTH, 2, H1_F_HAS_CL | H1_F_CONN_CLOSE, 1, 0, 200, NULL, NULL },
	{ "204", 0, 0,
	  "HTTP/1.1 204 No Content\r\nX-Openstack-Request-Id: req-1\r\n\r\n",
	  NULL, NULL, H1_BODY_NONE, 0, 0, 1, 1, 204, NULL, NULL },
	{ "304 with CL", 0, 0,
	  "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 100, H1_F_HAS_CL, 1, 1, 304, NULL, NULL },
	{ "100 Continue", 0, 0,
	  "HTTP/1.1 100 Continue\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, 0, 0, 1, 100, NULL, NULL },
	{ "101 Switching", 0, 0,
	  "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
	  "Upgrade: websocket\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_UPGRADE, 2, 1, 101, NULL, NULL },
	{ "HEAD response with CL", 0, 1,
	  "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 1234, H1_F_HAS_CL, 1, 1, 200, NULL, NULL },
	{ "HEAD response chunked", 0, 1,
	  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", NULL, NULL,
	  H1_BODY_NONE, 0, H1_F_HAS_TE, 1, 1, 200, NULL, NULL },
	{ "response Connection naming Content-Length", 0, 0,
	  "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\n",
	  "ok", NULL, H1_BODY_LENGTH, 2, H1_F_HAS_CL, 2, 1, 200, NULL, NULL },
	{ "599 keep-alive 1.0", 0, 0,
	  "HTTP/1.0 599 Whatever\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
	  NULL, NULL, H1_BODY_NONE, 0, H1_F_HAS_CL | H1_F_CONN_KEEPALIVE, 2, 0,
	  599, NULL, NULL },
};

static int
eq_str(const char *p, size_t n, const char *s)
{
	return s == NULL || (strlen(s) == n && memcmp(p, s, n) == 0);
}

static void
check_chunked(const struct vcase *v)
{
	size_t n = strlen(v->body), dl = strlen(v->data), k, i;
	struct dec d;
	char *withtail;

	/* whole, then followed by the next message's bytes */
	dec_init(&d);
	CHECKF(dec_feed(&d, v->body, n) == 0, "%s: rc %d %s", v->name, d.rc,
	    d.c.err ? d.c.err : "");
	CHECKF(d.c.state == H1_CHUNK_DONE && d.consumed == n, "%s", v->name);
	CHECKF(d.out_len == dl && memcmp(d.out, v->data, dl) == 0, "%s", v->name);

	withtail = malloc(n + 16);
	memcpy(withtail, v->body, n);
	memcpy(withtail + n, "GET / HTTP/1.1\r\n", 16);
	dec_init(&d);
	CHECKF(dec_feed(&d, withtail, n + 16) == 0 &&
	    d.c.state == H1_CHUNK_DONE && d.consumed == n,
	    "%s: pipelined tail consumed %zu of %zu", v->name, d.consumed, n);
	/* DONE consumes nothing more */
	CHECK(h1_chunk_parse(&d.c, withtail + n, 16) == 0);
	free(withtail);

	/* two pieces at every split */
	for (k = 0; k <= n; k++) {
		dec_init(&d);
		if (dec_feed(&d, v->body, k) != 0 ||
		    dec_feed(&d, v->body + k, n - k) != 0 ||
		    d.c.state != H1_CHUNK_DONE || d.consumed != n ||
		    d.out_len != dl || memcmp(d.out, v->data, dl) != 0) {
			CHECKF(0, "%s: split at %zu", v->name, k);
			break;
		}
	}
	/* one byte at a time */
	dec_init(&d);
	for (i = 0; i < n; i++)
		if (dec_feed(&d, v->body + i, 1) != 0)
			break;
	CHECKF(i == n && d.c.state == H1_CHUNK_DONE && d.consumed == n &&
	    d.out_len == dl && memcmp(d.out, v->data, dl) == 0,
	    "%s: byte at a time", v->name);
}

static void
test_valid(void)
{
	size_t i, k, hl, bl;
	struct h1_msg *m = malloc(sizeof(*m));
	char *full;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const struct vcase *v = &valid[i];
		int rc;

		hl = strlen(v->head);
		bl = v->body ? strlen(v->body) : 0;
		full = malloc(hl + bl + 1);
		memcpy(full, v->head, hl);
		if (bl)
			memcpy(full + hl, v->body, bl);

		/* head alone and head + body give the head length */
		rc = parse(v->is_req, v->req_is_head, full, hl, &lim_default, m);
		CHECKF(rc == (int)hl, "%s: rc %d (want %zu) %s at %zu", v->name,
		    rc, hl, m->err ? m->err : "", m->err_off);
		rc = parse(v->is_req, v->req_is_head, full, hl + bl,
		    &lim_default, m);
		CHECKF(rc == (int)hl, "%s: with body rc %d", v->name, rc);
		CHECKF(m->body == v->body_type, "%s: body %d", v->name, m->body);
		CHECKF(m->body != H1_BODY_LENGTH || m->content_length == v->cl,
		    "%s: cl %llu", v->name, (unsigned long long)m->content_length);
		CHECKF(!(m->flags & H1_F_HAS_CL) || m->content_length == v->cl,
		    "%s: cl %llu", v->name, (unsigned long long)m->content_length);
		CHECKF(m->flags == v->flags, "%s: flags %#x want %#x", v->name,
		    m->flags, v->flags);
		CHECKF(m->n_hdrs == v->n_hdrs, "%s: n_hdrs %zu", v->name, m->n_hdrs);
		CHECKF(m->version_minor == v->minor, "%s: minor", v->name);
		if (v->is_req) {
			CHECKF(eq_str(m->method, m->method_len, v->method),
			    "%s: method", v->name);
			CHECKF(eq_str(m->target, m->target_len, v->target),
			    "%s: target", v->name);
		} else {
			CHECKF(m->status == v->status, "%s: status %d", v->name,
			    m->status);
		}
		if (v->body_type == H1_BODY_LENGTH)
			CHECKF(bl == v->cl, "%s: table body length", v->name);

		/* every strict prefix: need more, never an error */
		for (k = 0; k < hl; k++) {
			rc = parse(v->is_req, v->req_is_head, full, k,
			    &lim_default, m);
			if (rc != 0) {
				CHECKF(0, "%s: prefix %zu rc %d %s", v->name, k,
				    rc, m->err ? m->err : "");
				break;
			}
		}
		if (v->data)
			check_chunked(v);
		free(full);
	}
	free(m);
}

static void
test_fields(void)
{
	struct h1_msg *m = malloc(sizeof(*m));
	const char *req = "GET / HTTP/1.1\r\nHost:  a.b \r\nX-Pad: \t a b \t\r\n"
	    "X-Empty:   \r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n";
	int rc = parse(1, 0, req, strlen(req), &lim_default, m);

	CHECK(rc == (int)strlen(req));
	CHECK(m->flags == (H1_F_HAS_HOST | H1_F_CONN_KEEPALIVE));
	CHECK(m->n_hdrs == 5);
	CHECK(eq_str(m->hdrs[0].name, m->hdrs[0].name_len, "Host"));
	CHECK(eq_str(m->hdrs[0].value, m->hdrs[0].value_len, "a.b"));
	CHECK(eq_str(m->hdrs[1].value, m->hdrs[1].value_len, "a b"));
	CHECK(m->hdrs[2].value_len == 0);
	CHECK(h1_connection_has(m, "keep-alive"));
	CHECK(h1_connection_has(m, "KEEP-ALIVE"));
	CHECK(h1_connection_has(m, "x-hop"));
	CHECK(!h1_connection_has(m, "close"));
	CHECK(!h1_connection_has(m, "keep"));
	CHECK(h1_is_hop_by_hop(m, &m->hdrs[3]));	/* Connection */
	CHECK(h1_is_hop_by_hop(m, &m->hdrs[4]));	/* X-Hop, listed */
	CHECK(!h1_is_hop_by_hop(m, &m->hdrs[0]));	/* Host */
	CHECK(!h1_is_hop_by_hop(m, &m->hdrs[1]));
	{
		static const char *hop[] = { "Keep-Alive", "TE", "Trailer",
		    "Transfer-Encoding", "upgrade", "Proxy-Connection" };
		struct tb_hdr h;
		size_t i;

		for (i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
			h.name = hop[i];
			h.name_len = strlen(hop[i]);
			h.value = "";
			h.value_len = 0;
			CHECKF(h1_is_hop_by_hop(m, &h), "%s", hop[i]);
		}
		h.name = "X-Trace-Info";
		h.name_len = strlen(h.name);
		CHECK(!h1_is_hop_by_hop(m, &h));
	}
	CHECK(strcmp(h1_reason(400), "Bad Request") == 0);
	CHECK(strcmp(h1_reason(431), "Request Header Fields Too Large") == 0);
	CHECK(strcmp(h1_reason(502), "Bad Gateway") == 0);
	CHECK(strcmp(h1_reason(505), "HTTP Version Not Supported") == 0);
	CHECK(h1_reason(999) != NULL);
	/* every tchar in a name */
	{
		const char *r = "GET / HTTP/1.1\r\nHost: h\r\n"
		    "X-!#$%&'*+-.^_`|~09az: v\r\n\r\n";

		rc = parse(1, 0, r, strlen(r), &lim_default, m);
		CHECK(rc == (int)strlen(r) && m->n_hdrs == 2 &&
		    m->hdrs[1].name_len == 21);
	}
	/* err_off points at the offending byte */
	{
		const char *r = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n";

		rc = parse(1, 0, r, strlen(r), &lim_default, m);
		CHECK(rc == -1 && m->err_off == 33 && r[m->err_off] == ' ');
		r = "GET / HTTP/1.1\r\nHost : h\r\n\r\n";
		rc = parse(1, 0, r, strlen(r), &lim_default, m);
		CHECK(rc == -1 && m->err_off == 20);
		r = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01\r\n\r\n";
		rc = parse(1, 0, r, strlen(r), &lim_default, m);
		CHECK(rc == -1 && m->err_off == 31);
	}
	/* a reused h1_msg shows no stale results */
	{
		const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";

		rc = parse(0, 0, r, strlen(r), &lim_default, m);
		CHECK(rc > 0 && m->err == NULL && m->err_status == 0 &&
		    m->method == NULL && m->flags == H1_F_HAS_CL);
	}
	/* empty input, even without a buffer: need more */
	CHECK(h1_parse_request(NULL, 0, &lim_default, m) == 0);
	CHECK(h1_parse_response(NULL, 0, &lim_default, 0, m) == 0);
	free(m);
}

/* Host values and request-target forms, and what the parser says of them. */
static void
test_targets(void)
{
	static const char *hosts[] = {
		"keystone", "keystone:5000", "10.0.0.1", "10.0.0.1:80", "[::1]",
		"[::1]:8080", "[::ffff:1.2.3.4]", "[2001:DB8::A]:443", "[v1F.fe:80]",
		"[v1.a]:", "a.b-c_d~e!$&'()*+,;=%41%7e", "h:", "999.1.1.1:99999",
		"", "xn--caf-dma.example",
	};
	static const struct {
		const char *line;	/* request line, CRLF added */
		enum h1_target form;
		const char *authority, *path;	/* absolute-form */
	} forms[] = {
		{ "GET /v2.1/servers?x=1 HTTP/1.1", H1_TARGET_ORIGIN, NULL, NULL },
		{ "GET http://nova:8774/v2.1?x HTTP/1.1", H1_TARGET_ABSOLUTE,
		  "nova:8774", "/v2.1?x" },
		{ "GET hTtP://nova HTTP/1.1", H1_TARGET_ABSOLUTE, "nova", "" },
		{ "GET http://u:p%40@nova:8774?x HTTP/1.1", H1_TARGET_ABSOLUTE,
		  "nova:8774", "?x" },
		{ "GET http://@nova/ HTTP/1.1", H1_TARGET_ABSOLUTE, "nova", "/" },
		{ "PUT https://[::1]:8443/a/b HTTP/1.1", H1_TARGET_ABSOLUTE,
		  "[::1]:8443", "/a/b" },
		{ "OPTIONS * HTTP/1.1", H1_TARGET_ASTERISK, NULL, NULL },
		{ "OPTIONS http://h HTTP/1.1", H1_TARGET_ABSOLUTE, "h", "" },
		{ "CONNECT h:443 HTTP/1.1", H1_TARGET_AUTHORITY, NULL, NULL },
		{ "CONNECT [::1]:443 HTTP/1.1", H1_TARGET_AUTHORITY, NULL, NULL },
	};
	struct h1_msg *m = malloc(sizeof(*m));
	char b[512];
	size_t i;
	int rc, n;

	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		n = snprintf(b, sizeof(b), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n",
		    hosts[i]);
		rc = parse(1, 0, b, (size_t)n, &lim_default, m);
		CHECKF(rc == n, "Host %s: rc %d %s", hosts[i], rc,
		    m->err ? m->err : "");
	}
	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		n = snprintf(b, sizeof(b), "%s\r\nHost: h\r\n\r\n", forms[i].line);
		rc = parse(1, 0, b, (size_t)n, &lim_default, m);
		CHECKF(rc == n && m->target_form == forms[i].form,
		    "%s: rc %d form %d %s", forms[i].line, rc, m->target_form,
		    m->err ? m->err : "");
		if (forms[i].form != H1_TARGET_ABSOLUTE) {
			CHECK(m->authority == NULL && m->path == NULL);
			continue;
		}
		CHECKF(eq_str(m->authority, m->authority_len, forms[i].authority) &&
		    eq_str(m->path, m->path_len, forms[i].path),
		    "%s: authority %.*s path %.*s", forms[i].line,
		    (int)m->authority_len, m->authority, (int)m->path_len, m->path);
		CHECK(m->authority >= m->target && m->path + m->path_len ==
		    m->target + m->target_len);
	}
	/* a rejected absolute-form with userinfo is reported from its "@" on,
	 * so the bytes the error log shows hold no password */
	{
		const char *r[] = {
			"GET http://admin:s3cret@h:x/ HTTP/1.1\r\nHost: h\r\n\r\n",
			"GET http://admin:s3cret@/ HTTP/1.1\r\nHost: h\r\n\r\n",
			"GET http://admin:s3[cret@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
			"GET http://ad@min:s3cret@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
			"GET http://admin:s3cret@h/#x HTTP/1.1\r\nHost: h\r\n\r\n",
		};

		for (i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
			rc = parse(1, 0, r[i], strlen(r[i]), &lim_default, m);
			CHECKF(rc == -1 && m->err_status == 400 &&
			    m->err_off > (size_t)(strstr(r[i], "s3") - r[i]),
			    "%s: rc %d at %zu", r[i], rc, m->err_off);
		}
	}
	/* the error points at the Host field line */
	{
		const char *r = "GET / HTTP/1.1\r\nX-A: 1\r\nHost: a b\r\n\r\n";

		rc = parse(1, 0, r, strlen(r), &lim_default, m);
		CHECK(rc == -1 && m->err_off == 24 && strcmp(m->err, "invalid Host") == 0);
	}
	/* a response's Host is not ours to judge */
	{
		const char *r = "HTTP/1.1 200 OK\r\nHost: a b\r\nContent-Length: 0\r\n\r\n";

		CHECK(parse(0, 0, r, strlen(r), &lim_default, m) == (int)strlen(r));
	}
	free(m);
}

/* ---- hostile heads ---- */

struct hcase {
	const char *name;
	int is_req;
	const char *msg;
	size_t len;		/* 0 = strlen(msg); set for NULs */
	int rc;
	int status;
};

#define RQ(name, msg, rc, st)	{ name, 1, msg, 0, rc, st }
#define RS(name, msg, rc, st)	{ name, 0, msg, 0, rc, st }
#define H "Host: h\r\n"
/* with an embedded NUL: the length comes from the literal */
#define RQN(name, msg, rc, st)	{ name, 1, msg, sizeof(msg) - 1, rc, st }

static const struct hcase hostile[] = {
	RQ("CL+TE", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\n"
	   "Transfer-Encoding: chunked\r\n\r\n", -1, 400),
	RQ("TE+CL", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n"
	   "Content-Length: 5\r\n\r\n", -1, 400),
	RQ("two different CL", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\n"
	   "Content-Length: 6\r\n\r\n", -1, 400),
	RQ("CL 1,2", "POST / HTTP/1.1\r\n" H "Content-Length: 1,2\r\n\r\n", -1, 400),
	RQ("CL +5", "POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n", -1, 400),
	RQ("CL -1", "POST / HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n", -1, 400),
	RQ("CL blank", "POST / HTTP/1.1\r\n" H "Content-Length:  \r\n\r\n", -1, 400),
	RQ("CL 0x10", "POST / HTTP/1.1\r\n" H "Content-Length: 0x10\r\n\r\n", -1, 400),
	RQ("CL 5 5", "POST / HTTP/1.1\r\n" H "Content-Length: 5 5\r\n\r\n", -1, 400),
	RQ("CL trailing comma", "POST / HTTP/1.1\r\n" H "Content-Length: 5,\r\n\r\n",
	   -1, 400),
	RQ("CL overflow 20 digits", "POST / HTTP/1.1\r\n" H
	   "Content-Length: 18446744073709551616\r\n\r\n", -1, 400),
	RQ("CL 2^63", "POST / HTTP/1.1\r\n" H
	   "Content-Length: 9223372036854775808\r\n\r\n", -1, 400),
	RQ("CL 2^64-1", "POST / HTTP/1.1\r\n" H
	   "Content-Length: 18446744073709551615\r\n\r\n", -1, 400),
	RQ("CL 2^63 in a list", "POST / HTTP/1.1\r\n" H
	   "Content-Length: 9223372036854775808, 9223372036854775808\r\n\r\n", -1, 400),
	RQ("CL overflow 25 digits", "POST / HTTP/1.1\r\n" H
	   "Content-Length: 9999999999999999999999999\r\n\r\n", -1, 400),
	RQ("TE gzip", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n",
	   -1, 501),
	RQ("TE chunked, gzip", "POST / HTTP/1.1\r\n" H
	   "Transfer-Encoding: chunked, gzip\r\n\r\n", -1, 501),
	RQ("TE gzip, chunked", "POST / HTTP/1.1\r\n" H
	   "Transfer-Encoding: gzip, chunked\r\n\r\n", -1, 501),
	RQ("TE chunked twice", "POST / HTTP/1.1\r\n" H
	   "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	   -1, 501),
	RQ("TE chunkedx", "POST / HTTP/1.1\r\n" H
	   "Transfer-Encoding: chunkedx\r\n\r\n", -1, 501),
	RQ("TE empty", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: \r\n\r\n",
	   -1, 400),
	RQ("TE in HTTP/1.0", "POST / HTTP/1.0\r\n"
	   "Transfer-Encoding: chunked\r\n\r\n", -1, 400),
	RQ("obs-fold", "GET / HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", -1, 400),
	RQ("obs-fold tab", "GET / HTTP/1.1\r\n" H "X-A: a\r\n\tb\r\n\r\n", -1, 400),
	RQ("space after start line", "GET / HTTP/1.1\r\n " H "\r\n", -1, 400),
	RQ("bare CR in value", "GET / HTTP/1.1\r\n" H "X-A: a\rb\r\n\r\n", -1, 400),
	RQ("bare CR line end", "GET / HTTP/1.1\r\n" H "X-A: a\r\r\n\r\n", -1, 400),
	RQ("bare CR request line", "GET / HTTP/1.1\rX\n" H "\r\n", -1, 400),
	RQ("bare LF line end", "GET / HTTP/1.1\r\n" H "X-A: a\n\r\n", -1, 400),
	RQ("bare LF request line", "GET / HTTP/1.1\n" H "\r\n", -1, 400),
	RQ("bare LF end of head", "GET / HTTP/1.1\r\n" H "\n", -1, 400),
	RQ("bare CR end of head", "GET / HTTP/1.1\r\n" H "\rX", -1, 400),
	RQN("NUL in value", "GET / HTTP/1.1\r\n" H "X-A: a\0b\r\n\r\n", -1, 400),
	RQN("NUL in name", "GET / HTTP/1.1\r\n" H "X\0A: ab\r\n\r\n", -1, 400),
	RQN("NUL in target", "GET /\0 HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQN("NUL in method", "G\0T / HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQN("NUL at line start", "GET / HTTP/1.1\r\n\0" H "\r\n", -1, 400),
	RQ("space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", -1, 400),
	RQ("tab before colon", "GET / HTTP/1.1\r\n" H "X-A\t: h\r\n\r\n", -1, 400),
	RQ("empty field name", "GET / HTTP/1.1\r\n" H ": h\r\n\r\n", -1, 400),
	RQ("no colon", "GET / HTTP/1.1\r\n" H "X-A\r\n\r\n", -1, 400),
	RQ("bad char in name", "GET / HTTP/1.1\r\n" H "X(A): h\r\n\r\n", -1, 400),
	RQ("method with space", "GE T / HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("method with paren", "G(ET / HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("empty method", " / HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("missing Host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", -1, 400),
	RQ("two Host", "GET / HTTP/1.1\r\n" H "host: i\r\n\r\n", -1, 400),
	RQ("HTTP/1.2", "GET / HTTP/1.2\r\n" H "\r\n", -1, 505),
	RQ("HTTP/2.0", "GET / HTTP/2.0\r\n" H "\r\n", -1, 505),
	RQ("HTTP/0.9", "GET / HTTP/0.9\r\n" H "\r\n", -1, 505),
	RQ("HTTP/1.1 trailing space", "GET / HTTP/1.1 \r\n" H "\r\n", -1, 400),
	RQ("HTTP/1.10", "GET / HTTP/1.10\r\n" H "\r\n", -1, 400),
	RQ("lowercase http", "GET / http/1.1\r\n" H "\r\n", -1, 400),
	RQ("HTTP/1.x", "GET / HTTP/1.x\r\n" H "\r\n", -1, 400),
	RQ("two spaces before target", "GET  / HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("two spaces before version", "GET /  HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("tab separator", "GET\t/ HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("no version", "GET /\r\n" H "\r\n", -1, 400),
	RQ("empty target", "GET  HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("CTL in target", "GET /a\x01 HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("DEL in target", "GET /a\x7f HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("CTL in value", "GET / HTTP/1.1\r\n" H "X-A: a\x01\r\n\r\n", -1, 400),
	RQ("DEL in value", "GET / HTTP/1.1\r\n" H "X-A: a\x7f\r\n\r\n", -1, 400),
	RQ("ESC in value", "GET / HTTP/1.1\r\n" H "X-A: \x1b[31m\r\n\r\n", -1, 400),
	RQ("early junk version", "GET / FTP/1.1", -1, 400),
	/* Host: uri-host [ ":" port ] */
	RQ("Host with space and slash", "GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n",
	   -1, 400),
	RQ("Host with path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", -1, 400),
	RQ("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", -1, 400),
	RQ("Host with query", "GET / HTTP/1.1\r\nHost: h?x\r\n\r\n", -1, 400),
	RQ("Host with fragment", "GET / HTTP/1.1\r\nHost: h#x\r\n\r\n", -1, 400),
	RQ("Host with quote", "GET / HTTP/1.1\r\nHost: h\"\r\n\r\n", -1, 400),
	RQ("Host with backslash", "GET / HTTP/1.1\r\nHost: h\\x\r\n\r\n", -1, 400),
	RQ("Host with obs-text", "GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n",
	   -1, 400),
	RQ("Host two ports", "GET / HTTP/1.1\r\nHost: h:80:80\r\n\r\n", -1, 400),
	RQ("Host port not digits", "GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n", -1, 400),
	RQ("Host port only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", -1, 400),
	RQ("Host bad pct", "GET / HTTP/1.1\r\nHost: h%zz\r\n\r\n", -1, 400),
	RQ("Host short pct", "GET / HTTP/1.1\r\nHost: h%4\r\n\r\n", -1, 400),
	RQ("Host unclosed bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", -1, 400),
	RQ("Host junk after bracket", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n",
	   -1, 400),
	RQ("Host IPv4 in brackets", "GET / HTTP/1.1\r\nHost: [1.2.3.4]\r\n\r\n",
	   -1, 400),
	RQ("Host bad IPv6", "GET / HTTP/1.1\r\nHost: [1:::2]\r\n\r\n", -1, 400),
	RQ("Host IPv6 zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n",
	   -1, 400),
	RQ("Host empty IPvFuture", "GET / HTTP/1.1\r\nHost: [v1.]\r\n\r\n", -1, 400),
	RQ("Host IPvFuture no hex", "GET / HTTP/1.1\r\nHost: [v.x]\r\n\r\n", -1, 400),
	RQ("Host empty brackets", "GET / HTTP/1.1\r\nHost: []\r\n\r\n", -1, 400),
	/* request-target forms */
	RQ("neither origin- nor absolute-form", "GET evil.example/x HTTP/1.1\r\n"
	   H "\r\n", -1, 400),
	RQ("query-only target", "GET ?x HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("scheme-like target", "GET h:80 HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("asterisk for GET", "GET * HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("asterisk for POST", "POST * HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("asterisk for lower-case options", "options * HTTP/1.1\r\n" H "\r\n",
	   -1, 400),
	RQ("asterisk and more", "OPTIONS *x HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("absolute ftp", "GET ftp://h/x HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("absolute one slash", "GET http:/h/x HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("absolute empty host", "GET http:///x HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("absolute empty host, port", "GET http://:80/x HTTP/1.1\r\n" H "\r\n",
	   -1, 400),
	RQ("absolute userinfo, empty host", "GET http://u:p@/x HTTP/1.1\r\n" H
	   "\r\n", -1, 400),
	RQ("absolute bad port", "GET http://h:x/ HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("absolute two @", "GET http://a@b@c/ HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("absolute bad userinfo", "GET http://u[@h/ HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("absolute bad pct in userinfo", "GET http://u%zz@h/ HTTP/1.1\r\n" H
	   "\r\n", -1, 400),
	RQ("absolute fragment", "GET http://h/p#f HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("absolute backslash host", "GET http://h\\x/ HTTP/1.1\r\n" H "\r\n",
	   -1, 400),
	RQ("CONNECT origin-form", "CONNECT / HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("CONNECT without port", "CONNECT h HTTP/1.1\r\n" H "\r\n", -1, 400),
	RQ("CONNECT absolute", "CONNECT http://h:80/ HTTP/1.1\r\n" H "\r\n", -1, 400),
	/* Connection naming a field the proxy needs end to end */
	RQ("Connection names Host", "GET / HTTP/1.1\r\n" H
	   "Connection: close, Host\r\n\r\n", -1, 400),
	RQ("Connection names Host first", "GET / HTTP/1.1\r\n"
	   "Connection: HOST\r\n" H "\r\n", -1, 400),
	RQ("Connection names Content-Length", "POST / HTTP/1.1\r\n" H
	   "Content-Length: 1\r\nConnection: keep-alive,content-length\r\n\r\n",
	   -1, 400),
	RQ("Connection names Transfer-Encoding", "POST / HTTP/1.1\r\n" H
	   "Transfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n",
	   -1, 400),
	RQ("second Connection names Host", "GET / HTTP/1.1\r\n" H
	   "Connection: close\r\nConnection: x, host \r\n\r\n", -1, 400),
	/* responses: every error is 502 */
	RS("resp CL+TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
	   "Transfer-Encoding: chunked\r\n\r\n", -1, 502),
	RS("resp CL 2^63", "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
	   -1, 502),
	RS("resp two CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
	   "Content-Length: 7\r\n\r\n", -1, 502),
	RS("resp CL 1,2", "HTTP/1.1 200 OK\r\nContent-Length: 1,2\r\n\r\n", -1, 502),
	RS("resp chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, "
	   "chunked\r\n\r\n", -1, 502),
	RS("resp status 2 digits", "HTTP/1.1 20 OK\r\n\r\n", -1, 502),
	RS("resp status 4 digits", "HTTP/1.1 2000 OK\r\n\r\n", -1, 502),
	RS("resp status 099", "HTTP/1.1 099 X\r\n\r\n", -1, 502),
	RS("resp status 600", "HTTP/1.1 600 X\r\n\r\n", -1, 502),
	RS("resp status letters", "HTTP/1.1 2x0 X\r\n\r\n", -1, 502),
	RS("resp HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", -1, 502),
	RS("resp lowercase", "http/1.1 200 OK\r\n\r\n", -1, 502),
	RS("resp bare LF", "HTTP/1.1 200 OK\n\r\n", -1, 502),
	RS("resp obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", -1, 502),
	RS("resp CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", -1, 502),
	RS("resp junk start", "XTTP/1.1", -1, 502),
	RS("resp TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
	   -1, 502),
};

static void
test_hostile(void)
{
	struct h1_msg *m = malloc(sizeof(*m));
	size_t i, k, n;
	int rc;

	for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		const struct hcase *h = &hostile[i];

		n = h->len ? h->len : strlen(h->msg);
		rc = parse(h->is_req, 0, h->msg, n, &lim_default, m);
		CHECKF(rc == h->rc && m->err_status == h->status,
		    "%s: rc %d status %d (%s) want %d/%d", h->name, rc,
		    m->err_status, m->err ? m->err : "", h->rc, h->status);
		CHECKF(rc >= 0 || (m->err != NULL && m->err_off <= n),
		    "%s: err/err_off", h->name);
		/* a prefix needs more or already fails the same way */
		for (k = 0; k < n; k++) {
			rc = parse(h->is_req, 0, h->msg, k, &lim_default, m);
			if (rc != 0 && (rc != h->rc ||
			    m->err_status != h->status)) {
				CHECKF(0, "%s: prefix %zu rc %d status %d",
				    h->name, k, rc, m->err_status);
				break;
			}
		}
	}
	free(m);
}

/* ---- limits ---- */

static void
test_limits(void)
{
	struct h1_msg *m = malloc(sizeof(*m));
	struct h1_limits lim = { 8192, 4096, 100 };
	size_t big = 200 * 1024, i, n;
	char *b = malloc(big);
	int rc;

	/* a headless stream of token bytes: the request line limit hits */
	memset(b, 'A', big);
	rc = parse(1, 0, b, big, &lim, m);
	CHECKF(rc == -2 && m->err_status == 414, "rc %d %d", rc, m->err_status);
	/* long target */
	memcpy(b, "GET /", 5);
	memset(b + 5, 'a', big - 5);
	rc = parse(1, 0, b, big, &lim, m);
	CHECK(rc == -2 && m->err_status == 414);
	/* request line of exactly max_line bytes is fine, one more is 414 */
	n = 0;
	memcpy(b, "GET /", 5);
	memset(b + 5, 'a', 4096 - 5 - 9);
	memcpy(b + 4096 - 9, " HTTP/1.1\r\nHost: h\r\n\r\n", 22);
	rc = parse(1, 0, b, 4096 + 2 + 9 + 2, &lim, m);
	CHECKF(rc == 4096 + 13, "line at max_line: rc %d %s", rc,
	    m->err ? m->err : "");
	memcpy(b, "GET /", 5);
	memset(b + 5, 'a', 4097 - 5 - 9);
	memcpy(b + 4097 - 9, " HTTP/1.1\r\nHost: h\r\n\r\n", 22);
	rc = parse(1, 0, b, 4097 + 13, &lim, m);
	CHECKF(rc == -2 && m->err_status == 414, "line over max_line: %d", rc);
	/* prefix of an over-long line that is still short: need more */
	rc = parse(1, 0, b, 4000, &lim, m);
	CHECK(rc == 0);

	/* head too long: endless header value */
	memcpy(b, "GET / HTTP/1.1\r\nX-A: ", 21);
	memset(b + 21, 'v', big - 21);
	rc = parse(1, 0, b, big, &lim, m);
	CHECKF(rc == -2 && m->err_status == 431, "rc %d %d", rc, m->err_status);
	/* exactly max_head bytes of incomplete head is already 431 */
	rc = parse(1, 0, b, 8192, &lim, m);
	CHECK(rc == -2 && m->err_status == 431);
	rc = parse(1, 0, b, 8191, &lim, m);
	CHECK(rc == 0);
	/* a head of exactly max_head bytes is accepted */
	memcpy(b, "GET / HTTP/1.1\r\nHost: h\r\nX-A: ", 30);
	memset(b + 30, 'v', 8192 - 30 - 4);
	memcpy(b + 8192 - 4, "\r\n\r\n", 4);
	rc = parse(1, 0, b, 8192, &lim, m);
	CHECKF(rc == 8192, "head at max_head: %d %s", rc, m->err ? m->err : "");
	memcpy(b + 8192 - 4, "v\r\n\r\n", 5);
	rc = parse(1, 0, b, 8193, &lim, m);
	CHECK(rc == -2 && m->err_status == 431);

	/* too many headers */
	n = 0;
	n += (size_t)sprintf(b, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (i = 0; i < 100; i++)
		n += (size_t)sprintf(b + n, "X-%zu: v\r\n", i);
	memcpy(b + n, "\r\n", 2);
	rc = parse(1, 0, b, n + 2, &lim, m);
	CHECKF(rc == -2 && m->err_status == 431, "101 headers rc %d", rc);
	lim.max_headers = 101;
	rc = parse(1, 0, b, n + 2, &lim, m);
	CHECK(rc == (int)(n + 2) && m->n_hdrs == 101);
	/* a zero limit means the default; max_headers is capped */
	lim.max_head_bytes = 0;
	lim.max_line = 0;
	lim.max_headers = 100000;
	rc = parse(1, 0, b, n + 2, &lim, m);
	CHECK(rc == (int)(n + 2));
	rc = parse(1, 0, b, n + 2, NULL, m);
	CHECK(rc == (int)(n + 2));
	/* max_line above max_head (even SIZE_MAX) is the head limit */
	{
		struct h1_limits odd = { 100, SIZE_MAX, 10 };
		const char *r = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";

		rc = parse(1, 0, r, strlen(r), &odd, m);
		CHECK(rc == (int)strlen(r));
		memset(b, 'A', 200);
		rc = parse(1, 0, b, 200, &odd, m);
		CHECK(rc == -2 && m->err_status == 431);
	}
	/* the largest Content-Length taken: 2^63-1, like a chunk size */
	{
		const char *r = "PUT / HTTP/1.1\r\nHost: h\r\n"
		    "Content-Length: 09223372036854775807\r\n\r\n";

		rc = parse(1, 0, r, strlen(r), &lim, m);
		CHECK(rc == (int)strlen(r) && m->body == H1_BODY_LENGTH &&
		    m->content_length == INT64_MAX);
	}
	/* a response's limit errors are 502 */
	memcpy(b, "HTTP/1.1 200 OK\r\nX-A: ", 22);
	memset(b + 22, 'v', big - 22);
	lim.max_head_bytes = 8192;
	rc = parse(0, 0, b, big, &lim, m);
	CHECK(rc == -2 && m->err_status == 502);
	free(b);
	free(m);
}

static void
test_pipelining(void)
{
	struct h1_msg *m = malloc(sizeof(*m));
	const char *a = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
	const char *b2 = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx";
	char buf[256];
	size_t al = strlen(a), bl = strlen(b2);
	int rc;

	memcpy(buf, a, al);
	memcpy(buf + al, b2, bl);
	rc = parse(1, 0, buf, al + bl, &lim_default, m);
	CHECK(rc == (int)al);
	CHECK(eq_str(m->target, m->target_len, "/a"));
	rc = parse(1, 0, buf + al, bl, &lim_default, m);
	CHECK(rc == (int)bl - 1 && m->body == H1_BODY_LENGTH &&
	    m->content_length == 1);
	/* 100 Continue followed by the final response */
	{
		const char *r = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
		    "Content-Length: 0\r\n\r\n";

		rc = parse(0, 0, r, strlen(r), &lim_default, m);
		CHECK(rc == 25 && m->status == 100);
		rc = parse(0, 0, r + 25, strlen(r) - 25, &lim_default, m);
		CHECK(rc == (int)strlen(r) - 25 && m->status == 200);
	}
	free(m);
}

/*
 * Values and targets are skipped eight bytes at a time: put each bad and
 * each allowed byte at every position of a long run, so a word-boundary
 * mistake shows up.
 */
static void
test_byte_positions(void)
{
	static const unsigned char bad_v[] = { 0x00, 0x01, 0x0a, 0x0d, 0x1f, 0x7f };
	static const unsigned char ok_v[] = { 0x09, 0x20, 0x21, 0x7e, 0x80, 0xff };
	static const unsigned char bad_t[] = { 0x00, 0x09, 0x1f, 0x7f };
	static const unsigned char ok_t[] = { 0x21, 0x7e, 0x80, 0xff };
	struct h1_msg *m = malloc(sizeof(*m));
	char b[256];
	size_t pos, i, n;
	int rc;

	for (pos = 0; pos < 40; pos++) {
		for (i = 0; i < sizeof(bad_v) + sizeof(ok_v); i++) {
			int bad = i < sizeof(bad_v);
			unsigned char ch = bad ? bad_v[i] : ok_v[i - sizeof(bad_v)];

			n = (size_t)sprintf(b, "GET / HTTP/1.1\r\nHost: h\r\nX-V: ");
			memset(b + n, 'a', 40);
			b[n + pos] = (char)ch;
			memcpy(b + n + 40, "b\r\n\r\n", 5);
			n += 45;
			rc = parse(1, 0, b, n, &lim_default, m);
			if (bad)
				CHECKF(rc == -1 && m->err_status == 400,
				    "value byte %#x at %zu: rc %d", ch, pos, rc);
			else
				/* leading OWS is trimmed from the value */
				CHECKF(rc == (int)n && m->hdrs[1].value_len ==
				    ((ch == 0x20 || ch == 0x09) && pos == 0 ?
				    40u : 41u),
				    "value byte %#x at %zu: rc %d", ch, pos, rc);
		}
		for (i = 0; i < sizeof(bad_t) + sizeof(ok_t); i++) {
			int bad = i < sizeof(bad_t);
			unsigned char ch = bad ? bad_t[i] : ok_t[i - sizeof(bad_t)];

			memcpy(b, "GET /", 5);
			memset(b + 5, 'a', 40);
			b[5 + pos] = (char)ch;
			memcpy(b + 45, " HTTP/1.1\r\nHost: h\r\n\r\n", 22);
			n = 67;
			rc = parse(1, 0, b, n, &lim_default, m);
			if (bad)
				CHECKF(rc == -1 && m->err_status == 400,
				    "target byte %#x at %zu: rc %d", ch, pos, rc);
			else
				CHECKF(rc == (int)n && m->target_len == 41,
				    "target byte %#x at %zu: rc %d", ch, pos, rc);
		}
	}
	free(m);
}

/* ---- hostile chunked bodies ---- */

struct ccase {
	const char *name;
	const char *body;
	size_t len;		/* 0 = strlen */
	int rc;
};

static const struct ccase chunk_hostile[] = {
	{ "no size", "\r\n", 0, -1 },
	{ "size with junk", "5x\r\nhello\r\n0\r\n\r\n", 0, -1 },
	{ "negative", "-5\r\n", 0, -1 },
	{ "0x prefix", "0x5\r\n", 0, -1 },
	{ "17 digits", "00000000000000001\r\nx\r\n0\r\n\r\n", 0, -1 },
	{ "2^63", "8000000000000000\r\n", 0, -1 },
	{ "2^64-1", "ffffffffffffffff\r\n", 0, -1 },
	{ "bare LF after size", "5\nhello\r\n0\r\n\r\n", 0, -1 },
	{ "bare CR after size", "5\rhello\r\n0\r\n\r\n", 0, -1 },
	{ "missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", 0, -1 },
	{ "LF only after data", "5\r\nhello\n0\r\n\r\n", 0, -1 },
	{ "CR only after data", "5\r\nhello\r0\r\n\r\n", 0, -1 },
	{ "bare LF at end", "0\r\n\n", 0, -1 },
	{ "bare CR at end", "0\r\n\rX", 0, -1 },
	{ "bad ext name", "5;=x\r\nhello\r\n0\r\n\r\n", 0, -1 },
	{ "ext bare LF", "5;a=b\nhello\r\n0\r\n\r\n", 0, -1 },
	{ "ext unterminated quote", "5;a=\"b\r\nhello\r\n0\r\n\r\n", 0, -1 },
	{ "ext CTL", "5;a=b\x01\r\nhello\r\n0\r\n\r\n", 0, -1 },
	{ "ext NUL", "5;a\0=b\r\nhello\r\n0\r\n\r\n",
	  sizeof("5;a\0=b\r\nhello\r\n0\r\n\r\n") - 1, -1 },
	{ "ext empty value", "5;a=\r\nhello\r\n0\r\n\r\n", 0, -1 },
	{ "trailer obs-fold", "0\r\nX-A: a\r\n b\r\n\r\n", 0, -1 },
	{ "trailer space before colon", "0\r\nX-A : a\r\n\r\n", 0, -1 },
	{ "trailer no colon", "0\r\nX-A\r\n\r\n", 0, -1 },
	{ "trailer empty name", "0\r\n: a\r\n\r\n", 0, -1 },
	{ "trailer bare LF", "0\r\nX-A: a\n\r\n", 0, -1 },
	{ "trailer bare CR", "0\r\nX-A: a\rb\r\n\r\n", 0, -1 },
	{ "trailer NUL", "0\r\nX-A: a\0\r\n\r\n",
	  sizeof("0\r\nX-A: a\0\r\n\r\n") - 1, -1 },
	{ "trailer CTL", "0\r\nX-A: \x1b\r\n\r\n", 0, -1 },
};

static void
test_chunk_hostile(void)
{
	size_t i, n, k;
	struct dec d;
	char *b;
	int rc;

	for (i = 0; i < sizeof(chunk_hostile) / sizeof(chunk_hostile[0]); i++) {
		const struct ccase *cc = &chunk_hostile[i];

		n = cc->len ? cc->len : strlen(cc->body);
		dec_init(&d);
		rc = dec_feed(&d, cc->body, n);
		CHECKF(rc == cc->rc && d.c.err != NULL, "%s: rc %d", cc->name, rc);
		/* the same verdict at every split */
		for (k = 0; k <= n; k++) {
			dec_init(&d);
			rc = dec_feed(&d, cc->body, k);
			if (rc == 0)
				rc = dec_feed(&d, cc->body + k, n - k);
			if (rc != cc->rc) {
				CHECKF(0, "%s: split %zu rc %d", cc->name, k, rc);
				break;
			}
		}
	}

	/* largest size accepted: 7fffffffffffffff; stops in DATA */
	dec_init(&d);
	CHECK(dec_feed(&d, "7FFFFFFFFFFFFFFF\r\n", 18) == 0);
	CHECK(d.c.state == H1_CHUNK_DATA && d.c.remaining == INT64_MAX);
	/* 16 digits with leading zeros */
	dec_init(&d);
	CHECK(dec_feed(&d, "0000000000000003\r\nabc\r\n0\r\n\r\n", 28) == 0);
	CHECK(d.c.state == H1_CHUNK_DONE && d.out_len == 3);

	/* size line over 4096 bytes (long extension) */
	b = malloc(8192);
	memcpy(b, "5;a=", 4);
	memset(b + 4, 'x', 5000);
	memcpy(b + 5004, "\r\nhello\r\n0\r\n\r\n", 14);
	dec_init(&d);
	CHECK(dec_feed(&d, b, 5018) == -1);
	memset(b + 4, 'x', 4000);
	memcpy(b + 4004, "\r\nhello\r\n0\r\n\r\n", 14);
	dec_init(&d);
	CHECK(dec_feed(&d, b, 4018) == 0 && d.c.state == H1_CHUNK_DONE);
	/* trailer section over max_trailer_bytes */
	memcpy(b, "0\r\nX-A: ", 8);
	memset(b + 8, 'v', 5000);
	memcpy(b + 5008, "\r\n\r\n", 4);
	dec_init(&d);
	h1_chunk_init(&d.c, 1000);
	CHECK(dec_feed(&d, b, 5012) == -2 && d.c.err != NULL);
	dec_init(&d);
	h1_chunk_init(&d.c, 6000);
	CHECK(dec_feed(&d, b, 5012) == 0 && d.c.state == H1_CHUNK_DONE);
	free(b);

	/* h1_chunk_parse returns 0 in DATA and with len 0 */
	dec_init(&d);
	CHECK(h1_chunk_parse(&d.c, "", 0) == 0);
	CHECK(h1_chunk_parse(&d.c, "5\r\nhello", 8) == 3);
	CHECK(d.c.state == H1_CHUNK_DATA && d.c.remaining == 5);
	CHECK(h1_chunk_parse(&d.c, "hello", 5) == 0);
	h1_chunk_data(&d.c, 2);
	CHECK(d.c.state == H1_CHUNK_DATA && d.c.remaining == 3);
	h1_chunk_data(&d.c, 3);
	CHECK(d.c.state == H1_CHUNK_DATA_CR);
}

/* ---- trailers: where the decoder stops, what may be forwarded ---- */

static void
test_trailers(void)
{
	static const struct {
		const char *in, *conn, *out;
		unsigned dropped;
	} cases[] = {
		{ "\r\n", NULL, "\r\n", 0 },
		{ "X-Checksum: abc\r\n\r\n", NULL, "X-Checksum: abc\r\n\r\n", 0 },
		/* RFC 9110 6.5.1: framing, routing, authentication */
		{ "Content-Length: 5\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n"
		  "host:evil\r\nAUTHORIZATION: Basic x\r\nTrailer: X-A\r\n"
		  "Proxy-Authorization: y\r\nX-B:\t2 \r\n\r\n", NULL,
		  "X-A: 1\r\nX-B:\t2 \r\n\r\n", 6 },
		/* the hop-by-hop set */
		{ "Connection: close\r\nKeep-Alive: 1\r\nTE: trailers\r\n"
		  "Upgrade: h2c\r\nProxy-Connection: x\r\nX-C: 3\r\n\r\n", NULL,
		  "X-C: 3\r\n\r\n", 5 },
		/* and what the message's Connection names (RFC 9110 7.6.1) */
		{ "X-Hop: 1\r\nX-Keep: 2\r\nx-other: 3\r\n\r\n", "close, X-HOP ,x-other",
		  "X-Keep: 2\r\n\r\n", 2 },
		/* names are whole names */
		{ "Hosts: 1\r\nX-Host: 2\r\nContent-Lengths: 3\r\n\r\n", "X",
		  "Hosts: 1\r\nX-Host: 2\r\nContent-Lengths: 3\r\n\r\n", 0 },
	};
	char out[512];
	unsigned dropped;
	size_t i, n;
	struct dec d;
	char body[512];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* what the decoder accepts */
		n = (size_t)snprintf(body, sizeof(body), "0\r\n%s", cases[i].in);
		dec_init(&d);
		CHECKF(dec_feed(&d, body, n) == 0 && d.c.state == H1_CHUNK_DONE &&
		    d.c.trailer_bytes == strlen(cases[i].in), "case %zu", i);
		n = h1_trailer_filter(cases[i].in, strlen(cases[i].in), cases[i].conn,
		    cases[i].conn ? strlen(cases[i].conn) : 0, out, &dropped);
		CHECKF(n == strlen(cases[i].out) && memcmp(out, cases[i].out, n) == 0 &&
		    dropped == cases[i].dropped, "case %zu: %.*s (%u dropped)", i,
		    (int)n, out, dropped);
	}
	CHECK(h1_trailer_filter("X: 1\r\n\r\n", 8, NULL, 0, out, NULL) == 8);

	/* the decoder stops after the last-chunk line, then at the end */
	{
		const char *b = "2\r\nab\r\n0;e=1\r\nX-A: 1\r\n\r\nGET";
		ssize_t r;

		dec_init(&d);
		r = h1_chunk_parse(&d.c, b, strlen(b));
		CHECK(r == 3 && d.c.state == H1_CHUNK_DATA);
		h1_chunk_data(&d.c, 2);
		r = h1_chunk_parse(&d.c, b + 5, strlen(b) - 5);
		CHECK(r == 9 && d.c.state == H1_CHUNK_TRAILER && d.c.trailer_bytes == 0);
		r = h1_chunk_parse(&d.c, b + 14, 5);
		CHECK(r == 5 && d.c.state == H1_CHUNK_TRAILER_LINE &&
		    d.c.trailer_bytes == 5);
		r = h1_chunk_parse(&d.c, b + 19, strlen(b) - 19);
		CHECK(r == 5 && d.c.state == H1_CHUNK_DONE && d.c.trailer_bytes == 10);
	}
}

int
main(void)
{
	guard_init();
	test_valid();
	test_fields();
	test_targets();
	test_hostile();
	test_limits();
	test_pipelining();
	test_byte_positions();
	test_chunk_hostile();
	test_trailers();
	TB_TEST_END();
}
