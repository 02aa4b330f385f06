/*
 * test_sock.c: the socket layer (src/sock.c) on a socketpair, plain and
 * TLS: reads far larger than libevent's 4 KiB in one call, EAGAIN without
 * a callback, the read watermark stopping and resuming by itself, EOF after
 * the data, writes and the write callback, the write timeout, a sock freed
 * inside its own callback, and over TLS many records read in one call,
 * bytes left inside OpenSSL at the watermark, close_notify as EOF; timeouts
 * changed while waiting, with no epoll_ctl and no stale timeout callback.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sock.h"
#include "tb_test.h"

struct seen {
	int reads, writes, events, last_event;
	size_t last_in;
	int free_in_read;	/* sock_free() from the read callback */
	int connected;
};

static void
on_read(struct sock *s, void *arg)
{
	struct seen *v = arg;

	v->reads++;
	v->last_in = evbuffer_get_length(sock_input(s));
	if (v->free_in_read)
		sock_free(s);
}

static void
on_write(struct sock *s, void *arg)
{
	((struct seen *)arg)->writes++;
}

static void
on_event(struct sock *s, int what, void *arg)
{
	struct seen *v = arg;

	v->events++;
	v->last_event = what;
	if (what & SOCK_CONNECTED)
		v->connected = 1;
}

