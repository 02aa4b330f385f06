/*
 * h1.c: strict HTTP/1.1 head parsing (RFC 9112) and the helpers the proxy
 * uses on parsed heads. Pure: no I/O, no allocation, one forward pass over
 * the buffer with a byte-class table instead of per-byte function calls.
 *
 * The parser never reads at or past buf + len. It bounds the scan to
 * max_head_bytes (and the request line to max_line) before it looks at a
 * byte, so an endless headless stream costs at most max_head_bytes of work
 * and then gets -2 (STYLE.md habit 3).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "fmt.h"
#include "h1.h"

/* Defaults for a zero limit, so a zeroed struct h1_limits is still safe. */
#define H1_DEF_MAX_HEAD		65536
#define H1_DEF_MAX_LINE		8192

/* byte classes, as bits of h1_cls[] */
#define C_TCHAR	0x01	/* tchar (RFC 9110 5.6.2) */
#define C_VALUE	0x02	/* field-value: HTAB SP VCHAR obs-text (RFC 9110 5.5) */
#define C_TARGET 0x04	/* request-target byte: VCHAR or obs-text, no SP/CTL */

/*
 * Filled at compile time so no initialisation race exists between worker
 * threads. Rows are 16 bytes: 0x00-0x0f, 0x10-0x1f, ...
 */
#define T	(C_TCHAR | C_VALUE | C_TARGET)
#define V	(C_VALUE | C_TARGET)
#define O	(C_VALUE | C_TARGET)	/* obs-text */
static const unsigned char h1_cls[256] = {
	/* 0x00: CTLs; only HTAB (0x09) may appear in a field value */
	0, 0, 0, 0, 0, 0, 0, 0, 0, C_VALUE, 0, 0, 0, 0, 0, 0,
	/* 0x10 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x20:  SP      !  "  #  $  %  &  '  (  )  *  +  ,  -  .  / */
	C_VALUE, T, V, T, T, T, T, T, V, V, T, T, V, T, T, V,
	/* 0x30: 0-9 : ; < = > ? */
	T, T, T, T, T, T, T, T, T, T, V, V, V, V, V, V,
	/* 0x40: @ A-O */
	V, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,
	/* 0x50: P-Z [ \ ] ^ _ */
	T, T, T, T, T, T, T, T, T, T, T, V, V, V, T, T,
	/* 0x60: ` a-o */
	T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,
	/* 0x70: p-z { | } ~ DEL */
	T, T, T, T, T, T, T, T, T, T, T, V, T, V, T, 0,
	/* 0x80-0xff: obs-text */
	O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
};
#undef T
#undef V
#undef O

#define CLS(c, bit)	(h1_cls[(unsigned char)(c)] & (bit))

/*
 * Eight bytes at a time over long runs (values, targets): nonzero when any
 * byte of x is below lim (lim <= 0x80) or is DEL. Exact as a yes/no answer;
 * a "yes" only sends the caller back to the byte loop, which decides.
 */
#define SWAR_ONES	UINT64_C(0x0101010101010101)
#define SWAR_HIGHS	UINT64_C(0x8080808080808080)
static inline uint64_t
swar_stop(uint64_t x, unsigned lim)
{
	uint64_t d = x ^ (SWAR_ONES * 0x7f);

	return (((x - SWAR_ONES * lim) & ~x) | ((d - SWAR_ONES) & ~d)) &
	    SWAR_HIGHS;
}

/* Skip whole words of bytes >= lim that are not DEL; p ends at the word
 * holding the first stop byte or within 8 bytes of end. */
static inline const char *
swar_skip(const char *p, const char *end, unsigned lim)
{
	uint64_t x;

	while (end - p >= 8) {
		memcpy(&x, p, 8);
		if (swar_stop(x, lim))
			break;
		p += 8;
	}
	return p;
}

/* What the field pass collected for the body-length decision. */
struct h1_scan {
	int is_req;
	unsigned n_host;
	unsigned n_codings;	/* transfer codings seen over all TE fields */
	unsigned n_chunked;	/* of which "chunked" */
	int last_chunked;	/* the final coding so far is chunked */
};

/* Record an error where it was seen (h1.h: err_status/err/err_off); rc back. */
static int
fail(struct h1_msg *m, int rc, int status, const char *why, const char *buf,
    const char *at)
{
	m->err_status = status;
	m->err = why;
	m->err_off = (size_t)(at - buf);
	return rc;
}

/*
 * Case-insensitive compare of s[0..n) with the lower-case lit[0..litn).
 * The first-letter test (lit starts with a letter, so | 0x20 folds case)
 * spares a libc call for most fields of the same length.
 */
static int
eq_lc(const char *s, size_t n, const char *lit, size_t litn)
{
	return n == litn && (n == 0 || (s[0] | 0x20) == lit[0]) &&
	    strncasecmp(s, lit, n) == 0;
}

