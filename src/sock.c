/*
 * sock.c: socket I/O over the event loop, plain and TLS (see sock.h).
 *
 * One read event and one write event per socket, both persistent with the
 * direction's timeout, added only while that direction has work:
 * update_events() is the one place that decides, from the phase, the
 * enable bits, the watermark and what OpenSSL asked for. Callbacks into
 * the owner happen only from the two event handlers, which hold a busy
 * count so that sock_free() inside a callback defers the free.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sock.h"

/* A new sock's first read; each read that fills its space doubles the next. */
#define SOCK_READ_FIRST	(16 * 1024)

/* One SSL_write: a full TLS record's worth of plaintext. */
#define SOCK_TLS_WRITE	16384

enum sock_phase {
	SOCK_P_NEW = 0,		/* made for sock_connect, not started */
	SOCK_P_CONNECTING,	/* TCP connect in progress: wait for writable */
	SOCK_P_HANDSHAKE,	/* TLS handshake */
	SOCK_P_OPEN,		/* data flows */
};

/* flags */
#define SF_HS_WANT_READ		0x01	/* the handshake waits to read... */
#define SF_HS_WANT_WRITE	0x02	/* ...or to write */
#define SF_RD_WANTS_WR		0x04	/* an SSL_read needs the socket writable */
#define SF_WR_WANTS_RD		0x08	/* an SSL_write needs it readable */
#define SF_REV_ON		0x10	/* read event added */
#define SF_WEV_ON		0x20	/* write event added */
#define SF_HAS_RTV		0x40
#define SF_HAS_WTV		0x80

/* Why the kick event runs. (Not event_active() on the I/O events: their
 * persistent-timeout closure would add them behind update_events' back.) */
#define KICK_READ		0x01	/* OpenSSL holds bytes epoll can't see */
#define KICK_WRITE		0x02	/* sock_write_now */

struct sock {
	struct event_base *base;
	int fd;
	SSL *ssl;
	enum sock_phase phase;
	unsigned flags;
	int enabled;			/* SOCK_READING | SOCK_WRITING */
	struct event *rev, *wev;
	struct event *kick;		/* run I/O from the loop, not from a caller */
	int kick_what;			/* KICK_* */
	struct evbuffer *in, *out;
	struct evbuffer_cb_entry *in_cbe, *out_cbe;
	sock_data_cb readcb, writecb;
	sock_event_cb eventcb;
	void *arg;
	size_t read_high, write_low;
	struct timeval rtv, wtv;
	size_t wretry;			/* an SSL_write to repeat with this length */
	unsigned long ssl_err;		/* first OpenSSL library error */
	int busy;			/* inside a handler */
	int dead;			/* sock_free()d while busy */
	struct sock_splice *sp;		/* a relay this sock is the src or dst of */
	uint64_t sp_moved;		/* src: bytes relayed, not yet taken */
	int eof_seen;			/* the socket reached EOF: nothing to relay */
	int wmark;			/* sock_mark_write: counting reads until a write */
	uint64_t rd_before_wr;		/* what was read meanwhile */
	size_t rd_size;			/* next read's size: grows to SOCK_READ_MAX */
};

/* One splice(2) relay: src's socket -> pipe -> dst's socket. */
struct sock_splice {
	struct sock *src, *dst;
	struct sock_pipes *pool;
	int pfd[2];
	size_t cap;			/* the pipe's size */
	size_t in_pipe;			/* bytes in the pipe */
	uint64_t left;			/* still to read from src, or SOCK_SPLICE_TO_EOF */
};

struct sock_pipes {
	unsigned max, n_idle, n_lent;
	int freed;			/* sock_pipes_free() with pipes lent */
	int (*idle)[2];
};

static void splice_end(struct sock_splice *sp);
static void relay(struct sock_splice *sp);

static void sock_read_ev(evutil_socket_t fd, short what, void *arg);
static void sock_write_ev(evutil_socket_t fd, short what, void *arg);
static void sock_kick_ev(evutil_socket_t fd, short what, void *arg);

static void
kick(struct sock *s, int what)
{
	s->kick_what |= what;
	event_active(s->kick, EV_READ, 1);	/* once, however often asked */
}

