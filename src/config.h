/*
 * config.h: the INI file turned into an immutable, reference-counted
 * struct tb_config. A reload builds a whole new one and swaps it in; the old
 * one lives until its last user (a connection still relaying a request under
 * the old upstream, say) drops its reference.
 *
 * Durations are in seconds (double: "0.5" is fine), sizes in bytes.
 */
#ifndef TB_CONFIG_H
#define TB_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#define TB_LOG_ERR	0
#define TB_LOG_WARN	1
#define TB_LOG_INFO	2
#define TB_LOG_DEBUG	3

struct tb_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[128];		/* as written in the file, e.g. "[::1]:8080" */
};

/* An address block of trusted_proxies: family AF_INET or AF_INET6. */
struct tb_cidr {
	int family;
	uint8_t addr[16];	/* network byte order, host bits zero */
	unsigned bits;		/* prefix length */
};

/* 1 if sa (an accepted peer; IPv4-mapped IPv6 counts as IPv4) is inside
 * one of the n blocks. */
int config_cidr_match(const struct tb_cidr *v, size_t n,
    const struct sockaddr *sa);

struct tls_server;
struct tls_client;

struct tb_listener_conf {
	char *name;		/* NAME of [listener:NAME] */
	struct tb_addr listen;
	char *upstream;		/* "http[s]://host:port" as written */
	int upstream_tls;	/* 1 for https:// */
	char *upstream_host;	/* host part, for logs and the Host of 0.9 clients */
	uint16_t upstream_port;
	struct tb_addr upstream_addr;	/* resolved at load time (getaddrinfo) */
	char *service;		/* name spans carry; default = NAME */
	double client_header_timeout;	/* default 30 */
	double client_idle_timeout;	/* keep-alive idle, default 60 */
	double upstream_connect_timeout;	/* default 5 */
	double upstream_timeout;	/* idle time waiting on upstream, default 60 */
	size_t max_header_bytes;	/* default 65536 */
	unsigned max_headers;		/* default 100, <= H1_MAX_HEADERS_CAP */
	int trust_incoming_sampling;	/* honour the caller's sampled flag; default 1 */
	int x_forwarded;		/* append X-Forwarded-For, set -Proto/-Host; default 1 */
	int keep_proxy_authorization;	/* forward Proxy-Authorization; default 0 */
	/*
	 * Peers whose forwarding headers are believed (another proxy in
	 * front): their X-Forwarded-For is appended to, their Forwarded,
	 * X-Forwarded-Proto/-Host/-Port/-Prefix and X-Real-IP pass. From
	 * anyone else those are removed and ours replace them. Default none.
	 */
	struct tb_cidr *trusted_proxies;
	size_t n_trusted_proxies;
	int forwarded_header;		/* also send RFC 7239 Forwarded; default 0 */

	/* TLS termination: on when tls_certificate is set. Paths are absolute. */
	char *tls_certificate;		/* PEM, leaf first, then the chain */
	char *tls_key;
	char **tls_sni_certificates;	/* "CERT:KEY" pairs; NULL-terminated */
	size_t n_tls_sni_certificates;
	char *tls_min_version;		/* "1.2" (default) or "1.3" (also "TLSv1.x") */
	char *tls_ciphers;		/* TLS 1.2 cipher list */
	char *tls_ciphersuites;		/* TLS 1.3 suites */
	unsigned tls_session_cache_size;	/* entries; 0 = no server-side cache */
	double tls_session_timeout;	/* sessions and tickets; default 300 */
	int tls_session_tickets;	/* default 1 */
	char *tls_client_ca;		/* CA bundle for client certificates */
	int tls_verify_client;		/* TB_VERIFY_* */
	char *tls_client_subject_header;	/* header for the verified subject */

	/* https:// upstreams */
	int upstream_tls_verify;	/* default 1 */
	char *upstream_tls_ca;		/* NULL = the system store */
	char *upstream_tls_server_name;	/* NULL = the upstream host */
	char *upstream_tls_certificate;	/* client certificate, with ..._key */
	char *upstream_tls_key;

