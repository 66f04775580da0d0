package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// recorder is a reporter that keeps the errors instead of failing.
type recorder struct{ errs []string }

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}

// TestVerifierCatchesMistakes checks the checker: a real image of the pidns
// workload passes verifyImage, and each of a set of small mistakes made to
// its decoding is caught. A verifier that let these through would make the
// scenario tests pass for a wrong ckptfs.
func TestVerifierCatchesMistakes(t *testing.T) {
	requireEnv(t)
	w := startWorkload(t, "pidns", nil)
	tt := readTreeTruth(t, w.root)
	f := filepath.Join(t.TempDir(), "img")
	if r := ckptfs(t, "checkpoint", strconv.Itoa(w.root), "-o", f); r.err != nil {
		t.Fatalf("%s", r)
	}
	good := inspect(t, f)
	var rec recorder
	verifyImage(&rec, "good", good, tt, "subtree")
	if len(rec.errs) > 0 {
		t.Fatalf("the real image does not verify, so the mutations prove nothing:\n%s", strings.Join(rec.errs, "\n"))
	}

	// find returns the index of the task whose comm is c.
	find := func(rep *report, c string) int {
		for i, task := range rep.Tasks {
			if task.Comm != nil && *task.Comm == c {
				return i
			}
		}
		t.Fatalf("no task %s in the image", c)
		return -1
	}
	pidIndex := func(rep *report, numbers []int) int {
		for i, p := range rep.Pids {
			if fmt.Sprint(p.Numbers) == fmt.Sprint(numbers) {
				return i
			}
		}
		t.Fatalf("no pid object %v", numbers)
		return -1
	}
	str := func(s string) *string { return &s }

	mutations := []struct {
		name string
		mode string
		edit func(r *report)
	}{
		{"mode", "container", func(r *report) {}},
		{"pid number", "", func(r *report) { r.Tasks[find(r, "n-plain")].Pid.Numbers[0]++ }},
		{"inner pid number", "", func(r *report) { r.Tasks[find(r, "n-kidC")].Pid.Numbers[1]++ }},
		{"task missing", "", func(r *report) { r.Tasks = r.Tasks[:len(r.Tasks)-1] }},
		{"task twice", "", func(r *report) { r.Tasks = append(r.Tasks, r.Tasks[len(r.Tasks)-1]) }},
		{"depth", "", func(r *report) { r.Tasks[find(r, "n-kidD")].Depth-- }},
		{"tgid", "", func(r *report) { r.Tasks[find(r, "n-kidB")].TGid = r.Tasks[find(r, "n-grandB")].Pid }},
		{"ppid", "", func(r *report) { r.Tasks[find(r, "n-grandD")].PPid = r.Tasks[find(r, "n-initD")].Pid }},
		{"root ppid", "", func(r *report) { r.Tasks[0].PPid = ref{Numbers: []int{1}} }},
		{"pgid word", "", func(r *report) { r.Tasks[find(r, "n-grandB")].PGid = ref{Word: "root"} }},
		{"pgid numbers", "", func(r *report) { r.Tasks[find(r, "n-grandD")].PGid = r.Tasks[find(r, "n-kidD")].Pid }},
		{"sid", "", func(r *report) { r.Tasks[find(r, "n-sessA-kid")].Sid = r.Tasks[find(r, "n-initA")].Pid }},
		{"sid from above", "", func(r *report) {
			// The other word for "inherited from above": which one is true
			// depends on whether the test's session is visible here.
			sid := &r.Tasks[find(r, "n-plain")].Sid
			if sid.Word == "ancestor" {
				*sid = ref{Word: "root"}
			} else {
				*sid = ref{Word: "ancestor"}
			}
		}},
		{"comm", "", func(r *report) { r.Tasks[find(r, "n-kidC")].Comm = str("n-kidX") }},
		{"state", "", func(r *report) { r.Tasks[find(r, "n-kidC")].State = str("R") }},
		{"exit code", "", func(r *report) { n := 256; r.Tasks[find(r, "n-kidC")].ExitCode = &n }},
		{"namespace tag", "", func(r *report) {
			// initB's pid claims initA's namespace.
			a := pidIndex(r, r.Tasks[find(r, "n-initA")].Pid.Numbers)
			b := pidIndex(r, r.Tasks[find(r, "n-initB")].Pid.Numbers)
			r.Pids[b].NS[1] = r.Pids[a].NS[1]
		}},
		{"namespace parent", "", func(r *report) {
			// A namespace two levels down re-parented onto its sibling branch.
			d := pidIndex(r, r.Tasks[find(r, "n-initD")].Pid.Numbers)
			b := pidIndex(r, r.Tasks[find(r, "n-initB")].Pid.Numbers)
			r.PidNS[r.Pids[d].NS[2]-1].Parent = r.Pids[b].NS[1]
		}},
		{"unreferenced pid", "", func(r *report) {
			p := r.Pids[len(r.Pids)-1]
			p.Tag++
			p.Numbers = []int{99999999}
			p.NS = []int{1}
			r.Pids = append(r.Pids, p)
		}},
	}
	for _, m := range mutations {
		bad := cloneReport(t, good)
		m.edit(bad)
		mode := "subtree"
		if m.mode != "" {
			mode = m.mode
		}
		var rec recorder
		verifyImage(&rec, m.name, bad, tt, mode)
		if len(rec.errs) == 0 {
			t.Errorf("mutation %q went unnoticed", m.name)
		}
	}
}

// cloneReport deep-copies a report (through its JSON form).
func cloneReport(t *testing.T, r *report) *report {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var out report
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}
