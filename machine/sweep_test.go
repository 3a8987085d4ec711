package machine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/uapi"
)

// The fault sweep of kernel-metadata allocations: the slab and page_alloc
// sites armed at every hit they are reached, in each phase of a live
// update — activation, deactivation (KHO's ABORT), and the kexec with the
// next kernel's restore — on a fresh fixture each time. Nothing may be
// lost where Linux keeps it, nothing leaked, no panic:
//
//   - a failed activation leaves every file as it was, and a later
//     activation and kexec carry everything;
//   - a deactivation cannot fail (KHO ABORT returns nothing), and leaves
//     every file as it was;
//   - in the next kernel, a failed allocation may lose what it was
//     rebuilding — Linux's behaviour, with a line in the log — but every
//     preserved frame is claimed or returned (frames(preserved) == 0,
//     checked by kexec), the invariants hold, and whatever was rebuilt
//     has its contents.

// sweepPhase runs one fault plan: arm (site, nth) at the phase's start and
// run it; it reports whether the fault fired.
type sweepPhase struct {
	name string
	run  func(t *testing.T, fx *fixture, arm func())
}

var sweepPhases = []sweepPhase{
	{"activate", func(t *testing.T, fx *fixture, arm func()) {
		before := fx.snapshot()
		arm()
		err := fx.m.KHOActivate()
		disarmAll(fx)
		if err != nil {
			wantErr(t, errno.ENOMEM, err)
			require.False(t, fx.m.KHO().Active())
			requireSameFiles(t, before, fx.snapshot())
			fx.check()
			require.NoError(t, fx.m.KHOActivate())
		}
		fx.check()
		fx.kexec()
		fx.verify([]bool{true, true, true})
	}},
	{"deactivate", func(t *testing.T, fx *fixture, arm func()) {
		before := fx.snapshot()
		require.NoError(t, fx.m.KHOActivate())
		arm()
		require.NoError(t, fx.m.KHODeactivate())
		disarmAll(fx)
		requireSameFiles(t, before, fx.snapshot())
		fx.check()
		require.NoError(t, fx.m.KHOActivate())
		fx.kexec()
		fx.verify([]bool{true, true, true})
	}},
	{"kexec", func(t *testing.T, fx *fixture, arm func()) {
		require.NoError(t, fx.m.KHOActivate())
		arm()
		fx.kexec() // checks invariants and frames(preserved) == 0
		disarmAll(fx)
		fx.verifyWhatSurvived()
	}},
}

func disarmAll(fx *fixture) {
	for _, s := range []fault.Site{fault.Slab, fault.PageAlloc} {
		fx.m.Faults().Disarm(s)
	}
}

// verifyWhatSurvived checks, in the new kernel, that every fixture file
// either arrived intact or is gone (its box or its name missing) with a
// recovery failure in the log.
func (fx *fixture) verifyWhatSurvived() {
	t := fx.t
	p := fx.proc(fmt.Sprintf("v%d", fx.k().BootID))
	lost := 0
	boxes := map[string]int{}
	for _, f := range fx.files {
		box, ok := boxes[f.box]
		if !ok {
			var err error
			box, err = p.Open("/dev/fdbox/"+f.box, uapi.O_RDWR)
			if errno.Of(err) == errno.ENOENT {
				box = -1
			} else {
				require.NoError(t, err)
				fx.unseal(p, box)
			}
			boxes[f.box] = box
		}
		if box < 0 {
			lost++
			continue
		}
		fd, err := fx.get(p, box, f.name)
		if errno.Of(err) == errno.ENOENT {
			lost++
			continue
		}
		require.NoError(t, err, "%s/%s", f.box, f.name)
		require.Equal(t, f.size, fx.size(p, fd))
		fx.content(p, fd, 0, f.written, f.seed)
		fx.content(p, fd, f.written, f.size-f.written, 0)
		require.NoError(t, p.Close(fd))
	}
	if lost > 0 {
		require.True(t, fx.logHas("ENOMEM") || fx.logHas("ENOSPC"), "%d files lost with no allocation failure in the log", lost)
	}
	fx.check()
}

func TestFaultSweepKernelMetadata(t *testing.T) {
	for _, site := range []fault.Site{fault.Slab, fault.PageAlloc} {
		for _, ph := range sweepPhases {
			t.Run(string(site)+"/"+ph.name, func(t *testing.T) {
				fired := 0
				for nth := 1; ; nth++ {
					require.Less(t, nth, 5000, "the sweep does not end")
					fx := newFixture(t, Config{})
					hit := false
					ph.run(t, fx, func() {
						require.NoError(t, fx.m.Faults().Arm(site, nth, 1))
						hit = true
					})
					if !hit || fx.m.Faults().Fired(site) == 0 {
						break // the phase reaches the site fewer than nth times
					}
					fired++
				}
				t.Logf("%s during %s: %d failure points", site, ph.name, fired)
				switch {
				case ph.name == "deactivate":
					// KHO's ABORT allocates nothing: the stash puts its
					// folios back into the ranges Detach left reserved.
					require.Zero(t, fired, "deactivation allocated")
				case site == fault.Slab && ph.name == "activate":
					// Activation allocates pages (the FDT, migrations out
					// of scratch), no slab object.
				default:
					require.Positive(t, fired, "the phase never reached the site")
				}
			})
		}
	}
}
