/*
 * test_trace_tree: osprofiler's report tree from notifications
 * (trace_tree.c), with orderly and hostile input, the trace id forms
 * (trace_index.c) and the HTML escaping of the viewer's pages
 * (viewer_html.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "tb_test.h"
#include "trace_index.h"
#include "trace_tree.h"
#include "viewer_html.h"

#define A "aaaaaaaa-0000-4000-8000-000000000001"
#define B "bbbbbbbb-0000-4000-8000-000000000002"
#define C "cccccccc-0000-4000-8000-000000000003"
#define D "dddddddd-0000-4000-8000-000000000004"
#define BASE "00000000-0000-4000-8000-00000000000b"

/* One notification as osprofiler writes it; ts is "SS.ffffff" in 10:00. */
static char *
note(const char *name, const char *id, const char *parent, const char *ts,
    const char *extra_info)
{
	char *s;

	if (asprintf(&s, "{\"name\": \"%s\", \"base_id\": \"" BASE "\", "
	    "\"trace_id\": \"%s\", \"parent_id\": \"%s\", "
	    "\"timestamp\": \"2026-12-03T10:00:%s\", \"info\": {\"host\": \"h1\"%s%s}, "
	    "\"project\": \"demo\", \"service\": \"api\"}", name, id, parent, ts,
	    extra_info ? ", " : "", extra_info ? extra_info : "") < 0)
		abort();
	return s;
}

static int
add(struct trace_tree *t, char *s)
{
	int rc = trace_tree_add(t, s, strlen(s));

	free(s);
	return rc;
}

static const struct tt_span *
span_named(const struct trace_tree *t, const char *id)
{
	struct tt_summary sum;
	size_t i;

	trace_tree_summary(t, &sum);
	for (i = 0; i < sum.n_spans; i++)
		if (strcmp(trace_tree_span(t, i)->trace_id, id) == 0)
			return trace_tree_span(t, i);
	return NULL;
}

static void
test_times(void)
{
	int64_t us;

	CHECK(trace_tree_parse_time("1970-01-01T00:00:00.000000", 26, &us) == 0 && us == 0);
	CHECK(trace_tree_parse_time("2026-11-24T21:07:56.574216", 26, &us) == 0 &&
	    us == 1795554476574216LL);
	CHECK(trace_tree_parse_time("2026-11-24T21:07:56.5", 21, &us) == 0 &&
	    us == 1795554476500000LL);
	CHECK(trace_tree_parse_time("2024-02-29T00:00:00.1", 21, &us) == 0);
	CHECK(trace_tree_parse_time("2026-02-29T00:00:00.1", 21, &us) == -1);
	CHECK(trace_tree_parse_time("2026-11-24T21:07:56", 19, &us) == -1);
	CHECK(trace_tree_parse_time("2026-11-24T24:07:56.1", 21, &us) == -1);
	CHECK(trace_tree_parse_time("2026-11-24T21:07:60.1", 21, &us) == -1);
	CHECK(trace_tree_parse_time("2026-13-24T21:07:56.1", 21, &us) == -1);
	CHECK(trace_tree_parse_time("2026-11-24T21:07:56.1234567", 27, &us) == -1);
	CHECK(trace_tree_parse_time("2026-11-24T21:07:56.1Z", 22, &us) == -1);
	CHECK(trace_tree_parse_time("", 0, &us) == -1);
}

/* A proxy span, a wsgi child and a db grandchild, given newest first as
 * LRANGE returns them: the osprofiler report, key by key. */
