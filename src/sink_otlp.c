/*
 * sink_otlp.c: the per-worker OTLP/HTTP exporter (contract in sink_otlp.h).
 *
 * Queue. Each span is one struct otlp_entry holding its encoded Span
 * message (protobuf bytes or a JSON object) and the service it belongs to.
 * The first batch_n entries are the batch in flight (at most one), the rest waits.
 * A batch leaves the queue only when the collector has answered it, so a
 * retry sends the same spans again and a span is never in two batches.
 *
 * Connection: one state machine (enum otlp_state), one HTTP/1.1 keep-alive
 * connection over sock.c; the response head is parsed by h1.c, its body
 * framed by Content-Length or chunked (h1_chunk.c) or read to EOF. One
 * timer bounds an attempt from connect to the last byte of the response;
 * another waits the flush interval or the retry delay.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <zlib.h>

#include "tb_build.h"
#include "h1.h"
#include "log.h"
#include "otlp.h"
#include "sink_otlp.h"
#include "sock.h"
#include "span.h"
#include "tls.h"
#include "util.h"

#define OTLP_RESP_MAX		(64 * 1024)	/* response body we read, at most */
#define OTLP_BACKOFF_FIRST	0.5		/* s, doubled per attempt */
#define OTLP_BACKOFF_MAX	30.0		/* s */
#define OTLP_RETRY_AFTER_MAX	300		/* s: a larger Retry-After is capped */
#define OTLP_MAX_SERVICES	16		/* per batch; more wait for the next */

/* ---- process-wide counters ---- */

static atomic_uint_fast64_t g_exported, g_drop_full, g_drop_format,
    g_drop_rejected, g_drop_retries, g_drop_shutdown;
static atomic_uint_fast64_t g_req_ok, g_req_partial, g_req_retry,
    g_req_rejected, g_req_failed;
static atomic_llong g_queue_bytes;
static pthread_mutex_t g_err_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_last_err[160];
static int64_t g_last_err_at;		/* unix seconds */

enum otlp_state {
	OTLP_IDLE = 0,		/* no connection (none yet, or closed) */
	OTLP_CONNECTING,	/* connect (+ TLS handshake) in progress, batch queued */
	OTLP_READY,		/* connected, no request in flight */
	OTLP_WAITING,		/* request written, reading the response */
	OTLP_BACKOFF,		/* no connection; the timer says when to retry */
};

struct otlp_entry {
	struct otlp_entry *next;
	const char *service;	/* interned in the sink's service table */
	size_t len;
	char data[];
};

struct sink_otlp {
	struct event_base *base;
	struct sink_otlp_conf conf;	/* strings: owned copies */
	char *host_header, *path, *headers, *prefix, *project;
	struct otlp_kv *resource;	/* owned array, strings owned */

	enum otlp_state state;
	struct sock *sk;
	struct event *timer;		/* flush interval / backoff */
	struct event *deadline;		/* one attempt's timeout */

	struct otlp_entry *head, *tail;
	size_t nspans, bytes;
	size_t batch_n;			/* the first batch_n are in flight */
	unsigned attempts;		/* of the batch in flight */
	long retry_after;		/* from the last answer, -1 none */

	/* the response being read */
	struct h1_msg *msg;
	int head_done;
	int status;
	enum h1_body body;
	uint64_t body_left;
	struct h1_chunk chunk;
	struct span_buf resp;		/* body bytes kept */
	int conn_close;

	char *services[64];		/* interned service names */
	size_t n_services;

	struct span_buf enc, req;	/* scratch: a span, a request body */
	char *gz;			/* the gzipped body */
	size_t gz_len, gz_cap;
	z_stream z;
	int z_ok;
	uint64_t rnd;
};

/* ---- small helpers ---- */

static void
set_last_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
set_last_error(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&g_err_lock);
	va_start(ap, fmt);
	vsnprintf(g_last_err, sizeof(g_last_err), fmt, ap);
	va_end(ap);
	g_last_err_at = span_now_us() / 1000000;
	pthread_mutex_unlock(&g_err_lock);
}

static double
jitter(struct sink_otlp *s)
{
	/* xorshift64: only to spread the workers' retries apart */
	s->rnd ^= s->rnd << 13;
	s->rnd ^= s->rnd >> 7;
	s->rnd ^= s->rnd << 17;
	return 0.5 + (double)(s->rnd >> 11) / (double)(1ULL << 53) * 0.5;
}

static void
arm(struct event *ev, double sec)
{
	struct timeval tv = tb_timeval(sec);

	event_add(ev, &tv);
}

static char *
dupstr(const char *s)
{
	return strdup(s != NULL ? s : "");
}

/* ---- metrics ---- */