#define EQ_LIT(s, n, lit)	eq_lc((s), (n), lit, sizeof(lit) - 1)

/*
 * Walk the comma-separated list in v[0..n) (RFC 9110 5.6.1), calling back
 * nothing: the caller loops with next_elem. Returns 1 and sets *e, *el to the
 * next element (OWS trimmed, may be empty), 0 at the end.
 */
static int
next_elem(const char *v, size_t n, size_t *pos, const char **e, size_t *el)
{
	size_t i = *pos, s, t;

	if (i > n)
		return 0;
	while (i < n && (v[i] == ' ' || v[i] == '\t'))
		i++;
	s = i;
	while (i < n && v[i] != ',')
		i++;
	t = i;
	while (t > s && (v[t - 1] == ' ' || v[t - 1] == '\t'))
		t--;
	*e = v + s;
	*el = t - s;
	*pos = i + 1;	/* past the comma; > n after the last element */
	return 1;
}

/* ---- authorities: Host and absolute-form targets ---- */

static int
is_digit(unsigned char c)
{
	return (unsigned)(c - '0') < 10u;
}

/* unreserved / sub-delims (RFC 3986 2.3, 2.2): a reg-name byte, as is
 * pct-encoded, which the callers take apart themselves */
static int
is_regname(unsigned char c)
{
	return (unsigned)((c | 0x20) - 'a') < 26u || is_digit(c) ||
	    (c != 0 && strchr("-._~!$&'()*+,;=", c) != NULL);
}

/* 1 if s[0..n) is pct-encoded at i (RFC 3986 2.1: "%" HEXDIG HEXDIG) */
static int
pct_at(const char *s, size_t n, size_t i)
{
	return n - i >= 3 && s[i] == '%' &&
	    fmt_hexval((unsigned char)s[i + 1]) >= 0 &&
	    fmt_hexval((unsigned char)s[i + 2]) >= 0;
}

/*
 * The inside of an IP-literal, s[0..n) between "[" and "]" (RFC 3986
 * 3.2.2): IPv6address, or IPvFuture = "v" 1*HEXDIG "." 1*( unreserved /
 * sub-delims / ":" ). No zone identifier (RFC 9110 cites RFC 3986 only).
 */
static int
ip_literal_ok(const char *s, size_t n)
{
	char a[INET6_ADDRSTRLEN];
	struct in6_addr in6;
	size_t i;

	if (n > 0 && (s[0] | 0x20) == 'v') {
		for (i = 1; i < n && fmt_hexval((unsigned char)s[i]) >= 0; i++)
			;
		if (i == 1 || i + 1 >= n || s[i] != '.')
			return 0;
		for (i++; i < n; i++)
			if (!is_regname((unsigned char)s[i]) && s[i] != ':')
				return 0;
		return 1;
	}
	/* inet_pton's IPv6 text form is RFC 3986's IPv6address (4291 2.2) */
	if (n == 0 || n >= sizeof(a))
		return 0;
	memcpy(a, s, n);
	a[n] = '\0';
	return inet_pton(AF_INET6, a, &in6) == 1;
}

/* host_ok() results */
#define HOST_BAD	0
#define HOST_NO_PORT	1
#define HOST_PORT	2	/* ":" port present (port = *DIGIT, may be empty) */

/*
 * s[0..n) as uri-host [ ":" port ] (RFC 9110 7.2 for Host, 4.2.1 for an
 * http authority; RFC 3986 3.2.2-3.2.3). An IPv4address is a reg-name
 * too, so the reg-name loop covers it. An empty value is HOST_NO_PORT
 * when allow_empty (RFC 9110 7.2: the empty Host of a target without an
 * authority), and only when entirely empty: ":80" names no host.
 */
