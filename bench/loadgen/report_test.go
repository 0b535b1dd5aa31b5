package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty is zero", nil, 0.5, 0},
		{"one sample is every quantile", ms(7), 0.99, 7 * time.Millisecond},
		{"median of ten is the fifth", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.5, 5 * time.Millisecond},
		{"p99 of ten is the largest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
		{"p0 is the smallest", ms(1, 2, 3), 0, 1 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.samples, tc.q); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.samples, tc.q, got, tc.want)
			}
		})
	}
}

// TestRenderVerdicts checks the main table against hand-computed figures:
// ratios to direct, the better HAProxy variant, and each target's verdict.
func TestRenderVerdicts(t *testing.T) {
	res := results{
		"direct": {
			"bulk1":   {Gbps: 10},
			"rate":    {ConnsPerSec: 2000},
			"latency": {P50us: 500, P99us: 1000},
		},
		"egressd": {
			"bulk1":   {Gbps: 9.5},
			"rate":    {ConnsPerSec: 1500, CPUusPerConn: 300},
			"bulk8":   {Gbps: 6, CPUmsPerGiB: 400},
			"latency": {P50us: 600, P99us: 1300},
			"idle":    {KiBPerConn: 8},
		},
		"haproxy":        {"rate": {ConnsPerSec: 1000, CPUusPerConn: 400}, "idle": {KiBPerConn: 4}, "bulk8": {CPUmsPerGiB: 1800}},
		"haproxy-splice": {"rate": {ConnsPerSec: 1200, CPUusPerConn: 450}, "bulk1": {Gbps: 3, Errors: 1}, "bulk8": {CPUmsPerGiB: 450}},
	}
	md := render(res, "")
	tests := []struct {
		name, row string
		want      []string
	}{
		{"throughput passes at 0.95× direct", "TLS bulk, 1 stream", []string{"| 0.95× |", "≥ 0.9× direct: ✅"}},
		{"a failed run is no figure", "TLS bulk, 1 stream", []string{"| — | — |"}},
		{"conns/s against the better HAProxy", "new TLS conns/s", []string{"1.25×", "(haproxy-splice)", "≥ 1.05× HAProxy: ✅"}},
		{"CPU per conn against the leaner HAProxy", "proxy CPU per new conn", []string{"| — | 300 |", "0.75×", "≤ 0.8× HAProxy: ✅"}},
		{"CPU per GiB over 0.8× fails", "proxy CPU per GiB, 8 streams", []string{"0.89×", "≤ 0.8× HAProxy: ❌"}},
		{"p99 delta over 250 µs fails", "setup latency p99", []string{"+300 µs", "❌"}},
		{"idle RSS over 4 KiB fails", "RSS per idle conn", []string{"| 8.00 |", "2.00×", "≤ 4 KiB: ❌"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := lineWith(md, "| "+tc.row)
			if line == "" {
				t.Fatalf("no row %q in:\n%s", tc.row, md)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("row %q lacks %q:\n%s", tc.row, w, line)
				}
			}
		})
	}
}

func lineWith(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis; utime 120, stime 30,
	// cutime 5, cstime 5 ticks.
	line := "4242 (egr d) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 120 30 5 5 20 0 8 0 100 1000000 500 18446744073709551615"
	got, err := parseStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1600 * time.Millisecond; got != want {
		t.Errorf("parseStatCPU = %v, want %v", got, want)
	}
	if _, err := parseStatCPU("4242 (short) S 1 2"); err == nil {
		t.Error("a truncated line parsed without error")
	}
}
