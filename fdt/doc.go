// Package fdt is a small libfdt: it writes and reads flattened device trees
// (DTB, Devicetree Specification v0.4 chapter 5), the format in which Kexec
// HandOver (KHO) passes its handover from one kernel to the next.
//
// # Format
//
// A blob starts with a big-endian struct fdt_header (magic 0xd00dfeed,
// version 17, last_comp_version 16), followed by the memory-reservation map
// (16-byte {address, size} entries ended by a zero entry), the structure
// block (32-bit big-endian tokens FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP,
// FDT_NOP and FDT_END, each aligned to 4 bytes) and the strings block (the
// NUL-terminated property names, each stored once).
//
// Offsets handed out by the reader are libfdt's: a node offset is the
// offset of its FDT_BEGIN_NODE token and a property offset the offset of its
// FDT_PROP token, both relative to the start of the structure block.
//
// # Writing
//
// Writer is libfdt's sequential-write API (fdt_sw.c) as the kernel's KHO
// code uses it: Create on a caller-provided buffer, FinishReserveMap,
// BeginNode(""), properties and subnodes, EndNode, Finish. As in libfdt the
// structure block grows up from the header and the strings block grows down
// from the end of the buffer until Finish moves it into place; TotalSize is
// the blob's size afterwards.
//
// # Reading
//
// Open checks a blob the way fdt_check_header and fdt_check_full do and, in
// the same linear pass, records where every node and property starts. Every
// later call checks the offset it is given against that record (libfdt
// trusts any 4-byte aligned offset holding the right tag) and still
// bounds-checks every access, so a blob changed after Open yields errors,
// not panics. The record costs 16 bytes per node and 4 per property: at
// most 1.34 times the structure block (up to twice that while it grows).
// Lookups by offset are O(log nodes); walks and lookups are linear in what
// they visit.
//
// # Errors
//
// Every error carries an errno.Errno (test with errors.Is or errno.Of) and
// names the libfdt function and FDT_ERR_* code it models:
//
//	FDT_ERR_NOTFOUND                      errno.ENOENT   no such node or property
//	FDT_ERR_NOSPACE                       errno.ENOSPC   the buffer is full
//	FDT_ERR_BADSTATE                      errno.EINVAL   sequential-write misuse
//	FDT_ERR_BADOFFSET, FDT_ERR_BADPATH    errno.EINVAL   bad argument from the caller
//	(no libfdt code: khosim checks names) errno.EINVAL   illegal node or property name
//	FDT_ERR_BADMAGIC, FDT_ERR_BADVERSION  errno.EBADMSG  not a blob this package reads
//	FDT_ERR_TRUNCATED, FDT_ERR_ALIGNMENT  errno.EBADMSG  header or block out of bounds
//	FDT_ERR_BADLAYOUT, FDT_ERR_BADSTRUCTURE errno.EBADMSG malformed blob
//	FDT_ERR_BADVALUE                      errno.EBADMSG  property value of the wrong shape
//
// Errors returned by Writer.Fault are passed through, wrapped.
//
// # Limits
//
// MaxDepth bounds nesting as the kernel's FDT_MAX_DEPTH does; MaxNameLen
// bounds property names so that reading every property name stays linear
// in the blob; node names have no limit in the reader. Versions 16 and 17
// are read; older layouts (full paths as node names) are rejected. Aliases
// are resolved by PathOffset as libfdt does.
package fdt
