package procfs

import (
	"slices"
	"testing"
)

func TestParseStatus(t *testing.T) {
	data := []byte(`Name:	my\nproc
State:	S (sleeping)
Tgid:	812
PPid:	800
TracerPid:	0
Uid:	1000	1000	1000	1000
Gid:	100	100	100	100
NStgid:	812	1
NSpid:	812	1
NSpgid:	812	1
NSsid:	700	0
CapPrm:	0000000000000000
CapEff:	000001ffffffffff
`)
	s, err := parseStatus(data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "my\nproc" || s.State != 'S' || s.Tgid != 812 || s.PPid != 800 {
		t.Errorf("got %+v", s)
	}
	if !slices.Equal(s.NSpid, []int{812, 1}) || !slices.Equal(s.NSsid, []int{700, 0}) {
		t.Errorf("NSpid %v NSsid %v", s.NSpid, s.NSsid)
	}
	if s.Uid != [4]int{1000, 1000, 1000, 1000} || s.CapEff != 0x1ffffffffff {
		t.Errorf("uid %v capeff %#x", s.Uid, s.CapEff)
	}
	if _, err := parseStatus([]byte("Name:\tx\nNSpid:\t1 2\nNStgid:\t1\n")); err == nil {
		t.Error("inconsistent NS lists accepted")
	}
}

func TestParseStat(t *testing.T) {
	// comm may hold spaces and parentheses.
	line := "42 (a (b) c) Z 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0 " +
		"18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 256\n"
	s, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s.Comm != "a (b) c" || s.State != 'Z' || s.StartTime != 12345 || s.ExitCode != 256 {
		t.Errorf("got %+v", s)
	}
}

func TestParseMapsLine(t *testing.T) {
	m, err := parseMapsLine("7f11f3832000-7f11f3858000 r--p 00001000 fe:01 326269                     /usr/lib/with space.so")
	if err != nil {
		t.Fatal(err)
	}
	want := Mapping{Start: 0x7f11f3832000, End: 0x7f11f3858000, Perms: "r--p", Offset: 0x1000,
		Major: 0xfe, Minor: 1, Inode: 326269, Path: "/usr/lib/with space.so"}
	if m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
	m, err = parseMapsLine("7ffd782f4000-7ffd78315000 rw-s 00000000 00:00 0 ")
	if err != nil || m.Path != "" || !m.Shared() {
		t.Errorf("anonymous shared: %+v %v", m, err)
	}
	if _, err := parseMapsLine("garbage"); err == nil {
		t.Error("garbage accepted")
	}
}
