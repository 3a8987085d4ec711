package scenarios

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"khosim/invariant"
	"khosim/kernel"
	"khosim/machine"
	"khosim/scenarios/scn"
)

// genScript draws a small random scenario that parses: a machine, a boot,
// then statements over a few processes, resources and boxes, most of
// which make sense and some of which do not.
func genScript(t *rapid.T) string {
	var b strings.Builder
	swap := rapid.SampledFrom([]string{"", " swap=4MiB"}).Draw(t, "swap")
	huge := rapid.SampledFrom([]string{"", " shmem_huge=always", " shmem_huge=within_size"}).Draw(t, "huge")
	fmt.Fprintf(&b, "machine memory=128MiB%s seed=%d\nboot%s\nprocess p0 uid=0\n",
		swap, rapid.Uint64Range(0, 9).Draw(t, "seed"), huge)
	// Every bare name must be bound before it is used: the variables
	// stand for the resources until a call binds them (99 is no fd).
	b.WriteString("let v = 0\nlet a = 99\nlet b = 99\nlet c = 99\nlet ctl = 99\nlet box = 99\nlet map = 99\n")

	proc := rapid.SampledFrom([]string{"p0", "p0", "p0", "p1", "p2"})
	res := rapid.SampledFrom([]string{"a", "b", "c", "ctl", "box", "map"})
	size := rapid.SampledFrom([]string{"0", "1", "4095", "4KiB", "8KiB", "2MiB", "3MiB + 7", "-1"})
	data := rapid.SampledFrom([]string{"rand(1)", "rand(2)", "zeros", `"abc"`})
	name := rapid.SampledFrom([]string{`"b0"`, `"b1"`, `"f0"`, `"f1"`, `""`})
	flags := rapid.SampledFrom([]string{"0", "MFD_ALLOW_SEALING", "MFD_CLOEXEC", "MFD_HUGETLB"})
	path := rapid.SampledFrom([]string{`"/dev/fdbox/fdbox"`, `"/dev/fdbox/b0"`, `"/dev/fdbox/b1"`, `"/dev/null"`, `"/tmp/t"`})
	errs := rapid.SampledFrom([]string{"", "", "", " -> EBADF", " -> EBUSY", " -> EINVAL"})

	n := rapid.IntRange(1, 40).Draw(t, "n")
	for range n {
		p, r, r2 := proc.Draw(t, "p"), res.Draw(t, "r"), res.Draw(t, "r2")
		var st string
		switch rapid.IntRange(0, 27).Draw(t, "stmt") {
		case 0:
			st = fmt.Sprintf("process %s%s", p, rapid.SampledFrom([]string{"", " uid=0", " uid=0 caps=none"}).Draw(t, "cred"))
		case 1:
			st = "exit " + p
		case 2:
			st = fmt.Sprintf(`%s: %s = memfd_create("m", %s)`, p, r, flags.Draw(t, "flags"))
		case 3:
			st = fmt.Sprintf("%s: %s = open(%s, %s)", p, r, path.Draw(t, "path"),
				rapid.SampledFrom([]string{"O_RDWR", "O_RDONLY", "O_RDWR|O_CREAT"}).Draw(t, "oflags"))
		case 4:
			st = fmt.Sprintf("%s: close(%s)", p, r)
		case 5:
			st = fmt.Sprintf("%s: %s = dup(%s)", p, r2, r)
		case 6:
			st = fmt.Sprintf("%s: ftruncate(%s, %s)", p, r, size.Draw(t, "len"))
		case 7:
			st = fmt.Sprintf("%s: fallocate(%s, %s, %s, %s)", p, r,
				rapid.SampledFrom([]string{"0", "FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE"}).Draw(t, "mode"),
				size.Draw(t, "off"), size.Draw(t, "len"))
		case 8:
			off, n, d := size.Draw(t, "off"), size.Draw(t, "len"), data.Draw(t, "data")
			if d == `"abc"` {
				n = "3" // a string of another length is a parse error
			}
			st = fmt.Sprintf("%s: pwrite(%s, %s, %s, %s)", p, r, off, n, d)
		case 9:
			st = fmt.Sprintf("%s: write(%s, 3, %s)", p, r, data.Draw(t, "data"))
		case 10:
			st = fmt.Sprintf("%s: pread(%s, %s, %s)", p, r, size.Draw(t, "off"), size.Draw(t, "len"))
		case 11:
			st = fmt.Sprintf("%s: lseek(%s, %s, SEEK_SET)", p, r, size.Draw(t, "off"))
		case 12:
			st = fmt.Sprintf("%s: fcntl(%s, F_ADD_SEALS, %s)", p, r,
				rapid.SampledFrom([]string{"F_SEAL_WRITE", "F_SEAL_SHRINK|F_SEAL_GROW", "F_SEAL_SEAL", "F_SEAL_FUTURE_WRITE"}).Draw(t, "seals"))
		case 13:
			st = fmt.Sprintf("%s: %s = mmap(%s, 0, %s, PROT_READ|PROT_WRITE, MAP_SHARED)", p, r2, r, size.Draw(t, "len"))
		case 14:
			st = fmt.Sprintf("%s: munmap(%s)", p, r)
		case 15:
			off, n, d := size.Draw(t, "off"), size.Draw(t, "len"), data.Draw(t, "data")
			if d == `"abc"` {
				n = "3" // a string of another length is a parse error
			}
			st = fmt.Sprintf("%s: store(%s, %s, %s, %s)", p, r, off, n, d)
		case 16:
			st = fmt.Sprintf("%s: madvise(%s, 0, %s, MADV_PAGEOUT)", p, r, size.Draw(t, "len"))
		case 17:
			st = fmt.Sprintf("%s: ioctl(%s, %s, name=%s)", p, r,
				rapid.SampledFrom([]string{"FDBOX_CREATE_BOX", "FDBOX_DELETE_BOX", "FDBOX_GET_FD"}).Draw(t, "cmd"), name.Draw(t, "name"))
		case 18:
			st = fmt.Sprintf("%s: ioctl(%s, FDBOX_PUT_FD, fd=%s, name=%s)", p, r, r2, name.Draw(t, "name"))
		case 19:
			st = fmt.Sprintf("%s: %s = ioctl(%s, %s)", p, r2, r,
				rapid.SampledFrom([]string{"FDBOX_SEAL", "FDBOX_UNSEAL", "FDBOX_LIST"}).Draw(t, "cmd"))
		case 20:
			st = rapid.SampledFrom([]string{"kho activate", "kho deactivate"}).Draw(t, "kho")
		case 21:
			st = rapid.SampledFrom([]string{"kexec", "kexec", "reboot"}).Draw(t, "kexec")
		case 22:
			st = fmt.Sprintf("fault %s nth=%d times=%d",
				rapid.SampledFrom([]string{"page_alloc", "fdt", "kho_write", "kho_claim", "recover"}).Draw(t, "site"),
				rapid.IntRange(1, 4).Draw(t, "nth"), rapid.IntRange(1, 3).Draw(t, "times"))
		case 23:
			st = fmt.Sprintf("corrupt fdt %d %d", rapid.IntRange(0, 300).Draw(t, "off"), rapid.IntRange(1, 16).Draw(t, "len"))
		case 24:
			st = fmt.Sprintf("let v = %s", rapid.SampledFrom([]string{
				"hash(" + p + ":" + r + ", 0, 8KiB)", "content(" + p + ":" + r + ", 0, 4KiB)", "size(" + p + ":" + r + ")", "frames(free)", p + ":" + r,
			}).Draw(t, "expr"))
		case 25:
			target := p + ":" + r
			if rapid.Bool().Draw(t, "data") {
				st = fmt.Sprintf("expect content(%s, 0, 8KiB) == %s", target,
					rapid.SampledFrom([]string{"rand(1)", "zeros", "v", `"abc"`, "content(p0:a, 0, 8KiB)"}).Draw(t, "y"))
			} else {
				st = fmt.Sprintf("expect %s == %s", rapid.SampledFrom([]string{
					"refcount(" + target + ", 0)", "mapcount(" + target + ", 1)", "pos(" + target + ")",
					"seals(" + target + ")", "fds(" + p + ")", "v", "size(" + target + ")",
				}).Draw(t, "x"), rapid.SampledFrom([]string{"v", "0", "1", "4KiB"}).Draw(t, "y"))
			}
		case 26:
			st = "expect invariants"
		case 27:
			st = fmt.Sprintf("%s: %s = load(%s, %s, %s)", p, r2, r, size.Draw(t, "off"), size.Draw(t, "len"))
		}
		if strings.Contains(st, ": ") && !strings.HasPrefix(st, "let") && !strings.HasPrefix(st, "expect") {
			st += errs.Draw(t, "errno")
		}
		b.WriteString(st + "\n")
	}
	return b.String()
}

