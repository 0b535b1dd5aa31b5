package main

import (
	"context"
	"flag"
	"slices"
	"time"
)

// latencyCmd is `loadgen latency -n N`: N connections one after the other
// on an otherwise idle path. Setup latency is the time from the start of
// connect(2) to the client's TLS handshake being complete (it has the
// server's Finished): one TCP and one TLS 1.3 round trip, plus whatever the
// path adds (a proxy peeks the ClientHello, then dials upstream).
func latencyCmd(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	cf := newClientFlags(fs)
	n := fs.Int("n", 2000, "measured connections")
	warmup := fs.Int("warmup", 100, "unmeasured connections first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res := Result{Setup: c.setup, Metric: "latency"}
	start := time.Now()
	var samples []time.Duration
	for i := range *warmup + *n {
		t0 := time.Now()
		tc, err := c.connect(context.Background())
		d := time.Since(t0)
		if err == nil {
			err = ping(tc)
		}
		if err != nil {
			res.Errors++
			res.FirstError = err.Error()
			continue
		}
		if i >= *warmup {
			samples = append(samples, d)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.Conns = len(samples)
	slices.Sort(samples)
	res.P50us = micros(percentile(samples, 0.50))
	res.P90us = micros(percentile(samples, 0.90))
	res.P99us = micros(percentile(samples, 0.99))
	return res.print()
}

// percentile returns the q-quantile of sorted samples (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
