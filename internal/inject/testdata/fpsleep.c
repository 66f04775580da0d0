// A victim whose FPU state is its own: every ymm register holds a pattern
// of its own when it sleeps in nanosleep, straight from the asm that set
// them (no libc call in between could touch them). The kernel keeps them
// across the call; so must anything that stops the task and lets it go.
#include <time.h>

static const unsigned char pat[16][32] __attribute__((aligned(32))) = {
#define ROW(n) { n, n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10, n+11, n+12, n+13, n+14, n+15, \
		 n+16, n+17, n+18, n+19, n+20, n+21, n+22, n+23, n+24, n+25, n+26, n+27, n+28, n+29, n+30, n+31 }
	ROW(1), ROW(33), ROW(65), ROW(97), ROW(129), ROW(161), ROW(193), ROW(225),
	ROW(17), ROW(49), ROW(81), ROW(113), ROW(145), ROW(177), ROW(209), ROW(241),
};

int main(void)
{
	static struct timespec ts = { 1000, 0 };

	__asm__ volatile(
		"vmovdqa 0(%0), %%ymm0\n\t"   "vmovdqa 32(%0), %%ymm1\n\t"
		"vmovdqa 64(%0), %%ymm2\n\t"  "vmovdqa 96(%0), %%ymm3\n\t"
		"vmovdqa 128(%0), %%ymm4\n\t" "vmovdqa 160(%0), %%ymm5\n\t"
		"vmovdqa 192(%0), %%ymm6\n\t" "vmovdqa 224(%0), %%ymm7\n\t"
		"vmovdqa 256(%0), %%ymm8\n\t" "vmovdqa 288(%0), %%ymm9\n\t"
		"vmovdqa 320(%0), %%ymm10\n\t" "vmovdqa 352(%0), %%ymm11\n\t"
		"vmovdqa 384(%0), %%ymm12\n\t" "vmovdqa 416(%0), %%ymm13\n\t"
		"vmovdqa 448(%0), %%ymm14\n\t" "vmovdqa 480(%0), %%ymm15\n\t"
		"1:\n\t"
		"mov $35, %%eax\n\t" // nanosleep
		"mov %1, %%rdi\n\t"
		"xor %%esi, %%esi\n\t"
		"syscall\n\t"
		"jmp 1b\n\t"
		: : "r"(pat), "r"(&ts) : "rax", "rdi", "rsi", "rcx", "r11", "memory");
	return 0;
}