static void
pair(int fd[2])
{
	int big = 4 << 20;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd) < 0) {
		perror("socketpair");
		exit(2);
	}
	/* room for a large body in flight (root may pass the sysctl cap) */
	(void)setsockopt(fd[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
	(void)setsockopt(fd[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
	fcntl(fd[0], F_SETFL, O_NONBLOCK);
}

static void
fill(char *p, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (char)((i * 31 + seed) & 0xff);
}

static size_t
write_all(int fd, const char *p, size_t n)
{
	size_t o = 0;
	ssize_t w;

	while (o < n && (w = write(fd, p + o, n - o)) > 0)
		o += (size_t)w;
	return o;
}

static void
loop_once(struct event_base *b)
{
	event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* Run the loop until cond holds or 2 s pass. */
#define LOOP_UNTIL(b, cond) do {					\
	int n_;								\
	for (n_ = 0; n_ < 2000 && !(cond); n_++) {			\
		struct timeval t_ = { 0, 1000 };			\
		event_base_loopexit((b), &t_);				\
		event_base_dispatch(b);					\
	}								\
} while (0)

/* Run the loop for ms milliseconds. */
static void
loop_for(struct event_base *b, int ms)
{
	struct timeval t = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(b, &t);
	event_base_dispatch(b);
}

/*
 * libevent's epoll_ctl calls, counted: this definition is the one libevent
 * binds to, and passes each call on to libc's.
 */
static unsigned n_epoll_ctl;

int
epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	static int (*real)(int, int, int, struct epoll_event *);

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "epoll_ctl");
	n_epoll_ctl++;
	return real(epfd, op, fd, ev);
}

/* test_timeouts: B's read callback gives A's reads a new timeout. */
static struct sock *retime_target;
static const struct timeval *retime_tv;

static void
on_read_untime(struct sock *s, void *arg)
{
	on_read(s, arg);
	sock_set_timeouts(retime_target, retime_tv, NULL);
}

/*
 * Timeouts change while a direction waits (every proxied request does so
 * twice) without an epoll_ctl: shortened, lengthened, removed; a removed
 * one stays removed after the event fires again (a persistent event
 * re-arms its last timeout).
 */
static void
test_timeouts(void)
{
	struct event_base *b = event_base_new();
	struct seen v = { 0 };
	struct timeval t30 = { 0, 30 * 1000 }, t10s = { 10, 0 }, t20s = { 20, 0 };
	struct sock *s;
	int fd[2], i;

	pair(fd);
	s = sock_new(b, fd[0], NULL, SOCK_PLAIN);
	sock_setcb(s, on_read, on_write, on_event, &v);
	sock_set_timeouts(s, &t10s, NULL);
	sock_enable(s, SOCK_READING);
	loop_once(b);
	/* a proxied request changes a waiting direction's timeout twice:
	 * that costs no epoll_ctl (an event_del + event_add costs a MOD) */
	if (strcmp(event_base_get_method(b), "epoll") == 0) {
		unsigned n0 = n_epoll_ctl;

		for (i = 0; i < 50; i++) {
			sock_set_timeouts(s, i % 2 ? &t10s : &t20s, NULL);
			loop_once(b);
		}
		CHECKF(n_epoll_ctl == n0, "%u epoll_ctl calls for 50 timeout changes",
		    n_epoll_ctl - n0);
		CHECK(n_epoll_ctl > 0);	/* the counter counts */
		sock_set_timeouts(s, &t10s, NULL);
	}

	/* shortened while waiting: fires at the new time */
	sock_set_timeouts(s, &t30, NULL);
	loop_for(b, 200);
	CHECKF(v.events == 1 && v.last_event == (SOCK_TIMEOUT | SOCK_READING),
	    "events %d, last %#x", v.events, v.last_event);
	CHECK(!(sock_enabled(s) & SOCK_READING));

	/* removed while waiting: never fires, nor after a read */
	memset(&v, 0, sizeof(v));
	sock_enable(s, SOCK_READING);	/* the 30 ms timeout again */
	loop_once(b);
	sock_set_timeouts(s, NULL, NULL);
	loop_for(b, 100);
	CHECK(v.events == 0);
	CHECK(write_all(fd[1], "x", 1) == 1);
	LOOP_UNTIL(b, v.reads == 1);
	evbuffer_drain(sock_input(s), 1);
	loop_for(b, 100);
	CHECKF(v.reads == 1 && v.events == 0, "reads %d, events %d", v.reads, v.events);

	/* lengthened while waiting: not at the old time */
	sock_set_timeouts(s, &t30, NULL);
	loop_once(b);
	sock_set_timeouts(s, &t10s, NULL);
	loop_for(b, 100);
	CHECK(v.events == 0);

	/* removed or changed by another callback in the loop turn where it
	 * fired: its queued callback is dropped (it runs after the I/O ones) */
	for (i = 0; i < 2; i++) {
		struct seen vb = { 0 };
		struct sock *sb;
		int fb[2];

		pair(fb);
		sb = sock_new(b, fb[0], NULL, SOCK_PLAIN);
		retime_target = s;
		retime_tv = i == 0 ? NULL : &t10s;
		sock_setcb(sb, on_read_untime, NULL, on_event, &vb);
		sock_enable(sb, SOCK_READING);
		sock_set_timeouts(s, &t30, NULL);
		loop_once(b);
		memset(&v, 0, sizeof(v));
		CHECK(write_all(fb[1], "y", 1) == 1);
		usleep(60 * 1000);	/* s's timeout is due at the next dispatch */
		loop_once(b);
		CHECKF(vb.reads == 1 && v.events == 0, "%s: reads %d, events %d",
		    i == 0 ? "removed" : "changed", vb.reads, v.events);
		loop_for(b, 100);
		CHECK(v.events == 0 && (sock_enabled(s) & SOCK_READING));
		sock_free(sb);
		close(fb[1]);
	}
	sock_set_timeouts(s, NULL, NULL);

	/* set while not waiting: used when it waits again */
	sock_disable(s, SOCK_READING);
	sock_set_timeouts(s, &t30, NULL);
	loop_for(b, 60);
	CHECK(v.events == 0);
	sock_enable(s, SOCK_READING);
	loop_for(b, 200);
	CHECK(v.events == 1 && v.last_event == (SOCK_TIMEOUT | SOCK_READING));
	sock_free(s);
	close(fd[1]);
	event_base_free(b);
}

static void
test_plain_reads(void)
{
	struct event_base *b = event_base_new();
	struct seen v = { 0 };
	const size_t n = 200 * 1024;
	char *data = malloc(n), *got;
	struct sock *s;
	int fd[2], i;

	pair(fd);
	fill(data, n, 1);
	s = sock_new(b, fd[0], NULL, SOCK_PLAIN);
	CHECK(s != NULL);
	sock_setcb(s, on_read, on_write, on_event, &v);
	sock_enable(s, SOCK_READING | SOCK_WRITING);

	/* nothing there: no callback, no event */
	loop_once(b);
	CHECK(v.reads == 0 && v.events == 0);

	/* 200 KiB waiting: one read callback sees all of it */
	CHECK(write_all(fd[1], data, n) == n);
	loop_once(b);
	CHECKF(v.reads == 1 && v.last_in == n, "reads %d, %zu bytes", v.reads, v.last_in);
	got = malloc(n);
	CHECK(evbuffer_remove(sock_input(s), got, n) == (int)n);
	CHECK(memcmp(got, data, n) == 0);

	/* the watermark stops reading; draining resumes it by itself */
	sock_set_read_high(s, 10000);
	CHECK(write_all(fd[1], data, 50000) == 50000);
	v.reads = 0;
	loop_once(b);
	CHECK(v.reads == 1 && v.last_in == 10000);
	loop_once(b);
	CHECK(v.reads == 1);	/* suspended: the socket is not read */
	for (i = 0; i < 4; i++) {
		evbuffer_drain(sock_input(s), 10000);
		LOOP_UNTIL(b, v.reads == i + 2);
	}
	CHECKF(v.reads == 5 && v.last_in == 10000, "reads %d", v.reads);
	evbuffer_drain(sock_input(s), 10000);

	/* EOF comes after the data, and once */
	sock_set_read_high(s, 0);
	CHECK(write_all(fd[1], data, 1000) == 1000);
	close(fd[1]);
	v.reads = v.events = 0;
	LOOP_UNTIL(b, v.events > 0);
	CHECK(v.reads == 1 && v.last_in == 1000);
	CHECK(v.events == 1 && v.last_event == (SOCK_EOF | SOCK_READING));
	CHECK(!(sock_enabled(s) & SOCK_READING));
	sock_free(s);
	event_base_free(b);
	free(data);
	free(got);
}

static void
test_plain_writes(void)
{
	struct event_base *b = event_base_new();
	struct seen v = { 0 };
	const size_t n = 1 << 20;
	char *data = malloc(n), *got = malloc(n);
	struct timeval tv = { 0, 50 * 1000 };
	size_t o = 0;
	ssize_t r;
	struct sock *s;
	int fd[2], small = 4096;

	pair(fd);
	fill(data, n, 2);
	s = sock_new(b, fd[0], NULL, SOCK_PLAIN);
	sock_setcb(s, on_read, on_write, on_event, &v);
	sock_enable(s, SOCK_WRITING);
	evbuffer_add(sock_output(s), data, n);
	sock_write_now(s);
	fcntl(fd[1], F_SETFL, O_NONBLOCK);
	while (o < n) {
		loop_once(b);
		while ((r = read(fd[1], got + o, n - o)) > 0)
			o += (size_t)r;
	}
	loop_once(b);
	CHECK(memcmp(got, data, n) == 0);
	CHECK(v.writes >= 1);
	CHECK(evbuffer_get_length(sock_output(s)) == 0);
	sock_free(s);

	/* a peer that does not read: the write timeout fires, once */
	close(fd[1]);
	pair(fd);
	(void)setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	s = sock_new(b, fd[0], NULL, SOCK_PLAIN);
	memset(&v, 0, sizeof(v));
	sock_setcb(s, on_read, on_write, on_event, &v);
	sock_set_timeouts(s, NULL, &tv);
	sock_enable(s, SOCK_WRITING);
	evbuffer_add(sock_output(s), data, n);
	LOOP_UNTIL(b, v.events > 0);
	CHECK(v.events == 1 && v.last_event == (SOCK_TIMEOUT | SOCK_WRITING));
	sock_free(s);
	close(fd[1]);

	/* freed inside its own read callback: no use after free (ASan) */
	pair(fd);
	s = sock_new(b, fd[0], NULL, SOCK_PLAIN);
	memset(&v, 0, sizeof(v));
	v.free_in_read = 1;
	sock_setcb(s, on_read, on_write, on_event, &v);
	sock_enable(s, SOCK_READING);
	write_all(fd[1], data, 100);
	close(fd[1]);		/* EOF in the same read: never reported */
	LOOP_UNTIL(b, v.reads > 0);
	loop_once(b);
	CHECK(v.reads == 1 && v.events == 0);
	event_base_free(b);
	free(data);
	free(got);
}

/* ---- TLS ---- */

static SSL_CTX *
server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *nm;

	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	nm = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
	X509_set_issuer_name(x, nm);
	X509_sign(x, k, EVP_sha256());
	SSL_CTX_use_certificate(ctx, x);
	SSL_CTX_use_PrivateKey(ctx, k);
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	X509_free(x);
	EVP_PKEY_free(k);
	return ctx;
}

