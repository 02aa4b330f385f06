/*
 * test_sampling.c: operation names, policy parsing (every invalid form),
 * deterministic ratio decisions, token buckets on an injected clock, the
 * decision order, counters, and a policy swap under concurrent deciders.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sampling.h"
#include "tb_test.h"

/* ---------------- operation names ---------------- */

static void
check_name(const char *method, const char *target,
    const struct sampling_rules *rules, const char *want, int line)
{
	char out[SAMPLING_OP_MAX];
	int n = sampling_operation_name(method, strlen(method), target,
	    strlen(target), rules, out, sizeof(out));

	CHECKF(n >= 0 && strcmp(out, want) == 0 && (size_t)n == strlen(out),
	    "line %d: %s %s -> \"%s\" (%d), want \"%s\"", line, method, target,
	    n >= 0 ? out : "(error)", n, want);
}
#define NAME(m, t, w) check_name(m, t, NULL, w, __LINE__)

static void
test_names(void)
{
	char out[SAMPLING_OP_MAX];
	char longpath[600];
	int i, n;

	/* Nova */
	NAME("GET", "/v2.1/servers/8c7d0a4e-3f1b-4b5e-9a2c-1d2e3f4a5b6c",
	    "GET /v2.1/servers/{id}");
	NAME("POST", "/v2.1/servers", "POST /v2.1/servers");
	NAME("GET", "/v2.1/servers/detail?limit=10&marker=abc",
	    "GET /v2.1/servers/detail");
	NAME("POST", "/v2.1/servers/8c7d0a4e-3f1b-4b5e-9a2c-1d2e3f4a5b6c/action",
	    "POST /v2.1/servers/{id}/action");
	NAME("GET", "/v2.1/flavors/42", "GET /v2.1/flavors/{id}");
	NAME("GET", "/v2/0a1b2c3d4e5f60718293a4b5c6d7e8f9/servers",
	    "GET /v2/{id}/servers");
	NAME("GET", "/v2.1/os-hypervisors/7/uptime",
	    "GET /v2.1/os-hypervisors/{id}/uptime");
	NAME("GET", "/v2.1/servers/8c7d0a4e-3f1b-4b5e-9a2c-1d2e3f4a5b6c/"
	    "os-volume_attachments/0b7c9f2e-1111-2222-3333-444455556666",
	    "GET /v2.1/servers/{id}/os-volume_attachments/{id}");
	/* Neutron, with the historical .json suffix */
	NAME("GET", "/v2.0/networks/3a5f0c9e-1b2d-4e6f-8a9b-0c1d2e3f4a5b.json",
	    "GET /v2.0/networks/{id}.json");
	NAME("PUT", "/v2.0/ports/3a5f0c9e-1b2d-4e6f-8a9b-0c1d2e3f4a5b",
	    "PUT /v2.0/ports/{id}");
	NAME("GET", "/v2.0/security-groups?tenant_id=abc", "GET /v2.0/security-groups");
	/* Cinder: project id in the path */
	NAME("DELETE", "/v3/0a1b2c3d4e5f60718293a4b5c6d7e8f9/volumes/"
	    "d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a",
	    "DELETE /v3/{id}/volumes/{id}");
	NAME("POST", "/v3/0a1b2c3d4e5f60718293a4b5c6d7e8f9/volumes/"
	    "d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a/action",
	    "POST /v3/{id}/volumes/{id}/action");
	/* Glance */
	NAME("PUT", "/v2/images/a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d/file",
	    "PUT /v2/images/{id}/file");
	NAME("GET", "/v2/images?limit=20", "GET /v2/images");
	NAME("GET", "/", "GET /");
	NAME("GET", "/healthcheck", "GET /healthcheck");
	/* Swift */
	NAME("PUT", "/v1/AUTH_0a1b2c3d4e5f60718293a4b5c6d7e8f9/photos/2019/04/cat.jpg",
	    "PUT /v1/AUTH_{id}/{container}/{object}");
	NAME("GET", "/v1/AUTH_test/photos", "GET /v1/AUTH_{id}/{container}");
	NAME("GET", "/v1/AUTH_test/photos?format=json", "GET /v1/AUTH_{id}/{container}");
	NAME("HEAD", "/v1/AUTH_test", "HEAD /v1/AUTH_{id}");
	NAME("GET", "/v1/AUTH_test/", "GET /v1/AUTH_{id}/");
	NAME("GET", "/v1/AUTH_test/c/", "GET /v1/AUTH_{id}/{container}/");
	NAME("GET", "/info", "GET /info");
	/* Keystone */
	NAME("POST", "/v3/auth/tokens", "POST /v3/auth/tokens");
	NAME("GET", "/v3/users/5c2f3b1e8d9a4c7b6e5f4a3b2c1d0e9f/projects",
	    "GET /v3/users/{id}/projects");
	NAME("GET", "/v3/projects/default", "GET /v3/projects/default");
	NAME("GET", "/identity/v3/domains/5c2f3b1e8d9a4c7b6e5f4a3b2c1d0e9f",
	    "GET /identity/v3/domains/{id}");

	/* shapes of the target */
	NAME("GET", "http://nova.example:8774/v2.1/servers/123?x=1",
	    "GET /v2.1/servers/{id}");
	NAME("GET", "HTTPS://h", "GET /");
	NAME("OPTIONS", "*", "OPTIONS *");
	NAME("GET", "", "GET /");
	NAME("GET", "?x", "GET /");
	NAME("GET", "/a#frag", "GET /a");
	NAME("GET", "//x", "GET //x");
	NAME("GET", "/a/", "GET /a/");
	NAME("GET", "/v2.0/x", "GET /v2.0/x");
	NAME("GET", "/abcdef0123456", "GET /abcdef0123456");	/* short hex kept */
	NAME("GET", "/0123456789abcdef", "GET /{id}");		/* 16 hex */
	NAME("GET", "/2.0", "GET /2.0");		/* ext must start with a letter */
	NAME("GET", "/a b\x01\xff", "GET /a_b__");
	NAME("get", "/x", "get /x");
	NAME("M E", "/x", "OTHER /x");
	NAME("VERYLONGMETHODNAME", "/x", "OTHER /x");
	NAME("GET", "/v1/AUTHx", "GET /v1/AUTHx");
	NAME("GET", "/v1/AUTH_", "GET /v1/AUTH_");

	/* caps: segments and length */
	NAME("GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/1a/2b/3c/4d/5e/6f/7g/8h",
	    "GET /a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/1a/2b/3c/4d/5e/6f/...");
	for (i = 0; i < (int)sizeof(longpath) - 1; i++)
		longpath[i] = (i % 10 == 0) ? '/' : 'a';
	longpath[sizeof(longpath) - 1] = '\0';
	n = sampling_operation_name("GET", 3, longpath, strlen(longpath), NULL, out,
	    sizeof(out));
	CHECK(n > 0 && n < SAMPLING_OP_MAX && (size_t)n == strlen(out));
	CHECK(n >= 4 && strcmp(out + n - 4, "/...") == 0);
	CHECK(sampling_operation_name("GET", 3, "/", 1, NULL, out, 15) == -1);
	/* every outlen from 16 up holds a NUL-terminated name */
	for (i = 16; i < SAMPLING_OP_MAX; i++) {
		n = sampling_operation_name("DELETE", 6, longpath, 200, NULL, out,
		    (size_t)i);
		CHECK(n >= 0 && n < i && (size_t)n == strlen(out));
	}
}

