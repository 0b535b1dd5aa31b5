package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// unixClient talks HTTP to the socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

func TestListenModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "egressd")
	path := filepath.Join(dir, "admin.sock")
	s, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{dir, os.ModeDir | 0o700}, {path, os.ModeSocket | 0o600}} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.want {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.want)
		}
	}
}

func TestListenServeClose(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	r := newRig(t, nil)
	path := filepath.Join(t.TempDir(), "admin.sock")
	s, err := Listen(path, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	s.Start(NewHandler(r.ctl, Parts{}, zap.New(core)))
	c := unixClient(path)
	req, _ := http.NewRequest("PUT", "http://egressd/v1/sandboxes/picky/policy", strings.NewReader(`{"mode":"deny-all"}`))
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("PUT over the socket: %d %s", res.StatusCode, body)
	}
	t.Run("change logged with the peer", func(t *testing.T) {
		set := logs.FilterMessage("policy set").All()
		if len(set) != 1 {
			t.Fatalf("%d 'policy set' lines", len(set))
		}
		f := set[0].ContextMap()
		if f["sandbox"] != "picky" || f["mode"] != "deny-all" || f["peer_pid"] != int32(os.Getpid()) || f["peer_uid"] != uint32(os.Getuid()) {
			t.Errorf("log fields %v", f)
		}
	})
	c.CloseIdleConnections()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

func TestListenExisting(t *testing.T) {
	t.Run("stale socket replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "admin.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close() // as after kill -9: the file stays, nobody answers
		s, err := Listen(path, nil)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		s.Close()
	})
	t.Run("live socket refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "admin.sock")
		first, err := Listen(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if s, err := Listen(path, nil); err == nil || !strings.Contains(err.Error(), "another egressd") {
			t.Errorf("second Listen: %v, want an error naming the running egressd", err)
			if s != nil {
				s.Close()
			}
		}
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("first socket gone: %v", err)
		}
	})
	t.Run("regular file kept", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "admin.sock")
		if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen: %v, want not a socket", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "precious" {
			t.Errorf("file changed: %q", b)
		}
	})
	t.Run("path too long", func(t *testing.T) {
		if _, err := Listen("/"+strings.Repeat("a", 120), nil); err == nil || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("Listen: %v", err)
		}
	})
}
