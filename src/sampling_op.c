/*
 * sampling_op.c: operation names (layer 1 of sampling.h). A request's
 * METHOD + request-target becomes "METHOD /template": the operator's rules
 * first ("prefix:" and "regex:" lines, from the file or a policy), else the
 * built-in OpenStack rules (ids and names folded into {id}, {name}). Pure:
 * no I/O, no globals; the policies, counters and spans are keyed by it.
 */
#include <ctype.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sampling.h"
#include "util.h"

/* ================================================================== */
/* Operation names                                                     */
/* ================================================================== */

#define RULE_NAME_MAX	96
#define RULE_MAX	256
#define OPNAME_MAX_SEGS	32
#define RULE_PATH_MAX	1024	/* regexes see at most this much of a path */

enum rule_kind {
	RULE_PREFIX = 0,
	RULE_REGEX,
};

struct sampling_rule {
	enum rule_kind kind;
	char *prefix;		/* RULE_PREFIX */
	size_t prefix_len;
	regex_t re;		/* RULE_REGEX */
	char *name;
	size_t name_len;
};

struct sampling_rules {
	struct sampling_rule *r;
	size_t n;
};

void
sampling_rules_free(struct sampling_rules *rs)
{
	size_t i;

	if (rs == NULL)
		return;
	for (i = 0; i < rs->n; i++) {
		if (rs->r[i].kind == RULE_REGEX)
			regfree(&rs->r[i].re);
		free(rs->r[i].prefix);
		free(rs->r[i].name);
	}
	free(rs->r);
	free(rs);
}

#define RULE_REGEX_MAX		256	/* bytes of pattern */
#define RULE_REGEX_WEIGHT	2048	/* atoms after expanding repetitions */
#define RULE_REGEX_DEPTH	32	/* nested groups */

/*
 * Refuse what would make regcomp(3) or regexec(3) blow up, found by
 * fuzz_policy each time:
 * - glibc copies the operand of every repetition ("x+" becomes "xx*",
 *   "x{3}" three x), so stacked repetitions ("a+++", "((a+)+)+") and
 *   intervals multiply the compiled size. We weigh the pattern as glibc
 *   will expand it (an atom 1, a group the sum of its parts and at least 1,
 *   a repetition multiplies its operand by 2 or by the interval's bound + 1)
 *   and refuse heavy ones; operator rules are far below the limit.
 * - '+' or an interval on a part that can match the empty string ("()+",
 *   "(a|)+", "(x*)+", "(a?){2}") makes glibc's epsilon closures explode
 *   even when small ("(||||)+++" takes minutes): refused, "*" says the
 *   same thing. So parts carry whether they can match empty.
 * - back-references make matching exponential.
 * NULL if fine, else the reason.
 */
struct re_level {
	double sum;		/* weight of the group so far */
	int seq_empty;		/* the operands before the last can all match empty */
	int grp_empty;		/* an earlier alternative can match empty */
};

