package errno

import (
	"errors"
	"fmt"
	"testing"
)

func TestNamesAndNumbers(t *testing.T) {
	for _, tc := range []struct {
		e    Errno
		name string
		num  int32
	}{
		{EPERM, "EPERM", 1}, {ENOENT, "ENOENT", 2}, {EIO, "EIO", 5},
		{EBADF, "EBADF", 9}, {ENOMEM, "ENOMEM", 12}, {EACCES, "EACCES", 13},
		{EBUSY, "EBUSY", 16}, {EEXIST, "EEXIST", 17}, {EINVAL, "EINVAL", 22},
		{EMFILE, "EMFILE", 24}, {ENOTTY, "ENOTTY", 25}, {EFBIG, "EFBIG", 27},
		{ENOSPC, "ENOSPC", 28}, {ESPIPE, "ESPIPE", 29}, {EOPNOTSUPP, "EOPNOTSUPP", 95},
	} {
		if tc.e.Error() != tc.name || int32(tc.e) != tc.num {
			t.Errorf("%d: got %s/%d, want %s/%d", tc.num, tc.e, int32(tc.e), tc.name, tc.num)
		}
		if got, ok := Lookup(tc.name); !ok || got != tc.e {
			t.Errorf("Lookup(%q) = %v, %v", tc.name, got, ok)
		}
	}
	if Errno(4000).Error() != "errno 4000" {
		t.Errorf("unknown errno prints %q", Errno(4000).Error())
	}
	if e, _ := Lookup("ENOTSUP"); e != EOPNOTSUPP {
		t.Errorf("ENOTSUP = %v", e)
	}
}

func TestOf(t *testing.T) {
	wrapped := fmt.Errorf("box %q: %w", "vm1", EBUSY)
	if Of(wrapped) != EBUSY || !errors.Is(wrapped, EBUSY) {
		t.Fatalf("Of(wrapped) = %v", Of(wrapped))
	}
	if Of(nil) != 0 {
		t.Fatal("Of(nil) != 0")
	}
	if Of(errors.New("plain")) != EIO {
		t.Fatal("plain error should map to EIO")
	}
}
