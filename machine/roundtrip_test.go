package machine

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/fdt"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
	"khosim/uapi"
)

// TestRoundTripBasic is the RFC cover letter's demo at a small size: a
// memfd goes into a sealed box, KHO activates, kexec, and the new kernel's
// box holds a memfd with the same bytes, size and position.
func TestRoundTripBasic(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "")
	vmm := w.proc("vmm")
	ram := w.memfd(vmm, "guest-ram", uapi.MFD_ALLOW_SEALING)
	require.NoError(t, vmm.Ftruncate(ram, 8*MiB))
	w.pwrite(vmm, ram, 0, 8*MiB, 7)
	_, err := vmm.Lseek(ram, 12345, uapi.SEEK_SET)
	require.NoError(t, err)
	before := w.hash(vmm, ram, 0, 8*MiB)
	box := w.createBox(vmm, "vm1")
	w.put(vmm, box, ram, "ram")
	w.seal(vmm, box)
	_, err = w.get(vmm, box, "ram")
	wantErr(t, 16 /* EBUSY */, err)
	w.check()

	require.NoError(t, w.m.KHOActivate())
	w.check()
	require.Equal(t, uint64(8*MiB/physmem.PageSize), w.m.Stats().PreservedPages)
	w.kexec()
	require.True(t, w.m.Stats().HandedOver)
	require.Equal(t, 2048, w.m.Stats().Incoming.Claimed)

	vmm2 := w.proc("vmm2")
	box2 := w.openBox(vmm2, "vm1")
	ram2 := w.mustGet(vmm2, box2, "ram")
	require.Equal(t, int64(8*MiB), w.size(vmm2, ram2))
	require.Equal(t, int64(12345), w.pos(vmm2, ram2))
	w.content(vmm2, ram2, 0, 8*MiB, 7)
	require.Equal(t, before, w.hash(vmm2, ram2, 0, 8*MiB))
	// The restored folios have the references a clean boot gives them:
	// the page cache's, nothing else.
	_, refs, maps, ok := w.k().FolioAt(w.file(vmm2, ram2), 0)
	require.True(t, ok)
	require.Equal(t, 1, refs)
	require.Equal(t, 0, maps)
	require.Equal(t, int64(1), w.file(vmm2, ram2).Refs()-0) // the fd table's
	w.check()
}

type memfdSpec struct {
	box, name string
	size      int64
	seed      uint64
	pos       int64
	seals     uint64
}

