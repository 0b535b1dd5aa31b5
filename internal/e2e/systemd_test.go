package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// unitPath is the systemd unit the project ships.
const unitPath = "../../examples/systemd/egressd.service"

// unitValues returns every value of key in the unit file's text, in order.
func unitValues(unit, key string) []string {
	var out []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestSystemdUnit runs examples/systemd/egressd.service as systemd would,
// short of systemd itself (which does not run here): the unit verifies
// clean; ExecStartPre passes; ExecStart, with nothing but the unit's
// capability bounding set, installs its rules and sends READY=1 on
// NOTIFY_SOCKET (Type=notify) only once the sandbox's traffic is judged;
// ExecReload reloads.
func TestSystemdUnit(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, tool := range []string{"systemd-analyze", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	e := newIdleEnv(t, defaultSandbox)
	unit := strings.NewReplacer("/usr/bin/egressd", bin, "/etc/egressd/egressd.toml", e.config).Replace(string(raw))
	copyPath := filepath.Join(t.TempDir(), "egressd.service")
	if err := os.WriteFile(copyPath, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", copyPath).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v: %s", err, out)
	}
	if got := unitValues(unit, "Type"); len(got) != 1 || got[0] != "notify" {
		t.Fatalf("Type = %q, want notify", got)
	}
	for _, pre := range unitValues(unit, "ExecStartPre") {
		if out, err := e.tp.Exec(e.tp.Firewall, strings.Fields(pre)...); err != nil {
			t.Fatalf("ExecStartPre %s: %v: %s", pre, err, out)
		}
	}

	notify := filepath.Join(t.TempDir(), "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	caps := unitValues(unit, "CapabilityBoundingSet")
	if len(caps) != 1 {
		t.Fatalf("CapabilityBoundingSet = %q", caps)
	}
	bounding := "-all"
	for _, c := range strings.Fields(caps[0]) {
		bounding += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	start := unitValues(unit, "ExecStart")
	if len(start) != 1 {
		t.Fatalf("ExecStart = %q", start)
	}
	args := append([]string{"setpriv", "--bounding-set", bounding, "--"}, strings.Fields(start[0])...)
	cmd := e.tp.Command(e.tp.Firewall, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	e.logs = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.proc = cmd
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("egressd output:\n%s", e.logs.String())
		}
	})
	nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 256)
	n, err := nc.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("NOTIFY_SOCKET got %q, %v; want READY=1", buf[:n], err)
	}
	// READY=1 means judged: the allowed probes arrive, and a denied name
	// does not.
	e.internetProbes(e.tp.Sandbox, "unit").reach(t, "egressd started by the unit's ExecStart")
	if out, err := e.curl("--resolve", "evil.test:443:198.51.100.10", "https://evil.test/unit-evil"); err == nil {
		t.Errorf("evil.test reached: %s", out)
	}
	e.noEvents("/unit-evil")

	reload := unitValues(unit, "ExecReload")
	if len(reload) != 1 {
		t.Fatalf("ExecReload = %q", reload)
	}
	rl := strings.ReplaceAll(reload[0], "$MAINPID", strconv.Itoa(cmd.Process.Pid))
	if out, err := exec.Command(strings.Fields(rl)[0], strings.Fields(rl)[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %s: %v: %s", rl, err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.logs.String(), `"msg":"reloaded"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after ExecReload")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lines := countLines(e.logs.String(), `"level":"error"`); lines > 0 {
		t.Errorf("%d error lines with the unit's capabilities", lines)
	}
}

func countLines(s, sub string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			n++
		}
	}
	return n
}
