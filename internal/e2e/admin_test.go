package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/config"
)

// api is a client of one egressd's admin socket.
type api struct {
	t    *testing.T
	sock string
	c    *http.Client
}

// api returns a client of the admin socket named in the current config
// file. Call it before a reload rewrites the file: egressd keeps the
// socket it started with.
func (e *env) api() *api {
	e.t.Helper()
	cfg, err := config.Load(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	sock := cfg.Admin.Socket
	return &api{t: e.t, sock: sock, c: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}}
}

// do sends one request and returns the status and body.
func (a *api) do(method, path, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, "http://egressd"+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	res, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// must sends one request that has to succeed and decodes the answer.
func (a *api) must(method, path, body string, out any) {
	a.t.Helper()
	code, resp := a.do(method, path, body)
	if code != http.StatusOK {
		a.t.Fatalf("%s %s %s: %d %s", method, path, body, code, resp)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(resp), out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, resp)
		}
	}
}

// put replaces sb1's policy and fails the test unless it was accepted.
func (a *api) put(body string) {
	a.t.Helper()
	a.must("PUT", "/v1/sandboxes/sb1/policy", body, nil)
}

type sandboxRow struct {
	Name, Mode, Source string
	Flows              int
}

func (a *api) sandboxes() []sandboxRow {
	a.t.Helper()
	var out []sandboxRow
	a.must("GET", "/v1/sandboxes", "", &out)
	return out
}

type connRow struct {
	Sandbox, Src, Dst, Upstream, Name, Rule string
	BytesUp                                 int64 `json:"bytes_up"`
	BytesDown                               int64 `json:"bytes_down"`
	AgeMS                                   int64 `json:"age_ms"`
}

func (a *api) connections() []connRow {
	a.t.Helper()
	var out []connRow
	a.must("GET", "/v1/connections", "", &out)
	return out
}

// TestAPISocket checks the socket's mode and that it answers once egressd
// is ready.
func TestAPISocket(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	a := e.api()
	fi, err := os.Lstat(a.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != os.ModeSocket|0o600 {
		t.Errorf("socket mode %v, want srw-------", fi.Mode())
	}
	want := []sandboxRow{{Name: "sb1", Mode: "custom", Source: "config"}}
	if got := a.sandboxes(); len(got) != 1 || got[0] != want[0] {
		t.Errorf("GET /v1/sandboxes = %+v, want %+v", got, want)
	}
	if !strings.Contains(e.logs.String(), `"msg":"admin API listening"`) {
		t.Errorf("no admin API log line")
	}
}

// TestAPIBadInputKeepsPolicy sends refused changes, some of which would
// loosen the policy, and proves with traffic that the old policy holds.
func TestAPIBadInputKeepsPolicy(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	a := e.api()
	tests := []struct {
		name, path, body string
		code             int
		msg              string
	}{
		{"bad wildcard next to a loosening entry", "/v1/sandboxes/sb1/policy",
			`{"mode":"custom","allow_domains":["evil.test","a.*.wild.test"]}`, 400,
			`allow_domains[1] "a.*.wild.test": a wildcard may only be the whole leftmost label`},
		{"allow list in allow-all", "/v1/sandboxes/sb1/policy",
			`{"mode":"allow-all","allow_domains":["allowed.test"]}`, 400, "allow_domains is not allowed in mode allow-all"},
		{"unknown field", "/v1/sandboxes/sb1/policy", `{"mode":"allow-all","deny":["198.51.100.0/24"]}`, 400,
			`unknown field "deny"`},
		{"bad prefix", "/v1/sandboxes/sb1/policy", `{"mode":"custom","allow_cidrs":["198.51.100.66/33"]}`, 400,
			`allow_cidrs[0] "198.51.100.66/33"`},
		{"not JSON", "/v1/sandboxes/sb1/policy", `mode=allow-all`, 400, "request body: invalid JSON"},
		{"unknown sandbox", "/v1/sandboxes/sb9/policy", `{"mode":"allow-all"}`, 404, `sandbox "sb9": unknown sandbox`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := a.do("PUT", tc.path, tc.body)
			var resp struct{ Error string }
			json.Unmarshal([]byte(body), &resp)
			if code != tc.code || !strings.HasPrefix(resp.Error, tc.msg) {
				t.Errorf("got %d %s, want %d %q", code, body, tc.code, tc.msg)
			}
		})
	}
	t.Run("old policy holds", func(t *testing.T) {
		if got := a.sandboxes(); got[0].Source != "config" || got[0].Mode != "custom" {
			t.Errorf("sandbox %+v", got[0])
		}
		if out, err := e.curl("--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/kept"); err != nil || !strings.Contains(out, "hello allowed.test") {
			t.Errorf("allowed name refused: %v %q", err, out)
		}
		if out, err := e.curl("--resolve", "evil.test:443:198.51.100.66", "https://evil.test/loosened"); err == nil {
			t.Errorf("denied name passed: %q", out)
		}
		if out, err := e.sandbox("sh", "-c", "echo loosened-tcp | nc -w 2 -q 1 198.51.100.66 9000"); err == nil && strings.Contains(out, "ok") {
			t.Errorf("raw TCP passed: %q", out)
		}
		time.Sleep(300 * time.Millisecond)
		e.noEvents("loosened")
	})
}

