package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs the command name with args, feeding it stdin (may be empty),
// and returns its standard output. On failure the error includes the
// command line and its standard error.
type Runner func(ctx context.Context, stdin, name string, args ...string) ([]byte, error)

// Exec is the default Runner: it runs the command on this host with
// os/exec.
func Exec(ctx context.Context, stdin, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// InNetns returns a Runner that runs commands inside the named network
// namespace (`ip netns exec ns …`), for tests and for hosts where egressd
// guards sandboxes from a namespace of its own.
func InNetns(ns string) Runner {
	return func(ctx context.Context, stdin, name string, args ...string) ([]byte, error) {
		return Exec(ctx, stdin, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	}
}
