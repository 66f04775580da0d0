package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/restart"
)

// scriptedRestore stands for restart.Restore in restore/'s tests: it reads
// the image to its end (the writer's close) and restores it if it says
// "good", else fails naming what it read.
func scriptedRestore(ctx context.Context, r io.Reader, opt restart.Options) (*restart.Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("restart: read the image: %w", err)
	}
	if string(data) != "good" {
		return nil, fmt.Errorf("restart: decode: %q is no image: %w", data, syscall.EINVAL)
	}
	return &restart.Result{Root: 7, Seed: 6}, nil
}

// daemonLog keeps what the daemon logs, and shows it in the test's log.
type daemonLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *daemonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.t.Logf("ckptfs: %s", p)
	return len(p), nil
}

func (l *daemonLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

// restoreKernel is a root with restore/ over scriptedRestore, driven
// through go-fuse's bridge, and the daemon's log.
func restoreKernel(t *testing.T) (*kernel, *daemonLog) {
	callerDying(t, false)
	logs := &daemonLog{t: t}
	cfg := testConfig(t, time.Hour)
	cfg.Logger = log.New(logs, "", 0)
	r := newRoot(cfg)
	r.restore = scriptedRestore
	return newKernel(t, r), logs
}

// outcomeOf reads restore/<name> as u.
func (k *kernel) outcomeOf(u user, dir uint64, name string) (Outcome, syscall.Errno) {
	k.t.Helper()
	node, _, e := k.lookup(u, dir, name)
	if e != 0 {
		return Outcome{}, e
	}
	data, e := k.readAll(u, node)
	if e != 0 {
		return Outcome{}, e
	}
	var out Outcome
	if err := json.Unmarshal(data, &out); err != nil {
		k.t.Fatalf("restore/%s: %q: %v", name, data, err)
	}
	return out, 0
}

// Writing an image over a name whose restore ended starts a new restore
// there, whether the writer opens the existing file (cp) or creates it;
// O_EXCL still refuses an existing name.
func TestRestoreOverwrite(t *testing.T) {
	k, _ := restoreKernel(t)
	privileged(t)
	alice := newUser(t, 1000)
	dir := k.restoreDir(alice)

	node, fh, e := k.writeImage(alice, dir, "x", []byte("good"))
	if e != 0 {
		t.Fatalf("first image: %v", e)
	}
	if e := k.close(alice, node, fh); e != 0 {
		t.Fatalf("close of the first image: %v", e)
	}
	first, e := k.outcomeOf(alice, dir, "x")
	if e != 0 || first.State != restoreRunning || first.Uid != 1000 || first.Bytes != 4 || first.Ended.IsZero() {
		t.Fatalf("after the first restore: %+v, %v", first, e)
	}

	node2, fh, e := k.writeImage(alice, dir, "x", []byte("good"))
	if e != 0 {
		t.Fatalf("the same image again (open, O_TRUNC): %v", e)
	}
	if node2 != node {
		t.Errorf("the name's node changed from %d to %d", node, node2)
	}
	if e := k.close(alice, node, fh); e != 0 {
		t.Fatalf("close of the second image: %v", e)
	}
	second, _ := k.outcomeOf(alice, dir, "x")
	if second.State != restoreRunning || !second.Started.After(first.Ended) {
		t.Errorf("after the second restore: %+v, want a new restore started after %v", second, first.Ended)
	}

	node3, fh, e := k.create(alice, dir, "x", syscall.O_WRONLY)
	if e != 0 || node3 != node {
		t.Fatalf("create over the ended name: node %d, %v", node3, e)
	}
	k.write(alice, node, fh, 0, []byte("bad"))
	if e := k.close(alice, node, fh); e != syscall.EINVAL {
		t.Errorf("close of a bad image: %v, want EINVAL", e)
	}
	third, _ := k.outcomeOf(alice, dir, "x")
	if third.State != restoreFailed || !strings.Contains(third.Error, "no image") {
		t.Errorf("after a bad image: %+v", third)
	}
	if _, _, e := k.create(alice, dir, "x", syscall.O_WRONLY|syscall.O_EXCL); e != syscall.EEXIST {
		t.Errorf("O_EXCL over an existing name: %v, want EEXIST", e)
	}
}

// While a restore runs under a name, a new image there is refused with
// EBUSY and the daemon says why; its status says "restoring", and it
// cannot be removed. Once it ended, all three work.
func TestRestoreBusy(t *testing.T) {
	k, logs := restoreKernel(t)
	privileged(t)
	alice := newUser(t, 1000)
	dir := k.restoreDir(alice)

	node, fh, e := k.writeImage(alice, dir, "y", []byte("go"))
	if e != 0 {
		t.Fatal(e)
	}
	out, e := k.outcomeOf(alice, dir, "y")
	if e != 0 || out.State != restoreRestoring || out.Bytes != 2 || !out.Ended.IsZero() {
		t.Errorf("while restoring: %+v, %v", out, e)
	}
	if attr, _ := k.getattr(alice, node); attr.Size != 2 {
		t.Errorf("while restoring, stat says %d bytes, want the 2 written", attr.Size)
	}
	if _, _, e := k.writeImage(alice, dir, "y", []byte("good")); e != syscall.EBUSY {
		t.Errorf("a new image (open) while restoring: %v, want EBUSY", e)
	}
	if _, _, e := k.create(alice, dir, "y", syscall.O_WRONLY); e != syscall.EBUSY {
		t.Errorf("a new image (create) while restoring: %v, want EBUSY", e)
	}
	if !logs.has("restore/y: a new image from uid 1000 refused: the restore under this name is still running") {
		t.Error("the daemon did not log why the new image was refused")
	}
	if e := k.unlink(alice, dir, "y"); e != syscall.EBUSY {
		t.Errorf("rm while restoring: %v, want EBUSY", e)
	}

	if e := k.write(alice, node, fh, 2, []byte("od")); e != 0 {
		t.Fatal(e)
	}
	if e := k.close(alice, node, fh); e != 0 {
		t.Fatalf("close: %v", e)
	}
	if out, _ := k.outcomeOf(alice, dir, "y"); out.State != restoreRunning || out.Root != 7 {
		t.Errorf("after the restore: %+v", out)
	}
	node, fh, e = k.writeImage(alice, dir, "y", []byte("good"))
	if e != 0 {
		t.Fatalf("a new image once it ended: %v", e)
	}
	k.close(alice, node, fh)
	if e := k.unlink(alice, dir, "y"); e != 0 {
		t.Errorf("rm once it ended: %v", e)
	}
}

// A name belongs to whoever wrote its image: stat shows that owner and
// mode 0600; another unprivileged user may not read it (EACCES), write
// over it (EACCES) or remove it (EPERM); root may do all three.
func TestRestoreOwnership(t *testing.T) {
	k, logs := restoreKernel(t)
	alice, bob, root := newUser(t, 1000), newUser(t, 1001), newUser(t, 0)
	privileged(t, root)
	dir := k.restoreDir(alice)

	node, fh, e := k.writeImage(alice, dir, "x", []byte("good"))
	if e != 0 {
		t.Fatal(e)
	}
	k.close(alice, node, fh)
	attr, _ := k.getattr(bob, node)
	if attr.Uid != 1000 || attr.Gid != 1000 || attr.Mode&0o7777 != 0o600 {
		t.Errorf("restore/x: uid %d gid %d mode %o, want alice's, 0600", attr.Uid, attr.Gid, attr.Mode&0o7777)
	}
	if _, e := k.readAll(bob, node); e != syscall.EACCES {
		t.Errorf("bob reads alice's status: %v, want EACCES", e)
	}
	if !logs.has("restore/x: read by uid 1001 refused") {
		t.Error("the daemon did not log bob's refused read")
	}
	if _, e := k.readAll(alice, node); e != 0 {
		t.Errorf("alice reads her status: %v", e)
	}
	if _, e := k.readAll(root, node); e != 0 {
		t.Errorf("root reads alice's status: %v", e)
	}
	if _, _, e := k.writeImage(bob, dir, "x", []byte("good")); e != syscall.EACCES {
		t.Errorf("bob writes over alice's name: %v, want EACCES", e)
	}
	if _, _, e := k.create(bob, dir, "x", syscall.O_WRONLY); e != syscall.EACCES {
		t.Errorf("bob creates over alice's name: %v, want EACCES", e)
	}
	if e := k.unlink(bob, dir, "x"); e != syscall.EPERM {
		t.Errorf("bob removes alice's name: %v, want EPERM", e)
	}
	if out, _ := k.outcomeOf(alice, dir, "x"); out.Uid != 1000 {
		t.Errorf("after bob's attempts: %+v", out)
	}

	node, fh, e = k.writeImage(root, dir, "x", []byte("good"))
	if e != 0 {
		t.Fatalf("root writes over alice's name: %v", e)
	}
	k.close(root, node, fh)
	if attr, _ := k.getattr(alice, node); attr.Uid != 0 {
		t.Errorf("after root's restore the name is uid %d's, want root's", attr.Uid)
	}
	if _, e := k.readAll(alice, node); e != syscall.EACCES {
		t.Errorf("alice reads root's status: %v, want EACCES", e)
	}

	node, fh, e = k.writeImage(alice, dir, "mine", []byte("good"))
	if e != 0 {
		t.Fatal(e)
	}
	k.close(alice, node, fh)
	if e := k.unlink(alice, dir, "mine"); e != 0 {
		t.Errorf("alice removes her name: %v", e)
	}
	if _, _, e := k.lookup(alice, dir, "mine"); e != syscall.ENOENT {
		t.Errorf("after rm: %v, want ENOENT", e)
	}
	if e := k.unlink(root, dir, "x"); e != 0 {
		t.Errorf("root removes a name: %v", e)
	}
	if e := k.unlink(root, dir, "x"); e != syscall.ENOENT {
		t.Errorf("removing it again: %v, want ENOENT", e)
	}
}

// restore/ keeps at most keepEnded ended restores, forgetting the oldest
// first, and none older than keepEndedFor; a restore still running is
// neither forgotten nor counted. restore/ itself cannot be removed.
func TestRestoreForgetsEnded(t *testing.T) {
	k, logs := restoreKernel(t)
	privileged(t)
	alice := newUser(t, 1000)
	dir := k.restoreDir(alice)

	busyNode, busyFh, e := k.writeImage(alice, dir, "busy", []byte("go"))
	if e != 0 {
		t.Fatal(e)
	}
	const n = keepEnded + 4
	for i := range n {
		node, fh, e := k.writeImage(alice, dir, fmt.Sprintf("n%03d", i), []byte("good"))
		if e != 0 {
			t.Fatalf("image %d: %v", i, e)
		}
		if e := k.close(alice, node, fh); e != 0 {
			t.Fatalf("image %d: %v", i, e)
		}
	}
	names := k.listRestore()
	if len(names) != keepEnded+1 || names[0] != "busy" || names[1] != "n004" || names[len(names)-1] != fmt.Sprintf("n%03d", n-1) {
		t.Errorf("restore/ lists %d names (%s ... %s), want busy and the %d latest ended", len(names), names[0], names[len(names)-1], keepEnded)
	}
	if !logs.has("restore/n000: forgotten") {
		t.Error("the daemon did not log what it forgot")
	}
	for i := range 4 {
		if _, _, e := k.lookup(alice, dir, fmt.Sprintf("n%03d", i)); e != syscall.ENOENT {
			t.Errorf("n%03d: %v, want ENOENT (forgotten)", i, e)
		}
	}

	// One ended longer ago than keepEndedFor, and the running one
	// started as long ago: only the first goes.
	rd := k.r.GetChild("restore").Operations().(*restoreDir)
	rd.mu.Lock()
	old := rd.files["n100"].current()
	busy := rd.files["busy"].current()
	rd.mu.Unlock()
	long := time.Now().Add(-keepEndedFor - time.Minute)
	for _, r := range []*restoreRun{old, busy} {
		r.mu.Lock()
		r.mtime, r.started = long, long
		r.mu.Unlock()
	}
	if _, _, e := k.lookup(alice, dir, "n100"); e != syscall.ENOENT {
		t.Errorf("a restore ended %v ago: %v, want ENOENT (forgotten)", keepEndedFor, e)
	}
	if out, e := k.outcomeOf(alice, dir, "busy"); e != 0 || out.State != restoreRestoring {
		t.Errorf("the running restore: %+v, %v", out, e)
	}
	k.write(alice, busyNode, busyFh, 2, []byte("od"))
	k.close(alice, busyNode, busyFh)

	if e := errnoOf(k.raw.Rmdir(nil, &fuse.InHeader{NodeId: 1, Caller: alice.header(1).Caller}, "restore")); e != syscall.EPERM {
		t.Errorf("rmdir restore: %v, want EPERM", e)
	}
	if _, _, e := k.lookup(alice, 1, "restore"); e != 0 {
		t.Errorf("restore/ after rmdir: %v", e)
	}
	if attr, _ := k.getattr(alice, dir); attr.Mode&0o7777 != 0o1777 {
		t.Errorf("restore/ is mode %o, want 01777", attr.Mode&0o7777)
	}
}

// listRestore lists restore/, in its order.
func (k *kernel) listRestore() []string {
	k.t.Helper()
	ds, e := k.r.GetChild("restore").Operations().(*restoreDir).Readdir(context.Background())
	if e != 0 {
		k.t.Fatal(e)
	}
	var names []string
	for ds.HasNext() {
		de, _ := ds.Next()
		names = append(names, de.Name)
	}
	return names
}
