/*
 * util.h: the little helpers more than one module needs, kept once:
 * clocks, seconds as a struct timeval, the "reason into err" formatter,
 * growing arrays, and the bounded, never-blocking file reader. (Number and hex formatting
 * for the request path are fmt.h.)
 */
#ifndef TB_UTIL_H
#define TB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* Nanoseconds on the monotonic clock: durations, rate limiters, backoff. */
static inline uint64_t
tb_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* secs (>= 0, as the configuration's durations) as a struct timeval. */
static inline struct timeval
tb_timeval(double secs)
{
	struct timeval tv;

	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	return tv;
}

/* printf into err, the reason slot of functions that return -1; err may be
 * NULL or errlen 0 (the caller does not want the reason). */
void tb_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Make room for need elements of size bytes in the array *arr (capacity
 * *cap elements), doubling from 8 so appending n costs O(n): 0, or -1
 * (ENOMEM or overflow) with *arr and *cap unchanged. arr is a T **.
 */
int tb_grow(void *arr, size_t *cap, size_t need, size_t size);

/* How tb_read_file() failed. */
enum tb_read_err {
	TB_READ_OK = 0,
	TB_READ_OPEN,		/* open(2) failed: errno */
	TB_READ_NOT_REGULAR,	/* errno EISDIR for a directory */
	TB_READ_TOO_LARGE,	/* over max bytes */
	TB_READ_IO,		/* fstat(2) or read(2) failed: errno */
	TB_READ_NOMEM,
};

/*
 * Read the regular file path, at most max bytes, into *buf (malloc'd,
 * NUL-terminated, the caller frees it; *len excludes the NUL). Opened
 * non-blocking, so a FIFO is refused instead of hanging the caller's event
 * loop. On failure the reason ("cannot open: No such file or directory",
 * "larger than 65536 bytes", ...) is in why. For the configuration, the
 * files it names (certificates, keys, CA bundles) and policy files.
 */
enum tb_read_err tb_read_file(const char *path, size_t max, char **buf,
    size_t *len, char *why, size_t wl);

#endif
