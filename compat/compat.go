// Package compat answers "will kernel A hand over to kernel B": for each
// pair (old build, new build) of a catalogue of kernel builds it runs a
// standard workload through every front-end the old build has, kexecs
// into the new build and says what the new kernel found — revived,
// refused (with the reason the kernel logged), or not applicable (the new
// kernel has no such front-end) — after checking every invariant.
//
// Mainline promises no compatibility between versions ("backward/forward
// compatibility is only guaranteed for kernels supporting the same ABI
// version", include/linux/kho/abi/kexec_handover.h); users ask for one.
// The matrix shows which pairs work today and why the others do not.
package compat

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/zeebo/xxh3"

	"khosim/errno"
	"khosim/fdbox"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/luo"
	"khosim/machine"
	"khosim/uapi"
)

// Entry is a named kernel build of the catalogue.
type Entry struct {
	Name  string
	Build kbuild.Build
}

// Catalogue returns the builds the matrix covers: the RFC's kernel,
// mainline 6.19 (bitmaps, LUO writing memfd-v1), the 2026 stateless KHO
// (radix, LUO writing memfd-v2), and every build one key away from one of
// them, each once (fdbox_shmem= only where FDBox is built). Every build uses 2 MiB folios where they fit, so that
// the workload has a THP range.
func Catalogue() []Entry {
	mk := func(kv ...string) kbuild.Build {
		b := kbuild.Default()
		b.ShmemHuge = "always"
		for i := 0; i < len(kv); i += 2 {
			var err error
			if b, err = b.With(kv[i], kv[i+1]); err != nil {
				panic("compat: catalogue: " + err.Error())
			}
		}
		return b
	}
	bases := []Entry{
		{"rfc", mk()},
		{"6.19", mk("kho", "bitmaps", "fdbox", "off", "luo", "on", "memfd", "v1")},
		{"stateless", mk("kho", "radix", "fdbox", "off", "luo", "on", "memfd", "v2")},
	}
	out := append([]Entry(nil), bases...)
	seen := map[string]bool{}
	for _, e := range bases {
		seen[e.Build.String()] = true
	}
	for _, base := range bases {
		for _, k := range kbuild.Keys() {
			if k.Name == "shmem_huge" || k.Name == "fdbox_shmem" && base.Build.FDBox == kbuild.FDBoxOff {
				continue // fdbox_shmem= is moot without FDBox
			}
			for _, v := range k.Values {
				b, _ := base.Build.With(k.Name, v)
				if seen[b.String()] {
					continue
				}
				seen[b.String()] = true
				out = append(out, Entry{base.Name + "+" + k.Name + "=" + v, b})
			}
		}
	}
	return out
}

// Outcome is what the new kernel made of one front-end's part of the
// workload.
type Outcome struct {
	Frontend string `json:"frontend"` // "fdbox" or "luo"
	// Result is "revived", "revived-lossy" (the file came back, but a
	// property the old build carried did not: memfd-v1's seals),
	// "refused" or "n/a" (the new build lacks the front-end).
	Result string `json:"result"`
	// Why explains a refusal or a loss, from the new kernel's log or the
	// errno a call returned.
	Why string `json:"why,omitempty"`
}

// Cell is one pair of the matrix.
type Cell struct {
	From, To string
	Outcomes []Outcome
	// Err is set when the pair could not be run at all (a bug: the
	// matrix test fails on it).
	Err error
}

// Matrix runs every pair of builds.
func Matrix(builds []Entry) []Cell {
	var out []Cell
	for _, from := range builds {
		for _, to := range builds {
			out = append(out, Run(from, to))
		}
	}
	return out
}

// workload is the standard workload's file: 6 MiB, a hole in its first
// 2 MiB, data elsewhere (the 2 MiB at 4 MiB a THP range), sealed against
// shrinking and growing.
const (
	fileSize = 6 << 20
	holeEnd  = 1 << 20
	seals    = uapi.F_SEAL_SHRINK | uapi.F_SEAL_GROW
)

func fill(dst []byte, off int64) {
	for i := range dst {
		dst[i] = byte((off+int64(i))*31) ^ 0x5a
	}
}

// expected returns the hash of the workload's file contents.
func expected() uint64 {
	b := make([]byte, fileSize)
	fill(b[holeEnd:], holeEnd)
	return xxh3.Hash(b)
}

func fileHash(t *kernel.Task, fd int) (uint64, error) {
	var buf bytes.Buffer
	_, err := t.Pread(fd, 0, fileSize, func(src []byte, _ int64) error { buf.Write(src); return nil })
	return xxh3.Hash(buf.Bytes()), err
}