void
sink_otlp_metrics_write(struct evbuffer *out)
{
	char err[sizeof(g_last_err)], esc[2 * sizeof(g_last_err)];
	int64_t at;
	long long qb = atomic_load(&g_queue_bytes);
	size_t i, o = 0;

	pthread_mutex_lock(&g_err_lock);
	memcpy(err, g_last_err, sizeof(err));
	at = g_last_err_at;
	pthread_mutex_unlock(&g_err_lock);
	for (i = 0; err[i] != '\0' && o + 2 < sizeof(esc); i++) {
		if (err[i] == '"' || err[i] == '\\')
			esc[o++] = '\\';
		esc[o++] = err[i] == '\n' ? ' ' : err[i];
	}
	esc[o] = '\0';
	evbuffer_add_printf(out,
	    "# HELP tracebridge_otlp_spans_exported_total Spans an OTLP collector accepted.\n"
	    "# TYPE tracebridge_otlp_spans_exported_total counter\n"
	    "tracebridge_otlp_spans_exported_total %llu\n"
	    "# HELP tracebridge_otlp_spans_dropped_total Spans not exported.\n"
	    "# TYPE tracebridge_otlp_spans_dropped_total counter\n"
	    "tracebridge_otlp_spans_dropped_total{reason=\"queue_full\"} %llu\n"
	    "tracebridge_otlp_spans_dropped_total{reason=\"format\"} %llu\n"
	    "tracebridge_otlp_spans_dropped_total{reason=\"rejected\"} %llu\n"
	    "tracebridge_otlp_spans_dropped_total{reason=\"retries_exhausted\"} %llu\n"
	    "tracebridge_otlp_spans_dropped_total{reason=\"shutdown\"} %llu\n"
	    "# HELP tracebridge_otlp_queue_bytes Bytes of encoded spans waiting.\n"
	    "# TYPE tracebridge_otlp_queue_bytes gauge\n"
	    "tracebridge_otlp_queue_bytes %lld\n"
	    "# HELP tracebridge_otlp_export_requests_total Export requests by outcome.\n"
	    "# TYPE tracebridge_otlp_export_requests_total counter\n"
	    "tracebridge_otlp_export_requests_total{outcome=\"success\"} %llu\n"
	    "tracebridge_otlp_export_requests_total{outcome=\"partial_success\"} %llu\n"
	    "tracebridge_otlp_export_requests_total{outcome=\"retry\"} %llu\n"
	    "tracebridge_otlp_export_requests_total{outcome=\"rejected\"} %llu\n"
	    "tracebridge_otlp_export_requests_total{outcome=\"failed\"} %llu\n",
	    (unsigned long long)atomic_load(&g_exported),
	    (unsigned long long)atomic_load(&g_drop_full),
	    (unsigned long long)atomic_load(&g_drop_format),
	    (unsigned long long)atomic_load(&g_drop_rejected),
	    (unsigned long long)atomic_load(&g_drop_retries),
	    (unsigned long long)atomic_load(&g_drop_shutdown),
	    qb < 0 ? 0 : qb,
	    (unsigned long long)atomic_load(&g_req_ok),
	    (unsigned long long)atomic_load(&g_req_partial),
	    (unsigned long long)atomic_load(&g_req_retry),
	    (unsigned long long)atomic_load(&g_req_rejected),
	    (unsigned long long)atomic_load(&g_req_failed));
	if (esc[0] != '\0')
		evbuffer_add_printf(out,
		    "# HELP tracebridge_otlp_last_export_error_timestamp_seconds "
		    "When the last export failed, and why.\n"
		    "# TYPE tracebridge_otlp_last_export_error_timestamp_seconds gauge\n"
		    "tracebridge_otlp_last_export_error_timestamp_seconds{error=\"%s\"} %lld\n",
		    esc, (long long)at);
}

/* ---- pure helpers over the answer ---- */

long
sink_otlp_retry_after(const char *v, size_t n)
{
	long sec = 0;
	size_t i;

	if (v == NULL || n == 0 || n > 10)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;	/* an HTTP-date: our own backoff then */
		sec = sec * 10 + (v[i] - '0');
	}
	return sec > OTLP_RETRY_AFTER_MAX ? OTLP_RETRY_AFTER_MAX : sec;
}

/* A varint at *p (< end); -1 when truncated or longer than 10 bytes. */
static int
pb_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*p < end && shift < 70) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
		shift += 7;
	}
	return -1;
}

