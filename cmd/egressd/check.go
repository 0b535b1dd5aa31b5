package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/internal/hostnet"
	"github.com/egressd/egressd/policy"
)

// checkCmd is `egressd check -config F -sandbox NAME TARGET`: print the
// decision the sandbox's policy makes for TARGET as one line starting with
// "allow", "deny" or "would-deny", the reason and the rule. Exit status:
// 0 allow, 1 deny or would-deny, 2 usage or config error (an unknown
// sandbox included).
func checkCmd(args []string) int {
	fs := newFlags("check", "-config FILE | -socket PATH  -sandbox NAME TARGET",
		"Say whether sandbox NAME may reach TARGET, and which rule decides.\n\n"+
			"With -socket, the running egressd answers with the policy in force (API\n"+
			"changes included); with -config, the file's policy is judged, and a policy\n"+
			"set through the admin API that shadows it is pointed out on stderr.\n\n"+
			"TARGET is host[:port], ip[:port][/tcp|/udp|/icmp] or [ipv6]:port[/proto];\n"+
			"entries scoped to ports judge the port (a port alone means TCP; without a\n"+
			"port, only entries for every port count, or for a host, some port). A\n"+
			"host is judged as the name a flow carries (TLS SNI, HTTP Host); its\n"+
			"address is not resolved. An address is judged as a raw destination: in\n"+
			"mode custom, one matching no CIDR rule is denied, since only a flow's\n"+
			"name could still allow it.\n\n"+
			"A sandbox in report-only mode (audit = true) gets \"would-deny\" where\n"+
			"enforcing would deny.\n\n"+
			"Exit status: 0 allow, 1 deny or would-deny, 2 usage or config error,\n"+
			"unknown sandbox or no egressd at -socket.")
	path := fs.String("config", "", "config file")
	socket := fs.String("socket", "", "admin socket of a running egressd")
	name := fs.String("sandbox", "", "sandbox name (required)")
	pos, code, ok := parseArgs(fs, args)
	switch {
	case !ok:
		return code
	case (*path == "") == (*socket == ""):
		return usageError(fs, "want one of -config and -socket")
	case *name == "":
		return usageError(fs, "-sandbox is required")
	case len(pos) != 1:
		return usageError(fs, "want exactly one TARGET")
	}
	t, err := policy.ParseTarget(pos[0])
	if err != nil {
		return usageError(fs, err.Error())
	}
	if *socket != "" {
		return checkRunning(*socket, *name, pos[0])
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	store := control.NewStore(cfg.State.Dir)
	set := cfg.Sandboxes.WithIsLocal(hostnet.IsLocal)
	sb, ok := set.ByName(*name)
	if !ok {
		fmt.Fprintf(os.Stderr, "egressd check: %s has no sandbox %q (it has %s); a sandbox created through "+
			"the admin API is judged with -socket\n", *path, *name, sandboxNames(cfg))
		return 2
	}
	if overrides, err := store.Load(); err == nil {
		if _, shadowed := overrides[*name]; shadowed {
			fmt.Fprintf(os.Stderr, "egressd check: note: sandbox %q has a policy set through the admin API (in %s), "+
				"which is what egressd enforces; this judged the file's policy only: ask egressd with -socket\n",
				*name, cfg.State.Dir)
		}
	}
	d := set.Check(sb, t)
	fmt.Println(d.String())
	if d.Verdict == policy.Allow {
		return 0
	}
	return 1
}

// checkRunning asks the egressd at socket (GET /v1/sandboxes/{name}/check).
func checkRunning(socket, name, target string) int {
	path := "/v1/sandboxes/" + url.PathEscape(name) + "/check?target=" + url.QueryEscape(target)
	status, resp, err := adminDo(socket, http.MethodGet, path, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "egressd check: admin API at %s: %v (is egressd running?)\n", socket, err)
		return 2
	}
	if status != http.StatusOK {
		fmt.Fprintf(os.Stderr, "egressd check: %s (HTTP %d)\n", apiError(resp), status)
		return 2
	}
	var a struct{ Verdict, Line string }
	if err := json.Unmarshal(resp, &a); err != nil {
		fmt.Fprintf(os.Stderr, "egressd check: admin API answer: %v\n", err)
		return 2
	}
	fmt.Println(a.Line)
	if a.Verdict == policy.Allow.String() {
		return 0
	}
	return 1
}

func sandboxNames(cfg *config.Config) string {
	var names []string
	for _, sb := range cfg.Sandboxes.All() {
		names = append(names, strconv.Quote(sb.Name))
	}
	return strings.Join(names, ", ")
}
