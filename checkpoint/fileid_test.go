package checkpoint

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/internal/fileid"
	"github.com/ckptfs/ckptfs/internal/testenv"
)

// identityOf is what the checkpoint should record of the file at path,
// as inspect reports it.
func identityOf(t *testing.T, path string) *image.FileIDDetail {
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
	return &image.FileIDDetail{Size: id.Size, Mtime: id.Mtime().UTC().Format(time.RFC3339Nano), BuildID: hex.EncodeToString(id.BuildID)}
}

// TestCaptureFileIdentity: every file mapping and every regular file open
// by path carries its size, mtime and build-id, as the file has them;
// a directory and the anonymous mappings none.
func TestCaptureFileIdentity(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	pid := startScript(t, "exec 3</usr/bin/sleep 4>"+log+" 5<"+dir+"; sleep 100 & sleep 100 & wait")
	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, pid, Options{}); err != nil {
		t.Fatal(err)
	}
	rep, err := image.ReadReport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Image.Header.Version != image.Version {
		t.Fatalf("version %d", rep.Image.Header.Version)
	}
	want := map[string]*image.FileIDDetail{}
	var mapped int
	for i, d := range rep.Details {
		if d.Memory == nil {
			continue
		}
		for _, v := range d.Memory.Mappings {
			switch {
			case v.Anon || v.Special != "":
				if v.Identity != nil {
					t.Errorf("task %d: anonymous mapping %s has an identity", i, v.Start)
				}
				continue
			case want[v.Path] == nil:
				want[v.Path] = identityOf(t, v.Path)
			}
			mapped++
			if v.Identity == nil || *v.Identity != *want[v.Path] {
				t.Errorf("task %d: mapping %s of %s: identity %+v, want %+v", i, v.Start, v.Path, v.Identity, want[v.Path])
			}
		}
		fds := map[uint32]image.FDDetail{}
		for _, f := range d.FDs {
			fds[f.FD] = f
		}
		if got := fds[3].Identity; got == nil || *got != *identityOf(t, "/usr/bin/sleep") {
			t.Errorf("task %d: fd 3 (/usr/bin/sleep) identity %+v", i, got)
		}
		if got := fds[4].Identity; got == nil || *got != *identityOf(t, log) || got.BuildID != "" {
			t.Errorf("task %d: fd 4 (an empty log) identity %+v", i, got)
		}
		if got := fds[5].Identity; fds[5].Path != dir || got != nil {
			t.Errorf("task %d: fd 5 (a directory) is %s with identity %+v", i, fds[5].Path, got)
		}
	}
	if mapped == 0 || want["/usr/bin/sleep"] == nil || want["/usr/bin/sleep"].BuildID == "" {
		t.Errorf("%d file mappings; sleep's identity %+v", mapped, want["/usr/bin/sleep"])
	}
}

// TestFileIDsReadOnce: a file is read once per checkpoint, however many
// mappings and descriptors lead to it, and once more only if it changed.
func TestFileIDsReadOnce(t *testing.T) {
	c := newFileIDs()
	var st unix.Stat_t
	if err := unix.Stat("/usr/bin/sleep", &st); err != nil {
		t.Skip(err)
	}
	a := c.of("/usr/bin/sleep", st.Dev, st.Ino, fileid.Stat(&st))
	b := c.of("/nonexistent", st.Dev, st.Ino, fileid.Stat(&st)) // the cache answers: no read
	if a == nil || a != b || len(a.BuildID) == 0 {
		t.Fatalf("identities %+v and %+v, want one with a build-id", a, b)
	}
	changed := fileid.Stat(&st)
	changed.MtimeNsec++
	if got := c.of("/nonexistent", st.Dev, st.Ino, changed); got != nil {
		t.Errorf("a file that changed and cannot be read: %+v, want no identity", got)
	}
}
