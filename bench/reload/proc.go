package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procSample is what /proc and the admin API say about egressd.
type procSample struct {
	rssKB   int64
	threads int
	fds     int // open files but pipes
	pipes   int // splice(2) pipes: Go's pool, emptied by GC, not a leak
	flows   int // GET /v1/connections
}

const header = "when          requests ok   failed   changes  RSS MiB  threads  fds  pipes  flows"

func (s procSample) row(when string, l loadCounts, r reloadCounts) string {
	return fmt.Sprintf("%-12s %12d %8d %9d %8.1f %8d %4d %6d %6d",
		when, l.ok, l.failed, r.sighup+r.put+r.del, float64(s.rssKB)/1024, s.threads, s.fds, s.pipes, s.flows)
}

func sample(o options) (procSample, error) {
	var s procSample
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", o.pid))
	if err != nil {
		return s, fmt.Errorf("egressd gone? %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			s.rssKB, _ = strconv.ParseInt(fields[0], 10, 64)
		case "Threads":
			s.threads, _ = strconv.Atoi(fields[0])
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", o.pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return s, err
	}
	for _, fd := range fds {
		if target, _ := os.Readlink(filepath.Join(dir, fd.Name())); strings.HasPrefix(target, "pipe:") {
			s.pipes++
		} else {
			s.fds++
		}
	}
	var conns []json.RawMessage
	if err := adminJSON("GET", "/v1/connections", "", &conns); err != nil {
		return s, err
	}
	s.flows = len(conns)
	return s, nil
}

// admin talks to the admin socket, one connection per call: an idle
// keep-alive connection would count among egressd's open files.
var admin = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", adminSocket)
		},
	},
}

// adminSocket is set once by main before any call.
var adminSocket string

func adminJSON(method, path, body string, out any) error {
	req, err := http.NewRequest(method, "http://egressd"+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	res, err := admin.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(res.Body)
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, res.StatusCode, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(res.Body).Decode(out)
}
