package image

import (
	"bytes"
	"reflect"
	"testing"
)

// TestTreeFlagsRoundTrip: every combination of the known flags on a child
// process survives the TREE section, alone and in a whole image.
func TestTreeFlagsRoundTrip(t *testing.T) {
	for f := TaskFlags(0); f <= TaskFlagsKnown; f++ {
		img := simpleImage()
		img.Tree.Tasks[1].Flags = f
		got, err := ReadImage(bytes.NewReader(encode(t, img)))
		if err != nil {
			t.Fatalf("flags %s: %v", f, err)
		}
		if !reflect.DeepEqual(got, img) {
			t.Fatalf("flags %s: decoded %+v", f, got.Tree.Tasks)
		}
		tree := sectionBytes(t, img)[SecTree]
		alone, s, err := ReadAny(bytes.NewReader(tree))
		if err != nil || s != SecTree || alone.Tree.Tasks[1].Flags != f {
			t.Fatalf("flags %s in a lone TREE: %v %v %+v", f, err, s, alone)
		}
	}
}

func TestTaskFlagsString(t *testing.T) {
	for f, want := range map[TaskFlags]string{
		0:                              "-",
		TaskSharesFiles:                "files",
		TaskSharesFS:                   "fs",
		TaskSharesFiles | TaskSharesFS: "files+fs",
		TaskSharesFS | 0x100:           "fs+0x100",
	} {
		if got := f.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint32(f), got, want)
		}
	}
}
