/*
 * sink_redis.c: the bounded, pipelined, reconnecting Redis writer behind
 * span recording (contract in sink_redis.h).
 *
 * Queue. Every span is one struct sink_entry holding its ready-made RESP
 * commands. Entries form one FIFO: [head .. unsent) are written on the
 * current connection and wait for replies, [unsent .. tail] wait to be
 * written. Redis answers in order, so each reply belongs to the head entry;
 * when the head has all its replies it is counted and freed. When the
 * connection goes, unsent moves back to head: exactly the unacknowledged
 * spans are written again.
 *
 * Connections. One data connection (hiredis async on the worker's loop).
 * In sentinel mode a second connection asks a sentinel for the master and
 * then stays SUBSCRIBEd to +switch-master. Every hiredis callback finds the
 * sink in its privdata / c->data and checks that the context is still the
 * sink's current one: the sink detaches a context (sets its pointer to NULL)
 * before freeing it, so callbacks hiredis runs while tearing it down are
 * ignored (STYLE.md habit 11).
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "fmt.h"
#include "sink_redis.h"
#include "span.h"

#define SINK_MAX_CMDS	4	/* LPUSH, SET error, EXPIRE list, EXPIRE error */

/* ---- process-wide counters (all workers) ---- */

static atomic_uint_fast64_t g_recorded, g_drop_full, g_drop_format,
    g_drop_redis, g_drop_shutdown, g_reconnects;
static atomic_llong g_buffer_bytes;
static atomic_int g_sinks, g_connected;
static pthread_mutex_t g_master_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_master[280];	/* sentinel mode: last master in use */

struct sink_entry {
	struct sink_entry *next;
	size_t size;			/* bytes allocated = charged to the buffer */
	unsigned ncmds;			/* commands = replies expected */
	unsigned replies;		/* received on the current connection */
	int error;			/* Redis answered one with an error */
	size_t off[SINK_MAX_CMDS], len[SINK_MAX_CMDS];
	char data[];			/* the RESP commands back to back */
};

enum sink_state {
	SINK_IDLE = 0,		/* no data connection; retry timer may run */
	SINK_RESOLVING,		/* asking a sentinel for the master */
	SINK_CONNECTING,	/* TCP/unix connect in progress */
	SINK_HANDSHAKE,		/* AUTH / SELECT / ROLE sent */
	SINK_READY,		/* spans flow */
};

struct sink_redis {
	struct event_base *base;	/* not owned */
	struct sink_conf conf;		/* strings below are owned copies */
	char *service_name;
	struct sink_url url;

	enum sink_state state;
	redisAsyncContext *ac;		/* data connection or NULL */
	struct event *timer;		/* connect/handshake/command timeout */
	struct event *retry;		/* backoff before the next attempt */
	struct event *batch;		/* SINK_BATCH_DELAY: write what waits */
	double backoff;			/* next retry delay, seconds */
	int hs_pending;			/* handshake replies outstanding */
	int ever_connected;
	unsigned fails;			/* failed attempts since last ready */
	uint64_t progress;		/* replies seen; for the command timeout */
	uint64_t progress_at_arm;
	char cur_host[256];		/* where the data connection goes */
	uint16_t cur_port;
	char where[280];		/* sink_where() output */

	/* sentinel mode */
	redisAsyncContext *sac;		/* query, then +switch-master, or NULL */
	struct event *stimer;		/* socket_timeout for one query */
	size_t sidx;			/* sentinel to ask next */
	size_t stries;			/* sentinels asked in this round */
	int sac_subscribed;

	/* host names: hiredis would call getaddrinfo(3) and block the loop,
	 * so names are resolved with evdns first (slot 0 data, 1 sentinel) */
	struct evdns_base *dns;		/* created on first use */
	struct evdns_getaddrinfo_request *dns_req[2];

	/* the FIFO */
	struct sink_entry *head, *tail, *unsent;
	size_t bytes, nspans, inflight_bytes, inflight_spans;
	struct sink_entry *free_entries;	/* see SINK_FREE_MAX */
	unsigned n_free;

	struct span_buf js, jt, jm;	/* scratch: start, stop, error marker */
	char ttl[24];			/* span_ttl in decimal, "" for none */
	size_t ttl_len;
	struct sink_stats st;
};

/*
 * Batching: unsent spans are written once SINK_BATCH_BYTES of them have
 * gathered, or SINK_BATCH_DELAY after the first, whichever comes first.
 * One write (and about one read of the replies) per batch instead of per
 * span keeps the syscalls a traced request costs low on a busy edge; a
 * span reaches Redis at most a few milliseconds later.
 */
#define SINK_BATCH_BYTES	((size_t)64 << 10)
#define SINK_BATCH_DELAY	0.010	/* seconds */

/*
 * Acknowledged entries are kept for the next spans, at most SINK_FREE_MAX
 * of them: a span's entry (~1.3 KB) is past glibc's per-thread cache
 * (chunks up to 1 KiB), so its malloc + free went through the arena's bins
 * for every span. Sizes are rounded up to SINK_ENTRY_ALIGN so that spans
 * of nearly the same size share entries; an entry is reused for a span that
 * needs up to SINK_ENTRY_SLACK fewer bytes, and the buffer is charged what
 * was allocated.
 */
#define SINK_FREE_MAX		64
#define SINK_ENTRY_ALIGN	64
#define SINK_ENTRY_SLACK	256

static void sink_start(struct sink_redis *s);
static void sink_flush(struct sink_redis *s);
static void sink_kick(struct sink_redis *s);
static void sink_dns_cancel(struct sink_redis *s, int slot);
static void sink_entry_put(struct sink_redis *s, struct sink_entry *e);

/* "host:port" or the unix socket path, for log lines. */
static const char *
sink_where(struct sink_redis *s)
{
	if (s->url.kind == SINK_URL_UNIX)
		return s->url.path;
	snprintf(s->where, sizeof(s->where), "%s:%u", s->cur_host,
	    (unsigned)s->cur_port);
	return s->where;
}

/* A failed attempt: logged the first time and then every 10th, so an
 * outage gives a few lines, not one per backoff step. */
static void
sink_log_fail(struct sink_redis *s, const char *what)
{
	s->fails++;
	if (s->fails == 1 || s->fails % 10 == 0)
		log_warnx("redis: connect to %s failed: %s (attempt %u)",
		    sink_where(s), what, s->fails);
}

/* ---- connection strings ---- */

static void
sink_err(char *err, size_t errlen, const char *msg)
{
	if (errlen > 0)
		snprintf(err, errlen, "connection string: %s", msg);
}

static int
sink_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n) into out[outlen] (NUL-terminated); -1 if too
 * long, a bad escape, or a NUL byte. */
