package iptables

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Policy routing for TPROXY: a diverted packet keeps its foreign
// destination address, so the mark set with TPROXY selects a table where
// every address is local, and the packet is delivered to the listening
// socket instead of being forwarded.

// family is one address family's part of the policy routing.
type family struct {
	flag  string // ip -4 / -6
	local string // the all-addresses prefix routed to lo
}

var families = []family{{"-4", "0.0.0.0/0"}, {"-6", "::/0"}}

// ruleSelector identifies egressd's fwmark rule, for show, add and del.
var ruleSelector = []string{
	"fwmark", fmt.Sprintf("0x%x", Mark),
	"table", strconv.Itoa(RouteTable),
	"pref", strconv.Itoa(RulePriority),
}

// addRouting makes marked packets local: fwmark Mark → table RouteTable,
// where everything is a local route on lo. Rules are added only if missing.
func (in Installer) addRouting(ctx context.Context) error {
	for _, f := range families {
		ok, err := in.hasRule(ctx, f)
		if err != nil {
			return err
		}
		if !ok {
			if _, err := in.run(ctx, "", "ip", ruleArgs(f, "add")...); err != nil {
				return fmt.Errorf("iptables: add fwmark rule: %w", err)
			}
		}
		route := []string{f.flag, "route", "replace", "local", f.local, "dev", "lo", "table", strconv.Itoa(RouteTable)}
		if _, err := in.run(ctx, "", "ip", route...); err != nil {
			return fmt.Errorf("iptables: add local route: %w", err)
		}
	}
	return nil
}

// maxRuleDeletes bounds the delete loop should `ip rule del` keep
// succeeding without the rule going away.
const maxRuleDeletes = 64

// removeRouting deletes every copy of the fwmark rule, then flushes the
// route table (egressd owns it).
func (in Installer) removeRouting(ctx context.Context) error {
	for _, f := range families {
		for i := 0; ; i++ {
			ok, err := in.hasRule(ctx, f)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if i == maxRuleDeletes {
				return fmt.Errorf("iptables: fwmark rule still present after %d deletes", i)
			}
			if _, err := in.run(ctx, "", "ip", ruleArgs(f, "del")...); err != nil {
				return fmt.Errorf("iptables: delete fwmark rule: %w", err)
			}
		}
		if err := in.flushRoutes(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// flushRoutes empties RouteTable. Flushing (or listing) an IPv4 table that
// was never created is an error, so look for it among all tables first.
func (in Installer) flushRoutes(ctx context.Context, f family) error {
	out, err := in.run(ctx, "", "ip", f.flag, "route", "show", "table", "all")
	if err != nil {
		return fmt.Errorf("iptables: list routes: %w", err)
	}
	if !hasTable(out, RouteTable) {
		return nil
	}
	flush := []string{f.flag, "route", "flush", "table", strconv.Itoa(RouteTable)}
	if _, err := in.run(ctx, "", "ip", flush...); err != nil {
		return fmt.Errorf("iptables: flush route table: %w", err)
	}
	return nil
}

// hasTable reports whether `ip route show table all` output has a route in
// table id ("… table 7767 …").
func hasTable(routes []byte, id int) bool {
	want := strconv.Itoa(id)
	for _, line := range strings.Split(string(routes), "\n") {
		fields := strings.Fields(line)
		for i := 0; i+1 < len(fields); i++ {
			if fields[i] == "table" && fields[i+1] == want {
				return true
			}
		}
	}
	return false
}

func (in Installer) hasRule(ctx context.Context, f family) (bool, error) {
	out, err := in.run(ctx, "", "ip", ruleArgs(f, "show")...)
	if err != nil {
		return false, fmt.Errorf("iptables: list fwmark rules: %w", err)
	}
	return len(bytes.TrimSpace(out)) > 0, nil
}

func ruleArgs(f family, verb string) []string {
	return append([]string{f.flag, "rule", verb}, ruleSelector...)
}
