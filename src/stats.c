/* stats.c: counters for /metrics (see stats.h). */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "redis.h"
#include "stats.h"
#include "tls.h"

_Static_assert(TLS_FAIL_NREASONS == STATS_TLS_REASONS, "tls failure reasons");
_Static_assert(TB_REDIS_REFUSE_N == STATS_REDIS_REFUSALS, "redis refusals");
_Static_assert(TB_REDIS_SENTINEL_NERR == STATS_SENTINEL_ERRS, "sentinel errors");

struct stats_global tb_stats;

static pthread_mutex_t listeners_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats_listener *listeners;	/* append-only list */

/* Upper bounds in seconds, a Prometheus-style histogram of request durations. */
static const double duration_bounds[STATS_DURATION_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 10, 60,
};

static const char *const upstream_err_names[STATS_UP_NKINDS] = {
	"connect_refused", "connect_timeout", "reset", "timeout",
	"bad_response", "retried", "tls_handshake",
};

struct stats_listener *
stats_listener_get(const char *name)
{
	struct stats_listener *l;

	pthread_mutex_lock(&listeners_lock);
	for (l = listeners; l != NULL; l = l->next)
		if (strcmp(l->name, name) == 0)
			goto out;
	l = calloc(1, sizeof(*l));
	if (l != NULL) {
		strncpy(l->name, name, sizeof(l->name) - 1);
		/* Publish fully built: readers walk the list without the lock. */
		l->next = listeners;
		__atomic_store_n(&listeners, l, __ATOMIC_RELEASE);
	}
out:
	pthread_mutex_unlock(&listeners_lock);
	return l;
}

void
stats_request_done(struct stats_listener *l, int status, uint64_t bytes_in,
    uint64_t bytes_out, uint64_t duration_us)
{
	int cls = status / 100, i;
	double secs = (double)duration_us / 1e6;

	if (l == NULL)
		return;
	if (cls < 1 || cls > 5)
		cls = 0;
	STATS_INC(l->requests[cls]);
	STATS_ADD(l->bytes_in, bytes_in);
	STATS_ADD(l->bytes_out, bytes_out);
	for (i = 0; i < STATS_DURATION_BUCKETS; i++)
		if (secs <= duration_bounds[i])
			break;
	STATS_INC(l->duration_bucket[i]);	/* i == STATS_DURATION_BUCKETS: +Inf only */
	STATS_ADD(l->duration_sum_us, duration_us);
	STATS_INC(l->duration_count);
}

/* A counter with one series per value of label: values[i] named names[i],
 * for i in [from, n) (from 1: [0] is an enum's "none"). */
static void
counter_by_label(struct evbuffer *out, const char *name, const char *help,
    const char *label, const char *const *names, const uint64_t *values,
    int from, int n)
{
	int i;

	evbuffer_add_printf(out, "# HELP tracebridge_%s %s\n# TYPE tracebridge_%s counter\n",
	    name, help, name);
	for (i = from; i < n; i++)
		evbuffer_add_printf(out, "tracebridge_%s{%s=\"%s\"} %lu\n", name, label,
		    names[i], (unsigned long)STATS_GET(values[i]));
}

/* A counter with one series per listener: the uint64_t at off in each. */
static void
counter_by_listener(struct evbuffer *out, struct stats_listener *head,
    const char *name, const char *help, size_t off)
{
	struct stats_listener *l;

	evbuffer_add_printf(out, "# HELP tracebridge_%s %s\n# TYPE tracebridge_%s counter\n",
	    name, help, name);
	for (l = head; l != NULL; l = l->next)
		evbuffer_add_printf(out, "tracebridge_%s{listener=\"%s\"} %lu\n", name, l->name,
		    (unsigned long)STATS_GET(*(uint64_t *)((char *)l + off)));
}

#define G(f)	offsetof(struct stats_global, f)

/* The single-series metrics of tb_stats, in the order /metrics lists them. */
static const struct {
	const char *name, *type, *help;
	size_t off;			/* the uint64_t in struct stats_global */
} scalars[] = {
	{ "connections_active", "gauge", "Client connections open now.",
	  G(connections_active) },
	{ "connections_total", "counter", "Client connections accepted.",
	  G(connections_total) },
	{ "bad_requests_total", "counter", "Requests refused by the HTTP framing layer.",
	  G(bad_requests) },
	{ "upstream_connects_total", "counter", "New upstream connections opened.",
	  G(upstream_connects) },
	{ "upstream_reused_total", "counter",
	  "Requests sent on a pooled keep-alive upstream connection.",
	  G(upstream_pool_reused) },
	{ "upstream_tls_handshakes_total", "counter", "TLS handshakes with upstreams.",
	  G(upstream_tls_handshakes) },
	{ "upstream_tls_resumed_total", "counter",
	  "Upstream TLS handshakes that resumed a session.",
	  G(upstream_tls_resumed) },
	{ "upstream_pool_stray_total", "counter",
	  "Upstream connections closed instead of reused: bytes after a complete "
	  "response, on an idle connection or before the request was written.",
	  G(upstream_pool_stray) },
	{ "splices_total", "counter", "Body parts relayed socket to socket by splice(2).",
	  G(splices) },
	{ "spliced_bytes_total", "counter",
	  "Body bytes relayed by splice(2), both directions.", G(spliced_bytes) },
};

