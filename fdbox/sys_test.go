package fdbox

import (
	"github.com/stretchr/testify/require"

	"fmt"

	"khosim/kernel"
	"khosim/physmem"
)

// testMemory is the RAM of a test machine: the smallest a kernel boots on.
const testMemory = 128 << 20

// bootKernel cold-boots a kernel on a fresh machine for a test; the
// machine is released when the test ends.
func bootKernel(t tb) *kernel.Kernel {
	t.Helper()
	frames, err := physmem.NewFrames(testMemory)
	require.NoError(t, err)
	t.Cleanup(func() { _ = frames.Close() })
	k, err := kernel.Boot(kernel.Hardware{Frames: frames}, kernel.BootParams{BootID: 1})
	require.NoError(t, err)
	t.Cleanup(func() {
		if !k.Gone() {
			k.Poison("test over")
		}
	})
	return k
}

// sysOpen is open(2).
func sysOpen(t *kernel.Task, path string, flags int) (int, error) { return t.Open(path, flags) }

// sysIoctl is ioctl(2).
func sysIoctl(t *kernel.Task, fd int, cmd uint32, arg any) (int64, error) {
	return t.Ioctl(fd, cmd, arg)
}

// kernelInvariants is the kernel's audit (`expect invariants`).
func kernelInvariants(k *kernel.Kernel) error { return k.CheckInvariants() }

// usedFrames is the number of allocated frames of k.
func usedFrames(k *kernel.Kernel) uint64 { return k.FrameCounts().Used }

// kernelLeaks reports frames still allocated beyond the used count at
// boot.
func kernelLeaks(k *kernel.Kernel, atBoot uint64) error {
	if used := usedFrames(k); used != atBoot {
		return fmt.Errorf("%d frames used, %d at boot: %d leaked", used, atBoot, int64(used)-int64(atBoot))
	}
	return nil
}