// TestRunnerNeverPanics runs random scripts with KeepGoing, so that every
// statement runs whatever failed before it: none may end in an internal
// error, and no statement may find a broken invariant (an `expect
// invariants` anywhere in the script, the one added at its end, or any
// other failure whose error is an *invariant.Violation).
func TestRunnerNeverPanics(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := genScript(t) + "expect invariants\n"
		s, err := Parse("fuzz.scn", []byte(src))
		if err != nil {
			t.Fatalf("the generator wrote a script that does not parse:\n%s\n%v", src, err)
		}
		res := Run(s, Options{KeepGoing: true})
		if res.Internal {
			t.Fatalf("internal error in:\n%s\n%s", src, res.Failures[len(res.Failures)-1].Format(res.File))
		}
		for _, f := range res.Failures {
			var v *invariant.Violation
			if errors.As(f.Err, &v) {
				t.Fatalf("broken invariant %q at line %d of:\n%s\n%s", v.Invariant, f.Line, src, f.Format(res.File))
			}
		}
	})
}

// TestViolationIsReported breaks an invariant for one statement in the
// middle of a script (a file reference nobody holds, taken before line 6
// and dropped before line 7): the `expect invariants` of line 6 must fail
// with an error errors.As finds the *invariant.Violation in, although the
// script's last statement passes. (TestRunnerNeverPanics used to look at
// the last failure only, and only at its text.)
func TestViolationIsReported(t *testing.T) {
	var m *machine.Machine
	testOnMachine = func(mm *machine.Machine) { m = mm }
	defer func() { testOnMachine = nil }()
	var leaked *kernel.File
	res := runSource(t, "t.scn", prologue+"expect invariants\nexpect invariants\nexpect invariants\n", Options{
		KeepGoing: true,
		Trace: func(st scn.Stmt) {
			switch st.Pos().Line {
			case 6:
				f, err := m.Kernel().Tasks()[0].FD(3)
				if err != nil {
					panic(err)
				}
				leaked = f.Get()
			case 7:
				leaked.Put()
			}
		},
	})
	if res.Internal || len(res.Failures) != 1 || res.Failures[0].Line != 6 {
		t.Fatalf("internal=%v failures=%v, want one failure at line 6", res.Internal, res.Failures)
	}
	var v *invariant.Violation
	if !errors.As(res.Failures[0].Err, &v) {
		t.Fatalf("the failure's error %v holds no *invariant.Violation", res.Failures[0].Err)
	}
	t.Logf("line 6: %s (invariant %q)", firstLine(res.Failures[0].Message), v.Invariant)
}
