// Package inject makes a stopped tracee run system calls on the tracer's
// behalf: the one mechanism behind what no /proc file shows at checkpoint
// and behind every step of restart.
//
// A call is run by pointing the task's registers at a `syscall`
// instruction loaded with the call's number and arguments, and resuming it
// with PTRACE_SYSCALL: it stops at the call's entry and again at its exit,
// where the result is read from rax. Nothing is ever single-stepped, so the
// trap flag is never set on a task.
//
// # Where a task may wait
//
// Whatever the tracer does, it may die between any two of its steps (it is
// killed, it panics, the OOM killer picks it), and the kernel then detaches
// every tracee and lets it run from the stop it is in. So a task we drive
// is only ever parked in a stop that a tracer's exit resolves harmlessly:
//
//   - a PTRACE_EVENT_STOP (the stop of PTRACE_INTERRUPT, or a group-stop):
//     on the tracer's exit the task runs on, or stays in its group-stop,
//     with nothing delivered (do_jobctl_trap ignores what the tracer left);
//   - a syscall-entry or -exit stop, with PTRACE_O_TRACESYSGOOD: the
//     kernel then "sends" the stop's code, SIGTRAP|0x80, which is no valid
//     signal, so nothing is delivered (ptrace_report_syscall);
//   - another event stop (a clone's, an exit's): ptrace_event ignores what
//     the tracer left.
//
// Never in a signal-delivery-stop of a signal we caused (a SIGTRAP from a
// step or an int3 would be delivered on detach and kill the task), and
// never with TF set.
//
// Parking safely is not enough for a task we must leave as it was (a
// checkpointed tree): between two stops its registers are not its own.
// Such a task is guarded (Guard): before anything is changed, a signal
// frame holding its registers, FPU state and blocked mask is written below
// its stack, and every instant of the calls is arranged so that a task let
// go runs `mov $15, %eax; syscall` (a sigreturn gadget found in its own
// code) with its stack pointer at that frame: rt_sigreturn then puts back
// exactly what it had. A task that runs restart's steps needs no guard: it
// is traced with PTRACE_O_EXITKILL, so the tracer's death kills it, which
// is what a half-built restore must come to.
//
// Every function here must run on the thread that traces the task
// (ptrace.Tracer.Do).
package inject