static int
sink_unquote(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, o = 0;
	int hi, lo, c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -1;
			if ((hi = sink_hexval(s[i + 1])) < 0 ||
			    (lo = sink_hexval(s[i + 2])) < 0)
				return -1;
			c = hi << 4 | lo;
			i += 2;
		}
		if (c == 0 || o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* A decimal in [min, max] spanning all of s[0..n); -1 otherwise. */
static long
sink_number(const char *s, size_t n, long min, long max)
{
	long v = 0;
	size_t i;

	if (n == 0 || n > 10)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v < min || v > max ? -1 : v;
}

/*
 * One "host[:port]" or "[v6]:port" of s[0..n) into hp. Host names are
 * letters, digits, '.', '-', '_'; IPv6 literals hex digits, ':' and '.'.
 */
static int
sink_parse_hostport(const char *s, size_t n, uint16_t defport,
    struct sink_hostport *hp, char *err, size_t errlen)
{
	const char *end = s + n, *h, *hend, *colon;
	long port;
	size_t i;

	if (n == 0) {
		sink_err(err, errlen, "missing host");
		return -1;
	}
	if (s[0] == '[') {
		if ((hend = memchr(s, ']', n)) == NULL) {
			sink_err(err, errlen, "unterminated '[' in IPv6 host");
			return -1;
		}
		h = s + 1;
		colon = hend + 1 < end ? hend + 1 : NULL;
		if (colon != NULL && *colon != ':') {
			sink_err(err, errlen, "junk after ']' in host");
			return -1;
		}
		for (i = 0; h + i < hend; i++)
			if (sink_hexval(h[i]) < 0 && h[i] != ':' && h[i] != '.') {
				sink_err(err, errlen, "bad IPv6 address");
				return -1;
			}
	} else {
		h = s;
		colon = memchr(s, ':', n);
		hend = colon ? colon : end;
		for (i = 0; h + i < hend; i++) {
			char c = h[i];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '.' || c == '-' ||
			    c == '_')) {
				sink_err(err, errlen, "bad character in host "
				    "(IPv6 addresses go in [brackets])");
				return -1;
			}
		}
	}
	if (hend == h) {
		sink_err(err, errlen, "missing host");
		return -1;
	}
	if ((size_t)(hend - h) >= sizeof(hp->host)) {
		sink_err(err, errlen, "host name too long");
		return -1;
	}
	memcpy(hp->host, h, (size_t)(hend - h));
	hp->host[hend - h] = '\0';
	hp->port = defport;
	if (colon != NULL) {
		port = sink_number(colon + 1, (size_t)(end - colon - 1), 1,
		    65535);
		if (port < 0) {
			sink_err(err, errlen, "port must be a number in 1..65535");
			return -1;
		}
		hp->port = (uint16_t)port;
	}
	return 0;
}

/* "?db=N" (the only parameter accepted) */
static int
sink_parse_query(const char *q, size_t n, struct sink_url *u, char *err,
    size_t errlen)
{
	long db;

	if (n < 3 || strncmp(q, "db=", 3) != 0 || memchr(q, '&', n) != NULL) {
		sink_err(err, errlen, "the only parameter supported is ?db=N");
		return -1;
	}
	if ((db = sink_number(q + 3, n - 3, 0, INT_MAX)) < 0) {
		sink_err(err, errlen, "db must be a non-negative number");
		return -1;
	}
	u->db = (int)db;
	return 0;
}

int
sink_parse_url(const char *str, struct sink_url *u, char *err, size_t errlen)
{
	const char *p, *end, *at, *auth_end, *colon, *q, *slash, *item, *comma;
	size_t n;
	long db;

	memset(u, 0, sizeof(*u));
	if (str == NULL || *str == '\0') {
		sink_err(err, errlen, "empty");
		return -1;
	}
	if (strncasecmp(str, "redis://", 8) == 0) {
		u->kind = SINK_URL_TCP;
		p = str + 8;
	} else if (strncasecmp(str, "unix://", 7) == 0) {
		u->kind = SINK_URL_UNIX;
		p = str + 7;
	} else if (strncasecmp(str, "redissentinel://", 16) == 0) {
		u->kind = SINK_URL_SENTINEL;
		p = str + 16;
	} else if (strncasecmp(str, "rediss://", 9) == 0) {
		sink_err(err, errlen, "rediss:// (TLS to Redis) is not "
		    "supported; use redis://, unix:// or redissentinel://");
		return -1;
	} else {
		sink_err(err, errlen, "scheme must be redis://, unix:// or "
		    "redissentinel://");
		return -1;
	}
	end = p + strlen(p);
	for (q = p; q < end; q++)
		if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '#') {
			sink_err(err, errlen, "spaces, control characters and "
			    "'#' are not allowed");
			return -1;
		}

	/* query: only ?db=N */
	if ((q = memchr(p, '?', (size_t)(end - p))) != NULL) {
		if (sink_parse_query(q + 1, (size_t)(end - q - 1), u, err,
		    errlen) == -1)
			return -1;
		end = q;
	}

	/* userinfo: everything before the last '@' of the authority */
	auth_end = u->kind == SINK_URL_UNIX ? end :
	    (slash = memchr(p, '/', (size_t)(end - p))) ? slash : end;
	at = NULL;
	for (q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL) {
			sink_err(err, errlen, "credentials must be written "
			    "':password@' or 'user:password@'");
			return -1;
		}
		if (sink_unquote(p, (size_t)(colon - p), u->username,
		    sizeof(u->username)) == -1 ||
		    sink_unquote(colon + 1, (size_t)(at - colon - 1),
		    u->password, sizeof(u->password)) == -1) {
			sink_err(err, errlen, "bad user name or password "
			    "(too long, bad %-escape or NUL)");
			return -1;
		}
		if (u->password[0] == '\0') {
			sink_err(err, errlen, "empty password after ':'");
			return -1;
		}
		p = at + 1;
	}

	if (u->kind == SINK_URL_UNIX) {
		n = (size_t)(end - p);
		if (n == 0 || p[0] != '/') {
			sink_err(err, errlen, "unix:// needs an absolute path "
			    "(unix:///path/to/redis.sock)");
			return -1;
		}
		if (n >= sizeof(u->path)) {
			sink_err(err, errlen, "unix socket path too long");
			return -1;
		}
		memcpy(u->path, p, n);
		u->path[n] = '\0';
		return 0;
	}

	/* "/db" after the authority */
	if ((slash = memchr(p, '/', (size_t)(end - p))) != NULL) {
		n = (size_t)(end - slash - 1);
		if (n > 0) {
			if ((db = sink_number(slash + 1, n, 0, INT_MAX)) < 0) {
				sink_err(err, errlen, "the path must be a db "
				    "number (/0, /1, ...)");
				return -1;
			}
			u->db = (int)db;
		}
		end = slash;
	}

	if (u->kind == SINK_URL_TCP) {
		if (memchr(p, ',', (size_t)(end - p)) != NULL) {
			sink_err(err, errlen, "several hosts need "
			    "redissentinel://");
			return -1;
		}
		return sink_parse_hostport(p, (size_t)(end - p), 6379,
		    &u->addr, err, errlen);
	}

	for (item = p; ; item = comma + 1) {
		comma = memchr(item, ',', (size_t)(end - item));
		if (u->n_sentinels == SINK_MAX_SENTINELS) {
			sink_err(err, errlen, "too many sentinels (at most 8)");
			return -1;
		}
		if (sink_parse_hostport(item, (size_t)((comma ? comma : end) -
		    item), 26379, &u->sentinels[u->n_sentinels], err,
		    errlen) == -1)
			return -1;
		u->n_sentinels++;
		if (comma == NULL)
			break;
	}
	return 0;
}

