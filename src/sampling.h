/*
 * sampling.h: which requests get traced (GitHub issue 5).
 *
 * Three layers, each usable alone:
 *
 *   1. Operation naming (pure, sampling_op.c): METHOD + request-target -> "METHOD /template",
 *      the name policies and counters are keyed by and spans carry.
 *   2. The policy (policy.h, policy.c): a Jaeger sampling-strategies document parsed
 *      into an immutable, reference-counted struct sampling_policy.
 *   3. The decision (sampling.c): one struct sampling_hub per process holds
 *      the policy in force and the per-proxy caps; one struct sampler per
 *      worker thread decides requests and counts the outcomes.
 *
 * Threads: the hub is created, fed and read (status, metrics) on the control
 * thread; sampling_decide() runs on workers, lock-free except for one short
 * mutex section the first time a worker sees a newly published policy.
 */
#ifndef TB_SAMPLING_H
#define TB_SAMPLING_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "policy.h"

/* Longest operation name, NUL included; longer names are cut at a segment
 * boundary and end in "/..." so they stay recognisable. */
#define SAMPLING_OP_MAX		128
/* Longest service name the counters keep (longer ones are cut). */
#define SAMPLING_SERVICE_MAX	64
/* Distinct (service, operation) pairs each worker counts; the rest fold into
 * (service, "other"), and past the hard end into ("other", "other"). */
#define SAMPLING_COUNTERS_MAX	512

/* ------------------------------------------------------------------ */
/* 1. Operation names                                                  */
/* ------------------------------------------------------------------ */

/*
 * Operator rules from [sampling] operation_rules, one per line:
 *     prefix:<path-prefix> <name>
 *     regex:<POSIX ERE> <name>
 * The first rule whose prefix starts the path (query stripped) or whose
 * regex matches somewhere in it names the operation "METHOD <name>".
 * Immutable once built, safe to share between threads (regexec(3) is).
 */
struct sampling_rules;

/*
 * Build rules from n lines (blank lines and lines starting with '#' are
 * skipped). Returns 0 and *out (caller owns, sampling_rules_free), or -1 with
 * "rule N: reason" in err. n == 0 gives a valid empty set.
 */
/*
 * NULL when the ERE p (n bytes) is safe to hand to regcomp(3), else why not
 * (too long, too heavy once glibc expands its repetitions, back-references).
 * config.c asks it before compiling a rule to validate it.
 */
const char *sampling_regex_unsafe(const char *p, size_t n);

int sampling_rules_parse(const char *const *lines, size_t n,
    struct sampling_rules **out, char *err, size_t errlen);
/* The same from one string holding the lines separated by '\n'. */
int sampling_rules_parse_text(const char *text, struct sampling_rules **out,
    char *err, size_t errlen);
void sampling_rules_free(struct sampling_rules *r);	/* NULL is fine */

/*
 * Name the operation of a request. Pure; thread-safe; no allocation.
 *
 * method/mlen: the request method as received. target/tlen: the
 * request-target (origin-form "/p?q", absolute-form "http://h/p?q", or "*").
 * rules may be NULL. out receives a NUL-terminated name of at most
 * outlen - 1 bytes; outlen should be SAMPLING_OP_MAX.
 *
 * Returns the length written (>= 1), or -1 when outlen < 16.
 *
 * The rules, in order (documented for the README and the man page):
 *   - The query ("?...") and fragment ("#...") are dropped; an absolute-form
 *     target keeps only its path; an empty path is "/"; "*" stays "*".
 *   - A configured operation rule that matches wins: "METHOD <name>".
 *   - Swift: "/v1/AUTH_<account>/<container>/<object...>" becomes
 *     "/v1/AUTH_{id}/{container}/{object}" (the object may contain '/');
 *     any other "AUTH_<x>" segment becomes "AUTH_{id}".
 *   - Any segment that is, or is followed by a ".ext" suffix of up to 8
 *     letters/digits after (so "x.json" -> "{id}.json"):
 *       a UUID with dashes (8-4-4-4-12 hex digits),
 *       a hex string of 16 or more digits (UUID without dashes, Keystone ids,
 *         Cinder/Nova project ids, SHA-1 or SHA-256 sums),
 *       a decimal number (flavor ids, legacy integer ids, versions of
 *         nothing: "v2.1" is not a number),
 *     becomes "{id}".
 *   - Bytes outside printable ASCII become '_'; the method is kept as sent
 *     when it is a token of at most 16 bytes, otherwise "OTHER"; empty
 *     segments ("//") are kept; more than 32 segments or more than outlen
 *     bytes end the name with "/...".
 */
int sampling_operation_name(const char *method, size_t mlen,
    const char *target, size_t tlen, const struct sampling_rules *rules,
    char *out, size_t outlen);

/* 2. Policies: policy.h (included here: decisions read policies). */

/* ------------------------------------------------------------------ */
/* 3. Decisions                                                        */
/* ------------------------------------------------------------------ */