const char *
sampling_regex_unsafe(const char *p, size_t n)
{
	static const char heavy[] = "regex too complex (stacked repetitions or "
	    "large intervals)";
	struct re_level lv[RULE_REGEX_DEPTH + 1];
	double last = 0, total = 0;
	int d = 0, last_empty = 1;	/* no operand yet: empty */
	size_t i;

	if (n > RULE_REGEX_MAX)
		return "regex longer than 256 bytes";
	lv[0] = (struct re_level){ 0, 1, 0 };
	for (i = 0; i < n; i++) {
		char c = p[i];
		double f = 0;
		int empty = 0;	/* of a new atom */

		if (c == '\\') {
			if (i + 1 < n && p[i + 1] >= '0' && p[i + 1] <= '9')
				return "back-references are not allowed";
			/* word boundaries match the empty string */
			empty = i + 1 < n && strchr("bB<>`'", p[i + 1]) != NULL;
			i++;
		} else if (c == '[') {	/* bracket expression: one atom */
			i++;
			if (i < n && p[i] == '^')
				i++;
			if (i < n && p[i] == ']')
				i++;
			while (i < n && p[i] != ']') {
				if (p[i] == '[' && i + 1 < n && strchr(":.=", p[i + 1])) {
					char end = p[i + 1];

					for (i += 2; i + 1 < n && !(p[i] == end &&
					    p[i + 1] == ']'); i++)
						;
					i++;
				}
				i++;
			}
		} else if (c == '(') {
			if (d == RULE_REGEX_DEPTH)
				return "groups nested too deep";
			lv[d].seq_empty &= last_empty;
			lv[++d] = (struct re_level){ 0, 1, 0 };
			last = 0;
			last_empty = 1;
			continue;
		} else if (c == ')' && d > 0) {
			/* an empty group is still a node glibc copies */
			last = lv[d].sum > 1 ? lv[d].sum : 1;
			last_empty = lv[d].grp_empty || (lv[d].seq_empty && last_empty);
			d--;
			lv[d].sum += last;
			continue;
		} else if (c == '|') {
			lv[d].grp_empty |= lv[d].seq_empty && last_empty;
			lv[d].seq_empty = 1;
			last = 0;
			last_empty = 1;
			continue;
		} else if (c == '*' || c == '?') {
			f = 2;
			last_empty = 1;
		} else if (c == '+' || c == '{') {
			if (last_empty)
				return "regex too complex ('+' or an interval on a part "
				    "that can match empty: write '*')";
			f = 2;
		} else if (c == '^' || c == '$') {
			empty = 1;
		}
		if (c == '{') {
			double m = 0, max = 0, min = -1;
			size_t j;

			for (j = i + 1; j < n && p[j] != '}'; j++) {
				if (p[j] >= '0' && p[j] <= '9') {
					if (m < 1e6)
						m = m * 10 + (p[j] - '0');
				} else if (p[j] == ',') {
					max = m > max ? m : max;
					min = min < 0 ? m : min;
					m = 0;
				} else {
					break;
				}
			}
			max = m > max ? m : max;
			if ((min < 0 ? m : min) == 0)
				last_empty = 1;		/* "{0,n}" */
			f = max + 1;
			i = j;
		}
		if (f > 0) {
			lv[d].sum += last * (f - 1);
			last *= f;
		} else {
			lv[d].seq_empty &= last_empty;
			last = 1;
			last_empty = empty;
			lv[d].sum += 1;
		}
		if (lv[d].sum > RULE_REGEX_WEIGHT)
			return heavy;
	}
	while (d >= 0)
		total += lv[d--].sum;
	if (total > RULE_REGEX_WEIGHT)
		return heavy;
	return NULL;
}

/*
 * One line "prefix:<p> <name>" or "regex:<ere> <name>" into *r. The name is
 * the last whitespace-separated word, so a regex may hold spaces. 0/-1.
 */
static int
rule_parse(const char *line, size_t no, struct sampling_rule *r, char *err,
    size_t errlen)
{
	const char *s = line, *e, *ns, *pat, *why;
	size_t plen, nlen;
	char *tmp = NULL;
	int rc;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	    e[-1] == '\n'))
		e--;
	ns = e;
	while (ns > s && ns[-1] != ' ' && ns[-1] != '\t')
		ns--;
	nlen = (size_t)(e - ns);
	if (strncmp(s, "prefix:", 7) == 0) {
		r->kind = RULE_PREFIX;
		pat = s + 7;
	} else if (strncmp(s, "regex:", 6) == 0) {
		r->kind = RULE_REGEX;
		pat = s + 6;
	} else {
		tb_errf(err, errlen, "rule %zu: expected 'prefix:<path> <name>' or "
		    "'regex:<ERE> <name>'", no);
		return -1;
	}
	if (ns <= pat) {
		tb_errf(err, errlen, "rule %zu: expected a pattern and an "
		    "operation name", no);
		return -1;
	}
	if (nlen == 0 || nlen > RULE_NAME_MAX) {
		tb_errf(err, errlen, "rule %zu: name must be 1 to %d bytes", no,
		    RULE_NAME_MAX);
		return -1;
	}
	e = ns;
	while (e > pat && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	plen = (size_t)(e - pat);
	if (plen == 0) {
		tb_errf(err, errlen, "rule %zu: expected a pattern and an "
		    "operation name", no);
		return -1;
	}
	r->name = strndup(ns, nlen);
	tmp = strndup(pat, plen);
	if (r->name == NULL || tmp == NULL) {
		tb_errf(err, errlen, "rule %zu: out of memory", no);
		goto fail;
	}
	r->name_len = nlen;
	if (r->kind == RULE_PREFIX) {
		if (tmp[0] != '/') {
			tb_errf(err, errlen, "rule %zu: a path prefix starts with "
			    "'/'", no);
			goto fail;
		}
		r->prefix = tmp;	/* ownership passes to the rule */
		r->prefix_len = plen;
		return 0;
	}
	if ((why = sampling_regex_unsafe(tmp, plen)) != NULL) {
		tb_errf(err, errlen, "rule %zu: %s", no, why);
		goto fail;
	}
	rc = regcomp(&r->re, tmp, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char msg[128];

		regerror(rc, &r->re, msg, sizeof(msg));
		tb_errf(err, errlen, "rule %zu: invalid regex: %s", no, msg);
		goto fail;
	}
	free(tmp);
	return 0;
fail:
	free(tmp);
	free(r->name);
	r->name = NULL;
	return -1;
}

