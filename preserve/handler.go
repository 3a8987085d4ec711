package preserve

import (
	"fmt"
	"iter"
	"slices"

	"khosim/fault"
	"khosim/fdt"
	"khosim/invariant"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/physmem"
)

// How says how a front-end preserves a file: the lifecycles differ in
// what may still change afterwards and how an abort is recovered.
type How struct {
	// Pin preserves every page up to i_size, holes filled, each folio
	// pinned (a reference the layer holds until Unpreserve), as
	// memfd_luo_preserve_folios does with memfd_pin_folios(): the file
	// stays usable and writes inside its size land in the preserved
	// folios. Without Pin (FDBox) the folios the file has are preserved
	// as they are, and its user must leave it idle.
	Pin bool
	// FreezeInode freezes the inode while preserved (shmem_freeze): a
	// size change, a write that starts at or beyond i_size and every
	// fallocate get EPERM.
	FreezeInode bool
	// Provisional keeps each folio migrated out of KHO scratch in its old
	// frames until Detach, so that Unpreserve before Detach puts the very
	// same folios back (FDBox stash: a failed activation changes
	// nothing). Otherwise a migration is final at once, as a longterm
	// pin's is.
	Provisional bool
}

// Handler is one kind of preservable file (struct liveupdate_file_handler
// and its liveupdate_file_ops), instantiated for one kernel.
type Handler interface {
	// Name names the file kind ("memfd").
	Name() string
	// CanPreserve is ->can_preserve: whether f is of this kind and can
	// be preserved. It depends only on what the file is.
	CanPreserve(f *kernel.File) bool
	// Preserve is ->preserve: it starts preserving f as how says and
	// returns the per-file state. On error nothing is preserved and f is
	// as it was.
	Preserve(f *kernel.File, how How) (Preserved, error)

	// EstimateFDT bounds the bytes a Preserved's WriteFDT would write for
	// f if it were preserved now (FDBox sizes the handover FDT before it
	// serializes anything).
	EstimateFDT(f *kernel.File) uint64

	// FDTCompatible is the compatible of the fd nodes this handler
	// writes into a handover FDT (FDBox's "fdbox,memfd-v1").
	FDTCompatible() string
	// ReadFDT opens an fd node of a handover FDT (the RFC's
	// memfd_fdbox_kho_recover up to the restore). fdName is the node's
	// name, which its integrity check covers. On error the node's memory
	// is the caller's to return (see Incoming.Discard's note: a corrupt
	// node describes nothing trustworthy).
	ReadFDT(f *fdt.FDT, off int, fdName string) (Incoming, error)

	// BlobCompatible is the compatible of the records this kernel
	// writes into preserved memory (LUO: "memfd-v2", by the build's
	// memfd= key).
	BlobCompatible() string
	// ReadsBlob reports whether this kernel can read records of that
	// compatible (every version up to its own).
	ReadsBlob(compat string) bool
	// ReadBlob opens a record in preserved memory at phys. The record's
	// own pages must be preserved by the previous kernel (they are
	// claimed here, and freed by Restore or Discard).
	ReadBlob(compat string, phys physmem.PhysAddr) (Incoming, error)
}

