/*
 * sock.h: socket I/O over the event loop, for client and upstream
 * connections alike, plain or TLS (STYLE.md 16: one socket layer).
 *
 * Why our own and not bufferevents: libevent 2.1's evbuffer_read() reads
 * at most 4096 bytes and a socket bufferevent reads once per loop turn, so
 * a body moved 4 KiB per turn (issue 11). Here a readable socket is read
 * straight into reserved evbuffer space, up to SOCK_READ_MAX per call, and
 * TLS records are read until OpenSSL has no more; writes are one writev of
 * the whole output, or SSL_write()s of whole 16 KB records.
 *
 * The model is the bufferevent one the connection code was built on: an
 * input and an output evbuffer, a read callback (bytes arrived), a write
 * callback (output drained to the low watermark), an event callback (EOF,
 * error, timeout, connected), per-direction enable bits, a read high
 * watermark that suspends reading and resumes by itself when the input
 * drains, and per-direction idle timeouts that count only while that
 * direction waits.
 *
 * Freeing a sock inside one of its own callbacks is allowed: the memory
 * goes when the callback chain unwinds (STYLE.md 6).
 */
#ifndef TB_SOCK_H
#define TB_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <openssl/ssl.h>

struct event_base;
struct evbuffer;
struct sock;

/* Directions, for sock_enable/sock_disable and in event masks. */
#define SOCK_READING	0x01
#define SOCK_WRITING	0x02
/* What happened, in the event callback's mask (with a direction). */
#define SOCK_EOF	0x10	/* the peer closed (TLS: close_notify or TCP FIN) */
#define SOCK_ERROR	0x20	/* errno or sock_ssl_error() says which */
#define SOCK_TIMEOUT	0x40	/* the direction waited longer than its timeout */
#define SOCK_CONNECTED	0x80	/* connect done and, over TLS, the handshake */

/* Largest single read: large enough that a body moves in few loop turns. */
#define SOCK_READ_MAX	(256 * 1024)

typedef void (*sock_data_cb)(struct sock *s, void *arg);
typedef void (*sock_event_cb)(struct sock *s, int what, void *arg);

enum sock_tls_role {
	SOCK_PLAIN = 0,
	SOCK_TLS_ACCEPT,	/* server side: handshake starts at once */
	SOCK_TLS_CONNECT,	/* client side: handshake after sock_connect */
};

/*
 * A sock over fd, a connected (or, for sock_connect, fresh) non-blocking
 * socket. ssl (with role) may be NULL for plain. The sock owns fd and ssl
 * from the call on, even when it fails (then both are closed/freed).
 * Nothing is enabled yet.
 */
struct sock *sock_new(struct event_base *base, int fd, SSL *ssl,
    enum sock_tls_role role);

/* Close the socket and free everything; safe inside the sock's callbacks. */
void sock_free(struct sock *s);

/*
 * Start a connect to sa; the outcome arrives as SOCK_CONNECTED (after the
 * TLS handshake for SOCK_TLS_CONNECT) or SOCK_ERROR/SOCK_TIMEOUT, from the
 * event loop, never from inside this call. Output queued before is sent
 * once connected. 0, or -1 with errno when the connect failed at once.
 */
int sock_connect(struct sock *s, const struct sockaddr *sa, socklen_t len);

void sock_setcb(struct sock *s, sock_data_cb readcb, sock_data_cb writecb,
    sock_event_cb eventcb, void *arg);
void sock_enable(struct sock *s, int dirs);
void sock_disable(struct sock *s, int dirs);
int sock_enabled(const struct sock *s);

/* Timeouts per direction; NULL for none. Re-arms a waiting direction. */
void sock_set_timeouts(struct sock *s, const struct timeval *rd,
    const struct timeval *wr);
/* Stop reading while the input holds high bytes or more (0: no bound). */
void sock_set_read_high(struct sock *s, size_t high);
/* Call the write callback once the output drained to low bytes. */
void sock_set_write_low(struct sock *s, size_t low);

struct evbuffer *sock_input(struct sock *s);
struct evbuffer *sock_output(struct sock *s);

/*
 * Write the output in this loop iteration rather than after epoll reports
 * the socket writable (it almost always is). With the workers' epoll
 * changelist the write event's add and remove then cancel out. Only once
 * connected; before, queued output waits for the connect.
 */
void sock_write_now(struct sock *s);

/*
 * What waits to be read on an idle sock: SOCK_STRAY_NONE when nothing
 * (not in the input, not inside OpenSSL, not in the socket: a
 * non-blocking peek), SOCK_STRAY_EOF when the peer closed,
 * SOCK_STRAY_BYTES otherwise. For a pooled connection about to carry a
 * request: bytes after a response must never be taken for the next one.
 */
#define SOCK_STRAY_NONE		0
#define SOCK_STRAY_EOF		1
#define SOCK_STRAY_BYTES	2
int sock_stray(struct sock *s, int peek);	/* peek 0: no syscall, what is known */

/*
 * Count what is read from now until the output next goes into the socket:
 * an upstream connection's bytes that came before its request was written
 * are never that request's response, however the loop ordered the read
 * and the write. sock_read_before_write() is that count, frozen once the
 * write happened (0 if nothing came first).
 */
void sock_mark_write(struct sock *s);
uint64_t sock_read_before_write(const struct sock *s);

/* NULL for a plain sock. */
SSL *sock_ssl(const struct sock *s);
/* The first OpenSSL library error of a failed TLS operation, or 0. */
unsigned long sock_ssl_error(const struct sock *s);

/*
 * Before sock_free of a TLS sock whose handshake completed: send our
 * close_notify when nothing else waits to be written, and unless the
 * connection failed (clean = 0) keep its session resumable, which OpenSSL
 * otherwise forgets for every connection not shut down both ways (most
 * clients and servers just close). A no-op for plain socks.
 */
void sock_tls_close(struct sock *s, int clean);

/* ---- splice(2): plaintext bodies socket to socket, no copy ---- */

/* A per-worker pool of pipes for splicing, bounded: when every pipe is
 * lent, bodies move the ordinary way. */
struct sock_pipes;

/* SOCK_PIPE_SIZE bytes per pipe, at most max pipes (0: none); NULL on
 * out of memory. */
#define SOCK_PIPE_SIZE	(256 * 1024)
struct sock_pipes *sock_pipes_new(unsigned max);
/* Closes the idle pipes; lent ones are closed when their splice ends. */
void sock_pipes_free(struct sock_pipes *p);

/* For sock_splice: relay until src reaches EOF. */
#define SOCK_SPLICE_TO_EOF	UINT64_MAX

/*
 * Relay up to len bytes (or SOCK_SPLICE_TO_EOF) from src's socket to dst's
 * through a pipe of pool, in the kernel. Only between two plain, open
 * socks, with src's input and dst's output empty (buffered bytes go first,
 * the ordinary way); returns -1 otherwise or when no pipe is free, and the
 * caller moves the bytes itself.
 *
 * While it runs, src's socket is read only into the pipe and dst's socket
 * written only from it, each under its sock's enable bit and timeout;
 * every other event is as usual. src's read callback is called whenever
 * bytes reached dst and once more when the relay ends (len bytes moved, or
 * src's EOF once the pipe is empty: then src's EOF event follows);
 * sock_splice_take() tells how many and whether it still runs. Freeing
 * either sock ends it.
 */
int sock_splice(struct sock *src, struct sock *dst, struct sock_pipes *pool,
    uint64_t len);
/* Bytes src relayed to dst since the last call; *running: still going. */
uint64_t sock_splice_take(struct sock *src, int *running);

#endif
