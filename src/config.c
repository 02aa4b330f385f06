/*
 * config.c: the INI file -> struct tb_config (see config.h), the public
 * face of config_opt.c (the option table) and config_ini.c (the syntax).
 *
 * Loading runs in two passes. Pass one (config_ini.c) records every
 * section header and name = value with its line. Pass two (apply, below)
 * sets each through the option table (config_opt.c), in file order, then
 * runs the checks across options: the core's here, each module's own
 * through module.h. Only the first error is reported: the first syntax or
 * section error if there is one (pass one), else the first bad option in
 * the file.
 *
 * Messages are "FILE:LINE: option: reason". They never quote a value: the
 * line number says where, the reason says what was expected, and values may
 * be secrets (hmac_keys, a password in connection_string).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"
#include "module.h"
#include "util.h"

static void
config_free(struct tb_config *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = TB_CONF_SLOTS; i-- > 0;)
		if (c->mod[i].free != NULL)
			c->mod[i].free(c, c->mod[i].data);
	for (i = 0; i < c->n_listeners; i++) {
		config_opt_free(SECT_LISTENER, &c->listeners[i]);
		free(c->listeners[i].name);
		free(c->listeners[i].opt_lines);
	}
	free(c->listeners);
	free(c->opt_lines);
	for (i = 0; i < SECT_COUNT; i++)
		if (i != SECT_LISTENER)
			config_opt_free((enum sect_kind)i, c);
	free(c->path);
	free(c);
}

/* A config with every non-listener option at its default; NULL on ENOMEM. */
static struct tb_config *
config_new(void)
{
	struct tb_config *c;
	size_t i;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->refcnt = 1;
	for (i = 0; i < SECT_COUNT; i++)
		if (i != SECT_LISTENER && config_opt_defaults((enum sect_kind)i, c) < 0)
			goto fail;
	return c;
fail:
	config_free(c);
	return NULL;
}

/* Values computed rather than written: host name, service = listener name. */
static int
config_finish(struct tb_config *c)
{
	char host[256];
	size_t i;

	if (c->tracing.host == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		if ((c->tracing.host = strdup(host)) == NULL)
			return -1;
	}
	for (i = 0; i < c->n_listeners; i++)
		if (c->listeners[i].service == NULL &&
		    (c->listeners[i].service = strdup(c->listeners[i].name)) == NULL)
			return -1;
	return 0;
}

int
config_line(const struct tb_listener_conf *l, const char *option)
{
	const struct opt *o = config_opt_find(SECT_LISTENER, option);

	if (o == NULL || l->opt_lines == NULL || l->opt_lines[o - config_opts] == 0)
		return l->line;
	return l->opt_lines[o - config_opts];
}

/* Why two listen addresses overlap, for the message. */
static const char overlap_why[] = "a wildcard address takes its port on "
    "every address of its family";

/* Pass two: apply every recorded option to c, then the checks across
 * options that are the core's; the modules check theirs (module.h). */
