package iptables

import (
	"context"
	"fmt"
)

// Installer installs and removes egressd's kernel rules through Run.
type Installer struct {
	// Run runs the nft and ip commands; nil means Exec (this host).
	Run Runner
}

// Apply installs the rules for sbs on this host. See Installer.Apply.
func Apply(ctx context.Context, sbs []Sandbox, p Ports) error {
	return Installer{}.Apply(ctx, sbs, p)
}

// Cleanup removes everything Apply installed on this host. See
// Installer.Cleanup.
func Cleanup(ctx context.Context) error {
	return Installer{}.Cleanup(ctx)
}

// Apply sets up TPROXY policy routing, then loads the ruleset, replacing any
// previous one in one transaction. Applying twice leaves one copy of
// everything. On error the previous ruleset, if any, stays in place.
func (in Installer) Apply(ctx context.Context, sbs []Sandbox, p Ports) error {
	rs, err := NewRuleset(sbs, p)
	if err != nil {
		return err
	}
	if err := in.addRouting(ctx); err != nil {
		return err
	}
	if _, err := in.run(ctx, rs.Script(), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("iptables: load ruleset: %w", err)
	}
	return nil
}

// removeTable deletes table inet egressd in one transaction whether or not
// it exists (nft 1.0.6 has no "destroy").
const removeTable = "table inet " + Table + " {}\ndelete table inet " + Table + "\n"

// Cleanup removes the table first (no more marks), then the policy routing.
// It is idempotent and succeeds when nothing is installed.
func (in Installer) Cleanup(ctx context.Context) error {
	if _, err := in.run(ctx, removeTable, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("iptables: remove table: %w", err)
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