/*
 * A rate limiter shared by threads: GCRA over one atomic 64-bit
 * "theoretical arrival time", so a take is one load and one CAS, no lock.
 * rate < 0 is unlimited, rate == 0 lets nothing through. Burst is
 * max(1, rate) (one second's worth, as Jaeger's rate limiting sampler) and
 * a new bucket starts full.
 */
struct sampling_bucket {
	_Atomic uint64_t tat;		/* ns on the caller's clock */
	_Atomic uint64_t interval;	/* ns per token; 0 = unlimited */
	_Atomic uint64_t tolerance;	/* (burst - 1) * interval */
	_Atomic int closed;		/* rate == 0 */
};

void sampling_bucket_init(struct sampling_bucket *b, double rate);
/* Change the rate, keeping the state (config reload). */
void sampling_bucket_set_rate(struct sampling_bucket *b, double rate);
/* 1 if a token was taken at now_ns, 0 if none is left. */
int sampling_bucket_take(struct sampling_bucket *b, uint64_t now_ns);

/* Who started the trace context the request came with. */
enum sampling_origin {
	SAMPLING_ORIGIN_NONE = 0,	/* no incoming context: a new trace */
	SAMPLING_ORIGIN_INCOMING,	/* W3C, B3, Jaeger, X-Ray, ... */
	SAMPLING_ORIGIN_OSPROFILER,	/* osprofiler headers with a valid HMAC */
};

/* Why a decision went the way it did; names in sampling_reason_name(). */
enum sampling_reason {
	SAMPLING_REASON_FORCED = 0,		/* signed osprofiler request: sampled */
	SAMPLING_REASON_FORCED_CAPPED,		/* ... over forced_max_per_second: not */
	SAMPLING_REASON_INCOMING_SAMPLED,	/* trusted caller said sampled */
	SAMPLING_REASON_INCOMING_DEBUG,		/* trusted caller set debug */
	SAMPLING_REASON_INCOMING_UNSAMPLED,	/* trusted caller said not sampled */
	SAMPLING_REASON_INCOMING_CAPPED,	/* over incoming_max_per_second: not */
	SAMPLING_REASON_PROBABILISTIC,		/* policy ratio on the trace id */
	SAMPLING_REASON_RATELIMITING,		/* policy token bucket */
	SAMPLING_REASON_LOWER_BOUND,		/* remote form's guaranteed rate */
	SAMPLING_REASON_GLOBAL_CAP,		/* over max_traces_per_second: not */
	SAMPLING_REASON_ADAPTIVE,		/* adaptive layer's ratio (issue 15) */
	SAMPLING_REASON_ADAPTIVE_LOWER_BOUND,	/* ... its min_traces_per_second */
	SAMPLING_REASON_MAX
};

const char *sampling_reason_name(enum sampling_reason r);
/* Jaeger's sampler.type for a decision the policy took ("probabilistic",
 * "ratelimiting", "lowerbound"; adaptive ones too, as Jaeger's adaptive
 * sampler tags them), NULL for the others (forced, incoming, caps). */
const char *sampling_sampler_type(enum sampling_reason r);

struct sampling_result {
	int sampled;			/* 0 or 1 */
	enum sampling_reason reason;
	/* The policy rule that applied (reasons probabilistic, ratelimiting,
	 * lower_bound, and global_cap after either); otherwise scope is
	 * SAMPLING_SCOPE_DEFAULT and param -1. For the span info. */
	enum sampling_scope scope;
	double param;
};

/* Defaults from the issue (config.c has the same). */
#define SAMPLING_DEFAULT_PROBABILITY		0.001
#define SAMPLING_DEFAULT_FORCED_MAX		10.0
#define SAMPLING_DEFAULT_INCOMING_MAX		100.0
#define SAMPLING_DEFAULT_MAX_TRACES		0.0	/* unlimited */

/* Per-proxy limits, straight from [sampling]: a rate <= 0 means unlimited,
 * as in the config file. */
struct sampling_limits {
	double forced_max_per_second;	/* default 10 */
	double incoming_max_per_second;	/* default 100 */
	double max_traces_per_second;	/* default 0 = unlimited */
};

struct sampling_hub;
struct sampler;

/*
 * The process-wide state: policy in force (initially policy, reference
 * taken over; NULL = policy_new_default(0.001)) and the caps. The caps are
 * token buckets shared by all workers (atomic, lock-free), so "per proxy"
 * holds however unevenly connections spread over workers; splitting the
 * rate by the number of workers would starve a busy worker while idle ones
 * sit on their share. Returns NULL on allocation failure.
 */
struct sampling_hub *sampling_hub_new(const struct sampling_limits *lim,
    struct sampling_policy *policy, const char *source);
/* After every sampler is freed. NULL is fine. */
void sampling_hub_free(struct sampling_hub *h);
/* Config reload: new caps take effect at once. */
void sampling_hub_set_limits(struct sampling_hub *h, const struct sampling_limits *lim);

/*
 * Put policy in force (the reference is taken over, even on failure).
 * source says where it came from ("file:/etc/tb/policy.json",
 * "redis:KEY", "url:...", "builtin", "config:sample_new"); copied. Workers
 * pick it up at their next decision. Control thread.
 */
