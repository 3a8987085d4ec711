// Package uapi holds the Linux user-space ABI constants khosim's system
// calls take, with their Linux (x86-64) values, so that the kernel, the
// FDBox driver and the scenario language agree on one definition.
//
// The FDBox ioctl numbers and structures follow the RFC's
// include/uapi/linux/fdbox.h; FDBOX_LIST is khosim's addition (the RFC's
// author agreed to add a listing ioctl in review; see docs/fdbox.md).
package uapi

// open(2) flags (include/uapi/asm-generic/fcntl.h).
const (
	O_RDONLY    = 0x0
	O_WRONLY    = 0x1
	O_RDWR      = 0x2
	O_ACCMODE   = 0x3
	O_CREAT     = 0x40
	O_EXCL      = 0x80
	O_TRUNC     = 0x200
	O_APPEND    = 0x400
	O_NONBLOCK  = 0x800
	O_LARGEFILE = 0x8000
	O_CLOEXEC   = 0x80000
)

// memfd_create(2) flags (include/uapi/linux/memfd.h).
const (
	MFD_CLOEXEC       = 0x1
	MFD_ALLOW_SEALING = 0x2
	MFD_HUGETLB       = 0x4
	MFD_NOEXEC_SEAL   = 0x8
	MFD_EXEC          = 0x10
)

// fcntl(2) commands and seals (include/uapi/linux/fcntl.h).
const (
	F_DUPFD             = 0
	F_GETFD             = 1
	F_SETFD             = 2
	F_GETFL             = 3
	F_SETFL             = 4
	F_LINUX_SPECIFIC    = 1024
	F_ADD_SEALS         = F_LINUX_SPECIFIC + 9
	F_GET_SEALS         = F_LINUX_SPECIFIC + 10
	F_SEAL_SEAL         = 0x1
	F_SEAL_SHRINK       = 0x2
	F_SEAL_GROW         = 0x4
	F_SEAL_WRITE        = 0x8
	F_SEAL_FUTURE_WRITE = 0x10
	F_SEAL_EXEC         = 0x20
	FD_CLOEXEC          = 1
)

// lseek(2) whence.
const (
	SEEK_SET  = 0
	SEEK_CUR  = 1
	SEEK_END  = 2
	SEEK_DATA = 3
	SEEK_HOLE = 4
)

// fallocate(2) modes (include/uapi/linux/falloc.h).
const (
	FALLOC_FL_KEEP_SIZE  = 0x01
	FALLOC_FL_PUNCH_HOLE = 0x02
)

// mmap(2) and madvise(2) (include/uapi/asm-generic/mman-common.h).
const (
	PROT_NONE     = 0x0
	PROT_READ     = 0x1
	PROT_WRITE    = 0x2
	PROT_EXEC     = 0x4
	MAP_SHARED    = 0x01
	MAP_PRIVATE   = 0x02
	MAP_FIXED     = 0x10
	MAP_ANONYMOUS = 0x20
	MADV_NORMAL   = 0
	MADV_DONTNEED = 4
	MADV_COLD     = 20
	MADV_PAGEOUT  = 21
)

// Capabilities (include/uapi/linux/capability.h).
const (
	CAP_CHOWN        = 0
	CAP_DAC_OVERRIDE = 1
	CAP_SYS_ADMIN    = 21
	CAP_LAST_CAP     = 40
)

// CapAll is the full capability set a uid-0 process starts with.
const CapAll uint64 = 1<<(CAP_LAST_CAP+1) - 1

// FDBox UAPI (RFC include/uapi/linux/fdbox.h).
const (
	FDBOX_NAME_LEN = 256
	FDBOX_TYPE     = '.'
	FDBOX_BASE     = 0
)

// ioctlIO is _IO(type, nr) from include/uapi/asm-generic/ioctl.h: no
// direction and no size, as the RFC defines its ioctls.
func ioctlIO(typ, nr uint32) uint32 { return typ<<8 | nr }

// FDBox ioctl numbers.
var (
	FDBOX_CREATE_BOX = ioctlIO(FDBOX_TYPE, FDBOX_BASE+0)
	FDBOX_DELETE_BOX = ioctlIO(FDBOX_TYPE, FDBOX_BASE+1)
	FDBOX_PUT_FD     = ioctlIO(FDBOX_TYPE, FDBOX_BASE+2)
	FDBOX_GET_FD     = ioctlIO(FDBOX_TYPE, FDBOX_BASE+3)
	FDBOX_SEAL       = ioctlIO(FDBOX_TYPE, FDBOX_BASE+4)
	FDBOX_UNSEAL     = ioctlIO(FDBOX_TYPE, FDBOX_BASE+5)
	// FDBOX_LIST is khosim's: it lists the names in a box and whether it
	// is sealed. Not in the RFC.
	FDBOX_LIST = ioctlIO(FDBOX_TYPE, FDBOX_BASE+6)
)

