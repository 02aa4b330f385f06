/*
 * redact.c: credentials out of what tracebridge records (see redact.h).
 *
 * Names are matched on a normalized byte stream read straight from the
 * input, never copied whole: a query key has its %XX escapes decoded, a
 * field name keeps only its letters and digits; both are lowercased.
 * Substring searches run over a fixed window of that stream, so a key or a
 * name of any length costs linear time and no allocation.
 *
 * Case: query parameter names are case-sensitive to most servers (Swift
 * reads temp_url_sig, not TEMP_URL_SIG), but not to all of them (S3
 * implementations differ), and a client may send a name the way the one
 * it means accepts. Redaction must not miss what some server honours, and
 * hiding the value of a look-alike only costs a logged value, so names
 * match case-insensitively, as oslo.utils matches its sanitize keys.
 */
#include <stdlib.h>
#include <string.h>		/* memmem, memrchr: _GNU_SOURCE (Makefile.am) */

#include "fmt.h"
#include "redact.h"

#define NOT_FOUND	((size_t)-1)

/* Query parameters whose whole (decoded, lowercased) name is one of these. */
static const char *const query_names[] = {
	"temp_url_sig", "temp_url_expires", "temp_url_prefix",	/* Swift */
	"signature", "awsaccesskeyid",			/* S3 v2, EC2 */
	"x-amz-signature", "x-amz-credential", "x-amz-security-token", /* v4 */
	"sig", "x-goog-signature",	/* OpenTelemetry's defaults besides */
};

/*
 * oslo.utils strutils._SANITIZE_KEYS (6.0.1 and master alike): a name that
 * contains one of these, in any case, is a secret to every OpenStack
 * service's logging (mask_dict_password). Each is shorter than
 * NEEDLE_MAX (the longest has 23 bytes).
 */
static const char *const oslo_keys[] = {
	"adminpass", "admin_pass", "password", "admin_password",
	"auth_token", "new_pass", "auth_password", "secret_uuid",
	"secret", "sys_pswd", "token", "configdrive",
	"chappassword", "encrypted_key", "private_key",
	"fernetkey", "sslkey", "passphrase",
	"cephclusterfsid", "octaviaheartbeatkey", "rabbitcookie",
	"cephmanilaclientkey", "pacemakerremoteauthkey",
	"designaterndckey", "cephadminkey", "heatauthencryptionkey",
	"cephclientkey", "keystonecredential",
	"barbicansimplecryptokek", "cephrgwkey", "swifthashsuffix",
	"migrationsshkey", "cephmdskey", "cephmonkey",
};

#define N_OSLO	(sizeof(oslo_keys) / sizeof(oslo_keys[0]))

/*
 * Header fields whose value is a credential (Keystone, Swift, HTTP). A
 * field matches when its normalized name starts with one; "more" marks the
 * families where the name goes on (X-Account-Meta-Temp-URL-Key-2).
 */
static const struct {
	const char *name;
	int more;
} field_names[] = {
	{ "X-Auth-Token", 0 }, { "X-Subject-Token", 0 },
	{ "X-Service-Token", 0 }, { "X-Storage-Token", 0 },
	{ "X-Auth-Key", 0 }, { "X-Storage-Pass", 0 },
	{ "Authorization", 0 }, { "Proxy-Authorization", 0 },
	{ "Cookie", 0 },
	{ "X-Account-Meta-Temp-URL-Key", 1 },
	{ "X-Container-Meta-Temp-URL-Key", 1 },
};

/* Longest needle + 1; the window keeps NEEDLE_MAX - 1 bytes of overlap. */
#define NEEDLE_MAX	32
#define WINDOW		512

/* ---- the normalized stream ---- */

enum norm_mode {
	NORM_QUERY = 0,	/* %XX decoded, lowercased */
	NORM_FIELD,	/* letters and digits only, lowercased */
};

