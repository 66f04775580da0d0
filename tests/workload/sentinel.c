// sentinel: a process tree that notices anything done to it, for the tests
// that kill the ckptfs daemon at every instant of a checkpoint.
//
//	sentinel STATUSFILE
//
// It prints one line to standard output once every member runs:
//
//	READY <pid> child=<pid>
//
// then points standard input, output and error at /dev/null (no descriptor
// leads outside the tree, so a checkpoint takes it without --external), and
// keeps running. It never stops on its own before LIFETIME_S.
//
// Members (each checks itself all the time; whatever it finds is counted in
// the status page, see below):
//
//   - main thread: loops on ppoll(2 ms) with a temporary signal mask
//     (PPOLL_MASK) other than its own (MAIN_MASK); after each return checks
//     that the call timed out (no EINTR) and that its own mask is back.
//   - "s-regs" thread: an x86-64 assembly loop (regloop_ymm, or regloop_xmm
//     without AVX2) that holds known values in rbx, rbp, r12-r15, ymm0-15
//     (xmm0-15) and MXCSR for its whole life, never returning to C. It spins
//     a while, compares every one of them (and rsp) with the expected value,
//     counts a round, then sleeps 200 us in a raw nanosleep (so a freeze
//     finds it in user mode or in a restartable call, and the two spinning
//     loops leave the CPUs to the daemon on a small machine), and again.
//   - "s-sleep" thread: loops on nanosleep(1 ms) (restarted by the kernel
//     through its restart block when a stop interrupts it), and checks that
//     the call never failed and that its blocked mask is still SLEEP_MASK.
//   - "s-read" thread: blocks in read() on a pipe whose write end the
//     process holds and never writes (the ERESTARTSYS path). read() must
//     never return. (This is the member blocked for good; no sigsuspend.)
//   - "s-mem" thread: checks a 64 MiB heap area filled with a pattern, 2 MiB
//     every 100 ms (the whole area every 3.2 s), word by word against the
//     pattern's formula.
//   - child process "s-child": forked before any thread, runs the same
//     register loop with other values.
//
// Every catchable signal (1..64 but SIGKILL, SIGSTOP and glibc's 32 and 33)
// has a handler (without SA_RESTART: an interrupted call then shows as EINTR)
// that counts it in the status page; the page is a MAP_SHARED mapping of
// STATUSFILE made before the fork, so the child counts into it too. A fault
// signal (SEGV, BUS, ILL, FPE, TRAP, SYS) is counted once and then kills.
// Every thread sets its own blocked mask at start; they are recorded with
// the tids so that the test can compare /proc's SigBlk too.
//
// Status page: STATUSFILE, 4096 bytes, little-endian, read by the test with
// plain read(2) (a MAP_SHARED file mapping is coherent with the page cache):
//
//	off   size     field
//	0     8        magic "SNTNL001"
//	8     u64      ready: 1 once every member has started (before READY)
//	16    i32      pid of the root (the process the test started)
//	20    i32      pid of the child
//	24    i32      vector width checked by the register loops: 256 or 128
//	28    i32      0
//	32    u64[8]   progress counters, by slot P_*: rounds of the root's
//	               register loop, of the sleeper, 2 MiB chunks checked by
//	               s-mem, rounds of the child's register loop, ppoll
//	               rounds of the main thread, read() calls entered by s-read
//	               (1: it never returned)
//	96    u64[8]   problem counters, by slot X_*: a register changed, a
//	               blocked mask changed, memory changed, a call failed with
//	               EINTR, a call returned that never should (or failed
//	               otherwise), a setup failure after READY
//	160   i32[8]   tids, by slot T_*: main, s-regs, s-sleep, s-read, s-mem,
//	               the child (its only thread)
//	192   u64[8]   blocked mask each of those set, by slot T_* (bit n-1 for
//	               signal n, as /proc's SigBlk)
//	256   u64      the main thread's temporary mask while in ppoll
//	512   u64[65]  deliveries of each signal 1..64 (index = signal number)
//	1536  char[512] the latest problem, in words (NUL-terminated)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

// A safety net: nothing outlives for long a test binary killed before its
// cleanup ran. The stress loop uses one sentinel for a few minutes.
#define LIFETIME_S 1800

#define HEAP_BYTES (64UL << 20)
#define CHUNK_BYTES (2UL << 20)

enum { P_REGS, P_SLEEP, P_MEM, P_CHILD, P_MAIN, P_READ };
enum { X_REGS, X_MASK, X_MEM, X_EINTR, X_CALL, X_SETUP };
enum { T_MAIN, T_REGS, T_SLEEP, T_READ, T_MEM, T_CHILD };

