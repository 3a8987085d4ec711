package kernel

import (
	"fmt"

	"khosim/errno"
	"khosim/uapi"
)

// DefaultNoFile is the default RLIMIT_NOFILE soft limit: a task can have
// fds 0..DefaultNoFile-1.
const DefaultNoFile = 1024

// Cred is a task's credentials (struct cred): the ids and the effective
// capability set.
type Cred struct {
	UID  uint32
	Caps uint64 // bit n set = capability n (CAP_SYS_ADMIN = 21)
}

// Capable reports whether the credentials hold capability cap (capable()).
func (c Cred) Capable(capability int) bool { return c.Caps&(1<<uint(capability)) != 0 }

// Task is a process (struct task_struct with its files_struct and
// mm_struct). A task is alive from NewTask until Exit; after Exit every
// system call on it is a bug.
type Task struct {
	k    *Kernel
	PID  int
	Name string
	Cred Cred

	fds     []*File // the fd table (fdtable->fd); nil = free slot
	cloexec []bool  // close_on_exec bits
	fdt     fdtable // the charged fd table beyond the embedded 64 fds (slab.go)
	NoFile  int     // RLIMIT_NOFILE

	// MM is the task's address space (mappings).
	MM *TaskMM

	exited bool
}

// NewTask creates a process in the running kernel.
func (k *Kernel) NewTask(name string, cred Cred) *Task {
	k.mustAlive()
	k.nextPID++
	t := &Task{k: k, PID: k.nextPID, Name: name, Cred: cred, NoFile: DefaultNoFile}
	t.MM = newTaskMM(t)
	k.tasks[t.PID] = t
	return t
}

// Kernel returns the task's kernel.
func (t *Task) Kernel() *Kernel { return t.k }

// Capable reports whether the task has capability cap (capable()).
func (t *Task) Capable(capability int) bool { return t.Cred.Capable(capability) }

func (t *Task) mustAlive() {
	t.k.mustAlive()
	if t.exited {
		panic(fmt.Sprintf("kernel: invariant \"task-alive\" broken: system call on exited task %d (%s)", t.PID, t.Name))
	}
}

// Exited reports whether the task has exited.
func (t *Task) Exited() bool { return t.exited }

// Exit ends the task (do_exit): every fd is closed and every mapping
// unmapped, and the fd table freed.
func (t *Task) Exit() {
	t.mustAlive()
	t.MM.exitMMap()
	for fd := range t.fds {
		if t.fds[fd] != nil {
			_ = t.CloseFD(fd)
		}
	}
	t.freeFdtable()
	t.exited = true
	delete(t.k.tasks, t.PID)
}

// InstallFD puts f at the lowest free fd (get_unused_fd_flags +
// fd_install). The table takes over the caller's reference on success; on
// failure (EMFILE, or ENOMEM when the fd table must grow and cannot) the
// caller still owns it.
func (t *Task) InstallFD(f *File, cloexec bool) (int, error) {
	t.mustAlive()
	fd, err := t.getUnusedFD(0)
	if err != nil {
		return -1, err
	}
	t.installFD(fd, f, cloexec)
	return fd, nil
}

// UnusedFD is get_unused_fd_flags() for a single-threaded task: the fd
// InstallFD would take now, or EMFILE. Drivers that create a file for an
// ioctl's answer (LUO's sessions) call it first, as Linux reserves the fd
// before it does anything else.
func (t *Task) UnusedFD() (int, error) {
	t.mustAlive()
	return t.getUnusedFD(0)
}

// getUnusedFD returns the lowest free fd at or above from (alloc_fd),
// without taking it; the fd table is grown to hold it first
// (expand_files), so that installing it cannot fail.
//
// Errors: EMFILE when none is below RLIMIT_NOFILE; ENOMEM when the fd
// table must grow and cannot (the slab fault site, or no memory).
func (t *Task) getUnusedFD(from int) (int, error) {
	for fd := from; fd < len(t.fds); fd++ {
		if t.fds[fd] == nil {
			return fd, nil
		}
	}
	fd := max(from, len(t.fds))
	if fd >= t.NoFile {
		return -1, errno.EMFILE
	}
	if err := t.expandFiles(fd); err != nil {
		return -1, err
	}
	return fd, nil
}

// installFD puts f at the free slot fd (fd_install), taking over the
// caller's reference.
func (t *Task) installFD(fd int, f *File, cloexec bool) {
	for len(t.fds) <= fd {
		t.fds = append(t.fds, nil)
		t.cloexec = append(t.cloexec, false)
	}
	t.fds[fd] = f
	t.cloexec[fd] = cloexec
}

// FD returns the file at fd without taking a reference (files_lookup_fd_raw).
// The result is valid until the task's fd table changes.
func (t *Task) FD(fd int) (*File, error) {
	t.mustAlive()
	if fd < 0 || fd >= len(t.fds) || t.fds[fd] == nil {
		return nil, errno.EBADF
	}
	return t.fds[fd], nil
}

// fdget is fdget(): the file at fd for a system call that uses it, which
// an O_PATH file (FMODE_PATH) is not: EBADF for those, as for a closed fd.
// close, dup and most of fcntl look fds up raw (FD).
func (t *Task) fdget(fd int) (*File, error) {
	f, err := t.FD(fd)
	if err != nil {
		return nil, err
	}
	if f.Ops == pathFops {
		return nil, errno.EBADF
	}
	return f, nil
}

// Fget returns the file at fd with a reference the caller must Put
// (fget). Errors: EBADF for a bad fd or an O_PATH file.
func (t *Task) Fget(fd int) (*File, error) {
	f, err := t.fdget(fd)
	if err != nil {
		return nil, err
	}
	return f.Get(), nil
}

// CloseFD removes fd from the table and drops its reference (close_fd).
func (t *Task) CloseFD(fd int) error {
	f, err := t.FD(fd)
	if err != nil {
		return err
	}
	t.fds[fd] = nil
	t.cloexec[fd] = false
	f.Put()
	return nil
}

// Dup installs a second fd for the file at fd (dup()): the new fd holds its
// own reference.
//
// Errors: EBADF; EMFILE when the table is full; ENOMEM when the fd table
// must grow and cannot.
func (t *Task) Dup(fd int) (int, error) {
	f, err := t.FD(fd)
	if err != nil {
		return -1, err
	}
	nfd, err := t.InstallFD(f.Get(), false)
	if err != nil {
		f.Put()
		return -1, err
	}
	return nfd, nil
}

// FDs returns the task's open fds in ascending order.
func (t *Task) FDs() []int {
	var out []int
	for fd, f := range t.fds {
		if f != nil {
			out = append(out, fd)
		}
	}
	return out
}

// CloseOnExec reports the FD_CLOEXEC bit of fd.
func (t *Task) CloseOnExec(fd int) (bool, error) {
	if _, err := t.FD(fd); err != nil {
		return false, err
	}
	return t.cloexec[fd], nil
}

// capsAll is the capability set of a root task.
const capsAll = uapi.CapAll
