/*
 * test_redact.c: what may be recorded of a request (src/redact.c).
 *
 * Every secret value in these inputs is made of 'Z' and nothing else in
 * them has a 'Z', so "no 'Z' in the output" is the property that no
 * secret byte was recorded; it is checked for every input, every
 * truncated prefix of it (on the heap at its exact length, so ASan sees
 * an over-read), and every output size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"
#include "tb_test.h"

#define W REDACT_WITHHELD

static char *const extras[] = { "X-Custom-Sig", "sessionid",
	"a_very_long_parameter_name_of_more_than_thirty_two_bytes" };

/* exact-size heap copy of s[0..n) */
static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	memcpy(p, s, n);
	return p;
}

/* ---- targets ---- */

static const struct {
	const char *in, *want;
} targets[] = {
	/* nothing to redact */
	{ "", "" }, { "*", "*" }, { "/", "/" }, { "/p?a=1&b=2", "/p?a=1&b=2" },
	{ "/v3/auth/tokens?nocatalog=1", "/v3/auth/tokens?nocatalog=1" },
	{ "/p@x/y", "/p@x/y" }, { "/p?email=a@b.c", "/p?email=a@b.c" },
	{ "http://host/p?email=a@b.c", "http://host/p?email=a@b.c" },
	{ "http://@host/", "http://@host/" },
	/* Swift temporary URLs, S3 presigned URLs */
	{ "/v1/AUTH_a/c/o?temp_url_sig=ZZZZ&temp_url_expires=ZZ",
	  "/v1/AUTH_a/c/o?temp_url_sig=REDACTED&temp_url_expires=REDACTED" },
	{ "/v1/AUTH_a/c/?temp_url_prefix=ZZ&temp_url_sig=ZZ&filename=x",
	  "/v1/AUTH_a/c/?temp_url_prefix=REDACTED&temp_url_sig=REDACTED&filename=x" },
	{ "/b/k?AWSAccessKeyId=ZZ&Expires=1&Signature=ZZ",
	  "/b/k?AWSAccessKeyId=REDACTED&Expires=1&Signature=REDACTED" },
	{ "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ZZ%2FZZ"
	  "&X-Amz-Security-Token=ZZ&X-Amz-Signature=ZZ&X-Amz-Expires=60",
	  "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED"
	  "&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Expires=60" },
	{ "/c?sig=ZZ&X-Goog-Signature=ZZ", "/c?sig=REDACTED&X-Goog-Signature=REDACTED" },
	/* oslo.utils' keys anywhere in a name, any case */
	{ "/servers?adminPass=ZZ&my_password=ZZ&auth_token=ZZ&tokenless=ZZ",
	  "/servers?adminPass=REDACTED&my_password=REDACTED&auth_token=REDACTED"
	  "&tokenless=REDACTED" },
	{ "/x?PASSPHRASE=ZZ&Private_Key=ZZ&client_secret=ZZ&limit=10",
	  "/x?PASSPHRASE=REDACTED&Private_Key=REDACTED&client_secret=REDACTED&limit=10" },
	/* case of the listed names */
	{ "/o?TEMP_URL_SIG=ZZ&signature=ZZ&x-amz-signature=ZZ",
	  "/o?TEMP_URL_SIG=REDACTED&signature=REDACTED&x-amz-signature=REDACTED" },
	/* whole names only for the listed ones */
	{ "/o?temp_url_sigx=1&xtemp_url_sig=2&signatures=3&design=4",
	  "/o?temp_url_sigx=1&xtemp_url_sig=2&signatures=3&design=4" },
	/* percent-encoded keys are decoded once, as the server does */
	{ "/o?temp%5Furl%5fsig=ZZ&%74emp_url_expires=ZZ&pass%77ord=ZZ",
	  "/o?temp%5Furl%5fsig=REDACTED&%74emp_url_expires=REDACTED&pass%77ord=REDACTED" },
	{ "/o?%2574emp_url_sig=1&temp_url_sig%zz=2&%=3&%7=4",
	  "/o?%2574emp_url_sig=1&temp_url_sig%zz=2&%=3&%7=4" },
	/* empty values, no '=', '=' in the value, repeated keys */
	{ "/o?temp_url_sig=&temp_url_sig&x=1", "/o?temp_url_sig=&temp_url_sig&x=1" },
	{ "/o?temp_url_sig=ZZ=ZZ&c=d", "/o?temp_url_sig=REDACTED&c=d" },
	{ "/o?sig=ZZ&sig=ZZ&SIG=ZZ&sig=", "/o?sig=REDACTED&sig=REDACTED&SIG=REDACTED&sig=" },
	{ "/o?&&=Yytoken&token==ZZ", "/o?&&=Yytoken&token=REDACTED" },
	/* ';' separators, '?' inside the query, fragments */
	{ "/o?a=1;temp_url_sig=ZZ;b=2", "/o?a=1;temp_url_sig=REDACTED;b=2" },
	{ "/o?next=/x?token=ZZ", "/o?next=/x?token=REDACTED" },
	{ "/o?temp_url_sig=ZZ#frag", "/o?temp_url_sig=REDACTED#frag" },
	{ "/o#access_token=ZZ", "/o#access_token=REDACTED" },
	{ "/o?x=1#temp_url_sig=ZZ&y", "/o?x=1#temp_url_sig=REDACTED&y" },
	/* userinfo, however the target is formed */
	{ "http://user:ZZ@host:8080/v3?x=1", "http://REDACTED:REDACTED@host:8080/v3?x=1" },
	{ "http://ZZ@host/", "http://REDACTED:REDACTED@host/" },
	{ "HTTPS://u:ZZ%40ZZ@h/p?token=ZZ", "HTTPS://REDACTED:REDACTED@h/p?token=REDACTED" },
	{ "http://u@ZZ@host/p", "http://REDACTED:REDACTED@host/p" },
	{ "http://u:ZZ?ZZ#ZZ@host/p", "http://REDACTED:REDACTED@host/p" },
	{ "http://u:ZZ@host", "http://REDACTED:REDACTED@host" },
	{ "user:ZZ@host/x", "REDACTED:REDACTED@host/x" },
	{ "//user:ZZ@host/x?sig=ZZ", "//REDACTED:REDACTED@host/x?sig=REDACTED" },
	/* [tracing] redact_query_params: whole names, any case */
	{ "/p?x-custom-sig=ZZ&SESSIONID=ZZ&session=3&sessionid2=4",
	  "/p?x-custom-sig=REDACTED&SESSIONID=REDACTED&session=3&sessionid2=4" },
	{ "/p?A_Very_Long_Parameter_Name_Of_More_Than_Thirty_Two_Bytes=ZZ",
	  "/p?A_Very_Long_Parameter_Name_Of_More_Than_Thirty_Two_Bytes=REDACTED" },
};

