package hostnet

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Link is one network interface of the host.
type Link struct {
	Name       string
	Index      int
	Master     string // the interface this one is a port of ("" if none)
	MasterKind string // its kind: "bridge", "bond", "team", "vrf", …
}

// Links returns every interface of the host's network namespace.
func Links() ([]Link, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("hostnet: list links: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("hostnet: list links: %w", err)
	}
	type raw struct {
		Link
		master int
		kind   string
	}
	var all []raw
	byIndex := map[int]int{}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		info := (*unix.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return nil, fmt.Errorf("hostnet: link attributes: %w", err)
		}
		r := raw{Link: Link{Index: int(info.Index)}}
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				r.Name = cString(a.Value)
			case unix.IFLA_MASTER:
				if len(a.Value) >= 4 {
					r.master = int(*(*uint32)(unsafe.Pointer(&a.Value[0])))
				}
			case unix.IFLA_LINKINFO:
				r.kind = linkKind(a.Value)
			}
		}
		byIndex[r.Index] = len(all)
		all = append(all, r)
	}
	out := make([]Link, len(all))
	for i, r := range all {
		out[i] = r.Link
		if j, ok := byIndex[r.master]; ok && r.master != 0 {
			out[i].Master, out[i].MasterKind = all[j].Name, all[j].kind
		}
	}
	return out, nil
}

// linkKind reads IFLA_INFO_KIND from a nested IFLA_LINKINFO.
func linkKind(b []byte) string {
	for len(b) >= unix.SizeofRtAttr {
		l := int(*(*uint16)(unsafe.Pointer(&b[0])))
		t := *(*uint16)(unsafe.Pointer(&b[2]))
		if l < unix.SizeofRtAttr || l > len(b) {
			return ""
		}
		if t == unix.IFLA_INFO_KIND {
			return cString(b[unix.SizeofRtAttr:l])
		}
		b = b[min(rtaAlign(l), len(b)):]
	}
	return ""
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
