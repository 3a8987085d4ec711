package scenarios

import (
	"fmt"
	"strings"
	"time"

	"khosim/fdt"
	"khosim/kernel"
	"khosim/physmem"
)

// folioInfo is the folio caching one page of a file, for refcount(),
// mapcount() and failure messages.
type folioInfo struct {
	Index    uint64 // the page asked for
	Head     physmem.PFN
	First    uint64 // the folio's first index in the file
	Order    uint
	Refcount int32 // the folio's (on its head page)
	Mapcount int32 // the page's
	Page     string
}

func (fi folioInfo) String() string {
	return fmt.Sprintf("folio at %v (order %d, indices %d..%d): refcount %d, mapcount %d of page %d; struct page: %s",
		fi.Head, fi.Order, fi.First, fi.First+1<<fi.Order-1, fi.Refcount, fi.Mapcount, fi.Index, fi.Page)
}

// folioAt looks up the folio caching page index of f's page cache. It
// reports false when the page is not cached (a hole, or swapped out).
func folioAt(f *kernel.File, index uint64) (folioInfo, bool) {
	if f.Inode == nil || f.Inode.Mapping == nil {
		return folioInfo{}, false
	}
	found, ok := f.Inode.Mapping.Lookup(index)
	if !ok || !found.Entry.IsFolio() {
		return folioInfo{}, false
	}
	mm := f.Kernel().MM
	head := found.Entry.PFN()
	folio := mm.PageFolio(head)
	page := mm.FolioPage(folio, index-found.Index)
	return folioInfo{
		Index:    index,
		Head:     head,
		First:    found.Index,
		Order:    mm.FolioOrder(folio),
		Refcount: mm.FolioRefCount(folio),
		Mapcount: page.MapCount(),
		Page:     page.String(),
	}, true
}

// cacheSummary describes a file's page cache in one line.
func cacheSummary(f *kernel.File) string {
	if info := kernel.ShmemInode(f); info != nil {
		return info.String()
	}
	if f.Inode == nil || f.Inode.Mapping == nil {
		return fmt.Sprintf("%s has no page cache", f.Name)
	}
	a := f.Inode.Mapping
	return fmt.Sprintf("page cache of %s: %d pages cached, %d swap entries, i_size %d",
		f.Name, a.NrPages(), a.NrValues(), f.Inode.Size)
}

// tracker reports the progress of one long step to Options.Progress, every
// 1/64 of the way (by bytes, so what it reports is deterministic). A nil
// tracker reports nothing.
type tracker struct {
	fn          func(Progress)
	what        string
	total, next uint64
	done        uint64
}

// progress returns a tracker for a step of total bytes, or nil when the
// step is short or nobody listens.
func (r *runner) progress(what string, total uint64) *tracker {
	if r.opts.Progress == nil || what == "" || total < ProgressMin {
		return nil
	}
	t := &tracker{fn: r.opts.Progress, what: what, total: total, next: total / 64}
	t.fn(Progress{What: what, Total: total})
	return t
}

func (t *tracker) at(done uint64) {
	if t == nil {
		return
	}
	t.done = done
	if done >= t.next {
		t.fn(Progress{What: t.what, Done: min(done, t.total), Total: t.total})
		t.next = done + t.total/64
	}
}

func (t *tracker) finish() {
	if t == nil {
		return
	}
	t.fn(Progress{What: t.what, Done: min(t.done, t.total), Total: t.total, Finished: true})
}

// preservedNow lists the sealed boxes of the running kernel and their
// files: what kho activate is about to serialize.
func (r *runner) preservedNow() []PreservedBox {
	d := r.m.FDBox()
	if d == nil {
		return nil
	}
	var out []PreservedBox
	for _, b := range d.Boxes() {
		if !b.Sealed() {
			continue
		}
		pb := PreservedBox{Name: b.Name()}
		for _, bfd := range b.FDs() {
			f := bfd.File()
			if f == nil {
				// fdbox=seal: SEAL serialized the file and dropped it;
				// the record is all there is.
				rec := bfd.Record()
				pb.Files = append(pb.Files, PreservedFile{Name: bfd.Name(), Kind: rec.Handler().Name(), Size: rec.Size(), Pages: rec.Pages()})
				continue
			}
			pf := PreservedFile{Name: bfd.Name(), Kind: f.Ops.Kind(), Size: fileSize(f)}
			if info := kernel.ShmemInode(f); info != nil {
				pf.Pages = uint64(info.Alloced()) // cached or on swap
			} else if f.Inode != nil && f.Inode.Mapping != nil {
				pf.Pages = f.Inode.Mapping.NrPages()
			}
			pb.Files = append(pb.Files, pf)
		}
		out = append(out, pb)
	}
	return out
}

