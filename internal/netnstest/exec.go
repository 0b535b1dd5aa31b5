package netnstest

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Command returns an unstarted command running args inside namespace ns
// (`ip netns exec ns args…`, which execs args in place: the process's PID is
// the command's own).
func (tp *Topology) Command(ns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Exec runs args inside ns and returns its standard output; the error
// includes the standard error.
func (tp *Topology) Exec(ns string, args ...string) ([]byte, error) {
	return output(tp.Command(ns, args...))
}

// Run runs args inside ns and returns its standard output, failing the test
// on error. Call it from the test goroutine only (it may call t.Fatal).
func (tp *Topology) Run(ns string, args ...string) string {
	tp.t.Helper()
	out, err := tp.Exec(ns, args...)
	if err != nil {
		tp.t.Fatalf("netnstest: %v", err)
	}
	return string(out)
}

// Start starts args inside ns in the background. Its output is logged if
// the test fails. At cleanup the process is killed by PID and waited for.
func (tp *Topology) Start(ns string, args ...string) *exec.Cmd {
	tp.t.Helper()
	cmd := tp.Command(ns, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tp.t.Fatalf("netnstest: start %s: %v", cmd, err)
	}
	tp.t.Cleanup(func() {
		_ = cmd.Process.Kill() // fails only if it already exited
		_ = cmd.Wait()
		if tp.t.Failed() {
			tp.t.Logf("netnstest: output of %s:\n%s", cmd, out.String())
		}
	})
	return cmd
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if _, err := output(exec.Command(name, args...)); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
}

func output(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// lockedBuffer is a bytes.Buffer safe for the two copy goroutines of
// exec.Cmd and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
