package scenarios

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"khosim/fault"
)

// exprWorld sets up what an expression can observe: a memfd with pages in
// the page cache, pages on swap, a hole and a fallocated range, an fd with
// a non-zero f_pos, a mapping, and a page_alloc and a slab fault armed to
// fire on their first hit.
const exprWorld = `machine memory=128MiB swap=16MiB seed=3
boot
process p uid=0
p: m = memfd_create("m", MFD_ALLOW_SEALING)
p: ftruncate(m, 1MiB)
p: map = mmap(m, 0, 256KiB, PROT_READ|PROT_WRITE, MAP_SHARED)
p: store(map, 0, 256KiB, rand(3))
p: madvise(map, 64KiB, 128KiB, MADV_PAGEOUT)
p: fallocate(m, 0, 512KiB, 64KiB)
p: lseek(m, 100, SEEK_SET)
p: fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK)
let kept = content(p:m, 0, 4KiB)
fault page_alloc nth=1
fault slab nth=1
`

// TestExpressionsObserveOnly evaluates every expression kind over
// exprWorld and requires the machine to be as it was before: the frame
// counts of every state, the swap slots in use, the armed faults (still
// armed, never fired), f_pos, the page cache (pages on swap stay on swap)
// and the kernel log. docs/scenarios.md promises it ("Reading for an
// expression never faults pages in"), and the fuzzer's oracle relies on
// it. Then the next system call must take the slab fault that was armed
// before the expressions ran.
func TestExpressionsObserveOnly(t *testing.T) {
	exprs := []string{
		`content(p:m, 0, 1MiB) == content(p:m, 0, 1MiB)`,
		`content(p:m, 60KiB, 8KiB) == rand(3)`,
		`content(p:map, 64KiB, 128KiB) == content(p:m, 64KiB, 128KiB)`,
		`hash(p:m, 0, 1MiB) == hash(p:m, 0, 1MiB)`,
		`hash(p:map, 0, 256KiB) == hash(p:m, 0, 256KiB)`,
		`kept == content(p:m, 0, 4KiB)`,
		`size(p:m) == 1MiB`,
		`pos(p:m) == 100`,
		`seals(p:m) == F_SEAL_SHRINK`,
		`refcount(p:m, 0) == 2`,
		`mapcount(p:m, 0) == 1`,
		`fds(p) == fds(p)`,
		`frames(free) != 0`,
		`frames(used) != 0`,
		`frames(slab) != 0`,
		`frames(scratch) == frames(scratch)`,
		`p:m == p:m`,
		`(1 + 2) * 3 == 9`,
	}
	var src strings.Builder
	src.WriteString(exprWorld)
	for _, e := range exprs {
		fmt.Fprintf(&src, "expect %s\n", e)
	}
	// The slab fault armed before the expressions is still there: the inode
	// allocation fails, and shmem_get_inode() turns that into ENOSPC.
	src.WriteString("p: memfd_create(\"n\", 0) -> ENOSPC\n")
	s, err := Parse("pure.scn", []byte(src.String()))
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(s, Options{})
	defer r.closeMachine()
	setup := strings.Count(exprWorld, "\n")
	for _, st := range s.Stmts[:setup] {
		if !r.step(st) {
			t.Fatalf("setup: %v", r.res.Failures)
		}
	}
	for i, st := range s.Stmts[setup : setup+len(exprs)] {
		before := r.observed()
		if !r.step(st) {
			t.Errorf("%s: %v", exprs[i], r.res.Failures)
			continue
		}
		if after := r.observed(); !maps.Equal(before, after) {
			for k, v := range before {
				if after[k] != v {
					t.Errorf("expect %s changed %s: %s -> %s", exprs[i], k, v, after[k])
				}
			}
		}
	}
	if st := s.Stmts[len(s.Stmts)-1]; !r.step(st) {
		t.Errorf("after the expressions: %v", r.res.Failures)
	}
}

// observed is what an expression must not change, as name → value.
func (r *runner) observed() map[string]string {
	k := r.kernel()
	out := map[string]string{
		"swap_free": fmt.Sprint(k.NrSwapPages()),
		"log":       fmt.Sprint(len(k.Log())),
	}
	for state, n := range r.m.FrameCounts() {
		out["frames("+state+")"] = fmt.Sprint(n)
	}
	for _, site := range []fault.Site{fault.PageAlloc, fault.Slab} {
		out["fault "+string(site)] = fmt.Sprintf("armed=%v fired=%d", r.m.Faults().Armed(site), r.m.Faults().Fired(site))
	}
	p := r.procs["p"]
	f, _, err := r.fileOf(p, p.res["m"])
	if err != nil {
		panic(err)
	}
	out["f_pos"] = fmt.Sprint(f.Pos)
	out["page cache"] = cacheSummary(f)
	return out
}
