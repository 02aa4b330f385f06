/*
 * trace_ot.c: the OpenTracing basictracer headers ot-tracer-traceid,
 * -spanid, -sampled and ot-baggage-* (basictracer-go propagation_ot.go;
 * OpenTelemetry's OT Trace propagator adds 128-bit trace ids).
 */
#include <string.h>

#include "trace.h"

/* Go's strconv.ParseBool, which basictracer-go uses. 0 / -1. */
static int
parse_bool(const char *s, size_t n, int *out)
{
	static const char *const t[] = { "1", "t", "T", "true", "TRUE", "True" };
	static const char *const f[] = { "0", "f", "F", "false", "FALSE",
	    "False" };
	size_t i;

	for (i = 0; i < 6; i++) {
		if (strlen(t[i]) == n && memcmp(t[i], s, n) == 0) {
			*out = 1;
			return 0;
		}
		if (strlen(f[i]) == n && memcmp(f[i], s, n) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static int
ot_extract(const void *arg, const struct tb_hdr *hdrs, size_t n,
    struct tb_trace_ctx *out)
{
	const char *tid, *sid, *smp;
	size_t tl = 0, sl = 0, ml = 0;
	int sampled;

	(void)arg;
	tid = TRACE_VALUE(hdrs, n, "ot-tracer-traceid", &tl);
	sid = TRACE_VALUE(hdrs, n, "ot-tracer-spanid", &sl);
	smp = TRACE_VALUE(hdrs, n, "ot-tracer-sampled", &ml);
	if (!tid && !sid && !smp)
		return 0;
	/* trace id, span id (and sampled) travel together; basictracer
	 * writes ids with FormatUint(id, 16): no zero padding, left-pad */
	if (tid == NULL || sid == NULL)
		return -1;
	if (trace_hex_id128(tid, tl, 0, out->trace_id) == -1 ||
	    trace_id_is_zero(out->trace_id))
		return -1;
	if (trace_hex_u64(sid, sl, 0, &out->span_id) == -1 ||
	    out->span_id == 0)
		return -1;
	if (smp != NULL) {
		if (parse_bool(smp, ml, &sampled) == -1)
			return -1;
		out->sampled = sampled ? TRACE_SAMPLED_YES : TRACE_SAMPLED_NO;
	}
	out->has_trace_id = out->has_span_id = 1;
	return 1;
}

static int
ot_inject(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char tid[32], sid[16];
	uint8_t span[8];
	int wide;

	(void)arg;
	/* 16 hex when the id fits in 64 bits: what basictracer reads */
	wide = trace_be64(tr->ctx.trace_id) != 0;
	trace_hex_encode(tr->ctx.trace_id + (wide ? 0 : 8), wide ? 16 : 8, tid);
	trace_put_be64(span, tr->span_id);
	trace_hex_encode(span, 8, sid);
	if (trace_emit(out, "ot-tracer-traceid", tid, wide ? 32 : 16) == -1 ||
	    trace_emit(out, "ot-tracer-spanid", sid, 16) == -1 ||
	    trace_emit(out, "ot-tracer-sampled", tr->sampled == 1 ? "true" :
	    "false", tr->sampled == 1 ? 4 : 5) == -1)
		return -1;
	return trace_baggage_emit(&tr->ctx, "ot-baggage-", out);
}

static int
ot_owns(const struct tb_hdr *h)
{
	return TRACE_NAME_HAS_PREFIX(h, "ot-tracer-") ||
	    TRACE_NAME_HAS_PREFIX(h, "ot-baggage-");
}

const struct trace_codec trace_codec_ot = {
	.name = "ot",
	.id = TRACE_F_OT,
	.extract = ot_extract,
	.inject = ot_inject,
	.owns_header = ot_owns,
};
