/*
 * sink_redis.c: the bounded, pipelined span writer behind span recording
 * (contract in sink_redis.h), over the one Redis client (redis.h), which
 * owns the connection: parsing, evdns, AUTH/SELECT, timeouts, backoff,
 * Sentinel. What is left here is the queue, its batching, the RESP of a
 * span and the metrics.
 *
 * Queue. Every span is one struct sink_entry holding its ready-made RESP
 * commands. Entries form one FIFO: [head .. unsent) are written on the
 * current connection and wait for replies, [unsent .. tail] wait to be
 * written. Redis answers in order, so each reply belongs to the head entry;
 * when the head has all its replies it is counted and freed. When the
 * client says the connection is down, unsent moves back to head: exactly
 * the unacknowledged spans are written again on the next one.
 */
#include <assert.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "fmt.h"
#include "redis.h"
#include "sink_redis.h"
#include "span.h"
#include "util.h"

#define SINK_MAX_CMDS	4	/* LPUSH, SET error, EXPIRE list, EXPIRE error */

/* The largest reply the sink expects: the answers to LPUSH, SET, EXPIRE
 * (and AUTH, SELECT, ROLE) are a few bytes, an error a line. A server that
 * sends more is cut off by the client rather than buffered (issue 13). */
#define SINK_MAX_REPLY	((size_t)64 << 10)

/* ---- process-wide counters (all workers) ---- */

static atomic_uint_fast64_t g_recorded, g_drop_full, g_drop_format,
    g_drop_redis, g_drop_shutdown, g_reconnects;
static atomic_llong g_buffer_bytes;
static atomic_int g_sinks, g_connected;
static pthread_mutex_t g_master_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_master[280];	/* sentinel mode: last master in use */

struct sink_entry {
	struct sink_entry *next;
	size_t size;			/* bytes allocated = charged to the buffer */
	unsigned ncmds;			/* commands = replies expected */
	unsigned replies;		/* received on the current connection */
	int error;			/* Redis answered one with an error */
	size_t off[SINK_MAX_CMDS], len[SINK_MAX_CMDS];
	char data[];			/* the RESP commands back to back */
};

struct sink_redis {
	struct sink_conf conf;		/* conf.redis.url: not kept */
	int sentinel;			/* the URL is redissentinel:// */
	struct tb_redis *rc;		/* the connection */
	int ready;			/* rc said ready, not down since */
	struct event *batch;		/* SINK_BATCH_DELAY: write what waits */

	/* the FIFO */
	struct sink_entry *head, *tail, *unsent;
	size_t bytes, nspans, inflight_bytes, inflight_spans;
	struct sink_entry *free_entries;	/* see SINK_FREE_MAX */
	unsigned n_free;

	struct span_buf js, jt, jm;	/* scratch: start, stop, error marker */
	char ttl[24];			/* span_ttl in decimal, "" for none */
	size_t ttl_len;
	struct sink_stats st;
};

/*
 * Batching: unsent spans are written once SINK_BATCH_BYTES of them have
 * gathered, or SINK_BATCH_DELAY after the first, whichever comes first.
 * One write (and about one read of the replies) per batch instead of per
 * span keeps the syscalls a traced request costs low on a busy edge; a
 * span reaches Redis at most a few milliseconds later.
 */
#define SINK_BATCH_BYTES	((size_t)64 << 10)
#define SINK_BATCH_DELAY	0.010	/* seconds */

/*
 * Acknowledged entries are kept for the next spans, at most SINK_FREE_MAX
 * of them: a span's entry (~1.3 KB) is past glibc's per-thread cache
 * (chunks up to 1 KiB), so its malloc + free went through the arena's bins
 * for every span. Sizes are rounded up to SINK_ENTRY_ALIGN so that spans
 * of nearly the same size share entries; an entry is reused for a span that
 * needs up to SINK_ENTRY_SLACK fewer bytes, and the buffer is charged what
 * was allocated.
 */
#define SINK_FREE_MAX		64
#define SINK_ENTRY_ALIGN	64
#define SINK_ENTRY_SLACK	256

static void sink_flush(struct sink_redis *s);
static void sink_kick(struct sink_redis *s);
static void sink_entry_put(struct sink_redis *s, struct sink_entry *e);

/* ---- metrics ---- */

