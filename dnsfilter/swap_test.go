package dnsfilter

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
)

func TestSetSandboxes(t *testing.T) {
	up := startUpstream(t)
	r, _ := newTestResolver(t, up, Options{})
	ask(r, srcCustom, "allowed.test.", dns.TypeA, false)
	ask(r, srcCustom, "www.allowed.test.", dns.TypeA, false)
	ask(r, srcCustom, "inside-deny.allowed.test.", dns.TypeA, false)
	ask(r, srcAllowAll, "evil.test.", dns.TypeA, false)
	cachedBefore := r.cache.len()

	narrower := customSpec
	narrower.AllowDomains = []string{"allowed.test", "inside-deny.allowed.test"} // www.allowed.test no more
	narrower.DenyCIDRs = []string{"198.51.100.128/25", "198.51.100.11/32"}       // the other inside-deny address
	set := testSet(t, narrower)
	set = withoutSandbox(t, set, "open")
	r.SetSandboxes(set)

	ip := netip.MustParseAddr
	tests := []struct {
		name    string
		sandbox string
		qname   string
		addr    netip.Addr
		want    bool
	}{
		{"still allowed", "custom", "allowed.test", ip("198.51.100.10"), true},
		{"name no longer allowed", "custom", "www.allowed.test", ip("198.51.100.20"), false},
		{"address now in deny_cidrs", "custom", "inside-deny.allowed.test", ip("198.51.100.11"), false},
		{"sandbox gone", "open", "evil.test", ip("198.51.100.66"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Bound(tt.sandbox, tt.qname, tt.addr); got != tt.want {
				t.Errorf("Bound = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("cache drops names nobody may resolve", func(t *testing.T) {
		if got := r.cache.len(); got != cachedBefore-2 { // www.allowed.test, evil.test
			t.Errorf("cache holds %d answers, want %d", got, cachedBefore-2)
		}
	})
	t.Run("new policy answers", func(t *testing.T) {
		if got := ask(r, srcCustom, "www.allowed.test.", dns.TypeA, false); got.Rcode != dns.RcodeRefused {
			t.Errorf("rcode %s, want REFUSED", dns.RcodeToString[got.Rcode])
		}
		if got := ask(r, srcAllowAll, "evil.test.", dns.TypeA, false); got != nil {
			t.Errorf("removed sandbox answered: %v", got)
		}
	})
}

func withoutSandbox(t *testing.T, set *policy.Set, name string) *policy.Set {
	t.Helper()
	var keep []policy.Sandbox
	for _, sb := range set.All() {
		if sb.Name != name {
			keep = append(keep, *sb)
		}
	}
	out, err := policy.NewSet(keep, policy.Guard{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
