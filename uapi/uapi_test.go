package uapi

import "testing"

// The FDBox ioctls are _IO('.', n) as the RFC's include/uapi/linux/fdbox.h
// defines them.
func TestFdboxIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uint32
		nr   uint32
	}{
		{"FDBOX_CREATE_BOX", FDBOX_CREATE_BOX, 0}, {"FDBOX_DELETE_BOX", FDBOX_DELETE_BOX, 1},
		{"FDBOX_PUT_FD", FDBOX_PUT_FD, 2}, {"FDBOX_GET_FD", FDBOX_GET_FD, 3},
		{"FDBOX_SEAL", FDBOX_SEAL, 4}, {"FDBOX_UNSEAL", FDBOX_UNSEAL, 5}, {"FDBOX_LIST", FDBOX_LIST, 6},
	} {
		if want := uint32('.')<<8 | tc.nr; tc.got != want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, want)
		}
		if Constants()[tc.name] != uint64(tc.got) {
			t.Errorf("Constants()[%s] = %#x", tc.name, Constants()[tc.name])
		}
	}
}

func TestSetName(t *testing.T) {
	var buf [FDBOX_NAME_LEN]byte
	if !SetName(&buf, "vm1") || string(buf[:4]) != "vm1\x00" {
		t.Fatalf("SetName(vm1) = %q", buf[:4])
	}
	full := make([]byte, FDBOX_NAME_LEN)
	for i := range full {
		full[i] = 'a'
	}
	if SetName(&buf, string(full)) {
		t.Fatal("a 256-byte name fits with no room for its NUL")
	}
	if buf[FDBOX_NAME_LEN-1] != 'a' {
		t.Fatal("an unterminated name must fill the buffer, as a user could pass it")
	}
	if !SetName(&buf, string(full[:FDBOX_NAME_LEN-1])) || buf[FDBOX_NAME_LEN-1] != 0 {
		t.Fatal("a 255-byte name fits with its NUL")
	}
}

// The LUO ioctls are _IO(0xBA, nr) as include/uapi/linux/liveupdate.h
// defines them: 0x00-0x01 on /dev/liveupdate, 0x40-0x42 on a session.
func TestLiveupdateIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uint32
		nr   uint32
	}{
		{"LIVEUPDATE_IOCTL_CREATE_SESSION", LIVEUPDATE_IOCTL_CREATE_SESSION, 0x00},
		{"LIVEUPDATE_IOCTL_RETRIEVE_SESSION", LIVEUPDATE_IOCTL_RETRIEVE_SESSION, 0x01},
		{"LIVEUPDATE_SESSION_PRESERVE_FD", LIVEUPDATE_SESSION_PRESERVE_FD, 0x40},
		{"LIVEUPDATE_SESSION_RETRIEVE_FD", LIVEUPDATE_SESSION_RETRIEVE_FD, 0x41},
		{"LIVEUPDATE_SESSION_FINISH", LIVEUPDATE_SESSION_FINISH, 0x42},
	} {
		if want := uint32(0xBA)<<8 | tc.nr; tc.got != want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, want)
		}
		if Constants()[tc.name] != uint64(tc.got) {
			t.Errorf("Constants()[%s] = %#x", tc.name, Constants()[tc.name])
		}
	}
}

func TestSetSessionName(t *testing.T) {
	var buf [LIVEUPDATE_SESSION_NAME_LENGTH]byte
	full := make([]byte, LIVEUPDATE_SESSION_NAME_LENGTH)
	for i := range full {
		full[i] = 'X'
	}
	if SetSessionName(&buf, string(full)) || buf[LIVEUPDATE_SESSION_NAME_LENGTH-1] != 'X' {
		t.Fatal("a 64-byte name has no room for its NUL and must fill the buffer unterminated")
	}
	if !SetSessionName(&buf, string(full[:63])) || buf[63] != 0 {
		t.Fatal("a 63-byte name fits with its NUL")
	}
}
