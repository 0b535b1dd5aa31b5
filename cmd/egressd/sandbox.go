package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/egressd/egressd/internal/config"
)

// sandboxCmd is `egressd sandbox add|rm|list`: create and remove
// sandboxes of a running egressd through its admin API. Exit status: 0
// done, 1 the API refused or could not be reached, 2 usage.
func sandboxCmd(args []string) int {
	fs := newFlags("sandbox", "add -name NAME -interface IFACE -source CIDR... [-f FILE | -mode MODE] [-socket PATH]\n"+
		"       egressd sandbox rm -name NAME [-socket PATH]\n       egressd sandbox list [-socket PATH]",
		"Create or remove a sandbox of a running egressd, through its admin API.\n"+
			"A created sandbox is enforced (kernel rules, proxy, resolver) before the\n"+
			"command returns, and persists across restarts until removed; its\n"+
			"interface stays guarded after removal.\n\n"+
			"  add   create it with the JSON policy in FILE (-f, \"-\" for stdin) or with\n"+
			"        MODE and no lists (-mode); -source may be given several times\n"+
			"  rm    remove a sandbox created through the API\n"+
			"  list  print every sandbox with its mode, origin, source and live flows\n\n"+
			"Exit status: 0 done, 1 refused by egressd or egressd unreachable, 2 usage.")
	socket := fs.String("socket", config.DefaultAdminSocket, "admin API socket")
	name := fs.String("name", "", "sandbox name (add, rm)")
	iface := fs.String("interface", "", "add: host-side interface its packets arrive on")
	var sources listFlag
	fs.Var(&sources, "source", "add: an address or prefix its packets come from (repeatable)")
	file := fs.String("f", "", "add: JSON policy file, \"-\" for standard input")
	mode := fs.String("mode", "", "add: allow-all, deny-all or custom, with no lists")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	req, msg := sandboxRequest(pos, *name, *iface, sources, *file, *mode)
	if msg != "" {
		return usageError(fs, msg)
	}
	return callAdmin("sandbox", *socket, req)
}

// sandboxRequest checks the command line and says which call it makes;
// the string is a usage error.
func sandboxRequest(pos []string, name, iface string, sources []string, file, mode string) (adminRequest, string) {
	if len(pos) != 1 {
		return adminRequest{}, "want exactly one action: add, rm or list"
	}
	switch pos[0] {
	case "list":
		if name != "" || iface != "" || len(sources) > 0 || file != "" || mode != "" {
			return adminRequest{}, "list takes no other flag than -socket"
		}
		return adminRequest{method: http.MethodGet, path: "/v1/sandboxes"}, ""
	case "rm":
		if name == "" {
			return adminRequest{}, "-name is required"
		}
		if iface != "" || len(sources) > 0 || file != "" || mode != "" {
			return adminRequest{}, "rm takes only -name and -socket"
		}
		return adminRequest{method: http.MethodDelete, path: "/v1/sandboxes/" + url.PathEscape(name)}, ""
	case "add":
		return addRequest(name, iface, sources, file, mode)
	}
	return adminRequest{}, fmt.Sprintf("unknown action %q: want add, rm or list", pos[0])
}

func addRequest(name, iface string, sources []string, file, mode string) (adminRequest, string) {
	switch {
	case name == "":
		return adminRequest{}, "-name is required"
	case iface == "":
		return adminRequest{}, "-interface is required"
	case len(sources) == 0:
		return adminRequest{}, "at least one -source is required"
	case (file == "") == (mode == ""):
		return adminRequest{}, "add wants one of -f FILE and -mode MODE"
	}
	spec := json.RawMessage(fmt.Sprintf(`{"mode":%q}`, mode))
	if file != "" {
		data, err := (adminRequest{file: file}).readBody()
		if err != nil {
			return adminRequest{}, err.Error()
		}
		spec = data
	}
	body, err := json.Marshal(struct {
		Name      string          `json:"name"`
		Interface string          `json:"interface"`
		Sources   []string        `json:"sources"`
		Policy    json.RawMessage `json:"policy"`
	}{name, iface, sources, spec})
	if err != nil {
		return adminRequest{}, "-f: " + err.Error()
	}
	return adminRequest{method: http.MethodPost, path: "/v1/sandboxes", body: body}, ""
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

var _ flag.Value = (*listFlag)(nil)