#define N_TARGETS (sizeof(targets) / sizeof(targets[0]))

static void
test_targets(void)
{
	char buf[512], *d;
	size_t i, n, len, cut, want;

	for (i = 0; i < N_TARGETS; i++) {
		n = strlen(targets[i].in);
		d = redact_target_dup(targets[i].in, n, extras, 3);
		CHECKF(d != NULL && strcmp(d, targets[i].want) == 0,
		    "%s -> %s, want %s", targets[i].in, d, targets[i].want);
		want = strlen(targets[i].want);
		CHECK(redact_target(targets[i].in, n, extras, 3, NULL, 0) ==
		    want);
		free(d);
		/* every output size: cut like snprintf, never a secret */
		for (cut = 1; cut <= want + 1; cut++) {
			memset(buf, '#', sizeof(buf));
			len = redact_target(targets[i].in, n, extras, 3, buf, cut);
			CHECK(len == want);
			CHECK(strlen(buf) == (want < cut ? want : cut - 1));
			CHECK(strncmp(buf, targets[i].want, cut - 1) == 0);
			CHECK(buf[cut] == '#');
		}
		/* every truncated prefix: no crash, no 'Z' (but a target cut
		 * before its '@' has a host:port, not userinfo) */
		for (len = 0; len <= n; len++) {
			char *p = dup_exact(targets[i].in, len);

			d = redact_target_dup(p, len, extras, 3);
			CHECKF(d != NULL && (strchr(d, 'Z') == NULL ||
			    strchr(targets[i].in, '@') != NULL),
			    "prefix %zu of %s: %s", len, targets[i].in, d);
			free(d);
			free(p);
		}
	}
	/* no extras at all */
	d = redact_target_dup("/p?sessionid=1&sig=ZZ", 21, NULL, 0);
	CHECK(strcmp(d, "/p?sessionid=1&sig=REDACTED") == 0);
	free(d);
}

/* Long keys and values: a secret name anywhere in a key of any length,
 * across every position of the matcher's window. */
