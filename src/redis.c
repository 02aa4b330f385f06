/*
 * redis.c: the one Redis client (contract in redis.h).
 *
 * Connections. One data connection (hiredis async on the user's loop). In
 * sentinel mode a second connection asks a sentinel for the master and then
 * stays SUBSCRIBEd to +switch-master. Every hiredis callback finds the
 * client in the context's data pointer and checks that the context is still
 * the client's current one: the client detaches a context (clears both
 * pointers) before it frees it, so the callbacks hiredis runs while tearing
 * it down (replies with NULL, disconnect) are ignored (STYLE.md habit 11).
 *
 * States of the data connection, one at a time (cl_set_state):
 *
 *   IDLE -> RESOLVING (sentinel mode: asking for the master)
 *        -> CONNECTING (evdns, then connect(2)) -> HANDSHAKE (AUTH, SELECT,
 *           ROLE sent) -> READY (user commands flow) -> IDLE on any failure,
 *           then the retry timer after the backoff delay.
 *
 * What a server sends is bounded: every context's reader counts the reply
 * it is reading and its read event checks the bytes held (the "guard",
 * below); the guard also refuses the replies hiredis 0.14 would abort on
 * (guard_shape); and a sentinel's answer is checked like any input
 * (tb_redis_sentinel_answer) before the client follows it.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "tb_build.h"
#include "fmt.h"
#include "log.h"
#include "redis.h"
#include "stats.h"
#include "util.h"

/* ------------------------------------------------------------------ */
/* connection strings                                                  */
/* ------------------------------------------------------------------ */

/* What config and every caller say for a string that is no URL of ours. */
#define URL_FORMS	"expected a redis://, unix:// or redissentinel:// URL"

static void
url_err(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
}

/* Percent-decode s[0..n) into out[outlen] (NUL-terminated); -1 if too
 * long, a bad escape, or a NUL byte. */
