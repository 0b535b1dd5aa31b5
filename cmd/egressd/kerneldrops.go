package main

import (
	"context"
	"net/netip"
	"sync"
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

// auditReporter writes a "kernel report-only" line for what sandboxes in
// report-only mode sent past the kernel (UDP, ICMP and the rest; TCP and
// DNS are the proxy's and the resolver's lines), judged with the policy in
// force: one line per (source, destination, protocol) when it is first
// seen, then at most one a minute while its count grows.
type auditReporter struct {
	log       *zap.Logger
	read      func(context.Context) ([]iptables.KernelAudited, error)
	sandboxes func() *policy.Set

	mu     sync.Mutex
	last   map[auditKey]uint64    // count at the last line
	logged map[auditKey]time.Time // when that line was written
}

type auditKey struct {
	src, dst netip.Addr
	proto    string
}

func newAuditReporter(log *zap.Logger, read func(context.Context) ([]iptables.KernelAudited, error), sandboxes func() *policy.Set) *auditReporter {
	return &auditReporter{log: log, read: read, sandboxes: sandboxes, last: map[auditKey]uint64{}, logged: map[auditKey]time.Time{}}
}

// report reads the kernel's record and writes the lines that are due;
// with now set, also those the minute's limit holds back (a caller about
// to read the activity record wants it complete).
func (a *auditReporter) report(ctx context.Context, now bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.read(ctx)
	if err != nil {
		a.log.Warn("kernel report-only record unreadable", zap.Error(err))
		return
	}
	set, t := a.sandboxes(), time.Now()
	seen := make(map[auditKey]bool, len(recs))
	defer func() { // forget what the kernel forgot (expired, or a full load)
		for k := range a.last {
			if !seen[k] {
				delete(a.last, k)
				delete(a.logged, k)
			}
		}
	}()
	for _, r := range recs {
		seen[auditKey{r.Source, r.Dest, r.Proto}] = true
		k := auditKey{r.Source, r.Dest, r.Proto}
		if r.Packets < a.last[k] {
			a.last[k] = 0 // the ruleset was loaded again: its counters started over
		}
		if r.Packets == a.last[k] || (!now && t.Sub(a.logged[k]) < time.Minute) {
			continue
		}
		sb, ok := set.BySource(r.Source)
		if !ok {
			continue
		}
		d := kernelVerdict(set, sb, r.Dest, r.Proto)
		level := zap.InfoLevel
		if d.Verdict != policy.Allow {
			level = zap.WarnLevel
		}
		a.log.Check(level, "kernel report-only").Write(zap.String("sandbox", sb.Name), zap.Stringer("src", r.Source),
			zap.Stringer("dst", r.Dest), zap.String("proto", r.Proto), zap.Stringer("verdict", d.Verdict),
			zap.Stringer("reason", d.Reason), zap.String("rule", d.Rule()),
			zap.Uint64("packets", r.Packets-a.last[k]), zap.Uint64("packets_total", r.Packets))
		a.last[k], a.logged[k] = r.Packets, t
	}
}

// kernelVerdict judges what the kernel passed for a report-only sandbox:
// allowed by the policy, or WouldDeny with the reason enforce mode gives.
// The record keeps no port: entries scoped to ports do not take part,
// those scoped to a protocol do.
func kernelVerdict(set *policy.Set, sb *policy.Sandbox, dst netip.Addr, proto string) policy.Decision {
	if g, bad := set.Guarded(sb, dst); bad {
		return g // past the kernel's guard (an address embedding the host's): not to be learnt
	}
	d := set.DecideAddrPort(sb, netip.AddrPortFrom(dst, 0), kernelProto(proto))
	if d.NeedsName() && sb.Policy.Mode() == policy.ModeDenyAll {
		d.Reason = policy.ReasonDenyAll // report-only deny-all asks for names; there is none here
	}
	if d.Verdict == policy.Deny {
		d.Verdict = policy.WouldDeny // it passed: the kernel let it through
	}
	return d
}

// kernelProto is the policy's protocol for nft's name of one.
func kernelProto(name string) policy.Proto {
	switch name {
	case "udp":
		return policy.ProtoUDP
	case "icmp", "ipv6-icmp":
		return policy.ProtoICMP
	case "tcp":
		return policy.ProtoTCP
	}
	return policy.ProtoAny
}