struct status {
	char magic[8];
	uint64_t ready;
	int32_t pid;
	int32_t child;
	int32_t vecbits;
	int32_t zero;
	uint64_t progress[8];
	uint64_t problems[8];
	int32_t tids[8];
	uint64_t masks[8];
	uint64_t ppoll_mask;
	char reserved1[512 - 264];
	uint64_t signals[65];
	char reserved2[1536 - 512 - 65 * 8];
	char message[512];
	char reserved3[4096 - 2048];
};
_Static_assert(offsetof(struct status, progress) == 32, "layout");
_Static_assert(offsetof(struct status, problems) == 96, "layout");
_Static_assert(offsetof(struct status, tids) == 160, "layout");
_Static_assert(offsetof(struct status, masks) == 192, "layout");
_Static_assert(offsetof(struct status, ppoll_mask) == 256, "layout");
_Static_assert(offsetof(struct status, signals) == 512, "layout");
_Static_assert(offsetof(struct status, message) == 1536, "layout");
_Static_assert(sizeof(struct status) == 4096, "layout");

static struct status *st;

// Masks: each member blocks something of its own.
#define BIT(s) (1ULL << ((s) - 1))
#define MAIN_MASK BIT(SIGUSR1)
#define PPOLL_MASK (BIT(SIGTTIN) | BIT(SIGTTOU))
#define REGS_MASK BIT(SIGPWR)
#define SLEEP_MASK BIT(SIGUSR2)
#define READ_MASK BIT(SIGPROF)
#define MEM_MASK 0ULL
#define CHILD_MASK BIT(SIGVTALRM)

static void die(const char *what)
{
	char buf[256];
	int n = snprintf(buf, sizeof buf, "sentinel: %s: %s\n", what, strerror(errno));
	(void)!write(2, buf, n);
	_exit(1);
}

// problem counts a finding and keeps its description as the latest.
static void problem(int slot, const char *fmt, ...)
{
	char buf[sizeof st->message];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	memcpy(st->message, buf, sizeof buf);
	__atomic_add_fetch(&st->problems[slot], 1, __ATOMIC_SEQ_CST);
}

static void tick(int slot)
{
	__atomic_add_fetch(&st->progress[slot], 1, __ATOMIC_SEQ_CST);
}

static long now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* ---- signals ---- */

static int fatal_signal(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP || sig == SIGSYS;
}

static void on_signal(int sig)
{
	int saved = errno;
	if (sig > 0 && sig <= 64)
		__atomic_add_fetch(&st->signals[sig], 1, __ATOMIC_SEQ_CST);
	if (fatal_signal(sig)) {
		// Returning would run the faulting instruction again: die of it
		// the second time, counted.
		struct sigaction sa = {.sa_handler = SIG_DFL};
		sigaction(sig, &sa, NULL);
	}
	errno = saved;
}

static void catch_all(void)
{
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP || sig == 32 || sig == 33)
			continue;
		struct sigaction sa = {.sa_handler = on_signal};
		sigemptyset(&sa.sa_mask);
		// No SA_RESTART: a call a signal interrupts fails with EINTR,
		// which the members report.
		if (sigaction(sig, &sa, NULL) < 0)
			die("sigaction");
	}
}

static void mask_set(uint64_t bits, sigset_t *set)
{
	sigemptyset(set);
	for (int sig = 1; sig <= 64; sig++)
		if (bits & BIT(sig))
			sigaddset(set, sig);
}

// mask_now reads the calling thread's blocked mask as /proc's bits.
static uint64_t mask_now(void)
{
	sigset_t cur;
	uint64_t bits = 0;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	for (int sig = 1; sig <= 64; sig++)
		if (sig != 32 && sig != 33 && sigismember(&cur, sig) == 1)
			bits |= BIT(sig);
	return bits;
}

