package hostnet

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Link is one network interface of the host.
type Link struct {
	Name       string
	Index      int
	Kind       string // "bridge", "veth", "tun", … ("" for a plain device)
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
	}
	var all []raw
	byIndex := map[int]int{}
	for i := range msgs {
		if msgs[i].Header.Type != unix.RTM_NEWLINK {
			continue
		}
		l, master, err := parseLink(&msgs[i])
		if err != nil {
			return nil, err
		}
		byIndex[l.Index] = len(all)
		all = append(all, raw{Link: l, master: master})
	}
	out := make([]Link, len(all))
	for i, r := range all {
		out[i] = r.Link
		if j, ok := byIndex[r.master]; ok && r.master != 0 {
			out[i].Master, out[i].MasterKind = all[j].Name, all[j].Kind
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

// LinkByName returns the interface called name, and false when there is
// none, asking the kernel for that one interface (and its master) rather
// than listing them all.
func LinkByName(name string) (Link, bool, error) {
	l, master, err := getLink(name, 0)
	if errors.Is(err, unix.ENODEV) {
		return Link{}, false, nil
	}
	if err != nil {
		return Link{}, false, err
	}
	if master != 0 {
		m, _, err := getLink("", master)
		if err != nil {
			return Link{}, false, err
		}
		l.Master, l.MasterKind = m.Name, m.Kind
	}
	return l, true, nil
}

// getLink asks for one link by name or index (RTM_GETLINK) and returns
// it and its master's index.
func getLink(name string, index int) (Link, int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return Link{}, 0, fmt.Errorf("hostnet: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	attrLen := 0
	if name != "" {
		attrLen = unix.SizeofRtAttr + len(name) + 1
	}
	size := unix.SizeofNlMsghdr + unix.SizeofIfInfomsg + rtaAlign(attrLen)
	b := make([]byte, size)
	*(*unix.NlMsghdr)(unsafe.Pointer(&b[0])) = unix.NlMsghdr{Len: uint32(size), Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST, Seq: seq}
	*(*unix.IfInfomsg)(unsafe.Pointer(&b[unix.SizeofNlMsghdr])) = unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index)}
	if name != "" {
		at := b[unix.SizeofNlMsghdr+unix.SizeofIfInfomsg:]
		*(*uint16)(unsafe.Pointer(&at[0])) = uint16(attrLen)
		*(*uint16)(unsafe.Pointer(&at[2])) = unix.IFLA_IFNAME
		copy(at[unix.SizeofRtAttr:], name)
	}
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Link{}, 0, fmt.Errorf("hostnet: link request: %w", err)
	}
	buf := make([]byte, 16384)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return Link{}, 0, fmt.Errorf("hostnet: link answer: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return Link{}, 0, fmt.Errorf("hostnet: link answer: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if code := int32(*(*uint32)(unsafe.Pointer(&m.Data[0]))); code != 0 {
					return Link{}, 0, unix.Errno(-code)
				}
			}
		case unix.RTM_NEWLINK:
			return parseLink(&m)
		}
	}
	return Link{}, 0, errors.New("hostnet: no link in the answer")
}

// parseLink reads one RTM_NEWLINK message.
func parseLink(m *syscall.NetlinkMessage) (Link, int, error) {
	if len(m.Data) < unix.SizeofIfInfomsg {
		return Link{}, 0, errors.New("hostnet: short link message")
	}
	info := (*unix.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
	attrs, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return Link{}, 0, fmt.Errorf("hostnet: link attributes: %w", err)
	}
	l := Link{Index: int(info.Index)}
	var master int
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFLA_IFNAME:
			l.Name = cString(a.Value)
		case unix.IFLA_MASTER:
			if len(a.Value) >= 4 {
				master = int(*(*uint32)(unsafe.Pointer(&a.Value[0])))
			}
		case unix.IFLA_LINKINFO:
			l.Kind = linkKind(a.Value)
		}
	}
	return l, master, nil
}