static void
test_long(void)
{
	size_t pad, n;
	char *t, *d;

	for (pad = 0; pad < 1200; pad += (pad < 470 || pad > 560) ? 37 : 1) {
		t = malloc(pad + 64);
		memcpy(t, "/p?", 3);
		memset(t + 3, 'a', pad);
		n = 3 + pad + (size_t)sprintf(t + 3 + pad, "password=ZZ&b=1");
		d = redact_target_dup(t, n, NULL, 0);
		CHECKF(strchr(d, 'Z') == NULL && strstr(d, "password=REDACTED&b=1"),
		    "pad %zu", pad);
		free(d);
		/* the same key percent-encoded: the window is over decoded bytes */
		n = 3 + pad + (size_t)sprintf(t + 3 + pad, "pass%%77ord=ZZ");
		d = redact_target_dup(t, n, NULL, 0);
		CHECKF(strchr(d, 'Z') == NULL, "pad %zu (encoded)", pad);
		free(d);
		free(t);
	}
	/* 1 MiB: a long secret value, a long harmless query */
	n = 1 << 20;
	t = malloc(n);
	memcpy(t, "/o?temp_url_sig=", 16);
	memset(t + 16, 'Z', n - 16);
	d = redact_target_dup(t, n, extras, 3);
	CHECK(strcmp(d, "/o?temp_url_sig=REDACTED") == 0);
	free(d);
	for (pad = 3; pad + 4 <= n; pad += 4)
		memcpy(t + pad, "a=1&", 4);
	d = redact_target_dup(t, n, extras, 3);
	CHECK(d != NULL && strlen(d) == n && memcmp(d, t, n) == 0);
	free(d);
	free(t);
}

