/*
 * main.c: command line, start-up, signals, worker threads, reload and drain.
 *
 * The main thread is the control thread: it owns the configuration, the
 * listening sockets (so a reload can bind new ones before anything changes),
 * the admin endpoint and the signal handlers. Workers only get messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "tb_build.h"

#include "admin.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "module.h"
#include "worker.h"
#include "util.h"

/* Listening sockets per listen address, one per worker (SO_REUSEPORT). */
struct lsock {
	struct tb_addr addr;	/* identity across reloads: addr.text */
	int *fds;		/* [n_workers], owned by the control thread */
	int used;		/* mark during reload */
	struct lsock *next;
};

static struct {
	struct event_base *base;
	struct tb_config *cfg;
	struct worker *workers;
	int n_workers;
	struct lsock *socks;
	int backlog;		/* the listen(2) backlog of every lsock */
	int pid_fd;		/* pid file, locked while we run; -1 = none */
	char *pid_path;		/* the one we locked (reloads keep it) */
	int draining;
	struct event *drain_timer;
	struct event *check_timer;
	const char *config_path;
} g;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: tracebridge [-f] [-c FILE]\n"
	    "       tracebridge -t -c FILE\n"
	    "       tracebridge [-f] --listen HOST:PORT --upstream http://HOST:PORT\n"
	    "       tracebridge -V | --help\n"
	    "\n"
	    "  -c, --config FILE   configuration file (default %s/tracebridge.conf)\n"
	    "  -t, --test          check the configuration and exit (0 ok, 2 error)\n"
	    "  -f, --foreground    do not daemonize; log to stderr unless configured\n"
	    "  -V, --version       print the version and exit\n"
	    "      --listen ADDR   listen address, without a configuration file\n"
	    "      --upstream URL  upstream URL, without a configuration file\n"
	    "  -h, --help          this help\n", TB_SYSCONFDIR);
}

static struct lsock *
lsock_find(const char *addr)
{
	struct lsock *s;

	for (s = g.socks; s != NULL; s = s->next)
		if (strcmp(s->addr.text, addr) == 0)
			return s;
	return NULL;
}

static void
lsock_free(struct lsock *s)
{
	int i;

	for (i = 0; i < g.n_workers; i++)
		if (s->fds[i] >= 0)
			close(s->fds[i]);
	free(s->fds);
	free(s);
}

/*
 * May we listen on a, which none of our sockets overlaps? Not when another
 * process listens there: SO_REUSEPORT would let us bind beside a socket of
 * the same user and take half its connections. 0, or -1 logged as what
 * ("listener NAME", "admin").
 */
static int
port_free(const char *what, const struct tb_addr *a)
{
	if (listener_probe(a) == 0)
		return 0;
	if (errno == EADDRINUSE)
		log_errx("%s: %s is in use by another process (another "
		    "tracebridge?); not sharing it", what, a->text);
	else
		log_warn("%s: cannot listen on %s", what, a->text);
	return -1;
}

/* One of our sockets already takes connections for (part of) a. */
static int
lsock_overlaps(const struct tb_addr *a)
{
	struct lsock *s;

	for (s = g.socks; s != NULL; s = s->next)
		if (config_addr_overlap(&s->addr, a))
			return 1;
	return 0;
}

/*
 * Make sure every listener of cfg has its sockets, binding the new ones.
 * On failure nothing of the old set is lost and the new sockets are closed.
 * A changed backlog applies to the kept sockets too: listen(2) again on a
 * listening socket only resizes its queue (Linux).
 *
 * A new address is probed first (port_free), unless one of our own
 * sockets overlaps it (a reload moving 127.0.0.1:P to *:P): the probe
 * would only find us there, so such an address is bound unprobed.
 */
