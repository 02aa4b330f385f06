/*
 * viewer.c: the trace viewer on the admin endpoint (issue 16).
 *
 *   GET /traces[?q=TEXT]       recent traces this proxy recorded (trace_index.h),
 *                              newest first; q: a trace id in any form
 *                              (redirects to it) or a request id (filters)
 *   GET /traces/ID             the waterfall of one trace (viewer_html.c)
 *   GET /traces/ID.json        the tree as `osprofiler trace show --json`
 *   GET /traces/static/NAME    the CSS and JS, embedded at build time
 *
 * ID is a uuid, 32 or 16 hex digits or a whole traceparent
 * (trace_index_id). The trace is read as osprofiler's Redis driver reads
 * it, LRANGE osprofiler_opt:<base_id>, on the control thread through the
 * one Redis client (redis.h), never waiting on Redis: in pages of
 * VIEWER_PAGE notifications taken from the list's tail (the oldest end,
 * which LPUSHes of a trace still growing do not shift), at most
 * VIEWER_MAX_NOTES or VIEWER_MAX_BYTES in all. Building and rendering do
 * run on the control loop, in one go once everything is read: ~0.7 s of
 * CPU for 10,000 spans (bench/bench_viewer), during which the admin
 * endpoint and signals wait; the workers do not. Notifications go to the tree
 * in the list's order from the head, the order osprofiler iterates in, so
 * ties and duplicates resolve as in its report. osprofiler's legacy
 * one-key-per-notification layout (osprofiler:<base_id>_*) is not read.
 *
 * The Redis connection is opened at the first trace asked for (a proxy
 * whose viewer nobody uses never connects nor logs Redis failures) and
 * follows [profiler] connection_string across reloads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "admin.h"
#include "log.h"
#include "module.h"
#include "redis.h"
#include "trace_index.h"
#include "trace_tree.h"
#include "util.h"
#include "viewer_assets.h"
#include "viewer_html.h"

/* A trace is read in pages of VIEWER_PAGE notifications, up to
 * VIEWER_MAX_NOTES of them or VIEWER_MAX_BYTES (then shown "truncated"):
 * the control thread parses them all in one go, ~25 µs each. */
#define VIEWER_PAGE		500
#define VIEWER_PAGE_BYTES	(16u << 20)	/* the client's reply limit */
#define VIEWER_MAX_NOTES	50000
#define VIEWER_MAX_BYTES	(64u << 20)
#define VIEWER_WAIT_READY	3	/* s for Redis to connect before a 503 */
#define VIEWER_LIST_MAX		200	/* rows on the list page */

/* Per configuration (cfg->mod[TB_MOD_VIEWER]). */
struct viewer_conf {
	struct tb_redis_url url;
	char key[1200];		/* what a client is built from, to compare */
	const char *sentinel_service_name;	/* points into the tb_config */
	double socket_timeout;
};

/* One page of LRANGE elements, copied out of the reply. */
struct vpage {
	char **s;
	size_t *len;
	size_t n;
};

/* One trace being read for one request. */
struct vreq {
	struct evhttp_request *req;	/* NULL once the client is gone */
	struct evhttp_connection *evcon;
	char base_id[37];
	int json;			/* .json rather than the page */
	struct vpage *pages;		/* in reading order: tail first */
	size_t n_pages;
	size_t n_items, bytes;
	int truncated;
	int sent;			/* the first LRANGE went out */
	struct event *wait;		/* for Redis to be ready */
	struct vreq *prev, *next;	/* g.pending */
};

static struct {
	struct event_base *base;
	struct tb_redis *redis;		/* NULL until the first trace read */
	char redis_key[1200];
	const struct viewer_conf *vc;	/* of the configuration in force */
	struct vreq *pending;
} g;

/* ------------------------------------------------------------ replies */

static void
send_page(struct evhttp_request *req, int status, const char *reason,
    const char *ctype, struct evbuffer *body)
{
	admin_set_reply_headers(req, ctype);
	evhttp_send_reply(req, status, reason, body);
}

