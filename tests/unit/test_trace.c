/*
 * test_trace.c: the trace codecs and the per-request driver.
 *
 * - every vector of tests/vectors/trace-vectors.json (the project's own
 *   copy, found through $TB_SRCDIR) through its codec and through
 *   trace_extract; a shared reference copy, when there is one, is only
 *   compared with it (a note, never a failure);
 * - round trips extract(inject(x)) for every format;
 * - every truncated prefix of valid headers, each copied into a buffer of
 *   exactly its length so ASan sees any over-read;
 * - id mapping both ways and the HMAC worked example of osprofiler.md;
 * - hostile osprofiler headers; the driver (precedence, drops, counters,
 *   not-sampled propagation, response headers, request id).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tb_test.h"
#include "trace.h"

/* ---- a sink collecting headers ---- */

#define SINK_MAX 32

struct coll {
	size_t n;
	char name[SINK_MAX][64];
	char value[SINK_MAX][TRACE_BAGGAGE_MAX + 1];
	struct tb_hdr hdrs[SINK_MAX];
};

static int
coll_add(void *arg, const char *name, size_t nl, const char *value, size_t vl)
{
	struct coll *c = arg;

	if (c->n == SINK_MAX || nl >= 64 || vl > TRACE_BAGGAGE_MAX)
		return -1;
	memcpy(c->name[c->n], name, nl);
	c->name[c->n][nl] = '\0';
	memcpy(c->value[c->n], value, vl);
	c->value[c->n][vl] = '\0';
	c->hdrs[c->n].name = c->name[c->n];
	c->hdrs[c->n].name_len = nl;
	c->hdrs[c->n].value = c->value[c->n];
	c->hdrs[c->n].value_len = vl;
	c->n++;
	return 0;
}

static struct tb_hdr_sink
sink_of(struct coll *c)
{
	struct tb_hdr_sink s = { coll_add, c };

	memset(c, 0, sizeof(*c));
	return s;
}

static const char *
coll_get(const struct coll *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		if (strcasecmp(c->name[i], name) == 0)
			return c->value[i];
	return NULL;
}

static void
ctx_init(struct tb_trace_ctx *c)
{
	memset(c, 0, sizeof(*c));
	c->sampled = TRACE_SAMPLED_DEFER;
}

static struct tb_hdr
H(const char *name, const char *value)
{
	struct tb_hdr h = { name, strlen(name), value, strlen(value) };

	return h;
}

static void
hex16(const uint8_t id[16], char out[33])
{
	trace_hex_encode(id, 16, out);
	out[32] = '\0';
}

static void
hex8(uint64_t v, char out[17])
{
	uint8_t b[8];

	trace_put_be64(b, v);
	trace_hex_encode(b, 8, out);
	out[16] = '\0';
}

/* ---- vectors ---- */

static const char *keys1[] = { "SECRET_KEY" };

static int
sampled_of(json_t *v)
{
	if (json_is_true(v))
		return 1;
	if (json_is_false(v))
		return 0;
	return -1;
}

/* Compare ctx with the vector's expect object; prints why on mismatch. */
static int
matches(const char *id, const struct tb_trace_ctx *c, json_t *exp, int via)
{
	const char *tid = json_string_value(json_object_get(exp, "trace_id"));
	const char *sid = json_string_value(json_object_get(exp, "span_id"));
	int sampled = sampled_of(json_object_get(exp, "sampled"));
	int debug = json_is_true(json_object_get(exp, "debug"));
	json_t *ts = json_object_get(exp, "tracestate");
	char got[33], gs[17], want_ts[4096];
	size_t i;
	int ok = 1;

	hex16(c->trace_id, got);
	hex8(c->span_id, gs);
	if (tid == NULL ? (c->has_trace_id && !via) :
	    (!c->has_trace_id || strcmp(tid, got) != 0))
		ok = 0, fprintf(stderr, "  %s: trace_id %s, want %s\n", id,
		    c->has_trace_id ? got : "none", tid ? tid : "null");
	if (sid == NULL ? c->has_span_id : (!c->has_span_id ||
	    strcmp(sid, gs) != 0))
		ok = 0, fprintf(stderr, "  %s: span_id %s, want %s\n", id,
		    c->has_span_id ? gs : "none", sid ? sid : "null");
	if (sampled != c->sampled)
		ok = 0, fprintf(stderr, "  %s: sampled %d, want %d\n", id,
		    c->sampled, sampled);
	if (debug != (int)c->debug)
		ok = 0, fprintf(stderr, "  %s: debug %d, want %d\n", id,
		    (int)c->debug, debug);
	if (ts != NULL) {
		want_ts[0] = '\0';
		for (i = 0; i < json_array_size(ts); i++) {
			json_t *m = json_array_get(ts, i);

			if (i > 0)
				strcat(want_ts, ",");
						strcat(want_ts, json_string_value(json_array_get(m, 0)));
			strcat(want_ts, "=");
			strcat(want_ts, json_string_value(json_array_get(m, 1)));
		}
		if (strcmp(want_ts, c->tracestate) != 0)
			ok = 0, fprintf(stderr, "  %s: tracestate \"%s\", want "
			    "\"%s\"\n", id, c->tracestate, want_ts);
	}
	return ok;
}

/*
 * The shared reference set ($TB_SHARED, or ../shared beside the source
 * tree), when there is one, may have grown vectors this project has not
 * taken yet: say so, so that someone copies the facts over. Never a
 * failure, and nothing when there is no such file: no test needs it.
 */
static void
compare_shared(const char *src, json_t *ours)
{
	const char *shared = getenv("TB_SHARED");
	char path[1024];
	json_t *root, *v, *w;
	size_t i, k, missing = 0, differ = 0;

	if (shared != NULL && shared[0] != '\0')
		snprintf(path, sizeof(path), "%s/reference/trace-vectors.json",
		    shared);
	else
		snprintf(path, sizeof(path),
		    "%s/../shared/reference/trace-vectors.json", src);
	if (access(path, R_OK) != 0 ||
	    (root = json_load_file(path, 0, NULL)) == NULL)
		return;
	json_array_foreach(json_object_get(root, "vectors"), i, v) {
		const char *id = json_string_value(json_object_get(v, "id"));
		int found = 0;

		json_array_foreach(ours, k, w) {
			const char *wid = json_string_value(json_object_get(w, "id"));

			if (id != NULL && wid != NULL && strcmp(id, wid) == 0) {
				found = 1;
				if (!json_equal(v, w)) {
					differ++;
					printf("note: vector %s differs in %s\n", id,
					    path);
				}
				break;
			}
		}
		if (!found) {
			missing++;
			printf("note: vector %s of %s is not in "
			    "tests/vectors/trace-vectors.json\n",
			    id != NULL ? id : "(no id)", path);
		}
	}
	if (missing > 0 || differ > 0)
		printf("note: %s has %zu vector(s) the project lacks and %zu "
		    "that differ (not a failure)\n", path, missing, differ);
	json_decref(root);
}

