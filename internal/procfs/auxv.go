package procfs

import (
	"encoding/binary"
	"os"
)

// ReadAuxv reads /proc/<pid>/auxv as 64-bit words (type, value pairs,
// ending with AT_NULL).
func ReadAuxv(pid int) ([]uint64, error) {
	data, err := os.ReadFile(pidDir(pid) + "/auxv")
	if err != nil {
		return nil, err
	}
	out := make([]uint64, len(data)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(data[8*i:])
	}
	return out, nil
}

// Exe returns the path of process pid's executable.
func Exe(pid int) (string, error) {
	return os.Readlink(pidDir(pid) + "/exe")
}
