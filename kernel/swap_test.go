package kernel

import (
	"testing"

	"khosim/errno"
	"khosim/uapi"
)

func TestSwapDevice(t *testing.T) {
	if _, err := NewSwapDevice(9 * 4096); err != errno.EINVAL {
		t.Fatalf("9-slot swap: %v, want EINVAL (mkswap needs 10)", err)
	}
	dev, err := NewSwapDevice(1 << 20)
	must(t, err)
	frames := newFrames(t, 256<<20)
	k, err := Boot(Hardware{Frames: frames, Swap: dev}, BootParams{BootID: 1})
	must(t, err)
	if k.TotalSwapPages() != 255 { // slot 0 holds the header
		t.Fatalf("total swap %d", k.TotalSwapPages())
	}
	if err := k.swapon(dev); err != errno.EBUSY {
		t.Fatalf("second swapon: %v", err)
	}
	p := k.NewTask("p", Cred{UID: 1000})
	fd, _ := p.MemfdCreate("x", 0)
	must(t, p.Ftruncate(fd, 4*4096))
	v, _ := p.Mmap(fd, 0, 4*4096, uapi.PROT_READ|uapi.PROT_WRITE, uapi.MAP_SHARED)
	_, err = p.Store(v, 0, 4*4096, pattern(1))
	must(t, err)
	must(t, p.Madvise(v, 0, 4*4096, uapi.MADV_PAGEOUT))
	if dev.StoredSlots() != 4 || k.NrSwapPages() != 251 {
		t.Fatalf("stored %d, free %d", dev.StoredSlots(), k.NrSwapPages())
	}
	must(t, k.CheckInvariants())
	// The next kernel (kexec, reboot) gets a fresh swap map: swap is not
	// handed over, and swapon discards what the old kernel left.
	k.Poison("kexec")
	k2, err := Boot(Hardware{Frames: frames, Swap: dev}, BootParams{BootID: 2})
	must(t, err)
	defer k2.Poison("test over")
	if k2.NrSwapPages() != 255 || dev.StoredSlots() != 0 {
		t.Fatalf("after reboot: free %d stored %d", k2.NrSwapPages(), dev.StoredSlots())
	}
	must(t, k2.CheckInvariants())
}
