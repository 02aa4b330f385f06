/*
 * conn.c: client connection lifecycle (see conn.h). Reads request heads,
 * hands each request to proxy.c, answers framing errors itself, and keeps
 * the timeouts: client_idle_timeout between requests, client_header_timeout
 * from the first byte of a head to its end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "conn.h"
#include "h1.h"
#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "stats.h"
#include "worker.h"

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_free_cb(evutil_socket_t fd, short what, void *arg);
static void conn_try_head(struct conn *c);

static const char *const state_names[] = {
	"read_head", "proxying", "closing", "closed",
};

static void
timer_arm(struct conn *c, double secs)
{
	struct timeval tv = config_timeval(secs);

	evtimer_add(c->timer, &tv);
}

void
conn_set_state(struct conn *c, enum conn_state s)
{
	/* Only forward moves, and back to READ_HEAD after a request. */
	if (c->state == CONN_CLOSED)
		return;
	if (log_get_level() >= TB_LOG_DEBUG)
		log_debug("conn %s:%u: %s -> %s", c->peer, c->peer_port,
		    state_names[c->state], state_names[s]);
	c->state = s;
	switch (s) {
	case CONN_READ_HEAD:
		c->head_started = 0;
		c->scan_off = 0;
		c->next_parse = 0;
		timer_arm(c, c->lc->client_idle_timeout);
		break;
	case CONN_PROXYING:
		evtimer_del(c->timer);
		break;
	case CONN_CLOSING:
		/* Don't read what follows an error: its framing is unknown. */
		bufferevent_disable(c->bev, EV_READ);
		timer_arm(c, c->lc->client_header_timeout);	/* bound the flush */
		break;
	case CONN_CLOSED:
		break;
	}
}

struct conn *
conn_new(struct worker *w, int fd, const struct sockaddr *sa, socklen_t salen,
    const struct tb_listener_conf *lc, struct stats_listener *stats)
{
	struct conn *c;
	int one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NULL;
	}
	c->w = w;
	c->cfg = config_ref(w->cfg);
	c->lc = lc;
	c->stats = stats;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, c->peer, sizeof(c->peer));
		c->peer_port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, c->peer, sizeof(c->peer));
		c->peer_port = ntohs(in6->sin6_port);
	} else {
		strcpy(c->peer, "unix");
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(w->base, conn_timer_cb, c);
	c->close_ev = evtimer_new(w->base, conn_free_cb, c);
	if (c->bev == NULL || c->timer == NULL || c->close_ev == NULL) {
		if (c->bev == NULL)
			close(fd);
		goto fail;
	}
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_READ_HIGH);
	/* A client that stops reading its response is cut off after
	 * client_idle_timeout; set once, it only counts while output waits. */
	{
		struct timeval wt = config_timeval(lc->client_idle_timeout);

		bufferevent_set_timeouts(c->bev, NULL, &wt);
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&w->conns, c, link);
	w->n_conns++;
	STATS_INC(tb_stats.connections_active);
	STATS_INC(tb_stats.connections_total);
	c->state = CONN_READ_HEAD;
	conn_set_state(c, CONN_READ_HEAD);
	return c;
fail:
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->close_ev != NULL)
		event_free(c->close_ev);
	config_unref(c->cfg);
	free(c);
	return NULL;
}

/*
 * Close: stop every callback now, free the memory from the event loop later,
 * because we may be deep inside a callback of this connection or of its
 * upstream (STYLE.md 6).
 */
void
conn_close(struct conn *c)
{
	struct timeval now = { 0, 0 };

	if (c->state == CONN_CLOSED)
		return;
	conn_set_state(c, CONN_CLOSED);
	if (c->req != NULL) {
		proxy_req_free(c->req);
		c->req = NULL;
	}
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	evtimer_del(c->timer);
	evtimer_add(c->close_ev, &now);
}

static void
conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct worker *w = c->w;

	TAILQ_REMOVE(&w->conns, c, link);
	bufferevent_free(c->bev);
	event_free(c->timer);
	event_free(c->close_ev);
	config_unref(c->cfg);
	free(c);
	STATS_DEC(tb_stats.connections_active);
	worker_conn_closed(w);
}

void
conn_send_error(struct conn *c, int status, int close_after)
{
	conn_send_error_hdrs(c, status, close_after, NULL);
}

void
conn_send_error_hdrs(struct conn *c, int status, int close_after,
    struct evbuffer *extra)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	const char *reason = h1_reason(status);
	size_t before = evbuffer_get_length(out);
	int n;

	n = evbuffer_add_printf(out,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain\r\n"
	    "Content-Length: %zu\r\n"
	    "%s",
	    status, reason, strlen(reason) + 5,
	    close_after ? "Connection: close\r\n" : "");
	if (n > 0 && extra != NULL)
		evbuffer_add_buffer(out, extra);
	if (n > 0)
		n = evbuffer_add_printf(out, "\r\n%d %s\n", status, reason);
	if (n > 0 && c->req != NULL)
		c->req->bytes_out += (uint64_t)(evbuffer_get_length(out) - before);
	if (close_after)
		conn_set_state(c, CONN_CLOSING);
}

