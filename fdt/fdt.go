package fdt

import (
	"encoding/binary"
	"fmt"
	"strings"

	"khosim/errno"
)

// Format constants (scripts/dtc/libfdt/fdt.h and libfdt.h).
const (
	FDT_MAGIC    = 0xd00dfeed
	FDT_SW_MAGIC = ^uint32(FDT_MAGIC) // magic of a blob under sequential write

	FDT_BEGIN_NODE = 0x1
	FDT_END_NODE   = 0x2
	FDT_PROP       = 0x3
	FDT_NOP        = 0x4
	FDT_END        = 0x9

	FDT_TAGSIZE = 4

	// FDT_LAST_SUPPORTED_VERSION is the version the writer produces and
	// the highest last_comp_version the reader accepts.
	FDT_LAST_SUPPORTED_VERSION = 17
	// FDT_LAST_COMPATIBLE_VERSION is the last_comp_version the writer
	// produces.
	FDT_LAST_COMPATIBLE_VERSION = 16
	// FirstReadVersion is the oldest version Open accepts (libfdt reads
	// down to 2; versions before 16 store full paths as node names).
	FirstReadVersion = 16
)

const (
	// MaxDepth is the most nodes a path may hold, the root included: the
	// kernel's FDT_MAX_DEPTH (drivers/of/fdt.c). Deeper blobs are
	// rejected by Open and deeper nodes by Writer.BeginNode.
	MaxDepth = 64
	// MaxNameLen is the longest property name, in bytes without the NUL,
	// that the writer writes and the reader accepts, and the longest node
	// name the writer writes (FDBOX_NAME_LEN - 1). The Devicetree
	// Specification recommends 31; libfdt has no limit.
	MaxNameLen = 255
)

// Sizes of the on-blob structures.
const (
	headerSizeV16 = 36 // struct fdt_header up to size_dt_strings
	headerSizeV17 = 40 // struct fdt_header with size_dt_struct
	rsvEntrySize  = 16 // struct fdt_reserve_entry
	propHdrSize   = 12 // struct fdt_property: tag, len, nameoff
	// swHeaderSize is where fdt_create puts the reservation map:
	// FDT_ALIGN(sizeof(struct fdt_header), sizeof(struct fdt_reserve_entry)).
	swHeaderSize = 48
	maxBlobSize  = 1<<31 - 1 // libfdt's INT_MAX limit on totalsize
)

// Header is struct fdt_header.
type Header struct {
	Magic           uint32
	TotalSize       uint32
	OffDtStruct     uint32
	OffDtStrings    uint32
	OffMemRsvmap    uint32
	Version         uint32
	LastCompVersion uint32
	BootCPUIDPhys   uint32
	SizeDtStrings   uint32
	SizeDtStruct    uint32 // version 17 and later
}

// put writes h as a version-17 header at the start of b (len(b) >= 40).
func (h *Header) put(b []byte) {
	be := binary.BigEndian
	be.PutUint32(b[0:], h.Magic)
	be.PutUint32(b[4:], h.TotalSize)
	be.PutUint32(b[8:], h.OffDtStruct)
	be.PutUint32(b[12:], h.OffDtStrings)
	be.PutUint32(b[16:], h.OffMemRsvmap)
	be.PutUint32(b[20:], h.Version)
	be.PutUint32(b[24:], h.LastCompVersion)
	be.PutUint32(b[28:], h.BootCPUIDPhys)
	be.PutUint32(b[32:], h.SizeDtStrings)
	be.PutUint32(b[36:], h.SizeDtStruct)
}

// Error helpers. fn is the libfdt function modelled, code the FDT_ERR_*
// name ("" when libfdt has none).
func fdtErr(e errno.Errno, fn, code, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if code != "" {
		return fmt.Errorf("fdt: %s: %s (%s): %w", fn, msg, code, e)
	}
	return fmt.Errorf("fdt: %s: %s: %w", fn, msg, e)
}

// notFound is FDT_ERR_NOTFOUND, formatted only when printed: lookups that
// miss (optional properties, the end of an iteration) are common and must
// stay cheap.
type notFound struct {
	fn     string // libfdt function
	what   string // "property", "subnode", "node"; or the message
	name   string // what was looked up
	path   string // the path looked up, if any
	off    int    // the offset looked in
	lookup bool   // a lookup of name, not the end of an iteration
}

func (e *notFound) Error() string {
	switch {
	case !e.lookup:
		return fmt.Sprintf("fdt: %s: %s at offset %d (FDT_ERR_NOTFOUND): ENOENT", e.fn, e.what, e.off)
	case e.path != "":
		return fmt.Sprintf("fdt: %s: no %s %q in path %q (FDT_ERR_NOTFOUND): ENOENT", e.fn, e.what, e.name, e.path)
	}
	return fmt.Sprintf("fdt: %s: no %s %q in node at offset %d (FDT_ERR_NOTFOUND): ENOENT", e.fn, e.what, e.name, e.off)
}

func (e *notFound) Unwrap() error { return errno.ENOENT }

func errBadOffset(fn string, off int) error {
	return fdtErr(errno.EINVAL, fn, "FDT_ERR_BADOFFSET", "offset %d", off)
}

func errStructure(fn, format string, args ...any) error {
	return fdtErr(errno.EBADMSG, fn, "FDT_ERR_BADSTRUCTURE", format, args...)
}

func errTruncated(fn, format string, args ...any) error {
	return fdtErr(errno.EBADMSG, fn, "FDT_ERR_TRUNCATED", format, args...)
}

// tagAlign is FDT_TAGALIGN for non-negative offsets that fit an int.
func tagAlign(n int) int { return (n + FDT_TAGSIZE - 1) &^ (FDT_TAGSIZE - 1) }

// Name character sets of the Devicetree Specification (2.2.1, 2.2.4).
func nodeNameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == ',' || c == '.' || c == '_' || c == '+' || c == '-'
}

func propNameChar(c byte) bool { return nodeNameChar(c) || c == '?' || c == '#' }

// checkNodeName validates a node name for the writer. libfdt's
// fdt_begin_node() copies any NUL-terminated name, and the RFC names FDBox
// nodes after user-chosen box and fd names, so the writer accepts every
// byte except NUL and '/' (which would make the node unreachable by path),
// up to MaxNameLen bytes. The empty name is the root, or the RFC's unnamed
// storage node. dtc decodes such names; DTS source cannot always spell
// them, which only matters to people round-tripping dtc's text output.
func checkNodeName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("node name of %d bytes, more than %d", len(name), MaxNameLen)
	}
	if i := strings.IndexAny(name, "\x00/"); i >= 0 {
		return fmt.Errorf("node name %q has illegal character %q", name, name[i])
	}
	return nil
}

// checkPropName validates a property name for the writer: 1 to MaxNameLen
// bytes of the specification's characters.
func checkPropName(name string) error {
	if name == "" {
		return fmt.Errorf("empty property name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("property name of %d bytes, more than %d", len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !propNameChar(name[i]) {
			return fmt.Errorf("property name %q has illegal character %q", name, name[i])
		}
	}
	return nil
}
