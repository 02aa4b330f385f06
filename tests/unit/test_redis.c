/*
 * test_redis.c: the one Redis client (src/redis.c).
 *
 * The connection string parser: every accepted form, a table of hostile
 * inputs with the exact message expected, every prefix of every valid
 * string placed against a guard page (an answer, never a read past the
 * end), limits at and one past each bound, and no message that quotes the
 * password.
 *
 * The client against fake servers run on the test's own event loop (so
 * every byte and every timing is the test's to choose): AUTH and SELECT
 * before any command, replies in order with their argument, detach (no
 * reply after "down", no handler after free), connect, handshake and
 * command timeouts, the transient errors, backoff up to its cap,
 * SUBSCRIBE renewed after a reconnect, unix sockets, evdns for a name,
 * and Sentinel: the next sentinel when one is down, ROLE, and
 * +switch-master moving the connection while it is up.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis.h"
#include "tb_test.h"

/* ------------------------------------------------------------------ */
/* parser                                                              */
/* ------------------------------------------------------------------ */

static void
test_url_good(void)
{
	struct tb_redis_url u;
	char err[256];

	CHECK(tb_redis_url_parse("redis://127.0.0.1:6379", &u, err,
	    sizeof(err)) == 0 && u.kind == TB_REDIS_TCP &&
	    strcmp(u.addr.host, "127.0.0.1") == 0 && u.addr.port == 6379 &&
	    u.db == 0 && u.password[0] == '\0');
	CHECK(tb_redis_url_parse("redis://localhost", &u, err, sizeof(err)) == 0 &&
	    strcmp(u.addr.host, "localhost") == 0 && u.addr.port == 6379);
	CHECK(tb_redis_url_parse("REDIS://h:1/15", &u, err, sizeof(err)) == 0 &&
	    u.addr.port == 1 && u.db == 15);
	CHECK(tb_redis_url_parse("redis://h/", &u, err, sizeof(err)) == 0 &&
	    u.db == 0);
	CHECK(tb_redis_url_parse("redis://:s%40cr%3At@h:7000/2", &u, err,
	    sizeof(err)) == 0 && strcmp(u.password, "s@cr:t") == 0 &&
	    u.username[0] == '\0' && u.db == 2 && u.addr.port == 7000);
	CHECK(tb_redis_url_parse("redis://user:p@ss@h", &u, err,
	    sizeof(err)) == 0 && strcmp(u.username, "user") == 0 &&
	    strcmp(u.password, "p@ss") == 0 && strcmp(u.addr.host, "h") == 0);
	CHECK(tb_redis_url_parse("redis://[::1]:6380", &u, err, sizeof(err)) == 0 &&
	    strcmp(u.addr.host, "::1") == 0 && u.addr.port == 6380);
	CHECK(tb_redis_url_parse("redis://[::1]", &u, err, sizeof(err)) == 0 &&
	    u.addr.port == 6379);
	CHECK(tb_redis_url_parse("redis://h?db=3", &u, err, sizeof(err)) == 0 &&
	    u.db == 3);
	CHECK(tb_redis_url_parse("redis://my-redis_1.example.net:00080", &u,
	    err, sizeof(err)) == 0 && u.addr.port == 80 &&
	    strcmp(u.addr.host, "my-redis_1.example.net") == 0);
	CHECK(tb_redis_url_parse("unix:///run/redis/redis.sock", &u, err,
	    sizeof(err)) == 0 && u.kind == TB_REDIS_UNIX &&
	    strcmp(u.path, "/run/redis/redis.sock") == 0 && u.db == 0);
	CHECK(tb_redis_url_parse("unix:///tmp/r.sock?db=4", &u, err,
	    sizeof(err)) == 0 && strcmp(u.path, "/tmp/r.sock") == 0 &&
	    u.db == 4);
	CHECK(tb_redis_url_parse("unix://:pw@/tmp/r.sock?db=1", &u, err,
	    sizeof(err)) == 0 && strcmp(u.password, "pw") == 0 &&
	    strcmp(u.path, "/tmp/r.sock") == 0 && u.db == 1);
	CHECK(tb_redis_url_parse("Unix://u:pw@/a/b", &u, err, sizeof(err)) == 0 &&
	    strcmp(u.username, "u") == 0 && strcmp(u.path, "/a/b") == 0);
	CHECK(tb_redis_url_parse("redissentinel://10.0.0.1:26379", &u, err,
	    sizeof(err)) == 0 && u.kind == TB_REDIS_SENTINEL &&
	    u.n_sentinels == 1 && u.sentinels[0].port == 26379);
	CHECK(tb_redis_url_parse("redissentinel://:pw@a:1,b,[::1]:3/2", &u, err,
	    sizeof(err)) == 0 && u.n_sentinels == 3 &&
	    strcmp(u.sentinels[1].host, "b") == 0 &&
	    u.sentinels[1].port == 26379 &&
	    strcmp(u.sentinels[2].host, "::1") == 0 &&
	    u.sentinels[2].port == 3 && u.db == 2 &&
	    strcmp(u.password, "pw") == 0);
	CHECK(tb_redis_url_parse("redissentinel://s1?db=5", &u, err,
	    sizeof(err)) == 0 && u.n_sentinels == 1 && u.db == 5);
	/* what a successful parse leaves in err: untouched */
	strcpy(err, "x");
	CHECK(tb_redis_url_parse("redis://h", &u, err, sizeof(err)) == 0 &&
	    strcmp(err, "x") == 0);
}

