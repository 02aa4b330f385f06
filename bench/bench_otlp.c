/*
 * bench_otlp: how many spans per second one worker loop exports through
 * sink_otlp (encode + queue + batch + gzip + HTTP/1.1 keep-alive POST).
 *
 *   bench/bench_otlp PORT [protobuf|json] [gzip|none] [SPANS]
 *
 * The receiver at 127.0.0.1:PORT should discard (bench/otlp_export.sh runs
 * tests/integration/node/otlp_receiver.js --discard). The feeder keeps up
 * to 8 batches queued from the same loop, the way a busy worker would; the
 * clock runs from the first span to the last answered batch. Prints
 * "spans/s" and the exporter's metrics.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sink_otlp.h"
#include "span.h"
#include "util.h"

struct bench {
	struct event_base *base;
	struct sink_otlp *sink;
	struct event *feed;
	long n, next;
	struct span_rec tmpl;
};

static void
bench_feed(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	struct timeval tv = { 0, 0 };
	char tid[40];
	struct span_rec r;
	int k;

	(void)fd;
	(void)what;
	if (b->next >= b->n && sink_otlp_queued(b->sink) == 0) {
		event_base_loopexit(b->base, NULL);
		return;
	}
	for (k = 0; b->next < b->n && sink_otlp_queued(b->sink) < 4096 && k < 1024;
	    k++, b->next++) {
		r = b->tmpl;
		snprintf(tid, sizeof(tid), "0b0b0b0b-0000-4000-8000-%012lx", b->next);
		r.trace_id = tid;
		r.start_us = span_now_us();
		r.stop_us = r.start_us + 2500;
		sink_otlp_record(b->sink, &r);
	}
	tv.tv_usec = k > 0 ? 0 : 200;
	event_add(b->feed, &tv);
}

int
main(int argc, char **argv)
{
	struct sink_otlp_conf c;
	struct sockaddr_in *sin = (struct sockaddr_in *)&c.addr;
	struct bench b;
	struct evbuffer *m;
	struct timeval tv = { 0, 0 };
	char err[256], host[64];
	double t0, t1;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_otlp PORT [protobuf|json] [gzip|none] [SPANS]\n");
		return 2;
	}
	memset(&c, 0, sizeof(c));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)atoi(argv[1]));
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c.addrlen = sizeof(*sin);
	snprintf(host, sizeof(host), "127.0.0.1:%s", argv[1]);
	c.host_header = host;
	c.path = "/v1/traces";
	c.protocol = argc > 2 && strcmp(argv[2], "json") == 0 ? SINK_OTLP_JSON :
	    SINK_OTLP_PROTOBUF;
	c.gzip = !(argc > 3 && strcmp(argv[3], "none") == 0);
	c.headers = "";
	c.timeout = 10;
	c.batch_size = 512;
	c.flush_interval = 0.005;
	c.queue_bytes = 64u << 20;
	c.service_prefix = "";
	c.project = "bench";

	memset(&b, 0, sizeof(b));
	b.n = argc > 4 ? atol(argv[4]) : 200000;
	b.base = event_base_new();
	if ((b.sink = sink_otlp_new(b.base, &c, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench_otlp: %s\n", err);
		return 1;
	}
	b.tmpl.base_id = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";
	b.tmpl.parent_id = "00000000-0000-0000-00f0-67aa0ba902b7";
	b.tmpl.has_parent = 1;
	b.tmpl.name = "proxy";
	b.tmpl.project = "bench";
	b.tmpl.service = "compute";
	b.tmpl.host = "bench-host";
	b.tmpl.method = "GET";
	b.tmpl.method_len = 3;
	b.tmpl.target = "/v2.1/servers/9f1c2f4e-58d4-4a4e-9c50-2f1f3ab0c1de?all_tenants=1";
	b.tmpl.target_len = strlen(b.tmpl.target);
	b.tmpl.scheme = "http";
	b.tmpl.client_addr = "10.0.0.7:51234";
	b.tmpl.host_header = "nova.example:8774";
	b.tmpl.listener = "compute";
	b.tmpl.http_version = "HTTP/1.1";
	b.tmpl.user_agent = "python-novaclient keystoneauth1/5.1.2 python-requests/2.28.1 CPython/3.11.2";
	b.tmpl.user_agent_len = strlen(b.tmpl.user_agent);
	b.tmpl.trace_format = "w3c";
	b.tmpl.operation = "GET /v2.1/servers/{id}";
	b.tmpl.sampling_reason = "probabilistic";
	b.tmpl.upstream_addr = "10.0.0.20:8774";
	b.tmpl.status_code = 200;
	b.tmpl.bytes_from_client = 412;
	b.tmpl.bytes_to_client = 1893;
	b.tmpl.upstream_request_id = "req-2f1f3ab0-9f1c-4a4e-9c50-58d42f1f3ab0";
	b.tmpl.upstream_request_id_len = strlen(b.tmpl.upstream_request_id);
	b.feed = evtimer_new(b.base, bench_feed, &b);
	event_add(b.feed, &tv);
	t0 = (double)tb_mono_ns() / 1e9;
	event_base_dispatch(b.base);
	t1 = (double)tb_mono_ns() / 1e9;
	printf("%s%s: %ld spans in %.3f s: %.0f spans/s\n",
	    c.protocol == SINK_OTLP_JSON ? "json" : "protobuf", c.gzip ? "+gzip" : "",
	    b.n, t1 - t0, (double)b.n / (t1 - t0));
	m = evbuffer_new();
	sink_otlp_metrics_write(m);
	fwrite(evbuffer_pullup(m, -1), 1, evbuffer_get_length(m), stdout);
	evbuffer_free(m);
	sink_otlp_free(b.sink);
	event_free(b.feed);
	event_base_free(b.base);
	return 0;
}
