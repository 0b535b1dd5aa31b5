package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/egressd/egressd/dnsfilter"
	"github.com/egressd/egressd/internal/activity"
	"github.com/egressd/egressd/internal/admin"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/internal/events"
	"github.com/egressd/egressd/internal/hostnet"
	"github.com/egressd/egressd/internal/instance"
	"github.com/egressd/egressd/iptables"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/proxy"
)

// runCmd is `egressd run -config F [-cleanup-on-exit]`: install the kernel
// rules, then serve the proxy until SIGTERM or SIGINT; SIGHUP reloads F.
func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "", "config file (required)")
	cleanup := fs.Bool("cleanup-on-exit", false, "remove the kernel rules when egressd exits (the sandbox then reaches the network unfiltered)")
	if err := fs.Parse(args); err != nil || *path == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: egressd run -config FILE [-cleanup-on-exit]")
		return 2
	}
	log, err := newLogger()
	if err != nil {
		fmt.Fprintln(os.Stderr, "egressd:", err)
		return 1
	}
	defer log.Sync()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, log, *path, *cleanup); err != nil {
		log.Error("egressd stopped", zap.Error(err))
		return 1
	}
	return 0
}

func run(ctx context.Context, log *zap.Logger, path string, cleanup bool) error {
	// Every decision line also goes to the event stream (GET /v1/events)
	// and to the activity record (egressd suggest).
	hub, rec := events.NewHub(), activity.NewRecord()
	log = log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, hub.Core(logEncoderConfig()), rec.Core())
	}))
	// Catch SIGHUP from the start: its default action would end egressd,
	// and an orchestrator may reload as soon as it sees the socket answer.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	loader := config.NewLoader() // a SIGHUP decodes only the [[sandbox]] tables that changed
	cfg, err := loader.Load(path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	store := control.NewStore(cfg.State.Dir)
	kernel, err := needsKernel(cfg, store)
	if err != nil {
		return err
	}
	kern := iptables.NewKernel(iptables.Installer{})
	isLocal := watchLocal(ctx, log)
	hooks := control.Hooks{Kernel: kernelHook(kern),
		Links: hostnet.Links, Link: hostnet.LinkByName, IsLocal: isLocal,
		Bridge: hostnet.EnsureBridgeNetfilter, LoopbackResolver: hostnet.LoopbackResolver,
		BridgePorts: iptables.Installer{}.SetBridgePorts}
	tproxyPort := cfg.Proxy.TProxyPort
	if kernel {
		lock, err := instance.Acquire(instance.Dir)
		if err != nil {
			return err
		}
		defer lock.Release()
	} else {
		log.Info("only explicit proxy sandboxes: no kernel rules, no transparent proxy, no DNS resolver; " +
			"a sandbox with an interface is refused until egressd restarts with one in its config")
		hooks = control.Hooks{Kernel: noKernel, Refuse: refuseKernelSandboxes, IsLocal: isLocal}
		tproxyPort = 0
	}
	ctl, err := control.New(cfg, store, hooks, log)
	if err != nil {
		return err
	}
	up := dnsfilter.NewUpstream(cfg.Proxy.UpstreamDNS, cfg.Proxy.DialTimeout)
	res := newResolver(cfg, up, ctl.Sandboxes(), log)
	srv := proxy.NewServer(proxy.Options{
		Port:                   tproxyPort,
		PeekTimeout:            cfg.Proxy.PeekTimeout,
		DialTimeout:            cfg.Proxy.DialTimeout,
		ShutdownTimeout:        cfg.Proxy.ShutdownTimeout,
		IdleTimeout:            cfg.Proxy.IdleTimeout,
		MaxPeekBytesPerSandbox: cfg.Proxy.MaxPeekBytesPerSandbox,
		MaxPeekBytes:           cfg.Proxy.MaxPeekBytes,
		MaxConnsPerSandbox:     cfg.Proxy.MaxConnsPerSandbox,
		Resolver:               up,
		Bindings:               res,
		BlockPrivate:           cfg.DNS.BlockPrivateAnswers,
		Logger:                 log,
	}, ctl.Sandboxes())
	// Listeners first, rules second: once the rules divert traffic there is
	// a socket to receive it, and a failure here leaves no rules behind.
	if err := srv.Listen(ctx); err != nil {
		return err
	}
	if kernel {
		if err := res.Listen(ctx); err != nil {
			return err
		}
	}
	// The admin socket exists from here on, but connections wait in its
	// backlog until Start: it answers only once everything is up.
	adm, err := admin.Listen(cfg.Admin.Socket, log)
	if err != nil {
		return err
	}
	defer adm.Close()
	metrics, err := listenMetrics(cfg.Admin.Metrics)
	if err != nil {
		return err
	}
	ctl.AddComponent(srv)
	ctl.AddComponent(res)
	ctl.AddComponent(rec)
	if err := ctl.Apply(ctx); err != nil {
		return err
	}
	go reloadOnHUP(ctx, hup, log, loader, path, ctl)
	audit := newAuditReporter(log, iptables.Installer{}.KernelAudit, ctl.Sandboxes)
	var denials admin.KernelDenials
	if kernel {
		if cleanup {
			defer removeRules(log)
		}
		go heartbeat(ctx, log, func() error { kern.Forget(); return ctl.Apply(ctx) })
		go every(ctx, time.Second, ctl.CheckBridges)
		go logKernelDrops(ctx, log, iptables.Installer{}.KernelDrops, ctl.Sandboxes, kernelDropsInterval)
		go every(ctx, kernelDropsInterval, func() { audit.report(ctx, false) })
		go serveDNS(ctx, res, log)
		denials = kernelDenials(ctl)
	}
	if metrics != nil {
		go admin.ServeMetrics(ctx, metrics, admin.NewMetricsHandler(ctl, srv, res, denials, rec), log)
	}
	adm.Start(admin.NewHandler(ctl, admin.Parts{Flows: srv, Events: hub,
		Activity: func(ctx context.Context, sandbox string) activity.Activity {
			if kernel {
				audit.report(ctx, true) // what the kernel passed since its last look
			}
			a, _ := rec.Activity(sandbox)
			return a
		}}, log))
	if _, err := admin.NotifyReady(); err != nil {
		log.Warn("systemd readiness notification failed", zap.Error(err))
	}
	log.Info("ready", zap.String("config", path), zap.Int("sandboxes", len(cfg.Sandboxes.All())),
		zap.Int("tproxy_port", cfg.Proxy.TProxyPort))
	err = srv.Serve(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("stopped")
	return err
}

// kernelDropsInterval is how often the kernel's denial counters are read
// for their log lines.
const kernelDropsInterval = 5 * time.Second

// every calls f each interval until ctx is done.
func every(ctx context.Context, interval time.Duration, f func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f()
		}
	}
}

