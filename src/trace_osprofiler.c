/*
 * trace_osprofiler.c: osprofiler's X-Trace-Info / X-Trace-HMAC
 * (reference/osprofiler.md section 1; osprofiler _utils.signed_pack /
 * signed_unpack and web.WsgiMiddleware._trace_is_valid).
 *
 *   X-Trace-Info = urlsafe base64 (padded) of
 *                  {"base_id": "<uuid>", "parent_id": "<uuid>"}
 *   X-Trace-HMAC = lowercase hex HMAC-SHA1(key, <the base64 text>)
 *
 * Key state: HMAC-SHA1 is SHA1(k^opad || SHA1(k^ipad || m)); the two SHA1
 * states after absorbing k^ipad and k^opad are computed once per key, and a
 * request copies them (a struct copy, no allocation, no key setup). The
 * low-level SHA1 API is deprecated in OpenSSL 3 but is the only one whose
 * context can be copied without allocating; EVP_MAC_CTX_dup allocates per
 * request, which the 2 us budget cannot afford.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "trace.h"

#define SHA1_LEN 20
#define SHA1_BLOCK 64
/* A real X-Trace-Info is 140 chars; anything far above is hostile: bound
 * the HMAC work before doing any. */
#define INFO_MAX 1024
#define JSON_MAX (INFO_MAX / 4 * 3)

struct osp_key {
	SHA_CTX inner;		/* after k ^ ipad */
	SHA_CTX outer;		/* after k ^ opad */
};

struct osp_keys {
	size_t n;
	struct osp_key *k;	/* k[0] signs; all verify */
};

void *
trace_osprofiler_keys_new(const char *const *keys, size_t n)
{
	struct osp_keys *ks;
	uint8_t block[SHA1_BLOCK], pad[SHA1_BLOCK];
	size_t i, j, klen;

	if (n == 0 || (ks = calloc(1, sizeof(*ks))) == NULL)
		return NULL;
	if ((ks->k = calloc(n, sizeof(*ks->k))) == NULL)
		goto fail;
	ks->n = n;
	for (i = 0; i < n; i++) {
		klen = strlen(keys[i]);
		if (klen == 0)
			goto fail;	/* osprofiler: no key, no trust */
		memset(block, 0, sizeof(block));
		if (klen > SHA1_BLOCK)
			SHA1((const uint8_t *)keys[i], klen, block);	/* RFC 2104 */
		else
			memcpy(block, keys[i], klen);
		for (j = 0; j < SHA1_BLOCK; j++)
			pad[j] = block[j] ^ 0x36;
		SHA1_Init(&ks->k[i].inner);
		SHA1_Update(&ks->k[i].inner, pad, SHA1_BLOCK);
		for (j = 0; j < SHA1_BLOCK; j++)
			pad[j] = block[j] ^ 0x5c;
		SHA1_Init(&ks->k[i].outer);
		SHA1_Update(&ks->k[i].outer, pad, SHA1_BLOCK);
	}
	OPENSSL_cleanse(block, sizeof(block));
	OPENSSL_cleanse(pad, sizeof(pad));
	return ks;
fail:
	OPENSSL_cleanse(block, sizeof(block));
	OPENSSL_cleanse(pad, sizeof(pad));
	trace_osprofiler_keys_free(ks);
	return NULL;
}

void
trace_osprofiler_keys_free(void *osp)
{
	struct osp_keys *ks = osp;

	if (ks == NULL)
		return;
	if (ks->k != NULL)
		OPENSSL_cleanse(ks->k, ks->n * sizeof(*ks->k));
	free(ks->k);
	free(ks);
}

static void
hmac_sha1(const struct osp_key *k, const char *data, size_t len,
    uint8_t out[SHA1_LEN])
{
	SHA_CTX c;
	uint8_t ih[SHA1_LEN];

	c = k->inner;
	SHA1_Update(&c, data, len);
	SHA1_Final(ih, &c);
	c = k->outer;
	SHA1_Update(&c, ih, SHA1_LEN);
	SHA1_Final(out, &c);
	/* no cleanse: after Final, c holds the digest state, not the
	 * key-derived pad state it was copied from */
}

