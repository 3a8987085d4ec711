package scenarios

import (
	"regexp"
	"strings"
	"testing"
)

// skewScn boxes a memfd under the default build (storage node shmem-v3)
// and kexecs into a kernel that reads up to shmem-v2: the file is not
// revived, and GET_FD's failure shows the node.
const skewScn = `machine memory=128MiB seed=2
boot
process vmm uid=0
vmm: ram = memfd_create("guest-ram", 0)
vmm: pwrite(ram, 0, 64KiB, rand(7))
vmm: ctl = open("/dev/fdbox/fdbox", O_RDWR)
vmm: ioctl(ctl, FDBOX_CREATE_BOX, name="vm1")
vmm: box = open("/dev/fdbox/vm1", O_RDWR)
vmm: ioctl(box, FDBOX_PUT_FD, fd=ram, name="ram")
vmm: ioctl(box, FDBOX_SEAL)
kho activate
kexec fdbox_shmem=v2
process vmm2 uid=0
vmm2: box = open("/dev/fdbox/vm1", O_RDWR)
vmm2: ioctl(box, FDBOX_UNSEAL)
vmm2: ram = ioctl(box, FDBOX_GET_FD, name="ram")
`

// TestFailureDumpTypedFDT: the handover node in a failure is printed by
// the format khosim knows — u64 little endian as numbers, kho_mem as
// address + size, flags by name — not as bytes alone; and a kernel that
// reads up to shmem-v2 refuses a shmem-v3 node by its compatible.
func TestFailureDumpTypedFDT(t *testing.T) {
	res := runSource(t, "skew.scn", skewScn, Options{})
	if res.Passed || len(res.Failures) != 1 {
		t.Fatalf("%+v", res.Failures)
	}
	msg := res.Failures[0].Message
	for _, want := range []string{
		"ioctl failed with ENOENT",
		"handover FDT node:", "/fdbox/vm1/ram {", `compatible = "fdbox,shmem-v3";`,
		"size = /* size 65536 (64 KiB) */ [00 00 01 00 00 00 00 00];",
		"pos = /* u64 0 */",
		"mem = /* 16 x kho_mem {addr, size}, 64 KiB */ [",
		"/* uptodate|dirty */ 03",
		"shmem: invalid compatible",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failure lacks %q:\n%s", want, msg)
		}
	}
	if !regexp.MustCompile(`/\* 0x[0-9a-f]+ \+4 KiB \*/ `).MatchString(msg) {
		t.Errorf("no kho_mem entry as address + size:\n%s", msg)
	}
}
