// Package latency keeps lock-free latency histograms (peek, dial, upstream
// DNS) in the buckets /metrics exports, so that the data path needs no
// metrics library.
package latency

import (
	"sync/atomic"
	"time"
)

// Buckets are the upper bounds, in seconds, of the latency
// histograms the proxy and resolver keep (Prometheus' le).
var Buckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Histogram is a histogram of durations over Buckets, safe for
// concurrent use and free of locks: one atomic add per bucket hit.
type Histogram struct {
	counts [14]atomic.Uint64 // per bucket, the last one +Inf
	sumNs  atomic.Int64
}

// Observe adds one duration.
func (l *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(Buckets) && s > Buckets[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sumNs.Add(int64(d))
}

// Snapshot returns the cumulative count per bucket (as Prometheus wants
// them), the total count and the sum in seconds.
func (l *Histogram) Snapshot() (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, len(Buckets))
	for i, le := range Buckets {
		count += l.counts[i].Load()
		buckets[le] = count
	}
	count += l.counts[len(Buckets)].Load()
	return buckets, count, float64(l.sumNs.Load()) / 1e9
}
