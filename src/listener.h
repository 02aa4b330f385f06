/*
 * listener.h: accepting client connections on one worker's socket for one
 * [listener:NAME]: enforce the worker's connection limit, pause on EMFILE.
 */
#ifndef TB_LISTENER_H
#define TB_LISTENER_H

#include "config.h"

struct worker;
struct stats_listener;

struct listener {
	struct worker *w;
	struct evconnlistener *evl;
	const struct tb_listener_conf *lc;	/* updated on reload */
	struct stats_listener *stats;	/* counters of lc->name, looked up once */
	char addr[128];			/* listen address text: identity across reloads */
	struct event *resume_ev;	/* re-enable after EMFILE */
	int paused;
	struct listener *next;
};

/* Point l at lc after a reload (same address, maybe another name). */
void listener_set_conf(struct listener *l, const struct tb_listener_conf *lc);

/* Listen on fd (ownership passes, even on failure). NULL on error. */
struct listener *listener_new(struct worker *w, const struct tb_listener_conf *lc, int fd);
void listener_free(struct listener *l);
/* The worker's connection count went down: resume accepting if paused for it. */
void listener_maybe_resume(struct listener *l);

/* Create a bound, non-blocking SO_REUSEPORT socket listening with backlog;
 * -1 with errno. */
int listener_socket(const struct tb_addr *a, int backlog);

/*
 * Is a held by any other listening socket? A bind with SO_REUSEADDR but
 * not SO_REUSEPORT on a throwaway socket: it fails (EADDRINUSE) where any
 * socket listens on an overlapping address, whoever owns it, even the same
 * user with SO_REUSEPORT (which listener_socket would share with), and
 * succeeds over leftover TIME_WAIT connections. 0 if free, -1 with errno.
 * The port could still be taken between this and the real bind.
 */
int listener_probe(const struct tb_addr *a);

/*
 * The listen(2) backlog to use for the configured want: net.core.somaxconn
 * (this network namespace's) caps it silently in the kernel, so it is
 * capped here, with a warning, and the number in the logs and in ss -ltn
 * agree. want itself when the sysctl cannot be read.
 */
int listener_backlog(int want);

#endif
