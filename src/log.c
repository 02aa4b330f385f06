/*
 * log.c: error log and access log (see log.h).
 *
 * A line is formatted into a buffer on the caller's stack and leaves in one
 * write(2) (or one syslog(3) call), so lines from different threads never
 * interleave: O_APPEND makes each write land whole at the end of the file.
 * The targets sit behind a read-write lock: every logging thread takes it
 * shared for the duration of its write, and only log_open/log_access_open/
 * log_reopen take it exclusively, so a descriptor is never closed while a
 * thread is writing to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	4096	/* longer messages are cut, marked "..." */

enum log_kind {
	LOG_K_OFF = 0,
	LOG_K_STDERR,
	LOG_K_SYSLOG,
	LOG_K_FILE
};

struct log_target {
	enum log_kind kind;	/* read atomically by log_access_enabled() */
	int fd;			/* LOG_K_STDERR: 2; LOG_K_FILE: ours */
	char *path;		/* LOG_K_FILE: for log_reopen(); owned */
};

static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct log_target log_error = { LOG_K_STDERR, STDERR_FILENO, NULL };
static struct log_target log_acc = { LOG_K_OFF, -1, NULL };
static int log_level = TB_LOG_INFO;	/* atomic */
static int log_syslog_opened;		/* under log_lock, exclusive */

static const char *const log_labels[] = { "error", "warn", "info", "debug" };
static const int log_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

static int
log_file_open(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY,
	    0640);
}

/*
 * Fill t from target ("off" only when allow_off). Opens the file when it is
 * a path. 0, or -1 with errno set (EINVAL for a bad target) and t untouched.
 */
static int
log_target_make(const char *target, int allow_off, struct log_target *t)
{
	struct log_target n = { LOG_K_OFF, -1, NULL };

	if (target == NULL || *target == '\0') {
		errno = EINVAL;
		return -1;
	}
	if (strcmp(target, "off") == 0 && allow_off) {
		n.kind = LOG_K_OFF;
	} else if (strcmp(target, "stderr") == 0) {
		n.kind = LOG_K_STDERR;
		n.fd = STDERR_FILENO;
	} else if (strcmp(target, "syslog") == 0) {
		n.kind = LOG_K_SYSLOG;
	} else if (target[0] == '/') {
		n.kind = LOG_K_FILE;
		if ((n.path = strdup(target)) == NULL)
			return -1;
		if ((n.fd = log_file_open(target)) < 0) {
			int e = errno;

			free(n.path);
			errno = e;
			return -1;
		}
	} else {
		errno = EINVAL;
		return -1;
	}
	*t = n;
	return 0;
}

