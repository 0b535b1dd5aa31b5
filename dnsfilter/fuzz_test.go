package dnsfilter

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzQuery feeds arbitrary bytes to the resolver as a query from each
// kind of sandbox. It must never panic; a reply must parse and carry the
// query's ID; deny-all and unknown sources get no reply; and the upstream
// must never see a question the custom sandbox's policy does not allow;
// and a repeat answered by the fast path is byte for byte the full path's.
// Seeds: testdata/fuzz/FuzzQuery.
func FuzzQuery(f *testing.F) {
	up := startUpstream(f)
	r, _ := newTestResolver(f, up, Options{BlockPrivateAnswers: true})
	sb, _ := r.sandboxes.Load().ByName("custom")
	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		for _, src := range []struct {
			name  string
			reply bool
		}{{"custom", true}, {"closed", false}, {"unknown", false}} {
			addr := srcCustom
			switch src.name {
			case "closed":
				addr = srcDenyAll
			case "unknown":
				addr = srcUnknown
			}
			out := r.answerWire(context.Background(), addr, b, tcp)
			if out == nil {
				continue
			}
			if !src.reply {
				t.Fatalf("%s source got a reply", src.name)
			}
			checkReply(t, b, out, tcp)
			if fast, ok := fastOnly(r, addr, b, tcp); ok {
				if full := fullAnswer(r, addr, b, tcp); !bytes.Equal(fast, full) {
					t.Fatalf("fast path answer differs\nfast % x\nfull % x", fast, full)
				}
			}
		}
		for _, q := range up.asked() {
			name, _, _ := strings.Cut(q, " ")
			if d := decide(sb.Policy, name); !d.Allowed() {
				t.Fatalf("upstream asked %q: %v", q, d)
			}
		}
	})
}

func checkReply(t *testing.T, query, out []byte, tcp bool) {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if !m.Response || m.Id != uint16(query[0])<<8|uint16(query[1]) {
		t.Fatalf("reply %v: not a response with the query's ID", m)
	}
	if !tcp && len(out) > upstreamUDPSize {
		t.Fatalf("UDP reply of %d bytes", len(out))
	}
}
