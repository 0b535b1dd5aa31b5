package dnsfilter

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestLogLines(t *testing.T) {
	up := startUpstream(t)
	core, logs := observer.New(zapcore.InfoLevel)
	r, _ := newTestResolver(t, up, Options{Logger: zap.New(core)})
	cases := []struct {
		name  string
		ask   func()
		msg   string
		field map[string]any
	}{
		{"forwarded", func() { ask(r, srcCustom, "allowed.test.", dns.TypeA, false) }, "dns query",
			map[string]any{"sandbox": "custom", "verdict": "allow", "reason": "allow-domain", "rule": "allow_domains allowed.test", "rcode": "NOERROR"}},
		{"cached by the fast path", func() {
			askWire(t, r, srcCustom, "allowed.test.", dns.TypeA)
			askWire(t, r, srcCustom, "allowed.test.", dns.TypeA)
		}, "dns query",
			map[string]any{"name": "allowed.test.", "verdict": "allow", "cached": true}},
		{"refused", func() { ask(r, srcCustom, "evil.test.", dns.TypeA, false) }, "dns query refused",
			map[string]any{"verdict": "deny", "reason": "no-match", "name": "evil.test."}},
		{"dropped", func() { ask(r, srcUnknown, "allowed.test.", dns.TypeA, false) }, "dns query dropped",
			map[string]any{"reason": "unknown-source", "src": "10.99.0.2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs.TakeAll()
			c.ask()
			all := logs.TakeAll()
			last := all[len(all)-1]
			if last.Message != c.msg {
				t.Fatalf("message %q, want %q", last.Message, c.msg)
			}
			got := last.ContextMap()
			for k, v := range c.field {
				if got[k] != v {
					t.Errorf("field %s = %v, want %v (line %v)", k, got[k], v, got)
				}
			}
		})
	}
	t.Run("one line per query", func(t *testing.T) {
		logs.TakeAll()
		for range 5 {
			ask(r, srcCustom, "evil.test.", dns.TypeA, false)
		}
		if n := logs.Len(); n != 5 {
			t.Errorf("%d lines for 5 queries", n)
		}
	})
	t.Run("every line under a flood", func(t *testing.T) {
		logs.TakeAll()
		for range 5000 {
			ask(r, srcCustom, "flood.evil.test.", dns.TypeA, false)
		}
		if n := logs.Len(); n != 5000 {
			t.Errorf("%d lines for 5000 refused queries, want every one", n)
		}
	})
}

// askWire sends one packed query from src through the wire path.
func askWire(t *testing.T, r *Resolver, src netip.Addr, name string, qtype uint16) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	b, _ := q.Pack()
	if r.answerWire(t.Context(), src, b, false) == nil {
		t.Fatal("no answer")
	}
}
