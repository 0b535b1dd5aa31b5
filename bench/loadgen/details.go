package main

import (
	"fmt"
	"io"
	"sort"
)

// writeDetails lists every Result with the figures the main table leaves
// out: p90, RSS before and after, connection and error counts, durations.
func writeDetails(w io.Writer, res results) {
	fmt.Fprintln(w, "<details><summary>raw results</summary>")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| setup | metric | Gbit/s (min–max) | conns/s | p50 µs | p90 µs | p99 µs | RSS before KiB | RSS after KiB | KiB/conn | fds/conn | CPU µs/conn | CPU ms/GiB | conns | errors | s | first error |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, setup := range setupOrder(res) {
		for _, m := range []string{"bulk1", "bulk8", "rate", "latency", "idle"} {
			r, ok := res.get(setup, m)
			if !ok {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %.1f | %s |\n",
				setup, m, gbps(r), num(r.ConnsPerSec), num(r.P50us), num(r.P90us), num(r.P99us),
				num(float64(r.RSSBefore)), num(float64(r.RSSAfter)), num(r.KiBPerConn), num(r.FDsPerConn),
				num(r.CPUusPerConn), num(r.CPUmsPerGiB),
				r.Conns, r.Errors, r.Seconds, r.FirstError)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "</details>")
}

// setupOrder is direct, egressd, the HAProxy variants, then anything else.
func setupOrder(res results) []string {
	order := append([]string{setupDirect, setupEgressd}, haproxySetups...)
	known := map[string]bool{}
	for _, s := range order {
		known[s] = true
	}
	var extra []string
	for s := range res {
		if !known[s] {
			extra = append(extra, s)
		}
	}
	sort.Strings(extra)
	return append(order, extra...)
}

func num(v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.*f", decimals(v), v)
}

func gbps(r Result) string {
	if r.GbpsMin == 0 || r.GbpsMin == r.GbpsMax {
		return num(r.Gbps)
	}
	return fmt.Sprintf("%s (%s–%s)", num(r.Gbps), num(r.GbpsMin), num(r.GbpsMax))
}