#define FORMS "expected a redis://, unix://, redissentinel:// or otlp:// URL"

static const struct {
	const char *s, *why;	/* the exact message */
} hostile[] = {
	{ "", FORMS },
	{ "redis://", FORMS },
	{ "unix://", FORMS },
	{ "redissentinel://", FORMS },
	{ "127.0.0.1:6379", FORMS },
	{ "http://h", FORMS },
	{ "mongodb://h", FORMS },
	{ "redis:/h", FORMS },
	{ "redis//:pw@h", FORMS },
	{ " redis://h", FORMS },
	{ "rediss://h", "rediss:// (TLS) is not supported" },
	{ "REDISS://:pw@h", "rediss:// (TLS) is not supported" },
	{ "redis://:6379", "missing host" },
	{ "redis:///0", "missing host" },
	{ "redis://?db=1", "missing host" },
	{ "redis://:pw@", "missing host" },
	{ "redis://h:", "port must be a number in 1..65535" },
	{ "redis://h:0", "port must be a number in 1..65535" },
	{ "redis://h:65536", "port must be a number in 1..65535" },
	{ "redis://h:12x", "port must be a number in 1..65535" },
	{ "redis://h:-1", "port must be a number in 1..65535" },
	{ "redis://h:+1", "port must be a number in 1..65535" },
	{ "redis://h:00000000001", "port must be a number in 1..65535" },
	{ "redis://h:99999999999999999999999", "port must be a number in 1..65535" },
	{ "redis://h:1:2", "port must be a number in 1..65535" },
	{ "redis://h/x", "the path must be a db number (/0, /1, ...)" },
	{ "redis://h/-1", "the path must be a db number (/0, /1, ...)" },
	{ "redis://h/1/2", "the path must be a db number (/0, /1, ...)" },
	{ "redis://h/2147483648", "the path must be a db number (/0, /1, ...)" },
	{ "redis://h/99999999999", "the path must be a db number (/0, /1, ...)" },
	{ "redis://h?db=x", "db must be a non-negative number" },
	{ "redis://h?db=", "db must be a non-negative number" },
	{ "redis://h?db=-1", "db must be a non-negative number" },
	{ "redis://h?db=2147483648", "db must be a non-negative number" },
	{ "redis://h?timeout=1", "the only parameter supported is ?db=N" },
	{ "redis://h?db=1&x=2", "the only parameter supported is ?db=N" },
	{ "redis://h?", "the only parameter supported is ?db=N" },
	{ "redis://h?d", "the only parameter supported is ?db=N" },
	{ "redis://secret@h", "credentials must be written ':password@' or 'user:password@'" },
	{ "redis://:@h", "empty password after ':'" },
	{ "redis://u:@h", "empty password after ':'" },
	{ "redis://:%zz@h", "bad user name or password (too long, bad %-escape or NUL)" },
	{ "redis://:%00@h", "bad user name or password (too long, bad %-escape or NUL)" },
	{ "redis://:%4@h", "bad user name or password (too long, bad %-escape or NUL)" },
	{ "redis://:pw%@h", "bad user name or password (too long, bad %-escape or NUL)" },
	{ "redis://%00:pw@h", "bad user name or password (too long, bad %-escape or NUL)" },
	{ "redis://h o", "spaces, control characters and '#' are not allowed" },
	{ "redis://h\n", "spaces, control characters and '#' are not allowed" },
	{ "redis://h\r\nAUTH x", "spaces, control characters and '#' are not allowed" },
	{ "redis://h\t", "spaces, control characters and '#' are not allowed" },
	{ "redis://h\x7f", "spaces, control characters and '#' are not allowed" },
	{ "redis://h#frag", "spaces, control characters and '#' are not allowed" },
	{ "redis://:p w@h", "spaces, control characters and '#' are not allowed" },
	{ "redis://a,b", "several hosts need redissentinel://" },
	{ "redis://h!", "bad character in host (IPv6 addresses go in [brackets])" },
	{ "redis://h\xc3\xa9", "bad character in host (IPv6 addresses go in [brackets])" },
	{ "redis://h%41", "bad character in host (IPv6 addresses go in [brackets])" },
	{ "redis://::1:6379", "missing host" },
	{ "redis://[::1", "unterminated '[' in IPv6 host" },
	{ "redis://[::1]x", "junk after ']' in host" },
	{ "redis://[zz]:1", "bad IPv6 address" },
	{ "redis://[]:1", "missing host" },
	{ "redis://[::1]:", "port must be a number in 1..65535" },
	{ "unix://relative.sock", "unix:// needs an absolute path (unix:///path/to/redis.sock)" },
	{ "unix://:pw@relative", "unix:// needs an absolute path (unix:///path/to/redis.sock)" },
	{ "unix://?db=1", "unix:// needs an absolute path (unix:///path/to/redis.sock)" },
	{ "unix:///tmp/x?db=-1", "db must be a non-negative number" },
	{ "unix:///tmp/x?x=1", "the only parameter supported is ?db=N" },
	{ "redissentinel://a:1,", "missing host" },
	{ "redissentinel://,a:1", "missing host" },
	{ "redissentinel://a:1,,b:2", "missing host" },
	{ "redissentinel://a:99999", "port must be a number in 1..65535" },
	{ "redissentinel://a,b:0", "port must be a number in 1..65535" },
	{ "redissentinel://a,b,c,d,e,f,g,h,i", "too many sentinels (at most 8)" },
	{ "redissentinel://a/x", "the path must be a db number (/0, /1, ...)" },
	{ "redissentinel://a,b!", "bad character in host (IPv6 addresses go in [brackets])" },
};

