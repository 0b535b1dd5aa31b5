package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/egressd/egressd/internal/config"
)

// eventsCmd is `egressd events [-sandbox N] [-socket S]`: GET /v1/events,
// one readable line per decision, like tail -f. Exit status: 0 when the
// daemon ends the stream, 1 when it cannot be reached, 2 usage.
func eventsCmd(args []string) int {
	fs := newFlags("events", "[-sandbox NAME] [-socket PATH]",
		"Print every decision of a running egressd as it happens (flows, DNS\n"+
			"queries, what the kernel denied or passed in report-only mode), one line each, until interrupted. -json prints\n"+
			"the events as egressd sends them.")
	sandbox := fs.String("sandbox", "", "only this sandbox's events")
	socket := fs.String("socket", config.DefaultAdminSocket, "admin API socket")
	raw := fs.Bool("json", false, "print the JSON events as they come")
	pos, code, ok := parseArgs(fs, args)
	switch {
	case !ok:
		return code
	case len(pos) != 0:
		return usageError(fs, "takes no arguments")
	}
	client := adminClient(*socket, 0)
	path := "http://egressd/v1/events"
	if *sandbox != "" {
		path += "?sandbox=" + url.QueryEscape(*sandbox)
	}
	res, err := client.Get(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "egressd events: admin API at %s: %v (is egressd running?)\n", *socket, err)
		return 1
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		fmt.Fprintf(os.Stderr, "egressd events: %s (HTTP %d)\n", apiError(body), res.StatusCode)
		return 1
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if *raw {
			fmt.Println(sc.Text())
			continue
		}
		fmt.Println(readable(sc.Bytes()))
	}
	return 0
}

// readable turns one event into a line: time, sandbox, verdict, reason,
// what was judged.
func readable(line []byte) string {
	var e map[string]any
	if err := json.Unmarshal(line, &e); err != nil {
		return string(line)
	}
	str := func(k string) string {
		if v, ok := e[k]; ok {
			return fmt.Sprint(v)
		}
		return ""
	}
	if n := str("dropped"); n != "" {
		return "(" + n + " events lost: this reader fell behind)"
	}
	what := []string{}
	switch msg := str("msg"); {
	case strings.HasPrefix(msg, "dns"):
		what = append(what, "dns", str("name"), str("qtype"))
	case msg == "kernel denied":
		what = append(what, "kernel", str("packets"), "packets")
	case msg == "kernel report-only":
		what = append(what, "kernel", str("proto"), str("dst"), str("packets"), "packets")
	default:
		if n := str("name"); n != "" {
			what = append(what, n)
		}
		what = append(what, str("dst"))
		if msg != "flow" {
			what = append(what, "("+msg+")")
		}
	}
	verdict := str("verdict")
	if verdict == "" {
		verdict = "deny"
	}
	rule := str("rule")
	if rule != "" {
		rule = "[" + rule + "]"
	}
	return strings.Join(strings.Fields(strings.Join([]string{str("ts"), str("sandbox"), verdict, str("reason"),
		strings.Join(what, " "), rule}, " ")), " ")
}