// FdboxCreateBox is struct fdbox_create_box; FdboxDeleteBox has the same
// layout.
type FdboxCreateBox struct {
	Flags uint64
	Name  [FDBOX_NAME_LEN]byte
}

// FdboxDeleteBox is struct fdbox_delete_box.
type FdboxDeleteBox struct {
	Flags uint64
	Name  [FDBOX_NAME_LEN]byte
}

// FdboxPutFD is struct fdbox_put_fd.
type FdboxPutFD struct {
	Flags uint64
	FD    uint32
	Pad   uint32
	Name  [FDBOX_NAME_LEN]byte
}

// FdboxGetFD is struct fdbox_get_fd.
type FdboxGetFD struct {
	Flags uint64
	Pad   uint32
	Name  [FDBOX_NAME_LEN]byte
}

// FdboxListEntry is one row of FDBOX_LIST.
type FdboxListEntry struct {
	Name string
}

// FdboxList is the result buffer of FDBOX_LIST: the box's sealed state and
// its fd names in insertion order. The ioctl returns the number of names.
type FdboxList struct {
	Sealed  bool
	Entries []FdboxListEntry
}

// SetName copies s into a fixed UAPI name buffer. It reports false when s
// does not fit with its terminating NUL; the buffer then holds the first
// FDBOX_NAME_LEN bytes with no NUL, as a user could pass.
func SetName(buf *[FDBOX_NAME_LEN]byte, s string) bool {
	*buf = [FDBOX_NAME_LEN]byte{}
	n := copy(buf[:], s)
	return n == len(s) && n < FDBOX_NAME_LEN
}

// Live Update Orchestrator UAPI (include/uapi/linux/liveupdate.h): the
// ioctls of /dev/liveupdate and of a session fd are _IO(0xBA, nr), their
// argument a structure whose first u32 is its size.
const (
	LIVEUPDATE_IOCTL_TYPE = 0xBA
	// LIVEUPDATE_SESSION_NAME_LENGTH is the longest session name with its
	// terminating NUL.
	LIVEUPDATE_SESSION_NAME_LENGTH = 64

	LIVEUPDATE_CMD_BASE                = 0x00
	LIVEUPDATE_CMD_CREATE_SESSION      = LIVEUPDATE_CMD_BASE
	LIVEUPDATE_CMD_RETRIEVE_SESSION    = 0x01
	LIVEUPDATE_CMD_SESSION_BASE        = 0x40
	LIVEUPDATE_CMD_SESSION_PRESERVE_FD = LIVEUPDATE_CMD_SESSION_BASE
	LIVEUPDATE_CMD_SESSION_RETRIEVE_FD = 0x41
	LIVEUPDATE_CMD_SESSION_FINISH      = 0x42
)

// LUO ioctl numbers.
var (
	LIVEUPDATE_IOCTL_CREATE_SESSION   = ioctlIO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_CREATE_SESSION)
	LIVEUPDATE_IOCTL_RETRIEVE_SESSION = ioctlIO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_RETRIEVE_SESSION)
	LIVEUPDATE_SESSION_PRESERVE_FD    = ioctlIO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_PRESERVE_FD)
	LIVEUPDATE_SESSION_RETRIEVE_FD    = ioctlIO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_RETRIEVE_FD)
	LIVEUPDATE_SESSION_FINISH         = ioctlIO(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_FINISH)
)

// LiveupdateIoctlCreateSession is struct liveupdate_ioctl_create_session
// (72 bytes): Size in, FD out, Name in (NUL-terminated).
type LiveupdateIoctlCreateSession struct {
	Size uint32
	FD   int32
	Name [LIVEUPDATE_SESSION_NAME_LENGTH]byte
}

// LiveupdateIoctlRetrieveSession is struct
// liveupdate_ioctl_retrieve_session, laid out as the create structure.
type LiveupdateIoctlRetrieveSession struct {
	Size uint32
	FD   int32
	Name [LIVEUPDATE_SESSION_NAME_LENGTH]byte
}

// LiveupdateSessionPreserveFD is struct liveupdate_session_preserve_fd
// (16 bytes): Size, FD and Token in.
type LiveupdateSessionPreserveFD struct {
	Size  uint32
	FD    int32
	Token uint64
}

// LiveupdateSessionRetrieveFD is struct liveupdate_session_retrieve_fd
// (16 bytes): Size and Token in, FD out.
type LiveupdateSessionRetrieveFD struct {
	Size  uint32
	FD    int32
	Token uint64
}

// LiveupdateSessionFinish is struct liveupdate_session_finish (8 bytes);
// Reserved must be 0.
type LiveupdateSessionFinish struct {
	Size     uint32
	Reserved uint32
}

// Sizes of the LUO ioctl structures (sizeof), which user space puts in
// their Size field.
const (
	SizeofLiveupdateIoctlCreateSession   = 72
	SizeofLiveupdateIoctlRetrieveSession = 72
	SizeofLiveupdateSessionPreserveFD    = 16
	SizeofLiveupdateSessionRetrieveFD    = 16
	SizeofLiveupdateSessionFinish        = 8
)