// TestManyMemfdsInSeveralBoxes: several boxes of several memfds of odd
// sizes, positions and seals; an unsealed box stays behind.
func TestManyMemfdsInSeveralBoxes(t *testing.T) {
	w := newWorld(t, Config{Memory: 512 * MiB}, "")
	p := w.proc("p")
	var specs []memfdSpec
	for b := range 3 {
		for i := range 5 {
			specs = append(specs, memfdSpec{
				box: fmt.Sprintf("box%d", b), name: fmt.Sprintf("fd%d", i),
				size: int64(b*3*MiB + i*777_777 + 1), seed: uint64(100*b + i + 1),
				pos:   int64(i * 4099),
				seals: []uint64{0, uapi.F_SEAL_SHRINK, uapi.F_SEAL_GROW | uapi.F_SEAL_SHRINK, uapi.F_SEAL_WRITE, uapi.F_SEAL_SEAL | uapi.F_SEAL_GROW}[i],
			})
		}
	}
	// An empty memfd (no folios: empty "mem" and "indices").
	specs = append(specs, memfdSpec{box: "box0", name: "empty", seed: 1, pos: 5})
	boxes := map[string]int{}
	for _, s := range specs {
		if _, ok := boxes[s.box]; !ok {
			boxes[s.box] = w.createBox(p, s.box)
		}
		fd := w.memfd(p, "m-"+s.name, uapi.MFD_ALLOW_SEALING)
		require.NoError(t, p.Ftruncate(fd, s.size))
		w.pwrite(p, fd, 0, s.size, s.seed)
		_, err := p.Lseek(fd, s.pos, uapi.SEEK_SET)
		require.NoError(t, err)
		if s.seals != 0 {
			_, err := p.Fcntl(fd, uapi.F_ADD_SEALS, s.seals)
			require.NoError(t, err)
		}
		w.put(p, boxes[s.box], fd, s.name)
	}
	// An unsealed box with a memfd is not handed over.
	loose := w.createBox(p, "loose")
	lfd := w.memfd(p, "loose", 0)
	w.pwrite(p, lfd, 0, 100*KiB, 9)
	w.put(p, loose, lfd, "x")
	for _, b := range boxes {
		w.seal(p, b)
	}
	require.NoError(t, w.m.KHOActivate())
	w.check()
	w.kexec()

	p2 := w.proc("p2")
	require.Nil(t, w.m.FDBox().Box("loose"))
	_, err := p2.Open("/dev/fdbox/loose", uapi.O_RDWR)
	require.Error(t, err)
	opened := map[string]int{}
	for _, s := range specs {
		if _, ok := opened[s.box]; !ok {
			opened[s.box] = w.openBox(p2, s.box)
		}
		fd := w.mustGet(p2, opened[s.box], s.name)
		require.Equal(t, s.size, w.size(p2, fd), s.name)
		require.Equal(t, s.pos, w.pos(p2, fd), s.name)
		want := s.seals | uapi.F_SEAL_EXEC // MFD_NOEXEC_SEAL
		require.Equal(t, want, w.seals(p2, fd), s.name)
		w.content(p2, fd, 0, s.size, s.seed)
		require.Equal(t, "memfd:m-"+s.name, w.file(p2, fd).Name)
		require.Equal(t, uint32(0o100666), w.file(p2, fd).Inode.Mode, "MFD_NOEXEC_SEAL: no x bits")
		require.True(t, kernel.IsMemfd(w.file(p2, fd)))
	}
	w.check()
}

// TestHugeFolios: with transparent_hugepage_shmem=always the 2 MiB folios
// are preserved whole (kho_mem size 2 MiB) and come back as 2 MiB folios.
func TestHugeFolios(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "always")
	p := w.proc("p")
	fd := w.memfd(p, "thp", 0)
	const size = 16*MiB + 5*KiB // 8 huge folios and a tail
	require.NoError(t, p.Ftruncate(fd, size))
	w.pwrite(p, fd, 0, size, 3)
	require.Equal(t, physmem.HPageOrder, w.folioOrder(p, fd, 0))
	box := w.createBox(p, "b")
	w.put(p, box, fd, "thp")
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	blob, err := w.m.HandoverFDT()
	require.NoError(t, err)
	f, err := fdt.Open(blob)
	require.NoError(t, err)
	mems := slices.Collect(kexec.CollectMemProps(f, func(string, error) {}))
	huge := 0
	for _, m := range mems {
		if m.Size == 2*MiB {
			huge++
		}
	}
	require.Equal(t, 8, huge)
	w.kexec()
	p2 := w.proc("p2")
	b2 := w.openBox(p2, "b")
	fd2 := w.mustGet(p2, b2, "thp")
	for i := uint64(0); i < 8; i++ {
		require.Equal(t, physmem.HPageOrder, w.folioOrder(p2, fd2, i*512), "folio %d", i)
		_, refs, _, _ := w.k().FolioAt(w.file(p2, fd2), i*512)
		require.Equal(t, 512, refs)
	}
	w.content(p2, fd2, 0, size, 3)
	w.check()
}

