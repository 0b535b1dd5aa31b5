package control

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

const twoSandboxes = `
[proxy]
upstream_dns = ["198.51.100.53:53"]

[[sandbox]]
name = "sb1"
interface = "veth-sb1"
sources = ["10.231.0.2/32"]
mode = "allow-all"

[[sandbox]]
name = "sb2"
interface = "veth-sb2"
sources = ["10.231.1.2/32"]
mode = "allow-all"
`

// A removed sandbox's interface stays guarded: in the kernel rules after
// the reload, and after a restart from the same state directory.
func TestGuardedInterfacesOutliveSandboxes(t *testing.T) {
	var last []string
	kernel := func(_ context.Context, _ *config.Config, _ *policy.Set, guarded []string) error {
		last = slices.Clone(guarded)
		return nil
	}
	parse := func(s string) *config.Config {
		cfg, err := config.Parse("egressd.toml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	store := NewStore(t.TempDir())
	c, err := New(parse(twoSandboxes), store, Hooks{Kernel: kernel}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	oneLeft := twoSandboxes[:strings.Index(twoSandboxes, "[[sandbox]]\nname = \"sb2\"")]
	if err := c.Reload(context.Background(), parse(oneLeft)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"veth-sb1", "veth-sb2"}; !slices.Equal(last, want) {
		t.Fatalf("guarded after removing sb2: %q, want %q", last, want)
	}
	c2, err := New(parse(oneLeft), store, Hooks{Kernel: kernel}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	last = nil
	if err := c2.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"veth-sb1", "veth-sb2"}; !slices.Equal(last, want) {
		t.Fatalf("guarded after a restart: %q, want %q", last, want)
	}
	if err := store.ForgetGuarded(); err != nil {
		t.Fatal(err)
	}
	if g, err := store.LoadGuarded(); err != nil || len(g) != 0 {
		t.Fatalf("after ForgetGuarded: %q, %v", g, err)
	}
}
