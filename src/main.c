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
	char addr[128];
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
		if (strcmp(s->addr, addr) == 0)
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
 * Make sure every listener of cfg has its sockets, binding the new ones.
 * On failure nothing of the old set is lost and the new sockets are closed.
 */
static int
bind_listeners(const struct tb_config *cfg)
{
	struct lsock *s, *added = NULL, *next;
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
			if (strcmp(s->addr, a->text) == 0)
				break;
		if (s != NULL)
			continue;
		if ((s = calloc(1, sizeof(*s))) == NULL ||
		    (s->fds = malloc(sizeof(int) * (size_t)g.n_workers)) == NULL) {
			free(s);
			goto fail;
		}
		snprintf(s->addr, sizeof(s->addr), "%s", a->text);
		s->used = 1;
		for (k = 0; k < g.n_workers; k++)
			s->fds[k] = -1;
		s->next = added;
		added = s;
		for (k = 0; k < g.n_workers; k++) {
			if ((s->fds[k] = listener_socket(a)) < 0) {
				log_warn("listener %s: cannot listen on %s",
				    cfg->listeners[i].name, a->text);
				goto fail;
			}
		}
	}
	/* Commit: keep the new, close the ones no listener uses any more. */
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
	cfg->workers = g.cfg->workers;
	if (bind_listeners(cfg) < 0) {
		log_errx("reload failed, keeping the running configuration");
		config_unref(cfg);
		return;
	}
	log_set_level(cfg->log_level);
	if (strcmp(cfg->error_log, g.cfg->error_log) != 0)
		log_open(cfg->error_log, cfg->log_level);
	log_access_open(cfg->access_log);
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

static int
write_pid_file(const char *path)
{
	char buf[32];
	int fd, n;

	if (path == NULL || path[0] == '\0')
		return 0;
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
		log_err("pid_file %s", path);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		log_err("pid_file %s", path);
		close(fd);
		return -1;
	}
	close(fd);
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
		printf("%s: configuration ok\n", g.config_path ? g.config_path : "command line");
		config_unref(g.cfg);
		return 0;
	}
	if (listen_arg != NULL)
		g.config_path = NULL;

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
	if (log_open(g.cfg->error_log, g.cfg->log_level) < 0 ||
	    log_access_open(g.cfg->access_log) < 0) {
		fprintf(stderr, "tracebridge: cannot open logs\n");
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
	if (g.cfg->admin_enabled && admin_start(g.base, &g.cfg->admin_listen) < 0)
		return 1;
	if (write_pid_file(g.cfg->pid_file) < 0)
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
	if (g.cfg->pid_file != NULL && g.cfg->pid_file[0] != '\0')
		unlink(g.cfg->pid_file);
	config_unref(g.cfg);
	event_base_free(g.base);
	log_info("stopped");
	return 0;
}
