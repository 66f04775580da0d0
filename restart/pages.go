package restart

import (
	"sync"

	"github.com/ckptfs/ckptfs/image"
)

// pageFiller writes page runs into a task's memory on a goroutine of its
// own, so that the next run is read from the image while the previous one
// is copied in: the two halves of a restore's bulk work overlap.
type pageFiller struct {
	free chan []byte
	work chan pageWork
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error // the first write error
}

type pageWork struct {
	as   *addrSpace
	addr uint64
	data []byte
}

const fillerBuffers = 3

func newPageFiller() *pageFiller {
	f := &pageFiller{free: make(chan []byte, fillerBuffers), work: make(chan pageWork, fillerBuffers)}
	for range fillerBuffers {
		f.free <- make([]byte, image.MaxPagesRecord)
	}
	go func() {
		for w := range f.work {
			if err := w.as.writePages(w.addr, w.data); err != nil {
				f.mu.Lock()
				if f.err == nil {
					f.err = err
				}
				f.mu.Unlock()
			}
			f.free <- w.data[:cap(w.data)]
			f.wg.Done()
		}
	}()
	return f
}

// buffer returns a buffer for n bytes of a run (n <= image.MaxPagesRecord,
// which the reader checked).
func (f *pageFiller) buffer(n int) []byte { return (<-f.free)[:n] }

// put queues a filled buffer for writing at addr.
func (f *pageFiller) put(as *addrSpace, addr uint64, data []byte) {
	f.wg.Add(1)
	f.work <- pageWork{as, addr, data}
}

// giveBack returns a buffer that will not be queued.
func (f *pageFiller) giveBack(data []byte) { f.free <- data[:cap(data)] }

// wait waits until every queued run is written and returns the first error.
func (f *pageFiller) wait() error {
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// close ends the filler's goroutine.
func (f *pageFiller) close() { close(f.work) }
