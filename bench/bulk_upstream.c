/* bulk_upstream: a fast HTTP/1.1 origin for bench/bulk.sh, not part of the
 * daemon. Built by the script: cc -O2 -pthread bench/bulk_upstream.c
 *
 *   bulk_upstream PORT FILE
 *
 * Listens on 127.0.0.1:PORT, one thread per connection, blocking sockets,
 * keep-alive. It must never be what limits a benchmark:
 *   GET /bulk[?...]    FILE, with Content-Length, sent by sendfile(2) from
 *                      the page cache (the head goes first with MSG_MORE);
 *   PUT or POST /any   the body (Content-Length or chunked) read with recv(2)
 *                      into a 1 MiB buffer and discarded; the answer is 200
 *                      with the byte count and a newline as its body.
 *                      Expect: 100-continue is answered;
 *   anything else      404.
 * Bad requests get 400 and a close. Bodies of GET requests are not expected.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEAD_MAX 65536
#define SINK_BYTES (1 << 20)

static int file_fd;
static off_t file_size;

struct conn {
	int fd;
	char head[HEAD_MAX];
	size_t have;	/* bytes in head[] */
	size_t used;	/* of which consumed */
	char *sink;	/* SINK_BYTES, allocated at the first body */
};

static int write_all(int fd, const char *p, size_t n, int flags)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL | flags);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int answer(struct conn *c, const char *status, const char *body, int keep)
{
	char buf[512];
	int n = snprintf(buf, sizeof buf,
			 "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%s",
			 status, strlen(body), keep ? "" : "Connection: close\r\n", body);
	return write_all(c->fd, buf, (size_t)n, 0);
}

/* Reads until a complete head is in c->head (compacting what a previous
 * request left); returns its length including the blank line, 0 on a clean
 * close between requests, -1 on error or an oversized head. */
static ssize_t read_head(struct conn *c)
{
	if (c->used > 0) {
		memmove(c->head, c->head + c->used, c->have - c->used);
		c->have -= c->used;
		c->used = 0;
	}
	for (;;) {
		char *end = memmem(c->head, c->have, "\r\n\r\n", 4);
		if (end)
			return end + 4 - c->head;
		if (c->have == sizeof c->head)
			return -1;
		ssize_t r = recv(c->fd, c->head + c->have, sizeof c->head - c->have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 && c->have == 0 ? 0 : -1;
		c->have += (size_t)r;
	}
}

/* Up to want body bytes: first what is left in head[], then one recv into
 * the sink. Returns the count (0 = peer closed), -1 on error; *data points
 * at them. */
static ssize_t body_read(struct conn *c, size_t want, const char **data)
{
	if (c->used < c->have) {
		size_t n = c->have - c->used;
		if (n > want)
			n = want;
		*data = c->head + c->used;
		c->used += n;
		return (ssize_t)n;
	}
	if (!c->sink && !(c->sink = malloc(SINK_BYTES)))
		return -1;
	if (want > SINK_BYTES)
		want = SINK_BYTES;
	for (;;) {
		ssize_t r = recv(c->fd, c->sink, want, 0);
		if (r < 0 && errno == EINTR)
			continue;
		*data = c->sink;
		return r;
	}
}

static int body_byte(struct conn *c)
{
	const char *d;
	ssize_t r = body_read(c, 1, &d);
	return r == 1 ? (unsigned char)*d : -1;
}

/* Discards n body bytes; returns 0, or -1 if the connection ended first. */
static int discard(struct conn *c, unsigned long long n)
{
	while (n > 0) {
		const char *d;
		ssize_t r = body_read(c, n > SINK_BYTES ? SINK_BYTES : (size_t)n, &d);
		if (r <= 0)
			return -1;
		n -= (unsigned long long)r;
	}
	return 0;
}

/* A chunked body, trailers included; adds its data size to *total. */
static int discard_chunked(struct conn *c, unsigned long long *total)
{
	for (;;) {
		unsigned long long size = 0;
		int ch, digits = 0;
		while ((ch = body_byte(c)) >= 0 && isxdigit(ch)) {
			size = size * 16 + (unsigned)(isdigit(ch) ? ch - '0' : tolower(ch) - 'a' + 10);
			if (++digits > 15)
				return -1;
		}
		while (ch >= 0 && ch != '\n')	/* chunk extensions, CR */
			ch = body_byte(c);
		if (ch < 0 || digits == 0)
			return -1;
		if (size == 0)
			break;
		if (discard(c, size) < 0 || body_byte(c) != '\r' || body_byte(c) != '\n')
			return -1;
		*total += size;
	}
	for (;;) {	/* trailer lines up to the empty one */
		int ch, len = 0;
		while ((ch = body_byte(c)) >= 0 && ch != '\n')
			len += ch != '\r';
		if (ch < 0)
			return -1;
		if (len == 0)
			return 0;
	}
}

/* The value of header name in head (length n), NUL-terminated in out. */
static int header(const char *head, size_t n, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *p = memchr(head, '\n', n), *end = head + n;
	while (p && ++p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			break;
		if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t vl = (size_t)(ve - v) < outlen - 1 ? (size_t)(ve - v) : outlen - 1;
			memcpy(out, v, vl);
			out[vl] = 0;
			return 1;
		}
		p = eol;
	}
	return 0;
}

