/*
 * config_ini.c: pass one of loading, the INI syntax, the dialect of
 * configparser and oslo.config so operators can paste from their services'
 * files: "[section]", "name = value" or "name: value", ';' and '#' comment
 * lines, " ;" inline comments, indented continuation lines (lists), a BOM.
 * We own this lexer rather than use libinih: Debian's build of libinih
 * passes no line numbers and calls nothing for a section header, cuts
 * section names at 50 bytes and lines at 200, and keeps comments on
 * continuation lines, so exact "FILE:LINE: option" errors needed a reader
 * that classified every line first, and two lexers that had to agree.
 * Pass two (config.c) gives the pairs their meaning.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "util.h"

/* --------------------------------------------------------------- loading */

/* Record the first error as "FILE:LINE: what: reason"; later ones are dropped. */
void
config_ld_err(struct config_loader *ld, int line, const char *what, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	if (ld->failed)
		return;
	ld->failed = 1;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (ld->errlen > 0)
		snprintf(ld->err, ld->errlen, "%s:%d: %s: %s", ld->fname, line,
		    what, reason);
}

int
config_add_sect(struct config_loader *ld, enum sect_kind kind, const char *name, int line)
{
	struct raw_sect *ns;

	ns = realloc(ld->sects, (ld->n_sects + 1) * sizeof(*ns));
	if (ns == NULL)
		return -1;
	ld->sects = ns;
	ns += ld->n_sects;
	memset(ns, 0, sizeof(*ns));
	ns->kind = kind;
	ns->line = line;
	if ((ns->name = strdup(name)) == NULL)
		return -1;
	if (kind == SECT_LISTENER)
		ns->listener = ld->n_listeners++;
	ld->n_sects++;
	return 0;
}

/* A "[...]" line: name is between the brackets, untrimmed, len bytes. */
static void
on_section(struct config_loader *ld, const char *s, size_t len)
{
	char name[256], pb[64];
	const char *e = s + len;
	size_t i, k;

	config_trim(&s, &e);
	if ((size_t)(e - s) >= sizeof(name)) {
		config_ld_err(ld, ld->line, "section", "name too long");
		return;
	}
	memcpy(name, s, (size_t)(e - s));
	name[e - s] = '\0';
	config_printable(name, pb, sizeof(pb));
	if (memchr(s, '\0', (size_t)(e - s)) != NULL) {
		config_ld_err(ld, ld->line, "section", "invalid name");
		return;
	}
	for (k = 0; k < SECT_COUNT; k++)
		if (k != SECT_LISTENER && strcmp(name, config_sect_names[k]) == 0)
			break;
	if (k < SECT_COUNT) {
		/* [DEFAULT] may follow options written before any section */
		if (ld->singleton_line[k] != 0 && k != SECT_DEFAULT) {
			config_ld_err(ld, ld->line, name, "duplicate section (first "
			    "at line %d)", ld->singleton_line[k]);
			return;
		}
		ld->singleton_line[k] = ld->line;
	} else if (strncmp(name, "listener:", 9) == 0) {
		k = SECT_LISTENER;
		for (i = 9; name[i] != '\0'; i++)
			if (!isalnum((unsigned char)name[i]) &&
			    name[i] != '_' && name[i] != '.')
				break;
		if (i == 9 || name[i] != '\0' || i > 9 + 64) {
			config_ld_err(ld, ld->line, pb, "invalid listener name "
			    "(expected 1 to 64 of [A-Za-z0-9_.])");
			return;
		}
		for (i = 0; i < ld->n_sects; i++)
			if (ld->sects[i].kind == SECT_LISTENER &&
			    strcmp(ld->sects[i].name, name) == 0) {
				config_ld_err(ld, ld->line, name, "duplicate section "
				    "(first at line %d)", ld->sects[i].line);
				return;
			}
		if (ld->n_listeners >= CONFIG_MAX_LISTENERS) {
			config_ld_err(ld, ld->line, name, "too many listeners "
			    "(at most %d)", CONFIG_MAX_LISTENERS);
			return;
		}
	} else {
		config_ld_err(ld, ld->line, pb, "unknown section");
		return;
	}
	if (config_add_sect(ld, (enum sect_kind)k, name, ld->line) < 0)
		config_ld_err(ld, ld->line, "section", "out of memory");
}

/*
 * The inline comment rule (configparser's and oslo.config's, which
 * operators' service files follow): ';' preceded by whitespace starts a
 * comment. Returns the first byte in [s, e) that is in chars or starts a
 * comment, or e.
 */
