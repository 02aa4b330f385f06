/* trace_index.c: the recent-traces ring (see trace_index.h). */
#include <ctype.h>
#include <pthread.h>
#include <string.h>

#include "trace_index.h"

static struct {
	pthread_mutex_t mu;
	struct trace_index_entry e[TRACE_INDEX_SIZE];
	size_t next;		/* slot of the next entry */
	size_t n;		/* entries held, <= TRACE_INDEX_SIZE */
} g = { .mu = PTHREAD_MUTEX_INITIALIZER };

void
trace_index_add(const struct trace_index_entry *e)
{
	struct trace_index_entry *d;

	pthread_mutex_lock(&g.mu);
	d = &g.e[g.next];
	*d = *e;
	/* whatever the caller did, every string ends inside its array */
	d->base_id[sizeof(d->base_id) - 1] = '\0';
	d->service[sizeof(d->service) - 1] = '\0';
	d->operation[sizeof(d->operation) - 1] = '\0';
	d->method[sizeof(d->method) - 1] = '\0';
	d->request_id[sizeof(d->request_id) - 1] = '\0';
	g.next = (g.next + 1) % TRACE_INDEX_SIZE;
	if (g.n < TRACE_INDEX_SIZE)
		g.n++;
	pthread_mutex_unlock(&g.mu);
}

void
trace_index_clear(void)
{
	pthread_mutex_lock(&g.mu);
	g.n = g.next = 0;
	pthread_mutex_unlock(&g.mu);
}

static int
all_hex(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

int
trace_index_id(const char *s, size_t len, char out[37])
{
	static const size_t dash[4] = { 8, 13, 18, 23 };
	char hex[33];
	size_t i, k, o;

	if (len == 36) {
		for (i = k = 0; i < 36; i++) {
			if (k < 4 && i == dash[k]) {
				if (s[i] != '-')
					return -1;
				k++;
			} else if (!isxdigit((unsigned char)s[i])) {
				return -1;
			}
		}
		for (i = k = 0; i < 36; i++)
			if (s[i] != '-')
				hex[k++] = s[i];
	} else if (len == 32 && all_hex(s, 32)) {
		memcpy(hex, s, 32);
	} else if (len == 55 && s[2] == '-' && s[35] == '-' && s[52] == '-' &&
	    all_hex(s, 2) && all_hex(s + 3, 32) && all_hex(s + 36, 16) &&
	    all_hex(s + 53, 2)) {
		/* a whole traceparent, as Server-Timing's desc shows it */
		memcpy(hex, s + 3, 32);
		len = 32;
	} else if (len == 16 && all_hex(s, 16)) {
		memset(hex, '0', 16);
		memcpy(hex + 16, s, 16);
	} else {
		return -1;
	}
	for (i = o = k = 0; i < 32; i++) {
		if (k < 4 && o == dash[k]) {
			out[o++] = '-';
			k++;
		}
		out[o++] = (char)tolower((unsigned char)hex[i]);
	}
	out[36] = '\0';
	return len == 16 ? 16 : 32;
}

size_t
trace_index_find(const char *q, struct trace_index_entry *out, size_t max)
{
	char id[37];
	size_t i, n = 0, qlen = q != NULL ? strlen(q) : 0;
	int bits = qlen ? trace_index_id(q, qlen, id) : 0;
	const struct trace_index_entry *e;

	pthread_mutex_lock(&g.mu);
	for (i = 0; i < g.n && n < max; i++) {
		e = &g.e[(g.next + TRACE_INDEX_SIZE - 1 - i) % TRACE_INDEX_SIZE];
		/* the low 64 bits are the uuid's last 17 characters (one dash) */
		if (qlen == 0 ||
		    (bits == 32 && strcmp(e->base_id, id) == 0) ||
		    (bits == 16 && strcmp(e->base_id + 19, id + 19) == 0) ||
		    (bits < 0 && strcmp(e->request_id, q) == 0))
			out[n++] = *e;
	}
	pthread_mutex_unlock(&g.mu);
	return n;
}
