// Package fuzz generates random khosim scenarios, runs them under an
// oracle (an audit after every statement, hand-over checks of every file a
// scenario preserves, and a metamorphic comparison of the same scenario
// under each KHO tracker) and shrinks the ones that fail to a minimal
// scenario that fails the same way. `khosim fuzz` and `khosim reduce` are
// its command line; docs/fuzzing.md describes it.
//
// Everything is drawn from one seed (math/rand/v2's PCG): a generated
// scenario, its recording and its check are a function of the seed alone,
// and the scenario text replays with `khosim run`.
package fuzz

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"khosim/scenarios"
	"khosim/scenarios/scn"
)

// stmtRole says what the oracle does with a generated statement.
type stmtRole int

const (
	// rolePlain statements run; an errno they fail with is recorded as
	// their `-> ERRNO`; any other failure drops them (the generator's
	// guess of the state was wrong: a resource it thought bound).
	rolePlain stmtRole = iota
	// roleObserve is `let NAME = EXPR`: its value in the recording run
	// becomes `expect EXPR == VALUE`, which every replay and every
	// tracker must reproduce.
	roleObserve
	// roleCount is a call whose result binds a fresh resource: its value
	// in the recording run becomes `expect PROC:RES == VALUE` after it.
	roleCount
	// roleOracle is an expectation the spec promises (a handed-over file
	// has the size, position, seals and bytes it had): it must hold
	// whenever the statements it depends on succeeded.
	roleOracle
	// roleAudit is `expect invariants`: a broken invariant is a finding.
	roleAudit
	// roleMust is a restore step of a file handed over without faults,
	// by a kexec into the same build: it must succeed whenever the
	// statements it depends on (the preservation, the activation, the
	// kexec) succeeded. An errno is a finding ("lost").
	roleMust
)

// stmt is one generated statement.
type stmt struct {
	text  string // without `-> ERRNO`
	role  stmtRole
	errno string // the errno the recording run saw, "" if none
	// expr is, for roleObserve, the expression observed; for roleCount,
	// the PROC:RES its result binds.
	expr string
	// deps are the statements a roleOracle statement depends on (the
	// binding of the revived file, the snapshot it is compared with).
	deps []*stmt
	// binds is the fresh name a statement binds ("" if none).
	binds string
	// value is what the recording run observed (roleObserve, roleCount).
	value string
	// dropped marks a statement the recording replaced (by a binding of
	// a variable) because it could not run.
	dropped bool
}

// resKind is what the generator believes a resource of a process is.
type resKind int

const (
	rMemfd resKind = iota
	rTmp
	rNull
	rCtl     // /dev/fdbox/fdbox
	rBox     // /dev/fdbox/BOX
	rLUO     // /dev/liveupdate
	rSession // a LUO session
	rMap
	rCount
)

// res is a resource the generator bound in a process.
type res struct {
	name string
	kind resKind
	file int    // the open file (dup shares it); 0 if none
	box  string // rBox: the box; rSession: the session
	// story marks a box or session of a live-update story: generic calls
	// leave it alone, so that what it hands over is known.
	story bool
}

// proc is a process of the running kernel, as the generator believes.
type proc struct {
	name string
	res  []*res
	// story: the process holds a LUO session of a story (it does not
	// exit: that would release the session).
	story bool
	// decl is the process statement.
	decl *stmt
}

// preserved is a file handed to a box or a session, with the snapshot the
// oracle compares its revived copy with.
type preserved struct {
	box, name string // FDBox box and name in it; or session and ""
	token     uint64 // LUO token
	luo       bool
	snap      *snapshot
	alias     *res // LUO: the fd still open (snapshot taken before kexec)
	aliasProc *proc
	// deps are the statements that preserved it (put or preserve, seal);
	// nil when the generator cannot promise it comes back.
	deps []*stmt
}

// snapshot names the variables holding what a file was before kexec.
type snapshot struct {
	hash, size, pos, seals string
	lets                   []*stmt
	seal                   bool // compare seals too (memfd=v2 both sides)
}

// Config bounds what the generator draws.
type Config struct {
	// Steps is the number of generated actions (each may print a few
	// statements, and each is followed by `expect invariants`).
	Steps int
}

// defaultSteps is the number of actions of a scenario by default.
const defaultSteps = 40

