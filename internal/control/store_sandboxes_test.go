package control

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

func apiInput(i int) config.SandboxInput {
	return config.SandboxInput{Name: fmt.Sprintf("job%d", i), Interface: fmt.Sprintf("veth-job%d", i),
		Sources: []string{fmt.Sprintf("10.3.%d.2", i)}, Policy: policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"pypi.org"}}}
}

func withInput(t *testing.T, a apiSandboxes, in config.SandboxInput) apiSandboxes {
	t.Helper()
	sb, err := config.CheckSandbox(in, config.Host{})
	if err != nil {
		t.Fatal(err)
	}
	return a.with(&sb, in)
}

func names(a apiSandboxes) []string {
	var out []string
	for _, sb := range a.list {
		out = append(out, sb.Name)
	}
	return out
}

// TestStoreSandboxFiles: each API sandbox is one file, written when it is
// created and removed when it is; the others are not touched, and a
// fresh Store loads them in creation order.
func TestStoreSandboxFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := NewStore(dir)
	a := apiSandboxes{inputs: map[string]config.SandboxInput{}}
	for _, i := range []int{3, 1, 2} {
		a = withInput(t, a, apiInput(i))
	}
	if err := s.Save(a, nil, nil); err != nil {
		t.Fatal(err)
	}
	ino := func(name string) uint64 {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, sandboxPath(name)))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	job1 := ino("job1")
	a = withInput(t, a.without("job3"), apiInput(3)) // re-created as it was: now the last
	a = a.without("job2")
	if err := s.Save(a, nil, nil); err != nil {
		t.Fatal(err)
	}
	if ino("job1") != job1 {
		t.Error("job1's file rewritten by a change to other sandboxes")
	}
	if _, err := os.Stat(filepath.Join(dir, sandboxPath("job2"))); !os.IsNotExist(err) {
		t.Errorf("job2's file after its removal: %v", err)
	}
	loaded, err := NewStore(dir).LoadSandboxes(config.Host{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(loaded); !slices.Equal(got, []string{"job1", "job3"}) {
		t.Errorf("loaded %v, want creation order [job1 job3]", got)
	}
	if _, err := os.Stat(filepath.Join(dir, legacyFile)); !os.IsNotExist(err) {
		t.Errorf("%s exists: %v", legacyFile, err)
	}
}

// TestStoreMovesLegacySandboxes: a sandboxes.json of an earlier egressd is
// loaded, and the next Save moves its sandboxes to one file each and
// removes it.
func TestStoreMovesLegacySandboxes(t *testing.T) {
	dir := t.TempDir()
	legacy := `[{"name":"job2","interface":"veth-job2","sources":["10.3.2.2"],"policy":{"mode":"deny-all"}},` +
		`{"name":"job1","interface":"veth-job1","sources":["10.3.1.2"],"policy":{"mode":"allow-all"}}]`
	if err := os.WriteFile(filepath.Join(dir, legacyFile), []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sandbox file a crash left beside it is stale: the legacy file rules.
	if err := os.MkdirAll(filepath.Join(dir, sandboxDir), 0o700); err != nil {
		t.Fatal(err)
	}
	stale := `{"seq":1,"name":"job9","interface":"veth-job9","sources":["10.3.9.2"],"policy":{"mode":"allow-all"}}`
	if err := os.WriteFile(filepath.Join(dir, sandboxPath("job9")), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(dir)
	a, err := s.LoadSandboxes(config.Host{})
	if err != nil || !slices.Equal(names(a), []string{"job2", "job1"}) {
		t.Fatalf("LoadSandboxes = %v, %v; want [job2 job1]", names(a), err)
	}
	if err := s.Save(a, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, legacyFile)); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", legacyFile, err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, sandboxDir))
	var files []string
	for _, e := range ents {
		files = append(files, e.Name())
	}
	if !slices.Equal(files, []string{"job1.json", "job2.json"}) {
		t.Errorf("sandboxes/ holds %v, want job1.json and job2.json", files)
	}
	again, err := NewStore(dir).LoadSandboxes(config.Host{})
	if err != nil || !slices.Equal(names(again), []string{"job2", "job1"}) {
		t.Errorf("after the move: %v, %v; want [job2 job1]", names(again), err)
	}
	if got := again.inputs["job2"].Policy.Mode; got != policy.ModeDenyAll {
		t.Errorf("job2's policy %s after the move, want deny-all", got)
	}
}

// TestStoreSandboxDirStrict: what the directory holds besides sandbox
// files is refused, naming the file; a crash's temp file is skipped.
func TestStoreSandboxDirStrict(t *testing.T) {
	good := `{"seq":1,"name":"job1","interface":"veth-job1","sources":["10.3.1.2"],"policy":{"mode":"allow-all"}}`
	tests := []struct{ file, data, want string }{
		{"job1.json~", good, `job1.json~: not a sandbox file`},
		{"job2.json", good, `holds sandbox "job1": the file must be named job1.json`},
		{"job1.json", strings.Replace(good, `"seq"`, `"sequence"`, 1), `unknown field "sequence"`},
		{"job1.json", strings.Replace(good, `"allow-all"`, `"custom","allow_domains":["a.*.b"]`, 1), `allow_domains[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, sandboxDir), 0o700)
			if err := os.WriteFile(filepath.Join(dir, sandboxDir, tt.file), []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := NewStore(dir).LoadSandboxes(config.Host{}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadSandboxes = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, sandboxDir), 0o700)
	tmp := filepath.Join(dir, sandboxDir, "job1.json"+tmpInfix+"123")
	os.WriteFile(tmp, []byte("{"), 0o600)
	if a, err := NewStore(dir).LoadSandboxes(config.Host{}); err != nil || a.Len() != 0 {
		t.Errorf("with a leftover temp file: %v, %v", names(a), err)
	}
}
