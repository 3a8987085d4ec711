package luo

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"

	"khosim/errno"
	"khosim/fdt"
	"khosim/kexec"
	"khosim/physmem"
	"khosim/uapi"
)

// The LUO state in preserved memory (include/linux/kho/abi/luo.h, the
// luo-session-v2 ABI of mainline 6.19/7.0): one KHO subtree named "LUO"
// whose blob is a one-page FDT,
//
//	/ {
//		compatible = "luo-v1";
//		liveupdate-number = <u64>;          // live updates so far, this one included
//		luo-session {
//			compatible = "luo-session-v2";
//			luo-session-header = <u64>;     // phys of struct luo_session_header_ser
//		};
//	};
//
// and, in blocks of their own (kho_alloc_preserve), the session array and
// one file array per session that has files. Integers are little endian
// (the kernel memcpys them), structures __packed:
//
//	struct luo_session_header_ser { u64 count; }                             //  8 bytes, then count entries:
//	struct luo_session_ser { char name[64]; struct luo_file_set_ser { u64 files; u64 count; } file_set_ser; }  // 80 bytes
//	struct luo_file_ser { char compatible[48]; u64 data; u64 token; }        // 64 bytes, count of them at files
//
// luo_file_ser.data is the file handler's serialized_data: for a memfd the
// physical address of its struct memfd_luo_ser (preserve.Preserved.WriteBlob).
const (
	// FDTKHOEntryName is LUO_FDT_KHO_ENTRY_NAME, the KHO subtree's name.
	FDTKHOEntryName = "LUO"
	// FDTCompatible is LUO_FDT_COMPATIBLE.
	FDTCompatible = "luo-v1"
	// FDTLiveupdateNum is LUO_FDT_LIVEUPDATE_NUM.
	FDTLiveupdateNum = "liveupdate-number"
	// FDTSize is LUO_FDT_SIZE.
	FDTSize = physmem.PageSize
	// SessionNodeName, SessionCompatible and SessionHeader are
	// LUO_FDT_SESSION_NODE_NAME, LUO_FDT_SESSION_COMPATIBLE and
	// LUO_FDT_SESSION_HEADER.
	SessionNodeName   = "luo-session"
	SessionCompatible = "luo-session-v2"
	SessionHeader     = "luo-session-header"
	// HandlerCompatLength is LIVEUPDATE_HNDL_COMPAT_LENGTH.
	HandlerCompatLength = 48

	sessionHeaderSerSize = 8
	sessionSerSize       = uapi.LIVEUPDATE_SESSION_NAME_LENGTH + 16
	fileSerSize          = HandlerCompatLength + 8 + 8

	// sessionPgcnt is LUO_SESSION_PGCNT (16 pages: 819 sessions) and
	// filePgcnt LUO_FILE_PGCNT (2 pages: 128 files): the sizes mainline
	// allocates. khosim starts there and grows the blocks as needed
	// (see ensureSessions).
	sessionPgcnt = 16
	filePgcnt    = 2
)

// block is one physically contiguous block of preserved memory that LUO
// allocated with kho_alloc_preserve (KHO's reference keeps it), or, in
// the next kernel, claimed. b aliases physical memory.
type block struct {
	phys physmem.PhysAddr
	b    []byte
}

func (b block) valid() bool    { return b.b != nil }
func (b block) mem() kexec.Mem { return kexec.Mem{Addr: b.phys, Size: uint64(len(b.b))} }

// blockSize returns the bytes of the smallest block (a power of two pages,
// one folio) that holds need bytes and at least minPages pages.
func blockSize(need uint64, minPages uint64) uint64 {
	pages := max(minPages, (need+physmem.PageSize-1)/physmem.PageSize, 1)
	return physmem.PageSize << bits.Len64(pages-1)
}

// sessionCap and fileCap are the entries a block of n bytes holds.
func sessionCap(b block) int {
	if !b.valid() {
		return 0
	}
	return (len(b.b) - sessionHeaderSerSize) / sessionSerSize
}

