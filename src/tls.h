/*
 * tls.h: OpenSSL contexts for TLS listeners and https:// upstreams, built
 * from a configuration by tls_conf_attach() and freed with it, and what the
 * connection code needs around a handshake.
 *
 * Threads: contexts are built on the control thread, then only read (and
 * reference counted by OpenSSL) by the workers; every SSL object is made and
 * used on one worker. Session ticket keys are process-wide, kept across
 * reloads (so tickets outlive a SIGHUP) and rotated by the control thread.
 */
#ifndef TB_TLS_H
#define TB_TLS_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"

struct event_base;

/* Why a client handshake failed: the `reason` label of
 * tracebridge_tls_handshake_failures_total. */
enum tls_fail {
	TLS_FAIL_PLAIN_HTTP = 0,	/* an HTTP request on the TLS port */
	TLS_FAIL_NOT_TLS,		/* other bytes that are no TLS record */
	TLS_FAIL_UNSUPPORTED_PROTOCOL,	/* TLS 1.1 and older, SSLv3... */
	TLS_FAIL_NO_SHARED_CIPHER,
	TLS_FAIL_NO_APPLICATION_PROTOCOL,	/* ALPN without http/1.1 */
	TLS_FAIL_NO_CLIENT_CERTIFICATE,	/* tls_verify_client = require */
	TLS_FAIL_BAD_CLIENT_CERTIFICATE,	/* did not verify */
	TLS_FAIL_PEER_ALERT,		/* the client gave up (e.g. untrusted cert) */
	TLS_FAIL_TIMEOUT,		/* not done within client_header_timeout */
	TLS_FAIL_CLOSED,		/* the client closed during the handshake */
	TLS_FAIL_OTHER,
	TLS_FAIL_NREASONS,
};

extern const char *const tls_fail_names[TLS_FAIL_NREASONS];

/* What a finished client handshake tells the request path; one per TLS
 * connection, owned by it. */
struct tls_conn_info {
	const char *protocol;	/* "TLSv1.3": OpenSSL's static string */
	const char *cipher;	/* static string */
	char sni[256];		/* server name the client asked for, or "" */
	char subject[512];	/* verified client certificate subject (RFC 2253), or "" */
	int resumed;
};

/*
 * Build the TLS contexts of every listener of cfg (lc->tls, lc->tls_up),
 * reading the certificate and key files now. 0, or -1 with
 * "FILE:LINE: option: PATH: reason" in err; whatever was built is freed
 * with cfg (TLS's slot of cfg->mod is set first).
 */
int tls_conf_attach(struct tb_config *cfg, char *err, size_t errlen);

/* Control thread: make the first ticket key and start rotating them every
 * cfg->tls_ticket_key_rotation; 0/-1. */
int tls_start(struct event_base *base, const struct tb_config *cfg);
/* Control thread: a new configuration is in force (rotation, lifetimes). */
void tls_reload(const struct tb_config *cfg);
void tls_stop(void);
/* Rotate now (the timer's and POST /tls/rotate-ticket-key's work); 0/-1.
 * The replaced key still decrypts until its tickets have expired. */
int tls_rotate_ticket_key(void);
/* The same as if CLOCK_MONOTONIC read now (seconds): for the tests. */
int tls_rotate_ticket_key_at(double now);

/* A new server-side SSL for an accepted connection of ts' listener, or NULL. */
SSL *tls_server_ssl(const struct tls_server *ts);
/* Fill out from ssl after its handshake completed. */
void tls_server_info(SSL *ssl, struct tls_conn_info *out);
/*
 * Why the handshake on ssl failed (an error or EOF before it was done),
 * from e, the first OpenSSL library error of the failure (sock_ssl_error),
 * or 0; a human readable reason goes into why.
 */
enum tls_fail tls_server_failure(SSL *ssl, unsigned long e, int eof, char *why,
    size_t wl);

/*
 * A new client-side SSL to tc's upstream: server name (SNI) and certificate
 * checks set, ALPN http/1.1, resuming sess when it is usable (sess may be
 * NULL; the SSL takes its own reference). *slot receives the session the
 * server issues (see upstream.c: the pool's per-upstream session slot); it
 * must stay valid while the SSL lives.
 */
SSL *tls_client_ssl(const struct tls_client *tc, SSL_SESSION *sess,
    SSL_SESSION **slot);
/*
 * A verifying client context for a peer that is not an upstream (the OTLP
 * collector): host is the name checked (and sent as SNI), ca the CA file
 * (NULL: the system store), cert/key our certificate (NULL: none). The
 * *_opt names are [section]'s options, for "FILE:LINE: option: reason"
 * messages in err. NULL on failure. Freed with tls_client_release().
 */
struct tls_client *tls_client_for(const struct tb_config *cfg,
    const char *section, const char *host, const char *ca, const char *ca_opt,
    const char *cert, const char *cert_opt, const char *key,
    const char *key_opt, char *err, size_t errlen);
void tls_client_release(struct tls_client *tc);	/* NULL is fine */

/* A number unique to tc for the process' life: pooled connections are only
 * reused for the same client context (settings, certificates). */
uint64_t tls_client_id(const struct tls_client *tc);
/*
 * After a failed upstream handshake on ssl, whose first OpenSSL library
 * error was e (or 0): 1 when TLS itself failed (with the reason, e.g.
 * "certificate verify failed: hostname mismatch", in why), 0 when it was
 * the connection (refused, reset, closed).
 */
int tls_client_failure(SSL *ssl, unsigned long e, char *why, size_t wl);

#endif