void sampling_hub_publish(struct sampling_hub *h, struct sampling_policy *policy,
    const char *source);
/* Record a rejected policy for GET /sampling (the reason is logged by the
 * caller). Control thread. */
void sampling_hub_rejected(struct sampling_hub *h, const char *source,
    const char *reason);
/*
 * Adaptive sampling (issue 15, adaptive.c): a second policy layer, computed
 * for the whole fleet. An operation the policy in force names itself
 * (scope operation) keeps that; every other decision of the policy step is
 * taken from the adaptive layer (reasons adaptive, adaptive_lower_bound).
 * policy NULL removes the layer. meta: what GET /sampling shows under
 * "adaptive" (leader, computation time, per operation rates), or NULL.
 * Both references are taken over. Control thread.
 */
void sampling_hub_publish_adaptive(struct sampling_hub *h,
    struct sampling_policy *policy, json_t *meta, const char *source);
/* Who adds this proxy's own adaptive state (leader or not, ...) under
 * "adaptive"."local" in GET /sampling; NULL for nobody. Control thread. */
void sampling_hub_set_adaptive_status(struct sampling_hub *h,
    json_t *(*fn)(void));
/* The adaptive layer (new reference) or NULL. Any thread. */
struct sampling_policy *sampling_hub_adaptive(struct sampling_hub *h);

/*
 * Every (service, operation) counted so far, summed over the workers, as
 * {SERVICE: {OPERATION: [decisions, adaptive_sampled]}}: all decisions,
 * and those sampled by the adaptive layer (ratio or lower bound). Counts
 * only grow. New reference or NULL; control thread.
 */
json_t *sampling_hub_totals(struct sampling_hub *h);

/* Jaeger's SamplingStrategyResponse for service from the policy in force
 * and the adaptive layer (policy_remote_json). New reference or NULL. */
json_t *sampling_remote_json(struct sampling_hub *h, const char *service);

/* The policy in force (new reference). Any thread. */
struct sampling_policy *sampling_hub_policy(struct sampling_hub *h);
/* How many policies were published so far (tests, "changed?" checks). */
uint64_t sampling_hub_generation(struct sampling_hub *h);

/* One per worker thread; registers with the hub (for the counters). Freed
 * by the control thread after the worker stopped. */
struct sampler *sampling_sampler_new(struct sampling_hub *h);
void sampling_sampler_free(struct sampler *s);

/*
 * Decide one request. Worker thread (one sampler per thread). Never blocks.
 *
 * service, operation: NUL-terminated (operation from
 * sampling_operation_name). trace_id: the 16 bytes of the trace id
 * (64-bit ids right-aligned, zero-padded). origin: enum sampling_origin.
 * incoming_sampled: -1 deferred/absent, 0 or 1; incoming_debug: 0/1;
 * trust_incoming: the listener's trust_incoming_sampling. now_ns: a
 * monotonic clock shared by all workers (CLOCK_MONOTONIC).
 *
 * Order: (1) osprofiler-signed -> forced, under forced_max_per_second;
 * (2) trusted incoming flag -> honoured (debug or sampled under
 * incoming_max_per_second; unsampled as is); (3) the policy: probabilistic
 * from the low 56 bits of the trace id (OpenTelemetry TraceIdRatioBased:
 * sampled iff R >= (1 - p) * 2^56), ratelimiting by the service's token
 * bucket, plus the remote form's per-operation lower bound; (4) anything
 * sampled must also pass max_traces_per_second. A cap that refuses turns
 * the decision into "not sampled" with the cap as the reason.
 *
 * Fills *out, counts it, returns out->sampled.
 */
int sampling_decide(struct sampler *s, const char *service,
    const char *operation, const uint8_t trace_id[16], int origin,
    int incoming_sampled, int incoming_debug, int trust_incoming,
    uint64_t now_ns, struct sampling_result *out);

/* The ratio rule alone: 1 if trace_id is sampled at threshold (see
 * sampling_threshold). Pure. */
int sampling_ratio_sampled(const uint8_t trace_id[16], uint64_t threshold);
/* (1 - p) * 2^56 rounded as OpenTelemetry does; p outside [0,1] clamps. */
uint64_t sampling_threshold(double p);

/*
 * GET /sampling: {"policy": <strategies-file form>, "source": "...",
 * "loaded_at": "2026-11-24T22:50:01Z", "generation": N,
 * "last_rejected": {"source","reason","at"} | null,
 * "limits": {...}, "decisions": {SERVICE: {OPERATION: {REASON:
 * {"sampled": n, "unsampled": n}}}}}. New reference; control thread.
 */
json_t *sampling_status_json(struct sampling_hub *h);

/*
 * Prometheus text for
 *   tracebridge_sampling_decisions_total{service,operation,reason,sampled}
 *   tracebridge_sampling_policy_generation, ..._policy_loaded_timestamp_seconds,
 *   tracebridge_sampling_policy_rejected_total
 * with HELP/TYPE lines. Returns a malloc'd NUL-terminated string (caller
 * frees) or NULL. Control thread.
 */
char *sampling_metrics_text(struct sampling_hub *h);

#endif
