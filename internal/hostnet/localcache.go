package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// maxLocalAnswers bounds a LocalCache; a full one starts over.
const maxLocalAnswers = 16384

// LocalCache is IsLocal with the kernel's answers kept until the host's
// links, addresses, routes or routing rules change: rtnetlink announces
// each such change, and any announcement drops every kept answer. A
// change therefore counts once egressd has read its announcement
// (microseconds, a scheduling delay under load), not for as long as an
// answer would otherwise be kept. A failed lookup, counted as local, is
// not kept; nor is anything once the announcements stop (the socket
// failed or ctx ended): every call then asks the kernel, as IsLocal does.
type LocalCache struct {
	mu      sync.Mutex
	gen     uint64 // bumped by each announcement
	watched bool   // announcements arrive
	answers map[netip.Addr]bool
}

// rtnetlink groups whose messages can change a route lookup's answer.
const localGroups = unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV4_RULE |
	unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV6_ROUTE

// WatchLocal returns a LocalCache for the calling thread's network
// namespace, watched until ctx ends.
func WatchLocal(ctx context.Context) (*LocalCache, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("hostnet: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: localGroups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hostnet: subscribe to address and route changes: %w", err)
	}
	// IPv6 rules have a group number past the 32 bits of a bind mask.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.RTNLGRP_IPV6_RULE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hostnet: subscribe to IPv6 rule changes: %w", err)
	}
	f := os.NewFile(uintptr(fd), "rtnetlink") // in the runtime's poller: Close wakes a blocked read
	c := &LocalCache{watched: true, answers: map[netip.Addr]bool{}}
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go c.watch(f)
	return c, nil
}

// watch drops the kept answers on every announcement until f fails.
func (c *LocalCache) watch(f *os.File) {
	defer c.stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	for {
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			_, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		switch {
		case err != nil:
			return // closed
		case rerr == nil, errors.Is(rerr, unix.ENOBUFS), errors.Is(rerr, unix.EINTR):
			// An announcement, or some were lost for want of room.
			c.forget()
		default:
			return
		}
	}
}

func (c *LocalCache) forget() {
	c.mu.Lock()
	c.gen++
	clear(c.answers)
	c.mu.Unlock()
}

func (c *LocalCache) stop() {
	c.mu.Lock()
	c.watched = false
	c.answers = nil
	c.mu.Unlock()
}

// IsLocal is hostnet.IsLocal, answered from the cache when it can be.
// Lookups it has to make run in the calling thread's namespace, which must
// be the one WatchLocal watched.
func (c *LocalCache) IsLocal(a netip.Addr) bool {
	a = a.Unmap()
	c.mu.Lock()
	local, hit := c.answers[a]
	gen, watched := c.gen, c.watched
	c.mu.Unlock()
	if hit {
		return local
	}
	local, final := isLocal(a)
	if !final || !watched {
		return local
	}
	c.mu.Lock()
	// Kept only if nothing changed since before the lookup.
	if c.gen == gen && c.watched {
		if len(c.answers) >= maxLocalAnswers {
			clear(c.answers)
		}
		c.answers[a] = local
	}
	c.mu.Unlock()
	return local
}