static int
host_ok(const char *s, size_t n, int allow_empty)
{
	size_t i = 0, e;

	if (n == 0)
		return allow_empty ? HOST_NO_PORT : HOST_BAD;
	if (s[0] == '[') {
		for (e = 1; e < n && s[e] != ']'; e++)
			;
		if (e == n || !ip_literal_ok(s + 1, e - 1))
			return HOST_BAD;
		i = e + 1;
	} else {
		while (i < n && s[i] != ':') {
			if (pct_at(s, n, i))
				i += 3;
			else if (is_regname((unsigned char)s[i]))
				i++;
			else
				return HOST_BAD;
		}
		if (i == 0)
			return HOST_BAD;
	}
	if (i == n)
		return HOST_NO_PORT;
	if (s[i] != ':')
		return HOST_BAD;
	for (i++; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return HOST_BAD;
	return HOST_PORT;
}

/* RFC 9110 9.1: method names are case-sensitive */
static int
method_is(const struct h1_msg *m, const char *name, size_t len)
{
	return m->method_len == len && memcmp(m->method, name, len) == 0;
}

/*
 * An absolute-form target (RFC 9112 3.2.2) after "scheme://" at a: the
 * authority runs to the first "/" or "?". Sets m->authority (userinfo
 * left out) and m->path. 0, or -1 with the error recorded: at the last
 * "@" of the authority when it has one, so that the few bytes the error
 * log shows from there on never include a password.
 */
static int
check_absolute(struct h1_msg *m, const char *buf, const char *a)
{
	const char *end = m->target + m->target_len, *ae = a, *at = NULL;
	const char *h, *q;

	while (ae < end && *ae != '/' && *ae != '?') {
		if (*ae == '@')
			at = ae;
		ae++;
	}
	h = at != NULL ? at + 1 : a;
	if (at != NULL) {
		/* RFC 3986 3.2.1: userinfo = *( unreserved / pct-encoded /
		 * sub-delims / ":" ); dropped, but it must be one */
		for (q = a; q < at; q++)
			if (*q == '@' || (!is_regname((unsigned char)*q) &&
			    *q != ':' && !pct_at(q, (size_t)(at - q), 0)))
				return fail(m, -1, 400, "invalid userinfo in target",
				    buf, at);
	}
	/* RFC 9110 4.2.1: an http(s) URI with an empty host is invalid */
	if (host_ok(h, (size_t)(ae - h), 0) == HOST_BAD)
		return fail(m, -1, 400, "invalid authority in target", buf,
		    at != NULL ? at : h);
	/* RFC 9112 3.2: absolute-URI has no fragment (RFC 3986 4.3) */
	if ((q = memchr(ae, '#', (size_t)(end - ae))) != NULL)
		return fail(m, -1, 400, "fragment in target", buf, q);
	m->authority = h;
	m->authority_len = (size_t)(ae - h);
	m->path = ae;
	m->path_len = (size_t)(end - ae);
	return 0;
}

/*
 * Which of the four request-target forms (RFC 9112 3.2) m's target is,
 * for its method; anything else is 400. 0, or -1 with the error recorded.
 */
static int
check_target(struct h1_msg *m, const char *buf)
{
	const char *t = m->target;
	size_t n = m->target_len;

	/* RFC 9112 3.2.3: CONNECT takes authority-form, uri-host ":" port */
	if (method_is(m, "CONNECT", 7)) {
		if (host_ok(t, n, 0) != HOST_PORT)
			return fail(m, -1, 400, "invalid CONNECT target", buf, t);
		m->target_form = H1_TARGET_AUTHORITY;
		return 0;
	}
	/* RFC 9112 3.2.1: origin-form = absolute-path [ "?" query ] */
	if (t[0] == '/') {
		m->target_form = H1_TARGET_ORIGIN;
		return 0;
	}
	/* RFC 9112 3.2.4: "*" is for OPTIONS only */
	if (n == 1 && t[0] == '*') {
		if (!method_is(m, "OPTIONS", 7))
			return fail(m, -1, 400, "asterisk-form target without OPTIONS",
			    buf, t);
		m->target_form = H1_TARGET_ASTERISK;
		return 0;
	}
	/* RFC 9112 3.2.2 (RFC 3986 3.1: the scheme is case-insensitive);
	 * only what our http upstream serves */
	if (n >= 7 && strncasecmp(t, "http://", 7) == 0) {
		m->target_form = H1_TARGET_ABSOLUTE;
		return check_absolute(m, buf, t + 7);
	}
	if (n >= 8 && strncasecmp(t, "https://", 8) == 0) {
		m->target_form = H1_TARGET_ABSOLUTE;
		return check_absolute(m, buf, t + 8);
	}
	/* "GET evil.example/x": neither origin- nor absolute-form */
	return fail(m, -1, 400, "invalid request target", buf, t);
}

/*
 * Content-Length value: 1#(1*DIGIT), all elements equal (RFC 9110 8.6,
 * RFC 9112 6.3 rule 5). Returns 0 and *out, or -1 with *why set.
 */
static int
parse_cl(const char *v, size_t n, uint64_t *out, const char **why)
{
	size_t pos = 0, i, el;
	const char *e;
	int seen = 0;
	uint64_t val = 0, x;

	while (next_elem(v, n, &pos, &e, &el)) {
		/* RFC 9110 8.6: 1*DIGIT; no sign, no hex, no empty element */
		if (el == 0) {
			*why = "empty Content-Length";
			return -1;
		}
		x = 0;
		for (i = 0; i < el; i++) {
			unsigned d = (unsigned char)e[i] - '0';

			if (d > 9) {
				*why = "invalid Content-Length";
				return -1;
			}
			/* bounded like a chunk size (h1_chunk.c): a length
			 * beyond 2^63-1 fits no off_t and no peer's int64 */
			if (x > ((UINT64_C(1) << 63) - 1 - d) / 10) {
				*why = "Content-Length too large";
				return -1;
			}
			x = x * 10 + d;
		}
		/* RFC 9112 6.3 rule 5: differing values -> unrecoverable */
		if (seen && x != val) {
			*why = "conflicting Content-Length";
			return -1;
		}
		val = x;
		seen = 1;
	}
	*out = val;
	return 0;
}

/*
 * Transfer-Encoding value: 1#transfer-coding, each a token optionally with
 * ";param" parts (RFC 9112 7). Counts codings into sc. -1 on bad syntax.
 */
static int
scan_te(const char *v, size_t n, struct h1_scan *sc)
{
	size_t pos = 0, i, el;
	const char *e;

	while (next_elem(v, n, &pos, &e, &el)) {
		i = 0;
		while (i < el && CLS(e[i], C_TCHAR))
			i++;
		if (i == 0)
			return -1;
		if (i < el && e[i] != ';' && e[i] != ' ' && e[i] != '\t')
			return -1;
		sc->n_codings++;
		sc->last_chunked = EQ_LIT(e, i, "chunked") && i == el;
		if (EQ_LIT(e, i, "chunked"))
			sc->n_chunked++;
	}
	return 0;
}

/*
 * Set H1_F_* from one Connection field value's tokens (RFC 9110 7.6.1).
 * -1 for a request whose Connection names a field the proxy itself needs
 * end to end: removing it as hop-by-hop would forward a Host-less request
 * or unframed body, and keeping it would ignore what the client said.
 */
static int
scan_connection(const char *v, size_t n, struct h1_msg *m, int is_req)
{
	size_t pos = 0, el;
	const char *e;

	while (next_elem(v, n, &pos, &e, &el)) {
		if (EQ_LIT(e, el, "close"))
			m->flags |= H1_F_CONN_CLOSE;
		else if (EQ_LIT(e, el, "keep-alive"))
			m->flags |= H1_F_CONN_KEEPALIVE;
		else if (EQ_LIT(e, el, "upgrade"))
			m->flags |= H1_F_UPGRADE;
		/* RFC 9110 7.6.1: a sender MUST NOT list a field meant for
		 * every recipient; Host routes, CL and TE frame: 400 */
		else if (is_req && (EQ_LIT(e, el, "host") ||
		    EQ_LIT(e, el, "content-length") ||
		    EQ_LIT(e, el, "transfer-encoding")))
			return -1;
	}
	return 0;
}

/*
 * Look at one stored field for the framing-relevant names. Dispatch on the
 * length first so ordinary fields cost one switch. Returns 0 or -1 (with
 * *why set; the caller turns it into the message's error status).
 */
static int
note_field(struct h1_msg *m, struct h1_scan *sc, const struct tb_hdr *h,
    const char **why)
{
	const char *n = h->name;
	uint64_t cl;

	switch (h->name_len) {
	case 4:
		if (EQ_LIT(n, 4, "host")) {
			/* RFC 9112 3.2: more than one Host -> 400 */
			if (sc->is_req && ++sc->n_host > 1) {
				*why = "duplicate Host";
				return -1;
			}
			/* RFC 9112 3.2: an invalid Host field value -> 400;
			 * RFC 9110 7.2: Host = uri-host [ ":" port ] */
			if (sc->is_req &&
			    host_ok(h->value, h->value_len, 1) == HOST_BAD) {
				*why = "invalid Host";
				return -1;
			}
			m->flags |= H1_F_HAS_HOST;
		}
		break;
	case 6:
		if (sc->is_req && EQ_LIT(n, 6, "expect")) {
			/* RFC 9110 10.1.1: ignore 100-continue from HTTP/1.0 */
			if (EQ_LIT(h->value, h->value_len, "100-continue")) {
				if (m->version_minor == 1)
					m->flags |= H1_F_EXPECT_CONTINUE;
			} else {
				m->flags |= H1_F_EXPECT_OTHER;
			}
		}
		break;
	case 7:
		if (EQ_LIT(n, 7, "upgrade"))
			m->flags |= H1_F_UPGRADE;
		break;
	case 10:
		if (EQ_LIT(n, 10, "connection") &&
		    scan_connection(h->value, h->value_len, m, sc->is_req) < 0) {
			*why = "Connection names an end-to-end field";
			return -1;
		}
		break;
	case 14:
		if (EQ_LIT(n, 14, "content-length")) {
			if (parse_cl(h->value, h->value_len, &cl, why) < 0)
				return -1;
			/* RFC 9112 6.3 rule 5: repeated CL fields must agree */
			if ((m->flags & H1_F_HAS_CL) &&
			    cl != m->content_length) {
				*why = "conflicting Content-Length";
				return -1;
			}
			m->content_length = cl;
			m->flags |= H1_F_HAS_CL;
		}
		break;
	case 17:
		if (EQ_LIT(n, 17, "transfer-encoding")) {
			if (scan_te(h->value, h->value_len, sc) < 0) {
				*why = "invalid Transfer-Encoding";
				return -1;
			}
			m->flags |= H1_F_HAS_TE;
		}
		break;
	default:
		break;
	}
	return 0;
}

/*
 * Decide the body framing once the head is complete (RFC 9112 6.3).
 * Returns 0, or -1 with *why and *status set.
 */
static int
decide_body(struct h1_msg *m, struct h1_scan *sc, int req_is_head,
    const char **why, int *status)
{
	int bad = sc->is_req ? 400 : 502;

	/* RFC 9112 6.1: CL with TE -> reject, request smuggling */
	if ((m->flags & H1_F_HAS_CL) && (m->flags & H1_F_HAS_TE)) {
		*why = "Content-Length with Transfer-Encoding";
		*status = bad;
		return -1;
	}
	/* RFC 9112 6.1: TE in an HTTP/1.0 message means faulty framing */
	if ((m->flags & H1_F_HAS_TE) && m->version_minor == 0) {
		*why = "Transfer-Encoding in HTTP/1.0";
		*status = bad;
		return -1;
	}
	/* RFC 9112 9.3: HTTP/1.0 closes unless keep-alive was asked for */
	if (m->version_minor == 0 && !(m->flags & H1_F_CONN_KEEPALIVE))
		m->flags |= H1_F_CONN_CLOSE;

	if (sc->is_req) {
		/* RFC 9112 3.2: an HTTP/1.1 request without Host -> 400 */
		if (m->version_minor == 1 && sc->n_host == 0) {
			*why = "missing Host";
			*status = 400;
			return -1;
		}
		if (m->flags & H1_F_HAS_TE) {
			/*
			 * RFC 9112 6.3 rule 4 allows any list ending in
			 * chunked; we accept exactly "chunked" so nothing we
			 * forward depends on a coding we do not decode: 501.
			 */
			if (sc->n_codings != 1 || !sc->last_chunked) {
				*why = "unsupported Transfer-Encoding";
				*status = 501;
				return -1;
			}
			m->body = H1_BODY_CHUNKED;
		} else if ((m->flags & H1_F_HAS_CL) && m->content_length > 0) {
			m->body = H1_BODY_LENGTH;
		} else {
			/* RFC 9112 6.3 rule 7: no CL/TE: no body */
			m->body = H1_BODY_NONE;
		}
		return 0;
	}

	/* RFC 9112 6.3 rules 1-2: HEAD, 1xx, 204, 304 have no body */
	if (req_is_head || m->status < 200 || m->status == 204 ||
	    m->status == 304) {
		m->body = H1_BODY_NONE;
		return 0;
	}
	if (m->flags & H1_F_HAS_TE) {
		/* RFC 9112 7.1: chunked applied more than once is faulty */
		if (sc->n_chunked > 1) {
			*why = "chunked applied twice";
			*status = bad;
			return -1;
		}
		/* RFC 9112 6.3 rule 4: final chunked -> chunked, else close */
		m->body = sc->last_chunked ? H1_BODY_CHUNKED : H1_BODY_EOF;
	} else if (m->flags & H1_F_HAS_CL) {
		m->body = m->content_length > 0 ? H1_BODY_LENGTH : H1_BODY_NONE;
	} else {
		/* RFC 9112 6.3 rule 8: read until the connection closes */
		m->body = H1_BODY_EOF;
	}
	return 0;
}

/*
 * Check "HTTP/1.x" at p (8 bytes available). Returns the minor version
 * (0 or 1), -1 when it is not an HTTP-version at all, -2 when it is a
 * well-formed version we do not speak.
 */
static int
parse_version(const char *p)
{
	/* RFC 9112 2.3: HTTP-name is case-sensitive "HTTP" */
	if (memcmp(p, "HTTP/", 5) != 0 || (unsigned char)(p[5] - '0') > 9 ||
	    p[6] != '.' || (unsigned char)(p[7] - '0') > 9)
		return -1;
	if (p[5] != '1' || p[7] > '1')
		return -2;
	return p[7] - '0';
}

/*
 * The shared field-section and head-end logic. p points at the first byte
 * after the start line; end is buf + min(len, max_head). Returns like the
 * public functions.
 */
static int
parse_fields(const char *buf, size_t len, const char *p, const char *end,
    size_t max_head, unsigned max_headers, struct h1_msg *m,
    struct h1_scan *sc, int req_is_head)
{
	int bad = sc->is_req ? 400 : 502;
	int status;
	const char *name, *val, *vend, *why;
	struct tb_hdr *h;

	for (;;) {
		if (p == end)
			goto more;
		if (*p == '\r') {
			if (++p == end)
				goto more;
			if (*p != '\n')
				return fail(m, -1, bad, "bare CR", buf, p);
			p++;
			break;
		}
		if (*p == '\n')
			return fail(m, -1, bad, "bare LF", buf, p);
		/* RFC 9112 5.2: obs-fold (and RFC 9112 2.2: whitespace after
		 * the start line) -> reject */
		if (*p == ' ' || *p == '\t')
			return fail(m, -1, bad, "obs-fold", buf, p);
		if (m->n_hdrs >= max_headers)
			return fail(m, -2, sc->is_req ? 431 : 502,
			    "too many header fields", buf, p);

		name = p;
		while (p < end && CLS(*p, C_TCHAR))
			p++;
		if (p == end)
			goto more;
		if (*p != ':') {
			/* RFC 9112 5.1: no whitespace between name and colon */
			if (*p == ' ' || *p == '\t')
				return fail(m, -1, bad,
				    "whitespace before colon", buf, p);
			return fail(m, -1, bad, "invalid field name", buf, p);
		}
		if (p == name)
			return fail(m, -1, bad, "empty field name", buf, p);
		h = &m->hdrs[m->n_hdrs];
		h->name = name;
		h->name_len = (size_t)(p - name);
		p++;

		/* RFC 9112 5.1: OWS around the value is not part of it */
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		val = p;
		/* HTAB (0x09) counts as a stop: the byte loop lets it pass */
		p = swar_skip(p, end, 0x20);
		while (p < end && CLS(*p, C_VALUE))
			p++;
		if (p == end)
			goto more;
		if (*p != '\r') {
			if (*p == '\n')
				return fail(m, -1, bad, "bare LF", buf, p);
			/* RFC 9110 5.5: CTL (NUL included) in a value */
			return fail(m, -1, bad,
			    "invalid character in field value", buf, p);
		}
		vend = p;
		while (vend > val && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		if (++p == end)
			goto more;
		if (*p != '\n')
			return fail(m, -1, bad, "bare CR", buf, p);
		p++;
		h->value = val;
		h->value_len = (size_t)(vend - val);
		m->n_hdrs++;

		why = NULL;
		if (note_field(m, sc, h, &why) < 0)
			return fail(m, -1, bad, why, buf, name);
	}

	why = NULL;
	status = bad;
	if (decide_body(m, sc, req_is_head, &why, &status) < 0)
		return fail(m, -1, status, why, buf, p);
	return (int)(p - buf);

more:
	/* The scan stopped at end: more data helps unless the limit cut it. */
	if (len >= max_head)
		return fail(m, -2, sc->is_req ? 431 : 502, "head too long",
		    buf, end);
	return 0;
}

/* Clear what a parse fills, so a reused h1_msg never shows stale results. */
static void
msg_reset(struct h1_msg *m)
{
	/* not the hdrs array: 8 KB of memset per request is measurable */
	m->method = m->target = m->reason = NULL;
	m->method_len = m->target_len = m->reason_len = 0;
	m->target_form = H1_TARGET_ORIGIN;
	m->authority = m->path = NULL;
	m->authority_len = m->path_len = 0;
	m->status = 0;
	m->version_minor = 1;
	m->n_hdrs = 0;
	m->body = H1_BODY_NONE;
	m->content_length = 0;
	m->flags = 0;
	m->err_status = 0;
	m->err = NULL;
	m->err_off = 0;
}

/*
 * The head length is returned as an int, so the limit is kept well inside
 * INT_MAX whatever the configuration says.
 */
#define H1_HEAD_CEIL	((size_t)1 << 30)

/*
 * Effective limits: NULL or a zero field means the default; max_headers is
 * capped at H1_MAX_HEADERS_CAP since hdrs[] has that many slots. Then the
 * bounds of the scan (bound before scanning, STYLE.md 3): *end, never past
 * max_head bytes of buf, and *le, where the start line's CR must be seen.
 */
static void
limits(const struct h1_limits *lim, const char *buf, size_t len,
    size_t *max_head, unsigned *max_headers, const char **end,
    const char **le)
{
	size_t max_line;

	*max_head = lim && lim->max_head_bytes ? lim->max_head_bytes :
	    H1_DEF_MAX_HEAD;
	if (*max_head > H1_HEAD_CEIL)
		*max_head = H1_HEAD_CEIL;
	max_line = lim && lim->max_line ? lim->max_line : H1_DEF_MAX_LINE;
	/* a line never outgrows the head; also keeps max_line + 1 finite */
	if (max_line > *max_head)
		max_line = *max_head;
	*max_headers = lim && lim->max_headers &&
	    lim->max_headers < H1_MAX_HEADERS_CAP ? lim->max_headers :
	    H1_MAX_HEADERS_CAP;
	*end = buf + (len < *max_head ? len : *max_head);
	*le = (size_t)(*end - buf) > max_line + 1 ? buf + max_line + 1 : *end;
}

/* Contract in h1.h. buf may be NULL when len is 0. */
int
h1_parse_request(const char *buf, size_t len, const struct h1_limits *lim,
    struct h1_msg *m)
{
	size_t max_head;
	unsigned max_headers;
	const char *p = buf, *end, *le, *s;
	struct h1_scan sc = { 1, 0, 0, 0, 0 };
	int v;

	msg_reset(m);
	if (len == 0)
		return 0;
	/* the request line's CR must sit at offset <= max_line (le) */
	limits(lim, buf, len, &max_head, &max_headers, &end, &le);

	/* RFC 9112 3: method = token (RFC 9110 9.1) */
	s = p;
	while (p < le && CLS(*p, C_TCHAR))
		p++;
	if (p == le)
		goto line_more;
	if (*p != ' ' || p == s)
		return fail(m, -1, 400, "invalid method", buf, p);
	m->method = s;
	m->method_len = (size_t)(p - s);
	p++;

	/* RFC 9112 3.2: request-target, no SP or CTL; must not be empty */
	s = p;
	p = swar_skip(p, le, 0x21);
	while (p < le && CLS(*p, C_TARGET))
		p++;
	if (p == le)
		goto line_more;
	if (p == s)
		return fail(m, -1, 400, "empty request target", buf, p);
	if (*p != ' ')
		return fail(m, -1, 400, "invalid character in target", buf, p);
	m->target = s;
	m->target_len = (size_t)(p - s);
	p++;

	/* RFC 9112 2.3: HTTP-version, exactly one SP before it, CRLF after */
	if (le - p < 9)
		goto line_partial;
	v = parse_version(p);
	if (v == -2)
		return fail(m, -1, 505, "unsupported HTTP version", buf, p);
	if (v < 0)
		return fail(m, -1, 400, "invalid HTTP version", buf, p);
	m->version_minor = v;
	p += 8;
	if (*p != '\r')
		return fail(m, -1, 400, "junk after HTTP version", buf, p);
	if (++p == end)
		goto more;
	if (*p != '\n')
		return fail(m, -1, 400, "bare CR", buf, p);
	p++;
	if (check_target(m, buf) < 0)
		return -1;
	return parse_fields(buf, len, p, end, max_head, max_headers, m, &sc, 0);

line_partial:
	/*
	 * Fewer than "HTTP/1.1\r" bytes: reject early what can never become a
	 * version, so junk does not wait for the limit.
	 */
	for (s = p; s < le; s++) {
		size_t i = (size_t)(s - p);

		if ((i < 5 && *s != "HTTP/"[i]) || (i == 6 && *s != '.') ||
		    ((i == 5 || i == 7) && (unsigned char)(*s - '0') > 9) ||
		    (i == 8 && *s != '\r'))
			return fail(m, -1, 400, "invalid HTTP version", buf, s);
	}
line_more:
	if (le < end)
		/* more bytes are there, yet the line has not ended */
		return fail(m, -2, 414, "request line too long", buf, le);
more:
	if (len >= max_head)
		return fail(m, -2, 431, "head too long", buf, end);
	return 0;
}

/* Contract in h1.h; every error, limits included, has err_status 502 since
 * the proxy answers a broken upstream with Bad Gateway. buf may be NULL when
 * len is 0. */
int
h1_parse_response(const char *buf, size_t len, const struct h1_limits *lim,
    int req_is_head, struct h1_msg *m)
{
	size_t max_head;
	unsigned max_headers;
	const char *p = buf, *end, *le, *s;
	struct h1_scan sc = { 0, 0, 0, 0, 0 };
	int v;

	msg_reset(m);
	if (len == 0)
		return 0;
	limits(lim, buf, len, &max_head, &max_headers, &end, &le);

	/* RFC 9112 4: status-line = HTTP-version SP status-code SP [reason] */
	if (le - p < 13) {
		/* "HTTP/1.1 200\r" not there yet: reject impossible prefixes */
		for (s = p; s < le; s++) {
			size_t i = (size_t)(s - p);

			if ((i < 5 && *s != "HTTP/"[i]) ||
			    (i == 6 && *s != '.') || (i == 8 && *s != ' ') ||
			    ((i == 5 || i == 7 || i > 8) &&
			    (unsigned char)(*s - '0') > 9))
				return fail(m, -1, 502, "invalid status line",
				    buf, s);
		}
		goto line_more;
	}
	v = parse_version(p);
	if (v < 0)
		return fail(m, -1, 502, v == -2 ? "unsupported HTTP version" :
		    "invalid HTTP version", buf, p);
	m->version_minor = v;
	p += 8;
	if (*p != ' ')
		return fail(m, -1, 502, "invalid status line", buf, p);
	p++;
	/* RFC 9112 4: status-code = 3DIGIT; RFC 9110 15: 100..599 */
	if ((unsigned char)(p[0] - '0') > 9 ||
	    (unsigned char)(p[1] - '0') > 9 ||
	    (unsigned char)(p[2] - '0') > 9)
		return fail(m, -1, 502, "invalid status code", buf, p);
	m->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	if (m->status < 100 || m->status > 599)
		return fail(m, -1, 502, "status code out of range", buf, p);
	p += 3;
	/* RFC 9112 4: the SP is required, but "HTTP/1.1 200\r\n" is common
	 * enough from real servers that we take it with an empty reason */
	if (*p == ' ') {
		p++;
		s = p;
		/* reason-phrase = *( HTAB / SP / VCHAR / obs-text ) */
		while (p < le && CLS(*p, C_VALUE))
			p++;
		if (p == le)
			goto line_more;
		m->reason = s;
		m->reason_len = (size_t)(p - s);
	} else {
		m->reason = p;
	}
	if (*p != '\r') {
		if (*p == '\n')
			return fail(m, -1, 502, "bare LF", buf, p);
		return fail(m, -1, 502, "invalid status line", buf, p);
	}
	if (++p == end)
		goto more;
	if (*p != '\n')
		return fail(m, -1, 502, "bare CR", buf, p);
	p++;
	return parse_fields(buf, len, p, end, max_head, max_headers, m, &sc,
	    req_is_head);

line_more:
	if (le < end)
		return fail(m, -2, 502, "status line too long", buf, le);
more:
	if (len >= max_head)
		return fail(m, -2, 502, "head too long", buf, end);
	return 0;
}

/* Contract in h1.h. */
int
h1_list_has(const char *v, size_t n, const char *e, size_t el)
{
	size_t pos = 0, l;
	const char *x;

	while (next_elem(v, n, &pos, &x, &l))
		/* e is the caller's, any case: no eq_lc shortcut */
		if (l == el && strncasecmp(x, e, el) == 0)
			return 1;
	return 0;
}

int
h1_connection_has(const struct h1_msg *m, const char *token)
{
	size_t i, tl = strlen(token);

	for (i = 0; i < m->n_hdrs; i++) {
		const struct tb_hdr *h = &m->hdrs[i];

		if (EQ_LIT(h->name, h->name_len, "connection") &&
		    h1_list_has(h->value, h->value_len, token, tl))
			return 1;
	}
	return 0;
}

/* The names hop-by-hop in every message: RFC 9110 7.6.1 and the de-facto
 * Keep-Alive / Proxy-Connection. */
static int
always_hop_by_hop(const char *n, size_t l)
{
	switch (l) {
	case 2:
		return EQ_LIT(n, l, "te");
	case 7:
		return EQ_LIT(n, l, "trailer") || EQ_LIT(n, l, "upgrade");
	case 10:
		return EQ_LIT(n, l, "connection") || EQ_LIT(n, l, "keep-alive");
	case 16:
		return EQ_LIT(n, l, "proxy-connection");
	case 17:
		return EQ_LIT(n, l, "transfer-encoding");
	default:
		return 0;
	}
}

int
h1_is_hop_by_hop(const struct h1_msg *m, const struct tb_hdr *h)
{
	size_t i;

	if (always_hop_by_hop(h->name, h->name_len))
		return 1;
	for (i = 0; i < m->n_hdrs; i++) {
		const struct tb_hdr *c = &m->hdrs[i];

		if (EQ_LIT(c->name, c->name_len, "connection") &&
		    h1_list_has(c->value, c->value_len, h->name, h->name_len))
			return 1;
	}
	return 0;
}

/* Contract in h1.h. */
int
h1_trailer_forbidden(const char *n, size_t l, const char *conn, size_t conn_len)
{
	/* RFC 9110 6.5.1: what frames (Content-Length, Transfer-Encoding,
	 * Trailer), routes (Host) or authenticates is evaluated before the
	 * content, so no trailer may carry it; RFC 9110 7.6.1: hop-by-hop
	 * fields go from trailers as from heads */
	if (always_hop_by_hop(n, l) || EQ_LIT(n, l, "content-length") ||
	    EQ_LIT(n, l, "host") || EQ_LIT(n, l, "authorization") ||
	    EQ_LIT(n, l, "proxy-authorization"))
		return 1;
	return conn != NULL && h1_list_has(conn, conn_len, n, l);
}

const char *
h1_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 421: return "Misdirected Request";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
