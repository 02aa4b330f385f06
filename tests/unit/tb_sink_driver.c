/*
 * tb_sink_driver: one event loop, one Redis sink, N spans at a given rate,
 * so tests/integration/test_sink_redis.py can drive outages, tiny buffers
 * and sentinel failovers against real servers.
 *
 * Prints the sink's counters as one JSON line when it ends (all spans
 * submitted and the buffer drained, or --drain seconds passed) and on
 * SIGUSR1. With --metrics it also prints sink_metrics_write() output
 * (after the JSON line). With --print it only prints the start, stop and
 * error-marker JSON of span 0, one per line, and exits.
 *
 * Span i: base_id = --base (default one fixed uuid, so all spans form one
 * list) or, with --per-trace, a uuid derived from i; trace_id
 * = "<tag>-0000-4000-8000-<i as 12 hex digits>" where tag is --tag (8 hex).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "redis.h"
#include "sink_redis.h"
#include "span.h"

struct drv {
	struct event_base *base;
	struct sink_redis *sink;
	struct event *tick, *usr1;
	long n, rate, next, errors_every;
	double drain;
	int64_t t0_us, done_us;
	int per_trace, metrics;
	const char *base_id, *tag;
	struct span_rec tmpl;
	size_t max_bytes;
	int64_t last_tick_us, max_gap_us;	/* proof the loop never stalls */
};

static void
drv_print(struct drv *d)
{
	struct sink_stats st;
	struct rusage ru;
	double el = (double)(span_now_us() - d->t0_us) / 1e6;

	sink_redis_stats(d->sink, &st);
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"submitted\": %llu, \"recorded\": %llu, "
	    "\"dropped_buffer_full\": %llu, \"dropped_format\": %llu, "
	    "\"dropped_redis_error\": %llu, \"dropped_shutdown\": %llu, "
	    "\"buffered\": %zu, \"buffer_bytes\": %zu, "
	    "\"max_buffer_bytes\": %zu, \"inflight\": %zu, "
	    "\"reconnects\": %llu, \"connected\": %d, \"master\": \"%s\", "
	    "\"elapsed_s\": %.3f, \"max_tick_gap_ms\": %.1f, "
	    "\"maxrss_kb\": %ld}\n",
	    (unsigned long long)st.submitted, (unsigned long long)st.recorded,
	    (unsigned long long)st.dropped_buffer_full,
	    (unsigned long long)st.dropped_format,
	    (unsigned long long)st.dropped_redis_error,
	    (unsigned long long)st.dropped_shutdown, st.buffered_spans,
	    st.buffer_bytes, d->max_bytes, st.inflight_spans,
	    (unsigned long long)st.reconnects, st.connected, st.master, el,
	    (double)d->max_gap_us / 1e3, ru.ru_maxrss);
	fflush(stdout);
}

static void
drv_span(struct drv *d, long i, struct span_rec *r, char *base, char *tid)
{
	*r = d->tmpl;
	snprintf(tid, 37, "%.8s-0000-4000-8000-%012lx", d->tag, i);
	if (d->per_trace) {
		snprintf(base, 37, "%.8s-1111-4000-8000-%012lx", d->tag, i);
		r->base_id = base;
	}
	r->trace_id = tid;
	r->parent_id = r->base_id;
	r->start_us = span_now_us();
	r->stop_us = r->start_us + 1234;
	if (d->errors_every > 0 && i % d->errors_every == 0) {
		r->status_code = 502;
		r->etype = SPAN_ETYPE_UPSTREAM_UNAVAILABLE;
		r->message = "connect to upstream failed";
	}
}