static void
test_vectors(void)
{
	const char *src = getenv("TB_SRCDIR");
	char path[1024];
	json_error_t jerr;
	json_t *root, *vecs, *v;
	size_t i, k, nh, n_ok = 0;
	struct tb_hdr hdrs[64];
	struct tb_trace_ctx ctx;
	struct trace_req tr;
	struct trace_conf *conf;
	const struct trace_codec *codec;
	char err[256];
	int r;

	if (src == NULL || src[0] == '\0')
		src = ".";	/* run by hand from the top of the source tree */
	snprintf(path, sizeof(path), "%s/tests/vectors/trace-vectors.json", src);
	root = json_load_file(path, 0, &jerr);
	CHECKF(root != NULL, "cannot read %s: %s", path, jerr.text);
	if (root == NULL)
		return;
	vecs = json_object_get(root, "vectors");
	CHECK(json_array_size(vecs) >= 121);
	compare_shared(src, vecs);
	json_array_foreach(vecs, i, v) {
		const char *id = json_string_value(json_object_get(v, "id"));
		const char *fmt = json_string_value(json_object_get(v, "format"));
		json_t *hs = json_object_get(v, "headers"), *exp;
		const char *one[1];
		int good;

		exp = json_object_get(v, "expect");
		codec = trace_codec_by_name(fmt);
		CHECKF(codec != NULL, "%s: no codec %s", id, fmt);
		if (codec == NULL)
			continue;
		nh = json_array_size(hs);
		if (nh > 64)
			nh = 64;
		for (k = 0; k < nh; k++) {
			json_t *p = json_array_get(hs, k);

			hdrs[k] = H(json_string_value(json_array_get(p, 0)),
			    json_string_value(json_array_get(p, 1)));
		}
		ctx_init(&ctx);
		r = codec->extract(NULL, hdrs, nh, &ctx);
		if (json_is_string(exp)) {
			good = r != 1;
			CHECKF(good, "vector %s: want invalid, got r=%d", id, r);
		} else {
			good = r == 1 && matches(id, &ctx, exp, 0);
			CHECKF(good, "vector %s: r=%d", id, r);
		}
		/* every truncated prefix of every header of the vector, on the
		 * heap at its exact length: never a crash or an over-read; a
		 * truncated traceparent is never valid */
		for (k = 0; k < nh; k++) {
			const char *full = hdrs[k].value;
			size_t fl = hdrs[k].value_len, len;
			char *buf;

			for (len = 0; len < fl; len++) {
				buf = malloc(len ? len : 1);
				memcpy(buf, full, len);
				hdrs[k].value = buf;
				hdrs[k].value_len = len;
				ctx_init(&ctx);
				r = codec->extract(NULL, hdrs, nh, &ctx);
				if (TRACE_NAME_IS(&hdrs[k], "traceparent"))
					CHECKF(r != 1 || !json_is_object(exp) ||
					    fl > 55, "%s: prefix %zu accepted",
					    id, len);
				free(buf);
			}
			hdrs[k].value = full;
			hdrs[k].value_len = fl;
		}
		/* and through the driver, with only this format */
		one[0] = fmt;
		conf = trace_conf_new(one, 1, one, 1, keys1, 1, 0, 1, 1, 0, err,
		    sizeof(err));
		CHECKF(conf != NULL, "%s", err);
		if (conf == NULL)
			continue;
		trace_extract(conf, hdrs, nh, &tr);
		if (json_is_string(exp)) {
			CHECKF(tr.from == NULL && (tr.flags & TRACE_R_NEW_TRACE),
			    "driver %s: want a new trace", id);
		} else {
			CHECKF(tr.from == codec, "driver %s: not extracted", id);
			CHECKF(matches(id, &tr.ctx, exp, 1), "driver %s", id);
			if (json_string_value(json_object_get(exp, "trace_id")) == NULL)
				CHECKF(tr.flags & TRACE_R_NEW_TRACE, "driver %s: "
				    "decision-only keeps no id", id);
		}
		for (k = 0; k < nh; k++)
			CHECKF(trace_req_drops(&tr, k), "driver %s: header %zu "
			    "not dropped", id, k);
		trace_conf_free(conf);
		n_ok += good;
	}
	printf("vectors: %zu of %zu pass\n", n_ok, json_array_size(vecs));
	json_decref(root);
}

/* ---- round trips ---- */

static void
make_req(struct trace_req *tr, const char *tid32, uint64_t span, int sampled,
    int debug)
{
	memset(tr, 0, sizeof(*tr));
	ctx_init(&tr->ctx);
	CHECK(trace_hex_decode(tid32, 32, 1, tr->ctx.trace_id, 16) == 0);
	tr->ctx.has_trace_id = 1;
	trace_uuid_format(tr->ctx.trace_id, tr->base_id);
	tr->span_id = span;
	trace_span_uuid_format(span, tr->span_uuid);
	tr->sampled = sampled;
	tr->debug = debug;
}

