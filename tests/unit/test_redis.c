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
 * +switch-master moving the connection while it is up; replies past the
 * limits, and the replies hiredis 0.14.1 aborted the process on, each
 * refused and counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis.h"
#include "stats.h"
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

#define FORMS "expected a redis://, unix:// or redissentinel:// URL"

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

/* A page followed by a PROT_NONE one; returns the start of the latter:
 * bytes copied to end there are the last that can be read. NULL if mmap
 * failed. */
static char *
guard_page_new(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *area = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (area == MAP_FAILED)
		return NULL;
	if (mprotect(area + pg, (size_t)pg, PROT_NONE) != 0) {
		munmap(area, (size_t)pg * 2);
		return NULL;
	}
	return area + pg;
}

static void
guard_page_free(char *guard)
{
	long pg = sysconf(_SC_PAGESIZE);

	munmap(guard - pg, (size_t)pg * 2);
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
	char *guard = guard_page_new(), err[256];
	struct tb_redis_url u;
	size_t i, n, len;
	int rc, bad = 0;

	CHECK(guard != NULL);
	if (guard == NULL)
		return;
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
	guard_page_free(guard);
}

/* ------------------------------------------------------------------ */
/* sentinel answers                                                    */
/* ------------------------------------------------------------------ */

/* The reply hiredis' own reader makes of resp[0..n); NULL if none. */
static redisReply *
reply_of(const char *resp, size_t n)
{
	redisReader *r = redisReaderCreate();
	void *reply = NULL;

	if (redisReaderFeed(r, resp, n) != REDIS_OK ||
	    redisReaderGetReply(r, &reply) != REDIS_OK)
		reply = NULL;
	redisReaderFree(r);
	return reply;
}

#define RESP(s)	s, sizeof(s) - 1	/* a literal, NULs included */

