/*
 * tracing.c: trace context in, sampling decision, osprofiler headers out,
 * the edge span to every registered sink (Redis here, OTLP in
 * otlp_export.c; see tracing.h). The request path only calls pure
 * functions and enqueues the span; nothing here waits on I/O.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "admin.h"
#include "fmt.h"
#include "conn.h"
#include "log.h"
#include "policy_source.h"
#include "proxy.h"
#include "redis.h"
#include "sampling.h"
#include "sink_redis.h"
#include "span.h"
#include "tls.h"
#include "trace.h"
#include "trace_index.h"
#include "module.h"
#include "tracing.h"
#include "worker.h"
#include "util.h"

struct tracing_conf {
	int enabled;			/* [profiler] enabled */
	struct trace_conf *trace;
	struct sampling_rules *rules;
	/* [profiler] connection_string, parsed once per configuration, for
	 * the span sinks and the Redis policy source alike */
	struct tb_redis_url redis_url;
	const char *connection_string;	/* the text, to compare configs */
	struct sink_conf sink;		/* strings point into the tb_config */
};

/* Per request (r->hook_data). */
struct tracing_req {
	struct trace_req tr;
	struct sampling_result sres;
	char operation[SAMPLING_OP_MAX];
	struct tracing_req *next_free;	/* in tracing_worker.free_reqs */
};

/*
 * Finished per-request states a worker keeps for the next requests, at
 * most this many (about one per connection busy at the same time). At
 * ~3 KB a struct tracing_req is past glibc's per-thread cache (chunks up
 * to 1 KiB), so a malloc + free of it per request went through the
 * arena's bins: ~500 instructions that a list push and pop avoid.
 */
#define TRACING_FREE_REQS_MAX	64

/* Per worker (w->mod[TB_MOD_TRACING]). */
struct tracing_worker {
	struct sampler *sampler;
	struct sink_redis *sink;
	char sink_key[1024];		/* what the sink was built from */
	struct tracing_req *free_reqs;	/* owned; see TRACING_FREE_REQS_MAX */
	unsigned n_free_reqs;
};

static struct {
	tracing_sink_fn sinks[TRACING_MAX_SINKS];
	size_t n_sinks;
	struct sampling_hub *hub;
	struct policy_source *ps;
	struct event_base *base;
	char sources_key[4096];		/* the settings g.ps was built from */
} g;

static void sources_key(const struct tb_config *cfg, char *out, size_t len);

int
tracing_add_sink(tracing_sink_fn fn)
{
	size_t i;

	for (i = 0; i < g.n_sinks; i++)
		if (g.sinks[i] == fn)
			return 0;	/* a second start (tests): once is enough */
	if (g.n_sinks == TRACING_MAX_SINKS)
		return -1;
	g.sinks[g.n_sinks++] = fn;
	return 0;
}

static void
tracing_conf_free(struct tb_config *cfg, void *arg)
{
	struct tracing_conf *tc = arg;

	if (tc == NULL)
		return;
	trace_conf_free(tc->trace);
	sampling_rules_free(tc->rules);
	explicit_bzero(&tc->redis_url, sizeof(tc->redis_url));
	free(tc);
}

/* "FILE: " (or "command line: ") before err. */
static void
prefix_source(const struct tb_config *cfg, char *err, size_t errlen)
{
	char tmp[1024];

	snprintf(tmp, sizeof(tmp), "%s: %s", cfg->path != NULL ? cfg->path : "command line",
	    err);
	snprintf(err, errlen, "%s", tmp);
}

/* ------------------------------------------------ configuration checks */

/*
 * [tracing] extract / inject: codec names, each once, stored lower case.
 * By the codec table itself, so a new codec is accepted where it is added.
 */
