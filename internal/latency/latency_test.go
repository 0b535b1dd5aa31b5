package latency

import (
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var l Histogram
	for _, d := range []time.Duration{500 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 20 * time.Second} {
		l.Observe(d)
	}
	b, n, sum := l.Snapshot()
	if n != 4 || b[.001] != 1 || b[.005] != 3 || b[10] != 3 {
		t.Fatalf("buckets %v, count %d", b, n)
	}
	if sum < 20.006 || sum > 20.007 {
		t.Fatalf("sum %v", sum)
	}
}
