/*
 * trace_w3c.c: W3C Trace Context Level 2 (traceparent, tracestate).
 * https://www.w3.org/TR/trace-context-2/ ; section names cited below.
 */
#include <string.h>

#include "trace.h"

/* traceparent "00-" 32 "-" 16 "-" 2: 'version-format' */
#define TP_LEN 55

static int
lchex2(const char *s, unsigned *out)
{
	uint8_t b;

	if (trace_hex_decode(s, 2, 1, &b, 1) == -1)
		return -1;
	*out = b;
	return 0;
}

/*
 * Parse one traceparent value into out. 0 / -1. 'Versioning of
 * traceparent': version ff is invalid; 00 is exactly 55 chars; a higher
 * version is read with the 00 layout and must be exactly 55 chars or go on
 * with '-'.
 */
static int
parse_traceparent(const char *v, size_t len, struct tb_trace_ctx *out)
{
	unsigned version, flags;
	uint8_t parent[8];

	if (len < TP_LEN || lchex2(v, &version) == -1 || version == 0xff)
		return -1;
	if (version == 0 && len != TP_LEN)
		return -1;
	if (len > TP_LEN && v[TP_LEN] != '-')
		return -1;
	if (v[2] != '-' || v[35] != '-' || v[52] != '-')
		return -1;
	/* trace-id / parent-id: lowercase hex only, all-zero invalid */
	if (trace_hex_decode(v + 3, 32, 1, out->trace_id, 16) == -1 ||
	    trace_id_is_zero(out->trace_id))
		return -1;
	if (trace_hex_decode(v + 36, 16, 1, parent, 8) == -1)
		return -1;
	out->span_id = trace_be64(parent);
	if (out->span_id == 0 || lchex2(v + 53, &flags) == -1)
		return -1;
	out->has_trace_id = out->has_span_id = 1;
	/* 'trace-flags': test the bits; unknown ones are ignored */
	out->sampled = (flags & 0x01) ? TRACE_SAMPLED_YES : TRACE_SAMPLED_NO;
	out->random = (flags & 0x02) ? 1 : 0;
	return 0;
}

/* tracestate 'Key': (lcalpha / DIGIT) 0*255(keychar) */
static int
ts_key_ok(const char *k, size_t n)
{
	size_t i;
	char c;

	if (n == 0 || n > 256)
		return 0;
	for (i = 0; i < n; i++) {
		c = k[i];
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (i == 0 || (c != '_' && c != '-' && c != '*' && c != '/' &&
		    c != '@'))
			return 0;
	}
	return 1;
}

/* tracestate 'Value': 0*255(chr) nblk-chr; chr = SP / nblk-chr;
 * nblk-chr = %x21-2B / %x2D-3C / %x3E-7E */
static int
ts_value_ok(const char *v, size_t n)
{
	size_t i;
	unsigned char c;

	if (n == 0 || n > 256 || v[n - 1] == ' ')
		return 0;
	for (i = 0; i < n; i++) {
		c = (unsigned char)v[i];
		if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
			return 0;
	}
	return 1;
}

struct ts_member {
	const char *key;
	size_t klen;
	const char *val;
	size_t vlen;
};

/*
 * Combine every tracestate field (RFC 9110 5.3, in order) into
 * out->tracestate. Any invalid member or more than 32 distinct keys drops
 * the whole header (the list ABNF no longer matches; W3C test.py strict
 * mode). A repeated key keeps its first occurrence and drops the later
 * ones, order preserved: 'Combined Header Value' allows one entry per key,
 * the leftmost being the latest position, and 'Mutating the tracestate
 * Field' lets a vendor delete entries. (W3C test.py strict mode discards
 * the whole header; the later suite port, system-tests
 * test_tracestate_duplicated_keys, wants it inherited with one of the
 * values: dropping a whole vendor list for one repeat loses every other
 * vendor's position.) Over TRACE_TRACESTATE_MAX, whole members are cut
 * from the end, those over 128 chars first ('tracestate Limits').
 */
