package main

import (
	"context"
	"flag"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// rateCmd is `loadgen rate -concurrency C -duration D -repeat R -pid P`: C
// workers open connections back to back for D, each a full TLS handshake
// plus PING/PONG and close. The result is completed connections per second
// and the proxy P's CPU time per connection, each the median of R rounds.
func rateCmd(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	cf := newClientFlags(fs)
	conc := fs.Int("concurrency", 32, "parallel workers")
	dur := fs.Duration("duration", 10*time.Second, "how long one round runs")
	repeat := fs.Int("repeat", 1, "rounds; the medians are reported")
	pid := fs.Int("pid", 0, "proxy process whose CPU time is measured (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res := Result{Setup: c.setup, Metric: "rate"}
	var rates, cpus []float64
	start := time.Now()
	for range max(1, *repeat) {
		r, err := rateRound(c, *conc, *dur, *pid)
		if err != nil {
			return err
		}
		res.Conns += r.ok
		res.Errors += r.failed
		if res.FirstError == "" {
			res.FirstError = r.firstErr
		}
		rates = append(rates, float64(r.ok)/r.secs)
		if r.ok > 0 {
			cpus = append(cpus, float64(r.cpu.Microseconds())/float64(r.ok))
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.ConnsPerSec = median(rates)
	if *pid != 0 {
		res.CPUusPerConn = median(cpus)
	}
	return res.print()
}

// round is one rate round's outcome.
type round struct {
	ok, failed int
	firstErr   string
	secs       float64
	cpu        time.Duration // the proxy's, over the round
}

func rateRound(c *client, conc int, dur time.Duration, pid int) (round, error) {
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	meter, err := startCPU(pid)
	if err != nil {
		return round{}, err
	}
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
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
	r := round{ok: int(ok.Load()), failed: int(failed.Load()), secs: time.Since(start).Seconds()}
	r.firstErr, _ = firstErr.Load().(string)
	r.cpu, err = meter.used()
	return r, err
}

// median of xs (the upper one of an even count); 0 for none. It sorts xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// once is one full connection: connect, handshake, PING/PONG, close.
func (c *client) once() error {
	tc, err := c.connect(context.Background())
	if err != nil {
		return err
	}
	return ping(tc)
}