/* The client, on a thread, blocking: steps are driven through a pipe so
 * that the main thread knows what is in flight when it runs the loop. */
struct client {
	int fd, go[2], done[2];
	SSL *ssl;
	char *data;
	size_t n;
};

static void
step_wait(int fd)
{
	char c;

	(void)!read(fd, &c, 1);
}

static void
step_signal(int fd)
{
	(void)!write(fd, "x", 1);
}

static void *
client_main(void *arg)
{
	struct client *c = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	size_t o, got;
	char *buf = malloc(c->n);

	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	if (SSL_connect(c->ssl) != 1)
		ERR_print_errors_fp(stderr);
	step_signal(c->done[1]);	/* 1: handshake done */
	step_wait(c->go[0]);
	SSL_write(c->ssl, c->data, (int)c->n);	/* many records */
	step_signal(c->done[1]);	/* 2: all written */
	step_wait(c->go[0]);
	for (o = 0; o < c->n && SSL_read_ex(c->ssl, buf + o, c->n - o, &got) == 1; o += got)
		;
	c->n = memcmp(buf, c->data, c->n) == 0 ? o : 0;	/* what came back intact */
	SSL_shutdown(c->ssl);	/* close_notify */
	step_signal(c->done[1]);	/* 3: read back, closed */
	SSL_free(c->ssl);
	SSL_CTX_free(ctx);
	free(buf);
	return NULL;
}