static void
send_message(struct evhttp_request *req, int json, int status,
    const char *reason, const char *title, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (json)
		evbuffer_add_printf(b, "{\"error\": \"%s\"}\n", reason);
	else
		viewer_html_message(b, title, text);
	send_page(req, status, reason, json ? "application/json" :
	    "text/html; charset=utf-8", b);
	evbuffer_free(b);
}

/* ---------------------------------------------------- pending requests */

static void
gone_cb(struct evhttp_connection *evcon, void *arg)
{
	struct vreq *v = arg;

	v->req = NULL;		/* evhttp frees it; the Redis reply still comes */
	v->evcon = NULL;
}

static void
vreq_free(struct vreq *v)
{
	size_t i, k;

	if (v->prev != NULL)
		v->prev->next = v->next;
	else if (g.pending == v)
		g.pending = v->next;
	if (v->next != NULL)
		v->next->prev = v->prev;
	if (v->evcon != NULL)
		evhttp_connection_set_closecb(v->evcon, NULL, NULL);
	if (v->wait != NULL)
		event_free(v->wait);
	for (i = 0; i < v->n_pages; i++) {
		for (k = 0; k < v->pages[i].n; k++)
			free(v->pages[i].s[k]);
		free(v->pages[i].s);
		free(v->pages[i].len);
	}
	free(v->pages);
	free(v);
}

/* Answer (if the client is still there) with a message, and free v. */
static void
vreq_fail(struct vreq *v, int status, const char *reason, const char *text)
{
	if (v->req != NULL) {
		if (v->evcon != NULL)
			evhttp_connection_set_closecb(v->evcon, NULL, NULL);
		v->evcon = NULL;
		send_message(v->req, v->json, status, reason, reason, text);
	}
	vreq_free(v);
}

/* Everything read: build the tree, answer, free v. */
static void
vreq_finish(struct vreq *v)
{
	struct trace_tree *t;
	struct tt_summary sum;
	struct evbuffer *b = NULL;
	json_t *rep;
	size_t i, k;
	int rc = -1;

	if (v->req == NULL) {
		vreq_free(v);
		return;
	}
	if ((t = trace_tree_new()) == NULL)
		goto fail;
	/* from the head: the last page read first */
	for (i = v->n_pages; i > 0; i--)
		for (k = 0; k < v->pages[i - 1].n; k++)
			if (trace_tree_add(t, v->pages[i - 1].s[k], v->pages[i - 1].len[k]) == -2)
				v->truncated = 1;
	if (trace_tree_build(t) < 0 || (b = evbuffer_new()) == NULL)
		goto fail;
	trace_tree_summary(t, &sum);
	if (sum.n_spans == 0) {
		trace_tree_free(t);
		evbuffer_free(b);
		vreq_fail(v, 404, "Not Found", "No trace with this id in Redis "
		    "(nothing stored under osprofiler_opt:<id>).");
		return;
	}
	if (v->json) {
		if ((rep = trace_tree_report(t)) == NULL)
			goto fail;
		/* osprofiler: json.dumps(indent=2), ensure_ascii */
		rc = viewer_json_write(rep, b);
		json_decref(rep);
	} else {
		rc = viewer_html_trace(b, v->base_id, t, v->truncated);
	}
	if (rc < 0)
		goto fail;
	if (v->evcon != NULL)
		evhttp_connection_set_closecb(v->evcon, NULL, NULL);
	v->evcon = NULL;
	send_page(v->req, 200, "OK", v->json ? "application/json" :
	    "text/html; charset=utf-8", b);
	evbuffer_free(b);
	trace_tree_free(t);
	vreq_free(v);
	return;
fail:
	if (b != NULL)
		evbuffer_free(b);
	trace_tree_free(t);
	vreq_fail(v, 500, "Internal Server Error", "Out of memory building the trace.");
}

