/*
 * config_opt.c: every option is one line of the table below: section, name,
 * type, default (as text, parsed by the same code as the file, so a default
 * can never disagree with what the parser accepts), where it lives, range,
 * flags, validator. The value parsers, addresses and the generic validators
 * live here too; the checks of feature options belong to their modules
 * (module.h).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"
#include "h1.h"
#include "module.h"
#include "util.h"

const char *const config_sect_names[SECT_COUNT] = {
	"DEFAULT", "admin", "listener", "profiler", "tracing", "sampling",
	"otlp", "profiler_otlp"
};

static int chk_error_log(void *, char *, size_t);
static int chk_access_log(void *, char *, size_t);
static int chk_abs_path(void *, char *, size_t);
static int chk_user(void *, char *, size_t);
static int chk_group(void *, char *, size_t);
static int chk_ident(void *, char *, size_t);
static int chk_nonempty(void *, char *, size_t);
static int chk_header_name(void *, char *, size_t);
static int chk_token(void *, char *, size_t);

static const char *const log_levels[] = { "error", "warning", "info", "debug", NULL };

static const char *const verify_modes[] = { "none", "optional", "require", NULL };

static const char *const splice_modes[] = { "off", "auto", "all", NULL };

static const char *const underscore_modes[] = { "drop", "reject", "allow", NULL };

static const char *const otlp_protocols[] = { "http/protobuf", "http/json", NULL };

static const char *const otlp_compressions[] = { "gzip", "none", NULL };

/* Mozilla's "intermediate" TLS 1.2 suites without DHE (no DH parameters to
 * manage): forward secret AEAD only. */
#define TLS_CIPHERS_DEFAULT "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_SUITES_DEFAULT "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:" \
	"TLS_CHACHA20_POLY1305_SHA256"

#define C(f)	offsetof(struct tb_config, f)
#define L(f)	offsetof(struct tb_listener_conf, f)