// listenMetrics opens the Prometheus endpoint's listener; nil when
// admin.metrics is off.
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	return admin.ListenMetrics(addr)
}

// needsKernel reports whether egressd installs kernel rules: unless every
// sandbox (of the file and of the admin API) is reached only through its
// explicit proxy listeners, and no interface is guarded
// (host.sandbox_interfaces, or one a sandbox named before). Without them
// egressd needs no privilege.
func needsKernel(cfg *config.Config, store *control.Store) (bool, error) {
	if len(cfg.Host.SandboxInterfaces) > 0 {
		return true, nil
	}
	for _, sb := range cfg.Sandboxes.All() {
		if sb.Interface != "" {
			return true, nil
		}
	}
	guarded, err := store.LoadGuarded()
	if err != nil {
		return false, err
	}
	api, err := store.LoadSandboxes(cfg.Host)
	if err != nil {
		return false, err
	}
	return len(guarded) > 0 || api.Len() > 0, nil
}

// noKernel is the kernel hook of an egressd without kernel rules: it
// refuses any sandbox or guard that needs them.
func noKernel(_ context.Context, cfg *config.Config, set *policy.Set, guarded []string) error {
	if len(guarded) > 0 {
		return fmt.Errorf("guarded interfaces %q: %w", guarded, errNoKernel)
	}
	return refuseKernelSandboxes(set.All(), cfg.Host)
}

var errNoKernel = errors.New("this egressd runs without kernel rules (it started with only explicit proxy sandboxes); " +
	"restart it with the interface in its config")

