/*
 * policy_source.h: where the sampling policy comes from (issue 5), on the
 * control thread's event_base. Any combination of:
 *
 *   file   loaded at start, on policy_source_reload() (SIGHUP) and when its
 *          inode, size or mtime change (checked every check_interval s);
 *   redis  GET key at start, after every (re)connect, and on every message
 *          published on channel (one SUBSCRIBE connection, one command
 *          connection, both through the one Redis client of redis.h:
 *          redis://, unix:// or redissentinel://, reconnect with backoff
 *          0.1 s doubling to 5 s, a new master after a failover);
 *   url    a Jaeger remote-sampling endpoint (http:// only), polled every
 *          poll_interval with ?service=NAME for each service; the answers
 *          merge into one policy (policy_from_remote), a failed or invalid
 *          answer keeping that service's last good one.
 *
 * Whichever loads last wins (sampling_hub_publish). A document that fails to
 * parse is logged with the reason and recorded with sampling_hub_rejected();
 * the policy in force stays. A source whose content did not change since it
 * was last accepted publishes nothing (a Redis reconnect does not reset the
 * rate limiters), except the file on an explicit reload.
 */
#ifndef TB_POLICY_SOURCE_H
#define TB_POLICY_SOURCE_H

#include <stddef.h>

#include "redis.h"

struct event_base;
struct sampling_hub;

struct policy_source_conf {
	const char *file;		/* NULL = no file */
	double check_interval;		/* file stat period, s; <= 0: 1 */

	/* The Redis server (any connection string: redis://, unix://,
	 * redissentinel://), copied; .url NULL = no Redis source. Names of
	 * log lines are set here; connect_timeout defaults to 3 s. */
	struct tb_redis_conf redis;
	const char *redis_key;		/* GET this */
	const char *redis_channel;	/* NULL = no SUBSCRIBE (read at start only) */

	const char *url;		/* NULL = no polling; http://host[:port]/path */
	double poll_interval;		/* s; <= 0: 60 */
	const char *const *services;	/* the listeners' services, unique */
	size_t n_services;

	double default_probability;	/* for services a document does not name */
};

struct policy_source;

/*
 * Start the sources in conf (strings are copied) feeding hub, on base.
 * The file is loaded synchronously: a missing or invalid file at start is
 * an error (-> NULL, reason in err) so a typo is fatal at start, not a
 * silent fallback. Redis and the URL start asynchronously.
 */
struct policy_source *policy_source_new(struct event_base *base,
    struct sampling_hub *hub, const struct policy_source_conf *conf,
    char *err, size_t errlen);

/* SIGHUP: re-read the file and put it in force even if unchanged; GET the
 * Redis key and poll the URL now, publishing those only if they changed
 * since last accepted (so the file the operator just edited wins). */
void policy_source_reload(struct policy_source *ps);

/* Stop everything; pending Redis and HTTP requests are cancelled. NULL ok. */
void policy_source_free(struct policy_source *ps);

#endif