static void
apply(struct config_loader *ld, struct tb_config *c)
{
	char why[512], nb[64];
	const struct opt *o;
	struct raw_opt *ro;
	struct raw_sect *rs;
	struct tb_listener_conf *l, *other;
	int *seen = NULL, *lseen;	/* line each option was first set on */
	size_t i, j;
	int line, line_admin;

	if (ld->n_listeners > 0) {
		c->listeners = calloc(ld->n_listeners, sizeof(*c->listeners));
		seen = calloc((ld->n_listeners + 1) * config_n_opts, sizeof(*seen));
		if (c->listeners == NULL || seen == NULL) {
			config_ld_err(ld, 0, "config", "out of memory");
			goto out;
		}
	} else if ((seen = calloc(config_n_opts, sizeof(*seen))) == NULL) {
		config_ld_err(ld, 0, "config", "out of memory");
		goto out;
	}
	for (i = 0; i < ld->n_sects; i++) {
		rs = &ld->sects[i];
		if (rs->kind != SECT_LISTENER)
			continue;
		l = &c->listeners[rs->listener];
		c->n_listeners++;
		l->line = rs->line;
		if ((l->name = strdup(rs->name + 9)) == NULL ||
		    config_opt_defaults(SECT_LISTENER, l) < 0) {
			config_ld_err(ld, rs->line, "config", "out of memory");
			goto out;
		}
	}

	for (i = 0; i < ld->n_ropts && !ld->failed; i++) {
		ro = &ld->ropts[i];
		rs = &ld->sects[ro->sect];
		o = config_opt_find(rs->kind, ro->name);
		if (o == NULL) {
			if (rs->kind == SECT_PROFILER)	/* may be a stray key */
				config_ld_err(ld, ro->line, "[profiler]", "unknown "
				    "option (name not shown: this section "
				    "holds secrets)");
			else
				config_ld_err(ld, ro->line, config_printable(ro->name, nb,
				    sizeof(nb)), "unknown option");
			break;
		}
		lseen = seen;
		if (rs->kind == SECT_LISTENER)
			lseen += (rs->listener + 1) * config_n_opts;
		if (lseen[o - config_opts] != 0) {
			config_ld_err(ld, ro->line, o->name, "duplicate option (first "
			    "at line %d)", lseen[o - config_opts]);
			break;
		}
		lseen[o - config_opts] = ro->line;
		if (strchr(ro->value, '\n') != NULL && o->type != OT_LIST &&
		    o->type != OT_CIDRS) {
			config_ld_err(ld, ro->line, o->name, "only lists continue on "
			    "indented lines");
			break;
		}
		if (config_opt_set(o, rs->kind == SECT_LISTENER ?
		    (void *)&c->listeners[rs->listener] : (void *)c,
		    ro->value, why, sizeof(why)) < 0)
			config_ld_err(ld, ro->line, o->name, "%s", why);
	}
	if (ld->failed)
		goto out;

	for (i = 0; i < c->n_listeners; i++) {
		l = &c->listeners[i];
		lseen = seen + (i + 1) * config_n_opts;
		if (lseen[config_opt_find(SECT_LISTENER, "listen") - config_opts] == 0) {
			config_ld_err(ld, l->line, "listen", "required in "
			    "[listener:%s]", l->name);
			goto out;
		}
		if (lseen[config_opt_find(SECT_LISTENER, "upstream") - config_opts] == 0) {
			config_ld_err(ld, l->line, "upstream", "required in "
			    "[listener:%s]", l->name);
			goto out;
		}
		line = lseen[config_opt_find(SECT_LISTENER, "listen") - config_opts];
		/*
		 * Overlapping listeners (*:P and 127.0.0.1:P) both bind, as
		 * SO_REUSEPORT lets them, and the kernel gives each connection
		 * to the more specific one: never what two sections meant.
		 */
		for (j = 0; j < i; j++) {
			other = &c->listeners[j];
			if (config_addr_equal(&l->listen, &other->listen)) {
				config_ld_err(ld, line, "listen", "address already "
				    "used by [listener:%s]", other->name);
				goto out;
			}
			if (config_addr_overlap(&l->listen, &other->listen)) {
				config_ld_err(ld, line, "listen", "overlaps "
				    "[listener:%s] (line %d): %s", other->name,
				    config_line(other, "listen"), overlap_why);
				goto out;
			}
		}
		if (c->admin_enabled && config_addr_equal(&l->listen, &c->admin_listen)) {
			config_ld_err(ld, line, "listen", "address already used by "
			    "[admin]");
			goto out;
		}
		if (c->admin_enabled && config_addr_overlap(&l->listen,
		    &c->admin_listen)) {
			line_admin = seen[config_opt_find(SECT_ADMIN, "listen") -
			    config_opts];
			if (line_admin > 0)
				snprintf(nb, sizeof(nb), "line %d", line_admin);
			else
				snprintf(nb, sizeof(nb), "its default address");
			config_ld_err(ld, line, "listen", "overlaps [admin] (%s): "
			    "%s", nb, overlap_why);
			goto out;
		}
		if ((l->opt_lines = malloc(config_n_opts * sizeof(int))) == NULL) {
			config_ld_err(ld, l->line, "config", "out of memory");
			goto out;
		}
		memcpy(l->opt_lines, lseen, config_n_opts * sizeof(int));
	}
	if (c->n_listeners == 0) {
		config_ld_err(ld, 0, "listener", "at least one [listener:NAME] "
		    "section is required");
		goto out;
	}
	if ((c->opt_lines = malloc(config_n_opts * sizeof(int))) == NULL) {
		config_ld_err(ld, 0, "config", "out of memory");
		goto out;
	}
	memcpy(c->opt_lines, seen, config_n_opts * sizeof(int));
out:
	free(seen);
}

