/*
 * fuzz_config.c: libFuzzer target for the configuration loader. The input
 * is a whole configuration file; it goes through config_load_buffer() (the
 * same lexer and option table as config_load()) and whatever
 * loads is freed again, so LSan catches leaks on every path.
 *
 * Host names in upstream URLs would make the resolver do DNS on every
 * input: getaddrinfo() is wrapped here to accept numeric hosts only.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res);

/* Interposes libc's getaddrinfo for this binary only: numeric hosts, no DNS. */
int
getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
	static int (*real)(const char *, const char *,
	    const struct addrinfo *, struct addrinfo **);
	struct addrinfo h;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	if (real == NULL)
		return EAI_FAIL;
	memset(&h, 0, sizeof(h));
	if (hints != NULL)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tb_config *c = NULL;
	char err[512];

	if (config_load_buffer("fuzz.conf", (const char *)data, size, &c, err,
	    sizeof(err)) == 0)
		config_unref(c);
	return 0;
}
