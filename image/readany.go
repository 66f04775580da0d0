package image

import (
	"fmt"
	"io"
	"strings"
)

// Sections says which parts of an image a stream held.
type Sections uint8

const (
	SecHeader Sections = 1 << iota
	SecPids
	SecTree
	SecTasks // the TASK records (with the per-task records after them)
	SecTail  // the TAIL, verified

	// SecImage is a whole image.
	SecImage = SecHeader | SecPids | SecTree | SecTasks | SecTail
)

// Has reports whether every section of x is in s.
func (s Sections) Has(x Sections) bool { return s&x == x }

var sectionNames = [...]string{"header", "pids", "tree", "tasks", "tail"}

// String lists the sections, e.g. "pids+tree".
func (s Sections) String() string {
	var parts []string
	for i, name := range sectionNames {
		if s&(1<<i) != 0 {
			parts = append(parts, name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// ReadAny reads what `ckptfs inspect` may be given: a whole image, or one
// of the files the filesystem serves beside it — a PIDS section, a TREE
// section, or PIDS followed by TREE (bytes sliced out of an image, so with
// no HEADER and no TAIL). The first record decides which. A TREE without
// PIDS is checked for its own structure only: its tags cannot be resolved.
// A standalone section must be followed by the end of the stream.
func ReadAny(rd io.Reader) (*Image, Sections, error) {
	img, s, _, err := readAny(rd)
	return img, s, err
}

// readAny is ReadAny, also returning the Reader for tests to inspect.
func readAny(rd io.Reader) (*Image, Sections, *Reader, error) {
	r := NewReader(rd)
	h, err := r.nextHeader("HEADER")
	if err != nil {
		return nil, 0, r, err
	}
	r.pending = &h
	switch h.typ {
	case RecHeader:
		img, err := readImage(r)
		if err != nil {
			return nil, 0, r, err
		}
		return img, SecImage, r, nil
	case RecPids:
		r.stage = atPids
		pids, err := r.Pids()
		if err != nil {
			return nil, 0, r, err
		}
		img := &Image{Pids: *pids}
		if _, err := r.br.Peek(1); err == io.EOF {
			return img, SecPids, r, nil
		} else if err != nil {
			return nil, 0, r, r.fail(fmt.Errorf("image: reading after PIDS at byte %d: %w", r.off, err))
		}
		tree, err := r.Tree()
		if err != nil {
			return nil, 0, r, err
		}
		if err := r.expectEOF("TREE"); err != nil {
			return nil, 0, r, err
		}
		img.Tree = *tree
		return img, SecPids | SecTree, r, nil
	case RecTree:
		r.stage = atTree
		tree, err := r.Tree()
		if err != nil {
			return nil, 0, r, err
		}
		if err := r.expectEOF("TREE"); err != nil {
			return nil, 0, r, err
		}
		return &Image{Tree: *tree}, SecTree, r, nil
	}
	return nil, 0, r, r.fail(formatErr("HEADER", 0, ErrMagic,
		"first record has type %d: neither an image (HEADER, 1) nor a PIDS (101) or TREE (102) section", h.typ))
}
