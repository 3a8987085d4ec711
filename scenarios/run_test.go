package scenarios

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"khosim/scenarios/scn"
)

// runSource parses and runs a scenario given as text.
func runSource(t *testing.T, name, src string, opts Options) *Result {
	t.Helper()
	s, err := Parse(name, []byte(src))
	if err != nil {
		t.Fatalf("parse %s:\n%v", name, err)
	}
	return Run(s, opts)
}

// TestLibrary runs every scenario of the library and requires it to pass.
// The 1 GiB demo runs too (it takes a few seconds), except with -short.
func TestLibrary(t *testing.T) {
	files := LibraryFiles()
	if len(files) < 15 {
		t.Fatalf("the library has %d files: %v", len(files), files)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(strings.TrimPrefix(file, "library/"), ".scn"), func(t *testing.T) {
			if file == DemoFile && testing.Short() {
				t.Skip("the 1 GiB demo is skipped with -short")
			}
			src, err := Library.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			res := runSource(t, file, string(src), Options{})
			for _, f := range res.Failures {
				t.Error(f.Format(res.File))
			}
			if !res.Passed && len(res.Failures) == 0 {
				t.Error("not passed, and no failure reported")
			}
			t.Logf("%s in %v", res.Summary(), time.Since(start).Round(time.Millisecond))
		})
	}
}

// A common prologue: a machine, a kernel, a root process with an 8 KiB
// memfd m (fd 0 unless processes start with fds open), a box b.
const prologue = `machine memory=128MiB seed=1
boot
process p uid=0
p: m = memfd_create("m", 0)
p: pwrite(m, 0, 8KiB, rand(1))
`

