/*
 * trace.c: the codec table, the helpers the codecs share (hex, decimal,
 * uuid, id mapping, random ids), the per-request extract/inject driver and
 * the trace counters. See trace.h for the flow.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pthread.h>

#include <openssl/rand.h>

#include "trace.h"
#include "fmt.h"

const struct trace_codec *const trace_codecs[TRACE_F_COUNT] = {
	[TRACE_F_OSPROFILER] = &trace_codec_osprofiler,
	[TRACE_F_W3C] = &trace_codec_w3c,
	[TRACE_F_B3] = &trace_codec_b3,
	[TRACE_F_B3MULTI] = &trace_codec_b3multi,
	[TRACE_F_JAEGER] = &trace_codec_jaeger,
	[TRACE_F_XRAY] = &trace_codec_xray,
	[TRACE_F_DATADOG] = &trace_codec_datadog,
	[TRACE_F_GCP] = &trace_codec_gcp,
	[TRACE_F_OT] = &trace_codec_ot,
};

static const char *const default_extract[] = { "osprofiler", "w3c", "b3",
    "jaeger", "xray", "datadog", "gcp", "ot" };
static const char *const default_inject[] = { "osprofiler", "w3c" };

struct trace_conf {
	unsigned extract[TRACE_F_COUNT];	/* codec ids, precedence order */
	size_t n_extract;
	unsigned inject[TRACE_F_COUNT];		/* codec ids, emission order */
	size_t n_inject;
	unsigned inject_mask;			/* 1u << id */
	void *osp;				/* osprofiler key state (owned) */
	int keep_foreign;
	int server_timing;
	int response_trace_id;
	int request_id_from_trace;
};

/*
 * Process-wide counters, updated with relaxed atomics (like stats.h): the
 * request path takes no lock, the admin thread reads them.
 */
static struct {
	uint64_t extracted[TRACE_F_COUNT];	/* won the extraction */
	uint64_t invalid[TRACE_F_COUNT];	/* present but invalid */
	uint64_t osp_forged;			/* unsigned/bad osprofiler, removed */
	uint64_t disagree;			/* requests with conflicting ids */
	uint64_t new_traces;			/* no incoming trace id */
} trace_stats;

#define TRACE_INC(f)	__atomic_add_fetch(&(f), 1, __ATOMIC_RELAXED)
#define TRACE_GET(f)	__atomic_load_n(&(f), __ATOMIC_RELAXED)

/* ---- small helpers ---- */

