package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// bulkCmd is `loadgen bulk -streams N -bytes B -repeat R -pid P`: N
// connections, all handshaken first, then each downloads B bytes at once.
// Throughput is all bytes over the time from the common start to the last
// byte, and the proxy P's CPU time over that same span per GiB; with R > 1
// rounds the result is the median round of each (min and max of the
// throughput kept too), as two shared cores make single rounds noisy.
func bulkCmd(args []string) error {
	fs := flag.NewFlagSet("bulk", flag.ContinueOnError)
	cf := newClientFlags(fs)
	streams := fs.Int("streams", 1, "parallel connections")
	size := fs.Int64("bytes", 1<<30, "bytes per stream")
	repeat := fs.Int("repeat", 3, "rounds; the median is reported")
	pid := fs.Int("pid", 0, "proxy process whose CPU time is measured (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	res := Result{Setup: c.setup, Metric: fmt.Sprintf("bulk%d", *streams), Conns: *streams}
	var rounds, cpus []float64
	start := time.Now()
	gib := float64(*size) * float64(*streams) / (1 << 30)
	for range max(1, *repeat) {
		gbps, cpu, err := bulkRound(c, *streams, *size, *pid)
		if err != nil {
			res.Errors++
			res.FirstError = err.Error()
			continue
		}
		rounds = append(rounds, gbps)
		cpus = append(cpus, float64(cpu.Milliseconds())/gib)
	}
	if *pid != 0 {
		res.CPUmsPerGiB = median(cpus)
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Errors == 0 {
		slices.Sort(rounds)
		res.Gbps, res.GbpsMin, res.GbpsMax = rounds[len(rounds)/2], rounds[0], rounds[len(rounds)-1]
	}
	return res.print()
}

// bulkRound runs one round and returns its Gbit/s and the CPU time pid
// took from the common start to the last byte.
func bulkRound(c *client, streams int, size int64, pid int) (float64, time.Duration, error) {
	conns := make([]*tls.Conn, streams)
	for i := range conns {
		var err error
		if conns[i], err = c.connect(context.Background()); err != nil {
			for _, tc := range conns[:i] {
				tc.Close()
			}
			return 0, 0, err
		}
	}
	meter, err := startCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, tc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = download(tc, size)
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	cpu, err := meter.used()
	if err := errors.Join(append(errs, err)...); err != nil {
		return 0, 0, err
	}
	return float64(size) * float64(streams) * 8 / secs / 1e9, cpu, nil
}

// download asks for n bytes and reads them to the server's close.
func download(tc *tls.Conn, n int64) error {
	defer tc.Close()
	if _, err := fmt.Fprintf(tc, "%s %d\n", cmdBulk, n); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, 256<<10)
	got, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{tc}, buf)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", got, err)
	}
	if got != n {
		return fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return nil
}
