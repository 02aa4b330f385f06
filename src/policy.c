/*
 * policy.c: Jaeger sampling-strategies documents -> struct sampling_policy.
 *
 * Parsing is pure (text in, policy or reason out) so the fuzzer, the unit
 * tests and every policy source share it. A policy is immutable once built,
 * except for the atomic state of its rate limiters, which belongs to the
 * policy on purpose: a new policy starts with fresh buckets.
 *
 * Lookups are two open-addressing hash probes (service, then operation) over
 * tables built at parse time, so a 100-operation policy costs the same per
 * request as a 1-operation one.
 */
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"
#include "sampling.h"	/* the buckets and thresholds a policy holds */
#include "util.h"

/* Bounds on what one document may hold: generous for any real deployment,
 * small enough that a hostile document cannot make the control thread
 * allocate without limit. */
#define POLICY_MAX_SERVICES	1024
#define POLICY_MAX_OPS		4096	/* per strategy */
#define POLICY_MAX_NAME		255	/* service name bytes */
#define POLICY_MAX_DOC		(4 * 1024 * 1024)

struct policy_op {
	char *name;
	uint32_t hash;
	double p;
	uint64_t threshold;
	int inherited;		/* copied from the default strategy's operations */
};

struct policy_strategy {
	char *service;		/* NULL for the default strategy */
	uint32_t hash;
	enum sampling_strategy_type type;
	double param;
	uint64_t threshold;	/* probabilistic */
	double lower_bound;	/* remote form; 0 = none */
	struct policy_op *ops;
	size_t n_ops, cap_ops;
	uint32_t *slots;	/* index + 1 into ops; 0 = empty */
	uint32_t mask;
	struct sampling_bucket bucket;		/* ratelimiting */
	struct sampling_bucket lb_other;	/* lower bound, unlisted operations */
	struct sampling_bucket *lb;		/* lower bound per op (n_ops) */
};

struct sampling_policy {
	_Atomic int refcnt;
	struct policy_strategy def;
	struct policy_strategy *svcs;
	size_t n_svcs;
	uint32_t *slots;	/* index + 1 into svcs */
	uint32_t mask;
};

/* FNV-1a: short keys, good enough spread for open addressing. */
static uint32_t
policy_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static void
strategy_clear(struct policy_strategy *s)
{
	size_t i;

	free(s->service);
	for (i = 0; i < s->n_ops; i++)
		free(s->ops[i].name);
	free(s->ops);
	free(s->slots);
	free(s->lb);
	memset(s, 0, sizeof(*s));
}

/*
 * Build the open-addressing index over n items whose hash and name are
 * reached through the callbacks. Returns 0, or -1 on allocation failure.
 * Duplicates must have been rejected before.
 */
static int
index_build(size_t n, uint32_t (*hash_at)(const void *, size_t), const void *arg,
    uint32_t **slots_out, uint32_t *mask_out)
{
	size_t size = 8, i;
	uint32_t *slots;

	while (size < 2 * n)
		size <<= 1;
	slots = calloc(size, sizeof(*slots));
	if (slots == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		uint32_t j = hash_at(arg, i) & (uint32_t)(size - 1);

		while (slots[j] != 0)
			j = (j + 1) & (uint32_t)(size - 1);
		slots[j] = (uint32_t)i + 1;
	}
	*slots_out = slots;
	*mask_out = (uint32_t)(size - 1);
	return 0;
}

static uint32_t
op_hash_at(const void *arg, size_t i)
{
	return ((const struct policy_op *)arg)[i].hash;
}

static uint32_t
svc_hash_at(const void *arg, size_t i)
{
	return ((const struct policy_strategy *)arg)[i].hash;
}

static struct policy_op *
strategy_find_op(const struct policy_strategy *s, const char *name, uint32_t h)
{
	uint32_t j;

	if (s->slots == NULL)
		return NULL;
	for (j = h & s->mask; s->slots[j] != 0; j = (j + 1) & s->mask) {
		struct policy_op *o = &s->ops[s->slots[j] - 1];

		if (o->hash == h && strcmp(o->name, name) == 0)
			return o;
	}
	return NULL;
}

static struct policy_strategy *
policy_find_service(const struct sampling_policy *p, const char *name, uint32_t h)
{
	uint32_t j;

	if (p->slots == NULL)
		return NULL;
	for (j = h & p->mask; p->slots[j] != 0; j = (j + 1) & p->mask) {
		struct policy_strategy *s = &p->svcs[p->slots[j] - 1];

		if (s->hash == h && strcmp(s->service, name) == 0)
			return s;
	}
	return NULL;
}

/* Finish a strategy whose type/param/ops are set: thresholds, buckets,
 * index. 0/-1 (allocation). */
