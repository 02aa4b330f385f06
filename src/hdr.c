/* hdr.c: small helpers over tb_hdr lists (see hdr.h). */
#include <string.h>
#include <strings.h>

#include "hdr.h"

int
hdr_find(const struct tb_hdr *hdrs, size_t n, size_t from, const char *name)
{
	size_t i;

	for (i = from; i < n; i++)
		if (hdr_name_is(&hdrs[i], name))
			return (int)i;
	return -1;
}
