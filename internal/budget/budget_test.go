package budget

import "testing"

func TestBudget(t *testing.T) {
	b := New(2, 3)
	for i, tt := range []struct {
		sandbox string
		want    bool
	}{{"a", true}, {"a", true}, {"a", false}, {"b", true}, {"c", false}} {
		if got := b.Take(tt.sandbox, 1); got != tt.want {
			t.Fatalf("take #%d (%s) = %v, want %v", i, tt.sandbox, got, tt.want)
		}
	}
	b.Give("a", 1)
	if !b.Take("c", 1) || b.Take("a", 1) {
		t.Fatalf("after give(a): c should fit, a should not (total full)")
	}
	b.Give("a", 1)
	b.Give("b", 1)
	b.Give("c", 1)
	if b.Held() != 0 || len(b.held) != 0 {
		t.Fatalf("budget not empty after every give: n=%d held=%v", b.n, b.held)
	}
}
