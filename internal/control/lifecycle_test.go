package control

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

// lifecycleRig is a controller over listConfig whose kernel records the
// sandboxes it was given and fails on demand.
type lifecycleRig struct {
	c     *Controller
	dir   string
	fail  bool
	names []string // sandboxes the kernel last installed
}

func newLifecycleRig(t *testing.T, dir string) *lifecycleRig {
	t.Helper()
	r := &lifecycleRig{dir: dir}
	cfg, err := config.Parse("egressd.toml", []byte(listConfig))
	if err != nil {
		t.Fatal(err)
	}
	kernel := func(_ context.Context, _ *config.Config, set *policy.Set, _ []string) error {
		if r.fail {
			return errors.New("nft: no buffer space")
		}
		r.names = nil
		for _, sb := range set.All() {
			r.names = append(r.names, sb.Name)
		}
		return nil
	}
	r.c, err = New(cfg, NewStore(dir), Hooks{Kernel: kernel}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.c.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

var job = config.SandboxInput{Name: "job", Interface: "veth-job", Sources: []string{"10.3.0.2"},
	Policy: policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"pypi.org"}}}

func TestAddAndRemoveSandbox(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := newLifecycleRig(t, dir)
	sb, err := r.c.AddSandbox(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Name != "job" || strings.Join(r.names, ",") != "a,b,job" {
		t.Fatalf("added %+v; kernel has %v", sb, r.names)
	}
	info, err := r.c.Policy("job")
	if err != nil || info.Origin != OriginAPI || info.Source != SourceAPI || info.Interface != "veth-job" {
		t.Fatalf("Policy(job) = %+v, %v", info, err)
	}
	// A restart from the same state directory has it back.
	if r2 := newLifecycleRig(t, dir); strings.Join(r2.names, ",") != "a,b,job" {
		t.Fatalf("after a restart the kernel has %v", r2.names)
	}
	// Config sandboxes are the file's to remove.
	if err := r.c.RemoveSandbox(ctx, "a"); !errors.Is(err, ErrFromConfig) || !strings.Contains(err.Error(), "egressd.toml") {
		t.Errorf("RemoveSandbox(a) = %v, want ErrFromConfig naming the file", err)
	}
	if err := r.c.RemoveSandbox(ctx, "nope"); !errors.Is(err, ErrUnknownSandbox) {
		t.Errorf("RemoveSandbox(nope) = %v", err)
	}
	if err := r.c.SetPolicy(ctx, "job", policy.Spec{Mode: policy.ModeDenyAll}); err != nil {
		t.Fatal(err)
	}
	if err := r.c.RemoveSandbox(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.names, ",") != "a,b" {
		t.Fatalf("after removal the kernel has %v", r.names)
	}
	// Nothing of the old one is inherited by a new sandbox of the same name.
	if _, err := r.c.AddSandbox(ctx, job); err != nil {
		t.Fatal(err)
	}
	if info, _ := r.c.Policy("job"); info.Spec.Mode != policy.ModeCustom {
		t.Errorf("re-created sandbox inherited the removed one's policy: %+v", info.Spec)
	}
}

func TestAddSandboxRefusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := newLifecycleRig(t, dir)
	with := func(f func(*config.SandboxInput)) config.SandboxInput {
		in := job
		in.Sources = append([]string(nil), job.Sources...)
		f(&in)
		return in
	}
	tests := []struct {
		name     string
		in       config.SandboxInput
		conflict bool
		msg      string
	}{
		{"config name", with(func(in *config.SandboxInput) { in.Name = "a" }), true, `sandbox "a": name already taken`},
		{"overlapping source", with(func(in *config.SandboxInput) { in.Sources = []string{"10.2.0.0/24"} }), true, "overlap"},
		{"bad domain", with(func(in *config.SandboxInput) { in.Policy.AllowDomains = []string{"a.*.b"} }), false,
			`sandbox "job": allow_domains[0] "a.*.b": a wildcard may only be the whole leftmost label`},
		{"bad source", with(func(in *config.SandboxInput) { in.Sources = []string{"10.3.0.1/8"} }), false, `sources[0] "10.3.0.1/8"`},
		{"no interface", with(func(in *config.SandboxInput) { in.Interface = "" }), false, "interface is required"},
		{"lists in deny-all", with(func(in *config.SandboxInput) { in.Policy.Mode = policy.ModeDenyAll }), false, "allow_domains"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.c.AddSandbox(ctx, tt.in)
			if err == nil || errors.Is(err, ErrConflict) != tt.conflict || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("AddSandbox = %v, want conflict=%v with %q", err, tt.conflict, tt.msg)
			}
		})
	}
	r.fail = true
	if _, err := r.c.AddSandbox(ctx, job); !errors.Is(err, ErrApply) {
		t.Fatalf("AddSandbox with a failing kernel = %v, want ErrApply", err)
	}
	if persisted, err := NewStore(dir).LoadSandboxes(config.Host{}); err != nil || len(persisted.list) != 0 {
		t.Errorf("a refused change was persisted: %v, %v", persisted.list, err)
	}
	if _, err := r.c.Policy("job"); !errors.Is(err, ErrUnknownSandbox) {
		t.Errorf("a refused sandbox is listed: %v", err)
	}
}

// An API sandbox may join a config sandbox's interface (a bridge) with
// sources of its own.
func TestAddSandboxSharesInterface(t *testing.T) {
	r := newLifecycleRig(t, t.TempDir())
	in := job
	in.Interface = "veth-b"
	if _, err := r.c.AddSandbox(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.names, ",") != "a,b,job" {
		t.Fatalf("kernel has %v", r.names)
	}
}
