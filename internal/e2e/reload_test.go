package e2e

import (
	"bufio"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reload rewrites the config and sends SIGHUP, then waits for the log line
// that says how it went.
func (e *env) reload(sandboxes, want string) {
	e.t.Helper()
	n := strings.Count(e.logs.String(), want)
	e.writeConfig(sandboxes)
	e.proc.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(e.logs.String(), want) == n {
		if time.Now().After(deadline) {
			e.t.Fatalf("no %q after SIGHUP", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSIGHUPLockdownCutsLiveFlow(t *testing.T) {
	e := newEnv(t, allowAllSandbox)
	// A connection to the sink opened while the sandbox may reach anything.
	c := e.dialSandbox(t, "198.51.100.78:9000")
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "before\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ok before\n" {
		t.Fatalf("before lock-down: %q %v", line, err)
	}
	e.reload(defaultSandbox, `"msg":"reloaded"`)
	locked := time.Now()
	// Within 1 s the connection must stop delivering bytes.
	var delivered []string
	for time.Since(locked) < 1500*time.Millisecond {
		msg := fmt.Sprintf("after-%d", time.Since(locked).Milliseconds())
		if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
			break
		}
		delivered = append(delivered, msg)
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	for _, ev := range e.in.rec.matching("tcp 198.51.100.78:9000", "after-") {
		var ms int
		fmt.Sscanf(ev[strings.Index(ev, "after-"):], "after-%d", &ms)
		if ms >= 1000 {
			t.Errorf("sink got %q more than 1 s after the lock-down", ev)
		}
	}
	// New flows are judged by the new policy.
	if out, err := e.curl("--resolve", "evil.test:443:198.51.100.66", "https://evil.test/after"); err == nil {
		t.Fatalf("denied name passed after lock-down: %q", out)
	}
	e.sandbox("sh", "-c", "echo udp-after | nc -u -w 1 198.51.100.78 9001")
	time.Sleep(300 * time.Millisecond)
	e.noEvents("udp-after")
	e.noEvents("/after")
}

func TestSIGHUPBrokenConfigKeepsPolicy(t *testing.T) {
	e := newEnv(t, defaultSandbox)
	// One bad entry next to a loosening one: nothing of it may apply.
	broken := strings.Replace(defaultSandbox, `"*.wild.test"`, `"a.*.wild.test", "evil.test"`, 1)
	e.reload(broken, `"msg":"reload refused`)
	if !strings.Contains(e.logs.String(), "a.*.wild.test") {
		t.Errorf("refusal does not name the bad value:\n%s", e.logs.String())
	}
	// The old custom policy still holds: allowed passes, denied does not.
	if out, err := e.curl("--resolve", "x.wild.test:443:198.51.100.11", "https://x.wild.test/still"); err != nil {
		t.Fatalf("allowed name refused after a broken reload: %v %q", err, out)
	}
	if out, err := e.curl("--resolve", "evil.test:443:198.51.100.66", "https://evil.test/broken"); err == nil {
		t.Fatalf("denied name passed after a broken reload: %q", out)
	}
	e.noEvents("/broken")
}
