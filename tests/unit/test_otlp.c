/*
 * test_otlp.c: the OTLP model and encoders (otlp.h) and the pure helpers
 * over a collector's answer (sink_otlp.h).
 *
 * The known bytes of SMALL_SPAN_HEX are also decoded by OpenTelemetry's own
 * generated protobuf code in tests/integration/test_otlp.py
 * (test_known_bytes_decode), so they are not just what we think we wrote.
 * Run with an argument "hex" it prints them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "otlp.h"
#include "sink_otlp.h"
#include "span.h"
#include "tb_test.h"

static void
test_varint(void)
{
	static const struct { uint64_t v; const char *hex; } t[] = {
		{ 0, "00" }, { 1, "01" }, { 127, "7f" }, { 128, "8001" },
		{ 300, "ac02" }, { 16383, "ff7f" }, { 16384, "808001" },
		{ 0xffffffffULL, "ffffffff0f" },
		{ UINT64_MAX, "ffffffffffffffffff01" },
		/* int64 -1 as int_value: ten bytes */
		{ (uint64_t)-1LL, "ffffffffffffffffff01" },
	};
	uint8_t b[10];
	char hex[21];
	size_t i, n, k;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		n = otlp_pb_varint(b, t[i].v);
		for (k = 0; k < n; k++)
			snprintf(hex + 2 * k, 3, "%02x", b[k]);
		hex[2 * n] = '\0';
		CHECKF(strcmp(hex, t[i].hex) == 0, "%llu: %s", (unsigned long long)t[i].v, hex);
	}
}

static void
test_uuid(void)
{
	uint8_t u[16];

	CHECK(otlp_uuid_bytes("4bf92f35-77b3-4da6-a3ce-929d0e0e4736", u) == 0);
	CHECK(u[0] == 0x4b && u[15] == 0x36 && u[8] == 0xa3);
	CHECK(otlp_uuid_bytes("4BF92F35-77B3-4DA6-A3CE-929D0E0E4736", u) == 0);
	CHECK(otlp_uuid_bytes("4bf92f3577b34da6a3ce929d0e0e4736", u) == -1);
	CHECK(otlp_uuid_bytes("4bf92f35-77b3-4da6-a3ce-929d0e0e473", u) == -1);
	CHECK(otlp_uuid_bytes("4bf92f35-77b3-4da6-a3ce-929d0e0e47366", u) == -1);
	CHECK(otlp_uuid_bytes("4bf92f35-77b3-4da6-a3ce-929d0e0e47zz", u) == -1);
	CHECK(otlp_uuid_bytes("", u) == -1);
	CHECK(otlp_uuid_bytes(NULL, u) == -1);
}

/* The span of the known-bytes test: W3C caller, a 503 from upstream. */
static void
small_rec(struct span_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->base_id = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";
	r->trace_id = "37ca69bc-8473-4d12-a7b2-2e18f8fd5a24";
	r->parent_id = "00000000-0000-0000-00f0-67aa0ba902b7";
	r->has_parent = 1;
	r->tracestate = "k=v";
	r->tracestate_len = 3;
	r->name = "proxy";
	r->operation = "GET /v2.1/servers/{id}";
	r->project = "tracebridge";
	r->service = "compute";
	r->host = "h1";
	r->start_us = 1700000000000000LL;
	r->stop_us = 1700000000001500LL;
	r->method = "GET";
	r->method_len = 3;
	r->target = "/v2.1/servers/abc?x=1";
	r->target_len = strlen(r->target);
	r->scheme = "http";
	r->client_addr = "127.0.0.1:5555";
	r->host_header = "api:8774";
	r->http_version = "HTTP/1.1";
	r->status_code = 503;
	r->bytes_from_client = 100;
	r->bytes_to_client = 200;
	r->etype = SPAN_ETYPE_HTTP_SERVER_ERROR;
	r->message = "HTTP 503";
}

