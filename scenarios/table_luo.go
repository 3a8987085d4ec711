package scenarios

import (
	"strings"

	"khosim/scenarios/scn"
	"khosim/uapi"
)

// The LUO front-end's part of the language's table: the ioctls of
// /dev/liveupdate and of its session files. A front-end's calls are a file
// of their own that adds its entries at init.

func init() {
	ioctlCommands = append(ioctlCommands, luoCommands...)
	for _, s := range syscalls {
		if s.Name == "ioctl" {
			s.Keys = append(s.Keys, optional(kToken))
		}
	}
}

// luoCommands are the ioctls of /dev/liveupdate and of its session files
// (include/uapi/linux/liveupdate.h), with the keys of the contract's LUO
// table. Every structure carries its size, as user space fills it.
var luoCommands = []*ioctlCommand{
	{
		Command: scn.Command{Name: "LIVEUPDATE_IOCTL_CREATE_SESSION", Value: uint64(uapi.LIVEUPDATE_IOCTL_CREATE_SESSION), Keys: []scn.Param{kName}, Result: scn.KindFD},
		arg: func(c *callEnv) any {
			a := &uapi.LiveupdateIoctlCreateSession{Size: uapi.SizeofLiveupdateIoctlCreateSession}
			uapi.SetSessionName(&a.Name, c.key("name").s)
			return a
		},
		out:     true,
		ret:     func(arg any) int64 { return int64(arg.(*uapi.LiveupdateIoctlCreateSession).FD) },
		explain: luoExplain,
	},
	{
		Command: scn.Command{Name: "LIVEUPDATE_IOCTL_RETRIEVE_SESSION", Value: uint64(uapi.LIVEUPDATE_IOCTL_RETRIEVE_SESSION), Keys: []scn.Param{kName}, Result: scn.KindFD},
		arg: func(c *callEnv) any {
			a := &uapi.LiveupdateIoctlRetrieveSession{Size: uapi.SizeofLiveupdateIoctlRetrieveSession}
			uapi.SetSessionName(&a.Name, c.key("name").s)
			return a
		},
		out:     true,
		ret:     func(arg any) int64 { return int64(arg.(*uapi.LiveupdateIoctlRetrieveSession).FD) },
		explain: luoExplain,
	},
	{
		Command: scn.Command{Name: "LIVEUPDATE_SESSION_PRESERVE_FD", Value: uint64(uapi.LIVEUPDATE_SESSION_PRESERVE_FD), Keys: []scn.Param{kFD, kToken}, Result: scn.KindInt},
		arg: func(c *callEnv) any {
			return &uapi.LiveupdateSessionPreserveFD{Size: uapi.SizeofLiveupdateSessionPreserveFD, FD: int32(c.key("fd").fd), Token: c.key("token").n}
		},
		out:     true,
		explain: luoExplain,
	},
	{
		Command: scn.Command{Name: "LIVEUPDATE_SESSION_RETRIEVE_FD", Value: uint64(uapi.LIVEUPDATE_SESSION_RETRIEVE_FD), Keys: []scn.Param{kToken}, Result: scn.KindFD},
		arg: func(c *callEnv) any {
			return &uapi.LiveupdateSessionRetrieveFD{Size: uapi.SizeofLiveupdateSessionRetrieveFD, Token: c.key("token").n}
		},
		out:     true,
		ret:     func(arg any) int64 { return int64(arg.(*uapi.LiveupdateSessionRetrieveFD).FD) },
		explain: luoExplain,
	},
	{
		Command: scn.Command{Name: "LIVEUPDATE_SESSION_FINISH", Value: uint64(uapi.LIVEUPDATE_SESSION_FINISH), Result: scn.KindInt},
		arg: func(c *callEnv) any {
			return &uapi.LiveupdateSessionFinish{Size: uapi.SizeofLiveupdateSessionFinish}
		},
		out:     true,
		explain: luoExplain,
	},
}

// luoExplain is the state behind a failed LUO ioctl: the running
// kernel's sessions, built only when the statement fails.
func luoExplain(c *callEnv, callErr error) []string {
	l := c.r.m.LUO()
	if l == nil {
		return []string{"no LUO in this kernel"}
	}
	return append([]string{"LUO:"}, strings.Split(strings.TrimRight(l.Dump(), "\n"), "\n")...)
}