const struct opt config_opts[] = {
	/* sect          name                        type         default           off                                  off_n                      min    max      flags        names       check */
	{ SECT_DEFAULT,  "workers",                  OT_INT,      "auto",           C(workers),                          0,                         1,     256,     OPT_AUTO,    NULL,       NULL },
	{ SECT_DEFAULT,  "log_level",                OT_ENUM,     "info",           C(log_level),                        0,                         0,     0,       0,           log_levels, NULL },
	{ SECT_DEFAULT,  "error_log",                OT_STR,      "stderr",         C(error_log),                        0,                         0,     0,       0,           NULL,       chk_error_log },
	{ SECT_DEFAULT,  "access_log",               OT_STR,      "off",            C(access_log),                       0,                         0,     0,       0,           NULL,       chk_access_log },
	{ SECT_DEFAULT,  "pid_file",                 OT_STR,      "",               C(pid_file),                         0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_DEFAULT,  "user",                     OT_STR,      "",               C(user),                             0,                         0,     0,       0,           NULL,       chk_user },
	{ SECT_DEFAULT,  "group",                    OT_STR,      "",               C(group),                            0,                         0,     0,       0,           NULL,       chk_group },
	{ SECT_DEFAULT,  "max_connections",          OT_UINT,     "10000",          C(max_connections),                  0,                         1,     1000000, 0,           NULL,       NULL },
	{ SECT_DEFAULT,  "backlog",                  OT_INT,      "1024",           C(backlog),                          0,                         1,     65535,   0,           NULL,       NULL },
	{ SECT_DEFAULT,  "drain_timeout",            OT_DUR,      "30",             C(drain_timeout),                    0,                         0,     86400,   0,           NULL,       NULL },
	{ SECT_DEFAULT,  "tls_ticket_key_rotation",  OT_DUR,      "3600",           C(tls_ticket_key_rotation),          0,                         60,    604800,  0,           NULL,       NULL },
	{ SECT_DEFAULT,  "splice",                   OT_ENUM,     "auto",           C(splice),                           0,                         0,     0,       0,           splice_modes, NULL },
	{ SECT_DEFAULT,  "underscore_headers",       OT_ENUM,     "drop",           C(underscore_headers),               0,                         0,     0,       0,           underscore_modes, NULL },

	{ SECT_ADMIN,    "listen",                   OT_ADDR,     "127.0.0.1:9180", C(admin_listen),                     C(admin_enabled),          0,     0,       OPT_OFF,     NULL,       NULL },
	{ SECT_ADMIN,    "auth_token",               OT_STR,      "",               C(admin_auth_token),                 0,                         0,     0,       0,           NULL,       chk_token },

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
	{ SECT_LISTENER, "trusted_proxies",          OT_CIDRS,    "",               L(trusted_proxies),                  L(n_trusted_proxies),      0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "forwarded_header",         OT_BOOL,     "false",          L(forwarded_header),                 0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "tls_certificate",          OT_STR,      "",               L(tls_certificate),                  0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_LISTENER, "tls_key",                  OT_STR,      "",               L(tls_key),                          0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_LISTENER, "tls_sni_certificates",     OT_LIST,     "",               L(tls_sni_certificates),             L(n_tls_sni_certificates), 0,     0,       0,           NULL,       NULL },
	{ SECT_LISTENER, "tls_min_version",          OT_STR,      "1.2",            L(tls_min_version),                  0,                         0,     0,       0,           NULL,       NULL },
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
	{ SECT_PROFILER, "connection_string",        OT_STR,      "redis://127.0.0.1:6379", C(profiler.connection_string), 0,                      0,     0,       0,           NULL,       NULL },
	{ SECT_PROFILER, "filter_error_trace",       OT_BOOL,     "false",          C(profiler.filter_error_trace),      0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_PROFILER, "trace_sqlalchemy",         OT_BOOL,     "false",          C(profiler.trace_sqlalchemy),        0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_PROFILER, "sentinel_service_name",    OT_STR,      "mymaster",       C(profiler.sentinel_service_name),   0,                         0,     0,       0,           NULL,       chk_nonempty },
	{ SECT_PROFILER, "socket_timeout",           OT_DUR,      "0.1",            C(profiler.socket_timeout),          0,                         0.001, 86400,   0,           NULL,       NULL },

	{ SECT_TRACING,  "extract",                  OT_LIST,     "osprofiler, w3c, b3, jaeger, xray, datadog, gcp, ot", C(tracing.extract), C(tracing.n_extract), 0, 0, 0, NULL,  NULL },
	{ SECT_TRACING,  "inject",                   OT_LIST,     "osprofiler, w3c", C(tracing.inject),                  C(tracing.n_inject),       0,     0,       0,           NULL,       NULL },
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
	{ SECT_SAMPLING, "policy_url",               OT_STR,      "",               C(sampling.policy_url),              0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "policy_poll_interval",     OT_DUR,      "60",             C(sampling.policy_poll_interval),    0,                         1,     86400,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "default_probability",      OT_DOUBLE,   "0.001",          C(sampling.default_probability),     0,                         0,     1,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "forced_max_per_second",    OT_DOUBLE,   "10",             C(sampling.forced_max_per_second),   0,                         0,     NOMAX,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "incoming_max_per_second",  OT_DOUBLE,   "100",            C(sampling.incoming_max_per_second), 0,                         0,     NOMAX,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "max_traces_per_second",    OT_DOUBLE,   "0",              C(sampling.max_traces_per_second),   0,                         0,     NOMAX,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "operation_rules",          OT_LIST,     "",               C(sampling.operation_rules),         C(sampling.n_operation_rules), 0, 0,      OPT_LINES,   NULL,       NULL },
	{ SECT_SAMPLING, "adaptive",                 OT_BOOL,     "false",          C(sampling.adaptive),                0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "target_traces_per_second", OT_DOUBLE,   "1",              C(sampling.target_traces_per_second), 0,                        0.001, 1000000, 0,           NULL,       NULL },
	{ SECT_SAMPLING, "delta_tolerance",          OT_DOUBLE,   "0.3",            C(sampling.delta_tolerance),         0,                         0,     1,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "calculation_interval",     OT_DUR,      "60",             C(sampling.calculation_interval),    0,                         1,     3600,    0,           NULL,       NULL },
	{ SECT_SAMPLING, "initial_sampling_probability", OT_DOUBLE, "0.001",        C(sampling.initial_sampling_probability), 0,                    0,     1,       0,           NULL,       NULL },
	{ SECT_SAMPLING, "min_sampling_probability", OT_DOUBLE,   "0.00001",        C(sampling.min_sampling_probability), 0,                        0.0000001, 1,   0,           NULL,       NULL },
	{ SECT_SAMPLING, "min_traces_per_second",    OT_DOUBLE,   "0.0166667",      C(sampling.min_traces_per_second),   0,                         0,     1000000, 0,           NULL,       NULL },
	{ SECT_SAMPLING, "adaptive_redis",           OT_STR,      "",               C(sampling.adaptive_redis),          0,                         0,     0,       0,           NULL,       NULL },

	{ SECT_OTLP,     "endpoint",                 OT_STR,      "",               C(otlp.endpoint),                    0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_OTLP,     "protocol",                 OT_ENUM,     "http/protobuf",  C(otlp.protocol),                    0,                         0,     0,       0,           otlp_protocols, NULL },
	{ SECT_OTLP,     "compression",              OT_ENUM,     "gzip",           C(otlp.compression),                 0,                         0,     0,       0,           otlp_compressions, NULL },
	{ SECT_OTLP,     "headers",                  OT_LIST,     "",               C(otlp.headers),                     C(otlp.n_headers),         0,     0,       0,           NULL,       NULL },
	{ SECT_OTLP,     "timeout",                  OT_DUR,      "10",             C(otlp.timeout),                     0,                         0.001, 3600,    0,           NULL,       NULL },
	{ SECT_OTLP,     "batch_size",               OT_UINT,     "512",            C(otlp.batch_size),                  0,                         1,     65536,   0,           NULL,       NULL },
	{ SECT_OTLP,     "flush_interval",           OT_DUR,      "5",              C(otlp.flush_interval),              0,                         0.001, 3600,    0,           NULL,       NULL },
	{ SECT_OTLP,     "queue_bytes",              OT_SIZE,     "16m",            C(otlp.queue_bytes),                 0,                         1024,  1073741824, 0,        NULL,       NULL },
	{ SECT_OTLP,     "ca_file",                  OT_STR,      "",               C(otlp.ca_file),                     0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_OTLP,     "client_cert",              OT_STR,      "",               C(otlp.client_cert),                 0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_OTLP,     "client_key",               OT_STR,      "",               C(otlp.client_key),                  0,                         0,     0,       0,           NULL,       chk_abs_path },
	{ SECT_OTLP,     "service_name_prefix",      OT_STR,      "",               C(otlp.service_name_prefix),         0,                         0,     0,       0,           NULL,       NULL },
	{ SECT_OTLP,     "resource_attributes",      OT_LIST,     "",               C(otlp.resource_attributes),         C(otlp.n_resource_attributes), 0, 0,     0,           NULL,       NULL },

	{ SECT_PROFILER_OTLP, "service_name_prefix", OT_STR,      "",               C(otlp.osp_service_name_prefix),     0,                         0,     0,       0,           NULL,       NULL },
};

