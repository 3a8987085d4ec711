package machine

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/zeebo/xxh3"

	"khosim/kernel"
	"khosim/physmem"
)

// fileState is everything about a file that deactivation must restore.
type fileState struct {
	Name                       string
	Size, Pos, Refs            int64
	Seals                      uint32
	Alloced, Swapped           int64
	Fallocend, NrPages         uint64
	Hash                       uint64
	Folios                     []folioState
	InodeOpenFiles, BoxedIndex int
}

type folioState struct {
	Index    uint64
	PFN      physmem.PFN
	Order    uint
	Refcount int32
	Flags    physmem.PageFlags
}

// snapshot records the state of every file in every box of the running
// kernel, in box and insertion order.
func (w *world) snapshot() []fileState {
	w.t.Helper()
	k := w.k()
	var out []fileState
	for _, box := range w.m.FDBox().Boxes() {
		for i, bfd := range box.FDs() {
			f := bfd.File()
			s := fileState{Name: box.Name() + "/" + bfd.Name(), Size: f.Inode.Size, Pos: f.Pos, Refs: f.Refs(),
				InodeOpenFiles: f.Inode.OpenFiles(), BoxedIndex: i}
			if info := kernel.ShmemInode(f); info != nil {
				s.Seals, s.Alloced, s.Swapped = info.Seals, info.Alloced(), info.Swapped()
				s.Fallocend, s.NrPages = info.Fallocend(), info.Mapping().NrPages()
				for e := range info.Mapping().Range(0, math.MaxUint64) {
					if e.Entry.IsValue() {
						s.Folios = append(s.Folios, folioState{Index: e.Index, Order: uint(e.Order), Flags: 1 << 31})
						continue
					}
					pf := physmem.Folio(e.Entry.PFN())
					s.Folios = append(s.Folios, folioState{Index: e.Index, PFN: pf.PFN(), Order: uint(e.Order),
						Refcount: k.MM.FolioRefCount(pf), Flags: k.MM.Page(pf.PFN()).Flags()})
				}
				s.Hash = hashFile(w.t, k, info)
			}
			out = append(out, s)
		}
	}
	return out
}

// hashFile hashes a shmem file's page cache contents, page by page
// (holes and !uptodate folios hash as zeros), without a task.
func hashFile(t testing.TB, k *kernel.Kernel, info *kernel.ShmemInodeInfo) uint64 {
	var h uint64 = 1469598103934665603
	for e := range info.Mapping().Range(0, math.MaxUint64) {
		if e.Entry.IsValue() {
			h = h*1099511628211 ^ e.Index ^ 0xdead
			continue
		}
		pf := physmem.Folio(e.Entry.PFN())
		nr := uint64(1) << e.Order
		data := k.MM.Frames.Span(pf.PFN(), nr)
		if !k.FolioTestUptodate(pf) {
			h = h*1099511628211 ^ e.Index ^ 0xf411
			continue
		}
		h = (h ^ xxh3.Hash(data)) * 1099511628211
		h ^= e.Index
	}
	return h
}

func requireSameFiles(t testing.TB, before, after []fileState) {
	t.Helper()
	require.Equal(t, len(before), len(after))
	for i := range before {
		require.Equal(t, before[i], after[i], fmt.Sprintf("file %s", before[i].Name))
	}
}
