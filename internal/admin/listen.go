package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Socket file modes: only root (egressd's user) may talk to the API.
const (
	dirMode    = 0o700 // for a directory Listen creates
	socketMode = 0o600
)

// maxSocketPath is what fits in sockaddr_un.sun_path with its NUL.
const maxSocketPath = 107

// closeTimeout bounds how long Close lets requests in flight finish.
const closeTimeout = 5 * time.Second

// Server is the admin API's unix socket.
type Server struct {
	path string
	info fs.FileInfo // the socket file we created, to remove only ours
	ln   net.Listener
	srv  *http.Server
	log  *zap.Logger
}

// Listen creates the socket at path, mode 0600 before it accepts
// anything. A missing directory is created with mode 0700; a stale socket
// left by a crash is removed; a socket some process still answers on, or
// a file that is not a socket, is an error. Connections wait in the
// backlog until Start.
func Listen(path string, log *zap.Logger) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin: socket path %q: longer than %d bytes", path, maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := listenUnix(path)
	if err != nil {
		return nil, err
	}
	info, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	return &Server{path: path, info: info, ln: ln, log: log.Named("admin")}, nil
}

// removeStale removes a socket file nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin: %s exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("admin: %s: a process answers on it (is another egressd running?)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("admin: remove stale socket: %w", err)
	}
	return nil
}

// listenUnix binds, sets the file mode, and only then listens: no client
// can connect while the socket file still has the umask's mode.
func listenUnix(path string) (net.Listener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("admin: socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), path) // closes fd
	defer f.Close()
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("admin: bind %s: %w", path, err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("admin: listen %s: %w", path, err)
	}
	ln, err := net.FileListener(f) // a dup of fd
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Start serves h in the background until Close.
func (s *Server) Start(h http.Handler) {
	s.srv = &http.Server{
		Handler:           h,
		ConnContext:       withPeer,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	go s.serve()
	s.log.Info("admin API listening", zap.String("socket", s.path))
}

func (s *Server) serve() {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("admin API stopped", zap.Error(err))
	}
}

// Close stops serving, lets requests in flight finish for up to 5 s, and
// removes the socket file if it is still the one Listen created.
func (s *Server) Close() error {
	var err error
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		err = s.srv.Shutdown(ctx)
	} else {
		err = s.ln.Close()
	}
	if fi, serr := os.Lstat(s.path); serr == nil && os.SameFile(fi, s.info) {
		os.Remove(s.path)
	}
	return err
}