/* ---- metrics ---- */

static void
sink_set_master(struct sink_redis *s)
{
	if (s->url.kind != SINK_URL_SENTINEL)
		return;
	pthread_mutex_lock(&g_master_lock);
	snprintf(g_master, sizeof(g_master), "%s:%u", s->cur_host,
	    (unsigned)s->cur_port);
	pthread_mutex_unlock(&g_master_lock);
}

void
sink_metrics_write(struct evbuffer *out)
{
	char master[sizeof(g_master)];
	int n = atomic_load(&g_sinks), c = atomic_load(&g_connected);
	long long bytes = atomic_load(&g_buffer_bytes);

	pthread_mutex_lock(&g_master_lock);
	memcpy(master, g_master, sizeof(master));
	pthread_mutex_unlock(&g_master_lock);

	evbuffer_add_printf(out,
	    "# HELP tracebridge_spans_recorded_total Spans Redis acknowledged.\n"
	    "# TYPE tracebridge_spans_recorded_total counter\n"
	    "tracebridge_spans_recorded_total %llu\n"
	    "# HELP tracebridge_spans_dropped_total Spans not recorded.\n"
	    "# TYPE tracebridge_spans_dropped_total counter\n"
	    "tracebridge_spans_dropped_total{reason=\"buffer_full\"} %llu\n"
	    "tracebridge_spans_dropped_total{reason=\"format\"} %llu\n"
	    "tracebridge_spans_dropped_total{reason=\"redis_error\"} %llu\n"
	    "tracebridge_spans_dropped_total{reason=\"shutdown\"} %llu\n"
	    "# HELP tracebridge_span_buffer_bytes Bytes of spans waiting for Redis.\n"
	    "# TYPE tracebridge_span_buffer_bytes gauge\n"
	    "tracebridge_span_buffer_bytes %lld\n"
	    "# HELP tracebridge_redis_connected 1 when every worker's Redis "
	    "connection is up.\n"
	    "# TYPE tracebridge_redis_connected gauge\n"
	    "tracebridge_redis_connected %d\n"
	    "# HELP tracebridge_redis_reconnects_total Redis connection "
	    "attempts after the first.\n"
	    "# TYPE tracebridge_redis_reconnects_total counter\n"
	    "tracebridge_redis_reconnects_total %llu\n",
	    (unsigned long long)atomic_load(&g_recorded),
	    (unsigned long long)atomic_load(&g_drop_full),
	    (unsigned long long)atomic_load(&g_drop_format),
	    (unsigned long long)atomic_load(&g_drop_redis),
	    (unsigned long long)atomic_load(&g_drop_shutdown),
	    bytes < 0 ? 0 : bytes, n > 0 && c == n ? 1 : 0,
	    (unsigned long long)atomic_load(&g_reconnects));
	if (master[0] != '\0')
		evbuffer_add_printf(out,
		    "# HELP tracebridge_redis_master Master the sentinels named.\n"
		    "# TYPE tracebridge_redis_master gauge\n"
		    "tracebridge_redis_master{addr=\"%s\"} 1\n", master);
}

void
sink_redis_stats(const struct sink_redis *s, struct sink_stats *out)
{
	*out = s->st;
	out->buffered_spans = s->nspans;
	out->buffer_bytes = s->bytes;
	out->inflight_spans = s->inflight_spans;
	out->connected = s->state == SINK_READY;
	if (s->state != SINK_READY)
		out->master[0] = '\0';
	else if (s->url.kind == SINK_URL_UNIX)
		snprintf(out->master, sizeof(out->master), "%s", s->url.path);
	else
		snprintf(out->master, sizeof(out->master), "%s:%u",
		    s->cur_host, (unsigned)s->cur_port);
}

/* ---- timers ---- */

static void
sink_arm(struct event *ev, double sec)
{
	struct timeval tv;

	if (sec < 0.001)
		sec = 0.001;
	tv.tv_sec = (time_t)sec;
	tv.tv_usec = (suseconds_t)((sec - (double)tv.tv_sec) * 1e6);
	event_add(ev, &tv);
}

/* ---- the FIFO ---- */

/* Remove the head entry and count it. */
static void
sink_pop(struct sink_redis *s, int recorded)
{
	struct sink_entry *e = s->head;

	s->head = e->next;
	if (s->head == NULL)
		s->tail = NULL;
	if (s->unsent == e)
		s->unsent = e->next;
	s->bytes -= e->size;
	s->nspans--;
	atomic_fetch_sub(&g_buffer_bytes, (long long)e->size);
	if (recorded) {
		s->st.recorded++;
		atomic_fetch_add(&g_recorded, 1);
	} else {
		s->st.dropped_redis_error++;
		atomic_fetch_add(&g_drop_redis, 1);
	}
	sink_entry_put(s, e);
}

/* The connection is gone: everything written but unacknowledged will be
 * written again on the next one, from the head. */
static void
sink_requeue(struct sink_redis *s)
{
	struct sink_entry *e;

	for (e = s->head; e != NULL && e != s->unsent; e = e->next) {
		e->replies = 0;
		e->error = 0;
	}
	s->unsent = s->head;
	s->inflight_bytes = 0;
	s->inflight_spans = 0;
}

/* ---- connection life cycle ---- */

static void
sink_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	sink_start(arg);
}

/* Wait the backoff delay, then try again; the delay doubles up to max. */
static void
sink_schedule_retry(struct sink_redis *s)
{
	if (event_pending(s->retry, EV_TIMEOUT, NULL))
		return;
	sink_arm(s->retry, s->backoff);
	s->backoff *= 2;
	if (s->backoff > s->conf.backoff_max)
		s->backoff = s->conf.backoff_max;
}

/*
 * Drop the data connection (if any), requeue, and retry later. Safe from
 * any callback: the context is detached before it is freed, and
 * redisAsyncFree defers the free while hiredis is inside a callback.
 */
static void
sink_close(struct sink_redis *s, const char *why)
{
	redisAsyncContext *c = s->ac;

	if (s->state == SINK_READY) {
		atomic_fetch_sub(&g_connected, 1);
		if (why != NULL)
			log_warnx("redis: connection to %s lost: %s",
			    sink_where(s), why);
	}
	s->ac = NULL;
	s->state = SINK_IDLE;
	event_del(s->timer);
	sink_dns_cancel(s, 0);
	sink_requeue(s);
	if (c != NULL) {
		c->data = NULL;
		redisAsyncFree(c);
	}
}

