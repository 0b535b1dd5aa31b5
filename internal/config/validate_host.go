package config

import (
	"strconv"
	"strings"
)

func (v *validator) host(f fileHost) Host {
	const path = "host.sandbox_interfaces"
	seen := make(map[string]bool, len(f.SandboxInterfaces))
	for i, s := range f.SandboxInterfaces {
		msg := checkInterfacePattern(s)
		if msg == "" && seen[s] {
			msg = "listed twice"
		}
		if msg != "" {
			key := path + "[" + strconv.Itoa(i) + "]"
			v.errs.add(v.src.elemLine(path, -1, s), "", stringValue(key, s, msg))
		}
		seen[s] = true
	}
	if f.Reject != RejectICMP && f.Reject != RejectDrop {
		v.bad("host.reject", stringValue("host.reject", f.Reject, `want "icmp" or "drop"`))
	}
	return Host{SandboxInterfaces: f.SandboxInterfaces, ProtectHost: f.ProtectHost, IsolateSandboxes: f.IsolateSandboxes,
		Reject: f.Reject}
}

// checkInterfacePattern accepts an interface name or a prefix followed by
// one '*' ("veth-sb*"). Patterns that would guard the loopback interface,
// or every interface (the uplink too), are refused: the host itself would
// lose its network.
func checkInterfacePattern(s string) string {
	name, wild := strings.CutSuffix(s, "*")
	switch {
	case s == "*":
		return "would guard every interface, the uplink and lo included; write a prefix such as \"veth-sb*\""
	case strings.Contains(name, "*"):
		return "'*' may only end a pattern"
	case wild && strings.HasPrefix("lo", name):
		return "would guard the loopback interface lo"
	}
	if msg := checkInterface(name); msg != "" {
		return msg
	}
	return ""
}

// Guards reports whether host.sandbox_interfaces covers the interface
// name: an exact name, or a prefix* pattern.
func (h Host) Guards(name string) bool {
	for _, p := range h.SandboxInterfaces {
		if prefix, wild := strings.CutSuffix(p, "*"); wild && strings.HasPrefix(name, prefix) || p == name {
			return true
		}
	}
	return false
}
