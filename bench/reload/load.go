package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

// load is the clients: half keep their connection across requests (so
// live flows are judged again on every change), half open a new one per
// request (so new flows meet every policy in turn).
type load struct {
	o       options
	reuse   *http.Client
	fresh   *http.Client
	start   time.Time
	mu      sync.Mutex
	counts  loadCounts
	errs    map[string]int
	latency []time.Duration
}

type loadCounts struct{ ok, failed int64 }

// maxErrorKinds bounds the distinct error messages kept for the report.
const maxErrorKinds = 20

func newLoad(o options) (*load, error) {
	pem, err := os.ReadFile(o.ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", o.ca)
	}
	tr := func(keepAlive bool) *http.Transport {
		return &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", o.target)
			},
			TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: o.name},
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: o.clients,
		}
	}
	return &load{
		o:     o,
		reuse: &http.Client{Transport: tr(true), Timeout: 10 * time.Second},
		fresh: &http.Client{Transport: tr(false), Timeout: 10 * time.Second},
		errs:  map[string]int{},
	}, nil
}

// run starts the clients and returns when ctx is done and every client's
// last request finished.
func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range l.o.clients {
		c := l.fresh
		if i%2 == 0 {
			c = l.reuse
		}
		wg.Add(1)
		go func() { defer wg.Done(); l.client(ctx, c) }()
	}
	wg.Wait()
}

func (l *load) client(ctx context.Context, c *http.Client) {
	url := "https://" + l.o.name + "/reload-bench?size=" + strconv.FormatInt(l.o.size, 10)
	for ctx.Err() == nil {
		t0 := time.Now()
		err := l.fetch(c, url)
		if ctx.Err() != nil && err != nil {
			return // cut short by the end of the run, not by egressd
		}
		l.record(time.Since(t0), err)
	}
}

// fetch makes one request; its context is not the run's, so the last
// requests finish instead of counting as failures.
func (l *load) fetch(c *http.Client, url string) error {
	res, err := c.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	switch {
	case err != nil:
		return err
	case res.StatusCode != http.StatusOK:
		return fmt.Errorf("HTTP %d", res.StatusCode)
	case n != l.o.size:
		return fmt.Errorf("short body: %d of %d bytes", n, l.o.size)
	}
	return nil
}

func (l *load) record(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.counts.failed++
		msg := err.Error()
		if _, seen := l.errs[msg]; !seen && len(l.errs) >= maxErrorKinds {
			msg = "(other errors)"
		}
		l.errs[msg]++
		return
	}
	l.counts.ok++
	l.latency = append(l.latency, d)
}

func (l *load) snapshot() loadCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts
}

func (l *load) closeIdle() {
	l.reuse.CloseIdleConnections()
	l.fresh.CloseIdleConnections()
}

// percentiles returns p50, p99 and max latency of the ok requests.
func (l *load) percentiles() (p50, p99, max time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.latency) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), l.latency...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
}
