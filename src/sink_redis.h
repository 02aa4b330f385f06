/*
 * sink_redis.h: edge spans into Redis in osprofiler's storage format,
 * without ever making a request wait (STYLE.md habit 11).
 *
 * One struct sink_redis per worker event_base, used only from that loop's
 * thread. sink_redis_record() formats the span into the RESP commands
 * (LPUSH osprofiler_opt:<base_id> <start> <stop>, optionally
 * SET osprofiler_error:<base_id> and EXPIRE), appends them to a bounded
 * FIFO and returns. The FIFO is written to Redis pipelined through the one
 * Redis client (redis.h: connection, reconnects, Sentinel, timeouts) on the
 * same loop; a span leaves the FIFO only when Redis has
 * answered every one of its commands, so after a connection loss exactly
 * the unacknowledged spans are sent again, in order. Spans are written in
 * batches (64 KiB gathered, or 10 ms after the first), so a busy worker
 * pays one write per batch, not one per span. Accounting is exact:
 * every submitted span ends up counted once, as recorded or as dropped
 * (by reason), or is still buffered.
 *
 * Duplicates: a span whose commands Redis executed but whose replies were
 * lost with the connection is sent again after the reconnect, so the list
 * may then hold its two notifications twice (osprofiler's report keys spans
 * by trace_id, so the tree is unchanged; the notification count is not).
 *
 * Retention: osprofiler never expires its keys. span_ttl > 0 adds
 * EXPIRE osprofiler_opt:<base_id> <ttl> (and on the error marker) after each
 * push: memory stays bounded on a busy edge, but a trace older than the ttl
 * is gone, including the spans OpenStack services pushed to the same list.
 */
#ifndef TB_SINK_REDIS_H
#define TB_SINK_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "redis.h"

struct event_base;
struct evbuffer;
struct span_rec;

/* Constructor input; zero / NULL fields take the default shown. */
struct sink_conf {
	/* The connection (url required; copied): tb_redis' defaults apply,
	 * 2 s connect timeout (AUTH/SELECT/ROLE included), 5 s command
	 * timeout, backoff 0.1 s doubling to 5 s; name "redis". */
	struct tb_redis_conf redis;
	int filter_error_trace;		/* 0 */
	long span_ttl;			/* s, 0 = never expire */
	size_t span_buffer_bytes;	/* 16 MiB */
	size_t max_inflight_bytes;	/* 1 MiB written but unacknowledged */
};

struct sink_redis;

/*
 * Create a sink on base (which must outlive it) and start connecting.
 * conf (and its url) is copied. Returns NULL with a reason in err only for
 * ENOMEM; a Redis that is down is not an error (spans wait).
 */
struct sink_redis *sink_redis_new(struct event_base *base,
    const struct sink_conf *conf, char *err, size_t errlen);

/*
 * Queue one span; never blocks, never waits for Redis. Returns 0 when the
 * span is buffered (it is then eventually counted recorded or dropped),
 * -1 when it was dropped now (counted: buffer_full, format).
 * r is not referenced after the call.
 */
int sink_redis_record(struct sink_redis *s, const struct span_rec *r);

/*
 * Disconnect and free; buffered spans are counted dropped{reason="shutdown"}.
 * NULL is fine. Must run on the loop's thread.
 */
void sink_redis_free(struct sink_redis *s);

/* Per-sink state for tests and the driver. */
struct sink_stats {
	uint64_t submitted, recorded, dropped_buffer_full, dropped_format,
	    dropped_redis_error, dropped_shutdown, reconnects;
	size_t buffered_spans, buffer_bytes, inflight_spans;
	int connected;
	char master[280];	/* "host:port" of the server in use, or "" */
};
void sink_redis_stats(const struct sink_redis *s, struct sink_stats *out);

/*
 * Append the process-wide counters (all sinks of all workers) in
 * Prometheus text format to out. Thread-safe.
 */
void sink_metrics_write(struct evbuffer *out);

#endif