static int
url_unquote(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, o = 0;
	int hi, lo, c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -1;
			if ((hi = fmt_hexval(s[i + 1])) < 0 ||
			    (lo = fmt_hexval(s[i + 2])) < 0)
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

/* A decimal in [min, max] spanning all of s[0..n); -1 otherwise. At most
 * 10 digits, so the sum cannot overflow a long. */
static long
url_number(const char *s, size_t n, long min, long max)
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

/* A byte of a host name: a letter, a digit, '.', '-' or '_'. */
static int
url_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

/*
 * One "host[:port]" or "[v6]:port" of s[0..n) into hp. Host names are
 * letters, digits, '.', '-', '_'; IPv6 literals hex digits, ':' and '.'.
 */
static int
url_hostport(const char *s, size_t n, uint16_t defport,
    struct tb_redis_hostport *hp, char *err, size_t errlen)
{
	const char *end = s + n, *h, *hend, *colon;
	long port;
	size_t i;

	if (n == 0) {
		url_err(err, errlen, "missing host");
		return -1;
	}
	if (s[0] == '[') {
		if ((hend = memchr(s, ']', n)) == NULL) {
			url_err(err, errlen, "unterminated '[' in IPv6 host");
			return -1;
		}
		h = s + 1;
		colon = hend + 1 < end ? hend + 1 : NULL;
		if (colon != NULL && *colon != ':') {
			url_err(err, errlen, "junk after ']' in host");
			return -1;
		}
		for (i = 0; h + i < hend; i++)
			if (fmt_hexval(h[i]) < 0 && h[i] != ':' && h[i] != '.') {
				url_err(err, errlen, "bad IPv6 address");
				return -1;
			}
	} else {
		h = s;
		colon = memchr(s, ':', n);
		hend = colon ? colon : end;
		for (i = 0; h + i < hend; i++)
			if (!url_host_char(h[i])) {
				url_err(err, errlen, "bad character in host "
				    "(IPv6 addresses go in [brackets])");
				return -1;
			}
	}
	if (hend == h) {
		url_err(err, errlen, "missing host");
		return -1;
	}
	if ((size_t)(hend - h) >= sizeof(hp->host)) {
		url_err(err, errlen, "host name too long");
		return -1;
	}
	memcpy(hp->host, h, (size_t)(hend - h));
	hp->host[hend - h] = '\0';
	hp->port = defport;
	if (colon != NULL) {
		port = url_number(colon + 1, (size_t)(end - colon - 1), 1,
		    65535);
		if (port < 0) {
			url_err(err, errlen, "port must be a number in 1..65535");
			return -1;
		}
		hp->port = (uint16_t)port;
	}
	return 0;
}

/* "?db=N" (the only parameter accepted) */
static int
url_query(const char *q, size_t n, struct tb_redis_url *u, char *err,
    size_t errlen)
{
	long db;

	if (n < 3 || strncmp(q, "db=", 3) != 0 || memchr(q, '&', n) != NULL) {
		url_err(err, errlen, "the only parameter supported is ?db=N");
		return -1;
	}
	if ((db = url_number(q + 3, n - 3, 0, INT_MAX)) < 0) {
		url_err(err, errlen, "db must be a non-negative number");
		return -1;
	}
	u->db = (int)db;
	return 0;
}

int
tb_redis_url_parse(const char *str, struct tb_redis_url *u, char *err,
    size_t errlen)
{
	const char *p, *end, *at, *auth_end, *colon, *q, *slash, *item, *comma;
	size_t n;
	long db;

	memset(u, 0, sizeof(*u));
	if (str == NULL) {
		url_err(err, errlen, URL_FORMS);
		return -1;
	}
	if (strncasecmp(str, "redis://", 8) == 0) {
		u->kind = TB_REDIS_TCP;
		p = str + 8;
	} else if (strncasecmp(str, "unix://", 7) == 0) {
		u->kind = TB_REDIS_UNIX;
		p = str + 7;
	} else if (strncasecmp(str, "redissentinel://", 16) == 0) {
		u->kind = TB_REDIS_SENTINEL;
		p = str + 16;
	} else if (strncasecmp(str, "rediss://", 9) == 0) {
		url_err(err, errlen, "rediss:// (TLS) is not supported");
		return -1;
	} else {
		url_err(err, errlen, URL_FORMS);
		return -1;
	}
	if (*p == '\0') {	/* a scheme alone */
		url_err(err, errlen, URL_FORMS);
		return -1;
	}
	end = p + strlen(p);
	for (q = p; q < end; q++)
		if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '#') {
			url_err(err, errlen, "spaces, control characters and "
			    "'#' are not allowed");
			return -1;
		}

	/* query: only ?db=N */
	if ((q = memchr(p, '?', (size_t)(end - p))) != NULL) {
		if (url_query(q + 1, (size_t)(end - q - 1), u, err,
		    errlen) == -1)
			return -1;
		end = q;
	}

	/* userinfo: everything before the last '@' of the authority */
	auth_end = u->kind == TB_REDIS_UNIX ? end :
	    (slash = memchr(p, '/', (size_t)(end - p))) ? slash : end;
	at = NULL;
	for (q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL) {
			url_err(err, errlen, "credentials must be written "
			    "':password@' or 'user:password@'");
			return -1;
		}
		if (url_unquote(p, (size_t)(colon - p), u->username,
		    sizeof(u->username)) == -1 ||
		    url_unquote(colon + 1, (size_t)(at - colon - 1),
		    u->password, sizeof(u->password)) == -1) {
			url_err(err, errlen, "bad user name or password "
			    "(too long, bad %-escape or NUL)");
			return -1;
		}
		if (u->password[0] == '\0') {
			url_err(err, errlen, "empty password after ':'");
			return -1;
		}
		p = at + 1;
	}

	if (u->kind == TB_REDIS_UNIX) {
		n = (size_t)(end - p);
		if (n == 0 || p[0] != '/') {
			url_err(err, errlen, "unix:// needs an absolute path "
			    "(unix:///path/to/redis.sock)");
			return -1;
		}
		if (n >= sizeof(u->path)) {
			url_err(err, errlen, "unix socket path too long");
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
			if ((db = url_number(slash + 1, n, 0, INT_MAX)) < 0) {
				url_err(err, errlen, "the path must be a db "
				    "number (/0, /1, ...)");
				return -1;
			}
			u->db = (int)db;
		}
		end = slash;
	}

	if (u->kind == TB_REDIS_TCP) {
		if (memchr(p, ',', (size_t)(end - p)) != NULL) {
			url_err(err, errlen, "several hosts need "
			    "redissentinel://");
			return -1;
		}
		return url_hostport(p, (size_t)(end - p), 6379, &u->addr, err,
		    errlen);
	}

	for (item = p; ; item = comma + 1) {
		comma = memchr(item, ',', (size_t)(end - item));
		if (u->n_sentinels == TB_REDIS_MAX_SENTINELS) {
			url_err(err, errlen, "too many sentinels (at most 8)");
			return -1;
		}
		if (url_hostport(item, (size_t)((comma ? comma : end) - item),
		    26379, &u->sentinels[u->n_sentinels], err, errlen) == -1)
			return -1;
		u->n_sentinels++;
		if (comma == NULL)
			break;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* sentinel answers                                                    */
/* ------------------------------------------------------------------ */

const char *const tb_redis_sentinel_err_names[TB_REDIS_SENTINEL_NERR] = {
	"", "unknown_master", "error_reply", "reply_type", "element_count",
	"host", "port",
};

/* Record why the answer is unusable and the bytes to quote; -1. */
static int
sa_fail(struct tb_redis_sentinel_addr *a, enum tb_redis_sentinel_err err,
    const char *why, const char *bad, size_t bad_len)
{
	a->err = err;
	a->why = why;
	a->bad = bad;
	a->bad_len = bad_len;
	return -1;
}

/* host[0..hlen) and port[0..plen) into a->master, if they are a host
 * name or IP address (IPv6 without brackets, as sentinels write it) and a
 * port; 0/-1. */
static int
sa_addr(struct tb_redis_sentinel_addr *a, const char *host, size_t hlen,
    const char *port, size_t plen)
{
	size_t i;
	long p;

	if (hlen == 0)
		return sa_fail(a, TB_REDIS_SENTINEL_HOST, "empty host", NULL, 0);
	if (hlen >= sizeof(a->master.host))
		return sa_fail(a, TB_REDIS_SENTINEL_HOST,
		    "host longer than 255 bytes", host, hlen);
	for (i = 0; i < hlen; i++)
		if (!url_host_char(host[i]) && host[i] != ':')
			return sa_fail(a, TB_REDIS_SENTINEL_HOST,
			    "bad character in host", host, hlen);
	if ((p = url_number(port, plen, 1, 65535)) < 0)
		return sa_fail(a, TB_REDIS_SENTINEL_PORT,
		    "port is not a number in 1..65535", port, plen);
	memcpy(a->master.host, host, hlen);
	a->master.host[hlen] = '\0';
	a->master.port = (uint16_t)p;
	a->err = TB_REDIS_SENTINEL_OK;
	return 0;
}

int
tb_redis_sentinel_answer(const redisReply *r,
    struct tb_redis_sentinel_addr *a)
{
	memset(a, 0, sizeof(*a));
	switch (r->type) {
	case REDIS_REPLY_ARRAY:
		break;
	case REDIS_REPLY_NIL:
		return sa_fail(a, TB_REDIS_SENTINEL_UNKNOWN_MASTER,
		    "no such master", NULL, 0);
	case REDIS_REPLY_ERROR:
		return sa_fail(a, TB_REDIS_SENTINEL_ERROR_REPLY, "error reply",
		    r->str, r->len);
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		return sa_fail(a, TB_REDIS_SENTINEL_REPLY_TYPE,
		    "a string, not an array", r->str, r->len);
	default:
		return sa_fail(a, TB_REDIS_SENTINEL_REPLY_TYPE,
		    "not an array", NULL, 0);
	}
	if (r->elements != 2)
		return sa_fail(a, TB_REDIS_SENTINEL_ELEMENT_COUNT,
		    "not an array of two elements", NULL, 0);
	if (r->element[0]->type != REDIS_REPLY_STRING)
		return sa_fail(a, TB_REDIS_SENTINEL_HOST,
		    "host is not a string", NULL, 0);
	if (r->element[1]->type != REDIS_REPLY_STRING)
		return sa_fail(a, TB_REDIS_SENTINEL_PORT,
		    "port is not a string", NULL, 0);
	return sa_addr(a, r->element[0]->str, r->element[0]->len,
	    r->element[1]->str, r->element[1]->len);
}

int
tb_redis_switch_master(const char *msg, size_t len,
    struct tb_redis_sentinel_addr *a)
{
	const char *w[5];
	size_t wl[5], n = 0, i, start = 0;

	memset(a, 0, sizeof(*a));
	for (i = 0; i <= len; i++) {
		if (i < len && msg[i] != ' ')
			continue;
		if (n == 5)
			break;
		w[n] = msg + start;
		wl[n++] = i - start;
		start = i + 1;
	}
	if (n != 5 || i <= len)
		return sa_fail(a, TB_REDIS_SENTINEL_ELEMENT_COUNT,
		    "not five words", msg, len);
	a->name = w[0];
	a->name_len = wl[0];
	return sa_addr(a, w[3], wl[3], w[4], wl[4]);
}

/* ------------------------------------------------------------------ */
/* the client                                                          */
/* ------------------------------------------------------------------ */

/* CL_SAMPLE bytes at most of what a peer sent are quoted in a log line. */
#define CL_SAMPLE	32
#define CL_SAMPLE_SIZE	(8 + CL_SAMPLE * 4 + 32)

/* For a log line: ': "<p[0..n), CL_SAMPLE bytes at most, escaped>"', and
 * ' ... (N bytes)' when cut; "" when p is NULL. Returns buf. */
static const char *
cl_sample(char buf[CL_SAMPLE_SIZE], const char *p, size_t n)
{
	size_t i, o = 3;

	buf[0] = '\0';
	if (p == NULL)
		return buf;
	memcpy(buf, ": \"", 3);
	for (i = 0; i < n && i < CL_SAMPLE; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			buf[o++] = (char)ch;
		else
			o += (size_t)snprintf(buf + o, CL_SAMPLE_SIZE - o,
			    "\\x%02x", ch);
	}
	if (i < n)
		snprintf(buf + o, CL_SAMPLE_SIZE - o, "\" ... (%zu bytes)", n);
	else
		snprintf(buf + o, CL_SAMPLE_SIZE - o, "\"");
	return buf;
}

enum cl_state {
	CL_IDLE = 0,		/* no data connection; the retry timer may run */
	CL_RESOLVING,		/* asking a sentinel for the master */
	CL_CONNECTING,		/* evdns, then connect(2) in progress */
	CL_HANDSHAKE,		/* AUTH / SELECT / ROLE sent */
	CL_READY,		/* user commands flow */
};

/* What a context's reader may still take (see "replies" below). */
struct cl_guard {
	const redisAsyncContext *ac;	/* whose reader it is */
	const char *channel;		/* cl_subscribe's, or NULL */
	size_t max_bytes;		/* strings of one reply; bytes held */
	size_t max_elements;		/* array elements of one reply */
	size_t bytes;			/* in the reply being read so far */
	size_t elements;
	int lean;			/* TB_REDIS_F_LEAN_REPLIES */
	int push;			/* that reply is a pub/sub one: */
	int message;			/* "message" (0: "subscribe") */
	enum tb_redis_refusal tripped;	/* the reader was stopped: why */
	const char *why;		/* a wrong shape, in words */
	int quote;			/* bad holds the first bytes */
	char bad[CL_SAMPLE];		/* (cl_sample) of the string */
	size_t bad_len;			/* at fault, of bad_len */
};

/* A sentinel's replies are small: [host, port], and the 3-element
 * messages of its feed. Room for a 10 KB host, so that the answer's check
 * can say what is wrong with it. */
#define CL_SENTINEL_MAX_BYTES		(64u << 10)
#define CL_SENTINEL_MAX_ELEMENTS	16

struct tb_redis {
	struct event_base *base;	/* not owned */
	struct tb_redis_conf conf;	/* name, service name: owned copies */
	struct tb_redis_url url;	/* holds the password: cleared at free */
	struct tb_redis_handlers h;
	char *channel;			/* tb_redis_subscribe's, or NULL */

	enum cl_state state;
	redisAsyncContext *ac;		/* data connection or NULL */
	struct event *timer;		/* connect/handshake/command timeout */
	struct event *retry;		/* backoff before the next attempt */
	double backoff;			/* next retry delay, seconds */
	int hs_pending;			/* handshake replies outstanding */
	int ever_connected;
	int in_connect_cb;		/* hiredis' connect callback is running */
	unsigned fails;			/* failed attempts since last ready */
	uint64_t owed;			/* replies owed to the user */
	uint64_t progress;		/* replies seen; for the command timeout */
	uint64_t progress_at_arm;
	char cur_host[256];		/* where the data connection goes */
	uint16_t cur_port;
	char where[280];		/* "host:port" or the socket path */

	/* sentinel mode */
	redisAsyncContext *sac;		/* query, then +switch-master, or NULL */
	struct event *stimer;		/* sentinel_timeout for one query */
	size_t sidx;			/* sentinel to ask next */
	size_t stries;			/* sentinels asked in this round */
	int sac_subscribed;

	/* host names: resolved with evdns (slot 0 data, 1 sentinel) */
	struct evdns_base *dns;		/* created on first use */
	struct evdns_getaddrinfo_request *dns_req[2];

	/* the readers of the data (0) and sentinel (1) contexts; reset at
	 * each connect (a context being freed reads no more) */
	struct cl_guard guard[2];
};

static void cl_start(struct tb_redis *c);
static void cl_connect_addr(struct tb_redis *c, const char *ip);
static void cl_sentinel_connect_addr(struct tb_redis *c, const char *ip);
static void cl_sentinel_next(struct tb_redis *c);
static void cl_dns_cancel(struct tb_redis *c, int slot);
static void cl_fail(struct tb_redis *c, const char *why, int loud);

static void
cl_set_state(struct tb_redis *c, enum cl_state st)
{
	static const char *const names[] = { "idle", "resolving",
	    "connecting", "handshake", "ready" };

	if (c->state != st)
		log_debug("%s: %s -> %s", c->conf.name, names[c->state],
		    names[st]);
	c->state = st;
}

/* Where the data connection goes next; also the text of log lines. */
static void
cl_set_target(struct tb_redis *c, const char *host, size_t hlen,
    uint16_t port)
{
	memcpy(c->cur_host, host, hlen);
	c->cur_host[hlen] = '\0';
	c->cur_port = port;
	if (c->url.kind == TB_REDIS_UNIX)
		snprintf(c->where, sizeof(c->where), "%s", c->url.path);
	else
		snprintf(c->where, sizeof(c->where), "%s:%u", c->cur_host,
		    (unsigned)port);
}

static const char *
cl_sentinel_name(struct tb_redis *c, char *buf, size_t len)
{
	const struct tb_redis_hostport *hp = &c->url.sentinels[c->sidx];

	snprintf(buf, len, "%s:%u", hp->host, (unsigned)hp->port);
	return buf;
}

/* A failed attempt: logged the first time and then every 10th, so an
 * outage gives a few lines, not one per backoff step. */
static void
cl_log_fail(struct tb_redis *c, const char *what)
{
	c->fails++;
	if (c->fails == 1 || c->fails % 10 == 0)
		log_warnx("%s: connect to %s failed: %s (attempt %u)",
		    c->conf.name, c->where, what, c->fails);
}

static void
cl_arm(struct event *ev, double sec)
{
	struct timeval tv = tb_timeval(sec < 0.001 ? 0.001 : sec);

	event_add(ev, &tv);
}

/* Unlink *acp from its client, then free it (hiredis defers that while it
 * is inside one of its callbacks): the callbacks it still runs for it find
 * no owner and do nothing. */
static void
cl_detach(redisAsyncContext **acp)
{
	redisAsyncContext *ac = *acp;

	*acp = NULL;
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

static void
cl_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	cl_start(arg);
}

/* Wait the backoff delay, then try again; the delay doubles up to max. */
static void
cl_schedule_retry(struct tb_redis *c)
{
	if (event_pending(c->retry, EV_TIMEOUT, NULL))
		return;
	cl_arm(c->retry, c->backoff);
	c->backoff *= 2;
	if (c->backoff > c->conf.backoff_max)
		c->backoff = c->conf.backoff_max;
}

/*
 * Drop the data connection (if any). A ready one is logged as lost (when
 * loud: otherwise the caller said why already) and reported to the user
 * with why, last, once everything here is consistent. Safe from any
 * hiredis callback: the context is detached first, and redisAsyncFree
 * defers the free while hiredis is inside a callback. The caller schedules
 * the retry.
 */
static void
cl_close(struct tb_redis *c, const char *why, int loud)
{
	int was_ready = c->state == CL_READY;

	cl_detach(&c->ac);
	cl_set_state(c, CL_IDLE);
	event_del(c->timer);
	cl_dns_cancel(c, 0);
	c->owed = 0;
	if (!was_ready)
		return;
	if (loud)
		log_warnx("%s: connection to %s lost: %s", c->conf.name,
		    c->where, why);
	if (c->h.down != NULL)
		c->h.down(c->h.arg, why);
}

/* Close and try again later: the usual end of a failure. */
static void
cl_fail(struct tb_redis *c, const char *why, int loud)
{
	cl_close(c, why, loud);
	cl_schedule_retry(c);
}

/* connect / handshake / command timeout */
static void
cl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tb_redis *c = arg;

	if (c->state != CL_READY) {
		cl_log_fail(c, "timeout");
		cl_fail(c, "timeout", 0);
		return;
	}
	/* command timeout: no reply at all for a whole period */
	if (c->owed > 0 && c->progress == c->progress_at_arm) {
		cl_fail(c, "command timeout", 1);
		return;
	}
	c->progress_at_arm = c->progress;
	if (c->owed > 0)
		cl_arm(c->timer, c->conf.command_timeout);
}

