package e2e

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/testcert"
)

// The explicit proxy as its users run it: the real binary, as an ordinary
// user (nobody, when the test runs as root), with only an explicit-proxy
// sandbox, so no kernel rule, no namespace and no privilege is involved.
// Everything is on loopback: a resolver on 127.0.0.1 answers allowed.test
// and evil.test with 127.0.0.2, where one HTTPS server serves both names
// (the domain-fronting case), a git repository and a Python package index.

// loopInternet is the loopback "internet" of the explicit-proxy tests.
type loopInternet struct {
	dir     string // world-readable scratch directory
	caFile  string
	https   string // 127.0.0.2:P
	dns     string // 127.0.0.1:P
	mu      sync.Mutex
	records []string
}

func (in *loopInternet) record(format string, args ...any) {
	in.mu.Lock()
	in.records = append(in.records, fmt.Sprintf(format, args...))
	in.mu.Unlock()
}

func (in *loopInternet) saw(sub string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, r := range in.records {
		if strings.Contains(r, sub) {
			return true
		}
	}
	return false
}

// scratchDir is a directory an unprivileged egressd can use, removed at
// the end.
func scratchDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "egressd-explicit-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startLoopInternet(t *testing.T) *loopInternet {
	t.Helper()
	in := &loopInternet{dir: scratchDir(t)}
	in.caFile = filepath.Join(in.dir, "ca.pem")
	cert, caPEM, err := testcert.New("egressd explicit e2e", []string{"allowed.test", "evil.test"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(in.caFile, caPEM, 0o644)
	in.serveDNS(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/hello/", func(w http.ResponseWriter, r *http.Request) {
		in.record("https host=%s %s", r.Host, r.URL.Path)
		if r.URL.Path == "/hello/stream" {
			fmt.Fprintln(w, "start")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, "hello %s\n", r.Host)
	})
	in.serveGit(t, mux)
	in.servePackageIndex(t, mux)
	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			in.record("tls sni=%s", h.ServerName)
			return nil, nil
		}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	in.https = ln.Addr().String()
	return in
}

func (in *loopInternet) serveDNS(t *testing.T) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.ToLower(q.Question[0].Name)
		in.record("dns q=%s", name)
		switch {
		case name != "allowed.test." && name != "evil.test.":
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA,
				Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("127.0.0.2")})
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	in.dns = pc.LocalAddr().String()
}

// serveGit serves a bare repository with one commit over git's smart HTTP
// protocol (git http-backend) at /git/repo.git.
func (in *loopInternet) serveGit(t *testing.T, mux *http.ServeMux) {
	t.Helper()
	needTool(t, "git")
	root := filepath.Join(in.dir, "git")
	work := filepath.Join(in.dir, "work")
	git := func(dir string, args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=e2e", "-c", "user.email=e2e@example.test",
			"-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	os.MkdirAll(root, 0o755)
	git(root, "init", "-q", "--bare", "repo.git")
	git(in.dir, "init", "-q", work)
	os.WriteFile(filepath.Join(work, "README"), []byte("fetched through egressd\n"), 0o644)
	git(work, "add", "README")
	git(work, "commit", "-q", "-m", "first")
	git(work, "push", "-q", filepath.Join(root, "repo.git"), "HEAD:main")
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"), Root: "/git",
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	mux.HandleFunc("/git/", func(w http.ResponseWriter, r *http.Request) {
		in.record("git host=%s %s", r.Host, r.URL.Path)
		backend.ServeHTTP(w, r)
	})
}

// servePackageIndex serves a PEP 503 simple index with one wheel, demo 1.0.
func (in *loopInternet) servePackageIndex(t *testing.T, mux *http.ServeMux) {
	t.Helper()
	var whl bytes.Buffer
	zw := zip.NewWriter(&whl)
	files := map[string]string{
		"demo/__init__.py":             "",
		"demo-1.0.dist-info/METADATA":  "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
		"demo-1.0.dist-info/WHEEL":     "Wheel-Version: 1.0\nGenerator: egressd-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
		"demo-1.0.dist-info/RECORD":    "",
		"demo-1.0.dist-info/top_level": "demo\n",
	}
	for name, body := range files {
		w, _ := zw.Create(name)
		io.WriteString(w, body)
	}
	zw.Close()
	sum := sha256.Sum256(whl.Bytes())
	const file = "demo-1.0-py3-none-any.whl"
	mux.HandleFunc("/simple/demo/", func(w http.ResponseWriter, r *http.Request) {
		in.record("pip host=%s %s", r.Host, r.URL.Path)
		fmt.Fprintf(w, "<html><body><a href=\"/files/%s#sha256=%s\">%s</a></body></html>\n", file, hex.EncodeToString(sum[:]), file)
	})
	mux.HandleFunc("/files/", func(w http.ResponseWriter, r *http.Request) {
		in.record("pip host=%s %s", r.Host, r.URL.Path)
		w.Write(whl.Bytes())
	})
}

func needTool(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed", tool)
		}
		t.Skipf("%s not installed", tool)
	}
}

