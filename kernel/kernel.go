// Package kernel is one simulated Linux kernel instance booted on a machine:
// its memory management view (memmap, memblock, buddy allocator from
// physmem), tasks with credentials and fd tables, files and inodes,
// character devices, shmem/tmpfs with a page cache, memfd and seals, a swap
// device, and shared mappings.
//
// Several kernels of one machine never share Go state: after kexec the new
// Kernel is built from the machine's frames and boot parameters alone, and
// the old one is poisoned so that any stray use panics.
//
// Where things are:
//
//	boot.go          Boot: memblock, KHO scratch, the memmap, memblock_free_all
//	task.go file.go  processes, fd tables, struct file (the core)
//	syscalls.go      read/write/lseek/ftruncate/fallocate/fcntl/ioctl
//	fs.go            path lookup, open, /tmp (tmpfs), /dev/null
//	memfd.go         memfd_create and seals (mm/memfd.c)
//	shmem*.go        shmem: inodes, folio lookup and allocation, read and
//	                 write, fallocate, shmem_undo_range (mm/shmem.c,
//	                 mm/truncate.c)
//	mmap.go          shared mappings, page tables, faults (mm/mmap.c, mm/memory.c)
//	madvise.go       madvise, MADV_PAGEOUT and shmem_writepage (mm/madvise.c,
//	                 mm/vmscan.c)
//	swap.go          the swap device and swap map (mm/swapfile.c)
//	slab.go          kernel metadata in slab caches, fd tables
//	audit.go         CheckInvariants, frame counts, vmstat
package kernel

import (
	"fmt"
	"slices"
	"strings"

	"khosim/blackout"
	"khosim/kbuild"
	"khosim/physmem"
)

// Kernel is one booted kernel instance.
//
// State machine: booting (Boot: memblock, then memory init, then
// initcalls) -> running -> gone (Poison, at kexec or reboot). A gone kernel
// must never be used again: every entry point panics.
type Kernel struct {
	// BootID counts the machine's boots: 1 for the first cold boot, +1 at
	// every kexec or reboot.
	BootID int
	// Cmdline is the kernel command line this kernel booted with.
	Cmdline string

	// MM is this kernel's view of physical memory.
	MM *physmem.MM
	// Scratch is the KHO scratch memory: reserved by this kernel on a cold
	// boot, handed in by the previous kernel on a kexec boot.
	Scratch []physmem.MemblockRegion

	hw       Hardware
	build    kbuild.Build
	swap     *swapInfo
	shm      *shmemSB // the internal shm_mnt: memfds and shmem_file_setup
	tmp      *shmemSB // the tmpfs mounted on /tmp
	tmpDir   map[string]*Inode
	mappings []*ShmemInodeInfo // by MappingID; nil for a free ID
	freeIDs  []physmem.MappingID
	counters []frameCounter
	caches   kernelCaches // the slab caches of kernel metadata (slab.go)

	shmemHuge         shmemHuge          // the global shmem_huge (transparent_hugepage_shmem=)
	memmapBlocks      []physmem.PhysAddr // the memmap's early allocations
	warnedMemfdNoexec bool
	stats             vmEvents
	migrations        migrationTrace // folios migrated (Migrations)

	gone     bool
	goneWhy  string
	printk   []LogLine
	devices  map[string]*Device
	tasks    map[int]*Task
	files    map[*File]struct{}
	inodes   map[*Inode]struct{}
	owners   []refOwner
	initcall [nrInitcallLevels][]initcall

	nextPID    int
	nextFileID uint64
	nextIno    uint64
}

// newKernel returns a kernel with empty tables. Boot fills in memory.
func newKernel(bootID int, cmdline string) *Kernel {
	return &Kernel{
		BootID:  bootID,
		Cmdline: cmdline,
		devices: map[string]*Device{},
		tasks:   map[int]*Task{},
		files:   map[*File]struct{}{},
		inodes:  map[*Inode]struct{}{},
	}
}

// mustAlive panics, naming the invariant "kernel-alive", when k is nil or
// was replaced by kexec or reboot: no Go object of a kernel that is gone
// may be used.
func (k *Kernel) mustAlive() {
	if k == nil || k.gone {
		k.notAlive()
	}
}

// notAlive is mustAlive's panic, out of line so that mustAlive inlines
// into every hot entry point.
func (k *Kernel) notAlive() {
	why := "nil kernel"
	if k != nil {
		why = fmt.Sprintf("boot %d is gone (%s)", k.BootID, k.goneWhy)
	}
	panic("kernel: invariant \"kernel-alive\" broken: use of a kernel that is not running: " + why)
}

// Meter returns the machine's live-update meter (blackout accounting).
func (k *Kernel) Meter() *blackout.Meter { return k.hw.Meter }

