/*
 * trace_jaeger.c: Jaeger's uber-trace-id, jaeger-debug-id and uberctx-*
 * baggage. https://www.jaegertracing.io/sdk-migration/#propagation-format
 * ("Propagation Format"; jaeger-client-go propagation.go for the details).
 */
#include <string.h>

#include "trace.h"

/* uber-trace-id longer than this is not {32}:{16}:{16}:{2} even encoded */
#define UBER_MAX 200

/*
 * URL-decode (jaeger-client-go decodeValue: url.QueryUnescape) v into buf;
 * returns the length or -1 on a bad escape.
 */
static int
url_decode(const char *v, size_t n, char *buf)
{
	size_t i, o = 0;
	uint8_t b;

	for (i = 0; i < n; i++) {
		if (v[i] == '%') {
			if (i + 2 >= n)
				return -1;
			if (trace_hex_decode(v + i + 1, 2, 0, &b, 1) == -1)
				return -1;
			buf[o++] = (char)b;
			i += 2;
		} else if (v[i] == '+') {
			buf[o++] = ' ';
		} else {
			buf[o++] = v[i];
		}
	}
	return (int)o;
}

static int
jaeger_extract(const void *arg, const struct tb_hdr *hdrs, size_t n,
    struct tb_trace_ctx *out)
{
	char buf[UBER_MAX];
	const char *v, *f[4];
	size_t vlen, fl[4], nf = 0, i, start = 0;
	uint64_t parent, flags;
	int idx, len;

	(void)arg;
	if ((idx = TRACE_FIND(hdrs, n, 0, "uber-trace-id")) < 0) {
		/* 'jaeger-debug-id' alone: the caller forces a debug trace */
		if (TRACE_FIND(hdrs, n, 0, "jaeger-debug-id") >= 0) {
			out->sampled = TRACE_SAMPLED_YES;
			out->debug = 1;
			return 1;
		}
		return 0;
	}
	trace_hdr_trim(&hdrs[idx], &v, &vlen);
	if (vlen > UBER_MAX || (len = url_decode(v, vlen, buf)) < 0)
		return -1;
	for (i = 0; i <= (size_t)len; i++) {
		if (i == (size_t)len || buf[i] == ':') {
			if (nf == 4)
				return -1;	/* exactly four fields */
			f[nf] = buf + start;
			fl[nf++] = i - start;
			start = i + 1;
		}
	}
	if (nf != 4)
		return -1;
	/* ids may have lost leading zeros: left-pad; 0 is not an id */
	if (trace_hex_id128(f[0], fl[0], 0, out->trace_id) == -1 ||
	    trace_id_is_zero(out->trace_id))
		return -1;
	if (trace_hex_u64(f[1], fl[1], 0, &out->span_id) == -1 ||
	    out->span_id == 0)
		return -1;
	/* {parent-span-id} is deprecated and ignored, but must be hex */
	if (trace_hex_u64(f[2], fl[2], 0, &parent) == -1)
		return -1;
	if (fl[3] > 2 || trace_hex_u64(f[3], fl[3], 0, &flags) == -1)
		return -1;
	out->has_trace_id = out->has_span_id = 1;
	out->sampled = (flags & 1) ? TRACE_SAMPLED_YES : TRACE_SAMPLED_NO;
	/* debug (0x02) counts only together with sampled */
	out->debug = (flags & 3) == 3;
	return 1;
}

static int
jaeger_inject(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char v[32 + 1 + 16 + 3 + 1];
	uint8_t span[8];

	(void)arg;
	trace_hex_encode(tr->ctx.trace_id, 16, v);
	v[32] = ':';
	trace_put_be64(span, tr->span_id);
	trace_hex_encode(span, 8, v + 33);
	memcpy(v + 49, ":0:", 3);
	v[52] = tr->sampled != 1 ? '0' : tr->debug ? '3' : '1';
	if (trace_emit(out, "uber-trace-id", v, sizeof(v)) == -1)
		return -1;
	return trace_baggage_emit(&tr->ctx, "uberctx-", out);
}

static int
jaeger_owns(const struct tb_hdr *h)
{
	return TRACE_NAME_IS(h, "uber-trace-id") ||
	    TRACE_NAME_IS(h, "jaeger-debug-id") ||
	    TRACE_NAME_HAS_PREFIX(h, "uberctx-");
}

const struct trace_codec trace_codec_jaeger = {
	.name = "jaeger",
	.id = TRACE_F_JAEGER,
	.extract = jaeger_extract,
	.inject = jaeger_inject,
	.owns_header = jaeger_owns,
};
