/*
 * trace_gcp.c: Google Cloud Trace's legacy X-Cloud-Trace-Context
 * "TRACE_ID/SPAN_ID;o=OPTIONS" (https://cloud.google.com/trace/docs/trace-context).
 * SPAN_ID is decimal; App Engine's TraceContextHelper also takes TRACE_ID
 * alone and TRACE_ID;o=N, so the span and options parts are optional.
 */
#include <string.h>

#include "trace.h"

static int
gcp_extract(const void *arg, const struct tb_hdr *hdrs, size_t n,
    struct tb_trace_ctx *out)
{
	const char *v, *semi, *slash;
	size_t vlen, tlen;
	uint64_t opt;
	int idx;

	(void)arg;
	if ((idx = TRACE_FIND(hdrs, n, 0, "x-cloud-trace-context")) < 0)
		return 0;
	trace_hdr_trim(&hdrs[idx], &v, &vlen);
	semi = memchr(v, ';', vlen);
	if (semi != NULL) {
		/* ";o=" then decimal options: bit 0 = sampled */
		size_t ol = vlen - (size_t)(semi - v) - 1;

		if (ol < 3 || semi[1] != 'o' || semi[2] != '=' ||
		    trace_dec_u64(semi + 3, ol - 2, &opt) == -1)
			return -1;
		out->sampled = (opt & 1) ? TRACE_SAMPLED_YES : TRACE_SAMPLED_NO;
		vlen = (size_t)(semi - v);
	}
	slash = memchr(v, '/', vlen);
	tlen = slash ? (size_t)(slash - v) : vlen;
	if (tlen != 32 || trace_hex_decode(v, 32, 0, out->trace_id, 16) == -1 ||
	    trace_id_is_zero(out->trace_id))
		return -1;
	out->has_trace_id = 1;
	if (slash != NULL) {
		if (trace_dec_u64(slash + 1, vlen - tlen - 1, &out->span_id) == -1)
			return -1;
		/* 0 is INVALID_SPAN_ID, App Engine's "no span" */
		out->has_span_id = out->span_id != 0;
	}
	return 1;
}

static int
gcp_inject(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char v[32 + 1 + 20 + 4];
	size_t len;

	(void)arg;
	trace_hex_encode(tr->ctx.trace_id, 16, v);
	v[32] = '/';
	len = 33 + trace_dec_encode(tr->span_id, v + 33);
	memcpy(v + len, ";o=", 3);
	len += 3;
	v[len++] = tr->sampled == 1 ? '1' : '0';
	return trace_emit(out, "X-Cloud-Trace-Context", v, len);
}

static int
gcp_owns(const struct tb_hdr *h)
{
	return TRACE_NAME_IS(h, "x-cloud-trace-context");
}

const struct trace_codec trace_codec_gcp = {
	.name = "gcp",
	.id = TRACE_F_GCP,
	.extract = gcp_extract,
	.inject = gcp_inject,
	.owns_header = gcp_owns,
};
