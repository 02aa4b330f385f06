/*
 * span.c: the edge span as osprofiler notifications (see span.h for the
 * format contract and where each rule comes from).
 *
 * This runs for every sampled request, so each formatter works in two
 * steps: it checks the record and measures its strings, reserves the worst
 * case for the whole notification once, then writes through a plain char
 * pointer with no further checks (fixed text with memcpy of compile-time
 * lengths, numbers and timestamps by hand, plain-ASCII runs of strings
 * eight bytes at a time). The SPAN_*_MAX bounds below are what makes the
 * unchecked writes safe; every writer's comment says how much it may write.
 * tests/unit/test_span.c holds the byte-exact expectations.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "span.h"
#include "fmt.h"

/* Output bytes per input byte of span_json_w at most: a control, latin-1
 * or invalid UTF-8 byte becomes a 6-byte \u00XX or \ufffd; valid UTF-8
 * needs at most 3 per byte (a 4-byte sequence is a 12-byte surrogate
 * pair). */
#define SPAN_JSON_MAX	6
/* Output bytes per input byte of span_path_w at most: "%XX". */
#define SPAN_PATH_MAX	3
/* Everything else in one notification: keys, punctuation, the timestamp,
 * the numbers (a %.3f value is capped at 63 bytes) and quotes: about 540
 * bytes at most (stop with every member, both durations 63 bytes long). */
#define SPAN_FIXED_MAX	1024

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

/* ---- unchecked writers: the caller has reserved room ---- */

/* Copy n bytes to w; returns the end. */
static inline char *
span_put(char *w, const void *s, size_t n)
{
	memcpy(w, s, n);
	return w + n;
}

/* A string literal, its length known at compile time. */
#define SPAN_LIT(w, lit)	span_put((w), (lit), sizeof(lit) - 1)
/* A ", \"key\": " literal, without its ", " when first is set. */
#define SPAN_KEY(w, lit, first) \
	span_put((w), (lit) + ((first) ? 2 : 0), sizeof(lit) - 1 - \
	    ((first) ? 2 : 0))

/* Byte classes: SPAN_C_PLAIN needs no JSON escaping (printable ASCII but
 * '"' and '\\'); SPAN_C_PATH is in webob's PATH_SAFE plus urllib's
 * always-safe set (alphanumerics and "_.-~/!$&'()*+,;=:@"). */
#define SPAN_C_PLAIN	0x01
#define SPAN_C_PATH	0x02
static const unsigned char span_cls[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 00 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 10 */
	1, 3, 0, 1, 3, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,	/* 20 */
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 3, 1, 1,	/* 30 */
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,	/* 40 */
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 0, 1, 1, 3,	/* 50 */
	1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,	/* 60 */
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 3, 0,	/* 70 */
	/* 80..ff: never plain, never path-safe */
};

/* v (at most 20 digits) in decimal. */
static char *
span_u64_w(char *w, uint64_t v)
{
	return w + fmt_u64(w, v);
}

/* v as printf's "%d" (at most 11 bytes). */
static char *
span_int_w(char *w, int v)
{
	if (v < 0) {
		*w++ = '-';
		/* through int64_t: INT_MIN has no positive int */
		return span_u64_w(w, (uint64_t)-(int64_t)v);
	}
	return span_u64_w(w, (uint64_t)v);
}

/*
 * ms as printf's "%.3f" (at most 63 bytes), or NULL when that takes 64 or
 * more (the limit the formatter has always had). The common case is exact
 * without printf: for 0 <= ms < 1e12 the product ms * 1000 is p + e with p
 * the rounded double (< 2^52, so its fraction and fraction - 0.5 are exact)
 * and e the rounding error from fma (|e| <= ulp(p) / 2). Rounding the exact
 * value to an integer then only depends on the sign of (frac - 0.5) + e,
 * and a non-zero frac - 0.5 is a multiple of ulp(p), larger than |e|. An
 * exact tie, -0.0, NaN, infinities and huge values go to snprintf, which
 * knows its own rounding mode.
 */
