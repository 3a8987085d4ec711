package fdbox

import (
	"github.com/stretchr/testify/require"

	"strings"
	"testing"

	"khosim/errno"
	"khosim/uapi"
)

// TestErrnos checks every errno the UAPI returns, one case per rule. Each
// case runs on a fresh kernel; after it the driver's and the kernel's
// invariants must hold.
func TestErrnos(t *testing.T) {
	unterminated := func() [uapi.FDBOX_NAME_LEN]byte {
		var b [uapi.FDBOX_NAME_LEN]byte
		require.False(t, uapi.SetName(&b, strings.Repeat("x", uapi.FDBOX_NAME_LEN)))
		return b
	}()
	cases := []struct {
		name string
		run  func(e *env) error
		want errno.Errno
	}{
		// Permissions.
		{"open_ctl_by_non_root_is_EACCES", func(e *env) error {
			_, err := sysOpen(e.task("user", 1000, 0), CtlPath, uapi.O_RDWR)
			return err
		}, errno.EACCES},
		{"open_ctl_read_only_by_non_root_is_EACCES", func(e *env) error {
			_, err := sysOpen(e.task("user", 1000, 0), CtlPath, uapi.O_RDONLY)
			return err
		}, errno.EACCES},
		{"open_box_by_non_root_is_EACCES", func(e *env) error {
			e.mkbox("b")
			_, err := sysOpen(e.task("user", 1000, 0), DevDir+"b", uapi.O_RDWR)
			return err
		}, errno.EACCES},
		{"ctl_ioctl_without_CAP_SYS_ADMIN_is_EPERM", func(e *env) error {
			u := e.task("nocap", 0, 0) // owner of the node, no capabilities
			return e.create(u, e.open(u, CtlPath), "b")
		}, errno.EPERM},
		{"delete_without_CAP_SYS_ADMIN_is_EPERM", func(e *env) error {
			e.mkbox("b")
			u := e.task("nocap", 0, uapi.CapAll&^(1<<uapi.CAP_SYS_ADMIN))
			return e.del(u, e.open(u, CtlPath), "b")
		}, errno.EPERM},
		{"box_ioctl_without_CAP_SYS_ADMIN_is_EPERM", func(e *env) error {
			e.mkbox("b")
			u := e.task("nocap", 0, 0)
			return e.seal(u, e.open(u, DevDir+"b"))
		}, errno.EPERM},
		{"unknown_ioctl_without_CAP_SYS_ADMIN_is_EPERM", func(e *env) error {
			e.mkbox("b")
			u := e.task("nocap", 0, 0)
			_, err := sysIoctl(u, e.open(u, DevDir+"b"), 0x2e7f, nil)
			return err
		}, errno.EPERM},

		// Flags.
		{"create_nonzero_flags_is_EINVAL", func(e *env) error {
			_, err := sysIoctl(e.root, e.ctl, uapi.FDBOX_CREATE_BOX, &uapi.FdboxCreateBox{Flags: 1, Name: name("b")})
			return err
		}, errno.EINVAL},
		{"delete_nonzero_flags_is_EINVAL", func(e *env) error {
			e.mkbox("b")
			_, err := sysIoctl(e.root, e.ctl, uapi.FDBOX_DELETE_BOX, &uapi.FdboxDeleteBox{Flags: 2, Name: name("b")})
			return err
		}, errno.EINVAL},
		{"put_nonzero_flags_is_EINVAL", func(e *env) error {
			b := e.mkbox("b")
			fd := e.memfd(e.root)
			_, err := sysIoctl(e.root, b, uapi.FDBOX_PUT_FD, &uapi.FdboxPutFD{Flags: 1, FD: uint32(fd), Name: name("f")})
			return err
		}, errno.EINVAL},
		{"get_nonzero_flags_is_EINVAL", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.put(e.root, b, e.memfd(e.root), "f"))
			_, err := sysIoctl(e.root, b, uapi.FDBOX_GET_FD, &uapi.FdboxGetFD{Flags: 1 << 63, Name: name("f")})
			return err
		}, errno.EINVAL},

		// Names.
		{"create_empty_name_is_EINVAL", func(e *env) error { return e.create(e.root, e.ctl, "") }, errno.EINVAL},
		{"create_name_with_slash_is_EINVAL", func(e *env) error { return e.create(e.root, e.ctl, "a/b") }, errno.EINVAL},
		{"create_name_dotdot_is_EINVAL", func(e *env) error { return e.create(e.root, e.ctl, "..") }, errno.EINVAL},
		{"create_name_not_NUL_terminated_is_EINVAL", func(e *env) error {
			_, err := sysIoctl(e.root, e.ctl, uapi.FDBOX_CREATE_BOX, &uapi.FdboxCreateBox{Name: unterminated})
			return err
		}, errno.EINVAL},
		{"create_name_of_255_bytes_is_fine", func(e *env) error {
			return e.create(e.root, e.ctl, strings.Repeat("x", uapi.FDBOX_NAME_LEN-1))
		}, 0},
		{"delete_name_not_NUL_terminated_is_EINVAL", func(e *env) error {
			_, err := sysIoctl(e.root, e.ctl, uapi.FDBOX_DELETE_BOX, &uapi.FdboxDeleteBox{Name: unterminated})
			return err
		}, errno.EINVAL},
		{"put_empty_name_is_EINVAL", func(e *env) error {
			return e.put(e.root, e.mkbox("b"), e.memfd(e.root), "")
		}, errno.EINVAL},
		{"put_name_with_slash_is_EINVAL", func(e *env) error {
			return e.put(e.root, e.mkbox("b"), e.memfd(e.root), "x/y")
		}, errno.EINVAL},
		{"put_name_not_NUL_terminated_is_EINVAL", func(e *env) error {
			fd := e.memfd(e.root)
			_, err := sysIoctl(e.root, e.mkbox("b"), uapi.FDBOX_PUT_FD, &uapi.FdboxPutFD{FD: uint32(fd), Name: unterminated})
			return err
		}, errno.EINVAL},
		{"get_name_not_NUL_terminated_is_EINVAL", func(e *env) error {
			_, err := sysIoctl(e.root, e.mkbox("b"), uapi.FDBOX_GET_FD, &uapi.FdboxGetFD{Name: unterminated})
			return err
		}, errno.EINVAL},

		// Duplicates.
		{"create_duplicate_box_is_EEXIST", func(e *env) error {
			e.mkbox("b")
			return e.create(e.root, e.ctl, "b")
		}, errno.EEXIST},
		{"create_box_named_like_the_control_node_is_EEXIST", func(e *env) error {
			return e.create(e.root, e.ctl, "fdbox")
		}, errno.EEXIST},
		{"put_duplicate_fd_name_is_EEXIST", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.put(e.root, b, e.memfd(e.root), "f"))
			return e.put(e.root, b, e.memfd(e.root), "f")
		}, errno.EEXIST},
		{"same_fd_name_in_two_boxes_is_fine", func(e *env) error {
			require.NoError(e.t, e.put(e.root, e.mkbox("a"), e.memfd(e.root), "f"))
			return e.put(e.root, e.mkbox("b"), e.memfd(e.root), "f")
		}, 0},

		// Missing things.
		{"delete_missing_box_is_ENOENT", func(e *env) error { return e.del(e.root, e.ctl, "nope") }, errno.ENOENT},
		{"open_missing_box_is_ENOENT", func(e *env) error {
			_, err := sysOpen(e.root, DevDir+"nope", uapi.O_RDWR)
			return err
		}, errno.ENOENT},
		{"open_deleted_box_is_ENOENT", func(e *env) error {
			e.mkbox("b")
			require.NoError(e.t, e.del(e.root, e.ctl, "b"))
			_, err := sysOpen(e.root, DevDir+"b", uapi.O_RDWR)
			return err
		}, errno.ENOENT},
		{"get_missing_name_is_ENOENT", func(e *env) error {
			_, err := e.get(e.root, e.mkbox("b"), "nope")
			return err
		}, errno.ENOENT},
		{"get_twice_is_ENOENT", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.put(e.root, b, e.memfd(e.root), "f"))
			_, err := e.get(e.root, b, "f")
			require.NoError(e.t, err)
			_, err = e.get(e.root, b, "f")
			return err
		}, errno.ENOENT},

		// Sealed boxes.
		{"put_into_sealed_box_is_EBUSY", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.seal(e.root, b))
			return e.put(e.root, b, e.memfd(e.root), "f")
		}, errno.EBUSY},
		{"get_from_sealed_box_is_EBUSY", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.put(e.root, b, e.memfd(e.root), "f"))
			require.NoError(e.t, e.seal(e.root, b))
			_, err := e.get(e.root, b, "f")
			return err
		}, errno.EBUSY},
		{"seal_sealed_box_is_EBUSY", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.seal(e.root, b))
			return e.seal(e.root, b)
		}, errno.EBUSY},
		{"unseal_unsealed_box_is_EBUSY", func(e *env) error { return e.unseal(e.root, e.mkbox("b")) }, errno.EBUSY},
		{"delete_sealed_box_is_EBUSY", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.put(e.root, b, e.memfd(e.root), "f"))
			require.NoError(e.t, e.seal(e.root, b))
			return e.del(e.root, e.ctl, "b")
		}, errno.EBUSY},
		{"seal_empty_box_is_fine", func(e *env) error { return e.seal(e.root, e.mkbox("b")) }, 0},
		{"list_of_sealed_box_is_fine", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.seal(e.root, b))
			_, _, err := e.list(e.root, b)
			return err
		}, 0},

		// Preservable kinds.
		{"put_memfd_is_fine", func(e *env) error {
			return e.put(e.root, e.mkbox("b"), e.memfd(e.root), "f")
		}, 0},
		{"put_tmpfs_file_is_EOPNOTSUPP", func(e *env) error {
			return e.put(e.root, e.mkbox("b"), e.tmpfile(e.root, "t"), "f")
		}, errno.EOPNOTSUPP},
		{"put_dev_null_is_EOPNOTSUPP", func(e *env) error {
			return e.put(e.root, e.mkbox("b"), e.open(e.root, "/dev/null"), "f")
		}, errno.EOPNOTSUPP},
		{"put_synthetic_unpreserved_kind_is_EOPNOTSUPP", func(e *env) error {
			return e.put(e.root, e.mkbox("b"), e.newFile(e.root, plainKind), "f")
		}, errno.EOPNOTSUPP},
		{"put_control_device_is_EOPNOTSUPP", func(e *env) error {
			return e.put(e.root, e.mkbox("b"), e.ctl, "f")
		}, errno.EOPNOTSUPP},
		{"put_box_device_into_itself_is_EOPNOTSUPP", func(e *env) error {
			b := e.mkbox("b")
			return e.put(e.root, b, b, "f")
		}, errno.EOPNOTSUPP},
		{"put_box_device_into_another_box_is_EOPNOTSUPP", func(e *env) error {
			a := e.mkbox("a")
			return e.put(e.root, e.mkbox("b"), a, "f")
		}, errno.EOPNOTSUPP},

		// Bad fds.
		{"put_closed_fd_is_EBADF", func(e *env) error { return e.put(e.root, e.mkbox("b"), 99, "f") }, errno.EBADF},
		{"put_huge_fd_is_EBADF", func(e *env) error { return e.put(e.root, e.mkbox("b"), 1<<31, "f") }, errno.EBADF},
		{"ioctl_on_bad_fd_is_EBADF", func(e *env) error { return e.seal(e.root, 77) }, errno.EBADF},

		// Unknown commands.
		{"unknown_box_ioctl_is_ENOTTY", func(e *env) error {
			_, err := sysIoctl(e.root, e.mkbox("b"), 0x2e7f, nil)
			return err
		}, errno.ENOTTY},
		{"unknown_ctl_ioctl_is_ENOTTY", func(e *env) error {
			_, err := sysIoctl(e.root, e.ctl, 0x2e7f, nil)
			return err
		}, errno.ENOTTY},
		{"box_ioctl_on_ctl_is_ENOTTY", func(e *env) error { return e.seal(e.root, e.ctl) }, errno.ENOTTY},
		{"create_on_box_is_ENOTTY", func(e *env) error { return e.create(e.root, e.mkbox("b"), "c") }, errno.ENOTTY},

		// Bad arguments (copy_from_user failures).
		{"create_nil_arg_is_EFAULT", func(e *env) error {
			_, err := sysIoctl(e.root, e.ctl, uapi.FDBOX_CREATE_BOX, nil)
			return err
		}, errno.EFAULT},
		{"create_nil_struct_is_EFAULT", func(e *env) error {
			_, err := sysIoctl(e.root, e.ctl, uapi.FDBOX_CREATE_BOX, (*uapi.FdboxCreateBox)(nil))
			return err
		}, errno.EFAULT},
		{"delete_with_create_struct_is_EFAULT", func(e *env) error {
			e.mkbox("b")
			_, err := sysIoctl(e.root, e.ctl, uapi.FDBOX_DELETE_BOX, &uapi.FdboxCreateBox{Name: name("b")})
			return err
		}, errno.EFAULT},
		{"put_wrong_struct_is_EFAULT", func(e *env) error {
			_, err := sysIoctl(e.root, e.mkbox("b"), uapi.FDBOX_PUT_FD, &uapi.FdboxGetFD{Name: name("f")})
			return err
		}, errno.EFAULT},
		{"get_nil_arg_is_EFAULT", func(e *env) error {
			_, err := sysIoctl(e.root, e.mkbox("b"), uapi.FDBOX_GET_FD, nil)
			return err
		}, errno.EFAULT},
		{"list_wrong_struct_is_EFAULT", func(e *env) error {
			_, err := sysIoctl(e.root, e.mkbox("b"), uapi.FDBOX_LIST, &uapi.FdboxGetFD{})
			return err
		}, errno.EFAULT},
		{"list_nil_arg_counts", func(e *env) error {
			_, err := sysIoctl(e.root, e.mkbox("b"), uapi.FDBOX_LIST, nil)
			return err
		}, 0},

		// Full fd table.
		{"get_with_full_fd_table_is_EMFILE", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.put(e.root, b, e.memfd(e.root), "f"))
			e.root.NoFile = len(e.root.FDs())
			_, err := e.get(e.root, b, "f")
			require.Equal(e.t, []string{"f"}, e.names(b), "the file stays in the box")
			return err
		}, errno.EMFILE},

		// Deleted boxes (one lifetime: the node goes, open files stay).
		{"ioctl_on_open_deleted_box_is_ENODEV", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.del(e.root, e.ctl, "b"))
			return e.seal(e.root, b)
		}, errno.ENODEV},
		{"put_into_open_deleted_box_is_ENODEV", func(e *env) error {
			b := e.mkbox("b")
			require.NoError(e.t, e.del(e.root, e.ctl, "b"))
			return e.put(e.root, b, e.memfd(e.root), "f")
		}, errno.ENODEV},
		{"open_deleted_box_of_recreated_name_is_ENODEV", func(e *env) error {
			old := e.mkbox("b")
			require.NoError(e.t, e.del(e.root, e.ctl, "b"))
			e.mkbox("b")
			_, _, err := e.list(e.root, old)
			return err
		}, errno.ENODEV},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			err := c.run(e)
			if c.want == 0 {
				require.NoError(t, err)
			} else {
				require.Equal(t, c.want, errno.Of(err), "got %v", err)
			}
			e.check()
		})
	}
}
