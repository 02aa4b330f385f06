/*
 * test_config.c: config_load() on the shipped file, every default, a table
 * of bad files with the exact message each must give, hostile input, and
 * the promise that no secret ever reaches a message.
 *
 * TB_SRCDIR points at the source tree (for etc/tracebridge.conf).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tb_test.h"

static char tmpdir[64];

/* Write len bytes to a fresh file in tmpdir; returns its path (static). */
static const char *
write_file(const char *data, size_t len)
{
	static char path[128];
	static int n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/t%d.conf", tmpdir, n++);
	f = fopen(path, "wb");
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	fwrite(data, 1, len, f);
	fclose(f);
	return path;
}

/* Load text from a temp file; 0/-1 like config_load; path of it in *pathp. */
static int
load_text(const char *text, struct tb_config **c, char *err, size_t errlen,
    const char **pathp)
{
	const char *p = write_file(text, strlen(text));

	if (pathp != NULL)
		*pathp = p;
	return config_load(p, c, err, errlen);
}

#define LST "[listener:a]\nlisten = 127.0.0.1:8080\nupstream = http://127.0.0.1:5000\n"

static void
test_shipped(void)
{
	const char *src = getenv("TB_SRCDIR");
	char path[512], err[512] = "";
	struct tb_config *c = NULL;

	snprintf(path, sizeof(path), "%s/etc/tracebridge.conf",
	    src != NULL ? src : ".");
	CHECKF(config_load(path, &c, err, sizeof(err)) == 0, "%s", err);
	if (c == NULL)
		return;
	CHECK(c->n_listeners == 1);
	CHECK(strcmp(c->listeners[0].name, "keystone") == 0);
	CHECK(strcmp(c->listeners[0].listen.text, "127.0.0.1:8080") == 0);
	CHECK(strcmp(c->listeners[0].upstream, "http://127.0.0.1:5000") == 0);
	CHECK(c->listeners[0].upstream_port == 5000);
	CHECK(c->listeners[0].max_header_bytes == 65536);
	CHECK(c->tracing.sample_new == -1);
	CHECK(c->pid_file == NULL && c->user == NULL);
	config_unref(c);
}

