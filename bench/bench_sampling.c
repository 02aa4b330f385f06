/*
 * bench_sampling.c: cost of one sampling decision, operation naming
 * included, with a policy of 10 services and 100 operations on the busiest.
 *
 *   bench_sampling [iterations]    prints ns per name, per decide, per both
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sampling.h"

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* 10 services; nova has 100 operation strategies, glance ratelimits. */
static char *
make_policy(void)
{
	size_t cap = 64 * 1024, len = 0;
	char *b = malloc(cap);
	int i;

	if (b == NULL)
		exit(1);
	len += (size_t)snprintf(b + len, cap - len, "{\"service_strategies\": ["
	    "{\"service\": \"nova\", \"type\": \"probabilistic\", \"param\": 0.01,"
	    " \"operation_strategies\": [");
	for (i = 0; i < 100; i++)
		len += (size_t)snprintf(b + len, cap - len, "%s{\"operation\": "
		    "\"GET /v2.1/resource%d/{id}\", \"type\": \"probabilistic\", "
		    "\"param\": 0.%02d}", i ? "," : "", i, i);
	len += (size_t)snprintf(b + len, cap - len, "]},"
	    "{\"service\": \"glance\", \"type\": \"ratelimiting\", \"param\": 5}");
	for (i = 0; i < 8; i++)
		len += (size_t)snprintf(b + len, cap - len, ",{\"service\": "
		    "\"svc%d\", \"type\": \"probabilistic\", \"param\": 0.5}", i);
	snprintf(b + len, cap - len, "], \"default_strategy\": {\"type\": "
	    "\"probabilistic\", \"param\": 0.001}}");
	return b;
}

int
main(int argc, char **argv)
{
	static const char *const targets[] = {
		"/v2.1/resource42/8c7d0a4e-3f1b-4b5e-9a2c-1d2e3f4a5b6c",
		"/v2.1/servers/8c7d0a4e-3f1b-4b5e-9a2c-1d2e3f4a5b6c/action",
		"/v2.1/servers/detail?limit=10&marker=8c7d0a4e",
		"/v2.1/resource99/123",
	};
	long iters = argc > 1 ? atol(argv[1]) : 2000000;
	struct sampling_limits lim = { 10, 100, -1 };
	struct sampling_policy *p;
	struct sampling_hub *h;
	struct sampler *s;
	struct sampling_result r;
	char err[256], op[SAMPLING_OP_MAX];
	char *doc = make_policy();
	uint8_t id[16] = { 0 };
	uint64_t t0, t1, t2, x = 88172645463325252ULL;
	long i, sampled = 0;
	size_t tl[4];

	if (policy_parse(doc, strlen(doc), 0.001, &p, err, sizeof(err)) == -1) {
		fprintf(stderr, "policy: %s\n", err);
		return 1;
	}
	free(doc);
	h = sampling_hub_new(&lim, p, "bench");
	s = sampling_sampler_new(h);
	for (i = 0; i < 4; i++)
		tl[i] = strlen(targets[i]);

	t0 = now_ns();
	for (i = 0; i < iters; i++)
		sampled += sampling_operation_name("GET", 3, targets[i & 3],
		    tl[i & 3], NULL, op, sizeof(op)) > 0;
	t1 = now_ns();
	sampling_operation_name("GET", 3, targets[0], tl[0], NULL, op, sizeof(op));
	for (i = 0; i < iters; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		memcpy(id + 8, &x, 8);
		sampled += sampling_decide(s, "nova", op, id, SAMPLING_ORIGIN_NONE,
		    -1, 0, 1, t1 + (uint64_t)i, &r);
	}
	t2 = now_ns();
	printf("operation name: %.1f ns\n", (double)(t1 - t0) / (double)iters);
	printf("decide (100-op service, op hit): %.1f ns\n",
	    (double)(t2 - t1) / (double)iters);
	t0 = now_ns();
	for (i = 0; i < iters; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		memcpy(id + 8, &x, 8);
		sampling_operation_name("GET", 3, targets[i & 3], tl[i & 3], NULL,
		    op, sizeof(op));
		sampled += sampling_decide(s, (i & 4) ? "glance" : "nova", op, id,
		    SAMPLING_ORIGIN_NONE, -1, 0, 1, t0 + (uint64_t)i * 1000, &r);
	}
	t1 = now_ns();
	printf("name + decide (mixed services): %.1f ns  (%ld sampled)\n",
	    (double)(t1 - t0) / (double)iters, sampled);
	sampling_sampler_free(s);
	sampling_hub_free(h);
	return 0;
}
