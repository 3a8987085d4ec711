package kernel

import (
	"bytes"
	"testing"

	"khosim/uapi"
)

func TestSmoke(t *testing.T) {
	m := bootMachine(t, machineOpts{swap: 64 << 20})
	m.check()
	p := m.task("p", 1000)
	fd, err := p.MemfdCreate("x", uapi.MFD_ALLOW_SEALING)
	must(t, err)
	must(t, p.Ftruncate(fd, 1<<20))
	n, err := p.Pwrite(fd, 100, 10000, pattern(1))
	must(t, err)
	if n != 10000 {
		t.Fatal(n)
	}
	m.check()
	got := readAll(t, p, fd, 0, 1<<20)
	want := make([]byte, 1<<20)
	pattern(1)(want[100:10100], 100)
	if !bytes.Equal(got, want) {
		t.Fatal("content mismatch")
	}
	v, err := p.Mmap(fd, 0, 1<<20, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	must(t, err)
	_, err = p.Store(v, 0, 8192, pattern(2))
	must(t, err)
	m.check()
	must(t, p.Madvise(v, 0, 1<<20, uapi.MADV_PAGEOUT))
	m.check()
	info := ShmemInode(mustFD(t, p, fd))
	if info.Swapped() != 2 {
		t.Fatalf("swapped %d", info.Swapped())
	}
	must(t, p.Ftruncate(fd, 5000))
	m.check()
	must(t, p.Munmap(v))
	p.Exit()
	m.check()
}

func mustFD(tb tester, t *Task, fd int) *File {
	f, err := t.FD(fd)
	must(tb, err)
	return f
}
