// Package kexec models Kexec HandOver (KHO) as of Mike Rapoport's v4
// series (February 2025, kernel/kexec_handover.c), on which the FDBox RFC
// is built, and the kexec that hands memory from one kernel to the next.
//
// # One KHO object per kernel
//
// A KHO is created at a kernel's boot (New) and dies with it: the next
// kernel gets a new one, built only from physical memory and the boot
// parameters (Handover). It has two halves, as kho_out and kho_in in
// Linux:
//
//   - outgoing: the notifiers (register_kho_notifier), activation
//     (writing 1 to /sys/kernel/kho/active: kho_expose_dt), the folios
//     preserved for the next kernel (kho_preserve_folio), the handover FDT
//     in physical memory, and abort (writing 0: kho_abort);
//   - incoming: the handover this kernel booted with (kho_populate +
//     kho_memory_init from the EarlyInit hook), kho_get_fdt, the preserved
//     ranges and their claim (kho_claim_mem) or return (kho_return_mem),
//     and the late pass that returns whatever no handler claimed.
//
// # Outgoing state machine
//
//	idle --Activate ok--> active --Deactivate--> idle
//	idle --Activate fails--> idle (every notifier's ABORT ran; nothing kept)
//	active --kexec (machine)--> handed over (the kernel is gone)
//	idle --kexec--> (nothing handed over)
//
// Activate when active fails with EBUSY, Deactivate when idle with EINVAL.
//
// # Incoming range state machine
//
//	(in the FDT) --kho_populate: valid--> reserved --ClaimMem--> claimed
//	                                       reserved --ReturnMem--> returned
//	(in the FDT) --kho_populate: invalid--> rejected (never reserved)
//
// Claimed and returned are final. The late-sync pass (ReturnUnclaimed)
// returns every range still reserved, so once a kernel has booted no
// preserved frame is left in limbo.
//
// # References
//
// KHO holds one reference on every folio it preserves (taken by
// PreserveFolio, dropped by UnpreserveFolio or at abort), and owns the
// frames of the outgoing FDT buffer (one reference on each block it
// allocated). In the next kernel it owns the incoming FDT's frames
// (memblock-reserved for the kernel's whole life, as v4 keeps the FDT for
// kho_get_fdt) and the frames of every range still reserved; a claim hands
// the caller a folio with refcount 1. All of it is reported to the
// kernel's audit through RegisterRefOwner("kho").
package kexec