static char *
span_ms_w(char *w, double ms)
{
	char tmp[64];
	double p, e, d;
	uint64_t k;
	int n;

	if (ms >= 0 && ms < 1e12 && !signbit(ms)) {
		p = ms * 1000.0;
		e = fma(ms, 1000.0, -p);
		k = (uint64_t)p;	/* floor: p >= 0 */
		d = (p - (double)k) - 0.5;
		if (d != 0 || e != 0) {
			if (d > 0 || (d == 0 && e > 0))
				k++;
			w = span_u64_w(w, k / 1000);
			k %= 1000;
			w[0] = '.';
			w[1] = (char)('0' + k / 100);
			w[2] = (char)('0' + k / 10 % 10);
			w[3] = (char)('0' + k % 10);
			return w + 4;
		}
	}
	n = snprintf(tmp, sizeof(tmp), "%.3f", ms);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return NULL;
	return span_put(w, tmp, (size_t)n);
}

/*
 * The sampler's parameter as "%.6g" ("0" if not finite), into buf of
 * len >= 32: a finite %.6g fits in 16 bytes. One policy gives the same few
 * values to every span, and printf of a double is ~1,100 instructions, a
 * twentieth of all tracing costs per request (callgrind): the last value
 * each worker thread formatted is kept.
 */
static void
span_param_w(char *buf, size_t len, double v)
{
	static _Thread_local double last;
	static _Thread_local char last_s[32];

	if (last_s[0] != '\0' && memcmp(&v, &last, sizeof(v)) == 0) {
		memcpy(buf, last_s, sizeof(last_s) < len ? sizeof(last_s) : len);
		return;
	}
	if (!isfinite(v) || snprintf(buf, len, "%.6g", v) < 0)
		snprintf(buf, len, "0");
	last = v;
	memcpy(last_s, buf, strlen(buf) + 1);	/* < 16 bytes */
}

/* Two decimal digits of v < 100, from a table: no division. */
static char *
span_2d_w(char *w, unsigned v)
{
	static const char d2[] =
	    "00010203040506070809101112131415161718192021222324252627282930313233"
	    "34353637383940414243444546474849505152535455565758596061626364656667"
	    "6869707172737475767778798081828384858687888990919293949596979899";

	memcpy(w, d2 + 2 * v, 2);
	return w + 2;
}

int64_t
span_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Done by hand rather than gmtime_r + strftime + snprintf: those took a
 * tenth of all formatting time. The date is Howard Hinnant's
 * civil_from_days ("chrono-Compatible Low-Level Date Algorithms"): days
 * are counted from 0000-03-01 so that the leap day ends a year, a 400-year
 * era has 146097 days, and the month comes from the day of that March-based
 * year by the linear formula (5 * doy + 2) / 153; no loop, no table. The
 * test compares the result with gmtime_r over the whole range.
 */
int
span_timestamp(int64_t us, char out[27])
{
	uint64_t sec, z, era, doe, yoe, doy, mp, y;
	unsigned sod, usec, m, d;
	char *w = out;

	/* datetime.strftime("%Y") with 4 digits: years 1970..9999 only */
	if (us < 0 || us / 1000000 > 253402300799LL)
		return -1;
	sec = (uint64_t)us / 1000000;
	usec = (unsigned)((uint64_t)us % 1000000);
	sod = (unsigned)(sec % 86400);
	z = sec / 86400 + 719468;	/* days since 0000-03-01 */
	era = z / 146097;
	doe = z - era * 146097;					/* [0, 146096] */
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);		/* [0, 365] */
	mp = (5 * doy + 2) / 153;				/* March = 0 */
	d = (unsigned)(doy - (153 * mp + 2) / 5) + 1;
	m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	y = yoe + era * 400 + (m <= 2);
	w = span_2d_w(w, (unsigned)(y / 100));
	w = span_2d_w(w, (unsigned)(y % 100));
	*w++ = '-';
	w = span_2d_w(w, m);
	*w++ = '-';
	w = span_2d_w(w, d);
	*w++ = 'T';
	w = span_2d_w(w, sod / 3600);
	*w++ = ':';
	w = span_2d_w(w, sod / 60 % 60);
	*w++ = ':';
	w = span_2d_w(w, sod % 60);
	*w++ = '.';
	w = span_2d_w(w, usec / 10000);
	w = span_2d_w(w, usec / 100 % 100);
	w = span_2d_w(w, usec % 100);
	*w = '\0';
	return 0;
}

