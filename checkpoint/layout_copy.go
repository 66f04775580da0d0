package checkpoint

import "io"

// copyChunk is how much of the image WriteTo reads at a time: the size of
// the mount's reads, so that both paths read memory alike.
const copyChunk = 1 << 20

// WriteTo writes the whole image to w, front to back, folding each chunk
// into the TAIL's checksum as it goes (so the TAIL costs nothing), and
// returns the bytes written. It is what a reader of the mount's image file
// does, for a caller that has the image's destination at hand; the tree
// stays frozen until Close.
func (l *Layout) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, copyChunk)
	var off int64
	for off < l.size {
		n, err := l.ReadAt(buf, off)
		if err != nil {
			return off, err
		}
		l.Sum(l.PieceOf(buf[:n], off))
		if _, err := w.Write(buf[:n]); err != nil {
			return off, err
		}
		off += int64(n)
	}
	return off, nil
}
