package machine

import (
	"fmt"

	"khosim/errno"
	"khosim/fault"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/kexec"
	"khosim/preserve"
)

// Frontend is a live-update front-end the machine builds into the kernels
// whose build has it: FDBox, LUO. A new front-end is a new file of this
// package that calls registerFrontend from an init function; nothing else
// in the machine changes.
type Frontend struct {
	// Name keys the front-end's instance in the machine (BootContext.Set).
	Name string
	// Enabled reports whether a kernel of build b has the front-end.
	Enabled func(b kbuild.Build) bool
	// Wire registers the front-end's initcalls in a kernel that is
	// booting (after early boot, before the initcalls run). An initcall
	// that fails is logged by the kernel and boot goes on, as in Linux.
	Wire func(bc *BootContext)
	// Reboot, if set, is the front-end's part of the reboot path
	// (liveupdate_reboot), which Kexec runs before anything is handed
	// over, front-end by front-end in registration order: it freezes
	// what the front-end carries into the next kernel and reports whether
	// it needs a handover even though nobody activated KHO (Kexec then
	// finalizes KHO itself, as liveupdate_reboot() calls kho_finalize()).
	// On error, every front-end already done is unfrozen (Unreboot) and
	// the kexec fails with that error, the kernel running on.
	Reboot func(instance any) (needHandover bool, err error)
	// Unreboot undoes Reboot when a later step of the reboot path fails.
	Unreboot func(instance any)
	// Carried, if set, names (for blackout accounting) the files a kexec
	// now hands over, after the reboot path ran.
	Carried func(instance any) []string
	// Compatibles lists the compatible strings a kernel of build b writes
	// and reads with this front-end (for `khosim kernels`).
	Compatibles func(b kbuild.Build) (writes, reads []string)
	// Check, if set, is the front-end's part of the audit
	// (Machine.CheckInvariants), given what Wire's initcalls stored with
	// Set.
	Check func(instance any) error
}

// BootContext is what a front-end's Wire gets of a booting kernel.
type BootContext struct {
	m      *Machine
	Kernel *kernel.Kernel
	KHO    *kexec.KHO
	Layer  *preserve.Layer
	Build  kbuild.Build
	Faults *fault.Injector
}

// Set stores the front-end's instance in the running kernel's machine,
// for the machine's accessors and the audit.
func (bc *BootContext) Set(name string, v any) { bc.m.fe[name] = v }

// Get returns what a front-end stored with Set in this kernel, or nil.
func (bc *BootContext) Get(name string) any { return bc.m.fe[name] }

var frontends []Frontend

// registerFrontend adds a front-end. Front-ends are wired in registration
// order (file order of their init functions: fdbox before luo).
func registerFrontend(f Frontend) { frontends = append(frontends, f) }

// CompatSet is what one part of a kernel writes and reads in a handover.
type CompatSet struct {
	Part          string // "kho" (the tracker) or a front-end's name
	Writes, Reads []string
}

// Compatibles returns the compatible strings a kernel of build b writes
// and reads in a handover: its tracker's root, then each front-end's.
func Compatibles(b kbuild.Build) []CompatSet {
	var out []CompatSet
	if t, ok := kexec.LookupTracker(b.KHO); ok {
		out = append(out, CompatSet{"kho", []string{t.Root}, []string{t.Root}})
	}
	for _, fe := range frontends {
		if fe.Compatibles != nil && fe.Enabled(b) {
			w, r := fe.Compatibles(b)
			out = append(out, CompatSet{fe.Name, w, r})
		}
	}
	return out
}

// Supported reports whether khosim can build a kernel of b: b is valid,
// its tracker is registered with kexec, and, for every front-end b asks
// for, a front-end that serves it is registered. Errors: EINVAL for an
// invalid build, ENOSYS (with the key) for one not built yet.
func Supported(b kbuild.Build) error {
	if err := b.Valid(); err != nil {
		return err
	}
	if _, ok := kexec.LookupTracker(b.KHO); !ok {
		return fmt.Errorf("kernel build kho=%s: no such tracker is built into khosim yet: %w", b.KHO, errno.ENOSYS)
	}
	for _, want := range []struct {
		key  string
		need bool
	}{{"fdbox", b.FDBox != kbuild.FDBoxOff}, {"luo", b.LUO}} {
		if !want.need {
			continue
		}
		found := false
		for _, fe := range frontends {
			if fe.Name == want.key && fe.Enabled(b) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("kernel build %s=%s: this front-end is not built into khosim yet: %w",
				want.key, b.Value(want.key), errno.ENOSYS)
		}
	}
	return nil
}
