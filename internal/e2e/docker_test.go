package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests with a real Docker: a dockerd of the test's own in the
// firewall namespace (see dockerd_test.go), containers on a user-defined
// bridge network as egressd's sandboxes (interface = the bridge, sources =
// each container's address), each judged by its own policy, DNS through
// Docker's embedded resolver included; and egressd's FROM scratch image,
// built and run by that dockerd. Like the netns tests they prove with the
// recording servers that nothing leaked, each after a positive case that
// shows the same probe does arrive.

// The Docker network of TestDockerBridge. Its bridge lives in the
// firewall namespace, so the name needs no suffix of its own.
const (
	dockerNet     = "egt"
	dockerBridge  = "br-egt"
	dockerSubnet  = "10.232.0.0/24"
	dockerGateway = "10.232.0.1" // the bridge's address: the host, as the containers see it
	addrA         = "10.232.0.2"
	addrB         = "10.232.0.3"
	addrC         = "10.232.0.4" // API sandboxes c1, then c2
	toolsImage    = "egt-tools:1"
	containerCA   = "/etc/egt/ca.pem"
)

// Names only the Docker tests use: each DNS probe asks its own, so the
// recorder tells one question from another.
func init() {
	for _, n := range []string{"dkr-a", "dkr-a-tcp", "dkr-b", "dkr-c1", "dkr-c2"} {
		zone[n+".allowed.test."] = []string{"198.51.100.10"}
	}
	zone["dkr-c1.evil.test."] = []string{"198.51.100.66"}
}

// dockerSandboxes: a custom (allowed.test and its subdomains, raw
// 198.51.100.77), b deny-all, both on the Docker network's bridge, which
// does not exist yet when egressd starts.
var dockerSandboxes = fmt.Sprintf(`
[[sandbox]]
name      = "a"
interface = %[1]q
sources   = ["%[2]s/32"]
mode      = "custom"
allow_domains = ["allowed.test", "*.allowed.test"]
allow_cidrs   = ["198.51.100.77/32"]

[[sandbox]]
name      = "b"
interface = %[1]q
sources   = ["%[3]s/32"]
mode      = "deny-all"
`, dockerBridge, addrA, addrB)

// httpdCmd serves the container's hostname on port 80: a published port
// answers with the name of the container behind it.
const httpdCmd = `mkdir -p /tmp/www && echo "$HOSTNAME" >/tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www`