	/* Built from the above by tls_conf_attach (tls.c), freed with the
	 * config through TLS's slot in tb_config.mod; NULL for plain HTTP. */
	struct tls_server *tls;
	struct tls_client *tls_up;

	int line;		/* line of the section header, for messages */
	int *opt_lines;		/* line each option was set on; see config_line() */
};

#define TB_VERIFY_NONE		0
#define TB_VERIFY_OPTIONAL	1
#define TB_VERIFY_REQUIRE	2

struct tb_profiler_conf {
	int enabled;			/* default 0 */
	char **hmac_keys;		/* split on ',', trimmed; NULL-terminated */
	size_t n_hmac_keys;
	char *connection_string;	/* default "redis://127.0.0.1:6379" */
	int filter_error_trace;		/* default 0 */
	char *sentinel_service_name;	/* default "mymaster" */
	double socket_timeout;		/* default 0.1 */
	int trace_sqlalchemy;		/* accepted so operators can paste their block; unused */
};

/* [tracing]: which wire formats we read and write, and what the edge span says. */
struct tb_tracing_conf {
	/*
	 * Format names in the order written, canonical lower case, each one of
	 * osprofiler w3c b3 jaeger xray datadog gcp ot; NULL-terminated. The trace
	 * module maps them onto its codec table by name.
	 */
	char **extract;			/* default all eight */
	size_t n_extract;
	char **inject;			/* default osprofiler, w3c */
	size_t n_inject;
	int keep_foreign_headers;	/* default 0 */
	int sample_new;			/* -1 unset (policy decides), 0 or 1 */
	int server_timing;		/* default 1 */
	int response_trace_id;		/* default 1 */
	int request_id_from_trace;	/* default 0 */
	char *span_name;		/* default "proxy"; [A-Za-z0-9_.]+ */
	char *project;			/* default "tracebridge" */
	char *host;			/* default gethostname() */
	unsigned span_ttl;		/* seconds, 0 = never expire */
	size_t span_buffer_bytes;	/* default 16 MiB */
	/* query parameters whose values are never recorded, besides the
	 * built-in list (redact.h); NULL-terminated */
	char **redact_query_params;
	size_t n_redact_query_params;
};

/*
 * [otlp]: export of the edge spans to an OpenTelemetry collector (module
 * otlp_export.c), named after the SDK's OTEL_EXPORTER_OTLP_* / OTEL_BSP_*
 * settings. Empty strings are stored as NULL.
 */
struct tb_otlp_conf {
	char *endpoint;			/* http(s)://host[:port][/path]; NULL = off */
	int protocol;			/* 0 http/protobuf (default), 1 http/json */
	int compression;		/* 0 gzip (default), 1 none */
	char **headers;			/* "key=value" each; never logged */
	size_t n_headers;
	double timeout;			/* default 10 s, one export attempt */
	unsigned batch_size;		/* default 512 spans */
	double flush_interval;		/* default 5 s */
	size_t queue_bytes;		/* default 16 MiB per worker */
	char *ca_file;			/* https: CA bundle (default: system store) */
	char *client_cert;		/* https: our certificate and key */
	char *client_key;
	char *service_name_prefix;	/* NULL: [profiler_otlp] service_name_prefix */
	char **resource_attributes;	/* "key=value" each */
	size_t n_resource_attributes;
	char *osp_service_name_prefix;	/* [profiler_otlp] service_name_prefix */
};