// gen is the state of one generation.
type gen struct {
	rnd     *rand.Rand
	cfg     Config
	out     []*stmt
	procs   []*proc
	fresh   int
	files   int
	aliases map[int]int // open file -> live references the generator made (fds, maps)
	tainted map[int]bool
	boxes   []string // boxes created (this kernel)
	sealed  map[string]bool
	// storySess are the sessions of stories, with their creation.
	storySess map[*res]*stmt
	sess      []string
	pres      []*preserved // preserved in this kernel, for the next
	carried   []*preserved // handed over to the running kernel
	build     map[string]string
	faults    bool
	corrupt   bool
	// mode is the scenario's class: clean (no faults, KHO activated
	// just before each kexec: compared under every tracker), free (no
	// faults, activations anywhere), faulty (faults and corruption).
	mode   string
	memMiB int
	swap   bool
	lang   *scn.Lang
}

// newRand returns the PCG generator of seed (the only randomness).
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Generate draws a scenario from seed: the statements, before recording.
func Generate(seed uint64, cfg Config) *Scenario {
	if cfg.Steps <= 0 {
		cfg.Steps = defaultSteps
	}
	g := &gen{
		rnd: newRand(seed), cfg: cfg, aliases: map[int]int{}, tainted: map[int]bool{},
		sealed: map[string]bool{}, build: map[string]string{}, lang: scenarios.Lang(),
		storySess: map[*res]*stmt{},
	}
	g.mode = g.pick("clean", "clean", "free", "faulty", "faulty")
	g.header()
	for range cfg.Steps {
		g.action()
		g.emit(roleAudit, "expect invariants")
	}
	return &Scenario{Seed: seed, stmts: g.out, Faults: g.faults || g.corrupt}
}

func (g *gen) emit(role stmtRole, format string, args ...any) *stmt {
	s := &stmt{text: fmt.Sprintf(format, args...), role: role}
	g.out = append(g.out, s)
	return s
}

func (g *gen) name(prefix string) string {
	g.fresh++
	return fmt.Sprintf("%s%d", prefix, g.fresh)
}

func (g *gen) pick(items ...string) string { return items[g.rnd.IntN(len(items))] }

func (g *gen) chance(pct int) bool { return g.rnd.IntN(100) < pct }

// header is the machine, the boot and a first process.
func (g *gen) header() {
	g.memMiB = []int{256, 256, 512, 1024}[g.rnd.IntN(4)]
	m := fmt.Sprintf("machine memory=%dMiB seed=%d", g.memMiB, g.rnd.IntN(100))
	if g.chance(40) {
		g.swap = true
		m += " swap=" + g.pick("4MiB", "16MiB", "64MiB")
	}
	g.emit(rolePlain, "%s", m)
	g.build["kho"] = g.pick("arrays", "bitmaps", "radix")
	g.build["fdbox"] = g.pick("stash", "stash", "seal", "off")
	g.build["luo"] = g.pick("on", "on", "off")
	g.build["memfd"] = g.pick("v2", "v2", "v2", "v1")
	g.build["shmem_huge"] = g.pick("never", "never", "always", "within_size")
	g.emit(rolePlain, "boot%s", g.buildKeys(true))
	g.newProc()
}

// buildKeys prints the build keys of a boot (all) or a kexec (some changed).
func (g *gen) buildKeys(all bool) string {
	var b strings.Builder
	for _, k := range []string{"kho", "fdbox", "luo", "memfd", "shmem_huge"} {
		if all {
			fmt.Fprintf(&b, " %s=%s", k, g.build[k])
		}
	}
	if all {
		return b.String()
	}
	// Outside the faulty class the tracker stays, so that the scenario
	// has variants under the other trackers (oracle.go).
	if g.mode == "faulty" && g.chance(50) {
		g.build["kho"] = g.pick("arrays", "bitmaps", "radix")
		fmt.Fprintf(&b, " kho=%s", g.build["kho"])
	}
	if g.chance(10) {
		g.build["fdbox"] = g.pick("stash", "seal", "off")
		fmt.Fprintf(&b, " fdbox=%s", g.build["fdbox"])
	}
	if g.chance(10) {
		g.build["luo"] = g.pick("on", "off")
		fmt.Fprintf(&b, " luo=%s", g.build["luo"])
	}
	if g.chance(10) {
		g.build["memfd"] = g.pick("v1", "v2")
		fmt.Fprintf(&b, " memfd=%s", g.build["memfd"])
	}
	if g.chance(10) {
		g.build["shmem_huge"] = g.pick("never", "always", "within_size")
		fmt.Fprintf(&b, " shmem_huge=%s", g.build["shmem_huge"])
	}
	return b.String()
}

