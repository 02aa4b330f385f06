/*
 * fuzz_h1.c: libFuzzer target for src/h1.c and src/h1_chunk.c.
 *
 * Input: one control byte, then the payload. The control byte picks the
 * limits (bit 0: tiny limits, so the -2 paths are reached), HEAD-ness of the
 * response (bit 1) and the split position (the byte scaled over the
 * payload). The payload goes through the request parser, the response
 * parser and the chunked decoder, each over an exact-size heap copy so ASan
 * sees any read past len, and the results must satisfy the invariants
 * below; any breach aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INV(cond) do {							\
	if (!(cond)) {							\
		fprintf(stderr, "invariant failed: %s (line %d)\n",	\
		    #cond, __LINE__);					\
		abort();						\
	}								\
} while (0)

static int
is_tchar(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
	    (ch >= 'A' && ch <= 'Z') ||
	    (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Check a parsed head or error against what h1.h promises. */
static void
check_msg(int rc, const char *buf, size_t len, const struct h1_limits *lim,
    const struct h1_msg *m, int is_req)
{
	size_t i, j;

	INV(rc >= -2);
	if (rc < 0) {
		INV(m->err != NULL);
		INV(m->err_off <= len);
		if (is_req && rc == -2)
			INV(m->err_status == 431 || m->err_status == 414);
		else if (is_req)
			INV(m->err_status == 400 || m->err_status == 501 ||
			    m->err_status == 505);
		else
			INV(m->err_status == 502);
		return;
	}
	if (rc == 0)
		return;
	INV((size_t)rc <= len);
	INV((size_t)rc <= lim->max_head_bytes);
	INV(rc >= 4 && memcmp(buf + rc - 4, "\r\n\r\n", 4) == 0);
	INV(m->n_hdrs <= lim->max_headers);
	INV(m->version_minor == 0 || m->version_minor == 1);
	for (i = 0; i < m->n_hdrs; i++) {
		const struct tb_hdr *h = &m->hdrs[i];

		INV(h->name >= buf && h->name + h->name_len <= buf + rc);
		INV(h->value >= buf && h->value + h->value_len <= buf + rc);
		INV(h->name_len > 0);
		for (j = 0; j < h->name_len; j++)
			INV(is_tchar((unsigned char)h->name[j]));
		for (j = 0; j < h->value_len; j++)
			INV(h->value[j] == '\t' ||
			    ((unsigned char)h->value[j] >= 0x20 &&
			    h->value[j] != 0x7f));
		if (h->value_len > 0) {
			INV(h->value[0] != ' ' && h->value[0] != '\t');
			INV(h->value[h->value_len - 1] != ' ' &&
			    h->value[h->value_len - 1] != '\t');
		}
	}
	INV(!((m->flags & H1_F_HAS_CL) && (m->flags & H1_F_HAS_TE)));
	if (m->body == H1_BODY_LENGTH)
		INV(m->content_length > 0 && (m->flags & H1_F_HAS_CL));
	if (m->body == H1_BODY_CHUNKED)
		INV(m->flags & H1_F_HAS_TE);
	if (is_req) {
		INV(m->body != H1_BODY_EOF);
		INV(m->method_len > 0 && m->target_len > 0);
		INV(m->version_minor == 0 || (m->flags & H1_F_HAS_HOST));
		/* the request line's CR sits at offset <= max_line */
		INV((size_t)(m->target + m->target_len - buf) + 9 <=
		    lim->max_line);
		/* one of the four forms (RFC 9112 3.2), for its method */
		switch (m->target_form) {
		case H1_TARGET_ORIGIN:
			INV(m->target[0] == '/');
			break;
		case H1_TARGET_ASTERISK:
			INV(m->target_len == 1 && m->target[0] == '*' &&
			    m->method_len == 7 && memcmp(m->method, "OPTIONS", 7) == 0);
			break;
		case H1_TARGET_AUTHORITY:
			INV(m->method_len == 7 && memcmp(m->method, "CONNECT", 7) == 0);
			break;
		case H1_TARGET_ABSOLUTE:
			INV(m->authority > m->target && m->authority_len > 0 &&
			    m->authority + m->authority_len == m->path);
			INV(m->path + m->path_len == m->target + m->target_len);
			INV(memchr(m->authority, '@', m->authority_len) == NULL);
			INV(memchr(m->path, '#', m->path_len) == NULL);
			break;
		default:
			INV(0);
		}
		if (m->target_form != H1_TARGET_ABSOLUTE)
			INV(m->authority == NULL && m->path == NULL);
	} else {
		INV(m->status >= 100 && m->status <= 599);
	}
}

