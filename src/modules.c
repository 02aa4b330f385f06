/*
 * modules.c: the list of modules and the loops the core calls (see
 * module.h). Adding a feature: its struct tb_module here and its slot in
 * enum tb_module_id; no core file changes.
 */
#include <string.h>

#include "log.h"
#include "module.h"

_Static_assert(TB_MODULES_N <= TB_CONF_SLOTS, "tb_config.mod has a slot per module");

extern const struct tb_module tls_module;
extern const struct tb_module tracing_module;
extern const struct tb_module otlp_module;
extern const struct tb_module adaptive_module;
extern const struct tb_module viewer_module;

const struct tb_module *const tb_modules[] = {
	[TB_MOD_TLS] = &tls_module,
	[TB_MOD_TRACING] = &tracing_module,
	[TB_MOD_OTLP] = &otlp_module,
	[TB_MOD_ADAPTIVE] = &adaptive_module,
	[TB_MOD_VIEWER] = &viewer_module,
	[TB_MODULES_N] = NULL,
};

config_check_fn
modules_opt_check(const char *section, const char *option)
{
	const struct tb_module *const *m;
	const struct tb_opt_check *c;

	for (m = tb_modules; *m != NULL; m++)
		for (c = (*m)->opt_checks; c != NULL && c->option != NULL; c++)
			if (strcmp(c->section, section) == 0 &&
			    strcmp(c->option, option) == 0)
				return c->check;
	return NULL;
}

int
modules_conf_check(const struct tb_config *cfg, char *err, size_t errlen)
{
	const struct tb_module *const *m;

	for (m = tb_modules; *m != NULL; m++)
		if ((*m)->conf_check != NULL && (*m)->conf_check(cfg, err, errlen) < 0)
			return -1;
	return 0;
}

int
modules_conf_attach(struct tb_config *cfg, char *err, size_t errlen)
{
	const struct tb_module *const *m;

	for (m = tb_modules; *m != NULL; m++)
		if ((*m)->conf_attach != NULL && (*m)->conf_attach(cfg, err, errlen) < 0)
			return -1;
	return 0;
}

int
modules_start(struct event_base *base, const struct tb_config *cfg)
{
	const struct tb_module *const *m;

	for (m = tb_modules; *m != NULL; m++)
		if ((*m)->start != NULL && (*m)->start(base, cfg) < 0) {
			log_errx("%s: start failed", (*m)->name);
			return -1;
		}
	return 0;
}

void
modules_reload(const struct tb_config *cfg)
{
	const struct tb_module *const *m;

	for (m = tb_modules; *m != NULL; m++)
		if ((*m)->reload != NULL)
			(*m)->reload(cfg);
}

void
modules_stop(void)
{
	int i;

	for (i = TB_MODULES_N - 1; i >= 0; i--)
		if (tb_modules[i]->stop != NULL)
			tb_modules[i]->stop();
}

void
modules_worker_configure(struct worker *w, const struct tb_config *cfg)
{
	const struct tb_module *const *m;

	for (m = tb_modules; *m != NULL; m++)
		if ((*m)->worker_configure != NULL)
			(*m)->worker_configure(w, cfg);
}

int
modules_worker_flushed(struct worker *w)
{
	const struct tb_module *const *m;

	for (m = tb_modules; *m != NULL; m++)
		if ((*m)->worker_flushed != NULL && !(*m)->worker_flushed(w))
			return 0;
	return 1;
}

void
modules_worker_free(struct worker *w)
{
	int i;

	for (i = TB_MODULES_N - 1; i >= 0; i--)
		if (tb_modules[i]->worker_free != NULL)
			tb_modules[i]->worker_free(w);
}