/* Skip one field of wire type wt; -1 when malformed. */
static int
pb_skip(const uint8_t **p, const uint8_t *end, unsigned wt)
{
	uint64_t v;

	switch (wt) {
	case 0:
		return pb_get_varint(p, end, &v);
	case 1:
		if (end - *p < 8)
			return -1;
		*p += 8;
		return 0;
	case 2:
		if (pb_get_varint(p, end, &v) < 0 || v > (uint64_t)(end - *p))
			return -1;
		*p += v;
		return 0;
	case 5:
		if (end - *p < 4)
			return -1;
		*p += 4;
		return 0;
	}
	return -1;
}

static void
copy_msg(char *msg, size_t msglen, const char *s, size_t n)
{
	size_t i;

	if (msglen == 0)
		return;
	if (n >= msglen)
		n = msglen - 1;
	for (i = 0; i < n; i++)	/* printable only: it goes to the log */
		msg[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	msg[n] = '\0';
}

static int
partial_pb(const uint8_t *p, const uint8_t *end, int64_t *rejected,
    char *msg, size_t msglen, int depth)
{
	uint64_t key, v;

	while (p < end) {
		if (pb_get_varint(&p, end, &key) < 0)
			return -1;
		if (depth == 0 && key == (1 << 3 | 2)) {
			/* ExportTraceServiceResponse.partial_success */
			if (pb_get_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p) ||
			    partial_pb(p, p + v, rejected, msg, msglen, 1) < 0)
				return -1;
			p += v;
		} else if (depth == 1 && key == (1 << 3 | 0)) {
			if (pb_get_varint(&p, end, &v) < 0)
				return -1;
			*rejected = (int64_t)v;
		} else if (depth == 1 && key == (2 << 3 | 2)) {
			if (pb_get_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
				return -1;
			copy_msg(msg, msglen, (const char *)p, (size_t)v);
			p += v;
		} else if ((key >> 3) == 0 || pb_skip(&p, end, key & 7) < 0)
			return -1;
	}
	return 0;
}

/* The JSON form, by a minimal scan (the body is ours to bound, not to
 * fully validate): "rejectedSpans" as a number or a string of digits,
 * "errorMessage" as a string without escapes past the first. */
static int
partial_json(const char *b, size_t n, int64_t *rejected, char *msg, size_t msglen)
{
	const char *p, *end = b + n, *q;
	int64_t v = 0;

	if (n == 0)
		return 0;
	for (p = b; p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'); p++)
		;
	if (p == end || *p != '{')
		return -1;
	if ((p = memmem(b, n, "\"rejectedSpans\"", 15)) != NULL) {
		for (p += 15; p < end && (*p == ' ' || *p == ':' || *p == '"'); p++)
			;
		for (q = p; q < end && *q >= '0' && *q <= '9' && q - p < 18; q++)
			v = v * 10 + (*q - '0');
		if (q == p)
			return -1;
		*rejected = v;
	}
	if ((p = memmem(b, n, "\"errorMessage\"", 14)) != NULL) {
		for (p += 14; p < end && (*p == ' ' || *p == ':'); p++)
			;
		if (p == end || *p != '"')
			return -1;
		p++;
		for (q = p; q < end && *q != '"'; q++)
			;
		copy_msg(msg, msglen, p, (size_t)(q - p));
	}
	return 0;
}

int
sink_otlp_partial_success(const char *body, size_t n, int json,
    int64_t *rejected, char *msg, size_t msglen)
{
	*rejected = 0;
	if (msglen > 0)
		msg[0] = '\0';
	if (json)
		return partial_json(body, n, rejected, msg, msglen);
	return partial_pb((const uint8_t *)body, (const uint8_t *)body + n,
	    rejected, msg, msglen, 0);
}

/* ---- the queue ---- */

static void
entry_pop(struct sink_otlp *s)
{
	struct otlp_entry *e = s->head;

	s->head = e->next;
	if (s->head == NULL)
		s->tail = NULL;
	s->nspans--;
	s->bytes -= e->len;
	atomic_fetch_sub(&g_queue_bytes, (long long)e->len);
	free(e);
}

/* The batch in flight is done: counted exported (minus rejected) or
 * dropped with its counter, and freed. */
static void
batch_done(struct sink_otlp *s, atomic_uint_fast64_t *dropped, int64_t rejected)
{
	size_t n = s->batch_n;

	if (dropped == NULL) {
		if (rejected < 0)
			rejected = 0;
		if ((uint64_t)rejected > n)
			rejected = (int64_t)n;
		atomic_fetch_add(&g_exported, n - (uint64_t)rejected);
		atomic_fetch_add(&g_drop_rejected, (uint64_t)rejected);
	} else
		atomic_fetch_add(dropped, n);
	while (s->batch_n > 0) {
		entry_pop(s);
		s->batch_n--;
	}
	s->attempts = 0;
}

static const char *
intern_service(struct sink_otlp *s, const char *svc)
{
	size_t i;

	if (svc == NULL)
		svc = "";
	for (i = 0; i < s->n_services; i++)
		if (strcmp(s->services[i], svc) == 0)
			return s->services[i];
	if (s->n_services == sizeof(s->services) / sizeof(s->services[0]))
		return NULL;
	if ((s->services[s->n_services] = strdup(svc)) == NULL)
		return NULL;
	return s->services[s->n_services++];
}

/* ---- building a request ---- */

/* service.name as osprofiler's OTLP driver names it. */
static void
service_name(const struct sink_otlp *s, const char *svc, char *out, size_t len)
{
	if (s->prefix[0] != '\0')
		snprintf(out, len, "%s-%s-%s", s->prefix, s->project, svc);
	else
		snprintf(out, len, "%s-%s", s->project, svc);
}

/*
 * The body of the batch (the first batch_n entries) into s->req: one ResourceSpans
 * per service in it. 0, or -1 (out of memory).
 */
static int
build_body(struct sink_otlp *s)
{
	const char *svcs[OTLP_MAX_SERVICES];
	const char **spans = NULL;
	size_t *lens = NULL, nsvc = 0, i, k, n, groups = 0;
	struct otlp_kv res[SINK_OTLP_MAX_RESOURCE + 1];
	struct otlp_entry *e;
	char name[512];
	int json = s->conf.protocol == SINK_OTLP_JSON, rc = -1;

	s->req.len = 0;
	for (e = s->head, i = 0; i < s->batch_n; e = e->next, i++) {
		for (k = 0; k < nsvc && svcs[k] != e->service; k++)
			;
		if (k == nsvc)
			svcs[nsvc++] = e->service;	/* batch_take bounds nsvc */
	}
	if ((spans = calloc(s->batch_n, sizeof(*spans))) == NULL ||
	    (lens = calloc(s->batch_n, sizeof(*lens))) == NULL)
		goto done;
	if (json && span_buf_add(&s->req, "{\"resourceSpans\":[", 18) < 0)
		goto done;
	for (k = 0; k < nsvc; k++) {
		n = 0;
		for (e = s->head, i = 0; i < s->batch_n; e = e->next, i++)
			if (e->service == svcs[k]) {
				spans[n] = e->data;
				lens[n++] = e->len;
			}
		service_name(s, svcs[k], name, sizeof(name));
		res[0].key = "service.name";
		res[0].type = OTLP_V_STR;
		res[0].s = name;
		res[0].slen = strlen(name);
		for (i = 0; i < s->conf.n_resource; i++)
			res[i + 1] = s->resource[i];
		if (json && groups++ > 0 && span_buf_add(&s->req, ",", 1) < 0)
			goto done;
		if ((json ? otlp_json_resource_spans : otlp_pb_resource_spans)(&s->req,
		    res, s->conf.n_resource + 1, "tracebridge", PACKAGE_VERSION,
		    spans, lens, n) < 0)
			goto done;
	}
	if (json && span_buf_add(&s->req, "]}", 2) < 0)
		goto done;
	rc = 0;
done:
	free(spans);
	free(lens);
	return rc;
}

/* gzip s->req into s->gz (RFC 1952 framing: deflate's windowBits + 16). */
static int
gzip_body(struct sink_otlp *s)
{
	size_t bound;
	char *p;

	if (!s->z_ok) {
		memset(&s->z, 0, sizeof(s->z));
		/* level 1: span batches are repetitive text and ids, most of
		 * the gain is had at the cheapest level, on the proxy's loop */
		if (deflateInit2(&s->z, 1, Z_DEFLATED, 15 + 16, 8,
		    Z_DEFAULT_STRATEGY) != Z_OK)
			return -1;
		s->z_ok = 1;
	} else if (deflateReset(&s->z) != Z_OK)
		return -1;
	bound = deflateBound(&s->z, s->req.len) + 32;
	if (s->gz_cap < bound) {
		if ((p = realloc(s->gz, bound)) == NULL)
			return -1;
		s->gz = p;
		s->gz_cap = bound;
	}
	s->z.next_in = (Bytef *)s->req.p;
	s->z.avail_in = (uInt)s->req.len;
	s->z.next_out = (Bytef *)s->gz;
	s->z.avail_out = (uInt)s->gz_cap;
	if (deflate(&s->z, Z_FINISH) != Z_STREAM_END)
		return -1;
	s->gz_len = s->gz_cap - s->z.avail_out;
	return 0;
}

/* ---- the connection ---- */

static void otlp_send(struct sink_otlp *s);
static void otlp_conn_close(struct sink_otlp *s);

static void
otlp_set_state(struct sink_otlp *s, enum otlp_state st)
{
	s->state = st;
}

/* Take the next batch: up to batch_size spans of at most
 * OTLP_MAX_SERVICES services from the head. */
static void
batch_take(struct sink_otlp *s)
{
	const char *svcs[OTLP_MAX_SERVICES];
	struct otlp_entry *e;
	size_t nsvc = 0, k;

	s->batch_n = 0;
	for (e = s->head; e != NULL && s->batch_n < s->conf.batch_size; e = e->next) {
		for (k = 0; k < nsvc && svcs[k] != e->service; k++)
			;
		if (k == nsvc) {
			if (nsvc == OTLP_MAX_SERVICES)
				break;
			svcs[nsvc++] = e->service;
		}
		s->batch_n++;
	}
	s->attempts = 0;
}

/* This attempt failed in a way worth retrying: back off, or give the
 * batch up after SINK_OTLP_MAX_ATTEMPTS. */
static void
otlp_retry(struct sink_otlp *s, const char *why)
{
	double delay;

	otlp_conn_close(s);
	set_last_error("%s", why);
	if (s->attempts >= SINK_OTLP_MAX_ATTEMPTS) {
		log_warnx("otlp: %s; dropping %zu spans after %u attempts", why,
		    s->batch_n, s->attempts);
		atomic_fetch_add(&g_req_failed, 1);
		batch_done(s, &g_drop_retries, 0);
		otlp_set_state(s, OTLP_IDLE);
		if (s->head != NULL)
			arm(s->timer, 0);
		return;
	}
	atomic_fetch_add(&g_req_retry, 1);
	if (s->retry_after >= 0)
		delay = (double)s->retry_after;
	else {
		delay = OTLP_BACKOFF_FIRST;
		for (unsigned i = 1; i < s->attempts && delay < OTLP_BACKOFF_MAX; i++)
			delay *= 2;
		if (delay > OTLP_BACKOFF_MAX)
			delay = OTLP_BACKOFF_MAX;
		delay *= jitter(s);
	}
	if (s->attempts == 1)
		log_warnx("otlp: %s; retrying in %.1fs", why, delay);
	else
		log_debug("otlp: %s; retrying in %.1fs (attempt %u)", why, delay,
		    s->attempts);
	otlp_set_state(s, OTLP_BACKOFF);
	arm(s->timer, delay);
}

static void
otlp_conn_close(struct sink_otlp *s)
{
	if (s->sk != NULL) {
		sock_tls_close(s->sk, 0);
		sock_free(s->sk);
		s->sk = NULL;
	}
	event_del(s->deadline);
	s->head_done = 0;
	s->resp.len = 0;
}

/* The whole response is in: decide. */
static void
otlp_answered(struct sink_otlp *s)
{
	int64_t rejected = 0;
	char msg[160];
	int st = s->status, close = s->conn_close;

	event_del(s->deadline);
	s->head_done = 0;
	if (close)
		otlp_conn_close(s);
	otlp_set_state(s, close ? OTLP_IDLE : OTLP_READY);
	if (st >= 200 && st < 300) {
		if (sink_otlp_partial_success(s->resp.p, s->resp.len,
		    s->conf.protocol == SINK_OTLP_JSON, &rejected, msg,
		    sizeof(msg)) == 0 && (rejected > 0 || msg[0] != '\0')) {
			log_warnx("otlp: partial success: %lld of %zu spans rejected: %s",
			    (long long)rejected, s->batch_n, msg[0] ? msg : "(no message)");
			set_last_error("partial success: %s", msg);
			atomic_fetch_add(&g_req_partial, 1);
		} else
			atomic_fetch_add(&g_req_ok, 1);
		batch_done(s, NULL, rejected);
	} else if (st == 429 || st == 502 || st == 503 || st == 504) {
		char why[64];

		snprintf(why, sizeof(why), "collector answered %d", st);
		otlp_retry(s, why);
		return;
	} else {
		copy_msg(msg, sizeof(msg), s->resp.p != NULL ? s->resp.p : "",
		    s->resp.len > 100 ? 100 : s->resp.len);
		log_warnx("otlp: collector answered %d, dropping %zu spans: %s", st,
		    s->batch_n, msg);
		set_last_error("collector answered %d", st);
		atomic_fetch_add(&g_req_rejected, 1);
		batch_done(s, &g_drop_rejected, 0);
	}
	s->resp.len = 0;
	if (s->head != NULL && (s->nspans >= s->conf.batch_size ||
	    !evtimer_pending(s->timer, NULL)))
		arm(s->timer, s->nspans >= s->conf.batch_size ? 0 :
		    s->conf.flush_interval);
}

/* Body bytes of the response: keep up to OTLP_RESP_MAX. */
static void
keep_body(struct sink_otlp *s, struct evbuffer *in, size_t n)
{
	size_t room = s->resp.len < OTLP_RESP_MAX ? OTLP_RESP_MAX - s->resp.len : 0;
	size_t k = n < room ? n : room;

	if (k > 0 && span_buf_add(&s->resp, NULL, 0) == 0) {
		char *tmp = malloc(k);

		if (tmp != NULL) {
			evbuffer_copyout(in, tmp, k);
			(void)span_buf_add(&s->resp, tmp, k);
			free(tmp);
		}
	}
	evbuffer_drain(in, n);
}

static void
otlp_read_cb(struct sock *sk, void *arg)
{
	struct sink_otlp *s = arg;
	struct evbuffer *in = sock_input(sk);
	struct h1_limits lim = { 16384, 8192, 100 };
	size_t len, k;
	ssize_t r;
	char *p;
	size_t i;

	if (s->state != OTLP_WAITING) {
		/* bytes on an idle connection: not ours to take for an answer */
		otlp_conn_close(s);
		otlp_set_state(s, OTLP_IDLE);
		return;
	}
	while (!s->head_done) {
		len = evbuffer_get_length(in);
		p = (char *)evbuffer_pullup(in, (ssize_t)(len < lim.max_head_bytes ?
		    len : lim.max_head_bytes));
		r = h1_parse_response(p, len < lim.max_head_bytes ? len :
		    lim.max_head_bytes, &lim, 0, s->msg);
		if (r == 0 && len < lim.max_head_bytes)
			return;
		if (r <= 0) {
			otlp_retry(s, "bad response from the collector");
			return;
		}
		s->status = s->msg->status;
		s->body = s->msg->body;
		s->body_left = s->msg->content_length;
		s->conn_close = (s->msg->flags & H1_F_CONN_CLOSE) != 0 ||
		    s->body == H1_BODY_EOF;
		s->retry_after = -1;
		for (i = 0; i < s->msg->n_hdrs; i++)
			if (hdr_name_is(&s->msg->hdrs[i], "retry-after"))
				s->retry_after = sink_otlp_retry_after(
				    s->msg->hdrs[i].value, s->msg->hdrs[i].value_len);
		h1_chunk_init(&s->chunk, 0);
		evbuffer_drain(in, (size_t)r);
		if (s->status >= 100 && s->status < 200)
			continue;	/* 100 Continue and friends: the answer follows */
		s->head_done = 1;
		s->resp.len = 0;
	}
	for (;;) {
		len = evbuffer_get_length(in);
		switch (s->body) {
		case H1_BODY_NONE:
			otlp_answered(s);
			return;
		case H1_BODY_LENGTH:
			k = len < s->body_left ? len : (size_t)s->body_left;
			keep_body(s, in, k);
			s->body_left -= k;
			if (s->body_left == 0)
				otlp_answered(s);
			return;
		case H1_BODY_EOF:
			keep_body(s, in, len);
			return;		/* the EOF event ends it */
		case H1_BODY_CHUNKED:
			if (len == 0)
				return;
			if (s->chunk.state == H1_CHUNK_DATA) {
				k = len < s->chunk.remaining ? len : (size_t)s->chunk.remaining;
				keep_body(s, in, k);
				h1_chunk_data(&s->chunk, k);
				continue;
			}
			p = (char *)evbuffer_pullup(in, -1);
			r = h1_chunk_parse(&s->chunk, p, len);
			if (r < 0) {
				otlp_retry(s, "bad chunked response from the collector");
				return;
			}
			evbuffer_drain(in, (size_t)r);
			if (s->chunk.state == H1_CHUNK_DONE) {
				otlp_answered(s);
				return;
			}
			if (r == 0)
				return;
			continue;
		}
	}
}

static void
otlp_event_cb(struct sock *sk, int what, void *arg)
{
	struct sink_otlp *s = arg;
	char why[200], tw[160];

	if (what & SOCK_CONNECTED) {
		if (s->state == OTLP_CONNECTING) {
			otlp_set_state(s, OTLP_READY);
			otlp_send(s);
		}
		return;
	}
	if ((what & SOCK_EOF) && s->state == OTLP_WAITING && s->head_done &&
	    s->body == H1_BODY_EOF) {
		s->conn_close = 1;
		otlp_answered(s);
		return;
	}
	if (s->state == OTLP_READY || s->state == OTLP_IDLE) {
		/* the collector closed an idle keep-alive connection */
		otlp_conn_close(s);
		otlp_set_state(s, OTLP_IDLE);
		return;
	}
	if (sock_ssl(sk) != NULL &&
	    tls_client_failure(sock_ssl(sk), sock_ssl_error(sk), tw, sizeof(tw)))
		snprintf(why, sizeof(why), "TLS to the collector failed: %s", tw);
	else if (what & SOCK_EOF)
		snprintf(why, sizeof(why), "collector closed the connection");
	else
		snprintf(why, sizeof(why), "connection to the collector failed: %s",
		    strerror(errno ? errno : ECONNRESET));
	s->retry_after = -1;
	otlp_retry(s, why);
}

static void
otlp_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink_otlp *s = arg;

	(void)fd;
	(void)what;
	s->retry_after = -1;
	otlp_retry(s, "collector timed out");
}

static int
otlp_connect(struct sink_otlp *s)
{
	static const int one = 1;
	SSL *ssl = NULL;
	int fd;

	fd = socket(s->conf.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (s->conf.tls != NULL &&
	    (ssl = tls_client_ssl(s->conf.tls, NULL, NULL)) == NULL) {
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	/* fd and ssl belong to the sock from here on */
	s->sk = sock_new(s->base, fd, ssl, ssl != NULL ? SOCK_TLS_CONNECT : SOCK_PLAIN);
	if (s->sk == NULL)
		return -1;
	sock_setcb(s->sk, otlp_read_cb, NULL, otlp_event_cb, s);
	if (sock_connect(s->sk, (struct sockaddr *)&s->conf.addr, s->conf.addrlen) < 0) {
		sock_free(s->sk);
		s->sk = NULL;
		return -1;
	}
	sock_enable(s->sk, SOCK_READING | SOCK_WRITING);
	return 0;
}

/* Send the batch (taking one first when none is in flight). */
static void
otlp_send(struct sink_otlp *s)
{
	const char *body;
	size_t body_len;
	struct evbuffer *out;
	char why[160];

	if (s->batch_n == 0) {
		if (s->head == NULL)
			return;
		batch_take(s);
	}
	if (s->state == OTLP_IDLE || s->state == OTLP_BACKOFF) {
		s->attempts++;
		arm(s->deadline, s->conf.timeout);
		if (otlp_connect(s) < 0) {
			snprintf(why, sizeof(why), "cannot connect to the collector: %s",
			    strerror(errno));
			s->retry_after = -1;
			otlp_retry(s, why);
			return;
		}
		otlp_set_state(s, OTLP_CONNECTING);
		/* the request is written once connected */
		return;
	}
	if (s->state != OTLP_READY)
		return;
	if (s->attempts == 0)
		s->attempts = 1;	/* on a kept connection */
	if (build_body(s) < 0 || (s->conf.gzip && gzip_body(s) < 0)) {
		log_warnx("otlp: cannot encode a batch of %zu spans (out of memory)",
		    s->batch_n);
		batch_done(s, &g_drop_format, 0);
		return;
	}
	body = s->conf.gzip ? s->gz : s->req.p;
	body_len = s->conf.gzip ? s->gz_len : s->req.len;
	out = sock_output(s->sk);
	evbuffer_add_printf(out, "POST %s HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: tracebridge/" PACKAGE_VERSION "\r\n"
	    "Content-Type: %s\r\n%sContent-Length: %zu\r\n%s\r\n",
	    s->path, s->host_header, s->conf.protocol == SINK_OTLP_JSON ?
	    "application/json" : "application/x-protobuf",
	    s->conf.gzip ? "Content-Encoding: gzip\r\n" : "", body_len, s->headers);
	evbuffer_add(out, body, body_len);
	s->head_done = 0;
	s->resp.len = 0;
	otlp_set_state(s, OTLP_WAITING);
	arm(s->deadline, s->conf.timeout);
	sock_write_now(s->sk);
}

static void
otlp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink_otlp *s = arg;

	(void)fd;
	(void)what;
	if (s->state == OTLP_BACKOFF || s->state == OTLP_IDLE ||
	    s->state == OTLP_READY)
		otlp_send(s);
}

/* ---- public API ---- */

struct sink_otlp *
sink_otlp_new(struct event_base *base, const struct sink_otlp_conf *conf,
    char *err, size_t errlen)
{
	struct sink_otlp *s;
	size_t i;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto oom;
	s->base = base;
	s->conf = *conf;
	s->retry_after = -1;
	s->rnd = (uint64_t)span_now_us() ^ (uint64_t)(uintptr_t)s;
	if (s->rnd == 0)
		s->rnd = 1;
	if ((s->host_header = dupstr(conf->host_header)) == NULL ||
	    (s->path = dupstr(conf->path)) == NULL ||
	    (s->headers = dupstr(conf->headers)) == NULL ||
	    (s->prefix = dupstr(conf->service_prefix)) == NULL ||
	    (s->project = dupstr(conf->project)) == NULL ||
	    (s->msg = malloc(sizeof(*s->msg))) == NULL ||
	    (s->timer = evtimer_new(base, otlp_timer_cb, s)) == NULL ||
	    (s->deadline = evtimer_new(base, otlp_deadline_cb, s)) == NULL)
		goto oom_free;
	if (conf->n_resource > SINK_OTLP_MAX_RESOURCE)
		s->conf.n_resource = SINK_OTLP_MAX_RESOURCE;
	if ((s->resource = calloc(s->conf.n_resource + 1, sizeof(*s->resource))) == NULL)
		goto oom_free;
	for (i = 0; i < s->conf.n_resource; i++) {
		s->resource[i] = conf->resource[i];
		s->resource[i].key = strdup(conf->resource[i].key);
		if (conf->resource[i].type == OTLP_V_STR)
			s->resource[i].s = strndup(conf->resource[i].s,
			    conf->resource[i].slen);
		if (s->resource[i].key == NULL || (conf->resource[i].type ==
		    OTLP_V_STR && s->resource[i].s == NULL)) {
			s->conf.n_resource = i + 1;
			goto oom_free;
		}
	}
	if (s->conf.batch_size == 0)
		s->conf.batch_size = 512;
	return s;
oom_free:
	sink_otlp_free(s);
oom:
	snprintf(err, errlen, "out of memory");
	return NULL;
}

int
sink_otlp_record(struct sink_otlp *s, const struct span_rec *r)
{
	struct otlp_span os;
	struct otlp_entry *e;
	const char *svc;
	size_t extra = offsetof(struct otlp_entry, data);

	s->enc.len = 0;
	if (otlp_span_from_rec(r, &os) < 0 ||
	    (svc = intern_service(s, r->service)) == NULL ||
	    (s->conf.protocol == SINK_OTLP_JSON ? otlp_json_span(&os, &s->enc) :
	    otlp_pb_span(&os, &s->enc)) < 0) {
		atomic_fetch_add(&g_drop_format, 1);
		return -1;
	}
	if (s->bytes + s->enc.len + extra > s->conf.queue_bytes) {
		atomic_fetch_add(&g_drop_full, 1);
		return -1;
	}
	if ((e = malloc(extra + s->enc.len)) == NULL) {
		atomic_fetch_add(&g_drop_format, 1);
		return -1;
	}
	e->next = NULL;
	e->service = svc;
	e->len = s->enc.len;
	memcpy(e->data, s->enc.p, s->enc.len);
	if (s->tail != NULL)
		s->tail->next = e;
	else
		s->head = e;
	s->tail = e;
	s->nspans++;
	s->bytes += e->len;
	atomic_fetch_add(&g_queue_bytes, (long long)e->len);
	/* a full batch goes now; else within flush_interval of its first span */
	if (s->batch_n == 0 && (s->state == OTLP_IDLE || s->state == OTLP_READY)) {
		if (s->nspans >= s->conf.batch_size)
			arm(s->timer, 0);
		else if (!evtimer_pending(s->timer, NULL))
			arm(s->timer, s->conf.flush_interval);
	}
	return 0;
}

int
sink_otlp_flushed(struct sink_otlp *s)
{
	if (s == NULL || s->head == NULL || s->state == OTLP_BACKOFF)
		return 1;
	/* draining: what waits goes now, not flush_interval later */
	if (s->batch_n == 0 && (s->state == OTLP_IDLE || s->state == OTLP_READY))
		arm(s->timer, 0);
	return 0;
}

void
sink_otlp_set_tls(struct sink_otlp *s, const struct tls_client *tls)
{
	s->conf.tls = tls;
}

size_t
sink_otlp_queued(const struct sink_otlp *s)
{
	return s->nspans;
}

void
sink_otlp_free(struct sink_otlp *s)
{
	size_t i;

	if (s == NULL)
		return;
	if (s->sk != NULL)
		sock_free(s->sk);
	while (s->head != NULL) {
		atomic_fetch_add(&g_drop_shutdown, 1);
		entry_pop(s);
	}
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->deadline != NULL)
		event_free(s->deadline);
	if (s->z_ok)
		deflateEnd(&s->z);
	for (i = 0; i < s->n_services; i++)
		free(s->services[i]);
	for (i = 0; s->resource != NULL && i < s->conf.n_resource; i++) {
		free((char *)s->resource[i].key);
		if (s->resource[i].type == OTLP_V_STR)
			free((char *)s->resource[i].s);
	}
	free(s->resource);
	span_buf_free(&s->enc);
	span_buf_free(&s->req);
	free(s->gz);
	span_buf_free(&s->resp);
	free(s->msg);
	free(s->host_header);
	free(s->path);
	free(s->headers);
	free(s->prefix);
	free(s->project);
	free(s);
}
