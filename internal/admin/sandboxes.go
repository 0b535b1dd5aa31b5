package admin

import (
	"net/http"
	"net/netip"
	"sort"

	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/proxy"
)

// sandboxJSON is one element of GET /v1/sandboxes.
type sandboxJSON struct {
	Name   string         `json:"name"`
	Mode   policy.Mode    `json:"mode"`
	Audit  bool           `json:"audit,omitempty"` // report-only mode
	Origin control.Origin `json:"origin"`          // where the sandbox comes from: "config" or "api"
	Source control.Source `json:"source"`          // where its policy comes from: "config" or "api"
	Flows  int            `json:"flows"`           // live proxied flows
}

// listSandboxes is GET /v1/sandboxes, in config order.
func (h *handler) listSandboxes(w http.ResponseWriter, _ *http.Request) {
	perSandbox := flowsPerSandbox(h.listFlows())
	list := h.ctl.List()
	out := make([]sandboxJSON, len(list))
	for i, sb := range list {
		out[i] = sandboxJSON{Name: sb.Name, Mode: sb.Spec.Mode, Audit: sb.Spec.Audit, Origin: sb.Origin, Source: sb.Source, Flows: perSandbox[sb.Name]}
	}
	writeJSON(w, http.StatusOK, out)
}

// flowsPerSandbox counts live flows by sandbox name.
func flowsPerSandbox(flows []proxy.FlowInfo) map[string]int {
	n := map[string]int{}
	for _, f := range flows {
		n[f.Sandbox]++
	}
	return n
}

// connectionJSON is one element of GET /v1/connections.
type connectionJSON struct {
	Sandbox   string `json:"sandbox"`
	Src       string `json:"src"`
	Dst       string `json:"dst"`      // the destination the sandbox asked for
	Upstream  string `json:"upstream"` // the address dialled; "" until dialled
	Name      string `json:"name"`     // SNI or Host the flow was admitted on
	Rule      string `json:"rule"`     // the rule that admitted it; "" while peeking
	BytesUp   int64  `json:"bytes_up"`
	BytesDown int64  `json:"bytes_down"`
	AgeMS     int64  `json:"age_ms"`
}

// listConnections is GET /v1/connections[?sandbox=NAME], oldest first.
func (h *handler) listConnections(w http.ResponseWriter, r *http.Request) {
	only := r.URL.Query().Get("sandbox")
	flows := h.listFlows()
	sort.Slice(flows, func(i, j int) bool { return flows[i].Age > flows[j].Age })
	out := make([]connectionJSON, 0, len(flows))
	for _, f := range flows {
		if only != "" && f.Sandbox != only {
			continue
		}
		out = append(out, connectionJSON{
			Sandbox: f.Sandbox, Src: f.Src.String(), Dst: f.Dst.String(), Upstream: addrString(f.Upstream),
			Name: f.Name, Rule: f.Rule, BytesUp: f.BytesUp, BytesDown: f.BytesDown, AgeMS: f.Age.Milliseconds(),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