static void
test_tls(void)
{
	struct event_base *b = event_base_new();
	SSL_CTX *sctx = server_ctx();
	struct client c;
	struct seen v = { 0 };
	const size_t n = 200 * 1024;
	char *back = malloc(n);
	struct sock *s;
	pthread_t th;
	int fd[2];

	pair(fd);
	memset(&c, 0, sizeof(c));
	c.fd = fd[1];
	c.n = n;
	c.data = malloc(n);
	fill(c.data, n, 3);
	if (pipe(c.go) < 0 || pipe(c.done) < 0)
		exit(2);
	fcntl(c.done[0], F_SETFL, O_NONBLOCK);
	s = sock_new(b, fd[0], SSL_new(sctx), SOCK_TLS_ACCEPT);
	CHECK(s != NULL);
	sock_setcb(s, on_read, on_write, on_event, &v);
	sock_enable(s, SOCK_READING | SOCK_WRITING);
	pthread_create(&th, NULL, client_main, &c);
	LOOP_UNTIL(b, v.connected);
	CHECK(v.connected && sock_ssl(s) != NULL && SSL_is_init_finished(sock_ssl(s)));
	fcntl(c.done[0], F_SETFL, 0);
	step_wait(c.done[0]);		/* 1 */

	/* 200 KiB in ~13 records, all sent: one read callback has them all */
	step_signal(c.go[1]);
	step_wait(c.done[0]);		/* 2 */
	v.reads = 0;
	sock_set_read_high(s, 0);
	LOOP_UNTIL(b, v.reads > 0);
	CHECKF(v.reads == 1 && v.last_in == n, "reads %d, %zu bytes", v.reads, v.last_in);
	CHECK(evbuffer_remove(sock_input(s), back, n) == (int)n);
	CHECK(memcmp(back, c.data, n) == 0);

	/* echo it back: whole records out, the write callback at empty */
	v.writes = 0;
	evbuffer_add(sock_output(s), back, n);
	sock_write_now(s);
	step_signal(c.go[1]);
	LOOP_UNTIL(b, v.writes > 0 && evbuffer_get_length(sock_output(s)) == 0);
	CHECK(v.writes >= 1);

	/* close_notify: EOF, not an error */
	v.events = 0;
	step_wait(c.done[0]);		/* 3 */
	LOOP_UNTIL(b, v.events > 0);
	CHECKF(v.last_event == (SOCK_EOF | SOCK_READING), "event 0x%x", v.last_event);
	CHECK(sock_ssl_error(s) == 0);
	pthread_join(th, NULL);
	CHECK(c.n == n);
	sock_tls_close(s, 1);
	sock_free(s);
	close(fd[1]);
	SSL_CTX_free(sctx);
	event_base_free(b);
	free(c.data);
	free(back);
}

/*
 * Bytes left inside OpenSSL when the watermark stops reading: the peer has
 * sent everything, the socket stays silent, yet draining the input must
 * bring the rest (libevent's TLS bufferevent stalled here).
 */
