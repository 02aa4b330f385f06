/*
 * tb_policy_driver.c: runs policy_source on an event_base the way the
 * control thread does, for tests/integration/test_policy_source.py.
 *
 *   tb_policy_driver [--file PATH] [--check SECS] [--redis CONNSTRING]
 *       [--service-name NAME] [--socket-timeout SECS] [--key KEY]
 *       [--channel CH] [--url URL] [--poll SECS] [--service NAME]...
 *       [--default P]
 *
 * --redis takes a connection string as [profiler] connection_string does
 * (redis://, unix://, redissentinel://); --service-name and
 * --socket-timeout are [profiler] sentinel_service_name and socket_timeout.
 *
 * Prints one JSON object per line on stdout, at start and whenever the
 * policy in force or the rejection count changes:
 *   {"event": "policy", "generation": N, "source": "...", "policy": {...},
 *    "probe": {"SERVICE/OP": [sampled, "reason", param], ...}}
 *   {"event": "rejected", "count": N, "source": "...", "reason": "..."}
 * A start error prints {"event": "error", "reason": "..."} and exits 1.
 * SIGHUP calls policy_source_reload(); SIGTERM/SIGINT exit 0.
 *
 * Without arguments it is a self-contained unit test of the file source
 * (automake runs it as one of the check programs): load, change detection,
 * rejection keeping the old policy, reload.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "policy_source.h"
#include "sampling.h"
#include "tb_test.h"

struct driver {
	struct event_base *base;
	struct sampling_hub *hub;
	struct policy_source *ps;
	struct sampler *sampler;
	uint64_t gen;
	json_int_t rejected;
	const char *const *services;
	size_t n_services;
};

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Decisions for a fixed trace id (R = 0x80..., i.e. sampled iff p > 0.5)
 * on each service, so tests see the policy act, not only its text. */
static json_t *
probe(struct driver *d)
{
	static const uint8_t id[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80 };
	json_t *o = json_object();
	size_t i;

	for (i = 0; i < d->n_services; i++) {
		struct sampling_result r;

		sampling_decide(d->sampler, d->services[i], "GET /probe", id,
		    SAMPLING_ORIGIN_NONE, -1, 0, 1, mono_ns(), &r);
		json_object_set_new(o, d->services[i], json_pack("[b, s, f]",
		    r.sampled, sampling_reason_name(r.reason), r.param));
	}
	return o;
}

