package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idleCmd is `loadgen idle -n N -pid P`: the proxy P's resident memory and
// open descriptors for N idle proxied TLS connections. It warms the path up, reads P's RSS,
// opens N connections (handshake done, nothing sent after), waits for the
// proxy to settle, reads the RSS again, then closes them all.
func idleCmd(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	cf := newClientFlags(fs)
	n := fs.Int("n", 5000, "idle connections")
	pid := fs.Int("pid", 0, "proxy process to measure (0: none)")
	conc := fs.Int("concurrency", 32, "parallel openers")
	settle := fs.Duration("settle", 2*time.Second, "wait before each RSS reading")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	for range 100 { // warm-up: the proxy's pools, caches, resolver
		if err := c.once(); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	time.Sleep(*settle)
	res := Result{Setup: c.setup, Metric: "idle"}
	if res.RSSBefore, res.FDsBefore, err = usage(*pid); err != nil {
		return err
	}
	start := time.Now()
	conns, errs := openIdle(c, *n, *conc)
	res.Seconds = time.Since(start).Seconds()
	res.Conns, res.Errors = len(conns), len(errs)
	if len(errs) > 0 {
		res.FirstError = errs[0].Error()
	}
	time.Sleep(*settle)
	res.RSSAfter, res.FDsAfter, err = usage(*pid)
	for _, tc := range conns {
		tc.Close()
	}
	if err != nil {
		return err
	}
	if *pid != 0 && len(conns) > 0 {
		res.KiBPerConn = float64(res.RSSAfter-res.RSSBefore) / float64(len(conns))
		res.FDsPerConn = float64(res.FDsAfter-res.FDsBefore) / float64(len(conns))
	}
	return res.print()
}

// openIdle opens n connections with conc openers and keeps them.
func openIdle(c *client, n, conc int) ([]*tls.Conn, []error) {
	var mu sync.Mutex
	var conns []*tls.Conn
	var errs []error
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				tc, err := c.connect(context.Background())
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					conns = append(conns, tc)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns, errs
}

// usage returns pid's resident memory in KiB and its open descriptors; 0s
// for pid 0.
func usage(pid int) (int64, int, error) {
	rss, err := rssKiB(pid)
	if err != nil || pid == 0 {
		return rss, 0, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("count fds: %w", err)
	}
	return rss, len(fds), nil
}

// rssKiB returns VmRSS of pid from /proc (the same in every network
// namespace); 0 for pid 0.
func rssKiB(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss: parse %q: %w", v, err)
			}
			return kib, nil
		}
	}
	return 0, fmt.Errorf("rss: no VmRSS for pid %d", pid)
}
