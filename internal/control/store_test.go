package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

// TestStoreLoadStrict: a state file that would start egressd looser than
// what was persisted is refused, naming the problem.
func TestStoreLoadStrict(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"misspelt key", `{"b":{"mode":"custom","deny_cidr":["10.0.0.0/8"]}}`, `unknown field "deny_cidr"`},
		{"null", `null`, "not a JSON object"},
		{"invalid policy", `{"b":{"mode":"custom","allow_domains":["a.*.b"]}}`, `sandbox "b": allow_domains[0]`},
		{"lists in deny-all", `{"b":{"mode":"deny-all","allow_cidrs":["10.0.0.0/8"]}}`, `sandbox "b": allow_cidrs is not allowed`},
		{"corrupt", `{"b":`, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewStore(dir).Load()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	dir := t.TempDir()
	s := NewStore(filepath.Join(dir, "new", "state"))
	want := map[string]policy.Spec{"b": {Mode: policy.ModeDenyAll}}
	if err := s.Save(apiSandboxes{}, want, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(); err != nil || got["b"].Mode != policy.ModeDenyAll {
		t.Errorf("Load after Save = %v, %v", got, err)
	}
}

// TestKernelFailureRestores: when installing a change fails, the running
// set's rules are installed again, the persisted state is the old one and
// the policy in force is unchanged.
func TestKernelFailureRestores(t *testing.T) {
	cfg, err := config.Parse("egressd.toml", []byte(listConfig))
	if err != nil {
		t.Fatal(err)
	}
	var installed []*policy.Set
	fail := false
	kernel := func(_ context.Context, _ *config.Config, set *policy.Set, _ []string) error {
		installed = append(installed, set)
		if fail {
			fail = false
			return errors.New("nft: timeout")
		}
		return nil
	}
	store := NewStore(t.TempDir())
	c, err := New(cfg, store, Hooks{Kernel: kernel}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	running := c.Sandboxes()
	fail = true
	if err := c.SetPolicy(context.Background(), "b", policy.Spec{Mode: policy.ModeAllowAll}); err == nil {
		t.Fatal("SetPolicy succeeded with a failing kernel")
	}
	if len(installed) != 2 || installed[1] != running {
		t.Errorf("kernel calls %d, last %p; want the running set %p installed again", len(installed), installed[len(installed)-1], running)
	}
	if c.Sandboxes() != running {
		t.Error("the policy in force changed")
	}
	if got, err := store.Load(); err != nil || len(got) != 0 {
		t.Errorf("persisted after the failure: %v, %v; want nothing", got, err)
	}
}

// seen records the sets a component is handed.
type seen []*policy.Set

func (s *seen) SetSandboxes(set *policy.Set) { *s = append(*s, set) }

// TestSaveFailureRestores: the state files are written while the kernel
// installs the change; when writing them fails, the kernel gets the
// running set back, no component sees the change and the policy in force
// is unchanged.
func TestSaveFailureRestores(t *testing.T) {
	cfg, err := config.Parse("egressd.toml", []byte(listConfig))
	if err != nil {
		t.Fatal(err)
	}
	var installed []*policy.Set
	kernel := func(_ context.Context, _ *config.Config, set *policy.Set, _ []string) error {
		installed = append(installed, set)
		return nil
	}
	dir := filepath.Join(t.TempDir(), "state")
	c, err := New(cfg, NewStore(dir), Hooks{Kernel: kernel}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // not a directory: every Save fails
		t.Fatal(err)
	}
	var comp seen
	c.AddComponent(&comp)
	running := c.Sandboxes()
	err = c.SetPolicy(context.Background(), "b", policy.Spec{Mode: policy.ModeAllowAll})
	if !errors.Is(err, ErrApply) || !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("SetPolicy with an unwritable state dir = %v, want ErrApply and ENOTDIR", err)
	}
	if len(installed) != 2 || installed[0] == running || installed[1] != running {
		t.Errorf("kernel got %d sets; want the change, then the running set again", len(installed))
	}
	if len(comp) != 0 {
		t.Errorf("a component saw %d sets; want none", len(comp))
	}
	if c.Sandboxes() != running {
		t.Error("the policy in force changed")
	}
}

// TestStoreSaveBatch: one Save persists the API's sandboxes, the
// overrides and the guarded interfaces, and a later Save rewrites only the
// files whose content changes (a fresh Store, having loaded them, too).
func TestStoreSaveBatch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := NewStore(dir)
	sb, err := config.CheckSandbox(job, config.Host{})
	if err != nil {
		t.Fatal(err)
	}
	added := apiSandboxes{inputs: map[string]config.SandboxInput{}}.with(&sb, job)
	overrides := map[string]policy.Spec{"job": {Mode: policy.ModeDenyAll}}
	if err := s.Save(added, overrides, []string{"veth-job"}); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store, wantMode policy.Mode) {
		t.Helper()
		a, err := s.LoadSandboxes(config.Host{})
		if err != nil || a.Len() != 1 || !a.has("job") {
			t.Errorf("LoadSandboxes = %+v, %v", a, err)
		}
		o, err := s.Load()
		if err != nil || o["job"].Mode != wantMode {
			t.Errorf("Load = %v, %v, want job %s", o, err, wantMode)
		}
		g, err := s.LoadGuarded()
		if err != nil || !slices.Equal(g, []string{"veth-job"}) {
			t.Errorf("LoadGuarded = %q, %v", g, err)
		}
	}
	check(s, policy.ModeDenyAll)
	ino := func(name string) uint64 {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	before := map[string]uint64{}
	for _, f := range []string{stateFile, guardedFile, sandboxPath("job")} {
		before[f] = ino(f)
	}
	fresh := NewStore(dir)
	check(fresh, policy.ModeDenyAll)
	overrides = map[string]policy.Spec{"job": {Mode: policy.ModeAllowAll}}
	if err := fresh.Save(added, overrides, []string{"veth-job"}); err != nil {
		t.Fatal(err)
	}
	check(NewStore(dir), policy.ModeAllowAll)
	for f, was := range before {
		if changed := ino(f) != was; changed != (f == stateFile) {
			t.Errorf("%s rewritten: %v, want %v", f, changed, f == stateFile)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("state dir holds %d entries, want policies.json, guarded.json and sandboxes/: %v", len(entries), entries)
	}
}
