package kernel

import (
	"syscall"
	"testing"
	"time"

	"khosim/physmem"
)

// The data-path benchmarks: 1 GiB through a memfd on a 2 GiB machine,
// at order 0 and with 2 MiB folios (transparent_hugepage_shmem=always).
//
//	go test ./kernel/ -run '^$' -bench . -benchtime 5x
//
// pwrite and pread report throughput through b.SetBytes (the MB/s
// column); truncate reports ns/page. Each also reports cpu-ns/page, the
// process's CPU time (getrusage), which shared machines do not inflate.
// Targets: pwrite >= 2 GiB/s, truncate <= 150 ns/page at order 0.
//
// Every benchmark writes the file once before timing, so that the host
// has committed the frames and the memmap: the first touch of host memory
// is the host's cost, not the simulated kernel's.

const (
	benchFile  = 1 << 30
	benchPages = benchFile / physmem.PageSize
)

// benchSource fills a page-sized stamp per page: the benchmark measures
// the kernel, not a data generator.
func benchSource(dst []byte, off int64) {
	for i := 0; i < len(dst); i += physmem.PageSize {
		dst[i] = byte((off + int64(i)) >> physmem.PageShift)
	}
}

// cpuClock measures the process's CPU time between start and stop.
type cpuClock struct{ total, started time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuClock) start() { c.started = cpuNow() }
func (c *cpuClock) stop()  { c.total += cpuNow() - c.started }

func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(c.total.Nanoseconds())/float64(b.N)/benchPages, "cpu-ns/page")
}

func benchMachine(b *testing.B, huge bool) (*machine, *Task) {
	cmdline := ""
	if huge {
		cmdline = "transparent_hugepage_shmem=always"
	}
	m := bootMachine(b, machineOpts{mem: 2 << 30, cmdline: cmdline})
	p := m.task("bench", 0)
	fd := benchFill(b, p) // warm the host's memory
	must(b, p.Close(fd))
	return m, p
}

// benchFill creates a memfd holding benchFile bytes.
func benchFill(b *testing.B, p *Task) int {
	fd, err := p.MemfdCreate("bench", 0)
	must(b, err)
	if n, err := p.Pwrite(fd, 0, benchFile, benchSource); err != nil || n != benchFile {
		b.Fatalf("pwrite: %d, %v", n, err)
	}
	return fd
}

func benchPwrite(b *testing.B, huge bool) {
	m, p := benchMachine(b, huge)
	b.SetBytes(benchFile)
	var cpu cpuClock
	for b.Loop() {
		cpu.start()
		fd := benchFill(b, p)
		cpu.stop()
		b.StopTimer()
		must(b, p.Close(fd))
		b.StartTimer()
	}
	cpu.report(b)
	m.check()
}

func BenchmarkPwrite1GiB(b *testing.B)     { benchPwrite(b, false) }
func BenchmarkPwrite1GiBHuge(b *testing.B) { benchPwrite(b, true) }

func benchPread(b *testing.B, huge bool) {
	_, p := benchMachine(b, huge)
	fd := benchFill(b, p)
	buf := make([]byte, 2<<20) // the user buffer a read copies into
	b.SetBytes(benchFile)
	var cpu cpuClock
	for b.Loop() {
		cpu.start()
		n, err := p.Pread(fd, 0, benchFile, func(src []byte, off int64) error {
			for len(src) > 0 {
				src = src[copy(buf, src):]
			}
			return nil
		})
		cpu.stop()
		if err != nil || n != benchFile {
			b.Fatalf("pread: %d, %v", n, err)
		}
	}
	cpu.report(b)
}

func BenchmarkPread1GiB(b *testing.B)     { benchPread(b, false) }
func BenchmarkPread1GiBHuge(b *testing.B) { benchPread(b, true) }

func benchTruncate(b *testing.B, huge bool) {
	m, p := benchMachine(b, huge)
	var cpu cpuClock
	for b.Loop() {
		b.StopTimer()
		fd := benchFill(b, p)
		b.StartTimer()
		cpu.start()
		must(b, p.Ftruncate(fd, 0))
		cpu.stop()
		b.StopTimer()
		must(b, p.Close(fd))
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchPages, "ns/page")
	cpu.report(b)
	m.check()
}

func BenchmarkTruncate1GiB(b *testing.B)     { benchTruncate(b, false) }
func BenchmarkTruncate1GiBHuge(b *testing.B) { benchTruncate(b, true) }

// BenchmarkCheckInvariants1GiB times the audit behind `expect invariants`
// with a 1 GiB memfd on a 2 GiB machine.
func BenchmarkCheckInvariants1GiB(b *testing.B) {
	m, p := benchMachine(b, false)
	benchFill(b, p)
	for b.Loop() {
		must(b, m.k.CheckInvariants())
	}
}
