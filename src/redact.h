/*
 * redact.h: what may be recorded of a request that carries credentials.
 *
 * The access log, the span (info.request.query), debug lines and the error
 * log's sample of a rejected head all record parts of what a client sent;
 * none of them may record a credential. OpenStack puts some in the query
 * (Swift temporary URLs, S3/EC2 presigned URLs, anything like "password="),
 * some in the userinfo of an absolute-form target, and most in header
 * fields (X-Auth-Token, Authorization, ...).
 *
 * The functions here are pure: no I/O, no state, thread-safe; only
 * redact_target_dup allocates. They never fail on hostile input: any bytes
 * are accepted, and what cannot be understood is withheld rather than kept
 * when it could hide a secret (see each function).
 */
#ifndef TB_REDACT_H
#define TB_REDACT_H

#include <stddef.h>

/* What replaces a secret query value (OpenTelemetry URL conventions) and
 * the userinfo of a URL ("https://REDACTED:REDACTED@host/" in url.full). */
#define REDACT_VALUE	"REDACTED"
#define REDACT_USERINFO	"REDACTED:REDACTED"

/* What stands for withheld bytes in a head sample. */
#define REDACT_WITHHELD	"<withheld>"

/* Most bytes redact_head_sample shows; longer windows are cut to it. */
#define REDACT_SAMPLE_MAX	64

/*
 * 1 if the value of query parameter key[0..n) must not be recorded, else 0.
 * key is as received: %XX escapes are decoded before matching (a '+' is
 * left as it is). Matching is ASCII case-insensitive throughout:
 *  - exactly one of the built-in names (Swift temp_url_sig,
 *    temp_url_expires, temp_url_prefix; S3/EC2 Signature, X-Amz-Signature,
 *    X-Amz-Credential, X-Amz-Security-Token, AWSAccessKeyId; OpenTelemetry's
 *    sig and X-Goog-Signature),
 *  - exactly one of extra[0..n_extra) ([tracing] redact_query_params),
 *  - or containing one of oslo.utils' strutils._SANITIZE_KEYS (password,
 *    token, secret, passphrase, private_key, auth_token, adminpass, ...)
 *    anywhere, as oslo's mask_dict_password matches dictionary keys.
 */
int redact_query_key(const char *key, size_t n, char *const *extra,
    size_t n_extra);

/*
 * 1 if header field name[0..n) carries a credential in its value, else 0.
 * The name is taken as a hostile parser would see it: only letters and
 * digits count, lowercased (so "X-Auth-Token", "x_auth_token",
 * "X-AUTH-TOKEN " and "X-Auth\x01-Token" are one name), and it matches when
 * it starts with one of X-Auth-Token, X-Subject-Token, X-Service-Token,
 * X-Storage-Token, X-Auth-Key, X-Storage-Pass, Authorization,
 * Proxy-Authorization, Cookie, X-Account-Meta-Temp-URL-Key,
 * X-Container-Meta-Temp-URL-Key, or contains one of oslo.utils'
 * sanitize keys (normalized the same way: "auth_token" -> "authtoken").
 */
int redact_field_name(const char *name, size_t n);

/*
 * Write request-target t[0..n) as it may be recorded into out (at most
 * outlen - 1 bytes and a NUL when outlen > 0, cut like snprintf), and
 * return the length the whole result has (so outlen 0 measures it).
 *
 *  - Userinfo: when t is not origin-form (does not start with '/' or '*'),
 *    or starts with "//", the bytes before the last '@' of its authority
 *    (after "scheme://" when it starts with a scheme, else from its
 *    start; up to the first '/') become REDACT_USERINFO, as
 *    OpenTelemetry's url.full does.
 *  - Query: from the first '?' or '#' after the authority, parameters are
 *    split on '&', ';', '?' and '#' (every separator some server or client
 *    honours: ';' for old CGI and webob, '#' for a fragment a broken client
 *    sent; splitting too much only hides more). The value of a parameter
 *    whose key redact_query_key() names becomes REDACT_VALUE; the key, the
 *    separators, empty values and parameters without '=' stay as sent.
 */
size_t redact_target(const char *t, size_t n, char *const *extra,
    size_t n_extra, char *out, size_t outlen);

/* The same into a new NUL-terminated string (the caller frees it); NULL
 * when out of memory. */
char *redact_target_dup(const char *t, size_t n, char *const *extra,
    size_t n_extra);

/*
 * The error log's sample of a rejected head: the hex of head[off..off+n)
 * (n is cut to REDACT_SAMPLE_MAX), where each run of bytes that belongs to
 * a secret is written as REDACT_WITHHELD instead. len is how many bytes of
 * head may be read (off + n at least; bytes from 0 are read to know which
 * line and field off is in, and on to the end of off's line when there:
 * give all there is). Secret bytes are:
 *  - in the request line (the first line, and the first after an empty
 *    line: a pipelined head), the userinfo and secret query values of the
 *    target as redact_target() finds them; the target runs from after
 *    the method's spaces to the line's last space (or its end), whatever
 *    else is wrong with the line; when len cuts the line, all of an
 *    authority whose end is not in view (its '@' may be to come);
 *  - in a field line whose name redact_field_name() accepts, whatever
 *    follows the name: after the colon when only spaces or tabs come
 *    between (so "X-Auth-Token : v" still shows " :"), else everything
 *    after the leading token characters of the line;
 *  - the whole of every continuation line (starting with SP or HTAB,
 *    obs-fold) of such a field, and the value part of a continuation line
 *    that looks like such a field itself.
 * Lines end at LF only (a bare CR stays inside the line and its value); a
 * CR right before the LF is not part of the value.
 * out receives at most outlen - 1 characters and a NUL (outlen > 0);
 * 2 * REDACT_SAMPLE_MAX + sizeof(REDACT_WITHHELD) * (REDACT_SAMPLE_MAX / 2
 * + 1) is always enough. Returns the length written.
 */
size_t redact_head_sample(const char *head, size_t len, size_t off, size_t n,
    char *const *extra, size_t n_extra, char *out, size_t outlen);

#endif
