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

// jam replaces a sandbox's file by a non-empty directory, so that removing
// it fails (ENOTEMPTY): a failure, or a crash, at that step of a Save. It
// returns the file's content; unjam puts the file back.
func jam(t *testing.T, dir, name string) []byte {
	t.Helper()
	p := filepath.Join(dir, sandboxPath(name))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	return data
}

func unjam(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, sandboxPath(name))
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if data != nil {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStoreRemovalBeforeOverride: removing a sandbox and its override, a
// crash before the sandbox's file is gone must not restart it with the
// policy it was created with and no override.
func TestStoreRemovalBeforeOverride(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(dir)
	in := apiInput(1)
	in.Policy = policy.Spec{Mode: policy.ModeAllowAll}
	a := withInput(t, apiSandboxes{inputs: map[string]config.SandboxInput{}}, in)
	if err := s.Save(a, map[string]policy.Spec{"job1": {Mode: policy.ModeDenyAll}}, nil); err != nil {
		t.Fatal(err)
	}
	data := jam(t, dir, "job1")
	if err := s.Save(a.without("job1"), nil, nil); err == nil {
		t.Fatal("Save with the removal failing succeeded")
	}
	unjam(t, dir, "job1", data) // the disk of a process that died at the removal
	r := NewStore(dir)
	got, err := r.LoadSandboxes(config.Host{})
	if err != nil {
		t.Fatal(err)
	}
	overrides, err := r.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.has("job1") && overrides["job1"].Mode != policy.ModeDenyAll {
		t.Errorf("job1 restarts without its deny-all override (overrides %v)", overrides)
	}
}

// TestStoreFailedSaveWrittenBack: after a Save that failed half-way, the
// write-back of the running state makes the directory hold exactly it:
// a sandbox file renamed into place before the failure is removed, one
// removed is written again.
func TestStoreFailedSaveWrittenBack(t *testing.T) {
	for _, next := range []string{"add job3, remove job2", "remove both"} {
		t.Run(next, func(t *testing.T) {
			dir := t.TempDir()
			s := NewStore(dir)
			a := withInput(t, withInput(t, apiSandboxes{inputs: map[string]config.SandboxInput{}}, apiInput(1)), apiInput(2))
			if err := s.Save(a, nil, nil); err != nil {
				t.Fatal(err)
			}
			data := jam(t, dir, "job2")
			b := apiSandboxes{inputs: map[string]config.SandboxInput{}}
			if next == "add job3, remove job2" {
				b = withInput(t, a.without("job2"), apiInput(3))
			}
			if err := s.Save(b, nil, nil); err == nil {
				t.Fatal("Save with a removal failing succeeded")
			}
			unjam(t, dir, "job2", data)
			if err := s.Save(a, nil, nil); err != nil { // what restoreState does
				t.Fatalf("write-back: %v", err)
			}
			got, err := NewStore(dir).LoadSandboxes(config.Host{})
			if err != nil || !slices.Equal(names(got), []string{"job1", "job2"}) {
				t.Errorf("after the write-back: %v, %v; want [job1 job2]", names(got), err)
			}
		})
	}
}

// TestStoreNameLikeTempFile: a sandbox name may hold ".tmp-".
func TestStoreNameLikeTempFile(t *testing.T) {
	dir := t.TempDir()
	in := apiInput(1)
	in.Name = "ci.tmp-1"
	if err := NewStore(dir).Save(withInput(t, apiSandboxes{inputs: map[string]config.SandboxInput{}}, in), nil, nil); err != nil {
		t.Fatal(err)
	}
	got, err := NewStore(dir).LoadSandboxes(config.Host{})
	if err != nil || !got.has("ci.tmp-1") {
		t.Errorf("LoadSandboxes = %v, %v; want ci.tmp-1", names(got), err)
	}
}