static int
bind_listeners(const struct tb_config *cfg)
{
	struct lsock *s, *added = NULL, *next;
	int backlog = listener_backlog(cfg->backlog);
	char what[96];
	size_t i;
	int k;

	for (s = g.socks; s != NULL; s = s->next)
		s->used = 0;
	for (i = 0; i < cfg->n_listeners; i++) {
		const struct tb_addr *a = &cfg->listeners[i].listen;

		if ((s = lsock_find(a->text)) != NULL) {
			s->used = 1;
			continue;
		}
		for (s = added; s != NULL; s = s->next)
			if (strcmp(s->addr.text, a->text) == 0)
				break;
		if (s != NULL)
			continue;
		snprintf(what, sizeof(what), "listener %s", cfg->listeners[i].name);
		if (!lsock_overlaps(a) && port_free(what, a) < 0)
			goto fail;
		if ((s = calloc(1, sizeof(*s))) == NULL ||
		    (s->fds = malloc(sizeof(int) * (size_t)g.n_workers)) == NULL) {
			free(s);
			goto fail;
		}
		s->addr = *a;
		s->used = 1;
		for (k = 0; k < g.n_workers; k++)
			s->fds[k] = -1;
		s->next = added;
		added = s;
		for (k = 0; k < g.n_workers; k++) {
			if ((s->fds[k] = listener_socket(a, backlog)) < 0) {
				log_warn("listener %s: cannot listen on %s",
				    cfg->listeners[i].name, a->text);
				goto fail;
			}
		}
	}
	/* Commit: keep the new, close the ones no listener uses any more. */
	for (s = g.socks; s != NULL && backlog != g.backlog; s = s->next)
		for (k = 0; s->used && k < g.n_workers; k++)
			if (listen(s->fds[k], backlog) < 0)
				log_warn("%s: listen (backlog %d)", s->addr.text,
				    backlog);
	g.backlog = backlog;
	for (s = added; s != NULL; s = next) {
		next = s->next;
		s->next = g.socks;
		g.socks = s;
	}
	{
		struct lsock **pp = &g.socks;

		while ((s = *pp) != NULL) {
			if (!s->used) {
				*pp = s->next;
				lsock_free(s);
			} else {
				pp = &s->next;
			}
		}
	}
	return 0;
fail:
	for (s = added; s != NULL; s = next) {
		next = s->next;
		lsock_free(s);
	}
	return -1;
}

/* Send cfg and a dup of each of its sockets to every worker. */
static void
configure_workers(struct tb_config *cfg)
{
	struct worker_listen *ls;
	size_t i;
	int k;

	ls = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*ls));
	for (k = 0; k < g.n_workers; k++) {
		size_t n = 0;

		for (i = 0; ls != NULL && i < cfg->n_listeners; i++) {
			struct lsock *s = lsock_find(cfg->listeners[i].listen.text);
			int fd = s != NULL ? dup(s->fds[k]) : -1;

			if (fd < 0) {
				log_warn("listener %s: dup", cfg->listeners[i].name);
				continue;
			}
			fcntl(fd, F_SETFD, FD_CLOEXEC);
			ls[n].lc = &cfg->listeners[i];
			ls[n].fd = fd;
			n++;
		}
		worker_reconfigure(&g.workers[k], config_ref(cfg), ls, n);
	}
	free(ls);
}

/*
 * Load a configuration (the file, or --listen/--upstream when listen is
 * set) and let every module build its state from it: the same steps at
 * start, for -t and on SIGHUP. 0, or -1 with the reason in err.
 */
static int
load_config(const char *path, const char *listen, const char *upstream,
    struct tb_config **out, char *err, size_t errlen)
{
	int rc;

	if (listen != NULL)
		rc = config_from_args(listen, upstream, out, err, errlen);
	else
		rc = config_load(path, out, err, errlen);
	if (rc == 0 && (rc = modules_conf_attach(*out, err, errlen)) < 0) {
		config_unref(*out);
		*out = NULL;
	}
	return rc;
}