// TestSwappedPages: pages pushed out to swap are swapped in at
// activation and handed over.
func TestSwappedPages(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB, Swap: 64 * MiB}, "")
	p := w.proc("p")
	fd := w.memfd(p, "s", 0)
	require.NoError(t, p.Ftruncate(fd, 4*MiB))
	w.pwrite(p, fd, 0, 4*MiB, 11)
	v, err := p.Mmap(fd, 0, 4*MiB, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	require.NoError(t, err)
	_, err = p.Load(v, 0, 4*MiB, func([]byte, int64) error { return nil })
	require.NoError(t, err)
	require.NoError(t, p.Madvise(v, MiB, 2*MiB, uapi.MADV_PAGEOUT))
	require.NoError(t, p.Munmap(v))
	info := kernel.ShmemInode(w.file(p, fd))
	require.Equal(t, int64(512), info.Swapped())
	box := w.createBox(p, "b")
	w.put(p, box, fd, "s")
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	require.Zero(t, info.Swapped())
	w.check()
	w.kexec()
	p2 := w.proc("p2")
	fd2 := w.mustGet(p2, w.openBox(p2, "b"), "s")
	w.content(p2, fd2, 0, 4*MiB, 11)
	w.check()
}

// TestFallocatedRanges: fallocated, never written folios are preserved
// !uptodate, read as zeros after kexec, and stay !uptodate; KEEP_SIZE
// allocations beyond i_size come back too.
func TestFallocatedRanges(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "")
	p := w.proc("p")
	fd := w.memfd(p, "fa", 0)
	require.NoError(t, p.Fallocate(fd, 0, 0, 2*MiB))
	w.pwrite(p, fd, 0, 64*KiB, 5)
	require.NoError(t, p.Fallocate(fd, uapi.FALLOC_FL_KEEP_SIZE, 2*MiB, 1*MiB))
	// Scribble over a !uptodate folio's frame: it must still read as
	// zeros after kexec, as before.
	pfn, _, _, ok := w.k().FolioAt(w.file(p, fd), 100)
	require.True(t, ok)
	require.False(t, w.k().FolioTestUptodate(physmem.Folio(pfn)))
	w.k().MM.Frames.Fill(pfn, 1, 0x4141414141414141)
	box := w.createBox(p, "b")
	w.put(p, box, fd, "fa")
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	w.kexec()
	p2 := w.proc("p2")
	fd2 := w.mustGet(p2, w.openBox(p2, "b"), "fa")
	require.Equal(t, int64(2*MiB), w.size(p2, fd2))
	w.content(p2, fd2, 0, 64*KiB, 5)
	w.content(p2, fd2, 64*KiB, 2*MiB-64*KiB, 0)
	for _, idx := range []uint64{100, 511, 512, 767} {
		pfn, _, _, ok := w.k().FolioAt(w.file(p2, fd2), idx)
		require.True(t, ok, "index %d", idx)
		require.False(t, w.k().FolioTestUptodate(physmem.Folio(pfn)), "index %d", idx)
	}
	pfn, _, _, _ = w.k().FolioAt(w.file(p2, fd2), 0)
	require.True(t, w.k().FolioTestUptodate(physmem.Folio(pfn)))
	info := kernel.ShmemInode(w.file(p2, fd2))
	require.Equal(t, int64(768), info.Alloced())
	w.check()
}

