package fdbox

import (
	"errors"
	"fmt"

	"khosim/errno"
	"khosim/fault"
	"khosim/fdt"
	"khosim/kernel"
	"khosim/preserve"
)

// memfdKHO is FDBox's use of the preservation layer's memfd handler: the
// RFC's memfd_fdbox_kho_write / memfd_fdbox_kho_recover, whose shmem work
// now lives in package preserve, driven in FDBox's two phases.
//
// State, per boxed memfd: not written --KHOWrite (phase 1: preserve,
// write the node)--> written --Commit (phase 2: Detach)--> committed;
// written|committed --Abort--> not written (Reattach, then Unpreserve).
type memfdKHO struct {
	c     *KHOClient
	k     *kernel.Kernel
	h     preserve.Handler
	files map[*BoxFD]preserve.Preserved
}

// MemfdKHOInit is memfd_fdbox_init(), a late initcall in the RFC: it
// registers the memfd handler (compatible "fdbox,memfd-v1") with the
// driver, which recovers every memfd node fdbox_kho_recover left pending,
// and the handler's two-phase KHO operations, on the preservation layer l.
func MemfdKHOInit(c *KHOClient, l *preserve.Layer) error {
	h := l.Handler(preserve.MemfdHandlerName)
	if h == nil {
		return errno.ENODEV
	}
	m := &memfdKHO{c: c, k: c.d.k, h: h, files: map[*BoxFD]preserve.Preserved{}}
	c.SetFileOps(MemfdCompatible, &KHOFileOps{
		Estimate: func(bfd *BoxFD) uint64 { return h.EstimateFDT(bfd.File()) },
		Commit:   m.commit,
		Abort:    m.abort,
	})
	fh := MemfdHandler()
	fh.KHOWrite = m.khoWrite
	fh.Recover = m.recover
	fh.Preserver = h
	err := c.d.RegisterHandler(fh)
	if err != nil {
		m.k.Printk(kernel.LogErr, "memfd: Could not register fdbox handler: %v", err)
	}
	return err
}

// khoWrite is memfd_fdbox_kho_write() and phase 1 of
// shmem_fdbox_kho_write(): the layer preserves the memfd (swapped in,
// migrated out of scratch provisionally, every folio preserved, the page
// cache intact) and writes its node.
func (m *memfdKHO) khoWrite(bfd *BoxFD, w *fdt.Writer) error {
	p, err := m.h.Preserve(bfd.File(), preserve.How{Provisional: true})
	if err != nil {
		return err
	}
	m.files[bfd] = p // from here on, abort undoes it
	return p.WriteFDT(w, bfd.Name())
}

// commit is phase 2: the layer detaches the folios from the page cache
// (the RFC's shmem_undo_range with shmem_fdbox_undo_ops).
func (m *memfdKHO) commit(bfd *BoxFD) {
	if p := m.files[bfd]; p != nil {
		p.Detach()
	}
}

// abort undoes phase 1 and phase 2 for one file: the folios go back into
// the page cache (committed), then the preservation ends (provisional
// migrations put back, KHO's references dropped). The file is then
// exactly as before activation.
func (m *memfdKHO) abort(bfd *BoxFD, committed bool) {
	p := m.files[bfd]
	if p == nil {
		return
	}
	delete(m.files, bfd)
	if committed {
		if err := p.Reattach(); err != nil {
			// The page cache could not take the folios back. KHO's
			// references still hold them: the file keeps what it
			// got back, the rest stays preserved and is lost to it.
			m.k.Printk(kernel.LogErr, "memfd: kho: cannot put %s back after abort: %v", bfd.File().Name, err)
		}
	}
	p.Unpreserve()
}

// recover is memfd_fdbox_kho_recover(): the layer reads the node; once it
// has checked, the recover fault site (EIO) is hit before any memory is
// touched; then the layer restores the file.
//
// On any failure the node is skipped and its memory returned: at once
// when the node is intact (a claim or recover fault, a page cache
// conflict), or by KHO's late pass when the node itself is corrupt (its
// checksum or properties are wrong, so its "mem" ranges cannot be trusted
// to be its own).
func (m *memfdKHO) recover(node FDTNode) (*kernel.File, error) {
	f, err := m.c.fdtOf(node)
	if err != nil {
		m.k.Printk(kernel.LogErr, "memfd: kho: unreadable FDT: %v", err)
		return nil, errno.EINVAL
	}
	path, _ := f.GetPath(node.Offset)
	name, _ := f.GetName(node.Offset)
	fail := func(err error) (*kernel.File, error) {
		m.c.recovered.FailedFDs++
		m.k.Printk(kernel.LogErr, "memfd: kho: error when recovering KHO node '%s': %v", path, err)
		if errors.Is(err, preserve.ErrBadRecord) {
			return nil, errno.EINVAL
		}
		return nil, errno.Of(err)
	}
	in, err := m.h.ReadFDT(f, node.Offset, name)
	if err != nil {
		return fail(err)
	}
	if err := m.c.faults.Hit(fault.Recover); err != nil {
		in.Discard()
		return fail(fmt.Errorf("recover: %w", err))
	}
	file, err := in.Restore()
	if err != nil {
		return fail(err)
	}
	m.c.recovered.FDs++
	return file, nil
}
