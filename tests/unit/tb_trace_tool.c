/*
 * tb_trace_tool: tracebridge's osprofiler signing from the command line, for
 * tests/integration/test_osprofiler_hmac.py (which checks it against
 * osprofiler's own _utils.signed_pack / signed_unpack).
 *
 *   tb_trace_tool sign KEYS BASE_ID PARENT_ID
 *       prints "X-Trace-Info: ..." and "X-Trace-HMAC: ..." (first key signs)
 *   tb_trace_tool verify KEYS INFO HMAC
 *       prints "ok BASE_ID PARENT_ID" and exits 0, or "invalid" and exits 1
 *
 * KEYS is a comma-separated list, as [profiler] hmac_keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

#define MAX_KEYS 16

static void *
keys_from(char *list)
{
	const char *keys[MAX_KEYS];
	size_t n = 0;
	char *k, *save = NULL;

	for (k = strtok_r(list, ",", &save); k != NULL && n < MAX_KEYS;
	    k = strtok_r(NULL, ",", &save))
		keys[n++] = k;
	return trace_osprofiler_keys_new(keys, n);
}

int
main(int argc, char **argv)
{
	struct tb_trace_ctx ctx;
	char info[256], mac[41];
	void *osp;
	int r;

	if (argc != 5 || (strcmp(argv[1], "sign") != 0 &&
	    strcmp(argv[1], "verify") != 0)) {
		fprintf(stderr, "usage: tb_trace_tool sign KEYS BASE_ID PARENT_ID\n"
		    "       tb_trace_tool verify KEYS INFO HMAC\n");
		return 2;
	}
	if ((osp = keys_from(argv[2])) == NULL) {
		fprintf(stderr, "tb_trace_tool: no usable key\n");
		return 2;
	}
	if (strcmp(argv[1], "sign") == 0) {
		if (trace_osprofiler_sign(osp, argv[3], argv[4], info,
		    sizeof(info), mac) == 0) {
			fprintf(stderr, "tb_trace_tool: ids too long\n");
			r = 2;
			goto out;
		}
		printf("X-Trace-Info: %s\nX-Trace-HMAC: %s\n", info, mac);
		r = 0;
		goto out;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.sampled = TRACE_SAMPLED_DEFER;
	if (trace_osprofiler_unpack(osp, argv[3], strlen(argv[3]), argv[4],
	    strlen(argv[4]), &ctx) == 1) {
		printf("ok %s %s\n", ctx.osp_base_id,
		    ctx.osp_parent_id[0] ? ctx.osp_parent_id : "-");
		r = 0;
	} else {
		printf("invalid\n");
		r = 1;
	}
out:
	trace_osprofiler_keys_free(osp);
	return r;
}
