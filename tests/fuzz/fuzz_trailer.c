/*
 * fuzz_trailer.c: libFuzzer target for the trailer path of src/h1_chunk.c:
 * h1_chunk_parse through the end of a chunked body, then h1_trailer_filter
 * on the trailer section it accepted, the way the relay holds and forwards
 * it (proxy.c move_trailers).
 *
 * Input: one control byte, then a Connection value up to the first NUL
 * (the message's options, which trailers lose too), then a chunked body.
 * The control byte scales the split point (the body goes in two pieces,
 * as it may arrive). When the body is accepted, the trailer section must
 * start where the decoder stopped on entering it and end at DONE; the
 * filtered section must be a valid trailer section itself (the decoder
 * takes "0" CRLF + it whole), keep the accepted lines in order, carry no
 * field h1_trailer_forbidden names, and filter to itself again; any
 * breach aborts.
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

/*
 * Decode p[0..n) split at split, as the relay does: framing through
 * h1_chunk_parse, data skipped by hand. 1 with *tstart (where the trailer
 * section starts) and *tend (past its end) when the body is complete, 0
 * otherwise.
 */
static int
decode(const char *p, size_t n, size_t split, size_t *tstart, size_t *tend)
{
	struct h1_chunk c;
	size_t pos = 0, lim;
	ssize_t r;
	uint64_t k;

	h1_chunk_init(&c, 0);
	*tstart = SIZE_MAX;
	while (pos < n && c.state != H1_CHUNK_DONE) {
		lim = pos < split ? split : n;	/* what has "arrived" */
		if (c.state == H1_CHUNK_DATA) {
			k = lim - pos < c.remaining ? lim - pos : c.remaining;
			h1_chunk_data(&c, k);
			pos += (size_t)k;
			continue;
		}
		if (c.state == H1_CHUNK_TRAILER && c.trailer_bytes == 0) {
			/* the decoder stopped right after the last-chunk line */
			INV(*tstart == SIZE_MAX);
			*tstart = pos;
		}
		r = h1_chunk_parse(&c, p + pos, lim - pos);
		if (r < 0)
			return 0;
		INV((size_t)r <= lim - pos);
		if (c.state >= H1_CHUNK_TRAILER && c.state <= H1_CHUNK_DONE &&
		    *tstart != SIZE_MAX)
			INV(pos + (size_t)r - *tstart == c.trailer_bytes);
		pos += (size_t)r;
	}
	if (c.state != H1_CHUNK_DONE)
		return 0;
	INV(*tstart != SIZE_MAX && pos - *tstart == c.trailer_bytes);
	*tend = pos;
	return 1;
}

/* Every line of out[0..on) is, in order, a line of sec[0..sl). */
static void
check_subsequence(const char *sec, size_t sl, const char *out, size_t on)
{
	const char *s = sec, *se = sec + sl, *o = out, *oe = out + on, *e, *q;
	size_t ll;

	while (o < oe) {
		e = memchr(o, '\n', (size_t)(oe - o));
		INV(e != NULL);
		ll = (size_t)(e + 1 - o);
		/* s is at a line start of sec: find the line there or later */
		for (;;) {
			INV(s < se);
			if ((size_t)(se - s) >= ll && memcmp(s, o, ll) == 0)
				break;
			q = memchr(s, '\n', (size_t)(se - s));
			INV(q != NULL);
			s = q + 1;
		}
		s += ll;
		o += ll;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *conn, *nul;
	char *body, *out, *out2, *again;
	size_t conn_len, n, split, ts, te, on, on2, i;
	unsigned dropped, dropped2;
	struct h1_chunk c;
	const char *p, *e, *colon;

	if (size < 1)
		return 0;
	conn = (const char *)data + 1;
	nul = memchr(conn, '\0', size - 1);
	conn_len = nul != NULL ? (size_t)(nul - conn) : 0;
	if (nul == NULL)
		conn = NULL;
	n = size - 1 - (conn != NULL ? conn_len + 1 : 0);
	body = malloc(n ? n : 1);
	memcpy(body, data + size - n, n);
	split = (size_t)data[0] * n / 255;

	if (!decode(body, n, split, &ts, &te)) {
		free(body);
		return 0;
	}
	/* the same verdict unsplit */
	{
		size_t ts1, te1;

		INV(decode(body, n, n, &ts1, &te1) && ts1 == ts && te1 == te);
	}
	out = malloc(te - ts);
	on = h1_trailer_filter(body + ts, te - ts, conn, conn_len, out, &dropped);
	INV(on >= 2 && on <= te - ts && memcmp(out + on - 2, "\r\n", 2) == 0);
	check_subsequence(body + ts, te - ts, out, on);

	/* no field left that no trailer may carry */
	for (p = out; p < out + on; p = e + 1) {
		e = memchr(p, '\n', (size_t)(out + on - p));
		colon = memchr(p, ':', (size_t)(e - p));
		INV(colon != NULL || e == out + on - 1);
		if (colon != NULL)
			INV(!h1_trailer_forbidden(p, (size_t)(colon - p), conn,
			    conn_len));
	}
	/* a valid trailer section still: "0" CRLF + it decodes whole */
	again = malloc(on + 3);
	memcpy(again, "0\r\n", 3);
	memcpy(again + 3, out, on);
	h1_chunk_init(&c, 0);
	i = 0;
	while (i < on + 3 && c.state != H1_CHUNK_DONE) {
		ssize_t r = h1_chunk_parse(&c, again + i, on + 3 - i);

		INV(r > 0);
		i += (size_t)r;
	}
	INV(c.state == H1_CHUNK_DONE && i == on + 3);
	/* filtering is idempotent */
	out2 = malloc(on);
	on2 = h1_trailer_filter(out, on, conn, conn_len, out2, &dropped2);
	INV(on2 == on && memcmp(out, out2, on) == 0 && dropped2 == 0);
	free(out2);
	free(again);
	free(out);
	free(body);
	return 0;
}
