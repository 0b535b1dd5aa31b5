package control

import (
	"fmt"

	"github.com/egressd/egressd/policy"
)

// SandboxInfo is one sandbox's current policy and where it comes from.
type SandboxInfo struct {
	Name   string
	Source Source
	Spec   policy.Spec // normalised, as compiled; lists never nil
}

// List returns every sandbox of the current set, in config order. The set
// and the sources are read under the writers' lock, so they agree.
func (c *Controller) List() []SandboxInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := c.set.Load().All()
	out := make([]SandboxInfo, len(all))
	for i, sb := range all {
		out[i] = c.info(sb)
	}
	return out
}

// Policy returns the named sandbox's current policy, or an error wrapping
// ErrUnknownSandbox.
func (c *Controller) Policy(name string) (SandboxInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sb, ok := c.set.Load().ByName(name)
	if !ok {
		return SandboxInfo{}, fmt.Errorf("sandbox %q: %w", name, ErrUnknownSandbox)
	}
	return c.info(sb), nil
}

// info describes sb; c.mu is held.
func (c *Controller) info(sb *policy.Sandbox) SandboxInfo {
	src := SourceConfig
	if _, ok := c.overrides[sb.Name]; ok {
		src = SourceAPI
	}
	return SandboxInfo{Name: sb.Name, Source: src, Spec: sb.Policy.Spec()}
}

// CheckSpec validates spec as SetPolicy will: the same rules as a
// [[sandbox]] in the config file (policy.Compile, and no list the mode
// does not take). The error names the field and the value, e.g.
//
//	allow_domains[2] "a.*.b": a wildcard may only be the whole leftmost label
//
// Several misplaced lists give one line each.
func CheckSpec(spec policy.Spec) error {
	if err := spec.CheckLists(); err != nil {
		return err
	}
	_, err := policy.Compile(spec)
	return err
}
