package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/proxy"
)

func TestListSandboxes(t *testing.T) {
	flows := fakeFlows{{Sandbox: "open"}, {Sandbox: "open"}, {Sandbox: "picky"}}
	r := newRig(t, flows)
	if code, body := r.do("PUT", "/v1/sandboxes/closed/policy", `{"mode":"custom","allow_domains":["a.test"]}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	code, body := r.do("GET", "/v1/sandboxes", "")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"name": "open", "mode": "allow-all", "origin": "config", "source": "config", "flows": 2.0},
		{"name": "closed", "mode": "custom", "origin": "config", "source": "api", "flows": 0.0},
		{"name": "picky", "mode": "custom", "origin": "config", "source": "config", "flows": 1.0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestGetPolicy(t *testing.T) {
	r := newRig(t, nil)
	tests := []struct {
		name, path string
		code       int
		body       string
	}{
		{"lists never null", "/v1/sandboxes/closed/policy", 200,
			`{"mode":"deny-all","allow_domains":[],"allow_cidrs":[],"deny_cidrs":[]}`},
		{"config policy", "/v1/sandboxes/picky/policy", 200,
			`{"mode":"custom","allow_domains":["allowed.test","*.wild.test"],"allow_cidrs":[],"deny_cidrs":[]}`},
		{"unknown sandbox", "/v1/sandboxes/nope/policy", 404, `{"error":"sandbox \"nope\": unknown sandbox"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := r.do("GET", tc.path, "")
			if code != tc.code || compact(t, body) != tc.body {
				t.Errorf("got %d %s\nwant %d %s", code, compact(t, body), tc.code, tc.body)
			}
		})
	}
}

func TestPutPolicy(t *testing.T) {
	r := newRig(t, nil)
	before := r.kernel.count()
	body := `{"mode":"custom","allow_domains":["API.test.","api.test","*.x.test"],"allow_cidrs":["198.51.100.7"]}`
	code, resp := r.do("PUT", "/v1/sandboxes/open/policy", body)
	want := `{"mode":"custom","allow_domains":["api.test","*.x.test"],"allow_cidrs":["198.51.100.7/32"],"deny_cidrs":[]}`
	if code != 200 || compact(t, resp) != want {
		t.Fatalf("PUT: %d %s\nwant 200 %s", code, resp, want)
	}
	if got := compact(t, mustJSON(t, r.spec("open"))); got != want {
		t.Errorf("GET after PUT: %s", got)
	}
	if r.kernel.count() != before+1 {
		t.Errorf("kernel applied %d times, want 1", r.kernel.count()-before)
	}
	saved, err := r.store.Load()
	if err != nil || saved["open"].Mode != policy.ModeCustom || len(saved) != 1 {
		t.Errorf("persisted %v %v, want the open override", saved, err)
	}
	if src := sourceOf(t, r.ctl, "open"); src != control.SourceAPI {
		t.Errorf("source %q", src)
	}
}

