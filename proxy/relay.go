package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Relay tuning. A flow starts out copied through a shared buffer that is
// taken only for the duration of one read(2) and write(2): an idle flow
// holds no buffer, no pipe and a shallow goroutine stack. Once a direction
// has carried spliceAfter bytes it is a bulk transfer, and the rest goes
// through splice(2) (io.Copy between two *net.TCPConn), which keeps the
// bytes in the kernel but holds a pipe (two descriptors) per direction for
// the flow's lifetime. Handshakes and small request/response exchanges
// never pay for the pipes.
const (
	relayBufSize = 32 << 10
	spliceAfter  = 256 << 10
)

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// relay copies src → dst until src's EOF or an error, adding every byte
// written to count as it goes.
func relay(dst, src *net.TCPConn, count *atomic.Int64) error {
	rc, err := src.SyscallConn()
	if err != nil {
		return err
	}
	for count.Load() < spliceAfter {
		done, err := relayOnce(dst, rc, count)
		if done || err != nil {
			return err
		}
	}
	n, err := io.Copy(dst, src)
	count.Add(n)
	return err
}

// relayOnce waits until src is readable, then moves what one read returns
// to dst. done reports src's EOF. The buffer is taken only once data is
// there, and given back before relayOnce returns.
//
// The callback must read before it may park: RawRead resets the poller's
// readiness on entry, so parking first could miss data that arrived since
// the last read (it costs one read(2) that returns EAGAIN per wait).
func relayOnce(dst *net.TCPConn, src syscall.RawConn, count *atomic.Int64) (done bool, err error) {
	var bp *[]byte
	var n int
	var rerr error
	// The callback runs at once and again each time src polls readable;
	// returning false parks the goroutine until then.
	err = src.Read(func(fd uintptr) bool {
		bp = relayBufs.Get().(*[]byte)
		for {
			n, rerr = unix.Read(int(fd), *bp)
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			relayBufs.Put(bp)
			bp = nil
			return false
		}
		return true
	})
	if bp != nil {
		defer relayBufs.Put(bp)
	}
	switch {
	case err != nil:
		return false, err
	case rerr != nil:
		return false, os.NewSyscallError("read", rerr)
	case n == 0:
		return true, nil
	}
	w, err := dst.Write((*bp)[:n])
	count.Add(int64(w))
	return false, err
}
