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

// BenchmarkAddRemove is one POST and one DELETE among 1,000 sandboxes that
// came from the config file or through the API (so that the API's state
// file holds them all), the state on this machine's disk and the kernel
// step left out.
func BenchmarkAddRemove(b *testing.B) {
	input := func(i int) config.SandboxInput {
		return config.SandboxInput{Name: fmt.Sprintf("sb%d", i), Interface: fmt.Sprintf("sbx%d", i),
			Sources: []string{fmt.Sprintf("10.240.%d.%d/32", i/250, i%250+1)},
			Policy: policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"pkg.test", "a.test", "*.b.test", "c.test", "d.test"},
				AllowCIDRs: []string{"198.51.100.77/32", "203.0.113.7/32"}}}
	}
	for _, origin := range []string{"config", "api"} {
		b.Run(origin, func(b *testing.B) {
			var sb strings.Builder
			sb.WriteString("[proxy]\nupstream_dns = [\"198.51.100.53\"]\n")
			n := 1000
			if origin == "api" {
				n = 1
			}
			for i := range n {
				fmt.Fprintf(&sb, "[[sandbox]]\nname = \"sb%d\"\ninterface = \"sbx%d\"\nsources = [\"10.240.%d.%d/32\"]\nmode = \"custom\"\n"+
					"allow_domains = [\"pkg.test\", \"a.test\", \"*.b.test\", \"c.test\", \"d.test\"]\nallow_cidrs = [\"198.51.100.77/32\", \"203.0.113.7/32\"]\n",
					i, i, i/250, i%250+1)
			}
			cfg, err := config.Parse("x.toml", []byte(sb.String()))
			if err != nil {
				b.Fatal(err)
			}
			kernel := func(context.Context, *config.Config, *policy.Set, []string) error { return nil }
			c, err := New(cfg, NewStore(b.TempDir()), Hooks{Kernel: kernel}, zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := c.Apply(ctx); err != nil {
				b.Fatal(err)
			}
			for i := n; i < 1000; i++ {
				if _, err := c.AddSandbox(ctx, input(i)); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if _, err := c.AddSandbox(ctx, input(1000)); err != nil {
					b.Fatal(err)
				}
				if err := c.RemoveSandbox(ctx, "sb1000"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
