package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
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

// family is one metric of the text exposition format and its samples.
type family struct {
	name, help, kind string
	samples          []sample
}

// sample is one labelled value; labels is `{k="v"}` or "".
type sample struct {
	labels string
	value  uint64
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

func collect(ctl *control.Controller, px ProxyStats, dns DNSStats) []family {
	perSandbox := flowsPerSandbox(px.Flows())
	flows := family{name: "egressd_sandbox_flows", help: "Live proxied flows.", kind: "gauge"}
	for _, sb := range ctl.List() {
		flows.samples = append(flows.samples, sample{labels("sandbox", sb.Name), uint64(perSandbox[sb.Name])})
	}
	p, d := px.Stats(), dns.Stats()
	return []family{
		flows,
		{"egressd_proxy_flows_total", "Ended proxied flows by verdict.", "counter",
			[]sample{{labels("verdict", "allow"), p.Allowed}, {labels("verdict", "deny"), p.Denied}}},
		{"egressd_proxy_flows_cut_total", "Admitted flows closed because a policy change denies them.", "counter",
			[]sample{{"", p.Cut}}},
		{"egressd_proxy_flows_idle_closed_total", "Admitted flows closed by proxy.idle_timeout.", "counter",
			[]sample{{"", p.Idle}}},
		denials(p.DeniedBy),
		{"egressd_proxy_bytes_total", "Bytes of ended flows.", "counter",
			[]sample{{labels("direction", "up"), p.BytesUp}, {labels("direction", "down"), p.BytesDown}}},
		{"egressd_dns_queries_total", "DNS queries by outcome.", "counter", []sample{
			{labels("outcome", "forwarded"), d.Forwarded}, {labels("outcome", "refused"), d.Refused},
			{labels("outcome", "dropped"), d.Dropped}, {labels("outcome", "servfail"), d.UpstreamErrors}}},
		{"egressd_dns_cache_hits_total", "Queries answered from the shared cache.", "counter", []sample{{"", d.CacheHits}}},
		{"egressd_dns_cache_evictions_total", "Live answers pushed out of the full cache.", "counter", []sample{{"", d.CacheEvictions}}},
		{"egressd_dns_cached_answers", "Answers in the cache.", "gauge", []sample{{"", uint64(d.CachedAnswers)}}},
		{"egressd_dns_binding_evictions_total", "Live name-address bindings evicted by dns.max_bindings_per_sandbox; flows to their addresses may be denied.",
			"counter", []sample{{"", d.BindingEvictions}}},
	}
}

// labels renders one label pair, its value escaped as the format wants.
func labels(key, value string) string {
	v := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(value)
	return "{" + key + `="` + v + `"}`
}

// writeMetrics writes each family's HELP and TYPE once, then its samples.
func writeMetrics(w io.Writer, fams []family) {
	var b strings.Builder
	for _, f := range fams {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.kind)
		for _, s := range f.samples {
			b.WriteString(f.name + s.labels + " " + strconv.FormatUint(s.value, 10) + "\n")
		}
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

// denials is egressd_proxy_denials_total: denied flows by the reason their
// log line carries, one sample per reason seen.
func denials(by map[string]uint64) family {
	f := family{name: "egressd_proxy_denials_total", help: "Denied proxied flows by reason.", kind: "counter"}
	reasons := make([]string, 0, len(by))
	for r := range by {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		f.samples = append(f.samples, sample{labels("reason", r), by[r]})
	}
	return f
}