static void
reload(void)
{
	struct tb_config *cfg;
	char err[1024];

	if (g.config_path == NULL) {
		log_info("SIGHUP: no configuration file to reload; reopening logs");
		log_reopen();
		return;
	}
	log_info("SIGHUP: reloading %s", g.config_path);
	if (load_config(g.config_path, NULL, NULL, &cfg, err, sizeof(err)) < 0) {
		log_errx("reload failed, keeping the running configuration: %s", err);
		return;
	}
	if (cfg->workers != g.cfg->workers)
		log_warnx("reload: workers = %d takes effect at the next restart; keeping %d",
		    cfg->workers, g.cfg->workers);
	if ((cfg->pid_file == NULL) != (g.pid_path == NULL) || (cfg->pid_file !=
	    NULL && strcmp(cfg->pid_file, g.pid_path) != 0))
		log_warnx("reload: a changed pid_file takes effect at the next "
		    "restart; keeping %s", g.pid_path != NULL ? g.pid_path :
		    "none");
	cfg->workers = g.cfg->workers;
	if (bind_listeners(cfg) < 0) {
		log_errx("reload failed, keeping the running configuration");
		config_unref(cfg);
		return;
	}
	log_set_level(cfg->log_level);
	/* A file that cannot be opened keeps the old target: say so. */
	if (strcmp(cfg->error_log, g.cfg->error_log) != 0 &&
	    log_open(cfg->error_log, cfg->log_level) < 0)
		log_warn("reload: cannot open error_log %s, logging on to %s",
		    cfg->error_log, g.cfg->error_log);
	if (log_access_open(cfg->access_log) < 0)
		log_warn("reload: cannot open access_log %s, keeping %s",
		    cfg->access_log, g.cfg->access_log);
	log_reopen();
	admin_set_auth_token(cfg->admin_auth_token);
	modules_reload(cfg);
	configure_workers(cfg);
	config_unref(g.cfg);
	g.cfg = cfg;
	log_info("reload done: %zu listener(s)", cfg->n_listeners);
}

static void
check_cb(evutil_socket_t fd, short what, void *arg)
{
	int k;

	for (k = 0; k < g.n_workers; k++)
		if (!__atomic_load_n(&g.workers[k].done, __ATOMIC_ACQUIRE))
			return;
	event_base_loopexit(g.base, NULL);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	int k;

	log_warnx("drain_timeout reached: closing the remaining connections");
	for (k = 0; k < g.n_workers; k++)
		worker_stop(&g.workers[k]);
}

static void
start_drain(void)
{
	struct timeval tv, tick = { 0, 50000 };
	struct lsock *s, *next;
	int k;

	if (g.draining)
		return;
	g.draining = 1;
	log_info("draining: no new connections, finishing requests (up to %.1f s)",
	    g.cfg->drain_timeout);
	admin_set_draining();
	for (k = 0; k < g.n_workers; k++)
		worker_drain(&g.workers[k]);
	/* Close our copies: once the workers drop theirs, the port is closed. */
	for (s = g.socks; s != NULL; s = next) {
		next = s->next;
		lsock_free(s);
	}
	g.socks = NULL;
	tv = tb_timeval(g.cfg->drain_timeout);
	g.drain_timer = evtimer_new(g.base, drain_timeout_cb, NULL);
	g.check_timer = event_new(g.base, -1, EV_PERSIST, check_cb, NULL);
	evtimer_add(g.drain_timer, &tv);
	evtimer_add(g.check_timer, &tick);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGHUP:
		if (!g.draining)
			reload();
		break;
	case SIGUSR1:
		log_reopen();
		break;
	case SIGTERM:
	case SIGINT:
		start_drain();
		break;
	}
}

static int
drop_privileges(const struct tb_config *cfg)
{
	struct passwd *pw = NULL;
	struct group *gr = NULL;

	if (cfg->user == NULL && cfg->group == NULL)
		return 0;
	if (cfg->group != NULL && (gr = getgrnam(cfg->group)) == NULL) {
		log_errx("group %s not found", cfg->group);
		return -1;
	}
	if (cfg->user != NULL && (pw = getpwnam(cfg->user)) == NULL) {
		log_errx("user %s not found", cfg->user);
		return -1;
	}
	if (gr != NULL || pw != NULL) {
		gid_t gid = gr != NULL ? gr->gr_gid : pw->pw_gid;

		if (setgroups(1, &gid) < 0 || setgid(gid) < 0) {
			log_err("setgid");
			return -1;
		}
	}
	if (pw != NULL && setuid(pw->pw_uid) < 0) {
		log_err("setuid");
		return -1;
	}
	return 0;
}

/*
 * Open and lock the pid file (flock, exclusive, not waiting) before any
 * port is bound, and keep it open for the life of the process: the kernel
 * drops the lock when we exit however we exit, so a file left by a crash
 * is simply taken over, and a second instance with the same pid_file
 * fails here with the first one's pid. flock, not fcntl: the lock belongs
 * to the open file, so it survives daemonize()'s forks, where a POSIX
 * record lock would stay with the parent that exits. Nothing is written
 * yet (pid_file_write, once we know our final pid).
 *
 * An instance that stops unlinks the file while it still holds the lock;
 * if that happened between our open and our lock, we hold a lock on a
 * file nobody else will find, so check that the path still names what we
 * locked and start over if not. Returns the descriptor, or -1 (logged).
 */
