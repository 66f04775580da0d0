// sockets: a self-verifying workload for unix socket pairs.
//
//	sockets REPORT
//
// A producer (the child) and a consumer (the parent) share three socket
// pairs: a stream, a datagram and a seqpacket one. The producer sends
// numbered items down all three as fast as the buffers take them, so they
// are always full; the consumer takes one item from each about every
// millisecond and checks it is the next number (and, for messages, the
// length that number gives), so that an item lost or repeated at a cut is
// seen. The datagram end is non-blocking in the consumer. The consumer
// also holds both ends of a fourth, stream pair: "hello" waits in it and
// its sending end is shut down. About every 20 ms the consumer appends
//
//	pid=P n=N inq=Q stream=ok dgram=ok seq=ok own=ok
//
// to REPORT (opened by path each time): N items taken so far, Q bytes
// waiting in the stream; "bad:<why>" instead of an "ok" when a check fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int msglen(uint64_t i) { return 8 + (int)(i % 200); }

static void fill(char *b, uint64_t i, int len)
{
	memset(b, (int)(i & 0xff), len);
	memcpy(b, &i, 8);
}

static int writeall(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static void produce(int st, int dg, int sq)
{
	char b[256];
	for (uint64_t i = 1;; i++) {
		if (writeall(st, &i, 8) < 0)
			_exit(1);
		fill(b, i, 16);
		while (send(dg, b, 16, 0) < 0)
			if (errno != EINTR && errno != ENOBUFS && errno != EAGAIN)
				_exit(1);
		fill(b, i, msglen(i));
		while (send(sq, b, (size_t)msglen(i), 0) < 0)
			if (errno != EINTR)
				_exit(1);
	}
}

static char verdict[4][64];

// bad records the first failed check of channel k: what, got, wanted.
static void bad(int k, const char *what, uint64_t got, uint64_t want)
{
	if (strncmp(verdict[k], "bad", 3) != 0)
		snprintf(verdict[k], sizeof verdict[k], "bad:%s-%llu-%llu", what, (unsigned long long)got,
			 (unsigned long long)want);
}

static int readfull(int fd, void *p, size_t n)
{
	char *c = p;
	while (n > 0) {
		ssize_t r = read(fd, c, n);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sockets REPORT\n");
		return 2;
	}
	int st[2], dg[2], sq[2], own[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) || socketpair(AF_UNIX, SOCK_STREAM, 0, own)) {
		perror("socketpair");
		return 1;
	}
	pid_t child = fork();
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(st[0]), close(dg[0]), close(sq[0]), close(own[0]), close(own[1]);
		produce(st[1], dg[1], sq[1]);
	}
	close(st[1]), close(dg[1]), close(sq[1]);
	fcntl(dg[0], F_SETFL, O_NONBLOCK);
	if (writeall(own[0], "hello", 5) || shutdown(own[0], SHUT_WR)) {
		perror("own pair");
		return 1;
	}
	for (int k = 0; k < 4; k++)
		strcpy(verdict[k], "ok");

	uint64_t n = 0;
	char b[256];
	struct timespec last;
	clock_gettime(CLOCK_MONOTONIC, &last);
	for (;;) {
		uint64_t want = n + 1, got;
		if (readfull(st[0], &got, 8))
			bad(0, "read", 0, want);
		else if (got != want)
			bad(0, "got", got, want);

		ssize_t r;
		while ((r = recv(dg[0], b, sizeof b, 0)) < 0 && errno == EAGAIN)
			usleep(100); // non-blocking: it must stay so
		memcpy(&got, b, 8);
		if (r != 16 || got != want)
			bad(1, "got", got, want);
		if (!(fcntl(dg[0], F_GETFL) & O_NONBLOCK))
			bad(1, "blocking", 0, 0);

		r = recv(sq[0], b, sizeof b, 0);
		memcpy(&got, b, 8);
		if (r != msglen(want) || got != want || (r > 8 && (unsigned char)b[r - 1] != (want & 0xff)))
			bad(2, "got", got, want);
		n = want;

		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - last.tv_sec) * 1000000000L + (now.tv_nsec - last.tv_nsec) > 20000000L) {
			last = now;
			char h[8] = {0};
			if (recv(own[1], h, sizeof h, MSG_PEEK | MSG_DONTWAIT) != 5 || memcmp(h, "hello", 5))
				bad(3, "peek", 0, 0);
			if (send(own[0], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
				bad(3, "not-shut-down", 0, 0);
			int inq = 0;
			ioctl(st[0], FIONREAD, &inq);
			FILE *f = fopen(argv[1], "a");
			if (f) {
				fprintf(f, "pid=%d n=%llu inq=%d stream=%s dgram=%s seq=%s own=%s\n", getpid(),
					(unsigned long long)n, inq, verdict[0], verdict[1], verdict[2], verdict[3]);
				fclose(f);
			}
		}
		usleep(1000);
	}
}