func fileCap(b block) int { return len(b.b) / fileSerSize }

var le = binary.LittleEndian

// putSessionSer writes struct luo_session_ser at b.
func putSessionSer(b []byte, name string, files physmem.PhysAddr, count uint64) {
	clear(b[:sessionSerSize])
	copy(b[:uapi.LIVEUPDATE_SESSION_NAME_LENGTH], name)
	le.PutUint64(b[64:], uint64(files))
	le.PutUint64(b[72:], count)
}

// putFileSer writes struct luo_file_ser at b.
func putFileSer(b []byte, compat string, data physmem.PhysAddr, token uint64) {
	clear(b[:fileSerSize])
	copy(b[:HandlerCompatLength], compat)
	le.PutUint64(b[48:], uint64(data))
	le.PutUint64(b[56:], token)
}

// cString reads a NUL-terminated string from a fixed field; ok is false
// when the field holds no NUL.
func cString(b []byte) (s string, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), false
	}
	return string(b[:i]), true
}

// writeFDT writes the outgoing LUO FDT (luo_fdt_setup) into buf: the
// root with the live-update number and the session node pointing at the
// session array.
func writeFDT(buf []byte, number uint64, header physmem.PhysAddr) (int, error) {
	w, err := fdt.Create(buf)
	if err != nil {
		return 0, err
	}
	steps := []func() error{
		w.FinishReserveMap,
		func() error { return w.BeginNode("") },
		func() error { return w.PropertyString("compatible", FDTCompatible) },
		func() error { return w.PropertyLE64(FDTLiveupdateNum, number) },
		func() error { return w.BeginNode(SessionNodeName) },
		func() error { return w.PropertyString("compatible", SessionCompatible) },
		func() error { return w.PropertyLE64(SessionHeader, uint64(header)) },
		w.EndNode,
		w.EndNode,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return 0, err
		}
	}
	blob, err := w.Finish()
	return len(blob), err
}

// incomingFDT is what luo_early_startup and luo_session_setup_incoming read
// from the LUO FDT of the previous kernel.
type incomingFDT struct {
	number uint64           // liveupdate-number
	header physmem.PhysAddr // luo-session-header
}

// readFDT checks the LUO FDT blob and reads it. Errors (EINVAL) name what
// is wrong: another compatible (a LUO ABI this kernel does not speak), a
// missing or malformed property.
func readFDT(blob []byte) (incomingFDT, error) {
	var in incomingFDT
	f, err := fdt.Open(blob)
	if err != nil {
		return in, fmt.Errorf("FDT '%s': %v: %w", FDTKHOEntryName, err, errno.EINVAL)
	}
	if ok, err := f.NodeCheckCompatible(f.Root(), FDTCompatible); err != nil || !ok {
		c, _ := f.GetPropString(f.Root(), "compatible")
		return in, fmt.Errorf("FDT '%s' is compatible with %q, not %q: %w", FDTKHOEntryName, c, FDTCompatible, errno.EINVAL)
	}
	if in.number, err = f.GetPropLE64(f.Root(), FDTLiveupdateNum); err != nil {
		return in, fmt.Errorf("unable to get live update number '%s': %w", FDTLiveupdateNum, errno.EINVAL)
	}
	off, err := f.SubnodeOffset(f.Root(), SessionNodeName)
	if err != nil {
		return in, fmt.Errorf("unable to get session node: [%s]: %w", SessionNodeName, errno.EINVAL)
	}
	if ok, err := f.NodeCheckCompatible(off, SessionCompatible); err != nil || !ok {
		c, _ := f.GetPropString(off, "compatible")
		return in, fmt.Errorf("session node is compatible with %q, not %q: %w", c, SessionCompatible, errno.EINVAL)
	}
	h, err := f.GetPropLE64(off, SessionHeader)
	if err != nil {
		return in, fmt.Errorf("unable to get session header '%s': %w", SessionHeader, errno.EINVAL)
	}
	in.header = physmem.PhysAddr(h)
	return in, nil
}
