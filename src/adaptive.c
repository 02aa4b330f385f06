/*
 * adaptive.c: fleet-wide adaptive sampling through Redis (issue 15), on the
 * control thread. The arithmetic is adaptive_calc.c; this file counts,
 * elects and publishes.
 *
 * Time is cut into buckets of calculation_interval seconds of wall clock
 * (bucket b = [b * iv, (b + 1) * iv)), the same on every proxy, so their
 * timers line up without talking to each other:
 *
 *   b + 0.1 iv  every proxy adds what its workers counted since its last
 *               flush (per service and operation: decisions, and traces the
 *               adaptive layer started) to the hash PREFIX:counts:<b - 1>
 *               with HINCRBY, one pipeline, PEXPIRE'd after a few
 *               intervals; and takes or renews the leader lease
 *               PREFIX:leader (SET NX PX in a script, 1.5 intervals, so a
 *               dead leader's lease is gone by the second flush after);
 *   b + 0.5 iv  the leader reads the last ADAPTIVE_BUCKETS hashes, computes
 *               every operation's next probability, SETs the strategies
 *               document to [sampling] policy_redis_key and PUBLISHes on
 *               policy_channel. Every proxy's policy source (this one's
 *               too) GETs it and, seeing "tracebridge_adaptive" in it, puts
 *               it in force as the hub's adaptive layer.
 *
 * PREFIX is policy_redis_key + ":adaptive". The request path is untouched:
 * the workers' decision counters (sampling.c) are cumulative atomics the
 * control thread reads (sampling_hub_totals); this file keeps the last
 * totals and sends the difference. Redis commands per flush grow with the
 * number of operations, never with the request rate. Redis down: commands
 * are refused, that interval's counts are dropped, the probabilities in
 * force stay, nothing waits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "adaptive.h"
#include "adaptive_calc.h"
#include "admin.h"
#include "config.h"
#include "log.h"
#include "module.h"
#include "redis.h"
#include "sampling.h"
#include "tracing.h"
#include "util.h"

#define ADAPTIVE_FLUSH_PHASE	0.1	/* of the interval, after the boundary */
#define ADAPTIVE_CALC_PHASE	0.5
#define ADAPTIVE_LEASE		1.5	/* intervals */
#define ADAPTIVE_KEEP		(ADAPTIVE_BUCKETS + 2)	/* intervals a hash lives */
#define ADAPTIVE_MAX_OPS	SAMPLING_COUNTERS_MAX	/* per service in the doc */
/* An interval's hash holds two fields per operation seen by any proxy, so
 * HGETALL answers 4 elements per operation: room for 16384 of them (each
 * proxy counts at most SAMPLING_COUNTERS_MAX). */
#define ADAPTIVE_MAX_REPLY_ELEMENTS	65536
#define ADAPTIVE_MAX_REPLY_BYTES	(8u << 20)

