/*
 * fuzz_otlp_response.c: libFuzzer target for what the exporter reads from
 * an OTLP collector (untrusted: any host the endpoint names): the
 * Retry-After value and the partial_success of an ExportTraceServiceResponse,
 * protobuf and JSON (sink_otlp_retry_after, sink_otlp_partial_success).
 *
 * The first byte picks the parser, the rest is the input, in an exact-size
 * heap copy so ASan sees any read past its end. Contract checked: a delay
 * is -1 or 0..300 seconds; an accepted body leaves a NUL-terminated message
 * of printable ASCII (it goes to the log) that fits its buffer, also a
 * tiny one.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sink_otlp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_msg(const char *msg, size_t len)
{
	size_t i;

	if (memchr(msg, '\0', len) == NULL)
		abort();
	for (i = 0; msg[i] != '\0'; i++)
		if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] > 0x7e)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char msg[160], tiny[3];
	int64_t rejected;
	long d;
	char *s;
	int mode;

	if (size == 0)
		return 0;
	mode = data[0] % 3;
	if ((s = malloc(size - 1 > 0 ? size - 1 : 1)) == NULL)
		return 0;
	memcpy(s, data + 1, size - 1);
	if (mode == 0) {
		d = sink_otlp_retry_after(s, size - 1);
		if (d < -1 || d > 300)
			abort();
	} else {
		memset(msg, 'x', sizeof(msg));
		if (sink_otlp_partial_success(s, size - 1, mode == 2, &rejected, msg,
		    sizeof(msg)) == 0)
			check_msg(msg, sizeof(msg));
		memset(tiny, 'x', sizeof(tiny));
		if (sink_otlp_partial_success(s, size - 1, mode == 2, &rejected, tiny,
		    sizeof(tiny)) == 0)
			check_msg(tiny, sizeof(tiny));
	}
	free(s);
	return 0;
}
