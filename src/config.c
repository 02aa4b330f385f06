/*
 * config.c: the INI file -> struct tb_config (see config.h).
 *
 * Loading runs in two passes. Pass one hands the file to libinih one physical
 * line at a time through our own reader, which counts lines (the installed
 * libinih does not pass line numbers to handlers), records section headers
 * (libinih calls no handler for them, so an empty [listener:x] would otherwise
 * be invisible), and joins indented continuation lines itself (so multi-line
 * values work whatever libinih's build options, and long continuation lines
 * are not cut at libinih's line buffer). Pass two applies each name = value
 * through the option table below, in file order. Only the first error is
 * reported: the first syntax or section error if there is one (pass one),
 * else the first bad option in the file.
 *
 * Every option is one line of that table: section, name, type, default (as
 * text, parsed by the same code as the file, so a default can never disagree
 * with what the parser accepts), where it lives, range, flags, validator.
 *
 * Messages are "FILE:LINE: option: reason". They never quote a value: the
 * line number says where, the reason says what was expected, and values may
 * be secrets (hmac_keys, a password in connection_string).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <netdb.h>
#include <pwd.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "h1.h"
#include "sampling.h"
#include "redis.h"

enum sect_kind {
	SECT_DEFAULT = 0,	/* [DEFAULT] and the options before any section */
	SECT_ADMIN,
	SECT_LISTENER,
	SECT_PROFILER,
	SECT_TRACING,
	SECT_SAMPLING,
	SECT_COUNT
};

static const char *const sect_names[SECT_COUNT] = {
	"DEFAULT", "admin", "listener", "profiler", "tracing", "sampling"
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
	OT_FORMATS,	/* OT_LIST whose members are trace format names */
	OT_RULES	/* OT_LIST of sampling operation rules, one per line */
};

#define OPT_AUTO	0x01	/* OT_INT: "auto" = number of cores */
#define OPT_OFF		0x02	/* OT_ADDR: "off" disables */
#define OPT_SECONDS	0x04	/* OT_UINT: optional "s" suffix */

#define NOMAX	1e15		/* "no upper bound" in the range columns */

/*
 * Validator run after the value parsed: 0, or -1 with the reason in why.
 * field points at the stored value (for lists, at the char **).
 */
typedef int (*opt_check_fn)(void *field, char *why, size_t wl);

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
	opt_check_fn check;
};

static int chk_error_log(void *, char *, size_t);
static int chk_access_log(void *, char *, size_t);
static int chk_abs_path(void *, char *, size_t);
static int chk_user(void *, char *, size_t);
static int chk_group(void *, char *, size_t);
static int chk_connection_string(void *, char *, size_t);
static int chk_ident(void *, char *, size_t);
static int chk_nonempty(void *, char *, size_t);
static int chk_http_url(void *, char *, size_t);
static int chk_tls_version(void *, char *, size_t);
static int chk_header_name(void *, char *, size_t);
static int chk_cert_pairs(void *, char *, size_t);

static const char *const log_levels[] = { "error", "warning", "info", "debug", NULL };

static const char *const verify_modes[] = { "none", "optional", "require", NULL };

static const char *const splice_modes[] = { "off", "auto", NULL };

/* Mozilla's "intermediate" TLS 1.2 suites without DHE (no DH parameters to
 * manage): forward secret AEAD only. */
#define TLS_CIPHERS_DEFAULT "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_SUITES_DEFAULT "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:" \
	"TLS_CHACHA20_POLY1305_SHA256"

static const char *const trace_formats[] = {
	"osprofiler", "w3c", "b3", "jaeger", "xray", "datadog", "gcp", "ot", NULL
};

#define C(f)	offsetof(struct tb_config, f)
#define L(f)	offsetof(struct tb_listener_conf, f)

