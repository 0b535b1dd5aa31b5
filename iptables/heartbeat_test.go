package iptables

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestHeartbeatFailsClosed: UDP and ICMP pass while the heartbeat runs;
// once it stops (a killed egressd does nothing at all), they stop within
// AliveTimeout, and pass again once it is back.
func TestHeartbeatFailsClosed(t *testing.T) {
	l := newLab(t)
	l.AddInternetAddr("198.51.100.77/32", "2001:db8::77/128")
	sb := Sandbox{Name: "sb1", Interface: "veth-sb1", Mode: ModeAllowAll, Sources: prefixes("10.231.0.2/32", "fd00:231::2/128")}
	if err := l.in.Apply(context.Background(), []Sandbox{sb}, noProxy, Host{}); err != nil {
		t.Fatal(err)
	}
	beat := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			l.in.Heartbeat(ctx, func(err error) { t.Logf("heartbeat: %v", err) })
			close(done)
		}()
		// Wait for the first refresh: the elements are back.
		for deadline := time.Now().Add(waitFor); !strings.Contains(l.Run(l.Firewall, "nft", "list", "set", "inet", Table, AliveSet), "expires"); {
			if time.Now().After(deadline) {
				t.Fatal("the heartbeat did not refresh the set")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return func() { cancel(); <-done }
	}
	send := func(t *testing.T, tag string, pass bool) {
		t.Helper()
		for _, dst := range []netip.Addr{allowed4, allowed6} {
			p := tag + " " + dst.String()
			if pass {
				if err := l.sendUDP(netip.Addr{}, at(dst, 9999), p); err != nil {
					t.Fatal(err)
				}
				l.udp.await(t, p)
				if err := l.ping(dst, true); err != nil {
					t.Errorf("ping %s with egressd running: %v", dst, err)
				}
				continue
			}
			l.expectDropped(t, "egressd not running", func() error { return l.sendUDP(netip.Addr{}, at(dst, 9999), p) })
			if err := l.ping(dst, true); err == nil {
				t.Errorf("ping %s answered with the heartbeat stopped", dst)
			}
			if ok, _ := l.udp.has(p); ok {
				t.Errorf("%q arrived with the heartbeat stopped", p)
			}
		}
	}
	stop := beat()
	// Longer than AliveTimeout: the refreshes keep it alive.
	time.Sleep(AliveTimeout + 200*time.Millisecond)
	send(t, "running", true)
	stop()
	time.Sleep(AliveTimeout + 50*time.Millisecond)
	send(t, "stopped", false)
	stop = beat()
	defer stop()
	send(t, "back", true)
}

// TestGuardedInterface: a sandbox registered under a mistyped interface
// leaves the real one unclaimed; a guard pattern that covers it drops
// everything arriving there, and the bridge table covers both names.
func TestGuardedInterface(t *testing.T) {
	l := newLab(t)
	l.AddInternetAddr("198.51.100.77/32")
	sb := Sandbox{Name: "sb1", Interface: "veth-sbl", Mode: ModeAllowAll, Sources: prefixes("10.231.0.2/32", "fd00:231::2/128")}
	if err := l.in.Apply(context.Background(), []Sandbox{sb}, noProxy, Host{Guarded: []string{"veth-sb*"}}); err != nil {
		t.Fatal(err)
	}
	l.beat(t)
	p := "unclaimed " + allowed4.String()
	l.expectDropped(t, "guarded interface: no sandbox claims it", func() error { return l.sendUDP(netip.Addr{}, at(allowed4, 9999), p) })
	if err := l.ping(allowed4, true); err == nil {
		t.Error("ping passed from an unclaimed guarded interface")
	}
	if ok, _ := l.udp.has(p); ok {
		t.Errorf("%q arrived from an unclaimed guarded interface", p)
	}
}
