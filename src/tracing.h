/*
 * tracing.h: the glue between the proxy's per-request seam (proxy_hooks)
 * and the trace context codecs, the sampler and the span sink, reached
 * by the core only through tracing_module (module.h).
 *
 * Three lifetimes:
 *  - process (control thread): the sampling hub, the policy sources, the
 *    admin routes and metrics;
 *  - configuration: a struct tracing_conf in the tracing slot of each
 *    tb_config (its codec lists, HMAC key state, operation rules), freed
 *    with it, so a request started under an old config finishes with the
 *    old keys;
 *  - worker: a sampler and a Redis span sink on the worker's loop.
 */
#ifndef TB_TRACING_H
#define TB_TRACING_H

struct tb_module;

extern const struct tb_module tracing_module;

struct sampling_hub;

/* The process' sampling hub once the module started, else NULL (for
 * adaptive.c, which feeds it a second policy layer). Control thread. */
struct sampling_hub *tracing_hub(void);

#endif
