package machine

import (
	"fmt"
	"slices"

	"khosim/kbuild"
	"khosim/luo"
)

// The LUO front-end (luo=on: the machine boots such kernels with
// liveupdate=1), in Linux's initcall order (luo.Register):
//
//	early initcall  liveupdate_early_init (the incoming LUO FDT)
//	late initcall   luo_late_startup (the outgoing FDT, kho_add_subtree),
//	                liveupdate_ioctl_init (/dev/liveupdate),
//	                luo_session_deserialize (khosim: at boot, claiming
//	                what every file record describes)
//
// all before KHO's late return pass. Its reboot path is
// liveupdate_reboot(): every open outgoing session frozen, then KHO
// finalized by the machine (LUO always asks for a handover).
func init() {
	registerFrontend(Frontend{
		Name:    "luo",
		Enabled: func(b kbuild.Build) bool { return b.LUO },
		Wire: func(bc *BootContext) {
			luo.Register(bc.Kernel, bc.KHO, bc.Layer, bc.Faults, func(l *luo.LUO) { bc.Set("luo", l) })
		},
		Reboot:   func(v any) (bool, error) { return v.(*luo.LUO).Reboot() },
		Unreboot: func(v any) { v.(*luo.LUO).Unreboot() },
		Carried:  func(v any) []string { return v.(*luo.LUO).Carried() },
		Compatibles: func(b kbuild.Build) ([]string, []string) {
			w := []string{luo.FDTCompatible, luo.SessionCompatible}
			r := slices.Clone(w)
			for v := 1; v <= b.Memfd; v++ {
				r = append(r, fmt.Sprintf("memfd-v%d", v))
			}
			return append(w, fmt.Sprintf("memfd-v%d", b.Memfd)), r
		},
		Check: func(v any) error { return v.(*luo.LUO).CheckInvariants() },
	})
}

// LUO returns the running kernel's Live Update Orchestrator, or nil (a
// luo=off kernel).
func (m *Machine) LUO() *luo.LUO {
	l, _ := m.fe["luo"].(*luo.LUO)
	return l
}
