/*
 * test_tls.c: the listener contexts tls.c builds, driven by in-memory
 * handshakes (a BIO pair between an OpenSSL client and tls_server_ssl()):
 * SNI selection, ALPN, resumption by ticket across key rotations (which
 * keys are kept, against a clock the test sets), the session cache, and the messages for broken files. Certificates are made
 * here with OpenSSL's API (no openssl command needed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "tb_test.h"
#include "tls.h"

static char dir[] = "/tmp/tb_test_tls.XXXXXX";

/* A self-signed P-256 certificate for cn (and DNS:cn) and its key, as
 * DIR/NAME.pem and DIR/NAME.key. */
static void
make_cert(const char *name, const char *cn)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	char path[256], san[300];
	FILE *f;

	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, n);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	snprintf(san, sizeof(san), "DNS:%s", cn);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	X509_sign(x, k, EVP_sha256());
	snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
	f = fopen(path, "w");
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	f = fopen(path, "w");
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* A config from text (DIR substituted for @) with TLS attached; NULL and
 * the message in err on failure. */
static struct tb_config *
load(const char *text, char *err, size_t errlen)
{
	char buf[4096];
	struct tb_config *c = NULL;
	size_t o = 0;
	const char *p;

	for (p = text; *p != '\0' && o + sizeof(dir) < sizeof(buf); p++) {
		if (*p == '@') {
			memcpy(buf + o, dir, strlen(dir));
			o += strlen(dir);
		} else {
			buf[o++] = *p;
		}
	}
	if (config_load_buffer("FILE", buf, o, &c, err, errlen) < 0)
		return NULL;
	if (tls_conf_attach(c, err, errlen) < 0) {
		config_unref(c);
		return NULL;
	}
	return c;
}

/*
 * One handshake between a client made from cctx (SNI name, ALPN list and a
 * session to resume may be NULL) and a new server SSL of ts; the client
 * reads the server's first bytes so TLS 1.3 tickets arrive. Returns 1 when
 * it completed; *out gets the client (the caller frees it).
 */
static int
handshake(SSL_CTX *cctx, const struct tls_server *ts, const char *sni,
    const unsigned char *alpn, unsigned alpn_len, SSL_SESSION *sess, SSL **out)
{
	SSL *c = SSL_new(cctx), *s = tls_server_ssl(ts);
	BIO *cb, *sb;
	char b[8];
	int i, rc = 0, cd = 0, sd = 0;

	BIO_new_bio_pair(&cb, 0, &sb, 0);
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	if (sni != NULL)
		SSL_set_tlsext_host_name(c, sni);
	if (alpn != NULL)
		SSL_set_alpn_protos(c, alpn, alpn_len);
	if (sess != NULL)
		SSL_set_session(c, sess);
	for (i = 0; i < 20 && !(cd && sd); i++) {
		if (!cd && SSL_do_handshake(c) == 1)
			cd = 1;
		if (!sd && SSL_do_handshake(s) == 1)
			sd = 1;
		if (SSL_get_error(c, -1) == SSL_ERROR_SSL || SSL_get_error(s, -1) == SSL_ERROR_SSL)
			break;
	}
	if (cd && sd) {
		SSL_write(s, "hi", 2);
		rc = SSL_read(c, b, sizeof(b)) == 2;
		/* as sock_tls_close() does: a good connection's session stays */
		SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	}
	ERR_clear_error();
	SSL_free(s);
	*out = c;
	return rc;
}

static char *
peer_cn(SSL *c, char *buf, size_t len)
{
	X509 *x = SSL_get0_peer_certificate(c);

	buf[0] = '\0';
	if (x != NULL)
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)len);
	return buf;
}

/* Before tls_start() there is no ticket key: handshakes go on, without
 * tickets (a regression: the ticket callback failed them). */
