package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// portSandbox allows names on some ports only.
const portSandbox = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "custom"
allow_domains = ["allowed.test:443", "*.wild.test:80"]
`

// TestDomainPorts: an allow_domains entry with ports admits the name on
// those ports only, over TLS and plain HTTP, while DNS still answers the
// name; check judges the port.
func TestDomainPorts(t *testing.T) {
	e := newEnv(t, portSandbox)
	probes{
		e.tlsProbe(e.tp.Sandbox, "port-443"),
		{name: "http x.wild.test:80", send: func() { e.curl("--resolve", "x.wild.test:80:198.51.100.11", "http://x.wild.test/port-w80") },
			arrived: func() bool { return len(e.in.rec.matching("/port-w80")) > 0 }},
		e.digProbe("allowed.test", "198.51.100.10"),
	}.reach(t, "allowed ports")
	probes{
		{name: "http allowed.test:80", send: func() { e.curl("--resolve", "allowed.test:80:198.51.100.10", "http://allowed.test/port-80") },
			arrived: func() bool { return len(e.in.rec.matching("/port-80")) > 0 }},
		{name: "tls x.wild.test:443", send: func() { e.curl("--resolve", "x.wild.test:443:198.51.100.11", "https://x.wild.test/port-w443") },
			arrived: func() bool { return len(e.in.rec.matching("/port-w443")) > 0 }},
	}.none(t, "other ports")
	out, _ := e.curl("-i", "--resolve", "allowed.test:80:198.51.100.10", "http://allowed.test/port-80-again")
	if !strings.Contains(out, "403 Forbidden") || !strings.Contains(out, "X-Egressd-Deny: no-match") {
		t.Errorf("plain HTTP on a port the entry does not list:\n%s", out)
	}
	sock := filepath.Join(e.dir, "admin.sock")
	for target, want := range map[string]string{
		"allowed.test:443": "allow: allowed.test matches allow_domains allowed.test:443",
		"allowed.test:80":  "deny: allowed.test matches no rule",
		"a.wild.test:80":   "allow: a.wild.test matches allow_domains *.wild.test:80",
	} {
		out, _ := e.egressd("check", "-socket", sock, "-sandbox", "sb1", target)
		if !strings.HasPrefix(out, want) {
			t.Errorf("check %s: %q, want %q", target, out, want)
		}
	}
	if got, _ := e.egressd("policy", "get", "-socket", sock, "-sandbox", "sb1"); !strings.Contains(strings.Join(strings.Fields(got), ""), `"allow_domains":["allowed.test:443","*.wild.test:80"]`) {
		t.Errorf("policy get: %s", got)
	}
}
