/*
 * h1_chunk.c: incremental chunked-body framing decoder (RFC 9112 7.1).
 *
 * Byte at a time over the framing only (size lines, CRLF after data, the
 * trailer section), so any split of the input gives the same result; the
 * chunk data itself is moved by the caller (see h1.h). Framing is a few
 * bytes per chunk, so the per-byte switch costs nothing measurable.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fmt.h"
#include "h1.h"

/* RFC 9112 7.1: chunk-size line bound; longer is an attack, not a client */
#define H1_CHUNK_MAX_LINE	4096
#define H1_CHUNK_MAX_DIGITS	16
#define H1_CHUNK_DEF_TRAILER	8192

/* positions in chunk-ext (RFC 9112 7.1.1), kept in c->ext_state */
enum h1_ext_state {
	X_BWS_SEMI = 0,	/* after size or a value: BWS, then ';' or CR */
	X_BWS_NAME,	/* after ';': BWS, then the name */
	X_NAME,		/* inside chunk-ext-name */
	X_BWS_EQ,	/* after the name: BWS, then '=', ';' or CR */
	X_BWS_VAL,	/* after '=': BWS, then token or quoted-string */
	X_TOKVAL,	/* inside a token value */
	X_QUOTED,	/* inside a quoted-string */
	X_QPAIR,	/* after a backslash inside a quoted-string */
};

/* tchar (RFC 9110 5.6.2) */
static int
is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
	    (ch >= 'A' && ch <= 'Z'))
		return 1;
	return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* field-value byte: HTAB, SP, VCHAR, obs-text (RFC 9110 5.5) */
