package events

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestHub: decision lines reach the subscribers of their sandbox (and
// those of all), other lines none; a full reader loses events, counted,
// and never blocks the logger.
func TestHub(t *testing.T) {
	h := NewHub()
	log := zap.New(h.Core(zap.NewProductionEncoderConfig()))
	log.Info("flow", zap.String("sandbox", "a")) // nobody listens: nothing encoded, nothing kept
	all, onlyB := h.Subscribe(""), h.Subscribe("b")
	log.Info("flow", zap.String("sandbox", "a"), zap.String("verdict", "deny"))
	log.Info("dns query refused", zap.String("sandbox", "b"))
	log.Info("ready") // not a decision
	if n := len(all.C); n != 2 {
		t.Fatalf("all got %d events, want 2", n)
	}
	if line := string(<-onlyB.C); !strings.Contains(line, `"msg":"dns query refused"`) || len(onlyB.C) != 0 {
		t.Fatalf("b got %q (+%d)", line, len(onlyB.C))
	}
	for range subBuffer + 10 {
		log.Info("flow", zap.String("sandbox", "a"))
	}
	if n := all.Dropped(); n != 12 {
		t.Fatalf("dropped %d, want 12 (buffer %d, 2 already queued)", n, subBuffer)
	}
	h.Unsubscribe(all)
	h.Unsubscribe(onlyB)
	if ce := log.Check(zapcore.InfoLevel, "flow"); ce != nil {
		t.Fatal("the core still encodes with no subscriber")
	}
}
