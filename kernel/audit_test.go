package kernel

import (
	"strings"
	"testing"

	"khosim/invariant"
	"khosim/physmem"
	"khosim/uapi"
)

// TestCheckInvariantsDetects breaks each invariant the audit owns and
// checks that it is reported, with the state behind it.
func TestCheckInvariantsDetects(t *testing.T) {
	type fixture struct {
		m    *machine
		p    *Task
		f    *File
		info *ShmemInodeInfo
		v    *VMA
	}
	setup := func(t *testing.T) *fixture {
		m := bootMachine(t, machineOpts{swap: 16 << 20})
		p := m.task("p", 1000)
		fd, err := p.MemfdCreate("x", 0)
		must(t, err)
		_, err = p.Pwrite(fd, 0, 4*4096, pattern(1))
		must(t, err)
		f := mustFD(t, p, fd)
		v, err := p.Mmap(fd, 0, 4*4096, uapi.PROT_READ, uapi.MAP_SHARED)
		must(t, err)
		_, err = p.Load(v, 0, 4096, nil)
		must(t, err)
		must(t, p.Madvise(v, 3*4096, 4096, madvPopulateRead))
		must(t, p.Madvise(v, 3*4096, 4096, uapi.MADV_PAGEOUT))
		m.check()
		return &fixture{m, p, f, ShmemInode(f), v}
	}
	folio0 := func(x *fixture) physmem.Folio {
		pfn, _, _, _ := x.m.k.FolioAt(x.f, 0)
		return physmem.Folio(pfn)
	}
	for _, c := range []struct {
		name, want, dump string
		breakIt          func(x *fixture)
	}{
		{"leaked folio", "frame-owner", "holders: none", func(x *fixture) {
			_, err := x.m.k.MM.FolioAlloc(physmem.GFPKernel, 0)
			must(t, err)
		}},
		{"extra folio reference", "folio-refcount", "page cache of inode", func(x *fixture) { x.m.k.MM.FolioGet(folio0(x)) }},
		{"owner over-reports", "folio-refcount", "liar: 1", func(x *fixture) {
			f := folio0(x)
			x.m.k.RegisterRefOwner("liar", func(v RefVisitor) { v.Folio(f.PFN(), 1, "liar") })
		}},
		{"reference on a free page", "folio-ref-owner", "", func(x *fixture) {
			x.m.k.RegisterRefOwner("liar", func(v RefVisitor) { v.Folio(physmem.PFN(x.m.k.MM.Frames.NumFrames()-1), 1, "liar") })
		}},
		{"file reference leak", "file-refcount", "fd table of task", func(x *fixture) { x.f.Get() }},
		{"mapcount", "page-mapcount", "page tables of task", func(x *fixture) { x.m.k.MM.Page(folio0(x).PFN()).AddMapCount(1) }},
		{"alloced", "shmem-accounting", "alloced", func(x *fixture) { x.info.alloced++ }},
		{"used blocks", "shmem-used-blocks", "used_blocks", func(x *fixture) { x.info.sb.usedBlocks++ }},
		{"swap map", "swap-map", "slots", func(x *fixture) { x.m.k.swap.swapMap[100] = 1 }},
		{"i_mmap_writable", "i-mmap-writable", "", func(x *fixture) { x.info.mmapWritable = 3 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := setup(t)
			c.breakIt(x)
			err := x.m.k.CheckInvariants()
			v, ok := err.(*invariant.Violation)
			if !ok || v.Invariant != c.want {
				t.Fatalf("got %v, want the %s violation", err, c.want)
			}
			if !strings.Contains(v.Dump, c.dump) {
				t.Fatalf("dump lacks %q:\n%s", c.dump, v.Dump)
			}
		})
	}
}

// TestRefOwnerFrames checks that frames an owner claims need no folio
// references to be accounted for.
func TestRefOwnerFrames(t *testing.T) {
	m := bootMachine(t, machineOpts{})
	f, err := m.k.MM.FolioAlloc(physmem.GFPKernel, 2)
	must(t, err)
	m.k.RegisterRefOwner("fdt", func(v RefVisitor) { v.Frames(f.PFN(), 4, "kho fdt") })
	m.check()
}
