/*
 * trace.h: the trace context model, the codec interface every wire format
 * implements (one file per format: trace_<name>.c), and the per-request
 * driver the proxy calls.
 *
 * Flow for one request (all pure over the parsed head, no I/O, no
 * allocation):
 *
 *   trace_extract(conf, hdrs, n, &tr)      read incoming context, mark the
 *                                          trace headers to drop, make ids
 *   (sampling sets tr.sampled / tr.debug, or trace_req_default_decision())
 *   trace_inject(conf, &tr, &sink)         headers for the upstream request
 *   trace_response_headers(conf, &tr, &s)  Server-Timing, X-Trace-Id
 *
 * The proxy forwards every incoming header i with !trace_req_drops(&tr, i)
 * and then appends what trace_inject emitted.
 *
 * Id mapping (osprofiler's own drivers, see reference/osprofiler.md): a
 * 128-bit trace id is the base_id uuid; a 64-bit id is the low 64 bits of a
 * uuid whose high 64 bits are zero.
 */
#ifndef TB_TRACE_H
#define TB_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "hdr.h"

#define TRACE_UUID_LEN		36	/* 8-4-4-4-12, without NUL */
#define TRACE_TRACESTATE_MAX	512	/* W3C: propagate at least 512 chars */
#define TRACE_TRACESTATE_MEMBERS 32	/* W3C L2 list ABNF: at most 32 */
#define TRACE_BAGGAGE_MAX	2048
#define TRACE_MAX_HDRS		256	/* = H1_MAX_HEADERS_CAP */

/* tb_trace_ctx.sampled */
#define TRACE_SAMPLED_DEFER	(-1)	/* no decision in the headers */
#define TRACE_SAMPLED_NO	0
#define TRACE_SAMPLED_YES	1

struct trace_codec;

/*
 * One incoming trace context, as a codec read it. Fixed size, no pointers
 * into the request: it may outlive the head buffer.
 */
struct tb_trace_ctx {
	uint8_t trace_id[16];		/* big-endian; valid when has_trace_id */
	uint64_t span_id;		/* the caller's span; valid when has_span_id */
	unsigned has_trace_id:1;	/* 0: a sampling decision without ids (b3: 0) */
	unsigned has_span_id:1;		/* 0: trace id kept, no caller span */
	unsigned debug:1;		/* B3 debug / Jaeger 0x02; implies sampled */
	unsigned random:1;		/* W3C L2 random-trace-id flag (0x02) */
	int sampled;			/* TRACE_SAMPLED_* */
	const struct trace_codec *format;	/* which codec produced it */
	/* osprofiler only: base_id and parent_id exactly as received (uuid
	 * shape, either case), so downstream keeps the caller's Redis key. */
	char osp_base_id[TRACE_UUID_LEN + 1];
	char osp_parent_id[TRACE_UUID_LEN + 1];	/* "" when absent */
	/* W3C tracestate, validated and normalised: "k=v,k=v" (no OWS) */
	char tracestate[TRACE_TRACESTATE_MAX + 1];
	size_t tracestate_len;
	/* baggage in W3C form "k=v,k=v" (filled by the driver, not codecs) */
	char baggage[TRACE_BAGGAGE_MAX + 1];
	size_t baggage_len;
};

struct trace_req;

/*
 * A wire format. All functions are pure over their arguments.
 *
 * extract: read hdrs[0..n); returns 1 and fills *out (which the caller has
 *   zeroed, sampled = TRACE_SAMPLED_DEFER) when a valid context is present,
 *   0 when none of the format's headers are, -1 when they are present but
 *   invalid. arg is the codec's configuration (only osprofiler has one: its
 *   key state); NULL for the others.
 * inject: emit the format's headers for tr (its trace id, tr->span_id as the
 *   parent, tr->sampled / tr->debug); returns 0, or -1 when the sink refused.
 * owns_header: 1 if h belongs to this format (removed before forwarding).
 */
