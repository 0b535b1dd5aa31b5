package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/internal/instance"
	"github.com/egressd/egressd/iptables"
	"github.com/egressd/egressd/policy"
)

// rulesCmd is `egressd rules -config F`: print the nftables ruleset that
// `run` would install, without touching the kernel: the config file with
// what state.dir holds (API sandboxes and policies, guarded interfaces).
func rulesCmd(args []string) int {
	cfg, code := loadForRules("rules", args)
	if cfg == nil {
		return code
	}
	var set *policy.Set
	var guarded []string
	keep := func(_ context.Context, _ *config.Config, s *policy.Set, g []string) error {
		set, guarded = s, g
		return nil
	}
	ctl, err := control.New(cfg, control.NewStore(cfg.State.Dir), control.Hooks{Kernel: keep}, zap.NewNop())
	if err == nil {
		err = ctl.Preview()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "egressd:", err)
		return 1
	}
	sbs, ports, host := rulesFor(cfg, set, guarded)
	script, err := iptables.Render(sbs, ports, host)
	if err != nil {
		fmt.Fprintln(os.Stderr, "egressd:", err)
		return 1
	}
	fmt.Print(script)
	return 0
}

// cleanupCmd is `egressd cleanup -config F`: remove every kernel rule and
// route egressd installed, and forget the guarded interfaces. The
// sandboxes then reach the network unfiltered unless something else stops
// them. It refuses while an egressd runs: it would open the firewall under
// the daemon.
func cleanupCmd(args []string) int {
	cfg, code := loadForRules("cleanup", args)
	if cfg == nil {
		return code
	}
	lock, err := instance.Acquire(instance.Dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "egressd cleanup:", err)
		return 1
	}
	defer lock.Release()
	if err := iptables.Cleanup(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "egressd:", err)
		return 1
	}
	if err := control.NewStore(cfg.State.Dir).ForgetGuarded(); err != nil {
		fmt.Fprintln(os.Stderr, "egressd:", err)
		return 1
	}
	return 0
}

func loadForRules(name string, args []string) (*config.Config, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("config", "", "config file (required)")
	if err := fs.Parse(args); err != nil || *path == "" || fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "usage: egressd %s -config FILE\n", name)
		return nil, 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return nil, 2
	}
	return cfg, 0
}

// rulesFor translates a sandbox set into what the kernel rules
// need: DNS goes to the filtering resolver on proxy.dns_port; guarded
// interfaces are the persisted ones and host.sandbox_interfaces.
func rulesFor(cfg *config.Config, set *policy.Set, guarded []string) ([]iptables.Sandbox, iptables.Ports, iptables.Host) {
	all := set.All()
	sbs := make([]iptables.Sandbox, 0, len(all))
	for _, sb := range all {
		if sb.Interface == "" {
			continue // reached only through its explicit proxy listeners
		}
		allow, deny := sb.Policy.CIDRs()
		allowScoped, denyScoped := sb.Policy.ScopedCIDRs()
		sbs = append(sbs, iptables.Sandbox{
			Name:       sb.Name,
			Interface:  sb.Interface,
			Sources:    sb.Sources,
			Mode:       iptables.Mode(sb.Policy.Mode()),
			AllowCIDRs: allow,
			DenyCIDRs:  deny,
			AllowPorts: portRules(allowScoped),
			DenyPorts:  portRules(denyScoped),
			Audit:      sb.Policy.Audit(),
		})
	}
	host := iptables.Host{
		Guarded:          append(slices.Clone(guarded), cfg.Host.SandboxInterfaces...),
		ProtectHost:      cfg.Host.ProtectHost,
		IsolateSandboxes: cfg.Host.IsolateSandboxes,
		Reject:           cfg.Host.Reject == config.RejectICMP,
	}
	return sbs, iptables.Ports{TProxy: cfg.Proxy.TProxyPort, DNS: cfg.Proxy.DNSPort}, host
}

// portRules are the kernel's part of port-scoped CIDR entries: UDP and
// ICMP (TCP goes to the proxy, which judges the port itself).
func portRules(rules []policy.CIDRRule) []iptables.PortRule {
	var out []iptables.PortRule
	for _, r := range rules {
		var proto uint8
		switch r.Proto {
		case policy.ProtoTCP:
			continue
		case policy.ProtoICMP:
			proto = 1
			if r.Prefix.Addr().Is6() {
				proto = 58
			}
		default: // udp, or ports without a protocol: TCP and UDP
			proto = 17
		}
		if r.Ports == nil {
			out = append(out, iptables.PortRule{Prefix: r.Prefix, Proto: proto, Lo: 0, Hi: 65535})
			continue
		}
		for _, pr := range r.Ports {
			out = append(out, iptables.PortRule{Prefix: r.Prefix, Proto: proto, Lo: pr.Lo, Hi: pr.Hi})
		}
	}
	return out
}
