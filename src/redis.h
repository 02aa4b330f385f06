/*
 * redis.h: the one Redis client (STYLE.md habits 11 and 16). Every user of
 * Redis (the span sink on each worker, the policy source on the control
 * thread) goes through it; none of them touches hiredis' connection API.
 *
 * It owns:
 *   - the connection string, parsed once into a struct tb_redis_url by
 *     tb_redis_url_parse() (config validation uses the same function, so a
 *     bad string is a FILE:LINE error at load time);
 *   - name resolution with evdns, never blocking the loop: hiredis'
 *     redisAsyncConnect(name) would call getaddrinfo(3) on it. Names are
 *     resolved at each connection attempt, not once at load time as upstream
 *     hosts are, because a sentinel may name a new master at any time and a
 *     Redis service name may move;
 *   - AUTH [user] password and SELECT db after every connect, and ROLE in
 *     sentinel mode (a demoted master is left for the sentinels' new one);
 *   - a connect timeout (DNS, connect and those replies) and a command
 *     timeout (replies owed but none came for that long);
 *   - reconnection with exponential backoff up to a cap;
 *   - detach on disconnect: a context is unlinked from its client before it
 *     is freed, so callbacks hiredis runs while tearing it down find nothing
 *     and do nothing; the user hears "down" once and no reply after it;
 *   - Sentinel discovery (SENTINEL get-master-addr-by-name, the next
 *     sentinel on failure, timeout or an unusable answer) and the
 *     +switch-master feed;
 *   - SUBSCRIBE to one channel, renewed after every reconnect;
 *   - limits on what a server may send: a reply larger than the user
 *     expects (max_reply_bytes, max_reply_elements) closes the connection
 *     before it is buffered, and so does a reply that hiredis 0.14 would
 *     abort the process on (one no command waits for; on a subscribed
 *     connection, anything but a message or confirmation for its
 *     channel); each is counted (tb_stats) by enum tb_redis_refusal.
 *
 * Names: the module is redis.c, but hiredis already owns the redis* names
 * (redisAsyncContext, redisReply, redisAsyncCommand...), so everything here
 * is tb_redis_* / TB_REDIS_*, which cannot collide with it.
 *
 * One struct tb_redis is one server connection on one event_base, used only
 * from that loop's thread. Handlers are called from the loop; none of them
 * may free the client it is called for (STYLE.md habit 6).
 */
#ifndef TB_REDIS_H
#define TB_REDIS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;

#define TB_REDIS_MAX_SENTINELS	8

enum tb_redis_kind {
	TB_REDIS_TCP = 0,	/* redis://[[user]:password@]host[:port][/db][?db=N] */
	TB_REDIS_UNIX,		/* unix://[[user]:password@]/path[?db=N] */
	TB_REDIS_SENTINEL,	/* redissentinel://[[user]:password@]h[:p][,h[:p]...][/db][?db=N] */
};

struct tb_redis_hostport {
	char host[256];		/* IPv6 without brackets */
	uint16_t port;
};

/* A parsed connection string; plain data, no pointers to free. It holds
 * the password: callers clear it (explicit_bzero) when they are done. */
struct tb_redis_url {
	enum tb_redis_kind kind;
	struct tb_redis_hostport addr;	/* TB_REDIS_TCP; port 6379 by default */
	char path[108];			/* TB_REDIS_UNIX (sun_path size) */
	struct tb_redis_hostport sentinels[TB_REDIS_MAX_SENTINELS];
	size_t n_sentinels;		/* TB_REDIS_SENTINEL; port 26379 by default */
	char username[128];		/* "" = none (AUTH password) */
	char password[256];		/* percent-decoded; "" = no AUTH */
	int db;				/* SELECT when > 0 */
};

/*
 * Parse a connection string in osprofiler's (redis-py's from_url) syntax,
 * see enum tb_redis_kind; schemes are case-insensitive, rediss:// (TLS) is
 * refused. Returns 0, or -1 with a one-line reason in err that never
 * contains the password (nor any other part of the input). Pure: no I/O,
 * no allocation; s may be NULL.
 */
int tb_redis_url_parse(const char *s, struct tb_redis_url *out, char *err,
    size_t errlen);