struct trace_codec {
	const char *name;
	unsigned id;			/* index in the codec table, bit in masks */
	int (*extract)(const void *arg, const struct tb_hdr *hdrs, size_t n,
	    struct tb_trace_ctx *out);
	int (*inject)(const void *arg, const struct trace_req *tr,
	    struct tb_hdr_sink *out);
	int (*owns_header)(const struct tb_hdr *h);
};

/* codec ids (trace_codecs[] order) */
#define TRACE_F_OSPROFILER	0
#define TRACE_F_W3C		1
#define TRACE_F_B3		2	/* extract: single + multi; inject: single "b3" */
#define TRACE_F_B3MULTI		3	/* same extract; inject: X-B3-* headers */
#define TRACE_F_JAEGER		4
#define TRACE_F_XRAY		5
#define TRACE_F_DATADOG		6
#define TRACE_F_GCP		7
#define TRACE_F_OT		8
#define TRACE_F_COUNT		9

extern const struct trace_codec trace_codec_osprofiler, trace_codec_w3c,
    trace_codec_b3, trace_codec_b3multi, trace_codec_jaeger, trace_codec_xray,
    trace_codec_datadog, trace_codec_gcp, trace_codec_ot;

/* The codec table, indexed by TRACE_F_*. */
extern const struct trace_codec *const trace_codecs[TRACE_F_COUNT];

/* The codec called name (any case), or NULL. */
const struct trace_codec *trace_codec_by_name(const char *name);

/* ---- per-request state (embedded in the proxy's request; no allocation) ---- */

/* trace_req.flags */
#define TRACE_R_HAS_REQUEST_ID	0x01	/* client sent X-OpenStack-Request-ID */
#define TRACE_R_NEW_TRACE	0x02	/* no incoming trace id: made one here */
#define TRACE_R_OSP_FORGED	0x04	/* osprofiler headers present, not valid */

struct trace_req {
	struct tb_trace_ctx ctx;	/* the winning context (trace id always set
					 * after trace_extract: new when none) */
	const struct trace_codec *from;	/* winning codec, NULL if none */
	int sampled;			/* the decision: -1 until made, then 0/1 */
	int debug;
	unsigned flags;			/* TRACE_R_* */
	unsigned n_disagree;		/* other formats with another trace id */
	unsigned invalid;		/* 1u << TRACE_F_*: present but invalid
					 * (for a debug log line) */
	char base_id[TRACE_UUID_LEN + 1];	/* osprofiler base_id downstream */
	char span_uuid[TRACE_UUID_LEN + 1];	/* tracebridge's edge span */
	uint64_t span_id;		/* its low 64 bits: the downstream parent */
	char parent_uuid[TRACE_UUID_LEN + 1];	/* the edge span's parent (for
						 * the span record): caller span,
						 * or base_id for a new root */
	uint64_t drop[TRACE_MAX_HDRS / 64];	/* bit i: do not forward hdrs[i] */
};

/* 1 if incoming header i must not be forwarded. */
static inline int
trace_req_drops(const struct trace_req *tr, size_t i)
{
	return i < TRACE_MAX_HDRS && (tr->drop[i / 64] >> (i % 64)) & 1;
}

struct trace_conf;

/*
 * Build the immutable tracing configuration (shared read-only by all worker
 * threads). extract / inject: codec names, extract in precedence order;
 * n == 0 selects the default lists (extract: osprofiler, w3c, b3, jaeger,
 * xray, datadog, gcp, ot; inject: osprofiler, w3c). hmac_keys: the
 * [profiler] hmac_keys, the first one signs; the key bytes are turned into
 * HMAC state here and never kept or logged in clear elsewhere. Returns NULL
 * with a message in err (never containing a key) on an unknown name or a
 * missing key. The caller frees the result with trace_conf_free(); it does
 * not keep the argument arrays.
 */
struct trace_conf *trace_conf_new(const char *const *extract, size_t n_extract,
    const char *const *inject, size_t n_inject,
    const char *const *hmac_keys, size_t n_keys,
    int keep_foreign, int server_timing, int response_trace_id,
    int request_id_from_trace, char *err, size_t errlen);
