package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/egressd/egressd/internal/activity"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/policy"
)

// suggestCmd is `egressd suggest -sandbox N [-socket S | -log FILE]
// [-fold N]`: print the smallest policy that allows what the sandbox did,
// ready for `egressd policy set -f`. Exit status: 0 printed, 1 egressd or
// the log unreadable, 2 usage.
func suggestCmd(args []string) int {
	fs := newFlags("suggest", "-sandbox NAME [-socket PATH | -log FILE -config FILE] [-fold N]",
		"Print a mode-custom policy that allows what sandbox NAME reached: the names\n"+
			"of its flows and answered DNS queries as allow_domains, the addresses it\n"+
			"reached without a name (by the proxy, or UDP and ICMP in report-only mode)\n"+
			"as allow_cidrs, each after a comment line saying how many flows used it.\n"+
			"Denied destinations are listed after it, not in it. With -socket (the\n"+
			"default), the running egressd's record since it started, and the policy in\n"+
			"force's deny_cidrs kept; with -log, egressd's JSON log (\"-\": stdin), and the\n"+
			"deny_cidrs of the sandbox in -config (policy set replaces the whole policy:\n"+
			"they must not be lost).\n\n"+
			"Run the sandbox in report-only mode first (audit = true), then:\n"+
			"  egressd suggest -sandbox NAME > p.json && egressd policy set -sandbox NAME -f p.json\n\n"+
			"-fold N turns two or more names under one zone into *.zone when the zone\n"+
			"has at least N labels and is not a public suffix (default 0: never).")
	sandbox := fs.String("sandbox", "", "sandbox name (required)")
	socket := fs.String("socket", config.DefaultAdminSocket, "admin API socket")
	logFile := fs.String("log", "", "read egressd's JSON log instead of asking it")
	cfgFile := fs.String("config", "", "with -log: the config file whose deny_cidrs the policy keeps")
	fold := fs.Int("fold", 0, "fold names into *.zone for zones of at least N labels (0: never)")
	pos, code, ok := parseArgs(fs, args)
	switch {
	case !ok:
		return code
	case *sandbox == "":
		return usageError(fs, "-sandbox is required")
	case len(pos) != 0:
		return usageError(fs, "takes no arguments")
	case *fold < 0:
		return usageError(fs, "-fold must be 0 or more")
	case *logFile != "" && *cfgFile == "":
		return usageError(fs, "-log needs -config: the suggested policy replaces the sandbox's whole policy, deny_cidrs included")
	}
	var a activity.Activity
	var deny []string
	var err error
	if *logFile != "" {
		if deny, err = fileDenyCIDRs(*cfgFile, *sandbox); err == nil {
			a, err = activityFromLog(*logFile, *sandbox)
		}
	} else {
		a, deny, err = activityFromDaemon(*socket, *sandbox)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "egressd suggest: %v\n", err)
		return 1
	}
	if len(a.Entries) == 0 {
		fmt.Fprintf(os.Stderr, "egressd suggest: sandbox %q reached nothing yet; the policy below allows nothing\n", *sandbox)
	}
	if err := activity.Suggest(a, *fold, deny).Write(os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "egressd suggest: %v\n", err)
		return 1
	}
	return 0
}

// fileDenyCIDRs returns the deny_cidrs of sandbox in the config file.
func fileDenyCIDRs(path, sandbox string) ([]string, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	sb, ok := cfg.Sandboxes.ByName(sandbox)
	if !ok {
		return nil, fmt.Errorf("%s has no sandbox %q", path, sandbox)
	}
	return sb.Policy.Spec().DenyCIDRs, nil
}

func activityFromLog(path, sandbox string) (activity.Activity, error) {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return activity.Activity{}, err
		}
		defer f.Close()
		in = f
	}
	return activity.ReadLog(in, sandbox)
}

// activityFromDaemon asks egressd for the sandbox's activity and its
// policy's deny_cidrs.
func activityFromDaemon(socket, sandbox string) (activity.Activity, []string, error) {
	var a activity.Activity
	var spec policy.Spec
	base := "/v1/sandboxes/" + url.PathEscape(sandbox)
	for _, q := range []struct {
		path string
		into any
	}{{base + "/activity", &a}, {base + "/policy", &spec}} {
		status, resp, err := adminDo(socket, http.MethodGet, q.path, nil)
		if err != nil {
			return a, nil, fmt.Errorf("admin API at %s: %w (is egressd running?)", socket, err)
		}
		if status != http.StatusOK {
			return a, nil, fmt.Errorf("%s (HTTP %d)", apiError(resp), status)
		}
		if err := json.Unmarshal(resp, q.into); err != nil {
			return a, nil, fmt.Errorf("admin API answer for %s: %w", q.path, err)
		}
	}
	return a, spec.DenyCIDRs, nil
}