static int
check_formats(void *field, char *why, size_t wl)
{
	char **v = *(char ***)field, nb[64];
	const struct trace_codec *c;
	size_t i, k, n = 0;
	unsigned seen = 0;

	for (i = 0; v[i] != NULL; i++) {
		if ((c = trace_codec_by_name(v[i])) == NULL) {
			n = (size_t)snprintf(why, wl, "unknown format '%s' "
			    "(expected", config_printable(v[i], nb, sizeof(nb)));
			for (k = 0; k < TRACE_F_COUNT && n < wl; k++)
				n += (size_t)snprintf(why + n, wl - n, "%s %s",
				    k ? "," : "", trace_codecs[k]->name);
			if (n < wl)
				snprintf(why + n, wl - n, ")");
			return -1;
		}
		if (seen & (1u << c->id)) {
			snprintf(why, wl, "format '%s' listed twice", c->name);
			return -1;
		}
		seen |= 1u << c->id;
		for (k = 0; v[i][k] != '\0'; k++)
			v[i][k] = (char)tolower((unsigned char)v[i][k]);
	}
	return 0;
}

/* [sampling] operation_rules: by the parser the sampler uses later, so the
 * file and a policy from Redis or a URL get the same verdict. */
static int
check_rules(void *field, char *why, size_t wl)
{
	char **v = *(char ***)field;
	struct sampling_rules *rs;
	size_t n = 0;

	while (v[n] != NULL)
		n++;
	if (sampling_rules_parse((const char *const *)v, n, &rs, why, wl) < 0)
		return -1;
	sampling_rules_free(rs);
	return 0;
}

/* [profiler] connection_string: by the one Redis URL parser (redis.c),
 * whose messages never quote the password (nor anything of the value). */
static int
check_connection_string(void *field, char *why, size_t wl)
{
	struct tb_redis_url url;
	int rc;

	rc = tb_redis_url_parse(*(char **)field, &url, why, wl);
	explicit_bzero(&url, sizeof(url));	/* it holds the password */
	return rc;
}

/* [sampling] policy_url: the policy source speaks plain HTTP only. */
static int
check_http_url(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;

	if (s == NULL || (strncmp(s, "http://", 7) == 0 && s[7] != '\0'))
		return 0;
	snprintf(why, wl, "expected an http:// URL (https is not supported)");
	return -1;
}

static const struct tb_opt_check tracing_opt_checks[] = {
	{ "tracing", "extract", check_formats },
	{ "tracing", "inject", check_formats },
	{ "sampling", "operation_rules", check_rules },
	{ "profiler", "connection_string", check_connection_string },
	{ "sampling", "policy_url", check_http_url },
	{ NULL, NULL, NULL },
};

