package e2e

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/netnstest"
)

// The tests of one sandbox degrading another through egressd's shared
// resolver: each floods one of its budgets while the other's lookups are
// timed.

// floodSandboxes are sb1 in allow-all with a /120 of IPv6 sources, and
// sb2 (tp.AddSandbox("veth-sb2", 1)) in custom mode.
const floodSandboxes = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::/120"]
mode      = "allow-all"

[[sandbox]]
name      = "sb2"
interface = "veth-sb2"
sources   = ["10.231.1.2/32", "fd00:231:1::2/128"]
mode      = "custom"
allow_domains = ["*.allowed.test"]
`

// lookups asks n fresh names (so no cache answers them) from ns over UDP,
// one after another, and returns how many got an answer and the slowest.
func lookups(ns, prefix string, n int, tcp bool) (answered int, slowest time.Duration) {
	c := &dns.Client{Timeout: 2 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	netnstest.Do(ns, func() error {
		for i := range n {
			m := new(dns.Msg).SetQuestion(fmt.Sprintf("%s-%d.allowed.test.", prefix, i), dns.TypeA)
			start := time.Now()
			if _, _, err := c.Exchange(m, "198.51.100.53:53"); err == nil {
				answered++
				slowest = max(slowest, time.Since(start))
			}
		}
		return nil
	})
	return answered, slowest
}

// TestDNSFloodLeavesOthersAnswered: sb1 sends thousands of queries a second for
// names whose server never answers, each holding a slot of the resolver
// while it waits; sb2's own uncached lookups are all answered meanwhile.
func TestDNSFloodLeavesOthersAnswered(t *testing.T) {
	e := newIdleEnv(t, floodSandboxes)
	sb2 := e.tp.AddSandbox("veth-sb2", 1)
	e.start()
	if n, slowest := lookups(sb2.NS, "before", 20, false); n != 20 {
		t.Fatalf("before the flood: %d of 20 lookups answered", n)
	} else {
		t.Logf("before the flood: 20 of 20 answered, slowest %v", slowest)
	}
	var stop atomic.Bool
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		netnstest.Do(e.tp.Sandbox, func() error {
			c, err := net.Dial("udp", "198.51.100.53:53")
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; !stop.Load(); i++ {
				m := new(dns.Msg).SetQuestion(fmt.Sprintf("f%d.blackhole.test.", i), dns.TypeA)
				b, _ := m.Pack()
				c.Write(b)
				sent.Add(1)
				if i%60 == 59 {
					time.Sleep(10 * time.Millisecond) // ~6,000 a second at most
				}
			}
			return nil
		})
	}()
	// Each flooding query holds its slot for proxy.dial_timeout (2 s):
	// after 1.5 s, more than the resolver's 4,096 would be held.
	time.Sleep(1500 * time.Millisecond)
	n, slowest := lookups(sb2.NS, "during", 40, false)
	stop.Store(true)
	wg.Wait()
	t.Logf("during a flood of %d queries: %d of 40 answered, slowest %v", sent.Load(), n, slowest)
	if n != 40 {
		t.Errorf("sb1's flood cost sb2 %d of 40 lookups", 40-n)
	}
}

// TestDNSTCPSlotsPerSandbox: sb1 opens idle DNS-over-TCP connections from
// many of its source addresses, more than the resolver's 1,024 slots;
// sb2's lookups over TCP still get in.
func TestDNSTCPSlotsPerSandbox(t *testing.T) {
	e := newIdleEnv(t, floodSandboxes)
	sb2 := e.tp.AddSandbox("veth-sb2", 1)
	var srcs []string
	for i := range 20 {
		a := fmt.Sprintf("fd00:231::%x", 0x10+i)
		e.tp.Run(e.tp.Sandbox, "ip", "addr", "add", a+"/64", "dev", netnstest.SandboxIface, "nodad")
		srcs = append(srcs, a)
	}
	e.start()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	netnstest.Do(e.tp.Sandbox, func() error {
		for _, src := range srcs {
			for range 64 {
				d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
				if c, err := d.Dial("tcp", "[2001:db8::53]:53"); err == nil {
					held = append(held, c)
				}
			}
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // let egressd account every one
	n, _ := lookups(sb2.NS, "tcp", 10, true)
	t.Logf("sb1 opened %d idle connections; sb2: %d of 10 lookups over TCP answered", len(held), n)
	if n != 10 {
		t.Errorf("sb1's %d idle connections cost sb2 %d of 10 lookups over TCP", len(held), 10-n)
	}
	if !strings.Contains(e.logs.String(), `"msg":"ready"`) {
		t.Fatal("egressd not ready")
	}
}

// rssKiB is VmRSS of process pid, in KiB.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestPeekMemoryBounded: sb1 opens 1,000 connections that each send 60 KB
// of a ClientHello and stall; egressd holds no more than the peek budget
// for them (refusing the rest, reason peek-limit) and sb2's TLS works.
func TestPeekMemoryBounded(t *testing.T) {
	cfg := strings.NewReplacer(`mode      = "allow-all"`, `mode      = "custom"`+"\n"+`allow_domains = ["allowed.test"]`,
		`allow_domains = ["*.allowed.test"]`, `allow_domains = ["allowed.test"]`).Replace(floodSandboxes)
	e := newIdleEnv(t, cfg)
	e.proxy = "max_peek_bytes_per_sandbox = 1048576"
	e.writeConfig(cfg)
	sb2 := e.tp.AddSandbox("veth-sb2", 1)
	e.start()
	before := rssKiB(t, e.proc.Process.Pid)
	// One handshake record header claiming 16 KiB, then a ClientHello
	// header claiming 60 KB spread over records that never complete.
	hello := []byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xea, 0x60}
	partial := append(hello, make([]byte, 16<<10-4)...)
	for len(partial) < 60<<10 {
		partial = append(partial, 0x16, 0x03, 0x01, 0x40, 0x00)
		partial = append(partial, make([]byte, 16<<10)...)
	}
	partial = partial[:60<<10]
	var held []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			netnstest.Do(e.tp.Sandbox, func() error {
				for range 100 {
					c, err := net.DialTimeout("tcp", "198.51.100.10:443", time.Second)
					if err != nil {
						continue
					}
					c.SetWriteDeadline(time.Now().Add(time.Second))
					c.Write(partial)
					mu.Lock()
					held = append(held, c)
					mu.Unlock()
				}
				return nil
			})
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	time.Sleep(700 * time.Millisecond) // egressd reads what sits in its sockets (peek_timeout is 2 s)
	during := rssKiB(t, e.proc.Process.Pid)
	ok := e.tlsProbe(sb2.NS, "peek-sb2")
	probes{ok}.reach(t, "sb2's TLS while sb1 stalls 1,000 hellos")
	t.Logf("egressd RSS %d KiB before, %d KiB with %d stalled 60 KB hellos (budget 1 MiB per sandbox)", before, during, len(held))
	if grew := during - before; grew > 12<<10 { // ~6 MiB with the budget (goroutines), ~16 MiB without
		t.Errorf("egressd grew by %d KiB for stalled hellos, want the peek budget to bound it", grew)
	}
	if !strings.Contains(e.logs.String(), `"reason":"peek-limit"`) {
		t.Errorf("no flow refused with reason peek-limit")
	}
}