// TestAPIDeleteRestoresConfig locks sb1 down through the API, then DELETE
// brings the config file's policy back.
func TestAPIDeleteRestoresConfig(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	a := e.api()
	var config map[string]any
	a.must("GET", "/v1/sandboxes/sb1/policy", "", &config)
	a.put(`{"mode":"deny-all"}`)
	if got := a.sandboxes(); got[0].Source != "api" || got[0].Mode != "deny-all" {
		t.Errorf("after PUT: %+v", got[0])
	}
	if out, err := e.curl("--max-time", "2", "--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/locked"); err == nil {
		t.Fatalf("deny-all passed an allowed name: %q", out)
	}
	e.noEvents("/locked")
	var restored map[string]any
	a.must("DELETE", "/v1/sandboxes/sb1/policy", "", &restored)
	if mustMarshal(t, restored) != mustMarshal(t, config) {
		t.Errorf("DELETE answered %v, want the config policy %v", restored, config)
	}
	if got := a.sandboxes(); got[0].Source != "config" || got[0].Mode != "custom" {
		t.Errorf("after DELETE: %+v", got[0])
	}
	if out, err := e.curl("--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/restored"); err != nil || !strings.Contains(out, "hello allowed.test") {
		t.Errorf("config policy not back: %v %q", err, out)
	}
	if out, err := e.curl("--resolve", "evil.test:443:198.51.100.66", "https://evil.test/restored"); err == nil {
		t.Errorf("DELETE loosened beyond the config: %q", out)
	}
	e.noEvents("evil.test", "/restored")
}

// TestAPIConnections lists a live flow with what admitted it. (Bytes of a
// spliced flow are counted when a direction ends, so they are not checked.)
func TestAPIConnections(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	a := e.api()
	c := e.dialSandbox(t, "198.51.100.77:9000")
	defer c.Close()
	io.WriteString(c, "listed\n")
	e.waitEvent("tcp 198.51.100.77:9000", "listed")
	conns := a.connections()
	if len(conns) != 1 {
		t.Fatalf("connections %+v, want one", conns)
	}
	got := conns[0]
	if got.Sandbox != "sb1" || got.Dst != "198.51.100.77:9000" || got.Upstream != "198.51.100.77:9000" ||
		got.Rule != "allow_cidrs 198.51.100.77/32" || got.Name != "" ||
		!strings.HasPrefix(got.Src, "10.231.0.2:") || got.AgeMS < 0 {
		t.Errorf("connection %+v", got)
	}
	if sbs := a.sandboxes(); sbs[0].Flows != 1 {
		t.Errorf("sandbox flows %d, want 1", sbs[0].Flows)
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMetrics reads the Prometheus endpoint after an allowed flow, a
// denied flow and a refused DNS query.
func TestMetrics(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	if out, err := e.curl("--resolve", "allowed.test:443:198.51.100.10", "https://allowed.test/"); err != nil {
		t.Fatalf("allowed curl: %v: %s", err, out)
	}
	if out, err := e.curl("--resolve", "evil.test:443:198.51.100.10", "https://evil.test/"); err == nil {
		t.Fatalf("denied curl got through: %s", out)
	}
	if out, _ := e.dig("198.51.100.53", "evil.test", "A", false); !strings.Contains(out, "REFUSED") {
		t.Fatalf("dig evil.test not refused:\n%s", out)
	}
	want := []string{
		`egressd_sandbox_flows{sandbox="sb1"} 0`,
		`egressd_proxy_flows_total{verdict="allow"} 1`,
		`egressd_proxy_flows_total{verdict="deny"} 1`,
		`egressd_dns_queries_total{outcome="refused"} 1`,
	}
	var out []byte
	deadline := time.Now().Add(5 * time.Second) // the allowed flow is counted when it ends
	for {
		var err error
		out, err = e.tp.Exec(e.tp.Firewall, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:9464/metrics")
		if err != nil {
			t.Fatalf("metrics: %v: %s", err, out)
		}
		if containsAll(string(out), want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w+"\n") {
			t.Errorf("metrics lack %q:\n%s", w, out)
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub+"\n") {
			return false
		}
	}
	return true
}

// TestCheckJudgesWhatIsInForce: with an API override in place, `check
// -socket` answers with the policy egressd enforces, `check -config` with
// the file's and says on stderr that an override shadows it, and a SIGHUP
// that changes the shadowed file policy says nothing changed.
func TestCheckJudgesWhatIsInForce(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	sock := filepath.Join(e.dir, "admin.sock")
	check := func(args ...string) (string, string, int) {
		cmd := e.tp.Command(e.tp.Firewall, append([]string{bin, "check"}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return stdout.String(), stderr.String(), code
	}
	if out, _, code := check("-socket", sock, "-sandbox", "sb1", "allowed.test"); code != 0 || !strings.HasPrefix(out, "allow: allowed.test matches allow_domains allowed.test") {
		t.Fatalf("check -socket before the override: %d %q", code, out)
	}
	e.api().put(`{"mode":"deny-all"}`)
	if out, _, code := check("-socket", sock, "-sandbox", "sb1", "allowed.test"); code != 1 || !strings.HasPrefix(out, "deny: mode deny-all") {
		t.Errorf("check -socket after a deny-all override: %d %q", code, out)
	}
	out, errOut, code := check("-config", e.config, "-sandbox", "sb1", "allowed.test")
	if code != 0 || !strings.HasPrefix(out, "allow:") || !strings.Contains(errOut, "has a policy set through the admin API") {
		t.Errorf("check -config with an override in place: %d %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := check("-socket", sock, "-sandbox", "nope", "allowed.test"); code != 2 || !strings.Contains(errOut, "unknown sandbox") {
		t.Errorf("check -socket for an unknown sandbox: %d %q", code, errOut)
	}
	e.reload(strings.Replace(defaultSandbox, `"inside-deny.test"]`, `"inside-deny.test", "new.test"]`, 1), `"msg":"reloaded"`)
	if !strings.Contains(e.logs.String(), "the file changed this sandbox's policy, but its API policy stays in force") {
		t.Errorf("no log line saying the reload changed nothing for the overridden sandbox")
	}
}
