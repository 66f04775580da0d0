package image

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the diff for people, in the manner of diff(1): the two
// images on "---" and "+++" lines, then each task that differs on a line
// of its own, "+" added, "-" removed, "~" changed, with what changed
// indented below it ("field: A -> B", the mappings and the descriptors),
// and a last line that sums it up, or says the images are identical.
func (d *Diff) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 8, 2, ' ', 0)
	for _, x := range []struct {
		mark string
		img  *DiffImage
	}{{"---", &d.A}, {"+++", &d.B}} {
		fmt.Fprintf(tw, "%s %s: taken %s, %d task%s, %d pages in the image\n", x.mark, x.img.Name,
			time.Unix(0, x.img.Time).UTC().Format(time.RFC3339Nano), x.img.Tasks, plural(x.img.Tasks), x.img.Pages)
	}
	if len(d.Header) > 0 {
		fmt.Fprint(tw, "header:\n")
		writeChanges(tw, "  ", d.Header)
	}
	for i := range d.Tasks {
		writeTaskDiff(tw, &d.Tasks[i])
	}
	s := d.Summary
	if d.Identical {
		fmt.Fprintf(tw, "identical: %d task%s, %d pages compared\n", d.B.Tasks, plural(d.B.Tasks), d.B.Pages)
	} else {
		fmt.Fprintf(tw, "differ: tasks %d changed, %d added, %d removed; pages %d changed, %d added, %d removed\n",
			s.Changed, s.Added, s.Removed, s.PagesChanged, s.PagesAdded, s.PagesRemoved)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

// WriteJSON writes the diff as indented JSON (see Diff for the keys).
//
//	jq '.tasks[] | select(.change == "changed") | {pid, pages: .pages.changed}'
func (d *Diff) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

var changeMarks = map[string]string{"added": "+", "removed": "-", "changed": "~"}

func writeChanges(w io.Writer, indent string, cs []Change) {
	for _, c := range cs {
		fmt.Fprintf(w, "%s%s: %s -> %s\n", indent, c.Field, quoteIfOdd(c.A), quoteIfOdd(c.B))
	}
}

func writeTaskDiff(w io.Writer, t *TaskDiff) {
	fmt.Fprintf(w, "%s task %d (%s): %s, state %s\n", changeMarks[t.Change], t.Pid, quoteIfOdd(t.Comm), t.Kind, t.State)
	writeChanges(w, "    ", t.Fields)
	if p := t.Pages; p != nil && (p.differs() || len(t.Mappings) > 0) {
		fmt.Fprintf(w, "    pages: %s\n", pagesDiffText(p))
	}
	if len(t.Mappings) > 0 {
		fmt.Fprint(w, "    mappings:\n")
		for i := range t.Mappings {
			writeMappingDiff(w, &t.Mappings[i])
		}
	}
	if len(t.FDs) > 0 {
		fmt.Fprint(w, "    fds:\n")
		for _, f := range t.FDs {
			fmt.Fprintf(w, "      %s %d %s %s", changeMarks[f.Change], f.FD, f.Kind, quoteIfOdd(f.Path))
			var cs []string
			for _, c := range f.Fields {
				cs = append(cs, fmt.Sprintf("%s %s -> %s", c.Field, quoteIfOdd(c.A), quoteIfOdd(c.B)))
			}
			if len(cs) > 0 {
				fmt.Fprintf(w, ": %s", strings.Join(cs, ", "))
			}
			fmt.Fprintln(w)
		}
	}
}

// pagesDiffText is "2049 -> 2051 pages, 17 changed, 2 added".
func pagesDiffText(p *PagesDiff) string {
	s := fmt.Sprintf("%d -> %d pages, %d changed", p.A, p.B, p.Changed)
	if p.Added != 0 {
		s += fmt.Sprintf(", %d added", p.Added)
	}
	if p.Removed != 0 {
		s += fmt.Sprintf(", %d removed", p.Removed)
	}
	if p.Checksum {
		s += " (by checksum)"
	}
	return s
}

func rangeText(m *MappingRef) string { return fmt.Sprintf("%x-%x", uint64(m.Start), uint64(m.End)) }

// writeMappingDiff writes one mapping: its change, its range (A's -> B's
// where they differ), protection, kind and path, then what changed.
func writeMappingDiff(w io.Writer, m *MappingDiff) {
	var rng string
	ref := m.B
	switch {
	case m.A == nil && m.B == nil:
		rng = "(no mapping)"
	case m.A == nil:
		rng = rangeText(m.B)
	case m.B == nil:
		rng, ref = rangeText(m.A), m.A
	case m.A.Start == m.B.Start && m.A.End == m.B.End:
		rng = rangeText(m.B)
	default:
		rng = rangeText(m.A) + " -> " + rangeText(m.B)
	}
	prot, kind, path := "", "", ""
	if ref != nil {
		prot, kind, path = ref.Prot, ref.Kind, pathText(ref.Path)
	}
	var what []string
	for _, c := range m.Fields {
		what = append(what, fmt.Sprintf("%s %s -> %s", c.Field, quoteIfOdd(c.A), quoteIfOdd(c.B)))
	}
	if m.Pages != nil {
		what = append(what, pagesDiffText(m.Pages))
	}
	fmt.Fprintf(w, "      %s\t%s\t%s\t%s\t%s\t%s\n", m.Change, rng, prot, kind, path, strings.Join(what, "; "))
}
