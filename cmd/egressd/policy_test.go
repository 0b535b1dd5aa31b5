package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/admin"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/policy"
)

// serveAdmin runs the admin API for testdata/valid.toml on a socket, with
// a kernel that installs nothing, and returns the socket's path.
func serveAdmin(t *testing.T) string {
	t.Helper()
	cfg, err := config.Load(valid)
	if err != nil {
		t.Fatal(err)
	}
	noKernel := func(context.Context, *config.Config, *policy.Set, []string) error { return nil }
	ctl, err := control.New(cfg, control.NewStore(t.TempDir()), control.Hooks{Kernel: noKernel}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "admin.sock")
	s, err := admin.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Start(admin.NewHandler(ctl, admin.Parts{}, nil))
	return path
}

func TestPolicy(t *testing.T) {
	sock := serveAdmin(t)
	dir := t.TempDir()
	lock := filepath.Join(dir, "lock.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(lock, []byte(`{"mode":"custom","allow_domains":["pkg.test"]}`), 0o644)
	os.WriteFile(bad, []byte(`{"mode":"custom","allow_domains":["a.*.b"]}`), 0o644)
	p := func(args ...string) []string { return append([]string{"policy", "-socket", sock}, args...) }
	runCases(t, []cliCase{
		{name: "list", args: p("list"), errHas: nil,
			wantOut: "[\n  {\n    \"name\": \"sb1\",\n    \"mode\": \"custom\",\n    \"origin\": \"config\",\n    \"source\": \"config\",\n    \"flows\": 0\n  },\n" +
				"  {\n    \"name\": \"sb2\",\n    \"mode\": \"deny-all\",\n    \"origin\": \"config\",\n    \"source\": \"config\",\n    \"flows\": 0\n  },\n" +
				"  {\n    \"name\": \"sb3\",\n    \"mode\": \"allow-all\",\n    \"origin\": \"config\",\n    \"source\": \"config\",\n    \"flows\": 0\n  }\n]\n"},
		{name: "get", args: p("get", "-sandbox", "sb2"),
			wantOut: "{\n  \"mode\": \"deny-all\",\n  \"allow_domains\": [],\n  \"allow_cidrs\": [],\n  \"deny_cidrs\": []\n}\n"},
		{name: "set -f", args: p("set", "-sandbox", "sb3", "-f", lock),
			wantOut: "{\n  \"mode\": \"custom\",\n  \"allow_domains\": [\n    \"pkg.test\"\n  ],\n  \"allow_cidrs\": [],\n  \"deny_cidrs\": []\n}\n"},
		{name: "set -mode", args: p("set", "-sandbox", "sb1", "-mode", "deny-all"),
			wantOut: "{\n  \"mode\": \"deny-all\",\n  \"allow_domains\": [],\n  \"allow_cidrs\": [],\n  \"deny_cidrs\": []\n}\n"},
		{name: "reset", args: p("reset", "-sandbox", "sb3"),
			wantOut: "{\n  \"mode\": \"allow-all\",\n  \"allow_domains\": [],\n  \"allow_cidrs\": [],\n  \"deny_cidrs\": [\n    \"203.0.113.0/24\"\n  ]\n}\n"},
		{name: "bad policy", args: p("set", "-sandbox", "sb1", "-f", bad), code: 1, noOut: true,
			errHas: []string{`egressd policy: allow_domains[0] "a.*.b": a wildcard may only be the whole leftmost label (HTTP 400)`}},
		{name: "bad mode", args: p("set", "-sandbox", "sb1", "-mode", "open"), code: 1, noOut: true,
			errHas: []string{`mode "open": not a mode`}},
		{name: "unknown sandbox", args: p("get", "-sandbox", "sb9"), code: 1, noOut: true,
			errHas: []string{`sandbox "sb9": unknown sandbox (HTTP 404)`}},
		{name: "missing file", args: p("set", "-sandbox", "sb1", "-f", filepath.Join(dir, "absent.json")), code: 1, noOut: true,
			errHas: []string{"absent.json", "no such file"}},
		{name: "no egressd", args: []string{"policy", "-socket", filepath.Join(dir, "none.sock"), "list"}, code: 1, noOut: true,
			errHas: []string{"none.sock", "is egressd running?"}},
		{name: "no action", args: p(), code: 2, noOut: true, errHas: []string{"want exactly one action", "usage: egressd policy"}},
		{name: "unknown action", args: p("show", "-sandbox", "sb1"), code: 2, noOut: true, errHas: []string{`unknown action "show"`}},
		{name: "no -sandbox", args: p("get"), code: 2, noOut: true, errHas: []string{"-sandbox is required"}},
		{name: "set without body", args: p("set", "-sandbox", "sb1"), code: 2, noOut: true,
			errHas: []string{"set wants one of -f FILE and -mode MODE"}},
		{name: "set with both", args: p("set", "-sandbox", "sb1", "-mode", "deny-all", "-f", lock), code: 2, noOut: true,
			errHas: []string{"set wants one of"}},
		{name: "get with -mode", args: p("get", "-sandbox", "sb1", "-mode", "deny-all"), code: 2, noOut: true,
			errHas: []string{"get takes no -f or -mode"}},
		{name: "list with -sandbox", args: p("list", "-sandbox", "sb1"), code: 2, noOut: true,
			errHas: []string{"list takes no"}},
		{name: "-h", args: []string{"policy", "-h"}, errHas: []string{"usage: egressd policy get|set|reset", "-socket string"}},
	})
	t.Run("set -f - reads stdin", func(t *testing.T) {
		cmd := exec.Command(binary, "policy", "-socket", sock, "set", "-sandbox", "sb2", "-f", "-")
		cmd.Stdin = strings.NewReader(`{"mode":"custom","allow_cidrs":["198.51.100.0/24"]}`)
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), `"198.51.100.0/24"`) {
			t.Errorf("%v: %s", err, out)
		}
	})
}
