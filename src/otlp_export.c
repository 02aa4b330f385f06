/*
 * otlp_export.c: the OTLP export module (module.h): the [otlp] options,
 * per configuration the parsed endpoint (resolved at load time, as upstream
 * hosts are: a load may block on DNS, a worker loop never does), the
 * header block, the resource and the TLS context; per worker one
 * sink_otlp fed by tracing.c's span seam (tracing_add_sink).
 *
 * Where spans go (issue 14): [otlp] endpoint adds an export next to
 * whatever [profiler] connection_string says; connection_string =
 * otlp://host:port (osprofiler's OTLP driver string) means no Redis store
 * and export to http://host:port/v1/traces with the [otlp] settings.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tb_build.h"
#include "admin.h"
#include "config.h"
#include "log.h"
#include "module.h"
#include "otlp.h"
#include "redis.h"
#include "sink_otlp.h"
#include "span.h"
#include "tls.h"
#include "tracing.h"
#include "worker.h"

/* Per configuration (cfg->mod[TB_MOD_OTLP].data); NULL when not exporting. */
struct otlp_conf {
	struct sink_otlp_conf sink;	/* strings point here or into cfg */
	char host_header[300];
	char path[512];
	char *headers;			/* "K: v\r\n"... (owned) */
	struct otlp_kv resource[SINK_OTLP_MAX_RESOURCE];
	char instance[300];		/* service.instance.id */
	struct tls_client *tls;		/* owned */
	char key[2048];			/* what the sinks are built from */
};

/* Per worker (w->mod[TB_MOD_OTLP]). */
struct otlp_worker {
	struct sink_otlp *sink;
	char key[sizeof(((struct otlp_conf *)0)->key)];
};

/* ---- the endpoint ---- */

struct otlp_url {
	int https;
	char host[256];		/* IPv6 without brackets */
	char port[8];
	char hostport[300];	/* as written, for Host */
	char path[512];
};

/* "http(s)://host[:port][/path]": 0, or -1 with why (the value is not
 * quoted: it may carry credentials in a proxy's URL). */
static int
url_parse(const char *s, struct otlp_url *u, char *why, size_t wl)
{
	const char *p, *end, *slash, *colon;
	size_t hl;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "http://", 7) == 0)
		p = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0) {
		p = s + 8;
		u->https = 1;
	} else {
		snprintf(why, wl, "expected an http:// or https:// URL");
		return -1;
	}
	for (end = p; *end != '\0'; end++)
		if ((unsigned char)*end <= 0x20 || *end == 0x7f || *end == '#' ||
		    *end == '@') {
			snprintf(why, wl, "spaces, control characters, '#' and "
			    "'@' are not allowed");
			return -1;
		}
	slash = strchr(p, '/');
	hl = slash != NULL ? (size_t)(slash - p) : strlen(p);
	if (hl == 0 || hl >= sizeof(u->hostport)) {
		snprintf(why, wl, "missing or too long host");
		return -1;
	}
	memcpy(u->hostport, p, hl);
	if (p[0] == '[') {
		const char *rb = memchr(p, ']', hl);

		if (rb == NULL || rb == p + 1) {
			snprintf(why, wl, "bad IPv6 host");
			return -1;
		}
		memcpy(u->host, p + 1, (size_t)(rb - p - 1));
		colon = rb + 1 < p + hl ? rb + 1 : NULL;
		if (colon != NULL && *colon != ':') {
			snprintf(why, wl, "junk after ']' in host");
			return -1;
		}
	} else {
		colon = memchr(p, ':', hl);
		if (colon == p) {
			snprintf(why, wl, "missing host");
			return -1;
		}
		memcpy(u->host, p, colon != NULL ? (size_t)(colon - p) : hl);
	}
	if (colon != NULL) {
		size_t pl = (size_t)(p + hl - colon - 1), i;
		long port = 0;

		for (i = 0; i < pl; i++) {
			if (colon[1 + i] < '0' || colon[1 + i] > '9')
				break;
			port = port * 10 + (colon[1 + i] - '0');
			if (port > 65535)
				break;
		}
		if (pl == 0 || i < pl || port < 1 || port > 65535) {
			snprintf(why, wl, "port must be a number in 1..65535");
			return -1;
		}
		snprintf(u->port, sizeof(u->port), "%ld", port);
	} else
		snprintf(u->port, sizeof(u->port), "%s", u->https ? "443" : "4318");
	if (slash == NULL || slash[1] == '\0')
		snprintf(u->path, sizeof(u->path), "/v1/traces");
	else if (strlen(slash) >= sizeof(u->path)) {
		snprintf(why, wl, "path too long");
		return -1;
	} else
		snprintf(u->path, sizeof(u->path), "%s", slash);
	return 0;
}

