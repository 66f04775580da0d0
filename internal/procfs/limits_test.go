package procfs

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const sampleLimits = `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            4194304              unlimited            bytes     
Max core file size        0                    1048576              bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             96551                96551                processes 
Max open files            200                  400                  files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       96551                96551                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
`

func TestParseLimits(t *testing.T) {
	l, err := parseLimits([]byte(sampleLimits))
	if err != nil {
		t.Fatal(err)
	}
	for res, want := range map[int]Limit{
		unix.RLIMIT_CPU:    {Infinity, Infinity},
		unix.RLIMIT_STACK:  {4 << 20, Infinity},
		unix.RLIMIT_CORE:   {0, 1 << 20},
		unix.RLIMIT_NOFILE: {200, 400},
		unix.RLIMIT_NICE:   {0, 0},
		unix.RLIMIT_RTTIME: {Infinity, Infinity},
	} {
		if l[res] != want {
			t.Errorf("resource %d: %+v, want %+v", res, l[res], want)
		}
	}
	rows := strings.SplitAfter(sampleLimits, "\n")
	for name, data := range map[string]string{
		"empty":          "",
		"no heading":     strings.Join(rows[1:], ""),
		"row missing":    strings.Join(rows[:len(rows)-2], ""),
		"extra row":      sampleLimits + "Max something             1                    1\n",
		"rows swapped":   rows[0] + rows[2] + rows[1] + strings.Join(rows[3:], ""),
		"bad number":     strings.Replace(sampleLimits, "4194304", "4x", 1),
		"soft over hard": strings.Replace(sampleLimits, "200   ", "500   ", 1),
		"one value":      strings.Replace(sampleLimits, "819200               819200", "819200", 1),
	} {
		if _, err := parseLimits([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The file agrees with getrlimit for this process.
func TestReadLimits(t *testing.T) {
	l, err := ReadLimits(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for res := range NumLimits {
		var r unix.Rlimit
		if err := unix.Getrlimit(res, &r); err != nil {
			t.Fatal(err)
		}
		if l[res] != (Limit{r.Cur, r.Max}) {
			t.Errorf("resource %d: file %+v, getrlimit %+v", res, l[res], r)
		}
	}
}