static void
test_rules(void)
{
	static const char *const lines[] = {
		"# comment",
		"",
		"prefix:/healthcheck healthcheck",
		"regex:^/v2/images/[^/]+/tags/ /v2/images/{id}/tags/{tag}",
		"regex:^/placement/resource_providers/[^/ ]+ (x)  /placement/rp",
	};
	struct sampling_rules *r = NULL;
	char err[256];

	CHECK(sampling_rules_parse(lines, 5, &r, err, sizeof(err)) == 0);
	check_name("GET", "/healthcheck?x=1", r, "GET healthcheck", __LINE__);
	check_name("GET", "/healthcheck/deep", r, "GET healthcheck", __LINE__);
	check_name("PUT", "/v2/images/a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d/tags/blue",
	    r, "PUT /v2/images/{id}/tags/{tag}", __LINE__);
	check_name("GET", "/v2/images/x", r, "GET /v2/images/x", __LINE__);
	sampling_rules_free(r);

	CHECK(sampling_rules_parse_text("prefix:/a A\n\nregex:^/b B\n", &r, err,
	    sizeof(err)) == 0);
	check_name("GET", "/b/1", r, "GET B", __LINE__);
	sampling_rules_free(r);

#define BADRULE(line, want) do {					\
	const char *l_ = (line);					\
	r = NULL;							\
	CHECK(sampling_rules_parse(&l_, 1, &r, err, sizeof(err)) == -1); \
	CHECKF(strstr(err, want) != NULL, "%s -> %s", line, err);	\
	CHECK(r == NULL);						\
} while (0)
	BADRULE("glob:/x y", "expected 'prefix:<path> <name>' or 'regex:<ERE> <name>'");
	BADRULE("prefix:/x", "expected");
	BADRULE("prefix: name", "expected a pattern and an operation name");
	BADRULE("prefix:x name", "a path prefix starts with '/'");
	BADRULE("regex:([ name", "invalid regex");
	/* what would blow up regcomp (found by fuzz_policy) or regexec */
	BADRULE("regex:^/x+++++++++++++++++++++++++++++++++ name",
	    "too complex");
	BADRULE("regex:((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+ name", "too complex");
	BADRULE("regex:a{3000} name", "too complex");
	BADRULE("regex:((a{2,99}){99}) name", "too complex");
	BADRULE("regex:()++++++++++++++++++++++++++++++++++++++++++++++++++ name",
	    "too complex");
	BADRULE("regex:(|)+++++++++++++++++++++++++++++ name", "too complex");
	/* '+' or an interval on what can match empty: glibc's closures explode */
	BADRULE("regex:(|||||||||)+ name", "can match empty");
	BADRULE("regex:(a|)+ name", "can match empty");
	BADRULE("regex:^/v2(x*)+ name", "can match empty");
	BADRULE("regex:(a?){2} name", "can match empty");
	BADRULE("regex:(\\b)+ name", "can match empty");
	BADRULE("regex:(a{0,3}b*)+ name", "can match empty");
	BADRULE("regex:((((((((((((((((((((((((((((((((((a)))))))))))))))))))))))))))))))))) name",
	    "nested too deep");
	BADRULE("regex:(a)\\1 name", "back-references");
	{
		char big[300];

		memset(big, 'a', sizeof(big));
		memcpy(big, "regex:", 6);
		memcpy(big + sizeof(big) - 6, " name", 6);
		BADRULE(big, "longer than 256");
	}
	/* and what real rules look like still passes */
	{
		static const char *const ok[] = {
			"regex:^/v2/images/[^/]+/tags/[^/]+$ a",
			"regex:^/v[0-9]+(\\.[0-9]+)?/[[:alnum:]_-]+/?$ b",
			"regex:^/(a|b){1,3}/x*$ c",
			"regex:[]+*] d",
			"regex:(a)?(b)?(c)?(d)?(e)?/x{1,8} e",
			"regex:^/v2(/[^/]*)+$ f",
			"regex:^(/[a-z_]+)+/[0-9a-f-]{36}$ g",
			"regex:(a*)*|(b?)* h",
		};

		CHECK(sampling_rules_parse(ok, 8, &r, err, sizeof(err)) == 0);
		sampling_rules_free(r);
	}
	BADRULE("prefix:/x aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "name must be");
}

/* ---------------- policy parsing ---------------- */

static struct sampling_policy *
parse_ok(const char *doc, int line)
{
	struct sampling_policy *p = NULL;
	char err[256] = "";

	CHECKF(policy_parse(doc, strlen(doc), 0.001, &p, err, sizeof(err)) == 0,
	    "line %d: %s", line, err);
	return p;
}

static void
check_bad(const char *doc, const char *want, int line)
{
	struct sampling_policy *p = NULL;
	char err[256] = "";
	int rc = policy_parse(doc, strlen(doc), 0.001, &p, err, sizeof(err));

	CHECKF(rc == -1 && p == NULL, "line %d: accepted %s", line, doc);
	CHECKF(strstr(err, want) != NULL, "line %d: error \"%s\", want \"%s\"",
	    line, err, want);
}
#define BAD(doc, want) check_bad(doc, want, __LINE__)

static const char *const good_file =
    "{\"service_strategies\": ["
    " {\"service\": \"nova\", \"type\": \"probabilistic\", \"param\": 0.01,"
    "  \"operation_strategies\": ["
    "   {\"operation\": \"POST /v2.1/servers\", \"type\": \"probabilistic\", \"param\": 1}"
    "  ]},"
    " {\"service\": \"glance\", \"type\": \"ratelimiting\", \"param\": 5}"
    "],"
    " \"default_strategy\": {\"type\": \"probabilistic\", \"param\": 0.5,"
    "  \"operation_strategies\": ["
    "   {\"operation\": \"GET /healthcheck\", \"type\": \"probabilistic\", \"param\": 0}"
    "  ]}}";

static void
check_choice(struct sampling_policy *p, const char *svc, const char *op,
    enum sampling_strategy_type type, enum sampling_scope scope, double param,
    int line)
{
	struct policy_choice c;

	policy_lookup(p, svc, op, &c);
	CHECKF(c.type == type && c.scope == scope && c.param == param,
	    "line %d: %s/%s -> type %d scope %d param %g", line, svc, op,
	    c.type, c.scope, c.param);
}
#define CHOICE(p, s, o, t, sc, v) check_choice(p, s, o, t, sc, v, __LINE__)