static const struct opt opts[] = {
	/* sect          name                        type         default           off                                  off_n                      min    max      flags        names       check */
	{ SECT_DEFAULT,  "workers",                  OT_INT,      "auto",           C(workers),                          0,                         1,     256,     OPT_AUTO,    NULL,       NULL },
	{ SECT_DEFAULT,  "log_level",                OT_ENUM,     "info",           C(log_level),                        0,                         0,     0,       0,           log_levels, NULL },
	{ SECT_DEFAULT,  "error_log",                OT_STR,      "stderr",         C(error_log),                        0,                         0,     0,       0,           NULL,       chk_error_log },
	{ SECT_DEFAULT,  "access_log",               OT_STR,      "off",            C(access_log),                       0,                         0,     0,       0,           NULL,       chk_access_log },
	{ SECT_DEFAULT,  "pid_file",                 OT_STR,      "",               C(pid_file),                         0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_DEFAULT,  "user",                     OT_STR,      "",               C(user),                             0,                         0,     0,       0,           NULL,       chk_user },
	{ SECT_DEFAULT,  "group",                    OT_STR,      "",               C(group),                            0,                         0,     0,       0,           NULL,       chk_group },
	{ SECT_DEFAULT,  "max_connections",          OT_UINT,     "10000",          C(max_connections),                  0,                         1,     1000000, 0,           NULL,       NULL },
	{ SECT_DEFAULT,  "drain_timeout",            OT_DUR,      "30",             C(drain_timeout),                    0,                         0,     86400,   0,           NULL,       NULL },
	{ SECT_DEFAULT,  "tls_ticket_key_rotation",  OT_DUR,      "3600",           C(tls_ticket_key_rotation),          0,                         60,    604800,  0,           NULL,       NULL },
	{ SECT_DEFAULT,  "splice",                   OT_ENUM,     "auto",           C(splice),                           0,                         0,     0,       0,           splice_modes, NULL },

	{ SECT_ADMIN,    "listen",                   OT_ADDR,     "127.0.0.1:9180", C(admin_listen),                     C(admin_enabled),          0,     0,       OPT_OFF,     NULL,       NULL },

	{ SECT_LISTENER, "listen",                   OT_ADDR,     NULL,             L(listen),                           0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "upstream",                 OT_UPSTREAM, NULL,             L(upstream),                         0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "service",                  OT_STR,      NULL,             L(service),                          0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "client_header_timeout",    OT_DUR,      "30",             L(client_header_timeout),            0,                         0.001, 86400,   0,           NULL,       NULL },
	{ SECT_LISTENER, "client_idle_timeout",      OT_DUR,      "60",             L(client_idle_timeout),              0,                         0.001, 86400,   0,           NULL,       NULL },
	{ SECT_LISTENER, "upstream_connect_timeout", OT_DUR,      "5",              L(upstream_connect_timeout),         0,                         0.001, 86400,   0,           NULL,       NULL },
	{ SECT_LISTENER, "upstream_timeout",         OT_DUR,      "60",             L(upstream_timeout),                 0,                         0.001, 86400,   0,           NULL,       NULL },
	{ SECT_LISTENER, "max_header_bytes",         OT_SIZE,     "65536",          L(max_header_bytes),                 0,                         1024,  1048576, 0,           NULL,       NULL },
	{ SECT_LISTENER, "max_headers",              OT_UINT,     "100",            L(max_headers),                      0,                         1,     H1_MAX_HEADERS_CAP, 0, NULL,       NULL },
	{ SECT_LISTENER, "trust_incoming_sampling",  OT_BOOL,     "true",           L(trust_incoming_sampling),          0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "x_forwarded",              OT_BOOL,     "true",           L(x_forwarded),                      0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "keep_proxy_authorization", OT_BOOL,     "false",          L(keep_proxy_authorization),         0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "tls_certificate",          OT_STR,      "",               L(tls_certificate),                  0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_LISTENER, "tls_key",                  OT_STR,      "",               L(tls_key),                          0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_LISTENER, "tls_sni_certificates",     OT_LIST,     "",               L(tls_sni_certificates),             L(n_tls_sni_certificates), 0,     0,       0,           NULL,       chk_cert_pairs },
	{ SECT_LISTENER, "tls_min_version",          OT_STR,      "1.2",            L(tls_min_version),                  0,                         0,     0,       0,           NULL,       chk_tls_version },
	{ SECT_LISTENER, "tls_ciphers",              OT_STR,      TLS_CIPHERS_DEFAULT, L(tls_ciphers),                   0,                         0,     0,       0,           NULL,       chk_nonempty },
	{ SECT_LISTENER, "tls_ciphersuites",         OT_STR,      TLS_SUITES_DEFAULT, L(tls_ciphersuites),               0,                         0,     0,       0,           NULL,       chk_nonempty },
	{ SECT_LISTENER, "tls_session_cache_size",   OT_UINT,     "20480",          L(tls_session_cache_size),           0,                         0,     10000000, 0,          NULL,       NULL },
	{ SECT_LISTENER, "tls_session_timeout",      OT_DUR,      "300",            L(tls_session_timeout),              0,                         1,     86400,   0,           NULL,       NULL },
	{ SECT_LISTENER, "tls_session_tickets",      OT_BOOL,     "true",           L(tls_session_tickets),              0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "tls_client_ca",            OT_STR,      "",               L(tls_client_ca),                    0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_LISTENER, "tls_verify_client",        OT_ENUM,     "none",           L(tls_verify_client),                0,                         0,     0,       0,           verify_modes, NULL },
	{ SECT_LISTENER, "tls_client_subject_header", OT_STR,     "",               L(tls_client_subject_header),        0,                         0,     0,       0,           NULL,       chk_header_name },
	{ SECT_LISTENER, "upstream_tls_verify",      OT_BOOL,     "true",           L(upstream_tls_verify),              0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "upstream_tls_ca",          OT_STR,      "",               L(upstream_tls_ca),                  0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_LISTENER, "upstream_tls_server_name", OT_STR,      "",               L(upstream_tls_server_name),         0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "upstream_tls_certificate", OT_STR,      "",               L(upstream_tls_certificate),         0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_LISTENER, "upstream_tls_key",         OT_STR,      "",               L(upstream_tls_key),                 0,                         0,     0,       0,           NULL,       chk_abs_path },

	{ SECT_PROFILER, "enabled",                  OT_BOOL,     "false",          C(profiler.enabled),                 0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_PROFILER, "hmac_keys",                OT_LIST,     "",               C(profiler.hmac_keys),               C(profiler.n_hmac_keys),   0,     0,       0,           NULL,       NULL },
	{ SECT_PROFILER, "connection_string",        OT_STR,      "redis://127.0.0.1:6379", C(profiler.connection_string), 0,                      0,     0,       0,           NULL,       chk_connection_string },
	{ SECT_PROFILER, "filter_error_trace",       OT_BOOL,     "false",          C(profiler.filter_error_trace),      0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_PROFILER, "trace_sqlalchemy",         OT_BOOL,     "false",          C(profiler.trace_sqlalchemy),        0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_PROFILER, "sentinel_service_name",    OT_STR,      "mymaster",       C(profiler.sentinel_service_name),   0,                         0,     0,       0,           NULL,       chk_nonempty },
	{ SECT_PROFILER, "socket_timeout",           OT_DUR,      "0.1",            C(profiler.socket_timeout),          0,                         0.001, 86400,   0,           NULL,       NULL },

	{ SECT_TRACING,  "extract",                  OT_FORMATS,  "osprofiler, w3c, b3, jaeger, xray, datadog, gcp, ot", C(tracing.extract), C(tracing.n_extract), 0, 0, 0, NULL,  NULL },
	{ SECT_TRACING,  "inject",                   OT_FORMATS,  "osprofiler, w3c", C(tracing.inject),                  C(tracing.n_inject),       0,     0,       0,           NULL,       NULL },
	{ SECT_TRACING,  "keep_foreign_headers",     OT_BOOL,     "false",          C(tracing.keep_foreign_headers),     0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_TRACING,  "sample_new",               OT_TRIBOOL,  NULL,             C(tracing.sample_new),               0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_TRACING,  "server_timing",            OT_BOOL,     "true",           C(tracing.server_timing),            0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_TRACING,  "response_trace_id",        OT_BOOL,     "true",           C(tracing.response_trace_id),        0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_TRACING,  "request_id_from_trace",    OT_BOOL,     "false",          C(tracing.request_id_from_trace),    0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_TRACING,  "span_name",                OT_STR,      "proxy",          C(tracing.span_name),                0,                         0,     0,       0,           NULL,       chk_ident },
	{ SECT_TRACING,  "project",                  OT_STR,      "tracebridge",    C(tracing.project),                  0,                         0,     0,       0,           NULL,       chk_nonempty },
	{ SECT_TRACING,  "host",                     OT_STR,      NULL,             C(tracing.host),                     0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_TRACING,  "span_ttl",                 OT_UINT,     "0",              C(tracing.span_ttl),                 0,                         0,     315360000, OPT_SECONDS, NULL,     NULL },
	{ SECT_TRACING,  "span_buffer_bytes",        OT_SIZE,     "16m",            C(tracing.span_buffer_bytes),        0,                         4096,  1073741824, 0,        NULL,       NULL },
	{ SECT_TRACING,  "redact_query_params",      OT_LIST,     "",               C(tracing.redact_query_params),      C(tracing.n_redact_query_params), 0, 0,    0,           NULL,       NULL },

	{ SECT_SAMPLING, "policy_file",              OT_STR,      "",               C(sampling.policy_file),             0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "policy_redis_key",         OT_STR,      "",               C(sampling.policy_redis_key),        0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "policy_channel",           OT_STR,      "",               C(sampling.policy_channel),          0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "policy_url",               OT_STR,      "",               C(sampling.policy_url),              0,                         0,     0,       0,           NULL,       chk_http_url },
	{ SECT_SAMPLING, "policy_poll_interval",     OT_DUR,      "60",             C(sampling.policy_poll_interval),    0,                         1,     86400,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "default_probability",      OT_DOUBLE,   "0.001",          C(sampling.default_probability),     0,                         0,     1,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "forced_max_per_second",    OT_DOUBLE,   "10",             C(sampling.forced_max_per_second),   0,                         0,     NOMAX,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "incoming_max_per_second",  OT_DOUBLE,   "100",            C(sampling.incoming_max_per_second), 0,                         0,     NOMAX,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "max_traces_per_second",    OT_DOUBLE,   "0",              C(sampling.max_traces_per_second),   0,                         0,     NOMAX,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "operation_rules",          OT_RULES,    "",               C(sampling.operation_rules),         C(sampling.n_operation_rules), 0, 0,      0,           NULL,       NULL },
};

