/*
 * fuzz_proxy_head.c: libFuzzer target for the forwarded-head builder
 * (src/proxy_head.c): proxy_head_target, proxy_head_forward and
 * proxy_head_response.
 *
 * Input: one control byte, then a message. The control byte picks the
 * listener's switches (bit 0 x_forwarded, bit 1 keep_proxy_authorization,
 * bit 2 a client-subject header), the response side's (bit 3 the request
 * was HEAD, bit 4 the client speaks HTTP/1.0, bit 5 keep-alive; bit 6
 * underscore_headers = allow, bit 7 a peer in trusted_proxies). The message
 * is parsed as a request and, when valid, its forwarded head is built; then
 * as a response, and the client's head is built. Each head built must be
 * one our own parser takes whole, with the same method, the origin-form
 * target, exactly the Host RFC 9112 3.2.2 asks for, the same body framing,
 * no hop-by-hop field but our own Connection, and nothing the proxy owns
 * taken from the input; any breach aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "h1.h"
#include "proxy.h"
#include "proxy_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INV(cond) do {							\
	if (!(cond)) {							\
		fprintf(stderr, "invariant failed: %s (line %d)\n",	\
		    #cond, __LINE__);					\
		abort();						\
	}								\
} while (0)

#define SUBJECT_HEADER	"X-SSL-Client-Subject"

static int
eq(const char *a, size_t al, const char *b, size_t bl)
{
	return al == bl && memcmp(a, b, al) == 0;
}

/* The value of the only field named name in m, or NULL (and *n = 0). */
static const struct tb_hdr *
only(const struct h1_msg *m, const char *name)
{
	int i = hdr_find(m->hdrs, m->n_hdrs, 0, name);

	if (i < 0)
		return NULL;
	INV(hdr_find(m->hdrs, m->n_hdrs, (size_t)i + 1, name) < 0);
	return &m->hdrs[i];
}

static void
check_forward(const struct h1_msg *m, const char *out, size_t len,
    const struct proxy_req *r, const struct tb_listener_conf *lc)
{
	static struct h1_msg m2;
	const struct h1_limits lim = { len + 1, len + 1, H1_MAX_HEADERS_CAP };
	const struct tb_hdr *host, *xfh;
	size_t i;
	int rc;

	rc = h1_parse_request(out, len, &lim, &m2);
	if (rc != (int)len)
		fprintf(stderr, "forwarded head refused: %s at %zu\n%.*s\n",
		    m2.err ? m2.err : "(incomplete)", m2.err_off, (int)len, out);
	INV(rc == (int)len);
	INV(m2.version_minor == 1);
	/* the method as received, whatever its length */
	INV(eq(m2.method, m2.method_len, m->method, m->method_len));
	INV(eq(m2.target, m2.target_len, r->target, strlen(r->target)));
	INV(m2.target_form == (m2.target[0] == '*' ? H1_TARGET_ASTERISK :
	    H1_TARGET_ORIGIN));
	/* RFC 9112 3.2.2: the authority of an absolute-form target is Host */
	host = only(&m2, "Host");
	INV(host != NULL);
	if (m->target_form == H1_TARGET_ABSOLUTE) {
		INV(m2.hdrs[0].name == host->name);
		INV(eq(host->value, host->value_len, m->authority, m->authority_len));
		INV(memchr(host->value, '@', host->value_len) == NULL);
	} else if (m->flags & H1_F_HAS_HOST) {
		const struct tb_hdr *h = only(m, "Host");

		INV(eq(host->value, host->value_len, h->value, h->value_len));
	} else {
		/* HTTP/1.0 without Host: the upstream's */
		INV(eq(host->value, host->value_len, "upstream.example:8774", 21));
	}
	/* framing recomputed, the same */
	INV(m2.body == m->body);
	if (m->body == H1_BODY_LENGTH)
		INV(m2.content_length == m->content_length);
	INV(!(m2.flags & (H1_F_EXPECT_CONTINUE | H1_F_EXPECT_OTHER |
	    H1_F_UPGRADE | H1_F_CONN_CLOSE)));
	for (i = 0; i < m2.n_hdrs; i++) {
		const struct tb_hdr *h = &m2.hdrs[i];

		INV(!h1_is_hop_by_hop(&m2, h) || hdr_name_is(h, "Transfer-Encoding"));
		INV(lc->keep_proxy_authorization ||
		    !hdr_name_is(h, "Proxy-Authorization"));
		/* only we set these (no TLS here: no subject at all) */
		INV(lc->tls_client_subject_header == NULL ||
		    !hdr_name_is(h, lc->tls_client_subject_header));
	}
	if (m2.body == H1_BODY_CHUNKED)
		INV(only(&m2, "Transfer-Encoding") != NULL);
	/* X-Forwarded-Host says what the client named, if anything; a
	 * trusted proxy in front may have said it already (then its own) */
	if (r->c->peer_trusted)
		return;
	xfh = only(&m2, "X-Forwarded-Host");
	if (lc->x_forwarded) {
		int named = m->target_form == H1_TARGET_ABSOLUTE ||
		    ((m->flags & H1_F_HAS_HOST) && host->value_len > 0);

		INV(only(&m2, "X-Forwarded-Proto") != NULL);
		INV(named ? xfh != NULL && eq(xfh->value, xfh->value_len,
		    host->value, host->value_len) : xfh == NULL);
	} else {
		INV(xfh == NULL && only(&m2, "X-Forwarded-Proto") == NULL);
	}
}