#undef C
#undef L

const size_t config_n_opts = sizeof(config_opts) / sizeof(config_opts[0]);

/* ---------------------------------------------------------------- helpers */

/*
 * Copy s into buf for a message: printable ASCII only, at most 40 bytes, so
 * hostile names cannot forge log lines or flood them. Returns buf.
 */
const char *
config_printable(const char *s, char *buf, size_t len)
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

void
config_free_strv(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* Trim ASCII whitespace from both ends of [*s, *e). */
void
config_trim(const char **s, const char **e)
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

/*
 * [::ffff:a.b.c.d]:port is a.b.c.d:port. Our IPv6 sockets are IPV6_V6ONLY
 * (listener.c), which cannot bind a v4-mapped address (EINVAL), and the
 * checks between listeners must see it as the IPv4 address it reaches.
 */
static void
v4mapped_to_v4(struct tb_addr *a)
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;

	if (a->ss.ss_family != AF_INET6)
		return;
	memcpy(&s6, &a->ss, sizeof(s6));
	if (!IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr))
		return;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_port = s6.sin6_port;
	memcpy(&s4.sin_addr, &s6.sin6_addr.s6_addr[12], sizeof(s4.sin_addr));
	memset(&a->ss, 0, sizeof(a->ss));
	memcpy(&a->ss, &s4, sizeof(s4));
	a->len = sizeof(s4);
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
	v4mapped_to_v4(a);
	memcpy(a->text, s, len + 1);
	return 0;
}

