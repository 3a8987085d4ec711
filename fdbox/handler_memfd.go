package fdbox

import "khosim/kernel"

// MemfdCompatible is the compatible of a memfd's fd node (the RFC's
// memfd_fdbox_compatible in mm/memfd.c, patch 5/5).
const MemfdCompatible = "fdbox,memfd-v1"

// MemfdHandler returns the handler that makes memfds preservable: the RFC's
// memfd_setup_file() gives every memfd f_fdbox_op = &memfd_fdbox_fops, and
// memfd_fdbox_init() (a late_initcall) registers memfd_fdbox_kho_recover
// with fdbox_register_handler(). Here the kind is recognised from the
// file's operations (kernel.IsMemfd), and only memfds are preservable: not
// tmpfs files, not /dev/null, not FDBox's own devices.
//
// KHOWrite and Recover are left nil: they belong to the KHO code
// (memfd_fdbox_kho_write / memfd_fdbox_kho_recover over shmem), which fills
// them in before passing the handler to Driver.RegisterHandler at late
// initcall. With them nil, memfds can be boxed, sealed and taken back, but
// are not handed over by kexec.
func MemfdHandler() *FileHandler {
	return &FileHandler{Compatible: MemfdCompatible, CanPreserve: kernel.IsMemfd}
}
