/*
 * viewer_html.h: the trace viewer's pages, rendered on the server so they
 * work without JavaScript (viewer.js only adds filtering and auto-refresh).
 * Pure: data in, HTML out into an evbuffer; no I/O. Everything that comes
 * from spans or from the request is attacker-influenced (paths, user
 * agents, db statements, the search text) and goes through
 * viewer_html_escape(); numbers are formatted here.
 */
#ifndef TB_VIEWER_HTML_H
#define TB_VIEWER_HTML_H

#include <stddef.h>

#include <jansson.h>

struct evbuffer;
struct trace_tree;
struct trace_index_entry;

/* Append s[0..len) with & < > " ' escaped, and NUL and the C0 controls
 * but tab and newline replaced by U+FFFD: safe in text and in a
 * double-quoted attribute. s is UTF-8 (jansson's strings are). */
void viewer_html_escape(struct evbuffer *out, const char *s, size_t len);

/* The waterfall of one built tree (trace_tree_build done). truncated: the
 * Redis read stopped at its limit. 0, or -1 for ENOMEM. */
int viewer_html_trace(struct evbuffer *out, const char *base_id,
    const struct trace_tree *t, int truncated);

/* The recent-traces list, newest first; q is the search text or NULL. */
void viewer_html_list(struct evbuffer *out, const char *q,
    const struct trace_index_entry *e, size_t n);

/* The report (trace_tree_report) as `osprofiler trace show --json`
 * prints it (indent 2, ASCII only), streamed into out rather than built in
 * one string: a 10,000-span report is 20 MB. 0, or -1. */
int viewer_json_write(const json_t *report, struct evbuffer *out);

/* A page with a title and one paragraph (404, 503). */
void viewer_html_message(struct evbuffer *out, const char *title,
    const char *text);

#endif
