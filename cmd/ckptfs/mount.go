package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/checkpoint"
	"github.com/ckptfs/ckptfs/fs"
)

const defaultMountpoint = "/mnt/ckpt"

func runMount(args []string) error {
	flags := newFlags("mount")
	allowOther := flags.Bool("allow-other", false, "let other users use the mount (each request is checked with the caller's credentials)")
	debug := flags.Bool("debug", false, "log every FUSE request")
	modeName := flags.String("mode", "auto", "how trees are recorded: auto, container or subtree")
	external := flags.String("external", "replace", externalHelp)
	grace := flags.Duration("grace", time.Second, "how long a snapshot is kept after its last use, so that one tool's stat, open and read of pids, tree and image see the same checkpoint")
	cowLimit := flags.String("cow-limit", "auto", "how much memory a snapshot may duplicate (pages read while its tree is frozen, pages the tree writes while its image is unread), e.g. 512M or 2G; "+
		"auto: a quarter of the machine's memory; 0: no copies, a tree stays frozen while its image is read")
	if err := parse(flags, args); err != nil {
		return err
	}
	mode, err := checkpoint.ParseMode(*modeName)
	if err != nil {
		return err
	}
	dir := defaultMountpoint
	switch flags.NArg() {
	case 0:
	case 1:
		dir = flags.Arg(0)
	default:
		return fmt.Errorf("want at most one MOUNTPOINT, have %d", flags.NArg())
	}
	if err := prepareMountpoint(dir); err != nil {
		return err
	}
	replace, err := parseExternal(*external)
	if err != nil {
		return err
	}
	if *grace <= 0 {
		return fmt.Errorf("--grace %v: want a positive duration", *grace)
	}
	limit, err := parseSize(*cowLimit)
	if err != nil {
		return fmt.Errorf("--cow-limit: %w", err)
	}
	// Copies a daemon that died left behind: their processes reap them.
	if n, err := checkpoint.ReapLostCopies(); n > 0 || err != nil {
		fmt.Fprintf(os.Stderr, "ckptfs: reaped %d copies of processes' memory a previous daemon left (%v)\n", n, err)
	}
	server, err := fs.Mount(dir, fs.Config{Mode: mode, ReplaceExternal: replace, AllowOther: *allowOther, Debug: *debug, Grace: *grace,
		CopyLimit: limit, Hold: limit == 0})
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	fmt.Fprintf(os.Stderr, "ckptfs: serving %s (pid %d); stop with Ctrl-C or SIGTERM\n", dir, os.Getpid())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "ckptfs: %v: unmounting %s\n", sig, dir)
		if err := server.Unmount(); err != nil {
			// Busy (a shell sits in it): detach it so nothing is stuck.
			fmt.Fprintf(os.Stderr, "ckptfs: unmount %s: %v; detaching it lazily\n", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	}()
	server.Wait()
	// Snapshots still held end with the daemon: copies of their trees'
	// memory are ended and reaped by their processes now, rather than left
	// as zombies when the daemon's exit lets them go.
	checkpoint.EndCopies()
	return nil
}

// prepareMountpoint creates dir if missing, and lazily unmounts what a
// crashed daemon left there: a FUSE mount with no server answers every
// request with ENOTCONN.
func prepareMountpoint(dir string) error {
	_, err := os.Stat(dir)
	if errors.Is(err, unix.ENOTCONN) {
		fmt.Fprintf(os.Stderr, "ckptfs: %s is a stale mount; detaching it\n", dir)
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach stale mount %s: %w", dir, err)
		}
		_, err = os.Stat(dir)
	}
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	return err
}

// externalHelp describes --external.
const externalHelp = "descriptors leading outside a tree (terminals, pipes and sockets to other processes): " +
	"replace (recorded, and replaced at restore by /dev/null, or for a shell job by the restorer's terminal) or refuse"

// parseExternal reads --external.
func parseExternal(s string) (replace bool, err error) {
	switch s {
	case "refuse":
		return false, nil
	case "replace":
		return true, nil
	}
	return false, fmt.Errorf("unknown --external %q (want refuse or replace)", s)
}

// parseSize reads a byte count with an optional K, M, G or T suffix (powers
// of 1024); "auto" is -1, which lets checkpoint choose.
func parseSize(s string) (int64, error) {
	if s == "auto" {
		return -1, nil
	}
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want a size such as 0, 512M or 2G, or auto", s)
	}
	return v * mult, nil
}
