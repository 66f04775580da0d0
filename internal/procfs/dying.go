package procfs

// pfExiting is the kernel's PF_EXITING task flag (include/linux/sched.h).
const pfExiting = 0x4

// sigkill is SIGKILL's bit in a signal mask.
const sigkill = 1 << (9 - 1)

// Dying reports whether task tid is on its way out: it is exiting
// (PF_EXITING), or SIGKILL is pending for it, which is also how the kernel
// marks a thread of a process dying of any fatal signal (complete_signal
// queues SIGKILL to every thread). A task that is gone counts as dying.
func Dying(tid int) bool {
	st, err := ReadStat(tid)
	if err != nil {
		return true
	}
	if st.Flags&pfExiting != 0 || st.State == 'Z' || st.State == 'X' {
		return true
	}
	s, err := ReadStatus(tid)
	if err != nil {
		return true
	}
	return (s.SigPnd|s.ShdPnd)&sigkill != 0
}
