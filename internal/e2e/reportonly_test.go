package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/activity"
	"github.com/egressd/egressd/internal/netnstest"
	"github.com/egressd/egressd/policy"
)

// learnSandbox is sb1 in report-only mode with nothing allowed: every flow
// it makes is a would-deny, and the policy is to be learnt.
const learnSandbox = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "custom"
audit     = true
deny_cidrs = ["198.51.100.128/25"]
`

// workload is what the learning sandbox does: DNS, TLS and plain HTTP by
// name, raw TCP that is not HTTP, UDP and ICMP to an address.
func (e *env) workload(marker string) probes {
	rec := e.in.rec
	return probes{
		e.tlsProbe(e.tp.Sandbox, marker+"-tls"),
		{
			name: "http x.wild.test",
			send: func() {
				e.curl("--resolve", "x.wild.test:80:198.51.100.11", "http://x.wild.test/"+marker+"-http")
			},
			arrived: func() bool { return len(rec.matching("host=x.wild.test", "/"+marker+"-http")) > 0 },
		},
		e.digProbe("sub.allowed.test", "198.51.100.10"),
		// A line protocol starting with a letter: the HTTP gate reads
		// it first, finds no request, and report-only relays it raw.
		e.tcpProbe(e.tp.Sandbox, "198.51.100.77:9000", rec, "PING "+marker+"-tcp"),
		e.udpProbe(e.tp.Sandbox, "198.51.100.77:9001", rec, marker+"-udp"),
		e.pingProbe(e.tp.Sandbox, "198.51.100.77", e.tp.Internet),
	}
}

// digProbe asks the resolver for name; it arrived when the answer holds
// addr (answers are cached: the upstream may not see the question again).
func (e *env) digProbe(name, addr string) probe {
	var out string
	return probe{
		name:    "dns " + name,
		send:    func() { out, _ = e.sandbox("dig", "+short", "+time=1", "+tries=1", "@198.51.100.53", name) },
		arrived: func() bool { return strings.Contains(out, addr) },
	}
}

// TestReportOnlyLearnsThePolicy: a sandbox in report-only mode reaches
// everything its policy would deny, each flow reported as would-deny with
// its rule; `egressd suggest` turns what it did into a policy; once that
// policy is set, the same workload passes, anything else is denied, and a
// flow opened in report-only mode that the new policy denies is cut.
func TestReportOnlyLearnsThePolicy(t *testing.T) {
	e := newEnv(t, learnSandbox)
	sock := filepath.Join(e.dir, "admin.sock")
	e.workload("learn").reach(t, "report-only")
	e.sandbox("dig", "+time=1", "+tries=1", "@198.51.100.53", "nx.allowed.test") // NXDOMAIN: left out
	// To deny_cidrs: passes, reported with the rule that would deny it.
	if _, err := e.curl("--resolve", "inside-deny.test:443:198.51.100.130", "https://inside-deny.test/learn-deny"); err != nil {
		t.Errorf("report-only: TLS to deny_cidrs refused: %v", err)
	}
	for _, want := range []string{
		`"verdict":"would-deny","reason":"no-match","rule":"","bytes_up"`,
		`"name":"allowed.test","verdict":"would-deny"`,
		`"verdict":"would-deny","reason":"deny-cidr","rule":"deny_cidrs 198.51.100.128/25"`,
		`"msg":"dns query","sandbox":"sb1"`,
	} {
		// A flow's line is written when it ends, which may be just after
		// its client returned.
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(e.logs.String(), want) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	out, err := e.egressd("suggest", "-socket", sock, "-sandbox", "sb1")
	if err != nil {
		t.Fatalf("egressd suggest: %v\n%s", err, out)
	}
	t.Logf("egressd suggest printed:\n%s", out)
	for _, want := range []string{`"allowed.test"`, `"x.wild.test"`, `"sub.allowed.test"`, `"198.51.100.77/32"`,
		`"198.51.100.128/25"`, "# 1 flow", "udp packet", "icmp packet", "# left out, in deny_cidrs: 198.51.100.130",
		"# left out, never answered: nx.allowed.test"} {
		if !strings.Contains(out, want) {
			t.Errorf("suggestion lacks %s", want)
		}
	}
	// The log file gives the same policy as the daemon's record.
	logFile := filepath.Join(e.dir, "egressd.log")
	if err := os.WriteFile(logFile, []byte(e.logs.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	fromLog, err := e.egressd("suggest", "-log", logFile, "-config", e.config, "-sandbox", "sb1")
	if a, b := allowLists(t, out), allowLists(t, fromLog); err != nil || a != b || !strings.Contains(fromLog, `"198.51.100.128/25"`) {
		t.Errorf("suggest -log (%v) allows %s, suggest -socket %s", err, b, a)
	}

	held := e.holdFlow(t, "198.51.100.10:9000") // opened in report-only mode, to an address the policy will not allow
	file := filepath.Join(e.dir, "learnt.json")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := e.egressd("policy", "set", "-socket", sock, "-sandbox", "sb1", "-f", file); err != nil {
		t.Fatalf("policy set with the suggestion: %v\n%s", err, out)
	}
	if got, _ := e.egressd("policy", "get", "-socket", sock, "-sandbox", "sb1"); strings.Contains(got, "audit") {
		t.Errorf("the learnt policy is still report-only: %s", got)
	}
	select {
	case <-held:
	case <-time.After(2 * time.Second):
		t.Error("a flow opened in report-only mode that the enforced policy denies was not cut")
	}
	e.workload("enforce").reach(t, "learnt policy")
	probes{
		{name: "tls evil.test", send: func() { e.curl("--resolve", "evil.test:443:198.51.100.66", "https://evil.test/enf-evil") },
			arrived: func() bool { return len(e.in.rec.matching("/enf-evil")) > 0 }},
		e.udpProbe(e.tp.Sandbox, "198.51.100.11:9001", e.in.rec, "enf-udp-other"),
		e.tcpProbe(e.tp.Sandbox, "198.51.100.10:9000", e.in.rec, "enf-tcp-other"),
		{name: "dns evil.test", send: func() { e.sandbox("dig", "+time=1", "+tries=1", "@198.51.100.53", "enf.evil.test") },
			arrived: func() bool { return len(e.in.rec.matching("q=enf.evil.test.")) > 0 }},
		{name: "tls inside-deny.test", send: func() {
			e.curl("--resolve", "inside-deny.test:443:198.51.100.130", "https://inside-deny.test/enf-deny")
		}, arrived: func() bool { return len(e.in.rec.matching("/enf-deny")) > 0 }},
	}.none(t, "learnt policy, anything else")
	metrics, _ := e.tp.Exec(e.tp.Firewall, "curl", "-sS", "--max-time", "2", "http://127.0.0.1:9464/metrics")
	for _, want := range []string{`egressd_would_deny_total{path="proxy",reason="no-match",sandbox="sb1"}`,
		`egressd_would_deny_total{path="dns",reason="no-match",sandbox="sb1"}`,
		`egressd_would_deny_total{path="kernel",reason="no-match",sandbox="sb1"}`,
		`egressd_sandbox_flows_total{ingress="tproxy",reason="no-match",sandbox="sb1",verdict="would-deny"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(string(metrics), "would"))
		}
	}
}

// allowLists reads a suggestion's allow lists.
func allowLists(t *testing.T, suggestion string) string {
	t.Helper()
	var spec policy.Spec
	if err := json.Unmarshal(activity.StripComments([]byte(suggestion)), &spec); err != nil {
		t.Errorf("suggestion is no policy: %v\n%s", err, suggestion)
	}
	return fmt.Sprint(spec.AllowDomains, spec.AllowCIDRs, spec.DenyCIDRs)
}

// holdFlow opens a TCP connection from the sandbox to addr, sends a line
// and keeps it open; the channel closes when the connection ends.
func (e *env) holdFlow(t *testing.T, addr string) <-chan struct{} {
	t.Helper()
	var c net.Conn
	err := netnstest.Do(e.tp.Sandbox, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("hold a flow to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("HOLD held\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "ok") {
		t.Fatalf("held flow to %s not relayed in report-only mode: %q %v", addr, line, err)
	}
	done := make(chan struct{})
	go func() {
		br.ReadString('\n') // returns when the connection is cut
		close(done)
	}()
	return done
}