// Work returns the live-update work counts the kernel's live-update code
// adds to (the Meter's).
func (k *Kernel) Work() *blackout.Counts { return k.hw.Meter.Work() }

// Build returns the kernel build this kernel was booted as.
func (k *Kernel) Build() kbuild.Build { return k.build }

// Gone reports whether the kernel was replaced by kexec or reboot.
func (k *Kernel) Gone() bool { return k.gone }

// Poison ends this kernel: kexec or reboot replaced it. Its tables are
// dropped so that no state can leak into the next kernel, and every later
// use of it panics.
func (k *Kernel) Poison(why string) {
	k.gone = true
	k.goneWhy = why
	if k.MM != nil {
		_ = k.MM.Close() // the memmap dies with its kernel; the frames stay
	}
	k.MM = nil
	k.devices = nil
	k.tasks = nil
	k.files = nil
	k.inodes = nil
	k.owners = nil
	k.initcall = [nrInitcallLevels][]initcall{}
	k.swap = nil
	k.shm, k.tmp, k.tmpDir = nil, nil, nil
	k.mappings, k.freeIDs = nil, nil
	k.migrations = migrationTrace{}
	k.counters = nil
	k.caches = kernelCaches{}
	k.Scratch = nil
}

// LogLevel is a printk level.
type LogLevel int

// printk levels (KERN_ERR ... KERN_DEBUG).
const (
	LogErr LogLevel = iota + 3
	LogWarn
	LogNotice
	LogInfo
	LogDebug
)

func (l LogLevel) String() string {
	switch l {
	case LogErr:
		return "err"
	case LogWarn:
		return "warn"
	case LogNotice:
		return "notice"
	case LogInfo:
		return "info"
	default:
		return "debug"
	}
}

// LogLine is one kernel message.
type LogLine struct {
	Level LogLevel
	Text  string
}

func (l LogLine) String() string { return l.Level.String() + ": " + l.Text }

// Printk appends a message to the kernel log (printk / pr_err / pr_info).
// Messages carry their subsystem prefix in the text ("fdbox: ...").
func (k *Kernel) Printk(level LogLevel, format string, args ...any) {
	k.printk = append(k.printk, LogLine{Level: level, Text: fmt.Sprintf(format, args...)})
}

// Log returns the kernel log since boot.
func (k *Kernel) Log() []LogLine { return slices.Clone(k.printk) }

// Tasks returns the running tasks by pid.
func (k *Kernel) Tasks() []*Task {
	out := make([]*Task, 0, len(k.tasks))
	for _, t := range k.tasks {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *Task) int { return a.PID - b.PID })
	return out
}

// Files returns every live file, oldest first.
func (k *Kernel) Files() []*File {
	out := make([]*File, 0, len(k.files))
	for f := range k.files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *File) int { return int(a.id) - int(b.id) })
	return out
}

// Inodes returns every live inode by number.
func (k *Kernel) Inodes() []*Inode {
	out := make([]*Inode, 0, len(k.inodes))
	for in := range k.inodes {
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b *Inode) int { return int(a.Ino) - int(b.Ino) })
	return out
}

// InitcallLevel orders initcalls as Linux's include/linux/init.h does.
type InitcallLevel int

// Initcall levels, in the order do_initcalls() runs them.
const (
	InitcallEarly InitcallLevel = iota
	InitcallCore
	InitcallPostcore
	InitcallArch
	InitcallSubsys
	InitcallFS
	InitcallDevice // device_initcall / module_init of built-in drivers
	InitcallLate
	nrInitcallLevels
)

var initcallNames = [...]string{"early", "core", "postcore", "arch", "subsys", "fs", "device", "late"}

func (l InitcallLevel) String() string { return initcallNames[l] }

type initcall struct {
	name string
	fn   func(k *Kernel) error
}

// RegisterInitcall queues fn to run at level during boot.
func (k *Kernel) RegisterInitcall(level InitcallLevel, name string, fn func(k *Kernel) error) {
	k.initcall[level] = append(k.initcall[level], initcall{name, fn})
}

// RunInitcalls runs every registered initcall in level order
// (do_initcalls()). As in Linux, a failing initcall is logged and boot
// goes on.
func (k *Kernel) RunInitcalls() {
	for level := range nrInitcallLevels {
		for _, ic := range k.initcall[level] {
			if err := ic.fn(k); err != nil {
				k.Printk(LogErr, "initcall %s (%s) returned %v", ic.name, level, err)
			}
		}
		k.initcall[level] = nil
	}
}

// HasParam reports whether the command line has the word param (a bare
// flag or key=value); value is what follows "=".
func (k *Kernel) HasParam(key string) (value string, ok bool) {
	for _, w := range strings.Fields(k.Cmdline) {
		if w == key {
			return "", true
		}
		if v, found := strings.CutPrefix(w, key+"="); found {
			return v, true
		}
	}
	return "", false
}
