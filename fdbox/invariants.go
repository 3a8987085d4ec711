package fdbox

import (
	"fmt"
	"slices"
	"strings"

	"khosim/invariant"
	"khosim/kernel"
	"khosim/preserve"
)

// visitRefs reports to the kernel's audit the one file reference each
// BoxFD owns (registered with kernel.RegisterRefOwner as "fdbox").
func (d *Driver) visitRefs(v kernel.RefVisitor) {
	for _, box := range d.boxes {
		for _, bfd := range box.fds {
			if bfd.file != nil {
				v.File(bfd.file, 1, fmt.Sprintf("fdbox box %q fd %q", box.name, bfd.name))
			}
		}
	}
}

// CheckInvariants checks the driver's own state and returns the first
// broken invariant as an *invariant.Violation (nil if all hold):
//
//   - box-names-unique: live boxes have distinct valid names, are not
//     deleted and belong to this driver;
//   - box-nodes: the nodes under /dev/fdbox/ are exactly the control node
//     and one per live box;
//   - fd-names-unique: within a box, files and pending nodes have distinct
//     valid names;
//   - boxfd-owner: each BoxFD points back at its box, its file is alive
//     and of its handler's kind, and its handler is registered;
//   - file-in-one-box: no file, and no inode, is in two BoxFDs; the lookup
//     indexes hold exactly the boxed files;
//   - sealed-idle: every file of a sealed box has no reference but the
//     box's and is the only open file of its inode. This is a standing
//     invariant, not only a seal-time check: once sealed, nothing can
//     reach a boxed file (it has no fd, no mapping, GET_FD is refused, and
//     TakeFD removes it from the box), so no new reference can appear;
//   - handler-names-unique: handlers have distinct compatibles.
//
// That each boxed file's reference is counted is checked by the kernel's
// audit, to which visitRefs reports one reference per BoxFD.
func (d *Driver) CheckInvariants() error {
	d.mustAlive("CheckInvariants")
	fail := func(name, format string, args ...any) error {
		return invariant.New("fdbox", name, d.Dump(), format, args...)
	}
	for i, h := range d.handlers {
		if h.Compatible == "" || h.CanPreserve == nil {
			return fail("handler-names-unique", "handler %d has no compatible or CanPreserve", i)
		}
		if d.Handler(h.Compatible) != h {
			return fail("handler-names-unique", "two handlers for %q", h.Compatible)
		}
	}
	seenFile := map[*kernel.File]*BoxFD{}
	seenInode := map[*kernel.Inode]*BoxFD{}
	wantNodes := []string{CtlPath}
	records := 0
	for i, box := range d.boxes {
		if box.d != d || box.deleted || checkName(box.name) != nil {
			return fail("box-names-unique", "%v in the list is deleted, foreign or badly named", box)
		}
		if j := d.boxIndex(box.name); j != i {
			return fail("box-names-unique", "boxes %d and %d are both named %q", j, i, box.name)
		}
		wantNodes = append(wantNodes, box.Path())
		records++
		if box.obj == 0 {
			return fail("fdbox-records", "%v has no struct fdbox", box)
		}
		var names []string
		for _, bfd := range box.fds {
			names = append(names, bfd.name)
			records++
			if bfd.obj == 0 {
				return fail("fdbox-records", "%v has no struct fdbox_fd", bfd)
			}
			if bfd.box != box {
				return fail("boxfd-owner", "%v is listed in box %q", bfd, box.name)
			}
			f := bfd.file
			if f == nil && bfd.record != nil {
				// Serialized at SEAL: a sealed box of the seal
				// lifecycle, the record live.
				if !box.sealed || d.lc == nil || slices.IndexFunc(d.lc.Records(), func(r preserve.Preserved) bool { return r == bfd.record }) < 0 {
					return fail("boxfd-owner", "%v holds a record outside a box the seal lifecycle sealed", bfd)
				}
				continue
			}
			if bfd.record != nil {
				return fail("boxfd-owner", "%v holds both a file and a record", bfd)
			}
			if f == nil || f.Refs() < 1 {
				return fail("boxfd-owner", "fd %q of box %q holds a dead file", bfd.name, box.name)
			}
			if bfd.handler == nil || d.Handler(bfd.handler.Compatible) != bfd.handler || !bfd.handler.CanPreserve(f) {
				return fail("boxfd-owner", "%v: its handler is not registered or does not accept the file", bfd)
			}
			if other := seenFile[f]; other != nil {
				return fail("file-in-one-box", "%v is also %v", bfd, other)
			}
			seenFile[f] = bfd
			if f.Inode != nil {
				if other := seenInode[f.Inode]; other != nil {
					return fail("file-in-one-box", "%v shares inode %d with %v", bfd, f.Inode.Ino, other)
				}
				seenInode[f.Inode] = bfd
			}
			if d.byFile[f] != bfd || (f.Inode != nil && d.byInode[f.Inode] != bfd) {
				return fail("file-in-one-box", "%v is missing from the lookup indexes", bfd)
			}
			if box.sealed {
				if why := idleOutsideBox(bfd); why != "" {
					return fail("sealed-idle", "%v in a sealed box: %s", bfd, why)
				}
			}
		}
		for _, p := range box.pending {
			names = append(names, p.Name)
		}
		for j, n := range names {
			if checkName(n) != nil || slices.Index(names, n) != j {
				return fail("fd-names-unique", "box %q: name %q is invalid or used twice", box.name, n)
			}
		}
	}
	if records != d.nrRecords {
		return fail("fdbox-records", "%d boxes and box fds, %d records allocated: %d leaked", records, d.nrRecords, d.nrRecords-records)
	}
	if len(d.byFile) != len(seenFile) || len(d.byInode) != len(seenInode) {
		return fail("file-in-one-box", "lookup indexes hold %d files and %d inodes, the boxes %d and %d",
			len(d.byFile), len(d.byInode), len(seenFile), len(seenInode))
	}
	var nodes []string
	for _, p := range d.k.Devices() {
		if strings.HasPrefix(p, DevDir) {
			nodes = append(nodes, p)
		}
	}
	slices.Sort(wantNodes)
	if !slices.Equal(nodes, wantNodes) {
		return fail("box-nodes", "device nodes %q, live boxes need %q", nodes, wantNodes)
	}
	return nil
}