/*
 * Errors that mean "not here, not now" rather than "never": a server
 * still loading its data, a replica (a demoted master after a failover),
 * a busy script. The user's command is lost with the connection (it hears
 * "down"), and a fresh connection (in sentinel mode after asking the
 * sentinels again) follows.
 */
static int
cl_transient(const redisReply *r)
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
 * Replies: limits, shapes, and lean objects. This and the event hooks
 * after it are the one place that touches hiredis' reader and event
 * internals (STYLE.md habit 17).
 *
 * Limits. hiredis' reader buffers a reply until it is complete, however
 * large its header says it is ("$1000000000" and then the bytes), and
 * allocates an array's element pointers from its header ("*100000000");
 * its maxbuf only frees an idle buffer, and 0.14 has no maxelements. So
 * every context's reader gets the functions below, which count the
 * strings and array elements of the reply being read and stop hiredis
 * (a NULL object: its "Out of memory" error, which ends the connection;
 * guard.tripped says why) once they pass the user's limits; and the read
 * event checks the bytes held before each read (cl_ev_read), which cuts
 * off a string or a line that is still arriving.
 *
 * Shapes. hiredis 0.14.1 asserts on some replies a server may send, and
 * an assert is an abort of the whole process; the same functions refuse
 * those replies first, the same way (see guard_shape).
 *
 * TB_REDIS_F_LEAN_REPLIES. Nearly every reply on a span writer's
 * connection is one integer (LPUSH, EXPIRE) or "+OK" (SET, AUTH, SELECT),
 * and the writer only looks at its type; hiredis' default reader calloc'd
 * a redisReply for each and freed it after the callback. On such a
 * connection a top-level integer or status reply is one shared object
 * that nobody writes to (its value and text are not filled in); anything
 * else (errors, whose text is logged; arrays such as ROLE's; anything
 * nested) is made by hiredis' own functions.
 *
 * hiredis does not export its functions, so they are copied from a reader
 * made for the purpose, once per process.
 */
#ifdef TB_HIREDIS_SIZE_T_ELEMENTS
typedef size_t guard_count;		/* hiredis >= 1.0 */
#else
typedef int guard_count;
#endif

static redisReply lean_integer = { .type = REDIS_REPLY_INTEGER };
static redisReply lean_status = { .type = REDIS_REPLY_STATUS };
static redisReplyObjectFunctions guard_fns;
static const redisReplyObjectFunctions *guard_default;	/* hiredis' own */
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;

