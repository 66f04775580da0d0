// files: a self-verifying workload for files no path names and named pipes.
//
//	files REPORT DIR
//
// It creates DIR/gone ("0123456789", mode 0640), keeps it open at offset 4
// and deletes it; makes a memfd "ckptfs-test" holding "memfd-data", sealed
// against growing and shrinking; closes its stdin. A child writes numbered
// items into the named pipe DIR/fifo as fast as it takes them, the parent
// reads one about every millisecond and checks it is the next. About every
// 20 ms the parent appends
//
//	pid=P n=N deleted=ok memfd=ok fifo=ok closed=ok
//
// to REPORT (opened by path each time), "bad:<why>" in place of an "ok"
// when a check fails.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *check_deleted(int fd)
{
	char b[16] = {0};
	struct stat st;
	if (pread(fd, b, 10, 0) != 10 || memcmp(b, "0123456789", 10))
		return "bad:contents";
	if (lseek(fd, 0, SEEK_CUR) != 4)
		return "bad:offset";
	if (fstat(fd, &st) || st.st_nlink != 0 || (st.st_mode & 07777) != 0640)
		return "bad:stat";
	if (!(fcntl(fd, F_GETFL) & O_RDWR))
		return "bad:flags";
	return "ok";
}

static const char *check_memfd(int fd)
{
	char b[16] = {0}, link[64], path[64];
	if (pread(fd, b, 10, 0) != 10 || memcmp(b, "memfd-data", 10))
		return "bad:contents";
	if (fcntl(fd, F_GET_SEALS) != (F_SEAL_SHRINK | F_SEAL_GROW))
		return "bad:seals";
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof link - 1);
	if (n < 0 || (link[n] = 0, strncmp(link, "/memfd:ckptfs-test", 18)))
		return "bad:name";
	return "ok";
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: files REPORT DIR\n");
		return 2;
	}
	char gone[4096], fifo[4096];
	snprintf(gone, sizeof gone, "%s/gone", argv[2]);
	snprintf(fifo, sizeof fifo, "%s/fifo", argv[2]);

	int del = open(gone, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (del < 0 || write(del, "0123456789", 10) != 10 || fchmod(del, 0640) || lseek(del, 4, SEEK_SET) != 4 ||
	    unlink(gone)) {
		perror("deleted file");
		return 1;
	}
	int mfd = memfd_create("ckptfs-test", MFD_ALLOW_SEALING);
	if (mfd < 0 || write(mfd, "memfd-data", 10) != 10 || fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)) {
		perror("memfd");
		return 1;
	}
	if (mkfifo(fifo, 0600)) {
		perror("mkfifo");
		return 1;
	}
	int rd = open(fifo, O_RDONLY | O_NONBLOCK);
	if (rd < 0) {
		perror("fifo");
		return 1;
	}
	pid_t child = fork();
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int wr = open(fifo, O_WRONLY);
		for (uint64_t i = 1; wr >= 0; i++)
			if (write(wr, &i, 8) != 8)
				_exit(1);
		_exit(1);
	}
	fcntl(rd, F_SETFL, 0); // blocking from now on
	close(0);

	const char *fifo_ok = "ok";
	uint64_t n = 0;
	struct timespec last;
	clock_gettime(CLOCK_MONOTONIC, &last);
	for (;;) {
		uint64_t got;
		ssize_t r = read(rd, &got, 8);
		if (r == 0) {
			usleep(1000); // the writer has not opened its end yet
			continue;
		}
		if (r != 8 || got != n + 1)
			fifo_ok = "bad:sequence";
		n++;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - last.tv_sec) * 1000000000L + (now.tv_nsec - last.tv_nsec) > 20000000L) {
			last = now;
			// Checked before fopen, which takes the lowest free number.
			const char *closed = fcntl(0, F_GETFD) == -1 && errno == EBADF ? "ok" : "bad:stdin-open";
			FILE *f = fopen(argv[1], "a");
			if (f) {
				fprintf(f, "pid=%d n=%llu deleted=%s memfd=%s fifo=%s closed=%s\n", getpid(),
					(unsigned long long)n, check_deleted(del), check_memfd(mfd), fifo_ok, closed);
				fclose(f);
			}
		}
		usleep(1000);
	}
}
