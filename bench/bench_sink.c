/*
 * bench_sink: how many spans per second one worker loop gets into one
 * Redis through sink_redis (format + queue + pipelined LPUSH + replies).
 *
 *   bench/bench_sink [URL [SPANS]]     default redis://127.0.0.1:6379, 200000
 *
 * The feeder keeps the sink's buffer topped up (never past half of it, so
 * nothing is dropped) from the same loop, the way a busy worker would, and
 * the clock runs from the first submission to the last acknowledgement.
 * Compare with `redis-benchmark -P 64 -t lpush -q` (3-byte values) and
 * `redis-benchmark -P 64 -t lpush -d 700 -q` (values the size of one of our
 * notifications) on the same machine; numbers in README.md.
 * It pushes into one key per run (osprofiler_opt:<random uuid>) and deletes
 * nothing: run it against a scratch Redis.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "sink_redis.h"
#include "span.h"

struct bench {
	struct event_base *base;
	struct sink_redis *sink;
	struct event *feed;
	long n, next;
	char base_id[40];
	struct span_rec tmpl;
};

static void
bench_feed(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	struct sink_stats st;
	struct timeval tv = { 0, 0 };
	char tid[40];
	struct span_rec r;
	int k;

	sink_redis_stats(b->sink, &st);
	if (st.recorded + st.dropped_buffer_full + st.dropped_redis_error +
	    st.dropped_format >= (uint64_t)b->n) {
		event_base_loopexit(b->base, NULL);
		return;
	}
	/* top up to 4096 buffered spans, then let the loop run Redis I/O */
	for (k = 0; b->next < b->n && st.buffered_spans + (size_t)k < 4096 &&
	    k < 1024; k++, b->next++) {
		r = b->tmpl;
		snprintf(tid, sizeof(tid), "0b0b0b0b-0000-4000-8000-%012lx",
		    b->next);
		r.trace_id = tid;
		r.start_us = span_now_us();
		r.stop_us = r.start_us + 2500;
		sink_redis_record(b->sink, &r);
	}
	if (k == 0)
		tv.tv_usec = 100;	/* buffer full enough: wait for replies */
	evtimer_add(b->feed, &tv);
}

int
main(int argc, char **argv)
{
	struct sink_conf conf;
	struct tb_redis_url url;
	struct sink_stats st;
	struct bench b;
	char err[256];
	int64_t t0, t1;
	double secs;

	memset(&b, 0, sizeof(b));
	memset(&conf, 0, sizeof(conf));
	if (tb_redis_url_parse(argc > 1 ? argv[1] : "redis://127.0.0.1:6379",
	    &url, err, sizeof(err)) == -1) {
		fprintf(stderr, "bench_sink: connection string: %s\n", err);
		return 2;
	}
	conf.redis.url = &url;
	b.n = argc > 2 ? atol(argv[2]) : 200000;
	conf.max_inflight_bytes = argc > 3 ? (size_t)atol(argv[3]) : 0;
	snprintf(b.base_id, sizeof(b.base_id),
	    "bbbbbbbb-0000-4000-8000-%012llx",
	    (unsigned long long)(span_now_us() & 0xffffffffffffULL));
	b.tmpl.base_id = b.base_id;
	b.tmpl.parent_id = b.base_id;
	b.tmpl.name = "proxy";
	b.tmpl.project = "tracebridge";
	b.tmpl.service = "public";
	b.tmpl.host = "edge1.example.net";
	b.tmpl.method = "GET";
	b.tmpl.method_len = 3;
	b.tmpl.target = "/v2.1/servers/detail?limit=100&marker=c7f8a4e2";
	b.tmpl.target_len = strlen(b.tmpl.target);
	b.tmpl.scheme = "https";
	b.tmpl.client_addr = "198.51.100.23:51234";
	b.tmpl.listener = "compute";
	b.tmpl.http_version = "HTTP/1.1";
	b.tmpl.user_agent = "python-novaclient keystoneauth1/5.1.2 "
	    "python-requests/2.28.1 CPython/3.11.2";
	b.tmpl.user_agent_len = strlen(b.tmpl.user_agent);
	b.tmpl.trace_format = "w3c";
	b.tmpl.caller_span_id = "00f067aa0ba902b7";
	b.tmpl.upstream_addr = "10.0.0.12:8774";
	b.tmpl.tls_protocol = "TLSv1.3";
	b.tmpl.tls_cipher = "TLS_AES_256_GCM_SHA384";
	b.tmpl.tls_sni = "compute.example.net";
	b.tmpl.status_code = 200;
	b.tmpl.bytes_to_client = 18234;
	b.tmpl.bytes_from_client = 412;
	b.tmpl.upstream_connect_ms = 0.412;
	b.tmpl.upstream_first_byte_ms = 23.9;
	b.tmpl.upstream_request_id = "req-2b1d6c4e-5f3a-4b7c-9d0e-1f2a3b4c5d6e";
	b.tmpl.upstream_request_id_len = strlen(b.tmpl.upstream_request_id);

	if ((b.base = event_base_new()) == NULL)
		return 1;
	if ((b.sink = sink_redis_new(b.base, &conf, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "bench_sink: %s\n", err);
		event_base_free(b.base);
		return 1;
	}
	/* wait for the connection so connect time is not measured */
	do {
		event_base_loop(b.base, EVLOOP_ONCE);
		sink_redis_stats(b.sink, &st);
	} while (!st.connected);
	b.feed = evtimer_new(b.base, bench_feed, &b);
	t0 = span_now_us();
	{
		struct timeval tv = { 0, 0 };

		evtimer_add(b.feed, &tv);
	}
	event_base_dispatch(b.base);
	t1 = span_now_us();
	sink_redis_stats(b.sink, &st);
	secs = (double)(t1 - t0) / 1e6;
	printf("bench_sink: %llu spans recorded (%llu dropped) in %.3f s: "
	    "%.0f spans/s = %.0f LPUSH/s with 2 values each\n",
	    (unsigned long long)st.recorded,
	    (unsigned long long)(st.dropped_buffer_full +
	    st.dropped_redis_error + st.dropped_format), secs,
	    (double)st.recorded / secs, (double)st.recorded / secs);
	sink_redis_free(b.sink);
	event_free(b.feed);
	event_base_free(b.base);
	return 0;
}
