/* viewer_html.c: the viewer's pages (see viewer_html.h). */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "trace_index.h"
#include "trace_tree.h"
#include "viewer_html.h"

#define LIT(out, s)	evbuffer_add((out), (s), sizeof(s) - 1)

/* Distinct project/service pairs in the totals; the rest are "other"
 * (hostile data must not make the totals quadratic). */
#define TOTALS_MAX	64

void
viewer_html_escape(struct evbuffer *out, const char *s, size_t len)
{
	size_t i, run = 0;
	const char *rep;
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		switch (c) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default:
			rep = (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f ?
			    "\xef\xbf\xbd" : NULL;
		}
		if (rep == NULL)
			continue;
		evbuffer_add(out, s + run, i - run);
		evbuffer_add(out, rep, strlen(rep));
		run = i + 1;
	}
	evbuffer_add(out, s + run, len - run);
}

static void
esc(struct evbuffer *out, const char *s)
{
	viewer_html_escape(out, s, strlen(s));
}

/* A JSON value as text: a string's own bytes, anything else as JSON,
 * NULL as "". Written escaped. */
static void
esc_json(struct evbuffer *out, const json_t *v)
{
	char *s;

	if (v == NULL || json_is_null(v))
		return;
	if (json_is_string(v)) {
		viewer_html_escape(out, json_string_value(v), json_string_length(v));
		return;
	}
	if ((s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT)) != NULL) {
		esc(out, s);
		free(s);
	}
}

static void
page_start(struct evbuffer *out, const char *title, const char *q)
{
	LIT(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	    "<meta name=\"viewport\" content=\"width=device-width\"><title>");
	esc(out, title);
	LIT(out, " - tracebridge</title>\n<link rel=\"stylesheet\" href=\"/traces/static/viewer.css\">"
	    "<script src=\"/traces/static/viewer.js\" defer></script></head>\n<body>\n"
	    "<header><a class=\"home\" href=\"/traces\">tracebridge traces</a>"
	    "<form action=\"/traces\" method=\"get\" role=\"search\">"
	    "<input name=\"q\" size=\"40\" placeholder=\"trace id (uuid, 32 or 16 hex) or request id\" value=\"");
	if (q != NULL)
		esc(out, q);
	LIT(out, "\"><button type=\"submit\">Find</button></form></header>\n<main>\n");
}

static void
page_end(struct evbuffer *out)
{
	LIT(out, "</main>\n</body></html>\n");
}

void
viewer_html_message(struct evbuffer *out, const char *title, const char *text)
{
	page_start(out, title, NULL);
	LIT(out, "<h1>");
	esc(out, title);
	LIT(out, "</h1>\n<p class=\"message\">");
	esc(out, text);
	LIT(out, "</p>\n");
	page_end(out);
}

static int
json_out(const char *buf, size_t size, void *arg)
{
	return evbuffer_add(arg, buf, size);
}

int
viewer_json_write(const json_t *report, struct evbuffer *out)
{
	if (json_dump_callback(report, json_out, out, JSON_INDENT(2) |
	    JSON_ENSURE_ASCII) < 0)
		return -1;
	return evbuffer_add(out, "\n", 1);
}

/* ------------------------------------------------------------ the list */

static void
utc_time(int64_t us, char out[32])
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(out, 32, "?");
}