/* Replies to SENTINEL get-master-addr-by-name, with the verdict. */
static const struct {
	const char *resp;
	size_t len;
	enum tb_redis_sentinel_err err;
	const char *why;		/* NULL for OK */
	const char *bad;		/* what is quoted, NULL for nothing */
} answers[] = {
	{ RESP("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"), 0, NULL, NULL },
	{ RESP("*2\r\n$3\r\n::1\r\n$5\r\n26379\r\n"), 0, NULL, NULL },
	{ RESP("*2\r\n$17\r\nredis-1.a_b.local\r\n$5\r\n65535\r\n"), 0,
	    NULL, NULL },
	{ RESP("*2\r\n$1\r\nh\r\n$10\r\n0000000001\r\n"), 0, NULL, NULL },
	/* ports: 0, -1, 70000, non-numeric... strtol took "12abc" as 12 */
	{ RESP("*2\r\n$1\r\nh\r\n$1\r\n0\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "0" },
	{ RESP("*2\r\n$1\r\nh\r\n$2\r\n-1\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "-1" },
	{ RESP("*2\r\n$1\r\nh\r\n$5\r\n70000\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "70000" },
	{ RESP("*2\r\n$1\r\nh\r\n$5\r\n65536\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "65536" },
	{ RESP("*2\r\n$1\r\nh\r\n$5\r\n12abc\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "12abc" },
	{ RESP("*2\r\n$1\r\nh\r\n$4\r\nport\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "port" },
	{ RESP("*2\r\n$1\r\nh\r\n$0\r\n\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "" },
	{ RESP("*2\r\n$1\r\nh\r\n$5\r\n 6379\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", " 6379" },
	{ RESP("*2\r\n$1\r\nh\r\n$5\r\n+6379\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "+6379" },
	{ RESP("*2\r\n$1\r\nh\r\n$5\r\n63\00079\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a number in 1..65535", "63" },
	{ RESP("*2\r\n$1\r\nh\r\n:6379\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a string", NULL },
	{ RESP("*2\r\n$1\r\nh\r\n$-1\r\n"), TB_REDIS_SENTINEL_PORT,
	    "port is not a string", NULL },
	/* hosts */
	{ RESP("*2\r\n$0\r\n\r\n$4\r\n6379\r\n"), TB_REDIS_SENTINEL_HOST,
	    "empty host", NULL },
	{ RESP("*2\r\n$3\r\na b\r\n$4\r\n6379\r\n"), TB_REDIS_SENTINEL_HOST,
	    "bad character in host", "a b" },
	{ RESP("*2\r\n$3\r\na\000b\r\n$4\r\n6379\r\n"), TB_REDIS_SENTINEL_HOST,
	    "bad character in host", "a" },
	{ RESP("*2\r\n$5\r\n[::1]\r\n$4\r\n6379\r\n"), TB_REDIS_SENTINEL_HOST,
	    "bad character in host", "[::1]" },
	{ RESP("*2\r\n$6\r\nh\r\nx:y\r\n$4\r\n6379\r\n"), TB_REDIS_SENTINEL_HOST,
	    "bad character in host", "h" },
	{ RESP("*2\r\n:1\r\n$4\r\n6379\r\n"), TB_REDIS_SENTINEL_HOST,
	    "host is not a string", NULL },
	{ RESP("*2\r\n*0\r\n$4\r\n6379\r\n"), TB_REDIS_SENTINEL_HOST,
	    "host is not a string", NULL },
	{ RESP("*2\r\n+h\r\n$4\r\n6379\r\n"), TB_REDIS_SENTINEL_HOST,
	    "host is not a string", NULL },
	/* shapes */
	{ RESP("*-1\r\n"), TB_REDIS_SENTINEL_UNKNOWN_MASTER, "no such master",
	    NULL },
	{ RESP("$-1\r\n"), TB_REDIS_SENTINEL_UNKNOWN_MASTER, "no such master",
	    NULL },
	{ RESP("-ERR unknown command 'SENTINEL'\r\n"),
	    TB_REDIS_SENTINEL_ERROR_REPLY, "error reply",
	    "ERR unknown command 'SENTINEL'" },
	{ RESP("+OK\r\n"), TB_REDIS_SENTINEL_REPLY_TYPE,
	    "a string, not an array", "OK" },
	{ RESP("$14\r\n127.0.0.1 6379\r\n"), TB_REDIS_SENTINEL_REPLY_TYPE,
	    "a string, not an array", "127.0.0.1 6379" },
	{ RESP(":6379\r\n"), TB_REDIS_SENTINEL_REPLY_TYPE, "not an array",
	    NULL },
	{ RESP("*0\r\n"), TB_REDIS_SENTINEL_ELEMENT_COUNT,
	    "not an array of two elements", NULL },
	{ RESP("*1\r\n$9\r\n127.0.0.1\r\n"), TB_REDIS_SENTINEL_ELEMENT_COUNT,
	    "not an array of two elements", NULL },
	{ RESP("*3\r\n$1\r\nh\r\n$4\r\n6379\r\n$1\r\nx\r\n"),
	    TB_REDIS_SENTINEL_ELEMENT_COUNT, "not an array of two elements",
	    NULL },
};

/* Each answer above: the exact verdict, reason and quoted bytes. */
static void
test_sentinel_answer_table(void)
{
	struct tb_redis_sentinel_addr a;
	redisReply *r;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		if ((r = reply_of(answers[i].resp, answers[i].len)) == NULL) {
			CHECKF(0, "answer %zu: no reply", i);
			continue;
		}
		rc = tb_redis_sentinel_answer(r, &a);
		CHECKF(rc == (answers[i].why ? -1 : 0) &&
		    a.err == answers[i].err &&
		    (answers[i].why == NULL || strcmp(a.why, answers[i].why) == 0) &&
		    (answers[i].bad == NULL ? a.bad == NULL : a.bad != NULL &&
		    strlen(answers[i].bad) <= a.bad_len &&
		    memcmp(a.bad, answers[i].bad, strlen(answers[i].bad)) == 0),
		    "answer %zu: %d %d %s", i, rc, a.err, a.why ? a.why : "-");
		freeReplyObject(r);
	}
	r = reply_of(answers[1].resp, answers[1].len);
	CHECK(r != NULL && tb_redis_sentinel_answer(r, &a) == 0 &&
	    strcmp(a.master.host, "::1") == 0 && a.master.port == 26379 &&
	    a.name == NULL);
	freeReplyObject(r);
	CHECK(strcmp(tb_redis_sentinel_err_names[TB_REDIS_SENTINEL_PORT],
	    "port") == 0);
}

/* A host and a port of len bytes of c (the 10 KB answers of issue 13), and
 * the host at its bound. */
static void
test_sentinel_answer_sizes(void)
{
	static const size_t sizes[] = { 255, 256, 10240 };
	struct tb_redis_sentinel_addr a;
	char *resp, *v;
	redisReply *r;
	size_t i, len, n;

	resp = malloc(20000);
	v = malloc(10241);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		len = sizes[i];
		memset(v, 'h', len);
		v[len] = '\0';
		n = (size_t)snprintf(resp, 20000, "*2\r\n$%zu\r\n%s\r\n"
		    "$4\r\n6379\r\n", len, v);
		r = reply_of(resp, n);
		if (len < 256)
			CHECK(r != NULL && tb_redis_sentinel_answer(r, &a) == 0 &&
			    strlen(a.master.host) == len);
		else
			CHECK(r != NULL && tb_redis_sentinel_answer(r, &a) == -1 &&
			    a.err == TB_REDIS_SENTINEL_HOST &&
			    strcmp(a.why, "host longer than 255 bytes") == 0 &&
			    a.bad_len == len);
		freeReplyObject(r);
		memset(v, '9', len);
		n = (size_t)snprintf(resp, 20000, "*2\r\n$1\r\nh\r\n$%zu\r\n"
		    "%s\r\n", len, v);
		r = reply_of(resp, n);
		CHECK(r != NULL && tb_redis_sentinel_answer(r, &a) == -1 &&
		    a.err == TB_REDIS_SENTINEL_PORT && a.bad_len == len);
		freeReplyObject(r);
	}
	free(resp);
	free(v);
}

/* +switch-master messages, with the verdict and the name found. */
static const struct {
	const char *msg;
	enum tb_redis_sentinel_err err;
	const char *name;		/* NULL: not found */
	const char *host;		/* OK: the new master */
	uint16_t port;
} switches[] = {
	{ "mymaster 10.0.0.1 6379 10.0.0.2 6380", 0, "mymaster", "10.0.0.2",
	    6380 },
	{ "m ::1 1 ::2 65535", 0, "m", "::2", 65535 },
	{ "m a 1 b 0", TB_REDIS_SENTINEL_PORT, "m", NULL, 0 },
	{ "m a 1 b 70000", TB_REDIS_SENTINEL_PORT, "m", NULL, 0 },
	{ "m a 1 b -1", TB_REDIS_SENTINEL_PORT, "m", NULL, 0 },
	{ "m a 1 b 6379x", TB_REDIS_SENTINEL_PORT, "m", NULL, 0 },
	{ "m a 1 b ", TB_REDIS_SENTINEL_PORT, "m", NULL, 0 },
	{ "m a 1 b\t 1", TB_REDIS_SENTINEL_HOST, "m", NULL, 0 },
	{ "m a 1 [b] 1", TB_REDIS_SENTINEL_HOST, "m", NULL, 0 },
	{ "m a 1  1", TB_REDIS_SENTINEL_HOST, "m", NULL, 0 },
	{ "other a 1 b 0", TB_REDIS_SENTINEL_PORT, "other", NULL, 0 },
	{ "", TB_REDIS_SENTINEL_ELEMENT_COUNT, NULL, NULL, 0 },
	{ "mymaster", TB_REDIS_SENTINEL_ELEMENT_COUNT, NULL, NULL, 0 },
	{ "m a 1 b", TB_REDIS_SENTINEL_ELEMENT_COUNT, NULL, NULL, 0 },
	{ "m a 1 b 2 ", TB_REDIS_SENTINEL_ELEMENT_COUNT, NULL, NULL, 0 },
	{ "m a 1 b 2 c", TB_REDIS_SENTINEL_ELEMENT_COUNT, NULL, NULL, 0 },
	{ "m  a 1 b 2", TB_REDIS_SENTINEL_ELEMENT_COUNT, NULL, NULL, 0 },
};

/*
 * Each message above, and every prefix of each placed against a guard
 * page (the message is not terminated): an answer, never a read past it.
 */
static void
test_switch_master(void)
{
	struct tb_redis_sentinel_addr a;
	char *guard = guard_page_new();
	size_t i, n, len;
	int rc;

	CHECK(guard != NULL);
	if (guard == NULL)
		return;
	for (i = 0; i < sizeof(switches) / sizeof(switches[0]); i++) {
		len = strlen(switches[i].msg);
		for (n = 0; n <= len; n++) {
			memcpy(guard - n, switches[i].msg, n);
			rc = tb_redis_switch_master(guard - n, n, &a);
			CHECKF((rc == 0) == (a.err == TB_REDIS_SENTINEL_OK) &&
			    (rc == 0 || a.why != NULL), "%zu/%zu", i, n);
		}
		CHECKF(a.err == switches[i].err &&
		    (switches[i].name == NULL ? a.name == NULL :
		    a.name_len == strlen(switches[i].name) &&
		    memcmp(a.name, switches[i].name, a.name_len) == 0) &&
		    (switches[i].host == NULL ||
		    (strcmp(a.master.host, switches[i].host) == 0 &&
		    a.master.port == switches[i].port)),
		    "\"%s\": %d %s", switches[i].msg, a.err, a.why ? a.why : "-");
	}
	guard_page_free(guard);
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
	const char *const *bad;		/* sentinel: the first answers... */
	unsigned n_bad;			/* ... this many, then master_port */
	unsigned asked;			/* SENTINEL commands answered */
	const char *get_reply;		/* answer the next GET with these */
	size_t get_reply_len;		/* bytes (as many as the socket takes) */
	const char *lpush_reply;	/* answer the next LPUSH with this */
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

/* Send what the socket takes of s[0..n) without waiting: the client runs
 * on the same loop. */
static void
fake_send_n(struct fconn *c, const char *s, size_t n)
{
	ssize_t w;

	while (n > 0 && (w = send(c->fd, s, n, MSG_DONTWAIT)) > 0) {
		s += w;
		n -= (size_t)w;
	}
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
		if (f->get_reply != NULL) {
			fake_send_n(c, f->get_reply, f->get_reply_len);
			f->get_reply = NULL;
			return;
		}
		if (f->loading > 0 && f->n_log % f->loading == 0) {
			fake_send(c, "-LOADING Redis is loading the dataset\r\n");
			return;
		}
		snprintf(out, sizeof(out), "$%zu\r\nv:%s\r\n",
		    strlen(argv[1]) + 2, argv[1]);
		fake_send(c, out);
	} else if (strcasecmp(argv[0], "LPUSH") == 0) {
		fake_send(c, f->lpush_reply != NULL ? f->lpush_reply :
		    ":1\r\n");
		f->lpush_reply = NULL;
	} else if (strcasecmp(argv[0], "SUBSCRIBE") == 0 && argc == 2) {
		snprintf(out, sizeof(out), "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n"
		    "%s\r\n:1\r\n", strlen(argv[1]), argv[1]);
		fake_send(c, out);
	} else if (strcasecmp(argv[0], "SENTINEL") == 0) {
		if (f->asked++ < f->n_bad) {
			fake_send(c, f->bad[f->asked - 1]);
			return;
		}
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

/* Publish msg on +switch-master to every connection of a fake sentinel. */
static void
fake_switch_master(struct fake *f, const char *msg)
{
	char push[512];

	snprintf(push, sizeof(push), "*3\r\n$7\r\nmessage\r\n$14\r\n"
	    "+switch-master\r\n$%zu\r\n%s\r\n", strlen(msg), msg);
	fake_push(f, push);
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

/* Reply limits and flags of the clients user_client makes (0: default). */
static size_t knob_max_bytes;
static unsigned knob_max_elements, knob_flags;

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
	conf.max_reply_bytes = knob_max_bytes;
	conf.max_reply_elements = knob_max_elements;
	conf.flags = knob_flags;
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
	char msg[256], want[64];

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
	fake_switch_master(s, msg);
	CHECK(run_until(base, &u.ready, 2, 3));
	snprintf(want, sizeof(want), "127.0.0.1:%u", b->port);
	CHECKF(strcmp(tb_redis_server(u.c), want) == 0, "%s",
	    tb_redis_server(u.c));
	CHECK(u.down == 1 && strcmp(u.last_down,
	    "sentinel named a new master") == 0);
	/* another master name on the feed: ignored */
	fake_switch_master(s, "other 127.0.0.1 1 127.0.0.1 65000");
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

/*
 * Unusable sentinel answers (issue 13: one of them stopped the client for
 * good, silently): each is counted by reason and followed by the next
 * sentinel, a round of them by the backoff; a later good answer is used.
 */
static void
test_client_sentinel_unusable(struct event_base *base)
{
	static const char *const bad[] = {
		"*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n",
		"*2\r\n$9\r\n127.0.0.1\r\n$2\r\n-1\r\n",
		"*2\r\n$9\r\n127.0.0.1\r\n$5\r\n70000\r\n",
		"*2\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n",
		"*2\r\n$3\r\na b\r\n$4\r\n6379\r\n",
		"+OK\r\n",
		"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",
		"*-1\r\n",
		"-ERR no\r\n",
	};
	struct fake *s = fake_new(base, NULL), *s2 = fake_new(base, NULL),
	    *a = fake_new(base, NULL);
	uint64_t before[TB_REDIS_SENTINEL_NERR], *now = tb_stats.sentinel_unusable;
	struct user u;
	char want[64], msg[128];

	memcpy(before, now, sizeof(before));
	s->master_port = s2->master_port = a->port;
	s->bad = bad;
	s->n_bad = sizeof(bad) / sizeof(bad[0]);
	user_client(base, &u, 1, 1, "redissentinel://127.0.0.1:%u", s->port);
	CHECK(run_until(base, &u.ready, 1, 5));
	snprintf(want, sizeof(want), "127.0.0.1:%u", a->port);
	CHECKF(strcmp(tb_redis_server(u.c), want) == 0 && s->asked == 10,
	    "%s %u", tb_redis_server(u.c), s->asked);
	CHECK(now[TB_REDIS_SENTINEL_PORT] - before[TB_REDIS_SENTINEL_PORT] == 4);
	CHECK(now[TB_REDIS_SENTINEL_HOST] - before[TB_REDIS_SENTINEL_HOST] == 1);
	CHECK(now[TB_REDIS_SENTINEL_REPLY_TYPE] -
	    before[TB_REDIS_SENTINEL_REPLY_TYPE] == 1);
	CHECK(now[TB_REDIS_SENTINEL_ELEMENT_COUNT] -
	    before[TB_REDIS_SENTINEL_ELEMENT_COUNT] == 1);
	CHECK(now[TB_REDIS_SENTINEL_UNKNOWN_MASTER] -
	    before[TB_REDIS_SENTINEL_UNKNOWN_MASTER] == 1);
	CHECK(now[TB_REDIS_SENTINEL_ERROR_REPLY] -
	    before[TB_REDIS_SENTINEL_ERROR_REPLY] == 1);
	/* rounds of one sentinel back off: 0.02, 0.04, then 0.08 each */
	CHECK(u.bad == 0 && u.down == 0);

	/* a +switch-master that cannot be followed: counted, and the
	 * sentinels asked again (the same master: the connection stays) */
	memcpy(before, now, sizeof(before));
	snprintf(msg, sizeof(msg), "mymaster 127.0.0.1 %u 127.0.0.1 70000",
	    a->port);
	fake_switch_master(s, msg);
	CHECK(run_until(base, &s->asked, 11, 2));
	run_for(base, 0.05);
	CHECK(now[TB_REDIS_SENTINEL_PORT] - before[TB_REDIS_SENTINEL_PORT] == 1);
	CHECK(u.down == 0 && u.ready == 1 && tb_redis_is_ready(u.c));
	tb_redis_free(u.c);

	/* two sentinels: after a bad answer the other one is asked first */
	s->asked = 0;
	s->n_bad = 1;
	user_client(base, &u, 1, 1, "redissentinel://127.0.0.1:%u,"
	    "127.0.0.1:%u", s->port, s2->port);
	CHECK(run_until(base, &u.ready, 1, 3));
	CHECKF(s->asked == 1 && s2->asked == 1, "%u %u", s->asked, s2->asked);
	tb_redis_free(u.c);
	fake_free(s);
	fake_free(s2);
	fake_free(a);
}

/* A reply of len bytes: head, then fill up to len - strlen(tail), then
 * tail. malloc'd. */
static char *
big_reply(const char *head, char fill, size_t len, const char *tail,
    size_t *outlen)
{
	size_t h = strlen(head), t = strlen(tail);
	char *b = malloc(len);

	memcpy(b, head, h);
	memset(b + h, fill, len - h - t);
	memcpy(b + len - t, tail, t);
	*outlen = len;
	return b;
}

/*
 * Replies past the client's limits (issue 13: a fake Redis sending
 * "$1000000000" and then 400 MiB raised RSS from 8 MB to 417 MB): the
 * connection is closed as soon as the limit is passed, "down" says why,
 * the refusal is counted by reason and the client reconnects. At the
 * limits a reply is delivered, the next one counted afresh.
 */
static void
test_client_reply_limits(struct event_base *base)
{
	static const struct {
		const char *head, *tail;	/* around the fill */
		char fill;
		size_t len;
		enum tb_redis_refusal why;	/* NONE: delivered */
	} cases[] = {
		/* still arriving: cut off by the bytes held */
		{ "$1000000000\r\n", "", 'x', 64 << 10, TB_REDIS_REFUSE_BYTES },
		{ "+", "", 'a', 64 << 10, TB_REDIS_REFUSE_BYTES },
		{ "-ERR ", "", 'a', 64 << 10, TB_REDIS_REFUSE_BYTES },
		/* complete, too large: one string, two together */
		{ "$4097\r\n", "\r\n", 'x', 7 + 4097 + 2, TB_REDIS_REFUSE_BYTES },
		{ "*2\r\n$4095\r\n", "\r\n$2\r\nab\r\n", 'x', 11 + 4095 + 10,
		    TB_REDIS_REFUSE_BYTES },
		/* elements: refused at the header, before its allocation */
		{ "*100000000\r\n", "", ':', 13, TB_REDIS_REFUSE_ELEMENTS },
		{ "*2\r\n*4\r\n:1\r\n:1\r\n:1\r\n:1\r\n*4\r\n", "", ':', 38,
		    TB_REDIS_REFUSE_ELEMENTS },
		/* at the limits */
		{ "$4096\r\n", "\r\n", 'x', 7 + 4096 + 2, TB_REDIS_REFUSE_NONE },
		{ "*8\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n:7\r\n:8\r\n", "",
		    ':', 36, TB_REDIS_REFUSE_NONE },
		{ "*2\r\n$4094\r\n", "\r\n$2\r\nab\r\n", 'x', 11 + 4094 + 10,
		    TB_REDIS_REFUSE_NONE },
		{ "*2\r\n$4094\r\n", "\r\n$2\r\nab\r\n", 'x', 11 + 4094 + 10,
		    TB_REDIS_REFUSE_NONE },	/* counted afresh */
	};
	struct fake *f = fake_new(base, NULL);
	uint64_t before[TB_REDIS_REFUSE_N], *now = tb_stats.redis_refused;
	unsigned down, ready, replies;
	struct user u;
	size_t i, n;
	char *b;

	knob_max_bytes = 4096;
	knob_max_elements = 8;
	user_on(base, &u, f, 2);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(before, now, sizeof(before));
		down = u.down;
		ready = u.ready;
		replies = u.replies;
		b = big_reply(cases[i].head, cases[i].fill, cases[i].len,
		    cases[i].tail, &n);
		f->get_reply = b;
		f->get_reply_len = n;
		CHECK(tb_redis_command(u.c, NULL, "GET %s", "k") == 0);
		if (cases[i].why == TB_REDIS_REFUSE_NONE) {
			CHECKF(run_until(base, &u.replies, replies + 1, 2) &&
			    u.down == down, "case %zu", i);
		} else {
			CHECKF(run_until(base, &u.down, down + 1, 2) &&
			    strcmp(u.last_down, cases[i].why ==
			    TB_REDIS_REFUSE_BYTES ? "reply too large" :
			    "reply with too many elements") == 0 &&
			    u.replies == replies &&
			    now[cases[i].why] - before[cases[i].why] == 1,
			    "case %zu: %s", i, u.last_down);
			CHECKF(run_until(base, &u.ready, ready + 1, 2),
			    "case %zu: not ready again", i);
		}
		free(b);
	}
	CHECK(u.bad == 0 && strcmp(tb_redis_refusal_names[
	    TB_REDIS_REFUSE_ELEMENTS], "too_many_elements") == 0);
	tb_redis_free(u.c);

	/* lean replies: an integer is the shared object, a string whole */
	knob_flags = TB_REDIS_F_LEAN_REPLIES;
	user_on(base, &u, f, 2);
	CHECK(tb_redis_command(u.c, NULL, "LPUSH k v") == 0);
	CHECK(tb_redis_command(u.c, NULL, "GET %s", "k") == 0);
	CHECK(run_until(base, &u.replies, 2, 2));
	CHECK(strcmp(u.last_reply, "1:v:k") == 0 && u.down == 0);
	tb_redis_free(u.c);
	knob_flags = 0;
	knob_max_bytes = 0;
	knob_max_elements = 0;
	fake_free(f);
}

/* A sentinel's reply larger than its connection's limit (64 KiB): the
 * next sentinel is asked, whose answer is followed. */
static void
test_client_sentinel_reply_limit(struct event_base *base)
{
	struct fake *s = fake_new(base, NULL), *s2 = fake_new(base, NULL),
	    *a = fake_new(base, NULL);
	uint64_t before = tb_stats.redis_refused[TB_REDIS_REFUSE_BYTES];
	const char *bad[1];
	struct user u;
	char *b;
	size_t n;

	b = big_reply("*2\r\n$70000\r\n", 'h', 15 + 70000 + 13,
	    "\r\n$4\r\n6379\r\n", &n);
	b[n - 1] = '\0';	/* fake_send: a string; the last \n is lost */
	bad[0] = b;
	s->bad = bad;
	s->n_bad = 1;
	s->master_port = s2->master_port = a->port;
	user_client(base, &u, 1, 1, "redissentinel://127.0.0.1:%u,"
	    "127.0.0.1:%u", s->port, s2->port);
	CHECK(run_until(base, &u.ready, 1, 3));
	CHECK(s->asked == 1 && s2->asked == 1);
	CHECK(tb_stats.redis_refused[TB_REDIS_REFUSE_BYTES] - before == 1);
	tb_redis_free(u.c);
	free(b);
	fake_free(s);
	fake_free(s2);
	fake_free(a);
}

/*
 * Replies that hiredis 0.14.1 aborted the process on: a Redis or a
 * sentinel could stop tracebridge with a few bytes. Each is now refused
 * before hiredis sees it: the connection is closed, "down" says why, the
 * refusal is counted by reason, and the client connects again and works.
 * The async.c lines are hiredis v0.14.1's asserts; each case runs in a
 * child, so that on a client without the fix a case that aborts is one
 * failed check, not the end of the run.
 */
enum hostile_conn {
	H_REPLY = 0,	/* data connection: the answer to one LPUSH */
	H_IDLE,		/* data connection, nothing owed: sent unasked */
	H_SUB,		/* SUBSCRIBEd (the policy source): pushed */
	H_SENTINEL,	/* a sentinel's +switch-master feed: pushed */
	H_ANSWER,	/* a sentinel's answer to get-master-addr-by-name */
};

static const struct hostile_reply {
	const char *name;
	enum hostile_conn conn;
	const char *bytes;
	enum tb_redis_refusal why;	/* NONE: taken ... */
	const char *down;		/* ... or closed by hiredis: why */
} hostile_replies[] = {
	{ "one reply too many (:478)", H_REPLY, ":1\r\n:1\r\n",
	    TB_REDIS_REFUSE_UNEXPECTED, NULL },
	{ "a nil too many (:478)", H_REPLY, ":1\r\n$-1\r\n",
	    TB_REDIS_REFUSE_UNEXPECTED, NULL },
	{ "an array too many (:478)", H_REPLY, ":1\r\n*1\r\n:1\r\n",
	    TB_REDIS_REFUSE_UNEXPECTED, NULL },
	{ "a status unasked (:478)", H_IDLE, "+OK\r\n",
	    TB_REDIS_REFUSE_UNEXPECTED, NULL },
	{ "a message unasked, not subscribed (:478)", H_IDLE,
	    "*3\r\n$7\r\nmessage\r\n$9\r\ntb:policy\r\n$1\r\nx\r\n",
	    TB_REDIS_REFUSE_UNEXPECTED, NULL },
	/* hiredis closes the connection itself, with the server's words */
	{ "an error unasked", H_IDLE, "-ERR max number of clients reached\r\n",
	    TB_REDIS_REFUSE_NONE, "ERR max number of clients reached" },
	{ "one element (:378)", H_SUB, "*1\r\n$7\r\nmessage\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "no element (:378)", H_SUB, "*0\r\n", TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "kind not a string (:379)", H_SUB,
	    "*3\r\n:1\r\n$9\r\ntb:policy\r\n$1\r\nx\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "kind a status, not a bulk string (:379)", H_SUB,
	    "*3\r\n+message\r\n$9\r\ntb:policy\r\n$1\r\nx\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "channel not a string (:389)", H_SUB,
	    "*3\r\n$7\r\nmessage\r\n:1\r\n$1\r\nx\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "channel nil (:389)", H_SUB,
	    "*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "unsubscribe count not an integer (:409)", H_SUB,
	    "*3\r\n$11\r\nunsubscribe\r\n$9\r\ntb:policy\r\n$1\r\nx\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "unsubscribe without a count (:409, past the array)", H_SUB,
	    "*2\r\n$11\r\nunsubscribe\r\n$9\r\ntb:policy\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "unsubscribed unasked, then a message (:478)", H_SUB,
	    "*3\r\n$11\r\nunsubscribe\r\n$9\r\ntb:policy\r\n:0\r\n"
	    "*3\r\n$7\r\nmessage\r\n$9\r\ntb:policy\r\n$1\r\nx\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "sentinel feed: one element (:378)", H_SENTINEL,
	    "*1\r\n$7\r\nmessage\r\n", TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "sentinel feed: channel not a string (:389)", H_SENTINEL,
	    "*3\r\n$7\r\nmessage\r\n:1\r\n$1\r\nx\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	/* no assert, but given to the callback of the reply before */
	{ "a message on another channel after ours: not ours", H_SUB,
	    "*3\r\n$7\r\nmessage\r\n$9\r\ntb:policy\r\n$5\r\nfirst\r\n"
	    "*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$6\r\nsecond\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "an integer while subscribed", H_SUB, ":1\r\n",
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "a pattern message", H_SUB, "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n"
	    "$9\r\ntb:policy\r\n$1\r\nx\r\n", TB_REDIS_REFUSE_PUBSUB, NULL },
	{ "a second answer, unasked: not followed", H_ANSWER, NULL,
	    TB_REDIS_REFUSE_PUBSUB, NULL },
	/* what Redis sends: taken */
	{ "a confirmation again", H_SUB,
	    "*3\r\n$9\r\nsubscribe\r\n$9\r\ntb:policy\r\n:1\r\n",
	    TB_REDIS_REFUSE_NONE, NULL },
	{ "a message with an empty payload", H_SUB,
	    "*3\r\n$7\r\nmessage\r\n$9\r\ntb:policy\r\n$0\r\n\r\n",
	    TB_REDIS_REFUSE_NONE, NULL },
};

/* One case of hostile_replies[] on its own loop (this is a child: the
 * parent's loop shares its epoll instance); 0 if every check held. */
static int
hostile_run(const struct hostile_reply *h)
{
	struct event_base *base = event_base_new();
	struct fake *f = fake_new(base, NULL), *s = NULL, *b = NULL;
	uint64_t before[TB_REDIS_REFUSE_N], *now = tb_stats.redis_refused;
	int failed = tb_failed, sub = h->conn == H_SUB;
	const char *bad[1];
	char answer[256], want[64];
	size_t i;
	struct user u;

	memcpy(before, now, sizeof(before));
	if (h->conn == H_SENTINEL || h->conn == H_ANSWER) {
		s = fake_new(base, NULL);
		b = fake_new(base, NULL);
		s->master_port = f->port;
		if (h->conn == H_ANSWER) {
			/* the answer, and a second one naming b */
			snprintf(answer, sizeof(answer), "*2\r\n$9\r\n127.0.0.1"
			    "\r\n$%d\r\n%u\r\n*2\r\n$9\r\n127.0.0.1\r\n$%d"
			    "\r\n%u\r\n", snprintf(NULL, 0, "%u", f->port),
			    f->port, snprintf(NULL, 0, "%u", b->port), b->port);
			bad[0] = answer;
			s->bad = bad;
			s->n_bad = 1;
		}
		user_client(base, &u, 1, 1, "redissentinel://127.0.0.1:%u",
		    s->port);
	} else
		user_client(base, &u, 1, 1, "redis://127.0.0.1:%u", f->port);
	if (sub)
		CHECK(tb_redis_subscribe(u.c, "tb:policy") == 0);
	CHECK(run_until(base, &u.ready, 1, 2));
	if (sub)
		CHECK(run_until(base, &u.subscribed, 1, 2));
	if (s != NULL)
		CHECK(run_until(base, &s->asked, 1, 2));
	run_for(base, 0.02);	/* the sentinel's SUBSCRIBE answered */

	switch (h->conn) {
	case H_REPLY:
		f->lpush_reply = h->bytes;
		CHECK(tb_redis_command(u.c, NULL, "LPUSH k v") == 0);
		CHECK(run_until(base, &u.replies, 1, 2));
		break;
	case H_IDLE:
	case H_SUB:
		fake_push(f, h->bytes);
		break;
	case H_SENTINEL:
		fake_push(s, h->bytes);
		break;
	case H_ANSWER:
		break;
	}

	if (h->conn == H_SENTINEL || h->conn == H_ANSWER) {
		/* the sentinel is asked again; the master kept */
		CHECK(run_until(base, &s->asked, 2, 2));
		run_for(base, 0.05);
		CHECK(u.down == 0 && tb_redis_is_ready(u.c));
		CHECK(b->accepted == 0);
		snprintf(want, sizeof(want), "127.0.0.1:%u", f->port);
		CHECKF(strcmp(tb_redis_server(u.c), want) == 0, "%s",
		    tb_redis_server(u.c));
	} else if (h->why != TB_REDIS_REFUSE_NONE || h->down != NULL) {
		CHECK(run_until(base, &u.down, 1, 2));
		CHECKF(strcmp(u.last_down, h->down != NULL ? h->down :
		    h->why == TB_REDIS_REFUSE_UNEXPECTED ? "unexpected reply" :
		    "bad pub/sub reply") == 0, "%s", u.last_down);
		CHECK(run_until(base, &u.ready, 2, 2));
		if (sub)
			CHECK(run_until(base, &u.subscribed, 2, 2));
	} else {
		run_for(base, 0.1);
		CHECK(u.down == 0);
	}
	for (i = 0; i < TB_REDIS_REFUSE_N; i++)
		CHECKF(now[i] - before[i] == (i == (size_t)h->why &&
		    h->why != TB_REDIS_REFUSE_NONE), "%s: %" PRIu64,
		    tb_redis_refusal_names[i], now[i] - before[i]);

	/* and the connection works again */
	if (sub) {
		fake_push(f, "*3\r\n$7\r\nmessage\r\n$9\r\ntb:policy\r\n"
		    "$4\r\nnext\r\n");
		CHECK(run_until(base, &u.messages, u.messages + 1, 2) &&
		    strcmp(u.last_msg, "next") == 0);
		if (strstr(h->bytes, "other") != NULL)
			CHECK(u.messages == 2);	/* "first", "next" */
	} else {
		u.replies = 0;
		CHECK(tb_redis_command(u.c, NULL, "GET %s", "k") == 0);
		CHECK(run_until(base, &u.replies, 1, 2) &&
		    strcmp(u.last_reply, "1:v:k") == 0);
	}
	CHECK(u.bad == 0);
	tb_redis_free(u.c);
	fake_free(f);
	if (s != NULL) {
		fake_free(s);
		fake_free(b);
	}
	event_base_free(base);
	return tb_failed != failed;
}

static void
test_client_hostile_replies(void)
{
	const struct hostile_reply *h;
	pid_t pid;
	int st;

	for (h = hostile_replies; h < hostile_replies +
	    sizeof(hostile_replies) / sizeof(hostile_replies[0]); h++) {
		fflush(stdout);
		fflush(stderr);
		st = -1;
		if ((pid = fork()) == 0)
			_exit(hostile_run(h));
		CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
		CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s %d",
		    h->name, WIFSIGNALED(st) ? "killed by signal" :
		    "checks failed, exit", WIFSIGNALED(st) ? WTERMSIG(st) :
		    WEXITSTATUS(st));
	}
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
	test_sentinel_answer_table();
	test_sentinel_answer_sizes();
	test_switch_master();

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
	test_client_sentinel_unusable(base);
	test_client_reply_limits(base);
	test_client_sentinel_reply_limit(base);
	event_base_free(base);
	test_client_hostile_replies();
	TB_TEST_END();
}