static void
fuzz_request(const char *b, size_t n, struct proxy_req *r,
    const struct tb_listener_conf *lc)
{
	static struct h1_msg m;
	static const struct h1_limits lim = { 16384, 8192, 100 };
	struct hbuf hb;

	if (h1_parse_request(b, n, &lim, &m) <= 0)
		return;
	/* proxy_start answers CONNECT itself; nothing is forwarded */
	if (m.target_form == H1_TARGET_AUTHORITY)
		return;
	r->target = proxy_head_target(&m);
	INV(r->target != NULL);
	INV(r->target[0] == '/' || (strcmp(r->target, "*") == 0 &&
	    eq(m.method, m.method_len, "OPTIONS", 7)));
	snprintf(r->method, sizeof(r->method), "%.*s", (int)m.method_len, m.method);
	r->req_body = m.body;
	r->req_remaining = m.body == H1_BODY_LENGTH ? m.content_length : 0;
	hb_init(&hb);
	INV(proxy_head_forward(&hb, r, &m, NULL) == 0);
	check_forward(&m, hb.p, hb.len, r, lc);
	hb_free(&hb);
	free(r->target);
	r->target = NULL;
}

static void
fuzz_response(const char *b, size_t n, struct proxy_req *r, int head)
{
	static struct h1_msg m, m2;
	static const struct h1_limits lim = { 16384, 8192, 100 };
	const struct h1_limits lim2 = { 32768, 32768, H1_MAX_HEADERS_CAP };
	const struct tb_hdr *conn;
	struct hbuf hb;
	size_t i;
	int rc;

	if (h1_parse_response(b, n, &lim, head, &m) <= 0 || m.status < 200)
		return;
	if (m.body == H1_BODY_CHUNKED && r->version_minor == 0)
		r->flags |= PROXY_F_DECHUNK;
	if (m.body == H1_BODY_EOF || (r->flags & PROXY_F_DECHUNK))
		r->flags &= ~PROXY_F_KEEPALIVE;	/* as send_response_head */
	hb_init(&hb);
	INV(proxy_head_response(&hb, r, &m, NULL) == 0);
	rc = h1_parse_response(hb.p, hb.len, &lim2, head, &m2);
	INV(rc == (int)hb.len);
	INV(m2.status == m.status && m2.version_minor == 1);
	INV(eq(m2.reason, m2.reason_len, m.reason, m.reason_len));
	/* the body goes as it came, de-chunked for an HTTP/1.0 client */
	if (r->flags & PROXY_F_DECHUNK)
		INV(m2.body == H1_BODY_EOF);
	else
		INV(m2.body == m.body);
	if (m.body == H1_BODY_LENGTH)
		INV(m2.content_length == m.content_length);
	/* RFC 9110 8.6: no Content-Length in a 204 */
	if (m.status == 204)
		INV(!(m2.flags & H1_F_HAS_CL));
	for (i = 0; i < m2.n_hdrs; i++)
		INV(!h1_is_hop_by_hop(&m2, &m2.hdrs[i]) ||
		    hdr_name_is(&m2.hdrs[i], "Connection") ||
		    hdr_name_is(&m2.hdrs[i], "Transfer-Encoding"));
	conn = only(&m2, "Connection");
	if (!(r->flags & PROXY_F_KEEPALIVE))
		INV(conn != NULL && eq(conn->value, conn->value_len, "close", 5));
	else if (r->version_minor == 0)
		INV(conn != NULL && eq(conn->value, conn->value_len, "keep-alive", 10));
	else
		INV(conn == NULL);
	hb_free(&hb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tb_config cfg;
	struct tb_listener_conf lc;
	struct conn c;
	struct proxy_req r;
	char *b;
	size_t n;

	if (size < 1)
		return 0;
	memset(&lc, 0, sizeof(lc));
	memset(&c, 0, sizeof(c));
	memset(&r, 0, sizeof(r));
	lc.upstream_host = "upstream.example";
	lc.upstream_port = 8774;
	lc.x_forwarded = data[0] & 1;
	lc.keep_proxy_authorization = (data[0] >> 1) & 1;
	lc.tls_client_subject_header = (data[0] & 4) ? SUBJECT_HEADER : NULL;
	cfg.underscore_headers = (data[0] & 64) ? TB_UNDERSCORE_ALLOW :
	    TB_UNDERSCORE_DROP;
	c.cfg = &cfg;
	c.lc = &lc;
	c.peer_trusted = (data[0] >> 7) & 1;
	strcpy(c.peer, "192.0.2.1");
	r.c = &c;

	/* an exact-size copy, so ASan sees any read past the end */
	n = size - 1;
	b = malloc(n ? n : 1);
	memcpy(b, data + 1, n);
	fuzz_request(b, n, &r, &lc);

	r.flags = (data[0] & 8) ? PROXY_F_HEAD : 0;
	if (data[0] & 32)
		r.flags |= PROXY_F_KEEPALIVE;
	r.version_minor = (data[0] & 16) ? 0 : 1;
	fuzz_response(b, n, &r, (data[0] & 8) != 0);
	free(b);
	return 0;
}
