package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/proxy"
)

// testConfig has one sandbox per mode.
const testConfig = `
[proxy]
upstream_dns = ["198.51.100.53"]

[[sandbox]]
name = "open"
interface = "veth-open"
sources = ["10.1.0.2"]
mode = "allow-all"
deny_cidrs = ["198.51.100.128/25"]

[[sandbox]]
name = "closed"
interface = "veth-closed"
sources = ["10.2.0.2"]
mode = "deny-all"

[[sandbox]]
name = "picky"
interface = "veth-picky"
sources = ["10.3.0.2"]
mode = "custom"
allow_domains = ["allowed.test", "*.wild.test"]
`

// fakeKernel records the sets it was asked to install and fails on demand.
type fakeKernel struct {
	mu    sync.Mutex
	calls int
	fail  bool
}

func (k *fakeKernel) apply(_ context.Context, _ *config.Config, _ *policy.Set, _ []string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail {
		return errors.New("nft: operation not permitted")
	}
	k.calls++
	return nil
}

func (k *fakeKernel) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

type fakeFlows []proxy.FlowInfo

func (f fakeFlows) Flows() []proxy.FlowInfo { return append([]proxy.FlowInfo(nil), f...) }

// rig is the admin API over a controller whose kernel is a fakeKernel.
type rig struct {
	t      *testing.T
	ctl    *control.Controller
	kernel *fakeKernel
	store  *control.Store
	h      http.Handler
}

func newRig(t *testing.T, flows Flows) *rig {
	t.Helper()
	cfg, err := config.Parse("egressd.toml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, kernel: &fakeKernel{}, store: control.NewStore(t.TempDir())}
	r.ctl, err = control.New(cfg, r.store, control.Hooks{Kernel: r.kernel.apply}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ctl.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.h = NewHandler(r.ctl, Parts{Flows: flows}, nil)
	return r
}

// do sends one request and returns the status and the body.
func (r *rig) do(method, path, body string) (int, string) {
	r.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		r.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return res.StatusCode, string(b)
}

// spec GETs a sandbox's policy.
func (r *rig) spec(name string) policy.Spec {
	r.t.Helper()
	code, body := r.do("GET", "/v1/sandboxes/"+name+"/policy", "")
	if code != http.StatusOK {
		r.t.Fatalf("GET policy %s: %d %s", name, code, body)
	}
	var s policy.Spec
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		r.t.Fatalf("GET policy %s: %v: %s", name, err, body)
	}
	return s
}

// errorOf returns the "error" member of a JSON error body.
func errorOf(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil {
		t.Fatalf("not a JSON error: %q (%v)", body, err)
	}
	return *e.Error
}

// sourceOf says where a sandbox's policy in force comes from.
func sourceOf(t *testing.T, c *control.Controller, name string) control.Source {
	t.Helper()
	info, err := c.Policy(name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Source
}
