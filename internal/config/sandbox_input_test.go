package config

import (
	"strings"
	"testing"

	"github.com/egressd/egressd/policy"
)

func TestCheckSandbox(t *testing.T) {
	host := Host{SandboxInterfaces: []string{"veth-sb*"}}
	ok := SandboxInput{Name: "job-1", Interface: "veth-sb7", Sources: []string{"10.231.7.2"},
		Policy: policy.Spec{Mode: policy.ModeCustom, AllowDomains: []string{"pypi.org"}}}
	sb, err := CheckSandbox(ok, host)
	if err != nil || sb.Name != "job-1" || sb.Policy.Mode() != policy.ModeCustom || sb.Sources[0].String() != "10.231.7.2/32" {
		t.Fatalf("CheckSandbox(valid) = %+v, %v", sb, err)
	}
	bad := ok
	bad.Interface, bad.Sources = "tap0", []string{"10.0.0.1/8"}
	bad.Policy.AllowDomains = []string{"a.*.b"}
	_, err = CheckSandbox(bad, host)
	for _, want := range []string{
		`sandbox "job-1": interface "tap0": does not match host.sandbox_interfaces ["veth-sb*"]`,
		`sandbox "job-1": sources[0] "10.0.0.1/8"`,
		`sandbox "job-1": allow_domains[0] "a.*.b": a wildcard may only be the whole leftmost label`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	if err != nil && strings.HasPrefix(err.Error(), ":") {
		t.Errorf("message starts with a file position: %q", err)
	}
}