/* t's guard; a new reply starts with its top-level object (an array
 * before its elements), so that resets the count. */
static struct cl_guard *
guard_of(const redisReadTask *t)
{
	struct cl_guard *g = t->privdata;

	if (t->parent == NULL) {
		g->bytes = 0;
		g->elements = 0;
		g->push = 0;
	}
	return g;
}

static void *
guard_trip(struct cl_guard *g, enum tb_redis_refusal why)
{
	g->tripped = why;
	return NULL;
}

/* Refuse a reply's shape: why (a constant text) and, if str is not NULL,
 * the first bytes of the string at fault are kept for the log line. */
static enum tb_redis_refusal
guard_bad(struct cl_guard *g, enum tb_redis_refusal r, const char *why,
    const char *str, size_t len)
{
	g->why = why;
	g->quote = str != NULL;
	g->bad_len = str != NULL ? len : 0;
	if (str != NULL)
		memcpy(g->bad, str, len < CL_SAMPLE ? len : CL_SAMPLE);
	return r;
}

/* 1 if str[0..len) is the NUL-terminated s. */
static int
guard_is(const char *str, size_t len, const char *s)
{
	return len == strlen(s) && memcmp(str, s, len) == 0;
}

/*
 * May hiredis 0.14.1 be handed this object: t's, of type (a
 * REDIS_REPLY_*; NIL for either nil), with n elements (an array) or the
 * bytes str[0..len) (a string, status or error; else NULL)? Every object
 * function asks before it makes anything; NONE, or why not (guard_bad).
 *
 * What hiredis cannot take is decided in redisProcessCallbacks (async.c
 * in v0.14.1) once the reply is complete, by asserts:
 *
 *   - :478, a reply that finds no callback waiting in ac->replies on a
 *     context neither subscribed nor monitoring: ":1\r\n:1\r\n" to one
 *     LPUSH. An error reply is spared (:470-475): hiredis takes it for a
 *     server's parting words ("max number of clients reached"), closes
 *     the connection and keeps the text in errstr. So is anything while
 *     a callback waits (:452-454): it gets the reply, whatever its shape.
 *   - on a subscribed context, in __redisGetSubscribeCallback: an array
 *     of fewer than two elements (:378, "*1\r\n$7\r\nmessage\r\n"), a
 *     first or second element that is not a bulk string (:379, :389),
 *     and the third element of an "unsubscribe" (:409), which must be an
 *     integer and is read even when there are two.
 *
 * Nor is the rest harmless there. The callback variable of that loop is
 * not reset between replies (:428), so a non-array (:421, with no
 * command of ours waiting in sub.invalid) or an array naming a channel
 * nobody subscribed to (:391) runs the callback of the reply before it
 * in the same read, with this reply: the sentinel's answer callback, say.
 * An "unsubscribe" we never asked for can clear REDIS_SUBSCRIBED
 * (:412-415), and the next message then meets :478. We never UNSUBSCRIBE,
 * PSUBSCRIBE nor MONITOR; so on a subscribed context a reply is only
 * taken in the shape Redis sends us, ["subscribe", channel, count] or
 * ["message", channel, payload], for the channel we SUBSCRIBEd to.
 *
 * The check runs as a reply starts (its top-level object), not when
 * hiredis dispatches it, and still holds then: hiredis dispatches each
 * reply before it reads the next (redisGetReply), so only our own
 * commands change ac->replies meanwhile, and they only add callbacks (one
 * added while a reply arrives takes it, whatever its shape). A reply
 * refused for finding none began before any command it could answer was
 * written: a callback is queued before its command is.
 */
static enum tb_redis_refusal
guard_shape(struct cl_guard *g, const redisReadTask *t, int type,
    long long n, const char *str, size_t len)
{
	const redisAsyncContext *ac = g->ac;

	if (t->parent == NULL) {	/* a reply starts */
		if (ac->replies.head != NULL || type == REDIS_REPLY_ERROR)
			return TB_REDIS_REFUSE_NONE;
		if (!(ac->c.flags & REDIS_SUBSCRIBED))
			return guard_bad(g, TB_REDIS_REFUSE_UNEXPECTED,
			    "no command waits for it", NULL, 0);
		if (type != REDIS_REPLY_ARRAY || n != 3)
			return guard_bad(g, TB_REDIS_REFUSE_PUBSUB,
			    "not an array of three elements", NULL, 0);
		g->push = 1;
		return TB_REDIS_REFUSE_NONE;
	}
	if (!g->push || t->parent->parent != NULL)
		return TB_REDIS_REFUSE_NONE;	/* (a push has no depth 2) */
	switch (t->idx) {
	case 0:
		if (type != REDIS_REPLY_STRING)
			return guard_bad(g, TB_REDIS_REFUSE_PUBSUB,
			    "the kind is not a bulk string", NULL, 0);
		if (guard_is(str, len, "message"))
			g->message = 1;
		else if (guard_is(str, len, "subscribe"))
			g->message = 0;
		else
			return guard_bad(g, TB_REDIS_REFUSE_PUBSUB,
			    "the kind is not \"message\" nor \"subscribe\"",
			    str, len);
		return TB_REDIS_REFUSE_NONE;
	case 1:
		if (type != REDIS_REPLY_STRING)
			return guard_bad(g, TB_REDIS_REFUSE_PUBSUB,
			    "the channel is not a bulk string", NULL, 0);
		if (g->channel == NULL || !guard_is(str, len, g->channel))
			return guard_bad(g, TB_REDIS_REFUSE_PUBSUB,
			    "not the channel subscribed to", str, len);
		return TB_REDIS_REFUSE_NONE;
	default:
		if (type != (g->message ? REDIS_REPLY_STRING :
		    REDIS_REPLY_INTEGER))
			return guard_bad(g, TB_REDIS_REFUSE_PUBSUB, g->message ?
			    "the message is not a bulk string" :
			    "the subscription count is not an integer",
			    NULL, 0);
		return TB_REDIS_REFUSE_NONE;
	}
}

static void *
guard_string(const redisReadTask *t, char *str, size_t len)
{
	struct cl_guard *g = guard_of(t);
	enum tb_redis_refusal why;

	if ((why = guard_shape(g, t, t->type, 0, str, len)) !=
	    TB_REDIS_REFUSE_NONE)
		return guard_trip(g, why);
	if (len > g->max_bytes - g->bytes)
		return guard_trip(g, TB_REDIS_REFUSE_BYTES);
	g->bytes += len;
	if (g->lean && t->parent == NULL && t->type == REDIS_REPLY_STATUS)
		return &lean_status;
	return guard_default->createString(t, str, len);
}

static void *
guard_array(const redisReadTask *t, guard_count n)
{
	struct cl_guard *g = guard_of(t);
	enum tb_redis_refusal why;

	if ((why = guard_shape(g, t, REDIS_REPLY_ARRAY, (long long)n, NULL,
	    0)) != TB_REDIS_REFUSE_NONE)
		return guard_trip(g, why);
	/* (an int in 0.14, never negative here: -1 is nil) */
	if ((long long)n < 0 || (size_t)n > g->max_elements - g->elements)
		return guard_trip(g, TB_REDIS_REFUSE_ELEMENTS);
	g->elements += (size_t)n;
	return guard_default->createArray(t, n);
}

static void *
guard_integer(const redisReadTask *t, long long v)
{
	struct cl_guard *g = guard_of(t);
	enum tb_redis_refusal why;

	if ((why = guard_shape(g, t, REDIS_REPLY_INTEGER, 0, NULL, 0)) !=
	    TB_REDIS_REFUSE_NONE)
		return guard_trip(g, why);
	if (g->lean && t->parent == NULL)
		return &lean_integer;
	return guard_default->createInteger(t, v);
}

static void *
guard_nil(const redisReadTask *t)
{
	struct cl_guard *g = guard_of(t);
	enum tb_redis_refusal why;

	if ((why = guard_shape(g, t, REDIS_REPLY_NIL, 0, NULL, 0)) !=
	    TB_REDIS_REFUSE_NONE)
		return guard_trip(g, why);
	return guard_default->createNil(t);
}