/* Same family and port, and the same address or, with wildcard, either
 * one the family's any-address. */
static int
addr_match(const struct tb_addr *x, const struct tb_addr *y, int wildcard)
{
	const struct sockaddr_in *x4, *y4;
	const struct sockaddr_in6 *x6, *y6;

	if (x->ss.ss_family != y->ss.ss_family)
		return 0;
	if (x->ss.ss_family == AF_INET) {
		x4 = (const struct sockaddr_in *)&x->ss;
		y4 = (const struct sockaddr_in *)&y->ss;
		return x4->sin_port == y4->sin_port &&
		    (x4->sin_addr.s_addr == y4->sin_addr.s_addr || (wildcard &&
		    (x4->sin_addr.s_addr == htonl(INADDR_ANY) ||
		    y4->sin_addr.s_addr == htonl(INADDR_ANY))));
	}
	if (x->ss.ss_family == AF_INET6) {
		x6 = (const struct sockaddr_in6 *)&x->ss;
		y6 = (const struct sockaddr_in6 *)&y->ss;
		return x6->sin6_port == y6->sin6_port &&
		    (memcmp(&x6->sin6_addr, &y6->sin6_addr,
		    sizeof(x6->sin6_addr)) == 0 || (wildcard &&
		    (IN6_IS_ADDR_UNSPECIFIED(&x6->sin6_addr) ||
		    IN6_IS_ADDR_UNSPECIFIED(&y6->sin6_addr))));
	}
	return 0;
}

/* Same family, address and port. */
int
config_addr_equal(const struct tb_addr *x, const struct tb_addr *y)
{
	return addr_match(x, y, 0);
}

int
config_addr_overlap(const struct tb_addr *x, const struct tb_addr *y)
{
	return addr_match(x, y, 1);
}

/*
 * "http://host[:port][/]" into l's upstream fields (host a name, an IPv4
 * address or a bracketed IPv6 one; port 80 when absent), resolved now with
 * getaddrinfo. Replaces whatever l held. 0, or -1 with why.
 */
int
config_parse_upstream(const char *v, struct tb_listener_conf *l, char *why, size_t wl)
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

/*
 * "10.0.0.0/8", "192.0.2.7" (/32), "2001:db8::/32", "::1" (/128): numeric
 * only; host bits set below the prefix are an error (a typo, most often).
 */
static int
parse_cidr(const char *s, struct tb_cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	unsigned long long bits;
	unsigned max, i;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	memset(c, 0, sizeof(*c));
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	bits = max;
	if (slash != NULL && (parse_uint(slash, strlen(slash), &bits) < 0 ||
	    bits > max))
		return -1;
	c->bits = (unsigned)bits;
	for (i = c->bits; i < max; i++)
		if (c->addr[i / 8] & (0x80u >> (i % 8)))
			return -1;
	return 0;
}

int
config_cidr_match(const struct tb_cidr *v, size_t n, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };
	const uint8_t *a;
	size_t k;
	unsigned i;
	int fam;

	if (sa->sa_family == AF_INET) {
		fam = AF_INET;
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		fam = AF_INET6;
		a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(a, mapped, 12) == 0) {	/* ::ffff:a.b.c.d */
			fam = AF_INET;
			a += 12;
		}
	} else {
		return 0;
	}
	for (k = 0; k < n; k++) {
		if (v[k].family != fam)
			continue;
		for (i = 0; i < v[k].bits; i++)
			if ((a[i / 8] ^ v[k].addr[i / 8]) & (0x80u >> (i % 8)))
				break;
		if (i == v[k].bits)
			return 1;
	}
	return 0;
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

/* [admin] auth_token: RFC 6750 2.1 b64token characters, 16 to 256 of
 * them (short tokens are guessable). A secret: the message never quotes
 * any of it. */
