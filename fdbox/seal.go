package fdbox

import (
	"slices"

	"khosim/errno"
	"khosim/kbuild"
	"khosim/kernel"
	"khosim/preserve"
)

// sealLifecycle is Pratyush Yadav's answer in the review of the RFC
// (fdbox=seal): "serialize every fd when the box is sealed, drop the
// struct file, deserialize on unseal". PUT_FD takes a reference and leaves
// the fd installed; SEAL, once the box holds every file's only reference
// (the workload closed its fds and unmapped), preserves each file with the
// preservation layer, detaches its folios and drops the struct file,
// keeping the record; UNSEAL before kexec rebuilds the files from the
// records; `kho activate` only writes the records into the FDT. After
// kexec the next kernel recovers the boxes as the stash does (the format
// is the same), and its files are live until the box is sealed again.
//
// A file whose handler has no preservation-layer handler (Preserver) is
// not serialized at SEAL and is carried as the stash carries it.
type sealLifecycle struct {
	d       *Driver
	records []preserve.Preserved
}

// NewSealLifecycle returns the seal lifecycle for d (install it with
// d.SetLifecycle).
func NewSealLifecycle(d *Driver) Lifecycle { return &sealLifecycle{d: d} }

func (s *sealLifecycle) Mode() kbuild.FDBoxMode        { return kbuild.FDBoxSeal }
func (s *sealLifecycle) PutKeepsFD() bool              { return true }
func (s *sealLifecycle) Records() []preserve.Preserved { return slices.Clone(s.records) }

// Seal serializes every file of box: all are preserved first (a failure
// unpreserves those done and leaves the box as it was), then each is
// detached and its struct file dropped, which cannot fail.
func (s *sealLifecycle) Seal(box *Box) error {
	var done []preserve.Preserved
	var which []*BoxFD
	for _, bfd := range box.fds {
		h := bfd.handler.Preserver
		if h == nil {
			continue
		}
		p, err := h.Preserve(bfd.file, preserve.How{})
		if err != nil {
			s.d.k.Printk(kernel.LogErr, "fdbox: seal: cannot serialize fd %q of box %q: %v", bfd.name, box.name, err)
			for _, q := range slices.Backward(done) {
				q.Unpreserve()
			}
			return err
		}
		done = append(done, p)
		which = append(which, bfd)
	}
	for i, bfd := range which {
		done[i].Detach()
		s.d.unindex(bfd)
		bfd.file.Put() // the struct file goes: the record is all that is left
		bfd.file, bfd.record = nil, done[i]
		s.records = append(s.records, done[i])
	}
	return nil
}

// Unseal rebuilds every serialized file of box: all are rebuilt first (a
// failure drops the files rebuilt so far and leaves every record as it
// was), then each record is unpreserved, leaving its folios to the new
// file.
func (s *sealLifecycle) Unseal(box *Box) error {
	var files []*kernel.File
	var which []*BoxFD
	for _, bfd := range box.fds {
		if bfd.record == nil {
			continue
		}
		f, err := bfd.record.Rebuild()
		if err != nil {
			s.d.k.Printk(kernel.LogErr, "fdbox: unseal: cannot rebuild fd %q of box %q: %v", bfd.name, box.name, err)
			for _, g := range files {
				g.Put()
			}
			return errno.Of(err)
		}
		files = append(files, f)
		which = append(which, bfd)
	}
	for i, bfd := range which {
		rec := bfd.record
		rec.Unpreserve()
		s.records = slices.DeleteFunc(s.records, func(r preserve.Preserved) bool { return r == rec })
		bfd.file, bfd.record = files[i], nil
		s.d.index(bfd)
	}
	return nil
}
