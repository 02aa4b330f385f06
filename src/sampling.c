/*
 * sampling.c: rate limiters and the per-request decision (layer 3 of
 * sampling.h; operation names are sampling_op.c).
 *
 * The hot path is sampling_decide(): a generation check (one atomic load),
 * two hash probes into the policy, at most three lock-free token-bucket takes
 * and one counter increment in the worker's own table. Workers never share a
 * cache line for counting; they share only the caps' buckets, touched only
 * for requests that are about to be sampled (or on ratelimited services).
 */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sampling.h"

/* ================================================================== */
/* Rate limiters                                                       */
/* ================================================================== */

static void
bucket_params(double rate, uint64_t *interval, uint64_t *tol, int *closed)
{
	double burst, iv;

	*closed = 0;
	*interval = 0;
	*tol = 0;
	if (rate < 0 || isnan(rate))
		return;			/* unlimited */
	if (rate == 0) {
		*closed = 1;
		return;
	}
	iv = 1e9 / rate;
	if (iv < 1)
		iv = 1;
	if (iv > 1e18)
		iv = 1e18;
	burst = rate < 1 ? 1 : rate;
	*interval = (uint64_t)iv;
	*tol = (uint64_t)((burst - 1) * iv);
}

void
sampling_bucket_init(struct sampling_bucket *b, double rate)
{
	uint64_t iv, tol;
	int closed;

	bucket_params(rate, &iv, &tol, &closed);
	atomic_init(&b->tat, 0);
	atomic_init(&b->interval, iv);
	atomic_init(&b->tolerance, tol);
	atomic_init(&b->closed, closed);
}

void
sampling_bucket_set_rate(struct sampling_bucket *b, double rate)
{
	uint64_t iv, tol;
	int closed;

	bucket_params(rate, &iv, &tol, &closed);
	atomic_store_explicit(&b->interval, iv, memory_order_relaxed);
	atomic_store_explicit(&b->tolerance, tol, memory_order_relaxed);
	atomic_store_explicit(&b->closed, closed, memory_order_relaxed);
}

/*
 * GCRA: a token is available when the theoretical arrival time is at most
 * tolerance ahead of now; taking one moves it interval further. Starting
 * from tat 0 the bucket is full.
 */
int
sampling_bucket_take(struct sampling_bucket *b, uint64_t now_ns)
{
	uint64_t iv, tol, tat, base;

	if (atomic_load_explicit(&b->closed, memory_order_relaxed))
		return 0;
	iv = atomic_load_explicit(&b->interval, memory_order_relaxed);
	if (iv == 0)
		return 1;
	tol = atomic_load_explicit(&b->tolerance, memory_order_relaxed);
	tat = atomic_load_explicit(&b->tat, memory_order_relaxed);
	do {
		if (tat > now_ns && tat - now_ns > tol)
			return 0;
		base = tat > now_ns ? tat : now_ns;
	} while (!atomic_compare_exchange_weak_explicit(&b->tat, &tat, base + iv,
	    memory_order_relaxed, memory_order_relaxed));
	return 1;
}

/* ================================================================== */
/* Ratio decision                                                      */
/* ================================================================== */

#define TWO_56 72057594037927936.0	/* 2^56 */

uint64_t
sampling_threshold(double p)
{
	if (!(p > 0))
		return (uint64_t)1 << 56;	/* nothing is >= 2^56 */
	if (p >= 1)
		return 0;
	return ((uint64_t)1 << 56) - (uint64_t)llround(p * TWO_56);
}

int
sampling_ratio_sampled(const uint8_t tid[16], uint64_t threshold)
{
	uint64_t r = 0;
	int i;

	for (i = 9; i < 16; i++)
		r = (r << 8) | tid[i];
	return r >= threshold;
}

/* ================================================================== */
/* Hub, samplers, counters                                             */
/* ================================================================== */