void trace_conf_free(struct trace_conf *conf);

/* The osprofiler key state inside conf (the arg its codec takes). */
const void *trace_conf_osprofiler(const struct trace_conf *conf);

/*
 * Read the incoming context from hdrs[0..n) into *tr (fully overwritten):
 * the first valid format of the extract list wins; other formats carrying
 * another trace id are counted; every header of a known format is marked
 * for dropping (unless keep_foreign and not re-injected), and invalid or
 * unsigned osprofiler headers always. Then the ids are made: the trace id
 * (new uuid4 when none came in), base_id, the edge span uuid4 and its parent.
 * tr->sampled is the incoming decision or -1. Headers past TRACE_MAX_HDRS
 * are neither read nor dropped (the framing layer caps heads below that).
 */
void trace_extract(const struct trace_conf *conf, const struct tb_hdr *hdrs,
    size_t n, struct trace_req *tr);

/* Fallback decision: keep the incoming one, else sample_new. */
void trace_req_default_decision(struct trace_req *tr, int sample_new);

/*
 * Emit the downstream trace headers for a decided tr (tr->sampled 0 or 1):
 * every inject format, osprofiler only when sampled, baggage, and
 * X-OpenStack-Request-ID: req-<base_id> when configured and the client sent
 * none. Returns 0, or -1 when the sink refused a header.
 */
int trace_inject(const struct trace_conf *conf, const struct trace_req *tr,
    struct tb_hdr_sink *out);

/* Emit Server-Timing and X-Trace-Id for the client response as configured. */
int trace_response_headers(const struct trace_conf *conf,
    const struct trace_req *tr, struct tb_hdr_sink *out);

/*
 * Prometheus text lines for the process-wide trace counters into buf
 * (always NUL-terminated when len > 0). Returns the length the full text
 * needs, like snprintf.
 */
size_t trace_metrics_format(char *buf, size_t len);

/* ---- helpers shared by the codecs (trace.c) ---- */

/* Value of h with surrounding SP/HTAB removed (hdr.h promises it; cheap). */
void trace_hdr_trim(const struct tb_hdr *h, const char **v, size_t *len);

/*
 * The next member of a comma-separated list (tracestate, baggage, Datadog
 * tags) from *p, which moves past it and its comma: 1 with the member in
 * *m / *mlen (OWS kept when trim is 0, cut when 1, possibly empty), 0 at
 * end.
 */
int trace_list_next(const char **p, const char *end, int trim,
    const char **m, size_t *mlen);

/* Exactly 2*nbytes hex digits (lowercase only if lc) into out. 0 / -1. */
int trace_hex_decode(const char *s, size_t len, int lc, uint8_t *out,
    size_t nbytes);

/* 1..16 hex digits (lowercase only if lc) into *out. 0 / -1. */
int trace_hex_u64(const char *s, size_t len, int lc, uint64_t *out);

/* 1..32 hex digits, left-padded with zeros into a 128-bit id. 0 / -1. */
int trace_hex_id128(const char *s, size_t len, int lc, uint8_t out[16]);

/* Unsigned decimal, digits only, no overflow past 2^64-1. 0 / -1. */
int trace_dec_u64(const char *s, size_t len, uint64_t *out);

/* Lowercase hex of in[0..n) into out (2n chars, no NUL). */
void trace_hex_encode(const uint8_t *in, size_t n, char *out);

/* Decimal of v into out (no NUL); returns the length (<= 20). */
size_t trace_dec_encode(uint64_t v, char *out);

/* 1 if the 16 bytes are all zero. */
int trace_id_is_zero(const uint8_t id[16]);

uint64_t trace_be64(const uint8_t *p);
void trace_put_be64(uint8_t *p, uint64_t v);

/* 128-bit id <-> uuid text "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (out: 37
 * bytes incl. NUL). Parsing accepts either case; 0 / -1. */
void trace_uuid_format(const uint8_t id[16], char out[TRACE_UUID_LEN + 1]);
int trace_uuid_parse(const char *s, size_t len, uint8_t id[16]);

