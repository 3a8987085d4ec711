package machine

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/invariant"
	"khosim/physmem"
)

// pageSnapshot is what kernel #1's struct page of a frame held.
type pageSnapshot struct {
	flags    physmem.PageFlags
	refcount int32
	index    uint64
	private  uint64
}

// violationOf runs f and returns the name of the invariant it broke, or
// "" if it returned.
func violationOf(f func()) (name string) {
	defer func() {
		if p := recover(); p != nil {
			var v *invariant.Violation
			if err, ok := p.(error); ok && errors.As(err, &v) {
				name = v.Invariant
				return
			}
			name = fmt.Sprint(p)
		}
	}()
	f()
	return ""
}

// TestSealedMemmap is the boundary test of the sealed memmap: kernel #1
// preserves a memfd whose struct pages it filled with its own state
// (flags, refcounts, index, private), kexecs, and between the end of the
// next kernel's early boot (memblock_free_all done) and the restore
// (kho_restore_folio, in the initcalls) every accessor of every
// preserved frame's struct page must refuse: MM.Page and the folio
// helpers with "page-initialised", the raw pfn_to_page (Memmap.Page)
// by handing out a poisoned struct page whose every accessor panics with
// "page-poisoned". None may return kernel #1's flags, refcount, index or
// private. Heads carry KHO_PAGE_MAGIC and their order, written by the new
// kernel at reserve. After the restore, the file reads back whole.
//
// Without the poisoning (Memmap.gate), the raw accessors return kernel
// #1's values and the test fails.
func TestSealedMemmap(t *testing.T) {
	for _, huge := range []string{"never", "always"} {
		t.Run("shmem_huge="+huge, func(t *testing.T) {
			w := newWorld(t, Config{Memory: 256 * MiB, ScratchBytes: 64 * MiB}, huge)
			p := w.proc("vmm")
			fd := w.memfd(p, "guest-ram", 0)
			const size = 8 * MiB
			w.pwrite(p, fd, 0, size, 11)
			box := w.createBox(p, "vm1")
			w.put(p, box, fd, "ram")
			w.seal(p, box)
			require.NoError(t, w.m.KHOActivate())

			// Kernel #1's struct pages of every frame it preserves.
			k1 := w.k()
			old := map[physmem.PFN]pageSnapshot{}
			for pfn := range physmem.PFN(k1.MM.Memmap.NumPages()) {
				if !k1.MM.PageInitialised(pfn) {
					continue
				}
				pg := k1.MM.Page(pfn)
				if pg.Test(physmem.PGBuddy) || pg.Flags() == 0 && pg.RefCount() == 0 {
					continue
				}
				old[pfn] = pageSnapshot{pg.Flags(), pg.RefCount(), pg.Index(), pg.Private()}
			}

			checked := 0
			w.m.SetPhaseHook(func(e PhaseEvent) {
				if e.Phase != PhaseEarlyBoot || !e.Kexec {
					return
				}
				k := w.m.Kernel()
				mm := k.MM
				for _, r := range w.m.KHO().InRanges() {
					order, ok := r.FolioOrder()
					require.True(t, ok, "range %v is one folio", r.Mem)
					head := r.PFN()
					got, magic := mm.KHOPageInfo(head)
					require.True(t, magic, "%v: no KHO_PAGE_MAGIC in the head's private", head)
					require.Equal(t, order, got, "%v: order in page->private", head)
					for pfn := head; pfn < head+physmem.PFN(r.NrPages()); pfn++ {
						was, ok := old[pfn]
						require.True(t, ok, "test premise: kernel #1 wrote the struct page of preserved %v", pfn)
						require.False(t, mm.PageInitialised(pfn))
						require.Equal(t, "page-initialised", violationOf(func() { mm.Page(pfn) }), "MM.Page(%v)", pfn)
						require.Equal(t, "page-initialised", violationOf(func() { mm.PageFolio(pfn) }), "page_folio(%v)", pfn)
						if pfn == head {
							f := physmem.Folio(pfn)
							require.Equal(t, "page-initialised", violationOf(func() { k.FolioTestUptodate(f) }), "folio_test_uptodate(%v)", pfn)
							require.Equal(t, "page-initialised", violationOf(func() { mm.FolioRefCount(f) }), "folio_ref_count(%v)", pfn)
						}
						_, free := mm.FreeBlockAt(pfn)
						require.False(t, free, "%v is free", pfn)
						raw := mm.Memmap.Page(pfn)
						for _, a := range []struct {
							name string
							get  func() any
							was  any
						}{
							{"flags", func() any { return raw.Flags() }, was.flags},
							{"PageTest", func() any { return raw.Test(was.flags) }, true},
							{"refcount", func() any { return raw.RefCount() }, was.refcount},
							{"index", func() any { return raw.Index() }, was.index},
							{"private", func() any { return raw.Private() }, was.private},
						} {
							var v any
							name := violationOf(func() { v = a.get() })
							require.Equal(t, "page-poisoned", name,
								"raw struct page of preserved %v: %s returned %v (kernel #1: %v)", pfn, a.name, v, a.was)
						}
						checked++
					}
				}
			})
			w.kexec()
			require.Equal(t, size/physmem.PageSize, checked, "every preserved frame checked")

			p = w.proc("vmm")
			box = w.openBox(p, "vm1")
			fd = w.mustGet(p, box, "ram")
			w.content(p, fd, 0, size, 11)
			w.check()
		})
	}
}
