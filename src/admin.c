/* admin.c: the admin endpoint (see admin.h). */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

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

#define ADMIN_MAX_HANDLERS 4

struct handler {
	char prefix[32];
	void (*fn)(struct evhttp_request *, void *);
	void *arg;
};
static struct handler handlers[ADMIN_MAX_HANDLERS];
static int n_handlers;

/* SHA-256 of [admin] auth_token: comparing digests with CRYPTO_memcmp
 * takes the same time whatever the presented token's length and bytes. */
static unsigned char token_digest[SHA256_DIGEST_LENGTH];
static int token_set;

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

int
admin_add_handler(const char *prefix, void (*fn)(struct evhttp_request *, void *),
    void *arg)
{
	if (n_handlers >= ADMIN_MAX_HANDLERS ||
	    strlen(prefix) >= sizeof(handlers[0].prefix))
		return -1;
	strcpy(handlers[n_handlers].prefix, prefix);
	handlers[n_handlers].fn = fn;
	handlers[n_handlers++].arg = arg;
	return 0;
}

void
admin_set_reply_headers(struct evhttp_request *req, const char *ctype)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	if (evhttp_find_header(h, "Cache-Control") == NULL)
		evhttp_add_header(h, "Cache-Control", "no-store");
	/* Pages show attacker-influenced span contents: even if an escape
	 * were missed, no inline script runs and nothing loads from
	 * elsewhere. Inline styles stay allowed: the waterfall's bars are
	 * positioned by style attributes. */
	evhttp_add_header(h, "Content-Security-Policy", "default-src 'none'; "
	    "script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
	    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
}

static void
reply(struct evhttp_request *req, int status, const char *reason,
    const char *ctype, struct evbuffer *body)
{
	admin_set_reply_headers(req, ctype);
	evhttp_send_reply(req, status, reason, body);
}

void
admin_set_auth_token(const char *token)
{
	if (token == NULL || token[0] == '\0') {
		token_set = 0;
		explicit_bzero(token_digest, sizeof(token_digest));
		return;
	}
	SHA256((const unsigned char *)token, strlen(token), token_digest);
	token_set = 1;
}

/* 1 when the token is right (or none is configured). Bearer TOKEN, or
 * Basic base64(user:TOKEN), any user: what a browser's prompt sends. */
static int
token_ok(const char *p, size_t len)
{
	unsigned char d[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)p, len, d);
	return CRYPTO_memcmp(d, token_digest, sizeof(d)) == 0;
}

static int
auth_ok(struct evhttp_request *req)
{
	const char *h, *colon;
	unsigned char dec[768];
	size_t hl;
	int n, ok;

	if (!token_set)
		return 1;
	h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (h == NULL)
		return 0;
	if (strncasecmp(h, "Bearer ", 7) == 0) {
		for (h += 7; *h == ' '; h++)
			;
		return token_ok(h, strlen(h));
	}
	if (strncasecmp(h, "Basic ", 6) != 0)
		return 0;
	for (h += 6; *h == ' '; h++)
		;
	/* bound before decoding: 1 KB of base64 holds any sane token */
	if ((hl = strlen(h)) == 0 || hl % 4 != 0 || hl > 1024)
		return 0;
	if ((n = EVP_DecodeBlock(dec, (const unsigned char *)h, (int)hl)) < 0)
		return 0;
	/* EVP_DecodeBlock counts the padding as zero bytes */
	n -= (h[hl - 1] == '=') + (h[hl - 2] == '=');
	if ((colon = memchr(dec, ':', (size_t)n)) == NULL)
		ok = 0;
	else
		ok = token_ok(colon + 1, (size_t)n - (size_t)(colon + 1 - (const char *)dec));
	explicit_bzero(dec, sizeof(dec));
	return ok;
}

/* 401 unless the request carries the token; 1 when it may go on. */
static int
auth_check(struct evhttp_request *req)
{
	struct evbuffer *b;

	if (auth_ok(req))
		return 1;
	evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
	    "Basic realm=\"tracebridge admin\", Bearer realm=\"tracebridge admin\"");
	if ((b = evbuffer_new()) != NULL)
		evbuffer_add_printf(b, "authorization required\n");
	reply(req, 401, "Unauthorized", "text/plain", b);
	if (b != NULL)
		evbuffer_free(b);
	return 0;
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

	if (!auth_check(req) || !method_ok(req, 0) || (b = evbuffer_new()) == NULL)
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

	if (!auth_check(req))
		return;
	for (i = 0; i < n_handlers; i++) {
		plen = strlen(handlers[i].prefix);
		if (strncmp(uri, handlers[i].prefix, plen) == 0 &&
		    (uri[plen] == '\0' || uri[plen] == '?' || uri[plen] == '/')) {
			if (method_ok(req, 0))
				handlers[i].fn(req, handlers[i].arg);
			return;
		}
	}
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
