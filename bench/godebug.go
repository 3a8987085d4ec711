package bench

import (
	"os"
	"slices"
	"strings"
	"syscall"
)

// GODEBUG is the Go runtime setting the measurements run with.
//
// The simulated kernels keep their own tables on the Go heap: the page
// cache's XArray nodes, the activation's record of every preserved folio,
// the incoming range table (tens of MiB for a 4 GiB memfd). By default
// the runtime's background scavenger hands freed heap back to the host
// with MADV_DONTNEED while the copy baseline runs, and the next handover
// takes a host page fault for every 4 KiB of it again: about 9,000 faults,
// 30-45 ms, per 4 GiB order-0 cycle, which a real kernel, whose memory is
// always resident, never pays. With madvdontneed=0 the runtime returns
// memory with MADV_FREE instead, which leaves the pages mapped until the
// host is short of memory, so that the measured cycles take no such
// faults, as the copy baseline takes none (docs/performance.md).
const GODEBUG = "madvdontneed=0"

// Reexec replaces the process with the same program run with GODEBUG
// added to the environment's GODEBUG, since the runtime reads it only at
// start-up. It returns (and the measurement runs with the runtime's
// default) if GODEBUG already sets madvdontneed — the user's choice wins —
// or if the executable cannot be found or run.
func Reexec() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "madvdontneed=") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
	env = append(env, "GODEBUG="+godebug+GODEBUG)
	_ = syscall.Exec(exe, os.Args, env)
}
