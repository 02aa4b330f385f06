/*
 * h1.h: strict HTTP/1.1 message framing (RFC 9112), pure: no I/O, no allocation.
 *
 * The head parser runs over a contiguous buffer holding the start of a message
 * and either finds a complete head (start line + fields + empty line) or asks
 * for more. The parsed fields point into that buffer, so the caller keeps it
 * unchanged while it uses the h1_msg.
 *
 * Return convention (STYLE.md habit 2), for every parse function here:
 *   > 0   bytes consumed (the head length, including the final CRLF CRLF)
 *     0   need more input
 *    -1   invalid: m->err_status holds the HTTP status to answer (400, 414,
 *         431, 501, 502 for a bad response), m->err a constant reason string,
 *         m->err_off the byte offset where the problem was seen
 *    -2   a limit was hit (head longer than max_head_bytes, more than
 *         max_headers fields, start line longer than max_line): err_status 431 or 414
 */
#ifndef TB_H1_H
#define TB_H1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hdr.h"

/* Hard ceiling on fields in one head; [listener] max_headers may only lower it. */
#define H1_MAX_HEADERS_CAP 256

enum h1_body {
	H1_BODY_NONE = 0,	/* no body at all (GET without CL/TE, HEAD/1xx/204/304 responses, CL: 0) */
	H1_BODY_LENGTH,		/* exactly content_length bytes */
	H1_BODY_CHUNKED,	/* Transfer-Encoding: chunked (final coding) */
	H1_BODY_EOF,		/* response delimited by connection close (RFC 9112 6.3 rule 8) */
};

/* flags (bitmask) set by the head parser from the fields it saw */
#define H1_F_CONN_CLOSE		0x0001	/* Connection: close, or HTTP/1.0 without keep-alive */
#define H1_F_CONN_KEEPALIVE	0x0002	/* Connection: keep-alive (matters for HTTP/1.0) */
#define H1_F_EXPECT_CONTINUE	0x0004	/* Expect: 100-continue (request) */
#define H1_F_UPGRADE		0x0008	/* an Upgrade field or Connection: upgrade */
#define H1_F_HAS_CL		0x0010	/* a Content-Length field was present */
#define H1_F_HAS_TE		0x0020	/* a Transfer-Encoding field was present */
#define H1_F_HAS_HOST		0x0040	/* a Host field was present */
#define H1_F_EXPECT_OTHER	0x0080	/* an Expect value other than 100-continue */

/* request-target forms (RFC 9112 3.2) */
enum h1_target {
	H1_TARGET_ORIGIN = 0,	/* "/path?query" */
	H1_TARGET_ABSOLUTE,	/* "http://authority/path?query" (http/https only) */
	H1_TARGET_AUTHORITY,	/* "host:port", CONNECT only */
	H1_TARGET_ASTERISK,	/* "*", OPTIONS only */
};

struct h1_limits {
	size_t max_head_bytes;	/* whole head incl. start line; over it: -2 / 431 */
	size_t max_line;	/* request line; over it: -2 / 414 */
	unsigned max_headers;	/* field count (<= H1_MAX_HEADERS_CAP); over it: -2 / 431 */
};

struct h1_msg {
	/* request line */
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	enum h1_target target_form;
	/*
	 * Absolute-form only: the authority without userinfo (uri-host
	 * [":" port], never empty) and what follows it, path-abempty
	 * ["?" query] (may be empty). Both point into the target.
	 */
	const char *authority;
	size_t authority_len;
	const char *path;
	size_t path_len;
	/* status line */
	int status;
	const char *reason;
	size_t reason_len;

	int version_minor;	/* HTTP/1.<version_minor>: 0 or 1 */
	struct tb_hdr hdrs[H1_MAX_HEADERS_CAP];
	size_t n_hdrs;

	enum h1_body body;
	uint64_t content_length;	/* valid when body == H1_BODY_LENGTH */
	unsigned flags;		/* H1_F_* */

	/* set when a parse function returns -1 or -2 */
	int err_status;
	const char *err;
	size_t err_off;
};

/*
 * Parse a request head. Strictness (each rejected with 400 unless noted):
 * method must be a token (RFC 9110 5.6.2); one SP between the three parts;
 * target non-empty, no CTLs/SP; version exactly "HTTP/1.0" or "HTTP/1.1"
 * (other HTTP/x.y: 505); lines end in CRLF (bare CR or bare LF: 400; NUL
 * anywhere: 400); field names are tokens with no whitespace before the colon
 * (RFC 9112 5.1); obs-fold (a line starting with SP/HTAB) is rejected (5.2);
 * field values have no CTL but HTAB; Content-Length must be 1*DIGIT, several
 * CL fields or comma lists must all agree (else 400), value at most
 * 2^63-1 like a chunk size (else 400, 502 in a response); Content-Length
 * together with Transfer-Encoding: 400 (6.1, smuggling);
 * Transfer-Encoding whose final coding is not "chunked": 501 for a request
 * (only "chunked" alone is accepted; any other coding list: 501);
 * request-target in origin-form, absolute-form with an http or https
 * scheme and a non-empty authority, authority-form for CONNECT, "*" for
 * OPTIONS, else 400 (RFC 9112 3.2); Host and the authority must be
 * uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2; a Host may be empty);
 * HTTP/1.1 without Host, more than one Host, or an invalid one: 400
 * (RFC 9112 3.2); a Connection field naming Host, Content-Length or
 * Transfer-Encoding: 400 (RFC 9110 7.6.1: never hop-by-hop for us).
 * On success, body is NONE, LENGTH or CHUNKED (never EOF for a request).
 */
int h1_parse_request(const char *buf, size_t len, const struct h1_limits *lim,
    struct h1_msg *m);