int
sampling_rules_parse(const char *const *lines, size_t n,
    struct sampling_rules **out, char *err, size_t errlen)
{
	struct sampling_rules *rs;
	size_t i;

	*out = NULL;
	rs = calloc(1, sizeof(*rs));
	if (rs == NULL || (n > 0 && (rs->r = calloc(n, sizeof(*rs->r))) == NULL)) {
		tb_errf(err, errlen, "out of memory");
		goto fail;
	}
	if (n > RULE_MAX) {
		tb_errf(err, errlen, "more than %d operation rules", RULE_MAX);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		const char *l = lines[i];

		while (*l == ' ' || *l == '\t')
			l++;
		if (*l == '\0' || *l == '#' || *l == '\r' || *l == '\n')
			continue;
		if (rule_parse(l, i + 1, &rs->r[rs->n], err, errlen) == -1)
			goto fail;
		rs->n++;
	}
	*out = rs;
	return 0;
fail:
	sampling_rules_free(rs);
	return -1;
}

int
sampling_rules_parse_text(const char *text, struct sampling_rules **out,
    char *err, size_t errlen)
{
	char *copy = NULL, *p, **lines = NULL;
	size_t n = 0, cap = 0;
	int rc = -1;

	*out = NULL;
	if (text == NULL)
		return sampling_rules_parse(NULL, 0, out, err, errlen);
	copy = strdup(text);
	if (copy == NULL)
		goto nomem;
	for (p = copy; p != NULL; ) {
		char *nl = strchr(p, '\n');

		if (nl != NULL)
			*nl = '\0';
		if (tb_grow(&lines, &cap, n + 1, sizeof(*lines)) < 0)
			goto nomem;
		lines[n++] = p;
		p = nl != NULL ? nl + 1 : NULL;
	}
	rc = sampling_rules_parse((const char *const *)lines, n, out, err, errlen);
	goto done;
nomem:
	tb_errf(err, errlen, "out of memory");
done:
	free(lines);
	free(copy);
	return rc;
}

static int
is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/* RFC 9110 5.6.2 tchar */
static int
is_tchar(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* 1 if s[0..n) is an identifier to template: UUID, long hex, or number. */
static int
seg_is_id(const char *s, size_t n)
{
	size_t i;
	int digits = 1, hex = 1;

	if (n == 0)
		return 0;
	if (n == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-') {
		for (i = 0; i < 36; i++)
			if (i != 8 && i != 13 && i != 18 && i != 23 &&
			    !is_hex((unsigned char)s[i]))
				return 0;
		return 1;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < '0' || c > '9')
			digits = 0;
		if (!is_hex(c))
			hex = 0;
	}
	return digits || (hex && n >= 16);
}

/*
 * Length of a ".ext" suffix worth keeping after an id ("x.json"): a dot,
 * then 1 to 8 letters or digits starting with a letter; else 0.
 */
static size_t
seg_ext_len(const char *s, size_t n)
{
	size_t i, dot;

	for (dot = n; dot > 0; dot--)
		if (s[dot - 1] == '.')
			break;
	if (dot == 0 || n - dot == 0 || n - dot > 8 || dot - 1 == 0)
		return 0;
	if (!isalpha((unsigned char)s[dot]))
		return 0;
	for (i = dot; i < n; i++)
		if (!isalnum((unsigned char)s[i]))
			return 0;
	return n - dot + 1;
}

struct namebuf {
	char *out;
	size_t cap;		/* usable bytes, NUL excluded */
	size_t len;
	int full;
};

/* Append, reserving room for a final "/..."; on overflow mark full. */
static int
nb_put(struct namebuf *b, const char *s, size_t n, int sanitize)
{
	size_t i;

	if (b->full || b->len + n + 4 > b->cap) {
		b->full = 1;
		return -1;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		b->out[b->len++] = (sanitize && (c < 0x21 || c > 0x7e)) ? '_' : (char)c;
	}
	return 0;
}

static int
nb_puts(struct namebuf *b, const char *s)
{
	return nb_put(b, s, strlen(s), 0);
}

/* Append one templated segment (without its leading '/'). */
static void
put_segment(struct namebuf *b, const char *s, size_t n)
{
	size_t ext;

	if (n > 5 && memcmp(s, "AUTH_", 5) == 0) {
		nb_puts(b, "AUTH_{id}");
		return;
	}
	if (seg_is_id(s, n)) {
		nb_puts(b, "{id}");
		return;
	}
	ext = seg_ext_len(s, n);
	if (ext > 0 && seg_is_id(s, n - ext)) {
		nb_puts(b, "{id}");
		nb_put(b, s + n - ext, ext, 1);
		return;
	}
	nb_put(b, s, n, 1);
}