static void
sink_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink_redis *s = arg;

	if (s->state != SINK_READY) {
		sink_log_fail(s, "timeout");
		sink_close(s, NULL);
		sink_schedule_retry(s);
		return;
	}
	/* command timeout: no reply at all for a whole period */
	if (s->inflight_spans > 0 && s->progress == s->progress_at_arm) {
		sink_close(s, "command timeout");
		sink_schedule_retry(s);
		return;
	}
	s->progress_at_arm = s->progress;
	if (s->inflight_spans > 0)
		sink_arm(s->timer, s->conf.command_timeout);
}

/*
 * Errors that mean "not here, not now" rather than "never": a server
 * still loading its data, a replica (a demoted master after a failover),
 * a busy script. The span is kept and sent again on a fresh connection
 * (in sentinel mode after asking the sentinels again).
 */
static int
sink_transient(const redisReply *r)
{
	static const char *const pfx[] = { "LOADING", "READONLY",
	    "MASTERDOWN", "BUSY", "TRYAGAIN", NULL };
	size_t i, n;

	for (i = 0; pfx[i] != NULL; i++) {
		n = strlen(pfx[i]);
		if ((size_t)r->len >= n && strncmp(r->str, pfx[i], n) == 0)
			return 1;
	}
	return 0;
}

/*
 * Replies without allocation. Nearly every reply on the data connection is
 * one integer (LPUSH, EXPIRE) or "+OK" (SET, AUTH, SELECT), and the
 * callbacks only look at its type; hiredis' default reader calloc'd a
 * redisReply for each and freed it after the callback. The data
 * connection's reader gets these functions instead: a top-level integer or
 * status reply is one shared object that nobody writes to (its value and
 * text are not filled in), everything else (errors, whose text is logged;
 * arrays such as ROLE's; anything nested) is left to hiredis' own
 * functions. hiredis does not export those, so they are copied from a
 * reader made for the purpose, once per process.
 */
static redisReply sink_reply_integer = { .type = REDIS_REPLY_INTEGER };
static redisReply sink_reply_status = { .type = REDIS_REPLY_STATUS };
static redisReplyObjectFunctions sink_reply_fns;
static const redisReplyObjectFunctions *sink_reply_default;
static pthread_once_t sink_reply_once = PTHREAD_ONCE_INIT;

static void *
sink_reply_string(const redisReadTask *task, char *str, size_t len)
{
	if (task->parent == NULL && task->type == REDIS_REPLY_STATUS)
		return &sink_reply_status;
	return sink_reply_default->createString(task, str, len);
}

static void *
sink_reply_int(const redisReadTask *task, long long v)
{
	if (task->parent == NULL)
		return &sink_reply_integer;
	return sink_reply_default->createInteger(task, v);
}

static void
sink_reply_free(void *reply)
{
	if (reply != &sink_reply_integer && reply != &sink_reply_status)
		sink_reply_default->freeObject(reply);
}

static void
sink_reply_init(void)
{
	redisReader *r = redisReaderCreate();

	if (r == NULL)
		return;		/* sink_reply_default stays NULL: hiredis' own */
	if (r->fn != NULL && r->fn->createString != NULL &&
	    r->fn->createInteger != NULL && r->fn->freeObject != NULL) {
		sink_reply_default = r->fn;	/* hiredis' static table */
		sink_reply_fns = *r->fn;
		sink_reply_fns.createString = sink_reply_string;
		sink_reply_fns.createInteger = sink_reply_int;
		sink_reply_fns.freeObject = sink_reply_free;
	}
	redisReaderFree(r);
}

/* Give c's reader the functions above (before any reply is read). */
static void
sink_reply_attach(redisAsyncContext *c)
{
	(void)pthread_once(&sink_reply_once, sink_reply_init);
	if (sink_reply_default != NULL)
		c->c.reader->fn = &sink_reply_fns;
}

/* One reply for the head entry. */
static void
sink_reply_cb(redisAsyncContext *c, void *reply, void *priv)
{
	struct sink_redis *s = priv;
	redisReply *r = reply;
	struct sink_entry *e;

	if (r == NULL || s == NULL || c != s->ac || s->state != SINK_READY)
		return;
	e = s->head;
	if (e == NULL || e == s->unsent)
		return;	/* cannot happen: replies match writes */
	s->progress++;
	if (r->type == REDIS_REPLY_ERROR && sink_transient(r)) {
		log_warnx("redis: %s answered %.*s; reconnecting",
		    sink_where(s), (int)(r->len > 120 ? 120 : r->len), r->str);
		/* inside a hiredis callback: the free is deferred (sink_close) */
		sink_close(s, NULL);
		sink_schedule_retry(s);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		/* Only a failed LPUSH (the first command) loses the span; a
		 * failed SET marker or EXPIRE is logged, the span is stored. */
		log_warnx("redis: %s failed: %.*s", e->replies == 0 ? "LPUSH" :
		    "SET/EXPIRE", (int)(r->len > 120 ? 120 : r->len), r->str);
		if (e->replies == 0)
			e->error = 1;
	}
	if (++e->replies < e->ncmds)
		return;
	s->inflight_bytes -= e->size;
	s->inflight_spans--;
	sink_pop(s, !e->error);
	sink_kick(s);
}

/* Write now if a batch is full, else make sure the batch timer runs. */
static void
sink_kick(struct sink_redis *s)
{
	if (s->unsent == NULL)
		return;
	if (s->bytes - s->inflight_bytes >= SINK_BATCH_BYTES)
		sink_flush(s);
	else if (!evtimer_pending(s->batch, NULL))
		sink_arm(s->batch, SINK_BATCH_DELAY);
}

static void
sink_batch_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sink_flush(arg);
}

/* Write queued entries while the in-flight window has room. */
static void
sink_flush(struct sink_redis *s)
{
	struct sink_entry *e, *first = s->unsent;
	unsigned i;
	int was_idle = s->inflight_spans == 0;

	if (s->state != SINK_READY)
		return;
	while ((e = s->unsent) != NULL &&
	    s->inflight_bytes < s->conf.max_inflight_bytes) {
		for (i = 0; i < e->ncmds; i++)
			if (redisAsyncFormattedCommand(s->ac, sink_reply_cb, s,
			    e->data + e->off[i], e->len[i]) != REDIS_OK)
				return;	/* disconnecting; the callback requeues */
		e->replies = 0;
		e->error = 0;
		s->unsent = e->next;
		s->inflight_bytes += e->size;
		s->inflight_spans++;
	}
	if (was_idle && s->inflight_spans > 0) {
		s->progress_at_arm = s->progress;
		sink_arm(s->timer, s->conf.command_timeout);
	}
	/*
	 * Write now instead of from the adapter's write event in the next
	 * loop iteration: that costs one epoll_ctl to add EPOLLOUT and one to
	 * remove it per batch, plus a wakeup. Added and removed within one
	 * iteration, the worker's epoll changelist cancels both. Not inside a
	 * hiredis callback, where a failed write would free the context under
	 * its caller; the write event does it then. A failed write ends in
	 * sink_disconnect_cb, so s->ac is not to be used after this.
	 */
	if (s->unsent != first && !(s->ac->c.flags & REDIS_IN_CALLBACK))
		redisAsyncHandleWrite(s->ac);
}

