// Package luo is the Live Update Orchestrator front-end, as mainline has
// it (kernel/liveupdate/luo_core.c, luo_session.c, luo_file.c,
// include/uapi/linux/liveupdate.h, include/linux/kho/abi/luo.h):
// /dev/liveupdate, one opener at a time, creates named sessions in the
// running kernel and retrieves those the previous kernel handed over; a
// session fd preserves files under a token, and, in the next kernel,
// retrieves them by token and finishes the session.
//
// How a file is preserved is the preservation layer's business
// (preserve.Handler, memfd_luo): LIVEUPDATE_SESSION_PRESERVE_FD pins every
// page of a memfd up to i_size, preserves the folios with KHO, freezes the
// inode and writes the memfd's record (memfd-v1 or memfd-v2) into
// preserved memory at once, outside the blackout. The reboot path (the
// machine's kexec, liveupdate_reboot) freezes every open outgoing session
// and writes LUO's own records: a luo-v1 FDT in a preserved page, handed
// over as the KHO subtree "LUO", pointing at the session array, which
// points at each session's file array (abi.go).
//
// The next kernel reads that state at boot (EarlyStartup, Deserialize),
// claims the memory of every file it describes and keeps it until the file
// is retrieved (RETRIEVE_FD: a new memfd, the same struct file for every
// retrieve of a token) or its session finished (FINISH discards what was
// not retrieved; closing a retrieved session's fd finishes it). What no
// session finished is not carried by a further kexec.
//
// One LUO belongs to one kernel; a kexec'd kernel builds a new one from
// physical memory alone. See docs/luo.md for the model, the formats and
// every difference from Linux.
package luo
