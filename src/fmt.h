/*
 * fmt.h: number formatting for the request path, where snprintf's parsing
 * of a format string is a visible share of the cost. Shared by the proxy
 * (heads), the trace codecs, span JSON and the Redis protocol writer; and
 * hex digits both ways.
 */
#ifndef TB_FMT_H
#define TB_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FMT_U64_MAX 20		/* digits of UINT64_MAX */

/* v in decimal into out (at least FMT_U64_MAX bytes, not terminated);
 * returns the number of digits. */
static inline size_t
fmt_u64(char *out, uint64_t v)
{
	char tmp[FMT_U64_MAX], *t = tmp + sizeof(tmp);
	size_t n;

	do
		*--t = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	n = (size_t)(tmp + sizeof(tmp) - t);
	memcpy(out, t, n);
	return n;
}

/* The number of digits fmt_u64 writes for v. */
static inline size_t
fmt_u64_digits(uint64_t v)
{
	size_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

/* Hex digits by value, for writers of one digit at a time. */
#define FMT_HEX_LOWER	"0123456789abcdef"
#define FMT_HEX_UPPER	"0123456789ABCDEF"

/* The value of the hex digit c (either case), -1 for any other byte: the
 * %XX of percent-encoding (webob's paths in span.c, passwords in redis.c),
 * chunk sizes (h1_chunk.c), ids of the trace formats (trace.c). */
static inline int
fmt_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* fmt_hexval for formats that allow lowercase digits only (W3C ids). */
static inline int
fmt_hexval_lc(int c)
{
	return c >= 'A' && c <= 'F' ? -1 : fmt_hexval(c);
}

#endif