static const char *const reason_names[SAMPLING_REASON_MAX] = {
	[SAMPLING_REASON_FORCED] = "forced",
	[SAMPLING_REASON_FORCED_CAPPED] = "forced_capped",
	[SAMPLING_REASON_INCOMING_SAMPLED] = "incoming_sampled",
	[SAMPLING_REASON_INCOMING_DEBUG] = "incoming_debug",
	[SAMPLING_REASON_INCOMING_UNSAMPLED] = "incoming_unsampled",
	[SAMPLING_REASON_INCOMING_CAPPED] = "incoming_capped",
	[SAMPLING_REASON_PROBABILISTIC] = "probabilistic",
	[SAMPLING_REASON_RATELIMITING] = "ratelimiting",
	[SAMPLING_REASON_LOWER_BOUND] = "lower_bound",
	[SAMPLING_REASON_GLOBAL_CAP] = "global_cap",
	[SAMPLING_REASON_ADAPTIVE] = "adaptive",
	[SAMPLING_REASON_ADAPTIVE_LOWER_BOUND] = "adaptive_lower_bound",
};

const char *
sampling_sampler_type(enum sampling_reason r)
{
	switch (r) {
	case SAMPLING_REASON_PROBABILISTIC:
	case SAMPLING_REASON_ADAPTIVE:
		return "probabilistic";
	case SAMPLING_REASON_RATELIMITING:
		return "ratelimiting";
	case SAMPLING_REASON_LOWER_BOUND:
	case SAMPLING_REASON_ADAPTIVE_LOWER_BOUND:
		return "lowerbound";
	default:
		return NULL;
	}
}

const char *
sampling_reason_name(enum sampling_reason r)
{
	if ((unsigned)r >= SAMPLING_REASON_MAX)
		return "unknown";
	return reason_names[r];
}

/*
 * One (service, operation) row. Written by its worker only; the key is
 * filled before ready is released, so the control thread reads a row only
 * after acquiring ready == 1. Counts are relaxed atomics: single writer,
 * torn reads impossible, exactness across rows not promised.
 */
struct sampling_counter {
	_Atomic int ready;
	uint32_t hash;
	size_t service_len;
	size_t op_len;
	char service[SAMPLING_SERVICE_MAX];
	char op[SAMPLING_OP_MAX];
	_Atomic uint64_t n[SAMPLING_REASON_MAX][2];	/* [reason][sampled] */
};

#define COUNTER_SLOTS	(2 * SAMPLING_COUNTERS_MAX)
/* New operations stop this many rows before the end, keeping room for each
 * service's "other" row. */
#define COUNTER_RESERVE	64

struct sampler {
	struct sampling_hub *hub;
	struct sampling_policy *policy;	/* reference held */
	struct sampling_policy *adaptive;	/* reference held, or NULL */
	uint64_t gen;
	struct sampler *next;		/* hub->samplers, under hub->mu */
	size_t used;			/* rows in use; worker only */
	uint16_t slots[COUNTER_SLOTS];	/* row + 1; worker only */
	struct sampling_counter rows[SAMPLING_COUNTERS_MAX];
};

struct sampling_hub {
	pthread_mutex_t mu;
	/* under mu */
	struct sampling_policy *policy;
	char source[256];
	time_t loaded_at;
	char rej_source[256];
	char rej_reason[512];
	time_t rej_at;
	uint64_t n_rejected;
	struct sampling_policy *adaptive;	/* NULL = no adaptive layer */
	json_t *adaptive_meta;
	char adaptive_source[256];
	time_t adaptive_at;
	json_t *(*adaptive_status)(void);
	struct sampling_limits lim;
	struct sampler *samplers;
	/* lock-free */
	_Atomic uint64_t gen;
	struct sampling_bucket forced, incoming, global;
};