#undef C
#undef L

#define N_OPTS	(sizeof(opts) / sizeof(opts[0]))

/* ---------------------------------------------------------------- helpers */

/*
 * Copy s into buf for a message: printable ASCII only, at most 40 bytes, so
 * hostile names cannot forge log lines or flood them. Returns buf.
 */
static const char *
printable(const char *s, char *buf, size_t len)
{
	size_t i, o = 0;

	for (i = 0; s[i] != '\0' && o + 4 < len && i < 40; i++)
		buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] != '\0' && o + 4 < len) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

static void
free_strv(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* Trim ASCII whitespace from both ends of [*s, *e). */
static void
trim(const char **s, const char **e)
{
	while (*s < *e && isspace((unsigned char)**s))
		(*s)++;
	while (*e > *s && isspace((unsigned char)(*e)[-1]))
		(*e)--;
}

/* "4096" -> "4k", for range messages. */
static void
fmt_size(double v, char *buf, size_t len)
{
	unsigned long long n = (unsigned long long)v;

	if (n != 0 && n % (1ULL << 30) == 0)
		snprintf(buf, len, "%llug", n >> 30);
	else if (n != 0 && n % (1ULL << 20) == 0)
		snprintf(buf, len, "%llum", n >> 20);
	else if (n != 0 && n % 1024 == 0)
		snprintf(buf, len, "%lluk", n >> 10);
	else
		snprintf(buf, len, "%llu", n);
}

/*
 * Non-negative decimal number "12", "0.5", ".5" (no sign, exponent, hex,
 * inf or nan: strtod would take those). 0 and *out, or -1.
 */
static int
parse_number(const char *s, size_t len, double *out)
{
	char buf[64];
	size_t i, digits = 0, dots = 0;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	for (i = 0; i < len; i++) {
		if (isdigit((unsigned char)s[i]))
			digits++;
		else if (s[i] == '.')
			dots++;
		else
			return -1;
	}
	if (digits == 0 || dots > 1)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	*out = strtod(buf, NULL);
	return isfinite(*out) ? 0 : -1;
}

/* Decimal digits only, into *out; -1 on anything else or overflow. */
static int
parse_uint(const char *s, size_t len, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i;

	if (len == 0 || len > 18)
		return -1;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static int
parse_bool(const char *v)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t i;

	for (i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
		if (strcasecmp(v, no[i]) == 0)
			return 0;
	}
	return -1;
}

/* ------------------------------------------------------------- addresses */

/* Copy the first address getaddrinfo gives for host/port into a. */
static int
resolve(const char *host, const char *port, int flags, struct tb_addr *a,
    char *why, size_t wl)
{
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = flags | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(a->ss)) {
		if (why != NULL)
			snprintf(why, wl, "cannot resolve host: %s",
			    rc != 0 ? gai_strerror(rc) : "no address");
		if (res != NULL)
			freeaddrinfo(res);
		return -1;
	}
	memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* "1".."65535" into port (as text too, for getaddrinfo). */
static int
parse_port(const char *s, size_t len, uint16_t *port, char *text, size_t tl)
{
	unsigned long long v;

	if (parse_uint(s, len, &v) < 0 || v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	snprintf(text, tl, "%llu", v);
	return 0;
}

int
config_parse_addr(const char *s, struct tb_addr *a)
{
	char host[128], portbuf[8];
	const char *h, *he, *colon;
	size_t len = strlen(s);
	uint16_t port;

	memset(a, 0, sizeof(*a));
	if (len == 0 || len >= sizeof(a->text))
		return -1;
	if (s[0] == '[') {
		he = strchr(s, ']');
		if (he == NULL || he[1] != ':')
			return -1;
		h = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		h = s;
		he = colon;
		if (memchr(h, ':', (size_t)(he - h)) != NULL)
			return -1;	/* IPv6 needs brackets */
	}
	if (he == h || (size_t)(he - h) >= sizeof(host))
		return -1;
	if (parse_port(colon + 1, strlen(colon + 1), &port, portbuf,
	    sizeof(portbuf)) < 0)
		return -1;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	if (strcmp(host, "*") == 0)
		strcpy(host, "0.0.0.0");
	if (resolve(host, portbuf, AI_NUMERICHOST | AI_PASSIVE, a, NULL, 0) < 0)
		return -1;
	memcpy(a->text, s, len + 1);
	return 0;
}

/* Same family, address and port. */
static int
addr_equal(const struct tb_addr *x, const struct tb_addr *y)
{
	const struct sockaddr_in *x4, *y4;
	const struct sockaddr_in6 *x6, *y6;

	if (x->ss.ss_family != y->ss.ss_family)
		return 0;
	if (x->ss.ss_family == AF_INET) {
		x4 = (const struct sockaddr_in *)&x->ss;
		y4 = (const struct sockaddr_in *)&y->ss;
		return x4->sin_port == y4->sin_port &&
		    x4->sin_addr.s_addr == y4->sin_addr.s_addr;
	}
	if (x->ss.ss_family == AF_INET6) {
		x6 = (const struct sockaddr_in6 *)&x->ss;
		y6 = (const struct sockaddr_in6 *)&y->ss;
		return x6->sin6_port == y6->sin6_port &&
		    memcmp(&x6->sin6_addr, &y6->sin6_addr,
		    sizeof(x6->sin6_addr)) == 0;
	}
	return 0;
}

/*
 * "http://host[:port][/]" into l's upstream fields (host a name, an IPv4
 * address or a bracketed IPv6 one; port 80 when absent), resolved now with
 * getaddrinfo. Replaces whatever l held. 0, or -1 with why.
 */
static int
parse_upstream(const char *v, struct tb_listener_conf *l, char *why, size_t wl)
{
	static const char expect[] = "expected http[s]://host[:port][/]";
	char host[256], portbuf[8] = "80";
	const char *p, *h, *he, *end = v + strlen(v);
	uint16_t port = 80;
	size_t i, skip;
	int tls = 0;

	if (strncasecmp(v, "https://", 8) == 0) {
		tls = 1;
		port = 443;
		strcpy(portbuf, "443");
	} else if (strncasecmp(v, "http://", 7) != 0) {
		snprintf(why, wl, "%s", expect);
		return -1;
	}
	skip = tls ? 8 : 7;
	p = v + skip;
	if (end > p && end[-1] == '/')
		end--;
	if (*p == '[') {
		h = p + 1;
		he = memchr(h, ']', (size_t)(end - h));
		if (he == NULL)
			goto bad;
		p = he + 1;
	} else {
		h = p;
		while (p < end && *p != ':')
			p++;
		he = p;
		for (i = 0; h + i < he; i++)
			if (!isalnum((unsigned char)h[i]) && h[i] != '.' &&
			    h[i] != '-' && h[i] != '_')
				goto bad;
	}
	if (he == h || (size_t)(he - h) >= sizeof(host))
		goto bad;
	if (p < end) {
		if (*p != ':' || parse_port(p + 1, (size_t)(end - p - 1), &port,
		    portbuf, sizeof(portbuf)) < 0)
			goto bad;
	}
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';

	free(l->upstream);
	free(l->upstream_host);
	l->upstream = NULL;
	l->upstream_host = NULL;
	memset(&l->upstream_addr, 0, sizeof(l->upstream_addr));
	if (resolve(host, portbuf, 0, &l->upstream_addr, why, wl) < 0)
		return -1;
	l->upstream = strdup(v);
	/* as written, brackets kept: it is also what a Host header needs */
	l->upstream_host = strndup(v + skip, (size_t)(he - (v + skip)) + (*h != v[skip]));
	if (l->upstream == NULL || l->upstream_host == NULL) {
		snprintf(why, wl, "out of memory");
		return -1;
	}
	l->upstream_tls = tls;
	l->upstream_port = port;
	snprintf(l->upstream_addr.text, sizeof(l->upstream_addr.text), "%s:%u",
	    l->upstream_host, (unsigned)port);
	return 0;
bad:
	snprintf(why, wl, "%s", expect);
	return -1;
}

/* ------------------------------------------------------------ validators */

static int
is_abs_path(const char *s)
{
	return s != NULL && s[0] == '/';
}

static int
chk_error_log(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;

	if (s != NULL && (strcmp(s, "stderr") == 0 ||
	    strcmp(s, "syslog") == 0 || is_abs_path(s)))
		return 0;
	snprintf(why, wl, "expected 'stderr', 'syslog' or an absolute path");
	return -1;
}

static int
chk_access_log(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;

	if (s != NULL && (strcmp(s, "off") == 0 || strcmp(s, "stderr") == 0 ||
	    strcmp(s, "syslog") == 0 || is_abs_path(s)))
		return 0;
	snprintf(why, wl,
	    "expected 'off', 'stderr', 'syslog' or an absolute path");
	return -1;
}

static int
chk_abs_path(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;

	if (s == NULL || is_abs_path(s))
		return 0;
	snprintf(why, wl, "expected an absolute path (or nothing)");
	return -1;
}

static int
chk_user(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc;

	if (s == NULL)
		return 0;
	rc = getpwnam_r(s, &pw, buf, sizeof(buf), &res);
	if (rc == 0 && res != NULL)
		return 0;
	snprintf(why, wl, "no such user");
	return -1;
}

static int
chk_group(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;
	struct group gr, *res = NULL;
	char buf[8192];
	int rc;

	if (s == NULL)
		return 0;
	rc = getgrnam_r(s, &gr, buf, sizeof(buf), &res);
	if (rc == 0 && res != NULL)
		return 0;
	snprintf(why, wl, "no such group");
	return -1;
}

/* By the one Redis connection string parser (redis.c), so a bad scheme,
 * host, port or db is reported with file, line and option. Its messages
 * never quote the password (nor anything else of the value). */
static int
chk_connection_string(void *field, char *why, size_t wl)
{
	struct tb_redis_url url;
	int rc;

	rc = tb_redis_url_parse(*(char **)field, &url, why, wl);
	explicit_bzero(&url, sizeof(url));	/* it holds the password */
	return rc;
}

/* [A-Za-z0-9_.]+: span names end up in Redis keys and metric labels. */
static int
chk_ident(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;
	size_t i;

	for (i = 0; s != NULL && s[i] != '\0'; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.')
			break;
	if (s != NULL && i > 0 && s[i] == '\0')
		return 0;
	snprintf(why, wl, "expected letters, digits, '_' and '.' only");
	return -1;
}

static int
chk_nonempty(void *field, char *why, size_t wl)
{
	if (*(char **)field != NULL)
		return 0;
	snprintf(why, wl, "must not be empty");
	return -1;
}

static int
chk_http_url(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;

	if (s == NULL || (strncmp(s, "http://", 7) == 0 && s[7] != '\0'))
		return 0;
	snprintf(why, wl, "expected an http:// URL (https is not supported)");
	return -1;
}

/* 1.2 or 1.3; the older ones are deprecated by RFC 8996. */
static int
chk_tls_version(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;

	if (s != NULL && strncasecmp(s, "TLSv", 4) == 0)
		s += 4;
	if (s != NULL && (strcmp(s, "1.2") == 0 || strcmp(s, "1.3") == 0))
		return 0;
	if (s != NULL && (strcmp(s, "1.0") == 0 || strcmp(s, "1.1") == 0 ||
	    strcmp(s, "1") == 0))
		snprintf(why, wl, "TLS 1.0 and 1.1 are not supported (RFC 8996): "
		    "expected 1.2 or 1.3");
	else
		snprintf(why, wl, "expected 1.2 or 1.3");
	return -1;
}

/* A header field name (RFC 9110 5.1: a token), or nothing. */
static int
chk_header_name(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (!isalnum((unsigned char)s[i]) &&
		    strchr("!#$%&'*+-.^_`|~", s[i]) == NULL)
			break;
	if (s[i] == '\0' && i <= 64)
		return 0;
	snprintf(why, wl, "expected a header name (letters, digits, '-')");
	return -1;
}

/* Each member "CERT:KEY", both absolute paths. */
static int
chk_cert_pairs(void *field, char *why, size_t wl)
{
	char **v = *(char ***)field;
	const char *colon;
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++) {
		colon = strchr(v[i], ':');
		if (v[i][0] != '/' || colon == NULL || colon[1] != '/' ||
		    strchr(colon + 1, ':') != NULL) {
			snprintf(why, wl, "member %zu: expected CERT:KEY, two "
			    "absolute paths", i + 1);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ list types */

/*
 * Split v into a NULL-terminated array of trimmed members (*outv, count in
 * *outn; the caller owns both). Members are separated by ',' and, for values continued over
 * several lines, by newlines; "a,\n  b" is two members, "a,,b" and "a," are
 * an error (an empty member is almost always a typo). An empty v is an
 * empty list. by_line: only newlines separate (operation rules contain ',').
 */
static int
split_list(const char *v, int by_line, char ***outv, size_t *outn,
    char *why, size_t wl)
{
	char **vec = NULL, **nv;
	size_t n = 0, cap = 0;
	const char *p = v, *s, *e;
	char left = ',', right;

	*outv = NULL;
	*outn = 0;
	for (s = v; *s != '\0' && isspace((unsigned char)*s); s++)
		;
	if (*s == '\0')
		goto done;
	for (;;) {
		s = p;
		while (*p != '\0' && *p != '\n' && (by_line || *p != ','))
			p++;
		right = *p == '\0' ? ',' : *p;
		e = p;
		trim(&s, &e);
		if (s == e) {
			if (left == ',' && right == ',' && !by_line) {
				snprintf(why, wl, "empty member in list");
				goto fail;
			}
		} else {
			if (n + 2 > cap) {	/* doubling: linear in members */
				cap = cap ? cap * 2 : 8;
				if ((nv = realloc(vec, cap * sizeof(*vec))) == NULL)
					goto oom;
				vec = nv;
			}
			vec[n] = strndup(s, (size_t)(e - s));
			if (vec[n] == NULL)
				goto oom;
			vec[++n] = NULL;
		}
		if (*p == '\0')
			break;
		left = *p++;
	}
done:
	if (vec == NULL && (vec = calloc(1, sizeof(*vec))) == NULL)
		goto oom;
	*outv = vec;
	*outn = n;
	return 0;
oom:
	snprintf(why, wl, "out of memory");
fail:
	free_strv(vec);
	return -1;
}

/* Members must be known format names, each at most once; stored lower case. */
static int
check_formats(char **v, char *why, size_t wl)
{
	char nb[64];
	size_t i, j, k;
	unsigned seen = 0;

	for (i = 0; v[i] != NULL; i++) {
		for (j = 0; trace_formats[j] != NULL; j++)
			if (strcasecmp(v[i], trace_formats[j]) == 0)
				break;
		if (trace_formats[j] == NULL) {
			snprintf(why, wl, "unknown format '%s' (expected %s)",
			    printable(v[i], nb, sizeof(nb)),
			    "osprofiler, w3c, b3, jaeger, xray, datadog, gcp, ot");
			return -1;
		}
		if (seen & (1u << j)) {
			snprintf(why, wl, "format '%s' listed twice",
			    trace_formats[j]);
			return -1;
		}
		seen |= 1u << j;
		for (k = 0; v[i][k] != '\0'; k++)
			v[i][k] = (char)tolower((unsigned char)v[i][k]);
	}
	return 0;
}

/*
 * Each rule "prefix:/path name" or "regex:ERE name": the name is the last
 * word, the pattern everything between the colon and it (an ERE may hold
 * spaces). The regex is compiled here only to reject it early.
 */
static int
check_rules(char **v, char *why, size_t wl)
{
	char errbuf[128], *pat;
	const char *p, *e, *name, *unsafe;
	regex_t re;
	size_t i;
	int rc, is_regex;

	for (i = 0; v[i] != NULL; i++) {
		p = v[i];
		if (strncmp(p, "prefix:", 7) == 0) {
			is_regex = 0;
			p += 7;
		} else if (strncmp(p, "regex:", 6) == 0) {
			is_regex = 1;
			p += 6;
		} else {
			snprintf(why, wl, "rule %zu: expected 'prefix:<path> "
			    "<name>' or 'regex:<ERE> <name>'", i + 1);
			return -1;
		}
		e = p + strlen(p);
		name = e;
		while (name > p && !isspace((unsigned char)name[-1]))
			name--;
		e = name;
		trim(&p, &e);
		if (name == p || *name == '\0' || p == e) {
			snprintf(why, wl, "rule %zu: expected a pattern and "
			    "an operation name", i + 1);
			return -1;
		}
		if (!is_regex) {
			if (*p != '/') {
				snprintf(why, wl, "rule %zu: a path prefix "
				    "starts with '/'", i + 1);
				return -1;
			}
			continue;
		}
		/* glibc's regcomp can take gigabytes for a short hostile
		 * pattern: weigh it first (fuzz_config found this). */
		if ((unsafe = sampling_regex_unsafe(p, (size_t)(e - p))) != NULL) {
			snprintf(why, wl, "rule %zu: %s", i + 1, unsafe);
			return -1;
		}
		if ((pat = strndup(p, (size_t)(e - p))) == NULL) {
			snprintf(why, wl, "out of memory");
			return -1;
		}
		rc = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
		free(pat);
		if (rc != 0) {
			regerror(rc, &re, errbuf, sizeof(errbuf));
			snprintf(why, wl, "rule %zu: invalid regex: %s", i + 1,
			    errbuf);
			return -1;
		}
		regfree(&re);
	}
	return 0;
}

/* ------------------------------------------------------- table machinery */

static void *
field_of(const struct opt *o, void *base)
{
	return (char *)base + o->off;
}

/*
 * Parse v as option o into the struct at base (tb_config, or
 * tb_listener_conf for listener options), replacing and freeing what was
 * there. 0, or -1 with the reason in why (never quoting v).
 */
static int
opt_set(const struct opt *o, void *base, const char *v, char *why, size_t wl)
{
	void *f = field_of(o, base);
	const char *end = v + strlen(v);
	char lo[32], hi[32];
	unsigned long long u, mul = 1;
	double d, dv;
	char **vec;
	size_t n, i;
	int b;

	switch (o->type) {
	case OT_BOOL:
	case OT_TRIBOOL:
		if ((b = parse_bool(v)) < 0) {
			snprintf(why, wl, "expected true or false "
			    "(or yes/no, on/off, 1/0)");
			return -1;
		}
		*(int *)f = b;
		break;
	case OT_INT:
	case OT_UINT:
		if ((o->flags & OPT_AUTO) && strcasecmp(v, "auto") == 0) {
			long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

			*(int *)f = (int)(ncpu < o->min ? o->min :
			    ncpu > o->max ? o->max : ncpu);
			break;
		}
		if ((o->flags & OPT_SECONDS) && end > v && end[-1] == 's')
			end--;
		if (parse_uint(v, (size_t)(end - v), &u) < 0 ||
		    u < o->min || u > o->max) {
			snprintf(why, wl, "expected %s between %.0f and %.0f%s",
			    (o->flags & OPT_SECONDS) ? "whole seconds" :
			    "an integer", o->min, o->max,
			    (o->flags & OPT_AUTO) ? " or 'auto'" : "");
			return -1;
		}
		if (o->type == OT_INT)
			*(int *)f = (int)u;
		else
			*(unsigned *)f = (unsigned)u;
		break;
	case OT_SIZE:
		if (end > v && strchr("kKmMgG", end[-1]) != NULL) {
			mul = tolower((unsigned char)end[-1]) == 'k' ? 1ULL << 10 :
			    tolower((unsigned char)end[-1]) == 'm' ? 1ULL << 20 :
			    1ULL << 30;
			end--;
		}
		if (parse_uint(v, (size_t)(end - v), &u) < 0 ||
		    u > (unsigned long long)o->max / mul ||
		    u * mul < o->min || u * mul > o->max) {
			fmt_size(o->min, lo, sizeof(lo));
			fmt_size(o->max, hi, sizeof(hi));
			snprintf(why, wl, "expected a size between %s and %s "
			    "bytes (optional k/m/g suffix)", lo, hi);
			return -1;
		}
		*(size_t *)f = (size_t)(u * mul);
		break;
	case OT_DUR:
		d = 1;
		if (end - v >= 2 && strcmp(end - 2, "ms") == 0) {
			d = 0.001;
			end -= 2;
		} else if (end > v && strchr("smh", end[-1]) != NULL) {
			d = end[-1] == 'h' ? 3600 : end[-1] == 'm' ? 60 : 1;
			end--;
		}
		if (parse_number(v, (size_t)(end - v), &dv) < 0 ||
		    (dv *= d) < o->min || dv > o->max) {
			snprintf(why, wl, "expected a duration between %g and "
			    "%g seconds (optional ms/s/m/h suffix)", o->min, o->max);
			return -1;
		}
		*(double *)f = dv;
		break;
	case OT_DOUBLE:
		if (parse_number(v, (size_t)(end - v), &d) < 0 ||
		    d < o->min || d > o->max) {
			if (o->max >= NOMAX)
				snprintf(why, wl, "expected a number >= %g",
				    o->min);
			else
				snprintf(why, wl, "expected a number between "
				    "%g and %g", o->min, o->max);
			return -1;
		}
		*(double *)f = d;
		break;
	case OT_STR:
		free(*(char **)f);
		*(char **)f = NULL;
		if (*v != '\0' && (*(char **)f = strdup(v)) == NULL) {
			snprintf(why, wl, "out of memory");
			return -1;
		}
		break;
	case OT_ENUM:
		for (i = 0; o->names[i] != NULL; i++)
			if (strcasecmp(v, o->names[i]) == 0)
				break;
		if (o->names[i] == NULL) {
			n = (size_t)snprintf(why, wl, "expected one of:");
			for (i = 0; o->names[i] != NULL && n < wl; i++)
				n += (size_t)snprintf(why + n, wl - n, "%s %s",
				    i ? "," : "", o->names[i]);
			return -1;
		}
		*(int *)f = (int)i;
		break;
	case OT_ADDR:
		if ((o->flags & OPT_OFF) && strcasecmp(v, "off") == 0) {
			*(int *)((char *)base + o->off_n) = 0;
			memset(f, 0, sizeof(struct tb_addr));
			break;
		}
		if (config_parse_addr(v, f) < 0) {
			snprintf(why, wl, "expected host:port, [v6]:port or "
			    "*:port with a numeric address%s",
			    (o->flags & OPT_OFF) ? ", or 'off'" : "");
			return -1;
		}
		if (o->flags & OPT_OFF)
			*(int *)((char *)base + o->off_n) = 1;
		break;
	case OT_UPSTREAM:
		return parse_upstream(v, base, why, wl);
	case OT_LIST:
	case OT_FORMATS:
	case OT_RULES:
		if (split_list(v, o->type == OT_RULES, &vec, &n, why, wl) < 0)
			return -1;
		if ((o->type == OT_FORMATS && check_formats(vec, why, wl) < 0) ||
		    (o->type == OT_RULES && check_rules(vec, why, wl) < 0)) {
			free_strv(vec);
			return -1;
		}
		free_strv(*(char ***)f);
		*(char ***)f = vec;
		*(size_t *)((char *)base + o->off_n) = n;
		break;
	}
	if (o->check != NULL)
		return o->check(f, why, wl);
	return 0;
}

/*
 * Put every option of kind sect at its default in base. Defaults are
 * constants of this file, so failing here is a bug, not an input error.
 */
static int
apply_defaults(enum sect_kind sect, void *base)
{
	char why[256];
	size_t i;

	for (i = 0; i < N_OPTS; i++) {
		if (opts[i].sect != sect)
			continue;
		if (opts[i].type == OT_TRIBOOL)
			*(int *)field_of(&opts[i], base) = -1;
		if (opts[i].def != NULL &&
		    opt_set(&opts[i], base, opts[i].def, why, sizeof(why)) < 0)
			return -1;
	}
	return 0;
}

/* Free what options of kind sect own in base (not base itself). */
static void
free_fields(enum sect_kind sect, void *base)
{
	size_t i;
	void *f;

	for (i = 0; i < N_OPTS; i++) {
		if (opts[i].sect != sect)
			continue;
		f = field_of(&opts[i], base);
		switch (opts[i].type) {
		case OT_STR:
			free(*(char **)f);
			*(char **)f = NULL;
			break;
		case OT_LIST:
		case OT_FORMATS:
		case OT_RULES:
			free_strv(*(char ***)f);
			*(char ***)f = NULL;
			break;
		case OT_UPSTREAM: {
			struct tb_listener_conf *l = base;

			free(l->upstream);
			free(l->upstream_host);
			l->upstream = l->upstream_host = NULL;
			break;
		}
		default:
			break;
		}
	}
}

static const struct opt *
opt_find(enum sect_kind sect, const char *name)
{
	size_t i;

	for (i = 0; i < N_OPTS; i++)
		if (opts[i].sect == sect && strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

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
		free_fields(SECT_LISTENER, &c->listeners[i]);
		free(c->listeners[i].name);
		free(c->listeners[i].opt_lines);
	}
	free(c->listeners);
	for (i = 0; i < SECT_COUNT; i++)
		if (i != SECT_LISTENER)
			free_fields((enum sect_kind)i, c);
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
		if (i != SECT_LISTENER && apply_defaults((enum sect_kind)i, c) < 0)
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

/* --------------------------------------------------------------- loading */

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

struct loader {
	const char *fname;	/* FILE in messages */
	char *err;
	size_t errlen;
	int failed;		/* an error is in err; stop everything */

	const char *p, *end;	/* unread input */
	int line;		/* physical line just handed to libinih */
	int in_pair;		/* a name = value since the last [section] */

	struct raw_sect *sects;
	size_t n_sects;
	struct raw_opt *ropts;
	size_t n_ropts, cap_ropts;
	size_t n_listeners;
	int singleton_line[SECT_COUNT];	/* header line of [admin] etc. */
};

static void ld_err(struct loader *, int, const char *, const char *, ...)
    __attribute__((format(printf, 4, 5)));

/* Record the first error as "FILE:LINE: what: reason"; later ones are dropped. */
static void
ld_err(struct loader *ld, int line, const char *what, const char *fmt, ...)
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

static int
add_sect(struct loader *ld, enum sect_kind kind, const char *name, int line)
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
on_section(struct loader *ld, const char *s, size_t len)
{
	char name[256], pb[64];
	const char *e = s + len;
	size_t i, k;

	trim(&s, &e);
	if ((size_t)(e - s) >= sizeof(name)) {
		ld_err(ld, ld->line, "section", "name too long");
		return;
	}
	memcpy(name, s, (size_t)(e - s));
	name[e - s] = '\0';
	printable(name, pb, sizeof(pb));
	if (memchr(s, '\0', (size_t)(e - s)) != NULL) {
		ld_err(ld, ld->line, "section", "invalid name");
		return;
	}
	for (k = 0; k < SECT_COUNT; k++)
		if (k != SECT_LISTENER && strcmp(name, sect_names[k]) == 0)
			break;
	if (k < SECT_COUNT) {
		/* [DEFAULT] may follow options written before any section */
		if (ld->singleton_line[k] != 0 && k != SECT_DEFAULT) {
			ld_err(ld, ld->line, name, "duplicate section (first "
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
			ld_err(ld, ld->line, pb, "invalid listener name "
			    "(expected 1 to 64 of [A-Za-z0-9_.])");
			return;
		}
		for (i = 0; i < ld->n_sects; i++)
			if (ld->sects[i].kind == SECT_LISTENER &&
			    strcmp(ld->sects[i].name, name) == 0) {
				ld_err(ld, ld->line, name, "duplicate section "
				    "(first at line %d)", ld->sects[i].line);
				return;
			}
		if (ld->n_listeners >= CONFIG_MAX_LISTENERS) {
			ld_err(ld, ld->line, name, "too many listeners "
			    "(at most %d)", CONFIG_MAX_LISTENERS);
			return;
		}
	} else {
		ld_err(ld, ld->line, pb, "unknown section");
		return;
	}
	if (add_sect(ld, (enum sect_kind)k, name, ld->line) < 0)
		ld_err(ld, ld->line, "section", "out of memory");
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
on_continuation(struct loader *ld, const char *s, const char *e)
{
	struct raw_opt *ro = &ld->ropts[ld->n_ropts - 1];
	size_t nl, cap;
	char *nv;

	e = find_chars_or_comment(s, e, NULL);
	trim(&s, &e);
	nl = (size_t)(e - s);
	/* doubling: a file of many short continuation lines stays linear */
	if (ro->vlen + nl + 2 > ro->vcap) {
		cap = ro->vcap * 2 > ro->vlen + nl + 2 ? ro->vcap * 2 :
		    ro->vlen + nl + 2;
		if ((nv = realloc(ro->value, cap)) == NULL) {
			ld_err(ld, ld->line, "config", "out of memory");
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
	struct loader *ld = stream;
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
		ld_err(ld, ld->line, "syntax", "NUL byte in line");
		return NULL;
	}
	s = l;
	e = l + len;
	if (ld->line == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	trim(&s, &e);
	if (s == e || *s == ';' || *s == '#')
		goto blank;
	if (ld->in_pair && s > l) {
		/*
		 * libinih (like configparser) would make an indented
		 * "[section]" part of the value above: refuse the surprise.
		 */
		if (*s == '[' && e[-1] == ']') {
			ld_err(ld, ld->line, "syntax", "section headers must "
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
			ld_err(ld, ld->line, "syntax", "expected ']'");
			return NULL;
		}
		on_section(ld, s + 1, (size_t)(x - s - 1));
		ld->in_pair = 0;
	} else {
		x = find_chars_or_comment(s, e, "=:");
		if (x == e || (*x != '=' && *x != ':')) {
			ld_err(ld, ld->line, "syntax", "expected 'name = value'"
			    " or '[section]'");
			return NULL;
		}
		ld->in_pair = 1;
	}
	if (ld->failed)
		return NULL;
	if (num < 2 || len > (size_t)num - 1) {
		ld_err(ld, ld->line, "syntax", "line too long (at most %d "
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
	struct loader *ld = user;
	struct raw_opt *ro, *nr;
	size_t cap;

	(void)section;	/* libinih truncates it at 50 bytes: ours is whole */
	if (ld->failed)
		return 0;
	if (*name == '\0') {
		ld_err(ld, ld->line, "syntax", "missing option name");
		return 0;
	}
	if (ld->n_ropts == ld->cap_ropts) {
		cap = ld->cap_ropts ? ld->cap_ropts * 2 : 32;
		if ((nr = realloc(ld->ropts, cap * sizeof(*nr))) == NULL)
			goto oom;
		ld->ropts = nr;
		ld->cap_ropts = cap;
	}
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
	ld_err(ld, ld->line, "config", "out of memory");
	return 0;
}

int
config_line(const struct tb_listener_conf *l, const char *option)
{
	const struct opt *o = opt_find(SECT_LISTENER, option);

	if (o == NULL || l->opt_lines == NULL || l->opt_lines[o - opts] == 0)
		return l->line;
	return l->opt_lines[o - opts];
}

/*
 * The TLS options of l that only make sense together. The files themselves
 * are read later, by tls.c (tls_conf_attach), which reports with
 * config_line(): loading stays free of file I/O for the fuzzer and tests.
 */
static int
check_listener_tls(struct loader *ld, struct tb_listener_conf *l)
{
	static const char *const up_opts[] = { "upstream_tls_ca",
	    "upstream_tls_server_name", "upstream_tls_certificate",
	    "upstream_tls_key", NULL };
	const char *what = NULL, *why = NULL;
	size_t i;

	if ((l->tls_certificate == NULL) != (l->tls_key == NULL)) {
		what = l->tls_key == NULL ? "tls_certificate" : "tls_key";
		why = "tls_certificate and tls_key go together";
	} else if (l->tls_certificate == NULL &&
	    (what = l->n_tls_sni_certificates > 0 ? "tls_sni_certificates" :
	    l->tls_client_ca != NULL ? "tls_client_ca" :
	    l->tls_verify_client != TB_VERIFY_NONE ? "tls_verify_client" :
	    l->tls_client_subject_header != NULL ? "tls_client_subject_header" :
	    NULL) != NULL) {
		why = "needs tls_certificate (TLS on this listener)";
	} else if (l->tls_verify_client != TB_VERIFY_NONE && l->tls_client_ca == NULL) {
		what = "tls_verify_client";
		why = "needs tls_client_ca";
	} else if ((l->upstream_tls_certificate == NULL) != (l->upstream_tls_key == NULL)) {
		what = l->upstream_tls_key == NULL ? "upstream_tls_certificate" :
		    "upstream_tls_key";
		why = "upstream_tls_certificate and upstream_tls_key go together";
	} else if (!l->upstream_tls) {
		for (i = 0; up_opts[i] != NULL; i++)
			if (config_line(l, up_opts[i]) != l->line)
				break;
		if (up_opts[i] != NULL) {
			what = up_opts[i];
			why = "only for an https:// upstream";
		}
	}
	if (what == NULL)
		return 0;
	ld_err(ld, config_line(l, what), what, "%s", why);
	return -1;
}

/* Pass two: apply every recorded option to c, then the cross checks. */
static void
apply(struct loader *ld, struct tb_config *c)
{
	char why[512], nb[64];
	const struct opt *o;
	struct raw_opt *ro;
	struct raw_sect *rs;
	struct tb_listener_conf *l;
	int *seen = NULL, *lseen;	/* line each option was first set on */
	size_t i, j;
	int line;

	if (ld->n_listeners > 0) {
		c->listeners = calloc(ld->n_listeners, sizeof(*c->listeners));
		seen = calloc((ld->n_listeners + 1) * N_OPTS, sizeof(*seen));
		if (c->listeners == NULL || seen == NULL) {
			ld_err(ld, 0, "config", "out of memory");
			goto out;
		}
	} else if ((seen = calloc(N_OPTS, sizeof(*seen))) == NULL) {
		ld_err(ld, 0, "config", "out of memory");
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
		    apply_defaults(SECT_LISTENER, l) < 0) {
			ld_err(ld, rs->line, "config", "out of memory");
			goto out;
		}
	}

	for (i = 0; i < ld->n_ropts && !ld->failed; i++) {
		ro = &ld->ropts[i];
		rs = &ld->sects[ro->sect];
		o = opt_find(rs->kind, ro->name);
		if (o == NULL) {
			if (rs->kind == SECT_PROFILER)	/* may be a stray key */
				ld_err(ld, ro->line, "[profiler]", "unknown "
				    "option (name not shown: this section "
				    "holds secrets)");
			else
				ld_err(ld, ro->line, printable(ro->name, nb,
				    sizeof(nb)), "unknown option");
			break;
		}
		lseen = seen;
		if (rs->kind == SECT_LISTENER)
			lseen += (rs->listener + 1) * N_OPTS;
		if (lseen[o - opts] != 0) {
			ld_err(ld, ro->line, o->name, "duplicate option (first "
			    "at line %d)", lseen[o - opts]);
			break;
		}
		lseen[o - opts] = ro->line;
		if (strchr(ro->value, '\n') != NULL && o->type != OT_LIST &&
		    o->type != OT_FORMATS && o->type != OT_RULES) {
			ld_err(ld, ro->line, o->name, "only lists continue on "
			    "indented lines");
			break;
		}
		if (opt_set(o, rs->kind == SECT_LISTENER ?
		    (void *)&c->listeners[rs->listener] : (void *)c,
		    ro->value, why, sizeof(why)) < 0)
			ld_err(ld, ro->line, o->name, "%s", why);
	}
	if (ld->failed)
		goto out;

	for (i = 0; i < c->n_listeners; i++) {
		l = &c->listeners[i];
		lseen = seen + (i + 1) * N_OPTS;
		if (lseen[opt_find(SECT_LISTENER, "listen") - opts] == 0) {
			ld_err(ld, l->line, "listen", "required in "
			    "[listener:%s]", l->name);
			goto out;
		}
		if (lseen[opt_find(SECT_LISTENER, "upstream") - opts] == 0) {
			ld_err(ld, l->line, "upstream", "required in "
			    "[listener:%s]", l->name);
			goto out;
		}
		line = lseen[opt_find(SECT_LISTENER, "listen") - opts];
		for (j = 0; j < i; j++)
			if (addr_equal(&l->listen, &c->listeners[j].listen)) {
				ld_err(ld, line, "listen", "address already "
				    "used by [listener:%s]",
				    c->listeners[j].name);
				goto out;
			}
		if (c->admin_enabled && addr_equal(&l->listen, &c->admin_listen)) {
			ld_err(ld, line, "listen", "address already used by "
			    "[admin]");
			goto out;
		}
		if ((l->opt_lines = malloc(N_OPTS * sizeof(int))) == NULL) {
			ld_err(ld, l->line, "config", "out of memory");
			goto out;
		}
		memcpy(l->opt_lines, lseen, N_OPTS * sizeof(int));
		if (check_listener_tls(ld, l) < 0)
			goto out;
	}
	if (c->n_listeners == 0) {
		ld_err(ld, 0, "listener", "at least one [listener:NAME] "
		    "section is required");
		goto out;
	}
	line = seen[opt_find(SECT_PROFILER, "enabled") - opts];
	if (c->profiler.enabled && c->profiler.n_hmac_keys == 0) {
		ld_err(ld, line, "hmac_keys", "at least one key is required "
		    "when enabled = true");
		goto out;
	}
	j = (size_t)(opt_find(SECT_SAMPLING, "default_probability") - opts);
	c->sampling.default_probability_set = seen[j] != 0;
	line = seen[opt_find(SECT_TRACING, "sample_new") - opts];
	if (seen[j] != 0 && line != 0) {
		ld_err(ld, seen[j] > line ? seen[j] : line,
		    seen[j] > line ? "default_probability" : "sample_new",
		    "sample_new and default_probability cannot both be set");
		goto out;
	}
out:
	free(seen);
}

static void
loader_free(struct loader *ld)
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

int
config_load_buffer(const char *name, const char *buf, size_t len,
    struct tb_config **out, char *err, size_t errlen)
{
	struct loader ld;
	struct tb_config *c = NULL;
	int rc;

	*out = NULL;
	memset(&ld, 0, sizeof(ld));
	ld.fname = name;
	ld.err = err;
	ld.errlen = errlen;
	ld.p = buf;
	ld.end = buf + len;
	if (errlen > 0)
		err[0] = '\0';
	if (len > CONFIG_MAX_FILE) {
		ld_err(&ld, 0, "config", "file larger than %d bytes",
		    CONFIG_MAX_FILE);
		goto fail;
	}
	/* options before any [section] belong to [DEFAULT] */
	if (add_sect(&ld, SECT_DEFAULT, "DEFAULT", 0) < 0 ||
	    (c = config_new()) == NULL ||
	    (c->path = strdup(name)) == NULL) {
		ld_err(&ld, 0, "config", "out of memory");
		goto fail;
	}
	rc = ini_parse_stream(reader, &ld, handler, &ld);
	if (!ld.failed && rc != 0)	/* libinih saw what we did not */
		ld_err(&ld, rc > 0 ? rc : 0, "syntax", "cannot parse line");
	if (ld.failed)
		goto fail;
	apply(&ld, c);
	if (ld.failed)
		goto fail;
	if (config_finish(c) < 0) {
		ld_err(&ld, 0, "config", "out of memory");
		goto fail;
	}
	loader_free(&ld);
	*out = c;
	return 0;
fail:
	loader_free(&ld);
	config_free(c);
	return -1;
}

enum config_read_err
config_read_file(const char *path, size_t max, char **buf, size_t *len)
{
	enum config_read_err rc = CONFIG_READ_OK;
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fd, saved;

	*buf = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0)
		return CONFIG_READ_OPEN;
	if (fstat(fd, &st) < 0) {
		rc = CONFIG_READ_IO;
	} else if (!S_ISREG(st.st_mode)) {
		rc = CONFIG_READ_NOT_REGULAR;
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	} else if ((size_t)st.st_size > max) {
		rc = CONFIG_READ_TOO_LARGE;
	} else if ((*buf = malloc((size_t)st.st_size + 1)) == NULL) {
		rc = CONFIG_READ_NOMEM;
	}
	/* the file may grow while we read: never past the buffer */
	while (rc == CONFIG_READ_OK && got < (size_t)st.st_size &&
	    (n = read(fd, *buf + got, (size_t)st.st_size - got)) != 0) {
		if (n < 0 && errno != EINTR)
			rc = CONFIG_READ_IO;
		else if (n > 0)
			got += (size_t)n;
	}
	saved = errno;
	close(fd);
	errno = saved;
	if (rc != CONFIG_READ_OK) {
		free(*buf);
		*buf = NULL;
		return rc;
	}
	(*buf)[got] = '\0';
	*len = got;
	return CONFIG_READ_OK;
}

int
config_load(const char *path, struct tb_config **out, char *err, size_t errlen)
{
	char *buf;
	size_t len;
	int rc;

	*out = NULL;
	switch (config_read_file(path, CONFIG_MAX_FILE, &buf, &len)) {
	case CONFIG_READ_OK:
		break;
	case CONFIG_READ_OPEN:
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	case CONFIG_READ_NOT_REGULAR:
		snprintf(err, errlen, "%s: cannot read: %s", path,
		    errno == EISDIR ? strerror(EISDIR) : "not a regular file");
		return -1;
	case CONFIG_READ_TOO_LARGE:
		snprintf(err, errlen, "%s:0: config: file larger than %d bytes",
		    path, CONFIG_MAX_FILE);
		return -1;
	case CONFIG_READ_IO:
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	case CONFIG_READ_NOMEM:
		snprintf(err, errlen, "%s: cannot read: out of memory", path);
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
	    apply_defaults(SECT_LISTENER, l) < 0)
		goto oom;
	if (config_parse_addr(listen, &l->listen) < 0) {
		snprintf(err, errlen, "--listen: expected host:port, [v6]:port "
		    "or *:port with a numeric address");
		goto fail;
	}
	if (parse_upstream(upstream, l, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--upstream: %s", why);
		goto fail;
	}
	if (c->admin_enabled && addr_equal(&l->listen, &c->admin_listen)) {
		snprintf(err, errlen, "--listen: address already used by the "
		    "admin endpoint");
		goto fail;
	}
	if (config_finish(c) < 0)
		goto oom;
	*out = c;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	config_free(c);
	return -1;
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
