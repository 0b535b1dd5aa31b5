package control

import (
	"fmt"

	"github.com/egressd/egressd/policy"
)

// SandboxInfo is one sandbox's current policy and where it and its
// policy come from.
type SandboxInfo struct {
	Name      string
	Interface string
	Sources   []string
	Origin    Origin      // where the sandbox comes from
	Source    Source      // where its policy comes from
	Spec      policy.Spec // normalised, as compiled; lists never nil
}

// List returns every sandbox of the current set: the config file's in
// file order, then the API's in creation order. It reads one snapshot
// without locking, so it never waits on a change in progress.
func (c *Controller) List() []SandboxInfo {
	snap := c.snap.Load()
	all := snap.set.All()
	out := make([]SandboxInfo, len(all))
	for i, sb := range all {
		out[i] = snap.info(sb)
	}
	return out
}

// Policy returns the named sandbox's current policy, or an error wrapping
// ErrUnknownSandbox.
func (c *Controller) Policy(name string) (SandboxInfo, error) {
	snap := c.snap.Load()
	sb, ok := snap.set.ByName(name)
	if !ok {
		return SandboxInfo{}, fmt.Errorf("sandbox %q: %w", name, ErrUnknownSandbox)
	}
	return snap.info(sb), nil
}

// info describes sb. A sandbox created through the API has its policy
// from the API too.
func (s *snapshot) info(sb *policy.Sandbox) SandboxInfo {
	origin, src := OriginConfig, SourceConfig
	if s.added.has(sb.Name) {
		origin, src = OriginAPI, SourceAPI
	}
	if _, ok := s.overrides[sb.Name]; ok {
		src = SourceAPI
	}
	srcs := make([]string, len(sb.Sources))
	for i, p := range sb.Sources {
		srcs[i] = p.String()
	}
	return SandboxInfo{Name: sb.Name, Interface: sb.Interface, Sources: srcs, Origin: origin, Source: src, Spec: sb.Policy.Spec()}
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
