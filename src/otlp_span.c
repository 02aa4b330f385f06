/*
 * otlp_span.c: a finished edge span (struct span_rec) in OpenTelemetry's
 * model: ids as osprofiler's OTLP driver makes them, the attributes of the
 * current HTTP semantic conventions (see otlp.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "otlp.h"
#include "span.h"

int
otlp_uuid_bytes(const char *s, uint8_t out[16])
{
	size_t i, n = 0;
	int hi, lo;

	if (s == NULL)
		return -1;
	for (i = 0; n < 16; n++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			i++;
		}
		if ((hi = fmt_hexval(s[i])) < 0 ||
		    (lo = fmt_hexval(s[i + 1])) < 0)
			return -1;
		out[n] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return s[i] == '\0' ? 0 : -1;
}

static void
kv_str(struct otlp_span *o, const char *key, const char *s, size_t n)
{
	struct otlp_kv *kv;

	if (s == NULL || o->n_attrs == OTLP_MAX_ATTRS)
		return;
	kv = &o->attrs[o->n_attrs++];
	kv->key = key;
	kv->type = OTLP_V_STR;
	kv->s = s;
	kv->slen = n;
}

static void
kv_cstr(struct otlp_span *o, const char *key, const char *s)
{
	if (s != NULL)
		kv_str(o, key, s, strlen(s));
}

static void
kv_double(struct otlp_span *o, const char *key, double v)
{
	struct otlp_kv *kv;

	if (o->n_attrs == OTLP_MAX_ATTRS)
		return;
	kv = &o->attrs[o->n_attrs++];
	kv->key = key;
	kv->type = OTLP_V_DOUBLE;
	kv->d = v;
}

static void
kv_int(struct otlp_span *o, const char *key, int64_t v)
{
	struct otlp_kv *kv;

	if (o->n_attrs == OTLP_MAX_ATTRS)
		return;
	kv = &o->attrs[o->n_attrs++];
	kv->key = key;
	kv->type = OTLP_V_INT;
	kv->i = v;
}

/* A decimal port at the end of "host:port" / "[v6]:port": its value and
 * the host's length (brackets kept out), or -1 when there is none. */
static long
split_port(const char *s, size_t n, const char **host, size_t *hl)
{
	size_t i = n;
	long port = 0;

	*host = s;
	*hl = n;
	while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
		i--;
	if (i == 0 || i == n || s[i - 1] != ':' || n - i > 5)
		port = -1;
	else {
		for (size_t k = i; k < n; k++)
			port = port * 10 + (s[k] - '0');
		if (port > 65535)
			port = -1;
		else
			*hl = i - 1;
	}
	if (*hl >= 2 && s[0] == '[' && s[*hl - 1] == ']') {
		*host = s + 1;
		*hl -= 2;
	} else if (port >= 0 && memchr(s, ':', *hl) != NULL && s[0] != '[') {
		/* a bare IPv6 address ("::1"): no port in it */
		*hl = n;
		port = -1;
	}
	return port;
}

