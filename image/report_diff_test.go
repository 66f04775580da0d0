package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
)

func diffSamples(t *testing.T, a, b sampleOpts) *Diff {
	t.Helper()
	d, err := DiffImages("a.img", bytes.NewReader(buildSample(t, a)), "b.img", bytes.NewReader(buildSample(t, b)))
	if err != nil {
		t.Fatalf("DiffImages: %v", err)
	}
	return d
}

func findTask(t *testing.T, d *Diff, pid int32) *TaskDiff {
	t.Helper()
	for i := range d.Tasks {
		if d.Tasks[i].Pid == pid {
			return &d.Tasks[i]
		}
	}
	t.Fatalf("no task %d in the diff: %+v", pid, d.Tasks)
	return nil
}

func findField(cs []Change, field string) *Change {
	for i := range cs {
		if cs[i].Field == field {
			return &cs[i]
		}
	}
	return nil
}

func TestDiffIdentical(t *testing.T) {
	d := diffSamples(t, defaultSample(), defaultSample())
	if !d.Identical || len(d.Tasks) != 0 || len(d.Header) != 0 {
		t.Fatalf("an image against itself: %+v", d)
	}
	want(t, "sides", [2]DiffImage{d.A, d.B}, [2]DiffImage{
		{Name: "a.img", Time: 1_700_000_000_000_000_000, Tasks: 4, Pages: 9, PageSize: pg},
		{Name: "b.img", Time: 1_700_000_000_000_000_000, Tasks: 4, Pages: 9, PageSize: pg}})
	var b bytes.Buffer
	d.WriteText(&b)
	if !regexp.MustCompile(`(?m)^identical: 4 tasks, 9 pages compared$`).Match(b.Bytes()) {
		t.Errorf("text:\n%s", b.String())
	}
}

// TestDiffChanges: B has app's heap grown by two pages, one page of its
// anonymous memory changed, its data mapping moved, a descriptor added and
// another's offset moved, a new limit in both processes, a task more and
// another kernel.
func TestDiffChanges(t *testing.T) {
	o := defaultSample()
	o.heapPages, o.anonChanged, o.extraFD, o.extraTask, o.nofile, o.pos = 5, 1, true, true, 300, 2000
	o.dataAt, o.kernel = 0x800000, "6.9.0"
	d := diffSamples(t, defaultSample(), o)
	if d.Identical {
		t.Fatal("identical")
	}
	want(t, "header", d.Header, []Change{{Field: "kernel", A: "6.8.0", B: "6.9.0"}})
	var pids []int32
	var kinds []string
	for _, td := range d.Tasks {
		pids, kinds = append(pids, td.Pid), append(kinds, td.Change)
	}
	want(t, "tasks", pids, []int32{100, 102, 104})
	want(t, "changes", kinds, []string{"changed", "changed", "added"})
	want(t, "summary", d.Summary, DiffSummary{Changed: 2, Added: 1, PagesChanged: 1, PagesAdded: 3, PagesRemoved: 1})

	app := findTask(t, d, 100)
	want(t, "app nofile", findField(app.Fields, "rlimits.RLIMIT_NOFILE"), &Change{"rlimits.RLIMIT_NOFILE", "200/400", "300/400"})
	want(t, "app brk", findField(app.Fields, "memory.brk"), &Change{"memory.brk", "0x1003000", "0x1005000"})
	want(t, "app pages", *app.Pages, PagesDiff{A: 8, B: 10, BytesA: 8 * pg, BytesB: 10 * pg, Changed: 1, Added: 3, Removed: 1})
	if len(app.Mappings) != 3 {
		t.Fatalf("app's mappings: %+v", app.Mappings)
	}
	moved, heap, anon := app.Mappings[0], app.Mappings[1], app.Mappings[2]
	want(t, "moved", [3]any{moved.Change, moved.A.Start, moved.B.Start}, [3]any{"moved", Hex(sampleData), Hex(0x800000)})
	want(t, "moved pages", *moved.Pages, PagesDiff{A: 1, B: 1, BytesA: pg, BytesB: pg, Added: 1, Removed: 1})
	want(t, "heap", [3]any{heap.Change, heap.A.End, heap.B.End}, [3]any{"resized", Hex(sampleHeap + 3*pg), Hex(sampleHeap + 5*pg)})
	want(t, "heap pages", *heap.Pages, PagesDiff{A: 3, B: 5, BytesA: 3 * pg, BytesB: 5 * pg, Added: 2})
	want(t, "anon", [2]any{anon.Change, *anon.Pages}, [2]any{"pages", PagesDiff{A: 2, B: 2, BytesA: 2 * pg, BytesB: 2 * pg, Changed: 1}})
	want(t, "fds", app.FDs, []FDDiff{
		{FD: 1, Change: "changed", Kind: "regular", Path: "/var/log/app.log", Fields: []Change{{"pos", "1234", "2000"}, {"size", "1234", "2000"}}},
		{FD: 12, Change: "added", Kind: "regular", Path: "/etc/hosts"},
	})

	child := findTask(t, d, 102)
	want(t, "child", [3]any{child.Fields, child.Mappings, child.FDs}, [3]any{
		[]Change{{"rlimits.RLIMIT_NOFILE", "200/400", "300/400"}}, []MappingDiff(nil), []FDDiff(nil)})
	want(t, "late", findTask(t, d, 104), &TaskDiff{Pid: 104, Change: "added", Kind: "process", Comm: "late", State: "S"})

	// And the other way round: the task and the pages are removed.
	r := diffSamples(t, o, defaultSample())
	want(t, "reverse", [2]any{findTask(t, r, 104).Change, r.Summary}, [2]any{"removed",
		DiffSummary{Changed: 2, Removed: 1, PagesChanged: 1, PagesAdded: 1, PagesRemoved: 3}})

	var b bytes.Buffer
	if err := d.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, re := range []string{
		`(?m)^--- a.img: taken 2023-11-14T22:13:20Z, 4 tasks, 9 pages in the image$`,
		`(?m)^\+\+\+ b.img: taken 2023-11-14T22:13:20Z, 5 tasks, 12 pages in the image$`,
		`(?m)^header:\n  kernel: 6.8.0 -> 6.9.0$`,
		`(?m)^~ task 100 \(app\): process, state S$`,
		`(?m)^    rlimits.RLIMIT_NOFILE: 200/400 -> 300/400$`,
		`(?m)^    pages: 8 -> 10 pages, 1 changed, 3 added, 1 removed$`,
		`(?m)^      moved +600000-601000 -> 800000-801000 +rw-p +file +/usr/bin/app +1 -> 1 pages, 0 changed, 1 added, 1 removed$`,
		`(?m)^      resized +1000000-1003000 -> 1000000-1005000 +rw-p +heap +\[heap\] +3 -> 5 pages, 0 changed, 2 added$`,
		`(?m)^      pages +7f0000000000-7f0000004000 +rw-p +anon +- +2 -> 2 pages, 1 changed$`,
		`(?m)^      ~ 1 regular /var/log/app.log: pos 1234 -> 2000, size 1234 -> 2000$`,
		`(?m)^      \+ 12 regular /etc/hosts$`,
		`(?m)^\+ task 104 \(late\): process, state S$`,
		`(?m)^differ: tasks 2 changed, 1 added, 0 removed; pages 1 changed, 3 added, 1 removed$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("diff text lacks %s", re)
		}
	}
	if t.Failed() {
		t.Logf("the diff:\n%s", text)
	}

	// The JSON, as jq sees it.
	b.Reset()
	if err := d.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Identical *bool `json:"identical"`
		Tasks     []struct {
			Pid      int    `json:"pid"`
			Change   string `json:"change"`
			Mappings []struct {
				Change string            `json:"change"`
				A      map[string]string `json:"a"`
				B      map[string]string `json:"b"`
				Pages  map[string]any    `json:"pages"`
			} `json:"mappings"`
			FDs []map[string]any `json:"fds"`
		} `json:"tasks"`
		Summary map[string]int `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("diff JSON does not parse: %v", err)
	}
	if doc.Identical == nil || *doc.Identical || doc.Summary["pages_changed"] != 1 || doc.Summary["added"] != 1 {
		t.Errorf("diff JSON: identical %v, summary %v", doc.Identical, doc.Summary)
	}
	m := doc.Tasks[0].Mappings[2]
	if m.Change != "pages" || m.A["start"] != "0x7f0000000000" || m.Pages["changed"] != 1.0 {
		t.Errorf("diff JSON: tasks[0].mappings[2] = %+v", m)
	}
	if f := doc.Tasks[0].FDs[1]; f["change"] != "added" || f["fd"] != 12.0 {
		t.Errorf("diff JSON: tasks[0].fds[1] = %v", f)
	}
}