static void
guard_free(void *reply)
{
	if (reply != &lean_integer && reply != &lean_status)
		guard_default->freeObject(reply);
}

/* Build guard_fns on first use; 0, or -1 when out of memory (the caller
 * fails this connection attempt; the next one tries again). */
static int
guard_init(void)
{
	redisReader *r;
	int rc = 0;

	pthread_mutex_lock(&guard_lock);
	if (guard_default == NULL) {
		r = redisReaderCreate();
		if (r != NULL && r->fn != NULL && r->fn->createString != NULL &&
		    r->fn->createArray != NULL &&
		    r->fn->createInteger != NULL && r->fn->createNil != NULL &&
		    r->fn->freeObject != NULL) {
			guard_fns = *r->fn;
			guard_fns.createString = guard_string;
			guard_fns.createArray = guard_array;
			guard_fns.createInteger = guard_integer;
			guard_fns.createNil = guard_nil;
			guard_fns.freeObject = guard_free;
			guard_default = r->fn;	/* hiredis' static table */
		} else
			rc = -1;
		if (r != NULL)
			redisReaderFree(r);
	}
	pthread_mutex_unlock(&guard_lock);
	return rc;
}

/* Give ac's reader the guard of slot (0 data, 1 sentinel), reset, before
 * any reply is read; 0/-1 (out of memory). */
static int
cl_guard_attach(struct tb_redis *c, redisAsyncContext *ac, int slot)
{
	struct cl_guard *g = &c->guard[slot];

	if (guard_init() == -1)
		return -1;
	memset(g, 0, sizeof(*g));
	g->ac = ac;
	g->max_bytes = slot ? CL_SENTINEL_MAX_BYTES : c->conf.max_reply_bytes;
	g->max_elements = slot ? CL_SENTINEL_MAX_ELEMENTS :
	    c->conf.max_reply_elements;
	g->lean = !slot && (c->conf.flags & TB_REDIS_F_LEAN_REPLIES) != 0;
	ac->c.reader->privdata = g;
	ac->c.reader->fn = &guard_fns;
	return 0;
}

/*
 * SUBSCRIBE ac, c's context of slot, to channel (which outlives ac: the
 * client's copy or a literal), with fn(priv) for its replies; from now
 * on its guard takes the confirmations and messages of that channel and
 * no other pub/sub reply.
 */
static void
cl_subscribe(struct tb_redis *c, int slot, redisAsyncContext *ac,
    redisCallbackFn *fn, void *priv, const char *channel)
{
	c->guard[slot].channel = channel;
	redisAsyncCommand(ac, fn, priv, "SUBSCRIBE %s", channel);
}

/* The client of ac while ac is its live data connection (sentinel 0) or
 * sentinel connection (1), else NULL: a detached context has no owner. */
static struct tb_redis *
cl_owner(const redisAsyncContext *ac, int sentinel)
{
	struct tb_redis *c = ac->data;

	return c != NULL && (sentinel ? c->sac : c->ac) == ac ? c : NULL;
}

#define cl_of(ac)		cl_owner((ac), 0)
#define cl_of_sentinel(ac)	cl_owner((ac), 1)

static void cl_refused(struct tb_redis *c, int slot,
    enum tb_redis_refusal why);

/*
 * The event hooks of a context (ac->ev, what hiredis' adapters fill in).
 * Not hiredis' libevent adapter: its read event goes straight into
 * redisAsyncHandleRead, which reads and buffers. Here the bytes the
 * reader holds for the reply in progress are checked first, so a reply
 * still arriving is cut off at the limit plus one read (16 KiB).
 */
struct cl_ev {
	redisAsyncContext *ac;
	struct event *rev, *wev;
};

#define CL_HELD_SLACK	64	/* RESP framing around the largest string */

static void
cl_ev_read(evutil_socket_t fd, short what, void *arg)
{
	struct cl_ev *e = arg;
	redisAsyncContext *ac = e->ac;
	const redisReader *r = ac->c.reader;
	const struct cl_guard *g = r->privdata;
	struct tb_redis *c;

	if (r->len - r->pos <= g->max_bytes + CL_HELD_SLACK) {
		redisAsyncHandleRead(ac);	/* may free ac and e */
		return;
	}
	/* not inside hiredis: ac (and e) are freed at once */
	if ((c = cl_of(ac)) != NULL)
		cl_refused(c, 0, TB_REDIS_REFUSE_BYTES);
	else if ((c = cl_of_sentinel(ac)) != NULL)
		cl_refused(c, 1, TB_REDIS_REFUSE_BYTES);
}

static void
cl_ev_write(evutil_socket_t fd, short what, void *arg)
{
	struct cl_ev *e = arg;

	redisAsyncHandleWrite(e->ac);
}

static void
cl_ev_add_read(void *arg)
{
	event_add(((struct cl_ev *)arg)->rev, NULL);
}

static void
cl_ev_del_read(void *arg)
{
	event_del(((struct cl_ev *)arg)->rev);
}

static void
cl_ev_add_write(void *arg)
{
	event_add(((struct cl_ev *)arg)->wev, NULL);
}

static void
cl_ev_del_write(void *arg)
{
	event_del(((struct cl_ev *)arg)->wev);
}

/* hiredis calls this once, as it frees ac (maybe from e's own event). */
static void
cl_ev_cleanup(void *arg)
{
	struct cl_ev *e = arg;

	event_free(e->rev);
	event_free(e->wev);
	free(e);
}

/* Hook ac into base (both events armed: the first write event is the
 * connect); 0/-1 (out of memory, ac untouched). */
static int
cl_ev_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct cl_ev *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return -1;
	e->ac = ac;
	e->rev = event_new(base, ac->c.fd, EV_READ, cl_ev_read, e);
	e->wev = event_new(base, ac->c.fd, EV_WRITE, cl_ev_write, e);
	if (e->rev == NULL || e->wev == NULL) {
		if (e->rev != NULL)
			event_free(e->rev);
		if (e->wev != NULL)
			event_free(e->wev);
		free(e);
		return -1;
	}
	ac->ev.data = e;
	ac->ev.addRead = cl_ev_add_read;
	ac->ev.delRead = cl_ev_del_read;
	ac->ev.addWrite = cl_ev_add_write;
	ac->ev.delWrite = cl_ev_del_write;
	ac->ev.cleanup = cl_ev_cleanup;
	event_add(e->rev, NULL);
	event_add(e->wev, NULL);
	return 0;
}

/*
 * A new context of c for slot (0 data, 1 sentinel) to ip:port (ip NULL:
 * the unix socket), guarded and on c's loop, with c as its owner. NULL
 * with the reason in err (hiredis' text or "out of memory").
 */
static redisAsyncContext *
cl_open(struct tb_redis *c, int slot, const char *ip, uint16_t port,
    char *err, size_t errlen)
{
	redisAsyncContext *ac;

	ac = ip == NULL ? redisAsyncConnectUnix(c->url.path) :
	    redisAsyncConnect(ip, port);
	if (ac != NULL && ac->err == 0 && cl_guard_attach(c, ac, slot) == 0 &&
	    cl_ev_attach(ac, c->base) == 0) {
		ac->data = c;
		return ac;
	}
	snprintf(err, errlen, "%s", ac != NULL && ac->err ? ac->errstr :
	    "out of memory");
	if (ac != NULL)
		redisAsyncFree(ac);
	return NULL;
}

const char *const tb_redis_refusal_names[TB_REDIS_REFUSE_N] = {
	"", "too_large", "too_many_elements", "unexpected_reply",
	"bad_pubsub_reply",
};

/* What the user's down handler hears, by enum tb_redis_refusal. */
static const char *const cl_refusal_down[TB_REDIS_REFUSE_N] = {
	"", "reply too large", "reply with too many elements",
	"unexpected reply", "bad pub/sub reply",
};

/*
 * A reply on c's connection of slot (0 data, 1 sentinel) broke its guard's
 * limits or was of a shape hiredis cannot take: count, log, and go on as
 * after any failure of that connection. The context is detached here, or
 * was by its disconnect callback.
 */
