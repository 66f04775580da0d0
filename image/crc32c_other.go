//go:build !amd64

package image

import "hash/crc32"

// checksum is Checksum (see crc32c_amd64.go).
func checksum(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }
