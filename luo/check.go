package luo

import (
	"slices"

	"khosim/invariant"
	"khosim/kernel"
	"khosim/preserve"
	"khosim/uapi"
)

// visitRefs reports LUO's references for the kernel's audit: one on every
// file preserved in an outgoing or released session, one on every file
// retrieved and not yet finished.
func (l *LUO) visitRefs(v kernel.RefVisitor) {
	for _, s := range slices.Concat(l.outgoing, l.released, l.incoming) {
		for _, lf := range s.files {
			if lf.file != nil {
				v.File(lf.file, 1, "luo: session "+s.name)
			}
		}
	}
}

// CheckInvariants is LUO's part of the audit:
//
//   - luo-device: at most one /dev/liveupdate file is open, and in_use
//     says whether one is;
//   - luo-sessions: names are 1..63 bytes and unique in each list, each
//     session is in the list of its direction;
//   - luo-blocks: the FDT page, the session array and every file array
//     are preserved and large enough; the FDT reads back as luo-v1 with
//     this kernel's number and the session array's address; a session
//     without files has no array (but while KHO is finalized);
//   - luo-files: tokens are unique in a session; an outgoing file holds
//     its file and a live record of the preservation layer, frozen exactly
//     while LUO is; an incoming file is deserialized (an Incoming),
//     retrieved (a file) or failed (an error), one of the three;
//   - luo-preserved-files: luo_preserved_files is exactly the outgoing
//     and released files and the retrieved incoming ones;
//   - luo-unavailable: an unavailable incoming state has no sessions.
func (l *LUO) CheckInvariants() error {
	bad := func(name, format string, args ...any) error {
		return invariant.New("luo", name, l.Dump(), format, args...)
	}
	open := 0
	for _, f := range l.k.Files() {
		if f.Ops == l.devOps {
			open++
		}
	}
	if open > 1 || (open == 1) != l.inUse {
		return bad("luo-device", "%d /dev/liveupdate files open, in_use=%v", open, l.inUse)
	}
	if l.in.err != nil && len(l.incoming) > 0 {
		return bad("luo-unavailable", "the incoming state is unavailable but %d sessions exist", len(l.incoming))
	}
	if err := l.checkBlocks(); err != nil {
		return err
	}
	live := map[preserve.Preserved]bool{}
	for _, p := range l.layer.Live() {
		live[p] = true
	}
	want := 0
	for _, list := range []struct {
		ss       []*Session
		incoming bool
		released bool
	}{{l.outgoing, false, false}, {l.released, false, true}, {l.incoming, true, false}} {
		names := map[string]bool{}
		for _, s := range list.ss {
			if s.incoming != list.incoming || s.released != list.released || s.l != l {
				return bad("luo-sessions", "%v is in the wrong list", s)
			}
			if s.name == "" || len(s.name) >= uapi.LIVEUPDATE_SESSION_NAME_LENGTH || (names[s.name] && !list.released) {
				return bad("luo-sessions", "bad or duplicate name %q", s.name)
			}
			names[s.name] = true
			n, err := l.checkFiles(s, live)
			if err != nil {
				return err
			}
			want += n
		}
	}
	if want != len(l.preserved) {
		return bad("luo-preserved-files", "%d files preserved or retrieved, %d in luo_preserved_files", want, len(l.preserved))
	}
	return l.checkRecords()
}

// checkRecords checks that every session and file holds its kmalloc'd
// record and that no record outlived its object (luo-records).
func (l *LUO) checkRecords() error {
	n := 0
	for _, s := range slices.Concat(l.outgoing, l.released, l.incoming) {
		if s.obj == 0 {
			return invariant.New("luo", "luo-records", l.Dump(), "%v has no struct luo_session", s)
		}
		n++
		for _, lf := range s.files {
			if lf.obj == 0 {
				return invariant.New("luo", "luo-records", l.Dump(), "%v has no struct luo_file", lf)
			}
			n++
		}
	}
	if n != l.nrRecords {
		return invariant.New("luo", "luo-records", l.Dump(), "%d sessions and files, %d records allocated: %d leaked", n, l.nrRecords, l.nrRecords-n)
	}
	return nil
}

// checkBlocks checks LUO's own preserved memory and its FDT.
func (l *LUO) checkBlocks() error {
	bad := func(format string, args ...any) error {
		return invariant.New("luo", "luo-blocks", l.Dump(), format, args...)
	}
	if !l.enabled {
		if l.out.fdt.valid() || len(l.outgoing)+len(l.released) > 0 {
			return bad("a disabled LUO has outgoing state")
		}
		return nil
	}
	for _, b := range []block{l.out.fdt, l.out.header} {
		if !b.valid() || !l.kho.IsPreserved(blockFolio(b)) {
			return bad("block %v is not preserved", b.mem())
		}
	}
	if sessionCap(l.out.header) < len(l.outgoing) {
		return bad("%d outgoing sessions in an array of %d", len(l.outgoing), sessionCap(l.out.header))
	}
	in, err := readFDT(l.out.fdt.b)
	if err != nil {
		return bad("the outgoing FDT does not read back: %v", err)
	}
	if in.number != l.out.number || in.header != l.out.header.phys || l.out.number != l.in.fdt.number+1 {
		return bad("the outgoing FDT says number %d header %#x", in.number, uint64(in.header))
	}
	return nil
}

// checkFiles checks one session's files and returns how many are in
// luo_preserved_files.
func (l *LUO) checkFiles(s *Session, live map[preserve.Preserved]bool) (int, error) {
	bad := func(format string, args ...any) error {
		return invariant.New("luo", "luo-files", l.Dump(), "session %q: "+format, append([]any{s.name}, args...)...)
	}
	tokens := map[uint64]bool{}
	n := 0
	for _, lf := range s.files {
		if tokens[lf.token] || lf.s != s {
			return 0, bad("token %#x twice or in the wrong session", lf.token)
		}
		tokens[lf.token] = true
		if !s.incoming {
			if lf.file == nil || lf.file.Refs() <= 0 || lf.rec == nil || !live[lf.rec] || lf.rec.Handler() != lf.handler {
				return 0, bad("token %#x: file or record not live", lf.token)
			}
			if lf.frozen != l.frozen && !s.released {
				return 0, bad("token %#x: frozen=%v while LUO frozen=%v", lf.token, lf.frozen, l.frozen)
			}
			if l.preserved[lf.key] != lf {
				return 0, bad("token %#x is not in luo_preserved_files", lf.token)
			}
			n++
			continue
		}
		states := 0
		if lf.in != nil {
			states++
		}
		if lf.retrieved {
			states++
			if lf.file == nil || lf.file.Refs() <= 0 || l.preserved[lf.key] != lf {
				return 0, bad("token %#x: retrieved file not held", lf.token)
			}
			n++
		}
		if lf.retrieveErr != nil {
			states++
		}
		if states != 1 {
			return 0, bad("token %#x: %d states", lf.token, states)
		}
	}
	if s.incoming {
		return n, nil
	}
	switch {
	case len(s.files) > 0 && (!s.arr.valid() || fileCap(s.arr) < len(s.files)):
		return 0, bad("%d files in an array of %d", len(s.files), fileCap(s.arr))
	case s.arr.valid() && !l.kho.IsPreserved(blockFolio(s.arr)):
		return 0, bad("file array %v not preserved", s.arr.mem())
	case s.arr.valid() && len(s.files) == 0 && !l.kho.Finalized():
		return 0, bad("an array without files")
	}
	return n, nil
}
