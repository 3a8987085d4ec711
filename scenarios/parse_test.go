package scenarios

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"khosim/errno"
	"khosim/fault"
	"khosim/uapi"

	"khosim/scenarios/scn"
)

// contractExample is the example at the end of the scenario-language
// contract, verbatim.
const contractExample = `# A 1 GiB memfd survives kexec (fdbox create / kexec / fdbox restore / cmp).
machine memory=2GiB seed=1
boot
process vmm uid=0

vmm: ram = memfd_create("guest-ram", 0)
vmm: ftruncate(ram, 1GiB)
vmm: pwrite(ram, 0, 1GiB, rand(7))
let before = hash(vmm:ram, 0, 1GiB)

vmm: ctl = open("/dev/fdbox/fdbox", O_RDWR)
vmm: ioctl(ctl, FDBOX_CREATE_BOX, name="vm1")
vmm: box = open("/dev/fdbox/vm1", O_RDWR)
vmm: ioctl(box, FDBOX_PUT_FD, fd=ram, name="ram")
vmm: ioctl(box, FDBOX_SEAL)
vmm: ioctl(box, FDBOX_GET_FD, name="ram") -> EBUSY

kho activate
kexec

process vmm2 uid=0
vmm2: box = open("/dev/fdbox/vm1", O_RDWR)
vmm2: ioctl(box, FDBOX_UNSEAL)
vmm2: ram = ioctl(box, FDBOX_GET_FD, name="ram")
expect size(vmm2:ram) == 1GiB
expect content(vmm2:ram, 0, 1GiB) == rand(7)
expect hash(vmm2:ram, 0, 1GiB) == before
expect invariants
`

func TestParseContractExample(t *testing.T) {
	s, err := Parse("demo.scn", []byte(contractExample))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line int
		dump string
	}{
		{2, "machine memory=2147483648 swap=0 seed=1/true scratch=0%/0B"},
		{3, "boot build=[]"},
		{4, `process vmm uid=0/true caps=[] mask=0x1ffffffffff`},
		{6, `call proc=vmm res=ram memfd_create[str("guest-ram") int(0)] errno=0`},
		{7, `call proc=vmm res= ftruncate[ident(ram) int(1GiB=1073741824)] errno=0`},
		{8, `call proc=vmm res= pwrite[ident(ram) int(0) int(1GiB=1073741824) rand[int(7)]] errno=0`},
		{9, `let before hash[res(vmm:ram) int(0) int(1GiB=1073741824)]`},
		{11, `call proc=vmm res=ctl open[str("/dev/fdbox/fdbox") const(O_RDWR=2)] errno=0`},
		{12, `call proc=vmm res= ioctl[ident(ctl) const(FDBOX_CREATE_BOX=11776) name=str("vm1")] errno=0`},
		{13, `call proc=vmm res=box open[str("/dev/fdbox/vm1") const(O_RDWR=2)] errno=0`},
		{14, `call proc=vmm res= ioctl[ident(box) const(FDBOX_PUT_FD=11778) fd=ident(ram) name=str("ram")] errno=0`},
		{15, `call proc=vmm res= ioctl[ident(box) const(FDBOX_SEAL=11780)] errno=0`},
		{16, `call proc=vmm res= ioctl[ident(box) const(FDBOX_GET_FD=11779) name=str("ram")] errno=16`},
		{18, `kho activate=true errno=0`},
		{19, `kexec build=[] errno=0`},
		{21, `process vmm2 uid=0/true caps=[] mask=0x1ffffffffff`},
		{22, `call proc=vmm2 res=box open[str("/dev/fdbox/vm1") const(O_RDWR=2)] errno=0`},
		{23, `call proc=vmm2 res= ioctl[ident(box) const(FDBOX_UNSEAL=11781)] errno=0`},
		{24, `call proc=vmm2 res=ram ioctl[ident(box) const(FDBOX_GET_FD=11779) name=str("ram")] errno=0`},
		{25, `expect size[res(vmm2:ram)] == int(1GiB=1073741824)`},
		{26, `expect content[res(vmm2:ram) int(0) int(1GiB=1073741824)] == rand[int(7)]`},
		{27, `expect hash[res(vmm2:ram) int(0) int(1GiB=1073741824)] == ident(before)`},
		{28, `expect-invariants`},
	}
	if len(s.Stmts) != len(want) {
		t.Fatalf("got %d statements, want %d:\n%s", len(s.Stmts), len(want), s)
	}
	for i, w := range want {
		st := s.Stmts[i]
		if st.Pos() != (scn.Pos{Line: w.line, Col: 1}) {
			t.Errorf("statement %d at %v, want line %d", i, st.Pos(), w.line)
		}
		if got := dumpStmt(st); got != w.dump {
			t.Errorf("line %d:\n got %s\nwant %s", w.line, got, w.dump)
		}
		// The example is written in canonical form, so every statement
		// prints as written.
		if st.String() != st.Source() {
			t.Errorf("line %d: String() = %q, Source() = %q", w.line, st.String(), st.Source())
		}
	}
	if s.Machine != s.Stmts[0] || s.File != "demo.scn" {
		t.Errorf("Machine = %v, File = %q", s.Machine, s.File)
	}
}