static void
test_sni_and_alpn(void)
{
	char err[512], cn[64];
	struct tb_config *c;
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	static const struct { const char *name, *cn; } sni[] = {
		{ NULL, "def.example" },
		{ "one.example", "one.example" },
		{ "x.wild.example", "*.wild.example" },
		{ "a.b.wild.example", "def.example" },	/* a wildcard covers one label */
		{ "other.example", "def.example" },
	};
	const unsigned char *sel;
	unsigned sel_len;
	size_t i;
	SSL *cl;

	c = load("[listener:a]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n"
	    "tls_certificate = @/def.pem\ntls_key = @/def.key\n"
	    "tls_sni_certificates = @/one.pem:@/one.key,\n  @/wild.pem:@/wild.key\n",
	    err, sizeof(err));
	CHECKF(c != NULL, "%s", err);
	if (c == NULL)
		return;
	for (i = 0; i < sizeof(sni) / sizeof(sni[0]); i++) {
		CHECK(handshake(cctx, c->listeners[0].tls, sni[i].name, NULL, 0, NULL, &cl));
		CHECKF(strcmp(peer_cn(cl, cn, sizeof(cn)), sni[i].cn) == 0, "SNI %s: got %s",
		    sni[i].name ? sni[i].name : "(none)", cn);
		SSL_free(cl);
	}

	/* ALPN: http/1.1 chosen from a list, h2 alone refused */
	CHECK(handshake(cctx, c->listeners[0].tls, NULL,
	    (const unsigned char *)"\x02h2\x08http/1.1", 12, NULL, &cl));
	SSL_get0_alpn_selected(cl, &sel, &sel_len);
	CHECK(sel_len == 8 && memcmp(sel, "http/1.1", 8) == 0);
	SSL_free(cl);
	CHECK(!handshake(cctx, c->listeners[0].tls, NULL,
	    (const unsigned char *)"\x02h2", 3, NULL, &cl));
	SSL_free(cl);
	config_unref(c);
	SSL_CTX_free(cctx);
}

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A new ticket from a full handshake with ts (the caller frees it). */
static SSL_SESSION *
new_ticket(SSL_CTX *cctx, const struct tls_server *ts)
{
	SSL_SESSION *sess;
	SSL *cl;

	CHECK(handshake(cctx, ts, NULL, NULL, 0, NULL, &cl));
	CHECK(!SSL_session_reused(cl));
	sess = SSL_get1_session(cl);
	SSL_free(cl);
	CHECK(sess != NULL && SSL_SESSION_is_resumable(sess));
	return sess;
}

/* 1 when sess resumes with ts. */
static int
resumes(SSL_CTX *cctx, const struct tls_server *ts, SSL_SESSION *sess)
{
	SSL *cl;
	int r;

	r = handshake(cctx, ts, NULL, NULL, 0, sess, &cl) && SSL_session_reused(cl);
	SSL_free(cl);
	return r;
}

/*
 * Tickets: resumed after a rotation (the old key still decrypts), after
 * rotations in quick succession too, as long as the ticket has not expired;
 * the key is forgotten once all its tickets have; and the session cache
 * alone.
 */
static void
test_resumption(struct event_base *base)
{
	char err[512];
	struct tb_config *c;
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_SESSION *sess;
	SSL *cl;
	double t;
	int i;

	/* tickets live 300 s, a new key every 300 s */
	c = load("tls_ticket_key_rotation = 300\n[listener:a]\nlisten = 127.0.0.1:1\n"
	    "upstream = http://127.0.0.1:2\ntls_certificate = @/def.pem\n"
	    "tls_key = @/def.key\n", err, sizeof(err));
	CHECKF(c != NULL, "%s", err);
	if (c == NULL)
		return;
	CHECK(tls_start(base, c) == 0);
	sess = new_ticket(cctx, c->listeners[0].tls);
	CHECK(resumes(cctx, c->listeners[0].tls, sess));
	CHECK(tls_rotate_ticket_key() == 0);
	CHECK(resumes(cctx, c->listeners[0].tls, sess));
	/*
	 * Regression: the ring kept 1 + timeout / rotation keys whatever their
	 * age, so a second rotation soon after the first (an admin call next
	 * to the timer) forgot a key retired seconds before, and tickets with
	 * most of their 300 s ahead got a full handshake.
	 */
	for (i = 0; i < 2; i++)
		CHECK(tls_rotate_ticket_key() == 0);
	CHECK(resumes(cctx, c->listeners[0].tls, sess));
	/* the ring holds 8 keys: with 8 newer ones, sess's key goes early */
	for (i = 0; i < 4; i++)
		CHECK(tls_rotate_ticket_key() == 0);
	CHECK(resumes(cctx, c->listeners[0].tls, sess));
	CHECK(tls_rotate_ticket_key() == 0);
	CHECK(!resumes(cctx, c->listeners[0].tls, sess));
	SSL_SESSION_free(sess);

	/* by the clock (a fresh ring): retired at t, a key decrypts while its
	 * tickets may live (300 s, and 2 s for OpenSSL's whole seconds), then
	 * is forgotten at the first rotation after */
	tls_stop();
	CHECK(tls_start(base, c) == 0);
	sess = new_ticket(cctx, c->listeners[0].tls);
	t = mono_now();
	CHECK(tls_rotate_ticket_key_at(t) == 0);
	CHECK(tls_rotate_ticket_key_at(t + 299) == 0);
	CHECK(resumes(cctx, c->listeners[0].tls, sess));
	CHECK(tls_rotate_ticket_key_at(t + 303) == 0);
	CHECK(!resumes(cctx, c->listeners[0].tls, sess));
	SSL_SESSION_free(sess);
	tls_stop();
	config_unref(c);

	/* TLS 1.2, no tickets: the server-side cache resumes by session id */
	c = load("[listener:a]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n"
	    "tls_certificate = @/def.pem\ntls_key = @/def.key\n"
	    "tls_session_tickets = false\n", err, sizeof(err));
	CHECKF(c != NULL, "%s", err);
	if (c == NULL)
		return;
	SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
	CHECK(handshake(cctx, c->listeners[0].tls, NULL, NULL, 0, NULL, &cl));
	sess = SSL_get1_session(cl);
	SSL_free(cl);
	CHECK(handshake(cctx, c->listeners[0].tls, NULL, NULL, 0, sess, &cl));
	CHECK(SSL_session_reused(cl));
	SSL_free(cl);
	SSL_SESSION_free(sess);
	config_unref(c);
	SSL_CTX_free(cctx);
}

