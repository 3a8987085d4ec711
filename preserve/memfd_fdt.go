package preserve

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/zeebo/xxh3"

	"khosim/fdt"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/uapi"
)

// The memfd's record in a handover FDT: the RFC's memfd and shmem nodes
// (patch 5/5, mm/memfd.c; patch 4/5, mm/shmem.c), with the storage node
// versioned where khosim had to change it. An fd node looks like:
//
//	ram {                                  // the fd's name in its box
//		compatible = "fdbox,memfd-v1";
//		shmem {                            // v3: named "shmem"; v1, v2: unnamed
//			compatible = "fdbox,shmem-v3";
//			file-name = "memfd:guest-ram"; // v2: the file's name ("name" is reserved by the DT spec)
//			pos = <u64 LE>;                // f_pos
//			size = <u64 LE>;               // i_size
//			seals = <u32 LE>;              // v2: F_SEAL_* bits
//			mode = <u32 LE>;               // v2: permission bits of i_mode (MFD_NOEXEC_SEAL clears x)
//			mem = <struct kho_mem[n]>;     // {u64 addr, u64 size} LE, one per folio, size PAGE_SIZE << order
//			indices = <u64 LE [n]>;        // page-cache index of each folio's first page
//			flags = <u8 [n]>;              // v2: bit 0 uptodate, bit 1 dirty
//			checksum = <u64 LE>;           // v2: xxh3 of the fd's name and every property above
//		};
//	};
//
// The RFC's "fdbox,shmem-v1" node has only pos, size, mem (order-0 pages
// only) and indices. "fdbox,shmem-v2" adds the properties marked v2 and
// is unnamed, as the RFC's node is: dtc cannot compile the DTS it prints
// of one (a node needs a name) and fdtget cannot reach it by path.
// "fdbox,shmem-v3" is v2 with the node named "shmem" (/fdbox/BOX/FD/shmem),
// its properties and checksum unchanged. A kernel writes the version of
// its build (kbuild fdbox_shmem=, default v3) and ReadFDT reads every
// version up to it; a v3 node must be named "shmem", older ones may have
// any name. Under the arrays
// tracker (KHO v4) the "mem" property is also KHO's record of what is
// preserved; under the others it is the file's own folio list.

// Compatibles of the memfd's FDT nodes.
const (
	MemfdFDTCompatible = "fdbox,memfd-v1"
	ShmemCompatibleV1  = "fdbox,shmem-v1"
	ShmemCompatibleV2  = "fdbox,shmem-v2"
	ShmemCompatibleV3  = "fdbox,shmem-v3"
)

// ShmemNodeName is the name of a shmem-v3 storage node.
const ShmemNodeName = "shmem"

// shmemVersions are the storage node's compatibles by version.
var shmemVersions = map[int]string{1: ShmemCompatibleV1, 2: ShmemCompatibleV2, 3: ShmemCompatibleV3}

// ShmemCompatible returns the storage node's compatible of a version
// (1 to 3), "" for another.
func ShmemCompatible(version int) string { return shmemVersions[version] }

// Folio flags of the shmem-v2 "flags" property (and of pfolio.flags).
const (
	ShmemFolioUptodate = 1 << 0
	ShmemFolioDirty    = 1 << 1
)

// shmemKnownSeals are the F_SEAL_* bits a record may carry: those
// memfd_add_seals() accepts.
const shmemKnownSeals = uapi.F_SEAL_SEAL | uapi.F_SEAL_SHRINK | uapi.F_SEAL_GROW |
	uapi.F_SEAL_WRITE | uapi.F_SEAL_FUTURE_WRITE | uapi.F_SEAL_EXEC

// shmemNameMax is NAME_MAX: the longest "file-name" a shmem-v2 node may
// carry.
const shmemNameMax = 255

// maxLFSIndex is the last page index of a file of MAX_LFS_FILESIZE bytes:
// the byte at offset 2^63-1 lies in page 2^51-1.
const maxLFSIndex = math.MaxInt64 >> 12

func (h *memfdHandler) FDTCompatible() string { return MemfdFDTCompatible }

// EstimateFDT bounds the fd node: the memfd and storage nodes' fixed
// properties plus 25 bytes per folio (kho_mem, index, flags).
func (mf *memfdFile) EstimateFDT() uint64 {
	return 512 + uint64(len(mf.meta().name)) + 25*uint64(len(mf.folios))
}

// EstimateFDT implements Handler: 512 bytes, the name, and 25 per folio
// for the folios in the page cache and one per swapped page, which
// Preserve swaps in as order-0 folios.
func (h *memfdHandler) EstimateFDT(f *kernel.File) uint64 {
	info := kernel.ShmemInode(f)
	if info == nil {
		return 512
	}
	c := info.Mapping().Counts()
	folios := c.Entries - c.ValueEntries + c.ValueIndices
	return 512 + uint64(len(f.Name)) + 25*folios
}

// checksummer hashes a node's properties for the shmem-v2 "checksum".
type checksummer struct{ h *xxh3.Hasher }