// makeFile creates the workload's memfd in t.
func makeFile(t *kernel.Task, name string) (int, error) {
	fd, err := t.MemfdCreate(name, uapi.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, err
	}
	if err := t.Ftruncate(fd, fileSize); err != nil {
		return -1, err
	}
	if _, err := t.Pwrite(fd, holeEnd, fileSize-holeEnd, fill); err != nil {
		return -1, err
	}
	if _, err := t.Fcntl(fd, uapi.F_ADD_SEALS, seals); err != nil {
		return -1, err
	}
	return fd, nil
}

// Run runs the workload on a kernel of build from and kexecs into to.
func Run(from, to Entry) Cell {
	c := Cell{From: from.Name, To: to.Name}
	m, err := machine.New(machine.Config{Memory: 512 << 20, Seed: 1})
	if err != nil {
		c.Err = err
		return c
	}
	defer m.Close()
	if err := m.Boot(from.Build); err != nil {
		c.Err = fmt.Errorf("boot %s: %w", from.Build, err)
		return c
	}
	t := m.Kernel().NewTask("vmm", kernel.Cred{UID: 0, Caps: uapi.CapAll})
	// LUO preserves first: under a tracker that finalizes, nothing can be
	// preserved once FDBox's kho activate ran.
	if from.Build.LUO {
		if err := luoBefore(t); err != nil {
			c.Err = fmt.Errorf("luo workload: %w", err)
			return c
		}
	}
	if from.Build.FDBox != kbuild.FDBoxOff {
		if err := fdboxBefore(t, from.Build); err != nil {
			c.Err = fmt.Errorf("fdbox workload: %w", err)
			return c
		}
		if err := m.KHOActivate(); err != nil {
			c.Err = fmt.Errorf("kho activate: %w", err)
			return c
		}
	}
	if err := m.CheckInvariants(); err != nil {
		c.Err = err
		return c
	}
	if err := m.Kexec(to.Build); err != nil {
		c.Err = fmt.Errorf("kexec: %w", err)
		return c
	}
	refused := ""
	if why := m.KHO().HandoverRefused(); why != "" {
		refused = why
	}
	t2 := m.Kernel().NewTask("vmm2", kernel.Cred{UID: 0, Caps: uapi.CapAll})
	want := expected()
	if from.Build.FDBox != kbuild.FDBoxOff {
		c.Outcomes = append(c.Outcomes, fdboxAfter(m, t2, to.Build, refused, want))
	}
	if from.Build.LUO {
		c.Outcomes = append(c.Outcomes, luoAfter(m, t2, to.Build, refused, want))
	}
	if err := m.CheckInvariants(); err != nil {
		c.Err = err
	}
	return c
}

func fdboxBefore(t *kernel.Task, b kbuild.Build) error {
	fd, err := makeFile(t, "guest-ram")
	if err != nil {
		return err
	}
	ctl, err := t.Open(fdbox.CtlPath, uapi.O_RDWR)
	if err != nil {
		return err
	}
	var cb uapi.FdboxCreateBox
	uapi.SetName(&cb.Name, "vm")
	if _, err := t.Ioctl(ctl, uapi.FDBOX_CREATE_BOX, &cb); err != nil {
		return err
	}
	box, err := t.Open(fdbox.DevDir+"vm", uapi.O_RDWR)
	if err != nil {
		return err
	}
	a := uapi.FdboxPutFD{FD: uint32(fd)}
	uapi.SetName(&a.Name, "ram")
	if _, err := t.Ioctl(box, uapi.FDBOX_PUT_FD, &a); err != nil {
		return err
	}
	if b.FDBox == kbuild.FDBoxSeal {
		if err := t.Close(fd); err != nil {
			return err
		}
	}
	_, err = t.Ioctl(box, uapi.FDBOX_SEAL, nil)
	return err
}

func luoBefore(t *kernel.Task) error {
	fd, err := makeFile(t, "luo-ram")
	if err != nil {
		return err
	}
	lu, err := t.Open(luo.DevPath, uapi.O_RDWR)
	if err != nil {
		return err
	}
	a := uapi.LiveupdateIoctlCreateSession{Size: uapi.SizeofLiveupdateIoctlCreateSession}
	uapi.SetSessionName(&a.Name, "vm")
	if _, err := t.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_CREATE_SESSION, &a); err != nil {
		return err
	}
	p := uapi.LiveupdateSessionPreserveFD{Size: uapi.SizeofLiveupdateSessionPreserveFD, FD: int32(fd), Token: 0x1a}
	_, err = t.Ioctl(int(a.FD), uapi.LIVEUPDATE_SESSION_PRESERVE_FD, &p)
	return err
}