// own_mask gives the calling thread its mask and records it with its tid.
static void own_mask(int slot, uint64_t bits)
{
	sigset_t set;
	mask_set(bits, &set);
	if (pthread_sigmask(SIG_SETMASK, &set, NULL) != 0)
		die("pthread_sigmask");
	st->masks[slot] = bits;
	__atomic_store_n(&st->tids[slot], (int32_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
}

static void check_mask(const char *who, uint64_t want)
{
	uint64_t got = mask_now();
	if (got != want)
		problem(X_MASK, "%s: blocked mask %#llx, set %#llx", who, (unsigned long long)got, (unsigned long long)want);
}

/* ---- the register loop ---- */

// regctx is shared with the assembly below: keep the offsets in step.
struct regctx {
	uint64_t gp[6];       // 0: rbx, rbp, r12, r13, r14, r15
	uint64_t vec[16][4];  // 48: ymm0..15 (xmm: the first two words)
	uint64_t got[4];      // 560: a vector register, stored to compare
	uint64_t *progress;   // 592
	uint64_t spin;        // 600: iterations between checks
	struct timespec nap;  // 608: the raw nanosleep between checks
	uint64_t rsp;         // 624: rsp inside the loop
	uint32_t mxcsr;       // 632: the MXCSR the loop runs with
	uint32_t mxgot;       // 636
	int64_t sysret;       // 640: a failed nanosleep's return
};
_Static_assert(offsetof(struct regctx, vec) == 48, "regctx");
_Static_assert(offsetof(struct regctx, got) == 560, "regctx");
_Static_assert(offsetof(struct regctx, progress) == 592, "regctx");
_Static_assert(offsetof(struct regctx, spin) == 600, "regctx");
_Static_assert(offsetof(struct regctx, nap) == 608, "regctx");
_Static_assert(offsetof(struct regctx, rsp) == 624, "regctx");
_Static_assert(offsetof(struct regctx, mxcsr) == 632, "regctx");
_Static_assert(offsetof(struct regctx, sysret) == 640, "regctx");

// regloop_ymm and regloop_xmm run until a check fails and return what
// failed: 1..6 rbx, rbp, r12..r15; 7..22 the vector registers 0..15; 23
// rsp; 24 MXCSR; 25 nanosleep failed (sysret holds -errno). The context
// pointer lives in r8 (a raw syscall keeps it; rcx, r11 and rax are the
// call's).
#define REGLOOP_HEAD(name)                                                   \
	"	.text\n"                                                     \
	"	.globl " name "\n"                                           \
	"	.type " name ",@function\n"                                  \
	name ":\n"                                                           \
	"	push %rbx\n	push %rbp\n	push %r12\n"                 \
	"	push %r13\n	push %r14\n	push %r15\n"                 \
	"	mov %rdi, %r8\n"                                             \
	"	ldmxcsr 632(%r8)\n"                                          \
	"	mov %rsp, 624(%r8)\n"                                        \
	"	mov 0(%r8), %rbx\n	mov 8(%r8), %rbp\n"                   \
	"	mov 16(%r8), %r12\n	mov 24(%r8), %r13\n"                  \
	"	mov 32(%r8), %r14\n	mov 40(%r8), %r15\n"
#define REGLOOP_CHECK_GP                                                     \
	"1:	mov 600(%r8), %rcx\n"                                        \
	"2:	dec %rcx\n	jnz 2b\n"                                     \
	"	mov $1, %eax\n	cmp 0(%r8), %rbx\n	jne 9f\n"             \
	"	mov $2, %eax\n	cmp 8(%r8), %rbp\n	jne 9f\n"             \
	"	mov $3, %eax\n	cmp 16(%r8), %r12\n	jne 9f\n"            \
	"	mov $4, %eax\n	cmp 24(%r8), %r13\n	jne 9f\n"            \
	"	mov $5, %eax\n	cmp 32(%r8), %r14\n	jne 9f\n"            \
	"	mov $6, %eax\n	cmp 40(%r8), %r15\n	jne 9f\n"
#define REGLOOP_TAIL(name)                                                   \
	"	mov $23, %eax\n	cmp 624(%r8), %rsp\n	jne 9f\n"            \
	"	stmxcsr 636(%r8)\n	mov 636(%r8), %edx\n"                 \
	"	mov $24, %eax\n	cmp 632(%r8), %edx\n	jne 9f\n"            \
	"	mov 592(%r8), %rdx\n	lock incq (%rdx)\n"                   \
	"	lea 608(%r8), %rdi\n	xor %esi, %esi\n"                     \
	"	mov $35, %eax\n	syscall\n" /* nanosleep */                  \
	"	test %rax, %rax\n	jz 1b\n"                              \
	"	mov %rax, 640(%r8)\n	mov $25, %eax\n"                      \
	"9:	movl $0x1f80, 636(%r8)\n	ldmxcsr 636(%r8)\n"           \
	"	pop %r15\n	pop %r14\n	pop %r13\n"                   \
	"	pop %r12\n	pop %rbp\n	pop %rbx\n"                   \
	"	ret\n"                                                       \
	"	.size " name ", .-" name "\n"

#define IRP16 ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"

__asm__(REGLOOP_HEAD("regloop_ymm")
	IRP16
	"	vmovdqu 48+32*\\i(%r8), %ymm\\i\n"
	".endr\n"
	REGLOOP_CHECK_GP
	IRP16
	"	vmovdqu %ymm\\i, 560(%r8)\n"
	"	mov $7+\\i, %eax\n"
	"	mov 560(%r8), %rdx\n	cmp 48+32*\\i(%r8), %rdx\n	jne 9f\n"
	"	mov 568(%r8), %rdx\n	cmp 56+32*\\i(%r8), %rdx\n	jne 9f\n"
	"	mov 576(%r8), %rdx\n	cmp 64+32*\\i(%r8), %rdx\n	jne 9f\n"
	"	mov 584(%r8), %rdx\n	cmp 72+32*\\i(%r8), %rdx\n	jne 9f\n"
	".endr\n"
	REGLOOP_TAIL("regloop_ymm")
	"	.text\n");

__asm__(REGLOOP_HEAD("regloop_xmm")
	IRP16
	"	movdqu 48+32*\\i(%r8), %xmm\\i\n"
	".endr\n"
	REGLOOP_CHECK_GP
	IRP16
	"	movdqu %xmm\\i, 560(%r8)\n"
	"	mov $7+\\i, %eax\n"
	"	mov 560(%r8), %rdx\n	cmp 48+32*\\i(%r8), %rdx\n	jne 9f\n"
	"	mov 568(%r8), %rdx\n	cmp 56+32*\\i(%r8), %rdx\n	jne 9f\n"
	".endr\n"
	REGLOOP_TAIL("regloop_xmm")
	"	.text\n");

long regloop_ymm(struct regctx *c);
long regloop_xmm(struct regctx *c);

static int have_avx2;

static const char *reg_name(long code, char *buf, size_t n)
{
	static const char *gp[] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};
	if (code >= 1 && code <= 6)
		return gp[code - 1];
	if (code >= 7 && code <= 22) {
		snprintf(buf, n, "%s%ld", have_avx2 ? "ymm" : "xmm", code - 7);
		return buf;
	}
	if (code == 23)
		return "rsp";
	if (code == 24)
		return "mxcsr";
	snprintf(buf, n, "code %ld", code);
	return buf;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ULL;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dULL;
	x ^= x >> 33;
	return x | 1; // never 0
}

// run_regs runs the register loop with values derived from seed, forever;
// each failed check is reported and the loop starts again.
static void run_regs(const char *who, uint64_t seed, int slot)
{
	// Not on the stack (nothing the loop uses lies near rsp); one loop
	// per process, so one context each.
	static struct regctx c;
	char buf[32];
	for (int i = 0; i < 6; i++)
		c.gp[i] = mix(seed * 64 + i);
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 4; j++)
			c.vec[i][j] = mix(seed * 64 + 8 + i * 4 + j);
	c.progress = &st->progress[slot];
	c.spin = 60000;
	c.nap.tv_sec = 0;
	c.nap.tv_nsec = 200000;
	c.mxcsr = 0x7f80; // every exception masked, rounding toward zero
	for (;;) {
		long code = have_avx2 ? regloop_ymm(&c) : regloop_xmm(&c);
		if (code == 25) {
			problem(c.sysret == -EINTR ? X_EINTR : X_CALL,
				"%s: nanosleep returned %lld", who, (long long)c.sysret);
			continue;
		}
		problem(X_REGS, "%s: %s changed", who, reg_name(code, buf, sizeof buf));
	}
}

