package image

import (
	"errors"
	"reflect"
	"testing"
)

func TestSocketRecord(t *testing.T) {
	for _, s := range []*Socket{
		{Ino: 10, Peer: 11, Type: SockStream, SndBuf: 212992, RcvBuf: 212992, PeekOff: -1, Queue: [][]byte{[]byte("hello")}},
		{Ino: 11, Peer: 10, Type: SockDgram, Shutdown: 2, PeekOff: 3, Queue: [][]byte{[]byte("a"), {}, []byte("ccc")}},
		{Ino: 12, Peer: 13, Type: SockSeqpacket, PeekOff: -1},
	} {
		got, err := decodeSocket(recHeader{typ: RecSocket}, appendSocket(nil, s))
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("SOCKET round trip of %+v: %+v, %v", s, got, err)
		}
	}
	for _, c := range []struct {
		name string
		s    Socket
	}{
		{"unknown type", Socket{Ino: 1, Peer: 2, Type: 3, PeekOff: -1}},
		{"own peer", Socket{Ino: 1, Peer: 1, Type: SockStream, PeekOff: -1}},
		{"shutdown mode", Socket{Ino: 1, Peer: 2, Type: SockStream, Shutdown: 4, PeekOff: -1}},
		{"peek offset", Socket{Ino: 1, Peer: 2, Type: SockStream, PeekOff: -2}},
		{"stream with messages", Socket{Ino: 1, Peer: 2, Type: SockStream, PeekOff: -1, Queue: [][]byte{{1}, {2}}}},
		{"huge buffer", Socket{Ino: 1, Peer: 2, Type: SockStream, SndBuf: 1 << 31, PeekOff: -1}},
	} {
		if _, err := decodeSocket(recHeader{typ: RecSocket}, appendSocket(nil, &c.s)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
	}
	// A queue that claims more than its record holds, or more than the cap.
	b := appendSocket(nil, &Socket{Ino: 1, Peer: 2, Type: SockDgram, PeekOff: -1, Queue: [][]byte{[]byte("xy")}})
	if _, err := decodeSocket(recHeader{typ: RecSocket}, b[:len(b)-1]); err == nil {
		t.Error("truncated message decoded")
	}
	le.PutUint32(b[len(b)-6:], MaxSocketQueue+1)
	if _, err := decodeSocket(recHeader{typ: RecSocket}, b); err == nil {
		t.Error("a message over the cap decoded")
	}
}

func TestFileDataRecord(t *testing.T) {
	for _, f := range []*FileData{
		{Dev: 1, Ino: 2, Mode: 0o600, Name: "/tmp/gone", Size: 10, Data: []byte("0123")},
		{Dev: 1, Ino: 3, Mode: 0o777, Memfd: true, Seals: 8, Name: "buf", Size: 0, Data: []byte{}},
	} {
		got, err := decodeFileData(recHeader{typ: RecFileData}, appendFileData(nil, f))
		if err != nil || got.Name != f.Name || got.Size != f.Size || string(got.Data) != string(f.Data) || got.Memfd != f.Memfd || got.Seals != f.Seals {
			t.Errorf("FILEDATA round trip of %+v: %+v, %v", f, got, err)
		}
	}
	for _, c := range []struct {
		name string
		f    FileData
		want error
	}{
		{"data beyond size", FileData{Name: "/x", Size: 1, Data: []byte("ab")}, ErrInvalid},
		{"mode", FileData{Name: "/x", Mode: 0o170000}, ErrInvalid},
		{"relative path", FileData{Name: "x"}, ErrInvalid},
		{"seals without memfd", FileData{Name: "/x", Seals: 1}, ErrInvalid},
		{"huge", FileData{Name: "/x", Size: MaxFileData + 1}, ErrTooLarge},
	} {
		if _, err := decodeFileData(recHeader{typ: RecFileData}, appendFileData(nil, &c.f)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