static void
test_orderly(void)
{
	struct trace_tree *t = trace_tree_new();
	struct tt_summary sum;
	json_t *rep, *c0, *c1, *c2;

	CHECK(add(t, note("proxy-stop", A, BASE, "01.000900", "\"response\": {\"status_code\": 200}")) == 0);
	CHECK(add(t, note("wsgi-stop", B, A, "01.000800", NULL)) == 0);
	CHECK(add(t, note("db-stop", C, B, "01.000500", NULL)) == 0);
	CHECK(add(t, note("db-start", C, B, "01.000300", "\"db\": {\"statement\": \"SELECT 1\"}")) == 0);
	CHECK(add(t, note("wsgi-start", B, A, "01.000200", NULL)) == 0);
	CHECK(add(t, note("proxy-start", A, BASE, "00.999000", NULL)) == 0);
	CHECK(trace_tree_build(t) == 0);
	trace_tree_summary(t, &sum);
	CHECK(sum.n_spans == 3 && sum.n_skipped == 0);
	CHECK(strcmp(trace_tree_span(t, 0)->trace_id, A) == 0 && trace_tree_span(t, 0)->depth == 0);
	CHECK(strcmp(trace_tree_span(t, 1)->trace_id, B) == 0 && trace_tree_span(t, 1)->depth == 1);
	CHECK(strcmp(trace_tree_span(t, 2)->trace_id, C) == 0 && trace_tree_span(t, 2)->depth == 2);
	CHECK(trace_tree_span(t, 2)->parent == 1);
	rep = trace_tree_report(t);
	CHECK(rep != NULL);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(rep, "info"), "name")), "total") == 0);
	CHECK(json_integer_value(json_object_get(json_object_get(rep, "info"), "finished")) == 1);
	CHECK(json_integer_value(json_object_get(json_object_get(rep, "info"), "last_trace_started")) == 1);
	c0 = json_array_get(json_object_get(rep, "children"), 0);
	c1 = json_array_get(json_object_get(c0, "children"), 0);
	c2 = json_array_get(json_object_get(c1, "children"), 0);
	CHECK(json_array_size(json_object_get(rep, "children")) == 1);
	CHECK(strcmp(json_string_value(json_object_get(c0, "trace_id")), A) == 0);
	CHECK(strcmp(json_string_value(json_object_get(c0, "parent_id")), BASE) == 0);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(c0, "info"), "name")), "proxy") == 0);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(c0, "info"), "host")), "h1") == 0);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(c0, "info"), "exception")), "None") == 0);
	CHECK(json_object_get(json_object_get(c0, "info"), "meta.raw_payload.proxy-start") != NULL);
	CHECK(json_object_get(json_object_get(c0, "info"), "meta.raw_payload.proxy-stop") != NULL);
	CHECK(strcmp(json_string_value(json_object_get(c1, "trace_id")), B) == 0);
	CHECK(strcmp(json_string_value(json_object_get(c2, "trace_id")), C) == 0);
	/* ms since 10:00:00.999000, truncated: 0.999 -> 0, 1.0003 -> 1 */
	CHECK(json_integer_value(json_object_get(json_object_get(c0, "info"), "started")) == 0);
	CHECK(json_integer_value(json_object_get(json_object_get(c0, "info"), "finished")) == 1);
	CHECK(json_integer_value(json_object_get(json_object_get(c2, "info"), "started")) == 1);
	CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(rep, "stats"), "db"), "count")) == 1);
	CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(rep, "stats"), "proxy"), "duration")) == 1);
	json_decref(rep);
	trace_tree_free(t);
}

/* Siblings by start, stable in arrival order for equal ms; a later
 * notification arriving first changes nothing. */
static void
test_order_and_ties(void)
{
	struct trace_tree *t = trace_tree_new();

	add(t, note("a-start", A, BASE, "00.000000", NULL));
	add(t, note("db-start", D, A, "00.009000", NULL));	/* later */
	add(t, note("db-start", B, A, "00.002100", NULL));	/* same ms as C */
	add(t, note("db-start", C, A, "00.002900", NULL));
	CHECK(trace_tree_build(t) == 0);
	CHECK(strcmp(trace_tree_span(t, 1)->trace_id, B) == 0);
	CHECK(strcmp(trace_tree_span(t, 2)->trace_id, C) == 0);
	CHECK(strcmp(trace_tree_span(t, 3)->trace_id, D) == 0);
	trace_tree_free(t);

	/* ties at ms: arrival order wins even against µs order (Python) */
	t = trace_tree_new();
	add(t, note("a-start", A, BASE, "00.000000", NULL));
	add(t, note("db-start", C, A, "00.002900", NULL));
	add(t, note("db-start", B, A, "00.002100", NULL));
	CHECK(trace_tree_build(t) == 0);
	CHECK(strcmp(trace_tree_span(t, 1)->trace_id, C) == 0);
	trace_tree_free(t);
}

