package e2e

import (
	"strings"
	"testing"
)

// Names only the DNS tests use. bound.allowed.test points at an address no
// other name has; unbound.allowed.test is its twin that the sandbox never
// resolves.
func init() {
	zone["bound.allowed.test."] = []string{"198.51.100.78"}
	zone["unbound.allowed.test."] = []string{"198.51.100.78"}
	// IANA special-purpose ranges: internal, never answered for a name.
	zone["special.allowed.test."] = []string{"198.18.0.5", "192.0.0.170", "240.0.0.1", "255.255.255.255",
		"198.51.100.10", "100::1", "2001:2::1", "5f00::1", "2001:db8::10"}
}

// dnsServers are the addresses the sandbox sends queries to: the real
// upstream, the firewall itself and addresses where no resolver runs.
// egressd answers all of them, from the address asked.
var dnsServers = []string{"198.51.100.53", "10.231.0.1", "203.0.113.99", "fd00:231::1", "2001:db8::99"}

// dig asks server for name/qtype from the sandbox, over TCP when tcp is
// set, and returns dig's output (header comments and answer section).
func (e *env) dig(server, name, qtype string, tcp bool) (string, error) {
	args := []string{"dig", "+noall", "+comments", "+answer", "+tries=1", "+time=2", "@" + server, name, qtype}
	if tcp {
		args = append(args, "+tcp")
	}
	return e.sandbox(args...)
}

// digCase is one question and what the sandbox must see.
type digCase struct {
	name, qtype string
	status      string // "" means no reply at all
	answer      string // a substring of the answer section, if any
}

func (e *env) checkDig(t *testing.T, cases []digCase) {
	t.Helper()
	for _, server := range dnsServers {
		for _, tcp := range []bool{false, true} {
			proto := "udp"
			if tcp {
				proto = "tcp"
			}
			for _, c := range cases {
				t.Run(proto+"/"+server+"/"+c.name+"/"+c.qtype, func(t *testing.T) {
					out, err := e.dig(server, c.name, c.qtype, tcp)
					if c.status == "" {
						if err == nil || strings.Contains(out, "status:") {
							t.Fatalf("got a reply, want none: %v\n%s", err, out)
						}
						return
					}
					if err != nil || !strings.Contains(out, "status: "+c.status) || !strings.Contains(out, c.answer) {
						t.Fatalf("want status %s with %q: %v\n%s", c.status, c.answer, err, out)
					}
				})
			}
		}
	}
}

func TestDNSCustom(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	e.checkDig(t, []digCase{
		{"allowed.test", "A", "NOERROR", "198.51.100.10"},
		{"allowed.test", "AAAA", "NOERROR", "2001:db8::10"},
		{"x.wild.test", "A", "NOERROR", "198.51.100.11"},
		{"missing.allowed.test", "A", "NXDOMAIN", ""},
		{"evil.test", "A", "REFUSED", ""},
		{"wild.test", "A", "REFUSED", ""},
		{"allowed.test.evil.test", "A", "REFUSED", ""},
		{"allowed.test", "ANY", "REFUSED", ""},
		{"allowed.test", "NULL", "REFUSED", ""},
		// inside-deny.test resolves only into deny_cidrs: the address is removed.
		{"inside-deny.test", "A", "NOERROR", ""},
	})
	e.waitEvent("dns q=allowed.test. type=A")
	for _, leak := range []string{"q=evil.test.", "q=wild.test.", "q=allowed.test.evil.test.", "type=ANY", "type=NULL"} {
		e.noEvents("dns", leak)
	}
	if out, _ := e.dig("198.51.100.53", "inside-deny.test", "A", false); strings.Contains(out, "198.51.100.130") {
		t.Errorf("answer inside deny_cidrs reached the sandbox:\n%s", out)
	}
}