func TestPutPolicyRefused(t *testing.T) {
	tests := []struct {
		name, sandbox, body string
		code                int
		msg                 string // exact error message
	}{
		{"bad wildcard", "picky", `{"mode":"custom","allow_domains":["a.test","b.test","a.*.b"]}`, 400,
			`allow_domains[2] "a.*.b": a wildcard may only be the whole leftmost label`},
		{"bad prefix", "picky", `{"mode":"custom","allow_cidrs":["10.0.0.0/33"]}`, 400, `allow_cidrs[0] "10.0.0.0/33"`},
		{"bad mode", "picky", `{"mode":"permissive"}`, 400,
			`mode "permissive": not a mode; want one of allow-all, deny-all, custom`},
		{"missing mode", "picky", `{"allow_domains":["a.test"]}`, 400, `mode "": required`},
		{"lists in deny-all", "picky", `{"mode":"deny-all","allow_domains":["a.test"],"deny_cidrs":["10.0.0.0/8"]}`, 400,
			"allow_domains is not allowed in mode deny-all; deny_cidrs is not allowed in mode deny-all"},
		{"allow lists in allow-all", "picky", `{"mode":"allow-all","allow_cidrs":["10.0.0.0/8"]}`, 400,
			"allow_cidrs is not allowed in mode allow-all"},
		{"unknown field", "picky", `{"mode":"custom","allow_domain":["a.test"]}`, 400,
			`unknown field "allow_domain"; the fields are mode, allow_domains, allow_cidrs, deny_cidrs, audit`},
		{"key in other case", "picky", `{"MODE":"allow-all"}`, 400,
			`unknown field "MODE"; the fields are mode, allow_domains, allow_cidrs, deny_cidrs, audit`},
		{"repeated key", "picky", `{"mode":"custom","deny_cidrs":["10.0.0.0/8"],"deny_cidrs":[]}`, 400,
			"deny_cidrs: given more than once"},
		{"wrong type", "picky", `{"mode":"custom","allow_domains":"a.test"}`, 400,
			"allow_domains: got a JSON string, want a list of strings"},
		{"not an object", "picky", `["custom"]`, 400, "request body: got a JSON array, want an object"},
		{"empty body", "picky", ``, 400, "request body: empty"},
		{"truncated", "picky", `{"mode":"custom"`, 400, "request body: truncated JSON"},
		{"syntax", "picky", `{"mode":custom}`, 400, "request body: invalid JSON at byte"},
		{"two values", "picky", `{"mode":"custom"} {"mode":"allow-all"}`, 400, "request body: more than one JSON value"},
		{"too large", "picky", `{"mode":"custom","allow_domains":["` + strings.Repeat("a", maxBody) + `"]}`, 413,
			"request body larger than"},
		{"unknown sandbox", "nope", `{"mode":"allow-all"}`, 404, `sandbox "nope": unknown sandbox`},
	}
	r := newRig(t, nil)
	old := r.spec("picky")
	calls := r.kernel.count()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := r.do("PUT", "/v1/sandboxes/"+tc.sandbox+"/policy", tc.body)
			msg := errorOf(t, body)
			if code != tc.code || !strings.HasPrefix(msg, tc.msg) {
				t.Errorf("got %d %q\nwant %d %q", code, msg, tc.code, tc.msg)
			}
			if got := r.spec("picky"); !reflect.DeepEqual(got, old) {
				t.Errorf("policy changed to %+v", got)
			}
		})
	}
	if r.kernel.count() != calls {
		t.Errorf("kernel applied %d times after refused changes", r.kernel.count()-calls)
	}
	if saved, err := r.store.Load(); err != nil || len(saved) != 0 {
		t.Errorf("persisted %v %v after refused changes", saved, err)
	}
}

func TestPutPolicyKernelFails(t *testing.T) {
	r := newRig(t, nil)
	old := r.spec("picky")
	r.kernel.fail = true
	code, body := r.do("PUT", "/v1/sandboxes/picky/policy", `{"mode":"allow-all"}`)
	if msg := errorOf(t, body); code != 500 || !strings.Contains(msg, "operation not permitted") {
		t.Errorf("got %d %q, want 500 naming the kernel error", code, msg)
	}
	if got := r.spec("picky"); !reflect.DeepEqual(got, old) {
		t.Errorf("policy changed to %+v", got)
	}
	if saved, err := r.store.Load(); err != nil || len(saved) != 0 {
		t.Errorf("persisted %v %v after a failed change", saved, err)
	}
}

