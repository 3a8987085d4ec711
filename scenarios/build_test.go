package scenarios

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"khosim/errno"
	"khosim/scenarios/scn"
)

// TestKernelBuilds runs boot and kexec with build keys: defaults on boot,
// inheritance on kexec, the last of a key given twice.
func TestKernelBuilds(t *testing.T) {
	var out bytes.Buffer
	res := runSource(t, "b.scn", `machine memory=128MiB
boot fdbox=off fdbox=off memfd=v1
process p uid=0
p: open("/dev/fdbox/fdbox", O_RDWR) -> ENOENT
reboot
process p uid=0
p: open("/dev/fdbox/fdbox", O_RDWR) -> ENOENT
kexec fdbox=stash
process p uid=0
p: ctl = open("/dev/fdbox/fdbox", O_RDWR)
kexec memfd=v2
process p uid=0
p: ctl = open("/dev/fdbox/fdbox", O_RDWR)
kexec fdbox=stash fdbox=off
process p uid=0
p: open("/dev/fdbox/fdbox", O_RDWR) -> ENOENT
`, Options{Verbose: &out})
	if !res.Passed {
		t.Fatal(res.Failures)
	}
	for _, want := range []string{
		"boot fdbox=off fdbox=off memfd=v1 = kernel 1 (kho=arrays fdbox=off luo=off memfd=v1 shmem_huge=never fdbox_shmem=v3 deferred_struct_page_init=off)\n",
		"reboot = kernel 2\n",
		"kexec fdbox=stash = kernel 3 (fdbox=stash)\n",
		"kexec memfd=v2 = kernel 4 (memfd=v2)\n",
		"kexec fdbox=stash fdbox=off = kernel 5 (fdbox=off)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-v lacks %q:\n%s", want, out.String())
		}
	}
}

// TestKexecFailures checks kexec's outcomes against -> ERRNO: a kexec
// that fails in its reboot path (a luo_freeze fault) fails as expected and
// the kernel goes on, its processes with it; a kexec that should fail and
// does not is a failure.
func TestKexecFailures(t *testing.T) {
	res := runSource(t, "k.scn", `machine memory=128MiB seed=1
boot luo=on
process p uid=0
p: m = memfd_create("m", 0)
p: pwrite(m, 0, 8KiB, rand(1))
p: lu = open("/dev/liveupdate", O_RDWR)
p: s = ioctl(lu, LIVEUPDATE_IOCTL_CREATE_SESSION, name="vm")
p: ioctl(s, LIVEUPDATE_SESSION_PRESERVE_FD, fd=m, token=1)
fault luo_freeze
kexec -> EIO
p: close(m)
kexec -> EIO
process p
`, Options{KeepGoing: true})
	var got []string
	for _, f := range res.Failures {
		got = append(got, firstLine(f.Format(res.File)))
	}
	want := []string{"k.scn:12: kexec -> EIO: kexec succeeded, want EIO"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Internal || res.Stats.Kexecs != 1 {
		t.Errorf("internal=%v kexecs=%d", res.Internal, res.Stats.Kexecs)
	}
}

// TestReplaceKeepsRunningKernel drives the runner's kexec with machine
// steps that fail before the handover (the old kernel still runs, as when
// Linux's kexec fails in its reboot path): with -> ERRNO the statement
// passes, without it fails, and either way the processes are still there;
// after a real kexec they are gone.
func TestReplaceKeepsRunningKernel(t *testing.T) {
	s, err := Parse("r.scn", []byte(prologue))
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(s, Options{})
	defer r.closeMachine()
	for _, st := range s.Stmts {
		if !r.step(st) {
			t.Fatal(r.res.Failures)
		}
	}
	st := &scn.Kexec{Loc: scn.Loc{At: scn.Pos{Line: 6, Col: 1}, Text: "kexec"}}
	fail := func() error { return fmt.Errorf("reboot path: %w", errno.EBUSY) }

	out, replaced, err := r.replace("kexec", st, errno.EBUSY, fail)
	if out != "" || replaced || err != nil || r.procs["p"] == nil || r.kernel() == nil {
		t.Errorf("expected failure: out=%q replaced=%v err=%v procs=%v", out, replaced, err, r.procs)
	}
	out, replaced, err = r.replace("kexec", st, 0, fail)
	if replaced || err == nil || err.Error() != "kexec failed: reboot path: EBUSY" || r.procs["p"] == nil {
		t.Errorf("unexpected failure: out=%q replaced=%v err=%v procs=%v", out, replaced, err, r.procs)
	}
	out, replaced, err = r.replace("kexec", st, 0, func() error { return r.m.Kexec(r.m.Build()) })
	if !replaced || err != nil || out != "= kernel 2" || len(r.procs) != 0 || r.res.Stats.Kexecs != 1 {
		t.Errorf("kexec: out=%q replaced=%v err=%v procs=%v", out, replaced, err, r.procs)
	}
	if _, err := r.proc("p"); err == nil || !strings.Contains(err.Error(), "gone since line 6 (kexec)") {
		t.Errorf("proc p: %v", err)
	}
}