void
viewer_html_list(struct evbuffer *out, const char *q,
    const struct trace_index_entry *e, size_t n)
{
	char when[32];
	size_t i;

	page_start(out, "Recent traces", q);
	LIT(out, "<h1>Recent traces</h1>\n");
	if (q != NULL && q[0] != '\0') {
		LIT(out, "<p class=\"meta\">Matching <code>");
		esc(out, q);
		evbuffer_add_printf(out, "</code>: %zu. <a href=\"/traces\">All</a></p>\n", n);
	}
	if (n == 0) {
		LIT(out, "<p class=\"message\">No recent trace recorded by this proxy matches."
		    " A trace id finds any trace in Redis.</p>\n");
		page_end(out);
		return;
	}
	LIT(out, "<table class=\"traces\"><thead><tr><th>time (UTC)</th><th>service</th>"
	    "<th>operation</th><th>status</th><th>duration</th><th>trace id</th>"
	    "<th>request id</th></tr></thead>\n<tbody>\n");
	for (i = 0; i < n; i++) {
		utc_time(e[i].start_us, when);
		evbuffer_add_printf(out, "<tr class=\"%s\"><td>%s.%03d</td><td>",
		    e[i].error ? "error" : "ok", when,
		    (int)((e[i].start_us / 1000) % 1000));
		esc(out, e[i].service);
		LIT(out, "</td><td>");
		esc(out, e[i].method);
		LIT(out, " ");
		esc(out, e[i].operation);
		evbuffer_add_printf(out, "</td><td>%d</td><td>%.3f ms</td>"
		    "<td><a class=\"trace\" href=\"/traces/", e[i].status,
		    (double)e[i].duration_us / 1000.0);
		esc(out, e[i].base_id);
		LIT(out, "\"><code>");
		esc(out, e[i].base_id);
		LIT(out, "</code></a></td><td><code>");
		esc(out, e[i].request_id);
		LIT(out, "</code></td></tr>\n");
	}
	LIT(out, "</tbody></table>\n");
	page_end(out);
}

/* ------------------------------------------------------- the waterfall */

struct total {
	const json_t *project, *service;	/* NULL, NULL: "other" */
	size_t spans, db;
	int64_t self_us;
};

static int
same_json(const json_t *a, const json_t *b)
{
	return a == b || (a != NULL && b != NULL && json_equal(a, b));
}

static struct total *
total_for(struct total *t, size_t *n, const struct tt_span *s)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (same_json(t[i].project, s->project) && same_json(t[i].service, s->service))
			return &t[i];
	if (*n == TOTALS_MAX - 1) {
		for (i = 0; i < *n; i++)
			if (t[i].project == NULL && t[i].service == NULL)
				return &t[i];
		memset(&t[*n], 0, sizeof(t[*n]));	/* "other" */
		return &t[(*n)++];
	}
	memset(&t[*n], 0, sizeof(t[*n]));
	t[*n].project = s->project;
	t[*n].service = s->service;
	return &t[(*n)++];
}

/* The HTTP status the stop notification reports (the proxy's
 * info.response.status_code), or 0. */
static long
stop_status(const struct tt_span *s)
{
	const char *k;
	json_t *v, *inf;

	json_object_foreach((json_t *)s->info, k, v) {
		if (strncmp(k, "meta.raw_payload.", 17) != 0 || !s->has_stop)
			continue;
		inf = json_object_get(v, "info");
		inf = json_object_get(json_object_get(inf, "response"), "status_code");
		if (json_is_integer(inf))
			return (long)json_integer_value(inf);
	}
	return 0;
}

/* Above a root span that tracebridge recorded: who called it (its start
 * notification's info.client, trace_format, caller_span_id, user_agent). */
static void
caller_row(struct evbuffer *out, const struct tt_span *s)
{
	const char *k;
	json_t *v, *inf = NULL, *x;

	json_object_foreach((json_t *)s->info, k, v) {
		if (strncmp(k, "meta.raw_payload.", 17) == 0 &&
		    strlen(k) > 23 && strcmp(k + strlen(k) - 6, "-start") == 0)
			inf = json_object_get(v, "info");
	}
	if (!json_is_string(json_object_get(inf, "client")))
		return;
	LIT(out, "<li class=\"caller\">caller <code>");
	esc_json(out, json_object_get(inf, "client"));
	LIT(out, "</code>");
	if (json_is_string(x = json_object_get(inf, "trace_format"))) {
		LIT(out, ", ");
		esc_json(out, x);
		if (json_is_string(x = json_object_get(inf, "caller_span_id"))) {
			LIT(out, " span <code>");
			esc_json(out, x);
			LIT(out, "</code>");
		}
	} else {
		LIT(out, ", new trace");
	}
	if (json_is_string(x = json_object_get(inf, "user_agent"))) {
		LIT(out, ", ");
		esc_json(out, x);
	}
	LIT(out, "</li>\n");
}

