package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSandbox(t *testing.T) {
	sock := serveAdmin(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "pol.json")
	os.WriteFile(pol, []byte(`{"mode":"custom","allow_domains":["pypi.org"]}`), 0o644)
	s := func(args ...string) []string { return append([]string{"sandbox", "-socket", sock}, args...) }
	runCases(t, []cliCase{
		{name: "add -f", args: s("add", "-name", "job", "-interface", "veth-job", "-source", "10.9.0.2", "-source", "fd00:9::2", "-f", pol),
			outHas: []string{`"name": "job"`, `"origin": "api"`, `"10.9.0.2/32"`, `"fd00:9::2/128"`, `"pypi.org"`}},
		{name: "add -mode", args: s("add", "-name", "job2", "-interface", "veth-job2", "-source", "10.9.1.2", "-mode", "deny-all"),
			outHas: []string{`"mode": "deny-all"`}},
		{name: "list", args: s("list"), outHas: []string{`"name": "job2"`, `"origin": "api"`}},
		{name: "taken", args: s("add", "-name", "job", "-interface", "veth-x", "-source", "10.9.2.2", "-mode", "deny-all"), code: 1, noOut: true,
			errHas: []string{`egressd sandbox: sandbox "job": name already taken (HTTP 409)`}},
		{name: "bad source", args: s("add", "-name", "j3", "-interface", "veth-j3", "-source", "10.9.3.1/8", "-mode", "deny-all"), code: 1, noOut: true,
			errHas: []string{`sources[0] "10.9.3.1/8"`, "(HTTP 400)"}},
		{name: "rm", args: s("rm", "-name", "job")},
		{name: "rm config sandbox", args: s("rm", "-name", "sb1"), code: 1, noOut: true, errHas: []string{"comes from the config file", "(HTTP 409)"}},
		{name: "rm unknown", args: s("rm", "-name", "job"), code: 1, noOut: true, errHas: []string{"unknown sandbox (HTTP 404)"}},
		{name: "add without source", args: s("add", "-name", "x", "-interface", "i", "-mode", "deny-all"), code: 2, noOut: true,
			errHas: []string{"at least one -source is required"}},
		{name: "add with both", args: s("add", "-name", "x", "-interface", "i", "-source", "10.0.0.1", "-mode", "deny-all", "-f", pol), code: 2, noOut: true,
			errHas: []string{"add wants one of -f FILE and -mode MODE"}},
		{name: "unknown action", args: s("start"), code: 2, noOut: true, errHas: []string{`unknown action "start"`}},
	})
}
