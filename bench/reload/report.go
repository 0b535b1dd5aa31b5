package main

import (
	"fmt"
	"sort"
	"time"
)

// Growth limits between the first sample under load and the last one, and
// between idle before and idle after.
const (
	maxRSSGrowth = 1.25 // ×, under load: the heap settles after warm-up
	maxFDGrowth  = 0    // idle after vs idle before
)

// report prints the summary and says whether the run met the goal: no
// failed request, no failed change, no leak.
func report(o options, l *load, r *reloader, before procSample, under []procSample, after procSample) bool {
	lc, rc := l.snapshot(), r.snapshot()
	p50, p99, max := l.percentiles()
	a50, a99, amax := r.apiPercentiles()
	fmt.Printf("\nrequests: %d ok, %d failed (%.0f/s); latency p50 %v, p99 %v, max %v\n",
		lc.ok, lc.failed, float64(lc.ok)/o.duration.Seconds(), ms(p50), ms(p99), ms(max))
	fmt.Printf("policy changes: %d SIGHUP, %d PUT, %d DELETE sent, %d failed; API call p50 %v, p99 %v, max %v\n",
		rc.sighup, rc.put, rc.del, rc.failed, ms(a50), ms(a99), ms(amax))
	for _, e := range sortedErrs(l.errs) {
		fmt.Printf("  request error x%d: %s\n", l.errs[e], e)
	}
	for _, e := range r.errs {
		fmt.Printf("  change error: %s\n", e)
	}
	ok := lc.failed == 0 && rc.failed == 0 && lc.ok > 0
	if len(under) > 0 {
		first, last := under[0], under[len(under)-1]
		growth := float64(last.rssKB) / float64(first.rssKB)
		fmt.Printf("RSS under load: %.1f MiB at 10 s, %.1f MiB at the end (x%.2f); idle %.1f MiB before, %.1f MiB after\n",
			kib(first.rssKB), kib(last.rssKB), growth, kib(before.rssKB), kib(after.rssKB))
		if growth > maxRSSGrowth {
			fmt.Printf("  RSS grew more than x%.2f under steady load\n", maxRSSGrowth)
			ok = false
		}
	}
	fmt.Printf("idle before -> after: threads %d -> %d, open files %d -> %d (+ %d -> %d splice pipes), live flows %d -> %d\n",
		before.threads, after.threads, before.fds, after.fds, before.pipes, after.pipes, before.flows, after.flows)
	if after.fds-before.fds > maxFDGrowth || after.flows != 0 {
		fmt.Println("  open files or flows left behind")
		ok = false
	}
	if ok {
		fmt.Println("PASS: no failed allowed request, no growth")
	} else {
		fmt.Println("FAIL")
	}
	return ok
}

func sortedErrs(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return m[out[i]] > m[out[j]] })
	return out
}

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

func kib(kb int64) float64 { return float64(kb) / 1024 }