// explicitEgressd is an egressd running only explicit-proxy sandboxes.
type explicitEgressd struct {
	proxy, socket string
	logs          *syncBuffer
}

// startExplicit runs egressd with one sandbox, agent, listening on
// 127.0.0.1 and allowed allowed.test; as nobody when the test is root.
func startExplicit(t *testing.T, in *loopInternet) *explicitEgressd {
	t.Helper()
	dir := scratchDir(t)
	for _, d := range []string{"run", "state"} {
		os.Mkdir(filepath.Join(dir, d), 0o700)
		if os.Geteuid() == 0 {
			os.Chown(filepath.Join(dir, d), 65534, 65534)
		}
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := ln.Addr().String()
	ln.Close()
	e := &explicitEgressd{proxy: proxyAddr, socket: filepath.Join(dir, "run", "admin.sock"), logs: &syncBuffer{}}
	cfg := fmt.Sprintf(`
[proxy]
upstream_dns = [%q]
peek_timeout = "2s"
dial_timeout = "2s"

[admin]
socket = %q

[state]
dir = %q

# The "internet" is on this host's loopback: let the sandbox reach it.
[host]
protect_host = false

[dns]
block_private_answers = false

[[sandbox]]
name   = "agent"
listen = [%q]
mode   = "custom"
allow_domains = ["allowed.test"]
`, in.dns, e.socket, filepath.Join(dir, "state"), proxyAddr)
	cfgFile := filepath.Join(dir, "egressd.toml")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	exe := filepath.Join(dir, "egressd")
	if b, err := os.ReadFile(bin); err != nil || os.WriteFile(exe, b, 0o755) != nil {
		t.Fatalf("copy egressd: %v", err)
	}
	args := []string{exe, "run", "-config", cfgFile}
	if os.Geteuid() == 0 {
		needTool(t, "setpriv")
		args = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
			"--bounding-set=-all", "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("egressd output:\n%s", e.logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), `"msg":"ready"`) {
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("egressd not ready:\n%s", e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e
}

// run runs a client with HOME in a scratch directory and a timeout.
func (e *explicitEgressd) run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(cleanEnv(), "HOME="+scratchDir(t), "GIT_TERMINAL_PROMPT=0", "PIP_CONFIG_FILE=/dev/null")
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestExplicitProxyWithoutRoot(t *testing.T) {
	needTool(t, "curl")
	in := startLoopInternet(t)
	e := startExplicit(t, in)
	if !strings.Contains(e.logs.String(), "only explicit proxy sandboxes: no kernel rules") {
		t.Error("egressd did not say it runs without kernel rules")
	}
	_, port, _ := net.SplitHostPort(in.https)
	allowed, evil := "https://allowed.test:"+port, "https://evil.test:"+port
	curl := func(args ...string) (string, error) {
		return e.run(t, "curl", append([]string{"-sS", "--max-time", "5", "--cacert", in.caFile}, args...)...)
	}

	t.Run("curl", func(t *testing.T) {
		for _, tc := range []struct{ via, proxy string }{{"socks5", "--socks5-hostname"}, {"connect", "-x"}} {
			out, err := curl(tc.proxy, e.proxy, allowed+"/hello/"+tc.via)
			if err != nil || !strings.Contains(out, "hello allowed.test") {
				t.Errorf("%s to allowed.test: %v\n%s", tc.via, err, out)
			}
			if out, err := curl(tc.proxy, e.proxy, evil+"/hello/"+tc.via+"-evil"); err == nil {
				t.Errorf("%s to evil.test passed:\n%s", tc.via, out)
			}
		}
	})
	t.Run("git", func(t *testing.T) {
		dst := filepath.Join(scratchDir(t), "clone")
		out, err := e.run(t, "git", "-c", "http.proxy=http://"+e.proxy, "-c", "http.sslCAInfo="+in.caFile,
			"clone", "-q", allowed+"/git/repo.git", dst)
		if err != nil {
			t.Fatalf("git clone through CONNECT: %v\n%s", err, out)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, "README")); string(b) != "fetched through egressd\n" {
			t.Errorf("cloned README: %q", b)
		}
		if out, err := e.run(t, "git", "-c", "http.proxy=http://"+e.proxy, "-c", "http.sslCAInfo="+in.caFile,
			"clone", "-q", evil+"/git/repo.git", dst+"-evil"); err == nil {
			t.Errorf("git clone from evil.test passed:\n%s", out)
		}
	})
	t.Run("pip", func(t *testing.T) {
		if exec.Command("python3", "-m", "pip", "--version").Run() != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("python3 -m pip not installed")
			}
			t.Skip("python3 -m pip not installed")
		}
		dst := scratchDir(t)
		pip := func(index string) (string, error) {
			return e.run(t, "python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
				"--retries", "0", "--timeout", "5", "--index-url", index+"/simple/", "--proxy", "http://"+e.proxy,
				"--cert", in.caFile, "-d", dst, "demo==1.0")
		}
		if out, err := pip(allowed); err != nil {
			t.Fatalf("pip download through CONNECT: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(dst, "demo-1.0-py3-none-any.whl")); err != nil {
			t.Errorf("wheel not downloaded: %v", err)
		}
		if out, err := pip(evil); err == nil {
			t.Errorf("pip download from evil.test passed:\n%s", out)
		}
	})
	t.Run("lockdown", func(t *testing.T) {
		c, err := net.Dial("tcp4", e.proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		target := "allowed.test:" + port
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || res.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", res, err)
		}
		tc := tls.Client(&readerConn{Conn: c, r: br}, &tls.Config{ServerName: "allowed.test", RootCAs: loadCA(t, in.caFile)})
		fmt.Fprintf(tc, "GET /hello/stream HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
		tr := bufio.NewReader(tc)
		if _, err := http.ReadResponse(tr, nil); err != nil {
			t.Fatal(err)
		}
		out, err := e.run(t, bin, "policy", "set", "-socket", e.socket, "-sandbox", "agent", "-mode", "deny-all")
		if err != nil {
			t.Fatalf("policy set: %v\n%s", err, out)
		}
		cut := time.Now()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = io.Copy(io.Discard, tr)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the tunnel survived the lock-down")
		}
		if d := time.Since(cut); d > time.Second {
			t.Errorf("tunnel cut %v after the policy change", d)
		}
		if out, err := curl("--socks5-hostname", e.proxy, allowed+"/hello/after-lockdown"); err == nil {
			t.Errorf("a new request passed after the lock-down:\n%s", out)
		}
	})
	t.Run("no kernel sandbox", func(t *testing.T) {
		out, err := e.run(t, bin, "sandbox", "add", "-socket", e.socket, "-name", "tp", "-interface", "veth-x",
			"-source", "10.9.9.2/32", "-mode", "allow-all")
		if err == nil || !strings.Contains(out, "runs without kernel rules") {
			t.Errorf("a sandbox with an interface was accepted by an egressd without kernel rules (%v):\n%s", err, out)
		}
	})
	for _, leak := range []string{"sni=evil.test", "host=evil.test", "/hello/after-lockdown"} {
		if in.saw(leak) {
			t.Errorf("leak: the loopback internet saw %q", leak)
		}
	}
	for _, want := range []string{`"ingress":"socks5"`, `"ingress":"connect"`} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

// cleanEnv is the environment without what would send a client elsewhere
// or make it trust other certificates: proxy settings, CA bundles, pip's
// and git's own configuration.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		u := strings.ToUpper(k)
		if strings.Contains(u, "PROXY") || strings.Contains(u, "SSL") || strings.Contains(u, "CERT") ||
			strings.Contains(u, "CA_BUNDLE") || strings.HasPrefix(u, "PIP_") || strings.HasPrefix(u, "GIT_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func loadCA(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}
