package image

import (
	"errors"
	"reflect"
	"testing"
)

func TestSignalRecordsRoundTrip(t *testing.T) {
	acts := []SigAction{
		{Signo: 2, Handler: 0x401000, Flags: 0x14000000, Restorer: 0x7f0000001000, Mask: 1 << 9},
		{Signo: 13, Handler: 1}, // SIG_IGN
	}
	h := recHeader{typ: RecSigHand}
	got, err := decodeSigHand(h, appendSigHand(nil, acts))
	if err != nil || !reflect.DeepEqual(got, acts) {
		t.Fatalf("SIGHAND round trip: %+v, %v", got, err)
	}
	st := &SigState{Blocked: 1<<11 | 1<<1, AltSP: 0x7ffd0000, AltFlags: 0, AltSize: 65536}
	gotSt, err := decodeSigState(recHeader{typ: RecSigState}, appendSigState(nil, st))
	if err != nil || *gotSt != *st {
		t.Fatalf("SIGSTATE round trip: %+v, %v", gotSt, err)
	}
}

func TestSignalRecordsRefuseNonsense(t *testing.T) {
	for _, c := range []struct {
		name string
		acts []SigAction
		want error
	}{
		{"SIGKILL caught", []SigAction{{Signo: 9, Handler: 0x1000}}, ErrInvalid},
		{"signal 0", []SigAction{{Signo: 0}}, ErrInvalid},
		{"signal 65", []SigAction{{Signo: 65}}, ErrInvalid},
		{"twice", []SigAction{{Signo: 10}, {Signo: 10}}, ErrDuplicate},
	} {
		_, err := decodeSigHand(recHeader{typ: RecSigHand}, appendSigHand(nil, c.acts))
		var fe *FormatError
		if !errors.Is(err, c.want) || !errors.As(err, &fe) || fe.Section != "SIGHAND" {
			t.Errorf("%s: %v, want %v in SIGHAND", c.name, err, c.want)
		}
	}
	// A count larger than the record holds.
	b := appendSigHand(nil, []SigAction{{Signo: 10}})
	le.PutUint32(b, 64)
	if _, err := decodeSigHand(recHeader{typ: RecSigHand}, b); !errors.Is(err, ErrLength) {
		t.Errorf("count beyond the record: %v, want ErrLength", err)
	}
}

