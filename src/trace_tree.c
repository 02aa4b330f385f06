/* trace_tree.c: osprofiler's report tree (see trace_tree.h). */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace_tree.h"

struct tt_node {
	char *id;		/* owned copies: a duplicate notification */
	size_t id_len;		/* replaces the payload they came from */
	char *parent;
	size_t parent_len;
	char *name;
	size_t name_len;
	json_t *info;		/* owned: the report's info object */
	json_t *project, *service, *host;	/* borrowed from info's payloads */
	json_t *exception;
	int64_t start_us, stop_us;
	unsigned char has_start, has_stop, error;
	unsigned flags;
	size_t up;		/* parent node index, SIZE_MAX: root */
	size_t *kids;		/* node indices, owned */
	size_t n_kids, cap_kids;
};

struct trace_tree {
	struct tt_node *nodes;
	size_t n, cap;
	size_t *hash;		/* open addressing: node index + 1, 0 empty */
	size_t hash_cap;	/* power of 2 */
	size_t *roots;
	size_t n_roots;
	struct tt_span *spans;	/* display order, after build */
	size_t *order;		/* node index of each span */
	struct tt_summary sum;
	int built;
};

struct trace_tree *
trace_tree_new(void)
{
	struct trace_tree *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->sum.last_started_us = INT64_MIN;
	t->sum.started_us = INT64_MAX;
	t->sum.finished_us = INT64_MIN;
	return t;
}

void
trace_tree_free(struct trace_tree *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++) {
		free(t->nodes[i].id);
		free(t->nodes[i].parent);
		free(t->nodes[i].name);
		free(t->nodes[i].kids);
		json_decref(t->nodes[i].info);
	}
	free(t->nodes);
	free(t->hash);
	free(t->roots);
	free(t->spans);
	free(t->order);
	free(t);
}

/* ------------------------------------------------------------ times */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* 1 to max digits at s[*i] into *v; 0, or -1 when none. */
static int
digits(const char *s, size_t len, size_t *i, int min, int max, unsigned *v)
{
	int n = 0;

	*v = 0;
	while (*i < len && n < max && s[*i] >= '0' && s[*i] <= '9') {
		*v = *v * 10 + (unsigned)(s[*i] - '0');
		(*i)++;
		n++;
	}
	return n >= min ? 0 : -1;
}

static int
expect(const char *s, size_t len, size_t *i, char c)
{
	if (*i >= len || s[*i] != c)
		return -1;
	(*i)++;
	return 0;
}

int
trace_tree_parse_time(const char *s, size_t len, int64_t *us)
{
	static const unsigned mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned y, mo, d, h, mi, sec, frac, fd;
	size_t i = 0, f0;
	int leap;

	/* Python's _strptime: %Y four digits, the others one or two */
	if (digits(s, len, &i, 4, 4, &y) < 0 || expect(s, len, &i, '-') < 0 ||
	    digits(s, len, &i, 1, 2, &mo) < 0 || expect(s, len, &i, '-') < 0 ||
	    digits(s, len, &i, 1, 2, &d) < 0 || expect(s, len, &i, 'T') < 0 ||
	    digits(s, len, &i, 1, 2, &h) < 0 || expect(s, len, &i, ':') < 0 ||
	    digits(s, len, &i, 1, 2, &mi) < 0 || expect(s, len, &i, ':') < 0 ||
	    digits(s, len, &i, 1, 2, &sec) < 0 || expect(s, len, &i, '.') < 0)
		return -1;
	f0 = i;
	if (digits(s, len, &i, 1, 6, &frac) < 0 || i != len)
		return -1;
	for (fd = (unsigned)(i - f0); fd < 6; fd++)
		frac *= 10;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 59)
		return -1;
	*us = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) *
	    1000000) + frac;
	return 0;
}

/* ------------------------------------------------------ the id index */

