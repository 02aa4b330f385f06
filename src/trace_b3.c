/*
 * trace_b3.c: Zipkin B3, the single "b3" header and the X-B3-* headers.
 * https://github.com/openzipkin/b3-propagation (README sections cited).
 * Two codecs share the reader: "b3" injects the single header (what the
 * OpenTelemetry B3 propagator sends by default), "b3multi" the X-B3-* set.
 */
#include <string.h>

#include "trace.h"

/* 'TraceId': 16 or 32 lower-hex, not all zero */
static int
b3_trace_id(const char *s, size_t n, uint8_t id[16])
{
	if ((n != 16 && n != 32) || trace_hex_id128(s, n, 1, id) == -1 ||
	    trace_id_is_zero(id))
		return -1;
	return 0;
}

/* 'SpanId' / 'ParentSpanId': 16 lower-hex, not zero */
static int
b3_span_id(const char *s, size_t n, uint64_t *id)
{
	if (n != 16 || trace_hex_u64(s, n, 1, id) == -1 || *id == 0)
		return -1;
	return 0;
}

/* Sampling state char of the single header: 0, 1 or d. */
static int
b3_state(char c, struct tb_trace_ctx *out)
{
	switch (c) {
	case '0':
		out->sampled = TRACE_SAMPLED_NO;
		return 0;
	case '1':
		out->sampled = TRACE_SAMPLED_YES;
		return 0;
	case 'd':
		out->sampled = TRACE_SAMPLED_YES;	/* debug implies accept */
		out->debug = 1;
		return 0;
	}
	return -1;
}

/*
 * 'Single Header': b3={TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]
 * or the sampling state alone. 0 / -1.
 */
static int
parse_single(const char *v, size_t n, struct tb_trace_ctx *out)
{
	const char *f[5];
	size_t fl[5], nf = 0, i, start = 0;
	uint64_t parent;

	if (n == 1)
		return b3_state(v[0], out);	/* decision only, new ids */
	for (i = 0; i <= n; i++) {
		if (i == n || v[i] == '-') {
			if (nf == 4)
				return -1;	/* more than 4 fields */
			f[nf] = v + start;
			fl[nf++] = i - start;
			start = i + 1;
		}
	}
	if (nf < 2 || b3_trace_id(f[0], fl[0], out->trace_id) == -1 ||
	    b3_span_id(f[1], fl[1], &out->span_id) == -1)
		return -1;
	if (nf >= 3 && (fl[2] != 1 || b3_state(f[2][0], out) == -1))
		return -1;
	if (nf == 4 && b3_span_id(f[3], fl[3], &parent) == -1)
		return -1;
	out->has_trace_id = out->has_span_id = 1;
	return 0;
}

/* 'Multiple Headers' (the first value of each wins). 1 / 0 / -1. */
static int
parse_multi(const struct tb_hdr *hdrs, size_t n, struct tb_trace_ctx *out)
{
	const char *tid, *sid, *pid, *smp, *flg;
	size_t tl = 0, sl = 0, pl = 0, ml = 0, fl = 0;
	uint64_t parent;

	tid = TRACE_VALUE(hdrs, n, "x-b3-traceid", &tl);
	sid = TRACE_VALUE(hdrs, n, "x-b3-spanid", &sl);
	pid = TRACE_VALUE(hdrs, n, "x-b3-parentspanid", &pl);
	smp = TRACE_VALUE(hdrs, n, "x-b3-sampled", &ml);
	flg = TRACE_VALUE(hdrs, n, "x-b3-flags", &fl);
	if (!tid && !sid && !pid && !smp && !flg)
		return 0;
	if (smp != NULL) {
		/* '1'/'0'; 'true'/'false' from old tracers (lenient) */
		if ((ml == 1 && smp[0] == '1') || (ml == 4 &&
		    memcmp(smp, "true", 4) == 0))
			out->sampled = TRACE_SAMPLED_YES;
		else if ((ml == 1 && smp[0] == '0') || (ml == 5 &&
		    memcmp(smp, "false", 5) == 0))
			out->sampled = TRACE_SAMPLED_NO;
		else
			return -1;
	}
	/* 'Debug Flag': 1 = debug, which implies accept */
	if (flg != NULL && fl == 1 && flg[0] == '1') {
		out->debug = 1;
		out->sampled = TRACE_SAMPLED_YES;
	}
	if (tid == NULL && sid == NULL && pid == NULL)
		return smp || out->debug ? 1 : -1;	/* decision only */
	if (tid == NULL || sid == NULL)
		return -1;	/* SpanId required unless only sampling */
	if (b3_trace_id(tid, tl, out->trace_id) == -1 ||
	    b3_span_id(sid, sl, &out->span_id) == -1)
		return -1;
	if (pid != NULL && b3_span_id(pid, pl, &parent) == -1)
		return -1;
	out->has_trace_id = out->has_span_id = 1;
	return 1;
}

static int
b3_extract(const void *arg, const struct tb_hdr *hdrs, size_t n,
    struct tb_trace_ctx *out)
{
	const char *v;
	size_t len;
	int r;

	(void)arg;
	/* 'Http Encodings': single takes precedence over multiple, when it
	 * parses (brave falls back to X-B3-* otherwise) */
	if ((v = TRACE_VALUE(hdrs, n, "b3", &len)) != NULL) {
		if (parse_single(v, len, out) == 0)
			return 1;
		out->sampled = TRACE_SAMPLED_DEFER;
		out->debug = 0;
		out->has_trace_id = out->has_span_id = 0;
		r = parse_multi(hdrs, n, out);
		return r == 1 ? 1 : -1;
	}
	return parse_multi(hdrs, n, out);
}

static int
b3_inject_single(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char v[32 + 1 + 16 + 2];
	uint8_t span[8];

	(void)arg;
	trace_hex_encode(tr->ctx.trace_id, 16, v);
	v[32] = '-';
	trace_put_be64(span, tr->span_id);
	trace_hex_encode(span, 8, v + 33);
	v[49] = '-';
	v[50] = tr->sampled != 1 ? '0' : tr->debug ? 'd' : '1';
	return trace_emit(out, "b3", v, sizeof(v));
}

static int
b3_inject_multi(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char tid[32], sid[16];
	uint8_t span[8];

	(void)arg;
	trace_hex_encode(tr->ctx.trace_id, 16, tid);
	trace_put_be64(span, tr->span_id);
	trace_hex_encode(span, 8, sid);
	if (trace_emit(out, "X-B3-TraceId", tid, 32) == -1 ||
	    trace_emit(out, "X-B3-SpanId", sid, 16) == -1)
		return -1;
	/* 'Debug Flag': Flags: 1 is sent instead of Sampled */
	if (tr->sampled == 1 && tr->debug)
		return trace_emit(out, "X-B3-Flags", "1", 1);
	return trace_emit(out, "X-B3-Sampled", tr->sampled == 1 ? "1" : "0", 1);
}

static int
b3_owns(const struct tb_hdr *h)
{
	return TRACE_NAME_IS(h, "b3") || TRACE_NAME_HAS_PREFIX(h, "x-b3-");
}

const struct trace_codec trace_codec_b3 = {
	.name = "b3",
	.id = TRACE_F_B3,
	.extract = b3_extract,
	.inject = b3_inject_single,
	.owns_header = b3_owns,
};

const struct trace_codec trace_codec_b3multi = {
	.name = "b3multi",
	.id = TRACE_F_B3MULTI,
	.extract = b3_extract,
	.inject = b3_inject_multi,
	.owns_header = b3_owns,
};