static int
strategy_finish(struct policy_strategy *s)
{
	size_t i;

	if (s->type == SAMPLING_PROBABILISTIC)
		s->threshold = sampling_threshold(s->param);
	sampling_bucket_init(&s->bucket,
	    s->type == SAMPLING_RATELIMITING ? s->param : -1.0);
	sampling_bucket_init(&s->lb_other, s->lower_bound);
	free(s->lb);
	s->lb = NULL;
	if (s->lower_bound > 0 && s->n_ops > 0) {
		s->lb = calloc(s->n_ops, sizeof(*s->lb));
		if (s->lb == NULL)
			return -1;
		for (i = 0; i < s->n_ops; i++)
			sampling_bucket_init(&s->lb[i], s->lower_bound);
	}
	for (i = 0; i < s->n_ops; i++) {
		s->ops[i].hash = policy_hash(s->ops[i].name);
		s->ops[i].threshold = sampling_threshold(s->ops[i].p);
	}
	free(s->slots);
	s->slots = NULL;
	if (s->n_ops == 0)
		return 0;
	return index_build(s->n_ops, op_hash_at, s->ops, &s->slots, &s->mask);
}

/* Append an operation (name copied). 0/-1 (allocation). */
static int
strategy_add_op(struct policy_strategy *s, const char *name, double p,
    int inherited)
{
	struct policy_op *ops;

	if (tb_grow(&s->ops, &s->cap_ops, s->n_ops + 1, sizeof(*s->ops)) < 0)
		return -1;
	ops = s->ops;
	ops[s->n_ops].name = strdup(name);
	if (ops[s->n_ops].name == NULL)
		return -1;
	ops[s->n_ops].p = p;
	ops[s->n_ops].hash = policy_hash(name);
	ops[s->n_ops].inherited = inherited;
	s->n_ops++;
	return 0;
}

static int
strategy_has_op(const struct policy_strategy *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n_ops; i++)
		if (strcmp(s->ops[i].name, name) == 0)
			return 1;
	return 0;
}

static struct sampling_policy *
policy_alloc(void)
{
	struct sampling_policy *p = calloc(1, sizeof(*p));

	if (p != NULL)
		atomic_init(&p->refcnt, 1);
	return p;
}

static void
policy_free(struct sampling_policy *p)
{
	size_t i;

	if (p == NULL)
		return;
	strategy_clear(&p->def);
	for (i = 0; i < p->n_svcs; i++)
		strategy_clear(&p->svcs[i]);
	free(p->svcs);
	free(p->slots);
	free(p);
}

struct sampling_policy *
policy_ref(struct sampling_policy *p)
{
	if (p != NULL)
		atomic_fetch_add_explicit(&p->refcnt, 1, memory_order_relaxed);
	return p;
}

void
policy_unref(struct sampling_policy *p)
{
	if (p == NULL)
		return;
	if (atomic_fetch_sub_explicit(&p->refcnt, 1, memory_order_acq_rel) == 1)
		policy_free(p);
}

/*
 * Merge the default's operations into every service that does not name them
 * (Jaeger does the same), then build every index. 0/-1 with err.
 */
static int
policy_finish(struct sampling_policy *p, char *err, size_t errlen)
{
	size_t i, j;

	for (i = 0; i < p->n_svcs; i++) {
		struct policy_strategy *s = &p->svcs[i];

		for (j = 0; j < p->def.n_ops; j++) {
			if (strategy_has_op(s, p->def.ops[j].name))
				continue;
			if (s->n_ops >= POLICY_MAX_OPS * 2)
				break;
			if (strategy_add_op(s, p->def.ops[j].name,
			    p->def.ops[j].p, 1) == -1)
				goto nomem;
		}
		s->hash = policy_hash(s->service);
		if (strategy_finish(s) == -1)
			goto nomem;
	}
	if (strategy_finish(&p->def) == -1)
		goto nomem;
	if (p->n_svcs > 0 &&
	    index_build(p->n_svcs, svc_hash_at, p->svcs, &p->slots, &p->mask) == -1)
		goto nomem;
	return 0;
nomem:
	tb_errf(err, errlen, "out of memory");
	return -1;
}

struct sampling_policy *
policy_new_default(double probability)
{
	struct sampling_policy *p = policy_alloc();

	if (p == NULL)
		return NULL;
	if (!(probability >= 0.0))
		probability = 0.0;
	if (probability > 1.0)
		probability = 1.0;
	p->def.type = SAMPLING_PROBABILISTIC;
	p->def.param = probability;
	if (policy_finish(p, NULL, 0) == -1) {
		policy_free(p);
		return NULL;
	}
	return p;
}

/* ---------------- JSON helpers ---------------- */

/* A member that is absent or null counts as absent. */
static json_t *
member(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_null(v) ? NULL : v;
}