// TestDeactivateRestoresEverything: after activate + deactivate every
// boxed file is exactly as before (contents, size, pos, seals, refcounts,
// block accounting, the very folios), the driver is usable again, and a
// second activation + kexec works.
func TestDeactivateRestoresEverything(t *testing.T) {
	for _, huge := range []string{"never", "always"} {
		t.Run(huge, func(t *testing.T) {
			w := newWorld(t, Config{Memory: 256 * MiB, Swap: 32 * MiB}, huge)
			p := w.proc("p")
			box := w.createBox(p, "b")
			for i, size := range []int64{5*MiB + 3, 4096, 0, 3 * MiB} {
				fd := w.memfd(p, fmt.Sprintf("f%d", i), uapi.MFD_ALLOW_SEALING)
				require.NoError(t, p.Ftruncate(fd, size))
				w.pwrite(p, fd, 0, size/2, uint64(i+1))
				if size > 2*MiB {
					require.NoError(t, p.Fallocate(fd, uapi.FALLOC_FL_KEEP_SIZE, size, 2*MiB))
				}
				_, err := p.Lseek(fd, int64(i)*10, uapi.SEEK_SET)
				require.NoError(t, err)
				_, err = p.Fcntl(fd, uapi.F_ADD_SEALS, uapi.F_SEAL_GROW)
				require.NoError(t, err)
				w.put(p, box, fd, fmt.Sprintf("f%d", i))
			}
			w.seal(p, box)
			before := w.snapshot()
			free := w.m.FrameCounts()["free"]
			require.NoError(t, w.m.KHOActivate())
			w.check()
			wantErr(t, 16 /* EBUSY */, w.m.KHOActivate())
			require.NoError(t, w.m.KHODeactivate())
			w.check()
			wantErr(t, 22 /* EINVAL */, w.m.KHODeactivate())
			requireSameFiles(t, before, w.snapshot())
			require.Equal(t, free, w.m.FrameCounts()["free"])
			require.False(t, w.m.FDBox().Frozen())
			// The box works again: unseal, take a file out, put it back.
			w.unseal(p, box)
			fd := w.mustGet(p, box, "f0")
			w.content(p, fd, 0, (5*MiB+3)/2, 1)
			w.put(p, box, fd, "f0")
			w.seal(p, box)
			// And the handover still works.
			require.NoError(t, w.m.KHOActivate())
			w.kexec()
			p2 := w.proc("p2")
			b2 := w.openBox(p2, "b")
			fd2 := w.mustGet(p2, b2, "f0")
			w.content(p2, fd2, 0, (5*MiB+3)/2, 1)
			w.check()
		})
	}
}

// TestRebootCarriesNothing: a cold reboot after activation hands nothing
// over; the frames keep their bytes but the new kernel reserves none.
func TestRebootCarriesNothing(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "")
	p := w.proc("p")
	fd := w.memfd(p, "r", 0)
	w.pwrite(p, fd, 0, MiB, 1)
	box := w.createBox(p, "b")
	w.put(p, box, fd, "r")
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	require.NoError(t, w.m.Reboot())
	w.check()
	require.Nil(t, w.m.KHO().Handover())
	require.Empty(t, w.m.FDBox().Boxes())
	c := w.m.FrameCounts()
	require.Zero(t, c["preserved"])
	require.Equal(t, c["total"], c["free"]+c["used"]+c["slab"]+c["tracker"]+c["reserved"])
	_, err := w.proc("q").Open("/dev/fdbox/b", uapi.O_RDWR)
	require.Error(t, err)
}

// TestKexecWithoutKHO: a kexec while KHO is idle hands nothing over.
func TestKexecWithoutKHO(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "")
	p := w.proc("p")
	fd := w.memfd(p, "r", 0)
	w.pwrite(p, fd, 0, MiB, 1)
	box := w.createBox(p, "b")
	w.put(p, box, fd, "r")
	w.seal(p, box)
	w.kexec()
	require.False(t, w.m.Stats().HandedOver)
	require.Nil(t, w.m.KHO().GetFDT())
	require.Empty(t, w.m.FDBox().Boxes())
	require.Greater(t, w.m.Stats().ScrubbedFrames, uint64(256))
}

// TestThreeKexecsInARow: the same data survives three kexecs, each kernel
// activating its own FDT; each hop also adds a file.
func TestThreeKexecsInARow(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "always")
	p := w.proc("p")
	fd := w.memfd(p, "hop0", 0)
	require.NoError(t, p.Ftruncate(fd, 3*MiB+1))
	w.pwrite(p, fd, 0, 3*MiB+1, 42)
	box := w.createBox(p, "b")
	w.put(p, box, fd, "hop0")
	w.seal(p, box)
	for hop := 1; hop <= 3; hop++ {
		require.NoError(t, w.m.KHOActivate())
		w.kexec()
		require.Equal(t, hop+1, w.k().BootID)
		p = w.proc(fmt.Sprintf("p%d", hop))
		box = w.openBox(p, "b")
		for h := 0; h < hop; h++ {
			fd := w.mustGet(p, box, fmt.Sprintf("hop%d", h))
			if h == 0 {
				w.content(p, fd, 0, 3*MiB+1, 42)
			} else {
				w.content(p, fd, 0, int64(h)*MiB, uint64(h))
			}
			w.put(p, box, fd, fmt.Sprintf("hop%d", h))
		}
		nfd := w.memfd(p, fmt.Sprintf("hop%d", hop), 0)
		w.pwrite(p, nfd, 0, int64(hop)*MiB, uint64(hop))
		w.put(p, box, nfd, fmt.Sprintf("hop%d", hop))
		w.seal(p, box)
		w.check()
	}
	require.Equal(t, 3, w.m.Stats().Kexecs)
}

