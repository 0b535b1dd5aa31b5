// Package instance keeps egressd to one daemon per network namespace: two
// would share (and overwrite) one table inet egressd. The lock is a file
// under /run/egressd named after the namespace, held with flock(2) for
// the daemon's life, so a crash (kill -9 included) releases it and no
// stale file ever blocks a start. The file holds the holder's pid.
package instance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir holds the lock files.
const Dir = "/run/egressd"

// Lock is a held instance lock.
type Lock struct{ f *os.File }

// RunningError says another egressd holds the lock.
type RunningError struct {
	PID  int // 0 when it could not be read
	Path string
}

func (e *RunningError) Error() string {
	who := "another egressd"
	if e.PID > 0 {
		who += " (pid " + strconv.Itoa(e.PID) + ")"
	}
	return who + " is running in this network namespace (lock " + e.Path + "); stop it first"
}

// Acquire takes this network namespace's lock in dir, or returns a
// *RunningError naming the pid that holds it.
func Acquire(dir string) (*Lock, error) {
	path, err := lockPath(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &RunningError{PID: readPID(path), Path: path}
		}
		return nil, fmt.Errorf("instance: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release lets another egressd start.
func (l *Lock) Release() { l.f.Close() }

// lockPath names the lock after the calling thread's network namespace.
func lockPath(dir string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", fmt.Errorf("instance: network namespace: %w", err)
	}
	return filepath.Join(dir, "netns-"+strconv.FormatUint(st.Ino, 10)+".lock"), nil
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
