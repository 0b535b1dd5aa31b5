package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// loadReport is what a -load-only child prints when it stops.
type loadReport struct {
	OK, Failed int64
	Errors     map[string]int
}

// loadOnly runs the clients until SIGTERM or SIGINT, then prints their
// counts as JSON on stdout.
func loadOnly(o options) error {
	l, err := newLoad(o)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	l.run(ctx)
	l.closeIdle()
	c := l.snapshot()
	return json.NewEncoder(os.Stdout).Encode(loadReport{OK: c.ok, Failed: c.failed, Errors: l.errs})
}

// loadChild is a running -load-only child process.
type loadChild struct {
	cmd     *exec.Cmd
	out     bytes.Buffer
	stopped bool
}

// startLoad starts the clients of o in a child process (this binary,
// -load-only), in this process's network namespace.
func startLoad(o options) (*loadChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &loadChild{}
	c.cmd = exec.Command(self, "-load-only", "-target", o.target, "-name", o.name, "-ca", o.ca,
		"-clients", fmt.Sprint(o.clients), "-size", fmt.Sprint(o.size))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, os.Stderr
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("load child: %w", err)
	}
	return c, nil
}

// stop ends the child and returns its counts; later calls do nothing.
func (c *loadChild) stop() (loadCounts, map[string]int, error) {
	if c.stopped {
		return loadCounts{}, nil, nil
	}
	c.stopped = true
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return loadCounts{}, nil, fmt.Errorf("load child: %w", err)
	}
	if err := c.cmd.Wait(); err != nil {
		return loadCounts{}, nil, fmt.Errorf("load child: %w", err)
	}
	var r loadReport
	if err := json.Unmarshal(c.out.Bytes(), &r); err != nil {
		return loadCounts{}, nil, fmt.Errorf("load child: its report %q: %w", c.out.String(), err)
	}
	return loadCounts{ok: r.OK, failed: r.Failed}, r.Errors, nil
}
