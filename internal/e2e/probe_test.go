package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// probe is one attempt to get a packet to a recording server, and how to
// tell that something arrived.
type probe struct {
	name    string
	send    func()
	arrived func() bool
}

type probes []probe

// run sends every probe at once, waits for late packets and returns the
// names of the probes that arrived.
func (ps probes) run() []string {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.send()
		}()
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	var got []string
	for _, p := range ps {
		if p.arrived() {
			got = append(got, p.name)
		}
	}
	return got
}

// reach fails the test unless every probe arrives: the positive case that
// proves the probes can see a leak.
func (ps probes) reach(t *testing.T, what string) {
	t.Helper()
	got := ps.run()
	if len(got) != len(ps) {
		var missing []string
		for _, p := range ps {
			if !slicesContains(got, p.name) {
				missing = append(missing, p.name)
			}
		}
		t.Errorf("%s: %d of %d probes did not arrive: %q", what, len(missing), len(ps), missing)
	}
}

// none fails the test if any probe arrives.
func (ps probes) none(t *testing.T, what string) {
	t.Helper()
	if got := ps.run(); len(got) > 0 {
		t.Errorf("leak: %s: %d of %d probes arrived: %q", what, len(got), len(ps), got)
	}
}

func slicesContains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// tcpProbe connects from ns to addr and sends marker as one line; rec is
// the recorder of the server listening there.
func (e *env) tcpProbe(ns, addr string, rec *recorder, marker string) probe {
	return probe{
		name: "tcp " + addr,
		send: func() {
			netnstest.Do(ns, func() error {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Second))
				fmt.Fprintf(c, "%s\n", marker)
				c.Read(make([]byte, 64))
				return nil
			})
		},
		arrived: func() bool { return len(rec.matching(marker)) > 0 },
	}
}

// udpProbe sends marker in one datagram from ns to addr (broadcast allowed,
// a zone names the interface of a link-local or multicast address).
func (e *env) udpProbe(ns, addr string, rec *recorder, marker string) probe {
	return probe{
		name: "udp " + addr,
		send: func() {
			netnstest.Do(ns, func() error {
				d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
					return rc.Control(func(fd uintptr) {
						syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
					})
				}}
				c, err := d.DialContext(context.Background(), "udp", addr)
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = io.WriteString(c, marker)
				return err
			})
		},
		arrived: func() bool { return len(rec.matching(marker)) > 0 },
	}
}

// pingProbe sends one ICMP echo request from ns to dst, which lives in
// namespace target; an nftables counter there, at the very end of the
// input hook, counts what arrives. A reply is not needed: a request that
// reaches target is a leak.
func (e *env) pingProbe(ns, dst, target string) probe {
	e.t.Helper()
	a := netip.MustParseAddr(strings.Split(dst, "%")[0])
	count := e.echoCounter(target, a)
	before := count()
	return probe{
		name:    "icmp " + dst,
		send:    func() { e.tp.Exec(ns, "ping", "-c", "1", "-W", "1", dst) },
		arrived: func() bool { return count() > before },
	}
}

// tlsProbe fetches https://allowed.test/marker from ns at the name's
// internet address.
func (e *env) tlsProbe(ns, marker string) probe {
	return probe{
		name: "tls allowed.test",
		send: func() {
			e.tp.Exec(ns, "curl", "-sS", "--max-time", "2", "--cacert", e.in.caFile,
				"--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/"+marker)
		},
		arrived: func() bool { return len(e.in.rec.matching("/"+marker)) > 0 },
	}
}

// dnsProbe asks the upstream resolver's address for marker.allowed.test.
func (e *env) dnsProbe(ns, marker string, tcp bool) probe {
	name := marker + ".allowed.test"
	args := []string{"dig", "+time=1", "+tries=1", "@198.51.100.53", name}
	p := probe{name: "dns udp", arrived: func() bool { return len(e.in.rec.matching("dns q="+name+".")) > 0 }}
	if tcp {
		args = append(args, "+tcp")
		p.name = "dns tcp"
	}
	p.send = func() { e.tp.Exec(ns, args...) }
	return p
}

// internetProbes are what a sandbox sends to the internet, one of each
// kind: TLS to an allowed name, raw TCP, UDP and ICMP to an address in the
// default sandbox's allow_cidrs (both families), DNS over UDP and TCP. The
// default sandbox lets every one through.
func (e *env) internetProbes(ns, marker string) probes {
	rec := e.in.rec
	return probes{
		e.tlsProbe(ns, marker+"-tls"),
		e.tcpProbe(ns, "198.51.100.77:9000", rec, marker+"-tcp4"),
		e.tcpProbe(ns, "[2001:db8:77::5]:9000", rec, marker+"-tcp6"),
		e.udpProbe(ns, "198.51.100.77:9001", rec, marker+"-udp4"),
		e.udpProbe(ns, "[2001:db8:77::5]:9001", rec, marker+"-udp6"),
		e.dnsProbe(ns, marker+"-dns", false),
		e.dnsProbe(ns, marker+"-dnstcp", true),
		e.pingProbe(ns, "198.51.100.77", e.tp.Internet),
		e.pingProbe(ns, "2001:db8:77::5", e.tp.Internet),
	}
}