static void
sink_ready(struct sink_redis *s)
{
	s->state = SINK_READY;
	s->backoff = s->conf.backoff_min;
	s->fails = 0;
	event_del(s->timer);
	atomic_fetch_add(&g_connected, 1);
	sink_set_master(s);
	log_info("redis: connected to %s%s", sink_where(s),
	    s->nspans ? ", draining buffer" : "");
	sink_flush(s);
}

/* Replies to AUTH, SELECT and ROLE. */
static void
sink_handshake_cb(redisAsyncContext *c, void *reply, void *priv)
{
	struct sink_redis *s = priv;
	redisReply *r = reply;
	const char *what = NULL;

	if (r == NULL || s == NULL || c != s->ac || s->state != SINK_HANDSHAKE)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		/* the reply text, never the password */
		log_warnx("redis: %s refused the handshake: %.*s",
		    sink_where(s), (int)(r->len > 120 ? 120 : r->len), r->str);
		what = "handshake refused";
	} else if (r->type == REDIS_REPLY_ARRAY) {
		/* ROLE: the first element says what this server is */
		if (r->elements < 1 || r->element[0]->type !=
		    REDIS_REPLY_STRING || strcmp(r->element[0]->str,
		    "master") != 0) {
			log_warnx("redis: %s is not a master, asking the "
			    "sentinels again", sink_where(s));
			what = "not a master";
		}
	}
	if (what != NULL) {
		sink_close(s, what);
		sink_schedule_retry(s);
		return;
	}
	if (--s->hs_pending == 0)
		sink_ready(s);
}

static void
sink_connect_cb(const redisAsyncContext *cc, int status)
{
	struct sink_redis *s = cc->data;
	redisAsyncContext *c = (redisAsyncContext *)cc;
	char db[16];

	if (s == NULL || c != s->ac)
		return;
	if (status != REDIS_OK) {
		sink_log_fail(s, c->errstr);
		/* hiredis frees c after this callback returns */
		s->ac = NULL;
		c->data = NULL;
		s->state = SINK_IDLE;
		event_del(s->timer);
		sink_schedule_retry(s);
		return;
	}
	s->state = SINK_HANDSHAKE;
	s->hs_pending = 0;
	if (s->url.password[0] != '\0') {
		if (s->url.username[0] != '\0')
			redisAsyncCommand(c, sink_handshake_cb, s, "AUTH %s %s",
			    s->url.username, s->url.password);
		else
			redisAsyncCommand(c, sink_handshake_cb, s, "AUTH %s",
			    s->url.password);
		s->hs_pending++;
	}
	if (s->url.db > 0) {
		snprintf(db, sizeof(db), "%d", s->url.db);
		redisAsyncCommand(c, sink_handshake_cb, s, "SELECT %s", db);
		s->hs_pending++;
	}
	if (s->url.kind == SINK_URL_SENTINEL) {
		redisAsyncCommand(c, sink_handshake_cb, s, "ROLE");
		s->hs_pending++;
	}
	if (s->hs_pending == 0)
		sink_ready(s);
}

static void
sink_disconnect_cb(const redisAsyncContext *cc, int status)
{
	struct sink_redis *s = cc->data;

	if (s == NULL || cc != s->ac)
		return;
	/* hiredis frees the context after this returns: only detach */
	s->ac = NULL;
	sink_close(s, cc->errstr[0] ? cc->errstr : "closed by server");
	sink_schedule_retry(s);
}

/* ---- name resolution ---- */

static void sink_connect_addr(struct sink_redis *s, const char *ip);
static void sink_sentinel_connect_addr(struct sink_redis *s, const char *ip);
static void sink_sentinel_next(struct sink_redis *s);

/* 1 for an IPv4 or IPv6 literal (hiredis connects to it without DNS). */
static int
sink_numeric(const char *host)
{
	struct in6_addr a;

	return inet_pton(AF_INET, host, &a) == 1 ||
	    inet_pton(AF_INET6, host, &a) == 1;
}

static void
sink_dns_cancel(struct sink_redis *s, int slot)
{
	struct evdns_getaddrinfo_request *req = s->dns_req[slot];

	s->dns_req[slot] = NULL;
	if (req != NULL)
		evdns_getaddrinfo_cancel(req);	/* callback sees CANCEL */
}

/* Answer for slot 0 (data) or 1 (sentinel): connect to the first IPv4
 * address, else the first address (Redis binds IPv4 loopback by default). */
static void
sink_dns_done(struct sink_redis *s, int slot, int result,
    struct evutil_addrinfo *res)
{
	struct evutil_addrinfo *ai, *pick = NULL;
	char ip[INET6_ADDRSTRLEN];
	const void *a;

	s->dns_req[slot] = NULL;
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (pick == NULL || (ai->ai_family == AF_INET &&
		    pick->ai_family != AF_INET))
			pick = ai;
	if (result != 0 || pick == NULL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		if (slot == 0) {
			sink_log_fail(s, result ? evutil_gai_strerror(result) :
			    "no address");
			s->state = SINK_IDLE;
			event_del(s->timer);
			sink_schedule_retry(s);
		} else {
			log_warnx("redis: sentinel %s: %s",
			    s->url.sentinels[s->sidx].host, result ?
			    evutil_gai_strerror(result) : "no address");
			sink_sentinel_next(s);
		}
		return;
	}
	a = pick->ai_family == AF_INET ?
	    (const void *)&((struct sockaddr_in *)(void *)pick->ai_addr)->sin_addr :
	    (const void *)&((struct sockaddr_in6 *)(void *)pick->ai_addr)->sin6_addr;
	evutil_inet_ntop(pick->ai_family, a, ip, sizeof(ip));
	evutil_freeaddrinfo(res);
	if (slot == 0)
		sink_connect_addr(s, ip);
	else
		sink_sentinel_connect_addr(s, ip);
}

static void
sink_dns_data_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	if (result == EVUTIL_EAI_CANCEL)
		return;		/* the sink gave up on it, maybe freed */
	sink_dns_done(arg, 0, result, res);
}

static void
sink_dns_sentinel_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	if (result == EVUTIL_EAI_CANCEL)
		return;
	sink_dns_done(arg, 1, result, res);
}