int
config_load_buffer(const char *name, const char *buf, size_t len,
    struct tb_config **out, char *err, size_t errlen)
{
	struct config_loader ld;
	struct tb_config *c = NULL;

	*out = NULL;
	memset(&ld, 0, sizeof(ld));
	ld.fname = name;
	ld.err = err;
	ld.errlen = errlen;
	if (errlen > 0)
		err[0] = '\0';
	if (len > CONFIG_MAX_FILE) {
		config_ld_err(&ld, 0, "config", "file larger than %d bytes",
		    CONFIG_MAX_FILE);
		goto fail;
	}
	/* options before any [section] belong to [DEFAULT] */
	if (config_add_sect(&ld, SECT_DEFAULT, "DEFAULT", 0) < 0 ||
	    (c = config_new()) == NULL ||
	    (c->path = strdup(name)) == NULL) {
		config_ld_err(&ld, 0, "config", "out of memory");
		goto fail;
	}
	config_ini_read(&ld, buf, len);
	if (ld.failed)
		goto fail;
	apply(&ld, c);
	if (ld.failed)
		goto fail;
	if (config_finish(c) < 0) {
		config_ld_err(&ld, 0, "config", "out of memory");
		goto fail;
	}
	if (modules_conf_check(c, err, errlen) < 0)
		goto fail;
	config_loader_free(&ld);
	*out = c;
	return 0;
fail:
	config_loader_free(&ld);
	config_free(c);
	return -1;
}

int
config_load(const char *path, struct tb_config **out, char *err, size_t errlen)
{
	char *buf, why[256];
	size_t len;
	int rc;

	*out = NULL;
	switch (tb_read_file(path, CONFIG_MAX_FILE, &buf, &len, why,
	    sizeof(why))) {
	case TB_READ_OK:
		break;
	case TB_READ_TOO_LARGE:	/* as config_load_buffer says it */
		snprintf(err, errlen, "%s:0: config: file larger than %d bytes",
		    path, CONFIG_MAX_FILE);
		return -1;
	default:
		snprintf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	rc = config_load_buffer(path, buf, len, out, err, errlen);
	free(buf);
	return rc;
}

int
config_from_args(const char *listen, const char *upstream,
    struct tb_config **out, char *err, size_t errlen)
{
	struct tb_config *c;
	struct tb_listener_conf *l;
	char why[256];

	*out = NULL;
	if ((c = config_new()) == NULL ||
	    (c->listeners = calloc(1, sizeof(*c->listeners))) == NULL)
		goto oom;
	c->n_listeners = 1;
	l = &c->listeners[0];
	if ((l->name = strdup("default")) == NULL ||
	    config_opt_defaults(SECT_LISTENER, l) < 0)
		goto oom;
	if (config_parse_addr(listen, &l->listen) < 0) {
		snprintf(err, errlen, "--listen: expected host:port, [v6]:port "
		    "or *:port with a numeric address");
		goto fail;
	}
	if (config_parse_upstream(upstream, l, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--upstream: %s", why);
		goto fail;
	}
	if (c->admin_enabled && config_addr_equal(&l->listen, &c->admin_listen)) {
		snprintf(err, errlen, "--listen: address already used by the "
		    "admin endpoint");
		goto fail;
	}
	if (c->admin_enabled && config_addr_overlap(&l->listen, &c->admin_listen)) {
		snprintf(err, errlen, "--listen: overlaps the admin endpoint "
		    "(%s): %s", c->admin_listen.text, overlap_why);
		goto fail;
	}
	if (config_finish(c) < 0)
		goto oom;
	if (modules_conf_check(c, err, errlen) < 0)
		goto fail;
	*out = c;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	config_free(c);
	return -1;
}

/*
 * Could path be opened with flags (O_WRONLY or O_RDWR) plus the O_CREAT
 * the daemon adds? 0, or -1 with the reason in why.
 *
 * -t is run by package scripts and by ExecStartPre, maybe while the daemon
 * runs, so it must leave no trace: no file created (an empty log owned by
 * whoever ran -t could stop the real start from writing it), none
 * truncated. So an existing regular file is opened with flags but without
 * O_CREAT and closed at once: the daemon's own open minus the creation,
 * which meets the same permission bits, ACLs, read-only mounts, immutable
 * files and security modules, and changes neither content nor times. A
 * missing file is created by the daemon in its directory, so that must be a
 * directory we may search and write (faccessat with the effective ids, as
 * open(2) uses them). Anything else (a FIFO, a terminal, /dev/null) gets the
 * faccessat test only: opening a FIFO blocks or fails without a reader.
 */
static int
check_writable(const char *path, int flags, char *why, size_t wl)
{
	struct stat st;
	char *dir, *slash;
	int fd, rc;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			errno = EISDIR;
		} else if (!S_ISREG(st.st_mode)) {
			if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0)
				return 0;
		} else if ((fd = open(path, flags | O_CLOEXEC | O_NOCTTY |
		    O_NONBLOCK)) >= 0) {
			close(fd);
			return 0;
		}
		tb_errf(why, wl, "cannot open %s for writing: %s", path,
		    strerror(errno));
		return -1;
	}
	if (errno != ENOENT) {
		tb_errf(why, wl, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	/* paths are absolute (the options' checks), so there is a '/' */
	if ((dir = strdup(path)) == NULL) {
		tb_errf(why, wl, "out of memory");
		return -1;
	}
	if ((slash = strrchr(dir, '/')) == dir)
		slash++;		/* "/x.log": the directory is "/" */
	*slash = '\0';
	/* ENOENT from stat, not ENOTDIR: dir is missing or a directory */
	rc = faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS);
	if (rc < 0)
		tb_errf(why, wl, "cannot create %s: %s: %s", path, dir,
		    strerror(errno));
	free(dir);
	return rc < 0 ? -1 : 0;
}