/* [sampling]: central policies. Empty strings are stored as NULL. */
struct tb_sampling_conf {
	char *policy_file;
	char *policy_redis_key;
	char *policy_channel;
	char *policy_url;		/* http:// only */
	double policy_poll_interval;	/* default 60, >= 1 */
	double default_probability;	/* default 0.001 */
	double forced_max_per_second;	/* default 10, 0 = unlimited */
	double incoming_max_per_second;	/* default 100, 0 = unlimited */
	double max_traces_per_second;	/* default 0 = unlimited */
	/*
	 * One rule per element, as written: "prefix:<path-prefix> <name>" or
	 * "regex:<ERE> <name>" (the regex compiled once at load to validate it).
	 */
	char **operation_rules;
	size_t n_operation_rules;
	/* Fleet-wide adaptive sampling (issue 15, adaptive.c); names and
	 * defaults are Jaeger's where it has them. */
	int adaptive;			/* default 0 */
	double target_traces_per_second;	/* per service+operation, fleet; 1 */
	double delta_tolerance;		/* 0.3 */
	double calculation_interval;	/* s, default 60, >= 1 */
	double initial_sampling_probability;	/* 0.001 */
	double min_sampling_probability;	/* 0.00001 */
	double min_traces_per_second;	/* per operation per proxy; 1/60 */
	char *adaptive_redis;		/* NULL = [profiler] connection_string */
};

/* [DEFAULT] splice */
enum tb_splice {
	TB_SPLICE_OFF = 0,
	TB_SPLICE_AUTO,		/* response bodies: plaintext, large enough */
	TB_SPLICE_ALL,		/* request bodies too */
};

/*
 * [DEFAULT] underscore_headers: request fields with '_' in their name. WSGI
 * servers (every OpenStack API) map X_Foo and X-Foo to the same HTTP_X_FOO,
 * so an underscore name can pass for a header the proxy removes or sets.
 */
enum tb_underscore {
	TB_UNDERSCORE_DROP = 0,	/* remove them (nginx's underscores_in_headers off) */
	TB_UNDERSCORE_REJECT,	/* 400 */
	TB_UNDERSCORE_ALLOW,	/* pass them, but not the twins of ours */
};

#define TB_CONF_SLOTS	8	/* >= TB_MODULES_N (module.h) */

struct tb_config {
	int refcnt;		/* atomic; see config_ref/config_unref */
	char *path;		/* NULL when built from --listen/--upstream */

	/* [DEFAULT] */
	int workers;			/* resolved: "auto" = number of cores */
	int log_level;			/* TB_LOG_*; default info */
	char *error_log;		/* "stderr" | "syslog" | path; default stderr */
	char *access_log;		/* "off" | "stderr" | "syslog" | path; default off */
	char *pid_file;			/* NULL = none */
	/* user/group: checked to exist at load time (getpwnam/getgrnam) */
	char *user;			/* NULL = don't change */
	char *group;
	unsigned max_connections;	/* per process; default 10000 */
	int backlog;			/* listen(2) queue per socket; 1024 */
	double drain_timeout;		/* default 30 */
	double tls_ticket_key_rotation;	/* a new session ticket key this often; 3600 */
	int splice;			/* TB_SPLICE_*: splice(2) plaintext bodies; auto */
	int underscore_headers;		/* TB_UNDERSCORE_*; default drop */

	/* [admin] */
	int admin_enabled;		/* listen = off disables */
	struct tb_addr admin_listen;	/* default 127.0.0.1:9180 */
	char *admin_auth_token;		/* bearer token; NULL = none. A secret */

	struct tb_listener_conf *listeners;
	size_t n_listeners;

	struct tb_profiler_conf profiler;
	struct tb_tracing_conf tracing;
	struct tb_sampling_conf sampling;
	struct tb_otlp_conf otlp;

	int *opt_lines;		/* line each non-listener option was set on */

	/*
	 * What each module (module.h) derives from this config, in its slot
	 * (enum tb_module_id): tracing's codec tables and HMAC keys, TLS's
	 * contexts (those hang on the listeners; the slot's free releases
	 * them). Freed with the config, last module first, so it lives exactly
	 * as long as the requests that use it.
	 */
	struct tb_conf_slot {
		void *data;
		void (*free)(struct tb_config *cfg, void *data);
	} mod[TB_CONF_SLOTS];
};

