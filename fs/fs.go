// Package fs adapts FUSE requests onto checkpoint and restart: it holds
// no checkpoint logic of its own. The tree it serves (docs/DESIGN.md §1):
//
//	/             one directory per live process of the daemon's pid namespace
//	  <pid>/      the subtree rooted at <pid>; mtime: its latest snapshot, else the process's start
//	    status    the state of its snapshot, as JSON (status.go): never freezes anything
//	    pids      the PIDS section of a checkpoint of that subtree
//	    tree      the TREE section
//	    image     the whole image
//	  restore/    write an image here to restart it (mode 01777, like /tmp)
//	    <name>    its writer's: the state of the restore under that name, as JSON (restore_file.go)
//	  shell-job/  the same, giving the tree the writer's terminal where it had one (terminal.go)
//
// The three section files of one directory come from one snapshot
// (snapshot.go), so that pids and tree are byte for byte the sections of
// image and stat reports the size a read returns. Errors become errnos
// here, at the edge, and are logged with the pid and what failed; the
// last capture's error is also kept for the directory's status
// (record.go). restore/ keeps the outcomes of ended restores within a
// bound (history.go). Permissions are checked by the nodes, not the kernel
// (owner.go).
package fs

import (
	"log"
	"os"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/checkpoint"
)

// Config sets up a mount.
type Config struct {
	Mode checkpoint.Mode // how checkpoints record their tree
	// ReplaceExternal: descriptors that lead outside a tree are replaced
	// by /dev/null at restore instead of failing the checkpoint.
	ReplaceExternal bool
	AllowOther      bool // let other users in (their requests are checked)
	Debug           bool // log every FUSE request
	// Grace keeps a snapshot after its last use so that one tool's stat,
	// open and read of the three files see the same checkpoint. (With
	// Hold, its tree stays frozen that long too, unless its image was read
	// through: see snapshot.)
	Grace time.Duration
	// CopyLimit bounds the memory a snapshot duplicates (see
	// checkpoint.Options.CopyLimit); 0 or less is checkpoint's default.
	CopyLimit int64
	// Hold keeps a tree frozen while its image may be read, its pages read
	// from it, instead of letting it run on at once over a copy of its
	// memory (checkpoint.Options.Hold).
	Hold   bool
	Logger *log.Logger
}

// maxRead is the largest read request: the kernel's limit (256 pages), and
// what files advertise as their block size so that tools ask for it.
const maxRead = 1 << 20

// Mount mounts the filesystem on dir and returns the serving server.
func Mount(dir string, cfg Config) (*fuse.Server, error) {
	if cfg.Grace == 0 {
		cfg.Grace = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(os.Stderr, "ckptfs: ", log.LstdFlags)
	}
	// Nothing may be cached by the kernel: a process directory comes and
	// goes with its process, and a file's size and times change with each
	// snapshot. nil timeouts would silently mean one second.
	var zero time.Duration
	opts := &gofs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		Logger:          cfg.Logger,
		MountOptions:    mountOptions(&cfg),
	}
	return gofs.Mount(dir, newRoot(&cfg), opts)
}

// mountOptions are the FUSE server's options (the read-ahead's replies
// depend on them: see chunkResult).
func mountOptions(cfg *Config) fuse.MountOptions {
	return fuse.MountOptions{
		AllowOther:   cfg.AllowOther,
		Debug:        cfg.Debug,
		FsName:       "ckptfs",
		Name:         "ckptfs",
		DirectMount:  true, // root needs no fusermount
		MaxReadAhead: maxRead,
		MaxWrite:     maxRead, // also max_read and max_pages: reads of 1 MiB arrive whole
		// Replies come from memory (writev), never from a file
		// descriptor; splicing them would only cost a pipe per read.
		DisableSplice: true,
		Logger:        cfg.Logger,
	}
}