static void
drv_tick(evutil_socket_t fd, short what, void *arg)
{
	struct drv *d = arg;
	struct sink_stats st;
	struct timeval tv = { 0, 1000 };
	char base[40], tid[40];
	struct span_rec r;
	long due, k;
	int64_t now = span_now_us();

	if (d->last_tick_us != 0 && now - d->last_tick_us > d->max_gap_us)
		d->max_gap_us = now - d->last_tick_us;
	d->last_tick_us = now;
	if (d->rate > 0)
		due = (long)((double)(now - d->t0_us) * (double)d->rate / 1e6) + 1;
	else
		due = d->next + 2000;
	if (due > d->n)
		due = d->n;
	for (k = d->next; k < due; k++) {
		drv_span(d, k, &r, base, tid);
		sink_redis_record(d->sink, &r);
	}
	d->next = due;
	sink_redis_stats(d->sink, &st);
	if (st.buffer_bytes > d->max_bytes)
		d->max_bytes = st.buffer_bytes;
	if (d->next >= d->n) {
		if (d->done_us == 0)
			d->done_us = now;
		if (st.buffered_spans == 0 ||
		    (double)(now - d->done_us) / 1e6 >= d->drain) {
			event_base_loopexit(d->base, NULL);
			return;
		}
		tv.tv_usec = 10000;
	} else if (d->rate <= 0)
		tv.tv_usec = 0;
	evtimer_add(d->tick, &tv);
}

static void
drv_usr1(evutil_socket_t fd, short what, void *arg)
{
	drv_print(arg);
}

