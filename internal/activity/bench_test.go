package activity

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/egressd/egressd/policy"
)

// The record's cost per decision line, next to the log line itself (JSON
// to a discarded writer): what every flow and query pays for it.
func BenchmarkFlowLine(b *testing.B) {
	enc := zap.NewProductionEncoderConfig()
	logCore := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	src, dst := netip.MustParseAddrPort("10.231.0.2:40000"), netip.MustParseAddrPort("198.51.100.10:443")
	line := func(log *zap.Logger) {
		log.Info("flow", zap.String("sandbox", "sb1"), zap.String("ingress", "tproxy"), zap.Stringer("src", src),
			zap.Stringer("dst", dst), zap.String("name", "allowed.test"), zap.Stringer("verdict", policy.Allow),
			zap.Stringer("reason", policy.ReasonAllowDomain), zap.String("rule", "allow_domains allowed.test"),
			zap.Int64("bytes_up", 517), zap.Int64("bytes_down", 4096), zap.Duration("duration", time.Millisecond))
	}
	b.Run("log", func(b *testing.B) {
		log := zap.New(logCore)
		for range b.N {
			line(log)
		}
	})
	b.Run("log+record", func(b *testing.B) {
		log := zap.New(zapcore.NewTee(logCore, NewRecord().Core()))
		for range b.N {
			line(log)
		}
	})
}
