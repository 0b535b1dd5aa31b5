package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// reloader changes the policy every interval, in a cycle of four that
// alternates the two ways in: SIGHUP with config A, PUT of an API
// override, SIGHUP with config B (the override still wins), DELETE (config
// B applies). Every variant allows the fetched name.
type reloader struct {
	o        options
	variants [2][]byte // config files A and B
	mu       sync.Mutex
	counts   reloadCounts
	apiTimes []time.Duration
	errs     []string
}

type reloadCounts struct{ sighup, put, del, failed int }

func newReloader(o options, a, b []byte) *reloader {
	return &reloader{o: o, variants: [2][]byte{a, b}}
}

func (r *reloader) run(ctx context.Context) {
	t := time.NewTicker(r.o.interval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		switch i % 4 {
		case 0, 2:
			err = r.sighup(r.variants[i%4/2])
		case 1:
			err = r.api("PUT", fmt.Sprintf(`{"mode":"custom","allow_domains":[%q,"x.test","*.api.test"],"deny_cidrs":["203.0.113.0/24"]}`, r.o.name))
		case 3:
			err = r.api("DELETE", "")
		}
		if err != nil {
			r.fail(err)
		}
	}
}

// sighup writes the config file atomically, then signals egressd.
func (r *reloader) sighup(cfg []byte) error {
	tmp := filepath.Join(filepath.Dir(r.o.config), ".reload.tmp")
	if err := os.WriteFile(tmp, cfg, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, r.o.config); err != nil {
		return err
	}
	if err := syscall.Kill(r.o.pid, syscall.SIGHUP); err != nil {
		return err
	}
	r.mu.Lock()
	r.counts.sighup++
	r.mu.Unlock()
	return nil
}

func (r *reloader) api(method, body string) error {
	t0 := time.Now()
	if err := adminJSON(method, "/v1/sandboxes/"+r.o.sandbox+"/policy", body, nil); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apiTimes = append(r.apiTimes, time.Since(t0))
	if method == "PUT" {
		r.counts.put++
	} else {
		r.counts.del++
	}
	return nil
}

func (r *reloader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts.failed++
	if len(r.errs) < 10 {
		r.errs = append(r.errs, err.Error())
	}
}

func (r *reloader) snapshot() reloadCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts
}

// apiPercentiles returns p50, p99 and max of the API calls' latency: the
// time to persist, install the kernel rules and swap the policy.
func (r *reloader) apiPercentiles() (p50, p99, max time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.apiTimes) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), r.apiTimes...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
}

// idleChanges times n API changes (PUT, DELETE, ...) before the load
// starts, for comparison with the same calls under load.
func idleChanges(o options, n int) (time.Duration, error) {
	r := newReloader(o, nil, nil)
	for i := range n {
		method, body := "DELETE", ""
		if i%2 == 0 {
			method, body = "PUT", fmt.Sprintf(`{"mode":"custom","allow_domains":[%q]}`, o.name)
		}
		if err := r.api(method, body); err != nil {
			return 0, err
		}
	}
	p50, _, _ := r.apiPercentiles()
	return p50, nil
}