/* ---- option checks ---- */

static int
check_endpoint(void *field, char *why, size_t wl)
{
	struct otlp_url u;
	const char *s = *(char **)field;

	return s == NULL ? 0 : url_parse(s, &u, why, wl);
}

/* RFC 9110 5.6.2 token characters. */
static int
is_tchar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* "key=value" members; header names are tokens, header values have no
 * control characters (they are written into the request head).
 * The messages name the member by position, never its value. */
static int
check_pairs(char **v, int header, char *why, size_t wl)
{
	size_t i, k;
	char *eq;

	for (i = 0; v != NULL && v[i] != NULL; i++) {
		if ((eq = strchr(v[i], '=')) == NULL || eq == v[i]) {
			snprintf(why, wl, "member %zu: expected key=value", i + 1);
			return -1;
		}
		for (k = 0; v[i] + k < eq; k++)
			if (header ? !is_tchar((unsigned char)v[i][k]) :
			    ((unsigned char)v[i][k] <= 0x20 || v[i][k] == 0x7f)) {
				snprintf(why, wl, "member %zu: bad character in the key",
				    i + 1);
				return -1;
			}
		for (k = 1; eq[k] != '\0'; k++)
			if (((unsigned char)eq[k] < 0x20 && eq[k] != '\t') || eq[k] == 0x7f) {
				snprintf(why, wl, "member %zu: control character in "
				    "the value", i + 1);
				return -1;
			}
	}
	for (i = 0; header && v != NULL && v[i] != NULL; i++) {
		static const char *const own[] = { "host", "content-length",
		    "content-type", "content-encoding", "transfer-encoding",
		    "connection", "te", "upgrade", "expect", NULL };
		size_t kl = (size_t)(strchr(v[i], '=') - v[i]);

		/* the exporter writes these itself: a second one would make
		 * the request ambiguous (RFC 9112 6.3) or lie about its body */
		for (k = 0; own[k] != NULL; k++)
			if (strlen(own[k]) == kl && strncasecmp(v[i], own[k], kl) == 0) {
				snprintf(why, wl, "member %zu: %s is set by the exporter",
				    i + 1, own[k]);
				return -1;
			}
	}
	if (header && i > 32) {
		snprintf(why, wl, "at most 32 headers");
		return -1;
	}
	if (!header && i > SINK_OTLP_MAX_RESOURCE - 6) {
		snprintf(why, wl, "at most %d resource attributes",
		    SINK_OTLP_MAX_RESOURCE - 6);
		return -1;
	}
	return 0;
}

static int
check_headers(void *field, char *why, size_t wl)
{
	return check_pairs(*(char ***)field, 1, why, wl);
}

static int
check_resource(void *field, char *why, size_t wl)
{
	return check_pairs(*(char ***)field, 0, why, wl);
}

static const struct tb_opt_check otlp_opt_checks[] = {
	{ "otlp", "endpoint", check_endpoint },
	{ "otlp", "headers", check_headers },
	{ "otlp", "resource_attributes", check_resource },
	{ NULL, NULL, NULL },
};

static int
otlp_conf_check(const struct tb_config *cfg, char *err, size_t errlen)
{
	const struct tb_otlp_conf *o = &cfg->otlp;
	int osp = cfg->profiler.connection_string != NULL &&
	    strncasecmp(cfg->profiler.connection_string, "otlp://", 7) == 0;

	if (o->endpoint != NULL && osp) {
		config_errorf(cfg, err, errlen, config_opt_line(cfg, "otlp", "endpoint"),
		    "endpoint", "[profiler] connection_string is otlp:// already; "
		    "set one of the two");
		return -1;
	}
	if ((o->client_cert != NULL) != (o->client_key != NULL)) {
		config_errorf(cfg, err, errlen, config_opt_line(cfg, "otlp",
		    o->client_cert != NULL ? "client_cert" : "client_key"),
		    o->client_cert != NULL ? "client_cert" : "client_key",
		    "client_cert and client_key go together");
		return -1;
	}
	if ((o->ca_file != NULL || o->client_cert != NULL) &&
	    (o->endpoint == NULL || strncasecmp(o->endpoint, "https://", 8) != 0)) {
		config_errorf(cfg, err, errlen, config_opt_line(cfg, "otlp",
		    o->ca_file != NULL ? "ca_file" : "client_cert"),
		    o->ca_file != NULL ? "ca_file" : "client_cert",
		    "only used with an https:// endpoint");
		return -1;
	}
	return 0;
}

/* ---- per configuration ---- */

