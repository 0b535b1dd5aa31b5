package admin

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/dnsfilter"
	"github.com/egressd/egressd/internal/activity"
	"github.com/egressd/egressd/internal/latency"
	"github.com/egressd/egressd/proxy"
)

type fakeStats struct {
	fakeFlows
	p proxy.Stats
}

func (f fakeStats) Stats() proxy.Stats { return f.p }

type fakeDNS dnsfilter.Stats

func (f fakeDNS) Stats() dnsfilter.Stats { return dnsfilter.Stats(f) }

func TestMetrics(t *testing.T) {
	r := newRig(t, nil)
	var peek latency.Histogram
	peek.Observe(3 * time.Millisecond)
	peek.Observe(2 * time.Second)
	px := fakeStats{
		fakeFlows: fakeFlows{{Sandbox: "open"}, {Sandbox: "open"}, {Sandbox: "picky"}},
		p: proxy.Stats{Allowed: 7, Denied: 3, Cut: 1, Idle: 2, BytesUp: 100, BytesDown: 2000,
			DeniedBy: map[string]uint64{"no-match": 2, "dial-failed": 1}, Peek: &peek,
			BySandbox: map[proxy.SandboxVerdict]uint64{{Sandbox: "picky", Verdict: "deny", Reason: "no-match", Ingress: "tproxy"}: 2}},
	}
	dns := fakeDNS{Forwarded: 5, Refused: 4, Dropped: 2, UpstreamErrors: 1, CacheHits: 3, BindingEvictions: 9, CachedAnswers: 6}
	w := httptest.NewRecorder()
	kernel := func(context.Context) (map[[2]string]uint64, error) {
		return map[[2]string]uint64{{"picky", "deny_cidrs"}: 4}, nil
	}
	rec := activity.NewRecord()
	rec.Add(activity.Line{Msg: "kernel report-only", Sandbox: "picky", Dst: "203.0.113.1", Proto: "udp",
		Verdict: "would-deny", Reason: "no-match", Packets: 5})
	NewMetricsHandler(r.ctl, px, dns, kernel, rec).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	body, _ := io.ReadAll(w.Result().Body)
	for _, want := range []string{
		`egressd_sandbox_flows{sandbox="open"} 2`,
		`egressd_sandbox_flows{sandbox="closed"} 0`,
		`egressd_sandbox_flows{sandbox="picky"} 1`,
		`egressd_proxy_flows_total{verdict="allow"} 7`,
		`egressd_proxy_flows_total{verdict="deny"} 3`,
		`egressd_proxy_flows_cut_total 1`,
		`egressd_proxy_bytes_total{direction="down"} 2000`,
		`egressd_dns_queries_total{outcome="refused"} 4`,
		`egressd_dns_queries_total{outcome="servfail"} 1`,
		`egressd_dns_binding_evictions_total 9`,
		`egressd_dns_cached_answers 6`,
		`egressd_proxy_flows_idle_closed_total 2`,
		`egressd_kernel_denials_total{reason="deny_cidrs",sandbox="picky"} 4`,
		`egressd_would_deny_total{path="kernel",reason="no-match",sandbox="picky"} 5`,
		`egressd_sandbox_flows_total{ingress="tproxy",reason="no-match",sandbox="picky",verdict="deny"} 2`,
		`egressd_proxy_peek_seconds_bucket{le="0.005"} 1`,
		`egressd_proxy_peek_seconds_bucket{le="+Inf"} 2`,
		`egressd_proxy_peek_seconds_count 2`,
		"# TYPE egressd_proxy_peek_seconds histogram",
		`egressd_proxy_denials_total{reason="dial-failed"} 1`,
		`egressd_proxy_denials_total{reason="no-match"} 2`,
		"# TYPE egressd_proxy_flows_total counter",
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
	for _, std := range []string{"go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(body), "\n"+std) {
			t.Errorf("standard collector metric %q missing", std)
		}
	}
	for _, fam := range []string{"egressd_sandbox_flows", "egressd_proxy_flows_total", "egressd_dns_queries_total"} {
		if n := strings.Count(string(body), "# TYPE "+fam+" "); n != 1 {
			t.Errorf("family %s declared %d times", fam, n)
		}
	}
}
