package hostnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoBridgeNetfilter says br_netfilter is not loaded: frames that a
// bridge forwards between two of its ports reach no IP hook at all.
var ErrNoBridgeNetfilter = errors.New("br_netfilter is not loaded (modprobe br_netfilter)")

// bridgeNFGlobal exists once br_netfilter is loaded in this namespace.
const bridgeNFGlobal = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// bridgeNFKeys are a bridge's own switches (IFLA_BR_NF_CALL_IPTABLES,
// _IP6TABLES): either one, or the host-wide net.bridge sysctl, makes the
// IP hooks see the frames the bridge forwards.
var bridgeNFKeys = []string{"nf_call_iptables", "nf_call_ip6tables"}

// EnsureBridgeNetfilter turns on bridge netfilter for the bridge called
// name only, leaving the host-wide net.bridge sysctls as they are, so that
// netfilter sees frames passing between the bridge's ports whatever those
// sysctls say. It reports whether it changed anything.
func EnsureBridgeNetfilter(name string) (changed bool, err error) {
	if _, err := os.Stat(bridgeNFGlobal); err != nil {
		return false, fmt.Errorf("hostnet: bridge %q: %w", name, ErrNoBridgeNetfilter)
	}
	for _, key := range bridgeNFKeys {
		path := filepath.Join("/sys/class/net", name, "bridge", key)
		b, err := os.ReadFile(path)
		if err != nil {
			return changed, fmt.Errorf("hostnet: bridge %q: %w", name, err)
		}
		if strings.TrimSpace(string(b)) == "1" {
			continue
		}
		if err := os.WriteFile(path, []byte("1"), 0); err != nil {
			return changed, fmt.Errorf("hostnet: bridge %q: turn on %s: %w", name, key, err)
		}
		changed = true
	}
	return changed, nil
}

// LoopbackResolver returns the first nameserver of /etc/resolv.conf that is
// a loopback address ("127.0.0.53", systemd-resolved's), or "". Docker's
// embedded resolver forwards its containers' queries to such a server from
// the host's own namespace, where egressd never sees them.
func LoopbackResolver() string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.Unmap().IsLoopback() {
				return f[1]
			}
		}
	}
	return ""
}