func newChecksummer(fdName string) checksummer {
	c := checksummer{xxh3.New()}
	c.prop("", []byte(fdName))
	return c
}

// prop hashes one property as name, NUL, little-endian length, value.
func (c checksummer) prop(name string, value []byte) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(value)))
	_, _ = c.h.WriteString(name)
	_, _ = c.h.Write([]byte{0})
	_, _ = c.h.Write(n[:])
	_, _ = c.h.Write(value)
}

// WriteFDT is memfd_fdbox_kho_write() with shmem_fdbox_kho_write()'s node:
// the fd node's compatible and the storage node of the build's version
// (kbuild fdbox_shmem=): shmem-v3 named "shmem", or shmem-v2 unnamed.
func (mf *memfdFile) WriteFDT(w *fdt.Writer, fdName string) error {
	mf.mustLive("write FDT")
	k := mf.h.l.k
	if err := w.PropertyString("compatible", MemfdFDTCompatible); err != nil {
		return err
	}
	version := k.Build().FDBoxShmem
	name := ""
	if version >= 3 {
		name = ShmemNodeName
	}
	if err := w.BeginNode(name); err != nil {
		k.Printk(logErr, "memfd: kho: failed to set up memfd node")
		return err
	}
	if err := mf.writeShmemNode(w, fdName, ShmemCompatible(version)); err != nil {
		return err
	}
	if err := w.EndNode(); err != nil {
		k.Printk(logErr, "memfd: kho: failed to end memfd node!")
		return err
	}
	return nil
}

// writeShmemNode writes the shmem-v2 properties (and v3's, the same)
// under compatible, hashing each.
func (mf *memfdFile) writeShmemNode(w *fdt.Writer, fdName, compatible string) error {
	m := mf.meta()
	sum := newChecksummer(fdName)
	le := binary.LittleEndian
	put := func(name string, n int, fill func(b []byte)) error {
		b, err := w.PropertyPlaceholder(name, n)
		if err != nil {
			mf.h.l.k.Printk(logErr, "shmem: failed to add property %q to FDT: %v", name, err)
			return err
		}
		fill(b)
		sum.prop(name, b)
		return nil
	}
	str := func(s string) func([]byte) { return func(b []byte) { copy(b, s) } }
	u64 := func(v uint64) func([]byte) { return func(b []byte) { le.PutUint64(b, v) } }
	n := len(mf.folios)
	steps := []struct {
		name string
		n    int
		fill func([]byte)
	}{
		{"compatible", len(compatible) + 1, str(compatible)},
		{"file-name", len(m.name) + 1, str(m.name)},
		{"pos", 8, u64(uint64(m.pos))},
		{"size", 8, u64(uint64(m.size))},
		{"seals", 4, func(b []byte) { le.PutUint32(b, m.seals) }},
		{"mode", 4, func(b []byte) { le.PutUint32(b, m.mode) }},
		{"mem", kexec.MemSize * n, func(b []byte) {
			for i, pf := range mf.folios {
				mem := kexec.FolioMem(pf.folio(), uint(pf.order))
				le.PutUint64(b[16*i:], uint64(mem.Addr))
				le.PutUint64(b[16*i+8:], mem.Size)
			}
		}},
		{"indices", 8 * n, func(b []byte) {
			for i, pf := range mf.folios {
				le.PutUint64(b[8*i:], pf.index)
			}
		}},
		{"flags", n, func(b []byte) {
			for i, pf := range mf.folios {
				b[i] = pf.flags
			}
		}},
	}
	if slices.Contains([]byte(m.name), 0) {
		steps = slices.Delete(steps, 1, 2) // a name with NUL cannot be a string property
	}
	for _, s := range steps {
		if err := put(s.name, s.n, s.fill); err != nil {
			return err
		}
	}
	return w.PropertyLE64("checksum", sum.h.Sum64())
}

// ErrBadRecord marks a record whose contents cannot be trusted (a corrupt
// node: bad shapes, checksum, values): its memory must not be returned by
// what it claims, and is left to KHO's late pass.
var ErrBadRecord = errors.New("bad record")

// fdtFolios reads a shmem node's folio arrays in place.
type fdtFolios struct {
	v2                   bool
	mems, indices, flags []byte
}

func (s fdtFolios) Len() int { return len(s.mems) / kexec.MemSize }

func (s fdtFolios) At(i int) inFolio {
	f := inFolio{mem: kexec.MemAt(s.mems, i), index: binary.LittleEndian.Uint64(s.indices[8*i:])}
	if s.v2 {
		f.flags = s.flags[i]
	} else {
		// v1: the RFC marks every restored folio uptodate and dirty.
		f.flags = ShmemFolioUptodate | ShmemFolioDirty
	}
	return f
}