/* A 64-bit span id as osprofiler's uuid (high 64 bits zero). */
void trace_span_uuid_format(uint64_t span, char out[TRACE_UUID_LEN + 1]);

/* A 64-bit id from a uuid: its low 64 bits (osprofiler shorten_id). */
uint64_t trace_uuid_low64(const uint8_t id[16]);

/* out->add with a NUL-terminated name; 0 / -1. */
int trace_emit(struct tb_hdr_sink *out, const char *name, const char *v,
    size_t len);

/*
 * Emit each baggage member of ctx as "<prefix><key>: <value>" (Jaeger
 * uberctx-, OT ot-baggage-); members with properties keep only key=value.
 */
int trace_baggage_emit(const struct tb_trace_ctx *ctx, const char *prefix,
    struct tb_hdr_sink *out);

/*
 * ASCII case-insensitive compare of n bytes, lit being lowercase. Inline
 * with the literal's length known at compile time: name compares were most
 * of the per-request cost through strlen + strncasecmp.
 */
static inline int
trace_lceq(const char *s, const char *lit, size_t n)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			c += 32;
		if (c != (unsigned char)lit[i])
			return 0;
	}
	return 1;
}

/* 1 if the name of h is the lowercase literal lit (any case on the wire). */
#define TRACE_NAME_IS(h, lit)						\
	((h)->name_len == sizeof(lit) - 1 &&				\
	    trace_lceq((h)->name, (lit), sizeof(lit) - 1))

/* 1 if the name of h starts with the lowercase literal lit and is longer. */
#define TRACE_NAME_HAS_PREFIX(h, lit)					\
	((h)->name_len > sizeof(lit) - 1 &&				\
	    trace_lceq((h)->name, (lit), sizeof(lit) - 1))

/* Trimmed value of the first header named lit (lowercase), or NULL. */
#define TRACE_VALUE(hdrs, n, lit, lenp)					\
	trace_value((hdrs), (n), (lit), sizeof(lit) - 1, (lenp))

const char *trace_value(const struct tb_hdr *hdrs, size_t n, const char *lit,
    size_t litlen, size_t *len);

/* Index of the first header at or after from named lit, or -1. */
#define TRACE_FIND(hdrs, n, from, lit)					\
	trace_find((hdrs), (n), (from), (lit), sizeof(lit) - 1)

static inline int
trace_find(const struct tb_hdr *hdrs, size_t n, size_t from, const char *lit,
    size_t len)
{
	size_t i;

	for (i = from; i < n; i++)
		if (hdrs[i].name_len == len && trace_lceq(hdrs[i].name, lit, len))
			return (int)i;
	return -1;
}

/* n bytes from the per-thread CSPRNG-seeded buffer (RAND_bytes refills). */
void trace_random(uint8_t *out, size_t n);

/* A fresh uuid4. */
void trace_uuid4(uint8_t id[16]);

/* ---- osprofiler signing, exposed for the tests and tb_trace_tool ---- */

/*
 * Sign: X-Trace-Info text of {"base_id": base_id, "parent_id": parent_id}
 * (both uuid text, NUL-terminated) into info (NUL-terminated, returns its
 * length, or 0 if infolen is too small) and hmac into hmac_hex[41], with
 * the first key of the state.
 */
size_t trace_osprofiler_sign(const void *osp, const char *base_id,
    const char *parent_id, char *info, size_t infolen, char hmac_hex[41]);

/*
 * Verify and unpack: 1 valid (ctx filled as extract does), -1 not.
 * Exposed for the fuzzer and the tool.
 */
int trace_osprofiler_unpack(const void *osp, const char *info, size_t info_len,
    const char *hmac, size_t hmac_len, struct tb_trace_ctx *out);

/* Key state alone (tool, fuzzer); NULL on error. Free with the _free. */
void *trace_osprofiler_keys_new(const char *const *keys, size_t n);
void trace_osprofiler_keys_free(void *osp);

#endif
