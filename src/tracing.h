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
struct worker;
struct span_rec;

extern const struct tb_module tracing_module;

/*
 * Where finished edge spans go. Every sink registered here is handed each
 * sampled span, on the worker's thread, when its request completes: the
 * Redis store of tracing.c itself and the exporters of other modules
 * (sink_otlp through otlp_export.c), so the request path names no sink.
 * fn must not block; r lives only for the call. Register from a module's
 * start hook (control thread, before the workers run); 0, or -1 when
 * TRACING_MAX_SINKS are registered.
 */
#define TRACING_MAX_SINKS	4
typedef void (*tracing_sink_fn)(struct worker *w, const struct span_rec *r);
int tracing_add_sink(tracing_sink_fn fn);
struct sampling_hub;

/* The process' sampling hub once the module started, else NULL (for
 * adaptive.c, which feeds it a second policy layer). Control thread. */
struct sampling_hub *tracing_hub(void);

#endif
