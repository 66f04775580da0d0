package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Progress bars are drawn on standard error when it is a terminal and the
// image is at least largeImage: a small image is done before a bar would
// be read.
const (
	largeImage    = 64 << 20
	progressEvery = 100 * time.Millisecond
	progressWidth = 30
)

// progress draws how much of an image has gone through, on one line of
// standard error that it redraws and clears at the end.
type progress struct {
	verb    string // "checkpoint", "restore"
	total   int64
	done    int64
	started time.Time
	drawn   time.Time
	out     io.Writer
}

// newProgress returns a bar for total bytes, or nil (which draws nothing)
// when standard error is not a terminal or the image is small or of
// unknown size (total < 0).
func newProgress(verb string, total int64) *progress {
	if total < largeImage {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &progress{verb: verb, total: total, started: time.Now(), out: os.Stderr}
}

// add counts n more bytes, redrawing the bar at most every progressEvery.
func (p *progress) add(n int) {
	if p == nil {
		return
	}
	p.done += int64(n)
	if now := time.Now(); now.Sub(p.drawn) >= progressEvery || p.done == p.total {
		p.drawn = now
		p.draw(now)
	}
}

func (p *progress) draw(now time.Time) {
	frac := min(float64(p.done)/float64(p.total), 1)
	fill := int(frac * progressWidth)
	bar := make([]byte, progressWidth)
	for i := range bar {
		bar[i] = ' '
		if i < fill {
			bar[i] = '#'
		}
	}
	rate := ""
	if secs := now.Sub(p.started).Seconds(); secs > 0.2 {
		rate = fmt.Sprintf(", %s/s", mib(int64(float64(p.done)/secs)))
	}
	// \r: back to the line's start; \033[K: clear what a longer line left.
	fmt.Fprintf(p.out, "\r\033[Kckptfs: %s [%s] %3.0f%% %s of %s%s", p.verb, bar, frac*100, mib(p.done), mib(p.total), rate)
}

// end clears the bar, leaving the line to what follows.
func (p *progress) end() {
	if p != nil {
		fmt.Fprint(p.out, "\r\033[K")
	}
}

// mib writes a byte count in MiB, or GiB from 10 GiB up.
func mib(n int64) string {
	if n >= 10<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

// writer counts what goes through w.
func (p *progress) writer(w io.Writer) io.Writer {
	if p == nil {
		return w
	}
	return progressWriter{w, p}
}

// reader counts what is read from r.
func (p *progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return progressReader{r, p}
}

type progressWriter struct {
	w io.Writer
	p *progress
}

func (pw progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.p.add(n)
	return n, err
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (pr progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.add(n)
	return n, err
}
