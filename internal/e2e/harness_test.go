package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// bin is the egressd binary under test, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "egressd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "egressd")
	build := exec.Command("go", "build", "-o", bin, "github.com/egressd/egressd/cmd/egressd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build egressd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// serverAddrs are the internet namespace's server addresses.
var serverAddrs = []string{
	"198.51.100.10/32", "198.51.100.11/32", "198.51.100.12/32", "198.51.100.53/32",
	"198.51.100.66/32", "198.51.100.77/32", "198.51.100.78/32", "198.51.100.130/32",
	"203.0.113.5/32", "2001:db8::10/128", "2001:db8::11/128", "2001:db8::66/128", "2001:db8:77::5/128",
}

// defaultSandbox is the custom policy most tests run under.
const defaultSandbox = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "custom"
allow_domains = ["allowed.test", "*.allowed.test", "*.wild.test", "inside-deny.test"]
allow_cidrs   = ["198.51.100.77/32", "2001:db8:77::/64"]
deny_cidrs    = ["198.51.100.128/25"]
`

// allowAllSandbox and denyAllSandbox are sb1 in the other two modes.
const (
	allowAllSandbox = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "allow-all"
`
	denyAllSandbox = `
[[sandbox]]
name      = "sb1"
interface = "veth-sb1"
sources   = ["10.231.0.2/32", "fd00:231::2/128"]
mode      = "deny-all"
`
)

// env is one topology with egressd running in the firewall namespace.
type env struct {
	t      *testing.T
	tp     *netnstest.Topology
	in     *internet
	config string
	dir    string // admin socket and state directory, the same across writeConfig
	proc   *exec.Cmd
	logs   *syncBuffer
	echo   map[string]bool // echo counters installed, by namespace and name
	proxy  string          // extra [proxy] keys for writeConfig
}

func newEnv(t *testing.T, sandboxes string) *env {
	t.Helper()
	e := newIdleEnv(t, sandboxes)
	e.start()
	return e
}

// newIdleEnv is newEnv without starting egressd: the firewall forwards
// everything until e.start().
func newIdleEnv(t *testing.T, sandboxes string) *env {
	t.Helper()
	tp := netnstest.New(t)
	tp.AddInternetAddr(serverAddrs...)
	e := &env{t: t, tp: tp, in: startInternet(t, tp.Internet), dir: t.TempDir()}
	e.config = filepath.Join(t.TempDir(), "egressd.toml")
	e.writeConfig(sandboxes)
	return e
}

// writeConfig writes the config file with sandboxes appended, which may
// start with other tables ([host], [dns]).
func (e *env) writeConfig(sandboxes string) {
	dir := e.dir
	cfg := fmt.Sprintf(`
[proxy]
tproxy_port  = 15001
dns_port     = 15053
upstream_dns = ["198.51.100.53:53"]
peek_timeout = "2s"
dial_timeout = "2s"
shutdown_timeout = "2s"
%s

[admin]
socket = %q
metrics = "127.0.0.1:9464"

[state]
dir = %q
%s`, e.proxy, filepath.Join(dir, "admin.sock"), filepath.Join(dir, "state"), sandboxes)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// start runs `egressd run` in the firewall namespace and waits until it
// logs that it is ready.
func (e *env) start() {
	e.t.Helper()
	e.logs = &syncBuffer{}
	cmd := e.tp.Command(e.tp.Firewall, bin, "run", "-config", e.config)
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start egressd: %v", err)
	}
	e.proc = cmd
	logs := e.logs
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if e.t.Failed() {
			e.t.Logf("egressd output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"ready"`) {
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			e.t.Fatalf("egressd not ready:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill9 kills egressd with SIGKILL, as a crash would.
func (e *env) kill9() {
	e.proc.Process.Signal(syscall.SIGKILL)
	e.proc.Wait()
}

// sandbox runs a command in the sandbox namespace and returns its output
// and error; a failing client is an expected outcome in many tests.
func (e *env) sandbox(args ...string) (string, error) {
	out, err := e.tp.Exec(e.tp.Sandbox, args...)
	return string(out), err
}

// curl runs curl in the sandbox with the test CA and a short timeout.
func (e *env) curl(args ...string) (string, error) {
	base := []string{"curl", "-sS", "--max-time", "5", "--cacert", e.in.caFile}
	return e.sandbox(append(base, args...)...)
}

// noEvents fails the test if the recorder holds an event with all of subs.
func (e *env) noEvents(subs ...string) {
	e.t.Helper()
	if got := e.in.rec.matching(subs...); len(got) > 0 {
		e.t.Errorf("leak: internet saw %q", got)
	}
}

// waitEvent waits up to 3 s for an event with all of subs.
func (e *env) waitEvent(subs ...string) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for len(e.in.rec.matching(subs...)) == 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("no event with %q; events: %q", subs, e.in.rec.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
