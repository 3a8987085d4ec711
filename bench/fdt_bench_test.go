package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/zeebo/xxh3"

	"khosim/fdbox"
	"khosim/fdt"
	"khosim/kexec"
	"khosim/preserve"
)

// handoverFile is one memfd as the fdbox writes it into the handover FDT:
// nr folios of the given order.
type handoverFile struct {
	name  string
	nr    int
	order uint
}

// writeHandover writes the handover FDT of files, all in one sealed box,
// in the layout of fdbox/memfd_kho.go (root "kho-v1", /fdbox, the box, one
// node per fd with a shmem-v2 storage node: mem, indices, flags and the
// xxh3 checksum), folios laid out back to back from 4 GiB. It returns the
// blob, which aliases buf.
func writeHandover(buf []byte, files []handoverFile) ([]byte, error) {
	w, err := fdt.Create(buf)
	if err != nil {
		return nil, err
	}
	try := func(errs ...error) error {
		for _, e := range errs {
			if e != nil {
				return e
			}
		}
		return nil
	}
	if err := try(w.FinishReserveMap(), w.BeginNode(""), w.PropertyString("compatible", kexec.KHOCompatible),
		w.BeginNode(fdbox.FdboxNode), w.PropertyString("compatible", fdbox.FdboxCompatible),
		w.BeginNode("bench"), w.PropertyString("compatible", fdbox.BoxCompatible)); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	addr := uint64(4 * GiB)
	for _, f := range files {
		if err := try(w.BeginNode(f.name), w.PropertyString("compatible", fdbox.MemfdCompatible), w.BeginNode("")); err != nil {
			return nil, err
		}
		h := xxh3.New()
		put := func(name string, n int, fill func(b []byte)) error {
			b, err := w.PropertyPlaceholder(name, n)
			if err != nil {
				return err
			}
			fill(b)
			var l [8]byte
			le.PutUint64(l[:], uint64(n))
			_, _ = h.WriteString(name)
			_, _ = h.Write([]byte{0})
			_, _ = h.Write(l[:])
			_, _ = h.Write(b)
			return nil
		}
		folio := uint64(PageSize) << f.order
		if err := try(
			put("compatible", len(preserve.ShmemCompatibleV2)+1, func(b []byte) { copy(b, preserve.ShmemCompatibleV2) }),
			put("name", len(f.name)+7, func(b []byte) { copy(b, "memfd:"+f.name) }),
			put("pos", 8, func(b []byte) { le.PutUint64(b, 0) }),
			put("size", 8, func(b []byte) { le.PutUint64(b, uint64(f.nr)*folio) }),
			put("seals", 4, func(b []byte) { le.PutUint32(b, 0) }),
			put("mem", kexec.MemSize*f.nr, func(b []byte) {
				for i := range f.nr {
					le.PutUint64(b[16*i:], addr+uint64(i)*folio)
					le.PutUint64(b[16*i+8:], folio)
				}
			}),
			put("indices", 8*f.nr, func(b []byte) {
				for i := range f.nr {
					le.PutUint64(b[8*i:], uint64(i)<<f.order)
				}
			}),
			put("flags", f.nr, func(b []byte) {
				for i := range b {
					b[i] = preserve.ShmemFolioUptodate | preserve.ShmemFolioDirty
				}
			}),
		); err != nil {
			return nil, err
		}
		if err := try(w.PropertyLE64("checksum", h.Sum64()), w.EndNode(), w.EndNode()); err != nil {
			return nil, err
		}
		addr += uint64(f.nr) * folio
	}
	if err := try(w.EndNode(), w.EndNode(), w.EndNode()); err != nil {
		return nil, err
	}
	return w.Finish()
}

