package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/egressd/egressd/dnsfilter"
	"github.com/egressd/egressd/internal/control"
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

// metric is one sample of the text exposition format.
type metric struct {
	name, help, kind string
	labels           string // `{k="v"}` or ""
	value            uint64
}

// NewMetricsHandler serves GET /metrics in the Prometheus text format
// (version 0.0.4): live flows per sandbox, the proxy's verdict and byte
// counters, and the resolver's counters.
func NewMetricsHandler(ctl *control.Controller, px ProxyStats, dns DNSStats) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeMetrics(w, collect(ctl, px, dns))
	})
	return mux
}

func collect(ctl *control.Controller, px ProxyStats, dns DNSStats) []metric {
	perSandbox := map[string]uint64{}
	for _, f := range px.Flows() {
		perSandbox[f.Sandbox]++
	}
	var ms []metric
	for _, sb := range ctl.List() {
		ms = append(ms, metric{"egressd_sandbox_flows", "Live proxied flows.", "gauge",
			labels("sandbox", sb.Name), perSandbox[sb.Name]})
	}
	p, d := px.Stats(), dns.Stats()
	return append(ms,
		metric{"egressd_proxy_flows_total", "Ended proxied flows by verdict.", "counter", labels("verdict", "allow"), p.Allowed},
		metric{"egressd_proxy_flows_total", "", "", labels("verdict", "deny"), p.Denied},
		metric{"egressd_proxy_flows_cut_total", "Admitted flows closed because a policy change denies them.", "counter", "", p.Cut},
		metric{"egressd_proxy_bytes_total", "Bytes of ended flows.", "counter", labels("direction", "up"), p.BytesUp},
		metric{"egressd_proxy_bytes_total", "", "", labels("direction", "down"), p.BytesDown},
		metric{"egressd_dns_queries_total", "DNS queries by outcome.", "counter", labels("outcome", "forwarded"), d.Forwarded},
		metric{"egressd_dns_queries_total", "", "", labels("outcome", "refused"), d.Refused},
		metric{"egressd_dns_queries_total", "", "", labels("outcome", "dropped"), d.Dropped},
		metric{"egressd_dns_queries_total", "", "", labels("outcome", "servfail"), d.UpstreamErrors},
		metric{"egressd_dns_cache_hits_total", "Queries answered from the shared cache.", "counter", "", d.CacheHits},
		metric{"egressd_dns_cache_evictions_total", "Live answers pushed out of the full cache.", "counter", "", d.CacheEvictions},
		metric{"egressd_dns_cached_answers", "Answers in the cache.", "gauge", "", uint64(d.CachedAnswers)},
		metric{"egressd_dns_binding_evictions_total", "Live name-address bindings evicted by dns.max_bindings_per_sandbox; flows to their addresses may be denied.", "counter", "", d.BindingEvictions},
	)
}

// labels renders one label pair, its value escaped as the format wants.
func labels(key, value string) string {
	v := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(value)
	return "{" + key + `="` + v + `"}`
}

// writeMetrics writes ms; a metric with a help text starts a family.
func writeMetrics(w io.Writer, ms []metric) {
	var b strings.Builder
	for _, m := range ms {
		if m.help != "" {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		}
		b.WriteString(m.name + m.labels + " " + strconv.FormatUint(m.value, 10) + "\n")
	}
	io.WriteString(w, b.String())
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
