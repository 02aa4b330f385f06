/*
 * log.h: error log with levels, and the access log.
 *
 * Thread-safe: each line is formatted into a local buffer and written with a
 * single write(2) (or syslog(3)), so lines from workers never interleave.
 * log_warn() appends strerror(errno); log_warnx() does not (STYLE.md 12).
 * Never pass a secret (HMAC key, password) to these.
 */
#ifndef TB_LOG_H
#define TB_LOG_H

#include "config.h"

/* Open the error log ("stderr", "syslog" or a path) at level; 0/-1. */
int log_open(const char *target, int level);
/* Open the access log ("off", "stderr", "syslog", path); 0/-1. */
int log_access_open(const char *target);
/* Reopen files (SIGHUP / logrotate). */
void log_reopen(void);
void log_set_level(int level);
int log_get_level(void);

void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Callback for libevent's event_set_log_callback(): its messages go to the
 * error log at the matching level (EVENT_LOG_DEBUG..EVENT_LOG_ERR = 0..3).
 */
void log_libevent(int severity, const char *msg);

/* One complete access-log line (without the newline). */
void log_access(const char *line, size_t len);
int log_access_enabled(void);

#endif
