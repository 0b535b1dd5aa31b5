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

// Links returns every interface of the host's network namespace. The
// kernel is asked to leave out the interfaces' statistics, which are most
// of a dump's bytes and of the kernel's time filling it (IPv6's alone are
// ~600 bytes a link), and the dump is read and parsed a chunk at a time.
func Links() ([]Link, error) {
	fd, err := linkRequest(unix.NLM_F_REQUEST|unix.NLM_F_DUMP, "", 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	type raw struct {
		Link
		master int
	}
	var all []raw
	byIndex := map[int]int{}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("hostnet: list links: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("hostnet: list links: %w", err)
		}
		for i := range msgs {
			switch msgs[i].Header.Type {
			case unix.NLMSG_DONE:
				out := make([]Link, len(all))
				for i, r := range all {
					out[i] = r.Link
					if j, ok := byIndex[r.master]; ok && r.master != 0 {
						out[i].Master, out[i].MasterKind = all[j].Name, all[j].Kind
					}
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if err := netlinkError(&msgs[i]); err != nil {
					return nil, fmt.Errorf("hostnet: list links: %w", err)
				}
			case unix.RTM_NEWLINK:
				l, master, err := parseLink(&msgs[i])
				if err != nil {
					return nil, err
				}
				byIndex[l.Index] = len(all)
				all = append(all, raw{Link: l, master: master})
			}
		}
	}
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

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS: link answers without
// IFLA_STATS, IFLA_STATS64 and IFLA_INET6_STATS (a kernel that does not
// know the bit ignores it).
const rtextFilterSkipStats = 1 << 3

// linkRequest opens a route netlink socket and sends it an RTM_GETLINK
// with flags, for the link called name or with index (neither: all of
// them, with NLM_F_DUMP), statistics left out. The caller reads the answer
// and closes the socket.
func linkRequest(flags uint16, name string, index int) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("hostnet: netlink socket: %w", err)
	}
	nameLen := 0
	if name != "" {
		nameLen = unix.SizeofRtAttr + len(name) + 1
	}
	const maskLen = unix.SizeofRtAttr + 4
	size := unix.SizeofNlMsghdr + unix.SizeofIfInfomsg + rtaAlign(nameLen) + maskLen
	b := make([]byte, size)
	*(*unix.NlMsghdr)(unsafe.Pointer(&b[0])) = unix.NlMsghdr{Len: uint32(size), Type: unix.RTM_GETLINK, Flags: flags, Seq: seq}
	*(*unix.IfInfomsg)(unsafe.Pointer(&b[unix.SizeofNlMsghdr])) = unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index)}
	at := b[unix.SizeofNlMsghdr+unix.SizeofIfInfomsg:]
	if name != "" {
		*(*uint16)(unsafe.Pointer(&at[0])) = uint16(nameLen)
		*(*uint16)(unsafe.Pointer(&at[2])) = unix.IFLA_IFNAME
		copy(at[unix.SizeofRtAttr:], name)
		at = at[rtaAlign(nameLen):]
	}
	*(*uint16)(unsafe.Pointer(&at[0])) = maskLen
	*(*uint16)(unsafe.Pointer(&at[2])) = unix.IFLA_EXT_MASK
	*(*uint32)(unsafe.Pointer(&at[unix.SizeofRtAttr])) = rtextFilterSkipStats
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("hostnet: link request: %w", err)
	}
	return fd, nil
}

// netlinkError is the error an NLMSG_ERROR message carries; nil for an
// acknowledgement.
func netlinkError(m *syscall.NetlinkMessage) error {
	if len(m.Data) >= 4 {
		if code := int32(*(*uint32)(unsafe.Pointer(&m.Data[0]))); code != 0 {
			return unix.Errno(-code)
		}
	}
	return nil
}

// getLink asks for one link by name or index (RTM_GETLINK) and returns
// it and its master's index.
func getLink(name string, index int) (Link, int, error) {
	fd, err := linkRequest(unix.NLM_F_REQUEST, name, index)
	if err != nil {
		return Link{}, 0, err
	}
	defer unix.Close(fd)
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
			if err := netlinkError(&m); err != nil {
				return Link{}, 0, err
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
	l := Link{Index: int(info.Index)}
	var master int
	eachAttr(m.Data[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) bool {
		switch typ {
		case unix.IFLA_IFNAME:
			l.Name = cString(v)
		case unix.IFLA_MASTER:
			if len(v) >= 4 {
				master = int(*(*uint32)(unsafe.Pointer(&v[0])))
			}
		case unix.IFLA_LINKINFO:
			l.Kind = linkKind(v)
		}
		return true
	})
	if l.Name == "" {
		return Link{}, 0, errors.New("hostnet: link message without a name")
	}
	return l, master, nil
}

// eachAttr calls f with the type and value of each route attribute in b,
// until f returns false or an attribute is malformed.
func eachAttr(b []byte, f func(typ uint16, value []byte) bool) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(*(*uint16)(unsafe.Pointer(&b[0])))
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		if !f(*(*uint16)(unsafe.Pointer(&b[2]))&^unix.NLA_F_NESTED, b[unix.SizeofRtAttr:l]) {
			return
		}
		b = b[min(rtaAlign(l), len(b)):]
	}
}

// linkKind reads IFLA_INFO_KIND from a nested IFLA_LINKINFO.
func linkKind(b []byte) string {
	kind := ""
	eachAttr(b, func(typ uint16, v []byte) bool {
		if typ == unix.IFLA_INFO_KIND {
			kind = cString(v)
			return false
		}
		return true
	})
	return kind
}