// echoTable is the nftables table the ICMP counters live in, in whatever
// namespace they count.
const echoTable = "e2eprobe"

var packetsRE = regexp.MustCompile(`packets (\d+)`)

// echoCounter counts ICMP echo requests to dst that reach namespace ns's
// input hook after every other rule there (egressd's included), and
// returns a function reading the count.
func (e *env) echoCounter(ns string, dst netip.Addr) func() int {
	e.t.Helper()
	if e.echo == nil {
		e.echo = map[string]bool{}
	}
	if !e.echo[ns] {
		e.tp.Run(ns, "nft", "add table inet "+echoTable)
		e.tp.Run(ns, "nft", "add chain inet "+echoTable+" input { type filter hook input priority 2147483647 ; policy accept ; }")
		e.echo[ns] = true
	}
	name := "echo_" + strings.NewReplacer(".", "_", ":", "_").Replace(dst.String())
	if !e.echo[ns+"/"+name] {
		match := "ip daddr " + dst.String() + " icmp type echo-request"
		if dst.Is6() {
			match = "ip6 daddr " + dst.String() + " icmpv6 type echo-request"
		}
		e.tp.Run(ns, "nft", "add counter inet "+echoTable+" "+name)
		e.tp.Run(ns, "nft", "add rule inet "+echoTable+" input "+match+" counter name "+name)
		e.echo[ns+"/"+name] = true
	}
	t := e.t
	return func() int {
		out, err := e.tp.Exec(ns, "nft", "list", "counter", "inet", echoTable, name)
		m := packetsRE.FindSubmatch(out)
		if err != nil || m == nil {
			t.Errorf("read echo counter %s in %s: %v: %s", name, ns, err, out)
			return 0
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
}

// listenRecorders opens recording servers in ns on the wildcard addresses
// of both families: TCP ports echo and record each line (like the
// internet's raw sink, "tcp-conn" on every accept), UDP ports record each
// datagram.
func listenRecorders(t *testing.T, ns string, tcpPorts, udpPorts []int) *recorder {
	t.Helper()
	var lns []net.Listener
	var pcs []net.PacketConn
	err := netnstest.Do(ns, func() error {
		for _, fam := range []struct{ tcp, udp, host string }{{"tcp4", "udp4", "0.0.0.0"}, {"tcp6", "udp6", "::"}} {
			for _, p := range tcpPorts {
				ln, err := net.Listen(fam.tcp, net.JoinHostPort(fam.host, strconv.Itoa(p)))
				if err != nil {
					return err
				}
				lns = append(lns, ln)
			}
			for _, p := range udpPorts {
				pc, err := net.ListenPacket(fam.udp, net.JoinHostPort(fam.host, strconv.Itoa(p)))
				if err != nil {
					return err
				}
				pcs = append(pcs, pc)
			}
		}
		return nil
	})
	for _, ln := range lns {
		t.Cleanup(func() { ln.Close() })
	}
	for _, pc := range pcs {
		t.Cleanup(func() { pc.Close() })
	}
	if err != nil {
		t.Fatalf("recorders in %s: %v", ns, err)
	}
	srv := &internet{rec: &recorder{}}
	for _, ln := range lns {
		srv.serveRaw(t, ln)
	}
	for _, pc := range pcs {
		srv.serveUDP(t, pc)
	}
	return srv.rec
}

// egressd runs the binary with args in the firewall namespace and returns
// its combined output.
func (e *env) egressd(args ...string) (string, error) {
	cmd := e.tp.Command(e.tp.Firewall, append([]string{bin}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runRefused runs `egressd run -config cfg` in the firewall namespace and
// returns its output once it has exited non-zero; it fails the test if
// egressd gets ready or exits 0.
func (e *env) runRefused(cfg string) string {
	e.t.Helper()
	out := &syncBuffer{}
	cmd := e.tp.Command(e.tp.Firewall, bin, "run", "-config", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start egressd: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-done:
			if err == nil {
				e.t.Fatalf("egressd run -config %s exited 0, want a refusal:\n%s", cfg, out)
			}
			return out.String()
		case <-deadline:
		case <-time.After(20 * time.Millisecond):
			if !strings.Contains(out.String(), `"msg":"ready"`) {
				continue
			}
		}
		cmd.Process.Kill()
		<-done
		e.t.Fatalf("egressd run -config %s started, want a refusal:\n%s", cfg, out)
	}
}

// containsMsg reports whether out holds msg as is or JSON-escaped (egressd
// logs errors as JSON strings).
func containsMsg(out, msg string) bool {
	return strings.Contains(out, msg) || strings.Contains(out, strings.ReplaceAll(msg, `"`, `\"`))
}
