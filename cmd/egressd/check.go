package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/hostnet"
	"github.com/egressd/egressd/policy"
)

// checkCmd is `egressd check -config F -sandbox NAME TARGET`: print the
// decision the sandbox's policy makes for TARGET as one line starting with
// "allow" or "deny", the reason and the rule. Exit status: 0 allow,
// 1 deny, 2 usage or config error (an unknown sandbox included).
func checkCmd(args []string) int {
	fs := newFlags("check", "-config FILE -sandbox NAME TARGET",
		"Say whether sandbox NAME may reach TARGET, and which rule decides.\n\n"+
			"TARGET is host[:port], ip[:port] or [ipv6]:port; the port does not change\n"+
			"the answer. A host is judged as the name a flow carries (TLS SNI, HTTP\n"+
			"Host); its address is not resolved. An address is judged as a raw\n"+
			"destination: in mode custom, one matching no CIDR rule is denied, since\n"+
			"only a flow's name could still allow it.\n\n"+
			"Exit status: 0 allow, 1 deny, 2 usage or config error.")
	path := fs.String("config", "", "config file (required)")
	name := fs.String("sandbox", "", "sandbox name (required)")
	pos, code, ok := parseArgs(fs, args)
	switch {
	case !ok:
		return code
	case *path == "":
		return usageError(fs, "-config is required")
	case *name == "":
		return usageError(fs, "-sandbox is required")
	case len(pos) != 1:
		return usageError(fs, "want exactly one TARGET")
	}
	t, err := parseTarget(pos[0])
	if err != nil {
		return usageError(fs, err.Error())
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	set := cfg.Sandboxes.WithIsLocal(hostnet.IsLocal)
	sb, ok := set.ByName(*name)
	if !ok {
		fmt.Fprintf(os.Stderr, "egressd check: %s has no sandbox %q (it has %s)\n", *path, *name, sandboxNames(cfg))
		return 2
	}
	d := t.decide(set, sb)
	fmt.Println(d.String())
	if d.Allowed() {
		return 0
	}
	return 1
}

// target is what `check` judges: a name or an address.
type target struct {
	name string
	addr netip.Addr
}

var errTarget = errors.New(`want host[:port], ip[:port] or [ipv6]:port`)

// parseTarget reads host[:port], ip[:port], a bare IPv6 address or
// [ipv6]:port. The port is checked, then dropped: policies do not look
// at it.
func parseTarget(s string) (target, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return target{addr: a.WithZone("")}, nil
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") || strings.Contains(s, ":") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return target{}, fmt.Errorf("target %q: %w", s, errTarget)
		}
		host, port = h, p
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return target{}, fmt.Errorf("target %q: port must be in 1..65535", s)
		}
	}
	if host == "" {
		return target{}, fmt.Errorf("target %q: %w", s, errTarget)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return target{addr: a.WithZone("")}, nil
	}
	if strings.HasPrefix(s, "[") {
		return target{}, fmt.Errorf("target %q: brackets hold an IPv6 address", s)
	}
	return target{name: host}, nil
}

// decide asks the policy the question the proxy would. A name is judged
// as the flow's SNI or Host alone: the address it would connect to is
// unknown here. An address in mode custom that only a name could allow
// (NeedsName) stays the deny DecideAddr returned. An address is judged
// with the host guard too: protect_host asks this host, where check runs.
func (t target) decide(set *policy.Set, sb *policy.Sandbox) policy.Decision {
	if t.name != "" {
		return sb.Policy.DecideName(t.name)
	}
	return set.DecideAddr(sb, t.addr)
}

func sandboxNames(cfg *config.Config) string {
	var names []string
	for _, sb := range cfg.Sandboxes.All() {
		names = append(names, strconv.Quote(sb.Name))
	}
	return strings.Join(names, ", ")
}