/* Hex of otlp_pb_span() for small_rec(); see the file comment. */
#define SMALL_SPAN_HEX \
	"0a104bf92f3577b34da6a3ce929d0e0e47361208a7b22e18f8fd5a241a036b3d" \
	"76220800f067aa0ba902b72a16474554202f76322e312f736572766572732f7b" \
	"69647d30023900002a36fe9c97174160e34036fe9c97174a1c0a13687474702e" \
	"726571756573742e6d6574686f6412050a034745544a1f0a0875726c2e706174" \
	"6812130a112f76322e312f736572766572732f6162634a120a0975726c2e7175" \
	"65727912050a03783d314a140a0a75726c2e736368656d6512060a0468747470" \
	"4a200a19687474702e726573706f6e73652e7374617475735f636f6465120318" \
	"f7034a210a186e6574776f726b2e70726f746f636f6c2e76657273696f6e1205" \
	"0a03312e314a1d0a0e636c69656e742e61646472657373120b0a093132372e30" \
	"2e302e314a120a0b636c69656e742e706f7274120318b32b4a170a0e73657276" \
	"65722e6164647265737312050a036170694a120a0b7365727665722e706f7274" \
	"120318c6444a170a11687474702e726571756573742e73697a6512021864"

static void
hexof(const struct span_buf *b, char *out)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		snprintf(out + 2 * i, 3, "%02x", (unsigned char)b->p[i]);
	out[2 * b->len] = '\0';
}

static void
test_span_model(void)
{
	struct span_rec r;
	struct otlp_span o;
	size_t i;
	int seen_query = 0, seen_port = 0, seen_status = 0;

	small_rec(&r);
	CHECK(otlp_span_from_rec(&r, &o) == 0);
	CHECK(o.has_parent);
	CHECK(o.span_id[0] == 0xa7 && o.span_id[7] == 0x24);
	CHECK(o.parent_span_id[1] == 0xf0 && o.parent_span_id[7] == 0xb7);
	CHECK(o.start_ns == 1700000000000000000ULL);
	CHECK(o.end_ns == 1700000000001500000ULL);
	CHECK(o.name_len == strlen("GET /v2.1/servers/{id}"));
	CHECK(o.status_code == OTLP_STATUS_ERROR);
	CHECK(strcmp(o.etype, "HTTPServerError") == 0);
	for (i = 0; i < o.n_attrs; i++) {
		if (strcmp(o.attrs[i].key, "url.query") == 0)
			seen_query = o.attrs[i].slen == 3 && memcmp(o.attrs[i].s, "x=1", 3) == 0;
		if (strcmp(o.attrs[i].key, "server.port") == 0)
			seen_port = o.attrs[i].i == 8774;
		if (strcmp(o.attrs[i].key, "http.response.status_code") == 0)
			seen_status = o.attrs[i].i == 503;
		CHECKF(strcmp(o.attrs[i].key, "server.address") != 0 ||
		    (o.attrs[i].slen == 3 && memcmp(o.attrs[i].s, "api", 3) == 0),
		    "server.address");
	}
	CHECK(seen_query && seen_port && seen_status);

	/* a new trace: no parent; absolute-form target; IPv6 client */
	r.has_parent = 0;
	r.target = "http://api:8774/v3?";
	r.target_len = strlen(r.target);
	r.client_addr = "::1:4444";
	r.status_code = 200;
	r.etype = NULL;
	r.message = NULL;
	r.operation = NULL;
	CHECK(otlp_span_from_rec(&r, &o) == 0);
	CHECK(!o.has_parent);
	CHECK(o.status_code == OTLP_STATUS_UNSET && o.etype == NULL);
	CHECK(o.name_len == 5);		/* span_name without an operation */
	for (i = 0; i < o.n_attrs; i++) {
		if (strcmp(o.attrs[i].key, "url.path") == 0)
			CHECK(o.attrs[i].slen == 3 && memcmp(o.attrs[i].s, "/v3", 3) == 0);
		if (strcmp(o.attrs[i].key, "url.query") == 0)
			CHECK(o.attrs[i].slen == 0);
		if (strcmp(o.attrs[i].key, "client.address") == 0)
			CHECK(o.attrs[i].slen == 3 && memcmp(o.attrs[i].s, "::1", 3) == 0);
	}
	r.base_id = "nope";
	CHECK(otlp_span_from_rec(&r, &o) == -1);
}