static void
parse_tracestate(const struct tb_hdr *hdrs, size_t n, struct tb_trace_ctx *out)
{
	struct ts_member m[TRACE_TRACESTATE_MEMBERS], cand;
	size_t nm = 0, i, j, vlen, mlen, total = 0, pos;
	const char *v, *p, *end, *s, *eq;
	int keep[TRACE_TRACESTATE_MEMBERS];

	out->tracestate_len = 0;
	out->tracestate[0] = '\0';
	for (i = 0; i < n; i++) {
		if (!TRACE_NAME_IS(&hdrs[i], "tracestate"))
			continue;
		trace_hdr_trim(&hdrs[i], &v, &vlen);
		p = v;
		end = v + vlen;
		while (trace_list_next(&p, end, 1, &s, &mlen)) {
			if (mlen == 0)
				continue;	/* empty list-members are allowed */
			if ((eq = memchr(s, '=', mlen)) == NULL)
				return;
			cand.key = s;
			cand.klen = (size_t)(eq - s);
			cand.val = eq + 1;
			cand.vlen = mlen - cand.klen - 1;
			if (!ts_key_ok(cand.key, cand.klen) ||
			    !ts_value_ok(cand.val, cand.vlen))
				return;
			for (j = 0; j < nm; j++)
				if (m[j].klen == cand.klen && memcmp(m[j].key,
				    cand.key, cand.klen) == 0)
					break;
			if (j < nm)
				continue;	/* repeated key: the first stays */
			if (nm == TRACE_TRACESTATE_MEMBERS)
				return;		/* 33rd distinct key */
			m[nm] = cand;
			total += m[nm].klen + 1 + m[nm].vlen + (nm > 0);
			nm++;
		}
	}
	for (j = 0; j < nm; j++)
		keep[j] = 1;
	/* 'tracestate Limits': drop > 128-char entries first, from the end */
	for (j = nm; j-- > 0 && total > TRACE_TRACESTATE_MAX;) {
		if (m[j].klen + 1 + m[j].vlen > 128) {
			keep[j] = 0;
			total -= m[j].klen + 2 + m[j].vlen;
		}
	}
	for (j = nm; j-- > 0 && total > TRACE_TRACESTATE_MAX;) {
		if (keep[j]) {
			keep[j] = 0;
			total -= m[j].klen + 2 + m[j].vlen;
		}
	}
	pos = 0;
	for (j = 0; j < nm; j++) {
		if (!keep[j])
			continue;
		if (pos > 0)
			out->tracestate[pos++] = ',';
		memcpy(out->tracestate + pos, m[j].key, m[j].klen);
		pos += m[j].klen;
		out->tracestate[pos++] = '=';
		memcpy(out->tracestate + pos, m[j].val, m[j].vlen);
		pos += m[j].vlen;
	}
	out->tracestate[pos] = '\0';
	out->tracestate_len = pos;
}

static int
w3c_extract(const void *arg, const struct tb_hdr *hdrs, size_t n,
    struct tb_trace_ctx *out)
{
	const char *v;
	size_t vlen;
	int i, j;

	(void)arg;
	i = TRACE_FIND(hdrs, n, 0, "traceparent");
	if (i < 0) {
		/* 'No traceparent Received': a lone tracestate is invalid */
		return TRACE_FIND(hdrs, n, 0, "tracestate") < 0 ? 0 : -1;
	}
	/* a single-value field: two of them mean start over */
	j = TRACE_FIND(hdrs, n, (size_t)i + 1, "traceparent");
	if (j >= 0)
		return -1;
	trace_hdr_trim(&hdrs[i], &v, &vlen);
	if (parse_traceparent(v, vlen, out) == -1)
		return -1;	/* and tracestate MUST NOT be parsed */
	parse_tracestate(hdrs, n, out);
	return 1;
}

static int
w3c_inject(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char tp[TP_LEN];
	uint8_t span[8];
	unsigned flags;

	(void)arg;
	flags = (tr->sampled == 1 ? 0x01u : 0) | (tr->ctx.random ? 0x02u : 0);
	memcpy(tp, "00-", 3);
	trace_hex_encode(tr->ctx.trace_id, 16, tp + 3);
	tp[35] = '-';
	trace_put_be64(span, tr->span_id);
	trace_hex_encode(span, 8, tp + 36);
	tp[52] = '-';
	tp[53] = '0';
	tp[54] = (char)('0' + flags);
	if (trace_emit(out, "traceparent", tp, sizeof(tp)) == -1)
		return -1;
	if (tr->ctx.tracestate_len > 0 && trace_emit(out, "tracestate",
	    tr->ctx.tracestate, tr->ctx.tracestate_len) == -1)
		return -1;
	return 0;
}

static int
w3c_owns(const struct tb_hdr *h)
{
	return TRACE_NAME_IS(h, "traceparent") || TRACE_NAME_IS(h, "tracestate");
}

const struct trace_codec trace_codec_w3c = {
	.name = "w3c",
	.id = TRACE_F_W3C,
	.extract = w3c_extract,
	.inject = w3c_inject,
	.owns_header = w3c_owns,
};
