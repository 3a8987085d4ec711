// Package preserve is the file-preservation layer under every live-update
// front-end: what mainline keeps in mm/memfd_luo.c behind struct
// liveupdate_file_ops, and what the FDBox RFC put in mm/memfd.c and
// mm/shmem.c (memfd_fdbox_kho_write, shmem_fdbox_kho_write and their
// recovery). A front-end — FDBox in either lifecycle, LUO — decides when a
// file is preserved, frozen, serialized and brought back; this layer knows
// how, for each kind of file it has a handler for.
//
// # Handlers
//
// A Handler (struct liveupdate_file_handler with its ops) is one file
// kind: CanPreserve recognises its files, Preserve starts preserving one
// and returns a Preserved (liveupdate_file_op_args.private_data, the
// per-file state that lives until unpreserve), and the Read* methods open
// what a previous kernel serialized as an Incoming, which is restored
// (retrieve) or discarded (finish without retrieve). Handlers are
// registered at init (RegisterHandler) and instantiated per kernel by New;
// a new file kind is a new file of this package (or a package of its own)
// plus a registration line.
//
// # One preserved file
//
//	Preserve --> preserved ──Freeze──> frozen ──Unfreeze──> preserved
//	preserved --Detach--> detached (the page cache is empty, KHO holds the
//	                      folios; the file may be dropped)
//	detached  --Reattach--> preserved (the same file, the same folios)
//	detached  --Rebuild--> detached (a new file shares the folios)
//	preserved|detached --Unpreserve--> ended (nothing preserved)
//	preserved|frozen|detached --kexec--> handed over (the kernel is gone)
//
// Each Preserved writes its record in the formats a front-end asks for:
// into the handover FDT (WriteFDT: the RFC's "fdbox,memfd-v1" node with
// its "fdbox,shmem-v1"/"-v2" storage node) or into preserved memory
// (WriteBlob: mainline's "memfd-v1"/"memfd-v2" struct memfd_luo_ser). The
// next kernel reads every version it knows.
//
// # References
//
// While a file is preserved, KHO holds one reference on each of its
// preserved folios (kexec.KHO.PreserveFolio). A pinning preserve (LUO,
// memfd_pin_folios) also holds one pin reference per folio, reported to
// the kernel's audit as the layer's; a detached file's folios are held by
// KHO alone. Provisional scratch migrations (FDBox stash) keep the old
// folio, with one reference, until Detach makes the migration final or
// Unpreserve puts it back.
package preserve
