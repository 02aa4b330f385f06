/*
 * trace_tree.h: osprofiler notifications in, the report tree out, the way
 * `osprofiler trace show --json` builds it (osprofiler 3.4
 * drivers/base.py _append_results, _parse_results, _build_tree; see
 * /work/shared/reference/osprofiler.md). Pure: no I/O; the viewer feeds it
 * what LRANGE osprofiler_opt:<base_id> returned, the unit tests and
 * tests/fuzz/fuzz_trace_tree.c feed it hostile bytes.
 *
 * What osprofiler does, reproduced:
 *   - one node per trace_id, created by its first notification (name is
 *     the part of "name" before the first '-', parent_id, project, service
 *     and info.host come from that one);
 *   - every notification is kept in the node's info as
 *     "meta.raw_payload.<name>" (a later duplicate replaces an earlier one);
 *   - a name ending in "stop" sets finished and exception (info.etype of
 *     that payload, else "None"), anything else sets started; a node with
 *     only one of them gets the other equal to it (duration 0: osprofiler
 *     cannot tell that a stop is still to come);
 *   - times are whole milliseconds since the earliest timestamp of the
 *     trace, truncated; children and roots are sorted by started, stable;
 *   - a node whose parent_id is no trace_id of the trace is a root;
 *   - stats: count and summed duration per name.
 *
 * Where osprofiler would crash (it raises on a missing key, an unparsable
 * timestamp, and json.dumps raises "Circular reference detected" on a
 * cycle), this keeps going and says so:
 *   - a notification that is not a JSON object, or lacks a string trace_id,
 *     a string name or a parsable timestamp, is skipped and counted; a
 *     missing project, service, parent_id or info.host is null;
 *   - a cycle (a span its own ancestor, a span its own parent) is cut at
 *     the first span of it in arrival order, which becomes a root
 *     (TT_F_CYCLE);
 *   - a chain deeper than TT_MAX_DEPTH continues as a new root
 *     (TT_F_DEEP), so nothing that walks the tree (jansson's json_dumps
 *     recurses) can exhaust the stack.
 */
#ifndef TB_TRACE_TREE_H
#define TB_TRACE_TREE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define TT_MAX_NOTIFICATIONS	200000	/* trace_tree_add answers -2 past it */
#define TT_MAX_DEPTH		512

#define TT_F_CYCLE	0x01	/* made a root to cut a cycle */
#define TT_F_DEEP	0x02	/* made a root: deeper than TT_MAX_DEPTH */

/* One span in display order (see trace_tree_span). Pointers are owned by
 * the tree and live as long as it. */
struct tt_span {
	const char *trace_id;	/* NUL-terminated copy (may hold NULs: id_len) */
	size_t id_len;
	const char *parent_id;	/* "" when the notification had none */
	size_t parent_len;
	const char *name;	/* before the first '-'; may hold NULs: name_len */
	size_t name_len;
	const json_t *project;	/* as received: usually a string, else any */
	const json_t *service;	/* JSON value or NULL when absent */
	const json_t *host;
	const json_t *exception; /* etype of the stop, "None"; NULL: no stop */
	const json_t *info;	/* the node's report info object */
	int64_t start_ms;	/* since the trace's earliest timestamp */
	int64_t finish_ms;
	int64_t start_us;	/* the same in µs, for drawing */
	int64_t finish_us;
	int has_start;		/* a start notification was seen */
	int has_stop;		/* a stop notification was seen */
	int error;		/* the stop carried info.etype */
	unsigned depth;		/* 0 for a root */
	unsigned n_children;
	unsigned flags;		/* TT_F_* */
	size_t parent;		/* index of the parent span, or SIZE_MAX */
};

struct tt_summary {
	size_t n_notifications;	/* given to trace_tree_add */
	size_t n_skipped;	/* of those, not usable (see above) */
	size_t n_spans;
	size_t n_cycles_cut;
	size_t n_deep_cut;
	int64_t started_us;	/* earliest timestamp, µs since the epoch */
	int64_t finished_us;	/* latest */
	int64_t last_started_us; /* latest start; INT64_MIN: none */
};

struct trace_tree;

/* An empty tree; NULL for ENOMEM. */
struct trace_tree *trace_tree_new(void);
void trace_tree_free(struct trace_tree *t);

/*
 * One notification (its JSON text, len bytes, not NUL-terminated). Returns
 * 0 taken, -1 skipped (invalid, counted in n_skipped), -2 refused: out of
 * memory or past TT_MAX_NOTIFICATIONS. Not after trace_tree_build.
 */
int trace_tree_add(struct trace_tree *t, const char *json, size_t len);

/* Link, cut cycles, sort. Once; 0, or -1 for ENOMEM. With no span at all
 * it succeeds and trace_tree_summary says n_spans = 0. */
int trace_tree_build(struct trace_tree *t);

void trace_tree_summary(const struct trace_tree *t, struct tt_summary *out);

/* Spans after trace_tree_build, depth-first in display order (each span
 * before its children, children by start). i < n_spans. */
const struct tt_span *trace_tree_span(const struct trace_tree *t, size_t i);

/*
 * The report as `osprofiler trace show --json` prints it:
 * {"info": {"name": "total", "started": 0, "finished": ms,
 * "last_trace_started": ms}, "children": [...], "stats": {...}}.
 * A new reference (the caller decrefs), NULL for ENOMEM or before build.
 */
json_t *trace_tree_report(const struct trace_tree *t);

/*
 * osprofiler's "%Y-%m-%dT%H:%M:%S.%f" (UTC, 1 to 6 fraction digits, as
 * Python's strptime takes them) into µs since the epoch; 0, or -1.
 */
int trace_tree_parse_time(const char *s, size_t len, int64_t *us);

#endif