// TestFailureMessages checks what a failing statement prints: FILE:LINE:
// the statement as written: what happened, and the state behind it.
func TestFailureMessages(t *testing.T) {
	tests := []struct {
		name string
		src  string // appended to prologue
		line int
		// want is the first line of the message after "FILE:LINE: ",
		// or, when pattern is set, a regexp it must match.
		want    string
		pattern bool
		// state lists regexps that must match lines of the rest.
		state []string
	}{
		{
			name:  "seal's EBUSY names the holders",
			src:   "p: ctl = open(\"/dev/fdbox/fdbox\", O_RDWR)\np: ioctl(ctl, FDBOX_CREATE_BOX, name=\"b\")\np: box = open(\"/dev/fdbox/b\", O_RDWR)\np: map = mmap(m, 0, 8KiB, PROT_READ, MAP_SHARED)\np: ioctl(box, FDBOX_PUT_FD, fd=m, name=\"m\")\np: ioctl(box, FDBOX_SEAL)\n",
			line:  11,
			want:  "p: ioctl(box, FDBOX_SEAL): ioctl failed with EBUSY",
			state: []string{`file has 2 references, the box holds 1; the others: the mapping at 0x[0-9a-f]+ \(8192 bytes\) of process p\[\d+\]`},
		},
		{
			name: "frames are counts, not sizes",
			src:  "expect frames(used) == 524288\n",
			line: 6,
			want: `expect frames\(used\) == 524288: \d+ != 524288$`, pattern: true,
		},
		{
			name:  "refcount shows the folio",
			src:   "expect refcount(p:m, 1) == 512\n",
			line:  6,
			want:  "expect refcount(p:m, 1) == 512: 1 != 512",
			state: []string{`p:m page 1: folio at pfn 0x[0-9a-f]+ \(order 0, indices 1..1\): refcount 1, mapcount 0 of page 1; struct page: refcount:1 `},
		},
		{
			name: "seals by name",
			src:  "expect seals(p:m) == F_SEAL_SHRINK|F_SEAL_GROW\n",
			line: 6,
			want: "expect seals(p:m) == F_SEAL_SHRINK|F_SEAL_GROW: F_SEAL_SEAL (0x1) != F_SEAL_SHRINK|F_SEAL_GROW (0x6)",
		},
		{
			name: "wrong errno",
			src:  "p: close(99) -> EINVAL\n",
			line: 6,
			want: "p: close(99) -> EINVAL: close failed with EBADF, want EINVAL",
		},
		{
			name: "missing errno",
			src:  "p: n = dup(m) -> EBADF\n",
			line: 6,
			want: "p: n = dup(m) -> EBADF: dup succeeded (= 4), want EBADF",
		},
		{
			name: "unexpected errno",
			src:  "p: ftruncate(99, 0)   # a comment is not part of the statement\n",
			line: 6,
			want: "p: ftruncate(99, 0): ftruncate failed with EBADF",
		},
		{
			name:  "fdbox errno shows the boxes",
			src:   "p: ctl = open(\"/dev/fdbox/fdbox\", O_RDWR)\np: ioctl(ctl, FDBOX_CREATE_BOX, name=\"b\")\np: ioctl(ctl, FDBOX_CREATE_BOX, name=\"b\")\n",
			line:  8,
			want:  `p: ioctl(ctl, FDBOX_CREATE_BOX, name="b"): ioctl failed with EEXIST`,
			state: []string{`boxes before the call:`, `"b"`},
		},
		{
			name:    "content mismatch shows the folio",
			src:     "expect content(p:m, 0, 8KiB) == rand(1)\np: pwrite(m, 4100, 1, \"x\")\nexpect content(p:m, 0, 8KiB) == rand(1)\n",
			line:    8,
			want:    `expect content\(p:m, 0, 8KiB\) == rand\(1\): byte at file offset 4100 \(page 1, offset 0x4 in it\) is 0x78, want 0xbd from rand\(1\)`,
			pattern: true,
			state:   []string{`^at 4100: got  78 [0-9a-f ]{44}$`, `^at 4100: want bd [0-9a-f ]{44}$`, `^p:m: file \d+ "memfd:m"`, `^page 1: folio at pfn 0x[0-9a-f]+ \(order 0, indices 1\.\.1\): refcount 1, mapcount 0`},
		},
		{
			name: "text of another length",
			src:  "expect content(p:m, 0, 4) == \"abc\"\n",
			line: 6,
			want: `expect content(p:m, 0, 4) == "abc": content(p:m, 0, 4) is a range of 4 bytes, "abc" has 3`,
		},
		{
			name: "flags in hex",
			src:  "expect size(p:m) == F_SEAL_SEAL\n",
			line: 6,
			want: `expect size(p:m) == F_SEAL_SEAL: 8192 (0x2000) != 1 (0x1)`,
		},
		{
			name: "integer mismatch",
			src:  "expect size(p:m) == 4KiB + 1\n",
			line: 6,
			want: `expect size(p:m) == 4KiB + 1: 8192 (8KiB) != 4097`,
		},
		{
			name: "not-equal that is equal",
			src:  "expect size(p:m) != 8KiB\n",
			line: 6,
			want: `expect size(p:m) != 8KiB: both are 8192 (8KiB)`,
		},
		{
			name: "short content",
			src:  "expect content(p:m, 4KiB, 8KiB) == rand(1)\n",
			line: 6,
			want: `expect content(p:m, 4KiB, 8KiB) == rand(1): content(p:m, 4KiB, 8KiB) has 4096 bytes (i_size 8192), want 8192`,
		},
		{
			name: "gone process",
			src:  "kexec\nprocess p uid=0\nprocess q\nexit q\nexpect size(q:m) == 0\n",
			line: 10,
			want: `expect size(q:m) == 0: process q exited at line 9`,
		},
		{
			name: "process of a gone kernel",
			src:  "kexec\nexpect size(p:m) == 8KiB\n",
			line: 7,
			want: `expect size(p:m) == 8KiB: process p belongs to kernel 1, which is gone since line 6 (kexec)`,
		},
		{
			name: "call in a process of a gone kernel",
			src:  "reboot\np: close(m)\n",
			line: 7,
			want: `p: close(m): process p belongs to kernel 1, which is gone since line 6 (reboot)`,
		},
		{
			name: "unknown resource",
			src:  "expect size(p:nosuch) == 0\n",
			line: 6,
			want: `expect size(p:nosuch) == 0: process p has no resource nosuch (it has m=fd 3)`,
		},
		{
			name: "resource of another process in a call",
			src:  "process q\nq: other = dup(0)\np: close(other)\n",
			line: 8,
			want: `p: close(other): other is neither a resource of p nor a variable (it has m=fd 3)`,
		},
		{
			name: "unknown process",
			src:  "q: close(0)\n",
			line: 6,
			want: `q: close(0): no process q in kernel 1 (its processes: p)`,
		},
		{
			name: "wrong argument type",
			src:  "p: map = mmap(m, 0, 8KiB, PROT_READ, MAP_SHARED)\np: close(map)\n",
			line: 7,
			want: `p: close(map): map is a mapping of p, not an fd`,
		},
		{
			name: "closed fd",
			src:  "p: close(m)\nexpect size(p:m) == 0\n",
			line: 7,
			want: `expect size(p:m) == 0: p:m is fd 3, which is not open in p (bound at line 4)`,
		},
		{
			name: "a resource is not a variable",
			src:  "p: x = dup(m)\nexpect x == 1\n",
			line: 7,
			want: `expect x == 1: variable x is not defined`,
		},
		{
			name: "type mismatch",
			src:  "let s = \"big\"\nexpect size(p:m) == s\n",
			line: 7,
			want: `expect size(p:m) == s: cannot compare an integer with a string`,
		},
		{
			name: "kho errno",
			src:  "kho deactivate\n",
			line: 6,
			want: `kho deactivate: kho deactivate failed with EINVAL`,
		},
		{
			name: "string length, LEN computed",
			src:  "let n = 3\np: pwrite(m, 0, n, \"abcd\")\n",
			line: 7,
			want: `p: pwrite(m, 0, n, "abcd"): the string is 4 bytes, LEN is 3`,
		},
		{
			name:  "page not cached",
			src:   "p: ftruncate(m, 1MiB)\nexpect refcount(p:m, 100) == 1\n",
			line:  7,
			want:  `expect refcount(p:m, 100) == 1: refcount: page 100 of p:m is not in the page cache`,
			state: []string{`^shmem inode \d+ \(shm\): size 1048576 alloced 2 swapped 0 nrpages 2 `},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runSource(t, "t.scn", prologue+tc.src, Options{})
			if res.Passed || len(res.Failures) != 1 {
				t.Fatalf("passed=%v failures=%v, want one failure", res.Passed, res.Failures)
			}
			if res.Internal {
				t.Fatalf("internal error:\n%s", res.Failures[0].Format(res.File))
			}
			f := res.Failures[0]
			if f.Line != tc.line {
				t.Errorf("failure at line %d, want %d", f.Line, tc.line)
			}
			msg := f.Format(res.File)
			first, rest, _ := strings.Cut(msg, "\n")
			want := fmt.Sprintf("t.scn:%d: ", tc.line) + tc.want
			if tc.pattern && !regexp.MustCompile("^"+regexp.QuoteMeta(want[:len(want)-len(tc.want)])+tc.want+"$").MatchString(first) ||
				!tc.pattern && first != want {
				t.Errorf("message:\n  %s\nwant:\n  %s", first, want)
			}
			for _, re := range tc.state {
				found := false
				for _, l := range strings.Split(rest, "\n") {
					if regexp.MustCompile(re).MatchString(strings.TrimSpace(l)) {
						found = true
					}
				}
				if !found {
					t.Errorf("no state line matches %q in:\n%s", re, rest)
				}
			}
		})
	}
}

