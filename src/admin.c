/* admin.c: the admin endpoint (see admin.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "admin.h"
#include "listener.h"
#include "log.h"
#include "stats.h"

#define ADMIN_MAX_EXTRA 8
/* Scrapers and operators, not client traffic: [DEFAULT] backlog is for the
 * listeners. */
#define ADMIN_BACKLOG 128

static struct evhttp *http;
static int draining;
static void (*metrics_fns[ADMIN_MAX_EXTRA])(struct evbuffer *);
static int n_metrics_fns;

struct route {
	char path[64];
	int post;		/* 1: an action, POST only; 0: GET and HEAD */
	int (*fn)(struct evbuffer *, const char **);
	/* instead of fn: a page that reads its query ("" when none) */
	int (*qfn)(const char *, struct evbuffer *, const char **);
};
static struct route routes[ADMIN_MAX_EXTRA];
static int n_routes;

void
admin_set_draining(void)
{
	draining = 1;
}

void
admin_add_metrics(void (*fn)(struct evbuffer *out))
{
	if (n_metrics_fns < ADMIN_MAX_EXTRA)
		metrics_fns[n_metrics_fns++] = fn;
}

static int
add_route(const char *path, int post, int (*fn)(struct evbuffer *, const char **))
{
	if (n_routes >= ADMIN_MAX_EXTRA || strlen(path) >= sizeof(routes[0].path))
		return -1;
	strcpy(routes[n_routes].path, path);
	routes[n_routes].post = post;
	routes[n_routes++].fn = fn;
	return 0;
}

int
admin_add_route(const char *path, int (*fn)(struct evbuffer *, const char **))
{
	return add_route(path, 0, fn);
}

int
admin_add_query_route(const char *path, int (*fn)(const char *query,
    struct evbuffer *body, const char **content_type))
{
	if (add_route(path, 0, NULL) == -1)
		return -1;
	routes[n_routes - 1].qfn = fn;
	return 0;
}

int
admin_add_action(const char *path, int (*fn)(struct evbuffer *, const char **))
{
	return add_route(path, 1, fn);
}

static void
reply(struct evhttp_request *req, int status, const char *reason,
    const char *ctype, struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_send_reply(req, status, reason, body);
}

/* Pages are read with GET or HEAD, actions done with POST (so that no
 * crawler or prefetch ever triggers one); anything else gets a 405 naming
 * what the path takes. 1 when req may go on. */
static int
method_ok(struct evhttp_request *req, int post)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evbuffer *b;

	if (post ? cmd == EVHTTP_REQ_POST :
	    (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD))
		return 1;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
	    post ? "POST" : "GET, HEAD");
	if ((b = evbuffer_new()) != NULL)
		evbuffer_add_printf(b, "method not allowed\n");
	reply(req, 405, "Method Not Allowed", "text/plain", b);
	if (b != NULL)
		evbuffer_free(b);
	return 0;
}

static void
healthz_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b;

	if (!method_ok(req, 0) || (b = evbuffer_new()) == NULL)
		return;
	if (draining) {
		evbuffer_add_printf(b, "draining\n");
		reply(req, 503, "Service Unavailable", "text/plain", b);
	} else {
		evbuffer_add_printf(b, "ok\n");
		reply(req, 200, "OK", "text/plain", b);
	}
	evbuffer_free(b);
}

static void
metrics_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b;
	int i;

	if (!method_ok(req, 0) || (b = evbuffer_new()) == NULL)
		return;
	evbuffer_add_printf(b,
	    "# HELP tracebridge_draining 1 while shutting down.\n"
	    "# TYPE tracebridge_draining gauge\n"
	    "tracebridge_draining %d\n", draining);
	stats_write_prometheus(b);
	for (i = 0; i < n_metrics_fns; i++)
		metrics_fns[i](b);
	reply(req, 200, "OK", "text/plain; version=0.0.4", b);
	evbuffer_free(b);
}

static void
generic_cb(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *b;
	const char *ctype = "application/json";
	size_t plen;
	int i, status;

	if ((b = evbuffer_new()) == NULL)
		return;
	for (i = 0; i < n_routes; i++) {
		plen = strlen(routes[i].path);
		if (strncmp(uri, routes[i].path, plen) == 0 &&
		    (uri[plen] == '\0' || uri[plen] == '?')) {
			if (!method_ok(req, routes[i].post)) {
				evbuffer_free(b);
				return;
			}
			status = routes[i].qfn != NULL ? routes[i].qfn(
			    uri[plen] == '?' ? uri + plen + 1 : "", b, &ctype) :
			    routes[i].fn(b, &ctype);
			reply(req, status, status == 200 ? "OK" : "Error", ctype, b);
			evbuffer_free(b);
			return;
		}
	}
	evbuffer_add_printf(b, "not found\n");
	reply(req, 404, "Not Found", "text/plain", b);
	evbuffer_free(b);
}

int
admin_start(struct event_base *base, const struct tb_addr *addr)
{
	int fd;

	if ((http = evhttp_new(base)) == NULL)
		return -1;
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 4096);
	evhttp_set_timeout(http, 10);
	evhttp_set_cb(http, "/healthz", healthz_cb, NULL);
	evhttp_set_cb(http, "/metrics", metrics_cb, NULL);
	evhttp_set_gencb(http, generic_cb, NULL);
	if ((fd = listener_socket(addr, ADMIN_BACKLOG)) < 0) {
		log_warn("admin: cannot listen on %s", addr->text);
		evhttp_free(http);
		http = NULL;
		return -1;
	}
	if (evhttp_accept_socket_with_handle(http, fd) == NULL) {
		close(fd);
		evhttp_free(http);
		http = NULL;
		return -1;
	}
	return 0;
}

void
admin_stop(void)
{
	if (http != NULL)
		evhttp_free(http);
	http = NULL;
}