// ReadFDT is memfd_fdbox_kho_recover() up to the restore: the node must be
// "fdbox,memfd-v1" with exactly one subnode, a shmem-v1 or shmem-v2 node
// whose properties have the right shapes and (v2) whose checksum matches.
// Errors wrap ErrBadRecord: the node is corrupt.
func (h *memfdHandler) ReadFDT(f *fdt.FDT, off int, fdName string) (Incoming, error) {
	if ok, _ := f.NodeCheckCompatible(off, MemfdFDTCompatible); !ok {
		return nil, fmt.Errorf("kho: invalid compatible: %w", ErrBadRecord)
	}
	sub, err := f.FirstSubnode(off)
	if err != nil {
		return nil, fmt.Errorf("kho: no subnode for underlying storage found!: %w", ErrBadRecord)
	}
	if _, err := f.NextSubnode(sub); err == nil {
		return nil, fmt.Errorf("kho: too many subnodes. Expected only 1.: %w", ErrBadRecord)
	}
	return h.parseShmemNode(f, sub, fdName)
}

// parseShmemNode reads and checks a shmem node (shmem_fdbox_kho_recover's
// property checks, plus v2's checksum). fdName is the fd node's name,
// which the checksum covers.
func (h *memfdHandler) parseShmemNode(f *fdt.FDT, off int, fdName string) (*memfdIncoming, error) {
	bad := func(format string, args ...any) (*memfdIncoming, error) {
		return nil, fmt.Errorf("shmem: "+format+": %w", append(args, ErrBadRecord)...)
	}
	in := &memfdIncoming{h: h, fromKHO: true}
	var s fdtFolios
	version := 0
	for v := 1; v <= len(shmemVersions); v++ {
		if ok, _ := f.NodeCheckCompatible(off, shmemVersions[v]); ok {
			version = v
			break
		}
	}
	if version == 0 || !h.l.k.Build().ReadsFDBoxShmem(version) {
		// A kernel that does not know the version refuses the node as
		// the RFC's shmem_fdbox_kho_recover() does any other compatible.
		return bad("invalid compatible")
	}
	in.version = shmemVersions[version]
	s.v2 = version >= 2
	if version >= 3 {
		if name, err := f.GetName(off); err != nil || name != ShmemNodeName {
			return bad("%s node named %q, want %q", ShmemCompatibleV3, name, ShmemNodeName)
		}
	}
	missing := false
	prop := func(name string) []byte {
		v, err := f.GetProp(off, name)
		if err != nil {
			missing = true
			return nil
		}
		return v
	}
	le := binary.LittleEndian
	s.mems = prop("mem")
	if missing || len(s.mems)%kexec.MemSize != 0 {
		return bad("invalid mems property")
	}
	s.indices = prop("indices")
	if missing || len(s.indices)%8 != 0 {
		return bad("invalid indices property")
	}
	if len(s.indices)/8 != s.Len() {
		return bad("number of indices and mems do not match")
	}
	size, pos := prop("size"), prop("pos")
	if len(size) != 8 {
		return bad("invalid size property")
	}
	if len(pos) != 8 {
		return bad("invalid pos property")
	}
	usize, upos := le.Uint64(size), le.Uint64(pos)
	if s.v2 {
		seals := prop("seals")
		if len(seals) != 4 {
			return bad("invalid seals property")
		}
		in.meta.seals = le.Uint32(seals)
		if in.meta.seals&^shmemKnownSeals != 0 {
			// F_ADD_SEALS would refuse these bits (EINVAL): a node
			// carrying them was not written by a kernel that knows
			// what they mean.
			return bad("unknown seals %#x", in.meta.seals&^shmemKnownSeals)
		}
		mode := prop("mode")
		if len(mode) != 4 || le.Uint32(mode)&^0o7777 != 0 {
			return bad("invalid mode property")
		}
		in.meta.mode = le.Uint32(mode)
		s.flags = prop("flags")
		if missing || len(s.flags) != s.Len() {
			return bad("invalid flags property")
		}
		if n := prop("file-name"); len(n) > 0 {
			// A dentry name: NUL-terminated, no NUL inside, at most
			// NAME_MAX bytes (memfd_create allows "memfd:" + 249).
			if n[len(n)-1] != 0 || slices.Contains(n[:len(n)-1], 0) || len(n)-1 > shmemNameMax {
				return bad("invalid file-name property")
			}
			in.meta.name = string(n[:len(n)-1])
		}
		sum := prop("checksum")
		if len(sum) != 8 {
			return bad("missing checksum")
		}
		c := newChecksummer(fdName)
		for pname, v := range f.Properties(off) {
			if pname != "checksum" {
				c.prop(pname, v)
			}
		}
		if c.h.Sum64() != le.Uint64(sum) {
			return bad("checksum mismatch: the node was corrupted")
		}
		in.hasSeals, in.hasMode = true, true
	}
	if usize > math.MaxInt64 || upos > math.MaxInt64 {
		return bad("size %#x or pos %#x beyond MAX_LFS_FILESIZE", usize, upos)
	}
	in.meta.size, in.meta.pos = int64(usize), int64(upos)
	in.src = s
	return in, nil
}
