/*
 * util.c: see util.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

void
tb_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
tb_grow(void *arr, size_t *cap, size_t need, size_t size)
{
	void **p = arr, *np;
	size_t n = *cap ? *cap : 8;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return -1;
		n *= 2;
	}
	if (n > SIZE_MAX / size || (np = realloc(*p, n * size)) == NULL)
		return -1;
	*p = np;
	*cap = n;
	return 0;
}

enum tb_read_err
tb_read_file(const char *path, size_t max, char **buf, size_t *len,
    char *why, size_t wl)
{
	enum tb_read_err rc = TB_READ_OK;
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fd, saved;

	*buf = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		tb_errf(why, wl, "cannot open: %s", strerror(errno));
		return TB_READ_OPEN;
	}
	if (fstat(fd, &st) < 0) {
		rc = TB_READ_IO;
	} else if (!S_ISREG(st.st_mode)) {
		rc = TB_READ_NOT_REGULAR;
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	} else if ((size_t)st.st_size > max) {
		rc = TB_READ_TOO_LARGE;
	} else if ((*buf = malloc((size_t)st.st_size + 1)) == NULL) {
		rc = TB_READ_NOMEM;
	}
	/* the file may grow while we read: never past the buffer */
	while (rc == TB_READ_OK && got < (size_t)st.st_size &&
	    (n = read(fd, *buf + got, (size_t)st.st_size - got)) != 0) {
		if (n < 0 && errno != EINTR)
			rc = TB_READ_IO;
		else if (n > 0)
			got += (size_t)n;
	}
	saved = errno;
	close(fd);
	errno = saved;
	if (rc != TB_READ_OK) {
		free(*buf);
		*buf = NULL;
		if (rc == TB_READ_NOT_REGULAR)
			tb_errf(why, wl, "cannot read: %s", errno == EISDIR ?
			    strerror(EISDIR) : "not a regular file");
		else if (rc == TB_READ_TOO_LARGE)
			tb_errf(why, wl, "larger than %zu bytes", max);
		else if (rc == TB_READ_IO)
			tb_errf(why, wl, "cannot read: %s", strerror(errno));
		else
			tb_errf(why, wl, "out of memory");
		errno = saved;
		return rc;
	}
	(*buf)[got] = '\0';
	*len = got;
	return TB_READ_OK;
}
