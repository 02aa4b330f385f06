/*
 * policy_source.c: the policy's sources (file, Redis key + channel, remote
 * sampling URL) feeding a struct sampling_hub, all on the control thread's
 * event_base; see policy_source.h for the behaviour.
 *
 * Nothing here runs on a worker: a slow Redis or URL only delays the next
 * policy, never a request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "policy_source.h"
#include "redis.h"
#include "sampling.h"
#include "util.h"

#define PS_MAX_DOC		(4 * 1024 * 1024)
#define PS_CONNECT_TIMEOUT	3.0	/* default of the Redis connections */
#define PS_HTTP_TIMEOUT_MAX	5

struct policy_source;

struct ps_url_svc {
	struct policy_source *ps;
	const char *error;		/* libevent's reason for a failed request */
	char *service;
	char *path;			/* request path with ?service= */
	char *good;			/* last valid answer; NULL = none yet */
	size_t good_len;
	struct evhttp_connection *evcon;	/* the last request's; freed by
						 * the next one or at the end */
};

struct policy_source {
	struct event_base *base;
	struct sampling_hub *hub;
	double defp;
	int closing;

	/* file */
	char *file;
	char *file_source;		/* "file:PATH" */
	struct event *file_timer;
	struct timeval file_tv;
	struct stat file_st;
	int file_have_st;
	int file_missing;		/* logged once per disappearance */

	/* redis */
	char *key, *redis_source;
	struct tb_redis *cmd;		/* GET */
	struct tb_redis *sub;		/* SUBSCRIBE channel, or NULL */
	char *redis_last;		/* last accepted text */
	size_t redis_last_len;

	/* url */
	char *url, *url_source, *url_host;
	int url_port;
	struct evdns_base *dns;
	int http_timeout;
	struct event *poll_timer;
	struct timeval poll_tv;
	struct ps_url_svc *svcs;
	size_t n_svcs;
	size_t pending;			/* answers outstanding in this round */
	int round_force;
	char *url_last;			/* signature of the last merged set */
	size_t url_last_len;
};

/* Parse text and put it in force, or log and record why not. 0/-1. */
static int
ps_apply(struct policy_source *ps, const char *source, const char *text,
    size_t len)
{
	struct sampling_policy *p;
	char err[512];

	if (policy_parse(text, len, ps->defp, &p, err, sizeof(err)) == -1) {
		log_warnx("sampling: policy from %s rejected, previous policy "
		    "stays: %s", source, err);
		sampling_hub_rejected(ps->hub, source, err);
		return -1;
	}
	sampling_hub_publish(ps->hub, p, source);
	log_info("sampling: policy from %s in force", source);
	return 0;
}

/* ------------------------------------------------------------------ */
/* file                                                                */
/* ------------------------------------------------------------------ */

/* Load the file now. 0/-1 (reason in err when given, logged otherwise). */
static int
file_load(struct policy_source *ps, char *err, size_t errlen)
{
	char *text, why[512];
	size_t len;
	struct sampling_policy *p;

	if (tb_read_file(ps->file, PS_MAX_DOC, &text, &len, why,
	    sizeof(why)) != TB_READ_OK)
		goto fail;
	if (policy_parse(text, len, ps->defp, &p, why, sizeof(why)) == -1) {
		free(text);
		goto fail;
	}
	free(text);
	sampling_hub_publish(ps->hub, p, ps->file_source);
	log_info("sampling: policy from %s in force", ps->file_source);
	return 0;
fail:
	if (err != NULL) {
		tb_errf(err, errlen, "%s: %s", ps->file_source, why);
	} else {
		log_warnx("sampling: policy from %s rejected, previous policy "
		    "stays: %s", ps->file_source, why);
	}
	sampling_hub_rejected(ps->hub, ps->file_source, why);
	return -1;
}

static int
st_changed(const struct stat *a, const struct stat *b)
{
	return a->st_ino != b->st_ino || a->st_dev != b->st_dev ||
	    a->st_size != b->st_size ||
	    a->st_mtim.tv_sec != b->st_mtim.tv_sec ||
	    a->st_mtim.tv_nsec != b->st_mtim.tv_nsec;
}

/* Every check_interval: reload when inode, size or mtime moved. */
static void
file_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct policy_source *ps = arg;
	struct stat st;

	if (stat(ps->file, &st) == -1) {
		if (!ps->file_missing)
			log_warn("sampling: policy file %s (previous policy stays)",
			    ps->file);
		ps->file_missing = 1;
		ps->file_have_st = 0;
	} else {
		ps->file_missing = 0;
		if (!ps->file_have_st || st_changed(&st, &ps->file_st)) {
			ps->file_st = st;
			ps->file_have_st = 1;
			file_load(ps, NULL, 0);
		}
	}
	evtimer_add(ps->file_timer, &ps->file_tv);
}

