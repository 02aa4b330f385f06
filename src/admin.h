/*
 * admin.h: the loopback admin endpoint on the control thread (evhttp: its
 * bodies are tiny). GET /healthz, GET /metrics (Prometheus text), and
 * whatever later modules register (GET /sampling, POST
 * /tls/rotate-ticket-key). Pages answer GET and HEAD, actions only POST;
 * another method is a 405 with Allow.
 */
#ifndef TB_ADMIN_H
#define TB_ADMIN_H

#include "config.h"

struct event_base;
struct evbuffer;
struct evhttp_request;

/* Start serving on addr; 0/-1 (logged). */
int admin_start(struct event_base *base, const struct tb_addr *addr);
void admin_stop(void);

/* /healthz answers 503 from now on. */
void admin_set_draining(void);

/* Extra Prometheus text producers appended to /metrics (called on the
 * control thread; they read atomics). At most 8. */
void admin_add_metrics(void (*fn)(struct evbuffer *out));

/* Register another GET path; the handler fills body and returns a status.
 * At most 8 routes and actions together; 0, or -1 when full. */
int admin_add_route(const char *path, int (*fn)(struct evbuffer *body,
    const char **content_type));
/* The same for a page that reads its query string (without the '?', ""
 * when there is none; not decoded). */
int admin_add_query_route(const char *path, int (*fn)(const char *query,
    struct evbuffer *body, const char **content_type));
/*
 * A handler for everything under prefix: the path itself and prefix/...,
 * with or without a query (e.g. "/traces" takes /traces?q=x and
 * /traces/<id>). GET and HEAD only. fn owns the reply: it answers req with
 * evhttp_send_reply now or later from the control loop (an asynchronous
 * Redis read); admin_set_reply_headers() gives every page the same
 * headers. At most 4; 0, or -1 when full.
 */
int admin_add_handler(const char *prefix,
    void (*fn)(struct evhttp_request *req, void *arg), void *arg);

/* The security headers every admin page carries (no framing, no sniffing,
 * a Content-Security-Policy that allows only this origin's scripts and
 * styles), and ctype. */
void admin_set_reply_headers(struct evhttp_request *req, const char *ctype);

/*
 * [admin] auth_token: from now on every request but GET /healthz needs
 * "Authorization: Bearer TOKEN" (or Basic with TOKEN as the password, for
 * a browser's prompt); NULL or "" turns it off. Copied; compared in
 * constant time; never logged. Called at start and on every reload.
 */
void admin_set_auth_token(const char *token);

/* The same for an action, which changes state: POST only. */
int admin_add_action(const char *path, int (*fn)(struct evbuffer *body,
    const char **content_type));

#endif
