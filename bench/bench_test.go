package bench

import (
	"fmt"
	"os"
	"testing"
)

// The handover benchmarks: one rig per sub-benchmark (filled once,
// untimed), then b.N timed phases. ns/page counts preserved folios (4 KiB
// pages at order 0, 2 MiB folios at order 9), as the `khosim bench` table
// does; GiB/s is preserved memory per second.

// benchRigs are the rigs of the handover benchmarks: one memfd at each
// order, and many small memfds. The one memfd is 256 MiB unless the
// environment variable KHOSIM_BENCH_SIZE says otherwise (e.g. 4GiB, for a
// profile of the largest row: see docs/performance.md).
var benchRigs = func() []struct {
	name string
	cfg  RigConfig
} {
	size := uint64(256 * MiB)
	if s := os.Getenv("KHOSIM_BENCH_SIZE"); s != "" {
		v, err := ParseSizes(s)
		if err != nil || len(v) != 1 {
			panic(fmt.Sprintf("KHOSIM_BENCH_SIZE=%q: want one size, a multiple of 2MiB (%v)", s, err))
		}
		size = v[0]
	}
	return []struct {
		name string
		cfg  RigConfig
	}{
		{"memfd=" + FormatSize(size) + "/order=0", RigConfig{Files: 1, Size: size, Order: 0, Seed: 1}},
		{"memfd=" + FormatSize(size) + "/order=9", RigConfig{Files: 1, Size: size, Order: MaxOrder, Seed: 1}},
		{"memfds=1024x64KiB/order=0", RigConfig{Files: 1024, Size: 64 * KiB, Order: 0, Seed: 1}},
	}
}()

func newBenchRig(b *testing.B, cfg RigConfig) *Rig {
	b.Helper()
	r, err := NewRig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// reportRig reports ns/page and GiB/s of the rig's preserved memory for
// the timed part of one iteration.
func reportRig(b *testing.B, r *Rig) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns/float64(r.Pages()), "ns/page")
	b.ReportMetric(float64(r.Bytes())/GiB/(ns/1e9), "GiB/s")
}

// BenchmarkSerialize times KHO activation (the fdbox DUMP and COMMIT of
// the sealed box); each iteration is undone by an untimed deactivation.
func BenchmarkSerialize(b *testing.B) {
	for _, c := range benchRigs {
		b.Run(c.name, func(b *testing.B) {
			r := newBenchRig(b, c.cfg)
			b.ResetTimer()
			for range b.N {
				if _, err := r.Activate(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := r.Deactivate(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportRig(b, r)
		})
	}
}

// BenchmarkRestore times the kexec and the new process's restore (open
// the box, FDBOX_UNSEAL, FDBOX_GET_FD) until every memfd is back in a
// process; the reseal and activation before each are untimed.
func BenchmarkRestore(b *testing.B) {
	for _, c := range benchRigs {
		b.Run(c.name, func(b *testing.B) {
			r := newBenchRig(b, c.cfg)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				if i > 0 {
					if _, err := r.Prepare(); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := r.Activate(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := r.Kexec(); err != nil {
					b.Fatal(err)
				}
				if _, err := r.Restore(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := r.CheckUsable(); err != nil {
				b.Fatal(err)
			}
			reportRig(b, r)
		})
	}
}

// BenchmarkHandover times the whole blackout: activate, kexec, restore.
func BenchmarkHandover(b *testing.B) {
	for _, c := range benchRigs {
		b.Run(c.name, func(b *testing.B) {
			r := newBenchRig(b, c.cfg)
			b.ResetTimer()
			for i := range b.N {
				if i > 0 {
					b.StopTimer()
					if _, err := r.Prepare(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if _, _, _, _, err := r.Cycle(); err != nil {
					b.Fatal(err)
				}
			}
			reportRig(b, r)
		})
	}
}

// BenchmarkCopyTwice is the baseline on its own: copy-out and copy-in of
// 256 MiB of resident memory through a touched buffer of the same size.
func BenchmarkCopyTwice(b *testing.B) {
	for _, size := range []uint64{256 * MiB} {
		b.Run(fmt.Sprintf("bytes=%s", FormatSize(size)), func(b *testing.B) {
			src, err := NewCopyBuffer(size)
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			dst, err := NewCopyBuffer(CopyBufferSize(size))
			if err != nil {
				b.Fatal(err)
			}
			defer dst.Close()
			b.SetBytes(int64(2 * size))
			b.ResetTimer()
			for range b.N {
				CopyTwice([][]byte{src.Bytes()}, dst.Bytes())
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(ns/float64(size/PageSize), "ns/page")
			b.ReportMetric(float64(size)/GiB/(ns/1e9), "GiB/s")
		})
	}
}