static void
test_missing_stop_and_start(void)
{
	struct trace_tree *t = trace_tree_new();
	const struct tt_span *s;
	json_t *rep, *info;

	add(t, note("wsgi-start", A, BASE, "00.000000", NULL));
	add(t, note("db-stop", B, A, "00.005000", "\"etype\": \"OperationalError\", \"message\": \"gone\""));
	CHECK(trace_tree_build(t) == 0);
	s = span_named(t, A);
	CHECK(s != NULL && s->has_start && !s->has_stop && s->exception == NULL);
	CHECK(s != NULL && s->finish_us == s->start_us);	/* osprofiler: duration 0 */
	s = span_named(t, B);
	CHECK(s != NULL && !s->has_start && s->has_stop && s->error);
	CHECK(s != NULL && s->start_ms == 5 && s->finish_ms == 5);
	rep = trace_tree_report(t);
	info = json_object_get(json_array_get(json_object_get(rep, "children"), 0), "info");
	CHECK(json_object_get(info, "exception") == NULL);	/* no stop: no key */
	CHECK(json_integer_value(json_object_get(info, "finished")) == 0);
	info = json_object_get(json_array_get(json_object_get(json_array_get(
	    json_object_get(rep, "children"), 0), "children"), 0), "info");
	CHECK(strcmp(json_string_value(json_object_get(info, "exception")), "OperationalError") == 0);
	CHECK(json_integer_value(json_object_get(info, "started")) == 5);
	json_decref(rep);
	trace_tree_free(t);
}

/* The parent is not in the trace: a root, as in _build_tree. */
static void
test_unknown_parent(void)
{
	struct trace_tree *t = trace_tree_new();
	json_t *rep;

	add(t, note("wsgi-start", B, "ffffffff-ffff-4fff-bfff-ffffffffffff", "00.002000", NULL));
	add(t, note("proxy-start", A, BASE, "00.001000", NULL));
	CHECK(trace_tree_build(t) == 0);
	CHECK(trace_tree_span(t, 0)->depth == 0 && trace_tree_span(t, 1)->depth == 0);
	CHECK(strcmp(trace_tree_span(t, 0)->trace_id, A) == 0);	/* by start */
	rep = trace_tree_report(t);
	CHECK(json_array_size(json_object_get(rep, "children")) == 2);
	json_decref(rep);
	trace_tree_free(t);
}

/* Cycles osprofiler cannot print (json.dumps: "Circular reference
 * detected"): a self-parent, a 2-cycle, a 3-cycle with a tail hanging
 * off it. Every span is shown once, each cycle cut once. */
static void
test_cycles(void)
{
	struct trace_tree *t = trace_tree_new();
	struct tt_summary sum;
	json_t *rep;
	char *js;

	add(t, note("x-start", A, A, "00.001000", NULL));		/* own parent */
	add(t, note("x-start", B, C, "00.002000", NULL));		/* B <-> C */
	add(t, note("x-start", C, B, "00.003000", NULL));
	add(t, note("x-start", "e1", "e3", "00.004000", NULL));	/* e1->e2->e3->e1 */
	add(t, note("x-start", "e2", "e1", "00.005000", NULL));
	add(t, note("x-start", "e3", "e2", "00.006000", NULL));
	add(t, note("x-start", "tail", "e2", "00.007000", NULL));
	CHECK(trace_tree_build(t) == 0);
	trace_tree_summary(t, &sum);
	CHECK(sum.n_spans == 7);
	CHECK(sum.n_cycles_cut == 3);
	CHECK(span_named(t, A) != NULL && (span_named(t, A)->flags & TT_F_CYCLE));
	CHECK(span_named(t, A) != NULL && span_named(t, A)->n_children == 0);
	CHECK(span_named(t, B) != NULL && (span_named(t, B)->flags & TT_F_CYCLE));
	CHECK(span_named(t, C) != NULL && span_named(t, C)->depth == 1);
	CHECK(span_named(t, "e3") != NULL && span_named(t, "e3")->depth == 2);
	CHECK(span_named(t, "tail") != NULL && span_named(t, "tail")->depth == 2);
	rep = trace_tree_report(t);
	js = json_dumps(rep, 0);		/* jansson refuses cycles: none left */
	CHECK(js != NULL);
	free(js);
	json_decref(rep);
	trace_tree_free(t);
}

