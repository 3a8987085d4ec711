package machine

import (
	"slices"

	"khosim/errno"
	"khosim/fdbox"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/preserve"
)

// fdboxInstance is what the FDBox front-end leaves in a kernel.
type fdboxInstance struct {
	d *fdbox.Driver
	c *fdbox.KHOClient
}

// The FDBox front-end (the RFC; fdbox=stash, or fdbox=seal with the seal
// lifecycle installed at late initcall), in Linux's initcall order:
//
//	device initcall  fdbox_init (fdbox.Init) + its KHO part (fdbox.KHOInit:
//	                 register_kho_notifier, fdbox_kho_recover)
//	late initcall    memfd_fdbox_init (fdbox.MemfdKHOInit: the memfd
//	                 handler; pending memfd nodes recover here)
func init() {
	registerFrontend(Frontend{
		Name:    "fdbox",
		Enabled: func(b kbuild.Build) bool { return b.FDBox == kbuild.FDBoxStash || b.FDBox == kbuild.FDBoxSeal },
		Wire: func(bc *BootContext) {
			bc.Kernel.RegisterInitcall(kernel.InitcallDevice, "fdbox_init", func(k *kernel.Kernel) error {
				d, err := fdbox.Init(k)
				if err != nil {
					return err
				}
				inst := &fdboxInstance{d: d}
				bc.Set("fdbox", inst)
				c, err := fdbox.KHOInit(d, bc.KHO, bc.Faults)
				if err != nil {
					return err
				}
				inst.c = c
				return nil
			})
			bc.Kernel.RegisterInitcall(kernel.InitcallLate, "memfd_fdbox_init", func(k *kernel.Kernel) error {
				inst, _ := bc.Get("fdbox").(*fdboxInstance)
				if inst == nil || inst.c == nil {
					return errno.ENODEV
				}
				if err := fdbox.MemfdKHOInit(inst.c, bc.Layer); err != nil {
					return err
				}
				if bc.Build.FDBox == kbuild.FDBoxSeal {
					inst.d.SetLifecycle(fdbox.NewSealLifecycle(inst.d))
				}
				return nil
			})
		},
		Check:   func(v any) error { return v.(*fdboxInstance).d.CheckInvariants() },
		Carried: func(v any) []string { return v.(*fdboxInstance).d.Carried() },
		Compatibles: func(b kbuild.Build) ([]string, []string) {
			w := []string{fdbox.FdboxCompatible, fdbox.BoxCompatible, fdbox.MemfdCompatible}
			r := slices.Clone(w)
			for v := 1; b.ReadsFDBoxShmem(v); v++ {
				r = append(r, preserve.ShmemCompatible(v))
			}
			return append(w, preserve.ShmemCompatible(b.FDBoxShmem)), r
		},
	})
}

// FDBox returns the running kernel's FDBox driver, or nil.
func (m *Machine) FDBox() *fdbox.Driver {
	if inst, _ := m.fe["fdbox"].(*fdboxInstance); inst != nil {
		return inst.d
	}
	return nil
}

// FDBoxKHO returns the running kernel's FDBox KHO client, or nil.
func (m *Machine) FDBoxKHO() *fdbox.KHOClient {
	if inst, _ := m.fe["fdbox"].(*fdboxInstance); inst != nil {
		return inst.c
	}
	return nil
}
