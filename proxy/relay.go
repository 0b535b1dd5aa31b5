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

// Relay tuning. relay moves one direction on a goroutine of its own: a
// flow handed on by its pump (past spliceAfter), the plain-HTTP gate's
// upstream → sandbox copy, and every flow of a Server without pumps. It
// copies through a shared buffer taken only for the duration of one
// read(2) and write(2) until the direction has carried spliceAfter bytes;
// the rest goes through splice(2) (io.Copy between two *net.TCPConn),
// which keeps the bytes in the kernel but holds a pipe (two descriptors)
// per direction for the flow's lifetime.
const (
	relayBufSize = 32 << 10
	spliceAfter  = 256 << 10
	// spliceChunk is how much one splice call moves before the flow's
	// byte count is brought up to date (the idle sweep and /v1/connections
	// read it); net's splice takes a pipe for each call and returns it after.
	spliceChunk = 4 << 20
)

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// conn is one side of a relayed flow: a TCP connection, or (an explicit
// proxy's client) a unix socket connection.
type conn interface {
	net.Conn
	syscall.Conn
	CloseWrite() error
}

// relay copies src → dst until src's EOF or an error, adding every byte
// written to count as it goes.
func relay(dst, src conn, count *atomic.Int64) error {
	rc, err := src.SyscallConn()
	if err != nil {
		return err
	}
	r := &reader{}
	r.readFn = r.read // built once: a method value per call would allocate
	for count.Load() < spliceAfter {
		done, err := r.once(dst, rc, count)
		if done || err != nil {
			return err
		}
	}
	for {
		n, err := io.CopyN(dst, src, spliceChunk)
		count.Add(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// reader is one direction's read state, reused for every read.
type reader struct {
	readFn func(fd uintptr) bool
	bp     *[]byte // the pooled buffer, while it holds data
	n      int
	err    error
}

// read is the RawConn callback. It runs at once and again each time the
// socket polls readable; returning false parks the goroutine until then.
// It must read before it may park: RawRead resets the poller's readiness
// on entry, so parking first could miss data that arrived since the last
// read (the price is one read(2) returning EAGAIN per wait). The buffer is
// taken only once data is there.
func (r *reader) read(fd uintptr) bool {
	r.bp = relayBufs.Get().(*[]byte)
	for {
		r.n, r.err = unix.Read(int(fd), *r.bp)
		if r.err != unix.EINTR {
			break
		}
	}
	if r.err == unix.EAGAIN {
		relayBufs.Put(r.bp)
		r.bp = nil
		return false
	}
	return true
}

// once waits until src is readable, then moves what one read returns to
// dst. done reports src's EOF. The buffer goes back to the pool before
// once returns.
func (r *reader) once(dst conn, src syscall.RawConn, count *atomic.Int64) (done bool, err error) {
	err = src.Read(r.readFn)
	bp := r.bp
	r.bp = nil
	if bp != nil {
		defer relayBufs.Put(bp)
	}
	switch {
	case err != nil:
		return false, err
	case r.err != nil:
		return false, os.NewSyscallError("read", r.err)
	case r.n == 0:
		return true, nil
	}
	w, err := dst.Write((*bp)[:r.n])
	count.Add(int64(w))
	return false, err
}
