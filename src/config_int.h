/*
 * config_int.h: what the three parts of the configuration loader share;
 * nothing outside config*.c includes it (the rest of the tree sees
 * config.h only).
 *
 *   config_opt.c  the option table, value parsers and generic validators
 *   config_ini.c  pass one: the INI lexer (lines, sections, pairs)
 *   config.c      pass two, the checks across options, the public API
 */
#ifndef TB_CONFIG_INT_H
#define TB_CONFIG_INT_H

#include <stddef.h>

#include "config.h"

enum sect_kind {
	SECT_DEFAULT = 0,	/* [DEFAULT] and the options before any section */
	SECT_ADMIN,
	SECT_LISTENER,
	SECT_PROFILER,
	SECT_TRACING,
	SECT_SAMPLING,
	SECT_OTLP,
	SECT_PROFILER_OTLP,	/* osprofiler's [profiler_otlp], read for its prefix */
	SECT_COUNT
};

enum opt_type {
	OT_BOOL = 0,	/* int 0/1 */
	OT_TRIBOOL,	/* int -1 (unset), 0, 1 */
	OT_INT,		/* int */
	OT_UINT,	/* unsigned */
	OT_SIZE,	/* size_t, k/m/g suffix */
	OT_DUR,		/* double seconds, ms/s/m/h suffix */
	OT_DOUBLE,	/* double */
	OT_STR,		/* char *, empty = NULL */
	OT_ENUM,	/* int index into names */
	OT_ADDR,	/* struct tb_addr; OPT_OFF: int enabled at off_n */
	OT_UPSTREAM,	/* the upstream fields of struct tb_listener_conf */
	OT_LIST,	/* char ** at off, size_t count at off_n */
	OT_CIDRS	/* struct tb_cidr * at off, count at off_n; a list */
};

#define OPT_AUTO	0x01	/* OT_INT: "auto" = number of cores */
#define OPT_OFF		0x02	/* OT_ADDR: "off" disables */
#define OPT_SECONDS	0x04	/* OT_UINT: optional "s" suffix */
#define OPT_LINES	0x08	/* OT_LIST: one member per line (they hold ',') */

#define NOMAX	1e15		/* "no upper bound" in the range columns */


struct opt {
	enum sect_kind sect;
	const char *name;
	enum opt_type type;
	const char *def;	/* default as written in a file; NULL = none */
	size_t off;		/* into tb_config, or tb_listener_conf for SECT_LISTENER */
	size_t off_n;		/* lists: count; OT_ADDR with OPT_OFF: enabled flag */
	double min, max;
	unsigned flags;
	const char *const *names;	/* OT_ENUM */
	config_check_fn check;	/* generic; the modules' own: module.h */
};

extern const struct opt config_opts[];
extern const size_t config_n_opts;
extern const char *const config_sect_names[SECT_COUNT];

/* config_opt.c */
const struct opt *config_opt_find(enum sect_kind sect, const char *name);
/* Parse v as o into base (tb_config, or tb_listener_conf for listener
 * options); 0, or -1 with the reason in why (never quoting v). */
int config_opt_set(const struct opt *o, void *base, const char *v, char *why,
    size_t wl);
int config_opt_defaults(enum sect_kind sect, void *base);
void config_opt_free(enum sect_kind sect, void *base);
int config_parse_upstream(const char *v, struct tb_listener_conf *l, char *why,
    size_t wl);
int config_addr_equal(const struct tb_addr *x, const struct tb_addr *y);
void config_trim(const char **s, const char **e);
void config_free_strv(char **v);

/* config_ini.c: pass one records every section and name = value */
struct raw_sect {
	enum sect_kind kind;
	char *name;		/* as written, trimmed */
	int line;
	size_t listener;	/* SECT_LISTENER: index in c->listeners */
};

struct raw_opt {
	size_t sect;		/* index in loader.sects */
	char *name;
	char *value;		/* continuation lines joined with '\n' */
	size_t vlen, vcap;	/* strlen(value), its allocation */
	int line;
};

struct config_loader {
	const char *fname;	/* FILE in messages */
	char *err;
	size_t errlen;
	int failed;		/* an error is in err; stop everything */

	int line;		/* physical line being read */
	int in_pair;		/* a name = value since the last [section] */

	struct raw_sect *sects;
	size_t n_sects;
	struct raw_opt *ropts;
	size_t n_ropts, cap_ropts;
	size_t n_listeners;
	int singleton_line[SECT_COUNT];	/* header line of [admin] etc. */
};

void config_ld_err(struct config_loader *, int, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));
int config_add_sect(struct config_loader *ld, enum sect_kind kind,
    const char *name, int line);
/* Read buf into ld->sects and ld->ropts; on error ld->failed is set. */
void config_ini_read(struct config_loader *ld, const char *buf, size_t len);
void config_loader_free(struct config_loader *ld);

#endif