static void
test_defaults(void)
{
	struct tb_config *c = NULL;
	struct tb_listener_conf *l;
	struct sockaddr_in *sin;
	char err[512] = "";
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	CHECKF(load_text(LST, &c, err, sizeof(err), NULL) == 0, "%s", err);
	if (c == NULL)
		return;
	CHECK(c->refcnt == 1);
	CHECK(c->path != NULL);
	CHECK(c->workers == (ncpu < 1 ? 1 : ncpu > 256 ? 256 : ncpu));
	CHECK(c->log_level == TB_LOG_INFO);
	CHECK(strcmp(c->error_log, "stderr") == 0);
	CHECK(strcmp(c->access_log, "off") == 0);
	CHECK(c->pid_file == NULL && c->user == NULL && c->group == NULL);
	CHECK(c->max_connections == 10000);
	CHECK(c->backlog == 1024);
	CHECK(c->drain_timeout == 30);
	CHECK(c->admin_enabled == 1);
	CHECK(strcmp(c->admin_listen.text, "127.0.0.1:9180") == 0);
	sin = (struct sockaddr_in *)&c->admin_listen.ss;
	CHECK(sin->sin_family == AF_INET && ntohs(sin->sin_port) == 9180);

	CHECK(c->n_listeners == 1);
	l = &c->listeners[0];
	CHECK(strcmp(l->name, "a") == 0);
	CHECK(strcmp(l->service, "a") == 0);
	CHECK(l->line == 1);
	CHECK(l->upstream_tls == 0);
	CHECK(l->tls_certificate == NULL && l->tls_key == NULL);
	CHECK(l->n_tls_sni_certificates == 0);
	CHECK(strcmp(l->tls_min_version, "1.2") == 0);
	CHECK(strstr(l->tls_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256") == l->tls_ciphers);
	CHECK(strcmp(l->tls_ciphersuites, "TLS_AES_128_GCM_SHA256:"
	    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") == 0);
	CHECK(l->tls_session_cache_size == 20480 && l->tls_session_timeout == 300);
	CHECK(l->tls_session_tickets == 1 && l->tls_verify_client == TB_VERIFY_NONE);
	CHECK(l->tls_client_ca == NULL && l->tls_client_subject_header == NULL);
	CHECK(l->upstream_tls_verify == 1 && l->upstream_tls_ca == NULL);
	CHECK(c->tls_ticket_key_rotation == 3600);
	CHECK(strcmp(l->upstream_host, "127.0.0.1") == 0);
	CHECK(l->upstream_port == 5000);
	CHECK(strcmp(l->upstream_addr.text, "127.0.0.1:5000") == 0);
	CHECK(l->upstream_addr.ss.ss_family == AF_INET);
	CHECK(l->client_header_timeout == 30);
	CHECK(l->client_idle_timeout == 60);
	CHECK(l->upstream_connect_timeout == 5);
	CHECK(l->upstream_timeout == 60);
	CHECK(l->max_header_bytes == 65536);
	CHECK(l->max_headers == 100);
	CHECK(l->trust_incoming_sampling == 1);
	CHECK(l->x_forwarded == 1);
	CHECK(l->keep_proxy_authorization == 0);

	CHECK(c->profiler.enabled == 0);
	CHECK(c->profiler.n_hmac_keys == 0 && c->profiler.hmac_keys != NULL &&
	    c->profiler.hmac_keys[0] == NULL);
	CHECK(strcmp(c->profiler.connection_string, "redis://127.0.0.1:6379") == 0);
	CHECK(c->profiler.filter_error_trace == 0);
	CHECK(strcmp(c->profiler.sentinel_service_name, "mymaster") == 0);
	CHECK(c->profiler.socket_timeout == 0.1);

	CHECK(c->tracing.n_extract == 8);
	CHECK(strcmp(c->tracing.extract[0], "osprofiler") == 0);
	CHECK(strcmp(c->tracing.extract[7], "ot") == 0);
	CHECK(c->tracing.extract[8] == NULL);
	CHECK(c->tracing.n_inject == 2);
	CHECK(strcmp(c->tracing.inject[1], "w3c") == 0);
	CHECK(c->tracing.keep_foreign_headers == 0);
	CHECK(c->tracing.sample_new == -1);
	CHECK(c->tracing.server_timing == 1);
	CHECK(c->tracing.response_trace_id == 1);
	CHECK(c->tracing.request_id_from_trace == 0);
	CHECK(strcmp(c->tracing.span_name, "proxy") == 0);
	CHECK(strcmp(c->tracing.project, "tracebridge") == 0);
	CHECK(c->tracing.host != NULL && c->tracing.host[0] != '\0');
	CHECK(c->tracing.span_ttl == 0);
	CHECK(c->tracing.span_buffer_bytes == 16u << 20);
	CHECK(c->tracing.n_redact_query_params == 0);

	CHECK(c->sampling.policy_file == NULL);
	CHECK(c->sampling.policy_redis_key == NULL);
	CHECK(c->sampling.policy_channel == NULL);
	CHECK(c->sampling.policy_url == NULL);
	CHECK(c->sampling.policy_poll_interval == 60);
	CHECK(c->sampling.default_probability == 0.001);
	CHECK(config_opt_line(c, "sampling", "default_probability") == 0);
	CHECK(c->sampling.forced_max_per_second == 10);
	CHECK(c->sampling.incoming_max_per_second == 100);
	CHECK(c->sampling.max_traces_per_second == 0);
	CHECK(c->sampling.n_operation_rules == 0);
	CHECK(c->sampling.adaptive == 0);
	CHECK(c->sampling.target_traces_per_second == 1);
	CHECK(c->sampling.delta_tolerance == 0.3);
	CHECK(c->sampling.calculation_interval == 60);
	CHECK(c->sampling.initial_sampling_probability == 0.001);
	CHECK(c->sampling.min_sampling_probability == 0.00001);
	CHECK(c->sampling.min_traces_per_second == 0.0166667);
	CHECK(c->sampling.adaptive_redis == NULL);

	CHECK(config_ref(c) == c && c->refcnt == 2);
	config_unref(c);
	CHECK(c->refcnt == 1);
	config_unref(c);
	config_unref(NULL);
}

/*
 * The INI dialect the lexer owns (configparser's and oslo.config's): ':'
 * as separator, CRLF, " ;" comments on pairs and continuation lines, ';'
 * without a space kept, '#' lines inside a list.
 */
static void
test_dialect(void)
{
	static const char text[] =
	    "splice = ALL\r\n"
	    "[listener:a]\r\n"
	    "listen: 127.0.0.1:8080\r\n"
	    "upstream =http://127.0.0.1:5000 ; the origin\r\n"
	    "service = comp;ute\r\n"
	    "\t; an indented comment line\r\n"
	    "[profiler]\n"
	    "hmac_keys = k1, ; first\n"
	    "  k2 ; second\n"
	    "# between\n"
	    "\tk3\n";
	struct tb_config *c;
	char err[512];
	int rc;

	rc = config_load_buffer("d", text, sizeof(text) - 1, &c, err, sizeof(err));
	CHECKF(rc == 0, "%s", err);
	if (rc != 0)
		return;
	CHECK(strcmp(c->listeners[0].listen.text, "127.0.0.1:8080") == 0);
	CHECK(strcmp(c->listeners[0].upstream, "http://127.0.0.1:5000") == 0);
	CHECK(strcmp(c->listeners[0].service, "comp;ute") == 0);
	CHECK(c->splice == TB_SPLICE_ALL);
	CHECK(c->profiler.n_hmac_keys == 3 &&
	    strcmp(c->profiler.hmac_keys[0], "k1") == 0 &&
	    strcmp(c->profiler.hmac_keys[1], "k2") == 0 &&
	    strcmp(c->profiler.hmac_keys[2], "k3") == 0);
	config_unref(c);
}

/* Values of every type, multi-line lists, and options before any section. */
static void
test_values(void)
{
	static const char text[] =
	    "\xEF\xBB\xBFworkers = 3\n"
	    "log_level = DEBUG\n"
	    "[DEFAULT]\n"
	    "error_log = /var/log/tb.log\n"
	    "access_log = syslog ; inline comment\n"
	    "user = root\n"
	    "group = root\n"
	    "drain_timeout = 1500ms\n"
	    "[admin]\n"
	    "listen = off\n"
	    "[listener:nova.api_1]\n"
	    "listen = [::1]:8774\n"
	    "upstream = http://localhost:8775/\n"
	    "service = compute\n"
	    "client_header_timeout = 0.5\n"
	    "max_header_bytes = 1m\n"
	    "max_headers = 256\n"
	    "x_forwarded = Off\n"
	    "keep_proxy_authorization = YES\n"
	    "[listener:b]\n"
	    "listen = *:8080\n"
	    "upstream = http://[::1]:5000\n"
	    "[profiler]\n"
	    "enabled = true\n"
	    "hmac_keys = SECRET_KEY,\n"
	    "    other , third\n"
	    "connection_string = redissentinel://10.0.0.1:26379\n"
	    "trace_sqlalchemy = true\n"
	    "[tracing]\n"
	    "extract = W3C, b3\n"
	    "inject = osprofiler\n"
	    "sample_new = false\n"
	    "span_ttl = 3600s\n"
	    "span_buffer_bytes = 4k\n"
	    "host = edge1\n"
	    "redact_query_params = X-Custom-Sig, sessionid\n"
	    "[sampling]\n"
	    "policy_url = http://127.0.0.1:9000/policy\n"
	    "forced_max_per_second = 0.5\n"
	    "operation_rules =\n"
	    "    prefix:/v3/auth/tokens identity_tokens\n"
	    "    # a comment inside the value\n"
	    "    regex:^/v2\\.1/[^/]+/servers( |$) compute_servers\n";
	struct tb_config *c = NULL;
	struct tb_listener_conf *l;
	char err[512] = "";

	CHECKF(load_text(text, &c, err, sizeof(err), NULL) == 0, "%s", err);
	if (c == NULL)
		return;
	CHECK(c->workers == 3);
	CHECK(c->log_level == TB_LOG_DEBUG);
	CHECK(strcmp(c->error_log, "/var/log/tb.log") == 0);
	CHECK(strcmp(c->access_log, "syslog") == 0);
	CHECK(strcmp(c->user, "root") == 0 && strcmp(c->group, "root") == 0);
	CHECK(c->drain_timeout == 1.5);
	CHECK(c->admin_enabled == 0);
	CHECK(c->n_listeners == 2);
	l = &c->listeners[0];
	CHECK(strcmp(l->name, "nova.api_1") == 0);
	CHECK(l->listen.ss.ss_family == AF_INET6);
	CHECK(strcmp(l->upstream_host, "localhost") == 0);
	CHECK(l->upstream_port == 8775);
	CHECK(strcmp(l->service, "compute") == 0);
	CHECK(l->client_header_timeout == 0.5);
	CHECK(l->max_header_bytes == 1048576);
	CHECK(l->max_headers == 256);
	CHECK(l->x_forwarded == 0 && l->keep_proxy_authorization == 1);
	l = &c->listeners[1];
	CHECK(l->listen.ss.ss_family == AF_INET);
	CHECK(strcmp(l->upstream_host, "[::1]") == 0);
	CHECK(strcmp(l->upstream_addr.text, "[::1]:5000") == 0);
	CHECK(l->upstream_addr.ss.ss_family == AF_INET6);
	CHECK(c->profiler.enabled == 1);
	CHECK(c->profiler.n_hmac_keys == 3);
	CHECK(strcmp(c->profiler.hmac_keys[0], "SECRET_KEY") == 0);
	CHECK(strcmp(c->profiler.hmac_keys[1], "other") == 0);
	CHECK(strcmp(c->profiler.hmac_keys[2], "third") == 0);
	CHECK(c->profiler.trace_sqlalchemy == 1);
	CHECK(c->tracing.n_extract == 2);
	CHECK(strcmp(c->tracing.extract[0], "w3c") == 0);
	CHECK(c->tracing.n_inject == 1);
	CHECK(c->tracing.sample_new == 0);
	CHECK(c->tracing.span_ttl == 3600);
	CHECK(c->tracing.span_buffer_bytes == 4096);
	CHECK(strcmp(c->tracing.host, "edge1") == 0);
	CHECK(c->tracing.n_redact_query_params == 2 &&
	    strcmp(c->tracing.redact_query_params[1], "sessionid") == 0);
	CHECK(strcmp(c->sampling.policy_url, "http://127.0.0.1:9000/policy") == 0);
	CHECK(c->sampling.forced_max_per_second == 0.5);
	CHECK(c->sampling.n_operation_rules == 2);
	CHECK(c->sampling.n_operation_rules == 2 && strcmp(
	    c->sampling.operation_rules[1],
	    "regex:^/v2\\.1/[^/]+/servers( |$) compute_servers") == 0);
	config_unref(c);
}

struct bad {
	const char *text;
	const char *msg;	/* "FILE" stands for the path */
};

static const struct bad bads[] = {
	/* sections */
	{ "[nope]\n" LST, "FILE:1: nope: unknown section" },
	{ LST "[listener:a]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n",
	  "FILE:4: listener:a: duplicate section (first at line 1)" },
	{ LST "[admin]\n[admin]\n", "FILE:5: admin: duplicate section (first at line 4)" },
	{ "[listener:a-b]\n", "FILE:1: listener:a-b: invalid listener name (expected 1 to 64 of [A-Za-z0-9_.])" },
	{ "[listener:]\n", "FILE:1: listener:: invalid listener name (expected 1 to 64 of [A-Za-z0-9_.])" },
	{ "[admin\n", "FILE:1: syntax: expected ']'" },
	{ LST "  [listener:b]\n", "FILE:4: syntax: section headers must not be indented" },
	{ "just words\n", "FILE:1: syntax: expected 'name = value' or '[section]'" },
	{ "= 3\n" LST, "FILE:1: syntax: missing option name" },
	{ "", "FILE:0: listener: at least one [listener:NAME] section is required" },
	{ "workers = 2\n", "FILE:0: listener: at least one [listener:NAME] section is required" },
	{ "[listener:x]\nupstream = http://127.0.0.1:1\n", "FILE:1: listen: required in [listener:x]" },
	{ "\n[listener:x]\nlisten = 127.0.0.1:1\n", "FILE:2: upstream: required in [listener:x]" },
	{ "[listener:x]\n", "FILE:1: listen: required in [listener:x]" },
	{ LST "[listener:b]\nlisten = 127.0.0.1:8080\nupstream = http://127.0.0.1:5000\n",
	  "FILE:5: listen: address already used by [listener:a]" },
	{ LST "[admin]\nlisten = 127.0.0.1:8080\n", "FILE:2: listen: address already used by [admin]" },
	/* overlapping listen addresses (issue 13): wildcard and specific */
	{ LST "[listener:b]\nlisten = *:8080\nupstream = http://127.0.0.1:5000\n",
	  "FILE:5: listen: overlaps [listener:a] (line 2): a wildcard address takes its port on every address of its family" },
	{ "[listener:b]\nlisten = 0.0.0.0:8080\nupstream = http://127.0.0.1:5000\n" LST,
	  "FILE:5: listen: overlaps [listener:b] (line 2): a wildcard address takes its port on every address of its family" },
	{ "[listener:a]\nupstream = http://127.0.0.1:1\nlisten = [::]:80\n"
	  "[listener:b]\nlisten = [::1]:80\nupstream = http://127.0.0.1:1\n",
	  "FILE:5: listen: overlaps [listener:a] (line 3): a wildcard address takes its port on every address of its family" },
	{ "[listener:a]\nlisten = [::1]:80\nupstream = http://127.0.0.1:1\n"
	  "[listener:b]\nlisten = [0:0::0]:80\nupstream = http://127.0.0.1:1\n",
	  "FILE:5: listen: overlaps [listener:a] (line 2): a wildcard address takes its port on every address of its family" },
	/* v4-mapped is the IPv4 address it reaches */
	{ LST "[listener:b]\nlisten = [::ffff:127.0.0.1]:8080\nupstream = http://127.0.0.1:5000\n",
	  "FILE:5: listen: address already used by [listener:a]" },
	{ LST "[listener:b]\nlisten = [::ffff:0.0.0.0]:8080\nupstream = http://127.0.0.1:5000\n",
	  "FILE:5: listen: overlaps [listener:a] (line 2): a wildcard address takes its port on every address of its family" },
	/* and the admin endpoint, set or by default */
	{ "[admin]\nlisten = *:8080\n" LST,
	  "FILE:4: listen: overlaps [admin] (line 2): a wildcard address takes its port on every address of its family" },
	{ "[listener:a]\nlisten = *:9180\nupstream = http://127.0.0.1:1\n",
	  "FILE:2: listen: overlaps [admin] (its default address): a wildcard address takes its port on every address of its family" },
	/* options */
	{ LST "bogus = 1\n", "FILE:4: bogus: unknown option" },
	{ "Workers = 1\n" LST, "FILE:1: Workers: unknown option" },
	{ LST "listen = 127.0.0.1:9\n", "FILE:4: listen: duplicate option (first at line 2)" },
	{ "workers = 1\n[DEFAULT]\nworkers = 2\n" LST, "FILE:3: workers: duplicate option (first at line 1)" },
	{ "workers = 0\n" LST, "FILE:1: workers: expected an integer between 1 and 256 or 'auto'" },
	{ "workers = 2x\n" LST, "FILE:1: workers: expected an integer between 1 and 256 or 'auto'" },
	{ "workers = -1\n" LST, "FILE:1: workers: expected an integer between 1 and 256 or 'auto'" },
	{ "workers = 99999999999999999999999\n" LST, "FILE:1: workers: expected an integer between 1 and 256 or 'auto'" },
	{ "log_level = loud\n" LST, "FILE:1: log_level: expected one of: error, warning, info, debug" },
	{ "error_log = relative.log\n" LST, "FILE:1: error_log: expected 'stderr', 'syslog' or an absolute path" },
	{ "error_log =\n" LST, "FILE:1: error_log: expected 'stderr', 'syslog' or an absolute path" },
	{ "access_log = on\n" LST, "FILE:1: access_log: expected 'off', 'stderr', 'syslog' or an absolute path" },
	{ "pid_file = tb.pid\n" LST, "FILE:1: pid_file: expected an absolute path (or nothing)" },
	{ "user = no_such_user_tb\n" LST, "FILE:1: user: no such user" },
	{ "group = no_such_group_tb\n" LST, "FILE:1: group: no such group" },
	{ "max_connections = 0\n" LST, "FILE:1: max_connections: expected an integer between 1 and 1000000" },
	{ "backlog = 0\n" LST, "FILE:1: backlog: expected an integer between 1 and 65535" },
	{ "backlog = 65536\n" LST, "FILE:1: backlog: expected an integer between 1 and 65535" },
	{ "drain_timeout = -1\n" LST, "FILE:1: drain_timeout: expected a duration between 0 and 86400 seconds (optional ms/s/m/h suffix)" },
	{ "drain_timeout = inf\n" LST, "FILE:1: drain_timeout: expected a duration between 0 and 86400 seconds (optional ms/s/m/h suffix)" },
	{ "drain_timeout = 1e3\n" LST, "FILE:1: drain_timeout: expected a duration between 0 and 86400 seconds (optional ms/s/m/h suffix)" },
	{ "[admin]\nlisten = localhost:1\n" LST, "FILE:2: listen: expected host:port, [v6]:port or *:port with a numeric address, or 'off'" },
	{ "[listener:a]\nlisten = ::1:80\n", "FILE:2: listen: expected host:port, [v6]:port or *:port with a numeric address" },
	{ "[listener:a]\nlisten = 127.0.0.1:65536\n", "FILE:2: listen: expected host:port, [v6]:port or *:port with a numeric address" },
	{ "[listener:a]\nlisten = 127.0.0.1:0\n", "FILE:2: listen: expected host:port, [v6]:port or *:port with a numeric address" },
	{ "[listener:a]\nupstream = https://\n", "FILE:2: upstream: expected http[s]://host[:port][/]" },
	{ "[listener:a]\nupstream = ftp://127.0.0.1\n", "FILE:2: upstream: expected http[s]://host[:port][/]" },
	{ "[listener:a]\nupstream = http://127.0.0.1:5000/v3\n", "FILE:2: upstream: expected http[s]://host[:port][/]" },
	{ "[listener:a]\nupstream = http://u:p@127.0.0.1:5000\n", "FILE:2: upstream: expected http[s]://host[:port][/]" },
	{ "[listener:a]\nupstream = http://\n", "FILE:2: upstream: expected http[s]://host[:port][/]" },
	{ "[listener:a]\nupstream = http://no-such-host.invalid:80\n", NULL /* resolver text varies */ },
	{ LST "client_idle_timeout = 0\n", "FILE:4: client_idle_timeout: expected a duration between 0.001 and 86400 seconds (optional ms/s/m/h suffix)" },
	{ LST "max_header_bytes = 512\n", "FILE:4: max_header_bytes: expected a size between 1k and 1m bytes (optional k/m/g suffix)" },
	{ LST "max_header_bytes = 99999999999999g\n", "FILE:4: max_header_bytes: expected a size between 1k and 1m bytes (optional k/m/g suffix)" },
	{ LST "max_headers = 257\n", "FILE:4: max_headers: expected an integer between 1 and 256" },
	{ LST "x_forwarded = maybe\n", "FILE:4: x_forwarded: expected true or false (or yes/no, on/off, 1/0)" },
	{ "underscore_headers = keep\n" LST, "FILE:1: underscore_headers: expected one of: drop, reject, allow" },
	{ "splice = on\n" LST, "FILE:1: splice: expected one of: off, auto, all" },
	{ LST "trusted_proxies = 10.0.0.1/8\n", "FILE:4: trusted_proxies: member 1: expected an IPv4 or IPv6 address, optionally /prefix-length" },
	{ LST "trusted_proxies = 10.0.0.0/33\n", "FILE:4: trusted_proxies: member 1: expected an IPv4 or IPv6 address, optionally /prefix-length" },
	{ LST "trusted_proxies = 10.0.0.0/-1\n", "FILE:4: trusted_proxies: member 1: expected an IPv4 or IPv6 address, optionally /prefix-length" },
	{ LST "trusted_proxies = 10.0.0.0/\n", "FILE:4: trusted_proxies: member 1: expected an IPv4 or IPv6 address, optionally /prefix-length" },
	{ LST "trusted_proxies = ::1, fe80::1%eth0\n", "FILE:4: trusted_proxies: member 2: expected an IPv4 or IPv6 address, optionally /prefix-length" },
	{ LST "trusted_proxies = lb.example\n", "FILE:4: trusted_proxies: member 1: expected an IPv4 or IPv6 address, optionally /prefix-length" },
	{ LST "trusted_proxies = 2001:db8::1/129\n", "FILE:4: trusted_proxies: member 1: expected an IPv4 or IPv6 address, optionally /prefix-length" },
	{ LST "trusted_proxies = 10.0.0.0/8,,::1\n", "FILE:4: trusted_proxies: empty member in list" },
	{ LST "forwarded_header = 2\n", "FILE:4: forwarded_header: expected true or false (or yes/no, on/off, 1/0)" },
	{ LST "indented = 1\n  continued\n", "FILE:4: indented: unknown option" },
	{ LST "service = a\n  b\n", "FILE:4: service: only lists continue on indented lines" },
	{ LST "[profiler]\nenabled = true\n", "FILE:5: hmac_keys: at least one key is required when enabled = true" },
	{ LST "[profiler]\nhmac_keys = a,,b\n", "FILE:5: hmac_keys: empty member in list" },
	{ LST "[profiler]\nhmac_keys = a,\n", "FILE:5: hmac_keys: empty member in list" },
	{ LST "[profiler]\nconnection_string = rediss://h:6379\n", "FILE:5: connection_string: rediss:// (TLS) is not supported" },
	{ LST "[profiler]\nconnection_string = mysql://h\n", "FILE:5: connection_string: expected a redis://, unix://, redissentinel:// or otlp:// URL" },
	/* osprofiler's OTLP string: host[:port] only */
	{ LST "[profiler]\nconnection_string = otlp://\n", "FILE:5: connection_string: otlp:// takes host[:port] only (e.g. otlp://collector:4318)" },
	{ LST "[profiler]\nconnection_string = otlp://h:4318/v1/traces\n", "FILE:5: connection_string: otlp:// takes host[:port] only (e.g. otlp://collector:4318)" },
	{ LST "[profiler]\nconnection_string = otlp://u:p@h\n", "FILE:5: connection_string: otlp:// takes host[:port] only (e.g. otlp://collector:4318)" },
	{ LST "[profiler]\nconnection_string = otlp://h:99999\n", "FILE:5: connection_string: port must be a number in 1..65535" },
	{ LST "[profiler]\nconnection_string = otlp://h:x\n", "FILE:5: connection_string: port must be a number in 1..65535" },
	{ LST "[profiler]\nconnection_string = otlp://h\n[sampling]\npolicy_redis_key = k\n",
	  "FILE:7: policy_redis_key: needs a Redis [profiler] connection_string, not otlp://" },
	/* [otlp] */
	{ LST "[otlp]\nendpoint = collector:4318\n", "FILE:5: endpoint: expected an http:// or https:// URL" },
	{ LST "[otlp]\nendpoint = http://\n", "FILE:5: endpoint: missing or too long host" },
	{ LST "[otlp]\nendpoint = http://h:0/v1/traces\n", "FILE:5: endpoint: port must be a number in 1..65535" },
	{ LST "[otlp]\nendpoint = http://u:secret@h/v1/traces\n", "FILE:5: endpoint: spaces, control characters, '#' and '@' are not allowed" },
	{ LST "[otlp]\nprotocol = grpc\n", "FILE:5: protocol: expected one of: http/protobuf, http/json" },
	{ LST "[otlp]\ncompression = zstd\n", "FILE:5: compression: expected one of: gzip, none" },
	{ LST "[otlp]\nheaders = authorization\n", "FILE:5: headers: member 1: expected key=value" },
	{ LST "[otlp]\nheaders = a=1, bad header=secret\n", "FILE:5: headers: member 2: bad character in the key" },
	{ LST "[otlp]\nheaders = Content-Length=5\n", "FILE:5: headers: member 1: content-length is set by the exporter" },
	{ LST "[otlp]\nresource_attributes = =x\n", "FILE:5: resource_attributes: member 1: expected key=value" },
	{ LST "[otlp]\ntimeout = 0\n", NULL },
	{ LST "[otlp]\nbatch_size = 0\n", NULL },
	{ LST "[otlp]\nqueue_bytes = 10\n", NULL },
	{ LST "[otlp]\nflush_interval = soon\n", NULL },
	{ LST "[otlp]\nca_file = relative.pem\n", NULL },
	{ LST "[otlp]\nendpoint = http://h\nca_file = /etc/ssl/ca.pem\n", "FILE:6: ca_file: only used with an https:// endpoint" },
	{ LST "[otlp]\nendpoint = https://h\nclient_cert = /c.pem\n", "FILE:6: client_cert: client_cert and client_key go together" },
	{ LST "[profiler]\nconnection_string = otlp://h\n[otlp]\nendpoint = http://h\n",
	  "FILE:7: endpoint: [profiler] connection_string is otlp:// already; set one of the two" },
	{ LST "[otlp]\nnope = 1\n", NULL },
	{ LST "[profiler]\nconnection_string = redis://h:0\n", "FILE:5: connection_string: port must be a number in 1..65535" },
	{ LST "[profiler]\nsentinel_service_name =\n", "FILE:5: sentinel_service_name: must not be empty" },
	{ LST "[tracing]\nextract = w3c, zipkin\n", "FILE:5: extract: unknown format 'zipkin' (expected osprofiler, w3c, b3, b3multi, jaeger, xray, datadog, gcp, ot)" },
	{ LST "[tracing]\ninject = w3c, W3C\n", "FILE:5: inject: format 'w3c' listed twice" },
	{ LST "[tracing]\nsample_new = 2\n", "FILE:5: sample_new: expected true or false (or yes/no, on/off, 1/0)" },
	{ LST "[tracing]\nspan_name = my-span\n", "FILE:5: span_name: expected letters, digits, '_' and '.' only" },
	{ LST "[tracing]\nspan_ttl = 1.5\n", "FILE:5: span_ttl: expected whole seconds between 0 and 315360000" },
	{ LST "[tracing]\nspan_buffer_bytes = 2g\n", "FILE:5: span_buffer_bytes: expected a size between 4k and 1g bytes (optional k/m/g suffix)" },
	{ LST "[sampling]\npolicy_url = https://x/\n", "FILE:5: policy_url: expected an http:// URL (https is not supported)" },
	{ LST "[sampling]\npolicy_poll_interval = 0.5\n", "FILE:5: policy_poll_interval: expected a duration between 1 and 86400 seconds (optional ms/s/m/h suffix)" },
	{ LST "[sampling]\ndefault_probability = 1.5\n", "FILE:5: default_probability: expected a number between 0 and 1" },
	{ LST "[sampling]\nadaptive = maybe\n", "FILE:5: adaptive: expected true or false (or yes/no, on/off, 1/0)" },
	{ LST "[sampling]\ntarget_traces_per_second = 0\n", "FILE:5: target_traces_per_second: expected a number between 0.001 and 1e+06" },
	{ LST "[sampling]\ndelta_tolerance = 1.5\n", "FILE:5: delta_tolerance: expected a number between 0 and 1" },
	{ LST "[sampling]\ncalculation_interval = 500ms\n", "FILE:5: calculation_interval: expected a duration between 1 and 3600 seconds (optional ms/s/m/h suffix)" },
	{ LST "[sampling]\ninitial_sampling_probability = 2\n", "FILE:5: initial_sampling_probability: expected a number between 0 and 1" },
	{ LST "[sampling]\nmin_sampling_probability = 0\n", "FILE:5: min_sampling_probability: expected a number between 1e-07 and 1" },
	{ LST "[sampling]\nmin_traces_per_second = -1\n", "FILE:5: min_traces_per_second: expected a number between 0 and 1e+06" },
	{ LST "[sampling]\nadaptive_redis = rediss://h\n", "FILE:5: adaptive_redis: rediss:// (TLS) is not supported" },
	{ LST "[sampling]\nadaptive = true\n", "FILE:5: adaptive: adaptive = true needs policy_redis_key and policy_channel (the leader writes the probabilities to the key and announces them on the channel)" },
	{ LST "[sampling]\nadaptive = true\npolicy_redis_key = k\n", "FILE:5: adaptive: adaptive = true needs policy_redis_key and policy_channel (the leader writes the probabilities to the key and announces them on the channel)" },
	{ LST "[sampling]\nadaptive = true\npolicy_redis_key = k\npolicy_channel = c\ninitial_sampling_probability = 0.001\nmin_sampling_probability = 0.01\n",
	  "FILE:8: initial_sampling_probability: must be at least min_sampling_probability (0.01)" },
	{ LST "[sampling]\nforced_max_per_second = -3\n", "FILE:5: forced_max_per_second: expected a number >= 0" },
	{ LST "[sampling]\noperation_rules = glob:/x y\n", "FILE:5: operation_rules: rule 1: expected 'prefix:<path> <name>' or 'regex:<ERE> <name>'" },
	{ LST "[sampling]\noperation_rules =\n  prefix:/a a\n  prefix:/b\n", "FILE:5: operation_rules: rule 2: expected a pattern and an operation name" },
	{ LST "[sampling]\noperation_rules = prefix:v3 x\n", "FILE:5: operation_rules: rule 1: a path prefix starts with '/'" },
	{ LST "[sampling]\noperation_rules = regex:a(b x\n", NULL /* regerror text varies */ },
	/* regression (fuzz_config): regcomp took > 2 GiB before the weighing */
	{ LST "[sampling]\noperation_rules = regex:^/v2(\\.1)?/servers\xff\xff\xff++++++++++++++++ x\n",
	  "FILE:5: operation_rules: rule 1: regex too complex (stacked repetitions or large intervals)" },
	/* TLS options: the values, and what must go together */
	{ LST "tls_min_version = 1.1\n", "FILE:4: tls_min_version: TLS 1.0 and 1.1 are not supported (RFC 8996): expected 1.2 or 1.3" },
	{ LST "tls_min_version = TLSv1.0\n", "FILE:4: tls_min_version: TLS 1.0 and 1.1 are not supported (RFC 8996): expected 1.2 or 1.3" },
	{ LST "tls_min_version = 2\n", "FILE:4: tls_min_version: expected 1.2 or 1.3" },
	{ LST "tls_certificate = cert.pem\n", "FILE:4: tls_certificate: expected an absolute path (or nothing)" },
	{ LST "tls_certificate = /c.pem\n", "FILE:4: tls_certificate: tls_certificate and tls_key go together" },
	{ LST "tls_key = /k.pem\n", "FILE:4: tls_key: tls_certificate and tls_key go together" },
	{ LST "tls_client_ca = /ca.pem\n", "FILE:4: tls_client_ca: needs tls_certificate (TLS on this listener)" },
	{ LST "tls_certificate = /c\ntls_key = /k\ntls_verify_client = require\n", "FILE:6: tls_verify_client: needs tls_client_ca" },
	{ LST "tls_verify_client = maybe\n", "FILE:4: tls_verify_client: expected one of: none, optional, require" },
	{ LST "tls_sni_certificates = /a.pem\n", "FILE:4: tls_sni_certificates: member 1: expected CERT:KEY, two absolute paths" },
	{ LST "tls_sni_certificates = /a:/b, /c:d\n", "FILE:4: tls_sni_certificates: member 2: expected CERT:KEY, two absolute paths" },
	{ LST "tls_sni_certificates = /a:/b:/c\n", "FILE:4: tls_sni_certificates: member 1: expected CERT:KEY, two absolute paths" },
	{ LST "tls_client_subject_header = X Subject\n", "FILE:4: tls_client_subject_header: expected a header name (letters, digits, '-')" },
	{ LST "tls_session_timeout = 0\n", "FILE:4: tls_session_timeout: expected a duration between 1 and 86400 seconds (optional ms/s/m/h suffix)" },
	{ LST "upstream_tls_ca = /ca.pem\n", "FILE:4: upstream_tls_ca: only for an https:// upstream" },
	{ LST "upstream_tls_server_name = api\n", "FILE:4: upstream_tls_server_name: only for an https:// upstream" },
	{ "[listener:a]\nlisten = 127.0.0.1:8080\nupstream = https://127.0.0.1\nupstream_tls_key = /k\n",
	  "FILE:4: upstream_tls_key: upstream_tls_certificate and upstream_tls_key go together" },
	{ "tls_ticket_key_rotation = 10\n" LST, "FILE:1: tls_ticket_key_rotation: expected a duration between 60 and 604800 seconds (optional ms/s/m/h suffix)" },
	{ LST "[tracing]\nsample_new = true\n[sampling]\ndefault_probability = 0.5\n",
	  "FILE:7: default_probability: sample_new and default_probability cannot both be set" },
	{ LST "[sampling]\ndefault_probability = 0.5\n[tracing]\nsample_new = true\n",
	  "FILE:7: sample_new: sample_new and default_probability cannot both be set" },
};

static void
test_bad(void)
{
	struct tb_config *c;
	char err[512], want[512];
	const char *path, *at;
	size_t i;

	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		c = (struct tb_config *)1;
		err[0] = '\0';
		CHECKF(load_text(bads[i].text, &c, err, sizeof(err), &path) == -1,
		    "case %zu loaded", i);
		CHECK(c == NULL);
		if (bads[i].msg == NULL) {
			CHECKF(strncmp(err, path, strlen(path)) == 0 &&
			    err[strlen(path)] == ':', "case %zu: %s", i, err);
			continue;
		}
		at = strstr(bads[i].msg, "FILE");
		snprintf(want, sizeof(want), "%.*s%s%s",
		    (int)(at - bads[i].msg), bads[i].msg, path, at + 4);
		CHECKF(strcmp(err, want) == 0, "case %zu:\n  got  %s\n  want %s",
		    i, err, want);
	}
}

static void
test_files(void)
{
	struct tb_config *c = NULL;
	char err[512];

	CHECK(config_load("/nonexistent/tb.conf", &c, err, sizeof(err)) == -1);
	CHECKF(strcmp(err, "/nonexistent/tb.conf: cannot open: No such file "
	    "or directory") == 0, "%s", err);
	CHECK(config_load(tmpdir, &c, err, sizeof(err)) == -1);
	CHECKF(strstr(err, ": cannot read: Is a directory") != NULL, "%s", err);
	/* a FIFO is refused, not waited on (config_read_file opens non-blocking) */
	{
		char fifo[600];

		snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
		CHECK(mkfifo(fifo, 0600) == 0);
		CHECK(config_load(fifo, &c, err, sizeof(err)) == -1);
		CHECKF(strstr(err, ": cannot read: not a regular file") != NULL, "%s", err);
		unlink(fifo);
	}
	/* a tiny err buffer truncates, never overflows */
	CHECK(config_load("/nonexistent/tb.conf", &c, err, 8) == -1);
	CHECK(strlen(err) == 7);
}

/*
 * Load text, then config_check_files() must pass (want NULL) or give want
 * ("FILE" stands for the path of the config; a leading '*' asks only that
 * the rest is in the message).
 */
static void
check_files_case(const char *text, const char *want)
{
	struct tb_config *c = NULL;
	char err[1024], full[1024];
	const char *path, *at;
	int rc;

	CHECKF(load_text(text, &c, err, sizeof(err), &path) == 0, "%s", err);
	if (c == NULL)
		return;
	rc = config_check_files(c, err, sizeof(err));
	config_unref(c);
	if (want == NULL) {
		CHECKF(rc == 0, "%s", err);
	} else if (want[0] == '*') {
		CHECKF(rc == -1 && strstr(err, want + 1) != NULL, "%s", err);
	} else {
		at = strstr(want, "FILE");
		snprintf(full, sizeof(full), "%.*s%s%s", (int)(at - want), want,
		    path, at + 4);
		CHECKF(rc == -1 && strcmp(err, full) == 0,
		    "\n  got  %s\n  want %s", err, full);
	}
}

/*
 * config_check_files() (tracebridge -t) on the files the daemon writes:
 * "error_log/access_log paths that cannot be opened pass tracebridge -t
 * but the daemon exits 1 with 'cannot open logs'" (issue 13). It must
 * create and truncate nothing.
 */
static void
test_check_files(void)
{
	struct stat st;
	char text[1024], want[1024], dir[96], file[128], newf[128];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/logs", tmpdir);
	snprintf(file, sizeof(file), "%s/existing.log", dir);
	snprintf(newf, sizeof(newf), "%s/new.log", dir);
	CHECK(mkdir(dir, 0755) == 0);
	f = fopen(file, "w");
	CHECK(f != NULL && fputs("kept\n", f) >= 0 && fclose(f) == 0);

	/* an existing file and one its directory lets us create: fine */
	snprintf(text, sizeof(text), "error_log = %s\naccess_log = %s\n"
	    "pid_file = %s/tb.pid\n" LST, file, newf, dir);
	check_files_case(text, NULL);
	CHECK(stat(file, &st) == 0 && st.st_size == 5);	/* not truncated */
	CHECK(stat(newf, &st) == -1);			/* not created */
	snprintf(want, sizeof(want), "%s/tb.pid", dir);
	CHECK(stat(want, &st) == -1);

	snprintf(text, sizeof(text), LST "[DEFAULT]\nerror_log = %s\n", dir);
	snprintf(want, sizeof(want), "FILE:5: error_log: cannot open %s for "
	    "writing: Is a directory", dir);
	check_files_case(text, want);
	check_files_case("access_log = /nonexistent-tb/a.log\n" LST,
	    "FILE:1: access_log: cannot create /nonexistent-tb/a.log: "
	    "/nonexistent-tb: No such file or directory");
	/* a file where a directory should be */
	snprintf(text, sizeof(text), "pid_file = %s/x.pid\n" LST, file);
	snprintf(want, sizeof(want), "FILE:1: pid_file: cannot open %s/x.pid: "
	    "Not a directory", file);
	check_files_case(text, want);
	/* permissions: root passes them, so only as another user */
	if (geteuid() != 0) {
		CHECK(chmod(dir, 0555) == 0 && chmod(file, 0444) == 0);
		snprintf(text, sizeof(text), "error_log = %s\n" LST, newf);
		check_files_case(text, "*: Permission denied");
		snprintf(text, sizeof(text), "error_log = %s\n" LST, file);
		check_files_case(text, "*for writing: Permission denied");
		CHECK(chmod(dir, 0755) == 0);
	}
	/* targets that are not files; a device is not opened */
	check_files_case("error_log = syslog\naccess_log = stderr\n" LST, NULL);
	check_files_case("error_log = /dev/null\n" LST, NULL);
}

/* Hostile input: an error, never a crash or a hang. */
static void
test_hostile(void)
{
	struct tb_config *c;
	char err[512], *big;
	const char *path;
	size_t i, n;
	int rc;

	/* a huge line: no length limit of its own, the value is judged */
	n = 100000;
	big = malloc(n + 64);
	memcpy(big, "workers = ", 10);
	memset(big + 10, '9', n);
	strcpy(big + 10 + n, "\n");
	rc = config_load_buffer("h", big, strlen(big), &c, err, sizeof(err));
	CHECKF(rc == -1 && strstr(err, "h:1: workers: ") == err, "%s", err);
	/* huge lines and continuation lines are fine */
	n = (size_t)sprintf(big, "%s", LST "[profiler]\nhmac_keys = ");
	memset(big + n, 'x', 500);
	n += 500;
	n += (size_t)sprintf(big + n, ",\n ");
	memset(big + n, 'y', 99000);
	big[n + 99000] = '\0';
	rc = config_load_buffer("h", big, strlen(big), &c, err, sizeof(err));
	CHECKF(rc == 0, "%s", err);
	if (rc == 0) {
		CHECK(c->profiler.n_hmac_keys == 2 &&
		    strlen(c->profiler.hmac_keys[0]) == 500 &&
		    strlen(c->profiler.hmac_keys[1]) == 99000);
		config_unref(c);
	}
	free(big);

	/* NUL bytes */
	rc = config_load_buffer("h", LST "work\0ers = 1\n", sizeof(LST) + 13, &c,
	    err, sizeof(err));
	CHECKF(rc == -1 && strcmp(err, "h:4: syntax: NUL byte in line") == 0,
	    "%s", err);

	/* binary garbage: printable echo only, bounded */
	rc = config_load_buffer("h", LST "\x01\x1b[31m\xff = 1\n", sizeof(LST) + 10,
	    &c, err, sizeof(err));
	CHECKF(rc == -1 && strcmp(err, "h:4: ??[31m?: unknown option") == 0,
	    "%s", err);
	srand(7);
	big = malloc(4096);
	for (i = 0; i < 2000; i++) {
		size_t k, len = (size_t)rand() % 4096;

		for (k = 0; k < len; k++)
			big[k] = (char)(rand() % 4 == 0 ? "[]=:;#\n ,"[rand() % 9] :
			    rand() % 256);
		c = NULL;
		if (config_load_buffer("g", big, len, &c, err, sizeof(err)) == 0)
			config_unref(c);
		else
			CHECK(c == NULL && strncmp(err, "g:", 2) == 0);
	}
	free(big);

	/* 10000 sections */
	big = malloc(10000 * 96);
	for (i = 0, n = 0; i < 10000; i++)
		n += (size_t)sprintf(big + n, "[listener:l%zu]\nlisten = 127.0.0.1:%zu\n"
		    "upstream = http://127.0.0.1:1\n", i, 1024 + i);
	path = write_file(big, n);
	rc = config_load(path, &c, err, sizeof(err));
	CHECKF(rc == -1 && strstr(err, ":3073: listener:l1024: too many "
	    "listeners (at most 1024)") != NULL, "%s", err);
	for (i = 0, n = 0; i < 10000; i++)
		n += (size_t)sprintf(big + n, "[s%zu]\n", i);
	rc = config_load_buffer("h", big, n, &c, err, sizeof(err));
	CHECKF(rc == -1 && strcmp(err, "h:1: s0: unknown section") == 0, "%s", err);
	free(big);

	/* many short continuation lines: must stay fast (linear) */
	big = malloc(CONFIG_MAX_FILE);
	n = (size_t)sprintf(big, "%s", LST "[profiler]\nhmac_keys = k");
	while (n + 4 < CONFIG_MAX_FILE - 1)
		n += (size_t)sprintf(big + n, "\n k,");
	big[n - 1] = 'k';
	rc = config_load_buffer("h", big, n, &c, err, sizeof(err));
	CHECKF(rc == 0, "%s", err);
	if (rc == 0) {
		CHECK(c->profiler.n_hmac_keys > 200000);
		config_unref(c);
	}
	free(big);

	/* too large a file */
	big = calloc(1, CONFIG_MAX_FILE + 2);
	memset(big, '#', CONFIG_MAX_FILE + 1);
	path = write_file(big, CONFIG_MAX_FILE + 1);
	rc = config_load(path, &c, err, sizeof(err));
	CHECKF(rc == -1 && strstr(err, ":0: config: file larger than") != NULL,
	    "%s", err);
	free(big);
}

/* No message may quote a secret, whatever is wrong near it. */
static void
test_secrets(void)
{
	static const char *const texts[] = {
		LST "[profiler]\nhmac_keys = TOPSECRET1,\nTOPSECRET2\n",
		LST "[profiler]\nhmac_keys = TOPSECRET1\nTOPSECRET2 = x\n",
		LST "[profiler]\nhmac_keys = TOPSECRET1,\nTOPSECRET2:x\n",
		LST "[profiler]\nhmac_keys = TOPSECRET1,,TOPSECRET2\n",
		LST "[profiler]\nhmac_keys = TOPSECRET1\nhmac_keys = TOPSECRET2\n",
		LST "[profiler]\nconnection_string = rediss://:TOPSECRET1@h\n",
		LST "[profiler]\nconnection_string = redis//:TOPSECRET1@h\n",
		LST "[profiler]\nconnection_string = redis://:TOPSECRET1@h\n"
		    "socket_timeout = TOPSECRET2\n",
		"[listener:a]\nlisten = 127.0.0.1:1\nupstream = http://TOPSECRET1@h/\n",
		/* errors found by the Redis sink's parser (sink_parse_url) */
		LST "[profiler]\nconnection_string = redis://:TOPSECRET1@h:notaport\n",
		LST "[profiler]\nconnection_string = redis://u:TOPSECRET1@\n",
		LST "[profiler]\nconnection_string = redis://:TOP%zzSECRET1@h\n",
		LST "[profiler]\nconnection_string = unix://:TOPSECRET1@relative\n",
		/* [admin] auth_token: too short, a space, a duplicate */
		LST "[admin]\nauth_token = TOPSECRET1\n",
		LST "[admin]\nauth_token = TOPSECRET1 TOPSECRET2xxxxx\n",
		LST "[admin]\nauth_token = TOPSECRET1xxxxxxxxx\nauth_token = TOPSECRET2xxxxxxxxx\n",
	};
	struct tb_config *c;
	char err[512];
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		err[0] = '\0';
		CHECKF(config_load_buffer("s", texts[i], strlen(texts[i]), &c,
		    err, sizeof(err)) == -1, "case %zu loaded", i);
		CHECKF(strstr(err, "TOPSECRET") == NULL, "case %zu: %s", i, err);
		CHECKF(err[0] != '\0', "case %zu: no message", i);
	}
	CHECK(config_load_buffer("s", texts[1], strlen(texts[1]), &c, err,
	    sizeof(err)) == -1);
	CHECKF(strcmp(err, "s:6: [profiler]: unknown option (name not shown: "
	    "this section holds secrets)") == 0, "%s", err);
	c = NULL;
	CHECK(config_load_buffer("s", LST "[admin]\nauth_token = abcdefghijklmnop+/=~._-9\n",
	    strlen(LST) + 46, &c, err, sizeof(err)) == 0);
	CHECK(c != NULL && c->admin_auth_token != NULL &&
	    strcmp(c->admin_auth_token, "abcdefghijklmnop+/=~._-9") == 0);
	if (c != NULL)
		config_unref(c);
	CHECK(config_load_buffer("s", LST, strlen(LST), &c, err, sizeof(err)) == 0);
	CHECK(c->admin_auth_token == NULL);
	config_unref(c);
}

/* trusted_proxies: parsed blocks and the peer match, IPv4-mapped too. */
static void
test_trusted_proxies(void)
{
	static const char text[] = "[listener:a]\nlisten = 127.0.0.1:8080\n"
	    "upstream = http://127.0.0.1:5000\n"
	    "trusted_proxies = 10.0.0.0/8, 192.0.2.7,\n  2001:db8::/32, ::1, 0.0.0.0/0\n";
	struct sockaddr_in in = { .sin_family = AF_INET };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	const struct tb_listener_conf *l;
	struct tb_config *c;
	char err[512];

	CHECKF(config_load_buffer("t", text, sizeof(text) - 1, &c, err,
	    sizeof(err)) == 0, "%s", err);
	if (c == NULL)
		return;
	l = &c->listeners[0];
	CHECK(l->n_trusted_proxies == 5);
	CHECK(l->trusted_proxies[0].family == AF_INET && l->trusted_proxies[0].bits == 8);
	CHECK(l->trusted_proxies[1].bits == 32 && l->trusted_proxies[3].bits == 128);
	/* all but the catch-all */
#define MATCH4(a, want) do {						\
	inet_pton(AF_INET, (a), &in.sin_addr);				\
	CHECKF(config_cidr_match(l->trusted_proxies, 4,			\
	    (struct sockaddr *)&in) == (want), "%s", (a));		\
} while (0)
#define MATCH6(a, want) do {						\
	inet_pton(AF_INET6, (a), &in6.sin6_addr);			\
	CHECKF(config_cidr_match(l->trusted_proxies, 4,			\
	    (struct sockaddr *)&in6) == (want), "%s", (a));		\
} while (0)
	MATCH4("10.0.0.1", 1);
	MATCH4("10.255.255.255", 1);
	MATCH4("11.0.0.0", 0);
	MATCH4("9.255.255.255", 0);
	MATCH4("192.0.2.7", 1);
	MATCH4("192.0.2.6", 0);
	MATCH6("::ffff:10.1.2.3", 1);	/* a v4 client on a [::] listener */
	MATCH6("::ffff:11.1.2.3", 0);
	MATCH6("2001:db8:ffff::1", 1);
	MATCH6("2001:db9::1", 0);
	MATCH6("::1", 1);
	MATCH6("::2", 0);
	MATCH6("::a00:1", 0);		/* IPv4-compatible is not mapped */
	/* the catch-all matches IPv4 only */
	inet_pton(AF_INET, "203.0.113.1", &in.sin_addr);
	CHECK(config_cidr_match(l->trusted_proxies, 5, (struct sockaddr *)&in) == 1);
	inet_pton(AF_INET6, "2001:db9::1", &in6.sin6_addr);
	CHECK(config_cidr_match(l->trusted_proxies, 5, (struct sockaddr *)&in6) == 0);
	CHECK(config_cidr_match(NULL, 0, (struct sockaddr *)&in) == 0);
#undef MATCH4
#undef MATCH6
	config_unref(c);
}