int
config_check_files(const struct tb_config *c, char *err, size_t errlen)
{
	static const struct {
		const char *option;
		size_t off;
		int flags;
	} files[] = {
		{ "error_log", offsetof(struct tb_config, error_log), O_WRONLY | O_APPEND },
		{ "access_log", offsetof(struct tb_config, access_log), O_WRONLY | O_APPEND },
		{ "pid_file", offsetof(struct tb_config, pid_file), O_RDWR },
	};
	const char *path;
	char why[512];
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		path = *(char *const *)((const char *)c + files[i].off);
		/* the others are "stderr", "syslog", "off" or none */
		if (path == NULL || path[0] != '/')
			continue;
		if (check_writable(path, files[i].flags, why, sizeof(why)) < 0) {
			config_errorf(c, err, errlen, config_opt_line(c,
			    "DEFAULT", files[i].option), files[i].option, "%s",
			    why);
			return -1;
		}
	}
	return 0;
}

int
config_opt_line(const struct tb_config *c, const char *section,
    const char *option)
{
	const struct opt *o = NULL;
	size_t k;

	for (k = 0; k < SECT_COUNT; k++)
		if (k != SECT_LISTENER && strcmp(config_sect_names[k], section) == 0)
			o = config_opt_find((enum sect_kind)k, option);
	if (o == NULL || c->opt_lines == NULL)
		return 0;
	return c->opt_lines[o - config_opts];
}

void
config_errorf(const struct tb_config *c, char *err, size_t errlen, int line,
    const char *what, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (c->path != NULL)
		snprintf(err, errlen, "%s:%d: %s: %s", c->path, line, what,
		    reason);
	else
		snprintf(err, errlen, "%s: %s", what, reason);
}

struct tb_config *
config_ref(struct tb_config *c)
{
	if (c != NULL)
		__atomic_add_fetch(&c->refcnt, 1, __ATOMIC_RELAXED);
	return c;
}

void
config_unref(struct tb_config *c)
{
	/* acq_rel: the last holder must see every other holder's writes done */
	if (c != NULL && __atomic_sub_fetch(&c->refcnt, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(c);
}