/* Constructor input; zero / NULL fields take the default shown. */
struct tb_redis_conf {
	const struct tb_redis_url *url;	/* required; copied */
	const char *name;		/* prefix of log lines, "redis" */
	const char *sentinel_service_name;	/* "mymaster" */
	double sentinel_timeout;	/* one sentinel question, DNS included: 0.1 s */
	double connect_timeout;		/* DNS + connect + AUTH/SELECT/ROLE: 2 s */
	double command_timeout;		/* replies owed, none for this long: 5 s */
	double backoff_min;		/* 0.1 s, doubling per failure ... */
	double backoff_max;		/* ... up to 5 s */
	/* The largest reply the user expects: its strings together, and the
	 * bytes held while it is incomplete, 1 MiB; its array elements,
	 * nested ones included, 1024. A server that sends more is cut off
	 * (logged, counted, reconnect after the backoff). Sentinel
	 * connections have their own small limits. */
	size_t max_reply_bytes;
	unsigned max_reply_elements;
	unsigned flags;			/* TB_REDIS_F_* */
};

/*
 * Replies without allocation: top-level integer and status replies to this
 * client's commands are one shared object whose value and text are not
 * filled in (only ->type is meaningful). For a writer that only looks at
 * the type of the answers to LPUSH, SET and EXPIRE; errors, strings and
 * arrays are whole.
 */
#define TB_REDIS_F_LEAN_REPLIES	0x01

enum tb_redis_event {
	TB_REDIS_SUBSCRIBED = 0,	/* SUBSCRIBE confirmed (after every connect) */
	TB_REDIS_MESSAGE,		/* a PUBLISH on the channel: data, len */
};

/* What the client tells its user; arg is handlers.arg. Every member but
 * arg may be NULL. */
struct tb_redis_handlers {
	/* Connected and AUTH/SELECT (and ROLE) done: commands may be sent. */
	void (*ready)(void *arg);
	/* One reply to tb_redis_command/tb_redis_formatted, in order; cmd_arg
	 * is what that call passed. Never NULL, never after "down". Error
	 * replies come here too, except the transient ones (LOADING,
	 * READONLY, MASTERDOWN, BUSY, TRYAGAIN), after which the client
	 * reconnects and calls down instead. */
	void (*reply)(void *arg, void *cmd_arg, const struct redisReply *r);
	/* A ready connection is gone (why: a constant-ish text for logs);
	 * every reply still owed is lost. The client reconnects by itself. */
	void (*down)(void *arg, const char *why);
	/* Subscription events for tb_redis_subscribe's channel. */
	void (*message)(void *arg, enum tb_redis_event ev, const char *data,
	    size_t len);
	/* A connection attempt after the first one starts (for metrics). */
	void (*reconnecting)(void *arg);
	void *arg;
};

/* Why a reply was refused: the reason label of
 * tracebridge_redis_replies_refused_total. */
enum tb_redis_refusal {
	TB_REDIS_REFUSE_NONE = 0,
	TB_REDIS_REFUSE_BYTES,		/* "too_large": max_reply_bytes */
	TB_REDIS_REFUSE_ELEMENTS,	/* "too_many_elements" */
	TB_REDIS_REFUSE_UNEXPECTED,	/* "unexpected_reply": no command
					 * waits for it (not subscribed) */
	TB_REDIS_REFUSE_PUBSUB,		/* "bad_pubsub_reply": subscribed,
					 * not ["message" | "subscribe",
					 * the channel, payload] */
	TB_REDIS_REFUSE_N,
};

/* The labels, by enum tb_redis_refusal ("" for NONE). */
extern const char *const tb_redis_refusal_names[TB_REDIS_REFUSE_N];

/* Why a sentinel's answer names no master we can connect to: the reason
 * label of tracebridge_redis_sentinel_unusable_answers_total. */
