package procfs

import (
	"bufio"
	"bytes"
	"iter"
	"strings"
)

// fields yields the "Key: value" lines of a /proc file such as status or
// fdinfo, the value trimmed; lines without a colon are passed over.
func fields(data []byte) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			key, val, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			if !yield(key, strings.TrimSpace(val)) {
				return
			}
		}
	}
}
