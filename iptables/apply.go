package iptables

import (
	"context"
	"fmt"
)

// Installer installs and removes egressd's kernel rules through Run.
type Installer struct {
	// Run runs the nft and ip commands; nil means Exec (this host).
	Run Runner
	// NetNS names the network namespace (/run/netns/NAME) Heartbeat works
	// in; "" is this process's. Run must point at the same one.
	NetNS string
}

// Cleanup removes everything egressd installed on this host. See
// Installer.Cleanup.
func Cleanup(ctx context.Context) error {
	return Installer{}.Cleanup(ctx)
}

// Apply sets up TPROXY policy routing, then loads the ruleset, replacing any
// previous one in one transaction. Applying twice leaves one copy of
// everything. On error the previous ruleset, if any, stays in place.
func (in Installer) Apply(ctx context.Context, sbs []Sandbox, p Ports, h Host) error {
	rs, err := NewRuleset(sbs, p, h)
	if err != nil {
		return err
	}
	return in.applyRuleset(ctx, rs)
}

func (in Installer) applyRuleset(ctx context.Context, rs *Ruleset) error {
	if err := in.addRouting(ctx); err != nil {
		return err
	}
	if _, err := in.run(ctx, rs.Script(), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("iptables: load ruleset: %w", err)
	}
	return nil
}

// Cleanup removes the tables first (no more marks), then the policy routing.
// It is idempotent and succeeds when nothing is installed.
func (in Installer) Cleanup(ctx context.Context) error {
	if _, err := in.run(ctx, removeTables, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("iptables: remove tables: %w", err)
	}
	return in.removeRouting(ctx)
}

func (in Installer) run(ctx context.Context, stdin, name string, args ...string) ([]byte, error) {
	run := in.Run
	if run == nil {
		run = Exec
	}
	return run(ctx, stdin, name, args...)
}