// Preserved is one file being preserved
// (liveupdate_file_op_args.private_data). See the package documentation
// for its state machine.
type Preserved interface {
	// Handler returns the file's handler.
	Handler() Handler
	// Freeze is ->freeze, in the reboot path: the last state that may
	// still change (f_pos) goes into the record. Unfreeze is ->unfreeze.
	Freeze() error
	Unfreeze()
	// Detach takes the folios out of the file's page cache, KHO's
	// references keeping them (the RFC's shmem_undo_range with
	// shmem_fdbox_undo_ops), after recording what the file is (name,
	// size, pos, seals, mode). It cannot fail. Afterwards the front-end
	// may drop the file; then only WriteFDT, WriteBlob, Rebuild and
	// Unpreserve may be called.
	Detach()
	// Reattach undoes Detach into the same file, which the front-end
	// kept: the same folios at the same indices with the same flags.
	// Errors: ENOMEM when the page cache cannot grow (the file is then
	// missing the folios not put back, and stays detached for them:
	// the caller may retry).
	Reattach() error
	// Rebuild makes a new file of a detached record in this kernel
	// (FDBox seal: UNSEAL): the preserved folios go into the new file's
	// page cache, still preserved, so that a front-end rebuilding several
	// files can give up half way by dropping the files it got (the
	// records are as they were). Unpreserve then ends the preservation,
	// leaving the folios to the new file. On error nothing changed.
	Rebuild() (*kernel.File, error)
	// Unpreserve is ->unpreserve: every folio is unpreserved and
	// unpinned, provisional migrations are put back, a frozen inode is
	// unfrozen; a detached file's folios are freed. The record is gone.
	Unpreserve()

	// EstimateFDT bounds the bytes WriteFDT writes.
	EstimateFDT() uint64
	// WriteFDT writes the record as the properties and subnodes of an fd
	// node named fdName, which the caller began and ends.
	WriteFDT(w *fdt.Writer, fdName string) error
	// WriteBlob writes the record into preserved memory in the kernel's
	// BlobCompatible format and returns its physical address
	// (liveupdate_file_op_args.serialized_data); a second call rewrites
	// the same record. FreeBlob frees it.
	WriteBlob() (physmem.PhysAddr, error)
	FreeBlob()
	// Mems yields every range preserved for this file (its folios and
	// its blob's pages): a client's "mem" records under KHO v4.
	Mems() iter.Seq[kexec.Mem]
	// Folios and Pages count what is preserved.
	Folios() int
	Pages() uint64
	// Size is the file's i_size: now, or when it was detached.
	Size() int64
	// String describes the record for messages.
	String() string
}

// Incoming is a file a previous kernel preserved, opened from its record.
type Incoming interface {
	// Restore is ->retrieve: a new file with the preserved contents, with
	// one reference the caller owns. On error everything the record
	// described is returned to the allocator (claimed folios freed, the
	// rest returned) and the Incoming is spent.
	Restore() (*kernel.File, error)
	// Discard returns everything the record describes that is still
	// preserved (->finish of a file nobody retrieved).
	Discard()
	// Name, Size, Seals and Pages describe the file, for messages.
	Name() string
	Size() int64
	Pages() uint64
}

// HandlerInfo registers a handler.
type HandlerInfo struct {
	Name string
	New  func(l *Layer) Handler
}

var handlers []HandlerInfo

// RegisterHandler makes a file kind preservable by every front-end.
// Called from init functions; a name registered twice panics.
func RegisterHandler(info HandlerInfo) {
	if slices.ContainsFunc(handlers, func(h HandlerInfo) bool { return h.Name == info.Name }) || info.New == nil {
		panic("preserve: RegisterHandler: duplicate or incomplete handler " + info.Name)
	}
	handlers = append(handlers, info)
}

// Layer is the preservation layer of one kernel: its handlers and every
// file being preserved (for the audit).
type Layer struct {
	k        *kernel.Kernel
	kho      *kexec.KHO
	faults   *fault.Injector
	handlers []Handler
	live     []record         // files being preserved, in the order preserved
	incoming []*memfdIncoming // records opened with their memory claimed (ReadBlob), until restored or discarded
	stats    Stats
}

// Stats counts the layer's work since boot.
type Stats struct {
	Migrated      uint64 // folios migrated out of KHO scratch
	Preserved     uint64 // folios preserved
	Detached      uint64 // page-cache entries removed by Detach
	Inserted      uint64 // page-cache entries inserted by Reattach, Rebuild and Restore
	HolesFilled   uint64 // folios allocated for holes by pinning preserves
	BlobBytes     uint64 // bytes of records written into preserved memory
	RecordsFailed uint64 // incoming records that failed to restore
}