static int
get_probability(json_t *v, const char *where, double *out, char *err, size_t errlen)
{
	double d;

	if (!json_is_number(v)) {
		tb_errf(err, errlen, "%s: must be a number", where);
		return -1;
	}
	d = json_number_value(v);
	if (!isfinite(d) || d < 0.0 || d > 1.0) {
		tb_errf(err, errlen, "%s: probability %g outside [0,1]", where, d);
		return -1;
	}
	*out = d;
	return 0;
}

static int
get_rate(json_t *v, const char *where, double *out, char *err, size_t errlen)
{
	double d;

	if (!json_is_number(v)) {
		tb_errf(err, errlen, "%s: must be a number", where);
		return -1;
	}
	d = json_number_value(v);
	if (!isfinite(d) || d < 0.0) {
		tb_errf(err, errlen, "%s: traces per second %g must be >= 0", where, d);
		return -1;
	}
	if (d > 1e9) {
		tb_errf(err, errlen, "%s: traces per second %g is absurd (max 1e9)", where, d);
		return -1;
	}
	*out = d;
	return 0;
}

static int
get_name(json_t *v, const char *where, size_t max, const char **out,
    char *err, size_t errlen)
{
	const char *s;
	size_t n;

	if (v == NULL) {
		tb_errf(err, errlen, "%s: missing", where);
		return -1;
	}
	if (!json_is_string(v)) {
		tb_errf(err, errlen, "%s: must be a string", where);
		return -1;
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0) {
		tb_errf(err, errlen, "%s: must not be empty", where);
		return -1;
	}
	if (n > max) {
		tb_errf(err, errlen, "%s: longer than %zu bytes", where, max);
		return -1;
	}
	if (strlen(s) != n) {
		tb_errf(err, errlen, "%s: contains a NUL byte", where);
		return -1;
	}
	*out = s;
	return 0;
}

/* Add operation name with probability p to s, refusing a duplicate (both
 * document forms share this); w names the place for the message. */