static void
test_url_hostile(void)
{
	struct tb_redis_url u;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		strcpy(err, "(none)");
		CHECKF(tb_redis_url_parse(hostile[i].s, &u, err,
		    sizeof(err)) == -1 && strcmp(err, hostile[i].why) == 0,
		    "\"%s\" -> \"%s\"", hostile[i].s, err);
	}
	CHECK(tb_redis_url_parse(NULL, &u, err, sizeof(err)) == -1 &&
	    strcmp(err, FORMS) == 0);
	/* a tiny or absent message buffer is never overrun */
	CHECK(tb_redis_url_parse("redis://h:0", &u, err, 1) == -1 &&
	    err[0] == '\0');
	CHECK(tb_redis_url_parse("redis://h:0", &u, NULL, 0) == -1);
	CHECK(tb_redis_url_parse("redis://h:0", &u, err, 0) == -1);
}

/* Limits: at the bound accepted, one past it refused. */
static void
test_url_limits(void)
{
	struct tb_redis_url u;
	char s[1200], err[256];
	int n;

	/* host: 255 bytes */
	n = snprintf(s, sizeof(s), "redis://%0255d:1", 0);
	CHECK(n > 0 && tb_redis_url_parse(s, &u, err, sizeof(err)) == 0 &&
	    strlen(u.addr.host) == 255);
	snprintf(s, sizeof(s), "redis://%0256d:1", 0);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == -1 &&
	    strcmp(err, "host name too long") == 0);
	/* unix path: 107 bytes (sun_path) */
	snprintf(s, sizeof(s), "unix:///%0106d", 0);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == 0 &&
	    strlen(u.path) == 107);
	snprintf(s, sizeof(s), "unix:///%0107d", 0);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == -1 &&
	    strcmp(err, "unix socket path too long") == 0);
	/* password: 255 bytes, after decoding */
	snprintf(s, sizeof(s), "redis://:%0255d@h", 0);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == 0 &&
	    strlen(u.password) == 255);
	snprintf(s, sizeof(s), "redis://:%0256d@h", 0);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == -1 &&
	    strstr(err, "bad user name or password") == err);
	/* user name: 127 bytes */
	snprintf(s, sizeof(s), "redis://%0127d:p@h", 0);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == 0 &&
	    strlen(u.username) == 127);
	snprintf(s, sizeof(s), "redis://%0128d:p@h", 0);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == -1);
	/* 8 sentinels */
	CHECK(tb_redis_url_parse("redissentinel://a,b,c,d,e,f,g,h", &u, err,
	    sizeof(err)) == 0 && u.n_sentinels == 8 &&
	    strcmp(u.sentinels[7].host, "h") == 0);
	/* ports and dbs at their bounds */
	CHECK(tb_redis_url_parse("redis://h:65535/2147483647", &u, err,
	    sizeof(err)) == 0 && u.addr.port == 65535 && u.db == INT_MAX);
	CHECK(tb_redis_url_parse("redis://h:0000000001?db=0000000000", &u,
	    err, sizeof(err)) == 0 && u.addr.port == 1 && u.db == 0);
	/* a very long string of anything */
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	memcpy(s, "redis://", 8);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == -1 &&
	    strcmp(err, "host name too long") == 0);
	memcpy(s, "unix:///", 8);
	CHECK(tb_redis_url_parse(s, &u, err, sizeof(err)) == -1 &&
	    strcmp(err, "unix socket path too long") == 0);
}

/* No message quotes the password, whatever is wrong around it. */
static void
test_url_secret(void)
{
	static const char *const bad[] = {
		"redis://:hunter2@h:99999", "redis://:hunter2@",
		"redis://u:hunter2@h/x", "redis://:hunter2@a,b",
		"redis://:hunter2@h!", "redis://:hunter2@h?db=x",
		"redis://:hunter2%zz@h", "unix://:hunter2@relative",
		"redissentinel://:hunter2@a,,b", "rediss://:hunter2@h",
		"redis://:hunter2@[zz]", "redis://:hunter2 @h",
	};
	struct tb_redis_url u;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECKF(tb_redis_url_parse(bad[i], &u, err, sizeof(err)) == -1 &&
		    err[0] != '\0' && strstr(err, "hunter2") == NULL,
		    "%s -> %s", bad[i], err);
	}
}

/*
 * Every prefix of every valid string, and of every hostile one, copied so
 * that its terminating NUL is the last byte before a PROT_NONE page: the
 * parser answers (0 or -1 with a message) and never reads past the end.
 */