/* ---- base64url (RFC 4648 section 5), padded ---- */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/*
 * Two output characters per 12 input bits from one table load: every
 * traced request signs ~104 bytes of JSON, and the one-character-per-
 * lookup loop was a quarter of the signing cost outside SHA-1. The 8 KiB
 * table is filled once per process.
 */
static char b64_pair[4096][2];
static pthread_once_t b64_pair_once = PTHREAD_ONCE_INIT;

static void
b64_pair_init(void)
{
	size_t v;

	for (v = 0; v < 4096; v++) {
		b64_pair[v][0] = b64url[v >> 6];
		b64_pair[v][1] = b64url[v & 63];
	}
}

static size_t
b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i, o = 0;
	uint32_t v;

	(void)pthread_once(&b64_pair_once, b64_pair_init);
	for (i = 0; i + 2 < n; i += 3, o += 4) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		memcpy(out + o, b64_pair[v >> 12], 2);
		memcpy(out + o + 2, b64_pair[v & 4095], 2);
	}
	if (i < n) {
		v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64url[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	return o;
}

static int
b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict decode: the urlsafe alphabet, length a multiple of 4, '=' only as
 * the final one or two chars (Python's decoder also raises on bad padding;
 * it skips stray characters, which no signer produces: refused here).
 * Returns the decoded length or -1.
 */
static int
b64_decode(const char *s, size_t n, uint8_t *out)
{
	size_t i, o = 0, pad = 0;
	int a, b, c, d;

	if (n == 0 || n % 4 != 0)
		return -1;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	for (i = 0; i < n; i += 4) {
		a = b64_val((unsigned char)s[i]);
		b = b64_val((unsigned char)s[i + 1]);
		if (i + 4 == n && pad > 0) {
			c = pad == 2 ? 0 : b64_val((unsigned char)s[i + 2]);
			d = 0;
		} else {
			c = b64_val((unsigned char)s[i + 2]);
			d = b64_val((unsigned char)s[i + 3]);
		}
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -1;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		if (i + 4 == n && pad == 2)
			break;
		out[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
		if (i + 4 == n && pad == 1)
			break;
		out[o++] = (uint8_t)((c & 3) << 6 | d);
	}
	return (int)o;
}

/* ---- the decoded JSON: {"base_id": "...", "parent_id": "..."} ---- */

struct jp {
	const uint8_t *p, *end;
};

static void
j_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' ||
	    *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

/*
 * A JSON string (RFC 8259 section 7) decoded into buf[0..cap); non-ASCII
 * code points become 0x80, which no key or uuid matches. Returns the length
 * or -1 (malformed, or longer than cap: no key or uuid is that long).
 */
static int
j_string(struct jp *j, char *buf, size_t cap)
{
	size_t o = 0;
	unsigned cp;
	int i, d;
	uint8_t c;

	if (j->p >= j->end || *j->p != '"')
		return -1;
	j->p++;
	while (j->p < j->end) {
		c = *j->p++;
		if (c == '"')
			return (int)o;
		if (o == cap || c < 0x20)
			return -1;	/* too long / raw control character */
		if (c != '\\') {
			buf[o++] = (char)c;
			continue;
		}
		if (j->p >= j->end)
			return -1;
		switch (c = *j->p++) {
		case '"': case '\\': case '/':
			buf[o++] = (char)c;
			break;
		case 'b': buf[o++] = '\b'; break;
		case 'f': buf[o++] = '\f'; break;
		case 'n': buf[o++] = '\n'; break;
		case 'r': buf[o++] = '\r'; break;
		case 't': buf[o++] = '\t'; break;
		case 'u':
			if (j->end - j->p < 4)
				return -1;
			for (cp = 0, i = 0; i < 4; i++) {
				c = j->p[i];
				d = c >= '0' && c <= '9' ? c - '0' :
				    c >= 'a' && c <= 'f' ? c - 'a' + 10 :
				    c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
				if (d < 0)
					return -1;
				cp = cp << 4 | (unsigned)d;
			}
			j->p += 4;
			buf[o++] = cp < 0x80 ? (char)cp : (char)0x80;
			break;
		default:
			return -1;
		}
	}
	return -1;
}

/* A uuid-shaped value into dst (NUL-terminated), id into id. 0 / -1. */
static int
take_uuid(const char *v, int len, char dst[TRACE_UUID_LEN + 1], uint8_t id[16])
{
	if (len != TRACE_UUID_LEN || trace_uuid_parse(v, (size_t)len, id) == -1)
		return -1;
	memcpy(dst, v, TRACE_UUID_LEN);
	dst[TRACE_UUID_LEN] = '\0';
	return 0;
}

/*
 * WsgiMiddleware._trace_is_valid: an object whose keys are base_id
 * (required) and parent_id (optional), nothing else; a repeated key keeps
 * the last value, as Python's json does. Values must be uuid strings (what
 * osprofiler makes; tracebridge needs the 128-bit id). 0 / -1.
 */
static int
parse_info_json(const uint8_t *s, size_t n, struct tb_trace_ctx *out)
{
	struct jp j = { s, s + n };
	char key[16], val[64];
	uint8_t base[16], parent[16];
	int kl, vl, have_base = 0, have_parent = 0;

	j_ws(&j);
	if (j.p >= j.end || *j.p++ != '{')
		return -1;
	j_ws(&j);
	if (j.p < j.end && *j.p == '}')
		return -1;		/* {}: no base_id */
	for (;;) {
		j_ws(&j);
		if ((kl = j_string(&j, key, sizeof(key))) < 0)
			return -1;
		j_ws(&j);
		if (j.p >= j.end || *j.p++ != ':')
			return -1;
		j_ws(&j);
		if ((vl = j_string(&j, val, sizeof(val))) < 0)
			return -1;	/* also: a non-string value */
		if (kl == 7 && memcmp(key, "base_id", 7) == 0) {
			if (take_uuid(val, vl, out->osp_base_id, base) == -1)
				return -1;
			have_base = 1;
		} else if (kl == 9 && memcmp(key, "parent_id", 9) == 0) {
			if (take_uuid(val, vl, out->osp_parent_id, parent) == -1)
				return -1;
			have_parent = 1;
		} else {
			return -1;	/* any other key: every service ignores it */
		}
		j_ws(&j);
		if (j.p >= j.end)
			return -1;
		if (*j.p == ',') {
			j.p++;
			continue;
		}
		if (*j.p++ != '}')
			return -1;
		break;
	}
	j_ws(&j);
	if (j.p != j.end || !have_base || trace_id_is_zero(base))
		return -1;
	memcpy(out->trace_id, base, 16);
	out->has_trace_id = 1;
	if (have_parent) {
		out->span_id = trace_uuid_low64(parent);
		out->has_span_id = out->span_id != 0;
	} else {
		out->osp_parent_id[0] = '\0';
	}
	/* a valid signature: the key holder wants this traced */
	out->sampled = TRACE_SAMPLED_YES;
	return 0;
}

int
trace_osprofiler_unpack(const void *osp, const char *info, size_t info_len,
    const char *hmac, size_t hmac_len, struct tb_trace_ctx *out)
{
	const struct osp_keys *ks = osp;
	uint8_t want[SHA1_LEN], got[SHA1_LEN], json[JSON_MAX];
	unsigned match = 0;
	size_t i;
	int jl;

	if (ks == NULL || info_len == 0 || info_len > INFO_MAX)
		return -1;
	/* hexdigest() is lowercase; Python compares the strings */
	if (trace_hex_decode(hmac, hmac_len, 1, want, SHA1_LEN) == -1)
		return -1;
	/* every key, no early exit: timing says nothing about which */
	for (i = 0; i < ks->n; i++) {
		hmac_sha1(&ks->k[i], info, info_len, got);
		match |= CRYPTO_memcmp(got, want, SHA1_LEN) == 0;
	}
	if (!match)
		return -1;
	if ((jl = b64_decode(info, info_len, json)) < 0)
		return -1;
	return parse_info_json(json, (size_t)jl, out) == 0 ? 1 : -1;
}

size_t
trace_osprofiler_sign(const void *osp, const char *base_id,
    const char *parent_id, char *info, size_t infolen, char hmac_hex[41])
{
	const struct osp_keys *ks = osp;
	uint8_t json[13 + TRACE_UUID_LEN + 17 + TRACE_UUID_LEN + 2];
	uint8_t mac[SHA1_LEN];
	size_t bl = strlen(base_id), pl = strlen(parent_id), jl = 0, il;

	if (ks == NULL || bl > TRACE_UUID_LEN || pl > TRACE_UUID_LEN)
		return 0;
	/* json.dumps(dict) with its default ", " and ": " separators */
	memcpy(json, "{\"base_id\": \"", 13);
	jl = 13;
	memcpy(json + jl, base_id, bl);
	jl += bl;
	memcpy(json + jl, "\", \"parent_id\": \"", 17);
	jl += 17;
	memcpy(json + jl, parent_id, pl);
	jl += pl;
	memcpy(json + jl, "\"}", 2);
	jl += 2;
	il = (jl + 2) / 3 * 4;
	if (infolen < il + 1)
		return 0;
	b64_encode(json, jl, info);
	info[il] = '\0';
	hmac_sha1(&ks->k[0], info, il, mac);
	trace_hex_encode(mac, SHA1_LEN, hmac_hex);
	hmac_hex[40] = '\0';
	return il;
}

static int
osp_extract(const void *arg, const struct tb_hdr *hdrs, size_t n,
    struct tb_trace_ctx *out)
{
	const char *info, *mac;
	size_t il, ml;
	int i, h;

	i = TRACE_FIND(hdrs, n, 0, "x-trace-info");
	h = TRACE_FIND(hdrs, n, 0, "x-trace-hmac");
	if (i < 0 && h < 0)
		return 0;
	if (i < 0 || h < 0)
		return -1;	/* unsigned, or a signature without data */
	/* repeated: a WSGI server joins them with ',': never valid */
	if (TRACE_FIND(hdrs, n, (size_t)i + 1, "x-trace-info") >= 0 ||
	    TRACE_FIND(hdrs, n, (size_t)h + 1, "x-trace-hmac") >= 0)
		return -1;
	trace_hdr_trim(&hdrs[i], &info, &il);
	trace_hdr_trim(&hdrs[h], &mac, &ml);
	return trace_osprofiler_unpack(arg, info, il, mac, ml, out);
}

static int
osp_inject(const void *arg, const struct trace_req *tr,
    struct tb_hdr_sink *out)
{
	char info[256], mac[41];
	size_t il;

	if ((il = trace_osprofiler_sign(arg, tr->base_id, tr->span_uuid, info,
	    sizeof(info), mac)) == 0)
		return -1;
	if (trace_emit(out, "X-Trace-Info", info, il) == -1 ||
	    trace_emit(out, "X-Trace-HMAC", mac, 40) == -1)
		return -1;
	return 0;
}

static int
osp_owns(const struct tb_hdr *h)
{
	return TRACE_NAME_IS(h, "x-trace-info") || TRACE_NAME_IS(h, "x-trace-hmac");
}

const struct trace_codec trace_codec_osprofiler = {
	.name = "osprofiler",
	.id = TRACE_F_OSPROFILER,
	.extract = osp_extract,
	.inject = osp_inject,
	.owns_header = osp_owns,
};