func TestDeletePolicy(t *testing.T) {
	r := newRig(t, nil)
	config := r.spec("picky")
	if code, body := r.do("PUT", "/v1/sandboxes/picky/policy", `{"mode":"deny-all"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	code, body := r.do("DELETE", "/v1/sandboxes/picky/policy", "")
	if code != 200 || compact(t, body) != compact(t, mustJSON(t, config)) {
		t.Fatalf("DELETE: %d %s, want the config policy %+v", code, body, config)
	}
	if got := r.spec("picky"); !reflect.DeepEqual(got, config) {
		t.Errorf("policy after DELETE %+v", got)
	}
	if src := sourceOf(t, r.ctl, "picky"); src != control.SourceConfig {
		t.Errorf("source %q after DELETE", src)
	}
	if saved, err := r.store.Load(); err != nil || len(saved) != 0 {
		t.Errorf("persisted %v %v after DELETE", saved, err)
	}
	t.Run("without override", func(t *testing.T) {
		if code, body := r.do("DELETE", "/v1/sandboxes/picky/policy", ""); code != 200 {
			t.Errorf("%d %s", code, body)
		}
	})
	t.Run("unknown sandbox", func(t *testing.T) {
		if code, body := r.do("DELETE", "/v1/sandboxes/nope/policy", ""); code != 404 {
			t.Errorf("%d %s", code, body)
		}
	})
}

func TestConnections(t *testing.T) {
	flows := fakeFlows{
		{Sandbox: "picky", Src: netip.MustParseAddrPort("10.3.0.2:40000"), Dst: netip.MustParseAddrPort("198.51.100.10:443"),
			Upstream: netip.MustParseAddrPort("198.51.100.10:443"), Name: "allowed.test", Rule: "allow_domains allowed.test",
			BytesUp: 517, BytesDown: 4096, Age: 1500 * time.Millisecond},
		{Sandbox: "open", Src: netip.MustParseAddrPort("10.1.0.2:40001"), Dst: netip.MustParseAddrPort("[2001:db8::10]:80"),
			Age: 3 * time.Second},
	}
	r := newRig(t, flows)
	tests := []struct {
		name, query, want string
	}{
		{"oldest first", "", `[{"sandbox":"open","src":"10.1.0.2:40001","dst":"[2001:db8::10]:80","upstream":"","name":"","rule":"","bytes_up":0,"bytes_down":0,"age_ms":3000},` +
			`{"sandbox":"picky","src":"10.3.0.2:40000","dst":"198.51.100.10:443","upstream":"198.51.100.10:443","name":"allowed.test","rule":"allow_domains allowed.test","bytes_up":517,"bytes_down":4096,"age_ms":1500}]`},
		{"one sandbox", "?sandbox=open", `[{"sandbox":"open","src":"10.1.0.2:40001","dst":"[2001:db8::10]:80","upstream":"","name":"","rule":"","bytes_up":0,"bytes_down":0,"age_ms":3000}]`},
		{"none is an empty array", "?sandbox=closed", `[]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := r.do("GET", "/v1/connections"+tc.query, "")
			if code != 200 || compact(t, body) != tc.want {
				t.Errorf("got %d %s\nwant %s", code, compact(t, body), tc.want)
			}
		})
	}
	t.Run("no flow source", func(t *testing.T) {
		r := newRig(t, nil)
		if code, body := r.do("GET", "/v1/connections", ""); code != 200 || compact(t, body) != "[]" {
			t.Errorf("got %d %s", code, body)
		}
	})
}

func TestMisses(t *testing.T) {
	r := newRig(t, fakeFlows(nil))
	tests := []struct {
		name, method, path string
		code               int
		msg                string
	}{
		{"unknown path", "GET", "/v2/sandboxes", 404, "no such endpoint: GET /v2/sandboxes"},
		{"root", "GET", "/", 404, "no such endpoint: GET /"},
		{"method", "PATCH", "/v1/sandboxes", 405, "method PATCH not allowed on /v1/sandboxes; allowed: GET, HEAD, POST"},
		{"method on policy", "PATCH", "/v1/sandboxes/picky/policy", 405, "method PATCH not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := r.do(tc.method, tc.path, "")
			if msg := errorOf(t, body); code != tc.code || !strings.HasPrefix(msg, tc.msg) {
				t.Errorf("got %d %q, want %d %q", code, msg, tc.code, tc.msg)
			}
		})
	}
}

var _ Flows = (*proxy.Server)(nil)

// compact removes the indentation, keeping the key order.
func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("not JSON: %q", s)
	}
	return b.String()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestProfiles serves the runtime's profiles in pprof's own formats: a
// goroutine dump names the test's own function, and an unknown profile is
// a 404.
func TestProfiles(t *testing.T) {
	r := newRig(t, nil)
	get := func(path string) (int, string) {
		w := httptest.NewRecorder()
		r.h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code, w.Body.String()
	}
	if code, body := get("/debug/pprof/goroutine?debug=2"); code != http.StatusOK || !strings.Contains(body, "TestProfiles") {
		t.Fatalf("goroutine profile: %d, %.200s", code, body)
	}
	if code, _ := get("/debug/pprof/nosuch"); code != http.StatusNotFound {
		t.Errorf("unknown profile: %d, want 404", code)
	}
}
