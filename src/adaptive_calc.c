/*
 * adaptive_calc.c: Jaeger's adaptive probability rule, pure; see
 * adaptive_calc.h for the rule and where it comes from.
 */
#include <math.h>

#include "adaptive_calc.h"

double
adaptive_weighted_rate(const double *rates, size_t n)
{
	double sum = 0, wsum = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		double k = (double)(n - i), w = k * k * k * k;
		double r = rates[i] > 0 ? rates[i] : 0;	/* NaN fails > 0 too */

		sum += w * r;
		wsum += w;
	}
	return wsum > 0 ? sum / wsum : 0;
}

static double
clamp(const struct adaptive_params *ap, double p)
{
	double lo = ap->min_probability > 0 ? ap->min_probability : 0;

	if (isnan(p) || p < lo)
		return lo;
	return p > 1 ? 1 : p;
}

double
adaptive_next_probability(const struct adaptive_params *ap, double p,
    double observed)
{
	double next;

	p = clamp(ap, p);
	if (!(observed > 0)) {
		/* nothing seen: no rate to scale by, so double (Jaeger) */
		next = p > 0 ? 2 * p : ap->min_probability;
		return clamp(ap, next);
	}
	if (ap->target > 0 &&
	    fabs(observed - ap->target) / ap->target < ap->delta_tolerance)
		return p;
	next = p * ap->target / observed;
	if (next > p && p > 0 && (next - p) / p > ap->increase_cap)
		next = p * (1 + ap->increase_cap);
	return clamp(ap, next);
}
