package iptables

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/netnstest"
)

// requireKernel skips t (fails it under CI=true) without root, ip(8) or
// nft(8).
func requireKernel(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs nft(8): %v", err)
		}
		t.Skipf("needs nft(8): %v", err)
	}
}

// kernelNamespace returns a fresh namespace and an Installer working in it.
func kernelNamespace(t *testing.T) (string, Installer) {
	t.Helper()
	requireKernel(t)
	ns := netnstest.NewNamespace(t)
	return ns, Installer{Run: InNetns(ns), NetNS: ns}
}

// inNS runs a command in ns and returns its output, failing the test on error.
func inNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := InNetns(ns)(context.Background(), "", args[0], args[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// installed reports what of egressd is in ns: tables named egressd, fwmark
// rules per family, routes in RouteTable per family.
func installed(t *testing.T, ns string) (tables, rules4, rules6, routes4, routes6 int) {
	t.Helper()
	tables = strings.Count(inNS(t, ns, "nft", "list", "tables"), "table inet "+Table+"\n")
	rules4 = strings.Count(inNS(t, ns, "ip", "-4", "rule", "show"), "fwmark 0x1e57 lookup 7767")
	rules6 = strings.Count(inNS(t, ns, "ip", "-6", "rule", "show"), "fwmark 0x1e57 lookup 7767")
	routes4 = strings.Count(inNS(t, ns, "ip", "-4", "route", "show", "table", "all"), "local default dev lo table 7767")
	routes6 = strings.Count(inNS(t, ns, "ip", "-6", "route", "show", "table", "all"), "local default dev lo table 7767")
	return
}

func TestKernelApplyTwiceCleanupTwice(t *testing.T) {
	ns, in := kernelNamespace(t)
	ctx := context.Background()
	sbs := []Sandbox{{Name: "sb1", Interface: "veth-sb1", Mode: ModeCustom,
		Sources: prefixes("10.231.0.2/32", "fd00:231::2/128"), AllowCIDRs: prefixes("198.51.100.0/24")}}
	for i := range 2 {
		if err := in.Apply(ctx, sbs, ports, Host{}); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
	}
	if tb, r4, r6, rt4, rt6 := installed(t, ns); tb != 1 || r4 != 1 || r6 != 1 || rt4 != 1 || rt6 != 1 {
		t.Fatalf("after two applies: tables %d, rules %d/%d, routes %d/%d; want one of each", tb, r4, r6, rt4, rt6)
	}
	table := inNS(t, ns, "nft", "list", "table", "inet", Table)
	for _, want := range []string{"map sandbox4 {", "map sandbox6 {", "set allow4 {", "set deny6 {",
		"elements = { 10.231.0.2 . 198.51.100.0/24 }", `"veth-sb1" . 10.231.0.2 : jump custom`, "chain custom {"} {
		if !strings.Contains(table, want) {
			t.Errorf("installed table lacks %q:\n%s", want, table)
		}
	}
	for i := range 2 {
		if err := in.Cleanup(ctx); err != nil {
			t.Fatalf("Cleanup #%d: %v", i+1, err)
		}
		if tb, r4, r6, rt4, rt6 := installed(t, ns); tb+r4+r6+rt4+rt6 != 0 {
			t.Fatalf("after Cleanup #%d: tables %d, rules %d/%d, routes %d/%d; want none", i+1, tb, r4, r6, rt4, rt6)
		}
	}
}

func TestKernelCleanupWithNothingInstalled(t *testing.T) {
	_, in := kernelNamespace(t)
	if err := in.Cleanup(context.Background()); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
}

func TestKernelReloadReplacesRuleset(t *testing.T) {
	ns, in := kernelNamespace(t)
	ctx := context.Background()
	sb := Sandbox{Name: "sb1", Interface: "veth-sb1", Mode: ModeAllowAll,
		Sources: prefixes("10.231.0.2/32"), AllowCIDRs: prefixes("203.0.113.0/24")}
	steps := []struct {
		name             string
		mode             Mode
		allow            []string
		want, wantAbsent []string
	}{
		{"allow-all", ModeAllowAll, []string{"203.0.113.0/24"},
			[]string{`"veth-sb1" . 10.231.0.2 : jump allow_all`}, []string{"203.0.113.0/24"}},
		{"custom", ModeCustom, []string{"198.51.100.0/25", "2001:db8::/48"},
			[]string{`"veth-sb1" . 10.231.0.2 : jump custom`, "elements = { 10.231.0.2 . 198.51.100.0/25 }"},
			[]string{"jump allow_all", "203.0.113.0/24", "2001:db8::/48"}},
		{"deny-all", ModeDenyAll, nil,
			[]string{`"veth-sb1" . 10.231.0.2 : jump deny_all`},
			[]string{"jump custom", "198.51.100.0/25"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			sb.Mode, sb.AllowCIDRs = st.mode, prefixes(st.allow...)
			if err := in.Apply(ctx, []Sandbox{sb}, ports, Host{}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			table := inNS(t, ns, "nft", "list", "table", "inet", Table)
			for _, w := range st.want {
				if !strings.Contains(table, w) {
					t.Errorf("table lacks %q:\n%s", w, table)
				}
			}
			for _, w := range st.wantAbsent {
				if strings.Contains(table, w) {
					t.Errorf("table still has %q:\n%s", w, table)
				}
			}
		})
	}
}

// A load that fails must leave the previous ruleset in place: the delete at
// the top of the script is part of the same transaction.
func TestKernelFailedLoadKeepsOldRuleset(t *testing.T) {
	ns, in := kernelNamespace(t)
	ctx := context.Background()
	sbs := []Sandbox{{Name: "old", Interface: "veth-sb1", Mode: ModeAllowAll, Sources: prefixes("10.231.0.2/32")}}
	if err := in.Apply(ctx, sbs, ports, Host{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// The heartbeat elements' remaining time differs between listings.
	expires := regexp.MustCompile(` expires \S+`)
	list := func() string { return expires.ReplaceAllString(inNS(t, ns, "nft", "list", "table", "inet", Table), "") }
	before := list()
	broken := Installer{Run: func(ctx context.Context, stdin, name string, args ...string) ([]byte, error) {
		if name == "nft" {
			stdin = strings.Replace(stdin, "counter drop", "counter dropp", 1)
		}
		return in.Run(ctx, stdin, name, args...)
	}}
	sbs[0].Name, sbs[0].Mode = "new", ModeDenyAll
	if err := broken.Apply(ctx, sbs, ports, Host{}); err == nil || !strings.Contains(err.Error(), "dropp") {
		t.Fatalf("Apply with a broken script: err = %v, want nft's syntax error", err)
	}
	if after := list(); after != before {
		t.Errorf("ruleset changed by a failed load:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestKernelGoldenFilesLoad(t *testing.T) {
	ns, _ := kernelNamespace(t)
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.nft"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			inNS(t, ns, "nft", "-f", f)
			if tb, _, _, _, _ := installed(t, ns); tb != 1 {
				t.Errorf("%d tables after loading %s, want 1", tb, f)
			}
		})
	}
}