static void
test_round_trips(void)
{
	static const char *tids[] = { "4bf92f3577b34da6a3ce929d0e0e4736",
	    "0000000000000000a3ce929d0e0e4736", "00000000000000000000000000000001",
	    "ffffffffffffffffffffffffffffffff" };
	static const uint64_t spans[] = { 0x00f067aa0ba902b7ULL, 1,
	    0xffffffffffffffffULL };
	struct trace_req tr;
	struct tb_trace_ctx got;
	struct coll c;
	struct tb_hdr_sink s;
	void *osp = trace_osprofiler_keys_new(keys1, 1);
	size_t f, t, sp, ds;
	int r;

	for (f = 0; f < TRACE_F_COUNT; f++) {
		const struct trace_codec *codec = trace_codecs[f];

		for (t = 0; t < 4; t++)
		for (sp = 0; sp < 3; sp++)
		for (ds = 0; ds < 3; ds++) {
			int sampled = ds > 0, debug = ds == 2;

			make_req(&tr, tids[t], spans[sp], sampled, debug);
			if (f == TRACE_F_W3C && ds == 1)
				strcpy(tr.ctx.tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
			tr.ctx.tracestate_len = strlen(tr.ctx.tracestate);
			if (f == TRACE_F_OSPROFILER)
				strcpy(tr.span_uuid, "37ca69bc-8473-4d12-a7b2-2e18f8fd5a24");
			s = sink_of(&c);
			CHECKF(codec->inject(osp, &tr, &s) == 0, "%s inject",
			    codec->name);
			ctx_init(&got);
			r = codec->extract(osp, c.hdrs, c.n, &got);
			CHECKF(r == 1, "%s round trip %s: r=%d", codec->name,
			    tids[t], r);
			CHECKF(memcmp(got.trace_id, tr.ctx.trace_id, 16) == 0,
			    "%s round trip trace id %s", codec->name, tids[t]);
			if (f == TRACE_F_OSPROFILER) {
				CHECK(got.sampled == 1);
				CHECK(strcmp(got.osp_base_id, tr.base_id) == 0);
				CHECK(strcmp(got.osp_parent_id, tr.span_uuid) == 0);
				CHECK(got.span_id == 0xa7b22e18f8fd5a24ULL);
				continue;
			}
			CHECKF(got.has_span_id && got.span_id == tr.span_id,
			    "%s round trip span", codec->name);
			CHECKF(got.sampled == sampled, "%s round trip sampled %d "
			    "got %d", codec->name, sampled, got.sampled);
			if (f == TRACE_F_B3 || f == TRACE_F_B3MULTI ||
			    f == TRACE_F_JAEGER)
				CHECKF((int)got.debug == debug, "%s debug",
				    codec->name);
			CHECKF(strcmp(got.tracestate, tr.ctx.tracestate) == 0 ||
			    f != TRACE_F_W3C, "w3c tracestate");
		}
	}
	trace_osprofiler_keys_free(osp);
}

/* ---- truncated prefixes ---- */

static void
test_prefixes(void)
{
	static const struct {
		const char *fmt, *name, *value;
		int strict;	/* every prefix must be invalid/absent */
	} valid[] = {
		{ "w3c", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1 },
		{ "w3c", "traceparent", "cc-12345678901234567890123456789012-1234567890123456-01-what", 0 },
		{ "b3", "b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", 0 },
		{ "b3", "X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7", 0 },
		{ "jaeger", "uber-trace-id", "4bf92f3577b34da6a3ce929d0e0e4736%3A00f067aa0ba902b7%3A0%3A1", 0 },
		{ "xray", "X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", 0 },
		{ "datadog", "x-datadog-trace-id", "7277407061855694839", 0 },
		{ "gcp", "X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/2205310701640571284;o=1", 0 },
		{ "ot", "ot-tracer-traceid", "80f198ee56343ba864fe8b2a57d3eff7", 0 },
		{ "osprofiler", "X-Trace-Info", "eyJiYXNlX2lkIjogIjRiZjkyZjM1LTc3YjMtNGRhNi1hM2NlLTkyOWQwZTBlNDczNiIsICJwYXJlbnRfaWQiOiAiMzdjYTY5YmMtODQ3My00ZDEyLWE3YjItMmUxOGY4ZmQ1YTI0In0=", 1 },
		{ "osprofiler", "X-Trace-HMAC", "db9b62be0039ccaf42eb56839b3d81962f592048", 1 },
	};
	/* the partner headers that make each of the above complete */
	static const struct tb_hdr extra[] = {
		{ "X-B3-SpanId", 11, "e457b5a2e4d86bd1", 16 },
		{ "x-datadog-parent-id", 19, "5208512171318403364", 19 },
		{ "ot-tracer-spanid", 16, "e457b5a2e4d86bd1", 16 },
		{ "X-Trace-HMAC", 12, "db9b62be0039ccaf42eb56839b3d81962f592048", 40 },
		{ "X-Trace-Info", 12, "eyJiYXNlX2lkIjogIjRiZjkyZjM1LTc3YjMtNGRhNi1hM2NlLTkyOWQwZTBlNDczNiIsICJwYXJlbnRfaWQiOiAiMzdjYTY5YmMtODQ3My00ZDEyLWE3YjItMmUxOGY4ZmQ1YTI0In0=", 140 },
	};
	void *osp = trace_osprofiler_keys_new(keys1, 1);
	struct tb_trace_ctx ctx;
	struct tb_hdr hdrs[2];
	size_t i, len, full;
	char *buf;
	int r;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const struct trace_codec *codec = trace_codec_by_name(valid[i].fmt);
		size_t nh = 1;

		hdrs[0] = H(valid[i].name, valid[i].value);
		if (strcmp(valid[i].name, "X-B3-TraceId") == 0)
			hdrs[nh++] = extra[0];
		else if (strcmp(valid[i].name, "x-datadog-trace-id") == 0)
			hdrs[nh++] = extra[1];
		else if (strcmp(valid[i].name, "ot-tracer-traceid") == 0)
			hdrs[nh++] = extra[2];
		else if (strcmp(valid[i].name, "X-Trace-Info") == 0)
			hdrs[nh++] = extra[3];
		else if (strcmp(valid[i].name, "X-Trace-HMAC") == 0)
			hdrs[nh++] = extra[4];
		full = strlen(valid[i].value);
		ctx_init(&ctx);
		CHECKF(codec->extract(osp, hdrs, nh, &ctx) == 1, "full %s",
		    valid[i].value);
		for (len = 0; len < full; len++) {
			/* exactly len bytes on the heap: ASan flags over-reads */
			buf = malloc(len ? len : 1);
			memcpy(buf, valid[i].value, len);
			hdrs[0].value = buf;
			hdrs[0].value_len = len;
			ctx_init(&ctx);
			r = codec->extract(osp, hdrs, nh, &ctx);
			if (valid[i].strict)
				CHECKF(r != 1, "prefix %zu of %s accepted", len,
				    valid[i].value);
			free(buf);
		}
	}
	trace_osprofiler_keys_free(osp);
}

