/*
 * tb_test.h: the smallest test harness that does the job. Each CHECK prints
 * nothing when it holds and "FAIL file:line: expr" when it does not; main()
 * ends with TB_TEST_END, which prints "N checks, N failed" and exits 1 on any
 * failure (automake counts the program as one test).
 */
#ifndef TB_TEST_H
#define TB_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tb_checks, tb_failed;

#define CHECK(expr) do {						\
	tb_checks++;							\
	if (!(expr)) {							\
		tb_failed++;						\
		fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #expr); \
	}								\
} while (0)

/* Like CHECK, with a printf-style explanation on failure. */
#define CHECKF(expr, ...) do {						\
	tb_checks++;							\
	if (!(expr)) {							\
		tb_failed++;						\
		fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #expr); \
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
	}								\
} while (0)

#define TB_TEST_END() do {						\
	printf("%d checks, %d failed\n", tb_checks, tb_failed);		\
	return tb_failed ? 1 : 0;					\
} while (0)

#endif
