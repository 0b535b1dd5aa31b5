package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/control"
)

// createdJSON is the answer of POST /v1/sandboxes: the sandbox as stored.
type createdJSON struct {
	Name      string         `json:"name"`
	Interface string         `json:"interface"`
	Sources   []string       `json:"sources"`
	Origin    control.Origin `json:"origin"`
	Policy    any            `json:"policy"`
}

// createSandbox is POST /v1/sandboxes: 201 once the kernel rules, the
// proxy and the resolver enforce the new sandbox; 400 for invalid input
// (the config file's messages), 409 for a name, interface or source that
// is taken. On any error nothing changed.
func (h *handler) createSandbox(w http.ResponseWriter, r *http.Request) {
	in, err := decodeSandbox(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		h.refuse(w, r, in.Name, err)
		return
	}
	ctx, cancel := changeContext(r)
	defer cancel()
	if _, err := h.ctl.AddSandbox(ctx, in); err != nil {
		h.refuse(w, r, in.Name, err)
		return
	}
	info, err := h.ctl.Policy(in.Name)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.log.Info("sandbox created", append(peerFields(r), append(specFields(in.Name, info.Spec),
		zap.String("interface", info.Interface), zap.Strings("sources", info.Sources))...)...)
	writeJSON(w, http.StatusCreated, createdJSON{Name: info.Name, Interface: info.Interface, Sources: info.Sources,
		Origin: info.Origin, Policy: info.Spec})
}

// deleteSandbox is DELETE /v1/sandboxes/{name}: 204 once its flows are
// cut and the kernel no longer knows it; 409 for a sandbox from the
// config file, 404 for an unknown one.
func (h *handler) deleteSandbox(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctx, cancel := changeContext(r)
	defer cancel()
	if err := h.ctl.RemoveSandbox(ctx, name); err != nil {
		h.refuse(w, r, name, err)
		return
	}
	h.log.Info("sandbox removed", append(peerFields(r), zap.String("sandbox", name))...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNoContent)
}

// refuse answers a lifecycle error: 409 for a conflict or a config
// sandbox, 404 for an unknown one, 413 for a body too large, 500 when the
// kernel or the state directory failed, 400 for anything else.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, name string, err error) {
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, control.ErrConflict), errors.Is(err, control.ErrFromConfig):
		status = http.StatusConflict
	case errors.Is(err, control.ErrUnknownSandbox):
		status = http.StatusNotFound
	case errors.Is(err, errTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, control.ErrApply):
		h.fail(w, err)
		return
	}
	h.log.Info("sandbox change refused", append(peerFields(r), zap.String("sandbox", name), zap.Error(err))...)
	writeError(w, status, err.Error())
}

// sandboxKeys are the keys of a POST /v1/sandboxes object.
var sandboxKeys = map[string]bool{"name": true, "interface": true, "sources": true, "policy": true}

// decodeSandbox reads a POST /v1/sandboxes body as strictly as a policy
// (decodeSpec): one object, known keys only, each once, spelt exactly.
func decodeSandbox(r io.Reader) (config.SandboxInput, error) {
	var in config.SandboxInput
	data, err := io.ReadAll(r)
	if err != nil {
		return in, bodyError(err)
	}
	// Keys first, so that a misspelt policy key is named with its object.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err == nil {
		if err := checkObjectKeys(data, sandboxKeys, "name, interface, sources, policy"); err != nil {
			return in, err
		}
		if p, ok := raw["policy"]; ok && len(p) > 0 && p[0] == '{' {
			if err := checkKeys(p); err != nil {
				return in, fmt.Errorf("policy: %w", err)
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, sandboxBodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return in, errors.New("request body: more than one JSON value")
	}
	return in, nil
}

// sandboxBodyError is bodyError, naming the sandbox object's fields.
func sandboxBodyError(err error) error {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) && typ.Field != "" {
		return fmt.Errorf("%s: got a JSON %s", typ.Field, typ.Value)
	}
	if e := err.Error(); len(e) > 20 && e[:20] == "json: unknown field " {
		return fmt.Errorf("%s; the fields are name, interface, sources, policy", e[6:])
	}
	return bodyError(err)
}
