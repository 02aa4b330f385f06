/*
 * adaptive_calc.h: the probability arithmetic of adaptive sampling (issue
 * 15), pure: no I/O, no allocation, no clock. adaptive.c feeds it the fleet's
 * counts from Redis and writes what it returns into a strategies document.
 *
 * The algorithm is Jaeger's adaptive sampler (jaegertracing/jaeger
 * internal/sampling/samplingstrategy/adaptive, post_aggregator.go and
 * calculationstrategy/percentage_increase_capped_calculator.go), written
 * again from its description:
 *
 *   - the observed rate of an operation is a weighted mean over the newest
 *     buckets, bucket i (0 = newest) weighted (n - i)^4, so the newest
 *     interval dominates but one noisy interval does not swing it;
 *   - within delta_tolerance of the target (|observed - target| / target <
 *     delta_tolerance) the probability stays;
 *   - nothing traced at all: the probability doubles;
 *   - else p * target / observed, an increase capped at increase_cap
 *     (1.0 = +100 %) per round, decreases uncapped;
 *   - the result is clamped to [min_probability, 1].
 */
#ifndef TB_ADAPTIVE_CALC_H
#define TB_ADAPTIVE_CALC_H

#include <stddef.h>

/* Jaeger's PercentageIncreaseCappedCalculator default. */
#define ADAPTIVE_INCREASE_CAP	1.0
/* Newest buckets the weighted rate looks at (the leader reads as many). */
#define ADAPTIVE_BUCKETS	3

struct adaptive_params {
	double target;			/* traces/s per operation, fleet-wide, > 0 */
	double delta_tolerance;		/* >= 0, fraction of target */
	double min_probability;		/* (0, 1] */
	double increase_cap;		/* fraction, > 0; ADAPTIVE_INCREASE_CAP */
};

/*
 * Weighted mean of rates[0..n-1], rates[0] the newest, with weights
 * (n - i)^4 normalised to sum 1. n == 0 gives 0. Negative or NaN rates
 * count as 0.
 */
double adaptive_weighted_rate(const double *rates, size_t n);

/*
 * The next probability of an operation sampled at p whose traces arrived at
 * observed traces/s (fleet-wide, weighted). p outside [0, 1] or NaN is
 * clamped first (NaN as min_probability).
 */
double adaptive_next_probability(const struct adaptive_params *ap, double p,
    double observed);

#endif
