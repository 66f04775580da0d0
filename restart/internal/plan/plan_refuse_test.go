package plan

import (
	"errors"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/image"
)

// Forests no sequence of system calls can produce are refused, naming the
// tasks by pid and saying why.

// pids1 builds pid objects in namespace 1 numbered nrs (tags 1, 2, ...).
func pids1(nrs ...int32) image.Pids {
	p := image.Pids{NS: []image.PidNS{{}}}
	for _, nr := range nrs {
		p.Pids = append(p.Pids, image.Pid{Levels: []image.PidLevel{{NS: 1, Nr: nr}}})
	}
	return p
}

func TestPlanRefuses(t *testing.T) {
	two := image.Pids{NS: []image.PidNS{{}, {Parent: 1}, {Parent: 1}}, Pids: []image.Pid{
		{Levels: []image.PidLevel{{NS: 1, Nr: 1}}},
		{Levels: []image.PidLevel{{NS: 1, Nr: 5}, {NS: 2, Nr: 1}}}, // init of namespace 2
		{Levels: []image.PidLevel{{NS: 1, Nr: 6}, {NS: 3, Nr: 1}}}, // init of namespace 3
		{Levels: []image.PidLevel{{NS: 1, Nr: 7}, {NS: 3, Nr: 2}}}, // in namespace 3
	}}
	cases := []struct {
		name string
		f    Forest
		want []string
	}{{
		name: "session of a sibling namespace",
		f: Forest{Mode: image.ModeContainer, Pids: two, Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, PPid: 0, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 2, Sid: 2, Depth: 1},
			{Pid: 3, PPid: 1, TGid: 3, PGid: 3, Sid: 3, Depth: 1},
			{Pid: 4, PPid: 3, TGid: 4, PGid: 2, Sid: 2, Depth: 1}, // session of ns 2's init
		}}},
		want: []string{"task 7/2", "session 5/1"},
	}, {
		name: "session is not its leader's",
		f: Forest{Mode: image.ModeContainer, Pids: pids1(1, 2, 3), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 1, Sid: 1},
			{Pid: 3, PPid: 2, TGid: 3, PGid: 2, Sid: 2}, // 2 leads no session
		}}},
		want: []string{"task 3", "session is pid 2"},
	}, {
		name: "group in another session",
		f: Forest{Mode: image.ModeContainer, Pids: pids1(1, 2, 3), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 2, Sid: 2},
			{Pid: 3, PPid: 1, TGid: 3, PGid: 2, Sid: 1},
		}}},
		want: []string{"task 3", "group 2 is in session 2"},
	}, {
		name: "session leader in another group",
		f: Forest{Mode: image.ModeContainer, Pids: pids1(1, 2), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 1, Sid: 2},
		}}},
		want: []string{"task 2", "session leader is in group 1"},
	}, {
		name: "dead group leader's members in two sessions",
		// Group 9 has no task: its ghost takes its members' session, but
		// they disagree.
		f: Forest{Mode: image.ModeContainer, Pids: pids1(1, 2, 3, 9), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 2, Sid: 2},
			{Pid: 3, PPid: 2, TGid: 3, PGid: 4, Sid: 2},
			{Pid: 4, PPid: 1, TGid: 4, PGid: 4, Sid: 1},
		}}},
		want: []string{"task 3", "group 9 is in session 1"},
	}, {
		name: "zombie with children",
		f: Forest{Mode: image.ModeContainer, Pids: pids1(1, 2, 3), Zombies: map[image.Tag]int32{2: 0}, Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 1, Sid: 1},
			{Pid: 3, PPid: 2, TGid: 3, PGid: 1, Sid: 1},
		}}},
		want: []string{"zombie 2", "has children"},
	}, {
		name: "task alive in a dead namespace",
		f: Forest{Mode: image.ModeContainer, Pids: two, Zombies: map[image.Tag]int32{3: 9}, Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 3, PPid: 1, TGid: 3, PGid: 1, Sid: 1, Depth: 1},
			{Pid: 4, PPid: 1, TGid: 4, PGid: 1, Sid: 1, Depth: 1},
		}}},
		want: []string{"task 7/2", "init", "dead"},
	}, {
		name: "container root not an init",
		f: Forest{Mode: image.ModeContainer, Pids: pids1(4), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
		}}},
		want: []string{"task 4", "pid 1"},
	}, {
		name: "TagRoot and TagAncestor",
		f: Forest{Mode: image.ModeSubtree, Pids: pids1(4, 5), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: image.TagRoot, Sid: image.TagRoot},
			{Pid: 2, PPid: 1, TGid: 2, PGid: image.TagAncestor, Sid: image.TagAncestor},
		}}},
		want: []string{"TagRoot and TagAncestor name the process group"},
	}, {
		name: "TagRoot and TagAncestor for the session",
		f: Forest{Mode: image.ModeSubtree, Pids: pids1(4, 5), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: image.TagRoot, Sid: image.TagRoot},
			{Pid: 2, PPid: 1, TGid: 2, PGid: image.TagRoot, Sid: image.TagAncestor},
		}}},
		want: []string{"TagRoot and TagAncestor name the session"},
	}, {
		name: "visible session, hidden group",
		f: Forest{Mode: image.ModeSubtree, Pids: pids1(4), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: image.TagAncestor, Sid: image.TagRoot},
		}}},
		want: []string{"session from above the tree is visible"},
	}, {
		name: "thread not sharing its leader's session",
		f: Forest{Mode: image.ModeContainer, Pids: pids1(1, 2, 3), Tree: image.Tree{Tasks: []image.Task{
			{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
			{Pid: 2, PPid: 1, TGid: 2, PGid: 2, Sid: 2},
			{Pid: 3, PPid: 1, TGid: 2, PGid: 1, Sid: 1},
		}}},
		want: []string{"task 2 (pid 3)", "differ from its leader"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Make(c.f)
			if err == nil {
				t.Fatalf("accepted:\n%v", p)
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("error does not wrap ErrRefused: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// A forest written by hand (not through the model), in a different order
// than a checkpoint would use, plans and compares equal.
func TestPlanHandWritten(t *testing.T) {
	// 1 init, session 1; 2 leads session 2 and was forked by 1; 3 (session
	// 2, group 3) is 2's child; 4 is in session 2 but a child of 1 (its
	// creator died); 9 is a dead leader of group 9 in session 1 with member 5.
	f := Forest{Mode: image.ModeContainer, Pids: pids1(1, 2, 3, 4, 5, 9), Tree: image.Tree{Tasks: []image.Task{
		{Pid: 1, TGid: 1, PGid: 1, Sid: 1},
		{Pid: 5, PPid: 1, TGid: 5, PGid: 6, Sid: 1},
		{Pid: 2, PPid: 1, TGid: 2, PGid: 2, Sid: 2},
		{Pid: 4, PPid: 1, TGid: 4, PGid: 2, Sid: 2},
		{Pid: 3, PPid: 2, TGid: 3, PGid: 3, Sid: 2},
	}}}
	p := checkForest(t, f)
	text := p.String()
	for _, w := range []string{"ghost 9", "CLONE_PARENT", "reaps ghost 9"} {
		if !strings.Contains(text, w) {
			t.Errorf("plan lacks %q:\n%s", w, text)
		}
	}
}
