// Command goroutines is a Go workload for restart: eight goroutines count
// on as many threads as the runtime likes, and every 50 ms the program
// appends to REPORT a line
//
//	pid=P tick=T total=N sum=ok
//
// where sum=ok says the goroutines' own counters still add up to the
// shared total (checked while they are paused at a barrier). The Go
// runtime exercises what a restored process needs: threads, signal
// handlers and alternate stacks, rseq, an epoll instance and an eventfd
// (its netpoller), and timers.
package main

import (
	"fmt"
	"os"
	"sync"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: goroutines REPORT")
		os.Exit(2)
	}
	out, err := os.OpenFile(os.Args[1], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.RWMutex // writers pause the counters to check them
	var total int64
	counts := make([]int64, 8)
	var tmu sync.Mutex
	for g := range counts {
		go func() {
			for {
				mu.RLock()
				tmu.Lock()
				counts[g]++
				total++
				tmu.Unlock()
				mu.RUnlock()
				if counts[g]%10000 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	for tick := 0; ; tick++ {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		var sum int64
		for _, c := range counts {
			sum += c
		}
		ok := "ok"
		if sum != total {
			ok = "bad"
		}
		fmt.Fprintf(out, "pid=%d tick=%d total=%d sum=%s\n", os.Getpid(), tick, total, ok)
		mu.Unlock()
	}
}