static size_t
hash_bytes(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;	/* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return (size_t)(h ^ (h >> 29));
}

/* The node index of id, or SIZE_MAX. */
static size_t
find(const struct trace_tree *t, const char *id, size_t len)
{
	size_t h, k, v;

	if (t->hash_cap == 0)
		return SIZE_MAX;
	for (h = hash_bytes(id, len), k = 0; k < t->hash_cap; k++) {
		v = t->hash[(h + k) & (t->hash_cap - 1)];
		if (v == 0)
			return SIZE_MAX;
		if (t->nodes[v - 1].id_len == len &&
		    memcmp(t->nodes[v - 1].id, id, len) == 0)
			return v - 1;
	}
	return SIZE_MAX;
}

static void
hash_put(size_t *tab, size_t cap, const struct tt_node *nd, size_t idx)
{
	size_t h = hash_bytes(nd->id, nd->id_len);

	while (tab[h & (cap - 1)] != 0)
		h++;
	tab[h & (cap - 1)] = idx + 1;
}

/* Room for one more node in nodes[] and the index (load <= 1/2). */
static int
reserve(struct trace_tree *t)
{
	struct tt_node *nn;
	size_t *nh, nc, i;

	if (t->n == t->cap) {
		nc = t->cap ? t->cap * 2 : 64;
		if ((nn = realloc(t->nodes, nc * sizeof(*nn))) == NULL)
			return -1;
		t->nodes = nn;
		t->cap = nc;
	}
	if ((t->n + 1) * 2 > t->hash_cap) {
		nc = t->hash_cap ? t->hash_cap * 2 : 128;
		if ((nh = calloc(nc, sizeof(*nh))) == NULL)
			return -1;
		for (i = 0; i < t->n; i++)
			hash_put(nh, nc, &t->nodes[i], i);
		free(t->hash);
		t->hash = nh;
		t->hash_cap = nc;
	}
	return 0;
}

static char *
dup_bytes(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (p != NULL) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

/* ------------------------------------------------------------ adding */

/* json_object_set_new that keeps the key's place when it exists (jansson
 * replaces a value in place, as a Python dict does). 0/-1. */
static int
set_new(json_t *o, const char *k, json_t *v)
{
	return v == NULL ? -1 : json_object_set_new(o, k, v);
}

/* The node for n's trace_id, created as osprofiler does from the first
 * notification of that span. SIZE_MAX for ENOMEM. */
static size_t
node_for(struct trace_tree *t, json_t *n, const char *id, size_t id_len,
    const char *name, size_t name_len)
{
	struct tt_node *nd;
	json_t *info, *jp, *jinfo;
	const char *dash;
	size_t idx;

	if ((idx = find(t, id, id_len)) != SIZE_MAX)
		return idx;
	if (reserve(t) < 0)
		return SIZE_MAX;
	nd = &t->nodes[t->n];
	memset(nd, 0, sizeof(*nd));
	nd->up = SIZE_MAX;
	dash = memchr(name, '-', name_len);
	nd->name_len = dash != NULL ? (size_t)(dash - name) : name_len;
	jp = json_object_get(n, "parent_id");
	if (json_is_string(jp)) {
		nd->parent = dup_bytes(json_string_value(jp), json_string_length(jp));
		nd->parent_len = json_string_length(jp);
	} else {
		nd->parent = dup_bytes("", 0);
	}
	nd->id = dup_bytes(id, id_len);
	nd->id_len = id_len;
	nd->name = dup_bytes(name, nd->name_len);
	if ((info = nd->info = json_object()) == NULL || nd->id == NULL ||
	    nd->parent == NULL || nd->name == NULL)
		goto fail;
	jinfo = json_object_get(n, "info");
	nd->project = json_object_get(n, "project");
	nd->service = json_object_get(n, "service");
	nd->host = json_is_object(jinfo) ? json_object_get(jinfo, "host") : NULL;
	if (set_new(info, "name", json_stringn(nd->name, nd->name_len)) < 0 ||
	    set_new(info, "project", nd->project ? json_incref(nd->project) : json_null()) < 0 ||
	    set_new(info, "service", nd->service ? json_incref(nd->service) : json_null()) < 0 ||
	    set_new(info, "host", nd->host ? json_incref(nd->host) : json_null()) < 0)
		goto fail;
	/* the values now live in info: point there */
	nd->project = json_object_get(info, "project");
	nd->service = json_object_get(info, "service");
	nd->host = json_object_get(info, "host");
	hash_put(t->hash, t->hash_cap, nd, t->n);
	return t->n++;
fail:
	free(nd->id);
	free(nd->parent);
	free(nd->name);
	json_decref(nd->info);
	return SIZE_MAX;
}

int
trace_tree_add(struct trace_tree *t, const char *text, size_t len)
{
	json_t *n, *jid, *jname, *jts, *jinfo, *exc;
	const char *name;
	struct tt_node *nd;
	size_t idx, name_len;
	int64_t ts;
	char *key = NULL;
	int stop, rc = -1;

	if (t->built || t->sum.n_notifications >= TT_MAX_NOTIFICATIONS)
		return -2;
	t->sum.n_notifications++;
	/* NULs inside strings are data, as in Python's json */
	n = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
	jid = json_object_get(n, "trace_id");
	jname = json_object_get(n, "name");
	jts = json_object_get(n, "timestamp");
	if (!json_is_object(n) || !json_is_string(jid) || !json_is_string(jname) ||
	    !json_is_string(jts) || trace_tree_parse_time(json_string_value(jts),
	    json_string_length(jts), &ts) < 0)
		goto skip;
	name = json_string_value(jname);
	name_len = json_string_length(jname);
	idx = node_for(t, n, json_string_value(jid), json_string_length(jid),
	    name, name_len);
	if (idx == SIZE_MAX)
		goto enomem;
	nd = &t->nodes[idx];
	/* "meta.raw_payload.%s" % name: a key holding a NUL is cut there by
	 * jansson's C-string keys; such a name is hostile anyway */
	if ((key = malloc(name_len + 18)) == NULL)
		goto enomem;
	memcpy(key, "meta.raw_payload.", 17);
	memcpy(key + 17, name, name_len);
	key[17 + name_len] = '\0';
	if (json_object_set(nd->info, key, n) < 0)
		goto enomem;
	stop = name_len >= 4 && memcmp(name + name_len - 4, "stop", 4) == 0;
	if (stop) {
		nd->stop_us = ts;
		nd->has_stop = 1;
		jinfo = json_object_get(n, "info");
		exc = json_is_object(jinfo) ? json_object_get(jinfo, "etype") : NULL;
		nd->error = exc != NULL;
		/* placeholders: the times are set in place at build */
		if (set_new(nd->info, "finished", json_integer(0)) < 0 ||
		    set_new(nd->info, "exception", exc ? json_incref(exc) :
		    json_string("None")) < 0)
			goto enomem;
		nd->exception = json_object_get(nd->info, "exception");
	} else {
		nd->start_us = ts;
		nd->has_start = 1;
		if (set_new(nd->info, "started", json_integer(0)) < 0)
			goto enomem;
		if (ts > t->sum.last_started_us)
			t->sum.last_started_us = ts;
	}
	if (ts < t->sum.started_us)
		t->sum.started_us = ts;
	if (ts > t->sum.finished_us)
		t->sum.finished_us = ts;
	rc = 0;
	goto out;
enomem:
	rc = -2;
	t->sum.n_notifications--;
	goto out;
skip:
	t->sum.n_skipped++;
out:
	free(key);
	json_decref(n);
	return rc;
}

/* ------------------------------------------------------------ building */

static int
add_kid(struct tt_node *p, size_t kid)
{
	size_t *nk, nc;

	if (p->n_kids == p->cap_kids) {
		nc = p->cap_kids ? p->cap_kids * 2 : 4;
		if ((nk = realloc(p->kids, nc * sizeof(*nk))) == NULL)
			return -1;
		p->kids = nk;
		p->cap_kids = nc;
	}
	p->kids[p->n_kids++] = kid;
	return 0;
}

static void
remove_kid(struct tt_node *p, size_t kid)
{
	size_t i;

	for (i = 0; i < p->n_kids; i++)
		if (p->kids[i] == kid) {
			memmove(p->kids + i, p->kids + i + 1,
			    (p->n_kids - i - 1) * sizeof(*p->kids));
			p->n_kids--;
			return;
		}
}

/* Whole ms since the trace started, truncated as int(µs / 1000.0). */
static int64_t
ms_of(const struct trace_tree *t, int64_t us)
{
	return (us - t->sum.started_us) / 1000;
}

static const struct trace_tree *sort_tree;	/* qsort has no argument */

static int
by_start(const void *a, const void *b)
{
	const struct tt_node *x = &sort_tree->nodes[*(const size_t *)a];
	const struct tt_node *y = &sort_tree->nodes[*(const size_t *)b];
	int64_t sx = ms_of(sort_tree, x->start_us), sy = ms_of(sort_tree, y->start_us);

	if (sx != sy)
		return sx < sy ? -1 : 1;
	/* Python's sort is stable: arrival order among equals */
	return *(const size_t *)a < *(const size_t *)b ? -1 :
	    *(const size_t *)a > *(const size_t *)b;
}

/*
 * Walk from the roots depth first, children in sorted order; a span deeper
 * than TT_MAX_DEPTH is cut off and appended as a root (its walk comes when
 * the loop reaches it). Marks every visited node in seen[]; fills spans
 * and order from *n on. Iterative: depth is attacker-chosen. -1 ENOMEM.
 */
static int
walk(struct trace_tree *t, size_t root_from, char *seen, size_t *n)
{
	size_t *stack = NULL, sp = 0, r, v, i;
	struct tt_node *nd;
	unsigned *depth = NULL;

	if (t->n > 0 && ((stack = malloc(t->n * sizeof(*stack))) == NULL ||
	    (depth = malloc(t->n * sizeof(*depth))) == NULL))
		goto fail;
	for (r = root_from; r < t->n_roots; r++) {
		stack[sp] = t->roots[r];
		depth[sp++] = 0;
		while (sp > 0) {
			v = stack[--sp];
			nd = &t->nodes[v];
			seen[v] = 1;
			if (depth[sp] > TT_MAX_DEPTH) {
				remove_kid(&t->nodes[nd->up], v);
				nd->up = SIZE_MAX;
				nd->flags |= TT_F_DEEP;
				t->sum.n_deep_cut++;
				/* roots has room for every node */
				t->roots[t->n_roots++] = v;
				continue;
			}
			t->order[*n] = v;
			t->spans[*n].depth = depth[sp];
			(*n)++;
			if (nd->n_kids > 1)	/* qsort(NULL, 0) is undefined */
				qsort(nd->kids, nd->n_kids, sizeof(*nd->kids), by_start);
			/* pushed in reverse so the first child comes out first */
			for (i = nd->n_kids; i > 0; i--) {
				stack[sp] = nd->kids[i - 1];
				depth[sp++] = t->spans[*n - 1].depth + 1;
			}
		}
	}
	free(stack);
	free(depth);
	return 0;
fail:
	free(stack);
	free(depth);
	return -1;
}

int
trace_tree_build(struct trace_tree *t)
{
	size_t i, p, n = 0, k, *pos = NULL;
	char *seen = NULL;
	struct tt_node *nd;
	struct tt_span *s;

	if (t->built)
		return -1;
	t->built = 1;
	if (t->n == 0) {
		t->sum.started_us = t->sum.finished_us = 0;
		return 0;
	}
	if ((t->roots = malloc(t->n * sizeof(*t->roots))) == NULL ||
	    (t->spans = calloc(t->n, sizeof(*t->spans))) == NULL ||
	    (t->order = malloc(t->n * sizeof(*t->order))) == NULL ||
	    (seen = calloc(t->n, 1)) == NULL ||
	    (pos = malloc(t->n * sizeof(*pos))) == NULL)
		goto fail;
	/* _build_tree: in arrival order, under the parent if it is in the
	 * trace (itself included: that cycle is cut below), else a root */
	for (i = 0; i < t->n; i++) {
		nd = &t->nodes[i];
		p = find(t, nd->parent, nd->parent_len);
		if (p == SIZE_MAX) {
			t->roots[t->n_roots++] = i;
			continue;
		}
		if (add_kid(&t->nodes[p], i) < 0)
			goto fail;
		nd->up = p;
	}
	/* the "only one of start/stop" rule of _parse_results */
	for (i = 0; i < t->n; i++) {
		nd = &t->nodes[i];
		if (!nd->has_start)
			nd->start_us = nd->stop_us;
		if (!nd->has_stop)
			nd->stop_us = nd->start_us;
	}
	sort_tree = t;
	qsort(t->roots, t->n_roots, sizeof(*t->roots), by_start);
	if (walk(t, 0, seen, &n) < 0)
		goto fail;
	/* What no root reaches hangs in a cycle: cut each at its first span
	 * in arrival order, which becomes a root. */
	for (i = 0; i < t->n; i++) {
		if (seen[i])
			continue;
		nd = &t->nodes[i];
		remove_kid(&t->nodes[nd->up], i);
		nd->up = SIZE_MAX;
		nd->flags |= TT_F_CYCLE;
		t->sum.n_cycles_cut++;
		k = t->n_roots;
		t->roots[t->n_roots++] = i;
		if (walk(t, k, seen, &n) < 0)
			goto fail;
	}
	sort_tree = NULL;
	/* n == t->n: every node was visited exactly once */
	for (i = 0; i < n; i++)
		pos[t->order[i]] = i;
	for (i = 0; i < n; i++) {
		nd = &t->nodes[t->order[i]];
		s = &t->spans[i];
		s->trace_id = nd->id;
		s->id_len = nd->id_len;
		s->parent_id = nd->parent;
		s->parent_len = nd->parent_len;
		s->name = nd->name;
		s->name_len = nd->name_len;
		s->project = nd->project;
		s->service = nd->service;
		s->host = nd->host;
		s->exception = nd->exception;
		s->info = nd->info;
		s->start_us = nd->start_us - t->sum.started_us;
		s->finish_us = nd->stop_us - t->sum.started_us;
		s->start_ms = ms_of(t, nd->start_us);
		s->finish_ms = ms_of(t, nd->stop_us);
		s->has_start = nd->has_start;
		s->has_stop = nd->has_stop;
		s->error = nd->error;
		s->n_children = (unsigned)nd->n_kids;
		s->flags = nd->flags;
		s->parent = nd->up == SIZE_MAX ? SIZE_MAX : pos[nd->up];
		/* _parse_results: "started" first when it was missing */
		if (set_new(nd->info, "started", json_integer(s->start_ms)) < 0 ||
		    set_new(nd->info, "finished", json_integer(s->finish_ms)) < 0)
			goto fail;
	}
	t->sum.n_spans = n;
	free(seen);
	free(pos);
	return 0;
fail:
	sort_tree = NULL;
	free(seen);
	free(pos);
	t->sum.n_spans = 0;
	return -1;
}

void
trace_tree_summary(const struct trace_tree *t, struct tt_summary *out)
{
	*out = t->sum;
}

const struct tt_span *
trace_tree_span(const struct trace_tree *t, size_t i)
{
	return i < t->sum.n_spans ? &t->spans[i] : NULL;
}

json_t *
trace_tree_report(const struct trace_tree *t)
{
	json_t *rep = NULL, *info, *kids, **node = NULL, *stats, *st, *o;
	const struct tt_span *s;
	const struct tt_node *nd;
	size_t i;
	char *name;

	if (!t->built || (rep = json_object()) == NULL ||
	    (info = json_object()) == NULL || json_object_set_new(rep, "info", info) < 0 ||
	    (kids = json_array()) == NULL || json_object_set_new(rep, "children", kids) < 0 ||
	    (stats = json_object()) == NULL || json_object_set_new(rep, "stats", stats) < 0)
		goto fail;
	if (set_new(info, "name", json_string("total")) < 0 ||
	    set_new(info, "started", json_integer(0)) < 0 ||
	    set_new(info, "finished", t->sum.n_spans ?
	    json_integer(ms_of(t, t->sum.finished_us)) : json_null()) < 0 ||
	    set_new(info, "last_trace_started", t->sum.last_started_us != INT64_MIN ?
	    json_integer(ms_of(t, t->sum.last_started_us)) : json_null()) < 0)
		goto fail;
	if (t->sum.n_spans > 0 && (node = calloc(t->sum.n_spans, sizeof(*node))) == NULL)
		goto fail;
	for (i = 0; i < t->sum.n_spans; i++) {
		s = &t->spans[i];
		nd = &t->nodes[t->order[i]];
		if ((node[i] = o = json_object()) == NULL)
			goto fail;
		/* borrowed by the array below right away, so freed with rep */
		if (json_array_append_new(s->parent == SIZE_MAX ? kids :
		    json_object_get(node[s->parent], "children"), o) < 0 ||
		    json_object_set(o, "info", nd->info) < 0 ||
		    set_new(o, "trace_id", json_stringn(nd->id, nd->id_len)) < 0 ||
		    set_new(o, "parent_id", json_stringn(nd->parent, nd->parent_len)) < 0 ||
		    set_new(o, "children", json_array()) < 0)
			goto fail;
		/* stats by name; a name with a NUL is cut there (C keys) */
		name = nd->name;
		if ((st = json_object_get(stats, name)) == NULL) {
			if ((st = json_object()) == NULL ||
			    json_object_set_new(stats, name, st) < 0 ||
			    set_new(st, "count", json_integer(0)) < 0 ||
			    set_new(st, "duration", json_integer(0)) < 0)
				goto fail;
		}
		json_integer_set(json_object_get(st, "count"),
		    json_integer_value(json_object_get(st, "count")) + 1);
		json_integer_set(json_object_get(st, "duration"),
		    json_integer_value(json_object_get(st, "duration")) +
		    (s->finish_ms - s->start_ms));
	}
	free(node);
	return rep;
fail:
	free(node);
	json_decref(rep);
	return NULL;
}