// TestDiffOutOfOrder: a task that comes earlier in B than A's order
// allows is read ahead and compared by page checksums.
func TestDiffOutOfOrder(t *testing.T) {
	o := defaultSample()
	o.swapChildren, o.childByte = true, 0x56
	d := diffSamples(t, defaultSample(), o)
	child := findTask(t, d, 102)
	want(t, "child pages", *child.Pages, PagesDiff{A: 1, B: 1, BytesA: pg, BytesB: pg, Changed: 1, Checksum: true})
	want(t, "tasks", len(d.Tasks), 1)
	// Alike but for the order: identical.
	o.childByte = defaultSample().childByte
	if d := diffSamples(t, defaultSample(), o); !d.Identical {
		t.Errorf("reordered siblings: %+v", d.Tasks)
	}
}

// TestDiffErrors: an error names the image it comes from.
func TestDiffErrors(t *testing.T) {
	a := buildSample(t, defaultSample())
	b := bytes.Clone(a)
	b[len(b)/2] ^= 1
	_, err := DiffImages("a.img", bytes.NewReader(a), "b.img", bytes.NewReader(b))
	var fe *FormatError
	if !errors.As(err, &fe) || !regexp.MustCompile(`^b.img: image: [A-Z]+ at byte \d+`).MatchString(err.Error()) {
		t.Errorf("a damaged B: %v", err)
	}
	_, err = DiffImages("a.img", bytes.NewReader(a[:200]), "b.img", bytes.NewReader(a))
	if !errors.As(err, &fe) || !regexp.MustCompile(`^a.img: `).MatchString(err.Error()) {
		t.Errorf("a cut A: %v", err)
	}
	secs := sectionBytes(t, nestedImage())
	if _, err = DiffImages("a.pids", bytes.NewReader(secs[SecPids]), "b.img", bytes.NewReader(a)); err == nil {
		t.Error("a PIDS section was compared with an image")
	}
}
