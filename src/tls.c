/*
 * tls.c: SSL_CTXs for TLS listeners (default certificate, SNI certificates,
 * client certificates, ALPN, session cache and tickets) and for https://
 * upstreams (verification, SNI, client certificate, session reuse); see
 * tls.h.
 *
 * Files are read by us, not by OpenSSL's file functions: a path that names
 * a FIFO or /dev/zero must give a config error, not hang the reload, and the
 * messages can say which file and why.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "admin.h"
#include "log.h"
#include "module.h"
#include "tls.h"
#include "util.h"

#define TLS_MAX_FILE		(1024 * 1024)	/* PEM files larger than this are refused */
#define TLS_TICKET_KEYS		8		/* keys kept for decryption, newest first */
#define TLS_TICKET_SLACK	2.0		/* s: OpenSSL ages tickets in whole seconds */

const char *const tls_fail_names[TLS_FAIL_NREASONS] = {
	"plain_http", "not_tls", "unsupported_protocol", "no_shared_cipher",
	"no_application_protocol", "no_client_certificate",
	"bad_client_certificate", "peer_alert", "timeout", "closed", "other",
};

/* One name an SNI certificate serves: "api.example" or "*.example". */
struct tls_sni {
	char *name;		/* lower case */
	SSL_CTX *ctx;		/* reference into tls_server.ctxs */
};

struct tls_server {
	SSL_CTX *ctx;		/* default certificate; holds the session cache */
	SSL_CTX **ctxs;		/* one per tls_sni_certificates pair */
	size_t n_ctxs;
	struct tls_sni *sni;
	size_t n_sni;
};

struct tls_client {
	SSL_CTX *ctx;
	char *name;		/* SNI and the name checked; NULL with verify off */
	int name_is_ip;		/* checked against IP SANs, no SNI (RFC 6066 3) */
	int verify;
	uint64_t id;
};

/* ---- errors ---- */

/* "FILE:LINE: option: " + the rest, like config.c's messages. */
struct tls_errctx {
	const struct tb_config *cfg;
	const struct tb_listener_conf *l;	/* NULL: section's options */
	const char *section;
	char *err;
	size_t errlen;
};

static void tls_err(struct tls_errctx *e, const char *option, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
tls_err(struct tls_errctx *e, const char *option, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	config_errorf(e->cfg, e->err, e->errlen, e->l != NULL ?
	    config_line(e->l, option) : config_opt_line(e->cfg, e->section, option),
	    option, "%s", reason);
}

/* OpenSSL's reason for the last error, for messages; clears the queue. */
static const char *
ssl_reason(void)
{
	unsigned long code = ERR_peek_last_error();
	const char *r = code != 0 ? ERR_reason_error_string(code) : NULL;

	ERR_clear_error();
	return r != NULL ? r : "unknown error";
}

/* ---- files ---- */

/* Never prompt for a passphrase: encrypted keys are refused. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

/* The certificates of a PEM file, leaf first; NULL with why on error. */
static STACK_OF(X509) *
load_certs(const char *path, char *why, size_t wl)
{
	STACK_OF(X509) *sk = NULL;
	char *buf;
	size_t len;
	BIO *bio;
	X509 *x;

	if (tb_read_file(path, TLS_MAX_FILE, &buf, &len, why, wl) != TB_READ_OK)
		return NULL;
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL ||
	    (sk = sk_X509_new_null()) == NULL)
		goto oom;
	while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			goto oom;
		}
	}
	ERR_clear_error();	/* the end of the file reads as "no start line" */
	BIO_free(bio);
	free(buf);
	if (sk_X509_num(sk) == 0) {
		sk_X509_free(sk);
		snprintf(why, wl, "no certificate in the file (expected PEM)");
		return NULL;
	}
	return sk;
oom:
	BIO_free(bio);
	free(buf);
	sk_X509_pop_free(sk, X509_free);
	snprintf(why, wl, "out of memory");
	return NULL;
}

static EVP_PKEY *
load_key(const char *path, char *why, size_t wl)
{
	EVP_PKEY *k = NULL;
	char *buf;
	size_t len;
	BIO *bio;

	if (tb_read_file(path, TLS_MAX_FILE, &buf, &len, why, wl) != TB_READ_OK)
		return NULL;
	if ((bio = BIO_new_mem_buf(buf, (int)len)) != NULL)
		k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	explicit_bzero(buf, len);
	free(buf);
	if (k == NULL) {
		ERR_clear_error();
		snprintf(why, wl, "no private key in the file (expected an "
		    "unencrypted PEM key)");
	}
	return k;
}