static void
test_args_and_addr(void)
{
	struct tb_config *c = NULL;
	struct tb_addr a;
	char err[256];

	CHECKF(config_from_args("127.0.0.1:8080", "http://127.0.0.1:5000", &c,
	    err, sizeof(err)) == 0, "%s", err);
	if (c != NULL) {
		CHECK(c->path == NULL);
		CHECK(c->n_listeners == 1);
		CHECK(strcmp(c->listeners[0].name, "default") == 0);
		CHECK(strcmp(c->listeners[0].service, "default") == 0);
		CHECK(c->listeners[0].upstream_port == 5000);
		CHECK(c->max_connections == 10000);
		config_unref(c);
	}
	CHECK(config_from_args("nope", "http://127.0.0.1:5000", &c, err,
	    sizeof(err)) == -1 && c == NULL);
	CHECKF(strcmp(err, "--listen: expected host:port, [v6]:port or *:port "
	    "with a numeric address") == 0, "%s", err);
	CHECK(config_from_args("127.0.0.1:1", "https://127.0.0.1", &c, err,
	    sizeof(err)) == 0 && c != NULL);
	if (c != NULL) {
		CHECK(c->listeners[0].upstream_tls == 1);
		CHECK(c->listeners[0].upstream_port == 443);
		CHECK(c->listeners[0].upstream_tls_verify == 1);
		config_unref(c);
	}
	CHECK(config_from_args("127.0.0.1:1", "ftp://h", &c, err,
	    sizeof(err)) == -1);
	CHECKF(strcmp(err, "--upstream: expected http[s]://host[:port][/]") == 0,
	    "%s", err);
	CHECK(config_from_args("127.0.0.1:9180", "http://127.0.0.1", &c, err,
	    sizeof(err)) == -1);
	CHECK(config_from_args("*:9180", "http://127.0.0.1", &c, err,
	    sizeof(err)) == -1);
	CHECKF(strcmp(err, "--listen: overlaps the admin endpoint "
	    "(127.0.0.1:9180): a wildcard address takes its port on every "
	    "address of its family") == 0, "%s", err);

	CHECK(config_parse_addr("*:80", &a) == 0 && a.ss.ss_family == AF_INET &&
	    strcmp(a.text, "*:80") == 0);
	CHECK(config_parse_addr("[::]:443", &a) == 0 && a.ss.ss_family == AF_INET6 &&
	    a.len == sizeof(struct sockaddr_in6));
	/* v4-mapped: IPV6_V6ONLY sockets cannot bind it; it is IPv4 */
	CHECK(config_parse_addr("[::ffff:10.1.2.3]:8", &a) == 0 &&
	    a.ss.ss_family == AF_INET && a.len == sizeof(struct sockaddr_in) &&
	    ((struct sockaddr_in *)&a.ss)->sin_addr.s_addr == htonl(0x0a010203) &&
	    ntohs(((struct sockaddr_in *)&a.ss)->sin_port) == 8 &&
	    strcmp(a.text, "[::ffff:10.1.2.3]:8") == 0);
	CHECK(config_parse_addr("10.1.2.3:1", &a) == 0 &&
	    ntohs(((struct sockaddr_in *)&a.ss)->sin_port) == 1);
	CHECK(config_parse_addr("", &a) == -1);
	CHECK(config_parse_addr(":80", &a) == -1);
	CHECK(config_parse_addr("1.2.3.4", &a) == -1);
	CHECK(config_parse_addr("1.2.3.4:", &a) == -1);
	CHECK(config_parse_addr("1.2.3.4:+80", &a) == -1);
	CHECK(config_parse_addr("[::1]80", &a) == -1);
	CHECK(config_parse_addr("[::1:80", &a) == -1);
	CHECK(config_parse_addr("example.com:80", &a) == -1);
	CHECK(config_parse_addr("1.2.3.4:80 ", &a) == -1);
}

int
main(void)
{
	strcpy(tmpdir, "/tmp/tb_test_config.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_shipped();
	test_defaults();
	test_values();
	test_dialect();
	test_bad();
	test_files();
	test_check_files();
	test_hostile();
	test_secrets();
	test_trusted_proxies();
	test_args_and_addr();
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
	TB_TEST_END();
}