/* Swap *dst for n under the exclusive lock; the old file is closed. */
static void
log_target_swap(struct log_target *dst, struct log_target *n)
{
	struct log_target old;

	pthread_rwlock_wrlock(&log_lock);
	old = *dst;
	dst->fd = n->fd;
	dst->path = n->path;
	__atomic_store_n(&dst->kind, n->kind, __ATOMIC_RELEASE);
	if (n->kind == LOG_K_SYSLOG && !log_syslog_opened) {
		openlog("tracebridge", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		log_syslog_opened = 1;
	}
	pthread_rwlock_unlock(&log_lock);
	if (old.kind == LOG_K_FILE)
		close(old.fd);
	free(old.path);
}

int
log_open(const char *target, int level)
{
	struct log_target n;

	if (log_target_make(target, 0, &n) < 0)
		return -1;
	log_target_swap(&log_error, &n);
	log_set_level(level);
	return 0;
}

int
log_access_open(const char *target)
{
	struct log_target n;

	if (log_target_make(target, 1, &n) < 0)
		return -1;
	log_target_swap(&log_acc, &n);
	return 0;
}

/*
 * Reopen both files by path (logrotate moved them away). A file that cannot
 * be reopened keeps its old descriptor, and the failure is logged there.
 */
void
log_reopen(void)
{
	struct log_target *ts[2] = { &log_error, &log_acc };
	int i, fd, e, failed[2] = { 0, 0 }, old;

	for (i = 0; i < 2; i++) {
		pthread_rwlock_wrlock(&log_lock);
		if (ts[i]->kind == LOG_K_FILE) {
			if ((fd = log_file_open(ts[i]->path)) >= 0) {
				old = ts[i]->fd;
				ts[i]->fd = fd;
				close(old);
			} else {
				failed[i] = errno;
			}
		}
		pthread_rwlock_unlock(&log_lock);
	}
	for (i = 0; i < 2; i++) {
		if (failed[i] == 0)
			continue;
		e = failed[i];
		errno = e;
		log_warn("cannot reopen %s log", i == 0 ? "error" : "access");
	}
}

void
log_set_level(int level)
{
	if (level < TB_LOG_ERR)
		level = TB_LOG_ERR;
	if (level > TB_LOG_DEBUG)
		level = TB_LOG_DEBUG;
	__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

int
log_get_level(void)
{
	return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

/* The whole buffer, retrying short writes and EINTR; gives up on errors. */
static void
log_write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	/* nowhere left to report it */
		p += n;
		len -= (size_t)n;
	}
}

/*
 * Format and emit one error-log line. errnum >= 0 appends ": strerror".
 * errno is preserved so callers can log and then test it.
 */
static void
log_emit(int level, int errnum, const char *fmt, va_list ap)
{
	char buf[LOG_LINE_MAX], ebuf[128];
	struct timespec ts;
	struct tm tm;
	size_t n, msg, i;
	int saved = errno, r;

	if (level > log_get_level())
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	r = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ "
	    "[%s] ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_labels[level]);
	msg = n = (size_t)r;
	r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r < sizeof(buf) - n ? (size_t)r : sizeof(buf) - n - 1;
	if (errnum >= 0 && n < sizeof(buf) - 1) {
		/* GNU strerror_r: thread-safe, returns the string to use */
		r = snprintf(buf + n, sizeof(buf) - n, ": %s",
		    strerror_r(errnum, ebuf, sizeof(ebuf)));
		if (r > 0)
			n += (size_t)r < sizeof(buf) - n ? (size_t)r :
			    sizeof(buf) - n - 1;
	}
	if (n >= sizeof(buf) - 2) {	/* cut: say so, keep room for '\n' */
		n = sizeof(buf) - 5;
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	/* a logged header value must not be able to forge a second line */
	for (i = msg; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	buf[n++] = '\n';

	pthread_rwlock_rdlock(&log_lock);
	switch (log_error.kind) {
	case LOG_K_SYSLOG:
		/* syslog stamps its own time */
		syslog(log_prio[level], "%.*s", (int)(n - 1 - msg), buf + msg);
		break;
	case LOG_K_STDERR:
	case LOG_K_FILE:
		log_write_all(log_error.fd, buf, n);
		break;
	case LOG_K_OFF:
		break;
	}
	pthread_rwlock_unlock(&log_lock);
	errno = saved;
}

#define LOG_FN(fn, level, with_errno)					\
void									\
fn(const char *fmt, ...)						\
{									\
	va_list ap;							\
	int e = errno;							\
									\
	va_start(ap, fmt);						\
	log_emit(level, with_errno ? e : -1, fmt, ap);			\
	va_end(ap);							\
}

LOG_FN(log_err, TB_LOG_ERR, 1)
LOG_FN(log_errx, TB_LOG_ERR, 0)
LOG_FN(log_warn, TB_LOG_WARN, 1)
LOG_FN(log_warnx, TB_LOG_WARN, 0)
LOG_FN(log_info, TB_LOG_INFO, 0)
LOG_FN(log_debug, TB_LOG_DEBUG, 0)

void
log_access(const char *line, size_t len)
{
	struct iovec iov[2];
	ssize_t n;

	if (!log_access_enabled())
		return;
	pthread_rwlock_rdlock(&log_lock);
	switch (log_acc.kind) {
	case LOG_K_SYSLOG:
		syslog(LOG_INFO, "%.*s", (int)len, line);
		break;
	case LOG_K_STDERR:
	case LOG_K_FILE:
		/* one writev: the line and its newline land together */
		iov[0].iov_base = (void *)(uintptr_t)line;
		iov[0].iov_len = len;
		iov[1].iov_base = (void *)(uintptr_t)"\n";
		iov[1].iov_len = 1;
		do
			n = writev(log_acc.fd, iov, 2);
		while (n < 0 && errno == EINTR);
		if (n >= 0 && (size_t)n < len + 1) {	/* short: finish it */
			if ((size_t)n < len)
				log_write_all(log_acc.fd, line + n, len - (size_t)n);
			log_write_all(log_acc.fd, "\n", 1);
		}
		break;
	case LOG_K_OFF:
		break;
	}
	pthread_rwlock_unlock(&log_lock);
}

int
log_access_enabled(void)
{
	return __atomic_load_n(&log_acc.kind, __ATOMIC_ACQUIRE) != LOG_K_OFF;
}

/*
 * libevent's severities (event2/event.h: EVENT_LOG_DEBUG 0, _MSG 1, _WARN 2,
 * _ERR 3) are part of its ABI; mapping them here keeps log.c free of a
 * libevent dependency for the unit tests that link it.
 */
void
log_libevent(int severity, const char *msg)
{
	switch (severity) {
	case 0:
		log_debug("libevent: %s", msg);
		break;
	case 1:
		log_info("libevent: %s", msg);
		break;
	case 2:
		log_warnx("libevent: %s", msg);
		break;
	default:
		log_errx("libevent: %s", msg);
		break;
	}
}