static void
cl_refused(struct tb_redis *c, int slot, enum tb_redis_refusal why)
{
	const struct cl_guard *g = &c->guard[slot];
	char what[96 + CL_SAMPLE_SIZE], sname[280], sample[CL_SAMPLE_SIZE];

	STATS_INC(tb_stats.redis_refused[why]);
	if (why == TB_REDIS_REFUSE_BYTES)
		snprintf(what, sizeof(what), "a reply larger than %zu bytes",
		    g->max_bytes);
	else if (why == TB_REDIS_REFUSE_ELEMENTS)
		snprintf(what, sizeof(what), "a reply of more than %zu array "
		    "elements", g->max_elements);
	else
		snprintf(what, sizeof(what), "%s (%s%s)",
		    why == TB_REDIS_REFUSE_UNEXPECTED ? "an unexpected reply" :
		    "a bad pub/sub reply", g->why,
		    cl_sample(sample, g->quote ? g->bad : NULL, g->bad_len));
	if (slot == 1) {
		log_warnx("%s: sentinel %s sent %s; asking the next one",
		    c->conf.name, cl_sentinel_name(c, sname, sizeof(sname)),
		    what);
		cl_sentinel_next(c);
		return;
	}
	log_warnx("%s: %s sent %s; closing the connection", c->conf.name,
	    c->where, what);
	cl_fail(c, cl_refusal_down[why], 0);
}

/* A reply to a user command: to the user, unless it is a transient error
 * (see cl_transient). */
static void
cl_reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct tb_redis *c = cl_of(ac);
	redisReply *r = reply;

	if (r == NULL || c == NULL || c->state != CL_READY)
		return;
	c->progress++;
	if (c->owed > 0)
		c->owed--;
	if (r->type == REDIS_REPLY_ERROR && cl_transient(r)) {
		log_warnx("%s: %s answered %.*s; reconnecting", c->conf.name,
		    c->where, (int)(r->len > 120 ? 120 : r->len), r->str);
		/* inside a hiredis callback: the free is deferred */
		cl_fail(c, "transient error", 0);
		return;
	}
	if (c->h.reply != NULL)
		c->h.reply(c->h.arg, priv, r);
}

/* SUBSCRIBE replies: ["subscribe", ch, n] after every (re)subscribe, then
 * ["message", ch, payload] per PUBLISH. */
static void
cl_sub_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct tb_redis *c = cl_of(ac);
	redisReply *r = reply;
	const redisReply *p;

	if (r == NULL || c == NULL || c->state != CL_READY)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		log_warnx("%s: SUBSCRIBE %s: %.200s", c->conf.name,
		    c->channel, r->str);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_STRING || c->h.message == NULL)
		return;
	if (strcmp(r->element[0]->str, "message") == 0 && r->elements >= 3) {
		p = r->element[2];
		if (p->type == REDIS_REPLY_STRING)
			c->h.message(c->h.arg, TB_REDIS_MESSAGE, p->str,
			    p->len);
	} else if (strcmp(r->element[0]->str, "subscribe") == 0) {
		c->h.message(c->h.arg, TB_REDIS_SUBSCRIBED, NULL, 0);
	}
}

static void
cl_ready(struct tb_redis *c)
{
	cl_set_state(c, CL_READY);
	c->backoff = c->conf.backoff_min;
	c->fails = 0;
	c->owed = 0;
	event_del(c->timer);
	log_info("%s: connected to %s", c->conf.name, c->where);
	if (c->channel != NULL)
		cl_subscribe(c, 0, c->ac, cl_sub_cb, c, c->channel);
	if (c->h.ready != NULL)
		c->h.ready(c->h.arg);
}

/* Replies to AUTH, SELECT and ROLE. */
static void
cl_handshake_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct tb_redis *c = cl_of(ac);
	redisReply *r = reply;
	const char *what = NULL;

	if (r == NULL || c == NULL || c->state != CL_HANDSHAKE)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		/* the reply text, never the password */
		log_warnx("%s: %s refused the handshake: %.*s", c->conf.name,
		    c->where, (int)(r->len > 120 ? 120 : r->len), r->str);
		what = "handshake refused";
	} else if (r->type == REDIS_REPLY_ARRAY) {
		/* ROLE: the first element says what this server is */
		if (r->elements < 1 || r->element[0]->type !=
		    REDIS_REPLY_STRING || strcmp(r->element[0]->str,
		    "master") != 0) {
			log_warnx("%s: %s is not a master, asking the "
			    "sentinels again", c->conf.name, c->where);
			what = "not a master";
		}
	}
	if (what != NULL) {
		cl_fail(c, what, 0);	/* not ready yet: logged above */
		return;
	}
	if (--c->hs_pending == 0)
		cl_ready(c);
}

static void
cl_connect_cb(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct tb_redis *c = cl_of(ac);
	char db[16];

	if (c == NULL)
		return;
	if (status != REDIS_OK) {
		cl_log_fail(c, ac->errstr);
		/* hiredis frees ac after this callback returns: detach only */
		c->ac = NULL;
		ac->data = NULL;
		cl_set_state(c, CL_IDLE);
		event_del(c->timer);
		cl_schedule_retry(c);
		return;
	}
	cl_set_state(c, CL_HANDSHAKE);
	c->hs_pending = 0;
	if (c->url.password[0] != '\0') {
		if (c->url.username[0] != '\0')
			redisAsyncCommand(ac, cl_handshake_cb, NULL,
			    "AUTH %s %s", c->url.username, c->url.password);
		else
			redisAsyncCommand(ac, cl_handshake_cb, NULL,
			    "AUTH %s", c->url.password);
		c->hs_pending++;
	}
	if (c->url.db > 0) {
		snprintf(db, sizeof(db), "%d", c->url.db);
		redisAsyncCommand(ac, cl_handshake_cb, NULL, "SELECT %s", db);
		c->hs_pending++;
	}
	if (c->url.kind == TB_REDIS_SENTINEL) {
		redisAsyncCommand(ac, cl_handshake_cb, NULL, "ROLE");
		c->hs_pending++;
	}
	if (c->hs_pending == 0) {
		/* hiredis sets no REDIS_IN_CALLBACK around this callback, and
		 * writes right after it: tb_redis_flush must not write here */
		c->in_connect_cb = 1;
		cl_ready(c);
		c->in_connect_cb = 0;
	}
}

static void
cl_disconnect_cb(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct tb_redis *c = cl_of(ac);

	if (c == NULL)
		return;
	/* hiredis frees ac after this returns: only detach */
	c->ac = NULL;
	ac->data = NULL;
	if (c->guard[0].tripped != TB_REDIS_REFUSE_NONE)
		cl_refused(c, 0, c->guard[0].tripped);	/* not its OOM */
	else
		cl_fail(c, ac->errstr[0] ? ac->errstr : "closed by server", 1);
}

/* ---- name resolution ---- */

/* 1 for an IPv4 or IPv6 literal (hiredis connects to it without DNS). */
static int
cl_numeric(const char *host)
{
	struct in6_addr a;

	return inet_pton(AF_INET, host, &a) == 1 ||
	    inet_pton(AF_INET6, host, &a) == 1;
}

static void
cl_dns_cancel(struct tb_redis *c, int slot)
{
	struct evdns_getaddrinfo_request *req = c->dns_req[slot];

	c->dns_req[slot] = NULL;
	if (req != NULL)
		evdns_getaddrinfo_cancel(req);	/* callback sees CANCEL */
}

/* Answer for slot 0 (data) or 1 (sentinel): connect to the first IPv4
 * address, else the first address (Redis binds IPv4 loopback by default). */
static void
cl_dns_done(struct tb_redis *c, int slot, int result,
    struct evutil_addrinfo *res)
{
	struct evutil_addrinfo *ai, *pick = NULL;
	char ip[INET6_ADDRSTRLEN], sname[280];
	const void *a;