void
sink_metrics_write(struct evbuffer *out)
{
	char master[sizeof(g_master)];
	int n = atomic_load(&g_sinks), c = atomic_load(&g_connected);
	long long bytes = atomic_load(&g_buffer_bytes);

	pthread_mutex_lock(&g_master_lock);
	memcpy(master, g_master, sizeof(master));
	pthread_mutex_unlock(&g_master_lock);

	evbuffer_add_printf(out,
	    "# HELP tracebridge_spans_recorded_total Spans Redis acknowledged.\n"
	    "# TYPE tracebridge_spans_recorded_total counter\n"
	    "tracebridge_spans_recorded_total %llu\n"
	    "# HELP tracebridge_spans_dropped_total Spans not recorded.\n"
	    "# TYPE tracebridge_spans_dropped_total counter\n"
	    "tracebridge_spans_dropped_total{reason=\"buffer_full\"} %llu\n"
	    "tracebridge_spans_dropped_total{reason=\"format\"} %llu\n"
	    "tracebridge_spans_dropped_total{reason=\"redis_error\"} %llu\n"
	    "tracebridge_spans_dropped_total{reason=\"shutdown\"} %llu\n"
	    "# HELP tracebridge_span_buffer_bytes Bytes of spans waiting for Redis.\n"
	    "# TYPE tracebridge_span_buffer_bytes gauge\n"
	    "tracebridge_span_buffer_bytes %lld\n"
	    "# HELP tracebridge_redis_connected 1 when every worker's Redis "
	    "connection is up.\n"
	    "# TYPE tracebridge_redis_connected gauge\n"
	    "tracebridge_redis_connected %d\n"
	    "# HELP tracebridge_redis_reconnects_total Redis connection "
	    "attempts after the first.\n"
	    "# TYPE tracebridge_redis_reconnects_total counter\n"
	    "tracebridge_redis_reconnects_total %llu\n",
	    (unsigned long long)atomic_load(&g_recorded),
	    (unsigned long long)atomic_load(&g_drop_full),
	    (unsigned long long)atomic_load(&g_drop_format),
	    (unsigned long long)atomic_load(&g_drop_redis),
	    (unsigned long long)atomic_load(&g_drop_shutdown),
	    bytes < 0 ? 0 : bytes, n > 0 && c == n ? 1 : 0,
	    (unsigned long long)atomic_load(&g_reconnects));
	if (master[0] != '\0')
		evbuffer_add_printf(out,
		    "# HELP tracebridge_redis_master Master the sentinels named.\n"
		    "# TYPE tracebridge_redis_master gauge\n"
		    "tracebridge_redis_master{addr=\"%s\"} 1\n", master);
}

void
sink_redis_stats(const struct sink_redis *s, struct sink_stats *out)
{
	*out = s->st;
	out->buffered_spans = s->nspans;
	out->buffer_bytes = s->bytes;
	out->inflight_spans = s->inflight_spans;
	out->connected = s->ready;
	snprintf(out->master, sizeof(out->master), "%s",
	    s->ready ? tb_redis_server(s->rc) : "");
}

static void
sink_arm(struct event *ev, double sec)
{
	struct timeval tv = tb_timeval(sec);

	event_add(ev, &tv);
}

/* ---- the FIFO ---- */

/* Remove the head entry and count it. */
static void
sink_pop(struct sink_redis *s, int recorded)
{
	struct sink_entry *e = s->head;

	s->head = e->next;
	if (s->head == NULL)
		s->tail = NULL;
	if (s->unsent == e)
		s->unsent = e->next;
	s->bytes -= e->size;
	s->nspans--;
	atomic_fetch_sub(&g_buffer_bytes, (long long)e->size);
	if (recorded) {
		s->st.recorded++;
		atomic_fetch_add(&g_recorded, 1);
	} else {
		s->st.dropped_redis_error++;
		atomic_fetch_add(&g_drop_redis, 1);
	}
	sink_entry_put(s, e);
}

/* The connection is gone: everything written but unacknowledged will be
 * written again on the next one, from the head. */
static void
sink_requeue(struct sink_redis *s)
{
	struct sink_entry *e;

	for (e = s->head; e != NULL && e != s->unsent; e = e->next) {
		e->replies = 0;
		e->error = 0;
	}
	s->unsent = s->head;
	s->inflight_bytes = 0;
	s->inflight_spans = 0;
}

/* ---- what the client tells the sink ---- */

static void
sink_ready_cb(void *arg)
{
	struct sink_redis *s = arg;

	s->ready = 1;
	atomic_fetch_add(&g_connected, 1);
	if (s->sentinel) {
		pthread_mutex_lock(&g_master_lock);
		snprintf(g_master, sizeof(g_master), "%s",
		    tb_redis_server(s->rc));
		pthread_mutex_unlock(&g_master_lock);
	}
	if (s->nspans > 0)
		log_info("redis: draining %zu buffered spans", s->nspans);
	sink_flush(s);
}