// SetSessionName copies s into a LUO name buffer. It reports false when s
// does not fit with its terminating NUL; the buffer then holds the first
// LIVEUPDATE_SESSION_NAME_LENGTH bytes with no NUL, as a user could pass.
func SetSessionName(buf *[LIVEUPDATE_SESSION_NAME_LENGTH]byte, s string) bool {
	*buf = [LIVEUPDATE_SESSION_NAME_LENGTH]byte{}
	n := copy(buf[:], s)
	return n == len(s) && n < LIVEUPDATE_SESSION_NAME_LENGTH
}

// Constants maps every scenario-visible constant name to its value.
func Constants() map[string]uint64 {
	return map[string]uint64{
		"O_RDONLY": O_RDONLY, "O_WRONLY": O_WRONLY, "O_RDWR": O_RDWR, "O_CREAT": O_CREAT,
		"O_EXCL": O_EXCL, "O_TRUNC": O_TRUNC, "O_APPEND": O_APPEND, "O_CLOEXEC": O_CLOEXEC,
		"O_NONBLOCK": O_NONBLOCK, "O_LARGEFILE": O_LARGEFILE,
		"MFD_CLOEXEC": MFD_CLOEXEC, "MFD_ALLOW_SEALING": MFD_ALLOW_SEALING, "MFD_HUGETLB": MFD_HUGETLB,
		"MFD_NOEXEC_SEAL": MFD_NOEXEC_SEAL, "MFD_EXEC": MFD_EXEC,
		"F_ADD_SEALS": F_ADD_SEALS, "F_GET_SEALS": F_GET_SEALS, "F_GETFD": F_GETFD, "F_SETFD": F_SETFD,
		"F_GETFL": F_GETFL, "F_SEAL_SEAL": F_SEAL_SEAL, "F_SEAL_SHRINK": F_SEAL_SHRINK,
		"F_SEAL_GROW": F_SEAL_GROW, "F_SEAL_WRITE": F_SEAL_WRITE, "F_SEAL_FUTURE_WRITE": F_SEAL_FUTURE_WRITE,
		"F_SEAL_EXEC": F_SEAL_EXEC, "FD_CLOEXEC": FD_CLOEXEC,
		"SEEK_SET": SEEK_SET, "SEEK_CUR": SEEK_CUR, "SEEK_END": SEEK_END, "SEEK_DATA": SEEK_DATA, "SEEK_HOLE": SEEK_HOLE,
		"FALLOC_FL_KEEP_SIZE": FALLOC_FL_KEEP_SIZE, "FALLOC_FL_PUNCH_HOLE": FALLOC_FL_PUNCH_HOLE,
		"PROT_NONE": PROT_NONE, "PROT_READ": PROT_READ, "PROT_WRITE": PROT_WRITE, "PROT_EXEC": PROT_EXEC,
		"MAP_SHARED": MAP_SHARED, "MAP_PRIVATE": MAP_PRIVATE, "MAP_FIXED": MAP_FIXED, "MAP_ANONYMOUS": MAP_ANONYMOUS,
		"MADV_NORMAL": MADV_NORMAL, "MADV_DONTNEED": MADV_DONTNEED, "MADV_COLD": MADV_COLD, "MADV_PAGEOUT": MADV_PAGEOUT,
		"CAP_CHOWN": CAP_CHOWN, "CAP_DAC_OVERRIDE": CAP_DAC_OVERRIDE, "CAP_SYS_ADMIN": CAP_SYS_ADMIN,
		"FDBOX_CREATE_BOX": uint64(FDBOX_CREATE_BOX), "FDBOX_DELETE_BOX": uint64(FDBOX_DELETE_BOX),
		"FDBOX_PUT_FD": uint64(FDBOX_PUT_FD), "FDBOX_GET_FD": uint64(FDBOX_GET_FD),
		"FDBOX_SEAL": uint64(FDBOX_SEAL), "FDBOX_UNSEAL": uint64(FDBOX_UNSEAL), "FDBOX_LIST": uint64(FDBOX_LIST),
		"LIVEUPDATE_IOCTL_CREATE_SESSION":   uint64(LIVEUPDATE_IOCTL_CREATE_SESSION),
		"LIVEUPDATE_IOCTL_RETRIEVE_SESSION": uint64(LIVEUPDATE_IOCTL_RETRIEVE_SESSION),
		"LIVEUPDATE_SESSION_PRESERVE_FD":    uint64(LIVEUPDATE_SESSION_PRESERVE_FD),
		"LIVEUPDATE_SESSION_RETRIEVE_FD":    uint64(LIVEUPDATE_SESSION_RETRIEVE_FD),
		"LIVEUPDATE_SESSION_FINISH":         uint64(LIVEUPDATE_SESSION_FINISH),
	}
}
