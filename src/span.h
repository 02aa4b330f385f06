/*
 * span.h: tracebridge's own edge span, written as the two osprofiler
 * notifications ("<name>-start", "<name>-stop") that osprofiler's Redis
 * driver stores and its report code reads back.
 *
 * The bytes follow what osprofiler 3.4 produces (profiler._Profiler._notify,
 * drivers/redis_driver.Redis.notify, oslo jsonutils.dumps = json.dumps with
 * its defaults): key order name, base_id, trace_id, parent_id, timestamp,
 * info, project, service; separators ", " and ": "; ensure_ascii escaping
 * (every non-ASCII character as \uXXXX, lowercase hex, surrogate pairs above
 * U+FFFF). See /work/shared/reference/osprofiler.md.
 *
 * struct span_rec is plain data the proxy fills and keeps alive only for the
 * duration of a span_format_*() or sink_redis_record() call: nothing here
 * keeps a pointer into it.
 */
#ifndef TB_SPAN_H
#define TB_SPAN_H

#include <stddef.h>
#include <stdint.h>

/* etype values of the proxy's own failures (osprofiler convention: the
 * exception class name in info.etype, the text in info.message). */
#define SPAN_ETYPE_UPSTREAM_UNAVAILABLE	"UpstreamUnavailable"	/* our 502 */
#define SPAN_ETYPE_UPSTREAM_TIMEOUT	"UpstreamTimeout"	/* our 504 */
#define SPAN_ETYPE_CLIENT_DISCONNECTED	"ClientDisconnected"
#define SPAN_ETYPE_HTTP_SERVER_ERROR	"HTTPServerError"	/* upstream 5xx */

/*
 * Every const char * below is NUL-terminated unless a *_len field follows it,
 * in which case it is pointer + length (it may point straight into the parsed
 * request head). NULL means "absent": the key is left out of the JSON.
 * Required: base_id, trace_id, parent_id, name, project, host, method,
 * target, scheme; service may be NULL (written as null, like osprofiler with
 * no service configured).
 */
struct span_rec {
	/* ids: uuid strings, 8-4-4-4-12 lowercase */
	const char *base_id;	/* the trace */
	const char *trace_id;	/* this edge span (= parent_id sent downstream) */
	const char *parent_id;	/* the caller's span as a uuid, or base_id */
	int has_parent;		/* 1: parent_id is a caller's span (OTLP
				 * parent_span_id); 0: the trace starts here */
	const char *tracestate;	/* W3C tracestate received, or NULL */
	size_t tracestate_len;

	const char *name;	/* [tracing] span_name, must not contain '-' */
	const char *project;	/* [tracing] project */
	const char *service;	/* the listener's service */
	const char *host;	/* [tracing] host, info.host of both notifications */

	int64_t start_us;	/* CLOCK_REALTIME µs: request head complete */
	int64_t stop_us;	/* CLOCK_REALTIME µs: last response byte written */

	/* request: target is the raw request-target as received (origin or
	 * absolute form); span splits it into webob's request.path (percent-
	 * decoded, then re-quoted with webob's PATH_SAFE) and query_string
	 * (raw, bytes read as latin-1 as PEP 3333 prescribes). */
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	const char *scheme;		/* "http" | "https" */

	const char *client_addr;	/* "ip:port" */
	const char *host_header;	/* the request's Host, or NULL */
	int server_port;		/* the listener's port, 0 = unknown */
	const char *listener;		/* listener name */
	const char *http_version;	/* "HTTP/1.1" */
	const char *user_agent;		/* header value, may be NULL */
	size_t user_agent_len;
	const char *trace_format;	/* incoming format ("w3c", "b3", ...) */
	const char *caller_span_id;	/* caller's span id, native form */
	const char *upstream_addr;	/* "host:port" */
	const char *tls_protocol;	/* all NULL without TLS */
	const char *tls_cipher;
	const char *tls_sni;		/* NULL when the client sent none */
	const char *tls_client_subject;	/* verified client certificate, RFC 2253 */
	const char *operation;		/* operation name, may be NULL */
	const char *sampling_reason;	/* may be NULL */
	/* Jaeger's root span tags, written as "sampler.type" and
	 * "sampler.param" when the type is not NULL: "probabilistic",
	 * "ratelimiting" or "lowerbound" (sampling_sampler_type) */
	const char *sampler_type;
	double sampler_param;

	/* response */
	int status_code;		/* status sent to the client; 0 = none */
	uint64_t bytes_to_client;
	uint64_t bytes_from_client;
	double upstream_connect_ms;	/* -1 = n/a */
	double upstream_first_byte_ms;	/* -1 = n/a */
	const char *upstream_request_id;	/* X-OpenStack-Request-ID value */
	size_t upstream_request_id_len;
	const char *etype;	/* SPAN_ETYPE_* or NULL; see span_is_error() */
	const char *message;	/* NULL is written as null */
};

/* A growable byte buffer the formatters append to. Zero-initialise it;
 * span_buf_free() releases it. */
struct span_buf {
	char *p;
	size_t len;
	size_t cap;
};

void span_buf_free(struct span_buf *b);
/* Append n bytes; 0, or -1 on ENOMEM (the buffer is unchanged then). */
int span_buf_add(struct span_buf *b, const void *data, size_t n);

/* Current CLOCK_REALTIME in microseconds since the epoch. */
int64_t span_now_us(void);

/*
 * Write us (µs since the epoch) as osprofiler's timestamp,
 * "%Y-%m-%dT%H:%M:%S.%f" in UTC (26 bytes) plus NUL into out[27].
 * Returns 0, or -1 when the time cannot be represented.
 */
int span_timestamp(int64_t us, char out[27]);

/*
 * 1 when the stop notification carries info.etype: r->etype set, or an
 * upstream 5xx (status_code >= 500) which is written as HTTPServerError
 * with message "HTTP <status>".
 */
int span_is_error(const struct span_rec *r);

/*
 * Append the start / stop notification JSON (no trailing newline) to out.
 * Returns 0, or -1 when a required field is missing, a timestamp is out of
 * range or memory ran out; out may then hold a partial object, so the
 * caller truncates back to the length it had before.
 */
int span_format_start(const struct span_rec *r, struct span_buf *out);
int span_format_stop(const struct span_rec *r, struct span_buf *out);

/*
 * Append the value osprofiler stores under osprofiler_error:<base_id> when
 * filter_error_trace is on: {"base_id": ..., "timestamp": <stop timestamp>}.
 */
int span_format_error_marker(const struct span_rec *r, struct span_buf *out);

/*
 * Append s as a JSON string literal (quotes included) the way Python's
 * json.dumps(ensure_ascii=True) writes it. latin1 = 0: s is UTF-8 and each
 * byte of an invalid sequence becomes U+FFFD; latin1 = 1: each byte is one
 * code point (how WSGI hands over QUERY_STRING). Exported for the tests.
 */
int span_json_str(struct span_buf *out, const char *s, size_t n, int latin1);

#endif
