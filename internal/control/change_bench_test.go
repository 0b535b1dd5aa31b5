package control

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/iptables"
	"github.com/egressd/egressd/policy"
)

// BenchmarkSetPolicy3000 is the userspace cost of one PUT among 3,000
// sandboxes: validation, the new set, the persisted state and the kernel
// ruleset's delta (computed, not installed).
func BenchmarkSetPolicy3000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("[proxy]\nupstream_dns = [\"198.51.100.53\"]\n")
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&sb, "[[sandbox]]\nname = \"sb%d\"\ninterface = \"sbx%d\"\nsources = [\"10.240.%d.%d/32\"]\nmode = \"custom\"\nallow_domains = [\"pkg.test\", \"a.test\", \"*.b.test\", \"c.test\", \"d.test\"]\nallow_cidrs = [\"198.51.100.77/32\", \"203.0.113.7/32\"]\n", i, i, i/250, i%250+1)
	}
	cfg, err := config.Parse("x.toml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	var cur *iptables.Ruleset
	kernel := func(_ context.Context, cfg *config.Config, set *policy.Set, g []string) error {
		var sbs []iptables.Sandbox
		for _, s := range set.All() {
			allow, deny := s.Policy.CIDRs()
			sbs = append(sbs, iptables.Sandbox{Name: s.Name, Interface: s.Interface, Sources: s.Sources, Mode: iptables.Mode(s.Policy.Mode()), AllowCIDRs: allow, DenyCIDRs: deny})
		}
		next, err := cur.Next(sbs, iptables.Ports{TProxy: 15001, DNS: 15053}, iptables.Host{Guarded: g, ProtectHost: true, IsolateSandboxes: true})
		cur = next
		return err
	}
	c, err := New(cfg, NewStore(b.TempDir()), Hooks{Kernel: kernel}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	c.Apply(context.Background())
	i := 0
	for b.Loop() {
		i++
		c.SetPolicy(context.Background(), "sb7", policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{fmt.Sprintf("x%d.test", i)}})
	}
}