static void *regs_thread(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "s-regs");
	own_mask(T_REGS, REGS_MASK);
	run_regs("root's register loop", 1, P_REGS);
	return NULL;
}

/* ---- the other members ---- */

static void *sleep_thread(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "s-sleep");
	own_mask(T_SLEEP, SLEEP_MASK);
	struct timespec ms = {0, 1000000};
	for (;;) {
		if (nanosleep(&ms, NULL) < 0) {
			if (errno == EINTR)
				problem(X_EINTR, "sleeper: nanosleep failed with EINTR");
			else
				problem(X_CALL, "sleeper: nanosleep: %s", strerror(errno));
		}
		check_mask("sleeper", SLEEP_MASK);
		tick(P_SLEEP);
	}
	return NULL;
}

static int pipefd[2];

static void *read_thread(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "s-read");
	own_mask(T_READ, READ_MASK);
	char b;
	for (;;) {
		tick(P_READ);
		ssize_t n = read(pipefd[0], &b, 1);
		if (n < 0 && errno == EINTR)
			problem(X_EINTR, "reader: read failed with EINTR");
		else if (n < 0)
			problem(X_CALL, "reader: read: %s", strerror(errno));
		else
			problem(X_CALL, "reader: read returned %zd", n);
	}
	return NULL;
}

