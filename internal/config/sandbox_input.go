package config

import (
	"github.com/egressd/egressd/policy"
)

// SandboxInput is a sandbox as the admin API receives it
// (POST /v1/sandboxes): the [[sandbox]] keys, with the policy as a Spec.
type SandboxInput struct {
	Name      string      `json:"name"`
	Interface string      `json:"interface"`
	Sources   []string    `json:"sources"`
	Policy    policy.Spec `json:"policy"`
}

// CheckSandbox validates in with exactly the rules and messages of a
// [[sandbox]] in the config file, host.sandbox_interfaces included
// (without file and line):
//
//	sandbox "sb1": sources[0] "10.0.0.1/8": host bits set; did you mean 10.0.0.0/8?
//
// Rules between sandboxes (unique names, interfaces, sources) are the
// caller's: it knows the others.
func CheckSandbox(in SandboxInput, host Host) (policy.Sandbox, error) {
	v := newValidator("", nil)
	f := fileSandbox{
		Name: in.Name, Interface: in.Interface, Sources: in.Sources, Mode: string(in.Policy.Mode),
		AllowDomains: in.Policy.AllowDomains, AllowCIDRs: in.Policy.AllowCIDRs, DenyCIDRs: in.Policy.DenyCIDRs,
		Audit: in.Policy.Audit,
	}
	sb := v.sandbox(0, &f, host)
	if err := v.errs.err(); err != nil {
		return policy.Sandbox{}, err
	}
	return sb, nil
}
