package control

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

// Errors of the sandbox lifecycle.
var (
	// ErrConflict: the name, interface or a source is taken.
	ErrConflict = errors.New("already taken")
	// ErrFromConfig: the sandbox comes from the config file; only the
	// file (and SIGHUP) removes it.
	ErrFromConfig = errors.New("comes from the config file")
)

// Origin says where a sandbox itself comes from.
type Origin string

// The origins.
const (
	OriginConfig Origin = "config"
	OriginAPI    Origin = "api"
)

// apiSandboxes are the sandboxes created through the API, in creation
// order, with what the API was given. Values are replaced, never changed.
type apiSandboxes struct {
	list   []*policy.Sandbox
	inputs map[string]config.SandboxInput
}

// Len is the number of sandboxes created through the admin API.
func (a apiSandboxes) Len() int { return len(a.list) }

func (a apiSandboxes) has(name string) bool {
	_, ok := a.inputs[name]
	return ok
}

// with returns a copy with sb (made from in) added.
func (a apiSandboxes) with(sb *policy.Sandbox, in config.SandboxInput) apiSandboxes {
	out := apiSandboxes{list: append(slices.Clone(a.list), sb), inputs: make(map[string]config.SandboxInput, len(a.inputs)+1)}
	for k, v := range a.inputs {
		out.inputs[k] = v
	}
	out.inputs[in.Name] = in
	return out
}

// without returns a copy without the sandbox called name.
func (a apiSandboxes) without(name string) apiSandboxes {
	out := apiSandboxes{inputs: make(map[string]config.SandboxInput, len(a.inputs))}
	for _, sb := range a.list {
		if sb.Name != name {
			out.list = append(out.list, sb)
			out.inputs[sb.Name] = a.inputs[sb.Name]
		}
	}
	return out
}

// AddSandbox creates a sandbox. It is persisted and enforced by the
// kernel rules, the proxy and the resolver before AddSandbox returns. The
// error wraps ErrConflict when the name, the interface or a source is
// taken; any other validation error is the config file's message. On any
// error nothing changed.
func (c *Controller) AddSandbox(ctx context.Context, in config.SandboxInput) (*policy.Sandbox, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sb, err := config.CheckSandbox(in, c.cfg.Host)
	if err != nil {
		return nil, err
	}
	if err := CheckSpec(in.Policy); err != nil { // lists the mode does not take
		return nil, fmt.Errorf("sandbox %q: %w", in.Name, err)
	}
	if _, ok := c.Sandboxes().ByName(in.Name); ok {
		return nil, fmt.Errorf("sandbox %q: name %w", in.Name, ErrConflict)
	}
	if _, ok := c.overrides[in.Name]; ok {
		// A persisted policy of a sandbox gone from the config would
		// apply to the new one: it starts from its own policy only.
		return nil, fmt.Errorf("sandbox %q: a persisted policy for this name is kept "+
			"(DELETE /v1/sandboxes/%s/policy drops it): name %w", in.Name, in.Name, ErrConflict)
	}
	next := c.added.with(&sb, in)
	set, err := c.build(c.cfg, next, c.overrides)
	if err != nil {
		return nil, err
	}
	created, _ := set.ByName(in.Name)
	guarded, err := c.prepare([]*policy.Sandbox{created}, c.cfg.Host, false)
	if err != nil {
		return nil, err
	}
	if err := c.switchSandboxes(ctx, set, next, c.overrides, guarded); err != nil {
		return nil, err
	}
	return created, nil
}

// RemoveSandbox deletes a sandbox created through the API: its live flows
// are cut and its DNS bindings dropped (the components see a set without
// it), its runtime policy is dropped, and its interface stays guarded. A
// sandbox from the config file is refused with ErrFromConfig.
func (c *Controller) RemoveSandbox(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.added.has(name) {
		if _, ok := c.cfg.Sandboxes.ByName(name); ok {
			return fmt.Errorf("sandbox %q %w %s: remove it there and reload", name, ErrFromConfig, c.cfg.Path)
		}
		return fmt.Errorf("sandbox %q: %w", name, ErrUnknownSandbox)
	}
	next := c.added.without(name)
	overrides := cloneOverrides(c.overrides)
	delete(overrides, name)
	set, err := c.build(c.cfg, next, overrides)
	if err != nil {
		return err
	}
	return c.switchSandboxes(ctx, set, next, overrides, c.guarded)
}

// switchSandboxes persists the API's sandboxes, overrides and guarded
// interfaces and applies set.
func (c *Controller) switchSandboxes(ctx context.Context, set *policy.Set, added apiSandboxes,
	overrides map[string]policy.Spec, guarded []string) error {
	if err := c.apply(ctx, c.cfg, set, added, overrides, guarded); err != nil {
		return err
	}
	c.added, c.overrides = added, overrides
	c.publish(set, overrides, added)
	return nil
}

// restoreState writes the running sandboxes and overrides back after err.
func (c *Controller) restoreState(err error) error {
	if rerr := c.store.Save(c.added, c.overrides, c.guarded); rerr != nil {
		return fmt.Errorf("%w; writing back the persisted sandboxes and policies failed too, so a restart would apply the refused change: %v", err, rerr)
	}
	return err
}
