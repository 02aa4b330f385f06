/*
 * fuzz_osprofiler: the X-Trace-Info / X-Trace-HMAC unpacker. The first
 * byte picks what the rest is, so the fuzzer gets past the HMAC gate:
 *   0: decoded JSON  -> base64url-encoded and signed here, then unpacked
 *   1: X-Trace-Info text -> signed here, then unpacked (base64 + JSON)
 *   2: "info\nhmac" as received (the HMAC check itself)
 *
 * Run (./configure --enable-fuzzers CC=clang; make tests/fuzz/fuzz_osprofiler):
 *   mkdir -p /tmp/c && tests/fuzz/fuzz_osprofiler -max_total_time=30 \
 *       /tmp/c $(srcdir)/tests/fuzz/corpus/osprofiler
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *keys[] = { "SECRET_KEY", "old" };
static void *osp;

static void
sign(const char *info, size_t len, char mac[41])
{
	unsigned char m[20];
	unsigned ml = 0;

	HMAC(EVP_sha1(), keys[1], (int)strlen(keys[1]),
	    (const unsigned char *)info, len, m, &ml);
	trace_hex_encode(m, 20, mac);
	mac[40] = '\0';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tb_trace_ctx ctx;
	char mac[41], *info = NULL;
	const uint8_t *nl;
	size_t len = 0, i;
	int n;

	if (osp == NULL && (osp = trace_osprofiler_keys_new(keys, 2)) == NULL)
		abort();
	if (size < 1 || size > 4096)
		return 0;
	memset(&ctx, 0, sizeof(ctx));
	ctx.sampled = TRACE_SAMPLED_DEFER;
	switch (data[0] % 3) {
	case 0:
		info = malloc(4 * (size / 3 + 1) + 1);
		n = EVP_EncodeBlock((unsigned char *)info, data + 1,
		    (int)(size - 1));
		for (i = 0; i < (size_t)n; i++)
			info[i] = info[i] == '+' ? '-' : info[i] == '/' ? '_' :
			    info[i];
		len = (size_t)n;
		sign(info, len, mac);
		(void)trace_osprofiler_unpack(osp, info, len, mac, 40, &ctx);
		break;
	case 1:
		len = size - 1;
		info = malloc(len ? len : 1);
		memcpy(info, data + 1, len);
		sign(info, len, mac);
		(void)trace_osprofiler_unpack(osp, info, len, mac, 40, &ctx);
		break;
	default:
		nl = memchr(data + 1, '\n', size - 1);
		len = nl ? (size_t)(nl - (data + 1)) : size - 1;
		info = malloc(len ? len : 1);
		memcpy(info, data + 1, len);
		{
			size_t ml = nl ? size - 1 - len - 1 : 0;
			char *m = malloc(ml ? ml : 1);

			if (nl)
				memcpy(m, nl + 1, ml);
			(void)trace_osprofiler_unpack(osp, info, len, m, ml,
			    &ctx);
			free(m);
		}
		break;
	}
	free(info);
	return 0;
}
