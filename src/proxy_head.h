/*
 * proxy_head.h: the heads the relay writes: the request head forwarded to
 * the upstream, the response head for the client, and the proxy's own
 * complete replies (errors, 100 Continue). No I/O: each is built in one
 * flat buffer and handed to an output in one evbuffer_add (per-field adds
 * and printf calls were a visible share of the per-request cost).
 */
#ifndef TB_PROXY_HEAD_H
#define TB_PROXY_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "h1.h"

struct evbuffer;
struct proxy_req;

/* A growable head buffer: on the stack unless the head is large. */
struct hbuf {
	char *p;
	size_t len, cap;
	int heap;		/* p was malloc'd */
	int failed;		/* out of memory: the head is unusable */
	char stack[4096];
};

void hb_init(struct hbuf *b);
void hb_free(struct hbuf *b);
/* The tb_hdr_sink the hooks add header fields through (arg: the hbuf). */
int hb_sink_add(void *arg, const char *name, size_t name_len,
    const char *value, size_t value_len);

/*
 * The request-target to forward and record for m (malloc'd, NUL-terminated;
 * the caller frees; NULL when out of memory): as received, except that
 * an absolute-form target is forwarded in origin-form (RFC 9112 3.2.2:
 * its authority becomes Host, its userinfo is dropped and so never
 * logged): its path and query, "/" before a query or for an empty path,
 * "*" for OPTIONS with an empty path (RFC 9112 3.2.4).
 */
char *proxy_head_target(const struct h1_msg *m);

/*
 * The head to forward for r's request m: request line in HTTP/1.1 with
 * r->target (proxy_head_target), Host first when an absolute-form target
 * replaces the received one,
 * end-to-end fields in their order, hop-by-hop fields removed (RFC 9110
 * 7.6.1), framing fields recomputed, X-Forwarded-* added for OpenStack's
 * HTTPProxyToWSGI. on_request (may be NULL) sees the default drop set and
 * may drop more or add fields. 0, or -1 when out of memory.
 */
typedef void (*proxy_head_hook)(struct proxy_req *r, const struct h1_msg *m,
    uint8_t *drop, struct tb_hdr_sink *add);
int proxy_head_forward(struct hbuf *b, struct proxy_req *r, const struct h1_msg *m,
    proxy_head_hook on_request);

/*
 * The response head for the client from the upstream's m, under r's
 * framing decisions (r->resp_body, dechunking, keep-alive); add (may be
 * NULL) appends the hooks' fields. 0, or -1 when out of memory.
 */
int proxy_head_response(struct hbuf *b, struct proxy_req *r, const struct h1_msg *m,
    void (*add)(struct proxy_req *r, const struct h1_msg *m, struct tb_hdr_sink *sink));

/*
 * A complete text/plain reply of the proxy's own ("502 Bad Gateway\n"),
 * with "Connection: close" when close_after and the header lines of extra
 * ("Name: value\r\n" each; may be NULL, drained) appended to out. Returns
 * the bytes added.
 */
size_t proxy_head_error(struct evbuffer *out, int status, int close_after,
    struct evbuffer *extra);

#endif