/* A chain deeper than TT_MAX_DEPTH: cut into roots, no deep recursion. */
static void
test_deep_chain(void)
{
	struct trace_tree *t = trace_tree_new();
	struct tt_summary sum;
	char id[32], parent[32];
	json_t *rep;
	char *js;
	int i;

	for (i = 0; i < 3000; i++) {
		snprintf(id, sizeof(id), "n%d", i);
		snprintf(parent, sizeof(parent), i ? "n%d" : BASE, i - 1);
		add(t, note("x-start", id, parent, "00.000001", NULL));
	}
	CHECK(trace_tree_build(t) == 0);
	trace_tree_summary(t, &sum);
	CHECK(sum.n_spans == 3000);
	CHECK(sum.n_deep_cut == 3000 / (TT_MAX_DEPTH + 1));
	for (i = 0; i < 3000; i++)
		CHECK(trace_tree_span(t, (size_t)i)->depth <= TT_MAX_DEPTH);
	rep = trace_tree_report(t);
	CHECK(rep != NULL && (js = json_dumps(rep, 0)) != NULL);
	free(js);
	json_decref(rep);
	trace_tree_free(t);
}

/* Duplicate ids: the first notification names the node; a repeated
 * notification replaces its payload, as a dict key would. */
static void
test_duplicates(void)
{
	struct trace_tree *t = trace_tree_new();
	struct tt_summary sum;
	const struct tt_span *s;

	add(t, note("wsgi-start", A, BASE, "00.001000", NULL));
	add(t, note("other-start", A, "nobody", "00.002000", NULL));
	add(t, note("wsgi-start", A, BASE, "00.003000", "\"n\": 2"));
	CHECK(trace_tree_build(t) == 0);
	trace_tree_summary(t, &sum);
	CHECK(sum.n_spans == 1);
	s = trace_tree_span(t, 0);
	CHECK(s->name_len == 4 && memcmp(s->name, "wsgi", 4) == 0);
	CHECK(strcmp(s->parent_id, BASE) == 0);
	CHECK(s->start_ms == 2);	/* the last start seen, relative to 00.001 */
	CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(
	    s->info, "meta.raw_payload.wsgi-start"), "info"), "n")) == 2);
	trace_tree_free(t);
}