static uint32_t
fnv(const char *s, size_t n, uint32_t h)
{
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

/* Insert a row without lookup (caller checked). Returns the row or NULL. */
static struct sampling_counter *
row_insert(struct sampler *s, const char *svc, size_t sl, const char *op,
    size_t ol, uint32_t h)
{
	struct sampling_counter *c;
	uint32_t j;

	if (s->used >= SAMPLING_COUNTERS_MAX)
		return NULL;
	c = &s->rows[s->used];
	memcpy(c->service, svc, sl);
	c->service[sl] = '\0';
	c->service_len = sl;
	memcpy(c->op, op, ol);
	c->op[ol] = '\0';
	c->op_len = ol;
	c->hash = h;
	for (j = h & (COUNTER_SLOTS - 1); s->slots[j] != 0;
	    j = (j + 1) & (COUNTER_SLOTS - 1))
		;
	s->slots[j] = (uint16_t)(s->used + 1);
	s->used++;
	atomic_store_explicit(&c->ready, 1, memory_order_release);
	return c;
}

static struct sampling_counter *
row_find(struct sampler *s, const char *svc, size_t sl, const char *op,
    size_t ol, uint32_t h)
{
	uint32_t j;

	for (j = h & (COUNTER_SLOTS - 1); s->slots[j] != 0;
	    j = (j + 1) & (COUNTER_SLOTS - 1)) {
		struct sampling_counter *c = &s->rows[s->slots[j] - 1];

		if (c->hash == h && c->service_len == sl && c->op_len == ol &&
		    memcmp(c->service, svc, sl) == 0 && memcmp(c->op, op, ol) == 0)
			return c;
	}
	return NULL;
}

static uint32_t
row_hash(const char *svc, size_t sl, const char *op, size_t ol)
{
	return fnv(op, ol, fnv(svc, sl, 2166136261u) ^ 0x9e3779b9u);
}

/* The row to count (service, operation) in, folding when full. */
static struct sampling_counter *
row_get(struct sampler *s, const char *svc, const char *op)
{
	size_t sl = strnlen(svc, SAMPLING_SERVICE_MAX - 1);
	size_t ol = strnlen(op, SAMPLING_OP_MAX - 1);
	uint32_t h = row_hash(svc, sl, op, ol);
	struct sampling_counter *c;

	c = row_find(s, svc, sl, op, ol, h);
	if (c != NULL)
		return c;
	if (s->used < SAMPLING_COUNTERS_MAX - COUNTER_RESERVE)
		return row_insert(s, svc, sl, op, ol, h);
	h = row_hash(svc, sl, "other", 5);
	c = row_find(s, svc, sl, "other", 5, h);
	if (c == NULL)
		c = row_insert(s, svc, sl, "other", 5, h);
	return c != NULL ? c : &s->rows[0];
}

static void
limits_apply(struct sampling_hub *h, const struct sampling_limits *lim, int init)
{
	void (*f)(struct sampling_bucket *, double) =
	    init ? sampling_bucket_init : sampling_bucket_set_rate;

	/* <= 0 is "unlimited" here, as in the config file; a bucket's own
	 * rate 0 (a policy's "ratelimiting" 0) lets nothing through. */
	h->lim = *lim;
	f(&h->forced, lim->forced_max_per_second > 0 ?
	    lim->forced_max_per_second : -1);
	f(&h->incoming, lim->incoming_max_per_second > 0 ?
	    lim->incoming_max_per_second : -1);
	f(&h->global, lim->max_traces_per_second > 0 ?
	    lim->max_traces_per_second : -1);
}

struct sampling_hub *
sampling_hub_new(const struct sampling_limits *lim, struct sampling_policy *policy,
    const char *source)
{
	struct sampling_hub *h = calloc(1, sizeof(*h));

	if (h == NULL)
		goto fail;
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h);
		h = NULL;
		goto fail;
	}
	limits_apply(h, lim, 1);
	atomic_init(&h->gen, 0);
	if (policy == NULL) {
		policy = policy_new_default(SAMPLING_DEFAULT_PROBABILITY);
		source = "builtin";
		if (policy == NULL)
			goto fail;
	}
	h->policy = policy;
	policy = NULL;
	snprintf(h->source, sizeof(h->source), "%s", source ? source : "builtin");
	h->loaded_at = time(NULL);
	atomic_store(&h->gen, 1);
	return h;
fail:
	policy_unref(policy);
	sampling_hub_free(h);
	return NULL;
}

