package kexec

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/invariant"
	"khosim/physmem"
)

// TestRangeReservedAudit: kho-range-reserved holds while no frame of a
// reserved incoming range has been restored, although their struct pages
// hold the previous kernel's stale bytes (the audit does not read them),
// and breaks when one is restored behind KHO's back.
func TestRangeReservedAudit(t *testing.T) {
	const mib = 1 << 20
	mems := []Mem{{Addr: 64 * mib, Size: 4096}, {Addr: 64*mib + 4096, Size: 4096}, {Addr: 66 * mib, Size: 2 * mib}}
	frames, err := physmem.NewFrames(256 * mib)
	require.NoError(t, err)
	defer frames.Close()

	// The previous kernel leaves its struct pages of those frames dirty.
	k1 := bootEarly(t, frames, func(*KHO) {})
	for _, m := range mems {
		for pfn := m.PFN(); pfn < m.PFN()+physmem.PFN(m.NrPages()); pfn++ {
			if _, head := k1.MM.FreeBlockAt(pfn); !head { // a free block's head stays one: stale too
				k1.MM.Page(pfn).SetIndex(^uint64(0))
			}
		}
	}
	k1.Poison("kexec")

	var h *KHO
	k2 := bootEarly(t, frames, func(x *KHO) {
		h = x
		h.in.reserved = h.reserveEach(slices.Values(mems))
		require.Zero(t, h.in.rejected)
	})
	// The stale struct page is sealed: refused, or handed out poisoned.
	stale := physmem.PFN(64*mib/physmem.PageSize + 1)
	requireViolation(t, "page-initialised", func() { k2.MM.Page(stale) })
	requireViolation(t, "page-poisoned", func() { k2.MM.Memmap.Page(stale).Index() })
	require.False(t, k2.MM.PageInitialised(64*mib/physmem.PageSize))
	require.NoError(t, h.CheckInvariants())
	require.NoError(t, k2.MM.CheckInvariants())

	_, err = k2.MM.RestoreFolio(66*mib/physmem.PageSize, physmem.HPageOrder)
	require.NoError(t, err)
	var v *invariant.Violation
	require.True(t, errors.As(h.CheckInvariants(), &v))
	require.Equal(t, "kho-range-reserved", v.Invariant)
}

// requireViolation runs f and requires it to panic with a broken
// invariant of that name.
func requireViolation(t *testing.T, name string, f func()) {
	t.Helper()
	var got any
	func() {
		defer func() { got = recover() }()
		f()
	}()
	v, ok := got.(*invariant.Violation)
	require.True(t, ok, "want a %q violation, got %v", name, got)
	require.Equal(t, name, v.Invariant)
}
