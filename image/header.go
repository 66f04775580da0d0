package image

// HEADER payload (record type 1), little-endian:
//
//	off  size  field
//	  0     8  Magic "CKPTFS\x00\x01"
//	  8     4  Version
//	 12     4  Arch (AUDIT_ARCH_*)
//	 16     4  PageSize
//	 20     4  Mode
//	 24     4  XSaveSize
//	 28     8  XSaveFeatures
//	 36     8  Time (i64, Unix nanoseconds)
//	 44     2  len(Kernel), at most MaxKernelLen
//	 46     n  Kernel
//
// A Header whose Version is 0 is written as the current Version.
func appendHeader(b []byte, h *Header) []byte {
	start := len(b)
	b = appendRecord(b, RecHeader)
	b = append(b, Magic...)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b = le.AppendUint32(b, v)
	b = le.AppendUint32(b, h.Arch)
	b = le.AppendUint32(b, h.PageSize)
	b = le.AppendUint32(b, uint32(h.Mode))
	b = le.AppendUint32(b, h.XSaveSize)
	b = le.AppendUint64(b, h.XSaveFeatures)
	b = le.AppendUint64(b, uint64(h.Time))
	kernel := h.Kernel
	if len(kernel) > 0xffff {
		kernel = kernel[:0xffff] // refused by decodeHeader; keeps the u16 honest
	}
	b = appendString(b, kernel)
	finishRecord(b, start)
	return b
}

// decodeHeader decodes and checks a HEADER payload. The checks run in the
// order that gives the most useful message for a foreign file: magic first,
// then version, then the facts of this version.
func decodeHeader(h recHeader, payload []byte) (*Header, error) {
	dec := newDecoder(h, payload)
	d := &dec
	if m := d.bytes(len(Magic), "magic"); m != nil && string(m) != Magic {
		d.failAt(d.base, ErrMagic, "magic %q, want %q: not a ckptfs image", m, Magic)
	}
	var hdr Header
	off := d.off()
	hdr.Version = d.u32("version")
	if d.err == nil && (hdr.Version < MinVersion || hdr.Version > Version) {
		d.failAt(off, ErrVersion, "format version %d, this program reads versions %d to %d", hdr.Version, MinVersion, Version)
	}
	off = d.off()
	hdr.Arch = d.u32("arch")
	if d.err == nil && hdr.Arch != ArchX86_64 {
		d.failAt(off, ErrArch, "architecture %#x, only x86_64 (%#x) is supported", hdr.Arch, uint32(ArchX86_64))
	}
	off = d.off()
	hdr.PageSize = d.u32("page size")
	if ps := hdr.PageSize; d.err == nil && (ps < 4096 || ps > 1<<21 || ps&(ps-1) != 0) {
		d.failAt(off, ErrPageSize, "page size %d is not a power of two in [4096, 2MiB]", ps)
	}
	off = d.off()
	hdr.Mode = Mode(d.u32("mode"))
	if d.err == nil && hdr.Mode != ModeContainer && hdr.Mode != ModeSubtree {
		d.failAt(off, ErrMode, "mode %d is neither container (1) nor subtree (2)", hdr.Mode)
	}
	hdr.XSaveSize = d.u32("xsave size")
	hdr.XSaveFeatures = d.u64("xsave features")
	hdr.Time = int64(d.u64("time"))
	hdr.Kernel = d.str("kernel release", MaxKernelLen)
	if err := d.end(); err != nil {
		return nil, err
	}
	return &hdr, nil
}

// ArchName returns the name of an AUDIT_ARCH_* value.
func ArchName(arch uint32) string {
	if arch == ArchX86_64 {
		return "x86_64"
	}
	return "unknown"
}
