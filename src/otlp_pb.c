/*
 * otlp_pb.c: ExportTraceServiceRequest in protobuf, by hand (otlp.h).
 *
 * Field numbers are those of opentelemetry-proto v1 (trace/v1/trace.proto,
 * common/v1/common.proto, resource/v1/resource.proto). Nested messages are
 * written in place and their length inserted in front afterwards
 * (pb_open / pb_close): the memmove of a few hundred bytes is cheaper than
 * computing every size twice, and keeps one code path.
 */
#include <stdlib.h>
#include <string.h>

#include "otlp.h"
#include "span.h"

/* wire types */
#define WT_VARINT	0
#define WT_I64		1
#define WT_LEN		2

size_t
otlp_pb_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

static int
pb_varint(struct span_buf *b, uint64_t v)
{
	uint8_t tmp[10];

	return span_buf_add(b, tmp, otlp_pb_varint(tmp, v));
}

static int
pb_tag(struct span_buf *b, unsigned field, unsigned wt)
{
	return pb_varint(b, (uint64_t)field << 3 | wt);
}

static int
pb_bytes(struct span_buf *b, unsigned field, const void *p, size_t n)
{
	if (pb_tag(b, field, WT_LEN) < 0 || pb_varint(b, n) < 0)
		return -1;
	return span_buf_add(b, p, n);
}

static int
pb_str(struct span_buf *b, unsigned field, const char *s)
{
	return pb_bytes(b, field, s, strlen(s));
}

