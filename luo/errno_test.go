package luo

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/errno"
	"khosim/fault"
	"khosim/kernel"
	"khosim/uapi"
)

// env is one table case's state: a world, a root process with the device
// open (lu), an outgoing session (out) and a memfd with data (mfd); in the
// "incoming" cases, after a kexec, a retrieved incoming session (in) with
// token 1 preserved.
type env struct {
	t   *testing.T
	w   *world
	p   *kernel.Task
	lu  int
	out int
	mfd int
	in  int
}

func newEnv(t *testing.T, incoming bool) *env {
	w := newWorld(t, 128*mib, luoBuild(t))
	e := &env{t: t, w: w, p: w.proc("p"), in: -1}
	var err error
	e.lu, err = luoOpen(e.p)
	require.NoError(t, err)
	if incoming {
		s, err := createSession(e.p, e.lu, "carried")
		require.NoError(t, err)
		require.NoError(t, createAndPreserveMemfd(w, e.p, s, 1, "one"))
		require.NoError(t, createAndPreserveMemfd(w, e.p, s, 2, "two"))
		w.mustKexec()
		e.p = w.proc("p2")
		e.lu, err = luoOpen(e.p)
		require.NoError(t, err)
		e.in, err = retrieveSession(e.p, e.lu, "carried")
		require.NoError(t, err)
	}
	e.out, err = createSession(e.p, e.lu, "out")
	require.NoError(t, err)
	e.mfd = memfdWith(t, e.p, "m", "data")
	return e
}

func (e *env) preserve(s, fd int, token uint64) error { return preserveFD(e.p, s, fd, token) }