/*
 * Certificate chain and key into ctx. Options name what the message blames:
 * the key option for a key that does not match its certificate.
 */
static int
use_cert_and_key(SSL_CTX *ctx, const char *cert, const char *key,
    const char *cert_opt, const char *key_opt, struct tls_errctx *e,
    X509 **leaf_out)
{
	STACK_OF(X509) *sk;
	EVP_PKEY *pk;
	char why[256];
	X509 *leaf;
	int i, ok;

	if ((sk = load_certs(cert, why, sizeof(why))) == NULL) {
		tls_err(e, cert_opt, "%s: %s", cert, why);
		return -1;
	}
	leaf = sk_X509_value(sk, 0);
	if (!SSL_CTX_use_certificate(ctx, leaf)) {
		tls_err(e, cert_opt, "%s: %s", cert, ssl_reason());
		sk_X509_pop_free(sk, X509_free);
		return -1;
	}
	for (i = 1; i < sk_X509_num(sk); i++) {
		if (!SSL_CTX_add1_chain_cert(ctx, sk_X509_value(sk, i))) {
			tls_err(e, cert_opt, "%s: chain certificate %d: %s", cert,
			    i, ssl_reason());
			sk_X509_pop_free(sk, X509_free);
			return -1;
		}
	}
	if ((pk = load_key(key, why, sizeof(why))) == NULL) {
		tls_err(e, key_opt, "%s: %s", key, why);
		sk_X509_pop_free(sk, X509_free);
		return -1;
	}
	ok = SSL_CTX_use_PrivateKey(ctx, pk) && SSL_CTX_check_private_key(ctx);
	EVP_PKEY_free(pk);
	if (!ok) {
		ERR_clear_error();
		tls_err(e, key_opt, "%s: does not match the certificate %s", key, cert);
		sk_X509_pop_free(sk, X509_free);
		return -1;
	}
	if (leaf_out != NULL && (*leaf_out = X509_dup(leaf)) == NULL) {
		tls_err(e, cert_opt, "%s: out of memory", cert);
		sk_X509_pop_free(sk, X509_free);
		return -1;
	}
	sk_X509_pop_free(sk, X509_free);
	return 0;
}

/* Trust the CA certificates of path in ctx; also name them to clients
 * asking for a certificate (client_list). */
static int
use_ca(SSL_CTX *ctx, const char *path, int client_list, const char *opt,
    struct tls_errctx *e)
{
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	STACK_OF(X509) *sk;
	char why[256];
	int i;

	if ((sk = load_certs(path, why, sizeof(why))) == NULL) {
		tls_err(e, opt, "%s: %s", path, why);
		return -1;
	}
	for (i = 0; i < sk_X509_num(sk); i++) {
		if (!X509_STORE_add_cert(st, sk_X509_value(sk, i)) ||
		    (client_list && !SSL_CTX_add_client_CA(ctx, sk_X509_value(sk, i)))) {
			tls_err(e, opt, "%s: certificate %d: %s", path, i + 1,
			    ssl_reason());
			sk_X509_pop_free(sk, X509_free);
			return -1;
		}
	}
	sk_X509_pop_free(sk, X509_free);
	return 0;
}

/* ---- session ticket keys (process-wide) ---- */

/*
 * A retired key must decrypt every ticket it made until that ticket
 * expires, however soon the next rotation comes (an admin call next to the
 * timer): so what is kept is decided by time, not by a count of rotations.
 */
struct ticket_key {
	unsigned char name[16];
	unsigned char aes[32];		/* AES-256-CBC */
	unsigned char hmac[32];		/* HMAC-SHA256 */
	double life;			/* longest ticket lifetime while it encrypted */
	double until;			/* retired: needed until then (monotonic s) */
};

static struct {
	pthread_mutex_t lock;
	struct ticket_key keys[TLS_TICKET_KEYS];	/* [0] encrypts */
	int n;
	double life;			/* longest tls_session_timeout in force */
	struct event *timer;
	double rotation;
} tk = { .lock = PTHREAD_MUTEX_INITIALIZER };

int
tls_rotate_ticket_key(void)
{
	return tls_rotate_ticket_key_at((double)tb_mono_ns() / 1e9);
}

/*
 * A new encryption key in front. The one it replaces is needed until its
 * last ticket expires; retired keys past that are forgotten. Only when more
 * keys than the ring holds are still needed is the oldest forgotten early
 * (logged: its tickets then need a full handshake).
 */
