/*
 * proxy.h: one request relayed between a client connection and an upstream
 * connection, both directions streamed with backpressure, plus the seam for
 * the trace and span code: hooks that see and may rewrite the request head
 * before it is forwarded, add response headers, and learn how it ended.
 */
#ifndef TB_PROXY_H
#define TB_PROXY_H

#include <stdint.h>
#include <time.h>

#include "h1.h"

struct conn;
struct upstream_conn;
struct evbuffer;

/* How a request ended, beyond its status code (span `etype`s). */
enum proxy_err {
	PROXY_OK = 0,
	PROXY_ERR_UPSTREAM_UNAVAILABLE,	/* refused/reset/closed before a response: 502 */
	PROXY_ERR_UPSTREAM_TIMEOUT,	/* connect or response timeout: 504 */
	PROXY_ERR_UPSTREAM_BAD,		/* unparsable response: 502 */
	PROXY_ERR_UPSTREAM_ABORTED,	/* upstream failed mid-response (client cut off) */
	PROXY_ERR_CLIENT_GONE,		/* client disconnected or timed out mid-request */
	PROXY_ERR_BAD_REQUEST_BODY,	/* malformed chunked body from the client */
};

/*
 * Where a request is: one state (STYLE.md 4). The request body's own
 * progress is its framing (req_remaining, req_chunk), so an early answer
 * (RELAYING while the body still goes up) needs no second state.
 */
enum proxy_state {
	PROXY_SENDING = 0,	/* request going to the upstream, no response yet */
	PROXY_WAITING,		/* request sent; waiting for the response head */
	PROXY_RELAYING,		/* response body going to the client */
	PROXY_FLUSHING,		/* the whole response is queued for the client */
	PROXY_ENDED,		/* reported; the connection frees it */
	PROXY_NSTATES,
};

/* proxy_req.flags */
#define PROXY_F_HEAD		0x0001	/* HEAD request: no response body */
#define PROXY_F_IDEMPOTENT	0x0002	/* may be sent again on a fresh connection */
#define PROXY_F_CLIENT_CLOSE	0x0004	/* the client asked to close after this one */
#define PROXY_F_EXPECT		0x0008	/* Expect: 100-continue (we answer it) */
#define PROXY_F_RETRIED		0x0010	/* was sent again once */
#define PROXY_F_DECHUNK		0x0020	/* chunked upstream, HTTP/1.0 client: strip framing */
#define PROXY_F_KEEPALIVE	0x0040	/* the client connection stays open after this */
#define PROXY_F_UP_REUSABLE	0x0080	/* the upstream connection may be pooled after */
#define PROXY_F_UP_EOF		0x0100	/* read-until-close body: the upstream closed */

#define PROXY_MAX_FIELD 512	/* copies kept of short request fields */

struct proxy_req {
	struct conn *c;
	struct upstream_conn *uc;

	/* request */
	char method[24];
	char *target;			/* request-target as received (owned) */
	char *log_target;		/* target as logs and spans may record it:
					 * no userinfo, no secret query value
					 * (redact_target; owned) */
	char host[256];			/* Host field, for X-Forwarded-Host and logs */
	char user_agent[PROXY_MAX_FIELD];
	char referer[PROXY_MAX_FIELD];
	char request_id[128];		/* upstream's X-OpenStack-Request-ID */
	int version_minor;		/* client's HTTP/1.x */
	enum proxy_state state;
	unsigned flags;			/* PROXY_F_* */
	enum h1_body req_body;
	uint64_t req_remaining;
	struct h1_chunk req_chunk;
	char *req_conn;			/* chunked: Connection options, for the trailers (owned) */
	char *fwd_head;			/* forwarded head, kept for one retry (owned) */
	size_t fwd_head_len;

	/* response */
	int status;
	enum h1_body resp_body;
	uint64_t resp_remaining;
	struct h1_chunk resp_chunk;
	char *resp_conn;		/* as req_conn */
	size_t resp_scan_off;
	size_t resp_next_parse;

	/* accounting */
	uint64_t bytes_in;		/* from the client: head + body */
	uint64_t bytes_out;		/* to the client: head + body */
	uint64_t t_start_ns;		/* CLOCK_MONOTONIC: request head complete */
	struct timespec t_start_wall;	/* CLOCK_REALTIME of the same moment */
	int64_t connect_us;		/* upstream connect time, -1 if reused/none */
	int64_t first_byte_us;		/* head complete -> first response byte, -1 none */
	uint64_t duration_us;		/* set when done */
	struct timespec t_end_wall;
	enum proxy_err err;
	char upstream_addr[128];

	void *hook_data;		/* owned by the hooks (freed in on_free) */
	char log_extra[96];		/* appended to the access log line by hooks */
};

/* The seam for the trace/span code. Every member may be NULL. */
struct proxy_hooks {
	/*
	 * Before forwarding: m is the parsed request head (valid only during
	 * the call); set bit i of drop (one bit per index of m->hdrs) to remove
	 * a header; add headers through add.
	 */
	void (*on_request)(struct proxy_req *r, const struct h1_msg *m,
	    uint8_t *drop, struct tb_hdr_sink *add);
	/* Before the response head goes to the client: add headers. m is
	 * NULL for an error reply the proxy makes itself (502, 504). */
	void (*on_response)(struct proxy_req *r, const struct h1_msg *m,
	    struct tb_hdr_sink *add);
	/* After the last response byte was written, or the request failed. */
	void (*on_complete)(struct proxy_req *r);
	/* Free hook_data. */
	void (*on_free)(struct proxy_req *r);
};

/* Installed once at start, before workers run. */
void proxy_set_hooks(const struct proxy_hooks *h);

/*
 * Start relaying the request whose head m (head_len bytes at the front of the
 * client's input buffer) was just parsed. The head is consumed from the
 * input. Returns the request (owned by the connection), or NULL after
 * having answered with an error itself.
 */
struct proxy_req *proxy_start(struct conn *c, const struct h1_msg *m, size_t head_len);

/* Events from the client side, called by conn.c. */
void proxy_client_readable(struct proxy_req *r);
void proxy_client_drained(struct proxy_req *r);	/* client output below low mark */
/* EOF (eof = 1), error or timeout on the client. */
void proxy_client_gone(struct proxy_req *r, int eof);

/* Free; a request not ended yet (its connection closed under it) is
 * reported first. Aborts the upstream connection if still held. */
void proxy_req_free(struct proxy_req *r);

#endif
