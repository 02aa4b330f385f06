/*
 * tracing.h: the glue between the proxy's per-request seam (proxy_hooks)
 * and the trace context codecs, the sampler and the span sink.
 *
 * Three lifetimes:
 *  - process (control thread): the sampling hub, the policy sources, the
 *    admin routes and metrics;
 *  - configuration: a struct tracing_conf hung on each tb_config (its
 *    codec lists, HMAC key state, operation rules), freed with it, so a
 *    request started under an old config finishes with the old keys;
 *  - worker: a sampler and a Redis span sink on the worker's loop.
 */
#ifndef TB_TRACING_H
#define TB_TRACING_H

#include "config.h"

struct event_base;
struct worker;

/* Build the per-config state and hang it on cfg (cfg->ext). 0, or -1 with
 * a message in err (no secret in it). */
int tracing_conf_attach(struct tb_config *cfg, char *err, size_t errlen);

/* Control thread: start the hub, policy sources and admin routes; 0/-1. */
int tracing_start(struct event_base *base, const struct tb_config *cfg);
/* Control thread: a new config is in force (SIGHUP). */
void tracing_reload(const struct tb_config *cfg);
void tracing_stop(void);

/* Worker thread: (re)configure the worker's sampler and sink for cfg. */
void tracing_worker_configure(struct worker *w, const struct tb_config *cfg);
void tracing_worker_free(struct worker *w);
/* 1 when the worker's sink has no span left to write (drain waits for it). */
int tracing_worker_flushed(struct worker *w);

#endif
