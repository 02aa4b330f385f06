/*
 * fuzz_policy.c: libFuzzer target for the policy parser (both document forms
 * and the per-service merge), the operation namer and the rule parser.
 *
 * The first byte picks the target so one corpus covers all three; the seed
 * corpus in tests/fuzz/corpus/policy/ starts with the selector byte.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sampling.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_name(const uint8_t *d, size_t n, const struct sampling_rules *rules)
{
	char out[SAMPLING_OP_MAX];
	const uint8_t *sp = memchr(d, ' ', n);
	size_t mlen = sp != NULL ? (size_t)(sp - d) : 0;
	const char *target = (const char *)d + (sp != NULL ? mlen + 1 : 0);
	size_t tlen = n - (sp != NULL ? mlen + 1 : 0);
	int len;

	len = sampling_operation_name((const char *)d, mlen, target, tlen, rules,
	    out, sizeof(out));
	if (len < 0 || (size_t)len != strlen(out) || len >= SAMPLING_OP_MAX)
		abort();
	/* a short buffer must still be NUL-terminated and within bounds */
	len = sampling_operation_name((const char *)d, mlen, target, tlen, rules,
	    out, 16);
	if (len < 0 || (size_t)len != strlen(out) || len >= 16)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sampling_policy *p = NULL;
	struct sampling_rules *r = NULL;
	struct policy_choice c;
	char err[256];
	char *text;

	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:		/* a policy document */
		if (policy_parse((const char *)data + 1, size - 1, 0.001, &p, err,
		    sizeof(err)) == 0) {
			json_t *j = policy_to_json(p);

			policy_lookup(p, "nova", "GET /", &c);
			json_decref(j);
			policy_unref(p);
		} else if (strlen(err) == 0) {
			abort();	/* every rejection says why */
		}
		break;
	case 1: {	/* one remote response for a service */
		const char *svc = "nova";
		const char *doc = (const char *)data + 1;
		size_t len = size - 1;

		if (policy_from_remote(1, &svc, &doc, &len, 0.5, &p, err,
		    sizeof(err)) == 0)
			policy_unref(p);
		break;
	}
	case 2:		/* "METHOD target" */
		fuzz_name(data + 1, size - 1, NULL);
		break;
	case 3:		/* rules text, then a name through them */
		text = malloc(size);
		if (text == NULL)
			return 0;
		memcpy(text, data + 1, size - 1);
		text[size - 1] = '\0';
		if (sampling_rules_parse_text(text, &r, err, sizeof(err)) == 0) {
			static const uint8_t req[] = "GET /v2/images/x/tags/y?z";

			fuzz_name(req, sizeof(req) - 1, r);
			fuzz_name(data + 1, size - 1, r);
			sampling_rules_free(r);
		}
		free(text);
		break;
	}
	return 0;
}