static uint64_t *heap;

static uint64_t pattern(size_t i)
{
	return (i * 0x9e3779b97f4a7c15ULL) ^ 0x5a5aa5a5c3c33c3cULL;
}

static void *mem_thread(void *arg)
{
	pid_t child = *(pid_t *)arg;
	long start = now_s();
	pthread_setname_np(pthread_self(), "s-mem");
	own_mask(T_MEM, MEM_MASK);
	const size_t words = HEAP_BYTES / 8, chunk = CHUNK_BYTES / 8;
	struct timespec nap = {0, 100000000};
	for (size_t at = 0;; at = (at + chunk) % words) {
		for (size_t i = at; i < at + chunk; i++) {
			if (heap[i] != pattern(i)) {
				problem(X_MEM, "memory: word at offset %#zx is %#llx, want %#llx",
					i * 8, (unsigned long long)heap[i], (unsigned long long)pattern(i));
				heap[i] = pattern(i); // report each change once
			}
		}
		tick(P_MEM);
		if (now_s() - start > LIFETIME_S) {
			kill(child, SIGKILL);
			_exit(0);
		}
		while (nanosleep(&nap, &nap) < 0 && errno == EINTR)
			problem(X_EINTR, "memory checker: nanosleep failed with EINTR");
		nap.tv_nsec = 100000000;
	}
	return NULL;
}

static void spawn(void *(*fn)(void *), void *arg)
{
	pthread_t th;
	int err = pthread_create(&th, NULL, fn, arg);
	if (err) {
		errno = err;
		die("pthread_create");
	}
}

// quiet points standard input, output and error at /dev/null.
static void quiet(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open /dev/null");
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
}

static void wait_tid(int slot)
{
	for (int i = 0; i < 20000 && !__atomic_load_n(&st->tids[slot], __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	if (!st->tids[slot]) {
		errno = ETIMEDOUT;
		die("a member did not start");
	}
}

int main(int argc, char **argv)
{
	// The shell the tests run from may leak descriptors: keep 0, 1, 2 only.
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	if (argc != 2) {
		fprintf(stderr, "usage: sentinel STATUSFILE\n");
		return 2;
	}
	__builtin_cpu_init();
	have_avx2 = __builtin_cpu_supports("avx2");

	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(argv[1]);
	if (ftruncate(fd, sizeof *st) < 0)
		die("ftruncate");
	st = mmap(NULL, sizeof *st, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (st == MAP_FAILED)
		die("mmap status");
	close(fd);
	memcpy(st->magic, "SNTNL001", 8);
	st->pid = getpid();
	st->vecbits = have_avx2 ? 256 : 128;
	st->ppoll_mask = PPOLL_MASK;
	catch_all();
	prctl(PR_SET_NAME, "sentinel", 0, 0, 0);

	// The child first, while the process has one thread and a small heap.
	pid_t parent = getpid();
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		prctl(PR_SET_NAME, "s-child", 0, 0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		st->child = getpid();
		quiet();
		own_mask(T_CHILD, CHILD_MASK);
		run_regs("child's register loop", 2, P_CHILD);
	}

	heap = mmap(NULL, HEAP_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (heap == MAP_FAILED)
		die("mmap heap");
	for (size_t i = 0; i < HEAP_BYTES / 8; i++)
		heap[i] = pattern(i);
	if (pipe(pipefd) < 0)
		die("pipe");

	spawn(regs_thread, NULL);
	spawn(sleep_thread, NULL);
	spawn(read_thread, NULL);
	spawn(mem_thread, &child);
	own_mask(T_MAIN, MAIN_MASK);
	for (int slot = T_MAIN; slot <= T_CHILD; slot++)
		wait_tid(slot);
	__atomic_store_n(&st->ready, 1, __ATOMIC_SEQ_CST);

	printf("READY %d child=%d\n", getpid(), child);
	fflush(stdout);
	quiet();

	sigset_t tmp;
	mask_set(PPOLL_MASK, &tmp);
	struct timespec ms2 = {0, 2000000};
	for (;;) {
		int n = ppoll(NULL, 0, &ms2, &tmp);
		if (n < 0 && errno == EINTR)
			problem(X_EINTR, "main: ppoll failed with EINTR");
		else if (n != 0)
			problem(X_CALL, "main: ppoll returned %d (%s)", n, n < 0 ? strerror(errno) : "");
		check_mask("main", MAIN_MASK);
		tick(P_MAIN);
	}
}