// record is what the layer keeps of every live Preserved, for the audit.
type record interface {
	Preserved
	visitRefs(v kernel.RefVisitor)
	check() error
	ended() bool
}

// New makes the preservation layer of kernel k with KHO kho, and
// registers it with the kernel's audit as a holder of references. faults
// is the machine's injector (may be nil).
func New(k *kernel.Kernel, kho *kexec.KHO, faults *fault.Injector) *Layer {
	l := &Layer{k: k, kho: kho, faults: faults}
	for _, info := range handlers {
		l.handlers = append(l.handlers, info.New(l))
	}
	k.RegisterRefOwner("preserve", l.visitRefs)
	return l
}

// Kernel returns the layer's kernel.
func (l *Layer) Kernel() *kernel.Kernel { return l.k }

// KHO returns the layer's KHO.
func (l *Layer) KHO() *kexec.KHO { return l.kho }

// Stats returns the layer's counters.
func (l *Layer) Stats() Stats { return l.stats }

// Handlers returns the kernel's handlers in registration order.
func (l *Layer) Handlers() []Handler { return slices.Clone(l.handlers) }

// Handler returns the handler named name, or nil.
func (l *Layer) Handler(name string) Handler {
	for _, h := range l.handlers {
		if h.Name() == name {
			return h
		}
	}
	return nil
}

// For returns the first handler whose CanPreserve accepts f, or nil (LUO's
// luo_file_preserve looks handlers up this way; no handler: ENOENT).
func (l *Layer) For(f *kernel.File) Handler {
	for _, h := range l.handlers {
		if h.CanPreserve(f) {
			return h
		}
	}
	return nil
}

// ByFDTCompatible returns the handler whose fd nodes have that compatible.
func (l *Layer) ByFDTCompatible(compat string) Handler {
	for _, h := range l.handlers {
		if h.FDTCompatible() == compat {
			return h
		}
	}
	return nil
}

// ByBlobCompatible returns the handler that reads records of compat, or
// nil when this kernel reads no such records.
func (l *Layer) ByBlobCompatible(compat string) Handler {
	for _, h := range l.handlers {
		if h.ReadsBlob(compat) {
			return h
		}
	}
	return nil
}

// track adds a live record; untrack drops ended ones.
func (l *Layer) track(r record) { l.live = append(l.live, r) }

func (l *Layer) untrack() {
	l.live = slices.DeleteFunc(l.live, func(r record) bool { return r.ended() })
}

// Live returns the files being preserved, in the order preserved.
func (l *Layer) Live() []Preserved {
	out := make([]Preserved, 0, len(l.live))
	for _, r := range l.live {
		out = append(out, r)
	}
	return out
}

func (l *Layer) visitRefs(v kernel.RefVisitor) {
	for _, r := range l.live {
		r.visitRefs(v)
	}
	for _, in := range l.incoming {
		in.visitRefs(v)
	}
}

// holdIncoming and dropIncoming track the incoming records whose memory
// the layer holds.
func (l *Layer) holdIncoming(in *memfdIncoming) { l.incoming = append(l.incoming, in) }

func (l *Layer) dropIncoming(in *memfdIncoming) {
	l.incoming = slices.DeleteFunc(l.incoming, func(x *memfdIncoming) bool { return x == in })
}

// CheckInvariants is the layer's part of the audit: every live record is
// consistent with its file and with KHO (every folio it preserves is
// preserved, pins and provisional folios are held).
func (l *Layer) CheckInvariants() error {
	for _, r := range l.live {
		if r.ended() {
			return invariant.New("preserve", "record-live", l.Dump(), "an ended record is still tracked: %v", r)
		}
		if err := r.check(); err != nil {
			return err
		}
	}
	return nil
}

// Dump describes the layer for violations.
func (l *Layer) Dump() string {
	s := fmt.Sprintf("preserve: %d handlers, %d files preserved, %d incoming records held", len(l.handlers), len(l.live), len(l.incoming))
	for _, r := range l.live {
		s += "\n  " + r.String()
	}
	return s
}
