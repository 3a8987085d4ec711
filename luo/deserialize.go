package luo

import (
	"fmt"
	"slices"

	"khosim/errno"
	"khosim/kernel"
	"khosim/physmem"
	"khosim/uapi"
)

// Deserialize is luo_session_deserialize() -> luo_file_deserialize(): the
// session array the previous kernel wrote is claimed and read, and for
// every session every luo_file_ser: its compatible must name a handler of
// this kernel (preserve.Layer.ByBlobCompatible: memfd-v1, memfd-v2 up to
// the build's memfd= key), whose ReadBlob opens the record and claims all
// the memory it describes. The arrays are freed once read.
//
// Differs from Linux, which deserializes at the first open of
// /dev/liveupdate and claims a file's memory only when it is retrieved:
// khosim does both at boot, before KHO's late return pass, so that what
// LUO carries counts as used (not preserved) from the end of boot on, and
// the pass returns only what nobody owns.
//
// A failure (an array or record that does not check, a compatible no
// handler reads, a claim that fails) makes the whole incoming state
// unavailable, as in Linux (every open of /dev/liveupdate fails with EIO
// in this kernel): what was deserialized so far is discarded and its
// memory freed, and what was not reached is returned by KHO's late pass.
// Linux instead leaves all of it allocated ("We treat these resources as
// leaked").
func (l *LUO) Deserialize() error {
	if !l.enabled || !l.in.active || l.in.err != nil {
		return nil
	}
	sessions, err := l.deserialize()
	if err != nil {
		for _, s := range sessions {
			s.finish()
			l.kfree(&s.obj)
		}
		return l.unavailable(err)
	}
	l.incoming = sessions
	for _, s := range sessions {
		l.stats.IncomingFiles += len(s.files)
	}
	l.stats.IncomingSessions = len(sessions)
	if len(sessions) > 0 {
		l.k.Printk(kernel.LogInfo, "liveupdate: %d sessions with %d files handed over", len(sessions), l.stats.IncomingFiles)
	}
	return nil
}

// deserialize reads the session array; on error it returns the sessions
// built so far (their records claimed) for the caller to discard.
func (l *LUO) deserialize() ([]*Session, error) {
	kho, mm := l.kho, l.k.MM
	hf, order, err := kho.ClaimAt(l.in.fdt.header)
	if err != nil {
		return nil, fmt.Errorf("session header at %#x: %w", uint64(l.in.fdt.header), err)
	}
	defer mm.FolioPut(hf) // kho_restore_free once read
	hb := mm.Frames.Span(hf.PFN(), 1<<order)
	count := le.Uint64(hb)
	if count > uint64(len(hb)-sessionHeaderSerSize)/sessionSerSize {
		return nil, fmt.Errorf("session header: %d sessions in a block of %d bytes: %w", count, len(hb), errno.EINVAL)
	}
	var sessions []*Session
	for i := range int(count) {
		ser := hb[sessionHeaderSerSize+i*sessionSerSize:][:sessionSerSize]
		name, ok := cString(ser[:uapi.LIVEUPDATE_SESSION_NAME_LENGTH])
		if !ok || name == "" {
			return sessions, fmt.Errorf("session %d: name %q is empty or unterminated: %w", i, name, errno.EINVAL)
		}
		if slices.ContainsFunc(sessions, func(o *Session) bool { return o.name == name }) {
			return sessions, fmt.Errorf("Failed to insert session [%s]: %w", name, errno.EEXIST)
		}
		obj, err := l.kzalloc(sessionRecordSize) // luo_session_alloc
		if err != nil {
			return sessions, fmt.Errorf("session [%s]: %w", name, errno.ENOMEM)
		}
		s := &Session{l: l, name: name, incoming: true, obj: obj}
		sessions = append(sessions, s)
		files, n := physmem.PhysAddr(le.Uint64(ser[64:])), le.Uint64(ser[72:])
		if err := l.deserializeFiles(s, files, n); err != nil {
			return sessions, fmt.Errorf("Failed to deserialize files for session [%s]: %w", name, err)
		}
	}
	return sessions, nil
}

// deserializeFiles reads one session's luo_file_ser array.
func (l *LUO) deserializeFiles(s *Session, files physmem.PhysAddr, n uint64) error {
	if files == 0 {
		if n != 0 {
			return fmt.Errorf("%d files and no array: %w", n, errno.EINVAL)
		}
		return nil
	}
	kho, mm := l.kho, l.k.MM
	af, order, err := kho.ClaimAt(files)
	if err != nil {
		return fmt.Errorf("file array at %#x: %w", uint64(files), err)
	}
	defer mm.FolioPut(af)
	ab := mm.Frames.Span(af.PFN(), 1<<order)
	if n > uint64(len(ab))/fileSerSize {
		return fmt.Errorf("File count mismatch: %d files in a block of %d bytes: %w", n, len(ab), errno.EINVAL)
	}
	for j := range int(n) {
		ser := ab[j*fileSerSize:][:fileSerSize]
		compat, ok := cString(ser[:HandlerCompatLength])
		data, token := physmem.PhysAddr(le.Uint64(ser[48:])), le.Uint64(ser[56:])
		where := fmt.Sprintf("%s/%s/token %#x", FDTKHOEntryName, s.name, token)
		if !ok {
			return fmt.Errorf("%s: unterminated compatible: %w", where, errno.EINVAL)
		}
		if slices.ContainsFunc(s.files, func(o *luoFile) bool { return o.token == token }) {
			return fmt.Errorf("%s: token used twice: %w", where, errno.EINVAL)
		}
		h := l.layer.ByBlobCompatible(compat)
		if h == nil {
			return fmt.Errorf("%s: No registered handler for compatible '%s': %w", where, compat, errno.ENOENT)
		}
		obj, err := l.kzalloc(fileRecordSize) // luo_file_deserialize: kzalloc_obj(*luo_file)
		if err != nil {
			return fmt.Errorf("%s: %w", where, errno.ENOMEM)
		}
		in, err := h.ReadBlob(compat, data)
		if err != nil {
			l.kfree(&obj)
			return fmt.Errorf("%s: %w", where, err)
		}
		s.files = append(s.files, &luoFile{s: s, token: token, handler: h, compat: compat, data: data, in: in, obj: obj})
	}
	return nil
}