struct norm {
	const unsigned char *p;
	size_t n, i;		/* i: raw bytes consumed */
	enum norm_mode mode;
};

static int
is_alnum(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z');
}

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static void
norm_init(struct norm *s, const char *p, size_t n, enum norm_mode mode)
{
	s->p = (const unsigned char *)p;
	s->n = n;
	s->i = 0;
	s->mode = mode;
}

/* The next normalized byte, or -1 at the end. */
static int
norm_next(struct norm *s)
{
	int c, hi, lo;

	while (s->i < s->n) {
		c = s->p[s->i++];
		if (s->mode == NORM_FIELD) {
			if (is_alnum(c))
				return lower(c);
			continue;
		}
		if (c == '%' && s->i + 1 < s->n &&
		    (hi = fmt_hexval(s->p[s->i])) >= 0 &&
		    (lo = fmt_hexval(s->p[s->i + 1])) >= 0) {
			s->i += 2;
			c = hi << 4 | lo;
		}
		return lower(c);
	}
	return -1;
}

/* needle as the stream of mode would read it, into out[NEEDLE_MAX];
 * its length. */
static size_t
needle_norm(const char *needle, enum norm_mode mode, char *out)
{
	size_t k = 0;

	for (; *needle != '\0' && k < NEEDLE_MAX - 1; needle++)
		if (mode == NORM_QUERY || is_alnum((unsigned char)*needle))
			out[k++] = (char)lower((unsigned char)*needle);
	return k;
}

/*
 * 1 if the stream starts with needle (normalized), whole: also ends there.
 * *end: the raw offset just after the last byte matched.
 */
static int
norm_match(struct norm *s, const char *needle, int whole, size_t *end)
{
	char nb[NEEDLE_MAX];
	size_t k, nl;

	nl = needle_norm(needle, s->mode, nb);
	s->i = 0;
	for (k = 0; k < nl; k++)
		if (norm_next(s) != (unsigned char)nb[k])
			return 0;
	*end = s->i;
	return !whole || norm_next(s) == -1;
}

/* The same for an operator's name of any length (query mode). */
static int
norm_equals_long(struct norm *s, const char *name)
{
	s->i = 0;
	for (; *name != '\0'; name++)
		if (norm_next(s) != lower((unsigned char)*name))
			return 0;
	return norm_next(s) == -1;
}

/*
 * Where the earliest-ending occurrence of any of oslo's keys (normalized
 * for the stream's mode) in the stream ends (raw offset after its last
 * byte), or NOT_FOUND. The window slides with NEEDLE_MAX - 1 bytes of
 * overlap, so no occurrence is missed and the work stays linear.
 */
static size_t
norm_find_oslo(struct norm *s)
{
	char buf[WINDOW], nb[N_OSLO][NEEDLE_MAX];
	size_t pos[WINDOW], nl[N_OSLO], have = 0, k, best, at;
	const char *m;
	int c = 0;

	for (k = 0; k < N_OSLO; k++)
		nl[k] = needle_norm(oslo_keys[k], s->mode, nb[k]);
	s->i = 0;
	for (;;) {
		while (have < WINDOW && (c = norm_next(s)) >= 0) {
			buf[have] = (char)c;
			pos[have++] = s->i;
		}
		best = NOT_FOUND;
		for (k = 0; k < N_OSLO; k++) {
			if (nl[k] == 0 || nl[k] > have ||
			    (m = memmem(buf, have, nb[k], nl[k])) == NULL)
				continue;
			at = pos[(size_t)(m - buf) + nl[k] - 1];
			if (at < best)
				best = at;
		}
		if (best != NOT_FOUND || c < 0)
			return best;
		memmove(buf, buf + have - (NEEDLE_MAX - 1), NEEDLE_MAX - 1);
		memmove(pos, pos + have - (NEEDLE_MAX - 1),
		    (NEEDLE_MAX - 1) * sizeof(pos[0]));
		have = NEEDLE_MAX - 1;
	}
}

