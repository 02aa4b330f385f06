/*
 * otlp_json.c: the OTLP/HTTP JSON mapping of a span and of ResourceSpans
 * (otlp.h): ids as lowercase hex, enums as integers, 64-bit integers
 * (times, int_value) as decimal strings, field names in lowerCamelCase,
 * as https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding says.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fmt.h"
#include "otlp.h"
#include "span.h"

static json_t *
u64str(uint64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRIu64, v);
	return json_string(s);
}

/* A string that is not valid UTF-8 (a raw query, a User-Agent) is sent
 * with each invalid byte as U+FFFD rather than dropped: JSON needs UTF-8. */
static json_t *
str_lossy(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	char *fixed;
	size_t i, o = 0;

	if (j != NULL)
		return j;
	if ((fixed = malloc(n * 3 + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x80 && c != 0)
			fixed[o++] = (char)c;
		else {
			memcpy(fixed + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	j = json_stringn(fixed, o);
	free(fixed);
	return j;
}

static json_t *
kv_json(const struct otlp_kv *kv)
{
	json_t *v = kv->type == OTLP_V_INT ?
	    json_pack("{s:o}", "intValue", u64str((uint64_t)kv->i)) :
	    kv->type == OTLP_V_DOUBLE ? json_pack("{s:f}", "doubleValue", kv->d) :
	    json_pack("{s:o}", "stringValue", str_lossy(kv->s, kv->slen));

	if (kv->type == OTLP_V_INT && kv->i < 0 && v != NULL) {
		char s[24];

		snprintf(s, sizeof(s), "%" PRId64, kv->i);
		json_object_set_new(v, "intValue", json_string(s));
	}
	return json_pack("{s:s,s:o}", "key", kv->key, "value", v);
}

static json_t *
kvs_json(const struct otlp_kv *kv, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, kv_json(&kv[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* Append j's compact text to out; takes j (NULL: -1). */
static int
dump(json_t *j, struct span_buf *out)
{
	char *tmp = NULL;
	size_t n;
	int rc = -1;

	if (j == NULL)
		return -1;
	n = json_dumpb(j, NULL, 0, JSON_COMPACT);
	if (n > 0 && (tmp = malloc(n)) != NULL &&
	    json_dumpb(j, tmp, n, JSON_COMPACT) == n)
		rc = span_buf_add(out, tmp, n);
	free(tmp);
	json_decref(j);
	return rc;
}

/* ---- one span, written by hand ----
 *
 * Measured (2026-12-03): building and dumping a span through jansson took
 * 38 us (json_pack of ~60 small objects, then json_dumpb twice), capping
 * one worker at 13k spans/s; written straight into the buffer with the
 * project's JSON string writer (span_json_str: valid UTF-8 out, each
 * invalid byte as U+FFFD, non-ASCII as \u escapes) it is a few us. The
 * per-batch envelope below still goes through jansson. */

static int
w(struct span_buf *out, const char *s)
{
	return span_buf_add(out, s, strlen(s));
}

static int
w_hex(struct span_buf *out, const char *key, const uint8_t *p, size_t n)
{
	char s[40];
	size_t i;

	if (w(out, key) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		s[2 * i] = FMT_HEX_LOWER[p[i] >> 4];
		s[2 * i + 1] = FMT_HEX_LOWER[p[i] & 15];
	}
	s[2 * n] = '"';
	return span_buf_add(out, s, 2 * n + 1);
}

static int
w_u64(struct span_buf *out, const char *key, uint64_t v)
{
	char s[24];
	int n = snprintf(s, sizeof(s), "%" PRIu64 "\"", v);

	return w(out, key) < 0 ? -1 : span_buf_add(out, s, (size_t)n);
}

/* [{"key":"k","value":{"stringValue":"v"}},...] */
static int
w_kvs(struct span_buf *out, const struct otlp_kv *kv, size_t n)
{
	char num[24];
	size_t i;
	int k;

	if (span_buf_add(out, "[", 1) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if ((i > 0 && span_buf_add(out, ",", 1) < 0) ||
		    w(out, "{\"key\":") < 0 ||
		    span_json_str(out, kv[i].key, strlen(kv[i].key), 0) < 0)
			return -1;
		if (kv[i].type == OTLP_V_INT) {
			k = snprintf(num, sizeof(num), "%" PRId64, kv[i].i);
			if (w(out, ",\"value\":{\"intValue\":\"") < 0 ||
			    span_buf_add(out, num, (size_t)k) < 0 ||
			    w(out, "\"}}") < 0)
				return -1;
		} else if (kv[i].type == OTLP_V_DOUBLE) {
			/* %.17g round-trips; JSON has no NaN or inf, and the
			 * sampler's parameter is always a finite number */
			k = snprintf(num, sizeof(num), "%.17g", isfinite(kv[i].d) ?
			    kv[i].d : 0.0);
			if (w(out, ",\"value\":{\"doubleValue\":") < 0 ||
			    span_buf_add(out, num, (size_t)k) < 0 ||
			    w(out, "}}") < 0)
				return -1;
		} else if (w(out, ",\"value\":{\"stringValue\":") < 0 ||
		    span_json_str(out, kv[i].s, kv[i].slen, 0) < 0 ||
		    w(out, "}}") < 0)
			return -1;
	}
	return span_buf_add(out, "]", 1);
}

int
otlp_json_span(const struct otlp_span *s, struct span_buf *out)
{
	struct otlp_kv e[2];
	char kind[40];
	size_t n = 0;

	if (w_hex(out, "{\"traceId\":\"", s->trace_id, 16) < 0 ||
	    w_hex(out, ",\"spanId\":\"", s->span_id, 8) < 0)
		return -1;
	if (s->has_parent &&
	    w_hex(out, ",\"parentSpanId\":\"", s->parent_span_id, 8) < 0)
		return -1;
	if (s->trace_state != NULL && (w(out, ",\"traceState\":") < 0 ||
	    span_json_str(out, s->trace_state, s->trace_state_len, 0) < 0))
		return -1;
	snprintf(kind, sizeof(kind), ",\"kind\":%d", OTLP_KIND_SERVER);
	if (w(out, ",\"name\":") < 0 ||
	    span_json_str(out, s->name, s->name_len, 0) < 0 || w(out, kind) < 0 ||
	    w_u64(out, ",\"startTimeUnixNano\":\"", s->start_ns) < 0 ||
	    w_u64(out, ",\"endTimeUnixNano\":\"", s->end_ns) < 0 ||
	    w(out, ",\"attributes\":") < 0 || w_kvs(out, s->attrs, s->n_attrs) < 0)
		return -1;
	if (s->etype != NULL) {
		e[n].key = "exception.type";
		e[n].type = OTLP_V_STR;
		e[n].s = s->etype;
		e[n++].slen = strlen(s->etype);
		if (s->message != NULL) {
			e[n].key = "exception.message";
			e[n].type = OTLP_V_STR;
			e[n].s = s->message;
			e[n++].slen = strlen(s->message);
		}
		if (w_u64(out, ",\"events\":[{\"timeUnixNano\":\"", s->end_ns) < 0 ||
		    w(out, ",\"name\":\"exception\",\"attributes\":") < 0 ||
		    w_kvs(out, e, n) < 0 || w(out, "}]") < 0)
			return -1;
	}
	if (s->status_code != OTLP_STATUS_UNSET) {
		snprintf(kind, sizeof(kind), ",\"status\":{\"code\":%d", s->status_code);
		if (w(out, kind) < 0)
			return -1;
		if (s->status_message != NULL && (w(out, ",\"message\":") < 0 ||
		    span_json_str(out, s->status_message, strlen(s->status_message), 0) < 0))
			return -1;
		if (w(out, "}") < 0)
			return -1;
	}
	return w(out, "}");
}

int
otlp_json_resource_spans(struct span_buf *out, const struct otlp_kv *res,
    size_t n_res, const char *scope_name, const char *scope_version,
    const char *const *spans, const size_t *lens, size_t n)
{
	json_t *scope;
	struct span_buf head = { 0 };
	size_t i, cut;
	int rc = -1;

	/* the envelope through jansson, the spans (already text) spliced in
	 * where its empty "spans" array is */
	scope = json_pack("{s:s}", "name", scope_name);
	if (scope != NULL && scope_version != NULL)
		json_object_set_new(scope, "version", json_string(scope_version));
	if (dump(json_pack("{s:{s:o},s:[{s:o,s:[]}]}", "resource", "attributes",
	    kvs_json(res, n_res), "scopeSpans", "scope", scope, "spans"),
	    &head) < 0)
		goto done;
	/* the dump ends in "[]}]}" */
	if (head.len < 5 || memcmp(head.p + head.len - 5, "[]}]}", 5) != 0)
		goto done;
	cut = head.len - 4;
	if (span_buf_add(out, head.p, cut) < 0)
		goto done;
	for (i = 0; i < n; i++)
		if ((i > 0 && span_buf_add(out, ",", 1) < 0) ||
		    span_buf_add(out, spans[i], lens[i]) < 0)
			goto done;
	rc = span_buf_add(out, "]}]}", 4);
done:
	span_buf_free(&head);
	return rc;
}