/* Resolve host without blocking; the answer continues in sink_dns_done. */
static void
sink_resolve(struct sink_redis *s, int slot, const char *host)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	if (s->dns == NULL && (s->dns = evdns_base_new(s->base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL) {
		sink_dns_done(s, slot, EVUTIL_EAI_FAIL, NULL);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	sink_dns_cancel(s, slot);
	/* may answer at once (hosts file) and then returns NULL */
	req = evdns_getaddrinfo(s->dns, host, NULL, &hints,
	    slot == 0 ? sink_dns_data_cb : sink_dns_sentinel_cb, s);
	if (req != NULL)
		s->dns_req[slot] = req;
}

/* Open the data connection to cur_host:cur_port (or the unix path). */
static void
sink_connect(struct sink_redis *s)
{
	if (s->ever_connected) {
		s->st.reconnects++;
		atomic_fetch_add(&g_reconnects, 1);
	}
	s->ever_connected = 1;
	s->state = SINK_CONNECTING;
	sink_arm(s->timer, s->conf.connect_timeout);	/* covers DNS too */
	if (s->url.kind == SINK_URL_UNIX)
		sink_connect_addr(s, NULL);
	else if (sink_numeric(s->cur_host))
		sink_connect_addr(s, s->cur_host);
	else
		sink_resolve(s, 0, s->cur_host);
}

/* Connect the data connection to ip (NULL: the unix socket). */
static void
sink_connect_addr(struct sink_redis *s, const char *ip)
{
	redisAsyncContext *c;

	if (ip == NULL)
		c = redisAsyncConnectUnix(s->url.path);
	else
		c = redisAsyncConnect(ip, s->cur_port);
	if (c == NULL || c->err) {
		sink_log_fail(s, c ? c->errstr : "out of memory");
		if (c != NULL)
			redisAsyncFree(c);
		s->state = SINK_IDLE;
		event_del(s->timer);
		sink_schedule_retry(s);
		return;
	}
	if (redisLibeventAttach(c, s->base) != REDIS_OK) {
		redisAsyncFree(c);
		s->state = SINK_IDLE;
		event_del(s->timer);
		sink_schedule_retry(s);
		return;
	}
	c->data = s;
	sink_reply_attach(c);
	redisAsyncSetConnectCallback(c, sink_connect_cb);
	redisAsyncSetDisconnectCallback(c, sink_disconnect_cb);
	s->ac = c;
}

/* ---- sentinel ---- */

static void sink_sentinel_query(struct sink_redis *s);

static void
sink_sentinel_drop(struct sink_redis *s)
{
	redisAsyncContext *c = s->sac;

	s->sac = NULL;
	s->sac_subscribed = 0;
	event_del(s->stimer);
	sink_dns_cancel(s, 1);
	if (c != NULL) {
		c->data = NULL;
		redisAsyncFree(c);
	}
}

/* This sentinel did not answer usefully: ask the next, or back off after a
 * whole round. */
static void
sink_sentinel_next(struct sink_redis *s)
{
	sink_sentinel_drop(s);
	s->sidx = (s->sidx + 1) % s->url.n_sentinels;
	if (++s->stries < s->url.n_sentinels) {
		sink_sentinel_query(s);
		return;
	}
	s->stries = 0;
	if (s->state == SINK_RESOLVING)
		s->state = SINK_IDLE;
	sink_schedule_retry(s);
}

/* Point the data connection at host:port (a new master). */
static void
sink_use_master(struct sink_redis *s, const char *host, size_t hlen,
    const char *port)
{
	long p = strtol(port, NULL, 10);

	if (hlen >= sizeof(s->cur_host) || p <= 0 || p > 65535)
		return;
	if (s->ac != NULL && s->cur_port == p &&
	    strncmp(s->cur_host, host, hlen) == 0 && s->cur_host[hlen] == '\0')
		return;	/* already there */
	if (s->ac != NULL)
		sink_close(s, "sentinel named a new master");
	if (s->cur_port != p || strncmp(s->cur_host, host, hlen) != 0 ||
	    s->cur_host[hlen] != '\0')
		s->backoff = s->conf.backoff_min;	/* a new master */
	memcpy(s->cur_host, host, hlen);
	s->cur_host[hlen] = '\0';
	s->cur_port = (uint16_t)p;
	event_del(s->retry);
	sink_connect(s);
}

/* Messages on +switch-master: "<name> <oldip> <oldport> <newip> <newport>" */
static void
sink_sentinel_msg_cb(redisAsyncContext *c, void *reply, void *priv)
{
	struct sink_redis *s = priv;
	redisReply *r = reply;
	char name[256], ip[256], port[8];

	if (r == NULL || s == NULL || c != s->sac)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0 ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;
	if (sscanf(r->element[2]->str, "%255s %*s %*s %255s %7s", name, ip,
	    port) != 3 || strcmp(name, s->service_name) != 0)
		return;
	log_info("redis: sentinel: master %s switched to %s:%s", name, ip,
	    port);
	sink_use_master(s, ip, strlen(ip), port);
}

/* Reply to SENTINEL get-master-addr-by-name. */
static void
sink_sentinel_addr_cb(redisAsyncContext *c, void *reply, void *priv)
{
	struct sink_redis *s = priv;
	redisReply *r = reply;

	if (r == NULL || s == NULL || c != s->sac)
		return;
	event_del(s->stimer);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING) {
		log_warnx("redis: sentinel %s:%u does not know master %s",
		    s->url.sentinels[s->sidx].host,
		    (unsigned)s->url.sentinels[s->sidx].port,
		    s->service_name);
		sink_sentinel_next(s);
		return;
	}
	s->stries = 0;
	/* keep this connection to hear about failovers */
	redisAsyncCommand(c, sink_sentinel_msg_cb, s,
	    "SUBSCRIBE +switch-master");
	s->sac_subscribed = 1;
	if (s->state == SINK_RESOLVING)
		s->state = SINK_IDLE;
	sink_use_master(s, r->element[0]->str, r->element[0]->len,
	    r->element[1]->str);
}

static void
sink_sentinel_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sink_redis *s = arg;

	log_warnx("redis: sentinel %s:%u did not answer in time",
	    s->url.sentinels[s->sidx].host,
	    (unsigned)s->url.sentinels[s->sidx].port);
	sink_sentinel_next(s);
}

static void
sink_sentinel_connect_cb(const redisAsyncContext *cc, int status)
{
	struct sink_redis *s = cc->data;

	if (s == NULL || cc != s->sac || status == REDIS_OK)
		return;
	s->sac = NULL;	/* hiredis frees it after we return */
	((redisAsyncContext *)cc)->data = NULL;
	log_warnx("redis: sentinel %s:%u: %s", s->url.sentinels[s->sidx].host,
	    (unsigned)s->url.sentinels[s->sidx].port, cc->errstr);
	sink_sentinel_next(s);
}

static void
sink_sentinel_disconnect_cb(const redisAsyncContext *cc, int status)
{
	struct sink_redis *s = cc->data;
	int subscribed;

	if (s == NULL || cc != s->sac)
		return;
	subscribed = s->sac_subscribed;
	s->sac = NULL;
	s->sac_subscribed = 0;
	event_del(s->stimer);
	if (!subscribed) {
		sink_sentinel_next(s);
		return;
	}
	/* lost the failover feed: ask again (the data connection stays if
	 * the master did not change) */
	log_warnx("redis: sentinel connection lost, asking again");
	sink_schedule_retry(s);
}

