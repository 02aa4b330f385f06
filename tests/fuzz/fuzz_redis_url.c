/*
 * fuzz_redis_url.c: libFuzzer target for the Redis connection string
 * parser (tb_redis_url_parse), which reads [profiler] connection_string
 * from the configuration file before anything else looks at it.
 *
 * The input is the string (cut at its first NUL, as a C string would be),
 * in an exact-size heap copy so ASan sees any read past its end. Besides
 * not crashing, the parser must keep its contract: an accepted URL has
 * terminated fields within their bounds and what its kind needs; a
 * refused one has a non-empty message of plain ASCII (the messages are
 * constants: none quotes the input, so none can quote a password), and a
 * short message buffer is never overrun.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_ok(const struct tb_redis_url *u)
{
	size_t i;

	if (memchr(u->path, '\0', sizeof(u->path)) == NULL ||
	    memchr(u->username, '\0', sizeof(u->username)) == NULL ||
	    memchr(u->password, '\0', sizeof(u->password)) == NULL ||
	    u->db < 0 || u->n_sentinels > TB_REDIS_MAX_SENTINELS)
		abort();
	switch (u->kind) {
	case TB_REDIS_TCP:
		if (u->addr.host[0] == '\0' || u->addr.port == 0)
			abort();
		break;
	case TB_REDIS_OTLP:
		if (u->addr.host[0] == '\0' || u->addr.port == 0 ||
		    u->username[0] != '\0' || u->password[0] != '\0')
			abort();
		break;
	case TB_REDIS_UNIX:
		if (u->path[0] != '/')
			abort();
		break;
	case TB_REDIS_SENTINEL:
		if (u->n_sentinels == 0)
			abort();
		for (i = 0; i < u->n_sentinels; i++)
			if (u->sentinels[i].host[0] == '\0' ||
			    u->sentinels[i].port == 0)
				abort();
		break;
	default:
		abort();
	}
	if (u->username[0] != '\0' && u->password[0] == '\0')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tb_redis_url u;
	char err[256], tiny[4];
	size_t i;
	const uint8_t *nul = memchr(data, 0, size);
	size_t n = nul != NULL ? (size_t)(nul - data) : size;
	char *s = malloc(n + 1);

	if (s == NULL)
		return 0;
	memcpy(s, data, n);
	s[n] = '\0';
	err[0] = '\0';
	if (tb_redis_url_parse(s, &u, err, sizeof(err)) == 0) {
		check_ok(&u);
	} else {
		if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)
			abort();
		/* messages are constant text, never a piece of the input: no
		 * byte of one is outside printable ASCII */
		for (i = 0; err[i] != '\0'; i++)
			if ((unsigned char)err[i] < 0x20 ||
			    (unsigned char)err[i] > 0x7e)
				abort();
		memset(tiny, 'x', sizeof(tiny));
		if (tb_redis_url_parse(s, &u, tiny, sizeof(tiny)) != -1 ||
		    tiny[sizeof(tiny) - 1] != '\0')
			abort();
	}
	free(s);
	return 0;
}
