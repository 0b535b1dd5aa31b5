package control

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/hostnet"
	"github.com/egressd/egressd/policy"
)

// bridgeRig is a controller whose sandbox a sits on a bridge (veth-a is
// reported as one) and records what the bridge hooks were asked.
type bridgeRig struct {
	c       *Controller
	logs    *observer.ObservedLogs
	bridged []string
	fail    error
}

func newBridgeRig(t *testing.T) *bridgeRig {
	t.Helper()
	r := &bridgeRig{}
	cfg, err := config.Parse("egressd.toml", []byte(listConfig))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	r.logs = logs
	nop := func(context.Context, *config.Config, *policy.Set, []string) error { return nil }
	links := func() ([]hostnet.Link, error) {
		return []hostnet.Link{{Name: "veth-a", Kind: "bridge"}, {Name: "veth-b", Kind: "veth"}}, nil
	}
	hooks := Hooks{Kernel: nop, Links: links,
		Bridge: func(name string) (bool, error) {
			r.bridged = append(r.bridged, name)
			return len(r.bridged) == 1, r.fail
		},
		LoopbackResolver: func() string { return "127.0.0.53" }}
	r.c, err = New(cfg, NewStore(t.TempDir()), hooks, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBridgeNetfilterEnsured: bridge netfilter is turned on for a bridge a
// sandbox names, at apply and by CheckBridges, logged when it changed;
// the loopback-resolver warning comes once; a bridge that cannot get it
// refuses the apply.
func TestBridgeNetfilterEnsured(t *testing.T) {
	r := newBridgeRig(t)
	if err := r.c.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.c.CheckBridges()
	if strings.Join(r.bridged, ",") != "veth-a,veth-a" {
		t.Errorf("bridge hook called for %v, want veth-a at apply and at the check", r.bridged)
	}
	if n := r.logs.FilterMessageSnippet("bridge netfilter turned on").Len(); n != 1 {
		t.Errorf("%d lines saying bridge netfilter was turned on, want 1", n)
	}
	if n := r.logs.FilterMessageSnippet("Docker's embedded DNS").Len(); n != 1 {
		t.Errorf("%d loopback-resolver warnings, want 1", n)
	}

	r2 := newBridgeRig(t)
	r2.fail = hostnet.ErrNoBridgeNetfilter
	if err := r2.c.Apply(context.Background()); !errors.Is(err, hostnet.ErrNoBridgeNetfilter) ||
		!strings.Contains(err.Error(), `sandbox "a": interface "veth-a" is a bridge`) {
		t.Errorf("Apply without br_netfilter = %v", err)
	}
}