/* One code point as Python's ensure_ascii escape (\uXXXX, lowercase hex, a
 * surrogate pair above U+FFFF): 6 or 12 bytes. */
static char *
span_cp_w(char *w, unsigned cp)
{
	static const char hex[] = FMT_HEX_LOWER;

	if (cp >= 0x10000) {
		cp -= 0x10000;
		w = span_cp_w(w, 0xd800 + (cp >> 10));
		cp = 0xdc00 + (cp & 0x3ff);
	}
	w[0] = '\\';
	w[1] = 'u';
	w[2] = hex[cp >> 12 & 15];
	w[3] = hex[cp >> 8 & 15];
	w[4] = hex[cp >> 4 & 15];
	w[5] = hex[cp & 15];
	return w + 6;
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

/*
 * Non-zero when one of the 8 bytes in x needs escaping. Any byte >= 0x80
 * sets its top bit directly; for the others (all < 0x80, so no sum below
 * carries into the next byte) b + 0x60 lacks the top bit when b < 0x20,
 * b + 0x01 has it when b == 0x7f, and the classic zero-byte test finds '"'
 * and '\\' after xor. Byte order does not matter.
 */
static inline uint64_t
span_word_special(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ULL, high = ones * 0x80;
	uint64_t q = x ^ (ones * '"'), s = x ^ (ones * '\\');

	return (x | ~(x + ones * 0x60) | (x + ones) |
	    ((q - ones) & ~q) | ((s - ones) & ~s)) & high;
}

/* The inside of a JSON string literal (see span_json_str): at most
 * SPAN_JSON_MAX * n bytes. */
static char *
span_json_w(char *w, const char *s, size_t n, int latin1)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	uint64_t x;
	unsigned cp;
	size_t k;

	while (p < end) {
		/* the plain run: eight bytes at a time, then byte by byte */
		while (end - p >= 8) {
			memcpy(&x, p, 8);
			if (span_word_special(x))
				break;
			memcpy(w, &x, 8);
			w += 8;
			p += 8;
		}
		while (p < end && (span_cls[*p] & SPAN_C_PLAIN))
			*w++ = (char)*p++;
		if (p == end)
			break;
		switch (*p) {
		case '"': w = SPAN_LIT(w, "\\\""); p++; continue;
		case '\\': w = SPAN_LIT(w, "\\\\"); p++; continue;
		case '\n': w = SPAN_LIT(w, "\\n"); p++; continue;
		case '\r': w = SPAN_LIT(w, "\\r"); p++; continue;
		case '\t': w = SPAN_LIT(w, "\\t"); p++; continue;
		case '\b': w = SPAN_LIT(w, "\\b"); p++; continue;
		case '\f': w = SPAN_LIT(w, "\\f"); p++; continue;
		}
		if (*p < 0x80 || latin1) {
			/* other controls, DEL, and latin-1 bytes */
			w = span_cp_w(w, *p++);
			continue;
		}
		if ((k = span_utf8_decode(p, (size_t)(end - p), &cp)) == 0) {
			cp = 0xfffd;	/* like bytes.decode(errors="replace") */
			k = 1;
		}
		w = span_cp_w(w, cp);
		p += k;
	}
	return w;
}

/* A quoted JSON string: at most 2 + SPAN_JSON_MAX * n bytes. */
static char *
span_str_w(char *w, const char *s, size_t n, int latin1)
{
	*w++ = '"';
	w = span_json_w(w, s, n, latin1);
	*w++ = '"';
	return w;
}