static void
test_names(void)
{
	static const struct {
		const char *k;
		int want;
	} keys[] = {
		{ "temp_url_sig", 1 }, { "Temp_Url_Sig", 1 }, { "temp%5furl%5Fsig", 1 },
		{ "temp_url_sigx", 0 }, { "xtemp_url_sig", 0 }, { "awsaccesskeyid", 1 },
		{ "password", 1 }, { "OLD_PASSWORD", 1 }, { "mytoken", 1 },
		{ "x-custom-sig", 1 }, { "limit", 0 }, { "marker", 0 }, { "", 0 },
		{ "%", 0 }, { "%7", 0 }, { "%74oken", 1 }, { "t%6fken", 1 },
	};
	static const struct {
		const char *n;
		int want;
	} fields[] = {
		{ "X-Auth-Token", 1 }, { "x-auth-token", 1 }, { "X_Auth_Token", 1 },
		{ "X-AUTH-TOKEN ", 1 }, { "X-Auth\x01-Token", 1 },
		{ "X-Subject-Token", 1 }, { "X-Service-Token", 1 },
		{ "X-Storage-Token", 1 }, { "X-Auth-Key", 1 }, { "X-Storage-Pass", 1 },
		{ "Authorization", 1 }, { "Proxy-Authorization", 1 }, { "Cookie", 1 },
		{ "X-Account-Meta-Temp-URL-Key", 1 },
		{ "X-Account-Meta-Temp-URL-Key-2", 1 },
		{ "x-container-meta-temp-url-key", 1 }, { "X-Amz-Security-Token", 1 },
		{ "Host", 0 }, { "Content-Type", 0 }, { "User-Agent", 0 },
		{ "X-Auth-User", 0 }, { "Sec-WebSocket-Key", 0 }, { "traceparent", 0 },
		{ "X-Trace-HMAC", 0 }, { "X-Openstack-Request-Id", 0 }, { "", 0 },
	};
	/* oslo.utils strutils._SANITIZE_KEYS (6.0.1), each inside a longer
	 * name: a copy on purpose, so that the module's list is checked
	 * against oslo's and not against itself */
	static const char *const oslo[] = {
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
	char k[64];
	size_t i;
	int n;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		CHECKF(redact_query_key(keys[i].k, strlen(keys[i].k), extras, 3) ==
		    keys[i].want, "key %s", keys[i].k);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		CHECKF(redact_field_name(fields[i].n, strlen(fields[i].n)) ==
		    fields[i].want, "field %s", fields[i].n);
	for (i = 0; i < sizeof(oslo) / sizeof(oslo[0]); i++) {
		n = snprintf(k, sizeof(k), "os_%s_X", oslo[i]);
		CHECKF(redact_query_key(k, (size_t)n, NULL, 0), "%s", k);
		/* and, letters and digits only, in a field name */
		n = snprintf(k, sizeof(k), "X-%s-Id", oslo[i]);
		CHECKF(redact_field_name(k, (size_t)n), "%s", k);
	}
}

/* ---- head samples ---- */

/* hex of s, for the expected samples */
static const char *
hx(const char *s)
{
	static char b[8][256];
	static int which;
	char *o = b[which++ % 8];
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		sprintf(o + 2 * i, "%02x", (unsigned char)s[i]);
	o[2 * i] = '\0';
	return o;
}

/* 1 if the sample shows no 'Z' byte (hex "5a" at a byte position) */
static int
sample_clean(const char *s)
{
	while (*s != '\0') {
		if (strncmp(s, W, sizeof(W) - 1) == 0) {
			s += sizeof(W) - 1;
			continue;
		}
		if (strncmp(s, "5a", 2) == 0)
			return 0;
		s += 2;
	}
	return 1;
}

static void
sample_is(const char *head, const char *at, size_t n, const char *want)
{
	char out[2 * REDACT_SAMPLE_MAX + sizeof(W) * (REDACT_SAMPLE_MAX / 2 + 1)];
	size_t len = strlen(head), off = (size_t)(strstr(head, at) - head);

	redact_head_sample(head, len, off, n, extras, 3, out, sizeof(out));
	CHECKF(strcmp(out, want) == 0, "at \"%s\": %s, want %s", at, out, want);
}

static const char *const heads[] = {
	"GET / HTTP/1.1\r\nHost: h\r\nX-Auth-Token : ZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Auth-Token\t: ZZZZ\r\nAccept: */*\r\n\r\n",
	"GET / HTTP/1.1\r\nx_AUTH_token:ZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Auth-Token: ZZ\r\n ZZZZ\r\n\tZZ\r\nA: b\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Auth-Token:\r\n\tZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Foo: a\r\n X-Subject-Token: ZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Auth-Token ZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Auth-Token\x01: ZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Auth-Tok\x01" "en: ZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Auth-TokenZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nAuthorization: Basic ZZZZ\r\nProxy-Authorization: ZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nCookie: a=ZZ; b=ZZ\r\nX-Storage-Pass: ZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Account-Meta-Temp-URL-Key-2: ZZ\r\n"
	"X-Container-Meta-Temp-Url-Key: ZZ\r\nX-Auth-Key: ZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Service-Token: ZZ\rZZ\r\nX-Storage-Token: ZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Amz-Security-Token: ZZ\r\nX-Token-Id gZZ:ZZ\r\n\r\n",
	"GET /o?a=\x01&temp_url_sig=ZZZZ&x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET http://u:ZZ@h/p?token=ZZ HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET  /o?sig=ZZ\tZZ  HTTP/1.1\r\n\r\n",
	"\r\nX-Auth-Token: ZZZZ\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /?sig=ZZZ HTTP/1.1\r\nX-Auth-Token: ZZ\r\n",
	"GET / HTTP/1.1\nX-Auth-Token: ZZ\nCookie: ZZ\n\n",
};

#define N_HEADS (sizeof(heads) / sizeof(heads[0]))

static void
test_samples(void)
{
	char exp[512];

	/* the case: the parser stops at the space before the colon */
	snprintf(exp, sizeof(exp), "%s%s%s", hx(" :"), W, hx("\r\n\r\n"));
	sample_is(heads[0], " : ", 16, exp);
	snprintf(exp, sizeof(exp), "%s%s%s", hx("\t:"), W, hx("\r\nAccept:"));
	sample_is(heads[1], "\t: ", 16, exp);
	snprintf(exp, sizeof(exp), "%s%s%s", hx("x_AUTH_token:"), W, hx("\r\n\r\n"));
	sample_is(heads[2], "x_AUTH", 64, exp);
	/* obs-fold: the continuation lines are the value */
	snprintf(exp, sizeof(exp), "%s%s%s%s%s", W, hx("\r\n"), W, hx("\r\n"),
	    hx("A: b\r\n\r\n"));
	sample_is(heads[3], " ZZZZ", 64, exp);
	snprintf(exp, sizeof(exp), "%s%s%s", hx("\r\n"), W, hx("\r\n\r\n"));
	sample_is(heads[4], "\r\n\tZZ", 64, exp);
	/* a continuation that looks like a credential field itself */
	snprintf(exp, sizeof(exp), "%s%s%s", hx(" X-Subject-Token:"), W,
	    hx("\r\n\r\n"));
	sample_is(heads[5], " X-Sub", 64, exp);
	/* no colon, or junk before it: all after the name */
	snprintf(exp, sizeof(exp), "%s%s%s", hx("X-Auth-Token"), W, hx("\r\n\r\n"));
	sample_is(heads[6], "X-Auth", 64, exp);
	sample_is(heads[7], "X-Auth", 64, exp);
	sample_is(heads[9], "X-Auth", 64, exp);
	snprintf(exp, sizeof(exp), "%s%s%s", hx("X-Auth-Tok\x01" "en:"), W,
	    hx("\r\n\r\n"));
	sample_is(heads[8], "X-Auth", 64, exp);
	/* the error inside the value: nothing of it */
	snprintf(exp, sizeof(exp), "%s%s", W, hx("\r\nProxy-Author"));
	sample_is(heads[10], "Basic", 24, exp);
	/* a bare CR stays inside the value */
	snprintf(exp, sizeof(exp), "%s%s%s%s", W, hx("\r\nX-Storage-Token:"), W,
	    hx("\r\n\r\n"));
	sample_is(heads[13], "ZZ\rZZ", 40, exp);
	/* the oslo keys: a name that goes on, a line without a colon */
	snprintf(exp, sizeof(exp), "%s%s%s%s%s", hx("X-Amz-Security-Token:"), W,
	    hx("\r\nX-Token"), W, hx("\r\n\r\n"));
	sample_is(heads[14], "X-Amz", 64, exp);
	/* request line: the values of secret parameters, the userinfo */
	snprintf(exp, sizeof(exp), "%s%s%s", hx("\x01&temp_url_sig="), W,
	    hx("&x=1 HTTP/1.1\r"));
	sample_is(heads[15], "\x01", 33, exp);
	snprintf(exp, sizeof(exp), "%s%s%s%s%s", hx("http://"), W, hx("@h/p?token="),
	    W, hx(" HTTP/1.1\r\nHost: h\r\n\r\n"));
	sample_is(heads[16], "http", 64, exp);
	/* no request line: a credential field as the first line */
	snprintf(exp, sizeof(exp), "%s%s%s", hx("X-Auth-Token:"), W, hx("\r\n\r\n"));
	sample_is(heads[18], "X-Auth", 64, exp);
	/* harmless fields are shown whole */
	sample_is(heads[0], "Host", 9, hx("Host: h\r\n"));
	/* off at or past the end, n beyond the maximum */
	sample_is(heads[0], "\r\n\r\n", 0, "");
	{
		char out[8];

		CHECK(redact_head_sample("GET", 3, 3, 16, NULL, 0, out,
		    sizeof(out)) == 0 && out[0] == '\0');
		CHECK(redact_head_sample("GET", 3, 9, 16, NULL, 0, out,
		    sizeof(out)) == 0 && out[0] == '\0');
		/* a short buffer is cut, never overrun */
		CHECK(redact_head_sample("GET / HTTP", 10, 0, 10, NULL, 0, out,
		    sizeof(out)) == 7 && strcmp(out, "4745542") == 0);
	}
}

/* Every head, every truncated prefix, every window: no 'Z' shown. */
static void
test_samples_clean(void)
{
	char out[2 * REDACT_SAMPLE_MAX + sizeof(W) * (REDACT_SAMPLE_MAX / 2 + 1)];
	static const size_t ns[] = { 1, 2, 16, 64, 100 };
	size_t h, len, off, k;
	char *p;

	for (h = 0; h < N_HEADS; h++) {
		for (len = 1; len <= strlen(heads[h]); len++) {
			p = dup_exact(heads[h], len);
			for (off = 0; off < len; off++)
				for (k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
					size_t n = off + ns[k] <= len ? ns[k] :
					    len - off;

					redact_head_sample(p, off + n, off, n,
					    extras, 3, out, sizeof(out));
					CHECKF(sample_clean(out), "head %zu, "
					    "len %zu, off %zu, n %zu: %s", h,
					    len, off, n, out);
				}
			free(p);
		}
	}
}

/* A name longer than the matcher's window, a secret after it. */
static void
test_samples_long(void)
{
	char out[256];
	size_t n = 100000, len;
	char *h = malloc(n + 64);

	memcpy(h, "GET / HTTP/1.1\r\nX-", 18);
	memset(h + 18, 'a', n);
	len = 18 + n + (size_t)sprintf(h + 18 + n, "-Token: ZZZZ\r\n\r\n");
	redact_head_sample(h, len, len - 16, 16, NULL, 0, out, sizeof(out));
	CHECKF(sample_clean(out) && strstr(out, W) != NULL, "%s", out);
	free(h);
}

int
main(void)
{
	test_targets();
	test_long();
	test_names();
	test_samples();
	test_samples_clean();
	test_samples_long();
	TB_TEST_END();
}