// TestParseStatements covers every statement form of the contract (and the
// extensions), each checked field by field. Each source is parsed after a
// machine line, except the machine forms.
func TestParseStatements(t *testing.T) {
	for _, tc := range statementCases {
		src := tc.src
		if !strings.HasPrefix(src, "machine") {
			src = machineLine + bindings + src
		}
		s, err := Parse("t.scn", []byte(src))
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if got := dumpStmt(s.Stmts[len(s.Stmts)-1]); got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.src, got, tc.want)
		}
		roundTrip(t, s)
	}
}

// bindings bind the names statementCases use, so that they parse (a bare
// name must be bound earlier in the file).
const bindings = "let f = 3\nlet m = 3\nlet mp = 3\nlet ctl = 3\nlet b = 3\nlet nm = \"n\"\nlet x = 1\nlet h = 1\nlet invariants = 1\n"

// statementCases are single statements with their dumpStmt; they are
// also seeds of FuzzParse.
var statementCases = []struct{ src, want string }{
	// machine
	{`machine memory=2GiB`, `machine memory=2147483648 swap=0 seed=0/false scratch=0%/0B`},
	{`machine memory=1G swap=512M seed=42 scratch=5%`, `machine memory=1073741824 swap=536870912 seed=42/true scratch=5%/0B`},
	{`machine scratch=64MiB seed=0 memory=0x40000000`, `machine memory=1073741824 swap=0 seed=0/true scratch=0%/67108864B`},
	{`machine memory=4G scratch=100 %`, `machine memory=4294967296 swap=0 seed=0/false scratch=100%/0B`},
	// boot
	{`boot`, `boot build=[]`},
	{`boot shmem_huge=never`, `boot build=[shmem_huge=never]`},
	{`boot shmem_huge=always`, `boot build=[shmem_huge=always]`},
	{`boot shmem_huge=within_size`, `boot build=[shmem_huge=within_size]`},
	{`boot kho=bitmaps fdbox=seal luo=on memfd=v1 shmem_huge=advise`, `boot build=[kho=bitmaps fdbox=seal luo=on memfd=v1 shmem_huge=advise]`},
	{`boot kho=radix kho=arrays`, `boot build=[kho=radix kho=arrays]`},
	// process: default uid=1000 caps=none; uid=0 alone means caps=all
	{`process vmm`, `process vmm uid=1000/false caps=[] mask=0x0`},
	{`process vmm uid=0`, `process vmm uid=0/true caps=[] mask=0x1ffffffffff`},
	{`process vmm uid=0 caps=none`, `process vmm uid=0/true caps=["none"] mask=0x0`},
	{`process vmm uid=1000 caps=all`, `process vmm uid=1000/true caps=["all"] mask=0x1ffffffffff`},
	{`process vmm caps=CAP_SYS_ADMIN`, `process vmm uid=1000/false caps=["CAP_SYS_ADMIN"] mask=0x200000`},
	{`process v2 uid=7 caps=CAP_SYS_ADMIN|CAP_CHOWN`, `process v2 uid=7/true caps=["CAP_SYS_ADMIN" "CAP_CHOWN"] mask=0x200001`},
	{`process kexec`, `process kexec uid=1000/false caps=[] mask=0x0`},
	{`exit vmm`, `exit vmm`},
	// kho
	{`kho activate`, `kho activate=true errno=0`},
	{`kho deactivate`, `kho activate=false errno=0`},
	{`kho activate -> EIO`, `kho activate=true errno=5`},
	{`kho deactivate -> EBUSY`, `kho activate=false errno=16`},
	{`kexec`, `kexec build=[] errno=0`},
	{`kexec kho=radix`, `kexec build=[kho=radix] errno=0`},
	{`kexec fdbox=off luo=on fdbox=seal -> ENOSYS`, `kexec build=[fdbox=off luo=on fdbox=seal] errno=38`},
	{`kexec -> EIO`, `kexec build=[] errno=5`},
	{`reboot`, `reboot`},
	{`snapshot before_kexec`, `snapshot before_kexec`},
	// fault
	{`fault page_alloc`, `fault page_alloc nth=1 times=1`},
	{`fault fdt nth=3`, `fault fdt nth=3 times=1`},
	{`fault kho_write times=2 nth=5`, `fault kho_write nth=5 times=2`},
	{`fault kho_claim`, `fault kho_claim nth=1 times=1`},
	{`fault recover times=100`, `fault recover nth=1 times=100`},
	{`corrupt fdt 0x40 8`, `corrupt off=64 len=8`},
	{`corrupt fdt 0 4KiB`, `corrupt off=0 len=4096`},
	// every required system call
	{`p: f = open("/tmp/a", O_RDWR|O_CREAT)`, `call proc=p res=f open[str("/tmp/a") (| const(O_RDWR=2) const(O_CREAT=64))] errno=0`},
	{`p: open("/dev/null", O_RDONLY) -> ENOENT`, `call proc=p res= open[str("/dev/null") const(O_RDONLY=0)] errno=2`},
	{`p: close(99) -> EBADF`, `call proc=p res= close[int(99)] errno=9`},
	{`p: close(f)`, `call proc=p res= close[ident(f)] errno=0`},
	{`p: g = dup(q:f)`, `call proc=p res=g dup[res(q:f)] errno=0`},
	{`p: m = memfd_create("x", MFD_CLOEXEC | MFD_ALLOW_SEALING)`, `call proc=p res=m memfd_create[str("x") (| const(MFD_CLOEXEC=1) const(MFD_ALLOW_SEALING=2))] errno=0`},
	{`p: memfd_create("h", MFD_HUGETLB) -> EINVAL`, `call proc=p res= memfd_create[str("h") const(MFD_HUGETLB=4)] errno=22`},
	{`p: ftruncate(m, 2MiB)`, `call proc=p res= ftruncate[ident(m) int(2MiB=2097152)] errno=0`},
	{`p: fallocate(m, 0, 0, 4K)`, `call proc=p res= fallocate[ident(m) int(0) int(0) int(4K=4096)] errno=0`},
	{`p: fallocate(m, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, 4KiB, 4KiB)`, `call proc=p res= fallocate[ident(m) (| const(FALLOC_FL_PUNCH_HOLE=2) const(FALLOC_FL_KEEP_SIZE=1)) int(4KiB=4096) int(4KiB=4096)] errno=0`},
	{`p: n = pwrite(m, 0, 5, "hello")`, `call proc=p res=n pwrite[ident(m) int(0) int(5) str("hello")] errno=0`},
	{`p: pwrite(m, 4KiB, 4KiB, zeros)`, `call proc=p res= pwrite[ident(m) int(4KiB=4096) int(4KiB=4096) zeros[]] errno=0`},
	{`p: pwrite(m, 0, 8, zeros())`, `call proc=p res= pwrite[ident(m) int(0) int(8) zeros[]] errno=0`},
	{`p: pread(m, 0, 1GiB - 4KiB)`, `call proc=p res= pread[ident(m) int(0) (- int(1GiB=1073741824) int(4KiB=4096))] errno=0`},
	{`p: write(m, 3, "abc")`, `call proc=p res= write[ident(m) int(3) str("abc")] errno=0`},
	{`p: read(m, 3)`, `call proc=p res= read[ident(m) int(3)] errno=0`},
	{`p: lseek(m, 0, SEEK_END)`, `call proc=p res= lseek[ident(m) int(0) const(SEEK_END=2)] errno=0`},
	{`p: lseek(m, -1, SEEK_SET) -> EINVAL`, `call proc=p res= lseek[ident(m) (- int(1)) const(SEEK_SET=0)] errno=22`},
	{`p: fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK|F_SEAL_GROW)`, `call proc=p res= fcntl[ident(m) const(F_ADD_SEALS=1033) (| const(F_SEAL_SHRINK=2) const(F_SEAL_GROW=4))] errno=0`},
	{`p: s = fcntl(m, F_GET_SEALS)`, `call proc=p res=s fcntl[ident(m) const(F_GET_SEALS=1034)] errno=0`},
	{`p: fcntl(m, F_ADD_SEALS, F_SEAL_WRITE) -> EPERM`, `call proc=p res= fcntl[ident(m) const(F_ADD_SEALS=1033) const(F_SEAL_WRITE=8)] errno=1`},
	{`p: mp = mmap(m, 0, 2MiB, PROT_READ|PROT_WRITE, MAP_SHARED)`, `call proc=p res=mp mmap[ident(m) int(0) int(2MiB=2097152) (| const(PROT_READ=1) const(PROT_WRITE=2)) const(MAP_SHARED=1)] errno=0`},
	{`p: munmap(mp)`, `call proc=p res= munmap[ident(mp)] errno=0`},
	{`p: store(mp, 0, 4KiB, rand(3))`, `call proc=p res= store[ident(mp) int(0) int(4KiB=4096) rand[int(3)]] errno=0`},
	{`p: load(mp, 0, 4KiB)`, `call proc=p res= load[ident(mp) int(0) int(4KiB=4096)] errno=0`},
	{`p: madvise(mp, 0, 2MiB, MADV_PAGEOUT)`, `call proc=p res= madvise[ident(mp) int(0) int(2MiB=2097152) const(MADV_PAGEOUT=21)] errno=0`},
	{`p: ioctl(ctl, FDBOX_CREATE_BOX, name="b", flags=0)`, `call proc=p res= ioctl[ident(ctl) const(FDBOX_CREATE_BOX=11776) name=str("b") flags=int(0)] errno=0`},
	{`p: ioctl(ctl, FDBOX_DELETE_BOX, name="b") -> EBUSY`, `call proc=p res= ioctl[ident(ctl) const(FDBOX_DELETE_BOX=11777) name=str("b")] errno=16`},
	{`p: ioctl(b, FDBOX_PUT_FD, name="r", fd=3, flags=1)`, `call proc=p res= ioctl[ident(b) const(FDBOX_PUT_FD=11778) name=str("r") fd=int(3) flags=int(1)] errno=0`},
	{`p: r = ioctl(b, FDBOX_GET_FD, name=nm)`, `call proc=p res=r ioctl[ident(b) const(FDBOX_GET_FD=11779) name=ident(nm)] errno=0`},
	{`p: ioctl(b, FDBOX_UNSEAL) -> EPERM`, `call proc=p res= ioctl[ident(b) const(FDBOX_UNSEAL=11781)] errno=1`},
	{`p: n = ioctl(b, FDBOX_LIST)`, `call proc=p res=n ioctl[ident(b) const(FDBOX_LIST=11782)] errno=0`},
	{`p: ioctl(b, 0x2e04)`, `call proc=p res= ioctl[ident(b) int(0x2e04=11780)] errno=0`},
	{`p: ioctl(b, 99, name="x") -> ENOTTY`, `call proc=p res= ioctl[ident(b) int(99) name=str("x")] errno=25`},
	{`p: pwrite(m, 0, size(m), content(q:m, 0, size(q:m)))`, `call proc=p res= pwrite[ident(m) int(0) size[ident(m)] content[res(q:m) int(0) size[res(q:m)]]] errno=0`},
	{`kexec: close(3)`, `call proc=kexec res= close[int(3)] errno=0`},
	{`  p :x=dup(3)->EBADF   # comment`, `call proc=p res=x dup[int(3)] errno=9`},
	// let and expressions
	{`let a = 1`, `let a int(1)`},
	{`let a = "s"`, `let a str("s")`},
	{`let a = b`, `let a ident(b)`},
	{`let a = p:r`, `let a res(p:r)`},
	{`let a = EBUSY`, `let a const(EBUSY=16)`},
	{`let a = F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE|F_SEAL_FUTURE_WRITE`,
		`let a (| (| (| (| const(F_SEAL_SEAL=1) const(F_SEAL_SHRINK=2)) const(F_SEAL_GROW=4)) const(F_SEAL_WRITE=8)) const(F_SEAL_FUTURE_WRITE=16))`},
	{`let a = 1 + 2 * 3 | 4`, `let a (| (+ int(1) (* int(2) int(3))) int(4))`},
	{`let a = (1 + 2) * -x`, `let a (* (+ int(1) int(2)) (- ident(x)))`},
	{`let a = 1 - 2 - 3`, `let a (- (- int(1) int(2)) int(3))`},
	{`let size = 1`, `let size int(1)`},
	// expect
	{`expect size(p:m) == 1GiB`, `expect size[res(p:m)] == int(1GiB=1073741824)`},
	{`expect pos(p:m) != 0`, `expect pos[res(p:m)] != int(0)`},
	{`expect seals(p:m) == F_SEAL_SEAL | F_SEAL_GROW`, `expect seals[res(p:m)] == (| const(F_SEAL_SEAL=1) const(F_SEAL_GROW=4))`},
	{`expect content(p:m, 0, 5) == "hello"`, `expect content[res(p:m) int(0) int(5)] == str("hello")`},
	{`expect content(p:m, 4KiB, 4KiB) == zeros`, `expect content[res(p:m) int(4KiB=4096) int(4KiB=4096)] == zeros[]`},
	{`expect content(p:m, 0, 8) != content(q:m, 0, 8)`, `expect content[res(p:m) int(0) int(8)] != content[res(q:m) int(0) int(8)]`},
	{`expect hash(p:m, 0, 1G) == h`, `expect hash[res(p:m) int(0) int(1G=1073741824)] == ident(h)`},
	{`expect refcount(p:m, 0) == 2`, `expect refcount[res(p:m) int(0)] == int(2)`},
	{`expect mapcount(p:m, 511) == 1`, `expect mapcount[res(p:m) int(511)] == int(1)`},
	{`expect fds(vmm) == 3`, `expect fds[word(vmm)] == int(3)`},
	{`expect fds(O_RDWR) == 0`, `expect fds[word(O_RDWR)] == int(0)`},
	{`expect frames(free) != 0`, `expect frames[word(free)] != int(0)`},
	{`expect frames(used) == 0`, `expect frames[word(used)] == int(0)`},
	{`expect frames(preserved) == 0`, `expect frames[word(preserved)] == int(0)`},
	{`expect frames(reserved) == 0`, `expect frames[word(reserved)] == int(0)`},
	{`expect frames(scratch) == 64MiB`, `expect frames[word(scratch)] == int(64MiB=67108864)`},
	{`expect rand(7) == content(p:m, 0, 1)`, `expect rand[int(7)] == content[res(p:m) int(0) int(1)]`},
	{`expect p:r == 3`, `expect res(p:r) == int(3)`},
	{`expect invariants`, `expect-invariants`},
	{`expect invariants == 2`, `expect ident(invariants) == int(2)`},
}