int
otlp_span_from_rec(const struct span_rec *r, struct otlp_span *o)
{
	uint8_t u[16];
	const char *t, *q, *path, *host;
	size_t tl, hl, pl;
	long port;

	memset(o, 0, sizeof(*o));
	if (otlp_uuid_bytes(r->base_id, o->trace_id) < 0 ||
	    otlp_uuid_bytes(r->trace_id, u) < 0)
		return -1;
	memcpy(o->span_id, u + 8, 8);
	if (r->has_parent && r->parent_id != NULL) {
		if (otlp_uuid_bytes(r->parent_id, u) < 0)
			return -1;
		memcpy(o->parent_span_id, u + 8, 8);
		o->has_parent = 1;
	}
	if (r->tracestate != NULL && r->tracestate_len > 0) {
		o->trace_state = r->tracestate;
		o->trace_state_len = r->tracestate_len;
	}
	o->name = r->operation != NULL && r->operation[0] ? r->operation : r->name;
	o->name_len = o->name != NULL ? strlen(o->name) : 0;
	o->start_ns = (uint64_t)r->start_us * 1000;
	o->end_ns = (uint64_t)r->stop_us * 1000;

	/* request: the target split into path and query; an absolute-form
	 * target (RFC 9112 3.2.2) loses its scheme and authority */
	kv_str(o, "http.request.method", r->method, r->method_len);
	t = r->target;
	tl = r->target_len;
	if (t != NULL && tl > 0 && t[0] != '/' && (q = memchr(t, ':', tl)) != NULL &&
	    (size_t)(q - t) + 3 <= tl && q[1] == '/' && q[2] == '/') {
		path = memchr(q + 3, '/', tl - (size_t)(q + 3 - t));
		if (path == NULL)
			path = t + tl;
		tl -= (size_t)(path - t);
		t = path;
	}
	if (t != NULL) {
		q = memchr(t, '?', tl);
		pl = q != NULL ? (size_t)(q - t) : tl;
		kv_str(o, "url.path", pl > 0 ? t : "/", pl > 0 ? pl : 1);
		/* r->target is the request's redacted copy (redact.h): secret
		 * query values read REDACTED here as in the Redis span and the
		 * access log */
		if (q != NULL)
			kv_str(o, "url.query", q + 1, tl - pl - 1);
	}
	kv_cstr(o, "url.scheme", r->scheme);
	if (r->status_code > 0)
		kv_int(o, "http.response.status_code", r->status_code);
	if (r->http_version != NULL && strncmp(r->http_version, "HTTP/", 5) == 0)
		kv_cstr(o, "network.protocol.version", r->http_version + 5);
	if (r->client_addr != NULL) {
		/* "ip:port" as tracing.c writes it, IPv6 without brackets:
		 * the port is after the last ':' */
		const char *c = strrchr(r->client_addr, ':');

		if (c != NULL) {
			kv_str(o, "client.address", r->client_addr,
			    (size_t)(c - r->client_addr));
			kv_int(o, "client.port", strtol(c + 1, NULL, 10));
		} else
			kv_cstr(o, "client.address", r->client_addr);
	}
	if (r->host_header != NULL && r->host_header[0] != '\0') {
		port = split_port(r->host_header, strlen(r->host_header), &host, &hl);
		kv_str(o, "server.address", host, hl);
		if (port >= 0)
			kv_int(o, "server.port", port);
		else if (r->server_port > 0)
			kv_int(o, "server.port", r->server_port);
	}
	if (r->user_agent != NULL)
		kv_str(o, "user_agent.original", r->user_agent, r->user_agent_len);
	/* What the proxy counts: head and body on the wire, so the
	 * convention's http.{request,response}.size, not .body.size. */
	kv_int(o, "http.request.size", (int64_t)r->bytes_from_client);
	kv_int(o, "http.response.size", (int64_t)r->bytes_to_client);
	if (r->upstream_request_id != NULL)
		kv_str(o, "openstack.request_id", r->upstream_request_id,
		    r->upstream_request_id_len);
	kv_cstr(o, "tracebridge.trace_format", r->trace_format);
	kv_cstr(o, "tracebridge.sampling_reason", r->sampling_reason);
	/* how the trace was chosen, as Jaeger's SDKs tag root spans */
	if (r->sampler_type != NULL) {
		kv_cstr(o, "sampler.type", r->sampler_type);
		kv_double(o, "sampler.param", r->sampler_param);
	}
	kv_cstr(o, "tracebridge.upstream.address", r->upstream_addr);
	if (r->tls_protocol != NULL) {
		kv_cstr(o, "tls.protocol.name", "tls");
		kv_cstr(o, "tls.protocol.version", strncmp(r->tls_protocol,
		    "TLSv", 4) == 0 ? r->tls_protocol + 4 : r->tls_protocol);
	}
	kv_cstr(o, "tls.cipher", r->tls_cipher);
	kv_cstr(o, "tls.client.server_name", r->tls_sni);

	if (span_is_error(r)) {
		o->status_code = OTLP_STATUS_ERROR;
		if (r->etype != NULL) {
			o->etype = r->etype;
			o->message = r->message;
			o->status_message = r->message;
		} else {
			snprintf(o->buf, sizeof(o->buf), "HTTP %d", r->status_code);
			o->etype = SPAN_ETYPE_HTTP_SERVER_ERROR;
			o->message = o->buf;
			o->status_message = o->buf;
		}
	}
	return 0;
}
