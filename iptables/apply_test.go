package iptables

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// fakeHost plays ip(8) and nft(8) for Installer: it counts fwmark rules per
// family and records every command line.
type fakeHost struct {
	rules    map[string]int  // "-4"/"-6" → copies of the fwmark rule
	routes   map[string]bool // "-4"/"-6" → the local route is in RouteTable
	stuck    bool            // "ip rule del" succeeds but removes nothing
	nftErr   error
	calls    []string
	nftInput []string
}

func newFakeHost() *fakeHost { return &fakeHost{rules: map[string]int{}, routes: map[string]bool{}} }

func (h *fakeHost) run(_ context.Context, stdin, name string, args ...string) ([]byte, error) {
	h.calls = append(h.calls, strings.Join(append([]string{name}, args...), " "))
	if name == "nft" {
		h.nftInput = append(h.nftInput, stdin)
		return nil, h.nftErr
	}
	if len(args) < 3 {
		return nil, nil
	}
	fam := args[0]
	if args[1] == "route" {
		return h.route(fam, args[2])
	}
	switch args[2] {
	case "show":
		return []byte(strings.Repeat("7767:\tfrom all fwmark 0x1e57 lookup 7767\n", h.rules[fam])), nil
	case "add":
		h.rules[fam]++
	case "del":
		if h.rules[fam] == 0 {
			return nil, errors.New("RTNETLINK answers: No such file or directory")
		}
		if !h.stuck {
			h.rules[fam]--
		}
	}
	return nil, nil
}

func (h *fakeHost) route(fam, verb string) ([]byte, error) {
	switch verb {
	case "show":
		if h.routes[fam] {
			return []byte("local default dev lo table 7767 scope host\n"), nil
		}
	case "replace":
		h.routes[fam] = true
	case "flush":
		if !h.routes[fam] {
			return nil, errors.New("Error: ipv4: FIB table does not exist.")
		}
		h.routes[fam] = false
	}
	return nil, nil
}

var testSandboxes = []Sandbox{{Name: "sb1", Interface: "veth-sb1", Mode: ModeCustom, Sources: prefixes("10.0.0.2/32")}}

func TestApplyCommands(t *testing.T) {
	h := newFakeHost()
	in := Installer{Run: h.run}
	if err := in.Apply(context.Background(), testSandboxes, ports, Host{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := []string{
		"ip -4 rule show fwmark 0x1e57 table 7767 pref 7767",
		"ip -4 rule add fwmark 0x1e57 table 7767 pref 7767",
		"ip -4 route replace local 0.0.0.0/0 dev lo table 7767",
		"ip -6 rule show fwmark 0x1e57 table 7767 pref 7767",
		"ip -6 rule add fwmark 0x1e57 table 7767 pref 7767",
		"ip -6 route replace local ::/0 dev lo table 7767",
		"nft -f -",
	}
	if !slices.Equal(h.calls, want) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(h.calls, "\n"), strings.Join(want, "\n"))
	}
	script, _ := Render(testSandboxes, ports, Host{})
	if len(h.nftInput) != 1 || h.nftInput[0] != script {
		t.Errorf("nft got %q, want the rendered script", h.nftInput)
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	h := newFakeHost()
	in := Installer{Run: h.run}
	for i := range 3 {
		if err := in.Apply(context.Background(), testSandboxes, ports, Host{}); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
	}
	if h.rules["-4"] != 1 || h.rules["-6"] != 1 {
		t.Errorf("after 3 applies: rules = %v, want one per family", h.rules)
	}
}

func TestApplyErrors(t *testing.T) {
	t.Run("invalid input runs nothing", func(t *testing.T) {
		h := newFakeHost()
		err := Installer{Run: h.run}.Apply(context.Background(), testSandboxes, Ports{}, Host{})
		if err == nil || len(h.calls) != 0 {
			t.Fatalf("err = %v, calls = %q; want an error and no command", err, h.calls)
		}
	})
	t.Run("nft failure is wrapped", func(t *testing.T) {
		h := newFakeHost()
		h.nftErr = errors.New("nft -f -: exit status 1: Error: syntax error")
		err := Installer{Run: h.run}.Apply(context.Background(), testSandboxes, ports, Host{})
		if err == nil || !strings.Contains(err.Error(), "iptables: load ruleset: nft -f -: exit status 1: Error: syntax error") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCleanup(t *testing.T) {
	cases := []struct {
		name    string
		rules   int
		stuck   bool
		wantErr string
	}{
		{"nothing installed", 0, false, ""},
		{"one copy", 1, false, ""},
		{"several copies", 3, false, ""},
		{"rule never goes away", 1, true, "still present after 64 deletes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost()
			h.rules["-4"], h.rules["-6"], h.stuck = tc.rules, tc.rules, tc.stuck
			h.routes["-4"], h.routes["-6"] = tc.rules > 0, tc.rules > 0
			err := Installer{Run: h.run}.Cleanup(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Cleanup err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			if h.rules["-4"] != 0 || h.rules["-6"] != 0 {
				t.Errorf("rules left: %v", h.rules)
			}
			if h.calls[0] != "nft -f -" || h.nftInput[0] != removeTables {
				t.Errorf("first command %q with %q, want the tables removed first", h.calls[0], h.nftInput[0])
			}
			if h.routes["-4"] || h.routes["-6"] {
				t.Errorf("routes left: %v", h.routes)
			}
		})
	}
}

func TestHasTable(t *testing.T) {
	cases := []struct {
		name, routes string
		want         bool
	}{
		{"none", "", false},
		{"ours", "local default dev lo table 7767 scope host\n", true},
		{"other tables", "local 127.0.0.1 dev lo table local proto kernel\n10.0.0.0/8 via 10.1.1.1 dev x table 77670\n", false},
		{"number elsewhere", "7767.0.0.1 dev lo metric 7767\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := hasTable([]byte(tc.routes), RouteTable); got != tc.want {
				t.Errorf("hasTable = %v, want %v", got, tc.want)
			}
		})
	}
}
