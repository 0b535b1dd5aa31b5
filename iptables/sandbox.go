package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Mode is a sandbox's base behaviour; the values match policy.Mode.
type Mode string

// The three modes.
const (
	ModeAllowAll Mode = "allow-all" // non-TCP passes except to deny_cidrs
	ModeDenyAll  Mode = "deny-all"  // nothing passes, DNS and TCP included
	ModeCustom   Mode = "custom"    // non-TCP passes only to allow_cidrs
)

// Sandbox is what the kernel rules need to know about one sandbox. TCP is
// always diverted to the proxy, which applies the rest of the policy.
type Sandbox struct {
	// Name appears in rule comments only: printable ASCII without '"' or
	// '\', at most maxNameLen bytes.
	Name string
	// Interface is the host-side interface the sandbox's packets arrive
	// on, matched exactly (no wildcard).
	Interface string
	// Sources are the addresses the sandbox may send from. A family with
	// no source drops all of that family's packets.
	Sources []netip.Prefix
	Mode    Mode
	// AllowCIDRs are destinations non-TCP traffic may reach in custom mode.
	AllowCIDRs []netip.Prefix
	// DenyCIDRs are destinations non-TCP traffic never reaches (TCP to
	// them goes to the proxy, which logs and resets).
	DenyCIDRs []netip.Prefix
	// AllowPorts and DenyPorts are the port-scoped entries of allow_cidrs
	// and deny_cidrs: a destination prefix, a protocol and a port range.
	AllowPorts, DenyPorts []PortRule
	// Audit is report-only mode: the host guard stands, and all else
	// passes. TCP and DNS go to egressd as always; the rest is recorded
	// (KernelAudit) for egressd to judge with the policy and report.
	Audit bool
}

// PortRule is a destination prefix for one transport protocol (IANA
// number: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6) and a destination port range
// (0-65535: every port, and the only range ICMP takes).
type PortRule struct {
	Prefix netip.Prefix
	Proto  uint8
	Lo, Hi uint16
}

// Host is the host-wide part of the rules: the config's [host] section.
type Host struct {
	// Guarded are interface names and prefix* patterns that may carry
	// sandbox traffic. A packet arriving on one that no sandbox claims is
	// dropped, forwarded or addressed to the host alike.
	Guarded []string
	// ProtectHost drops a sandbox's non-TCP packets to any address of the
	// host itself (the kernel's notion of local, broadcast, anycast and
	// multicast, looked up per packet), unless its allow_cidrs names the
	// address exactly. TCP goes to the proxy, which applies the same rule.
	ProtectHost bool
	// IsolateSandboxes drops a sandbox's non-TCP packets to another
	// sandbox's sources unless its allow_cidrs names them (an entry inside
	// the other sandbox's sources).
	IsolateSandboxes bool
	// Reject answers what the mode chains deny (UDP, ICMP and the rest;
	// all of deny-all) with ICMP administratively prohibited, so the
	// client fails at once; false drops silently. TCP is always reset.
	// Spoofed sources, guarded interfaces and a dead egressd are always
	// dropped: there is no one to tell.
	Reject bool
}

// Ports are the local ports diverted traffic is sent to.
type Ports struct {
	TProxy int // transparent TCP proxy, required
	DNS    int // resolver (UDP and TCP); 0: no resolver, DNS is dropped
}

const (
	maxNameLen  = 100 // nft comments hold 128 bytes; leave room for a prefix
	maxIfaceLen = 15  // IFNAMSIZ - 1
)

func (h Host) validate() error {
	for _, g := range h.Guarded {
		name, _ := strings.CutSuffix(g, "*")
		if err := checkIface(name); err != nil {
			return fmt.Errorf("iptables: guarded interface %q: %w", g, err)
		}
	}
	return nil
}

func (p Ports) validate() error {
	if p.TProxy < 1 || p.TProxy > 65535 {
		return fmt.Errorf("iptables: tproxy port %d: want 1-65535", p.TProxy)
	}
	if p.DNS < 0 || p.DNS > 65535 {
		return fmt.Errorf("iptables: dns port %d: want 0-65535", p.DNS)
	}
	return nil
}

func (s *Sandbox) validate() error {
	if err := checkName(s.Name); err != nil {
		return fmt.Errorf("iptables: sandbox %q: name: %w", s.Name, err)
	}
	if err := checkIface(s.Interface); err != nil {
		return fmt.Errorf("iptables: sandbox %q: interface %q: %w", s.Name, s.Interface, err)
	}
	switch s.Mode {
	case ModeAllowAll, ModeDenyAll, ModeCustom:
	default:
		return fmt.Errorf("iptables: sandbox %q: unknown mode %q", s.Name, s.Mode)
	}
	for _, r := range append(slices.Clone(s.AllowPorts), s.DenyPorts...) {
		if !r.Prefix.IsValid() || r.Lo > r.Hi {
			return fmt.Errorf("iptables: sandbox %q: port rule %v: invalid", s.Name, r)
		}
	}
	lists := []struct {
		field string
		list  []netip.Prefix
	}{{"sources", s.Sources}, {"allow_cidrs", s.AllowCIDRs}, {"deny_cidrs", s.DenyCIDRs}}
	for _, l := range lists {
		for i, p := range l.list {
			if !p.IsValid() {
				return fmt.Errorf("iptables: sandbox %q: %s[%d]: invalid prefix", s.Name, l.field, i)
			}
		}
	}
	return nil
}

// checkName keeps names safe inside an nft quoted string, which has no
// escapes.
func checkName(n string) error {
	if n == "" {
		return fmt.Errorf("empty")
	}
	if len(n) > maxNameLen {
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	}
	for _, r := range n {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	return nil
}

// checkIface accepts what Linux accepts as an interface name, minus what
// nft would read as a wildcard ('*') or could not quote ('"', '\').
func checkIface(n string) error {
	if n == "" || len(n) > maxIfaceLen {
		return fmt.Errorf("want 1-%d bytes", maxIfaceLen)
	}
	if n == "." || n == ".." {
		return fmt.Errorf("reserved name")
	}
	for _, r := range n {
		if r <= 0x20 || r > 0x7e || strings.ContainsRune(`/:*"\`, r) {
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	return nil
}