static int
pb_fixed64(struct span_buf *b, unsigned field, uint64_t v)
{
	uint8_t le[8];
	int i;

	for (i = 0; i < 8; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	if (pb_tag(b, field, WT_I64) < 0)
		return -1;
	return span_buf_add(b, le, 8);
}

static int
pb_uint(struct span_buf *b, unsigned field, uint64_t v)
{
	if (pb_tag(b, field, WT_VARINT) < 0)
		return -1;
	return pb_varint(b, v);
}

/* Start a nested message of field: returns where its body starts, or
 * (size_t)-1. */
static size_t
pb_open(struct span_buf *b, unsigned field)
{
	if (pb_tag(b, field, WT_LEN) < 0)
		return (size_t)-1;
	return b->len;
}

/* End the message opened at off: insert its length before its body. */
static int
pb_close(struct span_buf *b, size_t off)
{
	uint8_t tmp[10];
	size_t n, body;

	if (off == (size_t)-1)
		return -1;
	body = b->len - off;
	n = otlp_pb_varint(tmp, body);
	if (span_buf_add(b, tmp, n) < 0)	/* room for the length */
		return -1;
	memmove(b->p + off + n, b->p + off, body);
	memcpy(b->p + off, tmp, n);
	return 0;
}

/* Length of the valid UTF-8 sequence at s[0..n) (RFC 3629: no overlong
 * forms, no surrogates, at most U+10FFFF), 0 when there is none. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/*
 * A proto3 string field: its bytes must be UTF-8, or a collector's
 * decoder (Go's, the OpenTelemetry Collector's) refuses the whole request.
 * A raw query or User-Agent may hold any byte: each one that is not part of
 * a valid sequence is sent as U+FFFD, as the JSON encoding does.
 */
static int
pb_text(struct span_buf *b, unsigned field, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, k, o;
	char *fixed;
	int rc;

	for (i = 0; i < n && (k = utf8_seq(u + i, n - i)) > 0; i += k)
		;
	if (i == n)
		return pb_bytes(b, field, s, n);
	if ((fixed = malloc(3 * n)) == NULL)
		return -1;
	for (i = 0, o = 0; i < n; i += k) {
		if ((k = utf8_seq(u + i, n - i)) == 0) {
			memcpy(fixed + o, "\xef\xbf\xbd", 3);
			o += 3;
			k = 1;
		} else {
			memcpy(fixed + o, s + i, k);
			o += k;
		}
	}
	rc = pb_bytes(b, field, fixed, o);
	free(fixed);
	return rc;
}

/* KeyValue{key, AnyValue} as field. */
static int
pb_kv(struct span_buf *b, unsigned field, const struct otlp_kv *kv)
{
	size_t kvo, vo;

	if ((kvo = pb_open(b, field)) == (size_t)-1 ||
	    pb_str(b, 1, kv->key) < 0 || (vo = pb_open(b, 2)) == (size_t)-1)
		return -1;
	if (kv->type == OTLP_V_INT) {
		/* int_value is int64: negative numbers take 10 bytes */
		if (pb_uint(b, 3, (uint64_t)kv->i) < 0)
			return -1;
	} else if (kv->type == OTLP_V_DOUBLE) {
		uint64_t bits;

		memcpy(&bits, &kv->d, sizeof(bits));	/* IEEE 754, as fixed64 */
		if (pb_fixed64(b, 4, bits) < 0)
			return -1;
	} else if (pb_text(b, 1, kv->s, kv->slen) < 0)
		return -1;
	if (pb_close(b, vo) < 0)
		return -1;
	return pb_close(b, kvo);
}

int
otlp_pb_span(const struct otlp_span *s, struct span_buf *out)
{
	struct otlp_kv ev[2];
	size_t i, o, n = 0;

	if (pb_bytes(out, 1, s->trace_id, 16) < 0 ||
	    pb_bytes(out, 2, s->span_id, 8) < 0)
		return -1;
	if (s->trace_state != NULL &&
	    pb_bytes(out, 3, s->trace_state, s->trace_state_len) < 0)
		return -1;
	if (s->has_parent && pb_bytes(out, 4, s->parent_span_id, 8) < 0)
		return -1;
	if (pb_text(out, 5, s->name, s->name_len) < 0 ||
	    pb_uint(out, 6, OTLP_KIND_SERVER) < 0 ||
	    pb_fixed64(out, 7, s->start_ns) < 0 ||
	    pb_fixed64(out, 8, s->end_ns) < 0)
		return -1;
	for (i = 0; i < s->n_attrs; i++)
		if (pb_kv(out, 9, &s->attrs[i]) < 0)
			return -1;
	if (s->etype != NULL) {
		/* Event{time_unix_nano 1, name 2, attributes 3}: the
		 * semantic conventions' exception event */
		ev[n].key = "exception.type";
		ev[n].type = OTLP_V_STR;
		ev[n].s = s->etype;
		ev[n++].slen = strlen(s->etype);
		if (s->message != NULL) {
			ev[n].key = "exception.message";
			ev[n].type = OTLP_V_STR;
			ev[n].s = s->message;
			ev[n++].slen = strlen(s->message);
		}
		if ((o = pb_open(out, 11)) == (size_t)-1 ||
		    pb_fixed64(out, 1, s->end_ns) < 0 ||
		    pb_str(out, 2, "exception") < 0)
			return -1;
		for (i = 0; i < n; i++)
			if (pb_kv(out, 3, &ev[i]) < 0)
				return -1;
		if (pb_close(out, o) < 0)
			return -1;
	}
	if (s->status_code != OTLP_STATUS_UNSET) {
		/* Status{message 2, code 3} */
		if ((o = pb_open(out, 15)) == (size_t)-1)
			return -1;
		if (s->status_message != NULL && pb_str(out, 2, s->status_message) < 0)
			return -1;
		if (pb_uint(out, 3, (uint64_t)s->status_code) < 0 || pb_close(out, o) < 0)
			return -1;
	}
	return 0;
}

int
otlp_pb_resource_spans(struct span_buf *out, const struct otlp_kv *res,
    size_t n_res, const char *scope_name, const char *scope_version,
    const char *const *spans, const size_t *lens, size_t n)
{
	size_t i, rs, r, ss, sc;

	/* ResourceSpans{resource 1, scope_spans 2} */
	if ((rs = pb_open(out, 1)) == (size_t)-1 ||
	    (r = pb_open(out, 1)) == (size_t)-1)
		return -1;
	for (i = 0; i < n_res; i++)		/* Resource{attributes 1} */
		if (pb_kv(out, 1, &res[i]) < 0)
			return -1;
	if (pb_close(out, r) < 0 || (ss = pb_open(out, 2)) == (size_t)-1 ||
	    (sc = pb_open(out, 1)) == (size_t)-1 ||	/* ScopeSpans.scope */
	    pb_str(out, 1, scope_name) < 0 ||
	    (scope_version != NULL && pb_str(out, 2, scope_version) < 0) ||
	    pb_close(out, sc) < 0)
		return -1;
	for (i = 0; i < n; i++)			/* ScopeSpans.spans */
		if (pb_bytes(out, 2, spans[i], lens[i]) < 0)
			return -1;
	if (pb_close(out, ss) < 0)
		return -1;
	return pb_close(out, rs);
}
