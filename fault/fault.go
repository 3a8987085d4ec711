// Package fault is khosim's fault injection, modelled on the kernel's
// fault-injection framework (lib/fault-inject.c): a named site, armed to
// fail the N-th time it is reached and the M-1 times after that.
//
// An Injector belongs to the machine, not to a kernel, so a fault armed
// before kexec can fire during the next kernel's boot. Every code path that
// can fail at a site calls Injector.Hit(site) at the point where the real
// operation would fail and returns the error it gets.
//
// A nil *Injector is valid and never fires, so packages can be used (and
// benchmarked) without one.
package fault

import (
	"fmt"
	"slices"

	"khosim/errno"
)

// Site names a place where a fault can be injected.
type Site string

// The sites of the scenario contract.
const (
	PageAlloc Site = "page_alloc" // any page allocation
	Slab      Site = "slab"       // any allocation of kernel metadata (failslab)
	FDT       Site = "fdt"        // any FDT write while building the handover
	KHOWrite  Site = "kho_write"  // serializing one boxed file
	KHOClaim  Site = "kho_claim"  // claiming one preserved range in the new kernel
	Recover   Site = "recover"    // reviving one boxed file in the new kernel

	LUOPreserve Site = "luo_preserve" // a LUO file handler's preserve (LIVEUPDATE_SESSION_PRESERVE_FD)
	LUOFreeze   Site = "luo_freeze"   // freezing one LUO file in the reboot path
	LUORetrieve Site = "luo_retrieve" // restoring one LUO file in the next kernel (LIVEUPDATE_SESSION_RETRIEVE_FD)
)

// SiteInfo describes a site for `khosim faults`.
type SiteInfo struct {
	Site  Site
	Errno errno.Errno
	What  string
}

var sites = []SiteInfo{
	{PageAlloc, errno.ENOMEM, "any page allocation from the buddy allocator (not boot-time memblock)"},
	{Slab, errno.ENOMEM, "any allocation of kernel metadata — page-cache nodes, inodes, files, mappings, fd tables, swap maps, tracker pages, session and box records (kmem_cache_alloc, kmalloc, kvmalloc: failslab)"},
	{FDT, errno.ENOSPC, "any FDT write while building the KHO handover"},
	{KHOWrite, errno.EIO, "serializing one boxed file (fdbox kho_write)"},
	{KHOClaim, errno.ENOMEM, "claiming one preserved range in the new kernel"},
	{Recover, errno.EIO, "reviving one boxed file in the new kernel"},
	{LUOPreserve, errno.ENOMEM, "a LUO file handler's preserve (LIVEUPDATE_SESSION_PRESERVE_FD)"},
	{LUOFreeze, errno.EIO, "freezing one LUO file in the reboot path (kexec fails, everything unfrozen)"},
	{LUORetrieve, errno.EIO, "restoring one LUO file in the next kernel (that token's retrieve fails with it every time after)"},
}

// Sites lists every site in a stable order.
func Sites() []SiteInfo { return slices.Clone(sites) }

// Lookup returns the description of a site by name.
func Lookup(name string) (SiteInfo, bool) {
	for _, s := range sites {
		if string(s.Site) == name {
			return s, true
		}
	}
	return SiteInfo{}, false
}

type arm struct {
	nth, times int // fire on hit numbers [nth, nth+times)
	hits       int // hits counted since arming
}

// Injector holds the armed faults of one machine.
//
// State machine per site: disarmed -> armed (Arm) -> firing (hit number
// nth..nth+times-1 returns the errno) -> disarmed once the last planned
// failure fired. Re-arming a site replaces its plan.
type Injector struct {
	armed map[Site]*arm
	fired map[Site]int
}

// New returns an Injector with nothing armed.
func New() *Injector {
	return &Injector{armed: map[Site]*arm{}, fired: map[Site]int{}}
}

// Arm makes the nth time site is reached, and the times-1 times after it,
// fail. nth and times must be at least 1.
func (in *Injector) Arm(site Site, nth, times int) error {
	if _, ok := Lookup(string(site)); !ok {
		return fmt.Errorf("unknown fault site %q: %w", site, errno.EINVAL)
	}
	if nth < 1 || times < 1 {
		return fmt.Errorf("fault %s: nth=%d times=%d must be >= 1: %w", site, nth, times, errno.EINVAL)
	}
	in.armed[site] = &arm{nth: nth, times: times}
	return nil
}

// Hit reports that the code reached site. It returns the site's errno when
// an armed fault fires there, and nil otherwise.
func (in *Injector) Hit(site Site) error {
	if in == nil || len(in.armed) == 0 {
		return nil
	}
	a := in.armed[site]
	if a == nil {
		return nil
	}
	a.hits++
	if a.hits < a.nth {
		return nil
	}
	if a.hits >= a.nth+a.times-1 {
		delete(in.armed, site)
	}
	in.fired[site]++
	info, _ := Lookup(string(site))
	return info.Errno
}

// Disarm drops whatever is still planned for site (a plan that did not
// fire yet, or the rest of one that is firing).
func (in *Injector) Disarm(site Site) { delete(in.armed, site) }

// Armed reports whether site still has failures to deliver.
func (in *Injector) Armed(site Site) bool { return in != nil && in.armed[site] != nil }

// Fired returns how many failures site has delivered in total.
func (in *Injector) Fired(site Site) int {
	if in == nil {
		return 0
	}
	return in.fired[site]
}
