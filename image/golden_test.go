package image

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// go test ./image -run Golden -update rewrites testdata from the sample
// images. The files are committed: a change to them is a format change.
var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var goldenImages = []struct {
	name    string
	img     func() *Image
	reports bool // also golden text and JSON reports
}{
	{"simple", simpleImage, true},
	{"nested", nestedImage, true},
	{"deep", deepImage, false},
}

// goldenSections are standalone sections sliced out of nested.img, as the
// filesystem serves them.
var goldenSections = []struct {
	name string
	want Sections
}{
	{"nested.pids", SecPids},
	{"nested.tree", SecTree},
	{"nested.pidstree", SecPids | SecTree},
}

// sectionBytes returns the PIDS, TREE and PIDS+TREE bytes of an image.
func sectionBytes(t testing.TB, img *Image) map[Sections][]byte {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteHeader(&img.Header)
	a := w.Offset()
	w.WritePids(&img.Pids)
	b := w.Offset()
	w.WriteTree(&img.Tree)
	c := w.Offset()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	all := buf.Bytes()
	return map[Sections][]byte{SecPids: all[a:b], SecTree: all[b:c], SecPids | SecTree: all[a:c]}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code produces now; if the change is intended, run go test -update\n got:\n%s\nwant:\n%s",
			path, got, want)
	}
}

func TestGoldenImages(t *testing.T) {
	for _, g := range goldenImages {
		t.Run(g.name, func(t *testing.T) {
			img := g.img()
			if *update {
				golden(t, g.name+".img", encode(t, img))
			}
			b, err := os.ReadFile(filepath.Join("testdata", g.name+".img"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ReadImage(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("ReadImage: %v", err)
			}
			if !reflect.DeepEqual(got, img) {
				t.Fatalf("decoded model differs:\n got %+v\nwant %+v", got, img)
			}
			if !bytes.Equal(encode(t, got), b) {
				t.Fatalf("re-encoding the golden image gives different bytes")
			}
			if g.reports {
				reports(t, g.name, got, SecImage)
			}
		})
	}
	secs := sectionBytes(t, nestedImage())
	for _, g := range goldenSections {
		t.Run(g.name, func(t *testing.T) {
			if *update {
				golden(t, g.name, secs[g.want])
			}
			b, err := os.ReadFile(filepath.Join("testdata", g.name))
			if err != nil {
				t.Fatal(err)
			}
			got, s, err := ReadAny(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("ReadAny: %v", err)
			}
			if s != g.want {
				t.Fatalf("sections %v, want %v", s, g.want)
			}
			if !bytes.Equal(b, secs[g.want]) {
				t.Fatalf("golden section differs from the bytes the Writer produces now")
			}
			reports(t, g.name, got, s)
		})
	}
}

// reports checks the text and JSON reports against their golden files, and
// that the JSON parses with the keys other packages rely on.
func reports(t *testing.T, name string, img *Image, s Sections) {
	var txt, js bytes.Buffer
	if err := WriteText(&txt, img, s); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, img, s); err != nil {
		t.Fatal(err)
	}
	golden(t, name+".txt", txt.Bytes())
	golden(t, name+".json", js.Bytes())

	var rep struct {
		Header *struct {
			Mode string `json:"mode"`
		} `json:"header"`
		PidNS []struct{ Tag, Parent, Level int } `json:"pidns"`
		Pids  []struct {
			Tag     int     `json:"tag"`
			Numbers []int32 `json:"numbers"`
			NS      []int   `json:"ns"`
		} `json:"pids"`
		Tasks []map[string]json.RawMessage `json:"tasks"`
	}
	if err := json.Unmarshal(js.Bytes(), &rep); err != nil {
		t.Fatalf("JSON report does not parse: %v", err)
	}
	if s.Has(SecHeader) != (rep.Header != nil) || s.Has(SecPids) != (len(rep.Pids) > 0) ||
		s.Has(SecTree) != (len(rep.Tasks) > 0) {
		t.Fatalf("JSON report's keys do not match the sections %v", s)
	}
	if s.Has(SecHeader) && rep.Header.Mode != img.Header.Mode.String() {
		t.Errorf("JSON mode %q", rep.Header.Mode)
	}
	for i, task := range rep.Tasks {
		for _, k := range []string{"pid", "ppid", "tgid", "pgid", "sid", "depth"} {
			if _, ok := task[k]; !ok {
				t.Errorf("JSON task %d lacks %q", i, k)
			}
		}
		if _, ok := task["comm"]; ok != s.Has(SecTasks) {
			t.Errorf("JSON task %d: comm present %v with sections %v", i, ok, s)
		}
	}
	if len(rep.Tasks) > 0 && string(rep.Tasks[0]["ppid"]) != "null" {
		t.Errorf("JSON root ppid is %s, want null", rep.Tasks[0]["ppid"])
	}
}
