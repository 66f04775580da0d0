package restart

import (
	"fmt"
	"io"

	"github.com/ckptfs/ckptfs/image"
	"github.com/ckptfs/ckptfs/restart/internal/plan"
)

// WritePlan writes, as text, how Restore would rebuild the forest of img:
// who creates whom, ghosts, placeholders, the order of setsid and setpgid.
// sections says what img holds; the PIDS and TREE sections are needed, and
// without a HEADER the forest is taken as a subtree.
func WritePlan(w io.Writer, img *image.Image, sections image.Sections) error {
	if !sections.Has(image.SecPids | image.SecTree) {
		return fmt.Errorf("a plan needs the PIDS and TREE sections (have %v)", sections)
	}
	forest := plan.ForestOf(img)
	if !sections.Has(image.SecHeader) {
		forest.Mode = image.ModeSubtree
	}
	p, err := plan.Make(forest)
	if err != nil {
		return err
	}
	return p.WriteText(w)
}
