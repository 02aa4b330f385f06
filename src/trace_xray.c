/*
 * trace_xray.c: AWS X-Ray X-Amzn-Trace-Id.
 * https://docs.aws.amazon.com/xray/latest/devguide/xray-concepts.html
 * ("Tracing header"); trace id format from xray-api-sendingdata.html.
 * Root=1-{8 hex epoch}-{24 hex} maps to the 128-bit id epoch||unique, as
 * the OpenTelemetry X-Ray propagator does.
 */
#include <string.h>

#include "trace.h"

static int
xray_extract(const void *arg, const struct tb_hdr *hdrs, size_t n,
    struct tb_trace_ctx *out)
{
	const char *v, *p, *end, *s, *eq, *val;
	size_t vlen, plen, klen, vl;
	int idx, have_root = 0;

	(void)arg;
	if ((idx = TRACE_FIND(hdrs, n, 0, "x-amzn-trace-id")) < 0)
		return 0;
	trace_hdr_trim(&hdrs[idx], &v, &vlen);
	p = v;
	end = v + vlen;
	/* ';'-separated key=value pairs, any order, spaces around trimmed
	 * (aws-xray-sdk-go header.FromString); keys are case-sensitive and
	 * unknown ones (Self, Lineage, application fields) ignored */
	while (p < end) {
		s = p;
		p = memchr(p, ';', (size_t)(end - p));
		if (p == NULL)
			p = end;
		plen = (size_t)(p - s);
		if (p < end)
			p++;
		while (plen > 0 && *s == ' ') {
			s++;
			plen--;
		}
		while (plen > 0 && s[plen - 1] == ' ')
			plen--;
		if ((eq = memchr(s, '=', plen)) == NULL)
			continue;
		klen = (size_t)(eq - s);
		val = eq + 1;
		vl = plen - klen - 1;
		if (klen == 4 && memcmp(s, "Root", 4) == 0) {
			/* 1-{8 hex}-{24 hex}: version 1 only */
			if (vl != 35 || val[0] != '1' || val[1] != '-' ||
			    val[10] != '-' ||
			    trace_hex_decode(val + 2, 8, 1, out->trace_id, 4) == -1 ||
			    trace_hex_decode(val + 11, 24, 1, out->trace_id + 4,
			    12) == -1 || trace_id_is_zero(out->trace_id))
				return -1;
			have_root = 1;
		} else if (klen == 6 && memcmp(s, "Parent", 6) == 0) {
			if (vl != 16 || trace_hex_u64(val, vl, 1,
			    &out->span_id) == -1 || out->span_id == 0)
				return -1;
			out->has_span_id = 1;
		} else if (klen == 7 && memcmp(s, "Sampled", 7) == 0) {
			/* strict: 0, 1 or ? (requested: decided downstream) */
			if (vl != 1)
				return -1;
			if (val[0] == '1')
				out->sampled = TRACE_SAMPLED_YES;
			else if (val[0] == '0')
				out->sampled = TRACE_SAMPLED_NO;
			else if (val[0] == '?')
				out->sampled = TRACE_SAMPLED_DEFER;
			else
				return -1;
		}
	}
	if (!have_root)
		return -1;
	out->has_trace_id = 1;
	return 1;
}

static int
xray_inject(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	/* Root=1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy;Parent=z{16};Sampled=b */
	char v[5 + 35 + 8 + 16 + 9 + 1];
	uint8_t span[8];
	char *p = v;

	(void)arg;
	memcpy(p, "Root=1-", 7);
	p += 7;
	trace_hex_encode(tr->ctx.trace_id, 4, p);
	p += 8;
	*p++ = '-';
	trace_hex_encode(tr->ctx.trace_id + 4, 12, p);
	p += 24;
	memcpy(p, ";Parent=", 8);
	p += 8;
	trace_put_be64(span, tr->span_id);
	trace_hex_encode(span, 8, p);
	p += 16;
	memcpy(p, ";Sampled=", 9);
	p += 9;
	*p++ = tr->sampled == 1 ? '1' : '0';
	return trace_emit(out, "X-Amzn-Trace-Id", v, (size_t)(p - v));
}

static int
xray_owns(const struct tb_hdr *h)
{
	return TRACE_NAME_IS(h, "x-amzn-trace-id");
}

const struct trace_codec trace_codec_xray = {
	.name = "xray",
	.id = TRACE_F_XRAY,
	.extract = xray_extract,
	.inject = xray_inject,
	.owns_header = xray_owns,
};