/* Hostile notifications: skipped, counted, never a crash. */
static void
test_hostile(void)
{
	static const char *bad[] = {
		"", "null", "[]", "{", "\"x\"", "{\"name\": \"a-start\"}",
		"{\"name\": 1, \"trace_id\": \"x\", \"timestamp\": \"2026-12-03T10:00:00.1\"}",
		"{\"name\": \"a-start\", \"trace_id\": 7, \"timestamp\": \"2026-12-03T10:00:00.1\"}",
		"{\"name\": \"a-start\", \"trace_id\": \"x\", \"timestamp\": 5}",
		"{\"name\": \"a-start\", \"trace_id\": \"x\", \"timestamp\": \"yesterday\"}",
		"{\"name\": \"a-start\", \"trace_id\": \"x\", \"timestamp\": \"2026-12-03T10:00:00.1\" trailing",
	};
	struct trace_tree *t = trace_tree_new();
	struct tt_summary sum;
	const struct tt_span *s;
	size_t i, pl, big = 1 << 20;
	char *huge, *n;
	json_t *rep;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECKF(trace_tree_add(t, bad[i], strlen(bad[i])) == -1, "%s", bad[i]);
	/* minimal: no info, no project, no parent; a NUL inside the name;
	 * info not an object; a stop whose info is a string */
	n = "{\"name\": \"a\\u0000b-start\", \"trace_id\": \"m1\", \"timestamp\": \"2026-12-03T10:00:00.1\"}";
	CHECK(trace_tree_add(t, n, strlen(n)) == 0);
	n = "{\"name\": \"s-stop\", \"trace_id\": \"m2\", \"parent_id\": [1], \"info\": \"x\", "
	    "\"timestamp\": \"2026-12-03T10:00:00.2\", \"project\": {\"a\": 1}}";
	CHECK(trace_tree_add(t, n, strlen(n)) == 0);
	/* a megabyte of markup in a path */
	huge = malloc(big + 512);
	strcpy(huge, "{\"name\": \"wsgi-start\", \"trace_id\": \"m3\", \"timestamp\": "
	    "\"2026-12-03T10:00:00.3\", \"info\": {\"host\": \"h\", \"request\": {\"path\": \"");
	pl = strlen(huge);
	for (i = 0; i < big; i++)
		huge[pl + i] = "<script>'&"[i % 10];
	strcpy(huge + pl + big, "\"}}}");
	CHECK(trace_tree_add(t, huge, strlen(huge)) == 0);
	free(huge);
	CHECK(trace_tree_build(t) == 0);
	CHECK(trace_tree_add(t, "{}", 2) == -2);	/* after build */
	trace_tree_summary(t, &sum);
	CHECK(sum.n_skipped == sizeof(bad) / sizeof(bad[0]));
	CHECK(sum.n_spans == 3);
	s = span_named(t, "m1");
	CHECK(s != NULL && s->name_len == 3 && memcmp(s->name, "a\0b", 3) == 0);
	CHECK(s != NULL && json_is_null(s->host) && s->parent_len == 0);
	s = span_named(t, "m2");
	CHECK(s != NULL && s->has_stop && !s->error && json_is_object(s->project));
	rep = trace_tree_report(t);
	CHECK(rep != NULL);
	json_decref(rep);
	trace_tree_free(t);
}