// refusal builds a refused outcome: the handover's refusal if there was
// one, else the errno and the kernel's last error line.
func refusal(fe string, m *machine.Machine, handover string, err error) Outcome {
	why := handover
	if why == "" {
		why = errno.Of(err).Name()
		if line := lastError(m.Kernel()); line != "" {
			why += ": " + line
		}
	}
	return Outcome{Frontend: fe, Result: "refused", Why: why}
}

// lastError returns the new kernel's last error line.
func lastError(k *kernel.Kernel) string {
	log := k.Log()
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].Level == kernel.LogErr {
			return log[i].Text
		}
	}
	return ""
}

func fdboxAfter(m *machine.Machine, t *kernel.Task, b kbuild.Build, handover string, want uint64) Outcome {
	if b.FDBox == kbuild.FDBoxOff {
		return Outcome{Frontend: "fdbox", Result: "n/a", Why: "the new kernel has no /dev/fdbox"}
	}
	box, err := t.Open(fdbox.DevDir+"vm", uapi.O_RDWR)
	if err != nil {
		return refusal("fdbox", m, handover, err)
	}
	if _, err := t.Ioctl(box, uapi.FDBOX_UNSEAL, nil); err != nil {
		return refusal("fdbox", m, handover, err)
	}
	g := uapi.FdboxGetFD{}
	uapi.SetName(&g.Name, "ram")
	fd, err := t.Ioctl(box, uapi.FDBOX_GET_FD, &g)
	if err != nil {
		return refusal("fdbox", m, handover, err)
	}
	return check("fdbox", t, int(fd), want, true)
}

func luoAfter(m *machine.Machine, t *kernel.Task, b kbuild.Build, handover string, want uint64) Outcome {
	if !b.LUO {
		return Outcome{Frontend: "luo", Result: "n/a", Why: "the new kernel has no /dev/liveupdate"}
	}
	lu, err := t.Open(luo.DevPath, uapi.O_RDWR)
	if err != nil {
		return refusal("luo", m, handover, err)
	}
	a := uapi.LiveupdateIoctlRetrieveSession{Size: uapi.SizeofLiveupdateIoctlRetrieveSession}
	uapi.SetSessionName(&a.Name, "vm")
	if _, err := t.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &a); err != nil {
		return refusal("luo", m, handover, err)
	}
	r := uapi.LiveupdateSessionRetrieveFD{Size: uapi.SizeofLiveupdateSessionRetrieveFD, Token: 0x1a}
	if _, err := t.Ioctl(int(a.FD), uapi.LIVEUPDATE_SESSION_RETRIEVE_FD, &r); err != nil {
		return refusal("luo", m, handover, err)
	}
	return check("luo", t, int(r.FD), want, false)
}

// check compares a revived file with the workload: contents and size
// must match (else it is a bug: the outcome says so); seals that did not
// come back make the revival lossy.
func check(fe string, t *kernel.Task, fd int, want uint64, sealsCarried bool) Outcome {
	f, err := t.FD(fd)
	if err != nil {
		return Outcome{Frontend: fe, Result: "refused", Why: err.Error()}
	}
	var bad []string
	if f.Inode.Size != fileSize {
		bad = append(bad, fmt.Sprintf("size %d", f.Inode.Size))
	}
	if h, err := fileHash(t, fd); err != nil || h != want {
		bad = append(bad, "contents differ")
	}
	if len(bad) > 0 {
		return Outcome{Frontend: fe, Result: "corrupt", Why: strings.Join(bad, ", ")}
	}
	got, _ := t.Fcntl(fd, uapi.F_GET_SEALS, 0)
	if uint32(got) != seals {
		return Outcome{Frontend: fe, Result: "revived-lossy", Why: fmt.Sprintf("seals %#x, the old kernel's %#x (memfd-v1 carries none)", got, seals)}
	}
	return Outcome{Frontend: fe, Result: "revived"}
}

// ErrCorrupt is reported by Check for a revived file whose contents or
// size differ from the workload's: never acceptable.
var ErrCorrupt = errors.New("compat: a revived file is corrupt")

// Check returns the first broken cell of the matrix: a pair that could not
// run, or a file revived with the wrong contents.
func Check(cells []Cell) error {
	for _, c := range cells {
		if c.Err != nil {
			return fmt.Errorf("%s -> %s: %w", c.From, c.To, c.Err)
		}
		for _, o := range c.Outcomes {
			if o.Result == "corrupt" {
				return fmt.Errorf("%s -> %s: %s: %s: %w", c.From, c.To, o.Frontend, o.Why, ErrCorrupt)
			}
		}
	}
	return nil
}