static void
sink_sentinel_query(struct sink_redis *s)
{
	const struct sink_hostport *hp = &s->url.sentinels[s->sidx];

	sink_sentinel_drop(s);
	if (s->ac == NULL)
		s->state = SINK_RESOLVING;
	sink_arm(s->stimer, s->conf.socket_timeout);	/* covers DNS too */
	if (sink_numeric(hp->host))
		sink_sentinel_connect_addr(s, hp->host);
	else
		sink_resolve(s, 1, hp->host);
}

/* Connect to the current sentinel at ip and ask for the master. */
static void
sink_sentinel_connect_addr(struct sink_redis *s, const char *ip)
{
	const struct sink_hostport *hp = &s->url.sentinels[s->sidx];
	redisAsyncContext *c;

	c = redisAsyncConnect(ip, hp->port);
	if (c == NULL || c->err || redisLibeventAttach(c, s->base) !=
	    REDIS_OK) {
		log_warnx("redis: sentinel %s:%u: %s", hp->host,
		    (unsigned)hp->port, c ? c->errstr : "out of memory");
		if (c != NULL)
			redisAsyncFree(c);
		/* stries bounds the recursion to one round */
		sink_sentinel_next(s);
		return;
	}
	c->data = s;
	redisAsyncSetConnectCallback(c, sink_sentinel_connect_cb);
	redisAsyncSetDisconnectCallback(c, sink_sentinel_disconnect_cb);
	s->sac = c;
	redisAsyncCommand(c, sink_sentinel_addr_cb, s,
	    "SENTINEL get-master-addr-by-name %s", s->service_name);
}

/* Next attempt: direct connect, or ask the sentinels. */
static void
sink_start(struct sink_redis *s)
{
	if (s->url.kind == SINK_URL_SENTINEL) {
		if (s->sac == NULL || !s->sac_subscribed || s->ac == NULL)
			sink_sentinel_query(s);
		return;
	}
	if (s->ac != NULL)
		return;
	if (s->url.kind == SINK_URL_TCP) {
		snprintf(s->cur_host, sizeof(s->cur_host), "%s",
		    s->url.addr.host);
		s->cur_port = s->url.addr.port;
	} else {
		snprintf(s->cur_host, sizeof(s->cur_host), "%s", s->url.path);
		s->cur_port = 0;
	}
	sink_connect(s);
}

/* ---- public API ---- */