static void
test_pb_known(int print)
{
	struct span_rec r;
	struct otlp_span o;
	struct span_buf b = { 0 };
	char *hex;

	small_rec(&r);
	CHECK(otlp_span_from_rec(&r, &o) == 0);
	/* the first 11 attributes: the known bytes stay short */
	o.n_attrs = 11;
	o.etype = NULL;
	o.status_code = OTLP_STATUS_UNSET;
	CHECK(otlp_pb_span(&o, &b) == 0);
	hex = malloc(2 * b.len + 1);
	hexof(&b, hex);
	if (print)
		printf("%s\n", hex);
	CHECKF(strcmp(hex, SMALL_SPAN_HEX) == 0, "got %s", hex);
	free(hex);
	span_buf_free(&b);
}

static void
test_pb_request(void)
{
	struct span_rec r;
	struct otlp_span o;
	struct span_buf sp = { 0 }, req = { 0 };
	struct otlp_kv res = { "service.name", OTLP_V_STR, "tb-compute", 10, 0 };
	const char *spans[2];
	size_t lens[2];

	small_rec(&r);
	CHECK(otlp_span_from_rec(&r, &o) == 0);
	CHECK(otlp_pb_span(&o, &sp) == 0);
	spans[0] = spans[1] = sp.p;
	lens[0] = lens[1] = sp.len;
	CHECK(otlp_pb_resource_spans(&req, &res, 1, "tracebridge", "0.1.0", spans,
	    lens, 2) == 0);
	/* field 1, length-delimited; a two-byte length (> 127 bytes) */
	CHECK(req.len > 2 * sp.len && (unsigned char)req.p[0] == 0x0a);
	CHECK(((unsigned char)req.p[1] & 0x80) != 0);
	span_buf_free(&sp);
	span_buf_free(&req);
}

/* proto3 strings must be UTF-8: raw bytes become U+FFFD, valid text
 * (2-, 3- and 4-byte sequences) is left alone. */
static void
test_pb_utf8(void)
{
	static const struct { const char *in, *out; } t[] = {
		{ "caf\xc3\xa9", "caf\xc3\xa9" },
		{ "\xe2\x82\xac \xf0\x9f\x98\x80", "\xe2\x82\xac \xf0\x9f\x98\x80" },
		{ "caf\xe9", "caf\xef\xbf\xbd" },
		{ "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },		/* overlong */
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },	/* surrogate */
		{ "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "ab\xe2\x82", "ab\xef\xbf\xbd\xef\xbf\xbd" },		/* truncated */
	};
	struct span_rec r;
	struct otlp_span o;
	struct span_buf b = { 0 };
	size_t i, n;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		small_rec(&r);
		CHECK(otlp_span_from_rec(&r, &o) == 0);
		o.attrs[0].s = t[i].in;
		o.attrs[0].slen = strlen(t[i].in);
		o.n_attrs = 1;
		b.len = 0;
		CHECK(otlp_pb_span(&o, &b) == 0);
		n = strlen(t[i].out);
		CHECKF(b.len > n && memmem(b.p, b.len, t[i].out, n) != NULL &&
		    (strcmp(t[i].in, t[i].out) == 0 ||
		    memmem(b.p, b.len, t[i].in, strlen(t[i].in)) == NULL), "case %zu", i);
	}
	span_buf_free(&b);
}