// roundTrip checks that a script prints to source that parses back to the
// same tree, and prints the same again.
func roundTrip(t testing.TB, s *scn.Script) {
	t.Helper()
	out := s.String()
	s2, err := Parse(s.File, []byte(out))
	if err != nil {
		t.Fatalf("reparse of printed script failed: %v\nprinted:\n%s", err, out)
	}
	if !reflect.DeepEqual(normalize(s.Stmts), normalize(s2.Stmts)) {
		t.Fatalf("round trip changed the tree\nprinted:\n%s\nreprinted:\n%s", out, s2)
	}
	if out2 := s2.String(); out2 != out {
		t.Fatalf("printing is not stable:\n%s\n---\n%s", out, out2)
	}
}

func TestParseSourceAndPos(t *testing.T) {
	src := "machine memory=1G   # the machine\n\n\t  vmm:  x = dup( 3 )   # trailing\n"
	s, err := Parse("t.scn", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Stmts[0].Source(); got != "machine memory=1G" {
		t.Errorf("Source = %q", got)
	}
	st := s.Stmts[1].(*scn.Syscall)
	if st.Source() != "vmm:  x = dup( 3 )" || st.Pos() != (scn.Pos{Line: 3, Col: 4}) || st.NamePos != (scn.Pos{Line: 3, Col: 14}) {
		t.Errorf("Source = %q, Pos = %v, NamePos = %v", st.Source(), st.Pos(), st.NamePos)
	}
	if a := st.Args[0]; a.At != (scn.Pos{Line: 3, Col: 19}) || a.Value.Pos() != (scn.Pos{Line: 3, Col: 19}) {
		t.Errorf("arg at %v", a.At)
	}
}

// TestParseErrors checks the exact message and position of each error,
// and that every error of a file is reported, sorted.
func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.scn", []byte(tc.src))
			var list scn.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse returned %v (%T), want an ErrorList", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors\n got %q\nwant %q", got, tc.want)
			}
			if len(list) != len(got) {
				t.Errorf("ErrorList has %d errors, Error() %d lines", len(list), len(got))
			}
		})
	}
}