static void
span_row(struct evbuffer *out, const struct tt_span *s, size_t i,
    int64_t total_us)
{
	int64_t dur = s->finish_us - s->start_us;
	double left = (double)s->start_us * 100.0 / (double)total_us;
	double width = (double)dur * 100.0 / (double)total_us;
	const char *k;
	json_t *v;
	char *text;
	long st;

	if (width < 0.2)
		width = 0.2;
	if (left > 99.8)
		left = 99.8;
	evbuffer_add_printf(out, "<li class=\"span%s%s\" id=\"span-%zu\" data-depth=\"%u\" "
	    "data-trace-id=\"", s->error ? " error" : "", s->has_stop ? "" : " unfinished",
	    i, s->depth);
	viewer_html_escape(out, s->trace_id, s->id_len);
	LIT(out, "\" data-parent-id=\"");
	viewer_html_escape(out, s->parent_id, s->parent_len);
	LIT(out, "\" data-name=\"");
	viewer_html_escape(out, s->name, s->name_len);
	evbuffer_add_printf(out, "\"><details><summary><span class=\"label\" "
	    "style=\"padding-left:%.1fem\"><span class=\"name\">", (double)s->depth * 1.2);
	viewer_html_escape(out, s->name, s->name_len);
	LIT(out, "</span></span><span class=\"where\"><span class=\"project\">");
	esc_json(out, s->project);
	LIT(out, "</span>/<span class=\"service\">");
	esc_json(out, s->service);
	LIT(out, "</span> @ <span class=\"host\">");
	esc_json(out, s->host);
	evbuffer_add_printf(out, "</span></span><span class=\"dur\">%.3f ms</span>"
	    "<span class=\"status\">", (double)dur / 1000.0);
	if (!s->has_stop) {
		LIT(out, "unfinished");
	} else if (s->error) {
		LIT(out, "error: ");
		esc_json(out, s->exception);
	} else if ((st = stop_status(s)) != 0) {
		evbuffer_add_printf(out, "%ld", st);
	} else {
		LIT(out, "ok");
	}
	if (!s->has_start)
		LIT(out, " (no start)");
	if (s->flags & TT_F_CYCLE)
		LIT(out, " (cycle cut)");
	if (s->flags & TT_F_DEEP)
		LIT(out, " (too deep)");
	evbuffer_add_printf(out, "</span><span class=\"track\"><span class=\"bar\" "
	    "style=\"left:%.3f%%;width:%.3f%%\"></span></span></summary>\n"
	    "<dl class=\"info\"><dt>trace_id</dt><dd><code>", left, width);
	viewer_html_escape(out, s->trace_id, s->id_len);
	LIT(out, "</code></dd><dt>parent_id</dt><dd><code>");
	viewer_html_escape(out, s->parent_id, s->parent_len);
	evbuffer_add_printf(out, "</code></dd><dt>started</dt><dd>%.3f ms</dd>",
	    (double)s->start_us / 1000.0);
	json_object_foreach((json_t *)s->info, k, v) {
		if (strncmp(k, "meta.raw_payload.", 17) != 0)
			continue;
		LIT(out, "<dt>");
		esc(out, k + 17);
		LIT(out, "</dt><dd><pre>");
		/* the notification's info: request, response, db statement... */
		if ((text = json_dumps(json_object_get(v, "info") ? json_object_get(v, "info") : v,
		    JSON_INDENT(1) | JSON_ENCODE_ANY)) != NULL) {
			esc(out, text);
			free(text);
		}
		LIT(out, "</pre></dd>");
	}
	LIT(out, "</dl></details></li>\n");
}