static int
strategy_add_new_op(struct policy_strategy *s, const char *name, double p,
    const char *w, char *err, size_t errlen)
{
	if (strategy_has_op(s, name)) {
		tb_errf(err, errlen, "%s.operation: duplicate operation \"%s\"",
		    w, name);
		return -1;
	}
	if (strategy_add_op(s, name, p, 0) == -1) {
		tb_errf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* ---------------- Jaeger strategies-file form ---------------- */

/*
 * {"type": "probabilistic"|"ratelimiting", "param": N,
 *  "operation_strategies": [{"operation": S, "type": "probabilistic",
 *  "param": P}, ...]} into s. where names the object for messages.
 */
static int
parse_file_strategy(json_t *o, const char *where, struct policy_strategy *s,
    char *err, size_t errlen)
{
	json_t *type, *param, *ops, *op;
	const char *t;
	size_t i;
	char w[160];

	if (!json_is_object(o)) {
		tb_errf(err, errlen, "%s: must be an object", where);
		return -1;
	}
	type = member(o, "type");
	param = member(o, "param");
	if (type == NULL) {
		tb_errf(err, errlen, "%s.type: missing", where);
		return -1;
	}
	if (!json_is_string(type)) {
		tb_errf(err, errlen, "%s.type: must be a string", where);
		return -1;
	}
	t = json_string_value(type);
	if (param == NULL) {
		tb_errf(err, errlen, "%s.param: missing", where);
		return -1;
	}
	snprintf(w, sizeof(w), "%s.param", where);
	if (strcmp(t, "probabilistic") == 0) {
		s->type = SAMPLING_PROBABILISTIC;
		if (get_probability(param, w, &s->param, err, errlen) == -1)
			return -1;
	} else if (strcmp(t, "ratelimiting") == 0) {
		s->type = SAMPLING_RATELIMITING;
		if (get_rate(param, w, &s->param, err, errlen) == -1)
			return -1;
	} else {
		tb_errf(err, errlen, "%s.type: unknown strategy type \"%.32s\" "
		    "(probabilistic or ratelimiting)", where, t);
		return -1;
	}

	/* what policy_to_json writes for the remote form's guaranteed rate,
	 * and adaptive.c for min_traces_per_second */
	param = member(o, "lower_bound_traces_per_second");
	if (param != NULL) {
		snprintf(w, sizeof(w), "%s.lower_bound_traces_per_second", where);
		if (get_rate(param, w, &s->lower_bound, err, errlen) == -1)
			return -1;
	}
	ops = member(o, "operation_strategies");
	if (ops == NULL)
		return 0;
	if (!json_is_array(ops)) {
		tb_errf(err, errlen, "%s.operation_strategies: must be an array", where);
		return -1;
	}
	if (json_array_size(ops) > POLICY_MAX_OPS) {
		tb_errf(err, errlen, "%s.operation_strategies: more than %d operations",
		    where, POLICY_MAX_OPS);
		return -1;
	}
	json_array_foreach(ops, i, op) {
		const char *name;
		double p;

		snprintf(w, sizeof(w), "%s.operation_strategies[%zu]", where, i);
		if (!json_is_object(op)) {
			tb_errf(err, errlen, "%s: must be an object", w);
			return -1;
		}
		{
			char w2[200];

			snprintf(w2, sizeof(w2), "%s.operation", w);
			if (get_name(member(op, "operation"), w2, SAMPLING_OP_MAX - 1,
			    &name, err, errlen) == -1)
				return -1;
			type = member(op, "type");
			if (type == NULL) {
				tb_errf(err, errlen, "%s.type: missing", w);
				return -1;
			}
			if (!json_is_string(type)) {
				tb_errf(err, errlen, "%s.type: must be a string", w);
				return -1;
			}
			t = json_string_value(type);
			if (strcmp(t, "ratelimiting") == 0) {
				tb_errf(err, errlen, "%s.type: ratelimiting is not allowed "
				    "per operation (as in Jaeger)", w);
				return -1;
			}
			if (strcmp(t, "probabilistic") != 0) {
				tb_errf(err, errlen, "%s.type: unknown strategy type "
				    "\"%.32s\"", w, t);
				return -1;
			}
			param = member(op, "param");
			if (param == NULL) {
				tb_errf(err, errlen, "%s.param: missing", w);
				return -1;
			}
			snprintf(w2, sizeof(w2), "%s.param", w);
			if (get_probability(param, w2, &p, err, errlen) == -1)
				return -1;
		}
		if (strategy_add_new_op(s, name, p, w, err, errlen) == -1)
			return -1;
	}
	return 0;
}

static int
parse_file_form(json_t *root, struct sampling_policy *p, double defp,
    char *err, size_t errlen)
{
	json_t *svcs, *def, *so;
	size_t i, j;
	char w[64];

	def = member(root, "default_strategy");
	if (def != NULL) {
		if (parse_file_strategy(def, "default_strategy", &p->def,
		    err, errlen) == -1)
			return -1;
	} else {
		p->def.type = SAMPLING_PROBABILISTIC;
		p->def.param = defp;
	}

	svcs = member(root, "service_strategies");
	if (svcs == NULL)
		return 0;
	if (!json_is_array(svcs)) {
		tb_errf(err, errlen, "service_strategies: must be an array");
		return -1;
	}
	if (json_array_size(svcs) > POLICY_MAX_SERVICES) {
		tb_errf(err, errlen, "service_strategies: more than %d services",
		    POLICY_MAX_SERVICES);
		return -1;
	}
	p->svcs = calloc(json_array_size(svcs) + 1, sizeof(*p->svcs));
	if (p->svcs == NULL) {
		tb_errf(err, errlen, "out of memory");
		return -1;
	}
	json_array_foreach(svcs, i, so) {
		struct policy_strategy *s = &p->svcs[p->n_svcs];
		const char *name;
		char w2[80];

		snprintf(w, sizeof(w), "service_strategies[%zu]", i);
		if (!json_is_object(so)) {
			tb_errf(err, errlen, "%s: must be an object", w);
			return -1;
		}
		snprintf(w2, sizeof(w2), "%s.service", w);
		if (get_name(member(so, "service"), w2, POLICY_MAX_NAME, &name,
		    err, errlen) == -1)
			return -1;
		for (j = 0; j < p->n_svcs; j++) {
			if (strcmp(p->svcs[j].service, name) == 0) {
				tb_errf(err, errlen, "%s.service: duplicate service \"%s\"",
				    w, name);
				return -1;
			}
		}
		s->service = strdup(name);
		p->n_svcs++;	/* counted now so a failure below frees it */
		if (s->service == NULL) {
			tb_errf(err, errlen, "out of memory");
			return -1;
		}
		if (parse_file_strategy(so, w, s, err, errlen) == -1)
			return -1;
	}
	return 0;
}

/* ---------------- Jaeger remote-sampling response form ---------------- */

/* strategyType: "PROBABILISTIC" / "RATE_LIMITING" (any case) or 0 / 1. */
static int
parse_strategy_type(json_t *v, const char *prefix,
    enum sampling_strategy_type *out, char *err, size_t errlen)
{
	if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);

		if (n == 0 || n == 1) {
			*out = n == 0 ? SAMPLING_PROBABILISTIC : SAMPLING_RATELIMITING;
			return 0;
		}
		tb_errf(err, errlen, "%sstrategyType: unknown strategy type %lld "
		    "(0 PROBABILISTIC or 1 RATE_LIMITING)", prefix, (long long)n);
		return -1;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);

		if (strcasecmp(s, "PROBABILISTIC") == 0) {
			*out = SAMPLING_PROBABILISTIC;
			return 0;
		}
		if (strcasecmp(s, "RATE_LIMITING") == 0) {
			*out = SAMPLING_RATELIMITING;
			return 0;
		}
		tb_errf(err, errlen, "%sstrategyType: unknown strategy type \"%.32s\" "
		    "(PROBABILISTIC or RATE_LIMITING)", prefix, s);
		return -1;
	}
	tb_errf(err, errlen, "%sstrategyType: must be a string or an integer", prefix);
	return -1;
}