int
tls_rotate_ticket_key_at(double now)
{
	struct ticket_key k;
	int i, n, early = 0;

	memset(&k, 0, sizeof(k));
	if (RAND_bytes(k.name, sizeof(k.name)) <= 0 ||
	    RAND_bytes(k.aes, sizeof(k.aes)) <= 0 ||
	    RAND_bytes(k.hmac, sizeof(k.hmac)) <= 0)
		return -1;
	pthread_mutex_lock(&tk.lock);
	k.life = tk.life;
	if (tk.n > 0)
		tk.keys[0].until = now + tk.keys[0].life + TLS_TICKET_SLACK;
	for (i = n = 0; i < tk.n; i++)
		if (tk.keys[i].until > now)
			tk.keys[n++] = tk.keys[i];
	if (n == TLS_TICKET_KEYS)
		n--, early = 1;
	memmove(&tk.keys[1], &tk.keys[0], (size_t)n * sizeof(tk.keys[0]));
	tk.keys[0] = k;
	tk.n = n + 1;
	explicit_bzero(&tk.keys[tk.n], sizeof(tk.keys) - (size_t)tk.n * sizeof(tk.keys[0]));
	pthread_mutex_unlock(&tk.lock);
	explicit_bzero(&k, sizeof(k));
	if (early)
		log_warnx("tls: %d session ticket keys still have unexpired tickets; "
		    "forgetting the oldest (its tickets get a full handshake)",
		    TLS_TICKET_KEYS);
	return 0;
}

/*
 * OpenSSL asks for a key to encrypt a new ticket (enc = 1) or the key named
 * in a ticket (enc = 0). Returning 2 for an older key makes OpenSSL issue a
 * fresh ticket under the current one. One mutex per handshake: cheap next
 * to the handshake itself.
 */
static int
ticket_cb(SSL *s, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *ectx,
    EVP_MAC_CTX *hctx, int enc)
{
	char digest[] = "SHA256";
	OSSL_PARAM params[3];
	struct ticket_key k;
	int i, found = -1, ok;

	pthread_mutex_lock(&tk.lock);
	if (enc && tk.n > 0)
		found = 0;
	for (i = 0; !enc && i < tk.n; i++)
		if (memcmp(tk.keys[i].name, name, sizeof(tk.keys[i].name)) == 0) {
			found = i;
			break;
		}
	if (found >= 0)
		k = tk.keys[found];
	pthread_mutex_unlock(&tk.lock);
	if (found < 0)
		return 0;	/* no key yet: no ticket; unknown key: a full handshake */
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac,
	    sizeof(k.hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		memcpy(name, k.name, sizeof(k.name));
		ok = RAND_bytes(iv, 16) > 0 &&
		    EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv);
	} else {
		ok = EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv);
	}
	ok = ok && EVP_MAC_CTX_set_params(hctx, params);
	explicit_bzero(&k, sizeof(k));
	if (!ok)
		return -1;
	return enc || found == 0 ? 1 : 2;
}

/* The longest ticket lifetime of cfg; the key encrypting now keeps the
 * longest it has seen (its tickets keep theirs). */
static void
ticket_keep(const struct tb_config *cfg)
{
	double life = 0;
	size_t i;

	for (i = 0; i < cfg->n_listeners; i++)
		if (cfg->listeners[i].tls_session_timeout > life)
			life = cfg->listeners[i].tls_session_timeout;
	pthread_mutex_lock(&tk.lock);
	tk.life = life;
	if (tk.n > 0 && tk.keys[0].life < life)
		tk.keys[0].life = life;
	pthread_mutex_unlock(&tk.lock);
	tk.rotation = cfg->tls_ticket_key_rotation;
}

static void
ticket_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	if (tls_rotate_ticket_key() < 0)
		log_warnx("tls: cannot make a new session ticket key; keeping the old one");
	else
		log_debug("tls: session ticket key rotated");
}

/* POST /tls/rotate-ticket-key: rotate now, as the timer does (which keeps
 * its schedule); the old keys still decrypt, so this is no revocation. */
static int
route_rotate(struct evbuffer *body, const char **ctype)
{
	int n;

	*ctype = "application/json";
	if (tls_rotate_ticket_key() < 0) {
		log_warnx("tls: cannot make a new session ticket key; keeping the old one");
		evbuffer_add_printf(body, "{\"error\": \"cannot make a new key\"}\n");
		return 500;
	}
	pthread_mutex_lock(&tk.lock);
	n = tk.n;
	pthread_mutex_unlock(&tk.lock);
	log_info("tls: session ticket key rotated by the admin endpoint");
	evbuffer_add_printf(body, "{\"ticket_keys\": %d}\n", n);
	return 200;
}