// refuseKernelSandboxes refuses, in an egressd without kernel rules, a
// sandbox on an interface and host.sandbox_interfaces: nothing would
// enforce them.
func refuseKernelSandboxes(sbs []*policy.Sandbox, host config.Host) error {
	if len(host.SandboxInterfaces) > 0 {
		return fmt.Errorf("host.sandbox_interfaces %q: %w", host.SandboxInterfaces, errNoKernel)
	}
	for _, sb := range sbs {
		if sb.Interface != "" {
			return fmt.Errorf("sandbox %q: interface %q: %w", sb.Name, sb.Interface, errNoKernel)
		}
	}
	return nil
}

// kernelHook is the controller's hook into the kernel rules: the first
// change loads them in full, the next ones change only the elements of
// the sandboxes that changed.
func kernelHook(k *iptables.Kernel) control.Kernel {
	return func(ctx context.Context, cfg *config.Config, set *policy.Set, guarded []string) error {
		sbs, ports, host := rulesFor(cfg, set, guarded)
		return k.Apply(ctx, sbs, ports, host)
	}
}

// heartbeat keeps the kernel rules' heartbeat set fresh while egressd
// runs: without it, within iptables.AliveTimeout no non-TCP packet of any
// sandbox passes.
//
// A refresh fails when egressd's tables are gone (`nft flush ruleset`, a
// firewall service restarted): then nothing filters the sandboxes at
// all, so repair reinstalls the running policy in full, at most once a
// second, until the refresh works again.
func heartbeat(ctx context.Context, log *zap.Logger, repair func() error) {
	var last time.Time
	err := iptables.Installer{}.Heartbeat(ctx, func(err error) {
		if err == nil {
			log.Info("heartbeat refresh works again: kernel rules in place")
			return
		}
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		log.Error("heartbeat refresh failed: egressd's kernel rules may be gone; reinstalling them", zap.Error(err))
		if rerr := repair(); rerr != nil {
			log.Error("reinstalling the kernel rules failed", zap.Error(rerr))
		}
	})
	if err != nil {
		log.Error("heartbeat not running: sandboxes' UDP and ICMP are stopped", zap.Error(err))
	}
}

// reloadOnHUP reloads the config file on every SIGHUP. A file that does not
// validate is refused and the running policy stays. A SIGHUP that came
// before the rules were up is served once the loop starts.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, log *zap.Logger, loader *config.Loader, path string,
	ctl *control.Controller) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := loader.Load(path)
		if err == nil {
			err = ctl.Reload(ctx, cfg)
		}
		if err != nil {
			log.Error("reload refused; the running policy stays", zap.String("config", path), zap.Error(err))
			continue
		}
		log.Info("reloaded", zap.String("config", path))
	}
}

func removeRules(log *zap.Logger) {
	if err := iptables.Cleanup(context.Background()); err != nil {
		log.Error("cleanup-on-exit", zap.Error(err))
		return
	}
	log.Info("kernel rules removed (cleanup-on-exit)")
}

// watchLocal is protect_host's test for the host's own addresses: the
// kernel's route lookup, its answers kept until rtnetlink announces a
// change (a lookup per dial costs more than the rest of the decision).
// Should the announcements be unavailable, every dial asks the kernel.
func watchLocal(ctx context.Context, log *zap.Logger) func(netip.Addr) bool {
	c, err := hostnet.WatchLocal(ctx)
	if err != nil {
		log.Warn("protect_host asks the kernel on every dial", zap.Error(err))
		return hostnet.IsLocal
	}
	return c.IsLocal
}

func newLogger() (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	// Every decision is a line: zap's default sampler (100 a second per
	// message, then 1 in 100) would drop most of a busy sandbox's flows
	// and denials.
	zc.Sampling = nil
	zc.EncoderConfig = logEncoderConfig()
	zc.DisableStacktrace = true
	return zc.Build()
}

// logEncoderConfig is the log lines' encoding, shared by the event stream.
func logEncoderConfig() zapcore.EncoderConfig {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	return ec
}

// kernelDenials reads the kernel's denial counters by sandbox and reason,
// for /metrics.
func kernelDenials(ctl *control.Controller) func(context.Context) (map[[2]string]uint64, error) {
	return func(ctx context.Context) (map[[2]string]uint64, error) {
		drops, err := iptables.Installer{}.KernelDrops(ctx)
		if err != nil {
			return nil, err
		}
		out := map[[2]string]uint64{}
		for k, n := range kernelDropsBySandbox(drops, ctl.Sandboxes()) {
			out[[2]string{k.sandbox, k.reason}] = n
		}
		return out, nil
	}
}
