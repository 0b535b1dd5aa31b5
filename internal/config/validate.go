package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// validator turns the file schema into the domain model, collecting every
// problem with its position instead of stopping at the first.
type validator struct {
	src    *sourceIndex
	errs   errorList
	broken map[int]bool // [[sandbox]] tables that failed to decode

	badSandboxes bool // the sandbox key is not even an array of tables
}

func newValidator(name string, data []byte) *validator {
	return &validator{src: newSourceIndex(data), errs: errorList{file: name}, broken: map[int]bool{}}
}

// bad records a problem with the key path (outside [[sandbox]]).
func (v *validator) bad(path string, err error) {
	v.errs.add(v.src.line(path, -1), "", err)
}

func (v *validator) proxy(f fileProxy) Proxy {
	p := Proxy{
		TProxyPort:             v.port("proxy.tproxy_port", f.TProxyPort),
		DNSPort:                v.port("proxy.dns_port", f.DNSPort),
		UpstreamDNS:            v.upstreams(f.UpstreamDNS),
		PeekTimeout:            v.duration("proxy.peek_timeout", f.PeekTimeout),
		DialTimeout:            v.duration("proxy.dial_timeout", f.DialTimeout),
		ShutdownTimeout:        v.duration("proxy.shutdown_timeout", f.ShutdownTimeout),
		IdleTimeout:            v.idleTimeout(f.IdleTimeout),
		MaxConnsPerSandbox:     f.MaxConnsPerSandbox,
		MaxPeekBytesPerSandbox: f.MaxPeekBytesPerSb,
		MaxPeekBytes:           f.MaxPeekBytes,
	}
	for _, k := range []struct {
		path string
		n    int64
	}{{"proxy.max_peek_bytes_per_sandbox", f.MaxPeekBytesPerSb}, {"proxy.max_peek_bytes", f.MaxPeekBytes}} {
		if k.n < minPeekBytes {
			v.bad(k.path, intValue(k.path, int(k.n), "must be at least 262144 (256 KiB: one connection's largest ClientHello)"))
		}
	}
	if f.MaxPeekBytesPerSb > f.MaxPeekBytes {
		v.bad("proxy.max_peek_bytes_per_sandbox", intValue("proxy.max_peek_bytes_per_sandbox", int(f.MaxPeekBytesPerSb),
			"must not exceed proxy.max_peek_bytes ("+strconv.FormatInt(f.MaxPeekBytes, 10)+")"))
	}
	if f.TProxyPort == f.DNSPort {
		v.samePorts(f.DNSPort)
	}
	if f.MaxConnsPerSandbox < 1 {
		v.bad("proxy.max_conns_per_sandbox", intValue("proxy.max_conns_per_sandbox", f.MaxConnsPerSandbox, "must be at least 1"))
	}
	return p
}

// samePorts reports tproxy_port == dns_port on whichever of the two the
// file sets last (the other may be a default).
func (v *validator) samePorts(n int) {
	line := max(v.src.line("proxy.tproxy_port", -1), v.src.line("proxy.dns_port", -1))
	v.errs.add(line, "", fmt.Errorf("proxy.tproxy_port and proxy.dns_port are both %d: they must differ", n))
}

func (v *validator) port(path string, n int) int {
	if n < 1 || n > 65535 {
		v.bad(path, intValue(path, n, "port must be in 1..65535"))
	}
	return n
}

func (v *validator) duration(path, s string) time.Duration {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.bad(path, stringValue(path, s, `not a duration (write e.g. "5s", "1m30s")`))
	case d <= 0:
		v.bad(path, stringValue(path, s, "must be positive"))
	}
	return d
}

// idleTimeout is proxy.idle_timeout: "0" turns it off; otherwise at least
// a second, since the sweep that enforces it runs at most once a second.
func (v *validator) idleTimeout(s string) time.Duration {
	const path = "proxy.idle_timeout"
	if s == "0" {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.bad(path, stringValue(path, s, `not a duration (write e.g. "1h", "10m", or "0" for none)`))
	case d != 0 && d < time.Second:
		v.bad(path, stringValue(path, s, `must be at least "1s", or "0" for none`))
	}
	return d
}

func (v *validator) upstreams(list []string) []netip.AddrPort {
	const path = "proxy.upstream_dns"
	if len(list) == 0 {
		v.bad(path, keyError(path, `at least one upstream resolver is required, e.g. ["192.0.2.53:53"]`))
		return nil
	}
	out := make([]netip.AddrPort, 0, len(list))
	seen := make(map[netip.AddrPort]bool, len(list))
	for i, s := range list {
		ap, msg := parseUpstream(s)
		if msg == "" && seen[ap] {
			msg = "listed twice"
		}
		if msg != "" {
			key := path + "[" + strconv.Itoa(i) + "]"
			v.errs.add(v.src.elemLine(path, -1, s), "", stringValue(key, s, msg))
			continue
		}
		seen[ap] = true
		out = append(out, ap)
	}
	return out
}

// parseUpstream reads "ip", "ip:port", "[ipv6]:port" or a bare IPv6
// address; the port defaults to 53. It returns a message when s is bad.
func parseUpstream(s string) (netip.AddrPort, string) {
	ap, msg := splitUpstream(s)
	if msg == "" && ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, "the unspecified address is not a resolver"
	}
	return ap, msg
}

func splitUpstream(s string) (netip.AddrPort, string) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), ""
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return netip.AddrPortFrom(a.Unmap(), 53), ""
		}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, `want "ip" or "ip:port" (IPv6 as "[ip]:port")`
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, "must be an IP address, not a name"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return netip.AddrPort{}, "port must be in 1..65535"
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(n)), ""
}

func (v *validator) admin(f fileAdmin) Admin {
	v.socketPath("admin.socket", f.Socket)
	if f.Metrics != "" {
		if msg := checkListenAddr(f.Metrics); msg != "" {
			v.bad("admin.metrics", stringValue("admin.metrics", f.Metrics, msg))
		}
	}
	return Admin{Socket: f.Socket, Metrics: f.Metrics}
}

// maxSocketPath is the room in sockaddr_un.sun_path, minus the final NUL.
const maxSocketPath = 107

func (v *validator) socketPath(path, s string) {
	switch {
	case !filepath.IsAbs(s):
		v.bad(path, stringValue(path, s, "must be an absolute path"))
	case len(s) > maxSocketPath:
		v.bad(path, stringValue(path, s, "longer than the 107 bytes a unix socket path may have"))
	}
}

// checkListenAddr accepts "ip:port", "[ipv6]:port", "localhost:port" and
// ":port" (every address). It returns a message when s is bad.
func checkListenAddr(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return `want "ip:port", e.g. "127.0.0.1:9464"`
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "port must be in 1..65535"
	}
	if host == "" || host == "localhost" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return `host must be an IP address, "localhost" or empty`
	}
	return ""
}

func (v *validator) state(f fileState) State {
	if !filepath.IsAbs(f.Dir) {
		v.bad("state.dir", stringValue("state.dir", f.Dir, "must be an absolute path"))
	}
	return State{Dir: f.Dir}
}