static int
want_read(const struct sock *s)
{
	switch (s->phase) {
	case SOCK_P_HANDSHAKE:
		return (s->flags & SF_HS_WANT_READ) != 0;
	case SOCK_P_OPEN:
		if (s->sp != NULL && s->sp->src == s)
			return (s->enabled & SOCK_READING) && !s->eof_seen &&
			    s->sp->left > 0 && s->sp->in_pipe < s->sp->cap;
		if ((s->flags & SF_WR_WANTS_RD) && (s->enabled & SOCK_WRITING) &&
		    evbuffer_get_length(s->out) > 0)
			return 1;
		return (s->enabled & SOCK_READING) &&
		    (s->read_high == 0 || evbuffer_get_length(s->in) < s->read_high);
	default:
		return 0;
	}
}

static int
want_write(const struct sock *s)
{
	switch (s->phase) {
	case SOCK_P_CONNECTING:
		return 1;
	case SOCK_P_HANDSHAKE:
		return (s->flags & SF_HS_WANT_WRITE) != 0;
	case SOCK_P_OPEN:
		if (s->sp != NULL && s->sp->dst == s)
			return (s->enabled & SOCK_WRITING) && s->sp->in_pipe > 0;
		if ((s->flags & SF_RD_WANTS_WR) && (s->enabled & SOCK_READING))
			return 1;
		return (s->enabled & SOCK_WRITING) && evbuffer_get_length(s->out) > 0;
	default:
		return 0;
	}
}

/* Add or remove each event to match what the sock waits for. */
static void
update_events(struct sock *s)
{
	int r, w;

	if (s->dead)
		return;
	r = want_read(s);
	w = want_write(s);
	if (r && !(s->flags & SF_REV_ON)) {
		event_add(s->rev, (s->flags & SF_HAS_RTV) ? &s->rtv : NULL);
		s->flags |= SF_REV_ON;
	} else if (!r && (s->flags & SF_REV_ON)) {
		event_del(s->rev);
		s->flags &= ~SF_REV_ON;
	}
	if (w && !(s->flags & SF_WEV_ON)) {
		event_add(s->wev, (s->flags & SF_HAS_WTV) ? &s->wtv : NULL);
		s->flags |= SF_WEV_ON;
	} else if (!w && (s->flags & SF_WEV_ON)) {
		event_del(s->wev);
		s->flags &= ~SF_WEV_ON;
	}
}

/*
 * Decrypted or undecrypted bytes OpenSSL holds are invisible to epoll:
 * when reading stopped with some left (the watermark, the per-call cap),
 * run the read handler again from the loop rather than wait for a socket
 * event that may never come (the peer already sent everything).
 */
static void
kick_tls_pending(struct sock *s)
{
	if (s->ssl != NULL && s->phase == SOCK_P_OPEN && want_read(s) &&
	    (SSL_pending(s->ssl) > 0 || SSL_has_pending(s->ssl)))
		kick(s, KICK_READ);
}

/* The owner drained the input: resume reading if the watermark stopped it. */
static void
in_changed(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	struct sock *s = arg;

	if (info->n_deleted == 0 || s->dead || (s->flags & SF_REV_ON))
		return;
	update_events(s);
	if (s->flags & SF_REV_ON)
		kick_tls_pending(s);
}

/* The owner queued output: wait for writable (bufferevents did the same). */
static void
out_changed(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	struct sock *s = arg;

	if (info->n_added == 0 || s->dead || (s->flags & SF_WEV_ON))
		return;
	update_events(s);
}

struct sock *
sock_new(struct event_base *base, int fd, SSL *ssl, enum sock_tls_role role)
{
	struct sock *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto fail;
	s->base = base;
	s->fd = fd;
	s->rd_size = SOCK_READ_FIRST;
	s->ssl = ssl;
	s->rev = event_new(base, fd, EV_READ | EV_PERSIST, sock_read_ev, s);
	s->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, sock_write_ev, s);
	s->kick = event_new(base, -1, 0, sock_kick_ev, s);
	s->in = evbuffer_new();
	s->out = evbuffer_new();
	if (s->rev == NULL || s->wev == NULL || s->kick == NULL || s->in == NULL ||
	    s->out == NULL)
		goto fail_s;
	s->in_cbe = evbuffer_add_cb(s->in, in_changed, s);
	s->out_cbe = evbuffer_add_cb(s->out, out_changed, s);
	if (s->in_cbe == NULL || s->out_cbe == NULL)
		goto fail_s;
	if (ssl != NULL) {
		/* the data under a repeated SSL_write may move (evbuffer_pullup) */
		SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		if (!SSL_set_fd(ssl, fd))
			goto fail_s;
	}
	if (ssl != NULL && role == SOCK_TLS_ACCEPT) {
		SSL_set_accept_state(ssl);
		s->phase = SOCK_P_HANDSHAKE;
		s->flags |= SF_HS_WANT_READ;	/* the ClientHello is there */
		update_events(s);
	} else if (ssl != NULL || role == SOCK_TLS_CONNECT) {
		s->phase = SOCK_P_NEW;
	} else {
		s->phase = SOCK_P_OPEN;
	}
	return s;
