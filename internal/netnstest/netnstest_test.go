package netnstest

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTopologyForwardsBothFamilies(t *testing.T) {
	tp := New(t)
	tp.AddInternetAddr("198.51.100.77/32", "2001:db8::77/128")
	for _, dst := range []string{"198.51.100.77:9999", "[2001:db8::77]:9999"} {
		t.Run(dst, func(t *testing.T) {
			var ln *net.UDPConn
			err := tp.Do(tp.Internet, func() (err error) {
				ln, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			err = tp.Do(tp.Sandbox, func() error {
				c, err := net.Dial("udp", dst)
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte("hello"))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			ln.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("nothing arrived at %s: %v", dst, err)
			}
			want := SandboxAddr4
			if from.Addr().Is6() {
				want = SandboxAddr6
			}
			if string(buf[:n]) != "hello" || from.Addr() != want {
				t.Errorf("got %q from %s, want \"hello\" from %s", buf[:n], from, want)
			}
		})
	}
}

func TestDoRestoresNamespace(t *testing.T) {
	tp := New(t)
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	err = tp.Do(tp.Sandbox, func() (err error) {
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside == self {
		t.Fatalf("Do ran fn in the test's own namespace %s", self)
	}
	// Every thread Do used went back (or died): look at all of them.
	threads, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range threads {
		ns, err := os.Readlink("/proc/self/task/" + th.Name() + "/ns/net")
		if err == nil && ns != self {
			t.Errorf("thread %s left in %s", th.Name(), ns)
		}
	}
}

func TestDoReportsErrors(t *testing.T) {
	RequireRoot(t)
	if err := Do("egt-does-not-exist", func() error { return nil }); err == nil {
		t.Error("Do in a missing namespace succeeded")
	}
	ns := NewNamespace(t)
	if err := Do(ns, func() error { return os.ErrInvalid }); err != os.ErrInvalid {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

func TestCleanupRemovesNamespacesAndProcesses(t *testing.T) {
	RequireRoot(t)
	var tp *Topology
	var pid int
	t.Run("build", func(t *testing.T) {
		tp = New(t)
		pid = tp.Start(tp.Internet, "sleep", "600").Process.Pid
	})
	out, err := output(execCommand("ip", "netns", "list"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{tp.Sandbox, tp.Firewall, tp.Internet} {
		if strings.Contains(string(out), ns) {
			t.Errorf("namespace %s still exists", ns)
		}
	}
	if stat, err := os.ReadFile("/proc/" + itoa(pid) + "/stat"); err == nil && !bytes.Contains(stat, []byte(") Z")) {
		t.Errorf("process %d still running: %s", pid, stat)
	}
}

func TestAddInternetAddrRange(t *testing.T) {
	cases := []struct {
		prefix string
		ok     bool
	}{
		{"198.51.100.77/32", true},
		{"203.0.113.0/25", true},
		{"2001:db8:1::5/128", true},
		{"198.51.0.0/16", false},
		{"8.8.8.8/32", false},
		{"2001:db9::1/128", false},
	}
	for _, tc := range cases {
		t.Run(tc.prefix, func(t *testing.T) {
			if got := inInternetRanges(netip.MustParsePrefix(tc.prefix)); got != tc.ok {
				t.Errorf("inInternetRanges = %v, want %v", got, tc.ok)
			}
		})
	}
}

var execCommand = exec.Command

func itoa(i int) string { return strconv.Itoa(i) }

func TestAddSandboxRoutes(t *testing.T) {
	tp := New(t)
	tp.AddInternetAddr("198.51.100.77/32")
	sb := tp.AddSandbox("veth-sb2", 1)
	if sb.Addr4.String() != "10.231.1.2" || sb.Addr6.String() != "fd00:231:1::2" || sb.Gateway6.String() != "fd00:231:1::1" {
		t.Fatalf("addresses %+v", sb)
	}
	for _, dst := range []string{"198.51.100.77", "10.231.0.2", "fd00:231::2"} {
		if out, err := tp.Exec(sb.NS, "ping", "-c", "1", "-W", "2", dst); err != nil {
			t.Errorf("ping %s from the added sandbox: %v: %s", dst, err, out)
		}
	}
}
