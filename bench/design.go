package bench

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"khosim/fault"
	"khosim/fdbox"
	"khosim/kbuild"
	"khosim/luo"
	"khosim/uapi"
)

// Design is one live-update design the rig can hand its memfds over with:
// the three lifecycles of the FDBox review and mainline's answer.
type Design string

// The designs.
const (
	// DesignStash is the RFC as posted (fdbox=stash): PUT_FD, SEAL, kho
	// activate serializes; the next kernel's process opens the box,
	// UNSEALs and GET_FDs.
	DesignStash Design = "stash"
	// DesignSeal is Pratyush Yadav's serialize-at-seal (fdbox=seal): the
	// workload closes its fds, SEAL serializes, kho activate writes the
	// records.
	DesignSeal Design = "seal"
	// DesignLUO is mainline's LUO (luo=on): PRESERVE_FD serializes while
	// the workload runs; the kexec's reboot path freezes and finalizes;
	// the next kernel's process retrieves the session and its files.
	DesignLUO Design = "luo"
)

// Designs lists the designs in the order of the review.
var Designs = []Design{DesignStash, DesignSeal, DesignLUO}

// ParseDesigns parses a comma-separated list of designs.
func ParseDesigns(s string) ([]Design, error) {
	var out []Design
	for _, f := range strings.Split(s, ",") {
		d := Design(strings.TrimSpace(f))
		if !slices.Contains(Designs, d) {
			return nil, fmt.Errorf("bench: unknown design %q (want stash, seal or luo)", f)
		}
		out = append(out, d)
	}
	return out, nil
}

