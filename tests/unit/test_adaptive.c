/*
 * test_adaptive.c: the adaptive probability rule (adaptive_calc.c): within
 * tolerance unchanged, nothing traced doubles, the cap on increases,
 * uncapped decreases, the clamps, the weighting towards the newest bucket;
 * and convergence of a simulated fleet onto the target.
 */
#include <math.h>

#include "adaptive_calc.h"
#include "tb_test.h"

#define NEAR(a, b)	(fabs((double)(a) - (double)(b)) <= \
	    1e-12 * (fabs((double)(b)) + 1e-300))

static const struct adaptive_params ap = {
	.target = 2, .delta_tolerance = 0.3, .min_probability = 1e-5,
	.increase_cap = ADAPTIVE_INCREASE_CAP,
};

static void
test_tolerance(void)
{
	/* |obs - 2| / 2 < 0.3: kept, on both sides */
	CHECK(adaptive_next_probability(&ap, 0.1, 2.0) == 0.1);
	CHECK(adaptive_next_probability(&ap, 0.1, 1.5) == 0.1);
	CHECK(adaptive_next_probability(&ap, 0.1, 2.59) == 0.1);
	CHECK(adaptive_next_probability(&ap, 0.1, 1.41) == 0.1);
	/* at the edge (exactly 30 %) it moves: strict < as Jaeger */
	CHECK(adaptive_next_probability(&ap, 0.1, 2.6) < 0.1);
	CHECK(adaptive_next_probability(&ap, 0.1, 1.4) > 0.1);
	/* tolerance 0: only an exact hit is kept */
	{
		struct adaptive_params z = ap;

		z.delta_tolerance = 0;
		CHECK(adaptive_next_probability(&z, 0.1, 2.0) == 0.1);
		CHECK(NEAR(adaptive_next_probability(&z, 0.1, 2.5), 0.08));
	}
}

static void
test_zero(void)
{
	/* nothing traced: doubled, up to 1 */
	CHECK(NEAR(adaptive_next_probability(&ap, 0.001, 0), 0.002));
	CHECK(NEAR(adaptive_next_probability(&ap, 0.3, 0), 0.6));
	CHECK(adaptive_next_probability(&ap, 0.6, 0) == 1);
	CHECK(adaptive_next_probability(&ap, 1, 0) == 1);
	CHECK(NEAR(adaptive_next_probability(&ap, 0.001, -3), 0.002));
	CHECK(NEAR(adaptive_next_probability(&ap, 0.001, NAN), 0.002));
}

static void
test_scale(void)
{
	/* decreases follow the ratio, uncapped */
	CHECK(NEAR(adaptive_next_probability(&ap, 0.5, 100), 0.01));
	CHECK(NEAR(adaptive_next_probability(&ap, 1, 4), 0.5));
	/* increases within the cap follow the ratio */
	CHECK(NEAR(adaptive_next_probability(&ap, 0.1, 1.2), 0.1 * 2 / 1.2));
	/* ... and above it stop at +100 % */
	CHECK(NEAR(adaptive_next_probability(&ap, 0.1, 0.5), 0.2));
	CHECK(NEAR(adaptive_next_probability(&ap, 0.001, 0.0001), 0.002));
	/* a smaller cap */
	{
		struct adaptive_params c = ap;

		c.increase_cap = 0.5;
		CHECK(NEAR(adaptive_next_probability(&c, 0.1, 0.5), 0.15));
		CHECK(NEAR(adaptive_next_probability(&c, 0.1, 1.25), 0.15));
	}
}

static void
test_clamp(void)
{
	/* never below the minimum, never above 1 */
	CHECK(adaptive_next_probability(&ap, 1e-5, 1e6) == 1e-5);
	CHECK(adaptive_next_probability(&ap, 0.01, 1e9) == 1e-5);
	CHECK(adaptive_next_probability(&ap, 0.9, 1) == 1);
	/* out-of-range inputs are clamped before use */
	CHECK(adaptive_next_probability(&ap, 7, 2) == 1);
	CHECK(adaptive_next_probability(&ap, -1, 2) == 1e-5);
	CHECK(adaptive_next_probability(&ap, NAN, 2) == 1e-5);
	CHECK(NEAR(adaptive_next_probability(&ap, 0, 0), 2e-5));
	{
		struct adaptive_params m = ap;

		m.min_probability = 0.05;
		CHECK(adaptive_next_probability(&m, 0.06, 1000) == 0.05);
		CHECK(adaptive_next_probability(&m, 0.01, 2) == 0.05);
	}
}

static void
test_weights(void)
{
	double one[] = { 5 };
	double same[] = { 3, 3, 3 };
	double three[] = { 10, 0, 0 };
	double old[] = { 0, 0, 10 };
	double two[] = { 4, 0 };
	double bad[] = { NAN, -5, 16 };

	CHECK(adaptive_weighted_rate(NULL, 0) == 0);
	CHECK(adaptive_weighted_rate(one, 1) == 5);
	CHECK(NEAR(adaptive_weighted_rate(same, 3), 3));
	/* weights 81, 16, 1 of 98: newest first */
	CHECK(NEAR(adaptive_weighted_rate(three, 3), 10.0 * 81 / 98));
	CHECK(NEAR(adaptive_weighted_rate(old, 3), 10.0 * 1 / 98));
	/* weights 16, 1 of 17 */
	CHECK(NEAR(adaptive_weighted_rate(two, 2), 4.0 * 16 / 17));
	CHECK(NEAR(adaptive_weighted_rate(bad, 3), 16.0 * 1 / 98));
}

/*
 * A fleet seeing qps requests/s of an operation, sampled at p: the traced
 * rate is p * qps. From the initial probability the rule must reach the
 * target within tolerance in a bounded number of rounds, and stay there;
 * for hot and cold operations alike, and for one that is too cold to reach
 * the target (it ends at 1).
 */
static void
converge(double qps, double p0, int rounds_max, double want_p)
{
	double p = p0, hist[ADAPTIVE_BUCKETS] = { 0 };
	int r, i, reached = -1;

	for (r = 0; r < 60; r++) {
		for (i = ADAPTIVE_BUCKETS - 1; i > 0; i--)
			hist[i] = hist[i - 1];
		hist[0] = p * qps;
		p = adaptive_next_probability(&ap,
		    p, adaptive_weighted_rate(hist, ADAPTIVE_BUCKETS));
		if (reached < 0 && fabs(p * qps - ap.target) / ap.target < 0.3)
			reached = r;
	}
	if (want_p >= 0) {
		CHECKF(fabs(p - want_p) < 1e-9, "qps %g: p %g, want %g", qps, p,
		    want_p);
		return;
	}
	CHECKF(reached >= 0 && reached <= rounds_max, "qps %g: reached at %d",
	    qps, reached);
	CHECKF(fabs(p * qps - ap.target) / ap.target < 0.3, "qps %g: ends at "
	    "%g traces/s", qps, p * qps);
}

static void
test_converge(void)
{
	converge(3000, 0.001, 6, -1);	/* hot: 3 traces/s at the start */
	converge(100, 0.001, 12, -1);
	converge(10, 0.001, 14, -1);	/* cold: doubles its way up */
	converge(2, 0.001, 14, -1);	/* exactly target at p = 1 */
	converge(0.5, 0.001, 0, 1);	/* too cold: everything */
	converge(1e6, 0.001, 0, 1e-5);	/* too hot for the floor */
}

int
main(void)
{
	test_tolerance();
	test_zero();
	test_scale();
	test_clamp();
	test_weights();
	test_converge();
	TB_TEST_END();
}
