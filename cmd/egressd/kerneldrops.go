package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/egressd/egressd/iptables"
	"github.com/egressd/egressd/policy"
)

// kernelDropKey is one sandbox's count of one kernel denial reason.
type kernelDropKey struct{ sandbox, reason string }

// kernelDropsBySandbox sums the kernel's per-source denial counters by the
// sandbox each source belongs to now (sources of no sandbox are left out).
func kernelDropsBySandbox(drops []iptables.KernelDrop, set *policy.Set) map[kernelDropKey]uint64 {
	out := map[kernelDropKey]uint64{}
	for _, d := range drops {
		if sb, ok := set.BySource(d.Source); ok {
			out[kernelDropKey{sb.Name, d.Reason}] += d.Packets
		}
	}
	return out
}

// logKernelDrops writes, every interval, a line for each sandbox and
// reason the kernel denied packets for since the last look, at most one a
// minute for each: what the kernel drops is never silent, and a flood is
// one line a minute.
func logKernelDrops(ctx context.Context, log *zap.Logger, read func(context.Context) ([]iptables.KernelDrop, error),
	sandboxes func() *policy.Set, interval time.Duration) {
	last := map[kernelDropKey]uint64{}      // count at the last line
	logged := map[kernelDropKey]time.Time{} // when that line was written
	every(ctx, interval, func() {
		drops, err := read(ctx)
		if err != nil {
			log.Warn("kernel denial counters unreadable", zap.Error(err))
			return
		}
		now := time.Now()
		for k, n := range kernelDropsBySandbox(drops, sandboxes()) {
			if n < last[k] {
				last[k] = 0 // the ruleset was loaded again: its counters started over
			}
			if n == last[k] || now.Sub(logged[k]) < time.Minute {
				continue
			}
			log.Warn("kernel denied", zap.String("sandbox", k.sandbox), zap.String("reason", k.reason),
				zap.Uint64("packets", n-last[k]), zap.Uint64("packets_total", n))
			last[k], logged[k] = n, now
		}
	})
}