static void
sink_down_cb(void *arg, const char *why)
{
	struct sink_redis *s = arg;

	s->ready = 0;
	atomic_fetch_sub(&g_connected, 1);
	sink_requeue(s);
}

static void
sink_reconnecting_cb(void *arg)
{
	struct sink_redis *s = arg;

	s->st.reconnects++;
	atomic_fetch_add(&g_reconnects, 1);
}

/* One reply for the head entry (the client keeps them in order and
 * handles the transient errors itself). */
static void
sink_reply_cb(void *arg, void *cmd_arg, const redisReply *r)
{
	struct sink_redis *s = arg;
	struct sink_entry *e = s->head;

	if (e == NULL || e == s->unsent)
		return;	/* cannot happen: replies match writes */
	if (r->type == REDIS_REPLY_ERROR) {
		/* Only a failed LPUSH (the first command) loses the span; a
		 * failed SET marker or EXPIRE is logged, the span is stored. */
		log_warnx("redis: %s failed: %.*s", e->replies == 0 ? "LPUSH" :
		    "SET/EXPIRE", (int)(r->len > 120 ? 120 : r->len), r->str);
		if (e->replies == 0)
			e->error = 1;
	}
	if (++e->replies < e->ncmds)
		return;
	s->inflight_bytes -= e->size;
	s->inflight_spans--;
	sink_pop(s, !e->error);
	sink_kick(s);
}

/* Write now if a batch is full, else make sure the batch timer runs. */
static void
sink_kick(struct sink_redis *s)
{
	if (s->unsent == NULL)
		return;
	if (s->bytes - s->inflight_bytes >= SINK_BATCH_BYTES)
		sink_flush(s);
	else if (!evtimer_pending(s->batch, NULL))
		sink_arm(s->batch, SINK_BATCH_DELAY);
}

static void
sink_batch_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sink_flush(arg);
}

/* Write queued entries while the in-flight window has room. */
static void
sink_flush(struct sink_redis *s)
{
	struct sink_entry *e, *first = s->unsent;
	unsigned i;

	if (!s->ready)
		return;
	while ((e = s->unsent) != NULL &&
	    s->inflight_bytes < s->conf.max_inflight_bytes) {
		for (i = 0; i < e->ncmds; i++)
			if (tb_redis_formatted(s->rc, NULL, e->data +
			    e->off[i], e->len[i]) == -1)
				return;	/* disconnecting; "down" requeues */
		e->replies = 0;
		e->error = 0;
		s->unsent = e->next;
		s->inflight_bytes += e->size;
		s->inflight_spans++;
	}
	/* a failed write ends in sink_down_cb: nothing of s->rc's state is
	 * to be relied on after this */
	if (s->unsent != first)
		tb_redis_flush(s->rc);
}

/* ---- public API ---- */

