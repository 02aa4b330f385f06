/*
 * trace_index.h: the bounded index of the traces this process recorded,
 * newest first, behind GET /traces on the admin endpoint (viewer.c).
 *
 * Where it lives, and why here rather than in Redis: a ring of
 * TRACE_INDEX_SIZE fixed-size entries in memory, written once per recorded
 * edge span (tracing.c on_complete, any worker) under one mutex and read by
 * the control thread. The alternative, a capped sorted set next to the
 * spans, would add a ZADD + ZREMRANGEBYRANK + EXPIRE to every span batch
 * of every worker and a second key per trace for every Redis user to age
 * out; the list only has to answer "what went through this proxy lately",
 * which this process knows without a round trip. The cost on the request
 * path is one uncontended lock and a copy of ~350 bytes: about 350
 * instructions per traced request of ~40,900 (bench/span_instructions.sh
 * with KEEP=1, callgrind_annotate of tracing.c index_add and
 * trace_index_add, 2026-12-03). The list page holds the lock while it
 * scans (4096 entries at most, a few µs). A restart empties the list; the traces themselves stay in Redis and
 * /traces/<id> finds any of them by id.
 */
#ifndef TB_TRACE_INDEX_H
#define TB_TRACE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define TRACE_INDEX_SIZE	4096

struct trace_index_entry {
	char base_id[37];	/* uuid, 8-4-4-4-12 lowercase */
	int64_t start_us;	/* wall clock, µs since the epoch */
	int64_t duration_us;
	int status;		/* HTTP status sent; 0 = none */
	int error;		/* the span was recorded as an error */
	char service[64];	/* the listener's service */
	char operation[96];
	char method[16];
	char request_id[96];	/* X-OpenStack-Request-ID of the response, or "" */
};

/* Record e (copied; over-long strings are cut). Any thread. */
void trace_index_add(const struct trace_index_entry *e);

/* Forget everything (tests). */
void trace_index_clear(void);

/*
 * Copy into out[max] the entries, newest first, that match q: NULL or ""
 * matches all; a trace id in any form trace_index_id() takes matches that
 * trace (a 64-bit id: any trace whose low 64 bits it is); anything else is
 * compared with the request id. Returns how many were copied.
 */
size_t trace_index_find(const char *q, struct trace_index_entry *out, size_t max);

/*
 * A trace id as a user may have it, into osprofiler's base_id form:
 * a uuid (any case), 32 hex digits (W3C, B3 128-bit), a whole W3C
 * traceparent (what the response's Server-Timing desc carries) or 16 hex
 * digits (a 64-bit id: B3, Jaeger), the latter as
 * 00000000-0000-0000-XXXX-XXXXXXXXXXXX (osprofiler.md §1). Returns 16 or
 * 32 (the bits the input had), or -1 when s is none of these.
 */
int trace_index_id(const char *s, size_t len, char out[37]);

#endif
