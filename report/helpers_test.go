package report

import (
	"testing"

	"github.com/stretchr/testify/require"

	"khosim/kbuild"
	"khosim/kernel"
	"khosim/machine"
	"khosim/physmem"
	"khosim/uapi"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// pattern is a data source whose bytes depend on the offset only.
func pattern(seed byte) kernel.DataSource {
	return func(dst []byte, off int64) {
		for i := range dst {
			dst[i] = byte(off+int64(i)) ^ seed
		}
	}
}

// liveUpdate drives a machine through an FDBox live update of a memfd
// whose folios sit in KHO scratch, as a scenario would: fill normal
// memory, write the memfd (into scratch), box and seal it, free the
// filler, then (through the steps the caller records) activate, kexec
// and restore the file. step is called with each statement's text after
// it ran.
func liveUpdate(t *testing.T, m *machine.Machine, step func(line int, text string, err error)) {
	t.Helper()
	k := m.Kernel()
	p := k.NewTask("vmm", kernel.Cred{UID: 0, Caps: uapi.CapAll})
	do := func(line int, text string, err error) {
		t.Helper()
		require.NoError(t, err, text)
		if step != nil {
			step(line, text, err)
		}
	}
	filler, err := p.MemfdCreate("filler", uapi.MFD_NOEXEC_SEAL)
	do(1, `vmm: filler = memfd_create("filler", 0)`, err)
	free := int64(k.MM.Zone.NrFreePagesOf(physmem.MigrateMovable)) * physmem.PageSize
	_, err = p.Pwrite(filler, 0, free, pattern(1))
	do(2, `vmm: pwrite(filler, 0, FREE, rand(1))`, err)
	ram, err := p.MemfdCreate("guest-ram", uapi.MFD_NOEXEC_SEAL)
	do(3, `vmm: ram = memfd_create("guest-ram", 0)`, err)
	_, err = p.Pwrite(ram, 0, 2*MiB, pattern(7))
	do(4, `vmm: pwrite(ram, 0, 2MiB, rand(7))`, err)
	do(5, `vmm: close(filler)`, p.Close(filler))
	ctl, err := p.Open("/dev/fdbox/fdbox", uapi.O_RDWR)
	do(6, `vmm: ctl = open("/dev/fdbox/fdbox", O_RDWR)`, err)
	var cb uapi.FdboxCreateBox
	uapi.SetName(&cb.Name, "vm1")
	_, err = p.Ioctl(ctl, uapi.FDBOX_CREATE_BOX, &cb)
	do(7, `vmm: ioctl(ctl, FDBOX_CREATE_BOX, name="vm1")`, err)
	box, err := p.Open("/dev/fdbox/vm1", uapi.O_RDWR)
	do(8, `vmm: box = open("/dev/fdbox/vm1", O_RDWR)`, err)
	put := uapi.FdboxPutFD{FD: uint32(ram)}
	uapi.SetName(&put.Name, "ram")
	_, err = p.Ioctl(box, uapi.FDBOX_PUT_FD, &put)
	do(9, `vmm: ioctl(box, FDBOX_PUT_FD, fd=ram, name="ram")`, err)
	_, err = p.Ioctl(box, uapi.FDBOX_SEAL, nil)
	do(10, `vmm: ioctl(box, FDBOX_SEAL)`, err)
	do(11, "kho activate", m.KHOActivate())
	do(12, "kexec", m.Kexec(m.Build()))

	k = m.Kernel()
	p = k.NewTask("vmm2", kernel.Cred{UID: 0, Caps: uapi.CapAll})
	box, err = p.Open("/dev/fdbox/vm1", uapi.O_RDWR)
	do(14, `vmm2: box = open("/dev/fdbox/vm1", O_RDWR)`, err)
	_, err = p.Ioctl(box, uapi.FDBOX_UNSEAL, nil)
	do(15, `vmm2: ioctl(box, FDBOX_UNSEAL)`, err)
	var get uapi.FdboxGetFD
	uapi.SetName(&get.Name, "ram")
	_, err = p.Ioctl(box, uapi.FDBOX_GET_FD, &get)
	do(16, `vmm2: ram = ioctl(box, FDBOX_GET_FD, name="ram")`, err)
	require.NoError(t, m.CheckInvariants())
}

// newMachine boots a 128 MiB machine with 16 MiB of scratch.
func newMachine(t *testing.T) *machine.Machine {
	t.Helper()
	m, err := machine.New(machine.Config{Memory: 128 * MiB, ScratchBytes: 16 * MiB, Seed: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, m.Boot(kbuild.Default()))
	return m
}
