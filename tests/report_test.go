package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// report is the output of `ckptfs inspect --json`.
type report struct {
	Sections []string `json:"sections"`
	Header   *struct {
		Version  int    `json:"version"`
		Arch     string `json:"arch"`
		PageSize int    `json:"page_size"`
		Mode     string `json:"mode"`
		Time     int64  `json:"time"`
		Kernel   string `json:"kernel"`
	} `json:"header"`
	PidNS []struct {
		Tag    int `json:"tag"`
		Parent int `json:"parent"`
		Level  int `json:"level"`
	} `json:"pidns"`
	Pids []struct {
		Tag     int   `json:"tag"`
		Numbers []int `json:"numbers"`
		NS      []int `json:"ns"`
	} `json:"pids"`
	Tasks []reportTask `json:"tasks"`
}

type reportTask struct {
	Pid      ref      `json:"pid"`
	PPid     ref      `json:"ppid"`
	TGid     ref      `json:"tgid"`
	PGid     ref      `json:"pgid"`
	Sid      ref      `json:"sid"`
	Depth    int      `json:"depth"`
	Shares   []string `json:"shares"` // "files", "fs": what it shares with its parent
	State    *string  `json:"state"`
	ExitCode *int     `json:"exit_code"`
	Comm     *string  `json:"comm"`
}

// ref is a pid reference of a task: numbers from the root's namespace down,
// a word ("ancestor", "root"), a bare tag (a tree without pids), or null.
type ref struct {
	Null    bool
	Numbers []int
	Word    string
	Tag     int
	IsTag   bool
}

func (r *ref) UnmarshalJSON(b []byte) error {
	*r = ref{}
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		r.Null = true
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, &r.Word)
	case len(b) > 0 && b[0] == '[':
		if err := json.Unmarshal(b, &r.Numbers); err != nil {
			return err
		}
		if len(r.Numbers) == 0 {
			return fmt.Errorf("empty pid number list")
		}
		return nil
	case len(b) > 0 && b[0] == '{':
		var o struct {
			Tag *int `json:"tag"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		if o.Tag == nil {
			return fmt.Errorf("pid reference %s has no tag", b)
		}
		r.Tag, r.IsTag = *o.Tag, true
		return nil
	}
	return fmt.Errorf("unexpected pid reference %s", b)
}

func (r ref) MarshalJSON() ([]byte, error) {
	switch {
	case r.Null:
		return []byte("null"), nil
	case r.Word != "":
		return json.Marshal(r.Word)
	case r.IsTag:
		return json.Marshal(map[string]int{"tag": r.Tag})
	}
	return json.Marshal(r.Numbers)
}

func (r ref) String() string {
	switch {
	case r.Null:
		return "null"
	case r.Word != "":
		return fmt.Sprintf("%q", r.Word)
	case r.IsTag:
		return fmt.Sprintf("{tag %d}", r.Tag)
	}
	return fmt.Sprint(r.Numbers)
}

// inspect decodes file with `ckptfs inspect --json`, failing t if that
// fails.
func inspect(t testing.TB, file string) *report {
	t.Helper()
	r := ckptfs(t, "inspect", "--json", file)
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	var rep report
	if err := json.Unmarshal(r.stdout, &rep); err != nil {
		t.Fatalf("inspect --json %s: %v\n%s", file, err, truncate(string(r.stdout), 4000))
	}
	return &rep
}

// inspectBytes writes data to a temporary file and inspects it.
func inspectBytes(t testing.TB, name string, data []byte) *report {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return inspect(t, p)
}

// hasSections reports whether rep lists exactly the sections want.
func (rep *report) hasSections(want ...string) bool {
	return slices.Equal(rep.Sections, want)
}

// ---- image bytes ----

// record is one record of an image stream: its type, and where it lies.
type record struct {
	typ      uint32
	off, len int
}

// records splits data into its records by their 8-byte headers {type u32,
// length u32 including the header}, little-endian. It stops at the first
// header that does not fit.
func records(data []byte) []record {
	var out []record
	for off := 0; off+8 <= len(data); {
		typ := le32(data[off:])
		n := int(le32(data[off+4:]))
		if n < 8 || off+n > len(data) {
			break
		}
		out = append(out, record{typ, off, n})
		off += n
	}
	return out
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// checkSections checks that pids and tree are exactly the sections of img
// that follow its header record: img[hlen : hlen+len(pids)] == pids, and
// tree right after.
func checkSections(t testing.TB, what string, img, pids, tree []byte) {
	t.Helper()
	if len(img) < 8 {
		t.Errorf("%s: image of %d bytes has no header record", what, len(img))
		return
	}
	hlen := int(le32(img[4:]))
	if hlen < 8 || hlen > len(img) {
		t.Errorf("%s: header record length %d, image is %d bytes", what, hlen, len(img))
		return
	}
	if len(pids) < 8 || len(tree) < 8 {
		t.Errorf("%s: pids file is %d bytes, tree file %d: each holds at least a record header", what, len(pids), len(tree))
		return
	}
	if end := hlen + len(pids); end > len(img) || !bytes.Equal(img[hlen:end], pids) {
		t.Errorf("%s: pids (%d bytes) is not image[%d:%d]", what, len(pids), hlen, end)
		return
	}
	start := hlen + len(pids)
	if end := start + len(tree); end > len(img) || !bytes.Equal(img[start:end], tree) {
		t.Errorf("%s: tree (%d bytes) is not image[%d:%d]", what, len(tree), start, end)
	}
	if int(le32(pids[4:])) != len(pids) {
		t.Errorf("%s: pids file holds more than its record: record length %d, file %d", what, le32(pids[4:]), len(pids))
	}
	if int(le32(tree[4:])) != len(tree) {
		t.Errorf("%s: tree file holds more than its record: record length %d, file %d", what, le32(tree[4:]), len(tree))
	}
}

// sameTasks compares the task lists of two reports of the same, unchanged
// tree (taken at different times), ignoring nothing but the header's time.
func sameTasks(a, b *report) string {
	ja, _ := json.Marshal(struct {
		NS, P, T any
	}{a.PidNS, a.Pids, a.Tasks})
	jb, _ := json.Marshal(struct {
		NS, P, T any
	}{b.PidNS, b.Pids, b.Tasks})
	if bytes.Equal(ja, jb) {
		return ""
	}
	return fmt.Sprintf("first:\n%s\nsecond:\n%s", truncate(string(ja), 3000), truncate(string(jb), 3000))
}

// describe is a short form of a report for logs.
func (rep *report) describe() string {
	var b strings.Builder
	if rep.Header != nil {
		fmt.Fprintf(&b, "mode %s, ", rep.Header.Mode)
	}
	fmt.Fprintf(&b, "%d namespaces, %d pids, %d tasks", len(rep.PidNS), len(rep.Pids), len(rep.Tasks))
	return b.String()
}