static void
ticket_arm(void)
{
	struct timeval tv = tb_timeval(tk.rotation);

	event_del(tk.timer);
	event_add(tk.timer, &tv);
}

int
tls_start(struct event_base *base, const struct tb_config *cfg)
{
	static int registered;

	ticket_keep(cfg);
	if (tls_rotate_ticket_key() < 0)
		return -1;
	if ((tk.timer = event_new(base, -1, EV_PERSIST, ticket_timer_cb, NULL)) == NULL)
		return -1;
	ticket_arm();
	if (!registered && admin_add_action("/tls/rotate-ticket-key", route_rotate) == 0)
		registered = 1;
	return 0;
}

void
tls_reload(const struct tb_config *cfg)
{
	double before = tk.rotation;

	ticket_keep(cfg);
	if (tk.timer != NULL && before != tk.rotation)
		ticket_arm();
}

void
tls_stop(void)
{
	if (tk.timer != NULL)
		event_free(tk.timer);
	tk.timer = NULL;
	pthread_mutex_lock(&tk.lock);
	explicit_bzero(tk.keys, sizeof(tk.keys));
	tk.n = 0;
	pthread_mutex_unlock(&tk.lock);
}

/* ---- listener side ---- */

/* RFC 7301 3.2: pick http/1.1 (or 1.0); a client offering neither gets a
 * fatal no_application_protocol alert rather than a surprise. */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const char *const want[] = { "http/1.1", "http/1.0", NULL };
	unsigned int i, n;
	int w;

	for (w = 0; want[w] != NULL; w++) {
		for (i = 0; i < inlen; i += 1 + n) {
			n = in[i];
			if (i + 1 + n > inlen)
				break;
			if (n == strlen(want[w]) && memcmp(in + i + 1, want[w], n) == 0) {
				*out = in + i + 1;
				*outlen = (unsigned char)n;
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* SNI: switch to the certificate that serves the name; exact names first,
 * then a wildcard for the name's parent; otherwise the default one. */
static int
servername_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_server *ts = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	const char *parent;
	size_t i;

	if (name == NULL || ts->n_sni == 0)
		return SSL_TLSEXT_ERR_OK;
	for (i = 0; i < ts->n_sni; i++)
		if (ts->sni[i].name[0] != '*' && strcasecmp(ts->sni[i].name, name) == 0)
			goto found;
	if ((parent = strchr(name, '.')) != NULL)
		for (i = 0; i < ts->n_sni; i++)
			if (ts->sni[i].name[0] == '*' &&
			    strcasecmp(ts->sni[i].name + 1, parent) == 0)
				goto found;
	return SSL_TLSEXT_ERR_OK;
found:
	if (SSL_set_SSL_CTX(ssl, ts->sni[i].ctx) == NULL)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	return SSL_TLSEXT_ERR_OK;
}

/* Everything but the certificate: the same on the default and SNI contexts. */
static SSL_CTX *
server_ctx_new(const struct tb_listener_conf *l, struct tls_errctx *e)
{
	unsigned char sid[EVP_MAX_MD_SIZE];
	unsigned int sidlen = 0;
	const char *v = l->tls_min_version;
	SSL_CTX *ctx;
	long mode;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_err(e, "tls_certificate", "%s", ssl_reason());
		return NULL;
	}
	if (strncasecmp(v, "TLSv", 4) == 0)
		v += 4;
	SSL_CTX_set_min_proto_version(ctx, strcmp(v, "1.3") == 0 ?
	    TLS1_3_VERSION : TLS1_2_VERSION);
	/* No renegotiation (a DoS vector, and HTTP/1.1 never needs it). A
	 * client closing without close_notify is an EOF, not an error: most
	 * do, and the request framing says whether anything was cut. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
	    (l->tls_session_tickets ? 0 : SSL_OP_NO_TICKET));
	/* Idle keep-alive connections give their 2 x 17 KB buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (!SSL_CTX_set_cipher_list(ctx, l->tls_ciphers)) {
		tls_err(e, "tls_ciphers", "no usable cipher in the list (%s)", ssl_reason());
		goto fail;
	}
	if (!SSL_CTX_set_ciphersuites(ctx, l->tls_ciphersuites)) {
		tls_err(e, "tls_ciphersuites", "no usable suite in the list (%s)",
		    ssl_reason());
		goto fail;
	}
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	/* Sessions resume only on the listener that made them. */
	if (!EVP_Digest(l->name, strlen(l->name), sid, &sidlen, EVP_sha256(), NULL) ||
	    !SSL_CTX_set_session_id_context(ctx, sid,
	    sidlen > SSL_MAX_SID_CTX_LENGTH ? SSL_MAX_SID_CTX_LENGTH : sidlen)) {
		tls_err(e, "tls_certificate", "%s", ssl_reason());
		goto fail;
	}
	if (l->tls_session_cache_size > 0) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
		SSL_CTX_sess_set_cache_size(ctx, (long)l->tls_session_cache_size);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	}
	SSL_CTX_set_timeout(ctx, (long)l->tls_session_timeout);
	if (l->tls_session_tickets)
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
	else if (l->tls_session_cache_size == 0)
		SSL_CTX_set_num_tickets(ctx, 0);	/* nothing could resume them */
	if (l->tls_verify_client != TB_VERIFY_NONE) {
		if (use_ca(ctx, l->tls_client_ca, 1, "tls_client_ca", e) < 0)
			goto fail;
		mode = SSL_VERIFY_PEER;
		if (l->tls_verify_client == TB_VERIFY_REQUIRE)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, (int)mode, NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* Serve name (n bytes, copied) with ctx; 0/-1. */
static int
sni_add(struct tls_server *ts, const char *name, size_t n, SSL_CTX *ctx)
{
	struct tls_sni *ns;
	char *copy;

	if ((copy = strndup(name, n)) == NULL)
		return -1;
	if ((ns = realloc(ts->sni, (ts->n_sni + 1) * sizeof(*ns))) == NULL) {
		free(copy);
		return -1;
	}
	ts->sni = ns;
	ts->sni[ts->n_sni].name = copy;
	ts->sni[ts->n_sni++].ctx = ctx;
	return 0;
}

/* The names a certificate serves: DNS subjectAltNames, else the CN. */
static int
add_names(struct tls_server *ts, X509 *x, SSL_CTX *ctx)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	const unsigned char *d;
	GENERAL_NAME *g;
	char cn[256];
	int i, len, n = 0, rc = 0;

	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && rc == 0; i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		len = ASN1_STRING_length(g->d.dNSName);
		if (len <= 0 || memchr(d, '\0', (size_t)len) != NULL)
			continue;
		n++;
		rc = sni_add(ts, (const char *)d, (size_t)len, ctx);
	}
	GENERAL_NAMES_free(gens);
	if (rc == 0 && n == 0 && (len = X509_NAME_get_text_by_NID(
	    X509_get_subject_name(x), NID_commonName, cn, sizeof(cn))) > 0)
		rc = sni_add(ts, cn, (size_t)len, ctx);
	return rc;
}