// TestErrnos: every errno of /dev/liveupdate and of a session fd, each
// case on a fresh kernel, with the state it leaves audited.
func TestErrnos(t *testing.T) {
	for _, tc := range []struct {
		name     string
		incoming bool
		do       func(e *env) error
		want     errno.Errno
	}{
		// open(2)
		{"open twice", false, func(e *env) error { _, err := luoOpen(e.p); return err }, errno.EBUSY},
		{"open by an unprivileged user", false, func(e *env) error {
			_, err := e.w.k.NewTask("user", kernel.Cred{UID: 1000}).Open(DevPath, uapi.O_RDWR)
			return err
		}, errno.EACCES},

		// /dev/liveupdate ioctls (luo_ioctl)
		{"device nr beyond the table", false, func(e *env) error {
			_, err := e.p.Ioctl(e.lu, uint32(uapi.LIVEUPDATE_IOCTL_TYPE)<<8|0x02, &uapi.LiveupdateIoctlCreateSession{Size: 72})
			return err
		}, errno.EINVAL},
		{"device nr of another type", false, func(e *env) error {
			_, err := e.p.Ioctl(e.lu, uint32('.')<<8|0x00, &uapi.LiveupdateIoctlCreateSession{Size: 72})
			return err
		}, errno.ENOTTY},
		{"device bad argument", false, func(e *env) error {
			_, err := e.p.Ioctl(e.lu, uapi.LIVEUPDATE_IOCTL_CREATE_SESSION, nil)
			return err
		}, errno.EFAULT},
		{"device size too small", false, func(e *env) error {
			a := &uapi.LiveupdateIoctlCreateSession{Size: 71}
			uapi.SetSessionName(&a.Name, "x")
			_, err := e.p.Ioctl(e.lu, uapi.LIVEUPDATE_IOCTL_CREATE_SESSION, a)
			return err
		}, errno.EINVAL},
		{"create empty name", false, func(e *env) error { _, err := createSession(e.p, e.lu, ""); return err }, errno.EINVAL},
		{"create 64-byte name", false, func(e *env) error {
			_, err := createSession(e.p, e.lu, "0123456789012345678901234567890123456789012345678901234567890123")
			return err
		}, errno.EINVAL},
		{"create duplicate", false, func(e *env) error { _, err := createSession(e.p, e.lu, "out"); return err }, errno.EEXIST},
		{"create with an incoming session's name", true, func(e *env) error {
			_, err := createSession(e.p, e.lu, "carried")
			return err
		}, 0},
		{"create without a free fd", false, func(e *env) error {
			e.p.NoFile = len(e.p.FDs())
			_, err := createSession(e.p, e.lu, "x")
			return err
		}, errno.EMFILE},
		{"create: no fd beats a bad name", false, func(e *env) error {
			e.p.NoFile = len(e.p.FDs())
			_, err := createSession(e.p, e.lu, "")
			return err
		}, errno.EMFILE},
		{"retrieve in a cold-booted kernel", false, func(e *env) error { _, err := retrieveSession(e.p, e.lu, "out"); return err }, errno.ENOENT},
		{"retrieve unknown", true, func(e *env) error { _, err := retrieveSession(e.p, e.lu, "nope"); return err }, errno.ENOENT},
		{"retrieve twice", true, func(e *env) error { _, err := retrieveSession(e.p, e.lu, "carried"); return err }, errno.EINVAL},
		{"retrieve an outgoing session's name", true, func(e *env) error { _, err := retrieveSession(e.p, e.lu, "out"); return err }, errno.ENOENT},
		{"retrieve after its fd was closed", true, func(e *env) error {
			require.NoError(e.t, e.p.Close(e.in))
			_, err := retrieveSession(e.p, e.lu, "carried")
			return err
		}, errno.ENOENT},

		// session ioctls (luo_session_ioctl)
		{"session nr below the table", false, func(e *env) error {
			_, err := e.p.Ioctl(e.out, uint32(uapi.LIVEUPDATE_IOCTL_TYPE)<<8|0x3f, &uapi.LiveupdateSessionFinish{Size: 8})
			return err
		}, errno.EINVAL},
		{"session nr beyond the table", false, func(e *env) error {
			_, err := e.p.Ioctl(e.out, uint32(uapi.LIVEUPDATE_IOCTL_TYPE)<<8|0x43, &uapi.LiveupdateSessionFinish{Size: 8})
			return err
		}, errno.EINVAL},
		{"session nr of another type", false, func(e *env) error {
			_, err := e.p.Ioctl(e.out, uint32('.')<<8|0x40, &uapi.LiveupdateSessionPreserveFD{Size: 16, FD: int32(e.mfd)})
			return err
		}, errno.ENOTTY},
		{"session bad argument", false, func(e *env) error {
			_, err := e.p.Ioctl(e.out, uapi.LIVEUPDATE_SESSION_PRESERVE_FD, &uapi.LiveupdateSessionFinish{Size: 8})
			return err
		}, errno.EFAULT},
		{"preserve size too small", false, func(e *env) error {
			_, err := e.p.Ioctl(e.out, uapi.LIVEUPDATE_SESSION_PRESERVE_FD, &uapi.LiveupdateSessionPreserveFD{Size: 15, FD: int32(e.mfd)})
			return err
		}, errno.EINVAL},
		{"finish reserved not 0", true, func(e *env) error {
			_, err := e.p.Ioctl(e.in, uapi.LIVEUPDATE_SESSION_FINISH, &uapi.LiveupdateSessionFinish{Size: 8, Reserved: 1})
			return err
		}, errno.EINVAL},

		// PRESERVE_FD, in Linux's order
		{"preserve on an incoming session", true, func(e *env) error { return e.preserve(e.in, e.mfd, 7) }, errno.EINVAL},
		{"preserve on incoming beats token in use", true, func(e *env) error { return e.preserve(e.in, -1, 1) }, errno.EINVAL},
		{"preserve token in use", false, func(e *env) error {
			require.NoError(e.t, e.preserve(e.out, e.mfd, 5))
			m2 := memfdWith(e.t, e.p, "m2", "")
			return e.preserve(e.out, m2, 5)
		}, errno.EEXIST},
		{"preserve token in use beats a bad fd", false, func(e *env) error {
			require.NoError(e.t, e.preserve(e.out, e.mfd, 5))
			return e.preserve(e.out, 999, 5)
		}, errno.EEXIST},
		{"preserve a bad fd", false, func(e *env) error { return e.preserve(e.out, 999, 5) }, errno.EBADF},
		{"preserve a negative fd", false, func(e *env) error { return e.preserve(e.out, -1, 5) }, errno.EBADF},
		{"preserve /dev/null", false, func(e *env) error {
			null, err := e.p.Open("/dev/null", uapi.O_RDWR)
			require.NoError(e.t, err)
			return e.preserve(e.out, null, 5)
		}, errno.ENOENT},
		{"preserve a linked tmpfs file", false, func(e *env) error {
			fd, err := e.p.Open("/tmp/linked", uapi.O_RDWR|uapi.O_CREAT)
			require.NoError(e.t, err)
			return e.preserve(e.out, fd, 5)
		}, errno.ENOENT},
		{"preserve a session fd", false, func(e *env) error { return e.preserve(e.out, e.out, 5) }, errno.ENOENT},
		{"preserve twice", false, func(e *env) error {
			require.NoError(e.t, e.preserve(e.out, e.mfd, 5))
			return e.preserve(e.out, e.mfd, 6)
		}, errno.EBUSY},
		{"preserve in another session", false, func(e *env) error {
			require.NoError(e.t, e.preserve(e.out, e.mfd, 5))
			s2, err := createSession(e.p, e.lu, "out2")
			require.NoError(e.t, err)
			return e.preserve(s2, e.mfd, 5)
		}, errno.EBUSY},
		{"preserve a retrieved file before finish", true, func(e *env) error {
			fd, err := retrieveFD(e.p, e.in, 1)
			require.NoError(e.t, err)
			return e.preserve(e.out, fd, 5)
		}, errno.EBUSY},
		{"preserve: luo_preserve fault", false, func(e *env) error {
			require.NoError(e.t, e.w.faults.Arm(fault.LUOPreserve, 1, 1))
			return e.preserve(e.out, e.mfd, 5)
		}, errno.ENOMEM},
		{"preserve: page_alloc fault", false, func(e *env) error {
			require.NoError(e.t, e.w.faults.Arm(fault.PageAlloc, 1, 1))
			return e.preserve(e.out, e.mfd, 5)
		}, errno.ENOMEM},
		{"preserve after kho activate", false, func(e *env) error {
			require.NoError(e.t, e.w.kho.Activate())
			return e.preserve(e.out, e.mfd, 5)
		}, errno.EBUSY},
		{"preserve an empty memfd after kho activate", false, func(e *env) error {
			s, err := createSession(e.p, e.lu, "s2")
			require.NoError(e.t, err)
			m := memfdWith(e.t, e.p, "empty", "")
			m2 := memfdWith(e.t, e.p, "empty2", "")
			require.NoError(e.t, e.preserve(s, m, 1), "the session has its file array")
			require.NoError(e.t, e.w.kho.Activate())
			return e.preserve(s, m2, 2)
		}, errno.EBUSY},

		// RETRIEVE_FD and FINISH
		{"retrieve_fd on an outgoing session", false, func(e *env) error { _, err := retrieveFD(e.p, e.out, 1); return err }, errno.EINVAL},
		{"retrieve_fd unknown token", true, func(e *env) error { _, err := retrieveFD(e.p, e.in, 99); return err }, errno.ENOENT},
		{"retrieve_fd after finish", true, func(e *env) error {
			require.NoError(e.t, finish(e.p, e.in))
			_, err := retrieveFD(e.p, e.in, 1)
			return err
		}, errno.ENOENT},
		{"retrieve_fd without a free fd", true, func(e *env) error {
			e.p.NoFile = len(e.p.FDs())
			_, err := retrieveFD(e.p, e.in, 1)
			return err
		}, errno.EMFILE},
		{"retrieve_fd: luo_retrieve fault", true, func(e *env) error {
			require.NoError(e.t, e.w.faults.Arm(fault.LUORetrieve, 1, 1))
			_, err := retrieveFD(e.p, e.in, 1)
			return err
		}, errno.EIO},
		{"retrieve_fd: a failed retrieve fails again", true, func(e *env) error {
			require.NoError(e.t, e.w.faults.Arm(fault.LUORetrieve, 1, 1))
			_, err := retrieveFD(e.p, e.in, 1)
			require.Equal(e.t, errno.EIO, errOf(err))
			require.False(e.t, e.w.faults.Armed(fault.LUORetrieve))
			_, err = retrieveFD(e.p, e.in, 1)
			return err
		}, errno.EIO},
		{"finish on an outgoing session", false, func(e *env) error { return finish(e.p, e.out) }, errno.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.incoming)
			require.Equal(t, tc.want, errOf(tc.do(e)))
			e.w.audit()
		})
	}
}

// TestNoDevice: no /dev/liveupdate with luo=off, nor where KHO is disabled
// (no scratch: luo_early_startup disables live update).
func TestNoDevice(t *testing.T) {
	w := newWorld(t, 128*mib, luoBuild(t, "luo", "off"))
	_, err := luoOpen(w.proc("p"))
	require.Equal(t, errno.ENOENT, errOf(err))
	require.Nil(t, w.l)

	w.k.Poison("reboot")
	w = &world{t: t, frames: w.frames, faults: w.faults, build: luoBuild(t), scratch: "0"}
	w.boot(nil)
	require.False(t, w.kho.Enabled())
	require.False(t, w.l.Enabled())
	_, err = luoOpen(w.proc("p"))
	require.Equal(t, errno.ENOENT, errOf(err))
	require.Contains(t, logText(w.k), "Disabling liveupdate because KHO is disabled")
	w.audit()
}

func logText(k *kernel.Kernel) string {
	var s string
	for _, l := range k.Log() {
		s += l.String() + "\n"
	}
	return s
}