struct sink_redis *
sink_redis_new(struct event_base *base, const struct sink_conf *conf,
    char *err, size_t errlen)
{
	static const struct tb_redis_handlers handlers = {
		.ready = sink_ready_cb, .reply = sink_reply_cb,
		.down = sink_down_cb, .reconnecting = sink_reconnecting_cb,
	};
	struct tb_redis_handlers h = handlers;
	struct tb_redis_conf rconf = conf->redis;
	struct sink_redis *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->conf = *conf;
	s->conf.redis.url = NULL;	/* the client keeps its copy */
	s->sentinel = conf->redis.url->kind == TB_REDIS_SENTINEL;
	if (s->conf.span_buffer_bytes == 0)
		s->conf.span_buffer_bytes = 16u << 20;
	if (s->conf.max_inflight_bytes == 0)
		s->conf.max_inflight_bytes = 1u << 20;
	if (s->conf.span_ttl > 0)
		s->ttl_len = fmt_u64(s->ttl, (uint64_t)s->conf.span_ttl);
	if ((s->batch = evtimer_new(base, sink_batch_cb, s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	h.arg = s;
	if (rconf.name == NULL)
		rconf.name = "redis";
	rconf.flags |= TB_REDIS_F_LEAN_REPLIES;	/* only types are looked at */
	if (rconf.max_reply_bytes == 0)
		rconf.max_reply_bytes = SINK_MAX_REPLY;
	if ((s->rc = tb_redis_new(base, &rconf, &h, err, errlen)) == NULL) {
		event_free(s->batch);
		free(s);
		return NULL;
	}
	s->conf.redis.name = NULL;		/* copied by the client */
	s->conf.redis.sentinel_service_name = NULL;
	atomic_fetch_add(&g_sinks, 1);
	return s;
}



/* "<c><n>\r\n" (a RESP length line) into out; returns its length. By hand:
 * snprintf here was a visible share of the per-span cost. */
static size_t
sink_resp_len(char *out, char c, size_t n)
{
	size_t len;

	out[0] = c;
	len = fmt_u64(out + 1, n);
	out[len + 1] = '\r';
	out[len + 2] = '\n';
	return len + 3;
}

/*
 * One command of a span: VERB <pfx><base_id> VALUE [VALUE], every one of
 * LPUSH, SET and EXPIRE has that shape. The key is written from its two
 * pieces, so it needs no joining copy first.
 */
struct sink_cmd {
	const char *verb, *pfx, *v[2];
	size_t verb_len, pfx_len, vlen[2];
	int nv;			/* values: 1 or 2 */
};

/* "$<n>\r\n<n bytes>\r\n" takes this many bytes. */
static size_t
sink_bulk_size(size_t n)
{
	return 1 + fmt_u64_digits(n) + 2 + n + 2;
}

/* Bytes of c as RESP, with base_id[0..idlen) in the key. */
static size_t
sink_cmd_size(const struct sink_cmd *c, size_t idlen)
{
	size_t size = 4 + sink_bulk_size(c->verb_len) +	/* "*<3 or 4>\r\n" */
	    sink_bulk_size(c->pfx_len + idlen);
	int i;

	for (i = 0; i < c->nv; i++)
		size += sink_bulk_size(c->vlen[i]);
	return size;
}

/* Copy n bytes and the CRLF after a bulk string; returns the end. */
static char *
sink_put_crlf(char *w, const char *p, size_t n)
{
	memcpy(w, p, n);
	w[n] = '\r';
	w[n + 1] = '\n';
	return w + n + 2;
}

/* Write c as RESP at w (sink_cmd_size bytes); returns the end. */
static char *
sink_cmd_w(char *w, const struct sink_cmd *c, const char *id, size_t idlen)
{
	int i;

	w += sink_resp_len(w, '*', (size_t)(2 + c->nv));
	w += sink_resp_len(w, '$', c->verb_len);
	w = sink_put_crlf(w, c->verb, c->verb_len);
	w += sink_resp_len(w, '$', c->pfx_len + idlen);
	memcpy(w, c->pfx, c->pfx_len);
	w = sink_put_crlf(w + c->pfx_len, id, idlen);
	for (i = 0; i < c->nv; i++) {
		w += sink_resp_len(w, '$', c->vlen[i]);
		w = sink_put_crlf(w, c->v[i], c->vlen[i]);
	}
	return w;
}

/* Fill c; v2 may be NULL. verb and pfx are literals: inlined, their
 * strlen is folded at compile time. */
static inline void
sink_cmd_set(struct sink_cmd *c, const char *verb, const char *pfx,
    const char *v1, size_t n1, const char *v2, size_t n2)
{
	c->verb = verb;
	c->verb_len = strlen(verb);
	c->pfx = pfx;
	c->pfx_len = strlen(pfx);
	c->v[0] = v1;
	c->vlen[0] = n1;
	c->v[1] = v2;
	c->vlen[1] = n2;
	c->nv = v2 != NULL ? 2 : 1;
}

static void
sink_drop_now(struct sink_redis *s, int full)
{
	if (full) {
		s->st.dropped_buffer_full++;
		atomic_fetch_add(&g_drop_full, 1);
	} else {
		s->st.dropped_format++;
		atomic_fetch_add(&g_drop_format, 1);
	}
}

/*
 * An entry of at least size bytes for a new span: a kept one when the
 * first kept one fits, else a new allocation (a kept one that does not fit
 * is freed, so the list follows the sizes spans have now). NULL, counted
 * as dropped, when the buffer limit or memory says no.
 */
static struct sink_entry *
sink_entry_get(struct sink_redis *s, size_t size)
{
	struct sink_entry *e = s->free_entries;
	size_t cap = (size + SINK_ENTRY_ALIGN - 1) / SINK_ENTRY_ALIGN *
	    SINK_ENTRY_ALIGN;

	if (e != NULL) {
		s->free_entries = e->next;
		s->n_free--;
		if (e->size >= cap && e->size - cap <= SINK_ENTRY_SLACK)
			cap = e->size;
		else {
			free(e);
			e = NULL;
		}
	}
	if (s->bytes + cap > s->conf.span_buffer_bytes) {
		sink_entry_put(s, e);
		sink_drop_now(s, 1);
		return NULL;
	}
	if (e == NULL && (e = malloc(cap)) == NULL) {
		sink_drop_now(s, 0);
		return NULL;
	}
	e->size = cap;
	return e;
}

/* Keep e (NULL is fine) for a later span, or free it when enough are kept. */
static void
sink_entry_put(struct sink_redis *s, struct sink_entry *e)
{
	if (e == NULL)
		return;
	if (s->n_free >= SINK_FREE_MAX) {
		free(e);
		return;
	}
	e->next = s->free_entries;
	s->free_entries = e;
	s->n_free++;
}

/*
 * The JSON is formatted into the sink's scratch buffers (its length is only
 * known afterwards); the RESP commands around it are then written straight
 * into one exact-size entry (the buffer limit counts real memory), so each
 * notification is copied once.
 */
int
sink_redis_record(struct sink_redis *s, const struct span_rec *r)
{
	struct sink_entry *e;
	struct sink_cmd cmd[SINK_MAX_CMDS];
	size_t idlen, n = 0, i, size, len[SINK_MAX_CMDS];
	char *w;

	s->st.submitted++;
	s->js.len = 0;
	s->jt.len = 0;
	s->jm.len = 0;
	if (r->base_id == NULL || (idlen = strlen(r->base_id)) > 64 ||
	    span_format_start(r, &s->js) == -1 ||
	    span_format_stop(r, &s->jt) == -1) {
		sink_drop_now(s, 0);
		return -1;
	}
	/* Check the limit before building the commands: the JSON is nearly
	 * all of it, and a full buffer should cost as little as possible. */
	if (s->bytes + s->js.len + s->jt.len >
	    s->conf.span_buffer_bytes) {
		sink_drop_now(s, 1);
		return -1;
	}
	sink_cmd_set(&cmd[n++], "LPUSH", "osprofiler_opt:", s->js.p, s->js.len,
	    s->jt.p, s->jt.len);
	if (s->conf.filter_error_trace && span_is_error(r)) {
		if (span_format_error_marker(r, &s->jm) == -1) {
			sink_drop_now(s, 0);
			return -1;
		}
		sink_cmd_set(&cmd[n++], "SET", "osprofiler_error:", s->jm.p,
		    s->jm.len, NULL, 0);
		if (s->ttl_len > 0)
			sink_cmd_set(&cmd[n++], "EXPIRE", "osprofiler_error:",
			    s->ttl, s->ttl_len, NULL, 0);
	}
	if (s->ttl_len > 0)
		sink_cmd_set(&cmd[n++], "EXPIRE", "osprofiler_opt:", s->ttl,
		    s->ttl_len, NULL, 0);
	size = offsetof(struct sink_entry, data);
	for (i = 0; i < n; i++)
		size += (len[i] = sink_cmd_size(&cmd[i], idlen));
	if ((e = sink_entry_get(s, size)) == NULL)
		return -1;	/* counted */
	e->next = NULL;
	e->ncmds = (unsigned)n;
	e->replies = 0;
	e->error = 0;
	for (i = 0, w = e->data; i < n; i++) {
		e->off[i] = (size_t)(w - e->data);
		e->len[i] = len[i];
		w = sink_cmd_w(w, &cmd[i], r->base_id, idlen);
	}
	assert((size_t)(w - e->data) + offsetof(struct sink_entry, data) ==
	    size && size <= e->size);
	if (s->tail != NULL)
		s->tail->next = e;
	else
		s->head = e;
	s->tail = e;
	if (s->unsent == NULL)
		s->unsent = e;
	s->bytes += e->size;
	s->nspans++;
	atomic_fetch_add(&g_buffer_bytes, (long long)e->size);
	sink_kick(s);
	return 0;
}


void
sink_redis_free(struct sink_redis *s)
{
	struct sink_entry *e;

	if (s == NULL)
		return;
	tb_redis_free(s->rc);	/* no handler runs */
	if (s->ready)
		atomic_fetch_sub(&g_connected, 1);
	while ((e = s->head) != NULL) {
		s->head = e->next;
		atomic_fetch_sub(&g_buffer_bytes, (long long)e->size);
		s->st.dropped_shutdown++;
		atomic_fetch_add(&g_drop_shutdown, 1);
		free(e);
	}
	while ((e = s->free_entries) != NULL) {
		s->free_entries = e->next;
		free(e);
	}
	atomic_fetch_sub(&g_sinks, 1);
	event_free(s->batch);
	span_buf_free(&s->js);
	span_buf_free(&s->jt);
	span_buf_free(&s->jm);
	free(s);
}
