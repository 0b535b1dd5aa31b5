package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/egressd/egressd/dnsfilter"
	"github.com/egressd/egressd/internal/activity"
	"github.com/egressd/egressd/internal/control"
	"github.com/egressd/egressd/internal/latency"
	"github.com/egressd/egressd/proxy"
)

// ProxyStats reports the proxy's counters and live flows; *proxy.Server is one.
type ProxyStats interface {
	Flows
	Stats() proxy.Stats
}

// DNSStats reports the resolver's counters; *dnsfilter.Resolver is one.
type DNSStats interface {
	Stats() dnsfilter.Stats
}

// NewMetricsHandler serves GET /metrics through client_golang: live flows
// per sandbox, the proxy's verdict, denial and byte counters, the
// resolver's counters (read from the components at each scrape), and the
// standard Go and process collectors.
//
// kernel, when not nil, reads the kernel's denial counters by (sandbox,
// reason), for egressd_kernel_denials_total; rec, when not nil, holds the
// would-deny counters of report-only sandboxes (egressd_would_deny_total).
func NewMetricsHandler(ctl *control.Controller, px ProxyStats, dns DNSStats, kernel KernelDenials, rec *activity.Record) http.Handler {
	c := &egressdCollector{ctl: ctl, px: px, dns: dns, kernel: kernel}
	if rec != nil {
		c.wouldDeny = rec.WouldDeny
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), c)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return mux
}

// metric is one of egressd's metrics, described once; its values come
// from the components' counters at each scrape.
type metric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
}

func newMetric(name, help string, kind prometheus.ValueType, labels ...string) metric {
	return metric{prometheus.NewDesc(name, help, labels, nil), kind}
}

var (
	mFlows      = newMetric("egressd_sandbox_flows", "Live proxied flows.", prometheus.GaugeValue, "sandbox")
	mFlowsTotal = newMetric("egressd_proxy_flows_total", "Ended proxied flows by verdict.", prometheus.CounterValue, "verdict")
	mCut        = newMetric("egressd_proxy_flows_cut_total", "Admitted flows closed because a policy change denies them.", prometheus.CounterValue)
	mIdle       = newMetric("egressd_proxy_flows_idle_closed_total", "Admitted flows closed by proxy.idle_timeout.", prometheus.CounterValue)
	mDenials    = newMetric("egressd_proxy_denials_total", "Denied proxied flows by reason.", prometheus.CounterValue, "reason")
	mKernel     = newMetric("egressd_kernel_denials_total", "Packets the kernel rules denied, by sandbox and reason (iptables.KernelReasons).",
		prometheus.CounterValue, "sandbox", "reason")
	mWouldDeny = newMetric("egressd_would_deny_total", "What sandboxes in report-only mode sent that their policy would deny: "+
		"flows (path proxy), DNS queries (dns) and packets (kernel), by sandbox, path and reason.", prometheus.CounterValue,
		"sandbox", "path", "reason")
	mBySandbox = newMetric("egressd_sandbox_flows_total", "Ended proxied flows by sandbox, verdict, reason and ingress (tproxy, socks5, connect).",
		prometheus.CounterValue, "sandbox", "verdict", "reason", "ingress")
	mBytes      = newMetric("egressd_proxy_bytes_total", "Bytes of ended flows.", prometheus.CounterValue, "direction")
	mQueries    = newMetric("egressd_dns_queries_total", "DNS queries by outcome.", prometheus.CounterValue, "outcome")
	mCacheHits  = newMetric("egressd_dns_cache_hits_total", "Queries answered from the shared cache.", prometheus.CounterValue)
	mCacheEvict = newMetric("egressd_dns_cache_evictions_total", "Live answers pushed out of the full cache.", prometheus.CounterValue)
	mCached     = newMetric("egressd_dns_cached_answers", "Answers in the cache.", prometheus.GaugeValue)
	mBindEvict  = newMetric("egressd_dns_binding_evictions_total",
		"Live name-address bindings evicted by dns.max_bindings_per_sandbox; flows to their addresses may be denied.", prometheus.CounterValue)

	mPeek     = newMetric("egressd_proxy_peek_seconds", "Time from accepting a flow to reading its name (TLS SNI, first HTTP Host).", prometheus.UntypedValue)
	mDial     = newMetric("egressd_proxy_dial_seconds", "Time to connect upstream.", prometheus.UntypedValue)
	mUpstream = newMetric("egressd_dns_upstream_seconds", "Time of each query to an upstream DNS server.", prometheus.UntypedValue)
)