int
span_json_str(struct span_buf *out, const char *s, size_t n, int latin1)
{
	char *w;

	if (n > (SIZE_MAX - 2) / SPAN_JSON_MAX ||
	    span_buf_reserve(out, 2 + SPAN_JSON_MAX * n) == -1)
		return -1;
	w = span_str_w(out->p + out->len, s, n, latin1);
	out->len = (size_t)(w - out->p);
	return 0;
}

/*
 * webob's request.path for a raw path, quoted: the WSGI server
 * percent-decodes the request path into PATH_INFO (unquote: a '%' not
 * followed by two hex digits stays as it is), webob re-quotes the bytes
 * with PATH_SAFE (uppercase hex). The result is always printable ASCII, so
 * no JSON escaping beyond '"' and '\\' is needed, and neither can appear.
 * At most 2 + SPAN_PATH_MAX * n bytes.
 */
static char *
span_path_w(char *w, const char *s, size_t n)
{
	static const char hex[] = FMT_HEX_UPPER;
	const unsigned char *p = (const unsigned char *)s;
	unsigned char c;
	size_t i;
	int hi, lo;

	*w++ = '"';
	for (i = 0; i < n; i++) {
		c = p[i];
		if (c == '%' && i + 2 < n &&
		    (hi = fmt_hexval(p[i + 1])) >= 0 &&
		    (lo = fmt_hexval(p[i + 2])) >= 0) {
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (span_cls[c] & SPAN_C_PATH) {
			*w++ = (char)c;
			continue;
		}
		w[0] = '%';
		w[1] = hex[c >> 4];
		w[2] = hex[c & 15];
		w += 3;
	}
	*w++ = '"';
	return w;
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

/* ---- the notifications ---- */

/*
 * The strings both notifications carry, measured once. The sum of all
 * lengths of one record cannot overflow: they are sizes of objects in
 * memory, a few dozen of them.
 */
struct span_common {
	size_t name, base_id, trace_id, parent_id, host, project, service;
	char ts[27];
};

/* Check the required members, measure them and format the timestamp;
 * returns the worst-case bytes of their JSON, or 0 when the record cannot
 * be written. */
static size_t
span_common_init(const struct span_rec *r, int64_t us, struct span_common *c)
{
	if (r->base_id == NULL || r->trace_id == NULL || r->parent_id == NULL ||
	    r->name == NULL || r->host == NULL || r->project == NULL)
		return 0;
	if (span_timestamp(us, c->ts) == -1)
		return 0;
	c->name = strlen(r->name);
	c->base_id = strlen(r->base_id);
	c->trace_id = strlen(r->trace_id);
	c->parent_id = strlen(r->parent_id);
	c->host = strlen(r->host);
	c->project = strlen(r->project);
	c->service = r->service != NULL ? strlen(r->service) : 0;
	return SPAN_FIXED_MAX + SPAN_JSON_MAX * (c->name + c->base_id +
	    c->trace_id + c->parent_id + c->host + c->project + c->service);
}

/* Common head: {"name": "<name><kind>", "base_id": .., "trace_id": ..,
 * "parent_id": .., "timestamp": .., "info": { */
static char *
span_head_w(char *w, const struct span_rec *r, const struct span_common *c,
    const char *kind, size_t kind_len)
{
	/* name and kind as one string: "proxy-start" */
	w = SPAN_LIT(w, "{\"name\": \"");
	w = span_json_w(w, r->name, c->name, 0);
	w = span_put(w, kind, kind_len);
	w = SPAN_LIT(w, "\", \"base_id\": ");
	w = span_str_w(w, r->base_id, c->base_id, 0);
	w = SPAN_LIT(w, ", \"trace_id\": ");
	w = span_str_w(w, r->trace_id, c->trace_id, 0);
	w = SPAN_LIT(w, ", \"parent_id\": ");
	w = span_str_w(w, r->parent_id, c->parent_id, 0);
	w = SPAN_LIT(w, ", \"timestamp\": \"");
	w = span_put(w, c->ts, 26);
	return SPAN_LIT(w, "\", \"info\": {");
}

/* Close info with "host" (osprofiler adds it last), then project, service
 * (null when absent). */
static char *
span_tail_w(char *w, const struct span_rec *r, const struct span_common *c)
{
	w = SPAN_LIT(w, ", \"host\": ");
	w = span_str_w(w, r->host, c->host, 0);
	w = SPAN_LIT(w, "}, \"project\": ");
	w = span_str_w(w, r->project, c->project, 0);
	w = SPAN_LIT(w, ", \"service\": ");
	if (r->service == NULL)
		w = SPAN_LIT(w, "null");
	else
		w = span_str_w(w, r->service, c->service, 0);
	return SPAN_LIT(w, "}");
}

/* Optional string members of info.request's siblings and info.tls, in the
 * order they are written; NULL ones are left out. */
enum span_opt_id {
	SPAN_O_CLIENT = 0,
	SPAN_O_LISTENER,
	SPAN_O_HTTP_VERSION,
	SPAN_O_TRACE_FORMAT,
	SPAN_O_CALLER,
	SPAN_O_UPSTREAM,
	SPAN_O_TLS_PROTOCOL,
	SPAN_O_TLS_CIPHER,
	SPAN_O_TLS_SNI,
	SPAN_O_TLS_SUBJECT,
	SPAN_O_OPERATION,
	SPAN_O_SAMPLING,
	SPAN_O_COUNT
};

/* An optional string member: nothing when s is NULL, else key (a ", "
 * literal, written without its ", " when *first) and value. */
static char *
span_opt_w(char *w, const char *key, size_t key_len, const char *s,
    size_t n, int *first)
{
	if (s == NULL)
		return w;
	if (*first) {
		key += 2;
		key_len -= 2;
	}
	w = span_put(w, key, key_len);
	*first = 0;
	return span_str_w(w, s, n, 0);
}

#define SPAN_OPT(w, lit, s, n, first) \
	span_opt_w((w), (lit), sizeof(lit) - 1, (s), (n), (first))

int
span_format_start(const struct span_rec *r, struct span_buf *out)
{
	const char *opt[SPAN_O_COUNT];
	size_t olen[SPAN_O_COUNT];
	struct span_common c;
	const char *path, *query;
	size_t plen, qlen, scheme, need, i;
	char *w, *start, sparam[32];
	int first = 0, tfirst = 1;

	if (r->method == NULL || r->target == NULL || r->scheme == NULL)
		return -1;
	if ((need = span_common_init(r, r->start_us, &c)) == 0)
		return -1;
	opt[SPAN_O_CLIENT] = r->client_addr;
	opt[SPAN_O_LISTENER] = r->listener;
	opt[SPAN_O_HTTP_VERSION] = r->http_version;
	opt[SPAN_O_TRACE_FORMAT] = r->trace_format;
	opt[SPAN_O_CALLER] = r->caller_span_id;
	opt[SPAN_O_UPSTREAM] = r->upstream_addr;
	opt[SPAN_O_TLS_PROTOCOL] = r->tls_protocol;
	opt[SPAN_O_TLS_CIPHER] = r->tls_cipher;
	opt[SPAN_O_TLS_SNI] = r->tls_sni;
	opt[SPAN_O_TLS_SUBJECT] = r->tls_client_subject;
	opt[SPAN_O_OPERATION] = r->operation;
	opt[SPAN_O_SAMPLING] = r->sampling_reason;
	for (i = 0; i < SPAN_O_COUNT; i++) {
		olen[i] = opt[i] != NULL ? strlen(opt[i]) : 0;
		need += SPAN_JSON_MAX * olen[i];
	}
	if (r->sampler_type != NULL) {
		/* the type is one of our literals, plain ASCII */
		span_param_w(sparam, sizeof(sparam), r->sampler_param);
		need += 40 + strlen(r->sampler_type) + strlen(sparam);
	}
	span_split_target(r->target, r->target_len, &path, &plen, &query,
	    &qlen);
	scheme = strlen(r->scheme);
	need += SPAN_PATH_MAX * plen + SPAN_JSON_MAX * (qlen + r->method_len +
	    scheme + (r->user_agent != NULL ? r->user_agent_len : 0));
	if (span_buf_reserve(out, need) == -1)
		return -1;

	w = start = out->p + out->len;
	w = span_head_w(w, r, &c, "-start", 6);
	/* WsgiMiddleware's info["request"], keys in its order */
	w = SPAN_LIT(w, "\"request\": {\"path\": ");
	w = span_path_w(w, path, plen);
	w = SPAN_LIT(w, ", \"query\": ");
	w = span_str_w(w, query, qlen, 1);
	w = SPAN_LIT(w, ", \"method\": ");
	w = span_str_w(w, r->method, r->method_len, 1);
	w = SPAN_LIT(w, ", \"scheme\": ");
	w = span_str_w(w, r->scheme, scheme, 0);
	w = SPAN_LIT(w, "}");
	w = SPAN_OPT(w, ", \"client\": ", opt[SPAN_O_CLIENT],
	    olen[SPAN_O_CLIENT], &first);
	w = SPAN_OPT(w, ", \"listener\": ", opt[SPAN_O_LISTENER],
	    olen[SPAN_O_LISTENER], &first);
	w = SPAN_OPT(w, ", \"http_version\": ", opt[SPAN_O_HTTP_VERSION],
	    olen[SPAN_O_HTTP_VERSION], &first);
	if (r->user_agent != NULL) {
		w = SPAN_LIT(w, ", \"user_agent\": ");
		w = span_str_w(w, r->user_agent, r->user_agent_len, 0);
	}
	w = SPAN_OPT(w, ", \"trace_format\": ", opt[SPAN_O_TRACE_FORMAT],
	    olen[SPAN_O_TRACE_FORMAT], &first);
	w = SPAN_OPT(w, ", \"caller_span_id\": ", opt[SPAN_O_CALLER],
	    olen[SPAN_O_CALLER], &first);
	w = SPAN_OPT(w, ", \"upstream\": ", opt[SPAN_O_UPSTREAM],
	    olen[SPAN_O_UPSTREAM], &first);
	if (r->tls_protocol != NULL || r->tls_cipher != NULL ||
	    r->tls_sni != NULL || r->tls_client_subject != NULL) {
		w = SPAN_LIT(w, ", \"tls\": {");
		w = SPAN_OPT(w, ", \"protocol\": ", opt[SPAN_O_TLS_PROTOCOL],
		    olen[SPAN_O_TLS_PROTOCOL], &tfirst);
		w = SPAN_OPT(w, ", \"cipher\": ", opt[SPAN_O_TLS_CIPHER],
		    olen[SPAN_O_TLS_CIPHER], &tfirst);
		w = SPAN_OPT(w, ", \"sni\": ", opt[SPAN_O_TLS_SNI],
		    olen[SPAN_O_TLS_SNI], &tfirst);
		w = SPAN_OPT(w, ", \"client_subject\": ", opt[SPAN_O_TLS_SUBJECT],
		    olen[SPAN_O_TLS_SUBJECT], &tfirst);
		w = SPAN_LIT(w, "}");
	}
	w = SPAN_OPT(w, ", \"operation\": ", opt[SPAN_O_OPERATION],
	    olen[SPAN_O_OPERATION], &first);
	w = SPAN_OPT(w, ", \"sampling\": ", opt[SPAN_O_SAMPLING],
	    olen[SPAN_O_SAMPLING], &first);
	if (r->sampler_type != NULL) {
		w = SPAN_OPT(w, ", \"sampler.type\": ", r->sampler_type,
		    strlen(r->sampler_type), &first);
		w = SPAN_LIT(w, ", \"sampler.param\": ");
		w = span_put(w, sparam, strlen(sparam));
	}
	w = span_tail_w(w, r, &c);
	assert((size_t)(w - start) <= need);
	out->len += (size_t)(w - start);
	return 0;
}

int
span_is_error(const struct span_rec *r)
{
	return r->etype != NULL || r->status_code >= 500;
}

/* A duration in ms as a JSON number (microsecond resolution), nothing when
 * ms < 0 (NaN is written, as it always was); NULL when it does not fit. */
static char *
span_dur_w(char *w, const char *key, size_t key_len, double ms, int *first)
{
	if (ms < 0)
		return w;
	if (*first) {
		key += 2;
		key_len -= 2;
	}
	w = span_put(w, key, key_len);
	*first = 0;
	return span_ms_w(w, ms);
}

#define SPAN_DUR(w, lit, ms, first) \
	span_dur_w((w), (lit), sizeof(lit) - 1, (ms), (first))

int
span_format_stop(const struct span_rec *r, struct span_buf *out)
{
	struct span_common c;
	const char *etype = r->etype, *message = r->message;
	char msg[32], *w, *start;
	size_t need, etype_len = 0, message_len = 0, rid_len = 0;
	int ufirst = 1;

	if ((need = span_common_init(r, r->stop_us, &c)) == 0)
		return -1;
	if (etype == NULL && r->status_code >= 500) {
		etype = SPAN_ETYPE_HTTP_SERVER_ERROR;
		w = SPAN_LIT(msg, "HTTP ");
		w = span_int_w(w, r->status_code);
		*w = '\0';
		message = msg;
	}
	if (etype != NULL) {
		etype_len = strlen(etype);
		message_len = message != NULL ? strlen(message) : 0;
	}
	if (r->upstream_request_id != NULL)
		rid_len = r->upstream_request_id_len;
	need += SPAN_JSON_MAX * (etype_len + message_len + rid_len);
	if (span_buf_reserve(out, need) == -1)
		return -1;

	w = start = out->p + out->len;
	w = span_head_w(w, r, &c, "-stop", 5);
	w = SPAN_LIT(w, "\"response\": {\"status_code\": ");
	w = span_int_w(w, r->status_code);
	w = SPAN_LIT(w, ", \"bytes_to_client\": ");
	w = span_u64_w(w, r->bytes_to_client);
	w = SPAN_LIT(w, ", \"bytes_from_client\": ");
	w = span_u64_w(w, r->bytes_from_client);
	w = SPAN_LIT(w, "}");
	if (r->upstream_connect_ms >= 0 || r->upstream_first_byte_ms >= 0 ||
	    r->upstream_request_id != NULL) {
		w = SPAN_LIT(w, ", \"upstream\": {");
		if ((w = SPAN_DUR(w, ", \"connect_ms\": ",
		    r->upstream_connect_ms, &ufirst)) == NULL ||
		    (w = SPAN_DUR(w, ", \"first_byte_ms\": ",
		    r->upstream_first_byte_ms, &ufirst)) == NULL)
			return -1;
		if (r->upstream_request_id != NULL) {
			w = SPAN_KEY(w, ", \"request_id\": ", ufirst);
			w = span_str_w(w, r->upstream_request_id, rid_len, 0);
		}
		w = SPAN_LIT(w, "}");
	}
	/* profiler.Trace.__exit__ writes etype then message */
	if (etype != NULL) {
		w = SPAN_LIT(w, ", \"etype\": ");
		w = span_str_w(w, etype, etype_len, 0);
		w = SPAN_LIT(w, ", \"message\": ");
		if (message == NULL)
			w = SPAN_LIT(w, "null");
		else
			w = span_str_w(w, message, message_len, 0);
	}
	w = span_tail_w(w, r, &c);
	assert((size_t)(w - start) <= need);
	out->len += (size_t)(w - start);
	return 0;
}

int
span_format_error_marker(const struct span_rec *r, struct span_buf *out)
{
	char ts[27], *w;
	size_t n;

	if (r->base_id == NULL || span_timestamp(r->stop_us, ts) == -1)
		return -1;
	n = strlen(r->base_id);
	if (span_buf_reserve(out, 64 + SPAN_JSON_MAX * n) == -1)
		return -1;
	w = out->p + out->len;
	w = SPAN_LIT(w, "{\"base_id\": ");
	w = span_str_w(w, r->base_id, n, 0);
	w = SPAN_LIT(w, ", \"timestamp\": \"");
	w = span_put(w, ts, 26);
	w = SPAN_LIT(w, "\"}");
	out->len = (size_t)(w - out->p);
	return 0;
}