/* ------------------------------------------------------------------ */
/* redis                                                               */
/* ------------------------------------------------------------------ */

/*
 * Two connections through the one Redis client (redis.h: any connection
 * string, evdns, AUTH/SELECT, timeouts, backoff, Sentinel): one for GET,
 * one SUBSCRIBEd to the channel (a subscribed connection may send nothing
 * else). The key is read whenever the command connection becomes ready
 * (so after every reconnect), when the subscription is confirmed (a
 * PUBLISH may have been missed while away) and on every message.
 */

static void
redis_apply(struct policy_source *ps, const char *text, size_t len, int force)
{
	char *copy;

	if (!force && ps->redis_last != NULL && ps->redis_last_len == len &&
	    memcmp(ps->redis_last, text, len) == 0)
		return;		/* re-read after a reconnect: nothing new */
	if (ps_apply(ps, ps->redis_source, text, len) == -1)
		return;
	copy = malloc(len + 1);
	if (copy == NULL)
		return;
	memcpy(copy, text, len);
	copy[len] = '\0';
	free(ps->redis_last);
	ps->redis_last = copy;
	ps->redis_last_len = len;
}

/* GET reply; cmd_arg non-NULL = the operator published: apply even if
 * unchanged, "last loaded wins". */
static void
redis_reply_cb(void *arg, void *cmd_arg, const redisReply *rep)
{
	struct policy_source *ps = arg;

	if (ps->closing)
		return;
	switch (rep->type) {
	case REDIS_REPLY_STRING:
		redis_apply(ps, rep->str, rep->len, cmd_arg != NULL);
		break;
	case REDIS_REPLY_NIL:
		log_debug("sampling: redis key %s not set", ps->key);
		break;
	case REDIS_REPLY_ERROR:
		log_warnx("sampling: redis GET %s: %.200s", ps->key, rep->str);
		break;
	default:
		log_warnx("sampling: redis GET %s: unexpected reply type %d",
		    ps->key, rep->type);
		break;
	}
}

/* GET now; when the connection is not ready this does nothing: it GETs
 * once it is. */
static void
redis_get(struct policy_source *ps, int force)
{
	if (ps->cmd != NULL)
		(void)tb_redis_command(ps->cmd, force ? (void *)1 : NULL,
		    "GET %s", ps->key);
}

static void
redis_ready_cb(void *arg)
{
	redis_get(arg, 0);
}

static void
redis_message_cb(void *arg, enum tb_redis_event ev, const char *data,
    size_t len)
{
	struct policy_source *ps = arg;

	if (ev == TB_REDIS_MESSAGE)
		log_debug("sampling: policy change announced on the channel");
	/* a message: the operator published, apply even if unchanged */
	redis_get(ps, ev == TB_REDIS_MESSAGE);
}