const machineLine = "machine memory=1G\n" // line 1 of most error cases

// errorCases are bad files with every error Parse must report; they are
// also seeds of FuzzParse.
var errorCases = []struct {
	name, src string
	want      []string
}{
	{"empty file", "", []string{
		"t.scn:1:1: missing machine statement (it must be the first statement)"}},
	{"missing machine", "# hi\nboot\nkexec\n", []string{
		"t.scn:2:1: missing machine statement (it must be the first statement)"}},
	{"machine not first", "boot\nmachine memory=1G\n", []string{
		"t.scn:2:1: machine must be the first statement"}},
	{"machine twice", machineLine + "boot\n  machine memory=2G\n", []string{
		"t.scn:3:3: machine given twice (first at line 1)"}},
	{"machine twice, second bad", machineLine + "machine foo\n", []string{
		"t.scn:2:1: machine given twice (first at line 1)",
		`t.scn:2:12: expected "=" after foo, found end of line`}},
	{"snapshot without name", machineLine + "snapshot\nsnapshot 3\n", []string{
		"t.scn:2:9: expected a snapshot name after snapshot, found end of line",
		"t.scn:3:10: expected a snapshot name after snapshot, found integer 3"}},
	{"snapshot name twice", machineLine + "snapshot a\nsnapshot b\nsnapshot a\n", []string{
		"t.scn:4:10: snapshot a is already taken at line 2"}},
	{"machine without memory", "machine seed=1\n", []string{
		"t.scn:1:1: machine needs memory="}},
	{"unknown machine key", "machine memory=1G cpus=4 foo=x|y swap=1G\n", []string{
		`t.scn:1:19: unknown machine key "cpus" (want memory=, swap=, seed= or scratch=)`,
		`t.scn:1:26: unknown machine key "foo" (want memory=, swap=, seed= or scratch=)`}},
	{"duplicate machine key", "machine memory=1G memory=2G\n", []string{
		"t.scn:1:19: duplicate machine key memory="}},
	{"machine values", "machine memory=0 scratch=0%\n", []string{
		"t.scn:1:16: memory= must not be 0",
		"t.scn:1:26: scratch= percentage must be 1..100, got 0%"}},
	{"scratch overflows when rounded", "machine memory=1G scratch=18446744073709551615\n", []string{
		"t.scn:1:27: scratch=18446744073709551615 overflows when the kernel rounds it up to 2 MiB (at most 18446744073707454464)"}},
	{"machine scratch", "machine memory=1G scratch=101%\nmachine memory=1G scratch=0\n", []string{
		"t.scn:1:27: scratch= percentage must be 1..100, got 101%",
		"t.scn:2:1: machine given twice (first at line 1)",
		"t.scn:2:27: scratch= must not be 0"}},
	{"machine non-integer", "machine memory=lots\n", []string{
		`t.scn:1:16: expected an integer for memory=, found name "lots"`}},
	{"machine positional", "machine 2G\n", []string{
		`t.scn:1:9: expected machine key=value, found integer 2G`}},
	{"unknown shmem_huge", machineLine + "boot shmem_huge=sometimes\nboot shmem_huge=1\nboot thp=never\n", []string{
		`t.scn:2:17: unknown shmem_huge value "sometimes" (want never, always, within_size, advise, deny or force)`,
		`t.scn:3:17: expected a value for shmem_huge= (never, always, within_size, advise, deny or force), found integer 1`,
		`t.scn:4:6: unknown boot key "thp" (want kho=, fdbox=, luo=, memfd=, shmem_huge=, fdbox_shmem= or deferred_struct_page_init=)`}},
	{"build keys", machineLine + "boot kho=trees luo=yes\nkexec memfd=v3 -> EIO\nkexec fdbox=\"off\"\nkexec kho radix\nkexec -> 5\nkexec cpus=4 kho=radix\n", []string{
		`t.scn:2:10: unknown kho value "trees" (want arrays, bitmaps or radix)`,
		`t.scn:2:20: unknown luo value "yes" (want on or off)`,
		`t.scn:3:13: unknown memfd value "v3" (want v1 or v2)`,
		`t.scn:4:13: expected a value for fdbox= (stash, seal or off), found string "off"`,
		`t.scn:5:7: unexpected name "kho" at end of statement`,
		`t.scn:6:10: expected an errno name after ->, found integer 5`,
		`t.scn:7:7: unknown kexec key "cpus" (want kho=, fdbox=, luo=, memfd=, shmem_huge=, fdbox_shmem= or deferred_struct_page_init=)`}},
	{"process", machineLine + "process\nprocess p gid=1\nprocess p uid=4294967296\nprocess p caps=CAP_NOPE|all\nprocess p caps=none|CAP_CHOWN\nprocess p nofile=2\nprocess p nofile=0x100001\n", []string{
		`t.scn:2:8: expected a process name, found end of line`,
		`t.scn:3:11: unknown process key "gid" (want uid=, caps= or nofile=)`,
		`t.scn:4:15: uid=4294967296 is out of range (0..4294967295)`,
		`t.scn:5:16: unknown capability "CAP_NOPE"`,
		`t.scn:5:25: caps=all cannot be combined with other capabilities`,
		`t.scn:6:16: caps=none cannot be combined with other capabilities`,
		`t.scn:7:18: nofile=2 is out of range (3..1048576)`,
		`t.scn:8:18: nofile=1048577 is out of range (3..1048576)`}},
	{"exit", machineLine + "exit\nexit a b\n", []string{
		`t.scn:2:5: expected a process name, found end of line`,
		`t.scn:3:8: unexpected name "b" at end of statement`}},
	{"kho", machineLine + "kho\nkho start\nkho activate -> EFOO\nkho deactivate -> 5\n", []string{
		`t.scn:2:4: expected activate or deactivate after kho, found end of line`,
		`t.scn:3:5: expected activate or deactivate after kho, found name "start"`,
		`t.scn:4:17: unknown errno "EFOO"`,
		`t.scn:5:19: expected an errno name after ->, found integer 5`}},
	{"unknown errno after call", machineLine + "p: close(3) -> EBADFD2\n", []string{
		`t.scn:2:16: unknown errno "EBADFD2"`}},
	{"unknown fault site", machineLine + "fault page_allocation nth=2\nfault\n", []string{
		`t.scn:2:7: unknown fault site "page_allocation" (want ` + siteList() + `)`,
		`t.scn:3:6: expected a fault site, found end of line`}},
	{"fault options", machineLine + "fault fdt nth=0 times=0\nfault fdt nth=2147483648 when=1\n", []string{
		`t.scn:2:15: nth= must be at least 1`,
		`t.scn:2:23: times= must be at least 1`,
		`t.scn:3:15: nth=2147483648 is too large`,
		`t.scn:3:26: unknown fault key "when" (want nth= or times=)`}},
	{"corrupt", machineLine + "corrupt kho 0 1\ncorrupt fdt 0\ncorrupt fdt x 1\n", []string{
		`t.scn:2:9: expected fdt after corrupt, found name "kho"`,
		`t.scn:3:14: expected an integer for LEN, found end of line`,
		`t.scn:4:13: expected an integer for OFFSET, found name "x"`}},
	{"unterminated string", machineLine + `p: open("/dev/null, O_RDWR)` + "\n", []string{
		`t.scn:2:9: unterminated string`}},
	{"bad escape", machineLine + `p: memfd_create("a\z", 0)` + "\n", []string{
		`t.scn:2:19: unknown escape \z in string (want \\, \", \n, \t, \0 or \xNN)`}},
	{"integer overflow", machineLine + "p: ftruncate(f, 17179869184GiB)\n", []string{
		`t.scn:2:17: integer 17179869184GiB overflows 64 bits`}},
	{"trailing garbage", machineLine + "kexec now\nreboot 1\nexpect invariants 2\np: close(3) 4\n", []string{
		`t.scn:2:7: unexpected name "now" at end of statement`,
		`t.scn:3:8: unexpected integer 1 at end of statement`,
		`t.scn:4:19: expected == or !=, found integer 2`,
		`t.scn:5:13: unexpected integer 4 at end of statement`}},
	{"missing paren", machineLine + "p: close(3\np: close 3\nexpect size(p:m == 1\nlet x = (1 + 2\n", []string{
		`t.scn:2:11: expected ")" or ",", found end of line`,
		`t.scn:3:10: expected "(" after close, found integer 3`,
		`t.scn:4:17: expected ")" or ",", found "=="`,
		`t.scn:5:15: expected ")", found end of line`}},
	{"missing paren before comment", machineLine + "p: close(3   # closes\n", []string{
		`t.scn:2:14: expected ")" or ",", found end of line`}},
	{"unknown statement", machineLine + "launch rocket\n42\nvmm close(3)\n", []string{
		`t.scn:2:1: unknown statement "launch"`,
		`t.scn:3:1: expected a statement, found integer 42`,
		`t.scn:4:1: unknown statement "vmm"`}},
	{"syscall shape", machineLine + "p:\np: = close(3)\np: x = 3\np: frobnicate(1)\n", []string{
		`t.scn:2:3: expected a system call, found end of line`,
		`t.scn:3:4: expected a system call, found "="`,
		`t.scn:4:8: expected a system call, found integer 3`,
		`t.scn:5:4: unknown system call "frobnicate"`}},
	{"syscall arity", machineLine + "p: close()\np: pwrite(3, 0, 4)\np: fcntl(3)\np: ioctl(3)\np: ioctl(3, FDBOX_SEAL, 3)\n", []string{
		`t.scn:2:4: close takes 1 argument: close(FD)`,
		`t.scn:3:4: pwrite takes 4 arguments: pwrite(FD, OFF, LEN, DATA)`,
		`t.scn:4:4: fcntl takes 2 or 3 arguments: fcntl(FD, CMD[, ARG])`,
		`t.scn:5:4: ioctl takes 2 arguments: ioctl(FD, CMD, key=value...)`,
		`t.scn:6:4: ioctl takes 2 arguments: ioctl(FD, CMD, key=value...)`}},
	{"fcntl seals", machineLine + "p: fcntl(3, F_ADD_SEALS)\np: fcntl(3, F_GET_SEALS, 1)\n", []string{
		`t.scn:2:4: fcntl F_ADD_SEALS takes 3 arguments: fcntl(FD, F_ADD_SEALS, SEALS)`,
		`t.scn:3:4: fcntl F_GET_SEALS takes 2 arguments: fcntl(FD, F_GET_SEALS)`}},
	{"syscall argument kinds", machineLine + "p: open(3, O_RDWR)\np: pwrite(3, \"0\", 1, 5)\np: close(zeros)\n", []string{
		`t.scn:2:9: open: PATH must be a string, got 3`,
		`t.scn:3:14: pwrite: OFF must be an integer, got "0"`,
		`t.scn:3:22: pwrite: DATA must be data (a string, rand(SEED), zeros or content(...)), got 5`,
		`t.scn:4:10: close: FD must be an integer, got zeros`}},
	{"ioctl keys", machineLine + "p: ioctl(3, FDBOX_CREATE_BOX)\np: ioctl(3, FDBOX_PUT_FD, name=\"r\")\np: ioctl(3, FDBOX_SEAL, name=\"r\")\np: ioctl(3, FDBOX_GET_FD, name=7, nam=\"r\")\np: ioctl(3, FDBOX_GET_FD, name=\"a\", name=\"b\")\n", []string{
		`t.scn:2:4: ioctl FDBOX_CREATE_BOX needs name=`,
		`t.scn:3:4: ioctl FDBOX_PUT_FD needs fd=`,
		`t.scn:4:25: ioctl FDBOX_SEAL does not take name=`,
		`t.scn:5:32: ioctl: name= must be a string, got 7`,
		`t.scn:5:35: unknown ioctl argument nam= (want name=, fd=, flags= or token=)`,
		`t.scn:6:37: duplicate argument name=`}},
	{"key args elsewhere", machineLine + "p: close(fd=3)\np: ioctl(3, name=\"x\", FDBOX_SEAL)\n", []string{
		`t.scn:2:10: close takes no key=value arguments`,
		`t.scn:3:23: positional argument after key=value`}},
	{"functions", machineLine + "expect size(p:m, 1) == 0\nexpect nosuch(1) == 0\nexpect frames(dirty) == 0\nexpect fds(3) == 0\nexpect zeros(1) == \"\"\nlet x = content(p:m, 0)\n", []string{
		`t.scn:2:8: size takes 1 argument: size(PROC:RES)`,
		`t.scn:3:8: unknown function "nosuch"`,
		`t.scn:4:15: unknown frame state "dirty" (want free, used, slab, tracker, preserved, reserved, scratch, scratch_used, scratch_free, fdt or migrated)`,
		`t.scn:5:12: expected a name for PROC of fds(PROC), found integer 3`,
		`t.scn:6:8: zeros takes no arguments`,
		`t.scn:7:9: content takes 3 arguments: content(PROC:RES, OFF, LEN)`}},
	{"resource arguments", machineLine + "expect size(m) == 0\nexpect hash(3, 0, 1) == 0\np: pwrite(3, 0, 4, content(7, 0, 4))\n", []string{
		`t.scn:2:13: size: PROC:RES must be a resource PROC:RES, got m`,
		`t.scn:3:13: hash: PROC:RES must be a resource PROC:RES, got 3`,
		`t.scn:4:28: content: PROC:RES must be a resource (RES or PROC:RES), got 7`}},
	{"types", machineLine + "expect size(p:m) == \"big\"\nexpect rand(1) != 0\nlet x = \"a\" | 1\nlet y = -zeros\n", []string{
		`t.scn:2:8: cannot compare size(p:m) with "big"`,
		`t.scn:3:8: cannot compare rand(1) with 0`,
		`t.scn:4:9: operator | needs integers, got "a"`,
		`t.scn:5:10: operator - needs integers, got zeros`}},
	{"expect shape", machineLine + "expect\nexpect 1\nexpect 1 = 1\n", []string{
		`t.scn:2:7: expected an expression, found end of line`,
		`t.scn:3:9: expected == or !=, found end of line`,
		`t.scn:4:10: expected == or !=, found "="`}},
	{"bindings", machineLine + "let O_RDWR = 1\nlet zeros = 1\np: EBUSY = dup(3)\nlet x 1\nlet = 1\n", []string{
		`t.scn:2:5: cannot bind O_RDWR: it is a constant`,
		`t.scn:3:5: cannot bind zeros: it is a data generator`,
		`t.scn:4:4: cannot bind EBUSY: it is a constant`,
		`t.scn:5:7: expected "=" after let x, found integer 1`,
		`t.scn:6:5: expected a variable name after let, found "="`}},
	{"unbound names", machineLine + "let x = y + 1\nlet z = z\np: close(fd)\nexpect size(p:r) == n\np: n = dup(q)\nq: r = dup(3)\np: pwrite(3, 0, size(r), zeros)\nexpect fds(p) == O_RDWRX\n", []string{
		`t.scn:2:9: unknown name y: it is neither a constant nor bound earlier in the file (by let y = ... or PROC: y = CALL(...))`,
		`t.scn:3:9: unknown name z: it is neither a constant nor bound earlier in the file (by let z = ... or PROC: z = CALL(...)); this statement binds it, for the lines after it`,
		`t.scn:4:10: unknown name fd: it is neither a constant nor bound earlier in the file (by let fd = ... or PROC: fd = CALL(...))`,
		`t.scn:5:21: unknown name n: it is neither a constant nor bound earlier in the file (by let n = ... or PROC: n = CALL(...)); it is bound later, at line 6`,
		`t.scn:6:12: unknown name q: it is neither a constant nor bound earlier in the file (by let q = ... or PROC: q = CALL(...))`,
		`t.scn:9:18: unknown name O_RDWRX: it is neither a constant nor bound earlier in the file (by let O_RDWRX = ... or PROC: O_RDWRX = CALL(...)); did you mean O_RDWR?`}},
	{"resource reference", machineLine + "expect p: == 1\n", []string{
		`t.scn:2:11: expected a resource name after p:, found "=="`}},
	{"nesting", machineLine + "let x = " + strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200) + "\n", []string{
		`t.scn:2:109: expression nested too deeply`}},
	{"several errors in one file", "boot\n" + machineLine + "process p uid=x\np: close(3\nfault nope\nkexec\n\"open\n", []string{
		`t.scn:2:1: machine must be the first statement`,
		`t.scn:3:15: expected an integer for uid=, found name "x"`,
		`t.scn:4:11: expected ")" or ",", found end of line`,
		`t.scn:5:7: unknown fault site "nope" (want ` + siteList() + `)`,
		`t.scn:7:1: unterminated string`}},
}

