package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/policy"
)

// changeTimeout bounds one policy change (persist, kernel, swap). It is
// not tied to the request: a client hanging up does not abort a change
// halfway.
const changeTimeout = 30 * time.Second

// getPolicy is GET /v1/sandboxes/{name}/policy: the policy in force,
// normalised, lists never null.
func (h *handler) getPolicy(w http.ResponseWriter, r *http.Request) {
	info, err := h.ctl.Policy(r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info.Spec)
}

// putPolicy is PUT /v1/sandboxes/{name}/policy: a full replacement,
// persisted before the answer. On any error the old policy stays.
func (h *handler) putPolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := h.ctl.Policy(name); err != nil {
		h.fail(w, err)
		return
	}
	spec, err := decodeSpec(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		err = control.CheckSpec(spec)
	}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		h.log.Info("policy change refused", append(peerFields(r), zap.String("sandbox", name), zap.Error(err))...)
		writeError(w, status, err.Error())
		return
	}
	ctx, cancel := changeContext(r)
	defer cancel()
	if err := h.ctl.SetPolicy(ctx, name, spec); err != nil {
		h.fail(w, err)
		return
	}
	info, err := h.ctl.Policy(name) // normalised, as now in force
	if err != nil {
		h.fail(w, err)
		return
	}
	h.log.Info("policy set", append(peerFields(r), specFields(name, info.Spec)...)...)
	writeJSON(w, http.StatusOK, info.Spec)
}

// deletePolicy is DELETE /v1/sandboxes/{name}/policy: the config file's
// policy applies again; the answer is the policy now in force, or 204 when
// the sandbox left the config and only its persisted policy was dropped.
func (h *handler) deletePolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctx, cancel := changeContext(r)
	defer cancel()
	if err := h.ctl.ResetPolicy(ctx, name); err != nil {
		h.fail(w, err)
		return
	}
	info, err := h.ctl.Policy(name)
	if errors.Is(err, control.ErrUnknownSandbox) { // a persisted policy of a sandbox no longer configured
		h.log.Info("persisted policy of a removed sandbox dropped", append(peerFields(r), zap.String("sandbox", name))...)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	h.log.Info("policy reset to the config file's", append(peerFields(r), specFields(name, info.Spec)...)...)
	writeJSON(w, http.StatusOK, info.Spec)
}

func changeContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), changeTimeout)
}

// fail answers a controller error: 404 for an unknown sandbox, 500 for
// anything else (the kernel or the state directory failed; the old policy
// stays).
func (h *handler) fail(w http.ResponseWriter, err error) {
	if errors.Is(err, control.ErrUnknownSandbox) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	h.log.Error("policy change failed; the old policy stays", zap.Error(err))
	writeError(w, http.StatusInternalServerError, err.Error())
}

// maxLoggedList bounds the entries a change's log line lists.
const maxLoggedList = 32

func specFields(name string, s policy.Spec) []zap.Field {
	return []zap.Field{
		zap.String("sandbox", name), zap.String("mode", string(s.Mode)),
		listField("allow_domains", s.AllowDomains), listField("allow_cidrs", s.AllowCIDRs),
		listField("deny_cidrs", s.DenyCIDRs), zap.Bool("audit", s.Audit),
	}
}

// listField logs a list whole, or its length when it is long.
func listField(key string, l []string) zap.Field {
	if len(l) > maxLoggedList {
		return zap.Int(key+"_count", len(l))
	}
	return zap.Strings(key, l)
}
