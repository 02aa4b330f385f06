/*
 * trace_datadog.c: Datadog's x-datadog-* headers.
 * https://docs.datadoghq.com/tracing/trace_collection/trace_context_propagation/
 * ("Datadog format"); checks as dd-trace-cpp extraction_util.cpp.
 * Ids are decimal uint64; the high 64 bits of a 128-bit trace id travel as
 * _dd.p.tid (16 hex) in x-datadog-tags.
 */
#include <string.h>

#include "trace.h"

/* dd-trace caps x-datadog-tags at 512 bytes by default */
#define DD_TAGS_MAX 512

/* Signed decimal sampling priority; 0 / -1. */
static int
parse_priority(const char *s, size_t n, int *out)
{
	uint64_t v;
	int neg = 0;

	if (n > 0 && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		s++;
		n--;
	}
	if (trace_dec_u64(s, n, &v) == -1 || v > 1000000)
		return -1;
	*out = neg ? -(int)v : (int)v;
	return 0;
}

/* _dd.p.tid from the tags: exactly 16 lowercase hex; else ignored. */
static void
parse_tid(const char *s, size_t n, uint8_t hi[8])
{
	const char *p = s, *end = s + n, *m;
	size_t mlen;

	if (n > DD_TAGS_MAX)
		return;
	while (trace_list_next(&p, end, 0, &m, &mlen)) {
		if (mlen == 10 + 16 && memcmp(m, "_dd.p.tid=", 10) == 0) {
			if (trace_hex_decode(m + 10, 16, 1, hi, 8) == -1)
				memset(hi, 0, 8);
			return;
		}
	}
}

static int
dd_extract(const void *arg, const struct tb_hdr *hdrs, size_t n,
    struct tb_trace_ctx *out)
{
	const char *tid, *pid, *prio, *tags, *origin;
	size_t tl = 0, pl = 0, rl = 0, gl = 0, ol = 0;
	uint64_t lo;
	int priority;

	(void)arg;
	tid = TRACE_VALUE(hdrs, n, "x-datadog-trace-id", &tl);
	pid = TRACE_VALUE(hdrs, n, "x-datadog-parent-id", &pl);
	prio = TRACE_VALUE(hdrs, n, "x-datadog-sampling-priority", &rl);
	tags = TRACE_VALUE(hdrs, n, "x-datadog-tags", &gl);
	origin = TRACE_VALUE(hdrs, n, "x-datadog-origin", &ol);
	if (tid == NULL)
		return pid || prio ? -1 : 0;
	/* decimal uint64, no overflow, not zero */
	if (trace_dec_u64(tid, tl, &lo) == -1 || lo == 0)
		return -1;
	memset(out->trace_id, 0, 8);
	trace_put_be64(out->trace_id + 8, lo);
	if (tags != NULL)
		parse_tid(tags, gl, out->trace_id);
	out->has_trace_id = 1;
	if (pid != NULL) {
		if (trace_dec_u64(pid, pl, &out->span_id) == -1)
			return -1;
		out->has_span_id = out->span_id != 0;
	}
	/* no parent is an error unless an origin (e.g. synthetics) says why
	 * (dd-trace-cpp MISSING_PARENT_SPAN_ID) */
	if (!out->has_span_id && origin == NULL)
		return -1;
	if (prio != NULL) {
		if (parse_priority(prio, rl, &priority) == -1)
			return -1;
		out->sampled = priority > 0 ? TRACE_SAMPLED_YES :
		    TRACE_SAMPLED_NO;
	}
	return 1;
}

static int
dd_inject(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char num[20], tags[10 + 16];
	size_t len;

	(void)arg;
	len = trace_dec_encode(trace_be64(tr->ctx.trace_id + 8), num);
	if (trace_emit(out, "x-datadog-trace-id", num, len) == -1)
		return -1;
	len = trace_dec_encode(tr->span_id, num);
	if (trace_emit(out, "x-datadog-parent-id", num, len) == -1)
		return -1;
	/* 2 = USER_KEEP for debug, 1 = AUTO_KEEP, 0 = AUTO_REJECT */
	if (trace_emit(out, "x-datadog-sampling-priority",
	    tr->sampled != 1 ? "0" : tr->debug ? "2" : "1", 1) == -1)
		return -1;
	if (trace_be64(tr->ctx.trace_id) != 0) {
		memcpy(tags, "_dd.p.tid=", 10);
		trace_hex_encode(tr->ctx.trace_id, 8, tags + 10);
		if (trace_emit(out, "x-datadog-tags", tags, sizeof(tags)) == -1)
			return -1;
	}
	return 0;
}

static int
dd_owns(const struct tb_hdr *h)
{
	return TRACE_NAME_HAS_PREFIX(h, "x-datadog-");
}

const struct trace_codec trace_codec_datadog = {
	.name = "datadog",
	.id = TRACE_F_DATADOG,
	.extract = dd_extract,
	.inject = dd_inject,
	.owns_header = dd_owns,
};
