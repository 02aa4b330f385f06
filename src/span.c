/*
 * span.c: the edge span as osprofiler notifications (see span.h for the
 * format contract and where each rule comes from).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "span.h"

void
span_buf_free(struct span_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Make room for n more bytes; 0 or -1 (ENOMEM, buffer unchanged). */
static int
span_buf_reserve(struct span_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->cap - b->len >= n)
		return 0;
	if (n > SIZE_MAX / 2 - b->len)
		return -1;
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

int
span_buf_add(struct span_buf *b, const void *data, size_t n)
{
	if (span_buf_reserve(b, n) == -1)
		return -1;
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

static int
span_buf_str(struct span_buf *b, const char *s)
{
	return span_buf_add(b, s, strlen(s));
}

static int
span_buf_printf(struct span_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
span_buf_printf(struct span_buf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* only used for numbers: 64 bytes always suffice */
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	return span_buf_add(b, tmp, (size_t)n);
}

int64_t
span_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int
span_timestamp(int64_t us, char out[27])
{
	struct tm tm;
	time_t sec;

	/* datetime.strftime("%Y") with 4 digits: years 1970..9999 only */
	if (us < 0 || us / 1000000 > 253402300799LL)
		return -1;
	sec = (time_t)(us / 1000000);
	if (gmtime_r(&sec, &tm) == NULL)
		return -1;
	if (strftime(out, 27, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
		return -1;
	snprintf(out + 19, 8, ".%06u", (unsigned)(us % 1000000));
	return 0;
}

/* Append one code point as Python's ensure_ascii escape (\uXXXX, lowercase
 * hex, a surrogate pair above U+FFFF). */
static int
span_json_cp(struct span_buf *out, unsigned cp)
{
	char tmp[16];
	int n;

	if (cp >= 0x10000) {
		cp -= 0x10000;
		n = snprintf(tmp, sizeof(tmp), "\\u%04x\\u%04x",
		    0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
	} else
		n = snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
	return span_buf_add(out, tmp, (size_t)n);
}

/*
 * Decode one UTF-8 sequence at s[0..n). Returns its length and sets *cp, or
 * 0 when s does not start a valid, shortest-form, non-surrogate sequence
 * (RFC 3629 section 4 syntax).
 */
static size_t
span_utf8_decode(const unsigned char *s, size_t n, unsigned *cp)
{
	unsigned c = s[0];
	size_t len, i;
	unsigned min;

	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (c < 0xe0) {
		len = 2; *cp = c & 0x1f; min = 0x80;
	} else if (c < 0xf0) {
		len = 3; *cp = c & 0x0f; min = 0x800;
	} else {
		len = 4; *cp = c & 0x07; min = 0x10000;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return len;
}

/* The inside of a JSON string literal (see span_json_str). */
static int
span_json_body(struct span_buf *out, const char *s, size_t n, int latin1)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run, k;
	unsigned cp;
	const char *esc;

	while (i < n) {
		/* copy the longest run that needs no escaping in one go */
		for (run = i; run < n && p[run] >= 0x20 && p[run] < 0x7f &&
		    p[run] != '"' && p[run] != '\\'; run++)
			;
		if (run > i && span_buf_add(out, p + i, run - i) == -1)
			return -1;
		if ((i = run) >= n)
			break;
		esc = NULL;
		switch (p[i]) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		}
		if (esc != NULL) {
			if (span_buf_str(out, esc) == -1)
				return -1;
			i++;
			continue;
		}
		if (p[i] < 0x80 || latin1) {
			/* other controls, DEL, and latin-1 bytes */
			if (span_json_cp(out, p[i]) == -1)
				return -1;
			i++;
			continue;
		}
		if ((k = span_utf8_decode(p + i, n - i, &cp)) == 0) {
			cp = 0xfffd;	/* like bytes.decode(errors="replace") */
			k = 1;
		}
		if (span_json_cp(out, cp) == -1)
			return -1;
		i += k;
	}
	return 0;
}

int
span_json_str(struct span_buf *out, const char *s, size_t n, int latin1)
{
	if (span_buf_add(out, "\"", 1) == -1 ||
	    span_json_body(out, s, n, latin1) == -1)
		return -1;
	return span_buf_add(out, "\"", 1);
}

/* A NUL-terminated string or JSON null. */
static int
span_json_cstr(struct span_buf *out, const char *s)
{
	if (s == NULL)
		return span_buf_str(out, "null");
	return span_json_str(out, s, strlen(s), 0);
}

/* ", \"key\": " : every key here is a plain ASCII literal. */
static int
span_key(struct span_buf *out, const char *key, int first)
{
	if (!first && span_buf_add(out, ", ", 2) == -1)
		return -1;
	if (span_buf_add(out, "\"", 1) == -1 || span_buf_str(out, key) == -1)
		return -1;
	return span_buf_add(out, "\": ", 3);
}

static int
span_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Python's urllib.parse.quote always-safe set plus webob's PATH_SAFE. */
static int
span_path_safe(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("_.-~/!$&'()*+,;=:@", c) != NULL;
}

/*
 * webob's request.path for a raw path: the WSGI server percent-decodes the
 * request path into PATH_INFO (unquote: a '%' not followed by two hex digits
 * stays as it is), webob re-quotes the bytes with PATH_SAFE (uppercase hex).
 * The result is always printable ASCII, so no JSON escaping beyond '"' and
 * '\\' is needed, and neither can appear.
 */
static int
span_webob_path(struct span_buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	unsigned char c;
	char enc[3];
	size_t i;
	int hi, lo;

	if (span_buf_add(out, "\"", 1) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		c = p[i];
		if (c == '%' && i + 2 < n &&
		    (hi = span_hexval(p[i + 1])) >= 0 &&
		    (lo = span_hexval(p[i + 2])) >= 0) {
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (span_path_safe(c)) {
			if (span_buf_add(out, &c, 1) == -1)
				return -1;
			continue;
		}
		enc[0] = '%';
		enc[1] = hex[c >> 4];
		enc[2] = hex[c & 15];
		if (span_buf_add(out, enc, 3) == -1)
			return -1;
	}
	return span_buf_add(out, "\"", 1);
}

/*
 * Split the request-target into path and query. Origin form "/p?q";
 * absolute form "http://authority/p?q" loses scheme and authority as the
 * WSGI server does; "*" (OPTIONS) stays "*"; an empty path becomes "/".
 */
static void
span_split_target(const char *t, size_t n, const char **path, size_t *plen,
    const char **query, size_t *qlen)
{
	const char *q, *end = t + n, *sep;

	if (n > 0 && t[0] != '/' && t[0] != '*' &&
	    (sep = memmem(t, n, "://", 3)) != NULL) {
		for (t = sep + 3; t < end && *t != '/' && *t != '?'; t++)
			;
		n = (size_t)(end - t);
	}
	q = memchr(t, '?', n);
	*path = t;
	*plen = q ? (size_t)(q - t) : n;
	*query = q ? q + 1 : "";
	*qlen = q ? (size_t)(end - q - 1) : 0;
	if (*plen == 0) {
		*path = "/";
		*plen = 1;
	}
}

/* Common head: {"name": "<name>-<kind>", "base_id": .., "trace_id": ..,
 * "parent_id": .., "timestamp": .., "info": { */
static int
span_head(const struct span_rec *r, struct span_buf *out, const char *kind,
    int64_t us)
{
	char ts[27];

	if (r->base_id == NULL || r->trace_id == NULL || r->parent_id == NULL ||
	    r->name == NULL || r->host == NULL || r->project == NULL)
		return -1;
	if (span_timestamp(us, ts) == -1)
		return -1;
	if (span_buf_add(out, "{", 1) == -1 || span_key(out, "name", 1) == -1)
		return -1;
	/* name and kind as one string: "proxy-start" */
	if (span_buf_add(out, "\"", 1) == -1 ||
	    span_json_body(out, r->name, strlen(r->name), 0) == -1 ||
	    span_buf_str(out, kind) == -1 || span_buf_add(out, "\"", 1) == -1)
		return -1;
	if (span_key(out, "base_id", 0) == -1 ||
	    span_json_cstr(out, r->base_id) == -1 ||
	    span_key(out, "trace_id", 0) == -1 ||
	    span_json_cstr(out, r->trace_id) == -1 ||
	    span_key(out, "parent_id", 0) == -1 ||
	    span_json_cstr(out, r->parent_id) == -1 ||
	    span_key(out, "timestamp", 0) == -1 ||
	    span_json_cstr(out, ts) == -1 ||
	    span_key(out, "info", 0) == -1 ||
	    span_buf_add(out, "{", 1) == -1)
		return -1;
	return 0;
}

/* Close info with "host" (osprofiler adds it last), then project, service. */
static int
span_tail(const struct span_rec *r, struct span_buf *out, int first)
{
	if (span_key(out, "host", first) == -1 ||
	    span_json_cstr(out, r->host) == -1 ||
	    span_buf_add(out, "}", 1) == -1 ||
	    span_key(out, "project", 0) == -1 ||
	    span_json_cstr(out, r->project) == -1 ||
	    span_key(out, "service", 0) == -1 ||
	    span_json_cstr(out, r->service) == -1)
		return -1;
	return span_buf_add(out, "}", 1);
}

/* Optional string member: nothing when s is NULL. */
static int
span_opt(struct span_buf *out, const char *key, const char *s, int *first)
{
	if (s == NULL)
		return 0;
	if (span_key(out, key, *first) == -1 || span_json_cstr(out, s) == -1)
		return -1;
	*first = 0;
	return 0;
}

int
span_format_start(const struct span_rec *r, struct span_buf *out)
{
	const char *path, *query;
	size_t plen, qlen;
	int first = 0;

	if (r->method == NULL || r->target == NULL || r->scheme == NULL)
		return -1;
	if (span_head(r, out, "-start", r->start_us) == -1)
		return -1;
	span_split_target(r->target, r->target_len, &path, &plen, &query,
	    &qlen);
	/* WsgiMiddleware's info["request"], keys in its order */
	if (span_key(out, "request", 1) == -1 ||
	    span_buf_add(out, "{", 1) == -1 ||
	    span_key(out, "path", 1) == -1 ||
	    span_webob_path(out, path, plen) == -1 ||
	    span_key(out, "query", 0) == -1 ||
	    span_json_str(out, query, qlen, 1) == -1 ||
	    span_key(out, "method", 0) == -1 ||
	    span_json_str(out, r->method, r->method_len, 1) == -1 ||
	    span_key(out, "scheme", 0) == -1 ||
	    span_json_cstr(out, r->scheme) == -1 ||
	    span_buf_add(out, "}", 1) == -1)
		return -1;
	if (span_opt(out, "client", r->client_addr, &first) == -1 ||
	    span_opt(out, "listener", r->listener, &first) == -1 ||
	    span_opt(out, "http_version", r->http_version, &first) == -1)
		return -1;
	if (r->user_agent != NULL &&
	    (span_key(out, "user_agent", 0) == -1 ||
	    span_json_str(out, r->user_agent, r->user_agent_len, 0) == -1))
		return -1;
	if (span_opt(out, "trace_format", r->trace_format, &first) == -1 ||
	    span_opt(out, "caller_span_id", r->caller_span_id, &first) == -1 ||
	    span_opt(out, "upstream", r->upstream_addr, &first) == -1)
		return -1;
	if (r->tls_protocol != NULL || r->tls_cipher != NULL ||
	    r->tls_sni != NULL) {
		int tfirst = 1;

		if (span_key(out, "tls", 0) == -1 ||
		    span_buf_add(out, "{", 1) == -1 ||
		    span_opt(out, "protocol", r->tls_protocol, &tfirst) == -1 ||
		    span_opt(out, "cipher", r->tls_cipher, &tfirst) == -1 ||
		    span_opt(out, "sni", r->tls_sni, &tfirst) == -1 ||
		    span_buf_add(out, "}", 1) == -1)
			return -1;
	}
	if (span_opt(out, "operation", r->operation, &first) == -1 ||
	    span_opt(out, "sampling", r->sampling_reason, &first) == -1)
		return -1;
	return span_tail(r, out, 0);
}

int
span_is_error(const struct span_rec *r)
{
	return r->etype != NULL || r->status_code >= 500;
}

/* A duration in ms as a JSON number (microsecond resolution). */
static int
span_ms(struct span_buf *out, const char *key, double ms, int *first)
{
	if (ms < 0)
		return 0;
	if (span_key(out, key, *first) == -1 ||
	    span_buf_printf(out, "%.3f", ms) == -1)
		return -1;
	*first = 0;
	return 0;
}

int
span_format_stop(const struct span_rec *r, struct span_buf *out)
{
	char msg[32];
	const char *etype = r->etype, *message = r->message;
	int ufirst = 1;

	if (span_head(r, out, "-stop", r->stop_us) == -1)
		return -1;
	if (span_key(out, "response", 1) == -1 ||
	    span_buf_add(out, "{", 1) == -1 ||
	    span_key(out, "status_code", 1) == -1 ||
	    span_buf_printf(out, "%d", r->status_code) == -1 ||
	    span_key(out, "bytes_to_client", 0) == -1 ||
	    span_buf_printf(out, "%llu",
	    (unsigned long long)r->bytes_to_client) == -1 ||
	    span_key(out, "bytes_from_client", 0) == -1 ||
	    span_buf_printf(out, "%llu",
	    (unsigned long long)r->bytes_from_client) == -1 ||
	    span_buf_add(out, "}", 1) == -1)
		return -1;
	if (r->upstream_connect_ms >= 0 || r->upstream_first_byte_ms >= 0 ||
	    r->upstream_request_id != NULL) {
		if (span_key(out, "upstream", 0) == -1 ||
		    span_buf_add(out, "{", 1) == -1 ||
		    span_ms(out, "connect_ms", r->upstream_connect_ms,
		    &ufirst) == -1 ||
		    span_ms(out, "first_byte_ms", r->upstream_first_byte_ms,
		    &ufirst) == -1)
			return -1;
		if (r->upstream_request_id != NULL &&
		    (span_key(out, "request_id", ufirst) == -1 ||
		    span_json_str(out, r->upstream_request_id,
		    r->upstream_request_id_len, 0) == -1))
			return -1;
		if (span_buf_add(out, "}", 1) == -1)
			return -1;
	}
	if (etype == NULL && r->status_code >= 500) {
		etype = SPAN_ETYPE_HTTP_SERVER_ERROR;
		snprintf(msg, sizeof(msg), "HTTP %d", r->status_code);
		message = msg;
	}
	/* profiler.Trace.__exit__ writes etype then message */
	if (etype != NULL &&
	    (span_key(out, "etype", 0) == -1 ||
	    span_json_cstr(out, etype) == -1 ||
	    span_key(out, "message", 0) == -1 ||
	    span_json_cstr(out, message) == -1))
		return -1;
	return span_tail(r, out, 0);
}

int
span_format_error_marker(const struct span_rec *r, struct span_buf *out)
{
	char ts[27];

	if (r->base_id == NULL || span_timestamp(r->stop_us, ts) == -1)
		return -1;
	if (span_buf_add(out, "{", 1) == -1 ||
	    span_key(out, "base_id", 1) == -1 ||
	    span_json_cstr(out, r->base_id) == -1 ||
	    span_key(out, "timestamp", 0) == -1 ||
	    span_json_cstr(out, ts) == -1)
		return -1;
	return span_buf_add(out, "}", 1);
}
