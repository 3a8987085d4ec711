// Package errno defines Errno, the error every user-visible failure in
// khosim returns: a comparable value carrying a Linux error name and its
// x86-64 number, as a system call would report it in errno.
//
// Errno values are comparable with == and with errors.Is, so callers and
// tests write
//
//	if err == errno.EBUSY { ... }
//
// A broken invariant is not an Errno: it is a bug and panics.
package errno

import "strconv"

// Errno is a Linux error number. The zero value means success and is never
// returned as an error.
type Errno int32

// Linux errno values (include/uapi/asm-generic/errno-base.h and errno.h).
const (
	EPERM        Errno = 1
	ENOENT       Errno = 2
	ESRCH        Errno = 3
	EINTR        Errno = 4
	EIO          Errno = 5
	ENXIO        Errno = 6
	E2BIG        Errno = 7
	ENOEXEC      Errno = 8
	EBADF        Errno = 9
	ECHILD       Errno = 10
	EAGAIN       Errno = 11
	ENOMEM       Errno = 12
	EACCES       Errno = 13
	EFAULT       Errno = 14
	EBUSY        Errno = 16
	EEXIST       Errno = 17
	EXDEV        Errno = 18
	ENODEV       Errno = 19
	ENOTDIR      Errno = 20
	EISDIR       Errno = 21
	EINVAL       Errno = 22
	ENFILE       Errno = 23
	EMFILE       Errno = 24
	ENOTTY       Errno = 25
	ETXTBSY      Errno = 26
	EFBIG        Errno = 27
	ENOSPC       Errno = 28
	ESPIPE       Errno = 29
	EROFS        Errno = 30
	EMLINK       Errno = 31
	EPIPE        Errno = 32
	ERANGE       Errno = 34
	EDEADLK      Errno = 35
	ENAMETOOLONG Errno = 36
	ENOSYS       Errno = 38
	ENOTEMPTY    Errno = 39
	ELOOP        Errno = 40
	ENODATA      Errno = 61
	EBADMSG      Errno = 74
	EOVERFLOW    Errno = 75
	EBADFD       Errno = 77
	EOPNOTSUPP   Errno = 95
	ETIMEDOUT    Errno = 110
	ECANCELED    Errno = 125
)

// ENOTSUP is the same number as EOPNOTSUPP on Linux.
const ENOTSUP = EOPNOTSUPP

var names = map[Errno]string{
	EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR",
	EIO: "EIO", ENXIO: "ENXIO", E2BIG: "E2BIG", ENOEXEC: "ENOEXEC",
	EBADF: "EBADF", ECHILD: "ECHILD", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM",
	EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST",
	EXDEV: "EXDEV", ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR",
	EINVAL: "EINVAL", ENFILE: "ENFILE", EMFILE: "EMFILE", ENOTTY: "ENOTTY",
	ETXTBSY: "ETXTBSY", EFBIG: "EFBIG", ENOSPC: "ENOSPC", ESPIPE: "ESPIPE",
	EROFS: "EROFS", EMLINK: "EMLINK", EPIPE: "EPIPE", ERANGE: "ERANGE",
	EDEADLK: "EDEADLK", ENAMETOOLONG: "ENAMETOOLONG", ENOSYS: "ENOSYS",
	ENOTEMPTY: "ENOTEMPTY", ELOOP: "ELOOP", ENODATA: "ENODATA",
	EBADMSG: "EBADMSG", EOVERFLOW: "EOVERFLOW", EBADFD: "EBADFD",
	EOPNOTSUPP: "EOPNOTSUPP", ETIMEDOUT: "ETIMEDOUT", ECANCELED: "ECANCELED",
}

var byName = func() map[string]Errno {
	m := make(map[string]Errno, len(names)+1)
	for e, n := range names {
		m[n] = e
	}
	m["ENOTSUP"] = ENOTSUP
	return m
}()

// Error returns the Linux name of the errno, e.g. "EBUSY".
func (e Errno) Error() string {
	if n, ok := names[e]; ok {
		return n
	}
	return "errno " + strconv.Itoa(int(e))
}

// Name is Error under a clearer name for printing.
func (e Errno) Name() string { return e.Error() }

// Lookup returns the Errno with the given Linux name ("EBUSY").
func Lookup(name string) (Errno, bool) {
	e, ok := byName[name]
	return e, ok
}

// Names returns every known errno name, for completions and docs.
func Names() []string {
	out := make([]string, 0, len(byName))
	for n := range byName {
		out = append(out, n)
	}
	return out
}

// Of returns the Errno an error carries: err itself when it is an Errno,
// the first Errno in its wrap chain otherwise, and 0 for nil. An error that
// carries no Errno yields EIO: the syscall boundary has to report something.
func Of(err error) Errno {
	if err == nil {
		return 0
	}
	for err != nil {
		if e, ok := err.(Errno); ok {
			return e
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			break
		}
		err = u.Unwrap()
	}
	return EIO
}