void
sampling_hub_free(struct sampling_hub *h)
{
	if (h == NULL)
		return;
	policy_unref(h->policy);
	policy_unref(h->adaptive);
	json_decref(h->adaptive_meta);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

void
sampling_hub_set_limits(struct sampling_hub *h, const struct sampling_limits *lim)
{
	pthread_mutex_lock(&h->mu);
	limits_apply(h, lim, 0);
	pthread_mutex_unlock(&h->mu);
}

void
sampling_hub_publish(struct sampling_hub *h, struct sampling_policy *policy,
    const char *source)
{
	struct sampling_policy *old;

	if (policy == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	old = h->policy;
	h->policy = policy;
	snprintf(h->source, sizeof(h->source), "%s", source ? source : "?");
	h->loaded_at = time(NULL);
	/* Released under the lock, so a worker that sees the new generation
	 * and takes the lock finds the new pointer. */
	atomic_fetch_add_explicit(&h->gen, 1, memory_order_release);
	pthread_mutex_unlock(&h->mu);
	policy_unref(old);
}

void
sampling_hub_publish_adaptive(struct sampling_hub *h,
    struct sampling_policy *policy, json_t *meta, const char *source)
{
	struct sampling_policy *old;
	json_t *old_meta;

	pthread_mutex_lock(&h->mu);
	old = h->adaptive;
	old_meta = h->adaptive_meta;
	if (policy != NULL)
		policy_carry_limiters(policy, old);
	h->adaptive = policy;
	h->adaptive_meta = meta;
	snprintf(h->adaptive_source, sizeof(h->adaptive_source), "%s",
	    source ? source : "?");
	h->adaptive_at = time(NULL);
	atomic_fetch_add_explicit(&h->gen, 1, memory_order_release);
	pthread_mutex_unlock(&h->mu);
	policy_unref(old);
	json_decref(old_meta);
}

void
sampling_hub_set_adaptive_status(struct sampling_hub *h, json_t *(*fn)(void))
{
	pthread_mutex_lock(&h->mu);
	h->adaptive_status = fn;
	pthread_mutex_unlock(&h->mu);
}

struct sampling_policy *
sampling_hub_adaptive(struct sampling_hub *h)
{
	struct sampling_policy *p;

	pthread_mutex_lock(&h->mu);
	p = h->adaptive != NULL ? policy_ref(h->adaptive) : NULL;
	pthread_mutex_unlock(&h->mu);
	return p;
}

json_t *
sampling_remote_json(struct sampling_hub *h, const char *service)
{
	json_t *r;

	pthread_mutex_lock(&h->mu);
	r = policy_remote_json(h->policy, h->adaptive, service);
	pthread_mutex_unlock(&h->mu);
	return r;
}

void
sampling_hub_rejected(struct sampling_hub *h, const char *source,
    const char *reason)
{
	pthread_mutex_lock(&h->mu);
	snprintf(h->rej_source, sizeof(h->rej_source), "%s", source ? source : "?");
	snprintf(h->rej_reason, sizeof(h->rej_reason), "%s", reason ? reason : "?");
	h->rej_at = time(NULL);
	h->n_rejected++;
	pthread_mutex_unlock(&h->mu);
}

struct sampling_policy *
sampling_hub_policy(struct sampling_hub *h)
{
	struct sampling_policy *p;

	pthread_mutex_lock(&h->mu);
	p = policy_ref(h->policy);
	pthread_mutex_unlock(&h->mu);
	return p;
}

uint64_t
sampling_hub_generation(struct sampling_hub *h)
{
	return atomic_load_explicit(&h->gen, memory_order_acquire);
}

struct sampler *
sampling_sampler_new(struct sampling_hub *h)
{
	struct sampler *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->hub = h;
	/* row 0 is the catch-all when even the "other" rows are exhausted */
	row_insert(s, "other", 5, "other", 5, row_hash("other", 5, "other", 5));
	pthread_mutex_lock(&h->mu);
	s->policy = policy_ref(h->policy);
	s->adaptive = h->adaptive != NULL ? policy_ref(h->adaptive) : NULL;
	s->gen = atomic_load_explicit(&h->gen, memory_order_relaxed);
	s->next = h->samplers;
	h->samplers = s;
	pthread_mutex_unlock(&h->mu);
	return s;
}

void
sampling_sampler_free(struct sampler *s)
{
	struct sampler **pp;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->hub->mu);
	for (pp = &s->hub->samplers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	pthread_mutex_unlock(&s->hub->mu);
	policy_unref(s->policy);
	policy_unref(s->adaptive);
	free(s);
}

/* Pick up a newly published policy: the mutex is taken only when the
 * generation moved, i.e. once per worker per publish. */
static void
sampler_refresh(struct sampler *s)
{
	struct sampling_hub *h = s->hub;
	struct sampling_policy *old, *old_a;

	if (atomic_load_explicit(&h->gen, memory_order_acquire) == s->gen)
		return;
	old = s->policy;
	old_a = s->adaptive;
	pthread_mutex_lock(&h->mu);
	s->policy = policy_ref(h->policy);
	s->adaptive = h->adaptive != NULL ? policy_ref(h->adaptive) : NULL;
	s->gen = atomic_load_explicit(&h->gen, memory_order_relaxed);
	pthread_mutex_unlock(&h->mu);
	policy_unref(old);
	policy_unref(old_a);
}

int
sampling_decide(struct sampler *s, const char *service, const char *operation,
    const uint8_t trace_id[16], int origin, int incoming_sampled,
    int incoming_debug, int trust_incoming, uint64_t now_ns,
    struct sampling_result *out)
{
	struct sampling_hub *h = s->hub;
	struct sampling_counter *c;
	struct policy_choice pc;
	int adaptive = 0;

	sampler_refresh(s);
	if (service == NULL)
		service = "";
	if (operation == NULL)
		operation = "";
	out->scope = SAMPLING_SCOPE_DEFAULT;
	out->param = -1;

	if (origin == SAMPLING_ORIGIN_OSPROFILER) {
		/* 1. the key holder asked */
		out->sampled = sampling_bucket_take(&h->forced, now_ns);
		out->reason = out->sampled ? SAMPLING_REASON_FORCED :
		    SAMPLING_REASON_FORCED_CAPPED;
	} else if (origin == SAMPLING_ORIGIN_INCOMING && trust_incoming &&
	    (incoming_debug || incoming_sampled == 0 || incoming_sampled == 1)) {
		/* 2. the caller decided */
		if (incoming_debug || incoming_sampled == 1) {
			out->sampled = sampling_bucket_take(&h->incoming, now_ns);
			out->reason = !out->sampled ?
			    SAMPLING_REASON_INCOMING_CAPPED : incoming_debug ?
			    SAMPLING_REASON_INCOMING_DEBUG :
			    SAMPLING_REASON_INCOMING_SAMPLED;
		} else {
			out->sampled = 0;
			out->reason = SAMPLING_REASON_INCOMING_UNSAMPLED;
		}
	} else {
		/* 3. the policy */
		policy_lookup(s->policy, service, operation, &pc);
		/* an operation the explicit policy names keeps it; the
		 * adaptive layer decides everything else */
		if (s->adaptive != NULL && pc.scope != SAMPLING_SCOPE_OPERATION) {
			policy_lookup(s->adaptive, service, operation, &pc);
			adaptive = 1;
		}
		out->scope = pc.scope;
		out->param = pc.param;
		if (pc.type == SAMPLING_RATELIMITING) {
			out->sampled = sampling_bucket_take(pc.bucket, now_ns);
			out->reason = SAMPLING_REASON_RATELIMITING;
		} else {
			out->sampled = sampling_ratio_sampled(trace_id, pc.threshold);
			out->reason = adaptive ? SAMPLING_REASON_ADAPTIVE :
			    SAMPLING_REASON_PROBABILISTIC;
			/* Jaeger's guaranteed throughput: the lower bound's
			 * tokens are spent by every sampled trace, and any
			 * left sample what the ratio refused. */
			if (pc.bucket != NULL &&
			    sampling_bucket_take(pc.bucket, now_ns) && !out->sampled) {
				out->sampled = 1;
				out->reason = adaptive ?
				    SAMPLING_REASON_ADAPTIVE_LOWER_BOUND :
				    SAMPLING_REASON_LOWER_BOUND;
			}
		}
	}
	/* 4. the per-proxy cap over everything */
	if (out->sampled && !sampling_bucket_take(&h->global, now_ns)) {
		out->sampled = 0;
		out->reason = SAMPLING_REASON_GLOBAL_CAP;
	}

	c = row_get(s, service, operation);
	atomic_store_explicit(&c->n[out->reason][out->sampled],
	    atomic_load_explicit(&c->n[out->reason][out->sampled],
	    memory_order_relaxed) + 1, memory_order_relaxed);
	return out->sampled;
}

/* ================================================================== */
/* Status and metrics (control thread)                                 */
/* ================================================================== */

static void
fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (t == 0 || gmtime_r(&t, &tm) == NULL) {
		snprintf(buf, len, "-");
		return;
	}
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* json_string that survives invalid UTF-8 (names are sanitised ASCII, but
 * service names come from the config). */
static json_t *
jstr(const char *s)
{
	json_t *v = json_string(s);

	return v != NULL ? v : json_string("?");
}

/* Sum every sampler's rows into {svc: {op: {reason: [unsampled, sampled]}}}
 * as json integers. Caller holds h->mu. */
static json_t *
collect(struct sampling_hub *h)
{
	json_t *all = json_object();
	struct sampler *s;
	size_t i;
	int r, k;

	if (all == NULL)
		return NULL;
	for (s = h->samplers; s != NULL; s = s->next) {
		for (i = 0; i < SAMPLING_COUNTERS_MAX; i++) {
			struct sampling_counter *c = &s->rows[i];
			json_t *svc, *op;

			if (!atomic_load_explicit(&c->ready, memory_order_acquire))
				break;	/* rows fill in order */
			svc = json_object_get(all, c->service);
			if (svc == NULL) {
				svc = json_object();
				if (json_object_set_new(all, c->service, svc) == -1)
					continue;
			}
			op = json_object_get(svc, c->op);
			if (op == NULL) {
				op = json_object();
				if (json_object_set_new(svc, c->op, op) == -1)
					continue;
			}
			for (r = 0; r < SAMPLING_REASON_MAX; r++) {
				for (k = 0; k < 2; k++) {
					uint64_t n = atomic_load_explicit(&c->n[r][k],
					    memory_order_relaxed);
					json_t *rj, *v;

					if (n == 0)
						continue;
					rj = json_object_get(op, reason_names[r]);
					if (rj == NULL) {
						rj = json_pack("{s:I, s:I}", "sampled",
						    (json_int_t)0, "unsampled",
						    (json_int_t)0);
						if (json_object_set_new(op,
						    reason_names[r], rj) == -1)
							continue;
					}
					v = json_object_get(rj, k ? "sampled" :
					    "unsampled");
					json_integer_set(v, json_integer_value(v) +
					    (json_int_t)n);
				}
			}
		}
	}
	/* drop rows that never counted anything */
	{
		const char *sk, *ok;
		json_t *sv, *ov;
		void *t1, *t2;

		json_object_foreach_safe(all, t1, sk, sv) {
			json_object_foreach_safe(sv, t2, ok, ov) {
				if (json_object_size(ov) == 0)
					json_object_del(sv, ok);
			}
			if (json_object_size(sv) == 0)
				json_object_del(all, sk);
		}
	}
	return all;
}

json_t *
sampling_hub_totals(struct sampling_hub *h)
{
	json_t *all, *out = json_object();
	const char *sk, *ok, *rk;
	json_t *sv, *ov, *rv;

	if (out == NULL)
		return NULL;
	pthread_mutex_lock(&h->mu);
	all = collect(h);
	pthread_mutex_unlock(&h->mu);
	json_object_foreach(all, sk, sv) {
		json_t *so = json_object();

		json_object_foreach(sv, ok, ov) {
			json_int_t n = 0, a = 0;

			json_object_foreach(ov, rk, rv) {
				json_int_t sampled = json_integer_value(
				    json_object_get(rv, "sampled"));

				n += sampled + json_integer_value(
				    json_object_get(rv, "unsampled"));
				if (strcmp(rk, "adaptive") == 0 ||
				    strcmp(rk, "adaptive_lower_bound") == 0)
					a += sampled;
			}
			json_object_set_new(so, ok, json_pack("[I, I]", n, a));
		}
		json_object_set_new(out, sk, so);
	}
	json_decref(all);
	return out;
}

json_t *
sampling_status_json(struct sampling_hub *h)
{
	json_t *st = json_object(), *rej = NULL;
	char when[32];

	if (st == NULL)
		return NULL;
	pthread_mutex_lock(&h->mu);
	json_object_set_new(st, "policy", policy_to_json(h->policy));
	json_object_set_new(st, "source", jstr(h->source));
	fmt_time(h->loaded_at, when, sizeof(when));
	json_object_set_new(st, "loaded_at", json_string(when));
	json_object_set_new(st, "generation",
	    json_integer((json_int_t)atomic_load(&h->gen)));
	if (h->n_rejected > 0) {
		fmt_time(h->rej_at, when, sizeof(when));
		rej = json_object();
		json_object_set_new(rej, "source", jstr(h->rej_source));
		json_object_set_new(rej, "reason", jstr(h->rej_reason));
		json_object_set_new(rej, "at", json_string(when));
		json_object_set_new(rej, "count", json_integer((json_int_t)h->n_rejected));
	}
	json_object_set_new(st, "last_rejected", rej != NULL ? rej : json_null());
	json_object_set_new(st, "limits", json_pack("{s:f, s:f, s:f}",
	    "forced_max_per_second", h->lim.forced_max_per_second,
	    "incoming_max_per_second", h->lim.incoming_max_per_second,
	    "max_traces_per_second", h->lim.max_traces_per_second));
	json_object_set_new(st, "decisions", collect(h));
	if (h->adaptive != NULL) {
		json_t *a = h->adaptive_meta != NULL ?
		    json_deep_copy(h->adaptive_meta) : json_object();

		if (a != NULL) {
			json_object_set_new(a, "policy", policy_to_json(h->adaptive));
			json_object_set_new(a, "source", jstr(h->adaptive_source));
			fmt_time(h->adaptive_at, when, sizeof(when));
			json_object_set_new(a, "loaded_at", json_string(when));
			if (h->adaptive_status != NULL)
				json_object_set_new(a, "local", h->adaptive_status());
		}
		json_object_set_new(st, "adaptive", a != NULL ? a : json_null());
	} else {
		json_object_set_new(st, "adaptive", json_null());
	}
	pthread_mutex_unlock(&h->mu);
	return st;
}

/* Prometheus label value escaping: backslash, double quote, newline. */
static void
prom_label(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n') {
			fputs("\\n", f);
			continue;
		}
		fputc(*s, f);
	}
}