/* A sub-object like probabilisticSampling: must be an object; its number
 * field, when present, must be a number (proto3 omits zeroes). */
static json_t *
sub_number(json_t *obj, const char *objname, const char *field,
    const char *prefix, int *bad, char *err, size_t errlen)
{
	json_t *v;

	*bad = 0;
	if (!json_is_object(obj)) {
		tb_errf(err, errlen, "%s%s: must be an object", prefix, objname);
		*bad = 1;
		return NULL;
	}
	v = member(obj, field);
	return v;
}

static int
parse_remote_strategy(json_t *root, const char *prefix,
    struct policy_strategy *s, char *err, size_t errlen)
{
	json_t *st, *prob, *rl, *opsamp, *v, *ops, *op;
	enum sampling_strategy_type type = SAMPLING_PROBABILISTIC;
	char w[200];
	size_t i;
	int bad;

	if (!json_is_object(root)) {
		tb_errf(err, errlen, "%sdocument must be a JSON object", prefix);
		return -1;
	}
	st = member(root, "strategyType");
	prob = member(root, "probabilisticSampling");
	rl = member(root, "rateLimitingSampling");
	opsamp = member(root, "operationSampling");
	if (st != NULL && parse_strategy_type(st, prefix, &type, err, errlen) == -1)
		return -1;
	if (st == NULL && prob == NULL && rl == NULL && opsamp == NULL) {
		tb_errf(err, errlen, "%sno strategy: none of strategyType, "
		    "probabilisticSampling, rateLimitingSampling, operationSampling",
		    prefix);
		return -1;
	}
	/* Validate every part that is present, used or not: a broken part
	 * means a broken producer. */
	s->type = SAMPLING_PROBABILISTIC;
	s->param = 0.0;
	if (prob != NULL) {
		v = sub_number(prob, "probabilisticSampling", "samplingRate",
		    prefix, &bad, err, errlen);
		if (bad)
			return -1;
		snprintf(w, sizeof(w), "%sprobabilisticSampling.samplingRate", prefix);
		if (v != NULL && get_probability(v, w, &s->param, err, errlen) == -1)
			return -1;
	}
	if (rl != NULL) {
		double r = 0.0;

		v = sub_number(rl, "rateLimitingSampling", "maxTracesPerSecond",
		    prefix, &bad, err, errlen);
		if (bad)
			return -1;
		snprintf(w, sizeof(w), "%srateLimitingSampling.maxTracesPerSecond",
		    prefix);
		if (v != NULL && get_rate(v, w, &r, err, errlen) == -1)
			return -1;
		if (type == SAMPLING_RATELIMITING) {
			s->type = SAMPLING_RATELIMITING;
			s->param = r;
		}
	}
	if (opsamp == NULL) {
		if (type == SAMPLING_PROBABILISTIC && prob == NULL) {
			tb_errf(err, errlen, "%sprobabilisticSampling: missing for "
			    "strategyType PROBABILISTIC", prefix);
			return -1;
		}
		if (type == SAMPLING_RATELIMITING && rl == NULL) {
			tb_errf(err, errlen, "%srateLimitingSampling: missing for "
			    "strategyType RATE_LIMITING", prefix);
			return -1;
		}
		return 0;
	}