static void
tls_server_free(struct tls_server *ts)
{
	size_t i;

	if (ts == NULL)
		return;
	for (i = 0; i < ts->n_sni; i++)
		free(ts->sni[i].name);
	free(ts->sni);
	for (i = 0; i < ts->n_ctxs; i++)
		SSL_CTX_free(ts->ctxs[i]);
	free(ts->ctxs);
	SSL_CTX_free(ts->ctx);
	free(ts);
}

static struct tls_server *
tls_server_new(const struct tb_listener_conf *l, struct tls_errctx *e)
{
	struct tls_server *ts;
	SSL_CTX *ctx, **nc;
	char *pair, *key;
	X509 *leaf = NULL;
	size_t i;

	if ((ts = calloc(1, sizeof(*ts))) == NULL ||
	    (ts->ctx = server_ctx_new(l, e)) == NULL ||
	    use_cert_and_key(ts->ctx, l->tls_certificate, l->tls_key,
	    "tls_certificate", "tls_key", e, NULL) < 0)
		goto fail;
	for (i = 0; i < l->n_tls_sni_certificates; i++) {
		/* "CERT:KEY", checked by config.c */
		if ((pair = strdup(l->tls_sni_certificates[i])) == NULL)
			goto oom;
		key = strchr(pair, ':');
		*key++ = '\0';
		ctx = server_ctx_new(l, e);
		if (ctx == NULL || (nc = realloc(ts->ctxs, (ts->n_ctxs + 1) *
		    sizeof(*nc))) == NULL) {
			SSL_CTX_free(ctx);
			free(pair);
			if (ctx == NULL)
				goto fail;
			goto oom;
		}
		ts->ctxs = nc;
		ts->ctxs[ts->n_ctxs++] = ctx;
		leaf = NULL;
		if (use_cert_and_key(ctx, pair, key, "tls_sni_certificates",
		    "tls_sni_certificates", e, &leaf) < 0) {
			free(pair);
			goto fail;
		}
		free(pair);
		if (add_names(ts, leaf, ctx) < 0) {
			X509_free(leaf);
			goto oom;
		}
		X509_free(leaf);
	}
	SSL_CTX_set_tlsext_servername_callback(ts->ctx, servername_cb);
	SSL_CTX_set_tlsext_servername_arg(ts->ctx, ts);
	return ts;
oom:
	tls_err(e, "tls_sni_certificates", "out of memory");
fail:
	tls_server_free(ts);
	return NULL;
}

