/*
 * fuzz_trace: every codec's extract and the per-request driver over
 * arbitrary header lists. Input: lines "name:value" ('\n'-separated); a line
 * without ':' is a name with an empty value. Each value is copied into its
 * own exact-size allocation so ASan catches reads past it.
 *
 * Run (./configure --enable-fuzzers CC=clang; make tests/fuzz/fuzz_trace):
 *   mkdir -p /tmp/c && tests/fuzz/fuzz_trace -max_total_time=30 \
 *       -max_len=4096 /tmp/c $(srcdir)/tests/fuzz/corpus/trace
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXH 64

static int
discard(void *arg, const char *name, size_t nl, const char *v, size_t vl)
{
	size_t *total = arg;

	/* touch every byte: a bad pointer or length shows here */
	while (nl-- > 0)
		*total += (unsigned char)name[nl];
	while (vl-- > 0)
		*total += (unsigned char)v[vl];
	return 0;
}

static struct trace_conf *conf_default, *conf_all;
static volatile size_t fuzz_sink;

static void
init(void)
{
	static const char *keys[] = { "SECRET_KEY", "old" };
	static const char *all[] = { "w3c", "b3", "b3multi", "jaeger", "xray",
	    "datadog", "gcp", "ot", "osprofiler" };
	char err[256];

	conf_default = trace_conf_new(NULL, 0, NULL, 0, keys, 2, 0, 1, 1, 1,
	    err, sizeof(err));
	conf_all = trace_conf_new(all + 1, 8, all, 9, keys, 2, 1, 1, 1, 0,
	    err, sizeof(err));
	if (conf_default == NULL || conf_all == NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tb_hdr hdrs[MAXH];
	char *names[MAXH], *values[MAXH];
	struct tb_trace_ctx ctx;
	struct trace_req tr;
	size_t n = 0, i, start = 0, total = 0;
	struct tb_hdr_sink sink = { discard, &total };
	const uint8_t *line, *colon;
	size_t ll, nl;

	if (conf_default == NULL)
		init();
	for (i = 0; i <= size && n < MAXH; i++) {
		if (i < size && data[i] != '\n')
			continue;
		line = data + start;
		ll = i - start;
		start = i + 1;
		colon = memchr(line, ':', ll);
		nl = colon ? (size_t)(colon - line) : ll;
		names[n] = malloc(nl ? nl : 1);
		memcpy(names[n], line, nl);
		values[n] = malloc(colon ? ll - nl - 1 + 1 : 1);
		if (colon)
			memcpy(values[n], colon + 1, ll - nl - 1);
		hdrs[n].name = names[n];
		hdrs[n].name_len = nl;
		hdrs[n].value = values[n];
		hdrs[n].value_len = colon ? ll - nl - 1 : 0;
		n++;
	}
	for (i = 0; i < TRACE_F_COUNT; i++) {
		memset(&ctx, 0, sizeof(ctx));
		ctx.sampled = TRACE_SAMPLED_DEFER;
		(void)trace_codecs[i]->extract(trace_conf_osprofiler(conf_default),
		    hdrs, n, &ctx);
	}
	trace_extract(conf_default, hdrs, n, &tr);
	trace_req_default_decision(&tr, size & 1);
	(void)trace_inject(conf_default, &tr, &sink);
	(void)trace_response_headers(conf_default, &tr, &sink);
	trace_extract(conf_all, hdrs, n, &tr);
	trace_req_default_decision(&tr, 1);
	(void)trace_inject(conf_all, &tr, &sink);
	for (i = 0; i < n; i++) {
		free(names[i]);
		free(values[i]);
	}
	fuzz_sink = total;	/* keeps the byte walk from being optimised out */
	return 0;
}
