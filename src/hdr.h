/*
 * hdr.h: the header-list types shared by the HTTP framing and the trace codecs.
 *
 * A tb_hdr never owns its bytes: it points into the buffer the head was parsed
 * from (or into a string the caller keeps alive), and the lengths are exact (no
 * NUL terminator is promised). Names compare case-insensitively (RFC 9110 5.1).
 */
#ifndef TB_HDR_H
#define TB_HDR_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

struct tb_hdr {
	const char *name;
	size_t name_len;
	const char *value;	/* OWS already trimmed on both ends */
	size_t value_len;
};

/*
 * Where generated headers go. add() copies name and value (it never keeps the
 * pointers); returns 0, or -1 when the sink is full, which the caller treats
 * as "stop injecting". The proxy's sink appends "name: value\r\n" to the
 * outgoing head; unit tests collect into an array.
 */
struct tb_hdr_sink {
	int (*add)(void *arg, const char *name, size_t name_len,
	    const char *value, size_t value_len);
	void *arg;
};

/* 1 if the header's name equals name (NUL-terminated, any case). Inline:
 * the proxy asks this for every field of every head. */
static inline int
hdr_name_is(const struct tb_hdr *h, const char *name)
{
	size_t len = strlen(name);

	return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

/* 1 if c is a tchar (RFC 9110 5.6.2): the bytes of tokens, field names. */
static inline int
hdr_is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Index of the first header named name at or after from, or -1. */
int hdr_find(const struct tb_hdr *hdrs, size_t n, size_t from, const char *name);

#endif
