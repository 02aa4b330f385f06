/*
 * bench_span: nanoseconds per span for span_format_start + span_format_stop
 * on a realistic record (what the proxy fills in tracing.c: a keystone
 * token request with a curl user agent, W3C caller, upstream timings), into
 * two scratch buffers reused across spans exactly as sink_redis_record()
 * reuses its own. Each round formats ITER spans; the best and the median of
 * ROUNDS rounds are printed, because on a shared VM other tenants' bursts
 * only ever add time. For a stable figure run it under
 * `valgrind --tool=callgrind bench/bench_span 100000 1` and divide the
 * instruction total by the span count.
 *
 *   bench/bench_span [iterations per round [rounds]]   (200000, 7)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "span.h"

#define ROUNDS_MAX 64

static void
bench_fill(struct span_rec *r)
{
	static const char target[] =
	    "/v3/auth/tokens?nocatalog=1&allow_expired=0";
	static const char ua[] =
	    "python-keystoneclient/5.4.0 keystoneauth1/5.8.0 "
	    "python-requests/2.32.3 CPython/3.12.3";

	memset(r, 0, sizeof(*r));
	r->base_id = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";
	r->trace_id = "37ca69bc-8473-4d12-a7b2-2e18f8fd5a24";
	r->parent_id = "00000000-0000-0000-00f0-67aa0ba902b7";
	r->name = "proxy";
	r->project = "tracebridge";
	r->service = "public";
	r->host = "edge1.example.org";
	r->start_us = 1764018476574216LL;
	r->stop_us = 1764018476600001LL;
	r->method = "POST";
	r->method_len = 4;
	r->target = target;
	r->target_len = sizeof(target) - 1;
	r->scheme = "http";
	r->client_addr = "192.0.2.17:51234";
	r->listener = "public";
	r->http_version = "HTTP/1.1";
	r->user_agent = ua;
	r->user_agent_len = sizeof(ua) - 1;
	r->trace_format = "w3c";
	r->caller_span_id = "00f067aa0ba902b7";
	r->upstream_addr = "10.0.0.5:5000";
	r->operation = "identity.tokens.create";
	r->sampling_reason = "policy";
	r->status_code = 201;
	r->bytes_to_client = 7342;
	r->bytes_from_client = 318;
	r->upstream_connect_ms = 0.412;
	r->upstream_first_byte_ms = 24.871;
	r->upstream_request_id = "req-6c2e8c40-64c8-4ddb-9b5a-1d0f63a4f2c1";
	r->upstream_request_id_len = strlen(r->upstream_request_id);
}

static int
bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	struct span_buf js = { 0 }, jt = { 0 };
	struct span_rec r;
	struct timespec t0, t1;
	double ns[ROUNDS_MAX];
	long iter = argc > 1 ? atol(argv[1]) : 200000, i;
	int rounds = argc > 2 ? atoi(argv[2]) : 7, k;
	size_t bytes = 0;

	if (iter <= 0 || rounds <= 0 || rounds > ROUNDS_MAX) {
		fprintf(stderr, "usage: bench_span [iterations [rounds<=%d]]\n",
		    ROUNDS_MAX);
		return 2;
	}
	bench_fill(&r);
	for (k = 0; k < rounds; k++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (i = 0; i < iter; i++) {
			js.len = 0;
			jt.len = 0;
			/* vary the clock like real spans do */
			r.start_us += 1000;
			r.stop_us += 1000;
			if (span_format_start(&r, &js) == -1 ||
			    span_format_stop(&r, &jt) == -1) {
				fprintf(stderr, "bench_span: format failed\n");
				return 1;
			}
			bytes += js.len + jt.len;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ns[k] = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
		    (double)(t1.tv_nsec - t0.tv_nsec)) / (double)iter;
	}
	qsort(ns, (size_t)rounds, sizeof(ns[0]), bench_cmp);
	printf("span start+stop: %.0f ns/span best, %.0f median "
	    "(%zu + %zu bytes, %ld x %d)\n", ns[0], ns[rounds / 2], js.len,
	    jt.len, iter, rounds);
	span_buf_free(&js);
	span_buf_free(&jt);
	return bytes == 0;
}