// TestDockerBridge: containers on one Docker bridge network, each its own
// sandbox, with a real dockerd's iptables rules, docker-proxy and embedded
// DNS in the way:
//   - egressd started before the network exists turns on the bridge's
//     netfilter once Docker creates it;
//   - a (custom) gets allowed TLS and HTTP, by name through Docker's
//     resolver, and its raw allow_cidrs; denied names, a name it may not
//     send to an allowed address and denied raw addresses reach nothing;
//     b (deny-all) on the same bridge reaches nothing;
//   - DNS through the embedded resolver is filtered per container;
//   - container to container is denied both ways (isolate_sandboxes),
//     and allowed once a's allow_cidrs name b's address;
//   - a lock-down PUT cuts a's running download within 1 s;
//   - published ports (-p) of the locked-down containers answer the host
//     and the internet;
//   - an allow-all container does not reach another through that one's
//     published port on the host (protect_host before Docker's DNAT);
//   - a container removed with its API sandbox leaves nothing to the next
//     one on its address: unclaimed, it reaches nothing; claimed, only its
//     own policy applies.
func TestDockerBridge(t *testing.T) {
	t.Parallel()
	requireDocker(t)
	e := newIdleEnv(t, dockerSandboxes)
	fw := e.tp.Firewall
	// Docker sets the host-wide sysctl itself when br_netfilter is
	// loaded; set it first so the test does not depend on that.
	e.tp.Run(fw, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
	d := startDockerd(t, fw)
	d.importTools(toolsImage, e.in.caFile)
	e.start()
	if !containsMsg(e.logs.String(), fmt.Sprintf(`interface %q does not exist (yet)`, dockerBridge)) {
		t.Errorf("egressd did not warn that %s does not exist yet", dockerBridge)
	}
	d.must("network", "create", "--subnet", dockerSubnet, "--gateway", dockerGateway,
		"-o", "com.docker.network.bridge.name="+dockerBridge, dockerNet)
	de := &dockerEnv{env: e, d: d}
	de.a = de.runOnNet("a", addrA, "-p", "18080:80")
	de.b = de.runOnNet("b", addrB, "-p", "18081:80")
	de.waitBridgeNetfilter(t)

	t.Run("two policies on one bridge", de.testPolicies)
	t.Run("DNS through the embedded resolver", de.testDNS)
	t.Run("container to container", de.testIsolation)
	t.Run("lock-down cuts a download", de.testLockdown)
	t.Run("published ports of locked-down containers", de.testPublished)
	t.Run("a new container on an old address", de.testReplaced)
}

// waitBridgeNetfilter waits up to 3 s for egressd's once-a-second bridge
// check to turn on the new bridge's own netfilter switch.
func (de *dockerEnv) waitBridgeNetfilter(t *testing.T) {
	t.Helper()
	path := "/sys/class/net/" + dockerBridge + "/bridge/nf_call_iptables"
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := strings.TrimSpace(de.tp.Run(de.tp.Firewall, "cat", path))
		if got == "1" && containsMsg(de.logs.String(), `"msg":"bridge netfilter turned on for this bridge only`) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s nf_call_iptables = %s 3 s after Docker created it (or no log line), want 1", dockerBridge, got)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (de *dockerEnv) testPolicies(t *testing.T) {
	a, b, rec := de.a, de.b, de.in.rec
	judge(t, "a and b",
		probes{
			de.curlProbe(a, "TLS allowed.test by name", "dk-a-tls", "https://allowed.test/dk-a-tls"),
			de.curlProbe(a, "TLS sub.allowed.test by name", "dk-a-sub", "https://sub.allowed.test/dk-a-sub"),
			de.curlProbe(a, "HTTP allowed.test by name", "dk-a-http", "http://allowed.test/dk-a-http"),
			named(de.tcpProbe(a.ns, "198.51.100.77:9000", rec, "dk-a-tcp77"), "a"),
			named(de.udpProbe(a.ns, "198.51.100.77:9001", rec, "dk-a-udp77"), "a"),
		},
		probes{
			de.curlProbe(a, "TLS evil.test by name", "dk-a-evil", "-k", "https://evil.test/dk-a-evil"),
			de.curlProbe(a, "TLS evil.test at its address", "dk-a-evil66", "-k", "--resolve", "evil.test:443:198.51.100.66", "https://evil.test/dk-a-evil66"),
			de.curlProbe(a, "TLS evil.test at allowed.test's address", "dk-a-evil10", "-k", "--resolve", "evil.test:443:198.51.100.10", "https://evil.test/dk-a-evil10"),
			de.curlProbe(a, "TLS without SNI", "dk-a-nosni", "-k", "https://198.51.100.10/dk-a-nosni"),
			de.curlProbe(a, "HTTP to a raw address", "dk-a-raw66", "http://198.51.100.66/dk-a-raw66"),
			named(de.tcpProbe(a.ns, "198.51.100.78:9000", rec, "dk-a-tcp78"), "a"),
			named(de.udpProbe(a.ns, "198.51.100.78:9001", rec, "dk-a-udp78"), "a"),
			de.curlProbe(b, "TLS allowed.test at its address", "dk-b-tls", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/dk-b-tls"),
			de.curlProbe(b, "HTTP allowed.test at its address", "dk-b-http", "--resolve", "allowed.test:80:198.51.100.10", "http://allowed.test/dk-b-http"),
			named(de.tcpProbe(b.ns, "198.51.100.77:9000", rec, "dk-b-tcp77"), "b"),
			named(de.udpProbe(b.ns, "198.51.100.77:9001", rec, "dk-b-udp77"), "b"),
			named(de.pingProbe(b.ns, "198.51.100.77", de.tp.Internet), "b"),
		})
	if out, err := de.curlIn(a, "https://allowed.test/dk-a-body"); err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Errorf("a: curl https://allowed.test: %v %q", err, out)
	}
	de.noEvents("sni=evil.test")
}

func (de *dockerEnv) testDNS(t *testing.T) {
	a, b := de.a, de.b
	out, err := de.d.exec(a, "dig", "+time=2", "+tries=1", "+short", "dkr-a.allowed.test", "A")
	if err != nil || strings.TrimSpace(out) != "198.51.100.10" {
		t.Errorf("a: dig dkr-a.allowed.test via 127.0.0.11: %v %q, want 198.51.100.10", err, out)
	}
	de.waitEvent("dns q=dkr-a.allowed.test.")
	out, err = de.d.exec(a, "dig", "+tcp", "+time=2", "+tries=1", "+short", "dkr-a-tcp.allowed.test", "A")
	if err != nil || strings.TrimSpace(out) != "198.51.100.10" {
		t.Errorf("a: dig +tcp dkr-a-tcp.allowed.test via 127.0.0.11: %v %q, want 198.51.100.10", err, out)
	}
	de.waitEvent("dns q=dkr-a-tcp.allowed.test.")
	if resolv, _ := de.d.exec(a, "cat", "/etc/resolv.conf"); !strings.Contains(resolv, "nameserver 127.0.0.11") {
		t.Errorf("a's resolv.conf does not point at Docker's resolver:\n%s", resolv)
	}
	var denied string
	block := probes{
		{
			name:    "a: dns dkr-a.evil.test via 127.0.0.11",
			send:    func() { denied, _ = de.d.exec(a, "dig", "+time=2", "+tries=1", "dkr-a.evil.test", "A") },
			arrived: func() bool { return len(de.in.rec.matching("dns q=dkr-a.evil.test.")) > 0 },
		},
		de.digProbe(b, "dkr-b.allowed.test"),
		{
			name:    "b: dns over TCP dkr-b-tcp.allowed.test via 127.0.0.11",
			send:    func() { de.d.exec(b, "dig", "+tcp", "+time=2", "+tries=1", "dkr-b-tcp.allowed.test", "A") },
			arrived: func() bool { return len(de.in.rec.matching("dns q=dkr-b-tcp.allowed.test.")) > 0 },
		},
		{
			name:    "b: dns dkr-b2.allowed.test at the upstream's address",
			send:    func() { de.d.exec(b, "dig", "+time=2", "+tries=1", "@198.51.100.53", "dkr-b2.allowed.test", "A") },
			arrived: func() bool { return len(de.in.rec.matching("dns q=dkr-b2.allowed.test.")) > 0 },
		},
	}
	block.none(t, "denied DNS")
	if strings.Contains(denied, "198.51.100.66") {
		t.Errorf("a got an answer for a denied name:\n%s", denied)
	}
}

func (de *dockerEnv) testIsolation(t *testing.T) {
	a, b := de.a, de.b
	recA := listenRecorders(t, a.ns, []int{7000}, []int{7001})
	recB := listenRecorders(t, b.ns, []int{7000}, []int{7001})
	// The positive case: the host reaches b's listeners (a connection
	// into a sandbox).
	if got, err := echoFrom(de.tp.Firewall, addrB+":7000", "dk-host2b"); err != nil || !strings.Contains(got, "ok dk-host2b") {
		t.Fatalf("host to b's listener: %v %q", err, got)
	}
	a2b := func(m string) probes {
		return probes{
			named(de.tcpProbe(a.ns, addrB+":7000", recB, m+"-a2b-tcp"), "a to b"),
			named(de.udpProbe(a.ns, addrB+":7001", recB, m+"-a2b-udp"), "a to b"),
		}
	}
	b2a := func(m string) probes {
		return probes{
			named(de.tcpProbe(b.ns, addrA+":7000", recA, m+"-b2a-tcp"), "b to a"),
			named(de.udpProbe(b.ns, addrA+":7001", recA, m+"-b2a-udp"), "b to a"),
		}
	}
	append(a2b("dk-iso"), b2a("dk-iso")...).none(t, "between a and b (isolate_sandboxes)")

	api := de.api()
	api.must("PUT", "/v1/sandboxes/a/policy",
		`{"mode":"custom","allow_domains":["allowed.test","*.allowed.test"],"allow_cidrs":["198.51.100.77/32","`+addrB+`/32"]}`, nil)
	judge(t, "a's allow_cidrs naming b", a2b("dk-iso-allowed"), b2a("dk-iso-allowed"))
}

func (de *dockerEnv) testLockdown(t *testing.T) {
	a := de.a
	// A download that would take minutes at 10 MB/s. The container notes
	// when curl stopped from the kernel's clock, which it shares with the
	// test: /proc/uptime, in hundredths of a second.
	dl := de.d.command(context.Background(), "exec", a.name, "sh", "-c",
		"curl -sS --max-time 20 --cacert "+containerCA+" --limit-rate 10M -o /dev/null -w '%{size_download}' "+
			"'https://allowed.test/dk-download?size=2000000000'; rc=$?; echo; echo rc=$rc; cat /proc/uptime")
	var out strings.Builder
	dl.Stdout, dl.Stderr = &out, &out
	if err := dl.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { dl.Wait(); close(done) }()
	de.waitEvent("/dk-download")
	time.Sleep(500 * time.Millisecond) // bytes flowing
	select {
	case <-done:
		t.Fatalf("download ended before the lock-down: %s", out.String())
	default:
	}
	de.api().must("PUT", "/v1/sandboxes/a/policy", `{"mode":"deny-all"}`, nil)
	locked := uptime(t)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("download still running 5 s after the lock-down")
	}
	// The uptime line comes after "rc=N"; curl's error, on stderr (a
	// stream of its own through docker exec), may land anywhere around
	// them, between the two included.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var stopped float64
	err := fmt.Errorf("no uptime line after rc=")
	for i, l := range lines {
		if !strings.HasPrefix(l, "rc=") {
			continue
		}
		for _, next := range lines[i+1:] {
			if _, serr := fmt.Sscan(next, &stopped); serr == nil {
				err = nil
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("download's output %q: %v", out.String(), err)
	}
	if took := stopped - locked; took >= 1 {
		t.Errorf("download stopped %.2f s after the PUT's answer, want < 1 s", took)
	} else {
		t.Logf("download stopped %.2f s after the PUT's answer: %q", took, lines[:len(lines)-1])
	}
	if strings.Contains(out.String(), "rc=0") {
		t.Errorf("the cut download ended with success: %s", out.String())
	}
	if !strings.Contains(de.logs.String(), `"msg":"flow cut by policy change"`) {
		t.Errorf("no log line for the cut flow")
	}
	judge(t, "a after the lock-down", nil, probes{
		de.curlProbe(a, "TLS allowed.test by name", "dk-locked-tls", "https://allowed.test/dk-locked-tls"),
		de.curlProbe(a, "TLS allowed.test at its address", "dk-locked-tls10", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/dk-locked-tls10"),
		named(de.udpProbe(a.ns, "198.51.100.77:9001", de.in.rec, "dk-locked-udp77"), "a"),
		de.digProbe(a, "dkr-a-locked.allowed.test"),
	})
}

func (de *dockerEnv) testPublished(t *testing.T) {
	for _, tc := range []struct {
		ns, url, want string
	}{
		{de.tp.Firewall, "http://127.0.0.1:18080/", "a"},             // docker-proxy
		{de.tp.Firewall, "http://" + dockerGateway + ":18080/", "a"}, // Docker's DNAT in output
		{de.tp.Internet, "http://198.51.100.1:18080/", "a"},          // Docker's DNAT in prerouting, from outside
		{de.tp.Firewall, "http://127.0.0.1:18081/", "b"},
		{de.tp.Internet, "http://198.51.100.1:18081/", "b"},
	} {
		out, err := de.tp.Exec(tc.ns, "curl", "-sS", "--max-time", "3", tc.url)
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%s from %s: %v %q, want %q", tc.url, tc.ns, err, out, tc.want)
		}
	}
}

func (de *dockerEnv) testReplaced(t *testing.T) {
	api, rec := de.api(), de.in.rec
	post := func(name, policy string) {
		t.Helper()
		api.create(fmt.Sprintf(`{"name":%q,"interface":%q,"sources":["%s/32"],"policy":%s}`, name, dockerBridge, addrC, policy))
	}
	post("c1", `{"mode":"allow-all"}`)
	c1 := de.runOnNet("c1", addrC)
	// allow-all, yet not to the host: not to b either, by way of b's
	// published port on the host's addresses (Docker's DNAT would take a
	// connection the proxy dialled there on to b).
	judge(t, "c1 (allow-all)",
		probes{
			de.curlProbe(c1, "TLS evil.test by name", "dk-c1-evil", "-k", "https://evil.test/dk-c1-evil"),
			de.digProbe(c1, "dkr-c1.evil.test"),
			named(de.udpProbe(c1.ns, "198.51.100.78:9001", rec, "dk-c1-udp78"), "c1"),
		},
		probes{
			de.publishedProbe(c1, dockerGateway+":18081", "b"),
			de.publishedProbe(c1, "198.51.100.1:18081", "b"),
		})

	de.d.remove(c1)
	api.remove("c1")
	c2 := de.runOnNet("c2", addrC)
	every := func(m string) probes {
		return probes{
			de.curlProbe(c2, "TLS allowed.test by name", m+"-tls", "https://allowed.test/"+m+"-tls"),
			de.curlProbe(c2, "TLS evil.test at its address", m+"-evil", "-k", "--resolve", "evil.test:443:198.51.100.66", "https://evil.test/"+m+"-evil"),
			de.digProbe(c2, m+".allowed.test"),
			named(de.udpProbe(c2.ns, "198.51.100.78:9001", rec, m+"-udp78"), "c2"),
			named(de.tcpProbe(c2.ns, "198.51.100.78:9000", rec, m+"-tcp78"), "c2"),
		}
	}
	every("dk-c2-unclaimed").none(t, "c2 on c1's address before any sandbox claims it")

	post("c2", `{"mode":"custom","allow_domains":["allowed.test","dkr-c2.allowed.test"]}`)
	judge(t, "c2 under its own policy",
		probes{
			de.curlProbe(c2, "TLS allowed.test by name", "dk-c2-tls", "https://allowed.test/dk-c2-tls"),
			de.digProbe(c2, "dkr-c2.allowed.test"),
		},
		probes{
			de.curlProbe(c2, "TLS evil.test by name (c1 resolved it)", "dk-c2-evil", "-k", "https://evil.test/dk-c2-evil"),
			de.curlProbe(c2, "TLS evil.test at its address", "dk-c2-evil66", "-k", "--resolve", "evil.test:443:198.51.100.66", "https://evil.test/dk-c2-evil66"),
			de.digProbe(c2, "dkr-c2.evil.test"),
			named(de.udpProbe(c2.ns, "198.51.100.78:9001", rec, "dk-c2-udp78"), "c2"),
			named(de.tcpProbe(c2.ns, "198.51.100.78:9000", rec, "dk-c2-tcp78"), "c2"),
		})
}

// TestDockerImage builds egressd's FROM scratch image (Dockerfile,
// scripts/image-rootfs.sh) offline with a dockerd of the test's own and
// runs it as documented, --network host with NET_ADMIN and NET_RAW, on
// the topology's sandbox: `validate` accepts the mounted config, `run`
// gets ready, installs table inet egressd in the namespace dockerd runs in
// and judges the sandbox's traffic; removing the container stops it.
func TestDockerImage(t *testing.T) {
	t.Parallel()
	requireDocker(t)
	e := newIdleEnv(t, defaultSandbox)
	fw := e.tp.Firewall
	d := startDockerd(t, fw)
	buildDir := filepath.Join(t.TempDir(), "image")
	script, err := filepath.Abs("../../scripts/image-rootfs.sh")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", script, buildDir).CombinedOutput(); err != nil {
		t.Fatalf("image-rootfs.sh: %v\n%s", err, out)
	}
	d.must("build", "-q", "-t", "egressd-test", buildDir)

	// The same paths inside and out: the config written by the harness
	// names the admin socket and state directory on the host. /run/egressd
	// (the instance lock) comes from the host too: the container's /run
	// is its own.
	lockDir := filepath.Join(t.TempDir(), "run-egressd")
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	mounts := []string{"-v", e.config + ":/etc/egressd/egressd.toml:ro", "-v", e.dir + ":" + e.dir, "-v", lockDir + ":/run/egressd"}
	caps := []string{"--pull=never", "--network", "host", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW"}
	if out, err := d.docker(append(append(append([]string{"run", "--rm"}, caps...), mounts...), "egressd-test", "validate", "-config", "/etc/egressd/egressd.toml")...); err != nil {
		t.Fatalf("egressd validate in the image: %v\n%s", err, out)
	}
	if out, _ := e.tp.Exec(fw, "nft", "list", "table", "inet", "egressd"); len(out) > 0 {
		t.Fatalf("table inet egressd exists before the container runs:\n%s", out)
	}
	probes{e.tlsNameProbe(e.tp.Sandbox, "evil.test", "198.51.100.66", "img-before")}.reach(t, "the sandbox before egressd runs (nothing filters)")

	d.must(append(append(append([]string{"run", "-d", "--name", "egressd"}, caps...), mounts...), "egressd-test")...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("egressd in the image:\n%s", d.combinedLogs("egressd"))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs := d.combinedLogs("egressd")
		if strings.Contains(logs, `"msg":"ready"`) {
			break
		}
		if time.Now().After(deadline) || d.must("inspect", "-f", "{{.State.Status}}", "egressd") != "running" {
			t.Fatalf("egressd in the image not ready:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	table := e.tp.Run(fw, "nft", "list", "table", "inet", "egressd")
	for _, want := range []string{"table inet egressd", `"veth-sb1"`, "10.231.0.2"} {
		if !strings.Contains(table, want) {
			t.Errorf("table inet egressd lacks %q:\n%s", want, table)
		}
	}
	if rows := e.api().sandboxes(); len(rows) != 1 || rows[0].Name != "sb1" {
		t.Errorf("GET /v1/sandboxes through the mounted socket: %+v", rows)
	}
	judge(t, "the sandbox under egressd in the image",
		probes{e.tlsProbe(e.tp.Sandbox, "img-allowed"), e.dnsProbe(e.tp.Sandbox, "img-dns", false)},
		probes{e.tlsNameProbe(e.tp.Sandbox, "evil.test", "198.51.100.66", "img-evil")})

	d.must("rm", "-f", "egressd")
	if out := d.must("ps", "-aq"); out != "" {
		t.Errorf("containers left after rm: %s", out)
	}
	// It was the container's egressd that let TLS through: with it gone
	// its rules stay, and TCP finds no proxy.
	probes{e.tlsProbe(e.tp.Sandbox, "img-removed")}.none(t, "the sandbox after the container is removed")
}