// preservedSummary says in a few words what the last kho activate
// preserved, for -v.
func (r *runner) preservedSummary() string {
	files, pages := 0, uint64(0)
	for _, b := range r.res.Preserved {
		files += len(b.Files)
		for _, f := range b.Files {
			pages += f.Pages
		}
	}
	s := fmt.Sprintf("%s, %s, %s", count(len(r.res.Preserved), "sealed box", "sealed boxes"),
		count(files, "file", "files"), count(int(pages), "page", "pages"))
	if len(r.res.FDT) > 0 {
		s += fmt.Sprintf(", FDT %d bytes", len(r.res.FDT))
		if kho := r.m.KHO(); kho != nil {
			if addr, _, ok := kho.FDT(); ok {
				s += fmt.Sprintf(" at %#x", uint64(addr))
			}
		}
	}
	if n := r.m.FrameCounts()["migrated"]; n > 0 {
		s += fmt.Sprintf(", %s migrated out of scratch", count(int(n), "page", "pages"))
	}
	return s
}

// count prints n with the singular or plural noun.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// fdtSummary describes the handover FDT for a failure.
func (r *runner) fdtSummary() []string {
	fdt, err := r.m.HandoverFDT()
	if err != nil {
		return []string{"handover FDT: " + err.Error()}
	}
	return []string{fmt.Sprintf("handover FDT: %d bytes", len(fdt))}
}

// Summary prints a result in a few lines: the verdict, the failure, and
// the figures.
func (res *Result) Summary() string {
	var b strings.Builder
	verdict := "PASS"
	switch {
	case res.Internal:
		verdict = "INTERNAL ERROR"
	case !res.Passed:
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s %s (%d statements, %d kexecs, %s)", verdict, res.File, res.Stats.Statements,
		res.Stats.Kexecs, res.Stats.Wall.Round(time.Millisecond))
	return b.String()
}

// fileSeals returns a file's F_SEAL_* bits (what F_GET_SEALS returns):
// those of its shmem inode; other files cannot be sealed.
func fileSeals(f *kernel.File) (uint64, error) {
	info := kernel.ShmemInode(f)
	if info == nil {
		return 0, fmt.Errorf("%s is a %s file, which has no seals", f.Name, f.Ops.Kind())
	}
	return uint64(info.Seals), nil
}

// revivalState explains, in a kernel booted by kexec with a handover, what
// happened to a box (or one of its files, when file is not "") on the way:
// its node in the handover FDT, or that there is none, and the new
// kernel's errors and warnings.
func (r *runner) revivalState(box, file string) []string {
	kr, err := r.running()
	if err != nil || kr.how != "kexec" {
		return nil
	}
	if r.incoming == nil {
		return []string{fmt.Sprintf("kernel %d was booted by a kexec without KHO active: nothing was handed over", kr.boot)}
	}
	var out []string
	if file != "" {
		out = fdtNode(r.incoming, "/fdbox/"+box+"/"+file, 2)
	}
	if out == nil {
		out = fdtNode(r.incoming, "/fdbox/"+box, 0)
	}
	if out == nil {
		out = []string{fmt.Sprintf("the handover FDT has no node /fdbox/%s", box)}
	}
	return append(out, r.bootErrors(kr)...)
}

// bootErrors returns the errors and warnings of a kernel's log (at most
// maxLines of them).
func (r *runner) bootErrors(kr *kernelRec) []string {
	const maxLines = 12
	var lines []string
	n := 0
	for _, l := range kr.k.Log() {
		if l.Level > kernel.LogWarn {
			continue
		}
		n++
		if len(lines) < maxLines {
			lines = append(lines, fmt.Sprintf("[kernel %d] %s", kr.boot, l))
		}
	}
	if n == 0 {
		return nil
	}
	if n > maxLines {
		lines = append(lines, fmt.Sprintf("... and %d more", n-maxLines))
	}
	return append([]string{fmt.Sprintf("kernel %d's errors and warnings since boot:", kr.boot)}, lines...)
}

// fdtNode prints the node at path of an FDT and its subnodes down to
// depth levels (deeper ones are only named), each property in its real
// type as `khosim fdt` prints it (fdt.DumpNode: u64 little endian as
// numbers, kho_mem arrays as address + size ranges cut to their first
// entries, seals and flags by name). It returns nil when there is no
// such node.
func fdtNode(blob []byte, path string, depth int) []string {
	f, err := fdt.Open(blob)
	if err != nil {
		return []string{fmt.Sprintf("the handover FDT does not parse: %v", err)}
	}
	off, err := f.PathOffset(path)
	if err != nil {
		return nil
	}
	var b strings.Builder
	if err := f.DumpNode(&b, off, depth); err != nil {
		return []string{fmt.Sprintf("handover FDT node %s: %v", path, err)}
	}
	out := []string{"handover FDT node:"}
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		if l != "" {
			out = append(out, strings.ReplaceAll(l, "\t", "  "))
		}
	}
	return out
}