static void
test_json(void)
{
	struct span_rec r;
	struct otlp_span o;
	struct span_buf sp = { 0 }, req = { 0 };
	struct otlp_kv res = { "service.name", OTLP_V_STR, "tb-compute", 10, 0 };
	const char *spans[1];
	size_t lens[1];
	json_t *j, *s, *a;
	json_error_t e;
	size_t i;
	int saw_int = 0;

	small_rec(&r);
	r.user_agent = "caf\xe9";	/* latin-1, not UTF-8 */
	r.user_agent_len = 4;
	CHECK(otlp_span_from_rec(&r, &o) == 0);
	CHECK(otlp_json_span(&o, &sp) == 0);
	spans[0] = sp.p;
	lens[0] = sp.len;
	CHECK(span_buf_add(&req, "{\"resourceSpans\":[", 18) == 0);
	CHECK(otlp_json_resource_spans(&req, &res, 1, "tracebridge", "0.1.0",
	    spans, lens, 1) == 0);
	CHECK(span_buf_add(&req, "]}", 2) == 0);
	j = json_loadb(req.p, req.len, 0, &e);
	CHECKF(j != NULL, "%s", e.text);
	s = json_object_get(json_array_get(json_object_get(json_array_get(
	    json_object_get(j, "resourceSpans"), 0), "scopeSpans"), 0), "spans");
	s = json_array_get(s, 0);
	CHECK(strcmp(json_string_value(json_object_get(s, "traceId")),
	    "4bf92f3577b34da6a3ce929d0e0e4736") == 0);
	CHECK(strcmp(json_string_value(json_object_get(s, "spanId")),
	    "a7b22e18f8fd5a24") == 0);
	CHECK(strcmp(json_string_value(json_object_get(s, "parentSpanId")),
	    "00f067aa0ba902b7") == 0);
	CHECK(json_integer_value(json_object_get(s, "kind")) == 2);
	CHECK(strcmp(json_string_value(json_object_get(s, "startTimeUnixNano")),
	    "1700000000000000000") == 0);
	CHECK(json_integer_value(json_object_get(json_object_get(s, "status"),
	    "code")) == 2);
	a = json_object_get(s, "attributes");
	for (i = 0; i < json_array_size(a); i++) {
		json_t *kv = json_array_get(a, i);
		const char *k = json_string_value(json_object_get(kv, "key"));

		if (strcmp(k, "http.response.status_code") == 0)
			saw_int = strcmp(json_string_value(json_object_get(json_object_get(
			    kv, "value"), "intValue")), "503") == 0;
		if (strcmp(k, "user_agent.original") == 0)
			CHECK(strcmp(json_string_value(json_object_get(json_object_get(
			    kv, "value"), "stringValue")), "caf\xef\xbf\xbd") == 0);
	}
	CHECK(saw_int);
	json_decref(j);
	span_buf_free(&sp);
	span_buf_free(&req);
}

static void
test_answer(void)
{
	int64_t rej;
	char msg[64];
	/* partial_success { rejected_spans: 3, error_message: "bad" } */
	static const char pb[] = "\x0a\x07\x08\x03\x12\x03" "bad";

	CHECK(sink_otlp_retry_after("1", 1) == 1);
	CHECK(sink_otlp_retry_after("120", 3) == 120);
	CHECK(sink_otlp_retry_after("99999", 5) == 300);
	CHECK(sink_otlp_retry_after("", 0) == -1);
	CHECK(sink_otlp_retry_after("-1", 2) == -1);
	CHECK(sink_otlp_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 29) == -1);
	CHECK(sink_otlp_retry_after("12345678901", 11) == -1);

	CHECK(sink_otlp_partial_success(pb, sizeof(pb) - 1, 0, &rej, msg, sizeof(msg)) == 0);
	CHECK(rej == 3 && strcmp(msg, "bad") == 0);
	CHECK(sink_otlp_partial_success("", 0, 0, &rej, msg, sizeof(msg)) == 0 && rej == 0);
	/* truncated length, bad varint, field 0 */
	CHECK(sink_otlp_partial_success("\x0a\x09\x08\x03", 4, 0, &rej, msg, sizeof(msg)) == -1);
	CHECK(sink_otlp_partial_success("\x0a\xff", 2, 0, &rej, msg, sizeof(msg)) == -1);
	CHECK(sink_otlp_partial_success("\x00\x00", 2, 0, &rej, msg, sizeof(msg)) == -1);
	CHECK(sink_otlp_partial_success("{}", 2, 1, &rej, msg, sizeof(msg)) == 0 && rej == 0);
	CHECK(sink_otlp_partial_success("{\"partialSuccess\":{\"rejectedSpans\":\"2\","
	    "\"errorMessage\":\"x\\ny\"}}", 57, 1, &rej, msg, sizeof(msg)) == 0);
	CHECK(rej == 2);
	CHECK(sink_otlp_partial_success("not json", 8, 1, &rej, msg, sizeof(msg)) == -1);
	CHECK(sink_otlp_partial_success("{\"rejectedSpans\":", 17, 1, &rej, msg, sizeof(msg)) == -1);
}

int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "hex") == 0) {
		test_pb_known(1);
		return 0;
	}
	test_varint();
	test_uuid();
	test_span_model();
	test_pb_known(0);
	test_pb_request();
	test_pb_utf8();
	test_json();
	test_answer();
	TB_TEST_END();
}
