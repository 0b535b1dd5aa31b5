package control

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

const listConfig = `
[proxy]
upstream_dns = ["198.51.100.53"]

[[sandbox]]
name = "a"
interface = "veth-a"
sources = ["10.1.0.2"]
mode = "allow-all"

[[sandbox]]
name = "b"
interface = "veth-b"
sources = ["10.2.0.2"]
mode = "custom"
allow_domains = ["B.test"]
`

func newListController(t *testing.T) *Controller {
	t.Helper()
	cfg, err := config.Parse("egressd.toml", []byte(listConfig))
	if err != nil {
		t.Fatal(err)
	}
	nop := func(context.Context, *config.Config, *policy.Set, []string) error { return nil }
	c, err := New(cfg, NewStore(t.TempDir()), Hooks{Kernel: nop}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestList(t *testing.T) {
	c := newListController(t)
	ctx := context.Background()
	if err := c.SetPolicy(ctx, "a", policy.Spec{Mode: policy.ModeDenyAll}); err != nil {
		t.Fatal(err)
	}
	empty := []string{}
	want := []SandboxInfo{
		{Name: "a", Interface: "veth-a", Sources: []string{"10.1.0.2/32"}, Origin: OriginConfig, Source: SourceAPI,
			Spec: policy.Spec{Mode: policy.ModeDenyAll, AllowDomains: empty, AllowCIDRs: empty, DenyCIDRs: empty}},
		{Name: "b", Interface: "veth-b", Sources: []string{"10.2.0.2/32"}, Origin: OriginConfig, Source: SourceConfig,
			Spec: policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"b.test"}, AllowCIDRs: empty, DenyCIDRs: empty}},
	}
	if got := c.List(); !reflect.DeepEqual(got, want) {
		t.Errorf("List = %+v\nwant %+v", got, want)
	}
	if got, err := c.Policy("b"); err != nil || !reflect.DeepEqual(got, want[1]) {
		t.Errorf("Policy(b) = %+v, %v", got, err)
	}
	if _, err := c.Policy("z"); !errors.Is(err, ErrUnknownSandbox) {
		t.Errorf("Policy(z) error %v, want ErrUnknownSandbox", err)
	}
}

func TestCheckSpec(t *testing.T) {
	tests := []struct {
		name string
		spec policy.Spec
		want string
	}{
		{"valid custom", policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"a.test"}}, ""},
		{"bad entry", policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"a.*.b"}},
			`allow_domains[0] "a.*.b": a wildcard may only be the whole leftmost label`},
		{"list in deny-all", policy.Spec{Mode: policy.ModeDenyAll, AllowCIDRs: []string{"10.0.0.0/8"}},
			"allow_cidrs is not allowed in mode deny-all"},
		{"bad mode", policy.Spec{Mode: "open", AllowCIDRs: []string{"10.0.0.0/8"}},
			`mode "open": not a mode; want one of allow-all, deny-all, custom`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := CheckSpec(tc.spec); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("CheckSpec = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("SetPolicy refuses", func(t *testing.T) {
		c := newListController(t)
		err := c.SetPolicy(context.Background(), "a", policy.Spec{Mode: policy.ModeAllowAll, AllowDomains: []string{"x.test"}})
		if err == nil || sourceOf(t, c, "a") != SourceConfig {
			t.Errorf("SetPolicy: %v, source %s", err, sourceOf(t, c, "a"))
		}
	})
}

// TestReloadKeepsRunningPorts: a reload that changes tproxy_port must not
// point the kernel rules at a port nobody listens on.
func TestReloadKeepsRunningPorts(t *testing.T) {
	cfg, err := config.Parse("egressd.toml", []byte(listConfig))
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	kernel := func(_ context.Context, cfg *config.Config, _ *policy.Set, _ []string) error {
		ports = append(ports, cfg.Proxy.TProxyPort)
		return nil
	}
	c, err := New(cfg, NewStore(t.TempDir()), Hooks{Kernel: kernel}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	changed, err := config.Parse("egressd.toml", []byte("[proxy]\ntproxy_port = 16001\n"+listConfig[len("\n[proxy]\n"):]))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(context.Background(), changed); err != nil {
		t.Fatal(err)
	}
	if want := []int{config.DefaultTProxyPort}; !reflect.DeepEqual(ports, want) {
		t.Errorf("kernel rules installed for ports %v, want %v", ports, want)
	}
	if got := c.Config().Sandboxes; got != changed.Sandboxes {
		t.Errorf("reload did not apply the new sandboxes")
	}
}

// TestOrphanOverride: an API policy of a sandbox that a reload removed is
// kept (a lock-down must not vanish with a config edit), comes back with
// the sandbox, and can be dropped with ResetPolicy while orphaned.
func TestOrphanOverride(t *testing.T) {
	c := newListController(t)
	ctx := context.Background()
	if err := c.SetPolicy(ctx, "b", policy.Spec{Mode: policy.ModeAllowAll}); err != nil {
		t.Fatal(err)
	}
	full, err := config.Parse("egressd.toml", []byte(listConfig))
	if err != nil {
		t.Fatal(err)
	}
	onlyA, err := config.Parse("egressd.toml", []byte(listConfig[:strings.LastIndex(listConfig, "[[sandbox]]")]))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx, onlyA); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx, full); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Policy("b"); got.Source != SourceAPI || got.Spec.Mode != policy.ModeAllowAll {
		t.Errorf("b after it came back: %+v, want the persisted API policy", got)
	}
	if err := c.Reload(ctx, onlyA); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetPolicy(ctx, "b"); err != nil {
		t.Fatalf("ResetPolicy of an orphaned override: %v", err)
	}
	if err := c.ResetPolicy(ctx, "zz"); !errors.Is(err, ErrUnknownSandbox) {
		t.Errorf("ResetPolicy(zz) = %v, want ErrUnknownSandbox", err)
	}
	if err := c.Reload(ctx, full); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Policy("b"); got.Source != SourceConfig || got.Spec.Mode != policy.ModeCustom {
		t.Errorf("b after reset and re-add: %+v, want the config file's policy", got)
	}
}

// sourceOf says where a sandbox's policy in force comes from.
func sourceOf(t *testing.T, c *Controller, name string) Source {
	t.Helper()
	info, err := c.Policy(name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Source
}