	c->dns_req[slot] = NULL;
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (pick == NULL || (ai->ai_family == AF_INET &&
		    pick->ai_family != AF_INET))
			pick = ai;
	if (result != 0 || pick == NULL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		if (slot == 0) {
			cl_log_fail(c, result ? evutil_gai_strerror(result) :
			    "no address");
			cl_set_state(c, CL_IDLE);
			event_del(c->timer);
			cl_schedule_retry(c);
		} else {
			log_warnx("%s: sentinel %s: %s", c->conf.name,
			    cl_sentinel_name(c, sname, sizeof(sname)), result ?
			    evutil_gai_strerror(result) : "no address");
			cl_sentinel_next(c);
		}
		return;
	}
	a = pick->ai_family == AF_INET ?
	    (const void *)&((struct sockaddr_in *)(void *)pick->ai_addr)->sin_addr :
	    (const void *)&((struct sockaddr_in6 *)(void *)pick->ai_addr)->sin6_addr;
	evutil_inet_ntop(pick->ai_family, a, ip, sizeof(ip));
	evutil_freeaddrinfo(res);
	if (slot == 0)
		cl_connect_addr(c, ip);
	else
		cl_sentinel_connect_addr(c, ip);
}

static void
cl_dns_data_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	if (result == EVUTIL_EAI_CANCEL)
		return;		/* the client gave up on it, maybe freed */
	cl_dns_done(arg, 0, result, res);
}

static void
cl_dns_sentinel_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	if (result == EVUTIL_EAI_CANCEL)
		return;
	cl_dns_done(arg, 1, result, res);
}

/* Resolve host without blocking; the answer continues in cl_dns_done. */
static void
cl_resolve(struct tb_redis *c, int slot, const char *host)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	if (c->dns == NULL && (c->dns = evdns_base_new(c->base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL) {
		cl_dns_done(c, slot, EVUTIL_EAI_FAIL, NULL);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	cl_dns_cancel(c, slot);
	/* may answer at once (hosts file) and then returns NULL */
	req = evdns_getaddrinfo(c->dns, host, NULL, &hints,
	    slot == 0 ? cl_dns_data_cb : cl_dns_sentinel_cb, c);
	if (req != NULL)
		c->dns_req[slot] = req;
}

/* ---- the data connection ---- */

/* Open the data connection to cur_host:cur_port (or the unix path). */
static void
cl_connect(struct tb_redis *c)
{
	if (c->ever_connected && c->h.reconnecting != NULL)
		c->h.reconnecting(c->h.arg);
	c->ever_connected = 1;
	cl_dns_cancel(c, 0);	/* an answer for an earlier target */
	cl_set_state(c, CL_CONNECTING);
	cl_arm(c->timer, c->conf.connect_timeout);	/* covers DNS too */
	if (c->url.kind == TB_REDIS_UNIX)
		cl_connect_addr(c, NULL);
	else if (cl_numeric(c->cur_host))
		cl_connect_addr(c, c->cur_host);
	else
		cl_resolve(c, 0, c->cur_host);
}

/* Connect the data connection to ip (NULL: the unix socket). */
static void
cl_connect_addr(struct tb_redis *c, const char *ip)
{
	redisAsyncContext *ac;
	char err[128];

	if ((ac = cl_open(c, 0, ip, c->cur_port, err, sizeof(err))) == NULL) {
		cl_log_fail(c, err);
		cl_set_state(c, CL_IDLE);
		event_del(c->timer);
		cl_schedule_retry(c);
		return;
	}
	redisAsyncSetConnectCallback(ac, cl_connect_cb);
	redisAsyncSetDisconnectCallback(ac, cl_disconnect_cb);
	c->ac = ac;
}

/* ---- sentinel ---- */

static void cl_sentinel_query(struct tb_redis *c);

static void
cl_sentinel_drop(struct tb_redis *c)
{
	cl_detach(&c->sac);
	c->sac_subscribed = 0;
	event_del(c->stimer);
	cl_dns_cancel(c, 1);
}

/* This sentinel did not answer usefully: ask the next, or back off after a
 * whole round. */
static void
cl_sentinel_next(struct tb_redis *c)
{
	cl_sentinel_drop(c);
	c->sidx = (c->sidx + 1) % c->url.n_sentinels;
	if (++c->stries < c->url.n_sentinels) {
		cl_sentinel_query(c);
		return;
	}
	c->stries = 0;
	if (c->state == CL_RESOLVING)
		cl_set_state(c, CL_IDLE);
	cl_schedule_retry(c);
}

/* Point the data connection at hp (a master a sentinel named). */
static void
cl_use_master(struct tb_redis *c, const struct tb_redis_hostport *hp)
{
	int same = c->cur_port == hp->port &&
	    strcmp(c->cur_host, hp->host) == 0;

	if (c->ac != NULL && same)
		return;	/* already there */
	if (c->ac != NULL)
		cl_close(c, "sentinel named a new master", 1);
	if (!same)
		c->backoff = c->conf.backoff_min;	/* a new master */
	cl_set_target(c, hp->host, strlen(hp->host), hp->port);
	event_del(c->retry);
	cl_connect(c);
}

/* The current sentinel's answer (what: "answer", "+switch-master
 * message") named no master to use: count and log it. The caller asks
 * the next sentinel, so that a round of them is followed by the backoff. */
static void
cl_sentinel_unusable(struct tb_redis *c, const char *what,
    const struct tb_redis_sentinel_addr *a)
{
	char sname[280], sample[CL_SAMPLE_SIZE];

	STATS_INC(tb_stats.sentinel_unusable[a->err]);
	cl_sentinel_name(c, sname, sizeof(sname));
	if (a->err == TB_REDIS_SENTINEL_UNKNOWN_MASTER)
		log_warnx("%s: sentinel %s does not know master %s",
		    c->conf.name, sname, c->conf.sentinel_service_name);
	else
		log_warnx("%s: sentinel %s: unusable %s for master %s: %s%s",
		    c->conf.name, sname, what, c->conf.sentinel_service_name,
		    a->why, cl_sample(sample, a->bad, a->bad_len));
}

/* Messages on +switch-master: "<name> <oldip> <oldport> <newip> <newport>" */
static void
cl_sentinel_msg_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct tb_redis *c = cl_of_sentinel(ac);
	const char *svc;
	redisReply *r = reply, *m;
	struct tb_redis_sentinel_addr a;

	if (r == NULL || c == NULL)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0)
		return;		/* "subscribe", the confirmation */
	m = r->element[2];
	svc = c->conf.sentinel_service_name;
	if (m->type != REDIS_REPLY_STRING) {
		memset(&a, 0, sizeof(a));
		a.err = TB_REDIS_SENTINEL_REPLY_TYPE;
		a.why = "not a string";
	} else if (tb_redis_switch_master(m->str, m->len, &a) == 0 ||
	    a.name != NULL) {
		if (a.name_len != strlen(svc) ||
		    memcmp(a.name, svc, a.name_len) != 0)
			return;		/* another master's */
	}
	if (a.err != TB_REDIS_SENTINEL_OK) {
		/* a failover we cannot follow: ask (the next sentinel) again */
		cl_sentinel_unusable(c, "+switch-master message", &a);
		cl_sentinel_next(c);
		return;
	}
	log_info("%s: sentinel: master %s switched to %s:%u", c->conf.name,
	    svc, a.master.host, (unsigned)a.master.port);
	cl_use_master(c, &a.master);
}

/* Reply to SENTINEL get-master-addr-by-name. */
static void
cl_sentinel_addr_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct tb_redis *c = cl_of_sentinel(ac);
	struct tb_redis_sentinel_addr a;

	if (reply == NULL || c == NULL)
		return;
	event_del(c->stimer);
	if (tb_redis_sentinel_answer(reply, &a) == -1) {
		cl_sentinel_unusable(c, "answer", &a);
		cl_sentinel_next(c);
		return;
	}
	c->stries = 0;
	/* keep this connection to hear about failovers */
	cl_subscribe(c, 1, ac, cl_sentinel_msg_cb, NULL, "+switch-master");
	c->sac_subscribed = 1;
	if (c->state == CL_RESOLVING)
		cl_set_state(c, CL_IDLE);
	cl_use_master(c, &a.master);
}

static void
cl_sentinel_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tb_redis *c = arg;
	char sname[280];

	log_warnx("%s: sentinel %s did not answer in time", c->conf.name,
	    cl_sentinel_name(c, sname, sizeof(sname)));
	cl_sentinel_next(c);
}

