package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Setup labels, in table order. The HAProxy variants are compared to
// egressd through the better of the two, metric by metric.
const (
	setupDirect  = "direct"
	setupEgressd = "egressd"
)

var haproxySetups = []string{"haproxy", "haproxy-splice"}

// reportCmd is `loadgen report -in FILE -out FILE -env TEXT`: the markdown
// table of the Result lines in FILE, printed and written to -out.
func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fs.String("in", "", "JSON lines from the client subcommands")
	out := fs.String("out", "", "markdown file to write (also printed)")
	env := fs.String("env", "", "free text describing the run, put under the title")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := readResults(*in)
	if err != nil {
		return err
	}
	md := render(res, *env)
	fmt.Print(md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	return nil
}

// results indexes Results by setup, then metric.
type results map[string]map[string]Result

func (r results) get(setup, metric string) (Result, bool) {
	x, ok := r[setup][metric]
	return x, ok
}

func readResults(path string) (results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	defer f.Close()
	out := results{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if out[r.Setup] == nil {
			out[r.Setup] = map[string]Result{}
		}
		out[r.Setup][r.Metric] = r
	}
	return out, sc.Err()
}

func render(res results, env string) string {
	var b strings.Builder
	b.WriteString("# egressd benchmark\n\n")
	if env != "" {
		b.WriteString(env + "\n\n")
	}
	writeMain(&b, res)
	b.WriteString("\n")
	writeExplicit(&b, res)
	writeDetails(&b, res)
	return b.String()
}

// explicitSetups are egressd's explicit proxy listener, asked through
// SOCKS5 and CONNECT, and the well-known explicit proxy it is measured
// against (last).
var explicitSetups = []string{"egressd-socks5", "egressd-connect", "tinyproxy"}

