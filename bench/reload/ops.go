package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// opsRun is the scale benchmark's measure (bench/scale): under the
// clients' load, o.ops sandboxes are created (POST), their policies
// replaced (PUT) and removed (DELETE), one call at a time, each timed from
// request to answer (the answer comes once the kernel, the proxy and the
// resolver enforce the change); then one SIGHUP with one sandbox edited
// (config A), timed until the admin API shows the edit. It prints one line
// of figures and reports whether no request and no call failed.
//
// The clients run in a child process (-load-only), as a sandbox's
// workload and a platform's API client are different processes: sharing
// one Go scheduler with 32 TLS clients would time this process's own
// wait for a CPU with every call.
func opsRun(o options) (bool, error) {
	a, err := os.ReadFile(o.configA)
	if err != nil {
		return false, err
	}
	child, err := startLoad(o)
	if err != nil {
		return false, err
	}
	defer child.stop()
	time.Sleep(time.Second) // clients warmed up
	var post, put, del []time.Duration
	var failed []string
	for i := range o.ops {
		name := fmt.Sprintf("scale-op-%d", i)
		src := fmt.Sprintf("10.254.%d.%d", i/250, i%250+1)
		body := fmt.Sprintf(`{"name":%q,"interface":"vop%d","sources":[%q],"policy":{"mode":"custom","allow_domains":["a.test","*.b.test"]}}`, name, i, src)
		for _, step := range []struct {
			times        *[]time.Duration
			method, path string
			body         string
		}{
			{&post, "POST", "/v1/sandboxes", body},
			{&put, "PUT", "/v1/sandboxes/" + name + "/policy", `{"mode":"custom","allow_domains":["c.test"],"allow_cidrs":["203.0.113.9/32"]}`},
			{&del, "DELETE", "/v1/sandboxes/" + name, ""},
		} {
			t0 := time.Now()
			if err := adminJSON(step.method, step.path, step.body, nil); err != nil {
				failed = append(failed, err.Error())
				continue
			}
			*step.times = append(*step.times, time.Since(t0))
		}
	}
	var hup time.Duration
	if o.sandbox != "" {
		if hup, err = timeSIGHUP(o, a); err != nil {
			failed = append(failed, "SIGHUP: "+err.Error())
		}
	}
	lc, errs, err := child.stop()
	if err != nil {
		return false, err
	}
	s, err := sample(o)
	if err != nil {
		return false, err
	}
	fmt.Printf("POST p50 %s p95 %s | PUT p50 %s p95 %s | DELETE p50 %s p95 %s | SIGHUP %s | requests %d ok %d failed | RSS %.1f MiB\n",
		pct(post, 50), pct(post, 95), pct(put, 50), pct(put, 95), pct(del, 50), pct(del, 95), ms(hup),
		lc.ok, lc.failed, kib(s.rssKB))
	for _, f := range failed[:min(len(failed), 5)] {
		fmt.Println("  failed call:", f)
	}
	for e, n := range errs {
		fmt.Printf("  request error x%d: %s\n", n, e)
	}
	return lc.failed == 0 && len(failed) == 0 && lc.ok > 0, nil
}

// timeSIGHUP installs config cfg, signals egressd and waits until the
// admin API shows the policy of o.sandbox that cfg gives it (mode
// deny-all).
func timeSIGHUP(o options, cfg []byte) (time.Duration, error) {
	tmp := filepath.Join(filepath.Dir(o.config), ".scale.tmp")
	if err := os.WriteFile(tmp, cfg, 0o644); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, o.config); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := syscall.Kill(o.pid, syscall.SIGHUP); err != nil {
		return 0, err
	}
	for time.Since(t0) < 30*time.Second {
		var spec struct{ Mode string }
		if err := adminJSON("GET", "/v1/sandboxes/"+o.sandbox+"/policy", "", &spec); err == nil && spec.Mode == "deny-all" {
			return time.Since(t0), nil
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("%s not deny-all 30 s after SIGHUP", o.sandbox)
}

// pct is the p-th percentile of ds, in milliseconds.
func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return ms(s[min(len(s)-1, len(s)*p/100)])
}