fail_s:
	s->ssl = NULL;
	s->fd = -1;
	sock_free(s);
fail:
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void
sock_destroy(struct sock *s)
{
	if (s->rev != NULL)
		event_free(s->rev);
	if (s->wev != NULL)
		event_free(s->wev);
	if (s->kick != NULL)
		event_free(s->kick);
	if (s->in != NULL)
		evbuffer_free(s->in);
	if (s->out != NULL)
		evbuffer_free(s->out);
	SSL_free(s->ssl);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

void
sock_free(struct sock *s)
{
	if (s == NULL || s->dead)
		return;
	if (s->sp != NULL)
		splice_end(s->sp);	/* the other side goes on as usual */
	if (s->busy > 0) {
		/* Inside our own handler: stop everything, free on unwind. */
		if (s->rev != NULL)
			event_del(s->rev);
		if (s->wev != NULL)
			event_del(s->wev);
		if (s->kick != NULL)
			event_del(s->kick);
		s->readcb = s->writecb = NULL;
		s->eventcb = NULL;
		s->dead = 1;
		return;
	}
	s->dead = 1;
	sock_destroy(s);
}

/* Leave a handler: the owner may have freed the sock meanwhile. 1 = gone. */
static int
unbusy(struct sock *s)
{
	if (--s->busy == 0 && s->dead) {
		sock_destroy(s);
		return 1;
	}
	return 0;
}

static void
report(struct sock *s, int what)
{
	if (s->eventcb != NULL && !s->dead)
		s->eventcb(s, what, s->arg);
}

/* Keep the first OpenSSL error that names a library, clear the rest. */
static void
take_ssl_errors(struct sock *s)
{
	unsigned long e;

	while ((e = ERR_get_error()) != 0)
		if (s->ssl_err == 0 && ERR_GET_LIB(e) != 0)
			s->ssl_err = e;
}

int
sock_connect(struct sock *s, const struct sockaddr *sa, socklen_t len)
{
	if (connect(s->fd, sa, len) < 0 && errno != EINPROGRESS)
		return -1;
	/* Done or not, the write event says so from the loop. */
	s->phase = SOCK_P_CONNECTING;
	update_events(s);
	return 0;
}

void
sock_setcb(struct sock *s, sock_data_cb readcb, sock_data_cb writecb,
    sock_event_cb eventcb, void *arg)
{
	if (s->dead)
		return;
	s->readcb = readcb;
	s->writecb = writecb;
	s->eventcb = eventcb;
	s->arg = arg;
}

void
sock_enable(struct sock *s, int dirs)
{
	s->enabled |= dirs;
	update_events(s);
	if (dirs & SOCK_READING)
		kick_tls_pending(s);
}

void
sock_disable(struct sock *s, int dirs)
{
	s->enabled &= ~dirs;
	update_events(s);
}

int
sock_enabled(const struct sock *s)
{
	return s->enabled;
}

/*
 * Give one direction's event a new timeout (NULL: none) without touching
 * epoll: a waiting event is re-added, which only reschedules its timer
 * (and drops a timeout of it that fired this loop turn and waits to be
 * run), or has its timer removed (event_del + event_add would cost an
 * epoll_ctl per change, two per proxied request). A persistent event
 * remembers its last timeout even across event_add(ev, NULL) and re-arms
 * it on every activation: event_remove_timer() clears it, and so does
 * event_assign() on an event that is not waiting. One case needs the
 * event_del: a timeout that fired this turn took the event out of epoll
 * and queued its callback, which event_remove_timer() would leave to run.
 */
static void
retime(struct sock *s, struct event *ev, int on_flag, const struct timeval *tv)
{
	int on = (s->flags & on_flag) != 0;

	if (on && tv != NULL) {
		event_add(ev, tv);
		return;
	}
	if (on && event_pending(ev, EV_READ | EV_WRITE, NULL)) {
		event_remove_timer(ev);
		return;
	}
	if (on)
		event_del(ev);
	event_assign(ev, s->base, s->fd, event_get_events(ev), event_get_callback(ev), s);
	if (on)
		event_add(ev, NULL);
}

void
sock_set_timeouts(struct sock *s, const struct timeval *rd, const struct timeval *wr)
{
	s->flags &= ~(SF_HAS_RTV | SF_HAS_WTV);
	if (rd != NULL) {
		s->rtv = *rd;
		s->flags |= SF_HAS_RTV;
	}
	if (wr != NULL) {
		s->wtv = *wr;
		s->flags |= SF_HAS_WTV;
	}
	if (s->dead)
		return;
	retime(s, s->rev, SF_REV_ON, rd);
	retime(s, s->wev, SF_WEV_ON, wr);
}

void
sock_set_read_high(struct sock *s, size_t high)
{
	s->read_high = high;
	update_events(s);
}

void
sock_set_write_low(struct sock *s, size_t low)
{
	s->write_low = low;
}

struct evbuffer *
sock_input(struct sock *s)
{
	return s->in;
}

struct evbuffer *
sock_output(struct sock *s)
{
	return s->out;
}

int
sock_stray(struct sock *s, int peek)
{
	char b;
	ssize_t n;

	if (s->dead || s->eof_seen)
		return SOCK_STRAY_EOF;
	if (evbuffer_get_length(s->in) != 0 ||
	    (s->ssl != NULL && (SSL_pending(s->ssl) > 0 || SSL_has_pending(s->ssl))))
		return SOCK_STRAY_BYTES;
	if (!peek)
		return SOCK_STRAY_NONE;
	n = recv(s->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return SOCK_STRAY_BYTES;
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
		return SOCK_STRAY_EOF;	/* closed, reset... */
	return SOCK_STRAY_NONE;
}

void
sock_mark_write(struct sock *s)
{
	s->wmark = 1;
	s->rd_before_wr = 0;
}

uint64_t
sock_read_before_write(const struct sock *s)
{
	return s->rd_before_wr;
}

SSL *
sock_ssl(const struct sock *s)
{
	return s->ssl;
}

unsigned long
sock_ssl_error(const struct sock *s)
{
	return s->ssl_err;
}

void
sock_write_now(struct sock *s)
{
	if (!s->dead && s->phase == SOCK_P_OPEN && (s->enabled & SOCK_WRITING) &&
	    evbuffer_get_length(s->out) > 0)
		kick(s, KICK_WRITE);
}

void
sock_tls_close(struct sock *s, int clean)
{
	if (s->ssl == NULL || !SSL_is_init_finished(s->ssl))
		return;
	/* RFC 8446 6.1: it tells a read-until-close body from a cut one. One
	 * try; we do not wait for the peer's. */
	ERR_clear_error();
	if (evbuffer_get_length(s->out) == 0)
		(void)SSL_shutdown(s->ssl);
	if (clean)
		SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	ERR_clear_error();
}

/* ---- reading ---- */

enum rd_end {
	RD_AGAIN = 0,	/* the socket (and OpenSSL) has nothing more now */
	RD_FULL,	/* stopped by the watermark or the per-call cap */
	RD_EOF,
	RD_ERROR,
};

/* Plain: readv straight into reserved space, up to room bytes. */
static enum rd_end
read_plain(struct sock *s, size_t room, size_t *got)
{
	struct evbuffer_iovec v[2];
	size_t want, left;
	ssize_t n;
	int nv, i;

	nv = evbuffer_reserve_space(s->in, (ev_ssize_t)room, v, 2);
	if (nv <= 0) {
		errno = ENOMEM;
		return RD_ERROR;
	}
	/* reserve may hand out more than asked: don't read past room */
	for (i = 0, left = room; i < nv; i++) {
		if (v[i].iov_len > left)
			v[i].iov_len = left;
		left -= v[i].iov_len;
	}
	want = room - left;
	do
		n = readv(s->fd, (struct iovec *)v, nv);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		evbuffer_commit_space(s->in, v, 0);
		if (n == 0)
			return RD_EOF;
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? RD_AGAIN : RD_ERROR;
	}
	for (i = 0, left = (size_t)n; i < nv; i++) {
		if (v[i].iov_len > left)
			v[i].iov_len = left;
		left -= v[i].iov_len;
	}
	evbuffer_commit_space(s->in, v, nv);
	*got = (size_t)n;
	/* A short read drained the socket: no need to hear EAGAIN say so. */
	return (size_t)n < want ? RD_AGAIN : RD_FULL;
}

/* TLS: SSL_read whole records into one reserved extent until OpenSSL wants
 * the socket or the room is used. */
static enum rd_end
read_tls(struct sock *s, size_t room, size_t *got)
{
	struct evbuffer_iovec v;
	enum rd_end end = RD_FULL;
	size_t n, off = 0;
	char *p;
	int rc;

	if (evbuffer_reserve_space(s->in, (ev_ssize_t)room, &v, 1) != 1) {
		errno = ENOMEM;
		return RD_ERROR;
	}
	p = v.iov_base;
	if (v.iov_len > room)
		v.iov_len = room;
	while (off < v.iov_len) {
		ERR_clear_error();
		errno = 0;	/* SSL_ERROR_SYSCALL with errno 0 is an EOF */
		if (SSL_read_ex(s->ssl, p + off, v.iov_len - off, &n) == 1) {
			off += n;
			continue;
		}
		rc = SSL_get_error(s->ssl, 0);
		if (rc == SSL_ERROR_WANT_READ) {
			end = RD_AGAIN;
		} else if (rc == SSL_ERROR_WANT_WRITE) {
			s->flags |= SF_RD_WANTS_WR;
			end = RD_AGAIN;
		} else if (rc == SSL_ERROR_ZERO_RETURN) {
			/* close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a bare FIN */
			end = RD_EOF;
		} else if (rc == SSL_ERROR_SYSCALL && errno == 0) {
			end = RD_EOF;
		} else {
			take_ssl_errors(s);
			if (errno == 0)
				errno = EPROTO;
			end = RD_ERROR;
		}
		break;
	}
	v.iov_len = off;
	evbuffer_commit_space(s->in, &v, off > 0 ? 1 : 0);
	*got = off;
	return end;
}

/* Read what the socket has, up to the watermark, then tell the owner. */
static void
do_read(struct sock *s)
{
	size_t len, room, got, total = 0;
	enum rd_end end = RD_AGAIN;
	int err = 0;

	s->flags &= ~SF_RD_WANTS_WR;
	while (total < SOCK_READ_MAX) {
		len = evbuffer_get_length(s->in);
		if (s->read_high != 0 && len >= s->read_high) {
			end = RD_FULL;
			break;
		}
		room = s->read_high != 0 ? s->read_high - len : SOCK_READ_MAX;
		if (room > SOCK_READ_MAX - total)
			room = SOCK_READ_MAX - total;
		if (room > s->rd_size)
			room = s->rd_size;
		got = 0;
		end = s->ssl != NULL ? read_tls(s, room, &got) : read_plain(s, room, &got);
		total += got;
		/* A read that filled its space: the peer sends in bulk, read
		 * more at once next time (a small API call never makes the
		 * evbuffer reserve 256 KiB). */
		if (got == room && s->rd_size < SOCK_READ_MAX)
			s->rd_size *= 2;
		if (end != RD_FULL)
			break;
	}
	if (end == RD_ERROR)
		err = errno;
	if (end == RD_EOF)
		s->eof_seen = 1;
	if (s->wmark)
		s->rd_before_wr += total;
	if (total > 0 && s->readcb != NULL)
		s->readcb(s, s->arg);
	if (s->dead)
		return;
	if (end == RD_EOF || end == RD_ERROR) {
		/* Like a bufferevent: reading stops, the owner hears why. If
		 * the owner stopped reading meanwhile, it hears when it reads
		 * again (the socket stays at EOF). */
		if (s->enabled & SOCK_READING) {
			s->enabled &= ~SOCK_READING;
			update_events(s);
			errno = err;
			report(s, (end == RD_EOF ? SOCK_EOF : SOCK_ERROR) | SOCK_READING);
		}
		return;
	}
	update_events(s);
	if (end == RD_FULL)
		kick_tls_pending(s);
}

/* ---- writing ---- */

/* 1 when the output is written or the socket is full, 0 on an error. */
static int
write_plain(struct sock *s)
{
	int i, n;

	for (i = 0; i < 4 && evbuffer_get_length(s->out) > 0; i++) {
		n = evbuffer_write_atmost(s->out, s->fd, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK;
		}
		if (n == 0)
			break;
	}
	return 1;
}

static int
write_tls(struct sock *s)
{
	size_t len, n, w;
	unsigned char *p;
	int rc;

	while ((len = evbuffer_get_length(s->out)) > 0) {
		n = s->wretry != 0 ? s->wretry : (len < SOCK_TLS_WRITE ? len : SOCK_TLS_WRITE);
		/* one contiguous record's worth: a head and a small body go
		 * out as one record */
		if ((p = evbuffer_pullup(s->out, (ev_ssize_t)n)) == NULL) {
			errno = ENOMEM;
			return 0;
		}
		ERR_clear_error();
		if (SSL_write_ex(s->ssl, p, n, &w) == 1) {
			s->wretry = 0;
			evbuffer_drain(s->out, w);
			continue;
		}
		rc = SSL_get_error(s->ssl, 0);
		if (rc == SSL_ERROR_WANT_WRITE || rc == SSL_ERROR_WANT_READ) {
			s->wretry = n;	/* OpenSSL wants the same call again */
			if (rc == SSL_ERROR_WANT_READ)
				s->flags |= SF_WR_WANTS_RD;
			return 1;
		}
		take_ssl_errors(s);
		if (errno == 0)
			errno = EPIPE;
		return 0;
	}
	return 1;
}

static void
do_write(struct sock *s)
{
	size_t before = evbuffer_get_length(s->out);
	int ok, err;

	s->flags &= ~SF_WR_WANTS_RD;
	if (before == 0) {
		update_events(s);
		return;
	}
	ok = s->ssl != NULL ? write_tls(s) : write_plain(s);
	err = errno;
	if (evbuffer_get_length(s->out) < before)
		s->wmark = 0;	/* the output went out: reads are after it */
	if (!ok) {
		s->enabled &= ~SOCK_WRITING;
		update_events(s);
		errno = err;
		report(s, SOCK_ERROR | SOCK_WRITING);
		return;
	}
	update_events(s);
	if (evbuffer_get_length(s->out) < before &&
	    evbuffer_get_length(s->out) <= s->write_low && s->writecb != NULL)
		s->writecb(s, s->arg);
}

/* ---- connect and handshake ---- */

static void
do_handshake(struct sock *s)
{
	int rc, eof;

	ERR_clear_error();
	errno = 0;
	s->flags &= ~(SF_HS_WANT_READ | SF_HS_WANT_WRITE);
	if (SSL_do_handshake(s->ssl) == 1) {
		s->phase = SOCK_P_OPEN;
		update_events(s);
		report(s, SOCK_CONNECTED);
		if (s->dead)
			return;
		/* the peer's first data may be inside OpenSSL already */
		if (s->enabled & SOCK_READING)
			do_read(s);
		if (!s->dead && (s->enabled & SOCK_WRITING))
			do_write(s);
		return;
	}
	rc = SSL_get_error(s->ssl, 0);
	if (rc == SSL_ERROR_WANT_READ || rc == SSL_ERROR_WANT_WRITE) {
		s->flags |= rc == SSL_ERROR_WANT_READ ? SF_HS_WANT_READ : SF_HS_WANT_WRITE;
		update_events(s);
		return;
	}
	eof = rc == SSL_ERROR_ZERO_RETURN || (rc == SSL_ERROR_SYSCALL && errno == 0);
	take_ssl_errors(s);
	update_events(s);
	report(s, (eof && s->ssl_err == 0 ? SOCK_EOF : SOCK_ERROR) | SOCK_READING);
}

static void
connect_done(struct sock *s)
{
	int err = 0;
	socklen_t el = sizeof(err);

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err == EINPROGRESS)
		return;		/* spurious wake-up */
	if (err != 0) {
		s->phase = SOCK_P_NEW;
		update_events(s);
		errno = err;
		report(s, SOCK_ERROR | SOCK_WRITING);
		return;
	}
	if (s->ssl != NULL) {
		SSL_set_connect_state(s->ssl);
		s->phase = SOCK_P_HANDSHAKE;
		do_handshake(s);
		return;
	}
	s->phase = SOCK_P_OPEN;
	update_events(s);
	report(s, SOCK_CONNECTED);
	if (!s->dead && (s->enabled & SOCK_WRITING))
		do_write(s);
}