static int
tracing_conf_check(const struct tb_config *cfg, char *err, size_t errlen)
{
	int pl, sl;

	if (cfg->profiler.enabled && cfg->profiler.n_hmac_keys == 0) {
		config_errorf(cfg, err, errlen, config_opt_line(cfg, "profiler",
		    "enabled"), "hmac_keys", "at least one key is required "
		    "when enabled = true");
		return -1;
	}
	if (cfg->sampling.policy_redis_key != NULL &&
	    strncasecmp(cfg->profiler.connection_string, "otlp://", 7) == 0) {
		config_errorf(cfg, err, errlen, config_opt_line(cfg, "sampling",
		    "policy_redis_key"), "policy_redis_key", "needs a Redis "
		    "[profiler] connection_string, not otlp://");
		return -1;
	}
	/* two ways to say how new traces start: name the later one */
	pl = config_opt_line(cfg, "sampling", "default_probability");
	sl = config_opt_line(cfg, "tracing", "sample_new");
	if (pl != 0 && sl != 0) {
		config_errorf(cfg, err, errlen, pl > sl ? pl : sl, pl > sl ?
		    "default_probability" : "sample_new", "sample_new and "
		    "default_probability cannot both be set");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ the module */

static int
tracing_conf_attach(struct tb_config *cfg, char *err, size_t errlen)
{
	struct tracing_conf *tc;
	const struct tb_tracing_conf *t = &cfg->tracing;
	const struct tb_profiler_conf *p = &cfg->profiler;

	if ((tc = calloc(1, sizeof(*tc))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	tc->enabled = p->enabled;
	cfg->mod[TB_MOD_TRACING].data = tc;
	cfg->mod[TB_MOD_TRACING].free = tracing_conf_free;
	/* config_load checked it already (with FILE:LINE); the policy source
	 * uses it even when spans are not recorded */
	if (tb_redis_url_parse(p->connection_string, &tc->redis_url, err,
	    errlen) < 0)
		goto fail;
	tc->connection_string = p->connection_string;
	if (!p->enabled)
		return 0;	/* a plain proxy: trace headers pass untouched */
	tc->trace = trace_conf_new((const char *const *)t->extract, t->n_extract,
	    (const char *const *)t->inject, t->n_inject,
	    (const char *const *)p->hmac_keys, p->n_hmac_keys,
	    t->keep_foreign_headers, t->server_timing, t->response_trace_id,
	    t->request_id_from_trace, err, errlen);
	if (tc->trace == NULL)
		goto fail;
	if (sampling_rules_parse((const char *const *)cfg->sampling.operation_rules,
	    cfg->sampling.n_operation_rules, &tc->rules, err, errlen) < 0)
		goto fail;
	tc->sink.redis.url = &tc->redis_url;
	tc->sink.redis.sentinel_service_name = p->sentinel_service_name;
	tc->sink.redis.sentinel_timeout = p->socket_timeout;
	tc->sink.filter_error_trace = p->filter_error_trace;
	tc->sink.span_ttl = (long)t->span_ttl;
	tc->sink.span_buffer_bytes = t->span_buffer_bytes;
	return 0;
fail:
	/* The slot stays set: config_unref frees it with the config. Say
	 * which file (tls.c's messages name FILE:LINE themselves). */
	prefix_source(cfg, err, errlen);
	return -1;
}

/* --- per request: the proxy hooks -------------------------------------- */

static int
origin_of(const struct trace_req *tr)
{
	if (tr->from == NULL)
		return SAMPLING_ORIGIN_NONE;
	if (tr->from == &trace_codec_osprofiler)
		return SAMPLING_ORIGIN_OSPROFILER;
	return SAMPLING_ORIGIN_INCOMING;
}

static void
on_request(struct proxy_req *r, const struct h1_msg *m, uint8_t *drop,
    struct tb_hdr_sink *add)
{
	const struct tracing_conf *tc = r->c->cfg->mod[TB_MOD_TRACING].data;
	struct tracing_worker *tw = r->c->w->mod[TB_MOD_TRACING];
	const struct tb_listener_conf *lc = r->c->lc;
	struct tracing_req *t;
	size_t i;

	if (tc == NULL || !tc->enabled || tw == NULL)
		return;
	if ((t = tw->free_reqs) != NULL) {
		tw->free_reqs = t->next_free;
		tw->n_free_reqs--;
	} else if ((t = malloc(sizeof(*t))) == NULL) {
		return;		/* untraced, never failed, for want of memory */
	}
	r->hook_data = t;
	trace_extract(tc->trace, m->hdrs, m->n_hdrs, &t->tr);
	if (t->tr.invalid != 0 && log_get_level() >= TB_LOG_DEBUG)
		log_debug("%s: client %s: invalid trace headers ignored (TRACE_F_* bits 0x%x)",
		    lc->name, r->c->peer, t->tr.invalid);
	/* the recorded target (origin-form, secrets redacted): an operation
	 * name lands in spans, /metrics and /sampling */
	sampling_operation_name(m->method, m->method_len, r->log_target,
	    strlen(r->log_target), tc->rules, t->operation, sizeof(t->operation));
	sampling_decide(tw->sampler, lc->service, t->operation, t->tr.ctx.trace_id,
	    origin_of(&t->tr), t->tr.ctx.sampled, t->tr.ctx.debug,
	    lc->trust_incoming_sampling, tb_mono_ns(), &t->sres);
	t->tr.sampled = t->sres.sampled;
	t->tr.debug = t->sres.sampled && t->tr.ctx.debug;
	for (i = 0; i < m->n_hdrs; i++)
		if (trace_req_drops(&t->tr, i))
			drop[i / 8] |= (uint8_t)(1u << (i % 8));
	trace_inject(tc->trace, &t->tr, add);
	if (log_access_enabled())
		snprintf(r->log_extra, sizeof(r->log_extra), " trace=%s sampled=%d",
		    t->tr.base_id, t->tr.sampled);
}

static void
on_response(struct proxy_req *r, const struct h1_msg *m, struct tb_hdr_sink *add)
{
	const struct tracing_conf *tc = r->c->cfg->mod[TB_MOD_TRACING].data;
	struct tracing_req *t = r->hook_data;

	if (t != NULL && tc != NULL && tc->trace != NULL)
		trace_response_headers(tc->trace, &t->tr, add);
}

/* The caller's span id as its own format writes it, for the span info. */
static void
native_span_id(const struct trace_req *tr, char *out, size_t len)
{
	out[0] = '\0';
	if (tr->from == NULL || !tr->ctx.has_span_id)
		return;
	if (tr->from == &trace_codec_osprofiler)
		snprintf(out, len, "%s", tr->ctx.osp_parent_id);
	else if (tr->from == &trace_codec_datadog || tr->from == &trace_codec_gcp)
		snprintf(out, len, "%llu", (unsigned long long)tr->ctx.span_id);
	else
		snprintf(out, len, "%016llx", (unsigned long long)tr->ctx.span_id);
}

/* src[0..len) into dst[size], cut to fit, NUL-terminated (no snprintf:
 * this runs for every sampled request). */
static void
copy_cut(char *dst, size_t size, const char *src, size_t len)
{
	if (src == NULL)
		len = 0;
	if (len > size - 1)
		len = size - 1;
	if (len > 0)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

/* The recent-traces index behind the viewer's GET /traces (trace_index.h
 * says why a locked ring). */
static void
index_add(const struct span_rec *s)
{
	struct trace_index_entry e;

	copy_cut(e.base_id, sizeof(e.base_id), s->base_id, strlen(s->base_id));
	e.start_us = s->start_us;
	e.duration_us = s->stop_us - s->start_us;
	e.status = s->status_code;
	e.error = span_is_error(s);
	copy_cut(e.service, sizeof(e.service), s->service,
	    s->service != NULL ? strlen(s->service) : 0);
	copy_cut(e.operation, sizeof(e.operation), s->operation,
	    s->operation != NULL ? strlen(s->operation) : 0);
	copy_cut(e.method, sizeof(e.method), s->method, s->method_len);
	copy_cut(e.request_id, sizeof(e.request_id), s->upstream_request_id,
	    s->upstream_request_id_len);
	trace_index_add(&e);
}

static void
on_complete(struct proxy_req *r)
{
	const struct tb_config *cfg = r->c->cfg;
	struct tracing_worker *tw = r->c->w->mod[TB_MOD_TRACING];
	struct tracing_req *t = r->hook_data;
	struct span_rec s;
	char client[80], native[64], msg[64];
	size_t i;

	if (t == NULL || !t->tr.sampled || tw == NULL || g.n_sinks == 0)
		return;
	memset(&s, 0, sizeof(s));
	s.base_id = t->tr.base_id;
	s.trace_id = t->tr.span_uuid;
	s.parent_id = t->tr.parent_uuid;
	s.has_parent = t->tr.from != NULL && t->tr.ctx.has_span_id;
	if (t->tr.ctx.tracestate_len > 0) {
		s.tracestate = t->tr.ctx.tracestate;
		s.tracestate_len = t->tr.ctx.tracestate_len;
	}
	s.host_header = r->host[0] ? r->host : NULL;
	s.server_port = r->c->lc->listen.ss.ss_family == AF_INET6 ?
	    ntohs(((const struct sockaddr_in6 *)&r->c->lc->listen.ss)->sin6_port) :
	    ntohs(((const struct sockaddr_in *)&r->c->lc->listen.ss)->sin_port);
	s.name = cfg->tracing.span_name;
	s.project = cfg->tracing.project;
	s.service = r->c->lc->service;
	s.host = cfg->tracing.host;
	s.start_us = (int64_t)r->t_start_wall.tv_sec * 1000000 + r->t_start_wall.tv_nsec / 1000;
	s.stop_us = (int64_t)r->t_end_wall.tv_sec * 1000000 + r->t_end_wall.tv_nsec / 1000;
	s.method = r->method;
	s.method_len = strlen(r->method);
	s.target = r->log_target;	/* info.request.query: redacted */
	s.target_len = strlen(r->log_target);
	s.scheme = r->c->tls != NULL ? "https" : "http";
	if (r->c->tls != NULL) {
		s.tls_protocol = r->c->tls->protocol;
		s.tls_cipher = r->c->tls->cipher;
		s.tls_sni = r->c->tls->sni[0] ? r->c->tls->sni : NULL;
		s.tls_client_subject = r->c->tls->subject[0] ? r->c->tls->subject : NULL;
	}
	{
		/* "ip:port" without snprintf: this runs for every sampled request */
		size_t pl = strlen(r->c->peer);

		memcpy(client, r->c->peer, pl);
		client[pl++] = ':';
		client[pl + fmt_u64(client + pl, r->c->peer_port)] = '\0';
	}
	s.client_addr = client;
	s.listener = r->c->lc->name;
	s.http_version = r->version_minor ? "HTTP/1.1" : "HTTP/1.0";
	s.user_agent = r->user_agent[0] ? r->user_agent : NULL;
	s.user_agent_len = strlen(r->user_agent);
	s.trace_format = t->tr.from != NULL ? t->tr.from->name : NULL;
	native_span_id(&t->tr, native, sizeof(native));
	s.caller_span_id = native[0] ? native : NULL;
	s.upstream_addr = r->upstream_addr;
	s.operation = t->operation;
	s.sampling_reason = sampling_reason_name(t->sres.reason);
	s.sampler_type = sampling_sampler_type(t->sres.reason);
	s.sampler_param = t->sres.param;
	s.status_code = r->status;
	s.bytes_to_client = r->bytes_out;
	s.bytes_from_client = r->bytes_in;
	s.upstream_connect_ms = r->connect_us >= 0 ? (double)r->connect_us / 1000.0 : -1;
	s.upstream_first_byte_ms = r->first_byte_us >= 0 ? (double)r->first_byte_us / 1000.0 : -1;
	s.upstream_request_id = r->request_id[0] ? r->request_id : NULL;
	s.upstream_request_id_len = strlen(r->request_id);
	switch (r->err) {
	case PROXY_ERR_UPSTREAM_UNAVAILABLE:
	case PROXY_ERR_UPSTREAM_BAD:
		s.etype = SPAN_ETYPE_UPSTREAM_UNAVAILABLE;
		s.message = r->err == PROXY_ERR_UPSTREAM_BAD ? "bad response from upstream" :
		    "upstream refused, reset or closed the connection";
		break;
	case PROXY_ERR_UPSTREAM_ABORTED:
		s.etype = SPAN_ETYPE_UPSTREAM_UNAVAILABLE;
		s.message = "upstream failed during the response";
		break;
	case PROXY_ERR_UPSTREAM_TIMEOUT:
		s.etype = SPAN_ETYPE_UPSTREAM_TIMEOUT;
		s.message = "no answer from upstream in time";
		break;
	case PROXY_ERR_CLIENT_GONE:
		s.etype = SPAN_ETYPE_CLIENT_DISCONNECTED;
		s.message = "client closed the connection before the response was sent";
		break;
	case PROXY_ERR_BAD_REQUEST_BODY:
	case PROXY_OK:
		if (r->status >= 500) {
			s.etype = SPAN_ETYPE_HTTP_SERVER_ERROR;
			snprintf(msg, sizeof(msg), "HTTP %d", r->status);
			s.message = msg;
		}
		break;
	}
	for (i = 0; i < g.n_sinks; i++)
		g.sinks[i](r->c->w, &s);
}

/* The Redis store: this module's own sink (none when connection_string is
 * otlp://). Dropped spans are counted there. What it stored goes into the
 * viewer's index of recent traces (the viewer reads them from Redis). */
static void
redis_sink(struct worker *w, const struct span_rec *r)
{
	struct tracing_worker *tw = w->mod[TB_MOD_TRACING];

	if (tw != NULL && tw->sink != NULL) {
		(void)sink_redis_record(tw->sink, r);
		index_add(r);
	}
}

/* Back to the worker's list, or freed when the list is full (or the
 * worker has no tracing state: then on_request did not run either). */
static void
on_free(struct proxy_req *r)
{
	struct tracing_worker *tw = r->c->w->mod[TB_MOD_TRACING];
	struct tracing_req *t = r->hook_data;

	r->hook_data = NULL;
	if (t == NULL)
		return;
	if (tw == NULL || tw->n_free_reqs >= TRACING_FREE_REQS_MAX) {
		free(t);
		return;
	}
	t->next_free = tw->free_reqs;
	tw->free_reqs = t;
	tw->n_free_reqs++;
}

static const struct proxy_hooks hooks = {
	on_request, on_response, on_complete, on_free,
};

/* --- worker ------------------------------------------------------------ */

static void
sink_settings(const struct tracing_conf *tc, char *out, size_t len)
{
	const struct sink_conf *s = &tc->sink;

	snprintf(out, len, "%s|%s|%g|%d|%ld|%zu", tc->connection_string,
	    s->redis.sentinel_service_name, s->redis.sentinel_timeout,
	    s->filter_error_trace, s->span_ttl, s->span_buffer_bytes);
}

static void
tracing_worker_configure(struct worker *w, const struct tb_config *cfg)
{
	const struct tracing_conf *tc = cfg->mod[TB_MOD_TRACING].data;
	struct tracing_worker *tw = w->mod[TB_MOD_TRACING];
	char key[sizeof(tw->sink_key)], err[256];

	if (tw == NULL) {
		if ((tw = calloc(1, sizeof(*tw))) == NULL)
			return;
		w->mod[TB_MOD_TRACING] = tw;
	}
	if (tw->sampler == NULL && g.hub != NULL)
		tw->sampler = sampling_sampler_new(g.hub);
	if (tc == NULL || !tc->enabled || tc->redis_url.kind == TB_REDIS_OTLP) {
		/* otlp://: no Redis store, otlp_export.c exports the spans */
		sink_redis_free(tw->sink);
		tw->sink = NULL;
		tw->sink_key[0] = '\0';
		return;
	}
	sink_settings(tc, key, sizeof(key));
	if (tw->sink != NULL && strcmp(key, tw->sink_key) == 0)
		return;		/* unchanged: keep the buffered spans */
	sink_redis_free(tw->sink);
	tw->sink = sink_redis_new(w->base, &tc->sink, err, sizeof(err));
	if (tw->sink == NULL)
		log_warnx("worker %d: span sink: %s", w->id, err);
	memcpy(tw->sink_key, key, sizeof(key));
}

static int
tracing_worker_flushed(struct worker *w)
{
	struct tracing_worker *tw = w->mod[TB_MOD_TRACING];
	struct sink_stats st;

	if (tw == NULL || tw->sink == NULL)
		return 1;
	sink_redis_stats(tw->sink, &st);
	/* Nothing to wait for either when Redis is away: those spans are
	 * counted as dropped at shutdown. */
	return (st.buffered_spans == 0 && st.inflight_spans == 0) || !st.connected;
}

static void
tracing_worker_free(struct worker *w)
{
	struct tracing_worker *tw = w->mod[TB_MOD_TRACING];
	struct tracing_req *t;

	if (tw == NULL)
		return;
	sink_redis_free(tw->sink);
	sampling_sampler_free(tw->sampler);
	while ((t = tw->free_reqs) != NULL) {
		tw->free_reqs = t->next_free;
		free(t);
	}
	free(tw);
	w->mod[TB_MOD_TRACING] = NULL;
}

/* --- control thread ---------------------------------------------------- */

static void
limits_of(const struct tb_config *cfg, struct sampling_limits *lim)
{
	lim->forced_max_per_second = cfg->sampling.forced_max_per_second;
	lim->incoming_max_per_second = cfg->sampling.incoming_max_per_second;
	lim->max_traces_per_second = cfg->sampling.max_traces_per_second;
}

/* The built-in policy: [tracing] sample_new is shorthand for 1.0 / 0.0. */
static double
default_probability(const struct tb_config *cfg)
{
	if (cfg->tracing.sample_new >= 0)
		return cfg->tracing.sample_new ? 1.0 : 0.0;
	return cfg->sampling.default_probability;
}

static void
metrics_trace(struct evbuffer *out)
{
	char buf[8192];
	size_t n = trace_metrics_format(buf, sizeof(buf));

	evbuffer_add(out, buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
}

static void
metrics_sampling(struct evbuffer *out)
{
	char *text;

	if (g.hub == NULL || (text = sampling_metrics_text(g.hub)) == NULL)
		return;
	evbuffer_add(out, text, strlen(text));
	free(text);
}

/* The service a Jaeger remote sampler asks for (?service=NAME, decoded),
 * or NULL. Caller frees. */
static char *
query_service(const char *query)
{
	struct evkeyvalq kv;
	const char *v;
	char *s = NULL;

	if (query[0] == '\0' || evhttp_parse_query_str(query, &kv) != 0)
		return NULL;
	if ((v = evhttp_find_header(&kv, "service")) != NULL)
		s = strdup(v);
	evhttp_clear_headers(&kv);
	return s;
}

/*
 * GET /sampling: the status page; GET /sampling?service=NAME and GET
 * /api/sampling?service=NAME: Jaeger's remote-sampling answer for NAME (the
 * paths of Jaeger's agent and collector), so user applications' SDKs
 * sample as the edge does (issue 15).
 */
static int
route_sampling(const char *query, struct evbuffer *body, const char **ctype)
{
	json_t *j;
	char *s, *svc = query_service(query);

	if (g.hub == NULL) {
		free(svc);
		return 500;
	}
	j = svc != NULL ? sampling_remote_json(g.hub, svc) :
	    sampling_status_json(g.hub);
	free(svc);
	if (j == NULL)
		return 500;
	s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	if (s == NULL)
		return 500;
	evbuffer_add(body, s, strlen(s));
	evbuffer_add(body, "\n", 1);
	free(s);
	*ctype = "application/json";
	return 200;
}

/* Start the configured policy sources; 0, or -1 (logged) when one can't
 * start, e.g. a missing or invalid policy file. */
static int
sources_start(const struct tb_config *cfg)
{
	const struct tracing_conf *tc = cfg->mod[TB_MOD_TRACING].data;
	struct policy_source_conf pc;
	struct tb_redis_url aurl;
	const char **services;
	size_t i, j, n = 0;
	char err[256];

	memset(&pc, 0, sizeof(pc));
	pc.file = cfg->sampling.policy_file;
	pc.url = cfg->sampling.policy_url;
	pc.poll_interval = cfg->sampling.policy_poll_interval;
	pc.default_probability = default_probability(cfg);
	if (cfg->sampling.policy_redis_key != NULL && tc != NULL) {
		/* the same server as the spans, any kind of connection string */
		pc.redis.url = &tc->redis_url;
		pc.redis.sentinel_service_name = cfg->profiler.sentinel_service_name;
		pc.redis.sentinel_timeout = cfg->profiler.socket_timeout;
		pc.redis_key = cfg->sampling.policy_redis_key;
		pc.redis_channel = cfg->sampling.policy_channel;
		/* adaptive sampling's Redis, where its leader writes the key
		 * (checked at load; copied by policy_source_new) */
		if (cfg->sampling.adaptive && cfg->sampling.adaptive_redis != NULL &&
		    tb_redis_url_parse(cfg->sampling.adaptive_redis, &aurl, err,
		    sizeof(err)) == 0)
			pc.redis.url = &aurl;
	}
	if (pc.file == NULL && pc.url == NULL && pc.redis_key == NULL)
		return 0;
	services = calloc(cfg->n_listeners + 1, sizeof(*services));
	for (i = 0; services != NULL && i < cfg->n_listeners; i++) {
		for (j = 0; j < n; j++)
			if (strcmp(services[j], cfg->listeners[i].service) == 0)
				break;
		if (j == n)
			services[n++] = cfg->listeners[i].service;
	}
	pc.services = services;
	pc.n_services = n;
	g.ps = policy_source_new(g.base, g.hub, &pc, err, sizeof(err));
	free(services);
	explicit_bzero(&aurl, sizeof(aurl));
	if (g.ps == NULL) {
		log_errx("sampling policy: %s", err);
		return -1;
	}
	return 0;
}

static int
tracing_start(struct event_base *base, const struct tb_config *cfg)
{
	struct sampling_limits lim;
	struct sampling_policy *p;

	g.base = base;
	limits_of(cfg, &lim);
	/* The hub takes over the reference (and drops it if it fails). */
	p = policy_new_default(default_probability(cfg));
	g.hub = sampling_hub_new(&lim, p, "built-in default");
	if (g.hub == NULL)
		return -1;
	proxy_set_hooks(&hooks);
	if (tracing_add_sink(redis_sink) < 0)
		return -1;
	admin_add_metrics(metrics_trace);
	admin_add_metrics(sink_metrics_write);
	admin_add_metrics(metrics_sampling);
	admin_add_query_route("/sampling", route_sampling);
	admin_add_query_route("/api/sampling", route_sampling);
	sources_key(cfg, g.sources_key, sizeof(g.sources_key));
	return sources_start(cfg);
}

/* Everything the policy sources are built from, to tell if a reload changed it. */
static void
sources_key(const struct tb_config *cfg, char *out, size_t len)
{
	const struct tb_sampling_conf *s = &cfg->sampling;
	size_t i, off;

	off = (size_t)snprintf(out, len, "%s|%s|%g|%s|%s|%s|%s|%g|%g",
	    s->policy_file ? s->policy_file : "", s->policy_url ? s->policy_url : "",
	    s->policy_poll_interval, s->policy_redis_key ? s->policy_redis_key : "",
	    s->policy_channel ? s->policy_channel : "", cfg->profiler.connection_string,
	    cfg->profiler.sentinel_service_name, cfg->profiler.socket_timeout,
	    default_probability(cfg));
	for (i = 0; i < cfg->n_listeners && off < len; i++)
		off += (size_t)snprintf(out + off, len - off, "|%s", cfg->listeners[i].service);
	if (off < len)
		snprintf(out + off, len - off, "|%d|%s", s->adaptive,
		    s->adaptive_redis != NULL ? s->adaptive_redis : "");
}

static void
tracing_reload(const struct tb_config *cfg)
{
	struct sampling_limits lim;
	struct sampling_policy *p;
	char key[sizeof(g.sources_key)];

	limits_of(cfg, &lim);
	sampling_hub_set_limits(g.hub, &lim);
	sources_key(cfg, key, sizeof(key));
	if (strcmp(key, g.sources_key) == 0) {
		/* Same sources: SIGHUP just re-reads the policy file. */
		if (g.ps != NULL)
			policy_source_reload(g.ps);
		return;
	}
	memcpy(g.sources_key, key, sizeof(key));
	policy_source_free(g.ps);
	g.ps = NULL;
	if (cfg->sampling.policy_file == NULL && cfg->sampling.policy_url == NULL &&
	    cfg->sampling.policy_redis_key == NULL) {
		/* publish takes over the reference */
		p = policy_new_default(default_probability(cfg));
		sampling_hub_publish(g.hub, p, "built-in default");
	}
	if (sources_start(cfg) < 0)
		log_warnx("reload: sampling policy sources not started; the policy in force stays");
}

struct sampling_hub *
tracing_hub(void)
{
	return g.hub;
}

static void
tracing_stop(void)
{
	policy_source_free(g.ps);
	g.ps = NULL;
	sampling_hub_free(g.hub);
	g.hub = NULL;
}

const struct tb_module tracing_module = {
	.name = "tracing",
	.opt_checks = tracing_opt_checks,
	.conf_check = tracing_conf_check,
	.conf_attach = tracing_conf_attach,
	.start = tracing_start,
	.reload = tracing_reload,
	.stop = tracing_stop,
	.worker_configure = tracing_worker_configure,
	.worker_flushed = tracing_worker_flushed,
	.worker_free = tracing_worker_free,
};
