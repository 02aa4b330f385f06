/*
 * worker.h: one thread, one event_base, its listeners, its client
 * connections and its upstream pool. The control thread talks to a worker
 * only through worker_reconfigure/worker_drain/worker_stop, which post a
 * message and wake the worker's loop; everything else is touched only from
 * the worker's own thread.
 */
#ifndef TB_WORKER_H
#define TB_WORKER_H

#include <pthread.h>
#include <sys/queue.h>

#include "config.h"

struct conn;
struct h1_msg;
struct listener;

TAILQ_HEAD(conn_list, conn);

/* Pipes a worker keeps for splicing bodies: one per body in flight. */
#define WORKER_PIPES	64

/* One listening socket handed to a worker for one [listener:NAME]. */
struct worker_listen {
	const struct tb_listener_conf *lc;	/* inside the config sent along */
	int fd;					/* the worker owns it once sent */
};

struct worker {
	int id;
	pthread_t thread;
	struct event_base *base;
	struct tb_config *cfg;		/* config in force for new connections (ref) */
	struct upstream_pool *pool;
	struct sock_pipes *pipes;	/* splice(2) pipes for the relays */
	struct h1_msg *scratch;		/* parse scratch: parsing never spans callbacks */
	struct conn_list conns;
	unsigned n_conns;
	unsigned max_conns;		/* this worker's share of max_connections */
	struct listener *listeners;	/* singly linked */
	void *mod[TB_CONF_SLOTS];	/* each module's worker state (module.h) */
	int draining;

	/* messages from the control thread, under lock */
	pthread_mutex_t lock;
	int msg_pipe[2];		/* the control thread writes a byte to wake us */
	struct event *msg_ev;
	struct tb_config *msg_cfg;	/* pending config (ref) or NULL */
	struct worker_listen *msg_listen;	/* pending listeners (owned) */
	size_t msg_n_listen;
	int msg_drain;
	int msg_stop;
	int done;			/* loop exited (set by the worker) */
};

/* Create the worker's event_base and state; 0/-1. */
int worker_init(struct worker *w, int id, struct tb_config *cfg);
/* Start the thread. */
int worker_start(struct worker *w);
/*
 * Hand the worker a new config (a reference passes to the worker) and its
 * listening sockets for it (fds pass to the worker, the array is copied).
 */
void worker_reconfigure(struct worker *w, struct tb_config *cfg,
    const struct worker_listen *ls, size_t n);
/* Stop accepting, close idle connections, exit the loop when none is left. */
void worker_drain(struct worker *w);
/* Exit the loop now (drain timeout). */
void worker_stop(struct worker *w);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

/* Called by conn.c when a connection is gone (drain bookkeeping). */
void worker_conn_closed(struct worker *w);

#endif