/* ---- splice ---- */

struct sock_pipes *
sock_pipes_new(unsigned max)
{
	struct sock_pipes *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->max = max;
	if (max > 0 && (p->idle = calloc(max, sizeof(*p->idle))) == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

static void
pipes_destroy(struct sock_pipes *p)
{
	while (p->n_idle > 0) {
		p->n_idle--;
		close(p->idle[p->n_idle][0]);
		close(p->idle[p->n_idle][1]);
	}
	free(p->idle);
	free(p);
}

void
sock_pipes_free(struct sock_pipes *p)
{
	if (p == NULL)
		return;
	if (p->n_lent > 0) {
		p->freed = 1;	/* the last splice to end frees it */
		return;
	}
	pipes_destroy(p);
}

/* A pipe from the pool, or a new one while under the bound; 0/-1. */
static int
pipes_get(struct sock_pipes *p, int fd[2], size_t *cap)
{
	int sz;

	if (p->n_idle > 0) {
		p->n_idle--;
		fd[0] = p->idle[p->n_idle][0];
		fd[1] = p->idle[p->n_idle][1];
	} else if (p->n_lent < p->max) {
		if (pipe2(fd, O_NONBLOCK | O_CLOEXEC) < 0)
			return -1;
		/* Bigger than the 64 KiB default: fewer splices per body. A
		 * refusal (the per-user pipe quota) keeps the default. */
		(void)fcntl(fd[1], F_SETPIPE_SZ, SOCK_PIPE_SIZE);
	} else {
		return -1;
	}
	sz = fcntl(fd[1], F_GETPIPE_SZ);
	*cap = sz > 0 ? (size_t)sz : 65536;
	p->n_lent++;
	return 0;
}

/* Back to the pool when empty (reusable), else closed. */
static void
pipes_put(struct sock_pipes *p, int fd[2], int empty)
{
	p->n_lent--;
	if (empty && !p->freed && p->n_idle < p->max) {
		p->idle[p->n_idle][0] = fd[0];
		p->idle[p->n_idle][1] = fd[1];
		p->n_idle++;
	} else {
		close(fd[0]);
		close(fd[1]);
	}
	if (p->freed && p->n_lent == 0)
		pipes_destroy(p);
}

int
sock_splice(struct sock *src, struct sock *dst, struct sock_pipes *pool, uint64_t len)
{
	struct sock_splice *sp;

	if (pool == NULL || len == 0 || src->ssl != NULL || dst->ssl != NULL ||
	    src->phase != SOCK_P_OPEN || dst->phase != SOCK_P_OPEN ||
	    src->dead || dst->dead || src->sp != NULL || dst->sp != NULL || src->eof_seen ||
	    evbuffer_get_length(src->in) != 0 || evbuffer_get_length(dst->out) != 0)
		return -1;
	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return -1;
	if (pipes_get(pool, sp->pfd, &sp->cap) < 0) {
		free(sp);
		return -1;
	}
	sp->src = src;
	sp->dst = dst;
	sp->pool = pool;
	sp->left = len;
	src->sp_moved = 0;
	src->sp = dst->sp = sp;
	update_events(src);
	update_events(dst);
	return 0;
}

uint64_t
sock_splice_take(struct sock *src, int *running)
{
	uint64_t n = src->sp_moved;

	src->sp_moved = 0;
	*running = src->sp != NULL && src->sp->src == src;
	return n;
}

static void
splice_end(struct sock_splice *sp)
{
	struct sock *src = sp->src, *dst = sp->dst;

	src->sp = dst->sp = NULL;
	pipes_put(sp->pool, sp->pfd, sp->in_pipe == 0);
	free(sp);
	update_events(src);
	update_events(dst);
}

/*
 * Move what can move now: src -> pipe while the pipe has room, pipe -> dst
 * while dst takes it, until neither side moves (EAGAIN) or a bound per
 * event, so one fast pair does not starve the loop. Then tell src's owner
 * (and on errors the side that failed). Decisions are made before any
 * callback: the owner may free either sock, which ends the relay.
 */
static void
relay(struct sock_splice *sp)
{
	struct sock *src = sp->src, *dst = sp->dst;
	uint64_t moved = 0;
	int src_err = 0, dst_err = 0, done, ended, eof, i, progress;
	size_t want;
	ssize_t n;

	for (i = 0; i < 16; i++) {
		progress = 0;
		if (want_read(src)) {
			want = sp->cap - sp->in_pipe;
			if (sp->left < want)
				want = (size_t)sp->left;
			n = splice(src->fd, NULL, sp->pfd[1], NULL, want,
			    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				sp->in_pipe += (size_t)n;
				if (sp->left != SOCK_SPLICE_TO_EOF)
					sp->left -= (uint64_t)n;
				progress = 1;
			} else if (n == 0) {
				src->eof_seen = 1;
			} else if (errno != EAGAIN && errno != EINTR) {
				src_err = errno;
				break;
			}
		}
		if ((dst->enabled & SOCK_WRITING) && sp->in_pipe > 0) {
			n = splice(sp->pfd[0], NULL, dst->fd, NULL, sp->in_pipe,
			    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				sp->in_pipe -= (size_t)n;
				moved += (uint64_t)n;
				progress = 1;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				dst_err = errno;
				break;
			}
		}
		if (!progress)
			break;
	}
	src->sp_moved += moved;
	eof = src->eof_seen;
	done = (sp->left == 0 || eof) && sp->in_pipe == 0;
	ended = done || src_err != 0 || dst_err != 0;
	if (ended)
		splice_end(sp);		/* sp is gone */
	else {
		update_events(src);
		update_events(dst);
	}

	src->busy++;
	dst->busy++;
	if ((moved > 0 || ended) && src->readcb != NULL && !src->dead)
		src->readcb(src, src->arg);
	if (src_err != 0 && !src->dead) {
		src->enabled &= ~SOCK_READING;
		update_events(src);
		errno = src_err;
		report(src, SOCK_ERROR | SOCK_READING);
	} else if (done && eof && !src->dead && (src->enabled & SOCK_READING)) {
		/* as do_read does: reading stops, the owner hears it */
		src->enabled &= ~SOCK_READING;
		update_events(src);
		report(src, SOCK_EOF | SOCK_READING);
	}
	if (dst_err != 0 && !dst->dead) {
		dst->enabled &= ~SOCK_WRITING;
		update_events(dst);
		errno = dst_err;
		report(dst, SOCK_ERROR | SOCK_WRITING);
	}
	(void)unbusy(src);
	(void)unbusy(dst);
}

/* ---- event handlers ---- */

static void
sock_read_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sock *s = arg;

	s->busy++;
	if (what & EV_TIMEOUT) {
		if (s->phase == SOCK_P_OPEN)
			s->enabled &= ~SOCK_READING;
		update_events(s);
		report(s, SOCK_TIMEOUT | SOCK_READING);
	} else if (s->phase == SOCK_P_HANDSHAKE) {
		do_handshake(s);
	} else if (s->phase == SOCK_P_OPEN && s->sp != NULL && s->sp->src == s) {
		relay(s->sp);
	} else if (s->phase == SOCK_P_OPEN) {
		if (s->flags & SF_WR_WANTS_RD)
			do_write(s);
		if (!s->dead && (s->enabled & SOCK_READING))
			do_read(s);
		else
			update_events(s);
	}
	(void)unbusy(s);
}

static void
sock_write_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sock *s = arg;

	s->busy++;
	if (what & EV_TIMEOUT) {
		if (s->phase == SOCK_P_OPEN)
			s->enabled &= ~SOCK_WRITING;
		else
			s->phase = SOCK_P_NEW;	/* a connect or handshake gave up */
		update_events(s);
		report(s, SOCK_TIMEOUT | SOCK_WRITING);
	} else if (s->phase == SOCK_P_CONNECTING) {
		connect_done(s);
	} else if (s->phase == SOCK_P_HANDSHAKE) {
		do_handshake(s);
	} else if (s->phase == SOCK_P_OPEN && s->sp != NULL && s->sp->dst == s) {
		relay(s->sp);
	} else if (s->phase == SOCK_P_OPEN) {
		if ((s->flags & SF_RD_WANTS_WR) && (s->enabled & SOCK_READING))
			do_read(s);
		if (!s->dead)
			do_write(s);
	}
	(void)unbusy(s);
}

static void
sock_kick_ev(evutil_socket_t fd, short what, void *arg)
{
	struct sock *s = arg;
	int k = s->kick_what;

	s->kick_what = 0;
	if (s->phase != SOCK_P_OPEN || s->sp != NULL)
		return;		/* a relay runs from its own events */
	s->busy++;
	if ((k & KICK_READ) && want_read(s))
		do_read(s);
	if (!s->dead && (k & KICK_WRITE) && (s->enabled & SOCK_WRITING))
		do_write(s);
	(void)unbusy(s);
}
