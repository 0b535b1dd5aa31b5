package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binary is egressd built once for the whole test run.
var binary string

const testVersion = "v0.0.0-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "egressd-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "egressd")
	build := exec.Command("go", "build", "-o", binary, "-ldflags", "-X main.version="+testVersion, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("go build: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func egressd(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run egressd %v: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
}

// cliCase is one command line and what it must produce: the exit status,
// stdout exactly (when wantOut is set) and text stderr must contain.
type cliCase struct {
	name    string
	args    []string
	code    int
	wantOut string
	errHas  []string
	outHas  []string // stdout must contain each
	noOut   bool     // stdout must be empty
}

func runCases(t *testing.T, cases []cliCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := egressd(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.wantOut != "" && r.stdout != tc.wantOut {
				t.Errorf("stdout %q, want %q", r.stdout, tc.wantOut)
			}
			if tc.noOut && r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			for _, s := range tc.outHas {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout %q does not contain %q", r.stdout, s)
				}
			}
			for _, s := range tc.errHas {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr %q does not contain %q", r.stderr, s)
				}
			}
		})
	}
}

const (
	valid   = "testdata/valid.toml"
	invalid = "testdata/invalid.toml"
	example = "../../examples/egressd.toml"
)

func TestValidate(t *testing.T) {
	runCases(t, []cliCase{
		{name: "valid", args: []string{"validate", "-config", valid}, wantOut: valid + ": ok (3 sandboxes)\n",
			errHas: []string{valid + ": warning: host.sandbox_interfaces is unset"}},
		{name: "example", args: []string{"validate", "-config", example}, wantOut: example + ": ok (3 sandboxes)\n"},
		{name: "invalid lists every problem", args: []string{"validate", "-config", invalid}, code: 1, noOut: true,
			errHas: []string{
				invalid + ":3: proxy.tproxy_port 0: port must be in 1..65535\n",
				invalid + `:10: sandbox "sb1": allow_domains[0] "a.*.b": `,
			}},
		{name: "missing file", args: []string{"validate", "-config", "testdata/absent.toml"}, code: 1, noOut: true,
			errHas: []string{"testdata/absent.toml", "no such file"}},
		{name: "no -config", args: []string{"validate"}, code: 2, noOut: true,
			errHas: []string{"-config is required", "usage: egressd validate -config FILE"}},
		{name: "stray argument", args: []string{"validate", "-config", valid, "extra"}, code: 2, noOut: true,
			errHas: []string{"unexpected argument extra"}},
		{name: "unknown flag", args: []string{"validate", "-conf", valid}, code: 2, noOut: true,
			errHas: []string{"flag provided but not defined: -conf"}},
		{name: "-h", args: []string{"validate", "-h"}, errHas: []string{"usage: egressd validate"}},
	})
}