static void
otlp_conf_free(struct tb_config *cfg, void *arg)
{
	struct otlp_conf *oc = arg;

	(void)cfg;
	if (oc == NULL)
		return;
	free(oc->headers);
	tls_client_release(oc->tls);
	free(oc);
}

static void
kv_set(struct otlp_kv *kv, const char *key, const char *val, size_t n)
{
	kv->key = key;
	kv->type = OTLP_V_STR;
	kv->s = val;
	kv->slen = n;
}

static int
otlp_conf_attach(struct tb_config *cfg, char *err, size_t errlen)
{
	const struct tb_otlp_conf *o = &cfg->otlp;
	const char *cs = cfg->profiler.connection_string;
	struct tb_redis_url ru;
	struct otlp_url u;
	struct otlp_conf *oc;
	struct addrinfo hints, *ai = NULL;
	char endpoint[600], why[256];
	size_t i, n, off;
	int rc;

	if (!cfg->profiler.enabled)
		return 0;
	if (o->endpoint != NULL)
		snprintf(endpoint, sizeof(endpoint), "%s", o->endpoint);
	else if (cs != NULL && strncasecmp(cs, "otlp://", 7) == 0) {
		/* checked at load: otlp://host[:port], as osprofiler exports */
		if (tb_redis_url_parse(cs, &ru, err, errlen) < 0)
			return -1;
		snprintf(endpoint, sizeof(endpoint), strchr(ru.addr.host, ':') ?
		    "http://[%s]:%u/v1/traces" : "http://%s:%u/v1/traces",
		    ru.addr.host, ru.addr.port);
	} else
		return 0;	/* no export */
	if (url_parse(endpoint, &u, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "otlp endpoint: %s", why);
		return -1;
	}
	if ((oc = calloc(1, sizeof(*oc))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cfg->mod[TB_MOD_OTLP].data = oc;
	cfg->mod[TB_MOD_OTLP].free = otlp_conf_free;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(u.host, u.port, &hints, &ai)) != 0 || ai == NULL) {
		config_errorf(cfg, err, errlen, config_opt_line(cfg, o->endpoint ?
		    "otlp" : "profiler", o->endpoint ? "endpoint" : "connection_string"),
		    o->endpoint ? "endpoint" : "connection_string",
		    "cannot resolve the collector's host: %s", gai_strerror(rc));
		return -1;
	}
	memcpy(&oc->sink.addr, ai->ai_addr, ai->ai_addrlen);
	oc->sink.addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	if (u.https) {
		oc->tls = tls_client_for(cfg, "otlp", u.host, o->ca_file, "ca_file",
		    o->client_cert, "client_cert", o->client_key, "client_key",
		    err, errlen);
		if (oc->tls == NULL)
			return -1;
	}
	snprintf(oc->host_header, sizeof(oc->host_header), "%s", u.hostport);
	snprintf(oc->path, sizeof(oc->path), "%s", u.path);

	/* the header block: "Name: value\r\n" for each key=value */
	for (i = 0, n = 1; i < o->n_headers; i++)
		n += strlen(o->headers[i]) + 3;
	if ((oc->headers = malloc(n)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0, off = 0; i < o->n_headers; i++) {
		const char *eq = strchr(o->headers[i], '=');
		const char *v = eq + 1;

		while (*v == ' ' || *v == '\t')
			v++;
		off += (size_t)snprintf(oc->headers + off, n - off, "%.*s: %s\r\n",
		    (int)(eq - o->headers[i]), o->headers[i], v);
	}
	oc->headers[off] = '\0';

	/* the resource, after service.name (the sink writes that per service) */
	n = 0;
	snprintf(oc->instance, sizeof(oc->instance), "%s:%ld",
	    cfg->tracing.host != NULL ? cfg->tracing.host : "", (long)getpid());
	kv_set(&oc->resource[n++], "service.instance.id", oc->instance,
	    strlen(oc->instance));
	if (cfg->tracing.host != NULL)
		kv_set(&oc->resource[n++], "host.name", cfg->tracing.host,
		    strlen(cfg->tracing.host));
	kv_set(&oc->resource[n++], "telemetry.sdk.name", "tracebridge", 11);
	kv_set(&oc->resource[n++], "telemetry.sdk.language", "c", 1);
	kv_set(&oc->resource[n++], "telemetry.sdk.version", PACKAGE_VERSION,
	    strlen(PACKAGE_VERSION));
	for (i = 0; i < o->n_resource_attributes && n < SINK_OTLP_MAX_RESOURCE; i++) {
		const char *a = o->resource_attributes[i], *eq = strchr(a, '=');

		/* the key is cut at '=' in place: the list is ours, per config */
		((char *)a)[eq - a] = '\0';
		kv_set(&oc->resource[n++], a, eq + 1, strlen(eq + 1));
	}

	oc->sink.host_header = oc->host_header;
	oc->sink.path = oc->path;
	oc->sink.tls = oc->tls;
	oc->sink.protocol = o->protocol == 1 ? SINK_OTLP_JSON : SINK_OTLP_PROTOBUF;
	oc->sink.gzip = o->compression == 0;
	oc->sink.headers = oc->headers;
	oc->sink.timeout = o->timeout;
	oc->sink.batch_size = o->batch_size;
	oc->sink.flush_interval = o->flush_interval;
	oc->sink.queue_bytes = o->queue_bytes;
	oc->sink.service_prefix = o->service_name_prefix != NULL ?
	    o->service_name_prefix : o->osp_service_name_prefix != NULL ?
	    o->osp_service_name_prefix : "";
	oc->sink.project = cfg->tracing.project;
	oc->sink.resource = oc->resource;
	oc->sink.n_resource = n;
	/* A reload with the same settings keeps the workers' sinks (and their
	 * queued spans); the key is compared, never logged (headers). */
	off = (size_t)snprintf(oc->key, sizeof(oc->key), "%s|%s|%d|%d|%g|%u|%g|%zu|%s|%s|%s|%s|%s|%s",
	    endpoint, oc->host_header, oc->sink.protocol, oc->sink.gzip,
	    oc->sink.timeout, oc->sink.batch_size, oc->sink.flush_interval,
	    oc->sink.queue_bytes, oc->sink.service_prefix, oc->sink.project,
	    oc->headers, o->ca_file ? o->ca_file : "", o->client_cert ?
	    o->client_cert : "", o->client_key ? o->client_key : "");
	for (i = 0; i < n && off < sizeof(oc->key); i++)
		off += (size_t)snprintf(oc->key + off, sizeof(oc->key) - off, "|%s=%.*s",
		    oc->resource[i].key, (int)oc->resource[i].slen, oc->resource[i].s);
	return 0;
}

/* ---- per worker ---- */

static void
otlp_record(struct worker *w, const struct span_rec *r)
{
	struct otlp_worker *ow = w->mod[TB_MOD_OTLP];

	if (ow != NULL && ow->sink != NULL)
		(void)sink_otlp_record(ow->sink, r);	/* drops are counted */
}

static void
otlp_worker_configure(struct worker *w, const struct tb_config *cfg)
{
	const struct otlp_conf *oc = cfg->mod[TB_MOD_OTLP].data;
	struct otlp_worker *ow = w->mod[TB_MOD_OTLP];
	char err[256];

	if (oc == NULL) {
		if (ow != NULL) {
			sink_otlp_free(ow->sink);
			ow->sink = NULL;
			ow->key[0] = '\0';
		}
		return;
	}
	if (ow == NULL) {
		if ((ow = calloc(1, sizeof(*ow))) == NULL)
			return;
		w->mod[TB_MOD_OTLP] = ow;
	}
	if (ow->sink != NULL && strcmp(ow->key, oc->key) == 0) {
		/* unchanged: keep the queued spans; the old config (and its
		 * TLS context) goes once this worker lets it go */
		sink_otlp_set_tls(ow->sink, oc->tls);
		return;
	}
	sink_otlp_free(ow->sink);
	/* the new TLS context belongs to the new config; the sink uses it
	 * only for connections it opens from now on */
	ow->sink = sink_otlp_new(w->base, &oc->sink, err, sizeof(err));
	if (ow->sink == NULL)
		log_warnx("worker %d: otlp exporter: %s", w->id, err);
	memcpy(ow->key, oc->key, sizeof(ow->key));
}

static int
otlp_worker_flushed(struct worker *w)
{
	struct otlp_worker *ow = w->mod[TB_MOD_OTLP];

	return ow == NULL || sink_otlp_flushed(ow->sink);
}

static void
otlp_worker_free(struct worker *w)
{
	struct otlp_worker *ow = w->mod[TB_MOD_OTLP];

	if (ow == NULL)
		return;
	sink_otlp_free(ow->sink);
	free(ow);
	w->mod[TB_MOD_OTLP] = NULL;
}

static int
otlp_start(struct event_base *base, const struct tb_config *cfg)
{
	(void)base;
	(void)cfg;
	admin_add_metrics(sink_otlp_metrics_write);
	return tracing_add_sink(otlp_record);
}

const struct tb_module otlp_module = {
	.name = "otlp",
	.opt_checks = otlp_opt_checks,
	.conf_check = otlp_conf_check,
	.conf_attach = otlp_conf_attach,
	.start = otlp_start,
	.worker_configure = otlp_worker_configure,
	.worker_flushed = otlp_worker_flushed,
	.worker_free = otlp_worker_free,
};