// TestInternalError checks that a panic while a statement runs is
// recovered and reported as FILE:LINE: internal error with the stack.
func TestInternalError(t *testing.T) {
	res := runSource(t, "t.scn", prologue+"expect size(p:m) == 8KiB\n", Options{
		Trace: func(st scn.Stmt) {
			if st.Pos().Line == 6 {
				panic("boom")
			}
		},
	})
	if !res.Internal || res.Passed || len(res.Failures) != 1 {
		t.Fatalf("internal=%v passed=%v failures=%v", res.Internal, res.Passed, res.Failures)
	}
	msg := res.Failures[0].Format(res.File)
	if !strings.HasPrefix(msg, "t.scn:6: internal error: boom\n    while running: expect size(p:m) == 8KiB\n") {
		t.Errorf("message:\n%s", msg)
	}
	if !strings.Contains(msg, "goroutine ") || !strings.Contains(msg, "run_test.go") {
		t.Errorf("no stack in:\n%s", msg)
	}
}

// TestVerbose checks the -v echo: each statement as written with its
// result, and the kernel's log lines indented below.
func TestVerbose(t *testing.T) {
	var out bytes.Buffer
	res := runSource(t, "t.scn", prologue+`let h = hash(p:m, 0, 0)
p: ctl = open("/dev/fdbox/fdbox", O_RDWR)
p: ioctl(ctl, FDBOX_CREATE_BOX, name="vm")
p: box = open("/dev/fdbox/vm", O_RDWR)
p: ioctl(box, FDBOX_PUT_FD, fd=m, name="ram")
p: ioctl(box, FDBOX_LIST)
p: close(99) -> EBADF
expect size(p:m) == 0
`, Options{Verbose: &out})
	_ = res
	got := out.String()
	for _, want := range []string{
		"=== t.scn\n",
		"machine memory=128MiB seed=1 (seed 1)\n",
		`p: m = memfd_create("m", 0) = `,
		"p: pwrite(m, 0, 8KiB, rand(1)) = 8192\n",
		`p: ioctl(box, FDBOX_LIST) = 1 ["ram"] (unsealed)` + "\n",
		"p: close(99) -> EBADF\n",
		"let h = hash(p:m, 0, 0) = 3244421341483603138 (0x2d06800538d394c2)\n",
		"    [kernel 1] ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("-v output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "expect size(p:m) == 0") {
		t.Errorf("-v echoed the failing statement as if it passed:\n%s", got)
	}
}