char *
sampling_metrics_text(struct sampling_hub *h)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	json_t *all;
	const char *sk, *ok, *rk;
	json_t *sv, *ov, *rv;

	f = open_memstream(&buf, &len);
	if (f == NULL)
		return NULL;
	pthread_mutex_lock(&h->mu);
	all = collect(h);
	fputs("# HELP tracebridge_sampling_decisions_total Sampling decisions by "
	    "service, operation, reason and outcome.\n"
	    "# TYPE tracebridge_sampling_decisions_total counter\n", f);
	json_object_foreach(all, sk, sv) {
		json_object_foreach(sv, ok, ov) {
			json_object_foreach(ov, rk, rv) {
				int k;

				for (k = 0; k < 2; k++) {
					json_t *v = json_object_get(rv,
					    k ? "sampled" : "unsampled");

					if (json_integer_value(v) == 0)
						continue;
					fputs("tracebridge_sampling_decisions_total"
					    "{service=\"", f);
					prom_label(f, sk);
					fputs("\",operation=\"", f);
					prom_label(f, ok);
					fprintf(f, "\",reason=\"%s\",sampled=\"%s\"} %lld\n",
					    rk, k ? "true" : "false",
					    (long long)json_integer_value(v));
				}
			}
		}
	}
	fprintf(f, "# HELP tracebridge_sampling_policy_generation Policies "
	    "published since start.\n"
	    "# TYPE tracebridge_sampling_policy_generation gauge\n"
	    "tracebridge_sampling_policy_generation %llu\n"
	    "# HELP tracebridge_sampling_policy_loaded_timestamp_seconds When the "
	    "policy in force was loaded.\n"
	    "# TYPE tracebridge_sampling_policy_loaded_timestamp_seconds gauge\n"
	    "tracebridge_sampling_policy_loaded_timestamp_seconds %lld\n"
	    "# HELP tracebridge_sampling_policy_rejected_total Policies rejected "
	    "as invalid.\n"
	    "# TYPE tracebridge_sampling_policy_rejected_total counter\n"
	    "tracebridge_sampling_policy_rejected_total %llu\n",
	    (unsigned long long)atomic_load(&h->gen), (long long)h->loaded_at,
	    (unsigned long long)h->n_rejected);
	pthread_mutex_unlock(&h->mu);
	json_decref(all);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