static void *
writer_main(void *arg)
{
	struct client *c = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	if (SSL_connect(c->ssl) == 1)
		SSL_write(c->ssl, c->data, (int)c->n);
	step_signal(c->done[1]);
	step_wait(c->go[0]);
	SSL_free(c->ssl);
	SSL_CTX_free(ctx);
	return NULL;
}

static void
test_tls_pending_at_watermark(void)
{
	struct event_base *b = event_base_new();
	SSL_CTX *sctx = server_ctx();
	struct client c;
	struct seen v = { 0 };
	const size_t n = 100 * 1024;
	size_t total = 0;
	struct sock *s;
	pthread_t th;
	int fd[2], i;

	pair(fd);
	memset(&c, 0, sizeof(c));
	c.fd = fd[1];
	c.n = n;
	c.data = malloc(n);
	fill(c.data, n, 4);
	if (pipe(c.go) < 0 || pipe(c.done) < 0)
		exit(2);
	s = sock_new(b, fd[0], SSL_new(sctx), SOCK_TLS_ACCEPT);
	sock_setcb(s, on_read, on_write, on_event, &v);
	sock_set_read_high(s, 1000);	/* far less than one record */
	sock_enable(s, SOCK_READING);
	pthread_create(&th, NULL, writer_main, &c);
	LOOP_UNTIL(b, v.connected);
	step_wait(c.done[0]);		/* everything is written */
	for (i = 0; i < 1000 && total < n; i++) {
		LOOP_UNTIL(b, evbuffer_get_length(sock_input(s)) > 0);
		total += evbuffer_get_length(sock_input(s));
		evbuffer_drain(sock_input(s), evbuffer_get_length(sock_input(s)));
	}
	CHECKF(total == n, "%zu of %zu bytes", total, n);
	step_signal(c.go[1]);
	pthread_join(th, NULL);
	sock_free(s);
	close(fd[1]);
	SSL_CTX_free(sctx);
	event_base_free(b);
	free(c.data);
}

/* sock_mark_write: what is read before the next write is counted, what is
 * read after it is not. */
static void
test_read_before_write(void)
{
	struct event_base *b = event_base_new();
	struct seen v = { 0 };
	struct sock *s;
	char got[64];
	int fd[2];

	pair(fd);
	s = sock_new(b, fd[0], NULL, SOCK_PLAIN);
	sock_setcb(s, on_read, on_write, on_event, &v);
	sock_enable(s, SOCK_READING | SOCK_WRITING);
	CHECK(sock_read_before_write(s) == 0);

	/* not marked: reads are not counted */
	CHECK(write_all(fd[1], "early", 5) == 5);
	LOOP_UNTIL(b, v.reads == 1);
	CHECK(sock_read_before_write(s) == 0);
	evbuffer_drain(sock_input(s), 5);

	/* marked: bytes read before the request goes out count... */
	sock_mark_write(s);
	CHECK(write_all(fd[1], "stray", 5) == 5);
	LOOP_UNTIL(b, v.reads == 2);
	CHECK(sock_read_before_write(s) == 5);
	/* ...and the count stays once the write happened */
	evbuffer_add(sock_output(s), "GET", 3);
	sock_write_now(s);
	LOOP_UNTIL(b, evbuffer_get_length(sock_output(s)) == 0);
	CHECK(read(fd[1], got, sizeof(got)) == 3);
	CHECK(write_all(fd[1], "answer", 6) == 6);
	LOOP_UNTIL(b, v.reads == 3);
	CHECK(sock_read_before_write(s) == 5);

	/* marked again, written first: what comes after is the answer */
	evbuffer_drain(sock_input(s), evbuffer_get_length(sock_input(s)));
	sock_mark_write(s);
	CHECK(sock_read_before_write(s) == 0);
	evbuffer_add(sock_output(s), "GET", 3);
	sock_write_now(s);
	LOOP_UNTIL(b, evbuffer_get_length(sock_output(s)) == 0);
	CHECK(write_all(fd[1], "answer", 6) == 6);
	LOOP_UNTIL(b, v.reads == 4);
	CHECK(sock_read_before_write(s) == 0 &&
	    evbuffer_get_length(sock_input(s)) == 6);
	sock_free(s);
	close(fd[1]);
	event_base_free(b);
}

int
main(void)
{
	test_plain_reads();
	test_timeouts();
	test_plain_writes();
	test_read_before_write();
	test_tls();
	test_tls_pending_at_watermark();
	TB_TEST_END();
}
