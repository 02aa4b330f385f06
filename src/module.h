/*
 * module.h: the seam between the core (main.c, worker.c, config.c) and the
 * features built around the proxy (TLS, tracing; next an OTLP exporter,
 * fleet-wide sampling). A feature fills one struct tb_module and is listed
 * once in modules.c; the core only calls the modules_*() loops below and
 * never a feature by name (STYLE.md 15; nginx's ngx_module_t with its
 * init_process/exit_process, HAProxy's REGISTER_PER_THREAD_INIT).
 *
 * Every member may be NULL. Control-thread hooks run in table order;
 * stop and free in reverse.
 */
#ifndef TB_MODULE_H
#define TB_MODULE_H

#include <stddef.h>

#include "config.h"

struct event_base;
struct worker;

/* Each module's slot in tb_config.mod[], for its per-configuration state. */
enum tb_module_id {
	TB_MOD_TLS = 0,
	TB_MOD_TRACING,
	TB_MOD_OTLP,		/* after tracing: it registers a span sink there */
	TB_MOD_ADAPTIVE,		/* after tracing: it uses the hub */
	TB_MOD_VIEWER,
	TB_MODULES_N,
};

struct tb_module {
	const char *name;
	/* The checks of the options this module owns, {NULL} terminated: run
	 * by the loader as each is read, so they name its line. */
	const struct tb_opt_check *opt_checks;
	/* After the whole file, with every option set: the module's checks
	 * across options (pure: no I/O, the config fuzzer runs them). 0, or
	 * -1 with config_errorf() in err. */
	int (*conf_check)(const struct tb_config *cfg, char *err, size_t errlen);
	/* Control thread, for every configuration loaded (start, SIGHUP, -t),
	 * after it loaded and passed the checks:
	 * build the module's state from cfg, keep it in cfg->mod[id] (freed
	 * with cfg through its free member). 0, or -1 with a message in err
	 * (no secret in it). */
	int (*conf_attach)(struct tb_config *cfg, char *err, size_t errlen);
	/* Control thread: start with the first configuration; 0/-1 (logged). */
	int (*start)(struct event_base *base, const struct tb_config *cfg);
	/* Control thread: cfg is in force now (a reload). */
	void (*reload)(const struct tb_config *cfg);
	void (*stop)(void);
	/* Worker thread: a configuration is in force for new connections. */
	void (*worker_configure)(struct worker *w, const struct tb_config *cfg);
	/* Worker thread, draining: 1 when nothing is left to write out. */
	int (*worker_flushed)(struct worker *w);
	void (*worker_free)(struct worker *w);
};

/* The modules, in order, NULL-terminated (modules.c). */
extern const struct tb_module *const tb_modules[];

config_check_fn modules_opt_check(const char *section, const char *option);
int modules_conf_check(const struct tb_config *cfg, char *err, size_t errlen);
int modules_conf_attach(struct tb_config *cfg, char *err, size_t errlen);
int modules_start(struct event_base *base, const struct tb_config *cfg);
void modules_reload(const struct tb_config *cfg);
void modules_stop(void);
void modules_worker_configure(struct worker *w, const struct tb_config *cfg);
int modules_worker_flushed(struct worker *w);
void modules_worker_free(struct worker *w);

#endif