static const char *
find_chars_or_comment(const char *s, const char *e, const char *chars)
{
	int was_space = 0;

	for (; s < e; s++) {
		if (chars != NULL && strchr(chars, *s) != NULL)
			break;
		if (was_space && *s == ';')
			break;
		was_space = isspace((unsigned char)*s);
	}
	return s;
}

/* Append a continuation line to the last option's value. */
static void
on_continuation(struct config_loader *ld, const char *s, const char *e)
{
	struct raw_opt *ro = &ld->ropts[ld->n_ropts - 1];
	size_t nl, cap;
	char *nv;

	e = find_chars_or_comment(s, e, NULL);
	config_trim(&s, &e);
	nl = (size_t)(e - s);
	/* doubling: a file of many short continuation lines stays linear */
	if (ro->vlen + nl + 2 > ro->vcap) {
		cap = ro->vcap * 2 > ro->vlen + nl + 2 ? ro->vcap * 2 :
		    ro->vlen + nl + 2;
		if ((nv = realloc(ro->value, cap)) == NULL) {
			config_ld_err(ld, ld->line, "config", "out of memory");
			return;
		}
		ro->value = nv;
		ro->vcap = cap;
	}
	ro->value[ro->vlen] = '\n';
	memcpy(ro->value + ro->vlen + 1, s, nl);
	ro->vlen += nl + 1;
	ro->value[ro->vlen] = '\0';
}

/* "name = value" (or ':'), sep at the separator: remember it for pass two. */
static void
on_pair(struct config_loader *ld, const char *s, const char *sep, const char *e)
{
	const char *ne = sep, *v = sep + 1, *ve;
	struct raw_opt *ro;

	config_trim(&s, &ne);
	if (s == ne) {
		config_ld_err(ld, ld->line, "syntax", "missing option name");
		return;
	}
	ve = find_chars_or_comment(v, e, NULL);
	config_trim(&v, &ve);
	if (tb_grow(&ld->ropts, &ld->cap_ropts, ld->n_ropts + 1,
	    sizeof(*ld->ropts)) < 0)
		goto oom;
	ro = &ld->ropts[ld->n_ropts++];
	memset(ro, 0, sizeof(*ro));
	ro->sect = ld->n_sects - 1;
	ro->line = ld->line;
	ro->name = strndup(s, (size_t)(ne - s));
	ro->value = strndup(v, (size_t)(ve - v));
	ro->vlen = (size_t)(ve - v);
	ro->vcap = ro->vlen + 1;
	if (ro->name == NULL || ro->value == NULL)
		goto oom;
	return;
oom:
	config_ld_err(ld, ld->line, "config", "out of memory");
}

/*
 * One physical line: blank or comment, continuation of the option above
 * (indented), "[section]" or "name = value". Lines have no length limit
 * but the file's (CONFIG_MAX_FILE).
 */
static void
on_line(struct config_loader *ld, const char *l, const char *e)
{
	const char *s = l, *x;

	if (memchr(l, '\0', (size_t)(e - l)) != NULL) {
		config_ld_err(ld, ld->line, "syntax", "NUL byte in line");
		return;
	}
	if (ld->line == 1 && e - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		l = s += 3;
	config_trim(&s, &e);
	if (s == e || *s == ';' || *s == '#')
		return;
	if (ld->in_pair && s > l) {
		/* configparser would make an indented "[section]" part of the
		 * value above: refuse the surprise */
		if (*s == '[' && e[-1] == ']') {
			config_ld_err(ld, ld->line, "syntax", "section headers must "
			    "not be indented");
			return;
		}
		on_continuation(ld, s, e);
		return;
	}
	if (*s == '[') {
		x = find_chars_or_comment(s + 1, e, "]");
		if (x == e || *x != ']') {
			config_ld_err(ld, ld->line, "syntax", "expected ']'");
			return;
		}
		on_section(ld, s + 1, (size_t)(x - s - 1));
		ld->in_pair = 0;
		return;
	}
	x = find_chars_or_comment(s, e, "=:");
	if (x == e || (*x != '=' && *x != ':')) {
		config_ld_err(ld, ld->line, "syntax", "expected 'name = value'"
		    " or '[section]'");
		return;
	}
	on_pair(ld, s, x, e);
	ld->in_pair = 1;
}

void
config_ini_read(struct config_loader *ld, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len, *nl;

	while (p < end && !ld->failed) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		ld->line++;
		on_line(ld, p, nl);
		p = nl < end ? nl + 1 : end;
	}
}

void
config_loader_free(struct config_loader *ld)
{
	size_t i;

	for (i = 0; i < ld->n_sects; i++)
		free(ld->sects[i].name);
	free(ld->sects);
	for (i = 0; i < ld->n_ropts; i++) {
		free(ld->ropts[i].name);
		free(ld->ropts[i].value);
	}
	free(ld->ropts);
}