static void
cl_sentinel_connect_cb(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct tb_redis *c = cl_of_sentinel(ac);
	char sname[280];

	if (c == NULL || status == REDIS_OK)
		return;
	c->sac = NULL;	/* hiredis frees it after we return */
	ac->data = NULL;
	log_warnx("%s: sentinel %s: %s", c->conf.name,
	    cl_sentinel_name(c, sname, sizeof(sname)), ac->errstr);
	cl_sentinel_next(c);
}

static void
cl_sentinel_disconnect_cb(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct tb_redis *c = cl_of_sentinel(ac);
	int subscribed;

	if (c == NULL)
		return;
	subscribed = c->sac_subscribed;
	c->sac = NULL;
	ac->data = NULL;
	c->sac_subscribed = 0;
	event_del(c->stimer);
	if (c->guard[1].tripped != TB_REDIS_REFUSE_NONE) {
		cl_refused(c, 1, c->guard[1].tripped);
		return;
	}
	if (!subscribed) {
		cl_sentinel_next(c);
		return;
	}
	/* lost the failover feed: ask again (the data connection stays if
	 * the master did not change) */
	log_warnx("%s: sentinel connection lost, asking again", c->conf.name);
	cl_schedule_retry(c);
}

static void
cl_sentinel_query(struct tb_redis *c)
{
	const struct tb_redis_hostport *hp = &c->url.sentinels[c->sidx];

	cl_sentinel_drop(c);
	if (c->ac == NULL)
		cl_set_state(c, CL_RESOLVING);
	cl_arm(c->stimer, c->conf.sentinel_timeout);	/* covers DNS too */
	if (cl_numeric(hp->host))
		cl_sentinel_connect_addr(c, hp->host);
	else
		cl_resolve(c, 1, hp->host);
}

/* Connect to the current sentinel at ip and ask for the master. */
static void
cl_sentinel_connect_addr(struct tb_redis *c, const char *ip)
{
	const struct tb_redis_hostport *hp = &c->url.sentinels[c->sidx];
	redisAsyncContext *ac;
	char sname[280], err[128];

	if ((ac = cl_open(c, 1, ip, hp->port, err, sizeof(err))) == NULL) {
		log_warnx("%s: sentinel %s: %s", c->conf.name,
		    cl_sentinel_name(c, sname, sizeof(sname)), err);
		/* stries bounds the recursion to one round */
		cl_sentinel_next(c);
		return;
	}
	redisAsyncSetConnectCallback(ac, cl_sentinel_connect_cb);
	redisAsyncSetDisconnectCallback(ac, cl_sentinel_disconnect_cb);
	c->sac = ac;
	redisAsyncCommand(ac, cl_sentinel_addr_cb, NULL,
	    "SENTINEL get-master-addr-by-name %s",
	    c->conf.sentinel_service_name);
}

/* Next attempt: direct connect, or ask the sentinels. */
static void
cl_start(struct tb_redis *c)
{
	if (c->url.kind == TB_REDIS_SENTINEL) {
		if (c->sac == NULL || !c->sac_subscribed || c->ac == NULL)
			cl_sentinel_query(c);
		return;
	}
	if (c->ac != NULL || c->state != CL_IDLE)
		return;
	cl_connect(c);
}

/* ------------------------------------------------------------------ */
/* public API                                                          */
/* ------------------------------------------------------------------ */

struct tb_redis *
tb_redis_new(struct event_base *base, const struct tb_redis_conf *conf,
    const struct tb_redis_handlers *h, char *err, size_t errlen)
{
	struct tb_redis *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto nomem;
	c->base = base;
	c->conf = *conf;
	c->url = *conf->url;
	c->conf.url = NULL;	/* copied; the caller's may go */
	if (h != NULL)
		c->h = *h;
	c->conf.name = strdup(conf->name != NULL ? conf->name : "redis");
	c->conf.sentinel_service_name = strdup(conf->sentinel_service_name ?
	    conf->sentinel_service_name : "mymaster");
	if (c->conf.sentinel_timeout <= 0)
		c->conf.sentinel_timeout = 0.1;
	if (c->conf.connect_timeout <= 0)
		c->conf.connect_timeout = 2;
	if (c->conf.command_timeout <= 0)
		c->conf.command_timeout = 5;
	if (c->conf.backoff_min <= 0)
		c->conf.backoff_min = 0.1;
	if (c->conf.backoff_max <= 0)
		c->conf.backoff_max = 5;
	if (c->conf.max_reply_bytes == 0)
		c->conf.max_reply_bytes = 1u << 20;
	if (c->conf.max_reply_elements == 0)
		c->conf.max_reply_elements = 1024;
	c->backoff = c->conf.backoff_min;
	if (c->url.kind == TB_REDIS_TCP)
		cl_set_target(c, c->url.addr.host, strlen(c->url.addr.host),
		    c->url.addr.port);
	else
		cl_set_target(c, "", 0, 0);
	c->timer = evtimer_new(base, cl_timer_cb, c);
	c->retry = evtimer_new(base, cl_retry_cb, c);
	c->stimer = evtimer_new(base, cl_sentinel_timeout_cb, c);
	if (c->conf.name == NULL || c->conf.sentinel_service_name == NULL ||
	    c->timer == NULL || c->retry == NULL || c->stimer == NULL)
		goto nomem;
	/* first attempt from the loop, so a caller outside it is fine */
	cl_arm(c->retry, 0);
	return c;
nomem:
	tb_redis_free(c);
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "out of memory");
	return NULL;
}

/* One more reply owed: the command timeout runs from the first one. */
static void
cl_owe(struct tb_redis *c)
{
	if (c->owed++ == 0) {
		c->progress_at_arm = c->progress;
		cl_arm(c->timer, c->conf.command_timeout);
	}
}

int
tb_redis_command(struct tb_redis *c, void *cmd_arg, const char *fmt, ...)
{
	va_list ap;
	int rc;

	if (c->state != CL_READY)
		return -1;
	va_start(ap, fmt);
	rc = redisvAsyncCommand(c->ac, cl_reply_cb, cmd_arg, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK)
		return -1;	/* disconnecting: "down" follows */
	cl_owe(c);
	return 0;
}

int
tb_redis_formatted(struct tb_redis *c, void *cmd_arg, const char *cmd,
    size_t len)
{
	if (c->state != CL_READY ||
	    redisAsyncFormattedCommand(c->ac, cl_reply_cb, cmd_arg, cmd,
	    len) != REDIS_OK)
		return -1;
	cl_owe(c);
	return 0;
}

/*
 * Write now instead of from the adapter's write event in the next loop
 * iteration: that costs one epoll_ctl to add EPOLLOUT and one to remove it
 * per batch, plus a wakeup. Added and removed within one iteration, the
 * loop's epoll changelist cancels both.
 */
void
tb_redis_flush(struct tb_redis *c)
{
	if (c->state != CL_READY || c->in_connect_cb ||
	    (c->ac->c.flags & REDIS_IN_CALLBACK))
		return;
	redisAsyncHandleWrite(c->ac);	/* a failed write ends in "down" */
}

int
tb_redis_subscribe(struct tb_redis *c, const char *channel)
{
	if (c->channel != NULL || (c->channel = strdup(channel)) == NULL)
		return -1;
	if (c->state == CL_READY)
		cl_subscribe(c, 0, c->ac, cl_sub_cb, c, c->channel);
	return 0;
}

int
tb_redis_is_ready(const struct tb_redis *c)
{
	return c->state == CL_READY;
}

const char *
tb_redis_server(const struct tb_redis *c)
{
	return c->state == CL_READY ? c->where : "";
}

void
tb_redis_free(struct tb_redis *c)
{
	if (c == NULL)
		return;
	if (c->stimer != NULL)	/* NULL: tb_redis_new ran out of memory */
		cl_sentinel_drop(c);
	cl_dns_cancel(c, 0);
	cl_detach(&c->ac);
	if (c->dns != NULL)
		evdns_base_free(c->dns, 0);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->retry != NULL)
		event_free(c->retry);
	if (c->stimer != NULL)
		event_free(c->stimer);
	free((char *)c->conf.name);
	free((char *)c->conf.sentinel_service_name);
	free(c->channel);
	explicit_bzero(&c->url, sizeof(c->url));
	free(c);
}