// TestErrorList checks the error types the runner relies on.
func TestErrorList(t *testing.T) {
	s, err := Parse("f.scn", []byte("machine memory=1G\nkexec x\nboot y=1\nexit\n"))
	var list scn.ErrorList
	if !errors.As(err, &list) || len(list) != 3 {
		t.Fatalf("err = %v", err)
	}
	var first *scn.Error
	if !errors.As(err, &first) || first != list[0] {
		t.Fatalf("errors.As(*Error) = %v", first)
	}
	if first.File != "f.scn" || first.Pos != (scn.Pos{Line: 2, Col: 7}) || first.Msg != `unexpected name "x" at end of statement` {
		t.Errorf("first = %+v", first)
	}
	for i := 1; i < len(list); i++ {
		if list[i].Pos.Before(list[i-1].Pos) {
			t.Errorf("not sorted: %v", list)
		}
	}
	// The script holds what parsed, and nothing else.
	if len(s.Stmts) != 1 || s.Machine == nil {
		t.Errorf("partial script: %v", s.Stmts)
	}
	if _, err := Parse("ok.scn", []byte("machine memory=1G\n")); err != nil {
		t.Errorf("valid file: %v (a nil ErrorList must not be returned as a non-nil error)", err)
	}
}

// TestConstants checks that every uapi constant and errno name resolves in
// an expression, to its value.
func TestConstants(t *testing.T) {
	var b strings.Builder
	b.WriteString("machine memory=1G\n")
	want := map[string]uint64{}
	for name, v := range uapi.Constants() {
		want[name] = v
	}
	for _, name := range errno.Names() {
		e, _ := errno.Lookup(name)
		want[name] = uint64(e)
	}
	for name := range want {
		b.WriteString("let x = " + name + "\n")
	}
	s, err := Parse("c.scn", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range s.Stmts[1:] {
		c, ok := st.(*scn.Let).Value.(*scn.Const)
		if !ok || want[c.Name] != c.Value {
			t.Errorf("%s: %s", st.Source(), dumpStmt(st))
		}
	}
	if len(s.Stmts)-1 != len(want) {
		t.Errorf("%d lets for %d constants", len(s.Stmts)-1, len(want))
	}
}

// TestFaultSites: every site the fault package knows can be armed.
func TestFaultSites(t *testing.T) {
	for _, site := range fault.Sites() {
		s, err := Parse("f.scn", []byte("machine memory=1G\nfault "+string(site.Site)+" nth=2 times=3\n"))
		if err != nil {
			t.Fatal(err)
		}
		if f := s.Stmts[1].(*scn.Fault); f.Site != site.Site || f.Nth != 2 || f.Times != 3 {
			t.Errorf("%s: %s", site.Site, dumpStmt(f))
		}
	}
}

// siteList is the fault sites as the parser lists them: "a, b or c".
func siteList() string {
	var names []string
	for _, s := range fault.Sites() {
		names = append(names, string(s.Site))
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