static void
report(struct driver *d)
{
	json_t *st = sampling_status_json(d->hub), *rej, *line;
	uint64_t gen = sampling_hub_generation(d->hub);
	char *s;

	rej = json_object_get(st, "last_rejected");
	if (json_is_object(rej) &&
	    json_integer_value(json_object_get(rej, "count")) != d->rejected) {
		d->rejected = json_integer_value(json_object_get(rej, "count"));
		line = json_pack("{s:s, s:I, s:O, s:O}", "event", "rejected",
		    "count", d->rejected, "source", json_object_get(rej, "source"),
		    "reason", json_object_get(rej, "reason"));
		s = json_dumps(line, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(line);
	}
	if (gen != d->gen) {
		d->gen = gen;
		line = json_pack("{s:s, s:I, s:O, s:O, s:o}", "event", "policy",
		    "generation", (json_int_t)gen, "source",
		    json_object_get(st, "source"), "policy",
		    json_object_get(st, "policy"), "probe", probe(d));
		s = json_dumps(line, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(line);
	}
	fflush(stdout);
	json_decref(st);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	report(arg);
}

static void
sig_cb(evutil_socket_t sig, short what, void *arg)
{
	struct driver *d = arg;

	if (sig == SIGHUP)
		policy_source_reload(d->ps);
	else
		event_base_loopbreak(d->base);
}

/* ---------------- self-test (no arguments) ---------------- */

static void
write_file(const char *path, const char *text)
{
	char tmp[512];
	FILE *f;

	/* write then rename, as editors and config managers do */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return;
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Run the loop until the hub's generation or rejections move, or 3 s. */
static void
run_until_change(struct event_base *base, struct sampling_hub *hub)
{
	uint64_t g = sampling_hub_generation(hub);
	int i;

	for (i = 0; i < 60 && sampling_hub_generation(hub) == g; i++) {
		struct timeval tv = { 0, 50000 };

		event_base_once(base, -1, EV_TIMEOUT, stop_cb, base, &tv);
		event_base_dispatch(base);
	}
}

static double
default_param(struct sampling_hub *hub)
{
	struct sampling_policy *p = sampling_hub_policy(hub);
	struct policy_choice c;

	policy_lookup(p, "x", "y", &c);
	policy_unref(p);
	return c.param;
}

static int
self_test(void)
{
	char dir[] = "/tmp/tb_policy_XXXXXX", path[600], err[512];
	struct sampling_limits lim = { 10, 100, -1 };
	struct policy_source_conf conf;
	struct event_base *base;
	struct sampling_hub *hub;
	struct policy_source *ps;
	json_t *st;

	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/policy.json", dir);
	base = event_base_new();
	hub = sampling_hub_new(&lim, NULL, NULL);

	/* a missing file at start is an error */
	memset(&conf, 0, sizeof(conf));
	conf.file = path;
	conf.check_interval = 0.1;
	conf.default_probability = 0.001;
	ps = policy_source_new(base, hub, &conf, err, sizeof(err));
	CHECK(ps == NULL);
	CHECKF(strstr(err, "policy.json") != NULL, "%s", err);

	write_file(path, "{\"default_strategy\": {\"type\": \"probabilistic\", "
	    "\"param\": 0.25}}");
	ps = policy_source_new(base, hub, &conf, err, sizeof(err));
	CHECKF(ps != NULL, "%s", err);
	if (ps == NULL)
		goto done;
	CHECK(default_param(hub) == 0.25);

	/* a change is picked up */
	sleep(1);	/* a new mtime even on coarse clocks */
	write_file(path, "{\"default_strategy\": {\"type\": \"probabilistic\", "
	    "\"param\": 0.5}}");
	run_until_change(base, hub);
	CHECK(default_param(hub) == 0.5);

	/* a broken one is rejected and the old one stays */
	write_file(path, "{\"default_strategy\": {\"type\": \"probabilistic\", "
	    "\"param\": 5}}");
	run_until_change(base, hub);	/* runs the full 3 s: nothing moves */
	CHECK(default_param(hub) == 0.5);
	st = sampling_status_json(hub);
	CHECK(strstr(json_string_value(json_object_get(json_object_get(st,
	    "last_rejected"), "reason")), "outside [0,1]") != NULL);
	json_decref(st);

	/* reload (SIGHUP) re-reads even an unchanged file */
	write_file(path, "{\"default_strategy\": {\"type\": \"ratelimiting\", "
	    "\"param\": 3}}");
	policy_source_reload(ps);
	CHECK(default_param(hub) == 3);
	policy_source_free(ps);
done:
	sampling_hub_free(hub);
	event_base_free(base);
	unlink(path);
	rmdir(dir);
	TB_TEST_END();
}

int
main(int argc, char **argv)
{
	static const char *services[64];
	struct sampling_limits lim = { -1, -1, -1 };
	struct policy_source_conf conf;
	struct driver d;
	struct event *tick, *hup, *term, *intr;
	struct timeval tv = { 0, 20000 };
	struct tb_redis_url url;
	char err[512];
	size_t n = 0;
	int i;

	if (argc == 1)
		return self_test();
	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&conf, 0, sizeof(conf));
	memset(&d, 0, sizeof(d));
	conf.default_probability = 0.001;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL) {
			fprintf(stderr, "%s needs a value\n", a);
			return 2;
		}
		i++;
		if (strcmp(a, "--file") == 0) {
			conf.file = v;
		} else if (strcmp(a, "--check") == 0) {
			conf.check_interval = atof(v);
		} else if (strcmp(a, "--redis") == 0) {
			if (tb_redis_url_parse(v, &url, err, sizeof(err)) == -1) {
				fprintf(stderr, "--redis: %s\n", err);
				return 2;
			}
			conf.redis.url = &url;
		} else if (strcmp(a, "--service-name") == 0) {
			conf.redis.sentinel_service_name = v;
		} else if (strcmp(a, "--socket-timeout") == 0) {
			conf.redis.sentinel_timeout = atof(v);
		} else if (strcmp(a, "--key") == 0) {
			conf.redis_key = v;
		} else if (strcmp(a, "--channel") == 0) {
			conf.redis_channel = v;
		} else if (strcmp(a, "--url") == 0) {
			conf.url = v;
		} else if (strcmp(a, "--poll") == 0) {
			conf.poll_interval = atof(v);
		} else if (strcmp(a, "--service") == 0 && n < 64) {
			services[n++] = v;
		} else if (strcmp(a, "--default") == 0) {
			conf.default_probability = atof(v);
		} else {
			fprintf(stderr, "unknown option %s\n", a);
			return 2;
		}
	}
	if (n == 0)
		services[n++] = "default";
	conf.services = services;
	conf.n_services = n;
	d.services = services;
	d.n_services = n;
	d.base = event_base_new();
	d.hub = sampling_hub_new(&lim,
	    policy_new_default(conf.default_probability), "builtin");
	d.sampler = sampling_sampler_new(d.hub);
	d.ps = policy_source_new(d.base, d.hub, &conf, err, sizeof(err));
	if (d.ps == NULL) {
		json_t *line = json_pack("{s:s, s:s}", "event", "error", "reason", err);
		char *s = json_dumps(line, JSON_COMPACT);

		printf("%s\n", s);
		free(s);
		json_decref(line);
		sampling_sampler_free(d.sampler);
		sampling_hub_free(d.hub);
		event_base_free(d.base);
		return 1;
	}
	report(&d);
	tick = event_new(d.base, -1, EV_PERSIST, tick_cb, &d);
	event_add(tick, &tv);
	hup = evsignal_new(d.base, SIGHUP, sig_cb, &d);
	term = evsignal_new(d.base, SIGTERM, sig_cb, &d);
	intr = evsignal_new(d.base, SIGINT, sig_cb, &d);
	event_add(hup, NULL);
	event_add(term, NULL);
	event_add(intr, NULL);
	event_base_dispatch(d.base);
	event_free(tick);
	event_free(hup);
	event_free(term);
	event_free(intr);
	policy_source_free(d.ps);
	sampling_sampler_free(d.sampler);
	sampling_hub_free(d.hub);
	event_base_free(d.base);
	return 0;
}