static int
parse_one(int is_req, int head, const char *b, size_t n,
    const struct h1_limits *lim, struct h1_msg *m)
{
	return is_req ? h1_parse_request(b, n, lim, m) :
	    h1_parse_response(b, n, lim, head, m);
}

/* The same input through a prefix must agree with the whole (h1.h: 0
 * until the head is complete; errors are seen where their byte is). */
static void
fuzz_head(int is_req, int head, const uint8_t *p, size_t n, size_t split,
    const struct h1_limits *lim, struct h1_msg *m, struct h1_msg *m2)
{
	char *b = malloc(n ? n : 1), *b2 = malloc(split ? split : 1);
	int rc, rc2;

	memcpy(b, p, n);
	memcpy(b2, p, split);
	rc = parse_one(is_req, head, b, n, lim, m);
	check_msg(rc, b, n, lim, m, is_req);
	rc2 = parse_one(is_req, head, b2, split, lim, m2);
	check_msg(rc2, b2, split, lim, m2, is_req);

	if (rc > 0 && split < (size_t)rc)
		INV(rc2 == 0);
	else if (rc > 0)
		INV(rc2 == rc && m2->n_hdrs == m->n_hdrs &&
		    m2->flags == m->flags && m2->body == m->body);
	if (rc2 != 0)
		INV(rc2 == rc && m2->err_status == m->err_status);
	free(b);
	free(b2);
}

struct dec {
	struct h1_chunk c;
	uint64_t data;		/* data bytes moved */
	size_t consumed;
	int rc;
};

static void
dec_feed(struct dec *d, const uint8_t *src, size_t n)
{
	char *b = malloc(n ? n : 1);
	size_t pos = 0;
	ssize_t r;

	memcpy(b, src, n);
	while (d->rc == 0 && pos < n && d->c.state != H1_CHUNK_DONE) {
		if (d->c.state == H1_CHUNK_DATA) {
			uint64_t k = n - pos;

			INV(d->c.remaining > 0);
			if (k > d->c.remaining)
				k = d->c.remaining;
			h1_chunk_data(&d->c, k);
			d->data += k;
			pos += (size_t)k;
			continue;
		}
		r = h1_chunk_parse(&d->c, b + pos, n - pos);
		if (r < 0) {
			INV(r >= -2 && d->c.err != NULL);
			d->rc = (int)r;
			break;
		}
		INV((size_t)r <= n - pos);
		INV(d->c.state <= H1_CHUNK_DONE);
		/* progress unless it stopped to hand data or finished */
		INV(r > 0 || d->c.state == H1_CHUNK_DATA ||
		    d->c.state == H1_CHUNK_DONE);
		if (d->c.state == H1_CHUNK_DATA)
			INV(d->c.remaining > 0 && d->c.remaining < (UINT64_C(1) << 63));
		pos += (size_t)r;
	}
	d->consumed += pos;
	free(b);
}

static void
fuzz_chunk(const uint8_t *p, size_t n, size_t split, size_t max_trailer)
{
	struct dec a, b, c;
	size_t i;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	h1_chunk_init(&a.c, max_trailer);
	h1_chunk_init(&b.c, max_trailer);
	h1_chunk_init(&c.c, max_trailer);

	dec_feed(&a, p, n);
	dec_feed(&b, p, split);
	if (b.rc == 0)
		dec_feed(&b, p + split, n - split);
	for (i = 0; i < n && c.rc == 0 && c.c.state != H1_CHUNK_DONE; i++)
		dec_feed(&c, p + i, 1);

	/* any split gives the same verdict, bytes and data */
	INV(a.consumed <= n);
	INV(a.rc == b.rc && a.rc == c.rc);
	INV(a.c.state == b.c.state && a.c.state == c.c.state);
	if (a.rc == 0) {
		INV(a.consumed == b.consumed && a.consumed == c.consumed);
		INV(a.data == b.data && a.data == c.data);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct h1_msg m, m2;	/* 8 KB each: off the stack */
	static const struct h1_limits big = { 8192, 4096, 100 };
	static const struct h1_limits tiny = { 96, 40, 3 };
	const struct h1_limits *lim;
	const uint8_t *p;
	size_t n, split;

	if (size < 1)
		return 0;
	lim = (data[0] & 1) ? &tiny : &big;
	p = data + 1;
	n = size - 1;
	split = (size_t)data[0] * n / 255;

	fuzz_head(1, 0, p, n, split, lim, &m, &m2);
	fuzz_head(0, (data[0] >> 1) & 1, p, n, split, lim, &m, &m2);
	fuzz_chunk(p, n, split, (data[0] & 1) ? 32 : 0);
	return 0;
}
