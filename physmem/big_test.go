package physmem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"khosim/errno"
)

// vmRSS returns the process's resident set from /proc/self/status, in KiB.
func vmRSS(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	noErr(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			noErr(t, err)
			return kb
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// Test64GiBMachine boots the memory model of a 64 GiB machine on a host
// with less memory: frames and memmap are sparse, so only what is touched
// costs host memory.
//
//	go test ./physmem/ -run Test64GiBMachine -v
func Test64GiBMachine(t *testing.T) {
	if testing.Short() {
		t.Skip("64 GiB machine")
	}
	const size = 64 << 30
	start := vmRSS(t)
	f, err := NewFrames(size)
	noErr(t, err)
	defer f.Close()
	mm, err := NewMM(f, nil)
	noErr(t, err)
	defer mm.Close()
	eq(t, mm.Memmap.Bytes(), uint64(size/PageSize*40), "memmap bytes")

	mb := mm.Memblock
	noErr(t, mb.Reserve(0, 16<<20)) // low memory and the kernel image
	noErr(t, mb.MarkKHOScratch(1<<30, 1<<30))
	mb.SetKHOScratchOnly()
	a, err := mb.PhysAlloc(64<<20, PageSize)
	noErr(t, err)
	isTrue(t, mb.IsKHOScratch(a, 64<<20), "scratch-only allocation at %v outside scratch", a)
	mb.ClearKHOScratchOnly()
	noErr(t, mm.MemblockFreeAll())
	booted := vmRSS(t)
	noErr(t, mm.CheckInvariants())

	// Run a little: 64 MiB of page cache folios written, 40 MiB of kernel
	// pages, then free half of everything.
	var pfns []PFN
	for range 32 {
		f, err := mm.FolioAlloc(GFPHighUserMovable|GFPZero, HPageOrder)
		noErr(t, err)
		mm.Frames.Fill(PFN(f), 1<<HPageOrder, 0x0123456789abcdef)
		pfns = append(pfns, PFN(f))
	}
	for range 10240 {
		pfn, err := mm.AllocPages(GFPKernel, 0)
		noErr(t, err)
		mm.Frames.Frame(pfn)[0] = 1
		pfns = append(pfns, pfn)
	}
	for i, pfn := range pfns {
		if i%2 == 0 {
			mm.PutPage(pfn)
		}
	}
	noErr(t, mm.CheckInvariants())
	end := vmRSS(t)
	t.Logf("64 GiB machine: memmap %d MiB virtual; VmRSS %d MiB at start, %d MiB after memblock_free_all, %d MiB after running and CheckInvariants",
		mm.Memmap.Bytes()>>20, start>>10, booted>>10, end>>10)
	isTrue(t, end-start < 1<<20, "VmRSS grew by %d MiB", (end-start)>>10)
}

// Test16TiBMemmap: a 16 TiB machine (2^32 frames) gets a memmap, of which
// the top 8 KiB, which no 32-bit link can name, are a hole; one frame
// more is refused. Nothing is touched: both mappings are sparse.
func Test16TiBMemmap(t *testing.T) {
	const size = 1 << 44
	f, err := NewFrames(size)
	noErr(t, err)
	defer f.Close()
	mm, err := NewMM(f, nil)
	noErr(t, err)
	defer mm.Close()
	eq(t, mm.Memmap.NumPages(), uint64(1<<32), "struct pages")
	eq(t, regions(mm.Memblock.Memory()), fmt.Sprintf("0x0+%#x", uint64(maxLinkPFN)*PageSize), "memory stops below the last two frames")

	g, err := NewFrames(size + PageSize)
	noErr(t, err)
	defer g.Close()
	_, err = NewMM(g, nil)
	wantErr(t, err, errno.EINVAL)
}