/* Limits that keep a hostile file from costing much. */
#define CONFIG_MAX_FILE	(1024 * 1024)	/* bytes; larger files are refused */
#define CONFIG_MAX_LISTENERS	1024

/*
 * Load and validate path. On success returns 0 and *out (refcnt 1, caller
 * owns). On error returns -1, *out NULL, and writes the first error into err
 * as "FILE:LINE: option: reason" (LINE 0 for the whole file, e.g. no
 * listener), or "FILE: cannot open: strerror". Never a value: values may be
 * secrets. Unknown sections and options, bad values, duplicate options,
 * duplicate listener names and duplicate listen addresses are errors.
 * Upstream host names are resolved here (getaddrinfo: may block on DNS).
 */
int config_load(const char *path, struct tb_config **out, char *err, size_t errlen);

/*
 * For -t: could the files c names for writing (error_log and access_log
 * when they are paths, pid_file) be opened by this process as the daemon
 * will open them at start? Creates, truncates and changes nothing (see
 * config.c for how). 0, or -1 with "FILE:LINE: option: reason" in err,
 * the reason naming the path and the errno text. Not for reloads: those
 * run with the privileges dropped and keep the files already open.
 */
int config_check_files(const struct tb_config *c, char *err, size_t errlen);

/*
 * Build a config from the command-line shorthand (--listen, --upstream):
 * one listener named "default", every other option at its default.
 */
int config_from_args(const char *listen, const char *upstream,
    struct tb_config **out, char *err, size_t errlen);

/*
 * Parse "host:port" / "[v6]:port" / "*:port" into a, numerics only, no DNS.
 * "*" is 0.0.0.0 (write "[::]:port" for IPv6); a v4-mapped IPv6 address is
 * stored as the IPv4 one. Returns 0 or -1.
 */
int config_parse_addr(const char *s, struct tb_addr *a);

/*
 * Would listening sockets on x and y take connections for a common
 * address? Same family and port, and equal addresses or one of them the
 * wildcard (0.0.0.0, ::). IPv4 and IPv6 never overlap: our IPv6 sockets are
 * IPV6_V6ONLY, and v4-mapped addresses were made IPv4 when parsed.
 */
int config_addr_overlap(const struct tb_addr *x, const struct tb_addr *y);

/*
 * Same as config_load() but reads the file from memory (len bytes, NULs are
 * errors); name is used as FILE in messages and stored as path. For the fuzzer
 * and the tests.
 */
int config_load_buffer(const char *name, const char *buf, size_t len,
    struct tb_config **out, char *err, size_t errlen);

/*
 * The line of the file on which option (a [listener:NAME] option name) was
 * set for l, or the line of l's section header when it has its default;
 * for messages of modules that check values later (tls.c loads the files).
 */
int config_line(const struct tb_listener_conf *l, const char *option);

/* The line on which [section] option (not a listener's) was set, 0 when it
 * has its default: a module tells "written" from "defaulted" by it. */
int config_opt_line(const struct tb_config *c, const char *section,
    const char *option);

/*
 * Checks owned by the modules (module.h lists them), so this file and
 * config.c know no feature's options. A value check runs as its option is
 * read, on the parsed field (for lists the char **, which it may rewrite in
 * place); 0, or -1 with the reason in why, never quoting a secret.
 */
typedef int (*config_check_fn)(void *field, char *why, size_t wl);

struct tb_opt_check {
	const char *section;	/* "listener" for every [listener:NAME] */
	const char *option;
	config_check_fn check;
};

/* Every configuration error reads "FILE:LINE: what: reason" (just "what:
 * reason" for --listen/--upstream configs): for cross checks of modules. */
void config_errorf(const struct tb_config *c, char *err, size_t errlen,
    int line, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* s for a message: printable ASCII, at most 40 bytes then "...". */
const char *config_printable(const char *s, char *buf, size_t len);

struct tb_config *config_ref(struct tb_config *c);
void config_unref(struct tb_config *c);	/* frees at zero; NULL is fine */

#endif
