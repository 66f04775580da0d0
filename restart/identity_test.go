package restart

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/internal/fileid"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// recordOf is what a checkpoint records of the file at path.
func recordOf(t *testing.T, path string, live bool) *expect {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id := fileid.Stat(&st)
	if id.BuildID, err = fileid.BuildID(f); err != nil {
		t.Fatal(err)
	}
	return &expect{dev: st.Dev, ino: st.Ino, id: id, live: live}
}

// copyFile copies from to a new file to, with from's mode and mtime when
// keepTime (cp -p), after edit changes its bytes. The copy is renamed over
// to, so that it is another inode (a file removed first may lend its
// number to the next).
func copyFile(t *testing.T, from, to string, keepTime bool, edit func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		data = edit(bytes.Clone(data))
	}
	tmp := to + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if keepTime {
		fi, err := os.Stat(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// TestGateFileIdentity: the rule of "Which file found by path is the file
// the image saw", case by case, and what the refusals say.
func TestGateFileIdentity(t *testing.T) {
	sleep := "/usr/bin/sleep"
	if _, err := os.Stat(sleep); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	copyFile(t, sleep, bin, true, nil)
	orig := recordOf(t, bin, false)
	if len(orig.id.BuildID) == 0 {
		t.Fatalf("%s has no build-id", sleep)
	}
	otherID := func(b []byte) []byte {
		i := bytes.Index(b, orig.id.BuildID)
		b[i] ^= 0xff
		return b
	}
	later := time.Unix(orig.id.MtimeSec+60, 0)
	for _, c := range []struct {
		name   string
		writes bool
		noID   bool               // the image records no identity (version 2)
		change func(t *testing.T) // what happened to bin since the checkpoint
		want   string             // a regexp the refusal matches; "" to accept
	}{
		{"the very file", false, false, nil, ""},
		{"a copy (cp -p)", false, false, func(t *testing.T) { copyFile(t, sleep, bin, true, nil) }, ""},
		{"a copy, written to", true, false, func(t *testing.T) { copyFile(t, sleep, bin, true, nil) }, ""},
		{"a copy in a version-2 image", false, true, func(t *testing.T) { copyFile(t, sleep, bin, true, nil) },
			`^/\S+/bin is not the checkpointed file \(device 0x[0-9a-f]+ inode \d+, was 0x[0-9a-f]+ inode \d+\); the image records no size and mtime of it to recognize a copy by$`},
		{"a copy without its mtime (cp)", false, false, func(t *testing.T) { copyFile(t, sleep, bin, false, nil) },
			`^/\S+/bin is not the checkpointed file: mtime \S+, was \S+ \(device 0x[0-9a-f]+ inode \d+, was 0x[0-9a-f]+ inode \d+\)$`},
		{"a copy of another build", false, false, func(t *testing.T) { copyFile(t, sleep, bin, true, otherID) },
			`^/\S+/bin is not the checkpointed file: build-id ([0-9a-f]{40}), was (?:[0-9a-f]{40}) \(device .*\)$`},
		{"another program", false, false, func(t *testing.T) {
			copyFile(t, "/usr/bin/true", bin, false, nil)
			os.Chtimes(bin, orig.id.Mtime(), orig.id.Mtime())
		}, `^/\S+/bin is not the checkpointed file: size \d+, was \d+; build-id [0-9a-f]+, was [0-9a-f]+ \(device .*\)$`},
		{"a script in its place", false, false, func(t *testing.T) {
			os.WriteFile(bin+".new", []byte("#!/bin/sh\n"), 0o755)
			os.Rename(bin+".new", bin)
		}, `: size 10, was \d+; mtime \S+, was \S+; no build-id, was [0-9a-f]+ \(device`},
		{"rewritten in place", false, false, func(t *testing.T) { os.Chtimes(bin, later, later) },
			`^/\S+/bin is not the checkpointed file: mtime \S+, was \S+ \(the same inode, changed since the checkpoint\)$`},
		{"written since, by the tree", true, false, func(t *testing.T) {
			f, _ := os.OpenFile(bin, os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte("more"))
			f.Close()
		}, ""},
		{"a changed copy of a file the tree writes", true, false, func(t *testing.T) {
			copyFile(t, sleep, bin, false, func(b []byte) []byte { return append(b, "more"...) })
		}, `size \d+, was \d+; mtime \S+, was \S+ \(device .*; the tree uses this file through a descriptor or a shared mapping, and only that very file or an unchanged copy of it will do\)$`},
		{"a directory in its place", false, false, func(t *testing.T) { os.Remove(bin); os.Mkdir(bin, 0o755) },
			`^/\S+/bin is not the checkpointed file: a directory, was a regular file \(device`},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.RemoveAll(bin)
			copyFile(t, sleep, bin, true, nil)
			want := recordOf(t, bin, c.writes)
			if c.noID {
				want.id = nil
			}
			if c.change != nil {
				c.change(t)
			}
			g, err := newGate(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer g.close()
			_, err = g.open(bin, unix.R_OK, want)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Errorf("accepted, want a refusal matching %s", c.want)
			case c.want != "" && !regexp.MustCompile(c.want).MatchString(err.Error()):
				t.Errorf("refusal %q does not match %s", err, c.want)
			}
		})
	}
}

// TestGateBuildIDAsCaller: the build-id of a copy is read with the
// caller's rights, so a copy the caller may write but not read is not
// taken for the checkpointed file.
func TestGateBuildIDAsCaller(t *testing.T) {
	testenv.NeedRoot(t)
	dir, err := os.MkdirTemp("", "gate-") // searchable by nobody, unlike t.TempDir's parent
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "bin")
	copyFile(t, "/usr/bin/sleep", bin, true, nil)
	want := recordOf(t, bin, true)
	copyFile(t, "/usr/bin/sleep", bin, true, nil) // another inode, the same contents
	os.Chmod(bin, 0o622)                          // others may write it, not read it
	g, err := newGate(&Identity{Uid: 65534, Gid: 65534})
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	_, err = g.open(bin, unix.W_OK, want)
	if err == nil || !regexp.MustCompile(`build-id unreadable \(.*permission denied\), was [0-9a-f]+`).MatchString(err.Error()) {
		t.Errorf("nobody's copy it may not read: %v", err)
	}
	// The same copy, for root: the very same bytes, accepted.
	g2, err := newGate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g2.close()
	if _, err := g2.open(bin, unix.W_OK, want); err != nil {
		t.Errorf("root: %v", err)
	}
}

// TestGateReadsBuildIDOnce: a library mapped by many processes is read
// once per restore.
func TestGateReadsBuildIDOnce(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	copyFile(t, "/usr/bin/sleep", bin, true, nil)
	want := recordOf(t, bin, false)
	copyFile(t, "/usr/bin/sleep", bin, true, nil)
	g, err := newGate(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	for range 3 {
		if _, err := g.open(bin, unix.R_OK, want); err != nil {
			t.Fatal(err)
		}
	}
	h := g.held[gateKey{bin, unix.R_OK}]
	first := h.readAt
	if _, err := g.open(bin, unix.R_OK, want); err != nil || h.readAt != first {
		t.Errorf("the build-id was read again: %v", err)
	}
}
