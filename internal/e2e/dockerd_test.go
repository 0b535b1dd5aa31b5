package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// dockerd is a Docker daemon that one test owns, running in one of its
// topology's namespaces (the firewall: "the host" of the containers). It
// shares nothing with a Docker the machine may run: its own data root,
// exec root (and so its own containerd), pid file, API socket, daemon and
// CLI config, and cgroup parent, all under the test's temporary
// directory; no docker0 (--bridge=none), no link to the real uplink, no
// registry (images come from `docker import` or a FROM scratch build).
type dockerd struct {
	t      *testing.T
	ns     string
	dir    string
	sock   string
	cgroup string // the daemon's cgroup parent ("/egt-1a2b3c4d-fw-docker"): its own pids cgroup and every container's
	proc   *exec.Cmd
	logs   *syncBuffer
}

// dockerTools are the programs a Docker test drives besides ip(8).
var dockerTools = []string{"dockerd", "docker", "containerd", "runc", "docker-proxy", "nsenter", "busybox", "curl", "dig", "ldd", "tar"}

// requireDocker is netnstest.RequireRoot for the Docker tests: without
// root or one of dockerTools they skip, unless CI=true, where they fail.
func requireDocker(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t)
	for _, tool := range dockerTools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("docker e2e: needs %s (CI=true): %v", tool, err)
			}
			t.Skipf("docker e2e: needs %s: %v (scripts/install-deps.sh installs it)", tool, err)
		}
	}
}

// dockerdReadyTimeout bounds startDockerd; it usually needs about 1 s.
const dockerdReadyTimeout = 30 * time.Second

