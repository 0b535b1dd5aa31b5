// Command reload is egressd's reload-under-load test: N clients fetch from
// an allowed host over TLS while the policy changes every interval,
// alternating SIGHUP (config file rewritten) and admin API calls (PUT, then
// DELETE), every variant keeping the fetched host allowed. It reports
// requests ok/failed and egressd's RSS, threads, open files and live flows
// before, during and after. The goal: no failed request, no growth.
//
// run.sh builds the topology and runs this inside the sandbox namespace:
// the clients' connections are intercepted like a sandbox's, while the
// admin socket (a path) and /proc/PID are reachable from any namespace.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

type options struct {
	pid      int
	socket   string
	config   string
	configA  string
	configB  string
	sandbox  string
	target   string
	name     string
	ca       string
	clients  int
	duration time.Duration
	interval time.Duration
	size     int64
	settle   time.Duration
	ops      int  // > 0: the scale benchmark's measure (opsRun) instead
	loadOnly bool // the clients alone, until SIGTERM (opsRun's child)
}

func main() {
	var o options
	flag.IntVar(&o.pid, "pid", 0, "egressd's PID (required)")
	flag.StringVar(&o.socket, "socket", "", "egressd's admin socket (required)")
	flag.StringVar(&o.config, "config", "", "egressd's config file, rewritten before each SIGHUP (required)")
	flag.StringVar(&o.configA, "config-a", "", "first config variant (required)")
	flag.StringVar(&o.configB, "config-b", "", "second config variant (required)")
	flag.StringVar(&o.sandbox, "sandbox", "sb1", "sandbox whose policy changes")
	flag.StringVar(&o.target, "target", "198.51.100.10:443", "address the clients dial")
	flag.StringVar(&o.name, "name", "pkg.test", "TLS server name and Host of the requests (allowed in every variant)")
	flag.StringVar(&o.ca, "ca", "", "CA certificate of the server (required)")
	flag.IntVar(&o.clients, "clients", 32, "concurrent clients; half reuse connections, half open one per request")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long to run")
	flag.DurationVar(&o.interval, "interval", 100*time.Millisecond, "time between two policy changes")
	flag.Int64Var(&o.size, "size", 16384, "response body bytes per request")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "idle time before the last sample")
	flag.IntVar(&o.ops, "ops", 0, "scale measure: time this many POST, PUT and DELETE of a sandbox, then a SIGHUP with config-a, under load")
	flag.BoolVar(&o.loadOnly, "load-only", false, "run the clients alone until SIGTERM, then print their counts as JSON (the -ops measure's child process)")
	flag.Parse()
	if o.loadOnly {
		if err := loadOnly(o); err != nil {
			fmt.Fprintln(os.Stderr, "reload:", err)
			os.Exit(1)
		}
		return
	}
	if o.pid == 0 || o.socket == "" || o.config == "" || o.configA == "" || (o.configB == "" && o.ops == 0) || o.ca == "" {
		flag.Usage()
		os.Exit(2)
	}
	adminSocket = o.socket
	run := run
	if o.ops > 0 {
		run = opsRun
	}
	ok, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reload:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(o options) (bool, error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	load, err := newLoad(o)
	if err != nil {
		return false, err
	}
	a, err := os.ReadFile(o.configA)
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile(o.configB)
	if err != nil {
		return false, err
	}
	rel := newReloader(o, a, b)
	idle, err := idleChanges(o, 6)
	if err != nil {
		return false, err
	}
	before, err := sample(o)
	if err != nil {
		return false, err
	}
	fmt.Printf("egressd pid %d; %d clients fetching %d B from %s (%s) for %v; a policy change every %v\n",
		o.pid, o.clients, o.size, o.name, o.target, o.duration, o.interval)
	fmt.Printf("API policy change (persist + nft + swap) with no load: p50 %v\n", ms(idle))
	fmt.Println(header)
	fmt.Println(before.row("idle before", load.snapshot(), rel.snapshot()))
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	load.start = time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); load.run(runCtx) }()
	go func() { defer wg.Done(); rel.run(runCtx) }()
	samples := []procSample{}
	tick := time.NewTicker(10 * time.Second)
	for done := false; !done; {
		select {
		case <-runCtx.Done():
			done = true
		case <-tick.C:
			s, err := sample(o)
			if err != nil {
				return false, err
			}
			samples = append(samples, s)
			fmt.Println(s.row(fmt.Sprintf("load %3.0fs", time.Since(load.start).Seconds()), load.snapshot(), rel.snapshot()))
		}
	}
	tick.Stop()
	wg.Wait()
	load.closeIdle()
	time.Sleep(o.settle)
	after, err := sample(o)
	if err != nil {
		return false, err
	}
	fmt.Println(after.row("idle after", load.snapshot(), rel.snapshot()))
	return report(o, load, rel, before, samples, after), nil
}