void
conn_request_done(struct conn *c, int keepalive)
{
	if (c->req != NULL) {
		proxy_req_free(c->req);
		c->req = NULL;
	}
	c->nreq++;
	if (!keepalive || c->w->draining) {
		conn_set_state(c, CONN_CLOSING);
		/* Output is already flushed when we get here. */
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			conn_close(c);
		return;
	}
	conn_set_state(c, CONN_READ_HEAD);
	bufferevent_enable(c->bev, EV_READ);
	/* Timeouts stay as set: the write timeout always, the read timeout was
	 * cleared when the request body ended (pump_request). */
	/* A pipelined request may already be waiting. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		conn_try_head(c);
}

void
conn_drain(struct conn *c)
{
	if (c->state == CONN_READ_HEAD && !c->head_started)
		conn_close(c);
	/* Otherwise conn_request_done sees w->draining and closes. */
}

/* Answer a framing error of the head, then close. */
static void
head_error(struct conn *c, const struct h1_msg *m, int rc)
{
	char sample[33];
	size_t n = 0;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	unsigned char *p;
	size_t len = evbuffer_get_length(in), i;

	/* Log a few escaped bytes around the error, never more (STYLE.md 3). */
	if (m->err_off < len) {
		n = len - m->err_off < 16 ? len - m->err_off : 16;
		p = evbuffer_pullup(in, (ssize_t)(m->err_off + n));
		for (i = 0; i < n && i * 2 + 2 < sizeof(sample); i++)
			snprintf(sample + i * 2, 3, "%02x", p[m->err_off + i]);
		sample[i * 2] = '\0';
	} else {
		sample[0] = '\0';
	}
	log_info("%s: client %s: bad request head (%d %s at byte %zu: %s) [%s]",
	    c->lc->name, c->peer, m->err_status, m->err ? m->err : "?",
	    m->err_off, rc == -2 ? "limit" : "invalid", sample);
	STATS_INC(tb_stats.bad_requests);
	stats_request_done(c->stats, m->err_status, len, 0, 0);
	conn_send_error(c, m->err_status ? m->err_status : 400, 1);
}

/*
 * Look for a complete head in the input and start the request. The search
 * resumes where it stopped and a full parse runs only when the head end is
 * found or the input doubled, so a head trickled byte by byte costs linear
 * time, while garbage (bad method, bare LF) is still refused early.
 */
static void
conn_try_head(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in), lim_len, parse_len;
	struct evbuffer_ptr start, found;
	struct h1_limits lim;
	struct h1_msg *m = c->w->scratch;
	unsigned char *p;
	int rc;

	if (len == 0)
		return;
	if (!c->head_started) {
		c->head_started = 1;
		timer_arm(c, c->lc->client_header_timeout);
	}
	lim.max_head_bytes = c->lc->max_header_bytes;
	lim.max_line = c->lc->max_header_bytes < 8192 ? c->lc->max_header_bytes : 8192;
	lim.max_headers = c->lc->max_headers;
	lim_len = lim.max_head_bytes + 1;

	evbuffer_ptr_set(in, &start, c->scan_off > 3 ? c->scan_off - 3 : 0, EVBUFFER_PTR_SET);
	found = evbuffer_search(in, "\r\n\r\n", 4, &start);
	if (found.pos >= 0) {
		parse_len = (size_t)found.pos + 4;
	} else {
		c->scan_off = len;
		if (len < c->next_parse && len < lim_len)
			return;
		c->next_parse = len * 2;
		parse_len = len;
	}
	if (parse_len > lim_len)
		parse_len = lim_len;
	p = evbuffer_pullup(in, (ssize_t)parse_len);
	rc = h1_parse_request((const char *)p, parse_len, &lim, m);
	if (rc == 0) {
		if (parse_len >= lim_len) {	/* cannot happen with a sane parser */
			m->err_status = 431;
			m->err = "head too large";
			m->err_off = parse_len;
			head_error(c, m, -2);
		}
		return;
	}
	if (rc < 0) {
		head_error(c, m, rc);
		return;
	}
	conn_set_state(c, CONN_PROXYING);
	c->req = proxy_start(c, m, (size_t)rc);
	/* proxy_start answered an error itself when it returned NULL. */
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_READ_HEAD:
		conn_try_head(c);
		break;
	case CONN_PROXYING:
		proxy_client_readable(c->req);
		break;
	case CONN_CLOSING:
	case CONN_CLOSED:
		break;
	}
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_PROXYING:
		proxy_client_drained(c->req);
		break;
	case CONN_CLOSING:
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_close(c);
		break;
	case CONN_READ_HEAD:
	case CONN_CLOSED:
		break;
	}
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (c->state == CONN_PROXYING && c->req != NULL) {
		if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) &&
		    proxy_req_finished(c->req)) {
			/* A half-close after a complete exchange: flush and go. */
			conn_set_state(c, CONN_CLOSING);
			return;
		}
		proxy_client_gone(c->req);
		return;
	}
	conn_close(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_READ_HEAD:
		if (c->head_started) {
			log_info("%s: client %s: request head timeout", c->lc->name, c->peer);
			stats_request_done(c->stats, 408, 0, 0, 0);
			conn_send_error(c, 408, 1);
			return;
		}
		conn_close(c);		/* idle keep-alive connection */
		break;
	case CONN_CLOSING:
	case CONN_PROXYING:
	case CONN_CLOSED:
		conn_close(c);
		break;
	}
}
