/*
 * fuzz_trace_tree: the viewer's tree building and page rendering from
 * hostile notifications. The input is split at '\n' into notifications
 * (what LRANGE osprofiler_opt:<id> returns, one per element); they are
 * added, the tree built, and both the osprofiler JSON report and the HTML
 * page produced. The page must never contain markup that came from data:
 * every '<' must open one of the tags viewer_html.c writes, and there is
 * exactly one <script (its own, which loads viewer.js); abort() otherwise.
 *
 * Run (./configure --enable-fuzzers CC=clang; make tests/fuzz/fuzz_trace_tree):
 *   mkdir -p /tmp/c && tests/fuzz/fuzz_trace_tree -max_total_time=30 \
 *       /tmp/c $(srcdir)/tests/fuzz/corpus/trace_tree
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "trace_tree.h"
#include "viewer_html.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const tags[] = {
	"!DOCTYPE", "html", "head", "meta", "title", "link", "script", "body",
	"header", "a", "form", "input", "button", "main", "h1", "p", "code",
	"span", "table", "thead", "tbody", "tr", "th", "td", "div", "ol", "li",
	"details", "summary", "dl", "dt", "dd", "pre", NULL,
};

/* Abort unless every '<' of the page opens or closes a tag of ours. */
static void
check_markup(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b), i, k, tl, scripts = 0;
	const char *p = (const char *)evbuffer_pullup(b, -1);

	for (i = 0; i < n; i++) {
		if (p[i] != '<')
			continue;
		k = i + 1 + (i + 1 < n && p[i + 1] == '/');
		for (tl = 0; tags[tl] != NULL; tl++) {
			size_t l = strlen(tags[tl]);

			if (k + l < n && strncmp(p + k, tags[tl], l) == 0 &&
			    (p[k + l] == ' ' || p[k + l] == '>'))
				break;
		}
		if (tags[tl] == NULL)
			abort();
		if (p[k - 1] == '<' && strcmp(tags[tl], "script") == 0)
			scripts++;
	}
	if (scripts != 1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	struct trace_tree *t = trace_tree_new();
	struct evbuffer *b;
	json_t *rep;
	char *s;

	if (t == NULL)
		return 0;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		(void)trace_tree_add(t, p, (size_t)(nl - p));
		p = nl + 1;
	}
	if (trace_tree_build(t) == 0) {
		if ((rep = trace_tree_report(t)) != NULL) {
			if ((s = json_dumps(rep, JSON_INDENT(2))) != NULL)
				free(s);
			json_decref(rep);
		}
		if ((b = evbuffer_new()) != NULL) {
			if (viewer_html_trace(b, "00000000-0000-0000-0000-000000000000",
			    t, 0) == 0)
				check_markup(b);
			evbuffer_free(b);
		}
	}
	trace_tree_free(t);
	return 0;
}