SSL *
tls_server_ssl(const struct tls_server *ts)
{
	return SSL_new(ts->ctx);
}

/* Copy s into dst, printable ASCII only: it goes into headers and logs. */
static void
copy_printable(char *dst, size_t dlen, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < dlen; i++)
		dst[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	dst[o] = '\0';
}

void
tls_server_info(SSL *ssl, struct tls_conn_info *out)
{
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	X509 *peer = SSL_get0_peer_certificate(ssl);
	BIO *b;
	char *p;
	long n;

	out->protocol = SSL_get_version(ssl);
	out->cipher = SSL_get_cipher_name(ssl);
	out->resumed = SSL_session_reused(ssl);
	out->sni[0] = '\0';
	out->subject[0] = '\0';
	if (sni != NULL)
		copy_printable(out->sni, sizeof(out->sni), sni, strlen(sni));
	if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
		return;
	/* RFC 2253 with every non-ASCII byte escaped: safe in a header. */
	if ((b = BIO_new(BIO_s_mem())) == NULL)
		return;
	if (X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0 &&
	    (n = BIO_get_mem_data(b, &p)) > 0)
		copy_printable(out->subject, sizeof(out->subject), p, (size_t)n);
	BIO_free(b);
}

enum tls_fail
tls_server_failure(SSL *ssl, unsigned long e, int eof, char *why, size_t wl)
{
	const char *r;
	long vr;
	int reason = ERR_GET_REASON(e);

	if (e == 0) {
		snprintf(why, wl, "%s", eof ? "connection closed" : "connection error");
		return eof ? TLS_FAIL_CLOSED : TLS_FAIL_OTHER;
	}
	r = ERR_reason_error_string(e);
	snprintf(why, wl, "%s", r != NULL ? r : "error");
	if (ERR_GET_LIB(e) != ERR_LIB_SSL)
		return TLS_FAIL_OTHER;
	switch (reason) {
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_UNKNOWN_PROTOCOL:
		return TLS_FAIL_UNSUPPORTED_PROTOCOL;
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
		return TLS_FAIL_NO_SHARED_CIPHER;
	case SSL_R_NO_APPLICATION_PROTOCOL:
		return TLS_FAIL_NO_APPLICATION_PROTOCOL;
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		return TLS_FAIL_NO_CLIENT_CERTIFICATE;
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		if (ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK)
			snprintf(why, wl, "client certificate verify failed: %s",
			    X509_verify_cert_error_string(vr));
		return TLS_FAIL_BAD_CLIENT_CERTIFICATE;
	default:
		/* the peer's alerts are reasons SSL_AD_REASON_OFFSET + alert */
		if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
			return TLS_FAIL_PEER_ALERT;
		return TLS_FAIL_OTHER;
	}
}

/* ---- upstream side ---- */

/* A TLS 1.2 session or TLS 1.3 ticket arrived from an upstream: keep the
 * newest in the pool's slot (the SSL's app data) for the next connection. */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	SSL_SESSION **slot = SSL_get_app_data(ssl);

	if (slot == NULL)
		return 0;
	SSL_SESSION_free(*slot);
	*slot = sess;
	return 1;		/* we keep the reference */
}

static void
tls_client_free(struct tls_client *tc)
{
	if (tc == NULL)
		return;
	SSL_CTX_free(tc->ctx);
	free(tc->name);
	free(tc);
}

/* What a client context is built from: an upstream's or the OTLP
 * exporter's options, with their names for the messages. */
struct tls_client_opts {
	const char *host;		/* checked name; [brackets] allowed */
	int verify;
	const char *ca, *ca_opt;	/* NULL: the system store */
	const char *cert, *cert_opt, *key, *key_opt;
	const char *what;		/* option named for other errors */
};