static inline int
lc(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Value of one hex digit, or -1 (uppercase refused when lc_only). */
static inline int
hexval(int c, int lc_only)
{
	return lc_only ? fmt_hexval_lc(c) : fmt_hexval(c);
}

void
trace_hdr_trim(const struct tb_hdr *h, const char **v, size_t *len)
{
	const char *s = h->value;
	size_t n = h->value_len;

	while (n > 0 && (s[0] == ' ' || s[0] == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	*v = s;
	*len = n;
}

int
trace_hex_decode(const char *s, size_t len, int lc_only, uint8_t *out,
    size_t nbytes)
{
	size_t i;
	int hi, lo;

	if (len != 2 * nbytes)
		return -1;
	for (i = 0; i < nbytes; i++) {
		if ((hi = hexval((unsigned char)s[2 * i], lc_only)) < 0 ||
		    (lo = hexval((unsigned char)s[2 * i + 1], lc_only)) < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int
trace_hex_u64(const char *s, size_t len, int lc_only, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	int d;

	if (len == 0 || len > 16)
		return -1;
	for (i = 0; i < len; i++) {
		if ((d = hexval((unsigned char)s[i], lc_only)) < 0)
			return -1;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return 0;
}

int
trace_hex_id128(const char *s, size_t len, int lc_only, uint8_t out[16])
{
	uint64_t hi = 0, lo;

	if (len == 0 || len > 32)
		return -1;
	if (len > 16) {
		if (trace_hex_u64(s, len - 16, lc_only, &hi) == -1)
			return -1;
		s += len - 16;
		len = 16;
	}
	if (trace_hex_u64(s, len, lc_only, &lo) == -1)
		return -1;
	trace_put_be64(out, hi);
	trace_put_be64(out + 8, lo);
	return 0;
}

int
trace_dec_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	unsigned d;

	if (len == 0 || len > 20)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;	/* above 2^64-1 */
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

void
trace_hex_encode(const uint8_t *in, size_t n, char *out)
{
	/* both digits of a byte from one table load: this runs for every id
	 * and signature written, ~100 bytes per traced request */
	static const char pair[] =
	    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
	    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
	    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
	    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
	    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
	    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
	    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
	size_t i;

	for (i = 0; i < n; i++)
		memcpy(out + 2 * i, pair + 2 * in[i], 2);
}

size_t
trace_dec_encode(uint64_t v, char *out)
{
	return fmt_u64(out, v);
}

int
trace_id_is_zero(const uint8_t id[16])
{
	uint8_t acc = 0;
	int i;

	for (i = 0; i < 16; i++)
		acc |= id[i];
	return acc == 0;
}

uint64_t
trace_be64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

void
trace_put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

void
trace_uuid_format(const uint8_t id[16], char out[TRACE_UUID_LEN + 1])
{
	trace_hex_encode(id, 4, out);
	out[8] = '-';
	trace_hex_encode(id + 4, 2, out + 9);
	out[13] = '-';
	trace_hex_encode(id + 6, 2, out + 14);
	out[18] = '-';
	trace_hex_encode(id + 8, 2, out + 19);
	out[23] = '-';
	trace_hex_encode(id + 10, 6, out + 24);
	out[36] = '\0';
}

int
trace_uuid_parse(const char *s, size_t len, uint8_t id[16])
{
	if (len != TRACE_UUID_LEN || s[8] != '-' || s[13] != '-' ||
	    s[18] != '-' || s[23] != '-')
		return -1;
	if (trace_hex_decode(s, 8, 0, id, 4) == -1 ||
	    trace_hex_decode(s + 9, 4, 0, id + 4, 2) == -1 ||
	    trace_hex_decode(s + 14, 4, 0, id + 6, 2) == -1 ||
	    trace_hex_decode(s + 19, 4, 0, id + 8, 2) == -1 ||
	    trace_hex_decode(s + 24, 12, 0, id + 10, 6) == -1)
		return -1;
	return 0;
}

void
trace_span_uuid_format(uint64_t span, char out[TRACE_UUID_LEN + 1])
{
	uint8_t id[16];

	memset(id, 0, 8);
	trace_put_be64(id + 8, span);
	trace_uuid_format(id, out);
}

uint64_t
trace_uuid_low64(const uint8_t id[16])
{
	return trace_be64(id + 8);
}

/*
 * Per-thread buffer of CSPRNG output: one RAND_bytes call per 4 KiB serves
 * 128 requests (a call per request costs a good part of the 2 us budget
 * of extract + sign + inject). Used bytes are wiped so a buffer is never
 * handed out twice; these are trace ids, not keys, so holding them in
 * memory ahead of use is harmless.
 */
static _Thread_local struct {
	uint8_t buf[4096];
	size_t pos;
	int init;
} trace_rnd;

static pthread_once_t trace_rnd_once = PTHREAD_ONCE_INIT;

/* A forked child must not hand out the ids its parent's buffer still
 * holds: the surviving thread's buffer is refilled on next use. */
static void
trace_rnd_forked(void)
{
	trace_rnd.init = 0;
}

static void
trace_rnd_register(void)
{
	(void)pthread_atfork(NULL, NULL, trace_rnd_forked);
}

void
trace_random(uint8_t *out, size_t n)
{
	size_t take;

	if (!trace_rnd.init)
		(void)pthread_once(&trace_rnd_once, trace_rnd_register);
	while (n > 0) {
		if (!trace_rnd.init || trace_rnd.pos == sizeof(trace_rnd.buf)) {
			/* OpenSSL's DRBG fails only when the OS entropy source
			 * is gone; TLS would be broken too. Not recoverable. */
			if (RAND_bytes(trace_rnd.buf, sizeof(trace_rnd.buf)) != 1)
				abort();
			trace_rnd.pos = 0;
			trace_rnd.init = 1;
		}
		take = sizeof(trace_rnd.buf) - trace_rnd.pos;
		if (take > n)
			take = n;
		memcpy(out, trace_rnd.buf + trace_rnd.pos, take);
		memset(trace_rnd.buf + trace_rnd.pos, 0, take);
		trace_rnd.pos += take;
		out += take;
		n -= take;
	}
}

void
trace_uuid4(uint8_t id[16])
{
	trace_random(id, 16);
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);	/* version 4 */
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
}

int
trace_emit(struct tb_hdr_sink *out, const char *name, const char *v,
    size_t len)
{
	return out->add(out->arg, name, strlen(name), v, len);
}

const char *
trace_value(const struct tb_hdr *hdrs, size_t n, const char *lit,
    size_t litlen, size_t *len)
{
	const char *v;
	int i;

	if ((i = trace_find(hdrs, n, 0, lit, litlen)) < 0)
		return NULL;
	trace_hdr_trim(&hdrs[i], &v, len);
	return v;
}

/* Trim SP/HTAB on both ends of [*s, *s + *n). */
static void
trim_ows(const char **s, size_t *n)
{
	while (*n > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

int
trace_list_next(const char **p, const char *end, int trim, const char **m,
    size_t *mlen)
{
	const char *c;

	if (*p >= end)
		return 0;
	*m = *p;
	c = memchr(*p, ',', (size_t)(end - *p));
	*mlen = (size_t)((c != NULL ? c : end) - *m);
	*p = c != NULL ? c + 1 : end;
	if (trim)
		trim_ows(m, mlen);
	return 1;
}

int
trace_baggage_emit(const struct tb_trace_ctx *ctx, const char *prefix,
    struct tb_hdr_sink *out)
{
	const char *p = ctx->baggage, *end = ctx->baggage + ctx->baggage_len;
	const char *m, *eq, *val, *semi;
	char name[128];
	size_t plen = strlen(prefix), klen, vlen, mlen, i;

	while (trace_list_next(&p, end, 1, &m, &mlen)) {
		if ((eq = memchr(m, '=', mlen)) == NULL)
			continue;
		klen = (size_t)(eq - m);
		val = eq + 1;
		vlen = mlen - klen - 1;
		if ((semi = memchr(val, ';', vlen)) != NULL)
			vlen = (size_t)(semi - val);	/* drop properties */
		trim_ows(&m, &klen);
		trim_ows(&val, &vlen);
		if (klen == 0 || plen + klen > sizeof(name))
			continue;
		/* the key becomes part of a header name: a token or nothing
		 * (the verbatim W3C baggage field is not validated) */
		for (i = 0; i < klen && hdr_is_tchar((unsigned char)m[i]); i++)
			;
		if (i < klen)
			continue;
		memcpy(name, prefix, plen);
		memcpy(name + plen, m, klen);
		if (out->add(out->arg, name, plen + klen, val, vlen) == -1)
			return -1;
	}
	return 0;
}

const struct trace_codec *
trace_codec_by_name(const char *name)
{
	size_t i;

	for (i = 0; i < TRACE_F_COUNT; i++)
		if (strcasecmp(trace_codecs[i]->name, name) == 0)
			return trace_codecs[i];
	return NULL;
}

/* ---- configuration ---- */

/* Resolve names into ids; no duplicates. 0 / -1 with err set. */
static int
resolve_list(const char *const *names, size_t n, unsigned *ids, size_t *n_ids,
    const char *what, char *err, size_t errlen)
{
	const struct trace_codec *c;
	unsigned seen = 0;
	size_t i;

	*n_ids = 0;
	for (i = 0; i < n; i++) {
		if ((c = trace_codec_by_name(names[i])) == NULL) {
			snprintf(err, errlen, "[tracing] %s: unknown format "
			    "\"%.40s\" (osprofiler, w3c, b3, b3multi, jaeger, "
			    "xray, datadog, gcp, ot)", what, names[i]);
			return -1;
		}
		if (seen & (1u << c->id)) {
			snprintf(err, errlen, "[tracing] %s: \"%s\" listed "
			    "twice", what, c->name);
			return -1;
		}
		seen |= 1u << c->id;
		ids[(*n_ids)++] = c->id;
	}
	return 0;
}

struct trace_conf *
trace_conf_new(const char *const *extract, size_t n_extract,
    const char *const *inject, size_t n_inject,
    const char *const *hmac_keys, size_t n_keys,
    int keep_foreign, int server_timing, int response_trace_id,
    int request_id_from_trace, char *err, size_t errlen)
{
	struct trace_conf *conf;
	size_t i;

	if ((conf = calloc(1, sizeof(*conf))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (n_extract == 0) {
		extract = default_extract;
		n_extract = sizeof(default_extract) / sizeof(default_extract[0]);
	}
	if (n_inject == 0) {
		inject = default_inject;
		n_inject = sizeof(default_inject) / sizeof(default_inject[0]);
	}
	if (n_extract > TRACE_F_COUNT || n_inject > TRACE_F_COUNT) {
		snprintf(err, errlen, "[tracing] format listed twice");
		goto fail;
	}
	if (resolve_list(extract, n_extract, conf->extract, &conf->n_extract,
	    "extract", err, errlen) == -1 ||
	    resolve_list(inject, n_inject, conf->inject, &conf->n_inject,
	    "inject", err, errlen) == -1)
		goto fail;
	for (i = 0; i < conf->n_inject; i++)
		conf->inject_mask |= 1u << conf->inject[i];

	if (n_keys > 0) {
		if ((conf->osp = trace_osprofiler_keys_new(hmac_keys,
		    n_keys)) == NULL) {
			/* never print a key: only say which one */
			snprintf(err, errlen, "[profiler] hmac_keys: an empty "
			    "key or out of memory");
			goto fail;
		}
	} else if (conf->inject_mask & (1u << TRACE_F_OSPROFILER)) {
		snprintf(err, errlen, "[tracing] inject lists osprofiler but "
		    "[profiler] hmac_keys is empty");
		goto fail;
	}
	conf->keep_foreign = keep_foreign;
	conf->server_timing = server_timing;
	conf->response_trace_id = response_trace_id;
	conf->request_id_from_trace = request_id_from_trace;
	return conf;
fail:
	trace_conf_free(conf);
	return NULL;
}

void
trace_conf_free(struct trace_conf *conf)
{
	if (conf == NULL)
		return;
	trace_osprofiler_keys_free(conf->osp);
	free(conf);
}

const void *
trace_conf_osprofiler(const struct trace_conf *conf)
{
	return conf->osp;
}

/* ---- per-request driver ---- */

static void
ctx_reset(struct tb_trace_ctx *c)
{
	memset(c->trace_id, 0, sizeof(c->trace_id));
	c->span_id = 0;
	c->has_trace_id = c->has_span_id = c->debug = c->random = 0;
	c->sampled = TRACE_SAMPLED_DEFER;
	c->format = NULL;
	c->osp_base_id[0] = c->osp_parent_id[0] = '\0';
	c->tracestate[0] = '\0';
	c->tracestate_len = 0;
	/* baggage belongs to the driver: not reset per codec attempt */
}

/* W3C baggage octets (W3C Baggage 'baggage-octet'); others %-encoded. */
static int
baggage_octet(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x2b) ||
	    (c >= 0x2d && c <= 0x3a) || (c >= 0x3c && c <= 0x5b) ||
	    (c >= 0x5d && c <= 0x7e);
}

/*
 * Append a member "key=value" from a uberctx- / ot-baggage- header to the
 * baggage list; a member that does not fit is left out whole (truncation by
 * whole members), a key that is not a token is skipped.
 */
static void
baggage_add_kv(struct tb_trace_ctx *c, const char *k, size_t klen,
    const char *v, size_t vlen)
{
	char tmp[TRACE_BAGGAGE_MAX];
	size_t n = 0, i;

	if (klen == 0)
		return;
	for (i = 0; i < klen; i++)
		if (!hdr_is_tchar((unsigned char)k[i]))
			return;
	if (c->baggage_len > 0)
		tmp[n++] = ',';
	if (n + klen + 1 > sizeof(tmp))
		return;
	for (i = 0; i < klen; i++)
		tmp[n++] = (char)lc((unsigned char)k[i]);
	tmp[n++] = '=';
	for (i = 0; i < vlen; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (n + 3 > sizeof(tmp))
			return;
		if (baggage_octet(ch) && ch != '%') {
			tmp[n++] = (char)ch;
		} else if (ch == '%' && i + 2 < vlen &&
		    hexval((unsigned char)v[i + 1], 0) >= 0 &&
		    hexval((unsigned char)v[i + 2], 0) >= 0) {
			tmp[n++] = '%';	/* already percent-encoded */
		} else {
			tmp[n++] = '%';
			tmp[n++] = FMT_HEX_UPPER[ch >> 4];
			tmp[n++] = FMT_HEX_UPPER[ch & 15];
		}
	}
	if (c->baggage_len + n > TRACE_BAGGAGE_MAX)
		return;
	memcpy(c->baggage + c->baggage_len, tmp, n);
	c->baggage_len += n;
	c->baggage[c->baggage_len] = '\0';
}

/* Append a whole W3C baggage field value (kept verbatim) if it fits. */
static void
baggage_add_w3c(struct tb_trace_ctx *c, const char *v, size_t vlen)
{
	size_t need = vlen + (c->baggage_len > 0);

	if (vlen == 0 || c->baggage_len + need > TRACE_BAGGAGE_MAX)
		return;
	if (c->baggage_len > 0)
		c->baggage[c->baggage_len++] = ',';
	memcpy(c->baggage + c->baggage_len, v, vlen);
	c->baggage_len += vlen;
	c->baggage[c->baggage_len] = '\0';
}

static void
mark_drop(struct trace_req *tr, size_t i)
{
	tr->drop[i / 64] |= (uint64_t)1 << (i % 64);
}

/*
 * 1 if h, whose name holds '_', reads as a header of ours with every '_' a
 * '-': a WSGI server maps X_Trace_Info and X-Trace-Info to the same
 * HTTP_X_TRACE_INFO, so such a twin could carry an unsigned trace context
 * past the checks, or collide with what we inject. Twins are removed, never
 * read (the proxy's own, X_Forwarded_For and such, are proxy_head.c's).
 */
static int
twin_owned(const struct tb_hdr *h)
{
	char buf[80];
	struct tb_hdr t = { buf, h->name_len, NULL, 0 };
	size_t i;

	if (h->name_len >= sizeof(buf))
		return 0;
	for (i = 0; i < h->name_len; i++)
		buf[i] = h->name[i] == '_' ? '-' : h->name[i];
	if (TRACE_NAME_IS(&t, "baggage") ||
	    TRACE_NAME_IS(&t, "x-openstack-request-id") ||
	    TRACE_NAME_HAS_PREFIX(&t, "uberctx-") ||
	    TRACE_NAME_HAS_PREFIX(&t, "ot-baggage-"))
		return 1;
	for (i = 0; i < TRACE_F_COUNT; i++)
		if (trace_codecs[i]->owns_header(&t))
			return 1;
	return 0;
}

void
trace_extract(const struct trace_conf *conf, const struct tb_hdr *hdrs,
    size_t n, struct trace_req *tr)
{
	struct tb_trace_ctx other;
	const struct trace_codec *c;
	unsigned present = 0, tried = 0, f;
	uint8_t span[16];
	const char *v;
	size_t i, k, vlen;
	int r, ch, drop;

	memset(tr->drop, 0, sizeof(tr->drop));
	tr->from = NULL;
	tr->flags = 0;
	tr->n_disagree = 0;
	tr->invalid = 0;
	ctx_reset(&tr->ctx);
	tr->ctx.baggage_len = 0;
	tr->ctx.baggage[0] = '\0';
	if (n > TRACE_MAX_HDRS)
		n = TRACE_MAX_HDRS;

	/*
	 * One pass: which formats are present, which headers go, the
	 * request id and baggage. Every trace header name starts with one of
	 * b j o t u x; the first bytes spare most headers the name compares.
	 */
	for (i = 0; i < n; i++) {
		const struct tb_hdr *h = &hdrs[i];

		if (h->name_len < 2)
			continue;
		switch (lc((unsigned char)h->name[0])) {
		case 'x':
			/* x-b3-, x-trace-, x-amzn-, x-datadog-, x-cloud-; but
			 * not X-Auth-Token's many x- neighbours (and their
			 * underscore twins, below) */
			if (h->name_len < 5 || (h->name[1] != '-' && h->name[1] != '_'))
				continue;
			ch = lc((unsigned char)h->name[2]);
			if (ch == 'o') {
				if (TRACE_NAME_IS(h, "x-openstack-request-id"))
					tr->flags |= TRACE_R_HAS_REQUEST_ID;
				else if (twin_owned(h))
					mark_drop(tr, i);
				continue;
			}
			if (ch != 'b' && ch != 't' && ch != 'a' && ch != 'd' &&
			    ch != 'c')
				continue;
			break;
		case 'o':	/* ot-, not OpenStack-API-Version */
			if (h->name_len < 4 || lc((unsigned char)h->name[1]) != 't' ||
			    (h->name[2] != '-' && h->name[2] != '_'))
				continue;
			break;
		case 'b':
		case 'j':
		case 't':
		case 'u':
			break;
		default:
			continue;
		}
		if (memchr(h->name, '_', h->name_len) != NULL) {
			if (twin_owned(h))
				mark_drop(tr, i);
			continue;
		}
		if (TRACE_NAME_IS(h, "baggage")) {
			/* re-emitted (merged) by trace_inject */
			trace_hdr_trim(h, &v, &vlen);
			baggage_add_w3c(&tr->ctx, v, vlen);
			mark_drop(tr, i);
			continue;
		}
		drop = 0;
		for (f = 0; f < TRACE_F_COUNT; f++) {
			if (!trace_codecs[f]->owns_header(h))
				continue;
			present |= 1u << f;
			/* osprofiler headers are re-signed or must vanish;
			 * an injected format must not appear twice */
			if (!conf->keep_foreign || f == TRACE_F_OSPROFILER ||
			    (conf->inject_mask & (1u << f)))
				drop = 1;
		}
		if (drop)
			mark_drop(tr, i);
		if (TRACE_NAME_HAS_PREFIX(h, "uberctx-")) {
			trace_hdr_trim(h, &v, &vlen);
			baggage_add_kv(&tr->ctx, h->name + 8, h->name_len - 8,
			    v, vlen);
		} else if (TRACE_NAME_HAS_PREFIX(h, "ot-baggage-")) {
			trace_hdr_trim(h, &v, &vlen);
			baggage_add_kv(&tr->ctx, h->name + 11, h->name_len - 11,
			    v, vlen);
		}
	}

	/* First valid format in precedence order wins. */
	for (k = 0; k < conf->n_extract; k++) {
		f = conf->extract[k];
		/* b3 and b3multi share one reader: try it once */
		if (f == TRACE_F_B3MULTI)
			f = TRACE_F_B3;
		if (!(present & (1u << f)) || (tried & (1u << f)))
			continue;
		tried |= 1u << f;
		c = trace_codecs[f];
		if (tr->from == NULL) {
			ctx_reset(&tr->ctx);
			r = c->extract(conf->osp, hdrs, n, &tr->ctx);
			if (r == 1) {
				tr->ctx.format = c;
				tr->from = c;
				TRACE_INC(trace_stats.extracted[f]);
				continue;
			}
		} else {
			/* a later format: only checked for disagreement */
			ctx_reset(&other);
			r = c->extract(conf->osp, hdrs, n, &other);
			if (r == 1 && other.has_trace_id &&
			    tr->ctx.has_trace_id &&
			    memcmp(other.trace_id, tr->ctx.trace_id, 16) != 0)
				tr->n_disagree++;
		}
		if (r == -1) {
			tr->invalid |= 1u << f;
			TRACE_INC(trace_stats.invalid[f]);
			if (f == TRACE_F_OSPROFILER) {
				tr->flags |= TRACE_R_OSP_FORGED;
				TRACE_INC(trace_stats.osp_forged);
			}
		}
	}
	if (tr->from == NULL)
		ctx_reset(&tr->ctx);
	if (tr->n_disagree > 0)
		TRACE_INC(trace_stats.disagree);

	/* The ids. */
	if (!tr->ctx.has_trace_id) {
		/* a uuid4: osprofiler-shaped base_id, and its last 7 bytes
		 * are random as W3C L2's random flag promises */
		trace_uuid4(tr->ctx.trace_id);
		tr->ctx.has_trace_id = 1;
		tr->ctx.has_span_id = 0;
		tr->ctx.random = 1;
		tr->flags |= TRACE_R_NEW_TRACE;
		TRACE_INC(trace_stats.new_traces);
	}
	if (tr->from == &trace_codec_osprofiler)
		memcpy(tr->base_id, tr->ctx.osp_base_id, sizeof(tr->base_id));
	else
		trace_uuid_format(tr->ctx.trace_id, tr->base_id);
	/* 0 is "no span" in every format; and the downstream parent_id must
	 * never be base_id, which osprofiler's OTLP driver reads as the root */
	do {
		trace_uuid4(span);
		tr->span_id = trace_uuid_low64(span);
		trace_uuid_format(span, tr->span_uuid);
	} while (tr->span_id == 0 ||
	    strcasecmp(tr->span_uuid, tr->base_id) == 0);
	if (tr->from == &trace_codec_osprofiler && tr->ctx.osp_parent_id[0])
		memcpy(tr->parent_uuid, tr->ctx.osp_parent_id,
		    sizeof(tr->parent_uuid));
	else if (tr->ctx.has_span_id)
		trace_span_uuid_format(tr->ctx.span_id, tr->parent_uuid);
	else
		memcpy(tr->parent_uuid, tr->base_id, sizeof(tr->parent_uuid));
	tr->sampled = tr->ctx.sampled;
	tr->debug = tr->ctx.debug;
}

void
trace_req_default_decision(struct trace_req *tr, int sample_new)
{
	if (tr->ctx.sampled != TRACE_SAMPLED_DEFER) {
		tr->sampled = tr->ctx.sampled;
		tr->debug = tr->ctx.debug;
	} else {
		tr->sampled = sample_new ? 1 : 0;
		tr->debug = 0;
	}
}

int
trace_inject(const struct trace_conf *conf, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char rid[4 + TRACE_UUID_LEN];
	size_t k;
	unsigned f;

	for (k = 0; k < conf->n_inject; k++) {
		f = conf->inject[k];
		/* osprofiler has no "not sampled": absence says it */
		if (f == TRACE_F_OSPROFILER && tr->sampled != 1)
			continue;
		if (trace_codecs[f]->inject(conf->osp, tr, out) == -1)
			return -1;
	}
	if (tr->ctx.baggage_len > 0 && trace_emit(out, "baggage",
	    tr->ctx.baggage, tr->ctx.baggage_len) == -1)
		return -1;
	if (conf->request_id_from_trace &&
	    !(tr->flags & TRACE_R_HAS_REQUEST_ID)) {
		memcpy(rid, "req-", 4);
		memcpy(rid + 4, tr->base_id, TRACE_UUID_LEN);
		if (trace_emit(out, "X-OpenStack-Request-ID", rid,
		    4 + strlen(tr->base_id)) == -1)
			return -1;
	}
	return 0;
}

int
trace_response_headers(const struct trace_conf *conf,
    const struct trace_req *tr, struct tb_hdr_sink *out)
{
	/* trace;desc=00-<32>-<16>-<2>: W3C Trace Context Level 2 */
	char st[11 + 55];
	char *p = st;

	if (conf->server_timing) {
		memcpy(p, "trace;desc=00-", 14);
		p += 14;
		trace_hex_encode(tr->ctx.trace_id, 16, p);
		p += 32;
		*p++ = '-';
		trace_hex_encode((const uint8_t[8]){
		    (uint8_t)(tr->span_id >> 56), (uint8_t)(tr->span_id >> 48),
		    (uint8_t)(tr->span_id >> 40), (uint8_t)(tr->span_id >> 32),
		    (uint8_t)(tr->span_id >> 24), (uint8_t)(tr->span_id >> 16),
		    (uint8_t)(tr->span_id >> 8), (uint8_t)tr->span_id }, 8, p);
		p += 16;
		*p++ = '-';
		/* the same flags as the traceparent sent downstream (random bit too) */
		*p++ = '0';
		*p++ = "0123"[(tr->sampled == 1 ? 1 : 0) | (tr->ctx.random ? 2 : 0)];
		if (trace_emit(out, "Server-Timing", st, (size_t)(p - st)) == -1)
			return -1;
	}
	if (conf->response_trace_id && trace_emit(out, "X-Trace-Id",
	    tr->base_id, strlen(tr->base_id)) == -1)
		return -1;
	return 0;
}

size_t
trace_metrics_format(char *buf, size_t len)
{
	size_t used = 0, f;
	int r;

#define APPEND(...) do {						\
	r = snprintf(len > used ? buf + used : NULL,			\
	    len > used ? len - used : 0, __VA_ARGS__);			\
	if (r > 0)							\
		used += (size_t)r;					\
} while (0)

	if (len > 0)
		buf[0] = '\0';
	APPEND("# HELP tracebridge_trace_extracted_total Requests whose "
	    "trace context came from this format.\n"
	    "# TYPE tracebridge_trace_extracted_total counter\n");
	for (f = 0; f < TRACE_F_COUNT; f++)
		if (f != TRACE_F_B3MULTI)
			APPEND("tracebridge_trace_extracted_total{format=\"%s\"} "
			    "%llu\n", trace_codecs[f]->name, (unsigned long long)
			    TRACE_GET(trace_stats.extracted[f]));
	APPEND("# HELP tracebridge_trace_invalid_total Trace headers present "
	    "but invalid, by format.\n"
	    "# TYPE tracebridge_trace_invalid_total counter\n");
	for (f = 0; f < TRACE_F_COUNT; f++)
		if (f != TRACE_F_B3MULTI)
			APPEND("tracebridge_trace_invalid_total{format=\"%s\"} "
			    "%llu\n", trace_codecs[f]->name, (unsigned long long)
			    TRACE_GET(trace_stats.invalid[f]));
	APPEND("# HELP tracebridge_trace_osprofiler_forged_total Unsigned, "
	    "badly signed or malformed X-Trace-Info removed.\n"
	    "# TYPE tracebridge_trace_osprofiler_forged_total counter\n"
	    "tracebridge_trace_osprofiler_forged_total %llu\n",
	    (unsigned long long)TRACE_GET(trace_stats.osp_forged));
	APPEND("# HELP tracebridge_trace_disagreements_total Requests whose "
	    "formats carried different trace ids.\n"
	    "# TYPE tracebridge_trace_disagreements_total counter\n"
	    "tracebridge_trace_disagreements_total %llu\n",
	    (unsigned long long)TRACE_GET(trace_stats.disagree));
	APPEND("# HELP tracebridge_trace_new_total Requests without an "
	    "incoming trace id.\n"
	    "# TYPE tracebridge_trace_new_total counter\n"
	    "tracebridge_trace_new_total %llu\n",
	    (unsigned long long)TRACE_GET(trace_stats.new_traces));
#undef APPEND
	return used;
}