int
viewer_html_trace(struct evbuffer *out, const char *base_id,
    const struct trace_tree *t, int truncated)
{
	struct total totals[TOTALS_MAX], *tt;
	struct tt_summary sum;
	const struct tt_span *s;
	int64_t *kids_us = NULL, total_us, dur;
	size_t i, n_totals = 0;
	char title[64];

	trace_tree_summary(t, &sum);
	if (sum.n_spans > 0 && (kids_us = calloc(sum.n_spans, sizeof(*kids_us))) == NULL)
		return -1;
	total_us = sum.finished_us - sum.started_us;
	if (total_us <= 0)
		total_us = 1;
	snprintf(title, sizeof(title), "Trace %s", base_id);
	page_start(out, title, NULL);
	LIT(out, "<h1>Trace <code class=\"base-id\">");
	esc(out, base_id);
	evbuffer_add_printf(out, "</code></h1>\n<p class=\"meta\"><span class=\"n-spans\">%zu</span> spans, "
	    "%.3f ms. <a href=\"/traces/", sum.n_spans, (double)(sum.finished_us - sum.started_us) / 1000.0);
	esc(out, base_id);
	LIT(out, "\">Refresh</a> (a trace still growing shows its new spans) &middot; <a href=\"/traces/");
	esc(out, base_id);
	LIT(out, ".json\">JSON</a> (as <code>osprofiler trace show --json</code>)");
	if (sum.n_skipped > 0)
		evbuffer_add_printf(out, " &middot; <span class=\"warn\">%zu unreadable "
		    "notification(s) skipped</span>", sum.n_skipped);
	if (sum.n_cycles_cut + sum.n_deep_cut > 0)
		evbuffer_add_printf(out, " &middot; <span class=\"warn\">%zu parent link(s) cut "
		    "(cycles or depth over %d)</span>", sum.n_cycles_cut + sum.n_deep_cut,
		    TT_MAX_DEPTH);
	if (truncated)
		LIT(out, " &middot; <span class=\"warn\">truncated: the trace is larger than "
		    "the viewer reads</span>");
	LIT(out, "</p>\n");

	/* totals: self time = duration less the children's */
	for (i = 0; i < sum.n_spans; i++) {
		s = trace_tree_span(t, i);
		if (s->parent != SIZE_MAX)
			kids_us[s->parent] += s->finish_us - s->start_us;
	}
	for (i = 0; i < sum.n_spans; i++) {
		s = trace_tree_span(t, i);
		tt = total_for(totals, &n_totals, s);
		dur = s->finish_us - s->start_us - kids_us[i];
		tt->self_us += dur > 0 ? dur : 0;
		tt->spans++;
		tt->db += s->name_len == 2 && memcmp(s->name, "db", 2) == 0;
	}
	LIT(out, "<table class=\"totals\"><thead><tr><th>project/service</th><th>spans</th>"
	    "<th title=\"span time less the time of their child spans\">own time</th>"
	    "<th>db calls</th></tr></thead>\n<tbody>\n");
	for (i = 0; i < n_totals; i++) {
		LIT(out, "<tr><td>");
		if (totals[i].project == NULL && totals[i].service == NULL) {
			LIT(out, "(other)");
		} else {
			esc_json(out, totals[i].project);
			LIT(out, "/");
			esc_json(out, totals[i].service);
		}
		evbuffer_add_printf(out, "</td><td>%zu</td><td>%.3f ms</td><td>%zu</td></tr>\n",
		    totals[i].spans, (double)totals[i].self_us / 1000.0, totals[i].db);
	}
	LIT(out, "</tbody></table>\n");

	evbuffer_add_printf(out, "<div class=\"axis\"><span>0 ms</span><span>%.3f ms</span>"
	    "</div>\n<ol class=\"waterfall\">\n", (double)(sum.finished_us - sum.started_us) / 1000.0);
	for (i = 0; i < sum.n_spans; i++) {
		s = trace_tree_span(t, i);
		if (s->depth == 0)
			caller_row(out, s);
		span_row(out, s, i, total_us);
	}
	LIT(out, "</ol>\n");
	page_end(out);
	free(kids_us);
	return 0;
}
