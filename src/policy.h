/*
 * policy.h: layer 2 of sampling.h, the policy. A Jaeger sampling-strategies
 * document (a file, a Redis key or channel, a URL: policy_source.c) parsed
 * into an immutable, reference-counted struct sampling_policy, and what it
 * says for one (service, operation). Any thread may look up a policy; only
 * the control thread parses one.
 */
#ifndef TB_POLICY_H
#define TB_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

enum sampling_strategy_type {
	SAMPLING_PROBABILISTIC = 0,
	SAMPLING_RATELIMITING = 1,
};

/* Immutable (but for the rate limiters' atomic state inside), refcounted. */
struct sampling_policy;

/*
 * Parse a policy document, in either form:
 *   - Jaeger's strategies file: {"service_strategies": [...],
 *     "default_strategy": {...}} with "type" "probabilistic" (param =
 *     probability in [0,1]) or "ratelimiting" (param = traces per second
 *     >= 0), "operation_strategies" (probabilistic only) per service and in
 *     the default, where the default's operations apply to every service
 *     that does not name the same operation itself (as Jaeger merges them).
 *   - Jaeger's remote-sampling response for one service ("strategyType",
 *     "probabilisticSampling", "rateLimitingSampling", "operationSampling"),
 *     enums as names or numbers; here it becomes the default for every
 *     service. Fields proto3 omits when zero may be omitted.
 * A missing default strategy is probabilistic default_probability.
 * Unknown keys are ignored; a known key of the wrong type is an error.
 *
 * Returns 0 and *out (refcount 1, caller owns), or -1 with the reason in err
 * ("service_strategies[2].param: probability 1.5 outside [0,1]").
 */
int policy_parse(const char *json, size_t len, double default_probability,
    struct sampling_policy **out, char *err, size_t errlen);

/*
 * Build one policy from remote-sampling responses, one per service
 * (services[i] answered docs[i]/lens[i]); every other service gets
 * probabilistic default_probability. Returns 0/-1 like policy_parse, the
 * reason naming the service.
 */
int policy_from_remote(size_t n, const char *const *services,
    const char *const *docs, const size_t *lens, double default_probability,
    struct sampling_policy **out, char *err, size_t errlen);

/* Probabilistic p for everything: the built-in policy, and sample_new. */
struct sampling_policy *policy_new_default(double probability);

/*
 * Carry the rate limiters' state (ratelimiting buckets, lower bounds) of
 * from over to the same services and operations of to, so a document
 * published again does not hand every operation a full bucket (adaptive.c
 * republishes every interval). Before to is published; from may be in use
 * (its state is read atomically). NULL from is fine.
 */
void policy_carry_limiters(struct sampling_policy *to,
    const struct sampling_policy *from);

struct sampling_policy *policy_ref(struct sampling_policy *p);
void policy_unref(struct sampling_policy *p);	/* frees at zero; NULL is fine */

/* The policy in Jaeger's strategies-file form (new reference). */
json_t *policy_to_json(const struct sampling_policy *p);

/*
 * What the policy says for (service, operation), resolved in Jaeger's order:
 * the service's operation, the default's operation, the service's strategy,
 * the default strategy.
 */
enum sampling_scope {
	SAMPLING_SCOPE_OPERATION = 0,
	SAMPLING_SCOPE_SERVICE,
	SAMPLING_SCOPE_DEFAULT,
};

struct sampling_bucket;

struct policy_choice {
	enum sampling_strategy_type type;
	enum sampling_scope scope;
	double param;			/* probability or traces per second */
	uint64_t threshold;		/* probabilistic: reject below (56 bits) */
	struct sampling_bucket *bucket;	/* ratelimiting, or the lower bound */
	double lower_bound;		/* remote form's guaranteed tps, 0 = none */
};

/*
 * What a Jaeger remote sampler in a user application should do for
 * service: the JSON form of Jaeger's SamplingStrategyResponse
 * ("strategyType", "probabilisticSampling", "rateLimitingSampling",
 * "operationSampling" with "perOperationStrategies"), as Jaeger's agent
 * (:5778/sampling) and collector (/api/sampling) answer. explicit is the
 * policy in force; adaptive (NULL = none) the adaptive layer, which decides
 * the default and every operation explicit does not name, as
 * sampling_decide does. New reference or NULL.
 */
json_t *policy_remote_json(const struct sampling_policy *explicit,
    const struct sampling_policy *adaptive, const char *service);

/* Fill *c for (service, operation); both NUL-terminated. Thread-safe. */
void policy_lookup(const struct sampling_policy *p, const char *service,
    const char *operation, struct policy_choice *c);

#endif