static void
test_ids(void)
{
	char out[37];

	CHECK(trace_index_id("4bf92f3577b34da6a3ce929d0e0e4736", 32, out) == 32 &&
	    strcmp(out, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736") == 0);
	CHECK(trace_index_id("4BF92F35-77B3-4DA6-A3CE-929D0E0E4736", 36, out) == 32 &&
	    strcmp(out, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736") == 0);
	CHECK(trace_index_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 55,
	    out) == 32 && strcmp(out, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736") == 0);
	CHECK(trace_index_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7x01", 55,
	    out) == -1);
	CHECK(trace_index_id("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", 55,
	    out) == -1);
	CHECK(trace_index_id("00f067aa0ba902b7", 16, out) == 16 &&
	    strcmp(out, "00000000-0000-0000-00f0-67aa0ba902b7") == 0);
	CHECK(trace_index_id("4bf92f35-77b3-4da6-a3ce-929d0e0e473", 35, out) == -1);
	CHECK(trace_index_id("4bf92f35777b3-4da6-a3ce-929d0e0e4736", 36, out) == -1);
	CHECK(trace_index_id("zzf067aa0ba902b7", 16, out) == -1);
	CHECK(trace_index_id("req-1", 5, out) == -1);
	CHECK(trace_index_id("", 0, out) == -1);
}

static void
test_index(void)
{
	struct trace_index_entry e, got[8];
	int i;

	trace_index_clear();
	for (i = 0; i < TRACE_INDEX_SIZE + 3; i++) {
		memset(&e, 0, sizeof(e));
		snprintf(e.base_id, sizeof(e.base_id), "4bf92f35-77b3-4da6-a3ce-%012x", i);
		snprintf(e.request_id, sizeof(e.request_id), "req-%d", i);
		e.start_us = i;
		trace_index_add(&e);
	}
	CHECK(trace_index_find(NULL, got, 8) == 8 && got[0].start_us == TRACE_INDEX_SIZE + 2);
	CHECK(trace_index_find("req-2", got, 8) == 0);		/* aged out */
	CHECK(trace_index_find("req-5", got, 8) == 1 && got[0].start_us == 5);
	snprintf(e.base_id, sizeof(e.base_id), "4bf92f35-77b3-4da6-a3ce-%012x", 77);
	CHECK(trace_index_find(e.base_id, got, 8) == 1 && got[0].start_us == 77);
	CHECK(trace_index_find("4bf92f3577b34da6a3ce00000000004d", got, 8) == 1);
	CHECK(trace_index_find("a3ce00000000004d", got, 8) == 1 && got[0].start_us == 77);
	trace_index_clear();
	CHECK(trace_index_find(NULL, got, 8) == 0);
}

static char *
text_of(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static void
test_escape(void)
{
	static const char in[] = "<a href=\"x\" onclick='y'>&amp;</a>\x01\x7f\0z\t\n";
	struct evbuffer *b = evbuffer_new();
	char *s;

	viewer_html_escape(b, in, sizeof(in) - 1);
	s = text_of(b);
	CHECKF(strcmp(s, "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz\t\n") == 0, "%s", s);
	free(s);
	evbuffer_free(b);
}

/* No byte of a hostile span reaches the page unescaped: the markup each
 * field carries never appears raw, wherever it is shown. */
static void
test_page_hostile(void)
{
	static const char evil[] = "<img src=x onerror=alert(1)>\\\"'&";
	struct trace_tree *t = trace_tree_new();
	struct trace_index_entry e;
	struct evbuffer *b = evbuffer_new();
	char *s, *n, *p;

	if (asprintf(&n, "{\"name\": \"%s-start\", \"trace_id\": \"%s\", \"parent_id\": \"%s\", "
	    "\"timestamp\": \"2026-12-03T10:00:00.1\", \"info\": {\"host\": \"%s\", "
	    "\"db\": {\"statement\": \"%s\"}}, \"project\": \"%s\", \"service\": \"%s\"}",
	    evil, evil, evil, evil, evil, evil, evil) < 0)
		abort();
	CHECK(trace_tree_add(t, n, strlen(n)) == 0);
	free(n);
	n = "{\"name\": \"x-stop\", \"trace_id\": \"s2\", \"parent_id\": \"\", \"timestamp\": "
	    "\"2026-12-03T10:00:00.2\", \"info\": {\"host\": \"h\", \"etype\": \"<b>Boom</b>\"}}";
	CHECK(trace_tree_add(t, n, strlen(n)) == 0);
	CHECK(trace_tree_build(t) == 0);
	CHECK(viewer_html_trace(b, "<base>", t, 1) == 0);
	s = text_of(b);
	CHECK(strstr(s, "<img") == NULL);
	CHECK(strstr(s, "<b>") == NULL);
	CHECK(strstr(s, "<base>") == NULL);
	CHECK(strstr(s, "&lt;img src=x onerror=alert(1)&gt;") != NULL);
	CHECK(strstr(s, "error: &lt;b&gt;Boom&lt;/b&gt;") != NULL);
	CHECK(strstr(s, "unfinished") != NULL);
	CHECK(strstr(s, "truncated") != NULL);
	/* every attribute value is double-quoted and holds no raw quote */
	for (p = strstr(s, "data-trace-id=\""); p != NULL; p = strstr(p + 1, "data-trace-id=\""))
		CHECK(strcspn(p + 15, "\"") < strcspn(p + 15, "<>'"));
	free(s);
	trace_tree_free(t);

	memset(&e, 0, sizeof(e));
	strcpy(e.base_id, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
	strcpy(e.service, "<svc>");
	strcpy(e.operation, "GET /v2/<script>");
	strcpy(e.method, "GET");
	strcpy(e.request_id, "req-\"><script>");
	viewer_html_list(b, "\"><script>alert(1)</script>", &e, 1);
	s = text_of(b);
	CHECK(strstr(s, "<script>") == NULL && strstr(s, "<svc>") == NULL);
	CHECK(strstr(s, "value=\"&quot;&gt;&lt;script&gt;") != NULL);
	CHECK(strstr(s, "href=\"/traces/4bf92f35-77b3-4da6-a3ce-929d0e0e4736\"") != NULL);
	free(s);
	evbuffer_free(b);
}

int
main(void)
{
	test_times();
	test_orderly();
	test_order_and_ties();
	test_missing_stop_and_start();
	test_unknown_parent();
	test_cycles();
	test_deep_chain();
	test_duplicates();
	test_hostile();
	test_ids();
	test_index();
	test_escape();
	test_page_hostile();
	TB_TEST_END();
}