/* Start both connections. 0/-1 with err. */
static int
redis_init(struct policy_source *ps, const struct policy_source_conf *conf,
    char *err, size_t errlen)
{
	struct tb_redis_conf rc = conf->redis;
	struct tb_redis_handlers h;

	if (rc.connect_timeout <= 0)
		rc.connect_timeout = PS_CONNECT_TIMEOUT;
	/* GET answers one document: a larger one is cut off, not buffered */
	if (rc.max_reply_bytes == 0)
		rc.max_reply_bytes = PS_MAX_DOC;
	memset(&h, 0, sizeof(h));
	h.arg = ps;
	h.ready = redis_ready_cb;
	h.reply = redis_reply_cb;
	rc.name = "sampling: redis (command)";
	if ((ps->cmd = tb_redis_new(ps->base, &rc, &h, err, errlen)) == NULL)
		return -1;
	if (conf->redis_channel == NULL)
		return 0;
	memset(&h, 0, sizeof(h));
	h.arg = ps;
	h.message = redis_message_cb;
	rc.name = "sampling: redis (subscribe)";
	if ((ps->sub = tb_redis_new(ps->base, &rc, &h, err, errlen)) == NULL)
		return -1;
	if (tb_redis_subscribe(ps->sub, conf->redis_channel) == -1) {
		tb_errf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* url                                                                 */
/* ------------------------------------------------------------------ */

static void url_poll(struct policy_source *ps, int force);

/* All answers of a round are in: merge the last good ones and publish if
 * the set changed. */
static void
url_round_done(struct policy_source *ps)
{
	const char **names = NULL, **docs = NULL;
	size_t *lens = NULL, n = 0, i, siglen = 0;
	struct sampling_policy *p;
	char err[512], *sig = NULL, *w;

	names = calloc(ps->n_svcs + 1, sizeof(*names));
	docs = calloc(ps->n_svcs + 1, sizeof(*docs));
	lens = calloc(ps->n_svcs + 1, sizeof(*lens));
	if (names == NULL || docs == NULL || lens == NULL)
		goto done;
	for (i = 0; i < ps->n_svcs; i++) {
		if (ps->svcs[i].good == NULL)
			continue;
		names[n] = ps->svcs[i].service;
		docs[n] = ps->svcs[i].good;
		lens[n] = ps->svcs[i].good_len;
		siglen += strlen(names[n]) + 1 + lens[n] + 1;
		n++;
	}
	if (n == 0)
		goto done;
	sig = malloc(siglen + 1);
	if (sig == NULL)
		goto done;
	for (w = sig, i = 0; i < n; i++) {
		size_t l = strlen(names[i]) + 1;

		memcpy(w, names[i], l);
		w += l;
		memcpy(w, docs[i], lens[i]);
		w += lens[i];
		*w++ = '\0';
	}
	if (!ps->round_force && ps->url_last != NULL && ps->url_last_len == siglen &&
	    memcmp(ps->url_last, sig, siglen) == 0)
		goto done;
	if (policy_from_remote(n, names, docs, lens, ps->defp, &p, err,
	    sizeof(err)) == -1) {
		/* each answer was checked alone; only a bug gets here */
		log_warnx("sampling: policy from %s rejected: %s", ps->url_source, err);
		sampling_hub_rejected(ps->hub, ps->url_source, err);
		goto done;
	}
	sampling_hub_publish(ps->hub, p, ps->url_source);
	log_info("sampling: policy from %s in force (%zu services)",
	    ps->url_source, n);
	free(ps->url_last);
	ps->url_last = sig;
	ps->url_last_len = siglen;
	sig = NULL;
done:
	free(sig);
	free(names);
	free(docs);
	free(lens);
	ps->round_force = 0;
	evtimer_add(ps->poll_timer, &ps->poll_tv);
}

static void
url_error_cb(enum evhttp_request_error e, void *arg)
{
	struct ps_url_svc *s = arg;

	switch (e) {
	case EVREQ_HTTP_TIMEOUT:
		s->error = "timeout";
		break;
	case EVREQ_HTTP_EOF:
		s->error = "connection closed early";
		break;
	case EVREQ_HTTP_INVALID_HEADER:
		s->error = "invalid response head";
		break;
	case EVREQ_HTTP_BUFFER_ERROR:
		s->error = "connection error";
		break;
	case EVREQ_HTTP_DATA_TOO_LONG:
		s->error = "answer too long";
		break;
	default:
		s->error = "request failed";
		break;
	}
}

static void
url_answer_cb(struct evhttp_request *req, void *arg)
{
	struct ps_url_svc *s = arg;
	struct policy_source *ps = s->ps;
	struct evbuffer *body;
	struct sampling_policy *p;
	const char *svc = s->service;
	char err[512], src[600], *text;
	size_t len;
	int code = req != NULL ? evhttp_request_get_response_code(req) : 0;

	if (ps->closing)
		return;
	snprintf(src, sizeof(src), "%s?service=%s", ps->url_source, s->service);
	if (code != 200) {
		if (code == 0)
			log_warnx("sampling: %s: %s (last good answer stays)", src,
			    s->error != NULL ? s->error : "no answer");
		else
			log_warnx("sampling: %s: HTTP status %d (last good answer "
			    "stays)", src, code);
		goto done;
	}
	body = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(body);
	if (len > PS_MAX_DOC) {
		log_warnx("sampling: %s: answer larger than %d bytes", src, PS_MAX_DOC);
		goto done;
	}
	text = malloc(len + 1);
	if (text == NULL)
		goto done;
	evbuffer_remove(body, text, len);
	text[len] = '\0';
	if (policy_from_remote(1, &svc, (const char *const *)&text, &len,
	    ps->defp, &p, err, sizeof(err)) == -1) {
		log_warnx("sampling: policy from %s rejected, last good answer "
		    "stays: %s", src, err);
		sampling_hub_rejected(ps->hub, src, err);
		free(text);
		goto done;
	}
	policy_unref(p);
	free(s->good);
	s->good = text;
	s->good_len = len;
done:
	if (--ps->pending == 0)
		url_round_done(ps);
}

/*
 * One connection per request ("Connection: close"), freed when the next
 * poll starts (never inside its own callback) or at the end: a fresh
 * connection per poll keeps no state to go stale between polls.
 */
static int
url_request(struct policy_source *ps, struct ps_url_svc *s)
{
	struct evhttp_request *req;

	if (s->evcon != NULL)
		evhttp_connection_free(s->evcon);
	s->evcon = evhttp_connection_base_new(ps->base, ps->dns, ps->url_host,
	    (unsigned short)ps->url_port);
	if (s->evcon == NULL)
		return -1;
	evhttp_connection_set_timeout(s->evcon, ps->http_timeout);
	evhttp_connection_set_retries(s->evcon, 0);
	req = evhttp_request_new(url_answer_cb, s);
	if (req == NULL)
		goto fail;
	s->error = NULL;
	evhttp_request_set_error_cb(req, url_error_cb);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
	    ps->url_host);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Accept",
	    "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
	    "close");
	if (evhttp_make_request(s->evcon, req, EVHTTP_REQ_GET, s->path) == -1)
		goto fail;	/* libevent freed req */
	return 0;
fail:
	evhttp_connection_free(s->evcon);
	s->evcon = NULL;
	return -1;
}