static int
chk_token(void *field, char *why, size_t wl)
{
	const char *s = *(char **)field;
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("-._~+/=", s[i]) == NULL)
			break;
	if (s[i] == '\0' && i >= 16 && i <= 256)
		return 0;
	snprintf(why, wl, "expected 16 to 256 letters, digits or -._~+/= "
	    "(value not shown: it is a secret)");
	return -1;
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
	char **vec = NULL;
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
		config_trim(&s, &e);
		if (s == e) {
			if (left == ',' && right == ',' && !by_line) {
				snprintf(why, wl, "empty member in list");
				goto fail;
			}
		} else {
			if (tb_grow(&vec, &cap, n + 2, sizeof(*vec)) < 0)
				goto oom;
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
	config_free_strv(vec);
	return -1;
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
int
config_opt_set(const struct opt *o, void *base, const char *v, char *why, size_t wl)
{
	void *f = field_of(o, base);
	struct tb_cidr *cidrs;
	config_check_fn check;
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
		return config_parse_upstream(v, base, why, wl);
	case OT_LIST:
		if (split_list(v, (o->flags & OPT_LINES) != 0, &vec, &n, why,
		    wl) < 0)
			return -1;
		config_free_strv(*(char ***)f);
		*(char ***)f = vec;
		*(size_t *)((char *)base + o->off_n) = n;
		break;
	case OT_CIDRS:
		if (split_list(v, 0, &vec, &n, why, wl) < 0)
			return -1;
		if ((cidrs = calloc(n ? n : 1, sizeof(*cidrs))) == NULL) {
			config_free_strv(vec);
			snprintf(why, wl, "out of memory");
			return -1;
		}
		for (i = 0; i < n; i++)
			if (parse_cidr(vec[i], &cidrs[i]) < 0) {
				snprintf(why, wl, "member %zu: expected an IPv4 or "
				    "IPv6 address, optionally /prefix-length", i + 1);
				config_free_strv(vec);
				free(cidrs);
				return -1;
			}
		config_free_strv(vec);
		free(*(struct tb_cidr **)f);
		*(struct tb_cidr **)f = cidrs;
		*(size_t *)((char *)base + o->off_n) = n;
		break;
	}
	if (o->check != NULL && o->check(f, why, wl) < 0)
		return -1;
	/* then the owning module's own check, if it registered one */
	if ((check = modules_opt_check(config_sect_names[o->sect], o->name)) != NULL)
		return check(f, why, wl);
	return 0;
}

/*
 * Put every option of kind sect at its default in base. Defaults are
 * constants of this file, so failing here is a bug, not an input error.
 */
int
config_opt_defaults(enum sect_kind sect, void *base)
{
	char why[256];
	size_t i;

	for (i = 0; i < config_n_opts; i++) {
		if (config_opts[i].sect != sect)
			continue;
		if (config_opts[i].type == OT_TRIBOOL)
			*(int *)field_of(&config_opts[i], base) = -1;
		if (config_opts[i].def != NULL &&
		    config_opt_set(&config_opts[i], base, config_opts[i].def, why, sizeof(why)) < 0)
			return -1;
	}
	return 0;
}

/* Free what options of kind sect own in base (not base itself). */
void
config_opt_free(enum sect_kind sect, void *base)
{
	size_t i;
	void *f;

	for (i = 0; i < config_n_opts; i++) {
		if (config_opts[i].sect != sect)
			continue;
		f = field_of(&config_opts[i], base);
		switch (config_opts[i].type) {
		case OT_STR:
			free(*(char **)f);
			*(char **)f = NULL;
			break;
		case OT_LIST:
			config_free_strv(*(char ***)f);
			*(char ***)f = NULL;
			break;
		case OT_CIDRS:
			free(*(struct tb_cidr **)f);
			*(struct tb_cidr **)f = NULL;
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

const struct opt *
config_opt_find(enum sect_kind sect, const char *name)
{
	size_t i;

	for (i = 0; i < config_n_opts; i++)
		if (config_opts[i].sect == sect && strcmp(config_opts[i].name, name) == 0)
			return &config_opts[i];
	return NULL;
}

