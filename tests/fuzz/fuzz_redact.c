/*
 * fuzz_redact.c: libFuzzer target for src/redact.c, which reads every
 * request-target and every rejected head a client sends.
 *
 * Input: two control bytes, then the payload. Each function runs over an
 * exact-size heap copy (ASan sees a read past its end) and must keep its
 * contract:
 *  - redact_target: the measured length is the written length; a short
 *    buffer is cut and terminated, never overrun; redacting a result
 *    without userinfo again changes nothing (a secret value left behind
 *    would be redacted by the second pass); and the payload followed by
 *    "?temp_url_sig=SECRET" always ends in "temp_url_sig=REDACTED",
 *    whatever the payload did to the target's structure.
 *  - redact_head_sample: control byte 0 places the window, byte 1 sizes
 *    it; the output is hex pairs and markers only, within its bound. The
 *    payload followed by "\nX-Auth-Token: " and a token is a head whose
 *    token is never shown, from any window inside it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int ok, const char *what, int line)
{
	if (ok)
		return;
	fprintf(stderr, "invariant failed: %s (line %d)\n", what, line);
	abort();
}

#define INV(cond) check((cond) != 0, #cond, __LINE__)

#define SAMPLE_BUF (2 * REDACT_SAMPLE_MAX + \
	sizeof(REDACT_WITHHELD) * (REDACT_SAMPLE_MAX / 2 + 1))

static char *const extras[] = { "sessionid", "X-Custom-Sig" };

static char *
dup_exact(const void *p, size_t n)
{
	char *s = malloc(n ? n : 1);

	if (s != NULL && n > 0)
		memcpy(s, p, n);
	return s;
}

static void
check_target(const char *t, size_t n)
{
	char small[8];
	char *a, *b;
	size_t len, la;

	len = redact_target(t, n, extras, 2, NULL, 0);
	a = redact_target_dup(t, n, extras, 2);
	INV(a != NULL);
	la = strlen(a);
	/* a NUL in the input is copied like any byte: compare the length */
	INV(len == la || memchr(t, '\0', n) != NULL);
	memset(small, 'x', sizeof(small));
	INV(redact_target(t, n, extras, 2, small, 5) == len);
	INV(memchr(small, '\0', 5) != NULL && small[5] == 'x');
	/* Without an '@' the result parses as the input did: a second pass
	 * finds the same parts and changes nothing. (With one, the end of
	 * an authority may lie in a redacted value, and the second pass
	 * sees a longer authority: it only withholds more.) */
	if (memchr(t, '\0', n) == NULL && memchr(t, '@', n) == NULL) {
		b = redact_target_dup(a, la, extras, 2);
		INV(b != NULL && strcmp(a, b) == 0);
		free(b);
	}
	free(a);
}

static void
check_sample(const char *out)
{
	size_t w = sizeof(REDACT_WITHHELD) - 1;

	INV(strlen(out) < SAMPLE_BUF);
	while (*out != '\0') {
		if (strncmp(out, REDACT_WITHHELD, w) == 0) {
			out += w;
			continue;
		}
		INV(strchr("0123456789abcdef", out[0]) != NULL);
		INV(out[1] != '\0' && strchr("0123456789abcdef", out[1]) != NULL);
		out += 2;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char tok[] = "gAAAAABsecretTOKENvalue0123456789";
	static const char sig[] = "?temp_url_sig=SECRET";
	char out[SAMPLE_BUF], *p, *h;
	size_t n, off, win, hl, i;

	if (size < 2)
		return 0;
	n = size - 2;
	p = dup_exact(data + 2, n);
	if (p == NULL)
		return 0;

	check_target(p, n);
	(void)redact_field_name(p, n);
	(void)redact_query_key(p, n, extras, 2);

	off = n > 0 ? (size_t)data[0] * n / 256 : 0;
	win = data[1] % (REDACT_SAMPLE_MAX + 8);
	if (win > n - off)
		win = n - off;
	redact_head_sample(p, off + win, off, win, extras, 2, out, sizeof(out));
	check_sample(out);
	redact_head_sample(p, n, off, win, extras, 2, out, sizeof(out));
	check_sample(out);
	free(p);

	/* the payload, then a secret query parameter */
	if ((h = malloc(n + sizeof(sig) - 1)) != NULL) {
		memcpy(h, data + 2, n);
		memcpy(h + n, sig, sizeof(sig) - 1);
		p = redact_target_dup(h, n + sizeof(sig) - 1, NULL, 0);
		INV(p != NULL);
		if (memchr(h, '\0', n) == NULL) {
			hl = strlen(p);
			INV(hl >= 21 && strcmp(p + hl - 21,
			    "temp_url_sig=REDACTED") == 0);
		}
		free(p);
		free(h);
	}
	/* the payload, then a token field: no window inside shows it */
	hl = n + 15 + sizeof(tok) - 1 + 2;
	if ((h = malloc(hl)) != NULL) {
		memcpy(h, data + 2, n);
		memcpy(h + n, "\nX-Auth-Token: ", 15);
		memcpy(h + n + 15, tok, sizeof(tok) - 1);
		memcpy(h + hl - 2, "\r\n", 2);
		for (i = n + 15; i < hl - 2; i += 7) {
			win = hl - 2 - i < 16 ? hl - 2 - i : 16;
			redact_head_sample(h, i + win, i, win, NULL, 0, out,
			    sizeof(out));
			INV(strcmp(out, REDACT_WITHHELD) == 0);
			redact_head_sample(h, hl, i, win, NULL, 0, out,
			    sizeof(out));
			INV(strcmp(out, REDACT_WITHHELD) == 0);
		}
		free(h);
	}
	return 0;
}
