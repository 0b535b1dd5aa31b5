package admin

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// NotifyReady tells systemd that egressd is up (sd_notify "READY=1") when
// it runs as a Type=notify service, i.e. when NOTIFY_SOCKET is set. It
// reports whether a notification was sent. Without NOTIFY_SOCKET it does
// nothing.
func NotifyReady() (bool, error) {
	return notify(os.Getenv("NOTIFY_SOCKET"), "READY=1")
}

// notify sends state as one datagram to the unix socket addr; an address
// starting with '@' is in the abstract namespace.
func notify(addr, state string) (bool, error) {
	if addr == "" {
		return false, nil
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return false, fmt.Errorf("sd_notify: NOTIFY_SOCKET %q: not a unix socket path or @abstract name", addr)
	}
	// Go maps a leading '@' to the abstract namespace's leading NUL.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}