/* ---- names ---- */

int
redact_query_key(const char *key, size_t n, char *const *extra,
    size_t n_extra)
{
	struct norm s;
	size_t i, end;

	norm_init(&s, key, n, NORM_QUERY);
	for (i = 0; i < sizeof(query_names) / sizeof(query_names[0]); i++)
		if (norm_match(&s, query_names[i], 1, &end))
			return 1;
	for (i = 0; i < n_extra; i++)
		if (extra[i] != NULL && norm_equals_long(&s, extra[i]))
			return 1;
	return norm_find_oslo(&s) != NOT_FOUND;
}

/* After a name that matched up to raw offset p of line l[0..n): the value
 * starts after a colon that only spaces or tabs (and, with more, further
 * name characters) separate from it, or else right at p. */
static size_t
value_start(const char *l, size_t n, size_t p, int more)
{
	size_t q = p;

	if (more)
		while (q < n && (is_alnum((unsigned char)l[q]) || l[q] == '-' ||
		    l[q] == '_'))
			q++;
	while (q < n && (l[q] == ' ' || l[q] == '\t'))
		q++;
	return q < n && l[q] == ':' ? q + 1 : p;
}

/*
 * Where the secret value of field line l[0..n) starts (n: nothing of it
 * is visible), or NOT_FOUND for a field that carries no credential. The
 * name is what comes before the first colon (all of l without one).
 * names_only: only the list of credential fields, not oslo's keys (for a
 * line that may be a request line, whose path often says "token").
 */
static size_t
field_secret_from(const char *l, size_t n, int names_only)
{
	const char *colon = memchr(l, ':', n);
	size_t nl = colon != NULL ? (size_t)(colon - l) : n, best = NOT_FOUND;
	size_t i, end, v;
	struct norm s;

	norm_init(&s, l, nl, NORM_FIELD);
	for (i = 0; i < sizeof(field_names) / sizeof(field_names[0]); i++) {
		if (norm_match(&s, field_names[i].name, 0, &end) &&
		    (v = value_start(l, n, end, field_names[i].more)) < best)
			best = v;
	}
	if (!names_only && (end = norm_find_oslo(&s)) != NOT_FOUND &&
	    (v = value_start(l, n, end, 1)) < best)
		best = v;
	return best;
}

int
redact_field_name(const char *name, size_t n)
{
	return field_secret_from(name, n, 0) != NOT_FOUND;
}

/* ---- targets ---- */

/* Called for each secret range [from, to) of a target, in order. */
typedef void (*range_fn)(void *arg, size_t from, size_t to, const char *repl);

static int
is_query_sep(char c)
{
	return c == '&' || c == ';' || c == '?' || c == '#';
}

/*
 * The secret ranges of target t[0..n), as redact.h says, in order.
 * open_end: t may go on past n (a head sample sees only part of a line),
 * so an authority that reaches n may still have its '@' to come: all of
 * it is a range then.
 */