// readHandover is what the next kernel does with the blob before it
// touches a folio: open and check it (kho_populate), collect every "mem"
// range (KHO v4's tree walk), and read each file's indices and flags. It
// returns the number of ranges.
func readHandover(blob []byte) (int, error) {
	f, err := fdt.Open(blob)
	if err != nil {
		return 0, err
	}
	var bad error
	mems := slices.Collect(kexec.CollectMemProps(f, func(path string, err error) { bad = fmt.Errorf("%s: %w", path, err) }))
	if bad != nil {
		return 0, bad
	}
	box, err := f.PathOffset("/" + fdbox.FdboxNode + "/bench")
	if err != nil {
		return 0, err
	}
	var sum uint64
	for fd := range f.Subnodes(box) {
		st, err := f.FirstSubnode(fd)
		if err != nil {
			return 0, err
		}
		idx, err := f.GetProp(st, "indices")
		if err != nil {
			return 0, err
		}
		flags, err := f.GetProp(st, "flags")
		if err != nil {
			return 0, err
		}
		for i := 0; i+8 <= len(idx); i += 8 {
			sum += binary.LittleEndian.Uint64(idx[i:])
		}
		for _, fl := range flags {
			sum += uint64(fl)
		}
	}
	_ = sum
	return len(mems), nil
}

// fdtCases are the handovers the FDT benchmarks encode and decode: one
// 1 GiB memfd at order 0 and at order 9, and 1024 small memfds.
func fdtCases() []struct {
	name  string
	files []handoverFile
} {
	many := make([]handoverFile, 1024)
	for i := range many {
		many[i] = handoverFile{name: fmt.Sprintf("m%d", i), nr: 16}
	}
	return []struct {
		name  string
		files []handoverFile
	}{
		{"memfd=1GiB/order=0", []handoverFile{{name: "ram", nr: GiB / PageSize}}},
		{"memfd=1GiB/order=9", []handoverFile{{name: "ram", nr: GiB / PageSize >> 9, order: 9}}},
		{"memfds=1024x64KiB/order=0", many},
	}
}

// describedPages is the 4 KiB pages the files preserve.
func describedPages(files []handoverFile) (pages, folios int) {
	for _, f := range files {
		pages += f.nr << f.order
		folios += f.nr
	}
	return pages, folios
}

// reportPreserved reports the preserved-memory metrics of b: ns per page
// (per preserved folio, as the `khosim bench` table counts) and GiB/s of
// preserved memory.
func reportPreserved(b *testing.B, pages, folios int) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(ns/float64(folios), "ns/page")
	b.ReportMetric(float64(pages)*PageSize/GiB/(ns/1e9), "GiB/s")
}

// BenchmarkFDTEncode writes the handover FDT of fdbox's layout (properties
// written in place, checksum included) into a buffer.
func BenchmarkFDTEncode(b *testing.B) {
	for _, c := range fdtCases() {
		b.Run(c.name, func(b *testing.B) {
			blob, err := writeHandover(make([]byte, 64*MiB), c.files)
			if err != nil {
				b.Fatal(err)
			}
			// A buffer of the blob's size, as KHO sizes its buffer by the
			// clients' estimates.
			buf := make([]byte, len(blob))
			pages, folios := describedPages(c.files)
			b.SetBytes(int64(len(blob)))
			for b.Loop() {
				if _, err := writeHandover(buf, c.files); err != nil {
					b.Fatal(err)
				}
			}
			reportPreserved(b, pages, folios)
		})
	}
}

// BenchmarkFDTDecode opens and checks the handover FDT, collects every
// preserved range and reads the files' indices and flags.
func BenchmarkFDTDecode(b *testing.B) {
	for _, c := range fdtCases() {
		b.Run(c.name, func(b *testing.B) {
			big, err := writeHandover(make([]byte, 64*MiB), c.files)
			if err != nil {
				b.Fatal(err)
			}
			blob := bytes.Clone(big)
			pages, folios := describedPages(c.files)
			b.SetBytes(int64(len(blob)))
			for b.Loop() {
				n, err := readHandover(blob)
				if err != nil || n != folios {
					b.Fatalf("decoded %d ranges (want %d): %v", n, folios, err)
				}
			}
			reportPreserved(b, pages, folios)
		})
	}
}

func TestHandoverFDTRoundTrip(t *testing.T) {
	for _, c := range fdtCases() {
		blob, err := writeHandover(make([]byte, 64*MiB), c.files)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		_, folios := describedPages(c.files)
		n, err := readHandover(blob)
		if err != nil || n != folios {
			t.Fatalf("%s: decoded %d ranges (want %d): %v", c.name, n, folios, err)
		}
	}
}
