package admin

import (
	"fmt"
	"net/http"

	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/policy"
)

// checkAnswer is GET /v1/sandboxes/{name}/check's body: the decision the
// policy in force makes for the target, as `egressd check` prints it.
type checkAnswer struct {
	Sandbox string `json:"sandbox"`
	Target  string `json:"target"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	Rule    string `json:"rule"`
	Line    string `json:"line"`
}

// check is GET /v1/sandboxes/{name}/check?target=T: T judged by the
// policy in force (API overrides included), as the proxy would.
func (h *handler) check(w http.ResponseWriter, r *http.Request) {
	name, raw := r.PathValue("name"), r.URL.Query().Get("target")
	set := h.ctl.Sandboxes()
	sb, ok := set.ByName(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("sandbox %q: %v", name, control.ErrUnknownSandbox))
		return
	}
	t, err := policy.ParseTarget(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "target: "+err.Error())
		return
	}
	d := set.Check(sb, t)
	writeJSON(w, http.StatusOK, checkAnswer{Sandbox: name, Target: raw, Verdict: d.Verdict.String(),
		Reason: d.Reason.String(), Rule: d.Rule(), Line: d.String()})
}

// activity is GET /v1/sandboxes/{name}/activity: what the sandbox reached
// since egressd started (or since it was created), from which `egressd
// suggest` makes a policy.
func (h *handler) activity(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := h.ctl.Sandboxes().ByName(name); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("sandbox %q: %v", name, control.ErrUnknownSandbox))
		return
	}
	if h.Activity == nil {
		writeError(w, http.StatusNotImplemented, "no activity record in this egressd")
		return
	}
	writeJSON(w, http.StatusOK, h.Activity(r.Context(), name))
}