static void
url_poll(struct policy_source *ps, int force)
{
	size_t i;

	if (ps->pending > 0)
		return;		/* a round is running */
	evtimer_del(ps->poll_timer);
	ps->round_force = force;
	ps->pending = ps->n_svcs;
	for (i = 0; i < ps->n_svcs; i++) {
		if (url_request(ps, &ps->svcs[i]) == -1) {
			log_warnx("sampling: %s: cannot send the request for "
			    "service %s", ps->url_source, ps->svcs[i].service);
			ps->pending--;
		}
	}
	if (ps->pending == 0)
		url_round_done(ps);
}

static void
url_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	url_poll(arg, 0);
}

/* Parse the URL, build one request path per service. 0/-1 with err. */
static int
url_init(struct policy_source *ps, const struct policy_source_conf *conf,
    char *err, size_t errlen)
{
	struct evhttp_uri *u;
	const char *scheme, *host, *path, *query;
	size_t i;
	int port;

	u = evhttp_uri_parse(conf->url);
	if (u == NULL) {
		tb_errf(err, errlen, "policy_url %s: %s", conf->url, "not a valid URL");
		return -1;
	}
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	if (scheme == NULL || strcasecmp(scheme, "http") != 0 || host == NULL ||
	    host[0] == '\0') {
		tb_errf(err, errlen, "policy_url %s: %s", conf->url,
		    "only http://host[:port]/path is supported");
		evhttp_uri_free(u);
		return -1;
	}
	port = evhttp_uri_get_port(u);
	ps->url_port = port > 0 ? port : 80;
	ps->url_host = strdup(host);
	path = evhttp_uri_get_path(u);
	query = evhttp_uri_get_query(u);
	if (path == NULL || path[0] == '\0')
		path = "/";
	ps->svcs = calloc(conf->n_services + 1, sizeof(*ps->svcs));
	if (ps->url_host == NULL || ps->svcs == NULL)
		goto nomem;
	for (i = 0; i < conf->n_services; i++) {
		struct ps_url_svc *s = &ps->svcs[ps->n_svcs];
		char *enc = evhttp_encode_uri(conf->services[i]);
		size_t n;

		if (enc == NULL)
			goto nomem;
		n = strlen(path) + (query ? strlen(query) + 1 : 0) + strlen(enc) + 16;
		s->ps = ps;
		s->service = strdup(conf->services[i]);
		s->path = malloc(n);
		if (s->service == NULL || s->path == NULL) {
			free(enc);
			free(s->service);
			free(s->path);
			goto nomem;
		}
		snprintf(s->path, n, "%s?%s%sservice=%s", path, query ? query : "",
		    query ? "&" : "", enc);
		free(enc);
		ps->n_svcs++;
	}
	evhttp_uri_free(u);
	ps->dns = evdns_base_new(ps->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	ps->poll_timer = evtimer_new(ps->base, url_poll_cb, ps);
	if (ps->dns == NULL || ps->poll_timer == NULL) {
		tb_errf(err, errlen, "policy_url %s: %s", conf->url,
		    "cannot set up the HTTP client");
		return -1;
	}
	ps->poll_tv = tb_timeval(conf->poll_interval > 0 ?
	    conf->poll_interval : 60.0);
	ps->http_timeout = ps->poll_tv.tv_sec >= 1 &&
	    ps->poll_tv.tv_sec < PS_HTTP_TIMEOUT_MAX ?
	    (int)ps->poll_tv.tv_sec : PS_HTTP_TIMEOUT_MAX;
	return 0;
nomem:
	evhttp_uri_free(u);
	tb_errf(err, errlen, "policy_url %s: %s", conf->url, "out of memory");
	return -1;
}

/* ------------------------------------------------------------------ */
/* life cycle                                                          */
/* ------------------------------------------------------------------ */

static char *
prefixed(const char *prefix, const char *s)
{
	size_t n = strlen(prefix) + strlen(s) + 1;
	char *r = malloc(n);

	if (r != NULL)
		snprintf(r, n, "%s%s", prefix, s);
	return r;
}

struct policy_source *
policy_source_new(struct event_base *base, struct sampling_hub *hub,
    const struct policy_source_conf *conf, char *err, size_t errlen)
{
	struct policy_source *ps = calloc(1, sizeof(*ps));

	if (ps == NULL) {
		tb_errf(err, errlen, "out of memory");
		return NULL;
	}
	ps->base = base;
	ps->hub = hub;
	ps->defp = conf->default_probability;

	if (conf->file != NULL) {
		ps->file = strdup(conf->file);
		ps->file_source = prefixed("file:", conf->file);
		ps->file_timer = evtimer_new(base, file_check_cb, ps);
		if (ps->file == NULL || ps->file_source == NULL ||
		    ps->file_timer == NULL) {
			tb_errf(err, errlen, "out of memory");
			goto fail;
		}
		ps->file_tv = tb_timeval(conf->check_interval > 0 ?
		    conf->check_interval : 1.0);
		if (stat(ps->file, &ps->file_st) == 0)
			ps->file_have_st = 1;
		if (file_load(ps, err, errlen) == -1)
			goto fail;
		evtimer_add(ps->file_timer, &ps->file_tv);
	}

	if (conf->redis.url != NULL && conf->redis_key != NULL) {
		ps->key = strdup(conf->redis_key);
		ps->redis_source = prefixed("redis:", conf->redis_key);
		if (ps->key == NULL || ps->redis_source == NULL) {
			tb_errf(err, errlen, "out of memory");
			goto fail;
		}
		if (redis_init(ps, conf, err, errlen) == -1)
			goto fail;
	}

	if (conf->url != NULL) {
		ps->url = strdup(conf->url);
		ps->url_source = prefixed("url:", conf->url);
		if (ps->url == NULL || ps->url_source == NULL) {
			tb_errf(err, errlen, "out of memory");
			goto fail;
		}
		if (url_init(ps, conf, err, errlen) == -1)
			goto fail;
		url_poll(ps, 0);
	}
	return ps;
fail:
	policy_source_free(ps);
	return NULL;
}

void
policy_source_reload(struct policy_source *ps)
{
	if (ps == NULL)
		return;
	if (ps->file != NULL) {
		struct stat st;

		if (stat(ps->file, &st) == 0) {
			ps->file_st = st;
			ps->file_have_st = 1;
		}
		file_load(ps, NULL, 0);
	}
	/* The file is what the operator just edited: it wins. Redis and the
	 * URL are re-read but publish only if they changed since accepted. */
	if (ps->key != NULL)
		redis_get(ps, 0);
	if (ps->poll_timer != NULL)
		url_poll(ps, 0);
}

void
policy_source_free(struct policy_source *ps)
{
	size_t i;

	if (ps == NULL)
		return;
	ps->closing = 1;
	if (ps->file_timer != NULL)
		event_free(ps->file_timer);
	tb_redis_free(ps->cmd);		/* no handler runs after this */
	tb_redis_free(ps->sub);
	if (ps->poll_timer != NULL)
		event_free(ps->poll_timer);
	for (i = 0; i < ps->n_svcs; i++)
		if (ps->svcs[i].evcon != NULL)	/* drops a pending request */
			evhttp_connection_free(ps->svcs[i].evcon);
	if (ps->dns != NULL)
		evdns_base_free(ps->dns, 0);
	for (i = 0; i < ps->n_svcs; i++) {
		free(ps->svcs[i].service);
		free(ps->svcs[i].path);
		free(ps->svcs[i].good);
	}
	free(ps->svcs);
	free(ps->file);
	free(ps->file_source);
	free(ps->key);
	free(ps->redis_source);
	free(ps->redis_last);
	free(ps->url);
	free(ps->url_source);
	free(ps->url_host);
	free(ps->url_last);
	free(ps);
}
