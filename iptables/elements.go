package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The kernel objects of a sandbox are elements of shared sets and maps:
// adding, changing or removing a sandbox adds and removes elements, never
// rules or chains (see Kernel). An element is built from up to two
// fields; the same fields give its nft text (for `egressd rules` and
// full loads) and its netlink encoding (for deltas), so the two cannot
// drift apart.

// field is one part of an element's key: an interface name, an address
// prefix, or an nfproto value (the constant second field that makes a
// single-address interval set a concatenation, see writeSets).
type field struct {
	iface  string
	prefix netip.Prefix
	proto  byte // unix.NFPROTO_IPV4 or _IPV6
	single bool // an address of a hash set (prefix is /32 or /128), written without its length
	// A transport protocol (l4 set) or a port range (ports set).
	l4, ports bool
	l4proto   byte
	lo, hi    uint16
}

func l4Field(p byte) field          { return field{l4: true, l4proto: p} }
func portField(lo, hi uint16) field { return field{ports: true, lo: lo, hi: hi} }

func ifaceField(n string) field        { return field{iface: n} }
func prefixField(p netip.Prefix) field { return field{prefix: p.Masked()} }
func addrField(a netip.Addr) field {
	return field{prefix: netip.PrefixFrom(a, a.BitLen()), single: true}
}
func protoField(ipv6 bool) field { return field{proto: nfproto(ipv6)} }
func nfproto(ipv6 bool) byte {
	if ipv6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

// text is the field as nft reads it.
func (f field) text() string {
	switch {
	case f.l4:
		return strconv.Itoa(int(f.l4proto))
	case f.ports && f.lo == f.hi:
		return strconv.Itoa(int(f.lo))
	case f.ports:
		return strconv.Itoa(int(f.lo)) + "-" + strconv.Itoa(int(f.hi))
	case f.iface != "":
		return `"` + f.iface + `"`
	case f.single:
		return f.prefix.Addr().String()
	case f.prefix.IsValid():
		return f.prefix.String()
	case f.proto == unix.NFPROTO_IPV6:
		return "ipv6"
	}
	return "ipv4"
}

// bytes returns the field's first and last value as the kernel stores
// them in a concatenation: each field padded to 4 bytes.
func (f field) bytes() (start, end []byte) {
	switch {
	case f.l4:
		b := []byte{f.l4proto, 0, 0, 0}
		return b, b
	case f.ports: // network byte order, padded to 4
		return []byte{byte(f.lo >> 8), byte(f.lo), 0, 0}, []byte{byte(f.hi >> 8), byte(f.hi), 0, 0}
	case f.iface != "":
		b := make([]byte, unix.IFNAMSIZ)
		copy(b, f.iface)
		return b, b
	case f.prefix.IsValid():
		return f.prefix.Addr().AsSlice(), lastAddr(f.prefix).AsSlice()
	}
	b := []byte{f.proto, 0, 0, 0}
	return b, b
}

// lastAddr is the highest address inside p (masked).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// element is one element of the set (or map) named set.
type element struct {
	set     string
	si      int // setIndex(set)
	fields  []field
	verdict string // maps only: the chain to jump to
	owner   string // the sandbox it belongs to ("" for shared ones), for comments
	text    string // as written inside `elements = { … }`
}

func newElement(set, owner, verdict string, fields ...field) element {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteString(" . ")
		}
		b.WriteString(f.text())
	}
	if verdict != "" {
		b.WriteString(" : jump " + verdict)
	}
	return element{set: set, si: setIndex(set), fields: fields, verdict: verdict, owner: owner, text: b.String()}
}

// elementID identifies an element within its set and value: two equal
// ids are the same kernel object.
type elementID struct {
	si   int
	text string
}

func (e *element) id() elementID { return elementID{e.si, e.text} }

// key returns the netlink key and, for interval sets, key end.
func (e element) key(interval bool) (key, end []byte) {
	for _, f := range e.fields {
		s, x := f.bytes()
		key = append(key, s...)
		end = append(end, x...)
	}
	if !interval {
		end = nil
	}
	return key, end
}

func (e element) String() string { return fmt.Sprintf("%s: %s", e.set, e.text) }
