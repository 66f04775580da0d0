package checkpoint

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
)

// The descriptor tables of a tree, taken together.
//
// A process's own table says what each descriptor is (files.go); only the
// whole tree says which objects are the tree's: a pipe is kept if the tree
// holds both a read end and a write end of it, a unix socket if the tree
// holds its peer. Their buffered bytes, and the contents of deleted files,
// are read once and recorded with the first process that holds them. What
// leads outside the tree is refused, or replaced by /dev/null if asked.

// shared are the objects a process's descriptors share with others of the
// tree: their records go before the FILES record of the first process that
// uses them, so restart has made them when any process opens them.
type shared struct {
	Pipes   []image.Pipe
	Sockets []image.Socket
	Files   []image.FileData
}

// holders counts the descriptors of one pipe or socket in the tree.
type holders struct {
	readers, writers int
	first            int // tgid of the first process holding it
	fd               int // one of its descriptors there
}

// bothEnds reports whether the tree holds a reader and a writer.
func (h *holders) bothEnds() bool { return h.readers > 0 && h.writers > 0 }

// objectSet is the pipes, named pipes or sockets of the tree, by inode, in
// the order they were first met.
type objectSet struct {
	byIno map[uint64]*holders
	order []uint64
}

func newObjectSet() objectSet { return objectSet{byIno: make(map[uint64]*holders)} }

// add counts descriptor f of process tgid.
func (s *objectSet) add(tgid int, f image.FD) {
	h, ok := s.byIno[f.Ino]
	if !ok {
		h = &holders{first: tgid, fd: int(f.Num)}
		s.byIno[f.Ino] = h
		s.order = append(s.order, f.Ino)
	}
	switch f.Flags & unix.O_ACCMODE {
	case unix.O_WRONLY:
		h.writers++
	case unix.O_RDWR:
		h.readers++
		h.writers++
	default:
		h.readers++
	}
}

// fileCensus gathers the descriptor tables of a tree.
type fileCensus struct {
	replace bool
	tables  map[int][]image.FD // by tgid
	order   []int              // the tgids, in tree order
	objs    map[int]shared     // by the tgid whose records carry them
	pipes   objectSet
	fifos   objectSet
	sockets objectSet
	outside map[uint64]string // sockets leading outside, and what they are
	deleted map[[2]uint64]bool
	socks   unixSockets
	ids     *fileIDs // the identities of regular files
}

// fileTables reads the descriptor table of every live process of the tree
// (see "The descriptor tables of a tree"), with the identity of its regular
// files from ids.
func fileTables(infos []*taskInfo, seized map[int]bool, replace bool, ids *fileIDs) (map[int][]image.FD, map[int]shared, error) {
	c := &fileCensus{
		replace: replace,
		ids:     ids,
		tables:  make(map[int][]image.FD),
		objs:    make(map[int]shared),
		pipes:   newObjectSet(), fifos: newObjectSet(), sockets: newObjectSet(),
		outside: make(map[uint64]string),
		deleted: make(map[[2]uint64]bool),
	}
	for _, t := range infos {
		if t.tid != t.tgid || !seized[t.tid] {
			continue // threads share their leader's table; zombies hold none
		}
		if err := c.read(t.tgid); err != nil {
			return nil, nil, err
		}
	}
	if err := c.pipeContents(); err != nil {
		return nil, nil, err
	}
	if err := c.socketPairs(); err != nil {
		return nil, nil, err
	}
	if err := c.leadingOutside(); err != nil {
		return nil, nil, err
	}
	return c.tables, c.objs, nil
}

