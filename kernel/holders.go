package kernel

import "fmt"

// FileHolders names who holds references to f other than a driver: each
// fd that points at it (fd N of process NAME[PID]) and each mapping of it
// (the mapping at ADDR of process NAME[PID]), in task then fd or address
// order. It is for messages that explain a refused operation (FDBox's
// SEAL: "the file is referenced outside the box"); Linux has no such
// call — /proc/PID/fd and /proc/PID/maps are where a user would look.
func (k *Kernel) FileHolders(f *File) []string {
	var out []string
	for _, t := range k.Tasks() {
		for _, fd := range t.FDs() {
			if t.fds[fd] == f {
				out = append(out, fmt.Sprintf("fd %d of process %s[%d]", fd, t.Name, t.PID))
			}
		}
		if t.MM == nil {
			continue
		}
		for _, v := range t.MM.VMAs() {
			if v.File == f && !v.unmapped {
				out = append(out, fmt.Sprintf("the mapping at %#x (%d bytes) of process %s[%d]", v.Start, v.Len, t.Name, t.PID))
			}
		}
	}
	return out
}
