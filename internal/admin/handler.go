// Package admin serves egressd's admin API: HTTP on a unix socket, JSON in
// and out. It is a thin shell over control.Controller (policies) and the
// proxy's flow registry (connections):
//
//	GET    /v1/sandboxes                 name, mode, origin, source, live flows
//	POST   /v1/sandboxes                 create one (persisted, enforced, then 201)
//	DELETE /v1/sandboxes/{name}          remove one created through the API
//	GET    /v1/sandboxes/{name}/policy   the policy in force
//	GET    /v1/sandboxes/{name}/check    a target judged by it
//	GET    /v1/sandboxes/{name}/activity what the sandbox reached, for egressd suggest
//	PUT    /v1/sandboxes/{name}/policy   replace it (persisted, then applied)
//	DELETE /v1/sandboxes/{name}/policy   back to the config file's policy
//	GET    /v1/connections               live proxied flows
//	GET    /v1/events                    every decision, as it happens (NDJSON)
//
// Every error is {"error": "..."} with a 4xx or 5xx status. The handlers
// need no socket (NewHandler, tested with httptest); Listen and Start put
// them on the socket, whose file mode (0600, in a 0700 directory) is the
// access control. The socket answers only once Start is called, which run
// does after the kernel rules, the proxy and the resolver are up: a
// successful GET /v1/sandboxes means the sandboxes are enforced.
package admin

import (
	"context"
	"net/http"
	"net/http/pprof"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/activity"
	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/internal/events"
	"github.com/egressd/egressd/proxy"
)

// Flows lists the live proxied flows; *proxy.Server is one.
type Flows interface {
	Flows() []proxy.FlowInfo
}

// Parts are the data path's parts the API reports on; each may be nil,
// and the endpoints that need it then report nothing.
type Parts struct {
	Flows    Flows       // GET /v1/connections; *proxy.Server is one
	Events   *events.Hub // GET /v1/events
	Activity Activity    // GET /v1/sandboxes/{name}/activity
}

// Activity returns what a sandbox did since the daemon started (the
// daemon's activity.Record, brought up to date).
type Activity func(ctx context.Context, sandbox string) activity.Activity

// handler holds what the endpoints share.
type handler struct {
	ctl *control.Controller
	Parts
	log *zap.Logger
}

// NewHandler returns the admin API over ctl and the parts of p.
func NewHandler(ctl *control.Controller, p Parts, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	h := &handler{ctl: ctl, Parts: p, log: log.Named("admin")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sandboxes", h.listSandboxes)
	mux.HandleFunc("POST /v1/sandboxes", h.createSandbox)
	mux.HandleFunc("DELETE /v1/sandboxes/{name}", h.deleteSandbox)
	mux.HandleFunc("GET /v1/sandboxes/{name}/policy", h.getPolicy)
	mux.HandleFunc("PUT /v1/sandboxes/{name}/policy", h.putPolicy)
	mux.HandleFunc("DELETE /v1/sandboxes/{name}/policy", h.deletePolicy)
	mux.HandleFunc("GET /v1/sandboxes/{name}/check", h.check)
	mux.HandleFunc("GET /v1/sandboxes/{name}/activity", h.activity)
	mux.HandleFunc("GET /v1/connections", h.listConnections)
	mux.HandleFunc("GET /v1/events", h.streamEvents)
	// The Go runtime's profiles (CPU, heap, goroutines), for whoever may
	// use the socket: `go tool pprof` reads them over it.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return jsonMisses(mux)
}

// listFlows returns the live flows, none without a flow source.
func (h *handler) listFlows() []proxy.FlowInfo {
	if h.Flows == nil {
		return nil
	}
	return h.Flows.Flows()
}