// writeExplicit writes the explicit proxies' table, when they ran.
func writeExplicit(w io.Writer, res results) {
	peer := explicitSetups[len(explicitSetups)-1]
	if _, ok := res[peer]; !ok {
		return
	}
	fmt.Fprint(w, "## Explicit proxies\n\n")
	fmt.Fprintln(w, "| metric | direct | egressd SOCKS5 | egressd CONNECT | tinyproxy | SOCKS5 vs tinyproxy | CONNECT vs tinyproxy | target |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rows[:3] { // bulk 1 and 8 streams, conns/s
		d, dok := value(res, setupDirect, r)
		cells := []string{r.label, cell(d, dok)}
		vals := make([]float64, len(explicitSetups))
		oks := make([]bool, len(explicitSetups))
		for i, s := range explicitSetups {
			vals[i], oks[i] = value(res, s, r)
			cells = append(cells, cell(vals[i], oks[i]))
		}
		p := len(explicitSetups) - 1
		verdict := "—"
		if oks[0] && oks[1] && oks[p] {
			verdict = "≥ 1× tinyproxy: FAIL"
			if vals[0] >= vals[p] && vals[1] >= vals[p] {
				verdict = "≥ 1× tinyproxy: pass"
			}
		}
		cells = append(cells, ratio(vals[0], vals[p], oks[0] && oks[p]), ratio(vals[1], vals[p], oks[1] && oks[p]), verdict)
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}

// row is one line of the main table: how to read the figure from a Result
// and how egressd is judged.
type row struct {
	label     string
	metric    string
	value     func(Result) float64
	higherBad bool // latency, CPU and memory: lower is better
	delta     bool // compare to direct as a difference, not a ratio
	proxyOnly bool // a figure of the proxy process: none for direct
	vsHAProxy bool // the target is relative to the better HAProxy variant
	target    string
	pass      func(eg, direct, hap float64) bool
}

var rows = []row{
	{label: "TLS bulk, 1 stream (Gbit/s)", metric: "bulk1", value: func(r Result) float64 { return r.Gbps },
		target: "≥ 0.9× direct", pass: func(eg, d, _ float64) bool { return eg >= 0.9*d }},
	{label: "TLS bulk, 8 streams (Gbit/s)", metric: "bulk8", value: func(r Result) float64 { return r.Gbps },
		target: "≥ 0.9× direct", pass: func(eg, d, _ float64) bool { return eg >= 0.9*d }},
	{label: "new TLS conns/s (c=32)", metric: "rate", value: func(r Result) float64 { return r.ConnsPerSec },
		vsHAProxy: true, target: "≥ 1.05× HAProxy", pass: func(eg, _, h float64) bool { return eg >= 1.05*h }},
	{label: "proxy CPU per new conn (µs)", metric: "rate", value: func(r Result) float64 { return r.CPUusPerConn },
		higherBad: true, proxyOnly: true, vsHAProxy: true,
		target: "≤ 0.8× HAProxy", pass: func(eg, _, h float64) bool { return eg <= 0.8*h }},
	{label: "proxy CPU per GiB, 1 stream (ms)", metric: "bulk1", value: func(r Result) float64 { return r.CPUmsPerGiB },
		higherBad: true, proxyOnly: true},
	{label: "proxy CPU per GiB, 8 streams (ms)", metric: "bulk8", value: func(r Result) float64 { return r.CPUmsPerGiB },
		higherBad: true, proxyOnly: true, vsHAProxy: true,
		target: "≤ 0.8× HAProxy", pass: func(eg, _, h float64) bool { return eg <= 0.8*h }},
	{label: "setup latency p50 (µs)", metric: "latency", value: func(r Result) float64 { return r.P50us },
		higherBad: true, delta: true},
	{label: "setup latency p99 (µs)", metric: "latency", value: func(r Result) float64 { return r.P99us },
		higherBad: true, delta: true, target: "≤ direct + 250 µs", pass: func(eg, d, _ float64) bool { return eg <= d+250 }},
	{label: "RSS per idle conn (KiB)", metric: "idle", value: func(r Result) float64 { return r.KiBPerConn },
		higherBad: true, proxyOnly: true, target: "≤ 4 KiB", pass: func(eg, _, _ float64) bool { return eg <= 4 }},
	{label: "descriptors per idle conn", metric: "idle", value: func(r Result) float64 { return r.FDsPerConn },
		higherBad: true, proxyOnly: true, target: "≤ 2", pass: func(eg, _, _ float64) bool { return eg <= 2 }},
}

func writeMain(w io.Writer, res results) {
	fmt.Fprintln(w, "| metric | direct | egressd | HAProxy | HAProxy+splice | egressd vs direct | HAProxy (best) vs direct | egressd vs HAProxy (best) | target (egressd) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		d, dok := value(res, setupDirect, r)
		eg, eok := value(res, setupEgressd, r)
		h, hname, hok := bestHAProxy(res, r)
		if r.proxyOnly {
			dok = false // nothing to measure without a proxy
		}
		cells := []string{r.label, cell(d, dok), cell(eg, eok)}
		for _, s := range haproxySetups {
			v, ok := value(res, s, r)
			cells = append(cells, cell(v, ok))
		}
		cells = append(cells, compare(r, eg, d, eok && dok), compare(r, h, d, hok && dok)+suffix(hname),
			ratio(eg, h, eok && hok), verdict(r, eg, d, h, eok, dok, hok))
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
}

func value(res results, setup string, r row) (float64, bool) {
	x, ok := res.get(setup, r.metric)
	if !ok || (x.Errors > 0 && r.metric != "rate") {
		return 0, false
	}
	return r.value(x), true
}

// bestHAProxy returns the better HAProxy variant's figure for r.
func bestHAProxy(res results, r row) (float64, string, bool) {
	best, name, found := 0.0, "", false
	for _, s := range haproxySetups {
		v, ok := value(res, s, r)
		if !ok {
			continue
		}
		if !found || (r.higherBad && v < best) || (!r.higherBad && v > best) {
			best, name, found = v, s, true
		}
	}
	return best, name, found
}

func cell(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.*f", decimals(v), v)
}

func decimals(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	default:
		return 2
	}
}

func compare(r row, v, direct float64, ok bool) string {
	if !ok {
		return "—"
	}
	if r.delta {
		return fmt.Sprintf("%+.0f µs", v-direct)
	}
	return ratio(v, direct, true)
}

func ratio(a, b float64, ok bool) string {
	if !ok || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func suffix(name string) string {
	if name == "" {
		return ""
	}
	return " (" + name + ")"
}

func verdict(r row, eg, d, h float64, eok, dok, hok bool) string {
	if r.pass == nil {
		return ""
	}
	needDirect := !r.vsHAProxy && !r.proxyOnly
	if !eok || (needDirect && !dok) || (r.vsHAProxy && !hok) {
		return r.target + ": n/a"
	}
	if r.pass(eg, d, h) {
		return r.target + ": ✅"
	}
	return r.target + ": ❌"
}