func (g *gen) newProc() *proc {
	p := &proc{name: g.name("p")}
	g.procs = append(g.procs, p)
	if g.chance(90) {
		p.decl = g.emit(rolePlain, "process %s uid=0", p.name)
	} else {
		p.decl = g.emit(rolePlain, "process %s", p.name)
	}
	return p
}

func (g *gen) someProc() *proc {
	if len(g.procs) == 0 || g.chance(5) {
		return g.newProc()
	}
	return g.procs[g.rnd.IntN(len(g.procs))]
}

// resOf returns a random resource of p of one of kinds, or nil (never
// one of a story).
func (g *gen) resOf(p *proc, kinds ...resKind) *res {
	var c []*res
	for _, r := range p.res {
		if slices.Contains(kinds, r.kind) && !r.story {
			c = append(c, r)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[g.rnd.IntN(len(c))]
}

func (g *gen) bind(p *proc, kind resKind, file int, box string) *res {
	r := &res{name: g.name(map[resKind]string{rMemfd: "m", rTmp: "t", rNull: "n", rCtl: "ctl", rBox: "box", rLUO: "lu", rSession: "s", rMap: "map", rCount: "c"}[kind]), kind: kind, file: file, box: box}
	p.res = append(p.res, r)
	if file != 0 {
		g.aliases[file]++
	}
	return r
}

func (g *gen) unbind(p *proc, r *res) {
	if i := slices.Index(p.res, r); i >= 0 {
		p.res = slices.Delete(p.res, i, i+1)
		if r.file != 0 {
			g.aliases[r.file]--
		}
	}
}

// size draws a file offset or length: mostly page multiples of a few MiB,
// some odd, rarely absurd.
func (g *gen) size() string {
	switch g.rnd.IntN(20) {
	case 0:
		return "0"
	case 1:
		return fmt.Sprint(g.rnd.IntN(5000))
	case 2:
		return g.pick("-1", "0x7ffffffffffff000", "16MiB", "3MiB + 7")
	case 3, 4:
		return "2MiB"
	}
	return fmt.Sprintf("%dKiB", 4*(1+g.rnd.IntN(256)))
}

func (g *gen) data(n string) (string, string) {
	switch g.rnd.IntN(6) {
	case 0:
		return "zeros", n
	case 1:
		s := g.pick("x", "hello", "0123456789abcdef")
		return fmt.Sprintf("%q", s), fmt.Sprint(len(s))
	}
	return fmt.Sprintf("rand(%d)", g.rnd.IntN(8)), n
}

// action draws one action: a call from the table, a story step (box,
// preserve, hand over, restore) or a machine statement.
func (g *gen) action() {
	switch w := g.rnd.IntN(100); {
	case w < 45:
		g.call()
	case w < 55:
		g.observe()
	case w < 68:
		g.boxStory()
	case w < 76:
		g.luoStory()
	case w < 79:
		if g.mode != "clean" {
			g.emit(rolePlain, "kho %s", g.pick("activate", "activate", "deactivate"))
		}
	case w < 86:
		g.kexec()
	case w < 88:
		g.emit(rolePlain, "reboot")
		g.gone(false)
	case w < 91:
		if p := g.someProc(); p != nil && !p.story {
			g.emit(rolePlain, "exit %s", p.name)
			g.procs = slices.DeleteFunc(g.procs, func(q *proc) bool { return q == p })
			for _, r := range p.res {
				if r.file != 0 {
					g.aliases[r.file]--
				}
			}
		}
	case w < 97:
		if g.mode != "faulty" {
			g.call()
			return
		}
		g.faults = true
		site := g.pick("page_alloc", "slab", "fdt", "kho_write", "kho_claim", "recover")
		g.emit(rolePlain, "fault %s nth=%d times=%d", site, 1+g.rnd.IntN(40), 1+g.rnd.IntN(3))
	case w < 98:
		if g.mode != "faulty" {
			g.call()
			return
		}
		g.corrupt = true
		g.emit(rolePlain, "corrupt fdt %d %d", g.rnd.IntN(400), 1+g.rnd.IntN(8))
	default:
		g.newProc()
	}
}

// call draws a system call from the language's table: its signature's
// parameters, each by its kind, from resources of the right sort.
func (g *gen) call() {
	p := g.someProc()
	calls := g.lang.Syscalls()
	sig := calls[g.rnd.IntN(len(calls))]
	params, keys := sig.Params, []scn.Param(nil)
	var cmd *scn.Command
	if len(sig.Commands) > 0 && g.chance(95) {
		cmd = sig.Commands[g.rnd.IntN(len(sig.Commands))]
		params, keys = sig.CommandParams(cmd), cmd.Keys
	}
	want := g.fdWant(sig.Name, cmd)
	var args []string
	lens := map[string]string{}
	for i, prm := range params {
		if prm.Optional && g.chance(30) {
			break
		}
		if len(sig.Commands) > 0 && i == sig.Cmd {
			if cmd != nil {
				args = append(args, cmd.Name)
			} else {
				// The generic form: a command none of the table's is.
				args = append(args, g.pick("0", "0x2e7f", "0xffffffff"))
			}
			continue
		}
		args = append(args, g.arg(p, sig.Name, prm, want, lens, args))
	}
	for _, k := range keys {
		if k.Optional && g.chance(60) {
			continue
		}
		args = append(args, k.Name+"="+g.key(p, k, cmd))
	}
	text := fmt.Sprintf("%s(%s)", sig.Name, strings.Join(args, ", "))
	result := sig.Result
	if cmd != nil {
		result = cmd.Result
	}
	g.finishCall(p, sig.Name, cmd, text, result, args)
}

// fdWant is the sort of fd a call or command is usually made on.
func (g *gen) fdWant(call string, cmd *scn.Command) []resKind {
	if cmd != nil {
		switch {
		case strings.HasPrefix(cmd.Name, "FDBOX_CREATE"), strings.HasPrefix(cmd.Name, "FDBOX_DELETE"):
			return []resKind{rCtl}
		case strings.HasPrefix(cmd.Name, "FDBOX_"):
			return []resKind{rBox}
		case strings.HasPrefix(cmd.Name, "LIVEUPDATE_IOCTL_"):
			return []resKind{rLUO}
		case strings.HasPrefix(cmd.Name, "LIVEUPDATE_SESSION_"):
			return []resKind{rSession}
		}
	}
	return []resKind{rMemfd, rMemfd, rMemfd, rTmp}
}

// arg draws one positional argument of kind prm.Kind.
func (g *gen) arg(p *proc, call string, prm scn.Param, want []resKind, lens map[string]string, prev []string) string {
	switch prm.Kind {
	case scn.KindFD:
		if r := g.resOf(p, want...); r != nil && g.chance(95) {
			return r.name
		}
		if r := g.resOf(p, rMemfd, rTmp, rNull, rCtl, rBox, rLUO, rSession); r != nil && g.chance(80) {
			return r.name
		}
		return g.pick("99", "0", "1")
	case scn.KindMap:
		if r := g.resOf(p, rMap); r != nil && g.chance(95) {
			return r.name
		}
		return "0x1000"
	case scn.KindString:
		if prm.Name == "PATH" {
			return g.path()
		}
		return fmt.Sprintf("%q", g.pick("m", "ram", "guest", ""))
	case scn.KindData:
		d, n := g.data(lens[prm.SizedBy])
		if lens[prm.SizedBy] != n {
			// A string fixes its length: rewrite the LEN argument.
			for i, a := range prev {
				if a == lens[prm.SizedBy] {
					prev[i] = n
				}
			}
		}
		return d
	case scn.KindInt:
		if len(prm.Consts) > 0 {
			return g.consts(call, prm)
		}
		v := g.size()
		lens[prm.Name] = v
		return v
	}
	return "0"
}

// consts draws flags from a parameter's constants.
func (g *gen) consts(call string, prm scn.Param) string {
	switch prm.Name {
	case "MODE", "FLAGS":
		if g.chance(30) {
			return "0"
		}
	}
	c := prm.Consts
	if call == "mmap" && prm.Name == "PROT" {
		return g.pick("PROT_READ|PROT_WRITE", "PROT_READ|PROT_WRITE", "PROT_READ")
	}
	if call == "fallocate" && g.chance(50) {
		return "FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE"
	}
	if call == "open" {
		return g.pick("O_RDWR", "O_RDWR", "O_RDWR|O_CREAT", "O_RDONLY", "O_WRONLY|O_APPEND", "O_RDWR|O_CREAT|O_EXCL")
	}
	a := c[g.rnd.IntN(len(c))]
	if g.chance(30) {
		if b := c[g.rnd.IntN(len(c))]; b != a {
			a += "|" + b
		}
	}
	return a
}

func (g *gen) path() string {
	switch g.rnd.IntN(10) {
	case 0, 1:
		return `"/dev/fdbox/fdbox"`
	case 2, 3:
		if len(g.boxes) > 0 {
			return fmt.Sprintf(`"/dev/fdbox/%s"`, g.boxes[g.rnd.IntN(len(g.boxes))])
		}
		return `"/dev/fdbox/b0"`
	case 4, 5:
		return `"/dev/liveupdate"`
	case 6:
		return `"/dev/null"`
	}
	return fmt.Sprintf(`"/tmp/%s"`, g.pick("a", "b"))
}

// key draws a key=value argument.
func (g *gen) key(p *proc, k scn.Param, cmd *scn.Command) string {
	switch k.Name {
	case "name":
		if cmd != nil && strings.HasPrefix(cmd.Name, "LIVEUPDATE") {
			if len(g.sess) > 0 && g.chance(70) {
				return fmt.Sprintf("%q", g.sess[g.rnd.IntN(len(g.sess))])
			}
			return fmt.Sprintf("%q", g.pick("s0", "s1", ""))
		}
		if cmd != nil && strings.Contains(cmd.Name, "BOX") && len(g.boxes) > 0 && g.chance(70) {
			return fmt.Sprintf("%q", g.boxes[g.rnd.IntN(len(g.boxes))])
		}
		return fmt.Sprintf("%q", g.pick("b0", "b1", "f0", "f1", ""))
	case "fd":
		if r := g.resOf(p, rMemfd, rMemfd, rTmp); r != nil && g.chance(90) {
			return r.name
		}
		return "99"
	case "token":
		return fmt.Sprint(g.rnd.IntN(4))
	}
	return g.pick("0", "0", "0", "1")
}

// finishCall prints a call and updates what the generator believes.
func (g *gen) finishCall(p *proc, name string, cmd *scn.Command, text string, result scn.Kind, args []string) {
	var r *res
	switch {
	case name == "memfd_create":
		g.files++
		r = g.bind(p, rMemfd, g.files, "")
	case name == "open":
		kind := rTmp
		switch {
		case strings.Contains(text, `"/dev/fdbox/fdbox"`):
			kind = rCtl
		case strings.Contains(text, `"/dev/fdbox/`):
			kind = rBox
		case strings.Contains(text, "liveupdate"):
			kind = rLUO
		case strings.Contains(text, "/dev/null"):
			kind = rNull
		}
		g.files++
		if kind == rTmp {
			g.tainted[g.files] = true
		}
		r = g.bind(p, kind, g.files, "")
	case name == "dup":
		if src := g.byName(p, args[0]); src != nil {
			g.tainted[src.file] = true
			r = g.bind(p, src.kind, src.file, src.box)
		}
	case name == "mmap":
		if src := g.byName(p, args[0]); src != nil {
			g.tainted[src.file] = true
			r = g.bind(p, rMap, src.file, "")
		}
	case name == "close", name == "munmap":
		if src := g.byName(p, args[0]); src != nil {
			g.unbind(p, src)
		}
		g.emit(rolePlain, "%s: %s", p.name, text)
		return
	case cmd != nil && cmd.Name == "FDBOX_GET_FD":
		g.files++
		r = g.bind(p, rMemfd, g.files, "")
	case cmd != nil && cmd.Name == "FDBOX_CREATE_BOX":
		g.boxes = append(g.boxes, strings.Trim(strings.TrimPrefix(args[len(args)-1], "name="), `"`))
	case cmd != nil && cmd.Name == "FDBOX_PUT_FD":
		for _, a := range args {
			if fd, ok := strings.CutPrefix(a, "fd="); ok {
				if src := g.byName(p, fd); src != nil {
					g.tainted[src.file] = true // put without a snapshot
					g.unbind(p, src)
				}
			}
		}
	case cmd != nil && (cmd.Name == "LIVEUPDATE_IOCTL_CREATE_SESSION" || cmd.Name == "LIVEUPDATE_IOCTL_RETRIEVE_SESSION"):
		r = g.bind(p, rSession, 0, "")
	case cmd != nil && cmd.Name == "LIVEUPDATE_SESSION_RETRIEVE_FD":
		g.files++
		r = g.bind(p, rMemfd, g.files, "")
	case result == scn.KindInt && g.chance(60):
		c := g.name("c")
		s := g.emit(roleCount, "%s: %s = %s", p.name, c, text)
		s.expr, s.binds = p.name+":"+c, c
		return
	}
	if r == nil {
		g.emit(rolePlain, "%s: %s", p.name, text)
		return
	}
	s := g.emit(rolePlain, "%s: %s = %s", p.name, r.name, text)
	s.binds = r.name
}

func (g *gen) byName(p *proc, name string) *res {
	for _, r := range p.res {
		if r.name == name {
			return r
		}
	}
	return nil
}

// observe evaluates an expression; its value becomes an expectation.
func (g *gen) observe() {
	p := g.someProc()
	r := g.resOf(p, rMemfd, rTmp, rMap)
	if r == nil {
		g.emit(rolePlain, "let %s = frames(%s)", g.name("v"), g.pick("free", "used", "slab", "tracker", "preserved", "reserved", "scratch"))
		return
	}
	ref := p.name + ":" + r.name
	var e string
	switch g.rnd.IntN(8) {
	case 0, 1, 2:
		e = fmt.Sprintf("hash(%s, %s, %s)", ref, g.pick("0", "4KiB", "1MiB"), g.pick("8MiB", "4KiB", "2MiB + 5"))
	case 3:
		e = fmt.Sprintf("size(%s)", ref)
	case 4:
		e = fmt.Sprintf("pos(%s)", ref)
	case 5:
		e = fmt.Sprintf("seals(%s)", ref)
	case 6:
		e = fmt.Sprintf("fds(%s)", p.name)
	default:
		// An expression of operators over a value that does not depend
		// on the tracker.
		e = fmt.Sprintf("(size(%s) + %d) * 3 - pos(%s) | %d", ref, g.rnd.IntN(9999), ref, g.rnd.IntN(16))
	}
	s := g.emit(roleObserve, "let %s = %s", g.name("v"), e)
	s.expr = e
}

// ensure returns a resource of p of kind, opening one when there is none.
func (g *gen) ensure(p *proc, kind resKind, path string) *res {
	if r := g.resOf(p, kind); r != nil {
		return r
	}
	g.files++
	r := g.bind(p, kind, g.files, "")
	s := g.emit(rolePlain, "%s: %s = open(%q, O_RDWR)", p.name, r.name, path)
	s.binds = r.name
	return r
}

// memfd creates a memfd and fills it.
func (g *gen) memfd(p *proc) *res {
	g.files++
	r := g.bind(p, rMemfd, g.files, "")
	flags := g.pick("MFD_ALLOW_SEALING", "MFD_ALLOW_SEALING|MFD_NOEXEC_SEAL", "0")
	s := g.emit(rolePlain, "%s: %s = memfd_create(%q, %s)", p.name, r.name, g.pick("ram", "m"), flags)
	s.binds = r.name
	size := 4 * (1 + g.rnd.IntN(1024))
	if g.chance(70) {
		g.emit(rolePlain, "%s: ftruncate(%s, %dKiB)", p.name, r.name, size)
	}
	for range 1 + g.rnd.IntN(3) {
		d, _ := g.data("")
		if strings.HasPrefix(d, `"`) {
			d = "zeros"
		}
		g.emit(rolePlain, "%s: pwrite(%s, %dKiB, %dKiB, %s)", p.name, r.name, 4*g.rnd.IntN(size/4+1), 4*(1+g.rnd.IntN(256)), d)
	}
	if g.chance(30) {
		g.emit(rolePlain, "%s: fallocate(%s, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, %dKiB, %dKiB)", p.name, r.name, 4*g.rnd.IntN(size/4+1), 4*(1+g.rnd.IntN(64)))
	}
	if g.chance(30) {
		g.emit(rolePlain, "%s: lseek(%s, %d, SEEK_SET)", p.name, r.name, g.rnd.IntN(10000))
	}
	if g.chance(30) && strings.Contains(flags, "SEALING") {
		g.emit(rolePlain, "%s: fcntl(%s, F_ADD_SEALS, %s)", p.name, r.name, g.pick("F_SEAL_SHRINK", "F_SEAL_GROW|F_SEAL_SHRINK", "F_SEAL_WRITE"))
	}
	if g.swap && g.chance(40) {
		m := g.name("map")
		s := g.emit(rolePlain, "%s: %s = mmap(%s, 0, %dKiB, PROT_READ|PROT_WRITE, MAP_SHARED)", p.name, m, r.name, size)
		s.binds = m
		g.emit(rolePlain, "%s: madvise(%s, 0, %dKiB, MADV_PAGEOUT)", p.name, m, size)
		g.emit(rolePlain, "%s: munmap(%s)", p.name, m)
	}
	return r
}

// snap takes a snapshot of a file for the oracle.
func (g *gen) snap(p *proc, r *res) *snapshot {
	ref := p.name + ":" + r.name
	sn := &snapshot{hash: g.name("h"), size: g.name("z"), pos: g.name("o"), seals: g.name("q"), seal: g.build["memfd"] == "v2"}
	sn.lets = []*stmt{
		g.emit(rolePlain, "let %s = hash(%s, 0, 8MiB)", sn.hash, ref),
		g.emit(rolePlain, "let %s = size(%s)", sn.size, ref),
		g.emit(rolePlain, "let %s = pos(%s)", sn.pos, ref),
		g.emit(rolePlain, "let %s = seals(%s)", sn.seals, ref),
	}
	return sn
}

// boxStory creates a box, puts a memfd in it, seals it: the FDBox path of
// a live update.
func (g *gen) boxStory() {
	p := g.someProc()
	ctl := g.ensure(p, rCtl, "/dev/fdbox/fdbox")
	// A box of its own, which generic calls do not know: nobody
	// unseals it behind the story's back.
	name := g.name("b")
	create := g.emit(rolePlain, "%s: ioctl(%s, FDBOX_CREATE_BOX, name=%q)", p.name, ctl.name, name)
	g.files++
	box := g.bind(p, rBox, g.files, name)
	box.story = true
	open := g.emit(rolePlain, "%s: %s = open(\"/dev/fdbox/%s\", O_RDWR)", p.name, box.name, name)
	open.binds = box.name
	m := g.resOf(p, rMemfd)
	if m == nil || g.chance(50) {
		m = g.memfd(p)
	}
	pr := &preserved{box: box.box, name: g.name("f")}
	if !g.tainted[m.file] && g.aliases[m.file] == 1 {
		pr.snap = g.snap(p, m)
	}
	put := g.emit(rolePlain, "%s: ioctl(%s, FDBOX_PUT_FD, fd=%s, name=%q)", p.name, box.name, m.name, pr.name)
	g.unbind(p, m)
	if pr.snap != nil {
		pr.snap.lets = append(pr.snap.lets, put)
	}
	g.pres = append(g.pres, pr)
	if g.chance(80) {
		seal := g.emit(rolePlain, "%s: ioctl(%s, FDBOX_SEAL)", p.name, box.name)
		g.sealed[box.box] = true
		pr.deps = []*stmt{create, open, put, seal}
	}
	if g.chance(40) && g.mode != "clean" {
		g.emit(rolePlain, "kho activate")
	}
}

// luoStory opens /dev/liveupdate, creates a session and preserves a memfd
// in it: the LUO path.
func (g *gen) luoStory() {
	p := g.someProc()
	lu := g.ensure(p, rLUO, "/dev/liveupdate")
	var s *res
	for _, r := range p.res {
		if r.kind == rSession && r.story && g.storySess[r] != nil && g.chance(60) {
			s = r
		}
	}
	if s == nil {
		name := g.name("s")
		s = g.bind(p, rSession, 0, name)
		s.story, p.story = true, true
		st := g.emit(rolePlain, "%s: %s = ioctl(%s, LIVEUPDATE_IOCTL_CREATE_SESSION, name=%q)", p.name, s.name, lu.name, name)
		st.binds = s.name
		g.storySess[s] = st
	}
	m := g.resOf(p, rMemfd)
	if m == nil || g.chance(50) {
		m = g.memfd(p)
	}
	pr := &preserved{box: s.box, token: uint64(g.fresh), luo: true}
	put := g.emit(rolePlain, "%s: ioctl(%s, LIVEUPDATE_SESSION_PRESERVE_FD, fd=%s, token=%d)", p.name, s.name, m.name, pr.token)
	pr.deps = []*stmt{g.storySess[s], put}
	if !g.tainted[m.file] && g.aliases[m.file] == 1 {
		pr.alias, pr.aliasProc = m, p
		pr.snap = &snapshot{lets: []*stmt{put}}
	}
	g.pres = append(g.pres, pr)
	if g.chance(30) && g.mode != "clean" {
		g.emit(rolePlain, "kho activate")
	}
}

// kexec snapshots the LUO files, kexecs, and restores what was handed
// over with the oracle's expectations.
func (g *gen) kexec() {
	before := g.build["memfd"]
	for _, pr := range g.pres {
		if pr.luo && pr.snap != nil && pr.alias != nil {
			if slices.Contains(pr.aliasProc.res, pr.alias) && g.aliases[pr.alias.file] == 1 && !g.tainted[pr.alias.file] {
				put := pr.snap.lets[0]
				pr.snap = g.snap(pr.aliasProc, pr.alias)
				pr.snap.lets = append(pr.snap.lets, put)
			} else {
				pr.snap = nil
			}
		}
	}
	var act *stmt
	if g.chance(85) || g.mode == "clean" {
		act = g.emit(rolePlain, "kho activate")
	}
	keys := g.buildKeys(false)
	kx := g.emit(rolePlain, "kexec%s", keys)
	seal := before == "v2" && g.build["memfd"] == "v2"
	// What must come back: without faults, after an activation, into
	// the same build (a build with another tracker, FDBox mode or memfd
	// version may legitimately not read what this one wrote).
	must := g.mode != "faulty" && act != nil && keys == ""
	carried := g.pres
	g.gone(true)
	if len(carried) == 0 {
		return
	}
	p := g.newProc()
	if !strings.HasSuffix(p.decl.text, "uid=0") {
		p.decl.text += " uid=0" // the restorer is root (the devices are 0600)
	}
	role := func(pr *preserved) (stmtRole, []*stmt) {
		if !must || pr.deps == nil || (pr.luo && g.build["luo"] != "on") || (!pr.luo && g.build["fdbox"] == "off") {
			return rolePlain, nil
		}
		return roleMust, append(slices.Clone(pr.deps), act, kx, p.decl)
	}
	opened := map[string]*res{}
	for _, pr := range carried {
		var bind *stmt
		var r *res
		rl, deps := role(pr)
		must := func(s *stmt) *stmt {
			s.role, s.deps = rl, deps
			return s
		}
		if pr.luo {
			s := opened["luo:"+pr.box]
			if s == nil {
				lu := g.ensure(p, rLUO, "/dev/liveupdate")
				s = g.bind(p, rSession, 0, pr.box)
				s.story, p.story = true, true
				st := must(g.emit(rolePlain, "%s: %s = ioctl(%s, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, name=%q)", p.name, s.name, lu.name, pr.box))
				st.binds = s.name
				opened["luo:"+pr.box] = s
			}
			g.files++
			r = g.bind(p, rMemfd, g.files, "")
			bind = must(g.emit(rolePlain, "%s: %s = ioctl(%s, LIVEUPDATE_SESSION_RETRIEVE_FD, token=%d)", p.name, r.name, s.name, pr.token))
		} else {
			b := opened["box:"+pr.box]
			if b == nil {
				g.files++
				b = g.bind(p, rBox, g.files, pr.box)
				st := must(g.emit(rolePlain, "%s: %s = open(\"/dev/fdbox/%s\", O_RDWR)", p.name, b.name, pr.box))
				st.binds = b.name
				must(g.emit(rolePlain, "%s: ioctl(%s, FDBOX_UNSEAL)", p.name, b.name))
				opened["box:"+pr.box] = b
				g.boxes = append(g.boxes, pr.box)
			}
			g.files++
			r = g.bind(p, rMemfd, g.files, "")
			bind = must(g.emit(rolePlain, "%s: %s = ioctl(%s, FDBOX_GET_FD, name=%q)", p.name, r.name, b.name, pr.name))
		}
		bind.binds = r.name
		if pr.snap == nil {
			continue
		}
		ref := p.name + ":" + r.name
		deps = append([]*stmt{bind}, pr.snap.lets...)
		checks := []string{
			fmt.Sprintf("expect size(%s) == %s", ref, pr.snap.size),
			fmt.Sprintf("expect hash(%s, 0, 8MiB) == %s", ref, pr.snap.hash),
			fmt.Sprintf("expect pos(%s) == %s", ref, pr.snap.pos),
		}
		if seal && pr.snap.seal {
			checks = append(checks, fmt.Sprintf("expect seals(%s) == %s", ref, pr.snap.seals))
		}
		for _, c := range checks {
			s := g.emit(roleOracle, "%s", c)
			s.deps = deps
		}
	}
	if g.chance(50) {
		for _, s := range opened {
			if s.kind == rSession {
				g.emit(rolePlain, "%s: ioctl(%s, LIVEUPDATE_SESSION_FINISH)", p.name, s.name)
			}
		}
	}
}

// gone forgets the processes and boxes of a kernel that kexec or reboot
// replaced; kexec hands its preserved files to the next.
func (g *gen) gone(kexec bool) {
	g.procs = nil
	g.boxes = nil
	g.sess = nil
	g.sealed = map[string]bool{}
	g.aliases = map[int]int{}
	if kexec {
		g.carried = g.pres
	} else {
		g.carried = nil
	}
	g.pres = nil
}