/* The next page: LRANGE from the tail, -(p+1)*PAGE .. -p*PAGE-1. */
static void
vreq_next(struct vreq *v)
{
	long p = (long)v->n_pages;

	if (g.redis == NULL || tb_redis_command(g.redis, v,
	    "LRANGE osprofiler_opt:%s %ld %ld", v->base_id,
	    -(p + 1) * VIEWER_PAGE, -p * VIEWER_PAGE - 1) < 0) {
		vreq_fail(v, 503, "Service Unavailable", "Redis is not connected.");
		return;
	}
	v->sent = 1;
}

static void
wait_cb(evutil_socket_t fd, short what, void *arg)
{
	vreq_fail(arg, 503, "Service Unavailable", "Redis did not answer in time "
	    "([profiler] connection_string).");
}

/* ------------------------------------------------------ Redis handlers */

static void
redis_ready(void *arg)
{
	struct vreq *v, *nx;

	for (v = g.pending; v != NULL; v = nx) {
		nx = v->next;
		if (!v->sent) {
			event_del(v->wait);
			vreq_next(v);
		}
	}
}

static void
redis_reply(void *arg, void *cmd_arg, const redisReply *r)
{
	struct vreq *v = cmd_arg;
	struct vpage *pg, *np;
	size_t i;

	if (v->req == NULL) {
		vreq_free(v);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY) {
		log_warnx("viewer: LRANGE osprofiler_opt:%s: %.200s", v->base_id,
		    r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
		vreq_fail(v, 502, "Bad Gateway", "Redis refused the read.");
		return;
	}
	if ((np = realloc(v->pages, (v->n_pages + 1) * sizeof(*np))) == NULL)
		goto enomem;
	v->pages = np;
	pg = &v->pages[v->n_pages++];
	memset(pg, 0, sizeof(*pg));
	if (r->elements > 0 && ((pg->s = calloc(r->elements, sizeof(*pg->s))) == NULL ||
	    (pg->len = calloc(r->elements, sizeof(*pg->len))) == NULL))
		goto enomem;
	for (i = 0; i < r->elements; i++) {
		if (r->element[i]->type != REDIS_REPLY_STRING)
			continue;
		if ((pg->s[pg->n] = malloc(r->element[i]->len + 1)) == NULL)
			goto enomem;
		memcpy(pg->s[pg->n], r->element[i]->str, r->element[i]->len);
		pg->len[pg->n++] = r->element[i]->len;
		v->bytes += r->element[i]->len;
	}
	v->n_items += r->elements;
	if (r->elements < VIEWER_PAGE) {
		vreq_finish(v);
		return;
	}
	if (v->bytes >= VIEWER_MAX_BYTES || v->n_items >= VIEWER_MAX_NOTES) {
		v->truncated = 1;
		vreq_finish(v);
		return;
	}
	vreq_next(v);
	return;
enomem:
	vreq_fail(v, 500, "Internal Server Error", "Out of memory reading the trace.");
}

/* Every reply still owed is lost: answer those requests. */
static void
redis_down(void *arg, const char *why)
{
	struct vreq *v, *nx;

	for (v = g.pending; v != NULL; v = nx) {
		nx = v->next;
		if (v->sent)
			vreq_fail(v, 503, "Service Unavailable", "The Redis connection was lost.");
	}
}

/* The client for the configuration in force, made now if need be. */
static struct tb_redis *
redis_get(void)
{
	struct tb_redis_conf rc;
	struct tb_redis_handlers h;
	char err[256];

	if (g.redis != NULL || g.vc == NULL)
		return g.redis;
	memset(&rc, 0, sizeof(rc));
	rc.url = &g.vc->url;
	rc.name = "viewer redis";
	rc.sentinel_service_name = g.vc->sentinel_service_name;
	rc.sentinel_timeout = g.vc->socket_timeout;
	/* one LRANGE page: osprofiler's db notifications carry whole
	 * statements, a page may well pass the client's 1 MiB default */
	rc.max_reply_bytes = VIEWER_PAGE_BYTES;
	rc.max_reply_elements = VIEWER_PAGE;
	memset(&h, 0, sizeof(h));
	h.ready = redis_ready;
	h.reply = redis_reply;
	h.down = redis_down;
	if ((g.redis = tb_redis_new(g.base, &rc, &h, err, sizeof(err))) == NULL)
		log_warnx("viewer: %s", err);
	memcpy(g.redis_key, g.vc->key, sizeof(g.redis_key));
	return g.redis;
}

/* Drop the client (a reload changed Redis, or stop); requests waiting on
 * it get a 503: no handler runs after tb_redis_free. */
static void
redis_drop(void)
{
	while (g.pending != NULL)
		vreq_fail(g.pending, 503, "Service Unavailable",
		    "The Redis connection was reconfigured; retry.");
	tb_redis_free(g.redis);
	g.redis = NULL;
}

/* ------------------------------------------------------------ routes */

static void
read_trace(struct evhttp_request *req, const char *base_id, int json)
{
	struct timeval tv = { VIEWER_WAIT_READY, 0 };
	struct tb_redis *c;
	struct vreq *v;

	if ((v = calloc(1, sizeof(*v))) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	v->req = req;
	v->json = json;
	memcpy(v->base_id, base_id, sizeof(v->base_id));
	v->next = g.pending;
	if (g.pending != NULL)
		g.pending->prev = v;
	g.pending = v;
	v->evcon = evhttp_request_get_connection(req);
	if (v->evcon != NULL)
		evhttp_connection_set_closecb(v->evcon, gone_cb, v);
	if ((c = redis_get()) == NULL) {
		vreq_fail(v, 503, "Service Unavailable", "No Redis client.");
		return;
	}
	if (tb_redis_is_ready(c)) {
		vreq_next(v);
		return;
	}
	if ((v->wait = evtimer_new(g.base, wait_cb, v)) == NULL ||
	    evtimer_add(v->wait, &tv) < 0)
		vreq_fail(v, 500, "Internal Server Error", "Out of memory.");
}

/* A trace id in any form to a base_id; a 64-bit id is looked up among the
 * recent traces first (its high half is then known). -1: not an id. */
static int
resolve_id(const char *s, size_t len, char out[37])
{
	struct trace_index_entry e;
	char q[17];
	int bits = trace_index_id(s, len, out);

	if (bits == 16) {
		memcpy(q, s, 16);
		q[16] = '\0';
		if (trace_index_find(q, &e, 1) == 1)
			memcpy(out, e.base_id, 37);
	}
	return bits < 0 ? -1 : 0;
}

static void
list_page(struct evhttp_request *req, const char *query)
{
	struct trace_index_entry *e;
	struct evkeyvalq kv;
	struct evbuffer *b;
	const char *q = NULL;
	char id[37], loc[64], *qt = NULL;
	size_t n, len;

	TAILQ_INIT(&kv);
	if (query != NULL && evhttp_parse_query_str(query, &kv) == 0)
		q = evhttp_find_header(&kv, "q");
	if (q != NULL) {
		while (*q == ' ')
			q++;
		len = strlen(q);
		while (len > 0 && q[len - 1] == ' ')
			len--;
		if ((qt = strndup(q, len)) == NULL)
			goto enomem;
		q = qt;
		if (resolve_id(q, len, id) == 0) {
			snprintf(loc, sizeof(loc), "/traces/%s", id);
			evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
			send_message(req, 0, 303, "See Other", "See Other", loc);
			goto out;
		}
	}
	if ((e = calloc(VIEWER_LIST_MAX, sizeof(*e))) == NULL)
		goto enomem;
	n = trace_index_find(q, e, VIEWER_LIST_MAX);
	if ((b = evbuffer_new()) != NULL) {
		viewer_html_list(b, q, e, n);
		send_page(req, 200, "OK", "text/html; charset=utf-8", b);
		evbuffer_free(b);
	} else {
		evhttp_send_error(req, 500, NULL);
	}
	free(e);
	goto out;
enomem:
	evhttp_send_error(req, 500, NULL);
out:
	free(qt);
	evhttp_clear_headers(&kv);
}

static void
asset(struct evhttp_request *req, const char *name)
{
	const struct viewer_asset *a;
	struct evbuffer *b;

	for (a = viewer_assets; a->name != NULL; a++)
		if (strcmp(a->name, name) == 0)
			break;
	if (a->name == NULL || (b = evbuffer_new()) == NULL) {
		send_message(req, 0, 404, "Not Found", "Not Found", "No such file.");
		return;
	}
	evbuffer_add_reference(b, a->data, a->len, NULL, NULL);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control",
	    "max-age=300");
	send_page(req, 200, "OK", a->ctype, b);
	evbuffer_free(b);
}

static void
traces_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u != NULL ? evhttp_uri_get_path(u) : NULL;
	char id[37];
	size_t len;
	int json = 0;

	if (path == NULL || strncmp(path, "/traces", 7) != 0) {
		evhttp_send_error(req, 400, NULL);
		return;
	}
	path += 7;
	if (*path == '\0' || strcmp(path, "/") == 0) {
		list_page(req, evhttp_uri_get_query(u));
		return;
	}
	if (strncmp(path, "/static/", 8) == 0) {
		asset(req, path + 8);
		return;
	}
	path++;
	len = strlen(path);
	if (len > 5 && strcmp(path + len - 5, ".json") == 0) {
		json = 1;
		len -= 5;
	}
	if (resolve_id(path, len, id) < 0) {
		send_message(req, json, 404, "Not Found", "Not Found",
		    "Not a trace id: expected a uuid, 32 or 16 hex digits.");
		return;
	}
	read_trace(req, id, json);
}