static int
is_vbyte(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* Contract in h1.h; max_trailer_bytes 0 means 8192. */
void
h1_chunk_init(struct h1_chunk *c, size_t max_trailer_bytes)
{
	memset(c, 0, sizeof(*c));
	c->state = H1_CHUNK_SIZE;
	c->max_trailer_bytes = max_trailer_bytes ? max_trailer_bytes :
	    H1_CHUNK_DEF_TRAILER;
}

/* Contract in h1.h. */
void
h1_chunk_data(struct h1_chunk *c, uint64_t n)
{
	/* the caller moves at most remaining bytes (h1.h contract) */
	assert(c->state == H1_CHUNK_DATA && n <= c->remaining);
	if (c->state != H1_CHUNK_DATA || n > c->remaining)
		return;
	c->remaining -= n;
	if (c->remaining == 0)
		c->state = H1_CHUNK_DATA_CR;
}

/*
 * One byte of chunk-ext. Returns 0 to stay in EXT, 1 when the CR ending the
 * size line was seen, -1 on a grammar error.
 */
static int
ext_byte(struct h1_chunk *c, unsigned char ch)
{
	int ws = ch == ' ' || ch == '\t';

	switch ((enum h1_ext_state)c->ext_state) {
	case X_BWS_SEMI:
		if (ws)
			return 0;
		if (ch == ';') {
			c->ext_state = X_BWS_NAME;
			return 0;
		}
		return ch == '\r' ? 1 : -1;
	case X_BWS_NAME:
		if (ws)
			return 0;
		if (!is_tchar(ch))
			return -1;
		c->ext_state = X_NAME;
		return 0;
	case X_NAME:
	case X_BWS_EQ:
		if (c->ext_state == X_NAME && is_tchar(ch))
			return 0;
		if (ws) {
			c->ext_state = X_BWS_EQ;
			return 0;
		}
		if (ch == '=') {
			c->ext_state = X_BWS_VAL;
			return 0;
		}
		if (ch == ';') {
			c->ext_state = X_BWS_NAME;
			return 0;
		}
		return ch == '\r' ? 1 : -1;
	case X_BWS_VAL:
		if (ws)
			return 0;
		if (ch == '"') {
			c->ext_state = X_QUOTED;
			return 0;
		}
		if (!is_tchar(ch))
			return -1;
		c->ext_state = X_TOKVAL;
		return 0;
	case X_TOKVAL:
		if (is_tchar(ch))
			return 0;
		if (ws) {
			c->ext_state = X_BWS_SEMI;
			return 0;
		}
		if (ch == ';') {
			c->ext_state = X_BWS_NAME;
			return 0;
		}
		return ch == '\r' ? 1 : -1;
	case X_QUOTED:
		if (ch == '"') {
			c->ext_state = X_BWS_SEMI;
			return 0;
		}
		if (ch == '\\') {
			c->ext_state = X_QPAIR;
			return 0;
		}
		/*
		 * qdtext: no CR/LF/CTL, so a quoted CRLF can never hide a
		 * line end from us that another parser would honour.
		 */
		return is_vbyte(ch) ? 0 : -1;
	case X_QPAIR:
		if (!is_vbyte(ch))
			return -1;
		c->ext_state = X_QUOTED;
		return 0;
	}
	return -1;
}

/* Record why the body was refused (c->err); rc back. */
static int
chunk_fail(struct h1_chunk *c, int rc, const char *why)
{
	c->err = why;
	return rc;
}

/*
 * One byte of a size line (SIZE or EXT state). Returns 0 to go on, or -1
 * with c->err set.
 */
static int
size_byte(struct h1_chunk *c, unsigned char ch)
{
	int d, r;

	/* RFC 9112 7.1.1: extensions are bounded by the line length */
	if (++c->line_len > H1_CHUNK_MAX_LINE)
		return chunk_fail(c, -1, "chunk size line too long");
	if (c->state == H1_CHUNK_EXT) {
		r = ext_byte(c, ch);
		if (r < 0)
			return chunk_fail(c, -1,
			    "invalid chunk extension");
		if (r > 0)
			c->state = H1_CHUNK_SIZE_LF;
		return 0;
	}
	d = fmt_hexval(ch);
	if (d >= 0) {
		/* bounded like HAProxy: at most 16 digits, below 2^63 */
		if (++c->size_digits > H1_CHUNK_MAX_DIGITS)
			return chunk_fail(c, -1,
			    "too many chunk size digits");
		if (c->remaining >
		    ((UINT64_C(1) << 63) - 1 - (uint64_t)d) / 16)
			return chunk_fail(c, -1, "chunk size too large");
		c->remaining = c->remaining * 16 + (uint64_t)d;
		return 0;
	}
	/* RFC 9112 7.1: chunk-size = 1*HEXDIG */
	if (c->size_digits == 0)
		return chunk_fail(c, -1, "missing chunk size");
	if (ch == '\r') {
		c->state = H1_CHUNK_SIZE_LF;
	} else if (ch == ';' || ch == ' ' || ch == '\t') {
		c->state = H1_CHUNK_EXT;
		c->ext_state = ch == ';' ? X_BWS_NAME : X_BWS_SEMI;
	} else {
		/* a bare LF lands here too: RFC 9112 2.2 */
		return chunk_fail(c, -1,
		    "invalid character in chunk size");
	}
	return 0;
}

/*
 * One byte of the trailer section (TRAILER .. FINAL_LF states). Returns 0
 * to go on, 1 when the message is complete, -1/-2 with c->err set.
 */
static int
trailer_byte(struct h1_chunk *c, unsigned char ch)
{
	if (++c->trailer_bytes > c->max_trailer_bytes)
		return chunk_fail(c, -2, "trailer section too long");

	switch (c->state) {
	case H1_CHUNK_TRAILER:
		if (ch == '\r') {
			c->state = H1_CHUNK_FINAL_LF;
			return 0;
		}
		/* RFC 9112 5.2: obs-fold -> reject, in trailers too */
		if (ch == ' ' || ch == '\t')
			return chunk_fail(c, -1, "obs-fold in trailer");
		if (!is_tchar(ch))
			return chunk_fail(c, -1,
			    "invalid trailer field name");
		c->state = H1_CHUNK_TRAILER_LINE;
		c->saw_name_char = 1;
		c->in_value = 0;
		return 0;
	case H1_CHUNK_TRAILER_LINE:
		if (!c->in_value) {
			if (is_tchar(ch))
				return 0;
			/* RFC 9112 5.1: token, then ':' with no space */
			if (ch != ':')
				return chunk_fail(c, -1,
				    "invalid trailer field name");
			c->in_value = 1;
			c->saw_name_char = 0;
			return 0;
		}
		if (ch == '\r')
			c->state = H1_CHUNK_TRAILER_LF;
		else if (!is_vbyte(ch))
			/* RFC 9110 5.5: no CTL (nor bare LF) in a value */
			return chunk_fail(c, -1,
			    "invalid trailer field value");
		return 0;
	case H1_CHUNK_TRAILER_LF:
		/* RFC 9112 2.2: CR must be followed by LF */
		if (ch != '\n')
			return chunk_fail(c, -1, "bare CR in trailer");
		c->state = H1_CHUNK_TRAILER;
		c->in_value = 0;
		return 0;
	case H1_CHUNK_FINAL_LF:
		if (ch != '\n')
			return chunk_fail(c, -1,
			    "bare CR ending chunked body");
		c->state = H1_CHUNK_DONE;
		return 1;
	default:
		break;
	}
	assert(0 && "trailer_byte outside the trailer states");
	return -1;
}

/* Contract in h1.h. p may be NULL when len is 0. */
ssize_t
h1_chunk_parse(struct h1_chunk *c, const char *p, size_t len)
{
	size_t i;
	int r;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		switch (c->state) {
		case H1_CHUNK_SIZE:
		case H1_CHUNK_EXT:
			if (size_byte(c, ch) < 0)
				return -1;
			break;
		case H1_CHUNK_SIZE_LF:
			/* RFC 9112 2.2: CR must be followed by LF */
			if (ch != '\n')
				return chunk_fail(c, -1,
				    "bare CR in chunk size line");
			c->line_len = 0;
			if (c->remaining == 0) {
				/* last-chunk: the trailer section follows; stop
				 * so the caller can hold it whole (h1.h) */
				c->state = H1_CHUNK_TRAILER;
				return (ssize_t)(i + 1);
			}
			c->state = H1_CHUNK_DATA;
			return (ssize_t)(i + 1);
		case H1_CHUNK_DATA:
			/* data bytes are the caller's to move */
			return (ssize_t)i;
		case H1_CHUNK_DATA_CR:
			/* RFC 9112 7.1: chunk-data is followed by CRLF */
			if (ch != '\r')
				return chunk_fail(c, -1,
				    "missing CRLF after chunk data");
			c->state = H1_CHUNK_DATA_LF;
			break;
		case H1_CHUNK_DATA_LF:
			if (ch != '\n')
				return chunk_fail(c, -1,
				    "missing CRLF after chunk data");
			c->state = H1_CHUNK_SIZE;
			c->remaining = 0;
			c->size_digits = 0;
			c->line_len = 0;
			break;
		case H1_CHUNK_TRAILER:
		case H1_CHUNK_TRAILER_LINE:
		case H1_CHUNK_TRAILER_LF:
		case H1_CHUNK_FINAL_LF:
			r = trailer_byte(c, ch);
			if (r < 0)
				return r;
			if (r > 0)
				return (ssize_t)(i + 1);
			break;
		case H1_CHUNK_DONE:
			return (ssize_t)i;
		}
	}
	return (ssize_t)i;
}

/*
 * Contract in h1.h. The section is what h1_chunk_parse accepted, so every
 * line is "name:value" CRLF and the last one is the empty CRLF; a line
 * without its CRLF ends the walk (never for such input) rather than pass
 * unchecked bytes on.
 */
size_t
h1_trailer_filter(const char *sec, size_t len, const char *conn,
    size_t conn_len, char *out, unsigned *dropped)
{
	const char *p = sec, *end = sec + len, *eol, *colon;
	size_t n = 0, ll;

	if (dropped != NULL)
		*dropped = 0;
	while (p < end && (eol = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		ll = (size_t)(eol + 1 - p);
		colon = memchr(p, ':', ll);
		if (colon != NULL && h1_trailer_forbidden(p, (size_t)(colon - p),
		    conn, conn_len)) {
			if (dropped != NULL)
				(*dropped)++;
		} else {
			memcpy(out + n, p, ll);
			n += ll;
		}
		p = eol + 1;
	}
	return n;
}