/* ---- id mapping ---- */

static void
test_ids(void)
{
	uint8_t id[16], back[16];
	char u[TRACE_UUID_LEN + 1];
	uint64_t v;

	CHECK(trace_hex_decode("4bf92f3577b34da6a3ce929d0e0e4736", 32, 1, id, 16) == 0);
	trace_uuid_format(id, u);
	CHECK(strcmp(u, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736") == 0);
	CHECK(trace_uuid_parse(u, strlen(u), back) == 0);
	CHECK(memcmp(id, back, 16) == 0);
	CHECK(trace_uuid_parse("4BF92F35-77B3-4DA6-A3CE-929D0E0E4736", 36, back) == 0);
	CHECK(memcmp(id, back, 16) == 0);
	CHECK(trace_uuid_parse("4bf92f35-77b3-4da6-a3ce-929d0e0e473", 35, back) == -1);
	CHECK(trace_uuid_parse("4bf92f35x77b3-4da6-a3ce-929d0e0e4736", 36, back) == -1);
	CHECK(trace_uuid_parse("4bf92f35-77b3-4da6-a3ce-929d0e0e473g", 36, back) == -1);
	/* a 64-bit id <-> high 64 bits zero; shorten_id gives it back */
	trace_span_uuid_format(0x00f067aa0ba902b7ULL, u);
	CHECK(strcmp(u, "00000000-0000-0000-00f0-67aa0ba902b7") == 0);
	CHECK(trace_uuid_parse(u, 36, back) == 0);
	CHECK(trace_uuid_low64(back) == 0x00f067aa0ba902b7ULL);
	/* a span uuid made here: its 64-bit form is the low 64 bits */
	CHECK(trace_uuid_parse("37ca69bc-8473-4d12-a7b2-2e18f8fd5a24", 36, back) == 0);
	CHECK(trace_uuid_low64(back) == 0xa7b22e18f8fd5a24ULL);
	/* uuid4 shape */
	trace_uuid4(id);
	trace_uuid_format(id, u);
	CHECK(u[14] == '4' && strchr("89ab", u[19]) != NULL);
	/* after fork, parent and child never hand out the same next id */
	{
		uint8_t mine[16], theirs[16];
		int fd[2], st;
		pid_t pid;

		CHECK(pipe(fd) == 0);
		if ((pid = fork()) == 0) {
			trace_uuid4(theirs);
			_exit(write(fd[1], theirs, 16) == 16 ? 0 : 1);
		}
		trace_uuid4(mine);
		CHECK(read(fd[0], theirs, 16) == 16);
		CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 0);
		CHECK(memcmp(mine, theirs, 16) != 0);
		close(fd[0]);
		close(fd[1]);
	}
	/* numbers */
	CHECK(trace_dec_u64("18446744073709551615", 20, &v) == 0 && v == UINT64_MAX);
	CHECK(trace_dec_u64("18446744073709551616", 20, &v) == -1);
	CHECK(trace_dec_u64("", 0, &v) == -1);
	CHECK(trace_dec_u64("-1", 2, &v) == -1);
	CHECK(trace_hex_u64("F", 1, 1, &v) == -1);
	CHECK(trace_hex_u64("F", 1, 0, &v) == 0 && v == 15);
	CHECK(trace_hex_id128("3ac35c9f6413ad", 14, 1, id) == 0);
	hex16(id, u);
	CHECK(strcmp(u, "0000000000000000003ac35c9f6413ad") == 0);
}

/* ---- osprofiler ---- */

static const char *ex_info =
    "eyJiYXNlX2lkIjogIjRiZjkyZjM1LTc3YjMtNGRhNi1hM2NlLTkyOWQwZTBlNDczNiIs"
    "ICJwYXJlbnRfaWQiOiAiMzdjYTY5YmMtODQ3My00ZDEyLWE3YjItMmUxOGY4ZmQ1YTI0In0=";
static const char *ex_hmac = "db9b62be0039ccaf42eb56839b3d81962f592048";

/* Sign arbitrary JSON text as a hostile but key-holding client would. */
static void
sign_raw(const char *json, const char *key, char *info, char mac[41])
{
	unsigned char m[20];
	unsigned ml = 0;
	int n, i;

	n = EVP_EncodeBlock((unsigned char *)info, (const unsigned char *)json,
	    (int)strlen(json));
	for (i = 0; i < n; i++)
		info[i] = info[i] == '+' ? '-' : info[i] == '/' ? '_' : info[i];
	info[n] = '\0';
	HMAC(EVP_sha1(), key, (int)strlen(key), (unsigned char *)info,
	    (size_t)n, m, &ml);
	trace_hex_encode(m, 20, mac);
	mac[40] = '\0';
}

static int
unpack(const void *osp, const char *info, const char *mac,
    struct tb_trace_ctx *ctx)
{
	ctx_init(ctx);
	return trace_osprofiler_unpack(osp, info, strlen(info), mac,
	    strlen(mac), ctx);
}

static void
test_osprofiler(void)
{
	static const char *keys3[] = { "new-key", "SECRET_KEY", "older" };
	static const char *wrong[] = { "not-the-key" };
	void *osp1 = trace_osprofiler_keys_new(keys1, 1);
	void *osp3 = trace_osprofiler_keys_new(keys3, 3);
	void *ospw = trace_osprofiler_keys_new(wrong, 1);
	struct tb_trace_ctx ctx;
	char info[4096], mac[41], bad[4096], big[3000];
	char u[33];
	size_t il;
	static const char *hostile[] = {
		"{\"base_id\": \"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\", \"parent_id\": \"37ca69bc-8473-4d12-a7b2-2e18f8fd5a24\", \"sampled\": true}",
		"{\"base_id\": \"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\", \"hmac_key\": \"x\"}",
		"{\"parent_id\": \"37ca69bc-8473-4d12-a7b2-2e18f8fd5a24\"}",
		"{}",
		"[\"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\"]",
		"\"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\"",
		"42",
		"null",
		"{\"base_id\": 42}",
		"{\"base_id\": \"not-a-uuid\"}",
		"{\"base_id\": \"00000000-0000-0000-0000-000000000000\"}",
		"{\"base_id\": \"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\"",
		"{\"base_id\": \"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\"} x",
		"{\"base_id\": \"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\",}",
		"{\"base_id\": \"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\", \"parent_id\": null}",
		"{\"base_id\": \"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\t\"}",
		"",
	};
	size_t i;

	/* osprofiler.md worked example */
	il = trace_osprofiler_sign(osp1, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
	    "37ca69bc-8473-4d12-a7b2-2e18f8fd5a24", info, sizeof(info), mac);
	CHECK(il == strlen(ex_info) && strcmp(info, ex_info) == 0);
	CHECK(strcmp(mac, ex_hmac) == 0);
	CHECK(unpack(osp1, ex_info, ex_hmac, &ctx) == 1);
	hex16(ctx.trace_id, u);
	CHECK(strcmp(u, "4bf92f3577b34da6a3ce929d0e0e4736") == 0);
	CHECK(ctx.has_span_id && ctx.span_id == 0xa7b22e18f8fd5a24ULL);
	CHECK(ctx.sampled == 1);
	CHECK(strcmp(ctx.osp_parent_id, "37ca69bc-8473-4d12-a7b2-2e18f8fd5a24") == 0);
	/* several keys, rotation: a key anywhere in the list verifies */
	CHECK(unpack(osp3, ex_info, ex_hmac, &ctx) == 1);
	CHECK(unpack(ospw, ex_info, ex_hmac, &ctx) == -1);
	il = trace_osprofiler_sign(osp3, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
	    "37ca69bc-8473-4d12-a7b2-2e18f8fd5a24", info, sizeof(info), mac);
	CHECK(il > 0 && strcmp(mac, ex_hmac) != 0);	/* signed with new-key */
	CHECK(unpack(osp3, info, mac, &ctx) == 1);
	CHECK(unpack(osp1, info, mac, &ctx) == -1);	/* old side: not yet */
	/* tampered data, tampered HMAC, uppercase HMAC, short HMAC */
	strcpy(bad, ex_info);
	bad[20] = bad[20] == 'A' ? 'B' : 'A';
	CHECK(unpack(osp1, bad, ex_hmac, &ctx) == -1);
	strcpy(bad, ex_hmac);
	bad[39] = bad[39] == '0' ? '1' : '0';
	CHECK(unpack(osp1, ex_info, bad, &ctx) == -1);
	strcpy(bad, ex_hmac);
	for (i = 0; bad[i]; i++)
		bad[i] = (char)((bad[i] >= 'a' && bad[i] <= 'f') ? bad[i] - 32 : bad[i]);
	CHECK(unpack(osp1, ex_info, bad, &ctx) == -1);
	CHECK(unpack(osp1, ex_info, "db9b62be", &ctx) == -1);
	CHECK(unpack(osp1, ex_info, "", &ctx) == -1);
	/* validly signed but invalid content */
	for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		sign_raw(hostile[i], "SECRET_KEY", info, mac);
		CHECKF(unpack(osp1, info, mac, &ctx) == -1, "accepted %s",
		    hostile[i]);
	}
	/* validly signed, unusual but valid JSON: Python accepts it too */
	sign_raw("{\"base\\u005fid\":\"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\"}",
	    "SECRET_KEY", info, mac);
	CHECK(unpack(osp1, info, mac, &ctx) == 1 && !ctx.has_span_id);
	sign_raw(" {\n\"parent_id\" : \"37ca69bc-8473-4d12-a7b2-2e18f8fd5a24\" ,"
	    "\"base_id\":\"4BF92F35-77B3-4DA6-A3CE-929D0E0E4736\"}\r\n",
	    "SECRET_KEY", info, mac);
	CHECK(unpack(osp1, info, mac, &ctx) == 1);
	CHECK(strcmp(ctx.osp_base_id, "4BF92F35-77B3-4DA6-A3CE-929D0E0E4736") == 0);
	/* bad base64, signed */
	{
		static const char *b64bad[] = { "eyJiYXNl", "eyJiYXNlX2lkIjogIjRi=", "e===",
		    "eyJi+mFz", "eyJi YXNl", "====" };

		for (i = 0; i < sizeof(b64bad) / sizeof(b64bad[0]); i++) {
			unsigned char m[20];
			unsigned ml;

			HMAC(EVP_sha1(), "SECRET_KEY", 10,
			    (const unsigned char *)b64bad[i], strlen(b64bad[i]),
			    m, &ml);
			trace_hex_encode(m, 20, mac);
			mac[40] = '\0';
			CHECKF(unpack(osp1, b64bad[i], mac, &ctx) == -1,
			    "bad base64 %s", b64bad[i]);
		}
	}
	/* huge header: refused before any HMAC work */
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(unpack(osp1, big, ex_hmac, &ctx) == -1);
	/* the codec: missing halves, duplicates */
	{
		struct tb_hdr h[3] = { H("X-Trace-Info", ex_info),
		    H("X-Trace-HMAC", ex_hmac), H("X-Trace-Info", ex_info) };

		ctx_init(&ctx);
		CHECK(trace_codec_osprofiler.extract(osp1, h, 2, &ctx) == 1);
		ctx_init(&ctx);
		CHECK(trace_codec_osprofiler.extract(osp1, h, 1, &ctx) == -1);
		ctx_init(&ctx);
		CHECK(trace_codec_osprofiler.extract(osp1, h + 1, 1, &ctx) == -1);
		ctx_init(&ctx);
		CHECK(trace_codec_osprofiler.extract(osp1, h, 3, &ctx) == -1);
		ctx_init(&ctx);
		CHECK(trace_codec_osprofiler.extract(NULL, h, 2, &ctx) == -1);
	}
	CHECK(trace_osprofiler_keys_new((const char *[]){ "" }, 1) == NULL);
	trace_osprofiler_keys_free(osp1);
	trace_osprofiler_keys_free(osp3);
	trace_osprofiler_keys_free(ospw);
}