// TestScratchMigration: a boxed memfd whose folios fell into KHO scratch
// (normal memory was full) is migrated out of scratch at activation, and
// the new kernel, which allocates its memmap in scratch, gets it intact.
func TestScratchMigration(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "")
	p := w.proc("p")
	// The victim's page-cache nodes are kernel memory, which scratch
	// never holds: reserve its indices while normal memory has room.
	fd := w.memfd(p, "victim", 0)
	for i := uint64(0); i < 1024; i++ {
		require.NoError(t, kernel.ShmemInode(w.file(p, fd)).Mapping().Reserve(i, 0))
	}
	room := w.memfd(p, "room", 0)
	w.pwrite(p, room, 0, 16*physmem.PageSize, 2)
	filler := w.memfd(p, "filler", 0)
	free := int64(w.k().MM.Zone.NrFreePagesOf(physmem.MigrateMovable)) * physmem.PageSize
	require.NoError(t, p.Ftruncate(filler, free))
	w.pwrite(p, filler, 0, free, 1) // normal memory is full now
	w.pwrite(p, fd, 0, 4*MiB, 77)   // lands in scratch (MIGRATE_CMA)
	victim := w.file(p, fd)
	inScratch := func() int {
		n := 0
		for i := uint64(0); i < 1024; i++ {
			pfn, _, _, _ := w.k().FolioAt(victim, i)
			if w.k().MM.Zone.PageblockMigratetype(pfn) == physmem.MigrateCMA {
				n++
			}
		}
		return n
	}
	require.Equal(t, 1024, inScratch())
	// The box's records (struct fdbox, struct fdbox_fd) are kernel memory,
	// which scratch never holds: give normal memory back a little room.
	require.NoError(t, p.Close(room))
	box := w.createBox(p, "b")
	w.put(p, box, fd, "victim")
	w.seal(p, box)
	// Nowhere to migrate to: activation fails, the file is intact.
	before := w.snapshot()
	wantErr(t, 12 /* ENOMEM */, w.m.KHOActivate())
	requireSameFiles(t, before, w.snapshot())
	w.check()
	// Free normal memory and try again.
	require.NoError(t, p.Close(filler))
	require.NoError(t, w.m.KHOActivate())
	w.check()
	require.Zero(t, inScratch())
	w.kexec()
	p2 := w.proc("p2")
	fd2 := w.mustGet(p2, w.openBox(p2, "b"), "victim")
	w.content(p2, fd2, 0, 4*MiB, 77)
	w.check()
}

// TestUnpreservableFileSkipped: a file kind whose handler has no KHOWrite
// is skipped with a message ("won't be saved across kexec") and the rest
// of its box is handed over.
func TestUnpreservableFileSkipped(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "")
	// A handler for /dev/null files, without KHO methods.
	require.NoError(t, w.m.FDBox().RegisterHandler(fdboxHandlerForDevNull()))
	p := w.proc("p")
	null := w.open(p, "/dev/null")
	fd := w.memfd(p, "m", 0)
	w.pwrite(p, fd, 0, 64*KiB, 8)
	box := w.createBox(p, "b")
	w.put(p, box, null, "null")
	w.put(p, box, fd, "m")
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	require.True(t, w.logHas("box 'b' FD 'null' has no KHO method"))
	w.kexec()
	p2 := w.proc("p2")
	b2 := w.openBox(p2, "b")
	_, err := w.get(p2, b2, "null")
	wantErr(t, 2 /* ENOENT */, err)
	w.content(p2, w.mustGet(p2, b2, "m"), 0, 64*KiB, 8)
}

