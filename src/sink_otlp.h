/*
 * sink_otlp.h: edge spans to an OpenTelemetry collector over OTLP/HTTP
 * (protobuf or JSON, gzip or not), never making a request wait.
 *
 * One struct sink_otlp per worker event_base, used only from that loop's
 * thread (like sink_redis). sink_otlp_record() encodes the span (otlp.h)
 * into a bounded FIFO and returns. Batches of up to batch_size spans go out
 * as one POST on one HTTP/1.1 keep-alive connection (sock.c, responses read
 * by h1.c), when a batch is full or flush_interval after its first span.
 * One request is in flight at a time: spans wait in the FIFO meanwhile.
 *
 * Outcomes of an export (OTLP/HTTP spec, "Failures"): 2xx = exported (a
 * partial success is logged, its rejected spans counted dropped
 * {reason="rejected"}); 429, 502, 503, 504, a connection error or the
 * timeout = retried with capped exponential backoff and jitter, or after
 * the collector's Retry-After seconds, up to SINK_OTLP_MAX_ATTEMPTS
 * attempts, then dropped {reason="retries_exhausted"}; any other status
 * (400 included) = dropped {reason="rejected"}, never retried. Every
 * submitted span is counted once: exported, dropped (by reason), or still
 * queued.
 *
 * Duplicates: a batch whose answer did not come in time (timeout, a
 * connection lost after the request was written) is sent again, so a
 * collector that did take it the first time holds its spans twice (OTLP is
 * at-least-once; backends key spans by trace and span id).
 */
#ifndef TB_SINK_OTLP_H
#define TB_SINK_OTLP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "otlp.h"

struct event_base;
struct evbuffer;
struct span_rec;
struct tls_client;

#define SINK_OTLP_MAX_ATTEMPTS	6
#define SINK_OTLP_MAX_RESOURCE	24	/* resource attributes */

enum sink_otlp_protocol {
	SINK_OTLP_PROTOBUF = 0,		/* http/protobuf */
	SINK_OTLP_JSON,			/* http/json */
};

/* Constructor input; everything is copied by sink_otlp_new() except tls,
 * which must outlive the sink (it belongs to the configuration). */
struct sink_otlp_conf {
	struct sockaddr_storage addr;	/* the collector, resolved */
	socklen_t addrlen;
	const char *host_header;	/* "host:port" for Host */
	const char *path;		/* "/v1/traces" */
	const struct tls_client *tls;	/* NULL: plain http */
	enum sink_otlp_protocol protocol;
	int gzip;
	const char *headers;		/* extra header lines "K: v\r\n"..., or "" */
	double timeout;			/* s, one attempt: connect to response */
	unsigned batch_size;		/* spans per request, >= 1 */
	double flush_interval;		/* s */
	size_t queue_bytes;		/* encoded spans waiting, at most */
	/* resource: service.name is [prefix-]project-<span's service> */
	const char *service_prefix;	/* "" for none */
	const char *project;
	const struct otlp_kv *resource;	/* the other attributes */
	size_t n_resource;
};

struct sink_otlp;

/* A sink on base (which must outlive it); it connects on the first batch.
 * NULL with a reason in err (out of memory). */
struct sink_otlp *sink_otlp_new(struct event_base *base,
    const struct sink_otlp_conf *conf, char *err, size_t errlen);

/* Queue one span; never blocks. 0 when queued, -1 when dropped now
 * (counted: queue_full, format). r is not referenced after the call. */
int sink_otlp_record(struct sink_otlp *s, const struct span_rec *r);

/* 1 when nothing is queued or in flight, or the collector is
 * unreachable (a worker that drains does not wait for it then); else 0,
 * and what waits is sent now rather than after flush_interval. */
int sink_otlp_flushed(struct sink_otlp *s);

/* A reload with unchanged settings: the same sink (and its queue) goes on
 * with the new configuration's TLS context, which must outlive it (the
 * connection open now keeps the old context through its own reference). */
void sink_otlp_set_tls(struct sink_otlp *s, const struct tls_client *tls);

/* Spans queued or in flight (for the benchmark and tests). */
size_t sink_otlp_queued(const struct sink_otlp *s);

/* Close and free; queued spans are counted dropped{reason="shutdown"}.
 * NULL is fine. On the loop's thread. */
void sink_otlp_free(struct sink_otlp *s);

/* Process-wide counters of every worker's sink, Prometheus text. */
void sink_otlp_metrics_write(struct evbuffer *out);

/*
 * Pure helpers over the collector's answer (untrusted input; fuzzed):
 * the delta-seconds of a Retry-After value (RFC 9110 10.2.3), or -1 when
 * it is absent, an HTTP-date or out of range; and the rejected span count
 * and error message of an ExportTraceServiceResponse's partial_success
 * (protobuf, or the JSON mapping when json): 0 with *rejected (0 when
 * there is none), or -1 when the body is malformed.
 */
long sink_otlp_retry_after(const char *v, size_t n);
int sink_otlp_partial_success(const char *body, size_t n, int json,
    int64_t *rejected, char *msg, size_t msglen);

#endif