static int
pid_file_lock(const char *path)
{
	struct stat held, named;
	char buf[32], *end;
	ssize_t n;
	long pid;
	int fd, tries;

	for (tries = 0; tries < 10; tries++) {
		if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY,
		    0644)) < 0) {
			log_err("pid_file %s", path);
			return -1;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK) {
				log_err("pid_file %s: lock", path);
			} else {
				/* the holder's pid; empty while it starts */
				n = pread(fd, buf, sizeof(buf) - 1, 0);
				buf[n > 0 ? n : 0] = '\0';
				pid = strtol(buf, &end, 10);
				if (end == buf || (*end != '\n' && *end != '\0') ||
				    pid <= 0)
					snprintf(buf, sizeof(buf), "unknown");
				else
					snprintf(buf, sizeof(buf), "%ld", pid);
				log_errx("already running (pid %s): %s is locked",
				    buf, path);
			}
			close(fd);
			return -1;
		}
		if (fstat(fd, &held) == 0 && stat(path, &named) == 0 &&
		    held.st_dev == named.st_dev && held.st_ino == named.st_ino)
			return fd;
		close(fd);
	}
	log_errx("pid_file %s: replaced under us again and again", path);
	return -1;
}

/*
 * At exit, however main returns (a failed start too): remove the pid file
 * while it is still locked (see pid_file_lock), then let the lock go.
 */
static void
pid_file_remove(void)
{
	if (g.pid_fd >= 0) {
		(void)unlink(g.pid_path);
		close(g.pid_fd);
		g.pid_fd = -1;
	}
	free(g.pid_path);
	g.pid_path = NULL;
}

/* Our pid into the locked pid file (replacing what a crash left). */
static int
pid_file_write(int fd, const char *path)
{
	char buf[32];
	int n;

	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		log_err("pid_file %s", path);
		return -1;
	}
	return 0;
}