static int send_file(struct conn *c, int keep)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof hdr,
			 "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
			 "Content-Length: %lld\r\n%s\r\n",
			 (long long)file_size, keep ? "" : "Connection: close\r\n");
	if (write_all(c->fd, hdr, (size_t)n, MSG_MORE) < 0)
		return -1;
	off_t off = 0;
	while (off < file_size) {
		size_t chunk = file_size - off > 0x40000000 ? 0x40000000 : (size_t)(file_size - off);
		ssize_t w = sendfile(c->fd, file_fd, &off, chunk);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
	}
	return 0;
}

static void *serve(void *arg)
{
	struct conn *c = arg;
	for (;;) {
		ssize_t hl = read_head(c);
		if (hl <= 0)
			break;
		c->used = (size_t)hl;
		char method[16] = "", target[256] = "", version[16] = "", v[64];
		if (sscanf(c->head, "%15s %255s %15s", method, target, version) != 3) {
			answer(c, "400 Bad Request", "bad request line\n", 0);
			break;
		}
		int keep = strcmp(version, "HTTP/1.1") == 0;
		if (header(c->head, (size_t)hl, "Connection", v, sizeof v))
			keep = strcasecmp(v, "close") != 0 && (keep || strcasecmp(v, "keep-alive") == 0);
		if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
			unsigned long long total = 0;
			if (header(c->head, (size_t)hl, "Expect", v, sizeof v) &&
			    strcasecmp(v, "100-continue") == 0 &&
			    write_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, 0) < 0)
				break;
			int rc;
			if (header(c->head, (size_t)hl, "Transfer-Encoding", v, sizeof v)) {
				rc = strcasecmp(v, "chunked") == 0 ? discard_chunked(c, &total) : -1;
			} else if (header(c->head, (size_t)hl, "Content-Length", v, sizeof v)) {
				char *e;
				total = strtoull(v, &e, 10);
				rc = *v && !*e ? discard(c, total) : -1;
			} else {
				rc = 0;
			}
			if (rc < 0) {
				answer(c, "400 Bad Request", "bad body\n", 0);
				break;
			}
			char body[32];
			snprintf(body, sizeof body, "%llu\n", total);
			if (answer(c, "200 OK", body, keep) < 0)
				break;
		} else if (strcmp(method, "GET") == 0 && strncmp(target, "/bulk", 5) == 0 &&
			   (target[5] == 0 || target[5] == '?')) {
			if (send_file(c, keep) < 0)
				break;
		} else {
			if (answer(c, "404 Not Found", "not found\n", keep) < 0)
				break;
		}
		if (!keep)
			break;
	}
	close(c->fd);
	free(c->sink);
	free(c);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PORT FILE\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct stat st;
	if ((file_fd = open(argv[2], O_RDONLY)) < 0 || fstat(file_fd, &st) < 0) {
		perror(argv[2]);
		return 1;
	}
	file_size = st.st_size;
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1024) < 0) {
		perror("bind/listen");
		return 1;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				usleep(10000);
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			perror("accept");
			return 1;
		}
		struct conn *c = calloc(1, sizeof *c);
		pthread_t t;
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (pthread_create(&t, &attr, serve, c) != 0) {
			close(fd);
			free(c);
		}
	}
}