/*
 * Parse a response head. req_is_head: the request was HEAD (then no body).
 * 1xx, 204 and 304 have no body (RFC 9112 6.3 rules 1-2). A final
 * Transfer-Encoding of chunked gives CHUNKED; a TE whose final coding is not
 * chunked, or neither TE nor CL, gives EOF (read until close). Errors in a
 * response use err_status 502. Status must be 3 digits, 100..599.
 */
int h1_parse_response(const char *buf, size_t len, const struct h1_limits *lim,
    int req_is_head, struct h1_msg *m);

/*
 * Incremental chunked-body decoder (RFC 9112 7.1). It reads the framing
 * (chunk-size lines with optional extensions, the CRLF after each chunk's
 * data, the last-chunk and the trailer section) byte by byte, so it works
 * whatever the input split. Chunk data bytes themselves are never passed to
 * h1_chunk_parse: when state == H1_CHUNK_DATA the caller moves up to
 * c->remaining bytes by itself (zero-copy) and reports them with
 * h1_chunk_data(). The proxy forwards the raw bytes (framing included)
 * unchanged, so trailers pass through.
 *
 * Limits: chunk-size at most 16 hex digits and < 2^63 (else -1); a size line
 * (with extensions) longer than 4096 bytes is -1; a trailer section longer
 * than max_trailer_bytes is -2; trailer field lines are checked like header
 * lines (token name, no obs-fold, no bare CR/LF, no NUL).
 */
enum h1_chunk_state {
	H1_CHUNK_SIZE = 0,	/* reading hex digits of a chunk-size */
	H1_CHUNK_EXT,		/* after the size: BWS / ';' extensions until CR */
	H1_CHUNK_SIZE_LF,	/* saw CR of the size line, expect LF */
	H1_CHUNK_DATA,		/* caller moves c->remaining data bytes */
	H1_CHUNK_DATA_CR,	/* expect CR after chunk data */
	H1_CHUNK_DATA_LF,	/* expect LF after chunk data */
	H1_CHUNK_TRAILER,	/* at the start of a trailer line (or the final CRLF) */
	H1_CHUNK_TRAILER_LINE,	/* inside a trailer field line */
	H1_CHUNK_TRAILER_LF,	/* saw CR ending a trailer line, expect LF */
	H1_CHUNK_FINAL_LF,	/* saw CR of the empty line ending the message, expect LF */
	H1_CHUNK_DONE,		/* message complete; consumes nothing more */
};

struct h1_chunk {
	enum h1_chunk_state state;
	uint64_t remaining;	/* data bytes left in the current chunk */
	unsigned size_digits;	/* hex digits read for the current size */
	size_t line_len;	/* bytes of the current size/trailer line */
	size_t trailer_bytes;	/* bytes of trailer section so far */
	size_t max_trailer_bytes; /* 0 = 8192 */
	int saw_name_char;	/* trailer line: inside the name part */
	int in_value;		/* trailer line: past the colon */
	unsigned ext_state;	/* EXT: position in the chunk-ext grammar */
	const char *err;	/* reason on -1/-2 */
};

void h1_chunk_init(struct h1_chunk *c, size_t max_trailer_bytes);

/*
 * Consume framing bytes from p[0..len). Stops early when entering
 * H1_CHUNK_DATA (with remaining > 0), H1_CHUNK_TRAILER (after the
 * last-chunk line: the caller may hold the trailer section back until it
 * is whole, c->trailer_bytes of it parsed so far) or H1_CHUNK_DONE.
 * Returns the number
 * of bytes consumed (>= 0; 0 is normal when len == 0 or state is DATA/DONE),
 * -1 invalid, -2 limit hit (c->err says which).
 */
ssize_t h1_chunk_parse(struct h1_chunk *c, const char *p, size_t len);

/* The caller moved n (<= remaining) data bytes; moves to DATA_CR at zero. */
void h1_chunk_data(struct h1_chunk *c, uint64_t n);

/* Small helpers the proxy uses on parsed heads. */

/* 1 if the comma-separated list v[0..n) (RFC 9110 5.6.1) has the element
 * e[0..el), compared case-insensitively. */
int h1_list_has(const char *v, size_t n, const char *e, size_t el);

/* 1 if the Connection header(s) list token (case-insensitive), e.g. "close". */
int h1_connection_has(const struct h1_msg *m, const char *token);

/* 1 if header name is hop-by-hop for this message: one of Connection,
 * Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Connection,
 * or a name listed in a Connection header (RFC 9110 7.6.1). */
int h1_is_hop_by_hop(const struct h1_msg *m, const struct tb_hdr *h);

/*
 * 1 if a trailer field named n[0..l) must not be forwarded (RFC 9110
 * 6.5.1, 7.6.1): Content-Length, Transfer-Encoding, Trailer, Host,
 * Authorization, Proxy-Authorization, the names hop-by-hop in every
 * message (as h1_is_hop_by_hop), and those listed in conn[0..conn_len),
 * the message's Connection values joined by commas (NULL: none).
 */
int h1_trailer_forbidden(const char *n, size_t l, const char *conn,
    size_t conn_len);

/*
 * Copy the trailer section sec[0..len) (from the first trailer field line
 * through the final CRLF, as h1_chunk_parse accepted it) to out, which has
 * room for len bytes, without the fields h1_trailer_forbidden names (conn
 * as there). Returns the bytes written (the final CRLF at least); *dropped
 * (dropped may be NULL) counts the lines left out. Pure.
 */
size_t h1_trailer_filter(const char *sec, size_t len, const char *conn,
    size_t conn_len, char *out, unsigned *dropped);

/* Reason phrase for a status code we generate ("Bad Request"...). */
const char *h1_reason(int status);

#endif