static void
target_ranges(const char *t, size_t n, int open_end, char *const *extra,
    size_t n_extra, range_fn fn, void *arg)
{
	size_t a = 0, ae, i, q = 0, ps, pe;
	const char *at, *eq;
	int authority = 1;

	if (n >= 2 && t[0] == '/' && t[1] == '/') {
		a = 2;		/* network-path: an authority to some parsers */
	} else if (n > 0 && (t[0] == '/' || t[0] == '*')) {
		authority = 0;	/* origin-form, asterisk-form */
	} else {
		/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986
		 * 3.1), then "://"; anything else starts with its authority */
		i = 0;
		if (n > 0 && is_alnum((unsigned char)t[0]) &&
		    !(t[0] >= '0' && t[0] <= '9'))
			for (i = 1; i < n && (is_alnum((unsigned char)t[i]) ||
			    t[i] == '+' || t[i] == '-' || t[i] == '.'); i++)
				;
		if (i > 0 && i + 2 < n && t[i] == ':' && t[i + 1] == '/' &&
		    t[i + 2] == '/')
			a = i + 3;
	}
	if (authority) {
		/* up to the first '/' only: a '?' or '#' before an '@' is
		 * more likely in a password than a query (RFC 3986 3.2.1
		 * wants them escaped; a careless client does not) */
		for (ae = a; ae < n && t[ae] != '/'; ae++)
			;
		q = a;
		if (open_end && ae == n) {
			if (n > a)
				fn(arg, a, n, REDACT_USERINFO);
			return;
		}
		if ((at = memrchr(t + a, '@', ae - a)) != NULL) {
			if ((size_t)(at - t) > a)
				fn(arg, a, (size_t)(at - t), REDACT_USERINFO);
			q = (size_t)(at - t) + 1;
		}
	}
	for (i = q; i < n && t[i] != '?' && t[i] != '#'; i++)
		;
	for (ps = i + 1; ps <= n; ps = pe + 1) {
		for (pe = ps; pe < n && !is_query_sep(t[pe]); pe++)
			;
		eq = memchr(t + ps, '=', pe - ps);
		if (eq != NULL && (size_t)(eq - t) + 1 < pe &&
		    redact_query_key(t + ps, (size_t)(eq - t) - ps, extra,
		    n_extra))
			fn(arg, (size_t)(eq - t) + 1, pe, REDACT_VALUE);
	}
}

/* snprintf-like output: counts everything, stores what fits. */
struct out {
	char *p;
	size_t cap, len;	/* cap: bytes that may be stored (outlen - 1) */
};

static void
out_put(struct out *o, const char *s, size_t n)
{
	size_t k;

	if (o->len < o->cap) {
		k = o->cap - o->len < n ? o->cap - o->len : n;
		memcpy(o->p + o->len, s, k);
	}
	o->len += n;
}

static void
out_end(struct out *o, size_t outlen)
{
	if (outlen > 0)
		o->p[o->len < o->cap ? o->len : o->cap] = '\0';
}

struct copy {
	struct out o;
	const char *t;
	size_t pos;		/* t copied up to here */
};

static void
copy_range(void *arg, size_t from, size_t to, const char *repl)
{
	struct copy *c = arg;

	out_put(&c->o, c->t + c->pos, from - c->pos);
	out_put(&c->o, repl, strlen(repl));
	c->pos = to;
}

size_t
redact_target(const char *t, size_t n, char *const *extra, size_t n_extra,
    char *out, size_t outlen)
{
	struct copy c = { { out, outlen > 0 ? outlen - 1 : 0, 0 }, t, 0 };

	target_ranges(t, n, 0, extra, n_extra, copy_range, &c);
	out_put(&c.o, t + c.pos, n - c.pos);
	out_end(&c.o, outlen);
	return c.o.len;
}

char *
redact_target_dup(const char *t, size_t n, char *const *extra,
    size_t n_extra)
{
	size_t need = redact_target(t, n, extra, n_extra, NULL, 0);
	char *s;

	if ((s = malloc(need + 1)) == NULL)
		return NULL;
	redact_target(t, n, extra, n_extra, s, need + 1);
	return s;
}

/* ---- the error log's sample ---- */

struct sample {
	size_t off, n;		/* the window: head[off..off+n) */
	size_t base;		/* range_fn offsets are relative to this */
	unsigned char hide[REDACT_SAMPLE_MAX];
};

static void
sample_hide(struct sample *s, size_t from, size_t to)
{
	if (to <= s->off || from >= s->off + s->n)
		return;
	if (from < s->off)
		from = s->off;
	if (to > s->off + s->n)
		to = s->off + s->n;
	memset(s->hide + (from - s->off), 1, to - from);
}

static void
sample_range(void *arg, size_t from, size_t to, const char *repl)
{
	struct sample *s = arg;

	(void)repl;
	sample_hide(s, s->base + from, s->base + to);
}

