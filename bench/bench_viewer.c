/*
 * bench_viewer: a trace of N spans (default 10,000: a proxy span, then
 * wsgi spans each with db children, four levels, hostile-looking strings)
 * as LRANGE would return it; times trace_tree_add for every notification,
 * trace_tree_build, the JSON report (json_dumps) and the HTML page: what
 * GET /traces/<id>[.json] costs on the control thread, Redis aside.
 *   make bench/bench_viewer && bench/bench_viewer [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "trace_tree.h"
#include "viewer_html.h"

static double
now(void)
{
	struct timespec ts;

	/* CPU time: the machine may be shared, and what the control
	 * thread spends is the question */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
id_of(unsigned i, char out[37])
{
	snprintf(out, 37, "%08x-0000-4000-8000-%012x", i, i * 7919u);
}

static char *
notification(unsigned i, unsigned parent, int stop, const char *name)
{
	char id[37], pid[37], *s;
	unsigned us = i * 50 + (stop ? 40 : 0);

	id_of(i, id);
	id_of(parent, pid);
	if (asprintf(&s, "{\"name\": \"%s-%s\", \"base_id\": \"00000000-0000-4000-8000-000000000000\", "
	    "\"trace_id\": \"%s\", \"parent_id\": \"%s\", \"timestamp\": "
	    "\"2026-12-03T10:%02u:%02u.%06u\", \"info\": {\"host\": \"compute-%u\", "
	    "\"db\": {\"statement\": \"SELECT * FROM instances WHERE uuid = '<script>alert(%u)</script>'\", "
	    "\"params\": {}}, \"request\": {\"path\": \"/v2.1/servers/%u\", \"method\": \"GET\"}}, "
	    "\"project\": \"nova\", \"service\": \"api\"}",
	    name, stop ? "stop" : "start", id, pid, us / 60000000 % 60, us / 1000000 % 60,
	    us % 1000000, i % 16, i, i) < 0)
		return NULL;
	return s;
}

int
main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 10000, i, parent;
	char **notes = calloc(2 * (size_t)n, sizeof(*notes));
	struct trace_tree *t;
	struct evbuffer *b;
	double t0, t1, t2, t3, t4;
	json_t *rep;
	char *js;
	size_t k, jl;

	if (notes == NULL || (t = trace_tree_new()) == NULL || (b = evbuffer_new()) == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		/* 0 is the proxy span, 1..: wsgi under it, db under the wsgi */
		parent = i == 0 ? 99999999u : i % 5 == 1 ? 0 : i - i % 5 + 1;
		notes[2 * i] = notification(i, parent, 0, i == 0 ? "proxy" : i % 5 == 1 ? "wsgi" : "db");
		notes[2 * i + 1] = notification(i, parent, 1, i == 0 ? "proxy" : i % 5 == 1 ? "wsgi" : "db");
	}
	t0 = now();
	/* LRANGE order: newest first */
	for (k = 2 * (size_t)n; k > 0; k--)
		if (trace_tree_add(t, notes[k - 1], strlen(notes[k - 1])) != 0)
			return 1;
	t1 = now();
	if (trace_tree_build(t) < 0)
		return 1;
	t2 = now();
	rep = trace_tree_report(t);
	js = NULL;
	jl = viewer_json_write(rep, b) == 0 ? evbuffer_get_length(b) : 0;
	evbuffer_drain(b, jl);
	t3 = now();
	if (viewer_html_trace(b, "00000000-0000-4000-8000-000000000000", t, 0) < 0)
		return 1;
	t4 = now();
	printf("CPU time, %u spans (%u notifications): parse+add %.1f ms, build %.1f ms, "
	    "json %.1f ms (%zu bytes), html %.1f ms (%zu bytes); "
	    "json total %.1f ms, html total %.1f ms\n", n, 2 * n,
	    (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, jl, (t4 - t3) * 1e3,
	    evbuffer_get_length(b), (t3 - t0) * 1e3, (t2 - t0 + t4 - t3) * 1e3);
	free(js);
	json_decref(rep);
	evbuffer_free(b);
	trace_tree_free(t);
	for (k = 0; k < 2 * (size_t)n; k++)
		free(notes[k]);
	free(notes);
	return 0;
}