// TestHandoverLayout checks the FDT against the RFC's layout and, when
// dtc is installed, that dtc reads it.
func TestHandoverLayout(t *testing.T) {
	fx := newFixture(t, Config{})
	require.NoError(t, fx.m.KHOActivate())
	blob, err := fx.m.HandoverFDT()
	require.NoError(t, err)
	f, err := fdt.Open(blob)
	require.NoError(t, err)
	compat := func(path string) string {
		t.Helper()
		off, err := f.PathOffset(path)
		require.NoError(t, err, path)
		s, err := f.GetPropString(off, "compatible")
		require.NoError(t, err)
		return s
	}
	for path, want := range map[string]string{
		"/": "kho-v1", "/fdbox": "fdbox-v1", "/fdbox/vm1": "fdbox,box-v1", "/fdbox/vm2": "fdbox,box-v1",
		"/fdbox/vm1/ram": "fdbox,memfd-v1", "/fdbox/vm1/state": "fdbox,memfd-v1",
	} {
		require.Equal(t, want, compat(path), path)
	}
	// The storage node is shmem-v3, named "shmem": reachable by path.
	ram, err := f.PathOffset("/fdbox/vm1/ram")
	require.NoError(t, err)
	store, err := f.FirstSubnode(ram)
	require.NoError(t, err)
	name, err := f.GetName(store)
	require.NoError(t, err)
	require.Equal(t, "shmem", name)
	byPath, err := f.PathOffset("/fdbox/vm1/ram/shmem")
	require.NoError(t, err)
	require.Equal(t, store, byPath)
	s, err := f.GetPropString(store, "compatible")
	require.NoError(t, err)
	require.Equal(t, "fdbox,shmem-v3", s)
	size, err := f.GetPropLE64(store, "size")
	require.NoError(t, err)
	require.Equal(t, uint64(4*MiB+3*KiB), size)

	dtc, err := exec.LookPath("dtc")
	if err != nil {
		t.Skip("dtc not installed")
	}
	cmd := exec.Command(dtc, "-I", "dtb", "-O", "dts", "-")
	cmd.Stdin = bytes.NewReader(blob)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), `compatible = "fdbox,shmem-v3";`)
}

// TestOldHandoverFDTPoisoned: the FDT a kernel was handed is data it
// keeps for its whole life (kho_get_fdt); at its own kexec those frames
// are scrubbed with the poison pattern like any other data, not discarded
// like the boot reservations that hold none. HandoverFDT still returns
// the FDT the last handover carried.
func TestOldHandoverFDTPoisoned(t *testing.T) {
	w := newWorld(t, Config{Memory: 256 * MiB}, "")
	p := w.proc("p")
	fd := w.memfd(p, "r", 0)
	w.pwrite(p, fd, 0, MiB, 1)
	box := w.createBox(p, "b")
	w.put(p, box, fd, "r")
	w.seal(p, box)
	require.NoError(t, w.m.KHOActivate())
	addr, blob, ok := w.m.KHO().FDT()
	require.True(t, ok)
	want := bytes.Clone(blob)
	w.kexec()
	got, err := w.m.HandoverFDT()
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, want[:64], w.m.Frames().Frame(addr.PFN())[:64], "kept by the kernel it was handed to")

	w.kexec() // KHO idle: nothing handed over
	require.False(t, w.m.Stats().HandedOver)
	poison := make([]byte, 8)
	for i := range poison {
		poison[i] = byte(kexec.PoisonPattern >> (8 * i))
	}
	require.Equal(t, poison, w.m.Frames().Frame(addr.PFN())[:8], "an old FDT is data: poisoned")
	got, err = w.m.HandoverFDT()
	require.NoError(t, err)
	require.Equal(t, want, got, "the last handover's FDT, copied before the scrub")
}
