package activity

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/egressd/egressd/policy"
)

// Suggestion is the smallest mode-custom policy that allows what an
// Activity shows passing, with a note per entry saying what used it.
type Suggestion struct {
	Sandbox string
	Activity
	Domains []Suggested // allow_domains
	CIDRs   []Suggested // allow_cidrs
	Deny    []string    // deny_cidrs, carried over from the policy in force
	// Denied are destinations that were refused; InDeny, those that
	// passed only in report-only mode, and only because deny_cidrs do not
	// apply there (the suggested policy keeps them, so they stay denied);
	// NoAnswer, names whose every query failed (a resolver search list's
	// guesses, typically). None is in the policy.
	Denied, InDeny, NoAnswer []Entry
}

// Suggested is one entry of the suggested policy and what used it.
type Suggested struct {
	Value string
	Note  string
}

// Suggest turns a into a policy. Names that passed (a flow, or a DNS
// question answered) go to allow_domains; with fold ≥ 1, two or more
// names under one parent zone become "*.zone" when that zone has at least
// fold labels and is not a public suffix (so "*.co.uk" never). Addresses
// reached without a name, by the proxy or the kernel, go to allow_cidrs as
// single addresses. deny is the policy's deny_cidrs, kept as they are.
func Suggest(a Activity, fold int, deny []string) Suggestion {
	s := Suggestion{Sandbox: a.Sandbox, Activity: a, Deny: deny}
	var names []Entry
	for _, e := range a.Entries {
		passed := e.Flows + e.Queries + e.Packets
		switch {
		case passed > 0 && e.WouldDeny == passed && e.Reason == policy.ReasonDenyCIDR.String():
			s.InDeny = append(s.InDeny, e)
		case passed > 0 && e.Kind == KindName:
			names = append(names, e)
		case passed > 0:
			s.CIDRs = append(s.CIDRs, Suggested{Value: hostEntry(e), Note: usage(e)})
		case e.FailedQueries > 0:
			s.NoAnswer = append(s.NoAnswer, e)
		case e.Denied > 0:
			s.Denied = append(s.Denied, e)
		}
	}
	s.Domains = foldNames(names, fold)
	s.CIDRs = mergeCIDRs(s.CIDRs)
	return s
}