func TestCheck(t *testing.T) {
	check := func(sandbox, target string) []string {
		return []string{"check", "-config", valid, "-sandbox", sandbox, target}
	}
	runCases(t, []cliCase{
		{name: "allowed name", args: check("sb1", "allowed.test:443"),
			wantOut: "allow: allowed.test matches allow_domains allowed.test\n"},
		{name: "wildcard name", args: check("sb1", "Deep.Sub.Wild.Test"),
			wantOut: "allow: deep.sub.wild.test matches allow_domains *.wild.test\n"},
		{name: "wildcard does not cover its base", args: check("sb1", "wild.test"), code: 1,
			wantOut: "deny: wild.test matches no rule (mode custom)\n"},
		{name: "unlisted name", args: check("sb1", "evil.test:80"), code: 1,
			wantOut: "deny: evil.test matches no rule (mode custom)\n"},
		{name: "malformed name", args: check("sb1", "bad..test"), code: 1,
			wantOut: "deny: invalid name \"bad..test\"\n"},
		{name: "address in allow_cidrs", args: check("sb1", "198.51.100.77:443"),
			wantOut: "allow: 198.51.100.77 in allow_cidrs 198.51.100.77/32\n"},
		{name: "bracketed ipv6 in allow_cidrs", args: check("sb1", "[2001:db8:77::1]:443"),
			wantOut: "allow: 2001:db8:77::1 in allow_cidrs 2001:db8:77::/64\n"},
		{name: "bare ipv6", args: check("sb1", "2001:db8:77::2"),
			wantOut: "allow: 2001:db8:77::2 in allow_cidrs 2001:db8:77::/64\n"},
		{name: "address in deny_cidrs", args: check("sb1", "198.51.100.200"), code: 1,
			wantOut: "deny: 198.51.100.200 in deny_cidrs 198.51.100.128/25\n"},
		{name: "address needing a name is denied", args: check("sb1", "198.51.100.9:443"), code: 1,
			wantOut: "deny: 198.51.100.9 matches no rule (mode custom)\n"},
		{name: "deny-all", args: check("sb2", "allowed.test"), code: 1, wantOut: "deny: mode deny-all\n"},
		{name: "allow-all name", args: check("sb3", "anything.test"), wantOut: "allow: mode allow-all\n"},
		{name: "allow-all deny_cidrs", args: check("sb3", "203.0.113.5:22"), code: 1,
			wantOut: "deny: 203.0.113.5 in deny_cidrs 203.0.113.0/24\n"},
		{name: "flags after the target", args: []string{"check", "allowed.test", "-sandbox", "sb1", "-config", valid},
			wantOut: "allow: allowed.test matches allow_domains allowed.test\n"},
		{name: "unknown sandbox", args: check("sb9", "allowed.test"), code: 2, noOut: true,
			errHas: []string{`has no sandbox "sb9" (it has "sb1", "sb2", "sb3")`}},
		{name: "invalid config", args: []string{"check", "-config", invalid, "-sandbox", "sb1", "allowed.test"},
			code: 2, noOut: true, errHas: []string{invalid + ":3: proxy.tproxy_port 0"}},
		{name: "no target", args: []string{"check", "-config", valid, "-sandbox", "sb1"}, code: 2, noOut: true,
			errHas: []string{"want exactly one TARGET", "usage: egressd check"}},
		{name: "two targets", args: []string{"check", "-config", valid, "-sandbox", "sb1", "a.test", "b.test"},
			code: 2, noOut: true, errHas: []string{"want exactly one TARGET"}},
		{name: "no -sandbox", args: []string{"check", "-config", valid, "a.test"}, code: 2, noOut: true,
			errHas: []string{"-sandbox is required"}},
		{name: "port out of range", args: check("sb1", "allowed.test:0"), code: 2, noOut: true,
			errHas: []string{"port must be in 1..65535"}},
		{name: "unclosed bracket", args: check("sb1", "[2001:db8::1"), code: 2, noOut: true,
			errHas: []string{"want host[:port]"}},
		{name: "name in brackets", args: check("sb1", "[allowed.test]:443"), code: 2, noOut: true,
			errHas: []string{"brackets hold an IPv6 address"}},
	})
}

func TestTopLevel(t *testing.T) {
	runCases(t, []cliCase{
		{name: "version", args: []string{"version"}, wantOut: "egressd " + testVersion + "\n"},
		{name: "version with an argument", args: []string{"version", "x"}, code: 2, noOut: true},
		{name: "help", args: []string{"help"}},
		{name: "help for a command", args: []string{"help", "check"}, noOut: true,
			errHas: []string{"usage: egressd check -config FILE | -socket PATH  -sandbox NAME TARGET", "-sandbox string"}},
		{name: "no arguments", args: nil, code: 2, noOut: true, errHas: []string{"Usage: egressd COMMAND"}},
		{name: "-h", args: []string{"-h"}, noOut: true, errHas: []string{"Usage: egressd COMMAND"}},
		{name: "--help", args: []string{"--help"}, noOut: true, errHas: []string{"Usage: egressd COMMAND"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, noOut: true,
			errHas: []string{`unknown command "frobnicate"`, "Usage: egressd COMMAND"}},
	})
	r := egressd(t, "help")
	for _, c := range append(commands, command{name: "help"}) {
		if !strings.Contains(r.stdout, "\n  "+c.name+" ") {
			t.Errorf("help does not list %q:\n%s", c.name, r.stdout)
		}
	}
}
