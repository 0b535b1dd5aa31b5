package main

import (
	"context"
	"flag"
	"sync"
	"sync/atomic"
	"time"
)

// rateCmd is `loadgen rate -concurrency C -duration D`: C workers open
// connections back to back for D, each a full TLS handshake plus PING/PONG
// and close. The result is completed connections per second.
func rateCmd(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	cf := newClientFlags(fs)
	conc := fs.Int("concurrency", 32, "parallel workers")
	dur := fs.Duration("duration", 10*time.Second, "how long to run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := c.once(); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	res := Result{Setup: c.setup, Metric: "rate", Conns: int(ok.Load()), Errors: int(failed.Load()), Seconds: secs}
	res.ConnsPerSec = float64(ok.Load()) / secs
	if e, _ := firstErr.Load().(string); e != "" {
		res.FirstError = e
	}
	return res.print()
}

// once is one full connection: connect, handshake, PING/PONG, close.
func (c *client) once() error {
	tc, err := c.connect(context.Background())
	if err != nil {
		return err
	}
	return ping(tc)
}