var allMetrics = []metric{mFlows, mFlowsTotal, mCut, mIdle, mDenials, mBySandbox, mKernel, mWouldDeny, mBytes, mQueries, mCacheHits, mCacheEvict, mCached, mBindEvict,
	mPeek, mDial, mUpstream}

// KernelDenials reads the kernel's denial counters, keyed by (sandbox,
// reason).
type KernelDenials func(context.Context) (map[[2]string]uint64, error)

// egressdCollector reads egressd's own counters at each scrape.
type egressdCollector struct {
	ctl       *control.Controller
	px        ProxyStats
	dns       DNSStats
	kernel    KernelDenials
	wouldDeny func() map[activity.WouldDenyKey]uint64
}

func (c *egressdCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range allMetrics {
		ch <- m.desc
	}
}

func (c *egressdCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(m metric, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(v), labels...)
	}
	perSandbox := flowsPerSandbox(c.px.Flows())
	for _, sb := range c.ctl.List() {
		emit(mFlows, uint64(perSandbox[sb.Name]), sb.Name)
	}
	p, d := c.px.Stats(), c.dns.Stats()
	emit(mFlowsTotal, p.Allowed, "allow")
	emit(mFlowsTotal, p.Denied, "deny")
	emit(mCut, p.Cut)
	emit(mIdle, p.Idle)
	for reason, n := range p.DeniedBy {
		emit(mDenials, n, reason)
	}
	for k, n := range p.BySandbox {
		emit(mBySandbox, n, k.Sandbox, k.Verdict, k.Reason, k.Ingress)
	}
	if c.kernel != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		counts, err := c.kernel(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(mKernel.desc, err)
		}
		for k, n := range counts {
			emit(mKernel, n, k[0], k[1])
		}
	}
	if c.wouldDeny != nil {
		for k, n := range c.wouldDeny() {
			emit(mWouldDeny, n, k.Sandbox, k.Path, k.Reason)
		}
	}
	emit(mBytes, p.BytesUp, "up")
	emit(mBytes, p.BytesDown, "down")
	emit(mQueries, d.Forwarded, "forwarded")
	emit(mQueries, d.Refused, "refused")
	emit(mQueries, d.Dropped, "dropped")
	emit(mQueries, d.UpstreamErrors, "servfail")
	emit(mCacheHits, d.CacheHits)
	emit(mCacheEvict, d.CacheEvictions)
	emit(mCached, uint64(d.CachedAnswers))
	emit(mBindEvict, d.BindingEvictions)
	for _, h := range []struct {
		m metric
		h *latency.Histogram
	}{{mPeek, p.Peek}, {mDial, p.Dial}, {mUpstream, d.UpstreamLatency}} {
		if h.h != nil {
			buckets, count, sum := h.h.Snapshot()
			ch <- prometheus.MustNewConstHistogram(h.m.desc, count, sum, buckets)
		}
	}
}

// ListenMetrics opens the metrics endpoint's TCP listener, so a bad
// address stops egressd before anything is installed.
func ListenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.metrics %q: %w", addr, err)
	}
	return ln, nil
}

// ServeMetrics serves h on ln until ctx is done.
func ServeMetrics(ctx context.Context, ln net.Listener, h http.Handler, log *zap.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics endpoint stopped", zap.Error(err))
	}
}