static int
daemonize(void)
{
	pid_t pid;
	int fd;

	if ((pid = fork()) < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (fd > 2)
			close(fd);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "listen", required_argument, NULL, 'L' },
		{ "upstream", required_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_arg = NULL, *upstream_arg = NULL;
	int ch, test = 0, foreground = 0, k;
	char err[1024];
	struct event *sigs[4];
	static const int signums[4] = { SIGHUP, SIGTERM, SIGINT, SIGUSR1 };

	while ((ch = getopt_long(argc, argv, "c:tfVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': g.config_path = optarg; break;
		case 't': test = 1; break;
		case 'f': foreground = 1; break;
		case 'V': printf("tracebridge %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		case 'L': listen_arg = optarg; break;
		case 'U': upstream_arg = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || (listen_arg != NULL) != (upstream_arg != NULL) ||
	    (listen_arg != NULL && g.config_path != NULL)) {
		usage(stderr);
		return 2;
	}
	if (listen_arg == NULL && g.config_path == NULL)
		g.config_path = TB_SYSCONFDIR "/tracebridge.conf";

	if (load_config(g.config_path, listen_arg, upstream_arg, &g.cfg, err,
	    sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);	/* names FILE (and LINE) */
		return 2;
	}
	if (test) {
		if (config_check_files(g.cfg, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			config_unref(g.cfg);
			return 2;
		}
		(void)listener_backlog(g.cfg->backlog);	/* warns if capped */
		printf("%s: configuration ok\n", g.config_path ? g.config_path : "command line");
		config_unref(g.cfg);
		return 0;
	}
	if (listen_arg != NULL)
		g.config_path = NULL;
	/* Before the logs are opened: "already running" goes to the terminal
	 * (or the journal) that started us, and before daemonize(): into our
	 * exit status. */
	g.pid_fd = -1;
	if (g.cfg->pid_file != NULL) {
		if ((g.pid_path = strdup(g.cfg->pid_file)) == NULL) {
			log_errx("out of memory");
			return 1;
		}
		if ((g.pid_fd = pid_file_lock(g.pid_path)) < 0)
			return 1;
		atexit(pid_file_remove);
	}

	signal(SIGPIPE, SIG_IGN);
	/*
	 * Socket reads land in evbuffer chains of up to 256 KiB (sock.c),
	 * freed as soon as they are written. With glibc's dynamic defaults a
	 * freed chain goes back to the kernel (madvise, or munmap above the
	 * mmap threshold) and the next read faults its pages in again: on
	 * this VM 4-13 us a page, which made a 64 KiB response cost ~200 us
	 * of CPU (bench/bulk.sh). Keep freed memory mapped up to 64 MiB per
	 * arena and serve such chains from the arenas: the buffers in use are
	 * bounded by the watermarks anyway.
	 */
	(void)mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	if (log_open(g.cfg->error_log, g.cfg->log_level) < 0) {
		fprintf(stderr, "tracebridge: cannot open error_log %s: %s\n",
		    g.cfg->error_log, strerror(errno));
		return 1;
	}
	if (log_access_open(g.cfg->access_log) < 0) {
		int e = errno;

		/* where the start was asked for, and in the error log */
		fprintf(stderr, "tracebridge: cannot open access_log %s: %s\n",
		    g.cfg->access_log, strerror(e));
		if (strcmp(g.cfg->error_log, "stderr") != 0) {
			errno = e;
			log_err("cannot open access_log %s", g.cfg->access_log);
		}
		return 1;
	}
	if (!foreground && daemonize() < 0) {
		log_err("daemonize");
		return 1;
	}
	event_set_log_callback(log_libevent);
	/*
	 * No evthread_use_pthreads(): each event_base is only ever touched by
	 * its own thread (workers are woken through a pipe), so libevent's
	 * locks would be pure cost on every event operation.
	 */
	if ((g.base = event_base_new()) == NULL) {
		log_errx("event_base_new failed");
		return 1;
	}
	/*
	 * Signals are caught before any port is open: a SIGHUP (or SIGTERM)
	 * sent as soon as the port answers, while we are still starting, must
	 * wait for the loop, not kill the process by its default action (seen
	 * as a test's reload that never came, on a loaded machine).
	 */
	for (k = 0; k < 4; k++) {
		sigs[k] = evsignal_new(g.base, signums[k], signal_cb, NULL);
		evsignal_add(sigs[k], NULL);
	}
	g.n_workers = g.cfg->workers;
	if (bind_listeners(g.cfg) < 0)
		return 1;
	admin_set_auth_token(g.cfg->admin_auth_token);
	if (g.cfg->admin_enabled && (port_free("admin", &g.cfg->admin_listen) < 0 ||
	    admin_start(g.base, &g.cfg->admin_listen) < 0))
		return 1;
	if (g.pid_fd >= 0 && pid_file_write(g.pid_fd, g.pid_path) < 0)
		return 1;
	if (drop_privileges(g.cfg) < 0)
		return 1;

	if (modules_start(g.base, g.cfg) < 0)
		return 1;	/* logged */
	if ((g.workers = calloc((size_t)g.n_workers, sizeof(*g.workers))) == NULL)
		return 1;
	for (k = 0; k < g.n_workers; k++) {
		if (worker_init(&g.workers[k], k, g.cfg) < 0) {
			log_errx("worker %d: init failed", k);
			return 1;
		}
	}
	configure_workers(g.cfg);
	for (k = 0; k < g.n_workers; k++) {
		if (worker_start(&g.workers[k]) < 0) {
			log_err("worker %d: thread", k);
			return 1;
		}
	}
	log_info("tracebridge %s started: %d worker(s), %zu listener(s)%s%s",
	    PACKAGE_VERSION, g.n_workers, g.cfg->n_listeners,
	    g.cfg->admin_enabled ? ", admin on " : "",
	    g.cfg->admin_enabled ? g.cfg->admin_listen.text : "");

	event_base_dispatch(g.base);

	for (k = 0; k < g.n_workers; k++)
		worker_join(&g.workers[k]);
	for (k = 0; k < g.n_workers; k++)
		worker_free(&g.workers[k]);
	free(g.workers);
	for (k = 0; k < 4; k++)
		event_free(sigs[k]);
	if (g.drain_timer != NULL)
		event_free(g.drain_timer);
	if (g.check_timer != NULL)
		event_free(g.check_timer);
	admin_stop();
	modules_stop();
	pid_file_remove();
	config_unref(g.cfg);
	event_base_free(g.base);
	log_info("stopped");
	return 0;
}