// ParseTrackers parses a comma-separated list of kho= trackers.
func ParseTrackers(s string) ([]kbuild.Tracker, error) {
	var out []kbuild.Tracker
	for _, f := range strings.Split(s, ",") {
		t := kbuild.Tracker(strings.TrimSpace(f))
		if _, err := kbuild.Default().With("kho", string(t)); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// build returns the kernel build of design d over tracker t.
func (d Design) build(t kbuild.Tracker, huge string) (kbuild.Build, error) {
	b := kbuild.Default()
	b.ShmemHuge = huge
	var err error
	if t != "" {
		if b, err = b.With("kho", string(t)); err != nil {
			return b, err
		}
	}
	switch d {
	case DesignSeal:
		b, err = b.With("fdbox", "seal")
	case DesignLUO:
		b, err = b.With("luo", "on")
	case DesignStash, "":
	default:
		err = fmt.Errorf("bench: unknown design %q", d)
	}
	return b, err
}

// sessionName is the LUO session every LUO benchmark hands over.
const sessionName = "bench"

// setup makes the design's container in a fresh kernel: the box (FDBox)
// or nothing (LUO sessions are made per cycle).
func (r *Rig) setup() error {
	if r.Design == DesignLUO {
		return nil
	}
	t := r.task
	ctl, err := t.Open(fdbox.CtlPath, uapi.O_RDWR)
	if err != nil {
		return fmt.Errorf("bench: open %s: %w", fdbox.CtlPath, err)
	}
	var cb uapi.FdboxCreateBox
	uapi.SetName(&cb.Name, BoxName)
	if _, err := t.Ioctl(ctl, uapi.FDBOX_CREATE_BOX, &cb); err != nil {
		return fmt.Errorf("bench: FDBOX_CREATE_BOX: %w", err)
	}
	if r.boxfd, err = t.Open(fdbox.DevDir+BoxName, uapi.O_RDWR); err != nil {
		return fmt.Errorf("bench: open box: %w", err)
	}
	return nil
}

// Prepare is the work a design does before the workload loses access to
// its memory (timed as Row.BeforeNS): for LUO, creating the session and
// PRESERVE_FD of every file (which serializes); for FDBox, PUT_FD of every
// file (and, for the seal lifecycle, closing the workload's fds, which
// starts its blackout). The stash's SEAL is here too: its files are in the
// box since PUT_FD, the workload without them.
func (r *Rig) Prepare() (time.Duration, error) {
	t := r.task
	start := time.Now()
	switch r.Design {
	case DesignLUO:
		lu, err := t.Open(luo.DevPath, uapi.O_RDWR)
		if err != nil {
			return 0, fmt.Errorf("bench: open %s: %w", luo.DevPath, err)
		}
		a := uapi.LiveupdateIoctlCreateSession{Size: uapi.SizeofLiveupdateIoctlCreateSession}
		uapi.SetSessionName(&a.Name, sessionName)
		if _, err := t.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_CREATE_SESSION, &a); err != nil {
			return 0, fmt.Errorf("bench: LIVEUPDATE_IOCTL_CREATE_SESSION: %w", err)
		}
		r.sessfd = int(a.FD)
		if err := t.Close(lu); err != nil { // sessions outlive the /dev/liveupdate fd
			return 0, err
		}
		for i, name := range r.Names {
			p := uapi.LiveupdateSessionPreserveFD{Size: uapi.SizeofLiveupdateSessionPreserveFD, FD: int32(r.fds[name]), Token: uint64(i + 1)}
			if _, err := t.Ioctl(r.sessfd, uapi.LIVEUPDATE_SESSION_PRESERVE_FD, &p); err != nil {
				return 0, fmt.Errorf("bench: LIVEUPDATE_SESSION_PRESERVE_FD %s: %w", name, err)
			}
		}
	default:
		for _, name := range r.Names {
			fd, ok := r.fds[name]
			if !ok {
				return 0, fmt.Errorf("bench: %s is not restored", name)
			}
			a := uapi.FdboxPutFD{FD: uint32(fd)}
			uapi.SetName(&a.Name, name)
			if _, err := t.Ioctl(r.boxfd, uapi.FDBOX_PUT_FD, &a); err != nil {
				return 0, fmt.Errorf("bench: FDBOX_PUT_FD %s: %w", name, err)
			}
			if r.Design == DesignSeal {
				if err := t.Close(fd); err != nil {
					return 0, err
				}
			}
			delete(r.fds, name)
		}
		if r.Design == DesignStash {
			if _, err := t.Ioctl(r.boxfd, uapi.FDBOX_SEAL, nil); err != nil {
				return 0, fmt.Errorf("bench: FDBOX_SEAL: %w", err)
			}
		}
	}
	return time.Since(start), nil
}

// enter is the design's first step inside the blackout (the rig's
// "activate" phase): the stash's kho activate; the seal lifecycle's SEAL
// (which serializes) and kho activate; nothing for LUO, whose freeze and
// finalize are the kexec's reboot path.
func (r *Rig) enter() error {
	switch r.Design {
	case DesignLUO:
		return nil
	case DesignSeal:
		if _, err := r.task.Ioctl(r.boxfd, uapi.FDBOX_SEAL, nil); err != nil {
			return fmt.Errorf("bench: FDBOX_SEAL: %w", err)
		}
	}
	if err := r.M.KHOActivate(); err != nil {
		return fmt.Errorf("bench: kho activate: %w", err)
	}
	return nil
}

// restore is the new process's part after a kexec: FDBox's open of the
// box, UNSEAL and GET_FD of every file, or LUO's RETRIEVE_SESSION,
// RETRIEVE_FD of every file and FINISH.
func (r *Rig) restore() error {
	t := r.task
	if r.Design == DesignLUO {
		lu, err := t.Open(luo.DevPath, uapi.O_RDWR)
		if err != nil {
			return fmt.Errorf("bench: open %s after kexec: %w", luo.DevPath, err)
		}
		a := uapi.LiveupdateIoctlRetrieveSession{Size: uapi.SizeofLiveupdateIoctlRetrieveSession}
		uapi.SetSessionName(&a.Name, sessionName)
		if _, err := t.Ioctl(lu, uapi.LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &a); err != nil {
			return fmt.Errorf("bench: LIVEUPDATE_IOCTL_RETRIEVE_SESSION: %w", err)
		}
		s := int(a.FD)
		for i, name := range r.Names {
			g := uapi.LiveupdateSessionRetrieveFD{Size: uapi.SizeofLiveupdateSessionRetrieveFD, Token: uint64(i + 1)}
			if _, err := t.Ioctl(s, uapi.LIVEUPDATE_SESSION_RETRIEVE_FD, &g); err != nil {
				return fmt.Errorf("bench: LIVEUPDATE_SESSION_RETRIEVE_FD %s: %w", name, err)
			}
			r.fds[name] = int(g.FD)
		}
		fin := uapi.LiveupdateSessionFinish{Size: uapi.SizeofLiveupdateSessionFinish}
		if _, err := t.Ioctl(s, uapi.LIVEUPDATE_SESSION_FINISH, &fin); err != nil {
			return fmt.Errorf("bench: LIVEUPDATE_SESSION_FINISH: %w", err)
		}
		if err := t.Close(s); err != nil {
			return err
		}
		return t.Close(lu)
	}
	boxfd, err := t.Open(fdbox.DevDir+BoxName, uapi.O_RDWR)
	if err != nil {
		return fmt.Errorf("bench: open box after kexec: %w", err)
	}
	if _, err := t.Ioctl(boxfd, uapi.FDBOX_UNSEAL, nil); err != nil {
		return fmt.Errorf("bench: FDBOX_UNSEAL: %w", err)
	}
	for _, name := range r.Names {
		a := uapi.FdboxGetFD{}
		uapi.SetName(&a.Name, name)
		fd, err := t.Ioctl(boxfd, uapi.FDBOX_GET_FD, &a)
		if err != nil {
			return fmt.Errorf("bench: FDBOX_GET_FD %s: %w", name, err)
		}
		r.fds[name] = int(fd)
	}
	r.boxfd = boxfd
	return nil
}

// Abort times what aborting an update costs each design once it is
// committed — the workload's files back in its hands in the same kernel
// — and returns the rig to its prepared state: the stash's kho deactivate
// (every folio back in its page cache) and GET_FDs; the seal lifecycle's
// kho deactivate, UNSEAL (which rebuilds every file from its record) and
// GET_FDs; LUO's failed reboot path (a luo_freeze fault on its last file:
// everything frozen is unfrozen, nothing else to undo) and nothing more,
// since the workload never lost its fds.
func (r *Rig) Abort() (time.Duration, error) {
	if err := r.enter(); err != nil {
		return 0, err
	}
	t := r.task
	start := time.Now()
	switch r.Design {
	case DesignLUO:
		if err := r.M.Faults().Arm(fault.LUOFreeze, len(r.Names), 1); err != nil {
			return 0, err
		}
		err := r.M.Kexec(r.M.Build())
		if err == nil {
			return 0, fmt.Errorf("bench: a kexec with luo_freeze armed succeeded")
		}
	default:
		if err := r.M.KHODeactivate(); err != nil {
			return 0, fmt.Errorf("bench: kho deactivate: %w", err)
		}
		if _, err := t.Ioctl(r.boxfd, uapi.FDBOX_UNSEAL, nil); err != nil {
			return 0, fmt.Errorf("bench: FDBOX_UNSEAL: %w", err)
		}
		for _, name := range r.Names {
			a := uapi.FdboxGetFD{}
			uapi.SetName(&a.Name, name)
			fd, err := t.Ioctl(r.boxfd, uapi.FDBOX_GET_FD, &a)
			if err != nil {
				return 0, fmt.Errorf("bench: FDBOX_GET_FD %s: %w", name, err)
			}
			r.fds[name] = int(fd)
		}
	}
	d := time.Since(start)
	if r.Design == DesignLUO {
		// The session's files stay preserved and frozen (a failed reboot
		// path only unfreezes): Prepare's state.
		return d, nil
	}
	_, err := r.Prepare()
	return d, err
}