static void
test_url_prefixes(void)
{
	static const char *const good[] = {
		"redis://:s%40cr%3At@h:7000/2", "redis://user:p@ss@h?db=3",
		"redis://[::1]:6380/1", "unix://:pw@/tmp/r.sock?db=1",
		"redissentinel://:pw@a:1,b,[::1]:3/2",
	};
	long pg = sysconf(_SC_PAGESIZE);
	char *area, *guard, err[256];
	struct tb_redis_url u;
	size_t i, n, len;
	int rc, bad = 0;

	area = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(area != MAP_FAILED);
	if (area == MAP_FAILED)
		return;
	guard = area + pg;
	CHECK(mprotect(guard, (size_t)pg, PROT_NONE) == 0);
	for (i = 0; i < sizeof(good) / sizeof(good[0]) +
	    sizeof(hostile) / sizeof(hostile[0]); i++) {
		const char *s = i < sizeof(good) / sizeof(good[0]) ? good[i] :
		    hostile[i - sizeof(good) / sizeof(good[0])].s;

		len = strlen(s);
		for (n = 0; n <= len; n++) {
			char *p = guard - n - 1;

			memcpy(p, s, n);
			p[n] = '\0';
			err[0] = '\0';
			rc = tb_redis_url_parse(p, &u, err, sizeof(err));
			if ((rc != 0 && (rc != -1 || err[0] == '\0')) ||
			    (n == len && i < sizeof(good) / sizeof(good[0]) &&
			    rc != 0)) {
				if (bad++ < 5)
					fprintf(stderr, "prefix %zu of %s: %d %s\n",
					    n, s, rc, err);
			}
		}
	}
	CHECK(bad == 0);
	munmap(area, (size_t)pg * 2);
}

/* ------------------------------------------------------------------ */
/* fake servers                                                        */
/* ------------------------------------------------------------------ */

#define FAKE_LOG	64

struct fake;

struct fconn {
	struct fake *f;
	int fd;
	struct event *ev;
	char buf[8192];
	size_t len;
	struct fconn *next;
};

/*
 * One fake server: it logs each command ("AUTH pw", "GET k") and answers
 * it as answer() says. Its behaviour is switched by the fields below.
 */
struct fake {
	struct event_base *base;
	int lfd;
	struct event *lev;
	char path[108];			/* unix socket, or "" */
	uint16_t port;
	struct fconn *conns;
	unsigned accepted;
	char log[FAKE_LOG][128];
	unsigned n_log;
	int hang_auth;			/* never answer AUTH */
	int hang_get;			/* never answer GET */
	int loading;			/* answer GET with -LOADING this often */
	int refuse_auth;		/* -WRONGPASS */
	int replica;			/* ROLE says slave */
	uint16_t master_port;		/* sentinel: the master it names */
	int unknown_master;		/* sentinel: nil for the name */
};

static void
fconn_free(struct fconn *c)
{
	struct fconn **pp;

	for (pp = &c->f->conns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	event_free(c->ev);
	close(c->fd);
	free(c);
}

static void
fake_send(struct fconn *c, const char *s)
{
	size_t n = strlen(s);

	if (write(c->fd, s, n) != (ssize_t)n)
		fprintf(stderr, "fake: short write\n");
}

/* Answer one command of argc words. */
static void
fake_answer(struct fconn *c, int argc, char argv[][128])
{
	struct fake *f = c->f;
	char out[256];

	if (strcasecmp(argv[0], "AUTH") == 0) {
		if (f->hang_auth)
			return;
		fake_send(c, f->refuse_auth ? "-WRONGPASS invalid password\r\n" :
		    "+OK\r\n");
	} else if (strcasecmp(argv[0], "SELECT") == 0) {
		fake_send(c, "+OK\r\n");
	} else if (strcasecmp(argv[0], "ROLE") == 0) {
		fake_send(c, f->replica ? "*1\r\n$5\r\nslave\r\n" :
		    "*1\r\n$6\r\nmaster\r\n");
	} else if (strcasecmp(argv[0], "GET") == 0 && argc == 2) {
		if (f->hang_get)
			return;
		if (f->loading > 0 && f->n_log % f->loading == 0) {
			fake_send(c, "-LOADING Redis is loading the dataset\r\n");
			return;
		}
		snprintf(out, sizeof(out), "$%zu\r\nv:%s\r\n",
		    strlen(argv[1]) + 2, argv[1]);
		fake_send(c, out);
	} else if (strcasecmp(argv[0], "LPUSH") == 0) {
		fake_send(c, ":1\r\n");
	} else if (strcasecmp(argv[0], "SUBSCRIBE") == 0 && argc == 2) {
		snprintf(out, sizeof(out), "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n"
		    "%s\r\n:1\r\n", strlen(argv[1]), argv[1]);
		fake_send(c, out);
	} else if (strcasecmp(argv[0], "SENTINEL") == 0) {
		if (f->unknown_master) {
			fake_send(c, "*-1\r\n");
			return;
		}
		snprintf(out, sizeof(out), "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n"
		    "%u\r\n", snprintf(NULL, 0, "%u", f->master_port),
		    f->master_port);
		fake_send(c, out);
	} else {
		fake_send(c, "-ERR unknown command\r\n");
	}
}

/* Parse and answer the complete RESP arrays in c->buf. */
static void
fake_parse(struct fconn *c)
{
	char argv[8][128], line[160];
	size_t off = 0, p;
	int argc, i, n;
	long blen;

	for (;;) {
		char *nl;

		p = off;
		if (p >= c->len || c->buf[p] != '*')
			break;
		nl = memchr(c->buf + p, '\n', c->len - p);
		if (nl == NULL)
			break;
		argc = atoi(c->buf + p + 1);
		p = (size_t)(nl - c->buf) + 1;
		for (i = 0; i < argc; i++) {
			nl = p < c->len ? memchr(c->buf + p, '\n', c->len - p) :
			    NULL;
			if (nl == NULL)
				return;
			blen = atol(c->buf + p + 1);
			p = (size_t)(nl - c->buf) + 1;
			if (p + (size_t)blen + 2 > c->len)
				return;		/* need more */
			if (i < 8) {
				n = blen < 127 ? (int)blen : 127;
				memcpy(argv[i], c->buf + p, (size_t)n);
				argv[i][n] = '\0';
			}
			p += (size_t)blen + 2;
		}
		if (argc > 8)
			argc = 8;
		line[0] = '\0';
		for (i = 0; i < argc; i++)
			snprintf(line + strlen(line), sizeof(line) - strlen(line),
			    "%s%s", i ? " " : "", argv[i]);
		if (c->f->n_log < FAKE_LOG)
			snprintf(c->f->log[c->f->n_log], sizeof(c->f->log[0]),
			    "%s", line);
		c->f->n_log++;
		off = p;
		fake_answer(c, argc, argv);
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
}

static void
fconn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fconn *c = arg;
	ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);

	if (n <= 0) {
		fconn_free(c);
		return;
	}
	c->len += (size_t)n;
	fake_parse(c);
}

