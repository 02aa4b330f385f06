/*
 * config_ini.c: pass one of loading, the INI syntax. libinih gets the file
 * one physical line at a time through our own reader, which counts lines
 * (the installed libinih does not pass line numbers to handlers), records
 * section headers (libinih calls no handler for them, so an empty
 * [listener:x] would otherwise be invisible), and joins indented
 * continuation lines itself (Debian's libinih keeps comments on them and
 * cuts every line at 200 bytes). libinih splits the "name = value" pairs.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

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
 * libinih's inline comment rule: ';' preceded by whitespace starts a
 * comment. Returns the first byte in [s, e) that is in chars or starts a
 * comment, or e. Must match libinih so both agree on every line.
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

/*
 * The ini_reader: hand libinih the next physical line, after classifying
 * it exactly as libinih will (comment, continuation, section, pair) so we
 * know the line number and the section of every handler call. Continuation
 * lines are joined here and passed on as blank lines. Returns NULL at the
 * end or after the first error, which stops libinih.
 */
static char *
reader(char *str, int num, void *stream)
{
	struct config_loader *ld = stream;
	const char *l, *nl, *s, *e, *x;
	size_t len;

	if (ld->failed || ld->p >= ld->end)
		return NULL;
	l = ld->p;
	nl = memchr(l, '\n', (size_t)(ld->end - l));
	len = nl != NULL ? (size_t)(nl - l) + 1 : (size_t)(ld->end - l);
	ld->p += len;
	ld->line++;
	if (memchr(l, '\0', len) != NULL) {
		config_ld_err(ld, ld->line, "syntax", "NUL byte in line");
		return NULL;
	}
	s = l;
	e = l + len;
	if (ld->line == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	config_trim(&s, &e);
	if (s == e || *s == ';' || *s == '#')
		goto blank;
	if (ld->in_pair && s > l) {
		/*
		 * libinih (like configparser) would make an indented
		 * "[section]" part of the value above: refuse the surprise.
		 */
		if (*s == '[' && e[-1] == ']') {
			config_ld_err(ld, ld->line, "syntax", "section headers must "
			    "not be indented");
			return NULL;
		}
		on_continuation(ld, s, e);
		if (ld->failed)
			return NULL;
		goto blank;
	}
	if (*s == '[') {
		x = find_chars_or_comment(s + 1, e, "]");
		if (x == e || *x != ']') {
			config_ld_err(ld, ld->line, "syntax", "expected ']'");
			return NULL;
		}
		on_section(ld, s + 1, (size_t)(x - s - 1));
		ld->in_pair = 0;
	} else {
		x = find_chars_or_comment(s, e, "=:");
		if (x == e || (*x != '=' && *x != ':')) {
			config_ld_err(ld, ld->line, "syntax", "expected 'name = value'"
			    " or '[section]'");
			return NULL;
		}
		ld->in_pair = 1;
	}
	if (ld->failed)
		return NULL;
	if (num < 2 || len > (size_t)num - 1) {
		config_ld_err(ld, ld->line, "syntax", "line too long (at most %d "
		    "bytes; split lists over indented lines)", num - 3);
		return NULL;
	}
	memcpy(str, l, len);
	str[len] = '\0';
	return str;
blank:
	if (num < 2)
		return NULL;
	str[0] = '\n';
	str[1] = '\0';
	return str;
}

/* The ini_handler: remember name = value; pass two interprets it. */
static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct config_loader *ld = user;
	struct raw_opt *ro;

	(void)section;	/* libinih truncates it at 50 bytes: ours is whole */
	if (ld->failed)
		return 0;
	if (*name == '\0') {
		config_ld_err(ld, ld->line, "syntax", "missing option name");
		return 0;
	}
	if (tb_grow(&ld->ropts, &ld->cap_ropts, ld->n_ropts + 1,
	    sizeof(*ld->ropts)) < 0)
		goto oom;
	ro = &ld->ropts[ld->n_ropts];
	ro->sect = ld->n_sects - 1;
	ro->line = ld->line;
	ro->name = strdup(name);
	ro->value = strdup(value);
	ro->vlen = strlen(value);
	ro->vcap = ro->vlen + 1;
	ld->n_ropts++;
	if (ro->name == NULL || ro->value == NULL)
		goto oom;
	return 1;
oom:
	config_ld_err(ld, ld->line, "config", "out of memory");
	return 0;
}

void
config_ini_read(struct config_loader *ld, const char *buf, size_t len)
{
	int rc;

	ld->p = buf;
	ld->end = buf + len;
	rc = ini_parse_stream(reader, ld, handler, ld);
	if (!ld->failed && rc != 0)	/* libinih saw what we did not */
		config_ld_err(ld, rc > 0 ? rc : 0, "syntax", "cannot parse line");
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

