/*
 * test_log.c: line format, levels, errno suffix, control characters, the
 * access log, reopen after rotation, and whole lines under concurrent
 * writers (each of 8 threads writes 2000 lines; every line must come out
 * intact).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tb_test.h"

static char dir[64];

/* The whole file as a string (caller frees). */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

static void *
writer(void *arg)
{
	int i, id = (int)(long)arg;

	for (i = 0; i < 2000; i++)
		log_info("thread %d line %d %s", id, i,
		    "padding padding padding padding padding padding padding");
	return NULL;
}

int
main(void)
{
	char path[128], apath[128], moved[128], *s, *line, *save;
	pthread_t th[8];
	int i, n, bad;

	strcpy(dir, "/tmp/tb_test_log.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 2;
	snprintf(path, sizeof(path), "%s/error.log", dir);
	snprintf(apath, sizeof(apath), "%s/access.log", dir);
	snprintf(moved, sizeof(moved), "%s/error.log.1", dir);

	CHECK(log_open("relative", TB_LOG_INFO) == -1 && errno == EINVAL);
	CHECK(log_open("/nonexistent/dir/x.log", TB_LOG_INFO) == -1);
	CHECK(log_access_open("bogus") == -1);
	CHECK(log_open(path, TB_LOG_WARN) == 0);
	CHECK(log_get_level() == TB_LOG_WARN);
	log_info("not shown");
	log_debug("not shown");
	errno = ENOENT;
	log_warn("open %s", "x");
	CHECK(errno == ENOENT);
	log_warnx("plain\nforged [error] line");
	log_errx("bad %d", 7);
	log_libevent(2, "from libevent");
	log_libevent(0, "libevent debug not shown");
	s = slurp(path);
	CHECKF(strstr(s, "not shown") == NULL, "%s", s);
	CHECKF(strstr(s, "Z [warn] open x: No such file or directory\n") != NULL,
	    "%s", s);
	CHECKF(strstr(s, "Z [warn] plain?forged [error] line\n") != NULL, "%s", s);
	CHECKF(strstr(s, "Z [error] bad 7\n") != NULL, "%s", s);
	CHECKF(strstr(s, "Z [warn] libevent: from libevent\n") != NULL, "%s", s);
	/* 2026-11-24T22:40:01.123Z [warn] ... */
	CHECKF(strlen(s) > 25 && s[4] == '-' && s[10] == 'T' && s[19] == '.' &&
	    s[23] == 'Z' && s[24] == ' ', "%s", s);
	free(s);

	/* a very long message is cut, still one line */
	{
		char big[10000];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		log_errx("%s", big);
		s = slurp(path);
		CHECK(strstr(s, "xxx...\n") != NULL);
		free(s);
	}

	/* rotation: move the file away, reopen, new lines go to the new file */
	CHECK(rename(path, moved) == 0);
	log_reopen();
	log_warnx("after rotation");
	s = slurp(path);
	CHECKF(strstr(s, "after rotation") != NULL, "%s", s);
	free(s);

	/* access log */
	CHECK(!log_access_enabled());
	log_access("dropped", 7);
	CHECK(log_access_open(apath) == 0);
	CHECK(log_access_enabled());
	log_access("GET / 200xyz", 9);
	s = slurp(apath);
	CHECKF(strcmp(s, "GET / 200\n") == 0, "%s", s);
	free(s);
	CHECK(log_access_open("off") == 0 && !log_access_enabled());

	/* concurrent writers: whole lines only */
	CHECK(unlink(path) == 0);
	log_reopen();
	log_set_level(TB_LOG_INFO);
	for (i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, writer, (void *)(long)i);
	for (i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	s = slurp(path);
	n = bad = 0;
	for (line = strtok_r(s, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		int id, k;
		char want[256];

		n++;
		if (strlen(line) < 25 || sscanf(line + 25, "[info] thread %d "
		    "line %d", &id, &k) != 2) {
			bad++;
			continue;
		}
		snprintf(want, sizeof(want), "[info] thread %d line %d %s", id,
		    k, "padding padding padding padding padding padding padding");
		if (strcmp(line + 25, want) != 0)
			bad++;
	}
	CHECKF(n == 16000 && bad == 0, "%d lines, %d bad", n, bad);
	free(s);

	CHECK(log_open("stderr", TB_LOG_INFO) == 0);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", dir);
	}
	TB_TEST_END();
}
