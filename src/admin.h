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
/* The same for an action, which changes state: POST only. */
int admin_add_action(const char *path, int (*fn)(struct evbuffer *body,
    const char **content_type));

#endif