// hostPrefix is addr as a /32 or /128.
func hostPrefix(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// hostEntry is the allow_cidrs entry for an address reached: scoped to
// UDP or ICMP when only the kernel's record saw it that way, else every
// port and protocol (a raw TCP flow, whose port the record keeps not).
func hostEntry(e Entry) string {
	switch e.Proto {
	case "udp":
		return hostPrefix(e.Value) + "/udp"
	case "icmp", "ipv6-icmp":
		return hostPrefix(e.Value) + "/icmp"
	}
	return hostPrefix(e.Value)
}

// mergeCIDRs joins the entries of one address: into its unscoped entry
// when there is one (sorted first), else entry by entry.
func mergeCIDRs(in []Suggested) []Suggested {
	var out []Suggested
	for _, c := range in {
		if n := len(out); n > 0 && (out[n-1].Value == c.Value || strings.HasPrefix(c.Value, out[n-1].Value+"/")) {
			out[n-1].Note += "; " + c.Note
			continue
		}
		out = append(out, c)
	}
	return out
}

// usage says what used an entry: "3 flows, 2 DNS queries".
func usage(e Entry) string {
	var parts []string
	add := func(n uint64, one, many string) {
		if n == 1 {
			parts = append(parts, "1 "+one)
		} else if n > 1 {
			parts = append(parts, fmt.Sprintf("%d %s", n, many))
		}
	}
	add(e.Flows, "flow", "flows")
	add(e.Queries, "DNS query", "DNS queries")
	add(e.Packets, e.Proto+" packet", e.Proto+" packets")
	add(e.Denied, "denied flow or query", "denied flows or queries")
	add(e.FailedQueries, "failed DNS query", "failed DNS queries")
	s := strings.Join(parts, ", ")
	if e.WouldDeny > 0 {
		s += fmt.Sprintf(" (%d would be denied now: %s)", e.WouldDeny, e.Reason)
	}
	return s
}

// foldNames lists names, sorted, folding siblings into wildcards (see
// Suggest).
func foldNames(names []Entry, fold int) []Suggested {
	byZone := map[string][]Entry{}
	if fold >= 1 {
		for _, e := range names {
			if zone, ok := parentZone(e.Value, fold); ok {
				byZone[zone] = append(byZone[zone], e)
			}
		}
	}
	var out []Suggested
	folded := map[string]bool{}
	for zone, es := range byZone {
		if len(es) < 2 {
			continue
		}
		var flows, queries uint64
		var list []string
		for _, e := range es {
			folded[e.Value] = true
			flows += e.Flows
			queries += e.Queries
			list = append(list, e.Value)
		}
		sort.Strings(list)
		note := usage(Entry{Flows: flows, Queries: queries}) + ": " + strings.Join(list, ", ")
		out = append(out, Suggested{Value: "*." + zone, Note: note})
	}
	for _, e := range names {
		if !folded[e.Value] {
			out = append(out, Suggested{Value: e.Value, Note: usage(e)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out
}

// parentZone is name without its first label, if that zone has at least
// minLabels labels and is not a public suffix.
func parentZone(name string, minLabels int) (string, bool) {
	_, zone, ok := strings.Cut(name, ".")
	if !ok || strings.Count(zone, ".")+1 < minLabels {
		return "", false
	}
	if suffix, _ := publicsuffix.PublicSuffix(zone); suffix == zone {
		return "", false
	}
	if _, err := policy.ParsePattern("*." + zone); err != nil {
		return "", false
	}
	return zone, true
}

// Spec is the suggested policy.
func (s Suggestion) Spec() policy.Spec {
	spec := policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{}, AllowCIDRs: []string{}, DenyCIDRs: s.Deny}
	for _, d := range s.Domains {
		spec.AllowDomains = append(spec.AllowDomains, d.Value)
	}
	for _, c := range s.CIDRs {
		spec.AllowCIDRs = append(spec.AllowCIDRs, c.Value)
	}
	if spec.DenyCIDRs == nil {
		spec.DenyCIDRs = []string{}
	}
	return spec
}

// Write prints the suggestion as a policy JSON object for `egressd policy
// set -f`, with a "#" comment line before each entry saying what used it
// (`policy set` skips such lines), and what was left out after it.
func (s Suggestion) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# egressd suggest: sandbox %q, %d destinations seen", s.Sandbox, len(s.Entries))
	if !s.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", s.Since.UTC().Format("2006-01-02T15:04:05Z"))
	}
	b.WriteString("\n")
	if s.Dropped > 0 {
		fmt.Fprintf(&b, "# %d decisions found the record full and are not in it\n", s.Dropped)
	}
	b.WriteString("{\n  \"mode\": \"custom\",\n")
	writeList(&b, "allow_domains", s.Domains, false)
	writeList(&b, "allow_cidrs", s.CIDRs, false)
	deny := make([]Suggested, len(s.Deny))
	for i, d := range s.Deny {
		deny[i] = Suggested{Value: d, Note: "kept from the policy in force"}
	}
	writeList(&b, "deny_cidrs", deny, true)
	b.WriteString("}\n")
	for _, e := range s.Denied {
		fmt.Fprintf(&b, "# left out, denied: %s (%s: %s)\n", e.Value, usage(e), e.Reason)
	}
	for _, e := range s.InDeny {
		fmt.Fprintf(&b, "# left out, in deny_cidrs: %s (%s)\n", e.Value, usage(e))
	}
	for _, e := range s.NoAnswer {
		fmt.Fprintf(&b, "# left out, never answered: %s (%s)\n", e.Value, usage(e))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeList(b *strings.Builder, field string, list []Suggested, last bool) {
	fmt.Fprintf(b, "  %q: [", field)
	for i, e := range list {
		if i == 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(b, "    # %s\n", e.Note)
		v, _ := json.Marshal(e.Value)
		b.WriteString("    ")
		b.Write(v)
		if i < len(list)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	if len(list) > 0 {
		b.WriteString("  ")
	}
	b.WriteString("]")
	if !last {
		b.WriteString(",")
	}
	b.WriteString("\n")
}

// StripComments removes the lines whose first non-blank character is '#'
// from a policy file, as Write writes them.
func StripComments(b []byte) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	var out strings.Builder
	for _, l := range lines {
		if !strings.HasPrefix(strings.TrimLeft(l, " \t"), "#") {
			out.WriteString(l)
		}
	}
	return []byte(out.String())
}
