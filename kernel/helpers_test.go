package kernel

import (
	"fmt"
	"testing"

	"khosim/fault"
	"khosim/physmem"
	"khosim/uapi"
)

// machine is a booted test machine.
type machine struct {
	tb     testing.TB
	frames *physmem.Frames
	swap   *SwapDevice
	faults *fault.Injector
	k      *Kernel
	// slabBase is frames(slab) right after boot: the swap map, if any.
	slabBase uint64
}

// machineOpts configure bootMachine.
type machineOpts struct {
	mem     uint64 // bytes of RAM (default 256 MiB)
	swap    uint64 // bytes of swap (0: none)
	cmdline string
}

// bootMachine cold-boots a kernel on a fresh machine.
func bootMachine(tb testing.TB, o machineOpts) *machine {
	tb.Helper()
	if o.mem == 0 {
		o.mem = 256 << 20
	}
	frames, err := physmem.NewFrames(o.mem)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = frames.Close() })
	m := &machine{tb: tb, frames: frames, faults: fault.New()}
	if o.swap != 0 {
		if m.swap, err = NewSwapDevice(o.swap); err != nil {
			tb.Fatal(err)
		}
	}
	m.k, err = Boot(Hardware{Frames: frames, Swap: m.swap, Faults: m.faults}, BootParams{BootID: 1, Cmdline: o.cmdline})
	if err != nil {
		tb.Fatal(err)
	}
	m.slabBase = m.k.FrameCounts().Slab
	tb.Cleanup(func() {
		if !m.k.Gone() {
			m.k.Poison("test over")
		}
	})
	return m
}

// task starts a process.
func (m *machine) task(name string, uid uint32) *Task {
	caps := uint64(0)
	if uid == 0 {
		caps = uapi.CapAll
	}
	return m.k.NewTask(name, Cred{UID: uid, Caps: caps})
}

// leak describes the frames that are neither free nor the kernel's own
// since boot, "" if there are none: once kmem_cache_shrink gave the empty
// slabs back, every managed frame is free but frames(slab) at its boot
// value.
func (m *machine) leak() string {
	m.k.MM.KmemCacheShrink()
	c := m.k.FrameCounts()
	if c.Free+m.slabBase == m.k.MM.Zone.ManagedPages() && c.Slab == m.slabBase {
		return ""
	}
	return fmt.Sprintf("%d of %d managed frames free, slab %d (boot: %d): leaked", c.Free, m.k.MM.Zone.ManagedPages(), c.Slab, m.slabBase)
}

// check fails the test if the kernel's audit finds a broken invariant.
func (m *machine) check() {
	m.tb.Helper()
	if err := m.k.CheckInvariants(); err != nil {
		m.tb.Fatalf("invariants: %v", err)
	}
}

// pattern is a DataSource whose byte at offset o depends on (seed, o).
func pattern(seed byte) DataSource {
	return func(dst []byte, off int64) {
		for i := range dst {
			dst[i] = patternByte(seed, off+int64(i))
		}
	}
}

func patternByte(seed byte, o int64) byte {
	x := uint64(o)*0x9E3779B97F4A7C15 + uint64(seed)*0x632BE59BD9B4E019
	x ^= x >> 29
	return byte(x) | 1 // never zero, so holes are visible
}

// readAll returns n bytes of fd at off via pread.
func readAll(tb tester, t *Task, fd int, off, n int64) []byte {
	tb.Helper()
	out := make([]byte, 0, n)
	got, err := t.Pread(fd, off, n, func(src []byte, o int64) error {
		if o != off+int64(len(out)) {
			tb.Fatalf("sink got offset %d, want %d", o, off+int64(len(out)))
		}
		out = append(out, src...)
		return nil
	})
	if err != nil {
		tb.Fatalf("pread(%d, %d, %d): %v", fd, off, n, err)
	}
	if got != int64(len(out)) {
		tb.Fatalf("pread returned %d but handed %d bytes", got, len(out))
	}
	return out
}

// tester is what the helpers need of *testing.T and *rapid.T.
type tester interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func must(tb tester, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