static void
drv_usage(void)
{
	fprintf(stderr, "usage: tb_sink_driver --url URL [--n N] [--rate R] "
	    "[--buffer BYTES] [--ttl S] [--filter-error] [--errors-every K] "
	    "[--service-name NAME] [--socket-timeout S] [--drain S] "
	    "[--base UUID | --per-trace] [--tag HEX8] [--target T] "
	    "[--method M] [--user-agent UA] [--status N] [--name N] "
	    "[--project P] [--service S] [--host H] [--etype E] "
	    "[--message M] [--command-timeout S] [--connect-timeout S] "
	    "[--print] [--metrics]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", 1, NULL, 'u' }, { "n", 1, NULL, 'n' },
		{ "rate", 1, NULL, 'r' }, { "buffer", 1, NULL, 'b' },
		{ "ttl", 1, NULL, 't' }, { "filter-error", 0, NULL, 'f' },
		{ "errors-every", 1, NULL, 'e' },
		{ "service-name", 1, NULL, 'S' },
		{ "socket-timeout", 1, NULL, 'T' }, { "drain", 1, NULL, 'd' },
		{ "base", 1, NULL, 'B' }, { "per-trace", 0, NULL, 'P' },
		{ "tag", 1, NULL, 'g' }, { "target", 1, NULL, 'a' },
		{ "method", 1, NULL, 'm' }, { "user-agent", 1, NULL, 'A' },
		{ "status", 1, NULL, 's' }, { "name", 1, NULL, 'N' },
		{ "project", 1, NULL, 'p' }, { "service", 1, NULL, 'v' },
		{ "host", 1, NULL, 'h' }, { "print", 0, NULL, 'x' },
		{ "metrics", 0, NULL, 'M' }, { "etype", 1, NULL, 'E' },
		{ "message", 1, NULL, 'G' },
		{ "command-timeout", 1, NULL, 'C' },
		{ "connect-timeout", 1, NULL, 'K' }, { NULL, 0, NULL, 0 },
	};
	struct sink_conf conf;
	struct tb_redis_url url;
	const char *cs = NULL;
	struct drv d;
	char err[256];
	int c, print = 0;
	const char *target = "/v3/auth/tokens?nocatalog=1";
	const char *method = "GET";

	if (argc < 2) {
		/* built as a check program, so `make check` runs it bare */
		fprintf(stderr, "tb_sink_driver: a helper for "
		    "tests/integration/test_sink_redis.py; skipped\n");
		return 77;
	}
	memset(&conf, 0, sizeof(conf));
	memset(&d, 0, sizeof(d));
	d.n = 1;
	d.drain = 10;
	d.base_id = "5b1c6d2e-8f3a-4b7c-9d0e-1f2a3b4c5d6e";
	d.tag = "0a0b0c0d";
	d.tmpl.name = "proxy";
	d.tmpl.project = "tracebridge";
	d.tmpl.service = "public";
	d.tmpl.host = "edge1";
	d.tmpl.scheme = "http";
	d.tmpl.client_addr = "192.0.2.10:50000";
	d.tmpl.listener = "public";
	d.tmpl.http_version = "HTTP/1.1";
	d.tmpl.trace_format = "w3c";
	d.tmpl.caller_span_id = "00f067aa0ba902b7";
	d.tmpl.upstream_addr = "127.0.0.1:5000";
	d.tmpl.status_code = 200;
	d.tmpl.bytes_to_client = 512;
	d.tmpl.bytes_from_client = 128;
	d.tmpl.upstream_connect_ms = 0.25;
	d.tmpl.upstream_first_byte_ms = 3.5;
	d.tmpl.upstream_request_id = "req-1d2c3b4a-0000-4000-8000-000000000001";
	d.tmpl.upstream_request_id_len = strlen(d.tmpl.upstream_request_id);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'u': cs = optarg; break;
		case 'n': d.n = atol(optarg); break;
		case 'r': d.rate = atol(optarg); break;
		case 'b': conf.span_buffer_bytes = (size_t)atol(optarg); break;
		case 't': conf.span_ttl = atol(optarg); break;
		case 'f': conf.filter_error_trace = 1; break;
		case 'e': d.errors_every = atol(optarg); break;
		case 'S': conf.redis.sentinel_service_name = optarg; break;
		case 'T': conf.redis.sentinel_timeout = atof(optarg); break;
		case 'd': d.drain = atof(optarg); break;
		case 'B': d.base_id = optarg; break;
		case 'P': d.per_trace = 1; break;
		case 'g': d.tag = optarg; break;
		case 'a': target = optarg; break;
		case 'm': method = optarg; break;
		case 'A': d.tmpl.user_agent = optarg;
			d.tmpl.user_agent_len = strlen(optarg); break;
		case 's': d.tmpl.status_code = atoi(optarg); break;
		case 'N': d.tmpl.name = optarg; break;
		case 'p': d.tmpl.project = optarg; break;
		case 'v': d.tmpl.service = optarg; break;
		case 'h': d.tmpl.host = optarg; break;
		case 'x': print = 1; break;
		case 'M': d.metrics = 1; break;
		case 'E': d.tmpl.etype = optarg; break;
		case 'G': d.tmpl.message = optarg; break;
		case 'C': conf.redis.command_timeout = atof(optarg); break;
		case 'K': conf.redis.connect_timeout = atof(optarg); break;
		default: drv_usage();
		}
	}
	d.tmpl.base_id = d.base_id;
	d.tmpl.target = target;
	d.tmpl.target_len = strlen(target);
	d.tmpl.method = method;
	d.tmpl.method_len = strlen(method);
	if (print) {
		struct span_buf b = { 0 };
		struct span_rec r;
		char base[40], tid[40];

		drv_span(&d, 0, &r, base, tid);
		if (span_format_start(&r, &b) == -1 ||
		    span_buf_add(&b, "\n", 1) == -1 ||
		    span_format_stop(&r, &b) == -1 ||
		    span_buf_add(&b, "\n", 1) == -1 ||
		    span_format_error_marker(&r, &b) == -1 ||
		    span_buf_add(&b, "\n", 1) == -1)
			return 1;
		fwrite(b.p, 1, b.len, stdout);
		span_buf_free(&b);
		return 0;
	}
	if (cs == NULL)
		drv_usage();
	if (tb_redis_url_parse(cs, &url, err, sizeof(err)) == -1) {
		fprintf(stderr, "tb_sink_driver: connection string: %s\n", err);
		return 3;
	}
	conf.redis.url = &url;
	signal(SIGPIPE, SIG_IGN);
	if ((d.base = event_base_new()) == NULL)
		return 1;
	if ((d.sink = sink_redis_new(d.base, &conf, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "tb_sink_driver: %s\n", err);
		event_base_free(d.base);
		return 3;
	}
	d.t0_us = span_now_us();
	d.tick = evtimer_new(d.base, drv_tick, &d);
	d.usr1 = evsignal_new(d.base, SIGUSR1, drv_usr1, &d);
	evsignal_add(d.usr1, NULL);
	{
		struct timeval tv = { 0, 0 };

		evtimer_add(d.tick, &tv);
	}
	event_base_dispatch(d.base);
	drv_print(&d);
	if (d.metrics) {
		struct evbuffer *eb = evbuffer_new();

		sink_metrics_write(eb);
		evbuffer_write(eb, 1);
		evbuffer_free(eb);
	}
	sink_redis_free(d.sink);
	event_free(d.tick);
	event_free(d.usr1);
	event_base_free(d.base);
	return 0;
}