#undef G

static const char *const underscore_names[2] = { "dropped", "rejected" };
static const char *const idle_close_names[STATS_IDLE_REASONS] = {
	"eof", "error", "timeout"
};

void
stats_write_prometheus(struct evbuffer *out)
{
	static const char *const cls_names[6] = { "other", "1xx", "2xx", "3xx", "4xx", "5xx" };
	struct stats_listener *l, *head = __atomic_load_n(&listeners, __ATOMIC_ACQUIRE);
	uint64_t cum;
	int i;

	for (i = 0; i < (int)(sizeof(scalars) / sizeof(scalars[0])); i++)
		evbuffer_add_printf(out, "# HELP tracebridge_%s %s\n"
		    "# TYPE tracebridge_%s %s\ntracebridge_%s %lu\n",
		    scalars[i].name, scalars[i].help, scalars[i].name,
		    scalars[i].type, scalars[i].name, (unsigned long)STATS_GET(
		    *(uint64_t *)((char *)&tb_stats + scalars[i].off)));
	counter_by_label(out, "underscore_headers_total", "Request fields whose "
	    "name holds '_' (underscore_headers): removed, or their request refused.",
	    "action", underscore_names, tb_stats.underscore, 0, 2);
	counter_by_label(out, "upstream_pool_closed_total", "Idle pooled upstream "
	    "connections closed, by cause (stray bytes: upstream_pool_stray_total).",
	    "reason", idle_close_names, tb_stats.upstream_pool_closed, 0,
	    STATS_IDLE_REASONS);
	counter_by_label(out, "redis_replies_refused_total",
	    "Redis and sentinel connections closed for a reply larger than expected, by limit.",
	    "reason", tb_redis_refusal_names, tb_stats.redis_refused, 1, STATS_REDIS_REFUSALS);
	counter_by_label(out, "redis_sentinel_unusable_answers_total",
	    "Sentinel answers naming no usable master, by reason.",
	    "reason", tb_redis_sentinel_err_names, tb_stats.sentinel_unusable, 1,
	    STATS_SENTINEL_ERRS);
	counter_by_label(out, "upstream_errors_total", "Upstream failures by kind.", "kind",
	    upstream_err_names, tb_stats.upstream_errors, 0, STATS_UP_NKINDS);

	evbuffer_add_printf(out,
	    "# HELP tracebridge_requests_total Requests answered, by listener and status class.\n"
	    "# TYPE tracebridge_requests_total counter\n");
	for (l = head; l != NULL; l = l->next)
		for (i = 0; i < 6; i++)
			evbuffer_add_printf(out,
			    "tracebridge_requests_total{listener=\"%s\",code=\"%s\"} %lu\n",
			    l->name, cls_names[i], (unsigned long)STATS_GET(l->requests[i]));
	counter_by_listener(out, head, "tls_handshakes_total",
	    "Completed TLS handshakes with clients.",
	    offsetof(struct stats_listener, tls_handshakes));
	counter_by_listener(out, head, "tls_resumed_total",
	    "Client TLS handshakes that resumed a session.",
	    offsetof(struct stats_listener, tls_resumed));
	evbuffer_add_printf(out,
	    "# HELP tracebridge_tls_handshake_failures_total Client connections that never completed a TLS handshake, by reason.\n"
	    "# TYPE tracebridge_tls_handshake_failures_total counter\n");
	for (l = head; l != NULL; l = l->next)
		for (i = 0; i < STATS_TLS_REASONS; i++)
			evbuffer_add_printf(out,
			    "tracebridge_tls_handshake_failures_total{listener=\"%s\",reason=\"%s\"} %lu\n",
			    l->name, tls_fail_names[i], (unsigned long)STATS_GET(l->tls_failures[i]));
	counter_by_listener(out, head, "bytes_in_total", "Bytes received from clients.",
	    offsetof(struct stats_listener, bytes_in));
	counter_by_listener(out, head, "bytes_out_total", "Bytes sent to clients.",
	    offsetof(struct stats_listener, bytes_out));
	evbuffer_add_printf(out,
	    "# HELP tracebridge_request_duration_seconds Time from request head to last response byte.\n"
	    "# TYPE tracebridge_request_duration_seconds histogram\n");
	for (l = head; l != NULL; l = l->next) {
		cum = 0;
		for (i = 0; i < STATS_DURATION_BUCKETS; i++) {
			cum += STATS_GET(l->duration_bucket[i]);
			evbuffer_add_printf(out,
			    "tracebridge_request_duration_seconds_bucket{listener=\"%s\",le=\"%g\"} %lu\n",
			    l->name, duration_bounds[i], (unsigned long)cum);
		}
		cum += STATS_GET(l->duration_bucket[STATS_DURATION_BUCKETS]);
		evbuffer_add_printf(out,
		    "tracebridge_request_duration_seconds_bucket{listener=\"%s\",le=\"+Inf\"} %lu\n"
		    "tracebridge_request_duration_seconds_sum{listener=\"%s\"} %.6f\n"
		    "tracebridge_request_duration_seconds_count{listener=\"%s\"} %lu\n",
		    l->name, (unsigned long)cum, l->name,
		    (double)STATS_GET(l->duration_sum_us) / 1e6,
		    l->name, (unsigned long)STATS_GET(l->duration_count));
	}
}