// TestDeterministic runs a scenario twice and compares the -v output
// without timings.
func TestDeterministic(t *testing.T) {
	src, err := Library.ReadFile("library/many_memfds.scn")
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	runSource(t, "x.scn", string(src), Options{Verbose: &a})
	runSource(t, "x.scn", string(src), Options{Verbose: &b})
	if a.String() != b.String() {
		t.Errorf("two runs differ:\n%s\n----\n%s", a.String(), b.String())
	}
}

// TestProgress checks that long steps report their progress, from 0 to
// the end, and short ones do not.
func TestProgress(t *testing.T) {
	var got []Progress
	res := runSource(t, "t.scn", `machine memory=256MiB
boot
process p
p: m = memfd_create("m", 0)
p: pwrite(m, 0, 64MiB, rand(1))
p: pwrite(m, 0, 4KiB, rand(1))
expect content(p:m, 0, 64MiB) == rand(1)
`, Options{Progress: func(p Progress) { got = append(got, p) }})
	if !res.Passed {
		t.Fatal(res.Failures)
	}
	var whats []string
	for i, p := range got {
		if p.Total != 64<<20 || p.Done > p.Total || i > 0 && p.What == got[i-1].What && p.Done < got[i-1].Done {
			t.Fatalf("report %d: %+v", i, p)
		}
		if p.Finished {
			if p.Done != p.Total {
				t.Errorf("finished at %d of %d", p.Done, p.Total)
			}
			whats = append(whats, p.What)
		}
	}
	want := []string{"p: pwrite(m, 0, 64MiB, rand(1))", "compare p:m"}
	if strings.Join(whats, "|") != strings.Join(want, "|") {
		t.Errorf("finished steps %q, want %q", whats, want)
	}
	if len(got) < 2*64 {
		t.Errorf("only %d reports", len(got))
	}
}

// TestKeepGoing runs on after failures and collects them all.
func TestKeepGoing(t *testing.T) {
	res := runSource(t, "t.scn", `machine memory=128MiB
boot
process p
p: close(7)
p: m = memfd_create("m", 0)
expect size(p:m) == 1
reboot
expect size(p:m) == 0
process p
p: close(m)
`, Options{KeepGoing: true})
	var got []string
	for _, f := range res.Failures {
		got = append(got, f.Format(res.File))
	}
	want := []string{
		"t.scn:4: p: close(7): close failed with EBADF",
		"t.scn:6: expect size(p:m) == 1: 0 != 1",
		"t.scn:8: expect size(p:m) == 0: process p belongs to kernel 1, which is gone since line 7 (reboot)",
		"t.scn:10: p: close(m): m is neither a resource of p nor a variable (it has none)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Passed || res.Internal || res.Stats.Statements != 10 {
		t.Errorf("passed=%v internal=%v statements=%d", res.Passed, res.Internal, res.Stats.Statements)
	}
}

// TestActivateSealSerialized: under fdbox=seal a sealed box holds records,
// not files (SEAL dropped the struct files); what kho activate reports
// comes from the records. (It was a nil dereference: an internal error.)
func TestActivateSealSerialized(t *testing.T) {
	res := runSource(t, "seal.scn", `machine memory=128MiB seed=1
boot fdbox=seal
process p uid=0
p: m = memfd_create("m", 0)
p: pwrite(m, 0, 20KiB + 5, rand(1))
p: ctl = open("/dev/fdbox/fdbox", O_RDWR)
p: ioctl(ctl, FDBOX_CREATE_BOX, name="vm")
p: box = open("/dev/fdbox/vm", O_RDWR)
p: ioctl(box, FDBOX_PUT_FD, fd=m, name="m")
p: close(m)
p: ioctl(box, FDBOX_SEAL)
kho activate
`, Options{})
	if !res.Passed {
		t.Fatalf("%v", res.Failures)
	}
	want := []PreservedBox{{Name: "vm", Files: []PreservedFile{{Name: "m", Kind: "memfd", Size: 20<<10 + 5, Pages: 6}}}}
	if fmt.Sprint(res.Preserved) != fmt.Sprint(want) {
		t.Errorf("preserved %+v, want %+v", res.Preserved, want)
	}
}