/* Take the lease if free, renew it if ours; answer who holds it. */
static const char lease_script[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then "
    "redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) return ARGV[1] "
    "end "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
    "return v";

enum adaptive_tick {
	ADAPTIVE_TICK_FLUSH = 0,
	ADAPTIVE_TICK_CALC,
};

/* cmd_arg of each command: which reply is which */
static char tag_lease, tag_other, tag_bucket[ADAPTIVE_BUCKETS];

static struct {
	struct event_base *base;
	struct sampling_hub *hub;
	struct tb_redis *rc;
	struct event *timer;
	enum adaptive_tick next;
	char settings[2048];		/* what the state below was built from */

	double iv;
	struct adaptive_params ap;
	double initial, min_tps;
	char *policy_key, *channel, *prefix;
	char id[160];			/* host:pid:random, the lease value */

	json_t *baseline;		/* totals sent so far */
	int leader;
	char holder[160];
	int64_t round_bucket;		/* newest bucket of the round in flight */
	int round_pending;
	json_t *round[ADAPTIVE_BUCKETS];	/* HGETALL answers, as objects */
	size_t round_got;
	size_t round_skip;		/* answers owed to an abandoned round */
	time_t computed_at;
	uint64_t n_rounds, n_flushes;
} g;

static double
wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
fmt_iso(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (t == 0 || gmtime_r(&t, &tm) == NULL)
		snprintf(buf, len, "-");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ------------------------------------------------------------------ */
/* The strategies document                                             */
/* ------------------------------------------------------------------ */

/*
 * The document for ops ({svc: {op: {"probability": p, ...}}}, borrowed):
 * every listed operation probabilistic at its probability, every other one
 * at initial_sampling_probability, all with min_traces_per_second as the
 * lower bound; meta under "tracebridge_adaptive". New reference or NULL.
 */
static json_t *
build_doc(json_t *ops, json_t *meta)
{
	json_t *doc, *svcs, *sv, *ov;
	const char *sk, *ok;

	doc = json_pack("{s:[], s:{s:s, s:f, s:f}}", "service_strategies",
	    "default_strategy", "type", "probabilistic", "param", g.initial,
	    "lower_bound_traces_per_second", g.min_tps);
	if (doc == NULL)
		return NULL;
	svcs = json_object_get(doc, "service_strategies");
	json_object_foreach(ops, sk, sv) {
		json_t *s, *arr;
		size_t n = 0;

		s = json_pack("{s:s, s:s, s:f, s:f, s:[]}", "service", sk, "type",
		    "probabilistic", "param", g.initial,
		    "lower_bound_traces_per_second", g.min_tps,
		    "operation_strategies");
		if (s == NULL)
			continue;
		arr = json_object_get(s, "operation_strategies");
		json_object_foreach(sv, ok, ov) {
			if (n++ >= ADAPTIVE_MAX_OPS)
				break;
			json_array_append_new(arr, json_pack("{s:s, s:s, s:O}",
			    "operation", ok, "type", "probabilistic", "param",
			    json_object_get(ov, "probability")));
		}
		json_array_append_new(svcs, s);
	}
	json_object_set(doc, "tracebridge_adaptive", meta);
	return doc;
}

/* Put a document in force in this process (the layer before the first
 * computation). 0/-1. */
static int
apply_local(json_t *doc, json_t *meta, const char *source)
{
	struct sampling_policy *p;
	char *text, err[256];
	int rc;

	if ((text = json_dumps(doc, JSON_COMPACT)) == NULL)
		return -1;
	rc = policy_parse(text, strlen(text), g.initial, &p, err, sizeof(err));
	free(text);
	if (rc == -1) {
		log_warnx("adaptive: own document rejected: %s", err);
		return -1;
	}
	sampling_hub_publish_adaptive(g.hub, p, json_incref(meta), source);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Counting                                                            */
/* ------------------------------------------------------------------ */

static json_int_t
pair_at(json_t *base, const char *svc, const char *op, size_t i)
{
	return json_integer_value(json_array_get(json_object_get(
	    json_object_get(base, svc), op), i));
}

/* Add what was counted since the last flush to bucket b. */
static void
flush_counts(int64_t b)
{
	json_t *tot, *sv, *ov;
	const char *sk, *ok;
	char key[1024];
	int sent = 0;

	if ((tot = sampling_hub_totals(g.hub)) == NULL)
		return;
	snprintf(key, sizeof(key), "%s:counts:%lld", g.prefix, (long long)b);
	json_object_foreach(tot, sk, sv) {
		json_object_foreach(sv, ok, ov) {
			json_int_t dn, da;

			/* a worker's counters gone (freed) read as a drop:
			 * send nothing rather than a negative */
			dn = json_integer_value(json_array_get(ov, 0)) -
			    pair_at(g.baseline, sk, ok, 0);
			da = json_integer_value(json_array_get(ov, 1)) -
			    pair_at(g.baseline, sk, ok, 1);
			if (dn > 0 && tb_redis_command(g.rc, &tag_other,
			    "HINCRBY %s %s\t%s\tn %lld", key, sk, ok,
			    (long long)dn) == 0)
				sent++;
			if (da > 0 && tb_redis_command(g.rc, &tag_other,
			    "HINCRBY %s %s\t%s\ta %lld", key, sk, ok,
			    (long long)da) == 0)
				sent++;
		}
	}
	if (sent > 0)
		(void)tb_redis_command(g.rc, &tag_other, "PEXPIRE %s %lld", key,
		    (long long)(g.iv * ADAPTIVE_KEEP * 1000));
	/* sent or not (Redis down: counting pauses), these are done */
	json_decref(g.baseline);
	g.baseline = tot;
	g.n_flushes++;
}

static void
lease(void)
{
	(void)tb_redis_command(g.rc, &tag_lease, "EVAL %s 1 %s:leader %s %lld",
	    lease_script, g.prefix, g.id,
	    (long long)(g.iv * ADAPTIVE_LEASE * 1000));
}

/* ------------------------------------------------------------------ */
/* Calculating (leader)                                                */
/* ------------------------------------------------------------------ */

/* The probability in force for (svc, op) in the adaptive layer a. */
static double
current_p(const struct sampling_policy *a, const char *svc, const char *op)
{
	struct policy_choice pc;

	if (a == NULL)
		return g.initial;
	policy_lookup(a, svc, op, &pc);
	return pc.scope == SAMPLING_SCOPE_OPERATION ? pc.param : g.initial;
}

static void
round_clear(void)
{
	size_t i;

	for (i = 0; i < ADAPTIVE_BUCKETS; i++) {
		json_decref(g.round[i]);
		g.round[i] = NULL;
	}
	g.round_got = 0;
	g.round_pending = 0;
}

/* All buckets of the round are in: compute, write, announce. */
static void
compute(void)
{
	struct sampling_policy *a = sampling_hub_adaptive(g.hub);
	struct sampling_policy *x = sampling_hub_policy(g.hub);
	json_t *seen = json_object(), *ops = json_object(), *meta, *doc;
	const char *fk, *sk, *ok;
	json_t *fv, *sv, *ov;
	char *text, when[32];
	size_t i;

	/* seen: {svc: {op: 1}} over the whole round */
	for (i = 0; i < ADAPTIVE_BUCKETS; i++) {
		json_object_foreach(g.round[i], fk, fv) {
			const char *t1 = strchr(fk, '\t');
			const char *t2 = t1 != NULL ? strrchr(fk, '\t') : NULL;
			char svc[SAMPLING_SERVICE_MAX + 1];
			json_t *so;

			if (t1 == NULL || t2 == t1 ||
			    (size_t)(t1 - fk) > SAMPLING_SERVICE_MAX)
				continue;
			memcpy(svc, fk, (size_t)(t1 - fk));
			svc[t1 - fk] = '\0';
			if ((so = json_object_get(seen, svc)) == NULL) {
				so = json_object();
				json_object_set_new(seen, svc, so);
			}
			json_object_setn_new(so, t1 + 1, (size_t)(t2 - t1 - 1),
			    json_true());
		}
	}
	json_object_foreach(seen, sk, sv) {
		json_t *so = json_object();

		json_object_foreach(sv, ok, ov) {
			double traced[ADAPTIVE_BUCKETS], qps[ADAPTIVE_BUCKETS];
			double w, q, p;
			struct policy_choice pc;
			char field[512];

			/* an operation the explicit policy names is not ours */
			policy_lookup(x, sk, ok, &pc);
			if (pc.scope == SAMPLING_SCOPE_OPERATION)
				continue;
			for (i = 0; i < ADAPTIVE_BUCKETS; i++) {
				snprintf(field, sizeof(field), "%s\t%s\tn", sk, ok);
				qps[i] = (double)json_integer_value(json_object_get(
				    g.round[i], field)) / g.iv;
				snprintf(field, sizeof(field), "%s\t%s\ta", sk, ok);
				traced[i] = (double)json_integer_value(
				    json_object_get(g.round[i], field)) / g.iv;
			}
			w = adaptive_weighted_rate(traced, ADAPTIVE_BUCKETS);
			q = adaptive_weighted_rate(qps, ADAPTIVE_BUCKETS);
			p = adaptive_next_probability(&g.ap, current_p(a, sk, ok), w);
			json_object_set_new(so, ok, json_pack("{s:f, s:f, s:f}",
			    "probability", p, "qps", q, "traced_per_second", w));
		}
		if (json_object_size(so) > 0)
			json_object_set_new(ops, sk, so);
		else
			json_decref(so);
	}
	g.computed_at = time(NULL);
	fmt_iso(g.computed_at, when, sizeof(when));
	meta = json_pack("{s:s, s:s, s:I, s:I, s:f, s:f, s:O}", "leader", g.id,
	    "computed_at", when, "computed_at_unix", (json_int_t)g.computed_at,
	    "bucket", (json_int_t)g.round_bucket, "calculation_interval", g.iv,
	    "target_traces_per_second", g.ap.target, "operations", ops);
	doc = meta != NULL ? build_doc(ops, meta) : NULL;
	text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
	if (text != NULL &&
	    tb_redis_command(g.rc, &tag_other, "SET %s %s", g.policy_key, text) == 0)
		(void)tb_redis_command(g.rc, &tag_other, "PUBLISH %s adaptive",
		    g.channel);
	free(text);
	json_decref(doc);
	json_decref(meta);
	json_decref(ops);
	json_decref(seen);
	policy_unref(a);
	policy_unref(x);
	g.n_rounds++;
	round_clear();
}

/* Ask for the round's buckets, newest first. */
static void
calc_start(int64_t newest)
{
	size_t i;

	if (g.round_pending)
		return;		/* the last round's answers are still owed */
	round_clear();
	g.round_bucket = newest;
	for (i = 0; i < ADAPTIVE_BUCKETS; i++) {
		if (tb_redis_command(g.rc, &tag_bucket[i], "HGETALL %s:counts:%lld",
		    g.prefix, (long long)(newest - (int64_t)i)) == -1) {
			/* not ready: no round; the answers to what was
			 * queued are skipped, not taken for the next one's */
			round_clear();
			g.round_skip += i;
			return;
		}
		g.round_pending = 1;
	}
}

static json_t *
hash_of(const redisReply *r)
{
	json_t *o = json_object();
	size_t i;

	if (o == NULL || r->type != REDIS_REPLY_ARRAY)
		return o;
	for (i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		char num[32];
		size_t n;

		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		n = v->len < sizeof(num) - 1 ? v->len : sizeof(num) - 1;
		memcpy(num, v->str, n);
		num[n] = '\0';
		json_object_setn_new(o, k->str, k->len,
		    json_integer((json_int_t)strtoll(num, NULL, 10)));
	}
	return o;
}

/* ------------------------------------------------------------------ */
/* Redis and the timer                                                 */
/* ------------------------------------------------------------------ */

static void
on_reply(void *arg, void *cmd_arg, const redisReply *r)
{
	char *c = cmd_arg;
	int bucket = c >= tag_bucket && c < tag_bucket + ADAPTIVE_BUCKETS;

	(void)arg;
	if (bucket && g.round_skip > 0) {
		g.round_skip--;
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		log_warnx("adaptive: redis: %.200s", r->str);
		if (bucket && g.round_pending) {
			/* this round is lost; its later answers too */
			g.round_skip = ADAPTIVE_BUCKETS - 1 - (size_t)(c - tag_bucket);
			round_clear();
		}
		return;
	}
	if (c == &tag_lease) {
		int was = g.leader;

		if (r->type != REDIS_REPLY_STRING)
			return;
		snprintf(g.holder, sizeof(g.holder), "%.*s", (int)r->len, r->str);
		g.leader = strcmp(g.holder, g.id) == 0;
		if (g.leader != was)
			log_info("adaptive: %s the leader (%s)", g.leader ?
			    "this proxy is now" : "this proxy is no longer",
			    g.holder);
		return;
	}
	if (bucket && g.round_pending) {
		size_t i = (size_t)(c - tag_bucket);

		json_decref(g.round[i]);
		g.round[i] = hash_of(r);
		if (++g.round_got == ADAPTIVE_BUCKETS)
			compute();
	}
}

static void
on_down(void *arg, const char *why)
{
	(void)arg;
	(void)why;
	round_clear();		/* the answers owed are lost */
	g.round_skip = 0;
}

static void arm(void);

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	int64_t b = (int64_t)floor(wall_now() / g.iv);

	(void)fd;
	(void)what;
	(void)arg;
	if (g.next == ADAPTIVE_TICK_FLUSH) {
		lease();
		flush_counts(b - 1);
	} else if (g.leader) {
		calc_start(b - 1);
	}
	arm();
}

/* Arm the timer for the next flush or calculation point. */
static void
arm(void)
{
	double now = wall_now(), base = floor(now / g.iv) * g.iv;
	double pts[3] = { base + ADAPTIVE_FLUSH_PHASE * g.iv,
	    base + ADAPTIVE_CALC_PHASE * g.iv,
	    base + (1 + ADAPTIVE_FLUSH_PHASE) * g.iv };
	enum adaptive_tick kinds[3] = { ADAPTIVE_TICK_FLUSH, ADAPTIVE_TICK_CALC,
	    ADAPTIVE_TICK_FLUSH };
	struct timeval tv;
	size_t i;

	/* 10 ms of slack so a timer that fired a hair early is not re-armed
	 * for the point it is handling */
	for (i = 0; i < 2 && pts[i] <= now + 0.01; i++)
		;
	g.next = kinds[i];
	tv = tb_timeval(pts[i] - now);
	evtimer_add(g.timer, &tv);
}

/* ------------------------------------------------------------------ */
/* The module                                                          */
/* ------------------------------------------------------------------ */

static void
settings_of(const struct tb_config *cfg, char *out, size_t len)
{
	const struct tb_sampling_conf *s = &cfg->sampling;

	snprintf(out, len, "%d|%g|%g|%g|%g|%g|%g|%s|%s|%s|%s|%s|%g", s->adaptive,
	    s->target_traces_per_second, s->delta_tolerance,
	    s->calculation_interval, s->initial_sampling_probability,
	    s->min_sampling_probability, s->min_traces_per_second,
	    s->adaptive_redis ? s->adaptive_redis : "",
	    cfg->profiler.connection_string, cfg->profiler.sentinel_service_name,
	    s->policy_redis_key ? s->policy_redis_key : "",
	    s->policy_channel ? s->policy_channel : "",
	    cfg->profiler.socket_timeout);
}

static void
adaptive_stop(void)
{
	if (g.hub != NULL)
		sampling_hub_set_adaptive_status(g.hub, NULL);
	if (g.timer != NULL)
		event_free(g.timer);
	tb_redis_free(g.rc);
	round_clear();
	json_decref(g.baseline);
	free(g.policy_key);
	free(g.channel);
	free(g.prefix);
	memset(&g, 0, sizeof(g));
}

static int
adaptive_begin(struct event_base *base, const struct tb_config *cfg)
{
	const struct tb_sampling_conf *s = &cfg->sampling;
	struct tb_redis_url url;
	struct tb_redis_conf rc;
	struct tb_redis_handlers h;
	json_t *meta, *ops, *doc;
	char host[64], err[256];
	int ok;

	g.base = base;
	settings_of(cfg, g.settings, sizeof(g.settings));
	if (!s->adaptive)
		return 0;
	if ((g.hub = tracing_hub()) == NULL) {
		log_warnx("adaptive: no sampling hub; adaptive sampling is off");
		return 0;
	}
	g.iv = s->calculation_interval;
	g.ap.target = s->target_traces_per_second;
	g.ap.delta_tolerance = s->delta_tolerance;
	g.ap.min_probability = s->min_sampling_probability;
	g.ap.increase_cap = ADAPTIVE_INCREASE_CAP;
	g.initial = s->initial_sampling_probability;
	g.min_tps = s->min_traces_per_second;
	g.policy_key = strdup(s->policy_redis_key);
	g.channel = strdup(s->policy_channel);
	if (asprintf(&g.prefix, "%s:adaptive", s->policy_redis_key) < 0)
		g.prefix = NULL;
	g.baseline = json_object();
	if (g.id[0] == '\0') {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "?");
		host[sizeof(host) - 1] = '\0';
		snprintf(g.id, sizeof(g.id), "%s:%ld:%08lx", host, (long)getpid(),
		    (unsigned long)(tb_mono_ns() ^ ((uint64_t)random() << 16)) &
		    0xffffffffUL);
	}
	if (g.policy_key == NULL || g.channel == NULL || g.prefix == NULL ||
	    g.baseline == NULL)
		goto nomem;

	/* every operation at the initial probability until the first
	 * document (the fleet's, from the key, usually comes at once) */
	ops = json_object();
	meta = json_pack("{s:n, s:s, s:o}", "leader", "computed_at", "-",
	    "operations", ops);
	doc = meta != NULL ? build_doc(ops, meta) : NULL;
	ok = doc != NULL && apply_local(doc, meta, "adaptive:initial") == 0;
	json_decref(doc);
	json_decref(meta);
	if (!ok)
		goto nomem;

	if (tb_redis_url_parse(s->adaptive_redis != NULL ? s->adaptive_redis :
	    cfg->profiler.connection_string, &url, err, sizeof(err)) < 0) {
		log_errx("adaptive: redis: %s", err);	/* never the password */
		adaptive_stop();
		return -1;
	}
	memset(&rc, 0, sizeof(rc));
	rc.url = &url;
	rc.name = "adaptive: redis";
	rc.sentinel_service_name = cfg->profiler.sentinel_service_name;
	rc.sentinel_timeout = cfg->profiler.socket_timeout;
	rc.connect_timeout = 3;
	rc.command_timeout = g.iv < 5 ? g.iv : 5;
	rc.max_reply_elements = ADAPTIVE_MAX_REPLY_ELEMENTS;
	rc.max_reply_bytes = ADAPTIVE_MAX_REPLY_BYTES;
	memset(&h, 0, sizeof(h));
	h.reply = on_reply;
	h.down = on_down;
	g.rc = tb_redis_new(base, &rc, &h, err, sizeof(err));
	explicit_bzero(&url, sizeof(url));
	if (g.rc == NULL)
		goto nomem;
	if ((g.timer = evtimer_new(base, on_timer, NULL)) == NULL)
		goto nomem;
	arm();
	sampling_hub_set_adaptive_status(g.hub, adaptive_status_json);
	log_info("adaptive: on, target %g traces/s per operation, every %gs, "
	    "as %s", g.ap.target, g.iv, g.id);
	return 0;
nomem:
	log_errx("adaptive: out of memory");
	adaptive_stop();
	return -1;
}

/* Prometheus: whether this proxy leads, and how often it counted and
 * computed. Nothing while adaptive sampling is off. */
static void
metrics_adaptive(struct evbuffer *out)
{
	if (g.rc == NULL)
		return;
	evbuffer_add_printf(out,
	    "# HELP tracebridge_adaptive_leader 1 while this proxy holds the "
	    "adaptive sampling lease.\n"
	    "# TYPE tracebridge_adaptive_leader gauge\n"
	    "tracebridge_adaptive_leader %d\n"
	    "# HELP tracebridge_adaptive_flushes_total Intervals whose counts "
	    "this proxy sent (or dropped, Redis down).\n"
	    "# TYPE tracebridge_adaptive_flushes_total counter\n"
	    "tracebridge_adaptive_flushes_total %llu\n"
	    "# HELP tracebridge_adaptive_computations_total Probabilities "
	    "computed and published by this proxy as the leader.\n"
	    "# TYPE tracebridge_adaptive_computations_total counter\n"
	    "tracebridge_adaptive_computations_total %llu\n"
	    "# HELP tracebridge_adaptive_last_computation_timestamp_seconds "
	    "When this proxy last computed them (0 = never).\n"
	    "# TYPE tracebridge_adaptive_last_computation_timestamp_seconds gauge\n"
	    "tracebridge_adaptive_last_computation_timestamp_seconds %lld\n",
	    g.leader, (unsigned long long)g.n_flushes,
	    (unsigned long long)g.n_rounds, (long long)g.computed_at);
}

static int
adaptive_start(struct event_base *base, const struct tb_config *cfg)
{
	admin_add_metrics(metrics_adaptive);
	return adaptive_begin(base, cfg);
}

static void
adaptive_reload(const struct tb_config *cfg)
{
	char key[sizeof(g.settings)], id[sizeof(g.id)];
	struct event_base *base = g.base;
	struct sampling_hub *hub = tracing_hub();

	settings_of(cfg, key, sizeof(key));
	if (strcmp(key, g.settings) == 0)
		return;
	memcpy(id, g.id, sizeof(id));
	adaptive_stop();
	/* the same instance: a lease it holds stays its own */
	memcpy(g.id, id, sizeof(id));
	if (!cfg->sampling.adaptive && hub != NULL)
		sampling_hub_publish_adaptive(hub, NULL, NULL, "adaptive:off");
	if (adaptive_begin(base, cfg) < 0)
		log_warnx("reload: adaptive sampling not started");
}

json_t *
adaptive_status_json(void)
{
	char when[32];

	if (g.rc == NULL)
		return json_pack("{s:b}", "enabled", 0);
	fmt_iso(g.computed_at, when, sizeof(when));
	return json_pack("{s:b, s:s, s:b, s:s, s:s, s:I, s:I, s:b}", "enabled", 1,
	    "instance", g.id, "is_leader", g.leader, "lease_holder", g.holder,
	    "last_computed_here", when, "rounds", (json_int_t)g.n_rounds,
	    "flushes", (json_int_t)g.n_flushes, "redis_connected",
	    tb_redis_is_ready(g.rc));
}

/* ------------------------------------------------------------------ */
/* Configuration checks                                                */
/* ------------------------------------------------------------------ */

/* [sampling] adaptive_redis: by the one Redis URL parser, which never
 * quotes the password. */
static int
check_redis(void *field, char *why, size_t wl)
{
	struct tb_redis_url url;
	int rc;

	if (*(char **)field == NULL)
		return 0;
	rc = tb_redis_url_parse(*(char **)field, &url, why, wl);
	explicit_bzero(&url, sizeof(url));
	return rc;
}

static const struct tb_opt_check adaptive_opt_checks[] = {
	{ "sampling", "adaptive_redis", check_redis },
	{ NULL, NULL, NULL },
};

static int
adaptive_conf_check(const struct tb_config *cfg, char *err, size_t errlen)
{
	const struct tb_sampling_conf *s = &cfg->sampling;
	int line = config_opt_line(cfg, "sampling", "adaptive");

	if (!s->adaptive)
		return 0;
	if (s->policy_redis_key == NULL || s->policy_channel == NULL) {
		config_errorf(cfg, err, errlen, line, "adaptive", "adaptive = true "
		    "needs policy_redis_key and policy_channel (the leader writes "
		    "the probabilities to the key and announces them on the "
		    "channel)");
		return -1;
	}
	if (s->initial_sampling_probability < s->min_sampling_probability) {
		line = config_opt_line(cfg, "sampling",
		    "initial_sampling_probability");
		if (line == 0)
			line = config_opt_line(cfg, "sampling",
			    "min_sampling_probability");
		config_errorf(cfg, err, errlen, line,
		    "initial_sampling_probability", "must be at least "
		    "min_sampling_probability (%g)", s->min_sampling_probability);
		return -1;
	}
	return 0;
}

const struct tb_module adaptive_module = {
	.name = "adaptive",
	.opt_checks = adaptive_opt_checks,
	.conf_check = adaptive_conf_check,
	.start = adaptive_start,
	.reload = adaptive_reload,
	.stop = adaptive_stop,
};
