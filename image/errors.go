package image

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error the package returns for a malformed image is
// a *FormatError wrapping one of these, so callers can test the kind with
// errors.Is and still print where it happened.
var (
	ErrTruncated = errors.New("image: truncated")           // the stream ended inside a record
	ErrMagic     = errors.New("image: bad magic")           // not a ckptfs image (or a bad TAIL)
	ErrVersion   = errors.New("image: unsupported version") // format version outside [MinVersion, Version]
	ErrArch      = errors.New("image: unsupported architecture")
	ErrPageSize  = errors.New("image: unsupported page size")
	ErrMode      = errors.New("image: unknown mode")
	ErrChecksum  = errors.New("image: checksum mismatch")      // TAIL's CRC32C disagrees
	ErrTrailing  = errors.New("image: trailing bytes")         // data after TAIL or after a section
	ErrTooLarge  = errors.New("image: too large")              // a length or count exceeds its cap
	ErrLength    = errors.New("image: bad length")             // a record's length disagrees with its contents
	ErrOrder     = errors.New("image: record out of order")    // unexpected record type or Writer misuse
	ErrTag       = errors.New("image: undefined tag")          // a tag that was never defined or is not allowed
	ErrNamespace = errors.New("image: pid namespace mismatch") // a depth or namespace against the namespace chain
	ErrDuplicate = errors.New("image: duplicate")              // two objects where one must be unique
	ErrTree      = errors.New("image: bad task tree")          // parent/thread-group structure
	ErrInvalid   = errors.New("image: invalid value")          // any other out-of-range field
	ErrClosed    = errors.New("image: write after close")
)

// FormatError says what is wrong with an image and where: the section
// (record name such as "PIDS", or "record 401" for a per-task record) and the
// byte offset in the stream of the offending field or record (-1 for a
// section built in memory, see CheckForest).
type FormatError struct {
	Section string
	Offset  int64
	Reason  string // e.g. "task 4: pgid tag 9 is not defined"
	Err     error  // one of the sentinel errors above
}

func (e *FormatError) Error() string {
	reason := e.Reason
	if reason == "" && e.Err != nil {
		reason = strings.TrimPrefix(e.Err.Error(), "image: ")
	}
	if e.Offset < 0 {
		// Sections built in memory (CheckForest) have no offset.
		return fmt.Sprintf("image: %s: %s", e.Section, reason)
	}
	return fmt.Sprintf("image: %s at byte %d: %s", e.Section, e.Offset, reason)
}

func (e *FormatError) Unwrap() error { return e.Err }

// formatErr builds a *FormatError; reason is a fmt format.
func formatErr(section string, off int64, err error, format string, args ...any) *FormatError {
	return &FormatError{Section: section, Offset: off, Reason: fmt.Sprintf(format, args...), Err: err}
}