static void
test_policy_parse(void)
{
	struct sampling_policy *p;
	struct policy_choice c;
	json_t *j;
	size_t i;
	char err[256];

	p = parse_ok(good_file, __LINE__);
	if (p != NULL) {
		CHOICE(p, "nova", "POST /v2.1/servers", SAMPLING_PROBABILISTIC,
		    SAMPLING_SCOPE_OPERATION, 1.0);
		CHOICE(p, "nova", "GET /v2.1/servers", SAMPLING_PROBABILISTIC,
		    SAMPLING_SCOPE_SERVICE, 0.01);
		CHOICE(p, "nova", "GET /healthcheck", SAMPLING_PROBABILISTIC,
		    SAMPLING_SCOPE_OPERATION, 0.0);	/* default's op merged */
		CHOICE(p, "glance", "GET /v2/images", SAMPLING_RATELIMITING,
		    SAMPLING_SCOPE_SERVICE, 5.0);
		CHOICE(p, "glance", "GET /healthcheck", SAMPLING_PROBABILISTIC,
		    SAMPLING_SCOPE_OPERATION, 0.0);
		CHOICE(p, "swift", "GET /healthcheck", SAMPLING_PROBABILISTIC,
		    SAMPLING_SCOPE_OPERATION, 0.0);
		CHOICE(p, "swift", "GET /info", SAMPLING_PROBABILISTIC,
		    SAMPLING_SCOPE_DEFAULT, 0.5);
		policy_lookup(p, "glance", "x", &c);
		CHECK(c.bucket != NULL);
		j = policy_to_json(p);
		CHECK(j != NULL && json_array_size(json_object_get(j,
		    "service_strategies")) == 2);
		/* inherited operations are not written back */
		CHECK(json_object_get(json_array_get(json_object_get(j,
		    "service_strategies"), 1), "operation_strategies") == NULL);
		/* and the output parses to the same policy */
		{
			char *txt = json_dumps(j, 0);
			struct sampling_policy *p2 = parse_ok(txt, __LINE__);

			if (p2 != NULL)
				CHOICE(p2, "nova", "POST /v2.1/servers",
				    SAMPLING_PROBABILISTIC, SAMPLING_SCOPE_OPERATION, 1.0);
			policy_unref(p2);
			free(txt);
		}
		json_decref(j);
		CHECK(policy_ref(p) == p);
		policy_unref(p);
		policy_unref(p);
	}

	/* no default_strategy: the configured default probability */
	p = parse_ok("{\"service_strategies\": []}", __LINE__);
	if (p != NULL)
		CHOICE(p, "x", "y", SAMPLING_PROBABILISTIC, SAMPLING_SCOPE_DEFAULT, 0.001);
	policy_unref(p);
	p = parse_ok("{\"default_strategy\": {\"type\": \"ratelimiting\", \"param\": 20},"
	    "\"unknown_key\": [1,2]}", __LINE__);
	if (p != NULL)
		CHOICE(p, "x", "y", SAMPLING_RATELIMITING, SAMPLING_SCOPE_DEFAULT, 20.0);
	policy_unref(p);
	p = parse_ok("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1,"
	    " \"operation_strategies\": null}, \"service_strategies\": null}", __LINE__);
	policy_unref(p);

	/* the remote-sampling response form */
	p = parse_ok("{\"strategyType\": \"PROBABILISTIC\", "
	    "\"probabilisticSampling\": {\"samplingRate\": 0.25}}", __LINE__);
	if (p != NULL)
		CHOICE(p, "any", "op", SAMPLING_PROBABILISTIC, SAMPLING_SCOPE_DEFAULT, 0.25);
	policy_unref(p);
	p = parse_ok("{\"strategyType\": 1, \"rateLimitingSampling\": "
	    "{\"maxTracesPerSecond\": 20}}", __LINE__);
	if (p != NULL)
		CHOICE(p, "any", "op", SAMPLING_RATELIMITING, SAMPLING_SCOPE_DEFAULT, 20.0);
	policy_unref(p);
	p = parse_ok("{\"strategyType\": \"rate_limiting\", \"rateLimitingSampling\": {}}",
	    __LINE__);
	if (p != NULL)
		CHOICE(p, "any", "op", SAMPLING_RATELIMITING, SAMPLING_SCOPE_DEFAULT, 0.0);
	policy_unref(p);
	p = parse_ok("{\"probabilisticSampling\": {}}", __LINE__);	/* proto3 zeroes */
	if (p != NULL)
		CHOICE(p, "any", "op", SAMPLING_PROBABILISTIC, SAMPLING_SCOPE_DEFAULT, 0.0);
	policy_unref(p);
	p = parse_ok("{\"strategyType\": 0, \"probabilisticSampling\": {\"samplingRate\": 1},"
	    " \"operationSampling\": {\"defaultSamplingProbability\": 0.1,"
	    "  \"defaultLowerBoundTracesPerSecond\": 2,"
	    "  \"defaultUpperBoundTracesPerSecond\": 100,"
	    "  \"perOperationStrategies\": [{\"operation\": \"GET /a\","
	    "   \"probabilisticSampling\": {\"samplingRate\": 0.5}}]}}", __LINE__);
	if (p != NULL) {
		CHOICE(p, "s", "GET /a", SAMPLING_PROBABILISTIC, SAMPLING_SCOPE_OPERATION, 0.5);
		CHOICE(p, "s", "GET /b", SAMPLING_PROBABILISTIC, SAMPLING_SCOPE_DEFAULT, 0.1);
		policy_lookup(p, "s", "GET /a", &c);
		CHECK(c.bucket != NULL && c.lower_bound == 2.0);
	}
	policy_unref(p);

	/* every invalid form, with the reason */
	BAD("", "empty document");
	BAD("{", "invalid JSON");
	BAD("[]", "must be a JSON object");
	BAD("{}", "no strategies");
	BAD("{\"services\": []}", "no strategies");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1},"
	    " \"strategyType\": 0}", "mixes");
	BAD("{\"default_strategy\": 1}", "default_strategy: must be an object");
	BAD("{\"default_strategy\": {\"param\": 1}}", "default_strategy.type: missing");
	BAD("{\"default_strategy\": {\"type\": 1, \"param\": 1}}",
	    "default_strategy.type: must be a string");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\"}}",
	    "default_strategy.param: missing");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": \"0.5\"}}",
	    "default_strategy.param: must be a number");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1.5}}",
	    "probability 1.5 outside [0,1]");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": -0.1}}",
	    "outside [0,1]");
	BAD("{\"default_strategy\": {\"type\": \"ratelimiting\", \"param\": -1}}",
	    "traces per second -1 must be >= 0");
	BAD("{\"default_strategy\": {\"type\": \"ratelimiting\", \"param\": 1e12}}",
	    "absurd");
	BAD("{\"default_strategy\": {\"type\": \"lowerbound\", \"param\": 1}}",
	    "unknown strategy type \"lowerbound\"");
	BAD("{\"default_strategy\": {\"type\": \"Probabilistic\", \"param\": 1}}",
	    "unknown strategy type");
	BAD("{\"service_strategies\": {}}", "service_strategies: must be an array");
	BAD("{\"service_strategies\": [1]}", "service_strategies[0]: must be an object");
	BAD("{\"service_strategies\": [{\"type\": \"probabilistic\", \"param\": 1}]}",
	    "service_strategies[0].service: missing");
	BAD("{\"service_strategies\": [{\"service\": 5, \"type\": \"probabilistic\","
	    " \"param\": 1}]}", "service_strategies[0].service: must be a string");
	BAD("{\"service_strategies\": [{\"service\": \"\", \"type\": \"probabilistic\","
	    " \"param\": 1}]}", "must not be empty");
	BAD("{\"service_strategies\": [{\"service\": \"a\\u0000b\", \"type\": "
	    "\"probabilistic\", \"param\": 1}]}", "NUL");
	BAD("{\"service_strategies\": ["
	    "{\"service\": \"nova\", \"type\": \"probabilistic\", \"param\": 1},"
	    "{\"service\": \"nova\", \"type\": \"probabilistic\", \"param\": 1}]}",
	    "service_strategies[1].service: duplicate service \"nova\"");
	BAD("{\"service_strategies\": [{\"service\": \"nova\", \"param\": 1}]}",
	    "service_strategies[0].type: missing");
	BAD("{\"service_strategies\": [{\"service\": \"nova\", \"type\": "
	    "\"probabilistic\", \"param\": 1, \"operation_strategies\": {}}]}",
	    "operation_strategies: must be an array");
	BAD("{\"service_strategies\": [{\"service\": \"nova\", \"type\": "
	    "\"probabilistic\", \"param\": 1, \"operation_strategies\": ["
	    "{\"operation\": \"GET /\", \"type\": \"ratelimiting\", \"param\": 1}]}]}",
	    "ratelimiting is not allowed per operation");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1,"
	    " \"operation_strategies\": [{\"type\": \"probabilistic\", \"param\": 1}]}}",
	    "default_strategy.operation_strategies[0].operation: missing");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1,"
	    " \"operation_strategies\": [{\"operation\": \"a\", \"param\": 1}]}}",
	    "operation_strategies[0].type: missing");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1,"
	    " \"operation_strategies\": [{\"operation\": \"a\", \"type\": \"x\","
	    " \"param\": 1}]}}", "unknown strategy type \"x\"");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1,"
	    " \"operation_strategies\": [{\"operation\": \"a\", \"type\": "
	    "\"probabilistic\"}]}}", "operation_strategies[0].param: missing");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1,"
	    " \"operation_strategies\": [{\"operation\": \"a\", \"type\": "
	    "\"probabilistic\", \"param\": 2}]}}", "outside [0,1]");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1,"
	    " \"operation_strategies\": ["
	    "{\"operation\": \"a\", \"type\": \"probabilistic\", \"param\": 1},"
	    "{\"operation\": \"a\", \"type\": \"probabilistic\", \"param\": 0}]}}",
	    "duplicate operation \"a\"");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1,"
	    " \"operation_strategies\": [7]}}", "must be an object");
	BAD("{\"default_strategy\": {\"type\": \"probabilistic\", \"param\": 1},"
	    " \"default_strategy\": {\"type\": \"probabilistic\", \"param\": 0}}",
	    "duplicate");
	/* remote form */
	BAD("{\"strategyType\": 2, \"probabilisticSampling\": {}}",
	    "unknown strategy type 2");
	BAD("{\"strategyType\": \"LOWER\", \"probabilisticSampling\": {}}",
	    "unknown strategy type \"LOWER\"");
	BAD("{\"strategyType\": 1.5}", "must be a string or an integer");
	BAD("{\"strategyType\": 0}", "probabilisticSampling: missing");
	BAD("{\"strategyType\": 1, \"probabilisticSampling\": {}}",
	    "rateLimitingSampling: missing");
	BAD("{\"probabilisticSampling\": 0.5}", "probabilisticSampling: must be an object");
	BAD("{\"probabilisticSampling\": {\"samplingRate\": \"x\"}}", "must be a number");
	BAD("{\"probabilisticSampling\": {\"samplingRate\": 7}}", "outside [0,1]");
	BAD("{\"strategyType\": 1, \"rateLimitingSampling\": {\"maxTracesPerSecond\": -5}}",
	    "must be >= 0");
	BAD("{\"operationSampling\": []}", "operationSampling: must be an object");
	BAD("{\"operationSampling\": {\"defaultSamplingProbability\": 2}}",
	    "defaultSamplingProbability: probability 2 outside");
	BAD("{\"operationSampling\": {\"defaultLowerBoundTracesPerSecond\": -1}}",
	    "defaultLowerBoundTracesPerSecond");
	BAD("{\"operationSampling\": {\"perOperationStrategies\": {}}}", "must be an array");
	BAD("{\"operationSampling\": {\"perOperationStrategies\": [{\"operation\": \"a\"}]}}",
	    "probabilisticSampling: missing");
	BAD("{\"operationSampling\": {\"perOperationStrategies\": ["
	    "{\"probabilisticSampling\": {}}]}}", "operation: missing");
	BAD("{\"operationSampling\": {\"perOperationStrategies\": [{\"operation\": \"a\","
	    " \"rateLimitingSampling\": {\"maxTracesPerSecond\": 1}}]}}",
	    "ratelimiting is not allowed per operation");
	BAD("{\"operationSampling\": {\"perOperationStrategies\": ["
	    "{\"operation\": \"a\", \"probabilisticSampling\": {}},"
	    "{\"operation\": \"a\", \"probabilisticSampling\": {}}]}}", "duplicate operation");

	/* every truncated prefix of a valid document is rejected, no crash */
	for (i = 0; i < strlen(good_file); i++) {
		p = NULL;
		CHECK(policy_parse(good_file, i, 0.001, &p, err, sizeof(err)) == -1);
		CHECK(p == NULL);
	}
	/* a bad default probability is the caller's error */
	CHECK(policy_parse("{}", 2, 2.0, &p, err, sizeof(err)) == -1);

	/* merged per-service remote responses */
	{
		const char *svcs[] = { "nova", "glance" };
		const char *docs[] = {
			"{\"strategyType\": \"PROBABILISTIC\", \"probabilisticSampling\":"
			" {\"samplingRate\": 0.01}}",
			"{\"strategyType\": \"RATE_LIMITING\", \"rateLimitingSampling\":"
			" {\"maxTracesPerSecond\": 5}}",
		};
		size_t lens[] = { strlen(docs[0]), strlen(docs[1]) };
		const char *bad_docs[] = { docs[0], "{\"strategyType\": 9}" };

		CHECK(policy_from_remote(2, svcs, docs, lens, 0.001, &p, err,
		    sizeof(err)) == 0);
		if (p != NULL) {
			CHOICE(p, "nova", "x", SAMPLING_PROBABILISTIC,
			    SAMPLING_SCOPE_SERVICE, 0.01);
			CHOICE(p, "glance", "x", SAMPLING_RATELIMITING,
			    SAMPLING_SCOPE_SERVICE, 5.0);
			CHOICE(p, "keystone", "x", SAMPLING_PROBABILISTIC,
			    SAMPLING_SCOPE_DEFAULT, 0.001);
		}
		policy_unref(p);
		lens[1] = strlen(bad_docs[1]);
		CHECK(policy_from_remote(2, svcs, bad_docs, lens, 0.001, &p, err,
		    sizeof(err)) == -1);
		CHECKF(strstr(err, "service glance: strategyType") != NULL, "%s", err);
		svcs[1] = "nova";
		CHECK(policy_from_remote(2, svcs, docs, lens, 0.001, &p, err,
		    sizeof(err)) == -1);
		CHECKF(strstr(err, "duplicate service") != NULL, "%s", err);
	}
}