static void
fake_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	struct fconn *c;
	int cfd = accept(fd, NULL, NULL);

	if (cfd < 0)
		return;
	c = calloc(1, sizeof(*c));
	c->f = f;
	c->fd = cfd;
	c->ev = event_new(f->base, cfd, EV_READ | EV_PERSIST, fconn_cb, c);
	event_add(c->ev, NULL);
	c->next = f->conns;
	f->conns = c;
	f->accepted++;
}

/* A fake on 127.0.0.1 (a free port), or on the unix socket path. */
static struct fake *
fake_new(struct event_base *base, const char *path)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct sockaddr_in sin;
	struct sockaddr_un sun;
	socklen_t sl = sizeof(sin);

	f->base = base;
	if (path != NULL) {
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
		snprintf(f->path, sizeof(f->path), "%s", path);
		unlink(path);
		f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
			perror("bind");
	} else {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		f->lfd = socket(AF_INET, SOCK_STREAM, 0);
		if (bind(f->lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
			perror("bind");
		getsockname(f->lfd, (struct sockaddr *)&sin, &sl);
		f->port = ntohs(sin.sin_port);
	}
	listen(f->lfd, 16);
	f->lev = event_new(base, f->lfd, EV_READ | EV_PERSIST, fake_accept_cb,
	    f);
	event_add(f->lev, NULL);
	return f;
}

/* Close every connection (the server "restarts"); it keeps listening. */
static void
fake_drop_all(struct fake *f)
{
	while (f->conns != NULL)
		fconn_free(f->conns);
}

/* Send raw bytes to every connection (a PUBLISH, a +switch-master). */
static void
fake_push(struct fake *f, const char *s)
{
	struct fconn *c;

	for (c = f->conns; c != NULL; c = c->next)
		fake_send(c, s);
}

static void
fake_free(struct fake *f)
{
	fake_drop_all(f);
	event_free(f->lev);
	close(f->lfd);
	if (f->path[0] != '\0')
		unlink(f->path);
	free(f);
}

/* Index of the first logged command equal to s, or -1. */
static int
fake_saw(const struct fake *f, const char *s)
{
	unsigned i;

	for (i = 0; i < f->n_log && i < FAKE_LOG; i++)
		if (strcmp(f->log[i], s) == 0)
			return (int)i;
	return -1;
}

/* A loopback port nothing listens on. */
static uint16_t
dead_port(void)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* ------------------------------------------------------------------ */
/* the client's user                                                   */
/* ------------------------------------------------------------------ */

struct user {
	struct tb_redis *c;
	unsigned ready, down, replies, reconnecting, subscribed, messages;
	char last_reply[128], last_down[128], last_msg[128];
	void *last_arg;
	int freed;		/* handlers must not run after tb_redis_free */
	int bad;		/* a handler ran when it must not */
};

static void
u_ready(void *arg)
{
	struct user *u = arg;

	u->bad += u->freed;
	u->ready++;
}

static void
u_reply(void *arg, void *cmd_arg, const struct redisReply *r)
{
	struct user *u = arg;

	u->bad += u->freed || r == NULL;
	u->replies++;
	u->last_arg = cmd_arg;
	snprintf(u->last_reply, sizeof(u->last_reply), "%d:%.*s", r->type,
	    r->str != NULL ? (int)r->len : 0, r->str != NULL ? r->str : "");
}

static void
u_down(void *arg, const char *why)
{
	struct user *u = arg;

	u->bad += u->freed;
	u->down++;
	snprintf(u->last_down, sizeof(u->last_down), "%s", why);
}

static void
u_message(void *arg, enum tb_redis_event ev, const char *data, size_t len)
{
	struct user *u = arg;

	u->bad += u->freed;
	if (ev == TB_REDIS_SUBSCRIBED) {
		u->subscribed++;
		return;
	}
	u->messages++;
	snprintf(u->last_msg, sizeof(u->last_msg), "%.*s", (int)len, data);
}

static void
u_reconnecting(void *arg)
{
	struct user *u = arg;

	u->bad += u->freed;
	u->reconnecting++;
}

static const struct tb_redis_handlers u_handlers = {
	u_ready, u_reply, u_down, u_message, u_reconnecting, NULL,
};

/* A client for the URL that fmt makes, with fast timers, reporting to u. */
static struct tb_redis *
user_client(struct event_base *base, struct user *u, double connect_timeout,
    double command_timeout, const char *fmt, ...)
{
	struct tb_redis_url parsed;
	struct tb_redis_conf conf;
	struct tb_redis_handlers h = u_handlers;
	char err[256], url[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(url, sizeof(url), fmt, ap);
	va_end(ap);
	memset(u, 0, sizeof(*u));
	memset(&conf, 0, sizeof(conf));
	if (tb_redis_url_parse(url, &parsed, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s\n", url, err);
		return NULL;
	}
	conf.url = &parsed;
	conf.name = "test";
	conf.connect_timeout = connect_timeout;
	conf.command_timeout = command_timeout;
	conf.backoff_min = 0.02;
	conf.backoff_max = 0.08;
	conf.sentinel_timeout = 0.3;
	h.arg = u;
	u->c = tb_redis_new(base, &conf, &h, err, sizeof(err));
	memset(&parsed, 0, sizeof(parsed));	/* the client has a copy */
	return u->c;
}

static int run_until(struct event_base *, const unsigned *, unsigned,
    double);

/* A client of redis://f with the command timeout given, ready. */
static void
user_on(struct event_base *base, struct user *u, const struct fake *f,
    double command_timeout)
{
	user_client(base, u, 1, command_timeout, "redis://127.0.0.1:%u",
	    f->port);
	CHECK(u->c != NULL && run_until(base, &u->ready, 1, 2));
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* Run the loop for secs. */
static void
run_for(struct event_base *base, double secs)
{
	struct timeval tv;

	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	event_base_once(base, -1, EV_TIMEOUT, stop_cb, base, &tv);
	event_base_dispatch(base);
}

/* Run the loop until *counter >= want, at most secs; 1 if it got there. */
static int
run_until(struct event_base *base, const unsigned *counter, unsigned want,
    double secs)
{
	double t;

	for (t = 0; t < secs && *counter < want; t += 0.005)
		run_for(base, 0.005);
	return *counter >= want;
}

/* ------------------------------------------------------------------ */
/* client tests                                                        */
/* ------------------------------------------------------------------ */

static void
test_client_handshake_and_replies(struct event_base *base)
{
	struct fake *f = fake_new(base, NULL);
	struct user u;
	char want[64];
	int marker;

	snprintf(want, sizeof(want), "127.0.0.1:%u", f->port);
	CHECK(user_client(base, &u, 1, 1, "redis://:pw@%s/3", want) != NULL);
	/* not ready yet: nothing is queued, no reply will come */
	CHECK(tb_redis_command(u.c, NULL, "GET %s", "early") == -1);
	CHECK(tb_redis_is_ready(u.c) == 0 && strcmp(tb_redis_server(u.c), "") == 0);
	CHECK(run_until(base, &u.ready, 1, 2));
	CHECK(fake_saw(f, "AUTH pw") == 0 && fake_saw(f, "SELECT 3") == 1);
	CHECKF(strcmp(tb_redis_server(u.c), want) == 0, "%s",
	    tb_redis_server(u.c));
	/* a pipeline: replies in order, each with its argument */
	CHECK(tb_redis_command(u.c, &marker, "GET %s", "a") == 0);
	CHECK(tb_redis_formatted(u.c, &u, "*2\r\n$3\r\nGET\r\n$1\r\nb\r\n",
	    20) == 0);
	tb_redis_flush(u.c);
	CHECK(run_until(base, &u.replies, 2, 2));
	CHECK(u.last_arg == &u && strcmp(u.last_reply, "1:v:b") == 0);
	CHECK(fake_saw(f, "GET a") == 2 && fake_saw(f, "GET b") == 3);
	CHECK(u.down == 0 && u.reconnecting == 0 && u.bad == 0);
	tb_redis_free(u.c);
	fake_free(f);

	/* AUTH user password */
	f = fake_new(base, NULL);
	CHECK(user_client(base, &u, 1, 1,
	    "redis://al%%69ce:p%%40ss@127.0.0.1:%u", f->port) != NULL);
	CHECK(run_until(base, &u.ready, 1, 2));
	CHECK(fake_saw(f, "AUTH alice p@ss") == 0 && f->n_log == 1);
	tb_redis_free(u.c);
	fake_free(f);
}

/* The server goes away with a reply owed: "down" once, that reply never,
 * then a new connection after the backoff; a free with replies owed runs
 * no handler. */
static void
test_client_detach(struct event_base *base)
{
	struct fake *f = fake_new(base, NULL);
	struct user u;

	user_on(base, &u, f, 5);
	f->hang_get = 1;
	CHECK(tb_redis_command(u.c, NULL, "GET %s", "lost") == 0);
	run_for(base, 0.05);
	fake_drop_all(f);
	CHECK(run_until(base, &u.down, 1, 2));
	/* hiredis' words */
	CHECKF(strcmp(u.last_down, "Server closed the connection") == 0, "%s",
	    u.last_down);
	CHECK(tb_redis_is_ready(u.c) == 0);
	f->hang_get = 0;
	CHECK(run_until(base, &u.ready, 2, 2));
	CHECK(u.replies == 0 && u.down == 1 && u.reconnecting == 1);
	CHECK(f->accepted == 2);

	/* free with a reply owed: no handler runs, neither for it nor for
	 * the connection going */
	CHECK(tb_redis_command(u.c, NULL, "GET %s", "x") == 0);
	u.freed = 1;
	tb_redis_free(u.c);
	fake_drop_all(f);
	run_for(base, 0.1);
	CHECK(u.bad == 0);
	fake_free(f);
}

static void
test_client_timeouts(struct event_base *base)
{
	struct fake *f = fake_new(base, NULL);
	struct user u;
	struct timespec t0, t1;
	double el;

	/* command timeout: a reply owed, none for command_timeout */
	user_on(base, &u, f, 0.2);
	f->hang_get = 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(tb_redis_command(u.c, NULL, "GET %s", "k") == 0);
	CHECK(run_until(base, &u.down, 1, 2));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	el = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECKF(strcmp(u.last_down, "command timeout") == 0, "%s", u.last_down);
	CHECKF(el >= 0.18 && el < 1.0, "%.3f", el);
	CHECK(u.replies == 0);
	/* idle (nothing owed): no timeout however long */
	f->hang_get = 0;
	CHECK(run_until(base, &u.ready, 2, 2));
	run_for(base, 0.5);
	CHECK(u.down == 1);
	tb_redis_free(u.c);

	/* connect (handshake) timeout: AUTH never answered */
	f->hang_auth = 1;
	user_client(base, &u, 0.1, 5, "redis://:pw@127.0.0.1:%u", f->port);
	run_for(base, 0.6);
	CHECK(u.ready == 0 && u.down == 0);
	CHECKF(f->accepted >= 3 && u.reconnecting >= 2, "%u %u", f->accepted,
	    u.reconnecting);
	tb_redis_free(u.c);

	/* refused handshake: never ready, tries again */
	f->hang_auth = 0;
	f->refuse_auth = 1;
	f->accepted = 0;
	user_client(base, &u, 1, 5, "redis://:pw@127.0.0.1:%u", f->port);
	run_for(base, 0.3);
	CHECK(u.ready == 0 && f->accepted >= 2);
	tb_redis_free(u.c);
	fake_free(f);
}

/* LOADING (READONLY...): not a reply for the user but a reconnect. */
static void
test_client_transient(struct event_base *base)
{
	struct fake *f = fake_new(base, NULL);
	struct user u;

	user_on(base, &u, f, 1);
	f->loading = 1;		/* every GET */
	CHECK(tb_redis_command(u.c, NULL, "GET %s", "k") == 0);
	CHECK(run_until(base, &u.down, 1, 2));
	CHECK(u.replies == 0 && strcmp(u.last_down, "transient error") == 0);
	f->loading = 0;
	CHECK(run_until(base, &u.ready, 2, 2));
	CHECK(tb_redis_command(u.c, NULL, "GET %s", "k") == 0);
	CHECK(run_until(base, &u.replies, 1, 2) &&
	    strcmp(u.last_reply, "1:v:k") == 0);
	/* an ordinary error is the user's */
	CHECK(tb_redis_command(u.c, NULL, "NOPE") == 0);
	CHECK(run_until(base, &u.replies, 2, 2) &&
	    strcmp(u.last_reply, "6:ERR unknown command") == 0);
	CHECK(u.down == 1);
	tb_redis_free(u.c);
	fake_free(f);
}

/* Nothing listens: attempts back off 0.02, 0.04, 0.08, 0.08... */
static void
test_client_backoff(struct event_base *base)
{
	struct user u;

	user_client(base, &u, 1, 1, "redis://127.0.0.1:%u", dead_port());
	run_for(base, 0.75);
	/* about 0.02 + 0.04 + 8 x 0.08 s: 10 retries; without the cap 5 */
	CHECKF(u.reconnecting >= 6 && u.reconnecting <= 12, "%u",
	    u.reconnecting);
	CHECK(u.ready == 0 && u.down == 0);
	tb_redis_free(u.c);
}

/* SUBSCRIBE, messages, and the subscription renewed after a reconnect. */
static void
test_client_subscribe(struct event_base *base)
{
	struct fake *f = fake_new(base, NULL);
	struct user u;

	user_client(base, &u, 1, 1, "redis://127.0.0.1:%u", f->port);
	CHECK(tb_redis_subscribe(u.c, "tb:policy") == 0);
	CHECK(tb_redis_subscribe(u.c, "another") == -1);
	CHECK(run_until(base, &u.subscribed, 1, 2));
	CHECK(fake_saw(f, "SUBSCRIBE tb:policy") == 0);
	fake_push(f, "*3\r\n$7\r\nmessage\r\n$9\r\ntb:policy\r\n$5\r\nhello\r\n");
	CHECK(run_until(base, &u.messages, 1, 2) &&
	    strcmp(u.last_msg, "hello") == 0);
	fake_drop_all(f);
	CHECK(run_until(base, &u.subscribed, 2, 2));
	CHECK(f->n_log == 2 && strcmp(f->log[1], "SUBSCRIBE tb:policy") == 0);
	CHECK(u.down == 1 && u.bad == 0);
	tb_redis_free(u.c);
	fake_free(f);
}

static void
test_client_unix_and_name(struct event_base *base)
{
	char path[64], want[64];
	struct fake *f;
	struct user u;

	snprintf(path, sizeof(path), "/tmp/tb_test_redis.%ld.sock",
	    (long)getpid());
	f = fake_new(base, path);
	user_client(base, &u, 1, 1, "unix://:pw@%s?db=2", path);
	CHECK(run_until(base, &u.ready, 1, 2));
	CHECK(fake_saw(f, "AUTH pw") == 0 && fake_saw(f, "SELECT 2") == 1);
	CHECK(strcmp(tb_redis_server(u.c), path) == 0);
	tb_redis_free(u.c);
	fake_free(f);

	/* a name goes through evdns (the hosts file answers localhost) */
	f = fake_new(base, NULL);
	snprintf(want, sizeof(want), "localhost:%u", f->port);
	user_client(base, &u, 1, 1, "redis://%s", want);
	CHECK(run_until(base, &u.ready, 1, 3));
	CHECKF(strcmp(tb_redis_server(u.c), want) == 0, "%s",
	    tb_redis_server(u.c));
	tb_redis_free(u.c);
	fake_free(f);
}

/*
 * Sentinel: the first sentinel is down, the second names master A (ROLE
 * checked); a +switch-master moves the ready connection to B; a sentinel
 * that names a replica, or knows no such master, is not followed.
 */
static void
test_client_sentinel(struct event_base *base)
{
	struct fake *s = fake_new(base, NULL), *a = fake_new(base, NULL),
	    *b = fake_new(base, NULL);
	struct user u;
	char push[256], msg[256], want[64];

	s->master_port = a->port;
	user_client(base, &u, 1, 1, "redissentinel://:pw@127.0.0.1:%u,"
	    "127.0.0.1:%u/1", dead_port(), s->port);
	CHECK(run_until(base, &u.ready, 1, 3));
	snprintf(want, sizeof(want), "127.0.0.1:%u", a->port);
	CHECKF(strcmp(tb_redis_server(u.c), want) == 0, "%s",
	    tb_redis_server(u.c));
	CHECK(fake_saw(s, "SENTINEL get-master-addr-by-name mymaster") == 0);
	CHECK(fake_saw(s, "SUBSCRIBE +switch-master") == 1);
	CHECK(fake_saw(a, "AUTH pw") == 0 && fake_saw(a, "SELECT 1") == 1 &&
	    fake_saw(a, "ROLE") == 2);
	/* failover while connected */
	snprintf(msg, sizeof(msg), "mymaster 127.0.0.1 %u 127.0.0.1 %u",
	    a->port, b->port);
	snprintf(push, sizeof(push), "*3\r\n$7\r\nmessage\r\n$14\r\n"
	    "+switch-master\r\n$%zu\r\n%s\r\n", strlen(msg), msg);
	fake_push(s, push);
	CHECK(run_until(base, &u.ready, 2, 3));
	snprintf(want, sizeof(want), "127.0.0.1:%u", b->port);
	CHECKF(strcmp(tb_redis_server(u.c), want) == 0, "%s",
	    tb_redis_server(u.c));
	CHECK(u.down == 1 && strcmp(u.last_down,
	    "sentinel named a new master") == 0);
	/* another master name on the feed: ignored */
	fake_push(s, "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n"
	    "$33\r\nother 127.0.0.1 1 127.0.0.1 65000\r\n");
	run_for(base, 0.1);
	CHECK(u.down == 1 && strcmp(tb_redis_server(u.c), want) == 0);
	tb_redis_free(u.c);

	/* the master it names is a replica: not ready, asks again */
	s->master_port = a->port;
	a->replica = 1;
	s->accepted = 0;
	user_client(base, &u, 1, 1, "redissentinel://127.0.0.1:%u", s->port);
	run_for(base, 0.4);
	CHECK(u.ready == 0 && s->accepted >= 2);
	tb_redis_free(u.c);

	/* no such master */
	s->unknown_master = 1;
	s->accepted = 0;
	user_client(base, &u, 1, 1, "redissentinel://127.0.0.1:%u", s->port);
	run_for(base, 0.3);
	CHECK(u.ready == 0 && s->accepted >= 2 && u.bad == 0);
	tb_redis_free(u.c);
	fake_free(s);
	fake_free(a);
	fake_free(b);
}

int
main(void)
{
	struct event_base *base;

	test_url_good();
	test_url_hostile();
	test_url_limits();
	test_url_secret();
	test_url_prefixes();

	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	test_client_handshake_and_replies(base);
	test_client_detach(base);
	test_client_timeouts(base);
	test_client_transient(base);
	test_client_backoff(base);
	test_client_subscribe(base);
	test_client_unix_and_name(base);
	test_client_sentinel(base);
	event_base_free(base);
	TB_TEST_END();
}
