package fdbox

import (
	"khosim/kbuild"
	"khosim/preserve"
)

// Lifecycle is what an FDBox lifecycle (kbuild.FDBoxMode) adds to the
// driver's PUT_FD, SEAL and UNSEAL. The driver itself is the RFC's stash
// (no Lifecycle): PUT_FD moves the fd's reference into the box, SEAL only
// checks that the files are idle, and `kho activate` serializes the
// sealed boxes. A new lifecycle is a new file implementing this interface,
// installed with Driver.SetLifecycle by the KHO code at late initcall.
type Lifecycle interface {
	// Mode names the lifecycle.
	Mode() kbuild.FDBoxMode
	// PutKeepsFD reports whether PUT_FD leaves the caller's fd installed,
	// the box taking a reference of its own.
	PutKeepsFD() bool
	// Seal runs at FDBOX_SEAL once every file of box checked idle and
	// every handler's Seal succeeded. On error the box stays unsealed
	// and nothing changed.
	Seal(box *Box) error
	// Unseal runs at FDBOX_UNSEAL before the handlers' Unseal. On error
	// the box stays sealed and nothing changed.
	Unseal(box *Box) error
	// Records lists the serialized files the lifecycle holds, for the
	// driver's audit.
	Records() []preserve.Preserved
}

// SetLifecycle installs the driver's lifecycle (nil: the stash).
func (d *Driver) SetLifecycle(lc Lifecycle) {
	d.mustAlive("SetLifecycle")
	d.lc = lc
}

// Lifecycle returns the driver's lifecycle, nil for the stash.
func (d *Driver) Lifecycle() Lifecycle { return d.lc }