/* ------------------------------------------------------------ module */

static void
viewer_conf_free(struct tb_config *cfg, void *arg)
{
	struct viewer_conf *vc = arg;

	if (vc == NULL)
		return;
	explicit_bzero(vc, sizeof(*vc));	/* the URL may hold a password */
	free(vc);
}

static int
viewer_conf_attach(struct tb_config *cfg, char *err, size_t errlen)
{
	const struct tb_profiler_conf *p = &cfg->profiler;
	struct viewer_conf *vc;

	if ((vc = calloc(1, sizeof(*vc))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cfg->mod[TB_MOD_VIEWER].data = vc;
	cfg->mod[TB_MOD_VIEWER].free = viewer_conf_free;
	/* checked with FILE:LINE at load by the tracing module already */
	if (tb_redis_url_parse(p->connection_string, &vc->url, err, errlen) < 0)
		return -1;
	vc->sentinel_service_name = p->sentinel_service_name;
	vc->socket_timeout = p->socket_timeout;
	snprintf(vc->key, sizeof(vc->key), "%s|%s|%g", p->connection_string,
	    p->sentinel_service_name, p->socket_timeout);
	return 0;
}

static int
viewer_start(struct event_base *base, const struct tb_config *cfg)
{
	g.base = base;
	g.vc = cfg->mod[TB_MOD_VIEWER].data;
	if (admin_add_handler("/traces", traces_cb, NULL) < 0) {
		log_errx("viewer: no room for /traces on the admin endpoint");
		return -1;
	}
	return 0;
}

static void
viewer_reload(const struct tb_config *cfg)
{
	g.vc = cfg->mod[TB_MOD_VIEWER].data;
	if (g.redis != NULL && (g.vc == NULL || strcmp(g.vc->key, g.redis_key) != 0))
		redis_drop();
}

static void
viewer_stop(void)
{
	redis_drop();
	g.vc = NULL;
}

const struct tb_module viewer_module = {
	.name = "viewer",
	.conf_attach = viewer_conf_attach,
	.start = viewer_start,
	.reload = viewer_reload,
	.stop = viewer_stop,
};