struct sink_redis *
sink_redis_new(struct event_base *base, const struct sink_conf *conf,
    char *err, size_t errlen)
{
	struct sink_redis *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base = base;
	if (sink_parse_url(conf->connection_string, &s->url, err,
	    errlen) == -1)
		goto fail;
	s->conf = *conf;
	s->conf.connection_string = NULL;	/* parsed; not kept */
	s->service_name = strdup(conf->sentinel_service_name ?
	    conf->sentinel_service_name : "mymaster");
	if (s->conf.socket_timeout <= 0)
		s->conf.socket_timeout = 0.1;
	if (s->conf.span_buffer_bytes == 0)
		s->conf.span_buffer_bytes = 16u << 20;
	if (s->conf.connect_timeout <= 0)
		s->conf.connect_timeout = 2;
	if (s->conf.command_timeout <= 0)
		s->conf.command_timeout = 5;
	if (s->conf.backoff_min <= 0)
		s->conf.backoff_min = 0.1;
	if (s->conf.backoff_max <= 0)
		s->conf.backoff_max = 5;
	if (s->conf.max_inflight_bytes == 0)
		s->conf.max_inflight_bytes = 1u << 20;
	s->backoff = s->conf.backoff_min;
	if (s->conf.span_ttl > 0)
		s->ttl_len = fmt_u64(s->ttl, (uint64_t)s->conf.span_ttl);
	s->timer = evtimer_new(base, sink_timer_cb, s);
	s->retry = evtimer_new(base, sink_retry_cb, s);
	s->batch = evtimer_new(base, sink_batch_cb, s);
	s->stimer = evtimer_new(base, sink_sentinel_timeout_cb, s);
	if (s->service_name == NULL || s->timer == NULL || s->retry == NULL ||
	    s->batch == NULL || s->stimer == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	atomic_fetch_add(&g_sinks, 1);
	/* first attempt from the loop, so a caller outside it is fine */
	sink_arm(s->retry, 0);
	return s;
fail:
	if (s->timer)
		event_free(s->timer);
	if (s->retry)
		event_free(s->retry);
	if (s->batch)
		event_free(s->batch);
	if (s->stimer)
		event_free(s->stimer);
	free(s->service_name);
	free(s);
	return NULL;
}


/* "<c><n>\r\n" (a RESP length line) into out; returns its length. By hand:
 * snprintf here was a visible share of the per-span cost. */
static size_t
sink_resp_len(char *out, char c, size_t n)
{
	size_t len;

	out[0] = c;
	len = fmt_u64(out + 1, n);
	out[len + 1] = '\r';
	out[len + 2] = '\n';
	return len + 3;
}

/*
 * One command of a span: VERB <pfx><base_id> VALUE [VALUE], every one of
 * LPUSH, SET and EXPIRE has that shape. The key is written from its two
 * pieces, so it needs no joining copy first.
 */
struct sink_cmd {
	const char *verb, *pfx, *v[2];
	size_t verb_len, pfx_len, vlen[2];
	int nv;			/* values: 1 or 2 */
};

/* "$<n>\r\n<n bytes>\r\n" takes this many bytes. */
static size_t
sink_bulk_size(size_t n)
{
	return 1 + fmt_u64_digits(n) + 2 + n + 2;
}

/* Bytes of c as RESP, with base_id[0..idlen) in the key. */
static size_t
sink_cmd_size(const struct sink_cmd *c, size_t idlen)
{
	size_t size = 4 + sink_bulk_size(c->verb_len) +	/* "*<3 or 4>\r\n" */
	    sink_bulk_size(c->pfx_len + idlen);
	int i;

	for (i = 0; i < c->nv; i++)
		size += sink_bulk_size(c->vlen[i]);
	return size;
}

/* Copy n bytes and the CRLF after a bulk string; returns the end. */
static char *
sink_put_crlf(char *w, const char *p, size_t n)
{
	memcpy(w, p, n);
	w[n] = '\r';
	w[n + 1] = '\n';
	return w + n + 2;
}

/* Write c as RESP at w (sink_cmd_size bytes); returns the end. */
static char *
sink_cmd_w(char *w, const struct sink_cmd *c, const char *id, size_t idlen)
{
	int i;

	w += sink_resp_len(w, '*', (size_t)(2 + c->nv));
	w += sink_resp_len(w, '$', c->verb_len);
	w = sink_put_crlf(w, c->verb, c->verb_len);
	w += sink_resp_len(w, '$', c->pfx_len + idlen);
	memcpy(w, c->pfx, c->pfx_len);
	w = sink_put_crlf(w + c->pfx_len, id, idlen);
	for (i = 0; i < c->nv; i++) {
		w += sink_resp_len(w, '$', c->vlen[i]);
		w = sink_put_crlf(w, c->v[i], c->vlen[i]);
	}
	return w;
}

/* Fill c; v2 may be NULL. verb and pfx are literals: inlined, their
 * strlen is folded at compile time. */
static inline void
sink_cmd_set(struct sink_cmd *c, const char *verb, const char *pfx,
    const char *v1, size_t n1, const char *v2, size_t n2)
{
	c->verb = verb;
	c->verb_len = strlen(verb);
	c->pfx = pfx;
	c->pfx_len = strlen(pfx);
	c->v[0] = v1;
	c->vlen[0] = n1;
	c->v[1] = v2;
	c->vlen[1] = n2;
	c->nv = v2 != NULL ? 2 : 1;
}

static void
sink_drop_now(struct sink_redis *s, int full)
{
	if (full) {
		s->st.dropped_buffer_full++;
		atomic_fetch_add(&g_drop_full, 1);
	} else {
		s->st.dropped_format++;
		atomic_fetch_add(&g_drop_format, 1);
	}
}

/*
 * An entry of at least size bytes for a new span: a kept one when the
 * first kept one fits, else a new allocation (a kept one that does not fit
 * is freed, so the list follows the sizes spans have now). NULL, counted
 * as dropped, when the buffer limit or memory says no.
 */
static struct sink_entry *
sink_entry_get(struct sink_redis *s, size_t size)
{
	struct sink_entry *e = s->free_entries;
	size_t cap = (size + SINK_ENTRY_ALIGN - 1) / SINK_ENTRY_ALIGN *
	    SINK_ENTRY_ALIGN;

	if (e != NULL) {
		s->free_entries = e->next;
		s->n_free--;
		if (e->size >= cap && e->size - cap <= SINK_ENTRY_SLACK)
			cap = e->size;
		else {
			free(e);
			e = NULL;
		}
	}
	if (s->bytes + cap > s->conf.span_buffer_bytes) {
		sink_entry_put(s, e);
		sink_drop_now(s, 1);
		return NULL;
	}
	if (e == NULL && (e = malloc(cap)) == NULL) {
		sink_drop_now(s, 0);
		return NULL;
	}
	e->size = cap;
	return e;
}

/* Keep e (NULL is fine) for a later span, or free it when enough are kept. */
static void
sink_entry_put(struct sink_redis *s, struct sink_entry *e)
{
	if (e == NULL)
		return;
	if (s->n_free >= SINK_FREE_MAX) {
		free(e);
		return;
	}
	e->next = s->free_entries;
	s->free_entries = e;
	s->n_free++;
}

/*
 * The JSON is formatted into the sink's scratch buffers (its length is only
 * known afterwards); the RESP commands around it are then written straight
 * into one exact-size entry (the buffer limit counts real memory), so each
 * notification is copied once.
 */
int
sink_redis_record(struct sink_redis *s, const struct span_rec *r)
{
	struct sink_entry *e;
	struct sink_cmd cmd[SINK_MAX_CMDS];
	size_t idlen, n = 0, i, size, len[SINK_MAX_CMDS];
	char *w;

	s->st.submitted++;
	s->js.len = 0;
	s->jt.len = 0;
	s->jm.len = 0;
	if (r->base_id == NULL || (idlen = strlen(r->base_id)) > 64 ||
	    span_format_start(r, &s->js) == -1 ||
	    span_format_stop(r, &s->jt) == -1) {
		sink_drop_now(s, 0);
		return -1;
	}
	/* Check the limit before building the commands: the JSON is nearly
	 * all of it, and a full buffer should cost as little as possible. */
	if (s->bytes + s->js.len + s->jt.len >
	    s->conf.span_buffer_bytes) {
		sink_drop_now(s, 1);
		return -1;
	}
	sink_cmd_set(&cmd[n++], "LPUSH", "osprofiler_opt:", s->js.p, s->js.len,
	    s->jt.p, s->jt.len);
	if (s->conf.filter_error_trace && span_is_error(r)) {
		if (span_format_error_marker(r, &s->jm) == -1) {
			sink_drop_now(s, 0);
			return -1;
		}
		sink_cmd_set(&cmd[n++], "SET", "osprofiler_error:", s->jm.p,
		    s->jm.len, NULL, 0);
		if (s->ttl_len > 0)
			sink_cmd_set(&cmd[n++], "EXPIRE", "osprofiler_error:",
			    s->ttl, s->ttl_len, NULL, 0);
	}
	if (s->ttl_len > 0)
		sink_cmd_set(&cmd[n++], "EXPIRE", "osprofiler_opt:", s->ttl,
		    s->ttl_len, NULL, 0);
	size = offsetof(struct sink_entry, data);
	for (i = 0; i < n; i++)
		size += (len[i] = sink_cmd_size(&cmd[i], idlen));
	if ((e = sink_entry_get(s, size)) == NULL)
		return -1;	/* counted */
	e->next = NULL;
	e->ncmds = (unsigned)n;
	e->replies = 0;
	e->error = 0;
	for (i = 0, w = e->data; i < n; i++) {
		e->off[i] = (size_t)(w - e->data);
		e->len[i] = len[i];
		w = sink_cmd_w(w, &cmd[i], r->base_id, idlen);
	}
	assert((size_t)(w - e->data) + offsetof(struct sink_entry, data) ==
	    size && size <= e->size);
	if (s->tail != NULL)
		s->tail->next = e;
	else
		s->head = e;
	s->tail = e;
	if (s->unsent == NULL)
		s->unsent = e;
	s->bytes += e->size;
	s->nspans++;
	atomic_fetch_add(&g_buffer_bytes, (long long)e->size);
	sink_kick(s);
	return 0;
}

void
sink_redis_free(struct sink_redis *s)
{
	struct sink_entry *e;

	if (s == NULL)
		return;
	sink_sentinel_drop(s);
	sink_close(s, NULL);
	while ((e = s->head) != NULL) {
		s->head = e->next;
		atomic_fetch_sub(&g_buffer_bytes, (long long)e->size);
		s->st.dropped_shutdown++;
		atomic_fetch_add(&g_drop_shutdown, 1);
		free(e);
	}
	while ((e = s->free_entries) != NULL) {
		s->free_entries = e->next;
		free(e);
	}
	atomic_fetch_sub(&g_sinks, 1);
	if (s->dns != NULL)
		evdns_base_free(s->dns, 0);
	event_free(s->timer);
	event_free(s->retry);
	event_free(s->batch);
	event_free(s->stimer);
	span_buf_free(&s->js);
	span_buf_free(&s->jt);
	span_buf_free(&s->jm);
	free(s->service_name);
	free(s);
}