/* ---- the driver ---- */

static void
test_driver(void)
{
	static const char *keys[] = { "SECRET_KEY", "old" };
	struct trace_conf *conf, *conf2;
	struct trace_req tr;
	struct coll c;
	struct tb_hdr_sink s;
	char err[256], u[33], info[256], mac[41];
	const char *v;
	struct tb_trace_ctx ctx;
	void *osp;
	size_t i;

	conf = trace_conf_new(NULL, 0, NULL, 0, keys, 2, 0, 1, 1, 1, err,
	    sizeof(err));
	CHECKF(conf != NULL, "%s", err);
	CHECK(trace_conf_new((const char *[]){ "w3c", "zipkin" }, 2, NULL, 0,
	    keys, 1, 0, 1, 1, 0, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "zipkin") != NULL);
	CHECK(trace_conf_new((const char *[]){ "w3c", "W3C" }, 2, NULL, 0,
	    keys, 1, 0, 1, 1, 0, err, sizeof(err)) == NULL);
	CHECK(trace_conf_new(NULL, 0, NULL, 0, NULL, 0, 0, 1, 1, 0, err,
	    sizeof(err)) == NULL);	/* osprofiler inject needs a key */

	/* no context: a new trace; parent of the edge span = base_id */
	{
		struct tb_hdr h[] = { H("Host", "nova"), H("X-Auth-Token", "t"),
		    H("Accept", "*/*") };

		trace_extract(conf, h, 3, &tr);
		CHECK(tr.from == NULL && (tr.flags & TRACE_R_NEW_TRACE));
		CHECK(tr.sampled == -1);
		CHECK(tr.ctx.random);
		CHECK(strcmp(tr.parent_uuid, tr.base_id) == 0);
		CHECK(strcmp(tr.span_uuid, tr.base_id) != 0);
		CHECK(tr.base_id[14] == '4');
		for (i = 0; i < 3; i++)
			CHECK(!trace_req_drops(&tr, i));
		trace_req_default_decision(&tr, 1);
		CHECK(tr.sampled == 1);
		s = sink_of(&c);
		CHECK(trace_inject(conf, &tr, &s) == 0);
		CHECK(coll_get(&c, "X-Trace-Info") != NULL);
		v = coll_get(&c, "traceparent");
		hex16(tr.ctx.trace_id, u);
		CHECK(v && strncmp(v + 3, u, 32) == 0 && strcmp(v + 52, "-03") == 0);
		v = coll_get(&c, "X-OpenStack-Request-ID");
		CHECK(v && strncmp(v, "req-", 4) == 0 && strcmp(v + 4, tr.base_id) == 0);
		/* what we sent verifies, with the edge span as parent_id */
		ctx_init(&ctx);
		CHECK(trace_codec_osprofiler.extract(trace_conf_osprofiler(conf),
		    c.hdrs, c.n, &ctx) == 1);
		CHECK(strcmp(ctx.osp_base_id, tr.base_id) == 0);
		CHECK(strcmp(ctx.osp_parent_id, tr.span_uuid) == 0);
		CHECK(strcmp(ctx.osp_parent_id, tr.base_id) != 0);
		/* response headers */
		s = sink_of(&c);
		CHECK(trace_response_headers(conf, &tr, &s) == 0);
		CHECK(strcmp(coll_get(&c, "X-Trace-Id"), tr.base_id) == 0);
		v = coll_get(&c, "Server-Timing");
		CHECK(v && strncmp(v, "trace;desc=00-", 14) == 0 &&
		    strncmp(v + 14, u, 32) == 0 && strlen(v) == 11 + 55);
		/* not sampled: no osprofiler, the decision propagates */
		trace_req_default_decision(&tr, 0);
		s = sink_of(&c);
		CHECK(trace_inject(conf, &tr, &s) == 0);
		CHECK(coll_get(&c, "X-Trace-Info") == NULL);
		CHECK(coll_get(&c, "X-Trace-HMAC") == NULL);
		v = coll_get(&c, "traceparent");
		CHECK(v && strcmp(v + 52, "-02") == 0);
	}

	/* precedence, drops, disagreement, request id kept */
	{
		struct tb_hdr h[] = { H("Host", "nova"),
		    H("traceparent", "00-12345678901234567890123456789012-1234567890123456-00"),
		    H("X-Trace-Info", ex_info), H("X-Trace-HMAC", ex_hmac),
		    H("X-OpenStack-Request-ID", "req-abc"),
		    H("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
		    H("User-Agent", "python-novaclient"),
		    H("uberctx-user", "alice smith"), H("baggage", "k1=v1") };

		trace_extract(conf, h, 9, &tr);
		CHECK(tr.from == &trace_codec_osprofiler);
		CHECK(tr.sampled == 1);
		CHECK(tr.n_disagree == 2);
		CHECK(strcmp(tr.base_id, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736") == 0);
		CHECK(strcmp(tr.parent_uuid, "37ca69bc-8473-4d12-a7b2-2e18f8fd5a24") == 0);
		CHECK(!trace_req_drops(&tr, 0) && !trace_req_drops(&tr, 4) &&
		    !trace_req_drops(&tr, 6));
		CHECK(trace_req_drops(&tr, 1) && trace_req_drops(&tr, 2) &&
		    trace_req_drops(&tr, 3) && trace_req_drops(&tr, 5) &&
		    trace_req_drops(&tr, 7) && trace_req_drops(&tr, 8));
		CHECKF(strcmp(tr.ctx.baggage, "user=alice%20smith,k1=v1") == 0,
		    "%s", tr.ctx.baggage);
		trace_req_default_decision(&tr, 0);
		s = sink_of(&c);
		CHECK(trace_inject(conf, &tr, &s) == 0);
		CHECK(coll_get(&c, "X-OpenStack-Request-ID") == NULL);
		CHECK(strcmp(coll_get(&c, "baggage"), "user=alice%20smith,k1=v1") == 0);
		v = coll_get(&c, "traceparent");
		CHECK(v && strncmp(v, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36) == 0 &&
		    strcmp(v + 52, "-01") == 0);
	}

	/* forged osprofiler: removed, counted, next format wins */
	{
		struct tb_hdr h[] = { H("X-Trace-Info", ex_info),
		    H("X-Trace-HMAC", "0000000000000000000000000000000000000000"),
		    H("traceparent", "00-12345678901234567890123456789012-1234567890123456-01") };
		char m[4096];

		trace_extract(conf, h, 3, &tr);
		CHECK(tr.from == &trace_codec_w3c);
		CHECK(tr.flags & TRACE_R_OSP_FORGED);
		CHECK(tr.invalid == 1u << TRACE_F_OSPROFILER);
		CHECK(trace_req_drops(&tr, 0) && trace_req_drops(&tr, 1));
		CHECK(strcmp(tr.parent_uuid, "00000000-0000-0000-1234-567890123456") == 0);
		CHECK(strcmp(tr.base_id, "12345678-9012-3456-7890-123456789012") == 0);
		trace_metrics_format(m, sizeof(m));
		CHECK(strstr(m, "tracebridge_trace_osprofiler_forged_total 1\n") != NULL);
		CHECK(strstr(m, "tracebridge_trace_extracted_total{format=\"w3c\"}") != NULL);
		CHECK(trace_metrics_format(m, 10) > 10 && strlen(m) == 9);
	}

	/* keep_foreign: foreign formats stay, injected ones and osprofiler go */
	conf2 = trace_conf_new((const char *[]){ "b3", "w3c" }, 2,
	    (const char *[]){ "w3c", "b3multi", "jaeger", "xray", "datadog",
	    "gcp", "ot", "b3", "osprofiler" }, 9, keys, 1, 1, 0, 0, 0, err,
	    sizeof(err));
	CHECKF(conf2 != NULL, "%s", err);
	{
		struct tb_hdr h[] = { H("X-B3-Sampled", "0"),
		    H("x-datadog-trace-id", "1"), H("Host", "x") };
		struct trace_conf *conf3 = trace_conf_new(NULL, 0,
		    (const char *[]){ "w3c" }, 1, NULL, 0, 1, 0, 0, 0, err,
		    sizeof(err));

		CHECKF(conf3 != NULL, "%s", err);
		trace_extract(conf3, h, 3, &tr);
		CHECK(tr.from == &trace_codec_b3 && tr.sampled == 0);
		CHECK(!trace_req_drops(&tr, 0) && !trace_req_drops(&tr, 1));
		trace_conf_free(conf3);

		trace_extract(conf2, h, 3, &tr);
		CHECK(tr.from == &trace_codec_b3 && tr.sampled == 0);
		CHECK(tr.flags & TRACE_R_NEW_TRACE);
		CHECK(trace_req_drops(&tr, 0) && trace_req_drops(&tr, 1));
		trace_req_default_decision(&tr, 1);
		CHECK(tr.sampled == 0);
		s = sink_of(&c);
		CHECK(trace_inject(conf2, &tr, &s) == 0);
		CHECKF(c.n == 1 + 3 + 1 + 1 + 4 + 1 + 3 + 1, "%zu", c.n);
		CHECK(strcmp(coll_get(&c, "X-B3-Sampled"), "0") == 0);
		CHECK(strcmp(coll_get(&c, "ot-tracer-sampled"), "false") == 0);
		CHECK(coll_get(&c, "X-Trace-Info") == NULL);
		/* every injected format reads back the same trace id */
		for (i = 0; i < TRACE_F_COUNT; i++) {
			if (i == TRACE_F_OSPROFILER)
				continue;
			ctx_init(&ctx);
			CHECKF(trace_codecs[i]->extract(NULL, c.hdrs, c.n, &ctx) == 1 &&
			    memcmp(ctx.trace_id, tr.ctx.trace_id, 16) == 0 &&
			    ctx.span_id == tr.span_id && ctx.sampled == 0,
			    "%s", trace_codecs[i]->name);
		}
		s = sink_of(&c);
		CHECK(trace_response_headers(conf2, &tr, &s) == 0 && c.n == 0);
	}
	/* the driver's name prefilter agrees with every codec's owns_header */
	{
		static const char *names[] = { "traceparent", "TraceState",
		    "b3", "X-B3-TraceId", "x-b3-spanid", "X-B3-ParentSpanId",
		    "X-B3-Sampled", "X-B3-Flags", "uber-trace-id",
		    "jaeger-debug-id", "uberctx-k", "X-Amzn-Trace-Id",
		    "x-datadog-trace-id", "x-datadog-parent-id",
		    "x-datadog-sampling-priority", "x-datadog-tags",
		    "x-datadog-origin", "X-Cloud-Trace-Context",
		    "ot-tracer-traceid", "ot-tracer-spanid", "ot-tracer-sampled",
		    "OT-Baggage-k", "X-Trace-Info", "X-Trace-HMAC", "baggage" };
		static const char *not_ours[] = { "X-Auth-Token", "Host",
		    "X-OpenStack-Request-ID", "OpenStack-API-Version", "x-b3",
		    "trace", "X-Trace", "uberctx-", "ot-baggage-", "X-Forwarded-For",
		    "B", "x", "" };
		struct tb_hdr h[32];
		size_t j, n2;

		for (n2 = 0; n2 < sizeof(names) / sizeof(names[0]); n2++)
			h[n2] = H(names[n2], "v");
		trace_extract(conf, h, n2, &tr);
		for (i = 0; i < n2; i++) {
			int owned = 0;

			for (j = 0; j < TRACE_F_COUNT; j++)
				owned |= trace_codecs[j]->owns_header(&h[i]);
			CHECKF(trace_req_drops(&tr, i), "%s kept", names[i]);
			CHECKF(owned || i == n2 - 1, "%s not owned", names[i]);
		}
		for (n2 = 0; n2 < sizeof(not_ours) / sizeof(not_ours[0]); n2++)
			h[n2] = H(not_ours[n2], "v");
		trace_extract(conf, h, n2, &tr);
		for (i = 0; i < n2; i++) {
			CHECKF(!trace_req_drops(&tr, i), "%s dropped", not_ours[i]);
			for (j = 0; j < TRACE_F_COUNT; j++)
				CHECKF(!trace_codecs[j]->owns_header(&h[i]),
				    "%s owned by %s", not_ours[i],
				    trace_codecs[j]->name);
		}
	}
	/* osprofiler with no parent_id: the edge span's parent is base_id */
	osp = trace_osprofiler_keys_new(keys, 1);
	sign_raw("{\"base_id\": \"4bf92f35-77b3-4da6-a3ce-929d0e0e4736\"}",
	    "SECRET_KEY", info, mac);
	{
		struct tb_hdr h[] = { H("X-Trace-Info", info), H("X-Trace-HMAC", mac) };

		trace_extract(conf, h, 2, &tr);
		CHECK(tr.from == &trace_codec_osprofiler);
		CHECK(strcmp(tr.parent_uuid, tr.base_id) == 0);
	}
	trace_osprofiler_keys_free(osp);
	trace_conf_free(conf2);
	trace_conf_free(conf);
}

/* ---- W3C limits and baggage emission beyond the vectors ---- */

static void
test_w3c_limits_and_baggage(void)
{
	static const char *tp = "00-12345678901234567890123456789012-1234567890123456-01";
	char big[200], ts[1200], want[1024];
	struct tb_trace_ctx ctx;
	struct trace_req tr;
	struct coll c;
	struct tb_hdr_sink s;
	size_t i;

	/* over 512 chars: members over 128 chars go first, from the end */
	memset(big, 'x', 150);
	big[150] = '\0';
	snprintf(ts, sizeof(ts), "a=1,b=%s,c=3", big);
	for (i = 0; i < 4; i++) {
		size_t l = strlen(ts);

		snprintf(ts + l, sizeof(ts) - l, ",k%zu=%s", i, big);
	}
	{
		struct tb_hdr h[] = { H("traceparent", tp), H("tracestate", ts) };

		ctx_init(&ctx);
		CHECK(trace_codec_w3c.extract(NULL, h, 2, &ctx) == 1);
		/* 7 members, 5 long ones: dropped from the end while > 512 */
		snprintf(want, sizeof(want), "a=1,b=%s,c=3,k0=%s,k1=%s", big,
		    big, big);
		CHECKF(strcmp(ctx.tracestate, want) == 0, "%s", ctx.tracestate);
		CHECK(ctx.tracestate_len <= TRACE_TRACESTATE_MAX);
	}
	{
		struct tb_hdr h[] = { H("traceparent", tp),
		    H("tracestate", "a=1,b=2,a=3") };

		ctx_init(&ctx);
		CHECK(trace_codec_w3c.extract(NULL, h, 2, &ctx) == 1);
		/* duplicated key: the first stays, order kept (issue 13) */
		CHECKF(strcmp(ctx.tracestate, "a=1,b=2") == 0, "%s",
		    ctx.tracestate);
	}
	{
		/* 32 distinct keys and a repeat of each: the repeats take no
		 * member slot, all 32 first occurrences are kept */
		char many[1024];
		size_t l = 0;
		int r;

		for (r = 0; r < 2; r++)
			for (i = 0; i < 32; i++)
				l += (size_t)snprintf(many + l, sizeof(many) - l,
				    "%sk%02zu=%d", l ? "," : "", i, r);
		struct tb_hdr h[] = { H("traceparent", tp),
		    H("tracestate", many) };

		ctx_init(&ctx);
		CHECK(trace_codec_w3c.extract(NULL, h, 2, &ctx) == 1);
		CHECKF(strncmp(ctx.tracestate, "k00=0,k01=0,", 12) == 0 &&
		    strstr(ctx.tracestate, "=1") == NULL &&
		    strstr(ctx.tracestate, "k31=0") != NULL, "%s",
		    ctx.tracestate);
		/* and a 33rd distinct key after them still drops the header */
		snprintf(many + l, sizeof(many) - l, ",k32=0");
		h[1] = H("tracestate", many);
		ctx_init(&ctx);
		CHECK(trace_codec_w3c.extract(NULL, h, 2, &ctx) == 1);
		CHECK(ctx.tracestate_len == 0);
	}
	{
		/* a repeat of a key whose first value was cut for the 512-char
		 * limit does not come back in its place */
		snprintf(ts, sizeof(ts), "a=1,c=%s,d=%s,e=%s,b=%s,b=2", big, big,
		    big, big);
		struct tb_hdr h[] = { H("traceparent", tp), H("tracestate", ts) };

		ctx_init(&ctx);
		CHECK(trace_codec_w3c.extract(NULL, h, 2, &ctx) == 1);
		CHECKF(strstr(ctx.tracestate, ",b=") == NULL &&
		    strstr(ctx.tracestate, ",e=") != NULL, "%s", ctx.tracestate);
	}
	{
		struct tb_hdr h[] = { H("traceparent", tp),
		    H("tracestate", "a=1\t,  ,b=2 ") };

		ctx_init(&ctx);
		CHECK(trace_codec_w3c.extract(NULL, h, 2, &ctx) == 1);
		CHECK(strcmp(ctx.tracestate, "a=1,b=2") == 0);
	}
	/* baggage into Jaeger / OT headers: properties dropped, keys that
	 * are not tokens never become header names */
	make_req(&tr, "4bf92f3577b34da6a3ce929d0e0e4736", 7, 1, 0);
	strcpy(tr.ctx.baggage, "k1=v1;prop=1, bad key=x,user=alice%20smith,=z,noeq");
	tr.ctx.baggage_len = strlen(tr.ctx.baggage);
	s = sink_of(&c);
	CHECK(trace_codec_jaeger.inject(NULL, &tr, &s) == 0);
	CHECK(c.n == 3);
	CHECK(strcmp(coll_get(&c, "uberctx-k1"), "v1") == 0);
	CHECK(strcmp(coll_get(&c, "uberctx-user"), "alice%20smith") == 0);
	s = sink_of(&c);
	CHECK(trace_codec_ot.inject(NULL, &tr, &s) == 0);
	CHECK(strcmp(coll_get(&c, "ot-baggage-k1"), "v1") == 0);
	/* jaeger-debug-id alone: a forced debug decision */
	{
		struct tb_hdr h[] = { H("jaeger-debug-id", "abc") };

		ctx_init(&ctx);
		CHECK(trace_codec_jaeger.extract(NULL, h, 1, &ctx) == 1);
		CHECK(ctx.sampled == 1 && ctx.debug && !ctx.has_trace_id);
	}
}

int
main(void)
{
	test_ids();
	test_vectors();
	test_round_trips();
	test_prefixes();
	test_osprofiler();
	test_driver();
	test_w3c_limits_and_baggage();
	TB_TEST_END();
}
