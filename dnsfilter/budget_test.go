package dnsfilter

import "testing"

func TestBudget(t *testing.T) {
	b := newBudget(2, 3)
	for i, tt := range []struct {
		sandbox string
		want    bool
	}{{"a", true}, {"a", true}, {"a", false}, {"b", true}, {"c", false}} {
		if got := b.take(tt.sandbox); got != tt.want {
			t.Fatalf("take #%d (%s) = %v, want %v", i, tt.sandbox, got, tt.want)
		}
	}
	b.give("a")
	if !b.take("c") || b.take("a") {
		t.Fatalf("after give(a): c should fit, a should not (total full)")
	}
	b.give("a")
	b.give("b")
	b.give("c")
	if b.n != 0 || len(b.held) != 0 {
		t.Fatalf("budget not empty after every give: n=%d held=%v", b.n, b.held)
	}
}