/* ---------------- ratio and buckets ---------------- */

/* splitmix64: a fixed stream of "random" trace ids */
static uint64_t
mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
make_id(uint64_t *seed, uint8_t id[16])
{
	uint64_t a = mix(seed), b = mix(seed);
	int i;

	for (i = 0; i < 8; i++) {
		id[i] = (uint8_t)(a >> (56 - 8 * i));
		id[8 + i] = (uint8_t)(b >> (56 - 8 * i));
	}
}

static void
test_ratio(void)
{
	uint8_t id[16] = { 0 };
	uint64_t seed = 42;
	int i, hits = 0;
	uint64_t t = sampling_threshold(0.25);

	CHECK(sampling_threshold(0) == (uint64_t)1 << 56);
	CHECK(sampling_threshold(1) == 0);
	CHECK(sampling_threshold(0.5) == (uint64_t)1 << 55);
	CHECK(sampling_threshold(-1) == (uint64_t)1 << 56);
	CHECK(t == ((uint64_t)3 << 54));
	/* the decision reads only the low 56 bits */
	CHECK(sampling_ratio_sampled(id, 0) == 1);
	CHECK(sampling_ratio_sampled(id, 1) == 0);
	memset(id, 0xff, 16);
	CHECK(sampling_ratio_sampled(id, sampling_threshold(0)) == 0);
	CHECK(sampling_ratio_sampled(id, sampling_threshold(1e-9)) == 1);
	id[9] = 0xbf;	/* R = 0xbfffff... just under 0.75 * 2^56 */
	CHECK(sampling_ratio_sampled(id, t) == 0);
	id[9] = 0xc0;
	id[10] = id[11] = id[12] = id[13] = id[14] = id[15] = 0;
	CHECK(sampling_ratio_sampled(id, t) == 1);	/* exactly at T */
	id[8] = 0x00;	/* byte 8 is not part of R */
	CHECK(sampling_ratio_sampled(id, t) == 1);
	/* fixed vectors */
	{
		static const uint8_t a[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3,
		    0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
		static const uint8_t b[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3,
		    0x4d, 0xa6, 0xa3, 0x2e, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };

		/* a: R = 0xce929d0e0e4736 ~ 0.807 -> sampled at p >= 0.193 */
		CHECK(sampling_ratio_sampled(a, sampling_threshold(0.25)) == 1);
		CHECK(sampling_ratio_sampled(a, sampling_threshold(0.19)) == 0);
		/* b: R = 0x2e929d0e0e4736 ~ 0.182 -> needs p >= 0.818 */
		CHECK(sampling_ratio_sampled(b, sampling_threshold(0.8)) == 0);
		CHECK(sampling_ratio_sampled(b, sampling_threshold(0.82)) == 1);
	}
	for (i = 0; i < 4000; i++) {
		make_id(&seed, id);
		hits += sampling_ratio_sampled(id, t);
	}
	CHECKF(hits >= 880 && hits <= 1120, "hits %d of 4000 at 0.25", hits);
}

static void
test_bucket(void)
{
	struct sampling_bucket b;
	uint64_t s = 1000000000ULL;	/* any start */
	int i, n;

	sampling_bucket_init(&b, 5);		/* burst 5, one per 200 ms */
	for (n = 0, i = 0; i < 10; i++)
		n += sampling_bucket_take(&b, s);
	CHECK(n == 5);
	CHECK(sampling_bucket_take(&b, s + 199999999ULL) == 0);
	CHECK(sampling_bucket_take(&b, s + 200000000ULL) == 1);
	CHECK(sampling_bucket_take(&b, s + 200000000ULL) == 0);
	/* after a long idle time the bucket is full again, not fuller */
	for (n = 0, i = 0; i < 20; i++)
		n += sampling_bucket_take(&b, s + 100000000000ULL);
	CHECK(n == 5);
	/* steady state: 1000 requests per second for 10 s gives 5/s (+ burst) */
	sampling_bucket_init(&b, 5);
	for (n = 0, i = 0; i < 10000; i++)
		n += sampling_bucket_take(&b, s + (uint64_t)i * 1000000ULL);
	CHECKF(n >= 54 && n <= 55, "n %d", n);
	/* fractional rates: 0.5/s = one every 2 s, burst 1 */
	sampling_bucket_init(&b, 0.5);
	CHECK(sampling_bucket_take(&b, s) == 1);
	CHECK(sampling_bucket_take(&b, s + 1999999999ULL) == 0);
	CHECK(sampling_bucket_take(&b, s + 2000000000ULL) == 1);
	/* 0 closes, negative opens */
	sampling_bucket_init(&b, 0);
	CHECK(sampling_bucket_take(&b, s) == 0);
	sampling_bucket_init(&b, -1);
	for (n = 0, i = 0; i < 1000; i++)
		n += sampling_bucket_take(&b, s);
	CHECK(n == 1000);
	sampling_bucket_set_rate(&b, 1);
	CHECK(sampling_bucket_take(&b, s) == 1);
	CHECK(sampling_bucket_take(&b, s) == 0);
	/* clocks that go backwards a little (another worker's now) are fine */
	CHECK(sampling_bucket_take(&b, s - 5) == 0);
}

/* ---------------- decisions ---------------- */

static struct sampling_limits lim_default = { 10, 100, 1000 };

static void
test_decide(void)
{
	struct sampling_policy *p = parse_ok(good_file, __LINE__);
	struct sampling_hub *h1, *h2;
	struct sampler *s1, *s2;
	struct sampling_result r1, r2;
	uint8_t id[16];
	uint64_t seed = 7, now = 5000000000ULL;
	int i, n, same = 1, hits = 0;

	if (p == NULL)
		return;
	/* two proxies with the same policy decide the same on every trace */
	h1 = sampling_hub_new(&lim_default, policy_ref(p), "test");
	h2 = sampling_hub_new(&lim_default, p, "test");
	CHECK(h1 != NULL && h2 != NULL);
	s1 = sampling_sampler_new(h1);
	s2 = sampling_sampler_new(h2);
	{
		static const char *q = "{\"default_strategy\": {\"type\": "
		    "\"probabilistic\", \"param\": 0.25}}";
		struct sampling_policy *pq = parse_ok(q, __LINE__);
		struct sampling_policy *pq2 = parse_ok(q, __LINE__);

		sampling_hub_publish(h1, pq, "q");
		sampling_hub_publish(h2, pq2, "q");
	}
	for (i = 0; i < 4000; i++) {
		make_id(&seed, id);
		sampling_decide(s1, "nova", "GET /x", id, SAMPLING_ORIGIN_NONE, -1, 0,
		    1, now, &r1);
		sampling_decide(s2, "nova", "GET /x", id, SAMPLING_ORIGIN_INCOMING, -1,
		    0, 1, now, &r2);
		same &= r1.sampled == r2.sampled;
		hits += r1.sampled;
		now += 1000000;	/* 1000 rps: under the 1000/s global cap */
	}
	CHECK(same);
	CHECKF(hits >= 880 && hits <= 1120, "hits %d", hits);
	CHECK(r1.reason == SAMPLING_REASON_PROBABILISTIC && r1.param == 0.25);
	sampling_sampler_free(s2);
	sampling_hub_free(h2);

	/* back to the rich policy */
	p = parse_ok(good_file, __LINE__);
	sampling_hub_publish(h1, p, "file:test");
	memset(id, 0, sizeof(id));	/* R = 0: sampled only at p = 1 */

	/* 1. forced, capped at 10/s (burst 10) */
	for (n = 0, i = 0; i < 15; i++) {
		sampling_decide(s1, "nova", "GET /healthcheck", id,
		    SAMPLING_ORIGIN_OSPROFILER, 0, 0, 0, now, &r1);
		n += r1.sampled;
		CHECK(r1.reason == (r1.sampled ? SAMPLING_REASON_FORCED :
		    SAMPLING_REASON_FORCED_CAPPED));
	}
	CHECK(n == 10);
	now += 1000000000ULL;

	/* 2. trusted incoming flags */
	sampling_decide(s1, "nova", "GET /healthcheck", id, SAMPLING_ORIGIN_INCOMING,
	    1, 0, 1, now, &r1);
	CHECK(r1.sampled == 1 && r1.reason == SAMPLING_REASON_INCOMING_SAMPLED);
	sampling_decide(s1, "nova", "GET /x", id, SAMPLING_ORIGIN_INCOMING, 0, 1, 1,
	    now, &r1);
	CHECK(r1.sampled == 1 && r1.reason == SAMPLING_REASON_INCOMING_DEBUG);
	sampling_decide(s1, "nova", "POST /v2.1/servers", id,
	    SAMPLING_ORIGIN_INCOMING, 0, 0, 1, now, &r1);
	CHECK(r1.sampled == 0 && r1.reason == SAMPLING_REASON_INCOMING_UNSAMPLED);
	/* untrusted: the policy decides (op rule 1.0 here) */
	sampling_decide(s1, "nova", "POST /v2.1/servers", id,
	    SAMPLING_ORIGIN_INCOMING, 0, 0, 0, now, &r1);
	CHECK(r1.sampled == 1 && r1.reason == SAMPLING_REASON_PROBABILISTIC &&
	    r1.scope == SAMPLING_SCOPE_OPERATION && r1.param == 1.0);
	sampling_decide(s1, "nova", "GET /healthcheck", id,
	    SAMPLING_ORIGIN_INCOMING, 1, 1, 0, now, &r1);
	CHECK(r1.sampled == 0 && r1.reason == SAMPLING_REASON_PROBABILISTIC);
	/* deferred flag: the policy */
	sampling_decide(s1, "nova", "GET /v2.1/servers", id,
	    SAMPLING_ORIGIN_INCOMING, -1, 0, 1, now, &r1);
	CHECK(r1.sampled == 0 && r1.reason == SAMPLING_REASON_PROBABILISTIC &&
	    r1.scope == SAMPLING_SCOPE_SERVICE && r1.param == 0.01);
	/* incoming cap: 100/s, burst 100 (2 taken above) */
	for (n = 0, i = 0; i < 200; i++) {
		sampling_decide(s1, "keystone", "GET /v3", id, SAMPLING_ORIGIN_INCOMING,
		    1, 0, 1, now, &r1);
		n += r1.sampled;
	}
	CHECK(n == 98);
	CHECK(r1.reason == SAMPLING_REASON_INCOMING_CAPPED);
	now += 1000000000ULL;

	/* 3. ratelimiting: glance 5/s */
	for (n = 0, i = 0; i < 50; i++) {
		sampling_decide(s1, "glance", "GET /v2/images", id,
		    SAMPLING_ORIGIN_NONE, -1, 0, 1, now, &r1);
		n += r1.sampled;
		CHECK(r1.reason == SAMPLING_REASON_RATELIMITING);
	}
	CHECK(n == 5);
	now += 1000000000ULL;

	/* 4. the global cap: 3/s over everything */
	{
		struct sampling_limits l = { -1, -1, 3 };

		sampling_hub_set_limits(h1, &l);
	}
	for (n = 0, i = 0; i < 10; i++) {
		sampling_decide(s1, "nova", "POST /v2.1/servers", id,
		    SAMPLING_ORIGIN_OSPROFILER, -1, 0, 1, now, &r1);
		n += r1.sampled;
	}
	CHECK(n <= 3);
	CHECK(r1.sampled == 0 && r1.reason == SAMPLING_REASON_GLOBAL_CAP);
	sampling_hub_set_limits(h1, &lim_default);

	/* counters and status */
	{
		json_t *st = sampling_status_json(h1), *d;
		char *m = sampling_metrics_text(h1);

		CHECK(st != NULL);
		CHECK(strcmp(json_string_value(json_object_get(st, "source")),
		    "file:test") == 0);
		d = json_object_get(json_object_get(json_object_get(json_object_get(
		    st, "decisions"), "glance"), "GET /v2/images"), "ratelimiting");
		CHECK(json_integer_value(json_object_get(d, "sampled")) == 5);
		CHECK(json_integer_value(json_object_get(d, "unsampled")) == 45);
		d = json_object_get(json_object_get(json_object_get(json_object_get(
		    st, "decisions"), "nova"), "GET /healthcheck"), "forced_capped");
		CHECK(json_integer_value(json_object_get(d, "unsampled")) == 5);
		CHECK(json_is_null(json_object_get(st, "last_rejected")));
		json_decref(st);
		CHECK(m != NULL && strstr(m, "tracebridge_sampling_decisions_total{"
		    "service=\"glance\",operation=\"GET /v2/images\",reason="
		    "\"ratelimiting\",sampled=\"true\"} 5\n") != NULL);
		free(m);
		sampling_hub_rejected(h1, "redis:k", "invalid JSON at line 1");
		st = sampling_status_json(h1);
		CHECK(strcmp(json_string_value(json_object_get(json_object_get(st,
		    "last_rejected"), "reason")), "invalid JSON at line 1") == 0);
		json_decref(st);
	}

	/* the operation table folds into "other" when full */
	for (i = 0; i < SAMPLING_COUNTERS_MAX + 50; i++) {
		char op[32];

		snprintf(op, sizeof(op), "GET /op%d", i);
		sampling_decide(s1, "swift", op, id, SAMPLING_ORIGIN_NONE, -1, 0, 1,
		    now, &r1);
	}
	{
		json_t *st = sampling_status_json(h1);
		json_t *sw = json_object_get(json_object_get(st, "decisions"), "swift");

		CHECK(json_object_get(sw, "other") != NULL);
		CHECK(json_object_size(sw) < SAMPLING_COUNTERS_MAX);
		json_decref(st);
	}
	/* forced traces pass a 0% policy; nothing else does */
	sampling_hub_publish(h1, policy_new_default(0.0), "config:sample_new");
	memset(id, 0xff, sizeof(id));	/* the highest R there is */
	now += 2000000000ULL;
	sampling_decide(s1, "nova", "GET /x", id, SAMPLING_ORIGIN_NONE, -1, 0, 1,
	    now, &r1);
	CHECK(r1.sampled == 0 && r1.reason == SAMPLING_REASON_PROBABILISTIC);
	sampling_decide(s1, "nova", "GET /x", id, SAMPLING_ORIGIN_OSPROFILER, 0, 0,
	    0, now, &r1);
	CHECK(r1.sampled == 1 && r1.reason == SAMPLING_REASON_FORCED);
	/* and sample_new = true is 1.0 */
	sampling_hub_publish(h1, policy_new_default(1.0), "config:sample_new");
	memset(id, 0, sizeof(id));	/* the lowest R */
	sampling_decide(s1, "nova", "GET /x", id, SAMPLING_ORIGIN_NONE, -1, 0, 1,
	    now, &r1);
	CHECK(r1.sampled == 1 && r1.reason == SAMPLING_REASON_PROBABILISTIC);
	sampling_sampler_free(s1);
	sampling_hub_free(h1);

	/* the built-in default */
	h1 = sampling_hub_new(&lim_default, NULL, NULL);
	s1 = sampling_sampler_new(h1);
	sampling_decide(s1, "x", "GET /", id, SAMPLING_ORIGIN_NONE, -1, 0, 1, now, &r1);
	CHECK(r1.param == 0.001 && r1.scope == SAMPLING_SCOPE_DEFAULT);
	{
		json_t *st = sampling_status_json(h1);

		CHECK(strcmp(json_string_value(json_object_get(st, "source")),
		    "builtin") == 0);
		json_decref(st);
	}
	sampling_sampler_free(s1);
	sampling_hub_free(h1);
}

/* ---------------- swap under load ---------------- */

struct worker_arg {
	struct sampling_hub *hub;
	_Atomic int *stop;
	long decided;
};

static void *
worker(void *v)
{
	struct worker_arg *a = v;
	struct sampler *s = sampling_sampler_new(a->hub);
	struct sampling_result r;
	uint8_t id[16];
	uint64_t seed = (uint64_t)(uintptr_t)a, now = 0;

	while (!atomic_load(a->stop)) {
		make_id(&seed, id);
		sampling_decide(s, "nova", "POST /v2.1/servers", id,
		    SAMPLING_ORIGIN_NONE, -1, 0, 1, now += 1000, &r);
		sampling_decide(s, "glance", "GET /v2/images", id,
		    SAMPLING_ORIGIN_NONE, -1, 0, 1, now, &r);
		a->decided++;
	}
	sampling_sampler_free(s);
	return NULL;
}

static void
test_swap(void)
{
	struct sampling_hub *h = sampling_hub_new(&lim_default, NULL, NULL);
	_Atomic int stop = 0;
	struct worker_arg args[3];
	pthread_t t[3];
	int i;

	for (i = 0; i < 3; i++) {
		args[i].hub = h;
		args[i].stop = &stop;
		args[i].decided = 0;
		pthread_create(&t[i], NULL, worker, &args[i]);
	}
	for (i = 0; i < 2000; i++) {
		struct sampling_policy *p = parse_ok(good_file, __LINE__);

		sampling_hub_publish(h, p, "swap");
		if (i % 100 == 0) {
			json_t *st = sampling_status_json(h);

			json_decref(st);
		}
	}
	atomic_store(&stop, 1);
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	CHECK(sampling_hub_generation(h) == 2001);
	CHECK(args[0].decided > 0);
	sampling_hub_free(h);
}

/*
 * The adaptive layer (issue 15): an operation the explicit policy names
 * keeps it; every other policy decision comes from the layer (reason
 * adaptive, its lower bound adaptive_lower_bound); forced and trusted
 * decisions are untouched; removing the layer restores the explicit policy;
 * the totals count decisions and adaptive traces per operation.
 */
static void
test_adaptive_layer(void)
{
	static const char *xp = "{\"service_strategies\": [{\"service\": "
	    "\"nova\", \"type\": \"probabilistic\", \"param\": 0, "
	    "\"operation_strategies\": [{\"operation\": \"GET /named\", "
	    "\"type\": \"probabilistic\", \"param\": 0}]}]}";
	static const char *ad = "{\"default_strategy\": {\"type\": "
	    "\"probabilistic\", \"param\": 1, "
	    "\"lower_bound_traces_per_second\": 0}, \"service_strategies\": "
	    "[{\"service\": \"nova\", \"type\": \"probabilistic\", "
	    "\"param\": 1, \"lower_bound_traces_per_second\": 1, "
	    "\"operation_strategies\": [{\"operation\": \"GET /slow\", "
	    "\"type\": \"probabilistic\", \"param\": 0}]}], "
	    "\"tracebridge_adaptive\": {}}";
	struct sampling_hub *h = sampling_hub_new(&lim_default,
	    parse_ok(xp, __LINE__), "test");
	struct sampler *s;
	struct sampling_result r;
	struct sampling_policy *a;
	json_t *tot, *st;
	uint8_t id[16];
	uint64_t now = 1000000000ULL;
	int i;

	if (h == NULL)
		return;
	s = sampling_sampler_new(h);
	memset(id, 0xff, sizeof(id));	/* R = max: sampled at any p > 0 */
	CHECK(sampling_hub_adaptive(h) == NULL);
	sampling_decide(s, "nova", "GET /other", id, SAMPLING_ORIGIN_NONE, -1, 0,
	    1, now, &r);
	CHECK(!r.sampled && r.reason == SAMPLING_REASON_PROBABILISTIC);

	sampling_hub_publish_adaptive(h, parse_ok(ad, __LINE__),
	    json_pack("{s:s}", "leader", "me"), "redis:k");
	a = sampling_hub_adaptive(h);
	CHECK(a != NULL);
	policy_unref(a);
	/* named by the explicit policy: kept (p 0) */
	sampling_decide(s, "nova", "GET /named", id, SAMPLING_ORIGIN_NONE, -1, 0,
	    1, now, &r);
	CHECK(!r.sampled && r.reason == SAMPLING_REASON_PROBABILISTIC &&
	    r.scope == SAMPLING_SCOPE_OPERATION && r.param == 0);
	/* the explicit service strategy does not name it: adaptive's service
	 * strategy (1) */
	sampling_decide(s, "nova", "GET /other", id, SAMPLING_ORIGIN_NONE, -1, 0,
	    1, now, &r);
	CHECK(r.sampled && r.reason == SAMPLING_REASON_ADAPTIVE && r.param == 1);
	/* adaptive's own operation at 0: its lower bound (1/s, one token)
	 * takes the first, not the second */
	sampling_decide(s, "nova", "GET /slow", id, SAMPLING_ORIGIN_NONE, -1, 0,
	    1, now, &r);
	CHECK(r.sampled && r.reason == SAMPLING_REASON_ADAPTIVE_LOWER_BOUND);
	sampling_decide(s, "nova", "GET /slow", id, SAMPLING_ORIGIN_NONE, -1, 0,
	    1, now, &r);
	CHECK(!r.sampled && r.reason == SAMPLING_REASON_ADAPTIVE &&
	    r.param == 0);
	/* the same document again (the leader publishes every interval):
	 * the spent token stays spent, for the listed operation and for one
	 * that shared the service's bucket before it was listed */
	sampling_decide(s, "nova", "GET /later", id, SAMPLING_ORIGIN_NONE, -1, 0,
	    1, now, &r);
	CHECK(r.sampled && r.reason == SAMPLING_REASON_ADAPTIVE);
	sampling_hub_publish_adaptive(h, parse_ok(ad, __LINE__),
	    json_pack("{s:s}", "leader", "me"), "redis:k");
	sampling_decide(s, "nova", "GET /slow", id, SAMPLING_ORIGIN_NONE, -1, 0,
	    1, now, &r);
	CHECK(!r.sampled && r.reason == SAMPLING_REASON_ADAPTIVE);
	now += 1000000000ULL;	/* a second later: one token */
	sampling_decide(s, "nova", "GET /slow", id, SAMPLING_ORIGIN_NONE, -1, 0,
	    1, now, &r);
	CHECK(r.sampled && r.reason == SAMPLING_REASON_ADAPTIVE_LOWER_BOUND);
	/* other services: adaptive's default */
	sampling_decide(s, "glance", "GET /v2/images", id, SAMPLING_ORIGIN_NONE,
	    -1, 0, 1, now, &r);
	CHECK(r.sampled && r.reason == SAMPLING_REASON_ADAPTIVE);
	/* forced and trusted incoming decisions as before */
	sampling_decide(s, "nova", "GET /other", id, SAMPLING_ORIGIN_OSPROFILER,
	    -1, 0, 1, now, &r);
	CHECK(r.sampled && r.reason == SAMPLING_REASON_FORCED);
	sampling_decide(s, "nova", "GET /other", id, SAMPLING_ORIGIN_INCOMING,
	    0, 0, 1, now, &r);
	CHECK(!r.sampled && r.reason == SAMPLING_REASON_INCOMING_UNSAMPLED);

	/* Jaeger's sampler.type of each */
	CHECK(strcmp(sampling_sampler_type(SAMPLING_REASON_ADAPTIVE),
	    "probabilistic") == 0);
	CHECK(strcmp(sampling_sampler_type(SAMPLING_REASON_ADAPTIVE_LOWER_BOUND),
	    "lowerbound") == 0);
	CHECK(strcmp(sampling_sampler_type(SAMPLING_REASON_RATELIMITING),
	    "ratelimiting") == 0);
	CHECK(sampling_sampler_type(SAMPLING_REASON_FORCED) == NULL);
	CHECK(sampling_sampler_type(SAMPLING_REASON_INCOMING_SAMPLED) == NULL);

	/* totals: [decisions, adaptive-sampled] */
	tot = sampling_hub_totals(h);
	CHECK(json_integer_value(json_array_get(json_object_get(json_object_get(
	    tot, "nova"), "GET /other"), 0)) == 4);
	CHECK(json_integer_value(json_array_get(json_object_get(json_object_get(
	    tot, "nova"), "GET /other"), 1)) == 1);
	CHECK(json_integer_value(json_array_get(json_object_get(json_object_get(
	    tot, "nova"), "GET /slow"), 1)) == 2);
	CHECK(json_integer_value(json_array_get(json_object_get(json_object_get(
	    tot, "nova"), "GET /named"), 1)) == 0);
	json_decref(tot);
	/* the status shows the layer with its meta */
	st = sampling_status_json(h);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(st,
	    "adaptive"), "leader")), "me") == 0);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(st,
	    "adaptive"), "source")), "redis:k") == 0);
	json_decref(st);

	/* Jaeger's remote-sampling answer: explicit operations, then the
	 * adaptive ones, the adaptive service default; and it parses back */
	{
		json_t *rj = sampling_remote_json(h, "nova"), *ops;
		struct sampling_policy *back;
		struct policy_choice pc;
		char *txt, err[256];

		CHECK(strcmp(json_string_value(json_object_get(rj,
		    "strategyType")), "PROBABILISTIC") == 0);
		CHECK(json_real_value(json_object_get(json_object_get(rj,
		    "probabilisticSampling"), "samplingRate")) == 1);
		ops = json_object_get(json_object_get(rj, "operationSampling"),
		    "perOperationStrategies");
		CHECK(json_array_size(ops) == 2);
		CHECK(strcmp(json_string_value(json_object_get(json_array_get(ops,
		    0), "operation")), "GET /named") == 0);
		CHECK(strcmp(json_string_value(json_object_get(json_array_get(ops,
		    1), "operation")), "GET /slow") == 0);
		CHECK(json_real_value(json_object_get(json_object_get(rj,
		    "operationSampling"), "defaultLowerBoundTracesPerSecond")) == 1);
		txt = json_dumps(rj, 0);
		CHECK(txt != NULL && policy_parse(txt, strlen(txt), 0.5, &back,
		    err, sizeof(err)) == 0);
		if (txt != NULL && back != NULL) {
			policy_lookup(back, "any", "GET /named", &pc);
			CHECK(pc.scope == SAMPLING_SCOPE_OPERATION && pc.param == 0);
			policy_lookup(back, "any", "GET /other", &pc);
			CHECK(pc.param == 1);
			policy_unref(back);
		}
		free(txt);
		json_decref(rj);
		/* a service neither names: adaptive's default */
		rj = sampling_remote_json(h, "glance");
		CHECK(json_array_size(json_object_get(json_object_get(rj,
		    "operationSampling"), "perOperationStrategies")) == 0);
		CHECK(json_real_value(json_object_get(json_object_get(rj,
		    "probabilisticSampling"), "samplingRate")) == 1);
		json_decref(rj);
	}

	/* removed: the explicit policy decides everything again */
	sampling_hub_publish_adaptive(h, NULL, NULL, "off");
	for (i = 0; i < 2; i++) {
		sampling_decide(s, "nova", i ? "GET /slow" : "GET /other", id,
		    SAMPLING_ORIGIN_NONE, -1, 0, 1, now, &r);
		CHECK(!r.sampled && r.reason == SAMPLING_REASON_PROBABILISTIC);
	}
	st = sampling_status_json(h);
	CHECK(json_is_null(json_object_get(st, "adaptive")));
	json_decref(st);
	st = sampling_remote_json(h, "nova");	/* the explicit policy alone */
	CHECK(json_real_value(json_object_get(json_object_get(st,
	    "probabilisticSampling"), "samplingRate")) == 0);
	CHECK(json_array_size(json_object_get(json_object_get(st,
	    "operationSampling"), "perOperationStrategies")) == 1);
	json_decref(st);
	sampling_sampler_free(s);
	sampling_hub_free(h);
}

int
main(void)
{
	test_names();
	test_rules();
	test_policy_parse();
	test_ratio();
	test_bucket();
	test_decide();
	test_swap();
	test_adaptive_layer();
	TB_TEST_END();
}