static struct tls_client *
tls_client_build(const struct tls_client_opts *o, struct tls_errctx *e)
{
	static uint64_t next_id;
	struct tls_client *tc;
	unsigned char ip[16];
	const char *host;
	size_t hl;

	if ((tc = calloc(1, sizeof(*tc))) == NULL ||
	    (tc->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		tls_err(e, o->what, "out of memory");
		goto fail;
	}
	tc->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
	tc->verify = o->verify;
	SSL_CTX_set_min_proto_version(tc->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(tc->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(tc->ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Offer http/1.1 only: a server able to do h2 must not pick it. */
	if (SSL_CTX_set_alpn_protos(tc->ctx, (const unsigned char *)"\x08http/1.1", 9) != 0) {
		tls_err(e, o->what, "%s", ssl_reason());
		goto fail;
	}
	SSL_CTX_set_session_cache_mode(tc->ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(tc->ctx, new_session_cb);
	if (tc->verify) {
		SSL_CTX_set_verify(tc->ctx, SSL_VERIFY_PEER, NULL);
		if (o->ca != NULL) {
			if (use_ca(tc->ctx, o->ca, 0, o->ca_opt, e) < 0)
				goto fail;
		} else if (!SSL_CTX_set_default_verify_paths(tc->ctx)) {
			tls_err(e, o->what, "cannot load the system CA store: %s",
			    ssl_reason());
			goto fail;
		}
	} else {
		SSL_CTX_set_verify(tc->ctx, SSL_VERIFY_NONE, NULL);
	}
	if (o->cert != NULL &&
	    use_cert_and_key(tc->ctx, o->cert, o->key, o->cert_opt, o->key_opt,
	    e, NULL) < 0)
		goto fail;
	host = o->host;
	hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host++;
		hl -= 2;
	}
	if ((tc->name = strndup(host, hl)) == NULL) {
		tls_err(e, o->what, "out of memory");
		goto fail;
	}
	tc->name_is_ip = inet_pton(AF_INET, tc->name, ip) == 1 ||
	    inet_pton(AF_INET6, tc->name, ip) == 1;
	return tc;
fail:
	tls_client_free(tc);
	return NULL;
}

static struct tls_client *
tls_client_new(const struct tb_listener_conf *l, struct tls_errctx *e)
{
	struct tls_client_opts o = {
		/* The name: as configured, else the upstream host. */
		.host = l->upstream_tls_server_name != NULL ?
		    l->upstream_tls_server_name : l->upstream_host,
		.verify = l->upstream_tls_verify,
		.ca = l->upstream_tls_ca, .ca_opt = "upstream_tls_ca",
		.cert = l->upstream_tls_certificate,
		.cert_opt = "upstream_tls_certificate",
		.key = l->upstream_tls_key, .key_opt = "upstream_tls_key",
		.what = "upstream",
	};

	return tls_client_build(&o, e);
}

struct tls_client *
tls_client_for(const struct tb_config *cfg, const char *section,
    const char *host, const char *ca, const char *ca_opt, const char *cert,
    const char *cert_opt, const char *key, const char *key_opt, char *err,
    size_t errlen)
{
	struct tls_errctx e = { cfg, NULL, section, err, errlen };
	struct tls_client_opts o = {
		.host = host, .verify = 1, .ca = ca, .ca_opt = ca_opt,
		.cert = cert, .cert_opt = cert_opt, .key = key, .key_opt = key_opt,
		.what = ca_opt,
	};

	return tls_client_build(&o, &e);
}

void
tls_client_release(struct tls_client *tc)
{
	tls_client_free(tc);
}

SSL *
tls_client_ssl(const struct tls_client *tc, SSL_SESSION *sess, SSL_SESSION **slot)
{
	SSL *ssl = SSL_new(tc->ctx);

	if (ssl == NULL)
		return NULL;
	if (!tc->name_is_ip && !SSL_set_tlsext_host_name(ssl, tc->name))
		goto fail;
	if (tc->verify) {
		if (tc->name_is_ip) {
			if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), tc->name))
				goto fail;
		} else {
			SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (!SSL_set1_host(ssl, tc->name))
				goto fail;
		}
	}
	if (sess != NULL && SSL_SESSION_is_resumable(sess))
		(void)SSL_set_session(ssl, sess);	/* a miss is a full handshake */
	SSL_set_app_data(ssl, slot);
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

uint64_t
tls_client_id(const struct tls_client *tc)
{
	return tc->id;
}

int
tls_client_failure(SSL *ssl, unsigned long e, char *why, size_t wl)
{
	const char *r;
	long vr;

	if (e == 0 || ERR_GET_LIB(e) == ERR_LIB_SYS)
		return 0;
	if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
	    ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(why, wl, "certificate verify failed: %s",
		    X509_verify_cert_error_string(vr));
		return 1;
	}
	r = ERR_reason_error_string(e);
	snprintf(why, wl, "%s", r != NULL ? r : "error");
	return 1;
}

/* ---- per configuration ---- */

static void
tls_listener_free(struct tb_listener_conf *l)
{
	tls_server_free(l->tls);
	l->tls = NULL;
	tls_client_free(l->tls_up);
	l->tls_up = NULL;
}

/* ------------------------------------------------ configuration checks */

/* tls_min_version: 1.2 or 1.3; the older ones are deprecated by RFC 8996. */
static int
tls_check_version(void *field, char *why, size_t wl)
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

/* tls_sni_certificates: each member "CERT:KEY", both absolute paths. */
static int
tls_check_cert_pairs(void *field, char *why, size_t wl)
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

static const struct tb_opt_check tls_opt_checks[] = {
	{ "listener", "tls_min_version", tls_check_version },
	{ "listener", "tls_sni_certificates", tls_check_cert_pairs },
	{ NULL, NULL, NULL },
};

/*
 * The TLS options of a listener that only make sense together. The files
 * themselves are read later, by tls_conf_attach: loading stays free of file
 * I/O for the fuzzer and tests.
 */
static int
tls_conf_check(const struct tb_config *cfg, char *err, size_t errlen)
{
	static const char *const up_opts[] = { "upstream_tls_ca",
	    "upstream_tls_server_name", "upstream_tls_certificate",
	    "upstream_tls_key", NULL };
	const struct tb_listener_conf *l;
	const char *what, *why;
	size_t i, k;

	for (k = 0; k < cfg->n_listeners; k++) {
		l = &cfg->listeners[k];
		what = why = NULL;
		if ((l->tls_certificate == NULL) != (l->tls_key == NULL)) {
			what = l->tls_key == NULL ? "tls_certificate" : "tls_key";
			why = "tls_certificate and tls_key go together";
		} else if (l->tls_certificate == NULL &&
		    (what = l->n_tls_sni_certificates > 0 ? "tls_sni_certificates" :
		    l->tls_client_ca != NULL ? "tls_client_ca" :
		    l->tls_verify_client != TB_VERIFY_NONE ? "tls_verify_client" :
		    l->tls_client_subject_header != NULL ?
		    "tls_client_subject_header" : NULL) != NULL) {
			why = "needs tls_certificate (TLS on this listener)";
		} else if (l->tls_verify_client != TB_VERIFY_NONE &&
		    l->tls_client_ca == NULL) {
			what = "tls_verify_client";
			why = "needs tls_client_ca";
		} else if ((l->upstream_tls_certificate == NULL) !=
		    (l->upstream_tls_key == NULL)) {
			what = l->upstream_tls_key == NULL ?
			    "upstream_tls_certificate" : "upstream_tls_key";
			why = "upstream_tls_certificate and upstream_tls_key go "
			    "together";
		} else if (!l->upstream_tls) {
			for (i = 0; up_opts[i] != NULL; i++)
				if (config_line(l, up_opts[i]) != l->line)
					break;
			if (up_opts[i] != NULL) {
				what = up_opts[i];
				why = "only for an https:// upstream";
			}
		}
		if (what != NULL) {
			config_errorf(cfg, err, errlen, config_line(l, what),
			    what, "%s", why);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ the module */

static void
tls_conf_free(struct tb_config *cfg, void *data)
{
	size_t i;

	for (i = 0; i < cfg->n_listeners; i++)
		tls_listener_free(&cfg->listeners[i]);
}

int
tls_conf_attach(struct tb_config *cfg, char *err, size_t errlen)
{
	struct tls_errctx e = { cfg, NULL, NULL, err, errlen };
	struct tb_listener_conf *l;
	size_t i;

	cfg->mod[TB_MOD_TLS].free = tls_conf_free;
	for (i = 0; i < cfg->n_listeners; i++) {
		l = &cfg->listeners[i];
		e.l = l;
		if (l->tls_certificate != NULL && (l->tls = tls_server_new(l, &e)) == NULL)
			return -1;
		if (l->upstream_tls && (l->tls_up = tls_client_new(l, &e)) == NULL)
			return -1;
	}
	return 0;
}

const struct tb_module tls_module = {
	.name = "tls",
	.opt_checks = tls_opt_checks,
	.conf_check = tls_conf_check,
	.conf_attach = tls_conf_attach,
	.start = tls_start,
	.reload = tls_reload,
	.stop = tls_stop,
};