// read reads the table of process tgid and counts its pipes, named pipes
// and sockets; a deleted file's contents are read the first time it is met.
func (c *fileCensus) read(tgid int) error {
	fds, err := readFiles(tgid, c.replace, &c.socks, c.ids)
	if err != nil {
		return taskErr(tgid, "read files", err)
	}
	c.tables[tgid] = fds
	c.order = append(c.order, tgid)
	for _, f := range fds {
		switch f.Kind {
		case image.FilePipe:
			c.pipes.add(tgid, f)
		case image.FileFifo:
			c.fifos.add(tgid, f)
		case image.FileSocket:
			c.sockets.add(tgid, f)
		case image.FileDeleted:
			if err := c.deletedFile(tgid, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// deletedFile records the contents of a deleted file, once.
func (c *fileCensus) deletedFile(tgid int, f image.FD) error {
	key := [2]uint64{f.Dev, f.Ino}
	if c.deleted[key] {
		return nil
	}
	c.deleted[key] = true
	fd, err := readFileData(tgid, int(f.Num), f.Path)
	if err != nil {
		return taskErr(tgid, fmt.Sprintf("read deleted file fd %d", f.Num), err)
	}
	o := c.objs[tgid]
	o.Files = append(o.Files, *fd)
	c.objs[tgid] = o
	return nil
}

// pipeContents reads the bytes buffered in every pipe and named pipe the
// tree holds both ends of; a named pipe's travel like a pipe's, in a PIPE
// record with its inode.
func (c *fileCensus) pipeContents() error {
	for _, set := range []*objectSet{&c.pipes, &c.fifos} {
		for _, ino := range set.order {
			h := set.byIno[ino]
			if !h.bothEnds() {
				continue // leads outside the tree: see leadingOutside
			}
			p, err := readPipe(h.first, h.fd, ino)
			if err != nil {
				return taskErr(h.first, fmt.Sprintf("read pipe fd %d", h.fd), err)
			}
			o := c.objs[h.first]
			o.Pipes = append(o.Pipes, *p)
			c.objs[h.first] = o
		}
	}
	return nil
}

// socketPairs records both ends of every socket pair the tree holds, with
// the first process holding either; a socket whose peer is outside is
// noted, one ckptfs cannot bring back is refused.
func (c *fileCensus) socketPairs() error {
	inTree := func(ino uint64) bool { return c.sockets.byIno[ino] != nil }
	done := make(map[uint64]bool)
	for _, ino := range c.sockets.order {
		h := c.sockets.byIno[ino]
		s := c.socks.byIno[ino]
		if what, external := pairFault(s, inTree); what != "" {
			if !external {
				return taskErr(h.first, "read files", fmt.Errorf("fd %d is %s: %w", h.fd, what, ErrUnsupported))
			}
			c.outside[ino] = what
			continue
		}
		if done[ino] {
			continue
		}
		done[ino], done[s.Peer] = true, true
		o := c.objs[h.first]
		for _, end := range []uint64{ino, s.Peer} {
			eh := c.sockets.byIno[end]
			rec, err := readSocket(eh.first, eh.fd, c.socks.byIno[end])
			if err != nil {
				return taskErr(eh.first, fmt.Sprintf("read socket fd %d", eh.fd), err)
			}
			o.Sockets = append(o.Sockets, *rec)
		}
		c.objs[h.first] = o
	}
	return nil
}

// leadingOutside refuses a pipe or socket whose other end is outside the
// tree, or records it to be replaced by /dev/null.
func (c *fileCensus) leadingOutside() error {
	for _, tgid := range c.order {
		fds := c.tables[tgid]
		for i, f := range fds {
			var what string
			var kind uint64
			switch {
			case f.Kind == image.FilePipe && !c.pipes.byIno[f.Ino].bothEnds():
				what, kind = "a pipe ("+f.Path+") whose other end is outside the tree", image.ExternalPipe
			case f.Kind == image.FileFifo && !c.fifos.byIno[f.Ino].bothEnds():
				what, kind = "a named pipe ("+f.Path+") whose other end is outside the tree", image.ExternalFifo
			case f.Kind == image.FileSocket && c.outside[f.Ino] != "":
				what, kind = c.outside[f.Ino], image.ExternalSocket
			default:
				continue
			}
			if !c.replace {
				return taskErr(tgid, "read files", fmt.Errorf("fd %d is %s: %w", f.Num, what, ErrExternal))
			}
			fds[i] = image.FD{Num: f.Num, Kind: image.FileReplaced, Flags: f.Flags, Path: f.Path, Extra: []uint64{kind}}
		}
	}
	return nil
}
