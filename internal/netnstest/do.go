package netnstest

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// errGoexit reports an fn that ended its goroutine (t.FailNow, runtime.Goexit).
var errGoexit = errors.New("netnstest: Do: fn called runtime.Goexit (t.FailNow?)")

// Do runs fn on an OS thread switched into namespace ns and returns its
// error. Sockets fn opens belong to ns for their whole life and may be used
// from any goroutine afterwards; processes it starts with os/exec are in ns
// too. Goroutines fn starts are NOT in ns. fn must not call t.FailNow.
func (tp *Topology) Do(ns string, fn func() error) error {
	return Do(ns, fn)
}

// Do is Topology.Do for any named namespace (/run/netns/ns).
func Do(ns string, fn func() error) error {
	res := make(chan error, 1)
	go doInNamespace(ns, fn, res)
	return <-res
}

// doInNamespace runs on its own goroutine so that a thread which cannot be
// switched back stays locked and dies with the goroutine instead of
// returning to the scheduler in the wrong namespace.
func doInNamespace(ns string, fn func() error, res chan<- error) {
	sent := false
	defer func() {
		if !sent {
			res <- errGoexit
		}
	}()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		sent = true
		res <- fmt.Errorf("netnstest: open own namespace: %w", err)
		return
	}
	defer unix.Close(orig)
	err = runIn(ns, fn)
	if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
		// Stay locked: the runtime kills the thread when we return.
		err = errors.Join(err, fmt.Errorf("netnstest: restore namespace: %w", rerr))
	} else {
		runtime.UnlockOSThread()
	}
	sent = true
	res <- err
}

// runIn switches the locked thread to ns and runs fn there.
func runIn(ns string, fn func() error) error {
	fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netnstest: open namespace %s: %w", ns, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netnstest: enter namespace %s: %w", ns, err)
	}
	return fn()
}
