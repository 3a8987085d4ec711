// Package kbuild describes a kernel build: what a kernel speaks across a
// live update. A live update replaces one kernel by another, often of a
// different version, so the kernel that reads a handover is not always
// the one that wrote it. A Build says which KHO tracker a kernel records
// preserved memory with, which front-ends it has (FDBox in which
// lifecycle, LUO) and which memfd serialization it writes; the machine
// boots a kernel of a Build (machine.Boot) and kexecs into another
// (machine.Kexec), and every layer asks the Build what to do.
//
// The keys and values are those of ../shared/spec/live-update-designs.md
// ("Kernel builds"): on `boot` a key not given takes its default; on
// `kexec` it is inherited from the running kernel (Build.With applies
// keys over a base), and a key given twice counts with its last value.
//
// In Linux most of these are compile-time choices (CONFIG_LIVEUPDATE, the
// KHO version a tree carries, the memfd_luo ABI it was built with) and a
// few are command-line parameters (liveupdate=1, transparent_hugepage_shmem=);
// khosim folds them into one value so that a scenario can say "kexec into
// a kernel that speaks X".
package kbuild

import (
	"fmt"
	"slices"
	"strings"

	"khosim/errno"
)

// Tracker is how a kernel's KHO records preserved memory (the kho= key).
type Tracker string

// The trackers KHO has had.
const (
	// TrackerArrays is the RFC's base (KHO v4, February 2025): clients
	// write struct kho_mem arrays in "mem" properties anywhere in the
	// FDT; root compatible "kho-v1".
	TrackerArrays Tracker = "arrays"
	// TrackerBitmaps is mainline 6.16-6.19: per-order bitmaps of
	// preserved folios, serialized at finalize into linked chunk pages
	// referenced by the root's "preserved-memory-map"; root compatible
	// "kho-v1" too.
	TrackerBitmaps Tracker = "bitmaps"
	// TrackerRadix is the 2026 "stateless" KHO: one radix tree of 4 KiB
	// pages whose leaves are bitmaps, kept up to date at every preserve;
	// no finalize; root compatible "kho-v2".
	TrackerRadix Tracker = "radix"
)

// FDBoxMode is the FDBox driver's lifecycle (the fdbox= key).
type FDBoxMode string

// FDBox lifecycles.
const (
	// FDBoxStash is the RFC as posted: a box holds live struct files and
	// they are serialized at `kho activate`.
	FDBoxStash FDBoxMode = "stash"
	// FDBoxSeal is Pratyush Yadav's answer in the review: SEAL
	// serializes every file of the box into preserved memory and drops
	// the struct file; UNSEAL rebuilds the files.
	FDBoxSeal FDBoxMode = "seal"
	// FDBoxOff builds the kernel without /dev/fdbox.
	FDBoxOff FDBoxMode = "off"
)

// ShmemHugeValues are the values of transparent_hugepage_shmem= (the
// shmem_huge= key); "" means "never".
var ShmemHugeValues = []string{"never", "always", "within_size", "advise", "deny", "force"}

// Build is one kernel build. The zero value is not a valid build: start
// from Default.
type Build struct {
	// KHO is the preserved-memory tracker.
	KHO Tracker
	// FDBox is the FDBox driver's lifecycle, or FDBoxOff.
	FDBox FDBoxMode
	// LUO is whether /dev/liveupdate exists (Linux: liveupdate=1 on a
	// CONFIG_LIVEUPDATE kernel).
	LUO bool
	// Memfd is the memfd_luo serialization version this kernel writes
	// (1: "memfd-v1", 2: "memfd-v2"); it reads every version up to it.
	Memfd int
	// ShmemHuge is transparent_hugepage_shmem= for memfds and
	// shmem_file_setup files; "" is "never".
	ShmemHuge string
	// FDBoxShmem is the version of the FDBox memfd's storage node this
	// kernel writes (2: "fdbox,shmem-v2", unnamed; 3: "fdbox,shmem-v3",
	// named "shmem"); it reads every version up to it. A khosim
	// extension: the RFC's node is the unnamed shmem-v1.
	FDBoxShmem int
	// DeferredInit is CONFIG_DEFERRED_STRUCT_PAGE_INIT: the kernel
	// initialises at boot only the struct pages early boot needs, the
	// rest as the allocator needs them (physmem/deferred.go).
	DeferredInit bool
}

// Default is the build every scenario gets when it names no key: the
// RFC's kernel (arrays, FDBox stash, no LUO), writing memfd-v2 if LUO is
// turned on.
func Default() Build {
	return Build{KHO: TrackerArrays, FDBox: FDBoxStash, LUO: false, Memfd: 2, ShmemHuge: "never", FDBoxShmem: 3}
}

// KeyInfo describes one key for `khosim kernels` and for messages.
type KeyInfo struct {
	Name    string
	Values  []string
	Default string
	Meaning string
}