func TestFilesRecordRoundTripAndRefusals(t *testing.T) {
	fds := []FD{
		{Num: 0, Kind: FileDevice, Flags: 0, Path: "/dev/null", Dev: 5, Ino: 4},
		{Num: 7, Kind: FileRegular, Flags: 0o2000001, Pos: 4096, Dev: 0xfe00, Ino: 1234, Path: "/var/log/x.log"},
		{Num: 1, Kind: FileReplaced, Flags: 2, Path: "/dev/pts/3", Extra: []uint64{ExternalTerminal, ExternalForeground}},
		{Num: 2, Kind: FileReplaced, Flags: 1, Path: "pipe:[77]", Extra: []uint64{ExternalPipe}},
	}
	got, err := decodeFiles(recHeader{typ: RecFiles}, appendFiles(nil, fds, Version), Version)
	if err != nil || !reflect.DeepEqual(got, fds) {
		t.Fatalf("FILES round trip: %+v, %v", got, err)
	}
	for _, c := range []struct {
		name string
		fds  []FD
		want error
	}{
		{"relative path", []FD{{Num: 1, Kind: FileRegular, Path: "x"}}, ErrInvalid},
		{"unknown kind", []FD{{Num: 1, Kind: 99, Path: "/x"}}, ErrInvalid},
		{"fd twice", []FD{{Num: 3, Kind: FileDevice, Path: "/dev/null"}, {Num: 3, Kind: FileDevice, Path: "/dev/zero"}}, ErrDuplicate},
		{"external of no kind", []FD{{Num: 1, Kind: FileReplaced, Path: "pipe:[1]", Extra: []uint64{9}}}, ErrInvalid},
		{"foreground pipe", []FD{{Num: 1, Kind: FileReplaced, Path: "pipe:[1]", Extra: []uint64{ExternalPipe, 1}}}, ErrInvalid},
		{"external with three words", []FD{{Num: 1, Kind: FileReplaced, Path: "/dev/pts/1", Extra: []uint64{ExternalTerminal, 1, 1}}}, ErrInvalid},
	} {
		if _, err := decodeFiles(recHeader{typ: RecFiles}, appendFiles(nil, c.fds, Version), Version); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestProcessRecord(t *testing.T) {
	p := &Process{Cwd: "/srv/app", Root: "/", Umask: 0o027, Personality: 0x40000, Nice: 5, OOMScoreAdj: -500,
		NoNewPrivs: true, Subreaper: true}
	got, err := decodeProcess(recHeader{typ: RecProcess}, appendProcess(nil, p))
	if err != nil || *got != *p {
		t.Fatalf("PROCESS round trip: %+v, %v", got, err)
	}
	bad := *p
	bad.Nice = 40
	if _, err := decodeProcess(recHeader{typ: RecProcess}, appendProcess(nil, &bad)); !errors.Is(err, ErrInvalid) {
		t.Errorf("nice 40: %v, want ErrInvalid", err)
	}
	bad = *p
	bad.Cwd = "relative"
	if _, err := decodeProcess(recHeader{typ: RecProcess}, appendProcess(nil, &bad)); !errors.Is(err, ErrInvalid) {
		t.Errorf("relative cwd: %v, want ErrInvalid", err)
	}
}

func TestCredsRecord(t *testing.T) {
	c := &Creds{Uid: [4]uint32{1000, 1000, 1000, 1000}, Gid: [4]uint32{100, 100, 100, 100}, Groups: []uint32{4, 24},
		CapPrm: 1 << 10, CapEff: 1 << 10, CapInh: 1 << 10, CapAmb: 1 << 10, CapBnd: 1<<41 - 1}
	got, err := decodeCreds(recHeader{typ: RecCreds}, appendCreds(nil, c))
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("CREDS round trip: %+v, %v", got, err)
	}
	bad := *c
	bad.CapEff = 1 << 21 // effective beyond permitted
	if _, err := decodeCreds(recHeader{typ: RecCreds}, appendCreds(nil, &bad)); !errors.Is(err, ErrInvalid) {
		t.Errorf("effective beyond permitted: %v, want ErrInvalid", err)
	}
}

func TestThreadRecord(t *testing.T) {
	th := &Thread{ClearChildTid: 0x7f00000010d0, RobustList: 0x7f00000010e0, RobustLen: 24}
	got, err := decodeThread(recHeader{typ: RecThread}, appendThread(nil, th))
	if err != nil || *got != *th {
		t.Fatalf("THREAD round trip: %+v, %v", got, err)
	}
	th.RobustLen = 4096
	if _, err := decodeThread(recHeader{typ: RecThread}, appendThread(nil, th)); !errors.Is(err, ErrInvalid) {
		t.Errorf("robust list length 4096: %v, want ErrInvalid", err)
	}
}

func TestITimersRecord(t *testing.T) {
	it := &[3]ITimer{{Value: 7000, Interval: 10000}, {}, {Value: 1, Interval: 0}}
	got, err := decodeITimers(recHeader{typ: RecITimers}, appendITimers(nil, it))
	if err != nil || *got != *it {
		t.Fatalf("ITIMERS round trip: %+v, %v", got, err)
	}
}

func TestSigPendingRecord(t *testing.T) {
	var p PendingSignal
	p.Shared = true
	le.PutUint32(p.Info[:], 12)
	got, err := decodeSigPending(recHeader{typ: RecSigPending}, appendSigPending(nil, []PendingSignal{p}))
	if err != nil || len(got) != 1 || got[0] != p {
		t.Fatalf("SIGPENDING round trip: %+v, %v", got, err)
	}
	le.PutUint32(p.Info[:], 99)
	if _, err := decodeSigPending(recHeader{typ: RecSigPending}, appendSigPending(nil, []PendingSignal{p})); !errors.Is(err, ErrInvalid) {
		t.Errorf("signal 99: %v, want ErrInvalid", err)
	}
}

// ExternalKind reads what a replaced descriptor led to from Extra, or from
// its path in an image that did not record it.
func TestExternalKind(t *testing.T) {
	for _, c := range []struct {
		fd   FD
		want uint64
		fg   bool
	}{
		{FD{Path: "/dev/pts/0", Extra: []uint64{ExternalTerminal, ExternalForeground}}, ExternalTerminal, true},
		{FD{Path: "/dev/pts/0"}, ExternalTerminal, false},
		{FD{Path: "/dev/tty1"}, ExternalTerminal, false},
		{FD{Path: "pipe:[5]"}, ExternalPipe, false},
		{FD{Path: "socket:[5]"}, ExternalSocket, false},
		{FD{Path: "/run/fifo"}, ExternalFifo, false},
	} {
		if k, fg := c.fd.ExternalKind(), c.fd.Foreground(); k != c.want || fg != c.fg {
			t.Errorf("%+v: kind %d foreground %v, want %d %v", c.fd, k, fg, c.want, c.fg)
		}
	}
}