	/* Per-operation sampling wins over the rest, as in Jaeger's clients. */
	if (!json_is_object(opsamp)) {
		tb_errf(err, errlen, "%soperationSampling: must be an object", prefix);
		return -1;
	}
	s->type = SAMPLING_PROBABILISTIC;
	s->param = 0.0;
	v = member(opsamp, "defaultSamplingProbability");
	snprintf(w, sizeof(w), "%soperationSampling.defaultSamplingProbability",
	    prefix);
	if (v != NULL && get_probability(v, w, &s->param, err, errlen) == -1)
		return -1;
	v = member(opsamp, "defaultLowerBoundTracesPerSecond");
	snprintf(w, sizeof(w), "%soperationSampling.defaultLowerBoundTracesPerSecond",
	    prefix);
	if (v != NULL && get_rate(v, w, &s->lower_bound, err, errlen) == -1)
		return -1;
	v = member(opsamp, "defaultUpperBoundTracesPerSecond");
	if (v != NULL) {
		double ub;

		snprintf(w, sizeof(w),
		    "%soperationSampling.defaultUpperBoundTracesPerSecond", prefix);
		/* Validated, not enforced: max_traces_per_second caps. */
		if (get_rate(v, w, &ub, err, errlen) == -1)
			return -1;
	}
	ops = member(opsamp, "perOperationStrategies");
	if (ops == NULL)
		return 0;
	if (!json_is_array(ops)) {
		tb_errf(err, errlen, "%soperationSampling.perOperationStrategies: "
		    "must be an array", prefix);
		return -1;
	}
	if (json_array_size(ops) > POLICY_MAX_OPS) {
		tb_errf(err, errlen, "%soperationSampling.perOperationStrategies: more "
		    "than %d operations", prefix, POLICY_MAX_OPS);
		return -1;
	}
	json_array_foreach(ops, i, op) {
		const char *name;
		json_t *ps;
		double p = 0.0;
		char w2[240];

		snprintf(w, sizeof(w), "%soperationSampling.perOperationStrategies[%zu]",
		    prefix, i);
		if (!json_is_object(op)) {
			tb_errf(err, errlen, "%s: must be an object", w);
			return -1;
		}
		snprintf(w2, sizeof(w2), "%s.operation", w);
		if (get_name(member(op, "operation"), w2, SAMPLING_OP_MAX - 1, &name,
		    err, errlen) == -1)
			return -1;
		if (member(op, "rateLimitingSampling") != NULL) {
			tb_errf(err, errlen, "%s: ratelimiting is not allowed per "
			    "operation (as in Jaeger)", w);
			return -1;
		}
		ps = member(op, "probabilisticSampling");
		if (ps == NULL) {
			tb_errf(err, errlen, "%s.probabilisticSampling: missing", w);
			return -1;
		}
		snprintf(w2, sizeof(w2), "%s.probabilisticSampling", w);
		v = sub_number(ps, w2, "samplingRate", "", &bad, err, errlen);
		if (bad)
			return -1;
		snprintf(w2, sizeof(w2), "%s.probabilisticSampling.samplingRate", w);
		if (v != NULL && get_probability(v, w2, &p, err, errlen) == -1)
			return -1;
		if (strategy_add_new_op(s, name, p, w, err, errlen) == -1)
			return -1;
	}
	return 0;
}

static int
is_file_form(json_t *root)
{
	return json_object_get(root, "service_strategies") != NULL ||
	    json_object_get(root, "default_strategy") != NULL;
}

static int
is_remote_form(json_t *root)
{
	return json_object_get(root, "strategyType") != NULL ||
	    json_object_get(root, "probabilisticSampling") != NULL ||
	    json_object_get(root, "rateLimitingSampling") != NULL ||
	    json_object_get(root, "operationSampling") != NULL;
}

/* Parse text into a jansson tree with duplicate keys rejected. NULL + err. */
static json_t *
load_doc(const char *json, size_t len, const char *prefix, char *err,
    size_t errlen)
{
	json_error_t jerr;
	json_t *root;

	if (json == NULL || len == 0) {
		tb_errf(err, errlen, "%sempty document", prefix);
		return NULL;
	}
	if (len > POLICY_MAX_DOC) {
		tb_errf(err, errlen, "%sdocument larger than %d bytes", prefix,
		    POLICY_MAX_DOC);
		return NULL;
	}
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		tb_errf(err, errlen, "%sinvalid JSON at line %d column %d: %s", prefix,
		    jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		tb_errf(err, errlen, "%sdocument must be a JSON object", prefix);
		json_decref(root);
		return NULL;
	}
	return root;
}

int
policy_parse(const char *json, size_t len, double default_probability,
    struct sampling_policy **out, char *err, size_t errlen)
{
	struct sampling_policy *p = NULL;
	json_t *root;
	int file, remote;

	*out = NULL;
	if (!(default_probability >= 0.0 && default_probability <= 1.0)) {
		tb_errf(err, errlen, "default probability %g outside [0,1]",
		    default_probability);
		return -1;
	}
	root = load_doc(json, len, "", err, errlen);
	if (root == NULL)
		return -1;
	file = is_file_form(root);
	remote = is_remote_form(root);
	if (file && remote) {
		tb_errf(err, errlen, "document mixes the strategies-file form "
		    "(service_strategies/default_strategy) with the remote-sampling "
		    "form (strategyType/...)");
		goto fail;
	}
	if (!file && !remote) {
		tb_errf(err, errlen, "no strategies: expected service_strategies or "
		    "default_strategy (strategies file) or strategyType/"
		    "probabilisticSampling/rateLimitingSampling/operationSampling "
		    "(remote-sampling response)");
		goto fail;
	}
	p = policy_alloc();
	if (p == NULL) {
		tb_errf(err, errlen, "out of memory");
		goto fail;
	}
	if (file) {
		if (parse_file_form(root, p, default_probability, err, errlen) == -1)
			goto fail;
	} else {
		if (parse_remote_strategy(root, "", &p->def, err, errlen) == -1)
			goto fail;
	}
	if (policy_finish(p, err, errlen) == -1)
		goto fail;
	json_decref(root);
	*out = p;
	return 0;
fail:
	policy_free(p);
	json_decref(root);
	return -1;
}