// Keys lists the build keys in the order the contract gives them.
func Keys() []KeyInfo {
	return []KeyInfo{
		{"kho", []string{"arrays", "bitmaps", "radix"}, "arrays",
			"how KHO records preserved memory: kho_mem arrays in \"mem\" properties (KHO v4, root kho-v1); per-order bitmaps in chunk pages (mainline 6.16, root kho-v1 + preserved-memory-map); a radix tree of bitmap pages (2026, root kho-v2)"},
		{"fdbox", []string{"stash", "seal", "off"}, "stash",
			"the FDBox driver: the RFC's stash of live files serialized at kho activate; serialize at SEAL (Pratyush Yadav); no /dev/fdbox"},
		{"luo", []string{"on", "off"}, "off",
			"/dev/liveupdate (the Live Update Orchestrator, liveupdate=1)"},
		{"memfd", []string{"v1", "v2"}, "v2",
			"the memfd_luo serialization written (memfd-v1: no seals; memfd-v2: seals); every version up to it is read"},
		{"shmem_huge", slices.Clone(ShmemHugeValues), "never",
			"transparent_hugepage_shmem=: 2 MiB folios for memfds where an aligned range fits"},
		{"fdbox_shmem", []string{"v2", "v3"}, "v3",
			"the FDBox memfd storage node written (shmem-v2: unnamed; shmem-v3: named \"shmem\", which dtc and fdtget reach by path); every version up to it is read (a khosim extension)"},
		{"deferred_struct_page_init", []string{"on", "off"}, "off",
			"CONFIG_DEFERRED_STRUCT_PAGE_INIT: initialise at boot only the struct pages early boot needs (the low zones, a section of the highest one, reserved memory, KHO scratch) and the rest a section at a time as the allocator needs it, so that machines far larger than the host boot"},
	}
}

// KeyNames lists the build keys.
func KeyNames() []string {
	var out []string
	for _, k := range Keys() {
		out = append(out, k.Name)
	}
	return out
}

// With returns b with key set to value. Errors (EINVAL, with a message
// naming the key and the values it takes) for an unknown key or value.
func (b Build) With(key, value string) (Build, error) {
	bad := func() (Build, error) {
		for _, k := range Keys() {
			if k.Name == key {
				return b, fmt.Errorf("kernel build: %s=%s: want %s: %w", key, value, strings.Join(k.Values, ", "), errno.EINVAL)
			}
		}
		return b, fmt.Errorf("kernel build: unknown key %q (keys: %s): %w", key, strings.Join(KeyNames(), ", "), errno.EINVAL)
	}
	switch key {
	case "kho":
		switch t := Tracker(value); t {
		case TrackerArrays, TrackerBitmaps, TrackerRadix:
			b.KHO = t
		default:
			return bad()
		}
	case "fdbox":
		switch m := FDBoxMode(value); m {
		case FDBoxStash, FDBoxSeal, FDBoxOff:
			b.FDBox = m
		default:
			return bad()
		}
	case "luo":
		switch value {
		case "on":
			b.LUO = true
		case "off":
			b.LUO = false
		default:
			return bad()
		}
	case "memfd":
		switch value {
		case "v1":
			b.Memfd = 1
		case "v2":
			b.Memfd = 2
		default:
			return bad()
		}
	case "shmem_huge":
		if !slices.Contains(ShmemHugeValues, value) {
			return bad()
		}
		b.ShmemHuge = value
	case "fdbox_shmem":
		switch value {
		case "v2":
			b.FDBoxShmem = 2
		case "v3":
			b.FDBoxShmem = 3
		default:
			return bad()
		}
	case "deferred_struct_page_init":
		switch value {
		case "on":
			b.DeferredInit = true
		case "off":
			b.DeferredInit = false
		default:
			return bad()
		}
	default:
		return bad()
	}
	return b, nil
}

// Value returns the value of key in b, as With takes it.
func (b Build) Value(key string) string {
	switch key {
	case "kho":
		return string(b.KHO)
	case "fdbox":
		return string(b.FDBox)
	case "luo":
		if b.LUO {
			return "on"
		}
		return "off"
	case "memfd":
		return fmt.Sprintf("v%d", b.Memfd)
	case "shmem_huge":
		if b.ShmemHuge == "" {
			return "never"
		}
		return b.ShmemHuge
	case "fdbox_shmem":
		return fmt.Sprintf("v%d", b.FDBoxShmem)
	case "deferred_struct_page_init":
		if b.DeferredInit {
			return "on"
		}
		return "off"
	}
	return ""
}

// String returns every key of b, in Keys order: "kho=arrays fdbox=stash
// luo=off memfd=v2 shmem_huge=never fdbox_shmem=v3 deferred_struct_page_init=off".
func (b Build) String() string {
	var parts []string
	for _, k := range KeyNames() {
		parts = append(parts, k+"="+b.Value(k))
	}
	return strings.Join(parts, " ")
}

// Diff returns the keys whose values differ between b and o, as
// "key=value" of o, in Keys order: what a kexec from b to o changes.
func (b Build) Diff(o Build) []string {
	var out []string
	for _, k := range KeyNames() {
		if b.Value(k) != o.Value(k) {
			out = append(out, k+"="+o.Value(k))
		}
	}
	return out
}

// Valid reports whether every field holds a value of its key (a Build
// made by hand may not).
func (b Build) Valid() error {
	for _, k := range Keys() {
		if !slices.Contains(k.Values, b.Value(k.Name)) {
			return fmt.Errorf("kernel build: %s=%q: want %s: %w", k.Name, b.Value(k.Name), strings.Join(k.Values, ", "), errno.EINVAL)
		}
	}
	return nil
}

// ReadsMemfd reports whether the build can read memfd_luo records of the
// given version (every version up to its own).
func (b Build) ReadsMemfd(version int) bool { return version >= 1 && version <= b.Memfd }

// ReadsFDBoxShmem reports whether the build can read FDBox storage nodes
// "fdbox,shmem-vN" of the given version (every version up to its own).
func (b Build) ReadsFDBoxShmem(version int) bool { return version >= 1 && version <= b.FDBoxShmem }
