package proxy

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/egressd/egressd/policy"
)

// BenchmarkFlowLogLine is what one flow's decision line costs, written as
// `egressd run` writes it (production JSON encoder, unsampled) to a file,
// one write(2) per line: the price of logging every decision.
func BenchmarkFlowLogLine(b *testing.B) {
	out, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.EncodeTime = "ts", zapcore.ISO8601TimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), out, zapcore.InfoLevel)).Named("proxy")
	f := &flow{sandbox: "agent-1", src: netip.MustParseAddrPort("10.231.0.2:41234"),
		dst: netip.MustParseAddrPort("198.51.100.10:443"), start: time.Now(), name: "pypi.org"}
	d := policy.Decision{Verdict: policy.Allow, Reason: policy.ReasonAllowDomain, Name: "pypi.org"}
	b.ReportAllocs()
	for b.Loop() {
		if ce := log.Check(zap.InfoLevel, "flow"); ce != nil {
			ce.Write(flowFields(f, d)...)
		}
	}
}