/* Broken files are config errors naming the line, option and file. */
static void
test_bad_files(void)
{
	static const char head[] = "[listener:a]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n";
	struct { const char *conf, *want; } cases[] = {
		{ "tls_certificate = @/nope.pem\ntls_key = @/def.key\n",
		  "FILE:4: tls_certificate: @/nope.pem: cannot open: No such file or directory" },
		{ "tls_certificate = @/def.key\ntls_key = @/def.key\n",
		  "FILE:4: tls_certificate: @/def.key: no certificate in the file (expected PEM)" },
		{ "tls_certificate = @/def.pem\ntls_key = @/one.key\n",
		  "FILE:5: tls_key: @/one.key: does not match the certificate @/def.pem" },
		{ "tls_certificate = @/def.pem\ntls_key = @/def.pem\n",
		  "FILE:5: tls_key: @/def.pem: no private key in the file (expected an unencrypted PEM key)" },
		{ "tls_certificate = /dev/null\ntls_key = @/def.key\n",
		  "FILE:4: tls_certificate: /dev/null: cannot read: not a regular file" },
		{ "tls_certificate = @/def.pem\ntls_key = @/def.key\ntls_ciphers = NOPE\n",
		  "FILE:6: tls_ciphers: no usable cipher in the list (no cipher match)" },
		{ "tls_certificate = @/def.pem\ntls_key = @/def.key\n"
		  "tls_sni_certificates = @/one.pem:@/def.key\n",
		  "FILE:6: tls_sni_certificates: @/def.key: does not match the certificate @/one.pem" },
	};
	char conf[1024], want[1024], err[1024];
	struct tb_config *c;
	size_t i, o;
	const char *p;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(conf, sizeof(conf), "%s%s", head, cases[i].conf);
		for (p = cases[i].want, o = 0; *p != '\0'; p++) {
			if (*p == '@') {
				memcpy(want + o, dir, strlen(dir));
				o += strlen(dir);
			} else {
				want[o++] = *p;
			}
		}
		want[o] = '\0';
		c = load(conf, err, sizeof(err));
		CHECKF(c == NULL && strcmp(err, want) == 0, "case %zu:\n  got  %s\n  want %s",
		    i, c == NULL ? err : "(loaded)", want);
		config_unref(c);
	}
}

int
main(void)
{
	struct event_base *base = event_base_new();
	char cmd[300];

	if (mkdtemp(dir) == NULL)
		return 1;
	make_cert("def", "def.example");
	make_cert("one", "one.example");
	make_cert("wild", "*.wild.example");
	test_sni_and_alpn();
	test_resumption(base);
	test_bad_files();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
	event_base_free(base);
	TB_TEST_END();
}