func TestDNSAllowAll(t *testing.T) {
	e := newEnv(t, allowAllSandbox+`deny_cidrs = ["198.51.100.128/25"]`)
	e.checkDig(t, []digCase{
		{"evil.test", "A", "NOERROR", "198.51.100.66"},
		{"allowed.test", "AAAA", "NOERROR", "2001:db8::10"},
		{"missing.test", "A", "NXDOMAIN", ""},
		{"allowed.test", "ANY", "REFUSED", ""},
	})
	e.noEvents("dns", "type=ANY")
}

func TestDNSDenyAll(t *testing.T) {
	e := newEnv(t, denyAllSandbox)
	e.checkDig(t, []digCase{{"allowed.test", "A", "", ""}})
	e.noEvents("dns")
}

// TestDNSBinding: a flow to an address the sandbox learned through
// egressd's resolver is dialled as is, even when egressd could not resolve
// the name itself any more. The twin name that the sandbox never resolved,
// pointing at the same address, is denied: nothing else admits the flow.
func TestDNSBinding(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	out, err := e.dig("198.51.100.53", "bound.allowed.test", "A", false)
	if err != nil || !strings.Contains(out, "198.51.100.78") {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	// From now on the upstream resolver is unreachable.
	e.tp.Run(e.tp.Internet, "nft", "add table inet blockdns")
	e.tp.Run(e.tp.Internet, "nft", "add chain inet blockdns in { type filter hook input priority 0 ; }")
	e.tp.Run(e.tp.Internet, "nft", "add rule inet blockdns in th dport 53 drop")

	out, err = e.curl("--resolve", "bound.allowed.test:443:198.51.100.78", "https://bound.allowed.test/")
	if err != nil || !strings.Contains(out, "hello bound.allowed.test from 198.51.100.78:443") {
		t.Fatalf("flow to the bound address: %v: %q", err, out)
	}
	e.waitEvent("tls 198.51.100.78:443 sni=bound.allowed.test")

	if out, err := e.curl("--resolve", "unbound.allowed.test:443:198.51.100.78", "https://unbound.allowed.test/"); err == nil {
		t.Fatalf("flow for a name the sandbox never resolved passed: %q", out)
	}
	e.noEvents("sni=unbound.allowed.test")
}

// TestDNSPlantedRecords: an upstream that adds an address for an allowed
// name to the authority and additional sections of another answer gets
// neither to the sandbox (nor bound): only the answer's chain passes.
func TestDNSPlantedRecords(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	for _, tcp := range []bool{false, true} {
		args := []string{"dig", "+noall", "+comments", "+answer", "+authority", "+additional", "+tries=1", "+time=2",
			"@198.51.100.53", "plant.allowed.test", "A"}
		if tcp {
			args = append(args, "+tcp")
		}
		out, err := e.sandbox(args...)
		if err != nil || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "198.51.100.10") {
			t.Fatalf("dig %v: want the answer: %v\n%s", args, err, out)
		}
		if strings.Contains(out, "198.51.100.66") {
			t.Errorf("leak: the planted address reached the sandbox (tcp=%v):\n%s", tcp, out)
		}
	}
	e.waitEvent("dns q=plant.allowed.test.")
}

// TestDNSSpecialPurposeAnswers: with dns.block_private_answers, answers in
// IANA's special-purpose ranges (benchmarking, IETF assignments, reserved,
// limited broadcast, discard-only, …) are removed; the name's public
// addresses stay.
func TestDNSSpecialPurposeAnswers(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	for qtype, keep := range map[string]string{"A": "198.51.100.10", "AAAA": "2001:db8::10"} {
		out, err := e.dig("198.51.100.53", "special.allowed.test", qtype, false)
		if err != nil || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, keep) {
			t.Fatalf("dig %s: want %s kept: %v\n%s", qtype, keep, err, out)
		}
		for _, bad := range []string{"198.18.0.5", "192.0.0.170", "240.0.0.1", "255.255.255.255", "100::1", "2001:2::1", "5f00::1"} {
			if strings.Contains(out, "\t"+bad+"\n") {
				t.Errorf("dig %s: %s answered:\n%s", qtype, bad, out)
			}
		}
	}
}
