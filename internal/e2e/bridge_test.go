package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// The tests of sandboxes that share a Linux bridge, as containers on one
// Docker network do: each judged by its own policy, whatever the bridge
// netfilter sysctls say; traffic between them judged like any other;
// replies on connections opened into a sandbox (a published port) passing.

// bridgeSandboxes are two sandboxes on bridge br-sb (subnet 5 of
// netnstest.AddBridge): a with the default custom policy, b in deny-all.
const bridgeSandboxes = `
[[sandbox]]
name      = "a"
interface = "br-sb"
sources   = ["10.231.5.2/32", "fd00:231:5::2/128"]
mode      = "custom"
allow_domains = ["allowed.test", "*.allowed.test"]
allow_cidrs   = ["198.51.100.77/32", "2001:db8:77::/64"]

[[sandbox]]
name      = "b"
interface = "br-sb"
sources   = ["10.231.5.3/32", "fd00:231:5::3/128"]
mode      = "deny-all"
`

// newBridgeEnv starts egressd for bridgeSandboxes with the firewall's
// bridge-nf-call-iptables and -ip6tables set to nf (per namespace).
func newBridgeEnv(t *testing.T, nf string) (*env, []*netnstest.ExtraSandbox) {
	t.Helper()
	e := newIdleEnv(t, bridgeSandboxes)
	e.tp.Run(e.tp.Firewall, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables="+nf,
		"net.bridge.bridge-nf-call-ip6tables="+nf)
	sbs := e.tp.AddBridge("br-sb", 5, 2)
	e.start()
	return e, sbs
}

func TestBridgeSandboxes(t *testing.T) {
	for _, nf := range []string{"1", "0"} {
		t.Run("bridge-nf-call-iptables="+nf, func(t *testing.T) {
			e, sbs := newBridgeEnv(t, nf)
			a, b := sbs[0], sbs[1]
			e.internetProbes(a.NS, "bra").reach(t, "sandbox a on the bridge")
			e.internetProbes(b.NS, "brb").none(t, "deny-all sandbox b on the same bridge")
			if out, err := e.tp.Exec(a.NS, "curl", "-sS", "--max-time", "2", "--cacert", e.in.caFile,
				"--resolve", "evil.test:443:198.51.100.10", "https://evil.test/bra-evil"); err == nil {
				t.Errorf("a reached evil.test: %s", out)
			}
			e.noEvents("/bra-evil")
			// Between the two, in both directions: isolate_sandboxes.
			recA := listenRecorders(t, a.NS, []int{7000}, []int{7001})
			recB := listenRecorders(t, b.NS, []int{7000}, []int{7001})
			probes{
				e.tcpProbe(a.NS, "10.231.5.3:7000", recB, "a2b-tcp4"),
				e.udpProbe(a.NS, "10.231.5.3:7001", recB, "a2b-udp4"),
				e.tcpProbe(a.NS, "[fd00:231:5::3]:7000", recB, "a2b-tcp6"),
				e.udpProbe(a.NS, "[fd00:231:5::3]:7001", recB, "a2b-udp6"),
				e.tcpProbe(b.NS, "10.231.5.2:7000", recA, "b2a-tcp4"),
				e.udpProbe(b.NS, "10.231.5.2:7001", recA, "b2a-udp4"),
			}.none(t, "sandbox to sandbox on one bridge")
			// Published port: the host opens a connection into deny-all b,
			// and b's answers come back.
			for _, addr := range []string{"10.231.5.3:7000", "[fd00:231:5::3]:7000"} {
				if got, err := echoFrom(e.tp.Firewall, addr, "inbound-"+addr); err != nil {
					t.Errorf("host to b's %s: %v", addr, err)
				} else if !strings.Contains(got, "inbound-") {
					t.Errorf("host to b's %s: echo %q", addr, got)
				}
			}
			for _, key := range []string{"nf_call_iptables", "nf_call_ip6tables"} {
				if got := strings.TrimSpace(e.tp.Run(e.tp.Firewall, "cat", "/sys/class/net/br-sb/bridge/"+key)); got != "1" {
					t.Errorf("br-sb %s = %s, want 1", key, got)
				}
			}
			if !strings.Contains(e.logs.String(), `"msg":"bridge netfilter turned on for this bridge only`) {
				t.Errorf("egressd did not log that it turned on bridge netfilter for br-sb")
			}
		})
	}
}

// echoFrom connects from ns to addr, sends line and returns what comes
// back on the same connection within 2 s.
func echoFrom(ns, addr, line string) (string, error) {
	var got string
	err := netnstest.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
			return err
		}
		got, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return got, err
}
