package procfs

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/<pid>/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // "rwxp" / "r-xs" ...
	Offset     uint64
	Major      uint32
	Minor      uint32
	Inode      uint64
	Path       string // "" for anonymous, "[heap]", "[stack]", "[vdso]" ...
}

// Shared reports whether the mapping is MAP_SHARED.
func (m *Mapping) Shared() bool { return len(m.Perms) == 4 && m.Perms[3] == 's' }

// ReadMaps reads /proc/<pid>/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	path := pidDir(pid) + "/maps"
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mapping
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m, err := parseMapsLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

func parseMapsLine(line string) (Mapping, error) {
	var m Mapping
	// address perms offset dev inode [path]; the path may hold spaces.
	fields := strings.SplitN(line, " ", 6)
	if len(fields) < 5 {
		return m, fmt.Errorf("short line %q", line)
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return m, fmt.Errorf("bad range in %q", line)
	}
	var err error
	if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return m, err
	}
	if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil {
		return m, err
	}
	m.Perms = fields[1]
	if m.Offset, err = strconv.ParseUint(fields[2], 16, 64); err != nil {
		return m, err
	}
	maj, min, ok := strings.Cut(fields[3], ":")
	if !ok {
		return m, fmt.Errorf("bad device in %q", line)
	}
	a, err1 := strconv.ParseUint(maj, 16, 32)
	b, err2 := strconv.ParseUint(min, 16, 32)
	if err1 != nil || err2 != nil {
		return m, fmt.Errorf("bad device in %q", line)
	}
	m.Major, m.Minor = uint32(a), uint32(b)
	if m.Inode, err = strconv.ParseUint(fields[4], 10, 64); err != nil {
		return m, err
	}
	if len(fields) == 6 {
		m.Path = strings.TrimLeft(fields[5], " ")
	}
	return m, nil
}