// startDockerd starts a Docker daemon in namespace ns and waits until it
// answers. Failing to start fails the test, CI or not: requireDocker has
// already found everything it needs. At cleanup, failed test or not, it
// removes every container and network, stops the daemon (and the
// containerd, shims and containers it leaves behind, each by PID),
// unmounts what it left mounted and removes its cgroups.
func startDockerd(t *testing.T, ns string) *dockerd {
	t.Helper()
	requireDocker(t)
	d := &dockerd{t: t, ns: ns, dir: t.TempDir(), cgroup: "/" + ns + "-docker", logs: &syncBuffer{}}
	d.sock = filepath.Join(d.dir, "docker.sock")
	// The trust key would go to /etc/docker/key.json, outside the test.
	daemonJSON := fmt.Sprintf(`{"deprecated-key-path": %q}`, filepath.Join(d.dir, "key.json"))
	if err := os.WriteFile(filepath.Join(d.dir, "daemon.json"), []byte(daemonJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	// The daemon runs in a pids cgroup of its own, under the containers'
	// cgroup parent, so that whatever it starts, and whatever outlives a
	// crash, is found by PID at cleanup. sh joins it and execs nsenter,
	// which enters the network namespace and execs dockerd: one PID
	// throughout. nsenter --net, not `ip netns exec`: ip netns exec gives
	// the command a mount namespace of its own with /sys remounted for the
	// network namespace, which drops the cgroup v1 mounts under
	// /sys/fs/cgroup, and dockerd refuses to start ("Devices cgroup isn't
	// mounted"). nsenter enters the network namespace only.
	daemonCgroup := filepath.Join("/sys/fs/cgroup/pids", d.cgroup, "daemon")
	if err := os.MkdirAll(daemonCgroup, 0o755); err != nil {
		t.Fatalf("docker e2e: pids cgroup: %v", err)
	}
	t.Cleanup(d.removeCgroups) // after stop
	d.proc = exec.Command("sh", "-c", `echo $$ >"$0/cgroup.procs" && exec "$@"`, daemonCgroup,
		"nsenter", "--net=/run/netns/"+ns, "dockerd",
		"--config-file", filepath.Join(d.dir, "daemon.json"),
		"--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"),
		"-H", "unix://"+d.sock,
		"--bridge=none", "--iptables=true", "--ip6tables=false",
		"--cgroup-parent", d.cgroup,
		"--log-level", "warn")
	d.proc.Stdout, d.proc.Stderr = d.logs, d.logs
	if err := d.proc.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { d.proc.Wait(); close(exited) }()
	t.Cleanup(func() { d.stop(exited) })
	deadline := time.After(dockerdReadyTimeout)
	for {
		if _, err := d.docker("version", "--format", "{{.Server.Version}}"); err == nil {
			return d
		}
		select {
		case <-exited:
			t.Fatalf("dockerd exited: %v\n%s", d.proc.ProcessState, d.logs.String())
		case <-deadline:
			t.Fatalf("dockerd not ready after %v:\n%s", dockerdReadyTimeout, d.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dockerCmdTimeout bounds every CLI call but the ones a test starts
// itself: a wedged daemon fails the test, and its cleanup goes on.
const dockerCmdTimeout = 60 * time.Second

// docker runs the CLI against this daemon and returns its standard output;
// the error includes the standard error.
func (d *dockerd) docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCmdTimeout)
	defer cancel()
	cmd := d.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// command is an unstarted `docker args...` against this daemon, with a
// CLI config of its own and the classic builder (the CLI's BuildKit needs
// the buildx plugin, which the distribution's docker.io lacks).
func (d *dockerd) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"--host", "unix://" + d.sock}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(d.dir, "cli"), "DOCKER_BUILDKIT=0", "DOCKER_HOST=")
	return cmd
}

// must is docker that fails the test on error.
func (d *dockerd) must(args ...string) string {
	d.t.Helper()
	out, err := d.docker(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// stop is the cleanup: containers and networks through the API, then the
// daemon with SIGTERM (SIGKILL after 20 s), then by PID whatever it left
// running, then mounts and cgroups. Anything it cannot remove fails the
// test.
func (d *dockerd) stop(exited <-chan struct{}) {
	t := d.t
	if t.Failed() {
		t.Logf("dockerd output:\n%s", d.logs.String())
	}
	select {
	case <-exited:
	default:
		if ids := strings.Fields(d.quiet("ps", "-aq")); len(ids) > 0 {
			d.quiet(append([]string{"rm", "-f", "-v"}, ids...)...)
		}
		if ids := strings.Fields(d.quiet("network", "ls", "-q", "--filter", "type=custom")); len(ids) > 0 {
			d.quiet(append([]string{"network", "rm"}, ids...)...)
		}
		d.proc.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Errorf("dockerd did not stop on SIGTERM within 20 s; killing it")
			d.proc.Process.Kill()
			<-exited
		}
	}
	// What a stopped dockerd leaves (after a crash its containerd, shims,
	// docker-proxies and containers; always exec/netns/default, the host
	// namespace file of --network host) goes by PID and by mount point,
	// then is checked gone.
	for _, pid := range d.leftPIDs() {
		t.Logf("cleanup: pid %d of this dockerd outlived it; killing it", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(d.leftPIDs()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if pids := d.leftPIDs(); len(pids) > 0 {
		t.Errorf("leak: pids %v of this dockerd still running after cleanup", pids)
	}
	for _, m := range d.leftMounts() {
		t.Logf("cleanup: %s outlived dockerd; unmounting it", m)
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if m := d.leftMounts(); len(m) > 0 {
		t.Errorf("leak: still mounted after cleanup: %q", m)
	}
	// egressd's cleanup ran before this one: nothing may be left in the
	// namespace, which netnstest deletes next.
	if out, err := exec.Command("ip", "netns", "pids", d.ns).Output(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("leak: processes left in namespace %s after cleanup: %v %s", d.ns, err, out)
	}
}

// quiet is docker for cleanup: errors are logged, not fatal.
func (d *dockerd) quiet(args ...string) string {
	out, err := d.docker(args...)
	if err != nil {
		d.t.Logf("cleanup: %v", err)
	}
	return out
}

// leftPIDs are the live processes in the daemon's pids cgroup: the
// daemon, every process it started (containerd, shims, docker-proxy) and
// the containers, which Docker puts under the same cgroup parent.
func (d *dockerd) leftPIDs() []int {
	var pids []int
	filepath.Walk(filepath.Join("/sys/fs/cgroup/pids", d.cgroup), func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(b)) {
			if pid, _ := strconv.Atoi(f); pid > 0 && alive(pid) {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !bytes.Contains(stat, []byte(") Z"))
}

// leftMounts are the mount points under the daemon's directory (overlay
// layers, shm, network namespace files), deepest first.
func (d *dockerd) leftMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		d.t.Errorf("cleanup: %v", err)
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], d.dir+"/") {
			out = append(out, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// removeCgroups removes the cgroup parent, which runc creates in every
// controller and nobody removes, and anything left under it (the daemon's
// own included).
func (d *dockerd) removeCgroups() {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", d.cgroup))
	for _, root := range roots {
		var dirs []string
		filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, dir := range dirs {
			if err := os.Remove(dir); err != nil {
				d.t.Errorf("cleanup: remove cgroup %s: %v", dir, err)
			}
		}
	}
}

// importTools imports a small image, tag, built from this host's files: a
// static busybox with applet links, curl and dig with the libraries ldd
// names for them, and caFile as the system CA bundle (and at
// /etc/egt/ca.pem), so that curl verifies the test servers.
func (d *dockerd) importTools(tag, caFile string) {
	t := d.t
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	files := map[string]string{ // in the image → on the host
		"/bin/busybox":                       "/bin/busybox",
		"/etc/egt/ca.pem":                    caFile,
		"/etc/ssl/certs/ca-certificates.crt": caFile,
	}
	for _, bin := range []string{"curl", "dig"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			t.Fatal(err)
		}
		files[path] = path
		for _, lib := range lddLibs(t, path) {
			files[lib] = lib
		}
	}
	for dst, src := range files {
		copyFile(t, src, filepath.Join(root, dst))
	}
	for _, applet := range []string{"sh", "cat", "echo", "mkdir", "sleep", "httpd", "nc", "ls", "kill", "ps"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{
		"/etc/nsswitch.conf": "hosts: files dns\n",
		"/etc/passwd":        "root:x:0:0:root:/root:/bin/sh\n",
		"/root/.keep":        "",
		"/tmp/.keep":         "",
	} {
		writeFile(t, filepath.Join(root, name), text)
	}
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	d.must("import", "--change", "ENV PATH=/usr/bin:/bin", tarball, tag)
}

// lddLibs are the libraries ldd resolves for path, and the loader.
func lddLibs(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", path, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs
}

// copyFile copies src (following links) to dst with src's mode.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// container is one running container and its network namespace, attached
// as a named namespace (ip netns attach) so that the harness's Go probes
// and recorders (netnstest.Do) run inside it.
type container struct {
	name string // the container's, "box-" and the name run was given (Docker wants two letters)
	addr string // on the Docker network
	ns   string // the attached name, in /run/netns
}

// run starts a detached container with args (docker run options, the
// image and its command) and attaches its network namespace as
// ns-name. The attachment is removed at cleanup.
func (d *dockerd) run(name, addr string, args ...string) *container {
	t := d.t
	t.Helper()
	d.must(append([]string{"run", "-d", "--name", "box-" + name, "--hostname", name}, args...)...)
	c := &container{name: "box-" + name, addr: addr, ns: d.ns + "-" + name}
	pid := d.must("inspect", "-f", "{{.State.Pid}}", c.name)
	if out, err := exec.Command("ip", "netns", "attach", c.ns, pid).CombinedOutput(); err != nil {
		t.Fatalf("ip netns attach %s %s: %v: %s", c.ns, pid, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", c.ns).Run() })
	return c
}

// remove removes the container and its attachment.
func (d *dockerd) remove(c *container) {
	d.t.Helper()
	d.must("rm", "-f", c.name)
	if out, err := exec.Command("ip", "netns", "del", c.ns).CombinedOutput(); err != nil {
		d.t.Fatalf("ip netns del %s: %v: %s", c.ns, err, out)
	}
}

// exec runs args in container c and returns the output; a failing client
// is an expected outcome.
func (d *dockerd) exec(c *container, args ...string) (string, error) {
	return d.docker(append([]string{"exec", c.name}, args...)...)
}

// dockerEnv is TestDockerBridge's world: the topology with egressd, its
// dockerd and the containers.
type dockerEnv struct {
	*env
	d    *dockerd
	a, b *container
}

// runOnNet starts a container of toolsImage on the Docker network at addr,
// its DNS forwarded by Docker's embedded resolver (127.0.0.11) to the
// fake upstream only, serving httpdCmd; extra are more docker run options.
func (de *dockerEnv) runOnNet(name, addr string, extra ...string) *container {
	args := append([]string{"--pull=never", "--network", dockerNet, "--ip", addr, "--dns", "198.51.100.53"}, extra...)
	return de.d.run(name, addr, append(args, toolsImage, "sh", "-c", httpdCmd)...)
}

// curlIn runs curl in container c with the test CA and a short timeout.
func (de *dockerEnv) curlIn(c *container, args ...string) (string, error) {
	base := []string{"curl", "-sS", "--max-time", "3", "--cacert", containerCA}
	return de.d.exec(c, append(base, args...)...)
}

// curlProbe runs curl in c for a URL ending in /marker; it arrived when
// the internet saw that path.
func (de *dockerEnv) curlProbe(c *container, what, marker string, args ...string) probe {
	return probe{
		name:    c.name + ": " + what,
		send:    func() { de.curlIn(c, args...) },
		arrived: func() bool { return len(de.in.rec.matching("/"+marker)) > 0 },
	}
}

// digProbe asks Docker's embedded resolver (dig's default server, from the
// container's resolv.conf) for name from c; it arrived when the upstream
// saw the question.
func (de *dockerEnv) digProbe(c *container, name string) probe {
	return probe{
		name:    c.name + ": dns " + name + " via 127.0.0.11",
		send:    func() { de.d.exec(c, "dig", "+time=2", "+tries=1", name, "A") },
		arrived: func() bool { return len(de.in.rec.matching("dns q="+name+".")) > 0 },
	}
}

// publishedProbe fetches http://addr/ (a published port) from c; it
// arrived when the container behind the port answered with its name.
func (de *dockerEnv) publishedProbe(c *container, addr, behind string) probe {
	var out string
	return probe{
		name:    c.name + ": " + behind + "'s published port at " + addr,
		send:    func() { out, _ = de.curlIn(c, "http://"+addr+"/") },
		arrived: func() bool { return strings.TrimSpace(out) == behind },
	}
}

// uptime is the kernel's /proc/uptime in seconds (hundredths).
func uptime(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/uptime")
	var s float64
	if err == nil {
		_, err = fmt.Sscan(string(b), &s)
	}
	if err != nil {
		t.Fatalf("/proc/uptime: %v", err)
	}
	return s
}

// combinedLogs is `docker logs` with standard error (where egressd logs).
func (d *dockerd) combinedLogs(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCmdTimeout)
	defer cancel()
	cmd := d.command(ctx, "logs", name)
	out, _ := cmd.CombinedOutput()
	return string(out)
}
