package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/egressd/egressd/internal/activity"
	"github.com/egressd/egressd/internal/config"
)

// policyTimeout bounds one admin API call; a change waits for the kernel.
const policyTimeout = time.Minute

// policyCmd is `egressd policy get|set|reset|list`: the admin API's client.
// Exit status: 0 done, 1 the API refused or could not be reached (its
// message on stderr), 2 usage.
func policyCmd(args []string) int {
	fs := newFlags("policy", "get|set|reset -sandbox NAME [-f FILE | -mode MODE] [-socket PATH]\n       egressd policy list [-socket PATH]",
		"Show or change the policy of a sandbox of a running egressd, through its\n"+
			"admin API. A change applies at once, to live connections too, and\n"+
			"persists across restarts until reset.\n\n"+
			"  get    print the sandbox's policy in force, as JSON\n"+
			"  set    replace it: with the JSON policy in FILE (-f, \"-\" for stdin),\n"+
			"         e.g. {\"mode\":\"custom\",\"allow_domains\":[\"example.com\"]},\n"+
			"         (\"audit\": true for report-only mode; lines starting with \"#\"\n"+
			"         are skipped, as egressd suggest writes them), or with MODE and no\n"+
			"         lists (-mode)\n"+
			"  reset  drop the change: the config file's policy applies again\n"+
			"  list   print every sandbox with its mode, source and live flows\n\n"+
			"Exit status: 0 done, 1 refused by egressd or egressd unreachable, 2 usage.")
	socket := fs.String("socket", config.DefaultAdminSocket, "admin API socket")
	sandbox := fs.String("sandbox", "", "sandbox name (get, set, reset)")
	file := fs.String("f", "", "set: JSON policy file, \"-\" for standard input")
	mode := fs.String("mode", "", "set: allow-all, deny-all or custom, with no lists")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	req, msg := policyRequest(pos, *sandbox, *file, *mode)
	if msg != "" {
		return usageError(fs, msg)
	}
	return callAdmin("policy", *socket, req)
}

// adminRequest is one admin API call.
type adminRequest struct {
	method, path string
	file         string // body from this file ("-": stdin)
	body         []byte // or this body
}

// policyRequest checks the command line and says which call it makes; the
// string is a usage error.
func policyRequest(pos []string, sandbox, file, mode string) (adminRequest, string) {
	if len(pos) != 1 {
		return adminRequest{}, "want exactly one action: get, set, reset or list"
	}
	action := pos[0]
	if action == "list" {
		if sandbox != "" || file != "" || mode != "" {
			return adminRequest{}, "list takes no -sandbox, -f or -mode"
		}
		return adminRequest{method: http.MethodGet, path: "/v1/sandboxes"}, ""
	}
	if sandbox == "" {
		return adminRequest{}, "-sandbox is required"
	}
	req := adminRequest{path: "/v1/sandboxes/" + url.PathEscape(sandbox) + "/policy"}
	switch action {
	case "get", "reset":
		if file != "" || mode != "" {
			return adminRequest{}, action + " takes no -f or -mode"
		}
		req.method = map[string]string{"get": http.MethodGet, "reset": http.MethodDelete}[action]
	case "set":
		if (file == "") == (mode == "") {
			return adminRequest{}, "set wants one of -f FILE and -mode MODE"
		}
		req.method, req.file = http.MethodPut, file
		if mode != "" {
			req.body, _ = json.Marshal(map[string]string{"mode": mode})
		}
	default:
		return adminRequest{}, fmt.Sprintf("unknown action %q: want get, set, reset or list", action)
	}
	return req, ""
}

// callAdmin makes req over the socket, prints the answer and returns the
// exit status.
// cmd names the command in messages.
func callAdmin(cmd, socket string, req adminRequest) int {
	body, err := req.readBody()
	if err != nil {
		fmt.Fprintf(os.Stderr, "egressd %s: %v\n", cmd, err)
		return 1
	}
	status, resp, err := adminDo(socket, req.method, req.path, body)
	if err != nil {
		fmt.Fprintf(os.Stderr, "egressd %s: admin API at %s: %v (is egressd running?)\n", cmd, socket, err)
		return 1
	}
	if status/100 != 2 {
		fmt.Fprintf(os.Stderr, "egressd %s: %s (HTTP %d)\n", cmd, apiError(resp), status)
		return 1
	}
	os.Stdout.Write(resp)
	return 0
}

// readBody returns the request's body: a file's ("-": stdin) without its
// "#" comment lines, as egressd suggest writes them.
func (r adminRequest) readBody() ([]byte, error) {
	var b []byte
	var err error
	switch r.file {
	case "":
		return r.body, nil
	case "-":
		b, err = io.ReadAll(os.Stdin)
	default:
		b, err = os.ReadFile(r.file)
	}
	return activity.StripComments(b), err
}

// adminDo sends one HTTP request over the unix socket.
func adminDo(socket, method, path string, body []byte) (int, []byte, error) {
	client := adminClient(socket, policyTimeout)
	req, err := http.NewRequest(method, "http://egressd"+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, err
	}
	defer res.Body.Close()
	resp, err := io.ReadAll(res.Body)
	return res.StatusCode, resp, err
}

// apiError is the message of an {"error": "..."} body, or the body itself.
func apiError(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return string(bytes.TrimSpace(body))
}

// adminClient talks HTTP to the admin socket; timeout 0 is none (a stream).
func adminClient(socket string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
}