int
policy_from_remote(size_t n, const char *const *services,
    const char *const *docs, const size_t *lens, double default_probability,
    struct sampling_policy **out, char *err, size_t errlen)
{
	struct sampling_policy *p = NULL;
	json_t *root = NULL;
	char prefix[POLICY_MAX_NAME + 16];
	size_t i, j;

	*out = NULL;
	if (n > POLICY_MAX_SERVICES) {
		tb_errf(err, errlen, "more than %d services", POLICY_MAX_SERVICES);
		return -1;
	}
	if (!(default_probability >= 0.0 && default_probability <= 1.0)) {
		tb_errf(err, errlen, "default probability %g outside [0,1]",
		    default_probability);
		return -1;
	}
	p = policy_alloc();
	if (p == NULL)
		goto nomem;
	p->def.type = SAMPLING_PROBABILISTIC;
	p->def.param = default_probability;
	p->svcs = calloc(n + 1, sizeof(*p->svcs));
	if (p->svcs == NULL)
		goto nomem;
	for (i = 0; i < n; i++) {
		struct policy_strategy *s = &p->svcs[p->n_svcs];

		if (services[i] == NULL || services[i][0] == '\0' ||
		    strlen(services[i]) > POLICY_MAX_NAME) {
			tb_errf(err, errlen, "service %zu: bad service name", i);
			goto fail;
		}
		for (j = 0; j < p->n_svcs; j++) {
			if (strcmp(p->svcs[j].service, services[i]) == 0) {
				tb_errf(err, errlen, "duplicate service \"%s\"",
				    services[i]);
				goto fail;
			}
		}
		snprintf(prefix, sizeof(prefix), "service %s: ", services[i]);
		root = load_doc(docs[i], lens[i], prefix, err, errlen);
		if (root == NULL)
			goto fail;
		if (is_file_form(root)) {
			tb_errf(err, errlen, "%sexpected a remote-sampling response, "
			    "got a strategies file", prefix);
			goto fail;
		}
		s->service = strdup(services[i]);
		p->n_svcs++;
		if (s->service == NULL)
			goto nomem;
		if (parse_remote_strategy(root, prefix, s, err, errlen) == -1)
			goto fail;
		json_decref(root);
		root = NULL;
	}
	if (policy_finish(p, err, errlen) == -1)
		goto fail;
	*out = p;
	return 0;
nomem:
	tb_errf(err, errlen, "out of memory");
fail:
	json_decref(root);
	policy_free(p);
	return -1;
}

/* ---------------- lookup and output ---------------- */

void
policy_lookup(const struct sampling_policy *p, const char *service,
    const char *operation, struct policy_choice *c)
{
	const struct policy_strategy *s;
	struct policy_strategy *svc;
	struct policy_op *o;
	uint32_t oh = policy_hash(operation);

	svc = p->n_svcs > 0 ? policy_find_service(p, service, policy_hash(service))
	    : NULL;
	s = svc != NULL ? svc : &p->def;
	o = strategy_find_op(s, operation, oh);
	if (o != NULL) {
		c->type = SAMPLING_PROBABILISTIC;
		c->scope = SAMPLING_SCOPE_OPERATION;
		c->param = o->p;
		c->threshold = o->threshold;
		c->lower_bound = s->lower_bound;
		c->bucket = s->lb != NULL ? &s->lb[o - s->ops] : NULL;
		return;
	}
	c->type = s->type;
	c->scope = svc != NULL ? SAMPLING_SCOPE_SERVICE : SAMPLING_SCOPE_DEFAULT;
	c->param = s->param;
	c->threshold = s->threshold;
	c->lower_bound = s->lower_bound;
	if (s->type == SAMPLING_RATELIMITING)
		c->bucket = (struct sampling_bucket *)&s->bucket;
	else
		c->bucket = s->lower_bound > 0 ?
		    (struct sampling_bucket *)&s->lb_other : NULL;
}

static json_t *
strategy_to_json(const struct policy_strategy *s)
{
	json_t *o = json_object(), *ops = json_array();
	size_t i;

	if (o == NULL || ops == NULL)
		goto fail;
	if (s->service != NULL)
		json_object_set_new(o, "service", json_string(s->service));
	json_object_set_new(o, "type", json_string(
	    s->type == SAMPLING_RATELIMITING ? "ratelimiting" : "probabilistic"));
	json_object_set_new(o, "param", json_real(s->param));
	if (s->lower_bound > 0)
		json_object_set_new(o, "lower_bound_traces_per_second",
		    json_real(s->lower_bound));
	for (i = 0; i < s->n_ops; i++) {
		json_t *op;

		if (s->ops[i].inherited)
			continue;
		op = json_pack("{s:s, s:s, s:f}", "operation", s->ops[i].name,
		    "type", "probabilistic", "param", s->ops[i].p);
		if (op != NULL)
			json_array_append_new(ops, op);
	}
	if (json_array_size(ops) > 0)
		json_object_set_new(o, "operation_strategies", ops);
	else
		json_decref(ops);
	return o;
fail:
	json_decref(o);
	json_decref(ops);
	return NULL;
}