static int
rules_match(const struct sampling_rules *rules, const char *path, size_t plen)
{
	char buf[RULE_PATH_MAX];
	int have_buf = 0;
	size_t i;

	for (i = 0; i < rules->n; i++) {
		const struct sampling_rule *r = &rules->r[i];

		if (r->kind == RULE_PREFIX) {
			if (plen >= r->prefix_len &&
			    memcmp(path, r->prefix, r->prefix_len) == 0)
				return (int)i;
			continue;
		}
		if (!have_buf) {
			size_t n = plen < sizeof(buf) - 1 ? plen : sizeof(buf) - 1;

			memcpy(buf, path, n);
			buf[n] = '\0';
			have_buf = 1;
		}
		if (regexec(&r->re, buf, 0, NULL, 0) == 0)
			return (int)i;
	}
	return -1;
}

int
sampling_operation_name(const char *method, size_t mlen, const char *target,
    size_t tlen, const struct sampling_rules *rules, char *out, size_t outlen)
{
	struct namebuf b = { out, outlen - 1, 0, 0 };
	const char *path, *end, *q, *segs[3];
	size_t i, nseg = 0, seglen[3];
	int ok = mlen >= 1 && mlen <= 16, r, more = 0;

	if (out == NULL || outlen < 16)
		return -1;
	b.cap = outlen - 1;
	for (i = 0; ok && i < mlen; i++)
		ok = is_tchar((unsigned char)method[i]);
	if (ok)
		nb_put(&b, method, mlen, 0);
	else
		nb_puts(&b, "OTHER");
	nb_puts(&b, " ");

	if (target == NULL)
		tlen = 0;
	path = target;
	end = target + tlen;
	for (q = path; q < end; q++)
		if (*q == '?' || *q == '#')
			break;
	end = q;
	if (end - path == 1 && path[0] == '*') {
		nb_puts(&b, "*");
		goto done;
	}
	/* absolute-form (RFC 9112 3.2.2): skip scheme and authority */
	if ((size_t)(end - path) >= 7 && (strncasecmp(path, "http://", 7) == 0 ||
	    ((size_t)(end - path) >= 8 && strncasecmp(path, "https://", 8) == 0))) {
		path = (const char *)memchr(path, ':', (size_t)(end - path)) + 3;
		while (path < end && *path != '/')
			path++;
	}
	if (path == end) {
		nb_puts(&b, "/");
		goto done;
	}

	if (rules != NULL && rules->n > 0 &&
	    (r = rules_match(rules, path, (size_t)(end - path))) >= 0) {
		nb_put(&b, rules->r[r].name, rules->r[r].name_len, 1);
		goto done;
	}

	/* Walk "/seg/seg/..."; text before the first '/' is a segment too. */
	q = path;
	if (*q == '/')
		q++;
	else
		path = NULL;	/* no leading slash to print */
	for (;;) {
		const char *s = q, *e = q;

		while (e < end && *e != '/')
			e++;
		if (path != NULL)
			nb_puts(&b, "/");
		path = q;	/* from now on every segment gets its '/' */
		if (nseg < 3) {
			segs[nseg] = s;
			seglen[nseg] = (size_t)(e - s);
		}
		/* Swift: /v1/AUTH_<acct>/<container>/<object with slashes> */
		if (nseg == 2 && seglen[0] == 2 && memcmp(segs[0], "v1", 2) == 0 &&
		    seglen[1] > 5 && memcmp(segs[1], "AUTH_", 5) == 0) {
			if (e > s)
				nb_puts(&b, "{container}");
			if (e < end) {
				nb_puts(&b, "/");
				if (e + 1 < end)
					nb_puts(&b, "{object}");
			}
			goto done;
		}
		put_segment(&b, s, (size_t)(e - s));
		nseg++;
		if (e >= end)
			break;
		if (nseg >= OPNAME_MAX_SEGS) {
			more = 1;
			break;
		}
		q = e + 1;
		if (q == end) {		/* trailing slash */
			nb_puts(&b, "/");
			break;
		}
	}
done:
	if (b.full) {
		/* cut back to the last segment boundary that fits */
		while (b.len > 0 && b.out[b.len - 1] != '/' && b.out[b.len - 1] != ' ')
			b.len--;
		if (b.len > 0 && b.out[b.len - 1] == '/')
			b.len--;
		memcpy(b.out + b.len, "/...", 4);
		b.len += 4;
	} else if (more) {
		memcpy(b.out + b.len, "/...", 4);	/* room was reserved */
		b.len += 4;
	}
	out[b.len] = '\0';
	return (int)b.len;
}
