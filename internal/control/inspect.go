package control

import (
	"fmt"
	"sort"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/hostnet"
	"github.com/egressd/egressd/policy"
)

// Inspect checks cfg's sandbox interfaces against the host's links, at
// start and before every reload:
//
//   - an interface that does not exist yet is a warning: an orchestrator
//     may register a sandbox before it creates its tap, and the rules match
//     the name the moment the interface appears;
//   - an interface that is a port of a bridge (or bond, team, …) is an
//     error: its packets reach the IP layer on the master, where no rule
//     for the port matches;
//   - an existing interface that host.sandbox_interfaces guards and no
//     sandbox claims is a warning: it reaches nothing (a typo?).
//
// With all false (one sandbox added at runtime) the last check is skipped.
func Inspect(sbs []*policy.Sandbox, host config.Host, links []hostnet.Link, all bool) (warnings []string, err error) {
	byName := make(map[string]hostnet.Link, len(links))
	for _, l := range links {
		byName[l.Name] = l
	}
	claimed := map[string]bool{}
	for _, sb := range sbs {
		if sb.Interface == "" {
			continue // an explicit proxy's only: no interface
		}
		claimed[sb.Interface] = true
		l, ok := byName[sb.Interface]
		switch {
		case !ok:
			warnings = append(warnings, fmt.Sprintf("sandbox %q: interface %q does not exist (yet); "+
				"its traffic is judged by this sandbox's policy the moment it appears", sb.Name, sb.Interface))
		case l.Master != "":
			return warnings, fmt.Errorf("sandbox %q: interface %q is a port of %s %q: its packets arrive on %q, "+
				"where no rule for %q matches; use %q as interface, with the sandbox's own addresses in sources",
				sb.Name, sb.Interface, kindOf(l), l.Master, l.Master, sb.Interface, l.Master)
		}
	}
	if !all {
		return warnings, nil
	}
	var unclaimed []string
	for _, l := range links {
		if !claimed[l.Name] && host.Guards(l.Name) {
			unclaimed = append(unclaimed, l.Name)
		}
	}
	sort.Strings(unclaimed)
	for _, n := range unclaimed {
		warnings = append(warnings, fmt.Sprintf("interface %q matches host.sandbox_interfaces but no sandbox claims it: "+
			"everything arriving on it is dropped", n))
	}
	return warnings, nil
}

func kindOf(l hostnet.Link) string {
	if l.MasterKind == "" {
		return "master"
	}
	return l.MasterKind
}
