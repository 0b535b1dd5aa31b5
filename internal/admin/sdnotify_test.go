package admin

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	tests := []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify.sock") }},
		{"abstract", func(t *testing.T) string { return "@egressd-test-" + strings.ReplaceAll(t.Name(), "/", "-") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			sent, err := notify(addr, "READY=1")
			if !sent || err != nil {
				t.Fatalf("notify: %v %v", sent, err)
			}
			buf := make([]byte, 64)
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := pc.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "READY=1" {
				t.Errorf("got %q %v", buf[:n], err)
			}
		})
	}
	t.Run("unset", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		if sent, err := NotifyReady(); sent || err != nil {
			t.Errorf("NotifyReady without NOTIFY_SOCKET: %v %v", sent, err)
		}
	})
	t.Run("not a socket address", func(t *testing.T) {
		if _, err := notify("relative/path", "READY=1"); err == nil {
			t.Error("no error")
		}
	})
	t.Run("nobody listening", func(t *testing.T) {
		if _, err := notify(filepath.Join(t.TempDir(), "gone.sock"), "READY=1"); err == nil {
			t.Error("no error")
		}
	})
}