static void
bucket_copy(struct sampling_bucket *to, const struct sampling_bucket *from)
{
	atomic_store_explicit(&to->tat, atomic_load_explicit(
	    &((struct sampling_bucket *)from)->tat, memory_order_relaxed),
	    memory_order_relaxed);
}

static void
strategy_carry(struct policy_strategy *to, const struct policy_strategy *from)
{
	size_t i;

	if (to->type == SAMPLING_RATELIMITING && from->type == SAMPLING_RATELIMITING)
		bucket_copy(&to->bucket, &from->bucket);
	if (to->lower_bound <= 0 || from->lower_bound <= 0)
		return;
	bucket_copy(&to->lb_other, &from->lb_other);
	for (i = 0; to->lb != NULL && i < to->n_ops; i++) {
		const struct policy_op *o = strategy_find_op(from, to->ops[i].name,
		    to->ops[i].hash);

		/* an operation new to the list spent from's shared bucket */
		bucket_copy(&to->lb[i], o != NULL && from->lb != NULL ?
		    &from->lb[o - from->ops] : &from->lb_other);
	}
}

void
policy_carry_limiters(struct sampling_policy *to,
    const struct sampling_policy *from)
{
	size_t i;

	if (from == NULL)
		return;
	strategy_carry(&to->def, &from->def);
	for (i = 0; i < to->n_svcs; i++) {
		struct policy_strategy *s = &to->svcs[i];
		const struct policy_strategy *f = from->n_svcs > 0 ?
		    policy_find_service(from, s->service, s->hash) : NULL;

		strategy_carry(s, f != NULL ? f : &from->def);
	}
}

static const struct policy_strategy *
strategy_for(const struct sampling_policy *p, const char *service)
{
	const struct policy_strategy *s = p->n_svcs > 0 ?
	    policy_find_service(p, service, policy_hash(service)) : NULL;

	return s != NULL ? s : &p->def;
}

static int
remote_add_ops(json_t *arr, const struct policy_strategy *s,
    const struct policy_strategy *skip)
{
	size_t i;

	for (i = 0; i < s->n_ops; i++) {
		const struct policy_op *o = &s->ops[i];

		if (skip != NULL && strategy_find_op(skip, o->name, o->hash) != NULL)
			continue;
		if (json_array_append_new(arr, json_pack("{s:s, s:{s:f}}",
		    "operation", o->name, "probabilisticSampling",
		    "samplingRate", o->p)) == -1)
			return -1;
	}
	return 0;
}

json_t *
policy_remote_json(const struct sampling_policy *x,
    const struct sampling_policy *a, const char *service)
{
	const struct policy_strategy *xs = strategy_for(x, service);
	const struct policy_strategy *as = a != NULL ? strategy_for(a, service) : NULL;
	const struct policy_strategy *d = as != NULL ? as : xs;
	json_t *ops = json_array(), *r;

	if (ops == NULL)
		return NULL;
	if (d->type == SAMPLING_RATELIMITING) {
		json_decref(ops);
		return json_pack("{s:s, s:{s:i}}", "strategyType", "RATE_LIMITING",
		    "rateLimitingSampling", "maxTracesPerSecond", (int)d->param);
	}
	/* the explicit operations first, then the adaptive ones it does not
	 * name: the same precedence as sampling_decide */
	if (remote_add_ops(ops, xs, NULL) == -1 ||
	    (as != NULL && remote_add_ops(ops, as, xs) == -1)) {
		json_decref(ops);
		return NULL;
	}
	r = json_pack("{s:s, s:{s:f}, s:{s:f, s:f, s:f, s:o}}", "strategyType",
	    "PROBABILISTIC", "probabilisticSampling", "samplingRate", d->param,
	    "operationSampling", "defaultSamplingProbability", d->param,
	    "defaultLowerBoundTracesPerSecond", d->lower_bound,
	    "defaultUpperBoundTracesPerSecond", 0.0, "perOperationStrategies", ops);
	return r;
}

json_t *
policy_to_json(const struct sampling_policy *p)
{
	json_t *root = json_object(), *svcs = json_array();
	size_t i;

	if (root == NULL || svcs == NULL)
		goto fail;
	for (i = 0; i < p->n_svcs; i++) {
		json_t *s = strategy_to_json(&p->svcs[i]);

		if (s != NULL)
			json_array_append_new(svcs, s);
	}
	json_object_set_new(root, "service_strategies", svcs);
	json_object_set_new(root, "default_strategy", strategy_to_json(&p->def));
	return root;
fail:
	json_decref(root);
	json_decref(svcs);
	return NULL;
}
