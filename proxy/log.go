package proxy

import (
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/egressd/egressd/policy"
)

// Log field keys of the per-flow decision line.
const (
	keySandbox   = "sandbox"
	keySrc       = "src"
	keyDst       = "dst"
	keyUpstream  = "upstream"
	keyName      = "name"
	keyVerdict   = "verdict"
	keyReason    = "reason"
	keyRule      = "rule"
	keyBytesUp   = "bytes_up"
	keyBytesDown = "bytes_down"
	keyDuration  = "duration"
	keyIngress   = "ingress"
)

// endFlow ends a flow: it leaves the registry, is counted and writes its
// one decision line. Every flow ends exactly once.
// A flow a policy change cut logs "flow cut by policy change" with the
// decision that cut it.
func (s *Server) endFlow(f *flow, d policy.Decision, err error) {
	msg := "flow"
	switch end, why := f.ending(d); why {
	case errCut:
		d, err, msg = end, why, "flow cut by policy change"
	case errIdle:
		err, msg = why, "flow closed: idle"
		s.stats.idle.Add(1)
	}
	s.flows.remove(f)
	s.stats.count(f, d)
	if f.done != nil {
		close(f.done)
	}
	level := zap.InfoLevel
	if d.Verdict != policy.Allow { // denied, or would be (report-only mode)
		level = zap.WarnLevel
	}
	ce := s.flowLog.Check(level, msg)
	if ce == nil {
		return
	}
	fields := flowFields(f, d)
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(fields...)
}

func flowFields(f *flow, d policy.Decision) []zap.Field {
	f.mu.Lock()
	name, upstream := f.name, f.upstream
	f.mu.Unlock()
	if name == "" {
		name = d.Name
	}
	dst, src := f.dst.String(), f.src.String()
	if !f.dst.Addr().IsValid() { // an explicit proxy's flow to a name
		host := f.want
		if host == "" {
			host = name
		}
		dst = net.JoinHostPort(host, strconv.Itoa(int(f.dst.Port())))
	}
	if !f.src.IsValid() {
		src = "unix" // a client of an explicit listener's unix socket
	}
	fields := []zap.Field{
		zap.String(keySandbox, f.sandbox),
		zap.String(keyIngress, string(f.ingress)),
		zap.String(keySrc, src),
		zap.String(keyDst, dst),
		zap.String(keyName, name),
		zap.Stringer(keyVerdict, d.Verdict),
		zap.Stringer(keyReason, d.Reason),
		zap.String(keyRule, d.Rule()),
		zap.Int64(keyBytesUp, f.up.Load()),
		zap.Int64(keyBytesDown, f.down.Load()),
		zap.Duration(keyDuration, time.Since(f.start)),
	}
	if upstream.IsValid() && upstream != f.dst {
		fields = append(fields, zap.Stringer(keyUpstream, upstream))
	}
	return fields
}