enum tb_redis_sentinel_err {
	TB_REDIS_SENTINEL_OK = 0,
	TB_REDIS_SENTINEL_UNKNOWN_MASTER,	/* nil: no master of that name */
	TB_REDIS_SENTINEL_ERROR_REPLY,		/* -ERR, -NOAUTH ... */
	TB_REDIS_SENTINEL_REPLY_TYPE,		/* not what was asked for */
	TB_REDIS_SENTINEL_ELEMENT_COUNT,	/* not [host, port]; not 5 words */
	TB_REDIS_SENTINEL_HOST,			/* not a host name or address */
	TB_REDIS_SENTINEL_PORT,			/* not a number in 1..65535 */
	TB_REDIS_SENTINEL_NERR,
};

/* The labels, by enum tb_redis_sentinel_err ("" for OK). */
extern const char *const tb_redis_sentinel_err_names[TB_REDIS_SENTINEL_NERR];

/* What the two sentinel answer checks below found. Pointers point into
 * their input. */
struct tb_redis_sentinel_addr {
	struct tb_redis_hostport master;	/* OK: where the master is */
	enum tb_redis_sentinel_err err;
	const char *why;		/* not OK: a constant text for logs */
	const char *bad;		/* the offending bytes, or NULL ... */
	size_t bad_len;			/* ... and how many (log a few) */
	const char *name;		/* +switch-master: the master's name */
	size_t name_len;		/* (NULL, 0: not that far) */
};

/*
 * Check r, a reply to SENTINEL get-master-addr-by-name: an array of two
 * strings, a host (a name or an IP address, at most 255 bytes of
 * letters, digits, '.', '-', '_', ':') and a port (decimal, 1..65535).
 * 0 with out->master set, or -1 with out->err, why and bad set. Pure.
 */
int tb_redis_sentinel_answer(const struct redisReply *r,
    struct tb_redis_sentinel_addr *out);

/*
 * Check msg[0..len), a +switch-master message "<name> <old-host>
 * <old-port> <new-host> <new-port>" (words separated by one space):
 * out->name is set once there are five words (the caller ignores other
 * masters' messages); 0 with out->master the new address, or -1 as
 * above. Pure; msg need not be terminated.
 */
int tb_redis_switch_master(const char *msg, size_t len,
    struct tb_redis_sentinel_addr *out);

struct tb_redis;

/*
 * Create a client on base (which must outlive it) and start connecting
 * from the loop (so a caller outside the loop is fine). conf, its url and
 * h are copied. NULL with a reason in err only for ENOMEM; a Redis that is
 * down is not an error (the client keeps trying).
 */
struct tb_redis *tb_redis_new(struct event_base *base,
    const struct tb_redis_conf *conf, const struct tb_redis_handlers *h,
    char *err, size_t errlen);

/*
 * Queue one command (hiredis format, e.g. "GET %s") or one ready-made RESP
 * command of len bytes; its reply goes to handlers.reply with cmd_arg.
 * Commands queued back to back form a pipeline, written at the next loop
 * turn or by tb_redis_flush(). Returns 0, or -1 when not ready (nothing
 * queued, no reply will come).
 */
int tb_redis_command(struct tb_redis *c, void *cmd_arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int tb_redis_formatted(struct tb_redis *c, void *cmd_arg, const char *cmd,
    size_t len);

/*
 * Write what is queued now rather than from the next loop turn (saves the
 * epoll_ctl pair of a write event per batch). Does nothing inside a
 * hiredis callback, where a failed write would free the context under its
 * caller; the write event does it then. A failed write ends in "down".
 */
void tb_redis_flush(struct tb_redis *c);

/*
 * SUBSCRIBE to channel (copied) now if ready and after every connect;
 * events go to handlers.message. One channel per client, and a subscribed
 * client sends no other commands (Redis' rule). 0, or -1 for ENOMEM or a
 * second channel.
 */
int tb_redis_subscribe(struct tb_redis *c, const char *channel);

/* 1 when ready (see handlers.ready), else 0. */
int tb_redis_is_ready(const struct tb_redis *c);

/* "host:port" (or the socket path) of the server in use when ready, else
 * "". Valid until the next call into the client. */
const char *tb_redis_server(const struct tb_redis *c);

/* Disconnect and free; no handler runs. NULL is fine. Not from inside one
 * of c's own handlers. */
void tb_redis_free(struct tb_redis *c);

#endif