/* Hide what field_secret_from finds in line l = head + ls, up to ce. */
static int
hide_field(struct sample *s, const char *head, size_t ls, size_t ce,
    int names_only)
{
	size_t v = field_secret_from(head + ls, ce - ls, names_only);

	if (v == NOT_FOUND)
		return 0;
	sample_hide(s, ls + v, ce);
	return 1;
}

/*
 * The request line head[ls..ce): the target's secrets (and the value of a
 * credential field, should the line be one: no request line at all). The
 * target is taken as widely as a malformed line allows: from after the
 * spaces that follow the method to the last space of the line (a space
 * more inside it, or several between the parts, shift nothing into view),
 * or to the end of what there is of a line that is cut (open_end).
 */
static void
hide_request_line(struct sample *s, const char *head, size_t ls, size_t ce,
    int open_end, char *const *extra, size_t n_extra)
{
	const char *sp = memchr(head + ls, ' ', ce - ls), *te = NULL;
	size_t ts = sp != NULL ? (size_t)(sp - head) : ls;

	while (ts < ce && head[ts] == ' ')
		ts++;
	if (!open_end)
		te = memrchr(head + ts, ' ', ce - ts);
	s->base = ts;
	target_ranges(head + ts, te != NULL ? (size_t)(te - head) - ts :
	    ce - ts, open_end, extra, n_extra, sample_range, s);
	hide_field(s, head, ls, ce, 1);
}

size_t
redact_head_sample(const char *head, size_t len, size_t off, size_t n,
    char *const *extra, size_t n_extra, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	struct sample s;
	struct out o = { out, outlen > 0 ? outlen - 1 : 0, 0 };
	size_t ls = 0, le, ce, i, ws;
	const char *nl;
	int request_line = 1, secret = 0;
	char h[2];

	if (off > len)
		off = len;
	if (n > REDACT_SAMPLE_MAX)
		n = REDACT_SAMPLE_MAX;
	if (n > len - off)
		n = len - off;
	s.off = off;
	s.n = n;
	memset(s.hide, 0, sizeof(s.hide));
	/* every line that starts before the window's end, for its state */
	while (ls < off + n) {
		nl = memchr(head + ls, '\n', len - ls);
		le = nl != NULL ? (size_t)(nl - head) : len;
		ce = nl != NULL && le > ls && head[le - 1] == '\r' ? le - 1 : le;
		if (request_line) {
			if (ce > ls) {	/* empty lines before it: RFC 9112 2.2 */
				hide_request_line(&s, head, ls, ce, nl == NULL,
				    extra, n_extra);
				request_line = 0;
				secret = 0;
			}
		} else if (ce == ls) {
			request_line = 1;	/* end of head: a pipelined one */
		} else if (head[ls] == ' ' || head[ls] == '\t') {
			/* obs-fold (RFC 9112 5.2): the field goes on */
			if (secret)
				sample_hide(&s, ls, ce);
			for (ws = ls; ws < ce && (head[ws] == ' ' ||
			    head[ws] == '\t'); ws++)
				;
			secret |= hide_field(&s, head, ws, ce, 0);
		} else {
			secret = hide_field(&s, head, ls, ce, 0);
		}
		if (nl == NULL)
			break;
		ls = le + 1;
	}
	for (i = 0; i < n; i++) {
		if (s.hide[i]) {
			if (i == 0 || !s.hide[i - 1])
				out_put(&o, REDACT_WITHHELD,
				    sizeof(REDACT_WITHHELD) - 1);
			continue;
		}
		h[0] = hex[(unsigned char)head[off + i] >> 4];
		h[1] = hex[(unsigned char)head[off + i] & 15];
		out_put(&o, h, 2);
	}
	out_end(&o, outlen);
	return o.len < o.cap ? o.len : o.cap;
}
