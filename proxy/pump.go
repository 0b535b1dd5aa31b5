package proxy

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// A pump relays the bytes of many admitted flows from one epoll instance
// and one goroutine, so that a flow that is idle or short holds no
// goroutine, no stack and no buffer: only its two sockets and a pumped
// record. A flow stays in the pump until one of its directions has carried
// spliceAfter bytes (the check comes before each read, so at most one
// buffer more); it is then a bulk transfer, handed on to a goroutine per
// direction (relay: splice(2) from there).
//
// The pump's epoll fd is itself in the runtime's poller: the loop parks
// like any goroutine waiting on a socket, and no thread blocks in
// epoll_wait. Sockets are registered edge-triggered. A TCP read shorter
// than the buffer counts as having drained the socket, saving the read
// that would return EAGAIN, unless the event that woke it said otherwise:
// TCP stops a read short only at the urgent mark (EPOLLPRI) or a FIN
// (EPOLLRDHUP), errors aside (EPOLLERR, EPOLLHUP), and each of those, or
// more bytes, arriving after the loop's epoll_wait wakes the socket again.
// Other sockets (an explicit proxy's unix client: a read stops after a
// message carrying descriptors, with no event to say so) are read until
// EAGAIN. Work that may block (the log line, closing the sockets) runs off
// the loop.
type pump struct {
	ep     *os.File
	rc     syscall.RawConn
	mu     sync.Mutex
	flows  map[uint64]*pumped
	nextID uint64
	buf    []byte // the loop's, for every read it makes
	done   chan struct{}

	// The loop's I/O through RawConn: callbacks built once (a closure
	// per call would allocate), with their operands and results.
	waitFn, readFn, writeFn func(fd uintptr) bool
	events                  []unix.EpollEvent
	ioBuf                   []byte
	ioN                     int
	ioErr                   error

	// epoll_ctl from any goroutine, serialised: the callbacks, built
	// once, and their operands.
	ctlMu                 sync.Mutex
	ctlSockFn, ctlEpollFn func(fd uintptr)
	ctlOp, ctlFd          int
	ctlEv                 unix.EpollEvent
	ctlErr                error
}

func newPump() (*pump, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("proxy: epoll: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("proxy: epoll: %w", err)
	}
	ep := os.NewFile(uintptr(fd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("proxy: epoll: %w", err)
	}
	p := &pump{ep: ep, rc: rc, flows: map[uint64]*pumped{}, buf: make([]byte, relayBufSize), done: make(chan struct{}),
		events: make([]unix.EpollEvent, 128)}
	p.waitFn, p.readFn, p.writeFn = p.wait, p.read, p.write
	p.ctlSockFn, p.ctlEpollFn = p.ctlSock, p.ctlEpoll
	go p.loop()
	return p, nil
}

// close stops the loop; flows still in the pump are left as they are
// (Serve closes the pumps after its flows ended).
func (p *pump) close() {
	p.ep.Close()
	<-p.done
}

func (p *pump) loop() {
	defer close(p.done)
	for {
		if err := p.rc.Read(p.waitFn); err != nil || p.ioErr != nil {
			return // closed
		}
		for _, ev := range p.events[:p.ioN] {
			p.event(ev)
		}
	}
}

// The loop's syscalls go through x/sys/unix, which tells the scheduler:
// a write on a non-blocking socket can still sleep in the kernel (on the
// socket's lock, in reclaim, under a cgroup's memory.high), and a raw
// syscall would then hold its P and stall a stop-the-world.

// wait is the epoll fd's RawConn callback: the ready events, or park.
func (p *pump) wait(fd uintptr) bool {
	p.ioN, p.ioErr = unix.EpollWait(int(fd), p.events, 0)
	if p.ioErr == unix.EINTR {
		p.ioN, p.ioErr = 0, nil
		return true // try again at once
	}
	return p.ioN > 0 || p.ioErr != nil // none: park until the epoll fd polls readable
}

func (p *pump) read(fd uintptr) bool {
	for {
		p.ioN, p.ioErr = unix.Read(int(fd), p.ioBuf)
		if p.ioErr != unix.EINTR {
			return true
		}
	}
}

func (p *pump) write(fd uintptr) bool {
	for {
		p.ioN, p.ioErr = unix.Write(int(fd), p.ioBuf)
		if p.ioErr != unix.EINTR {
			return true
		}
	}
}

// rawRead reads once from rc into b without waiting; rawWrite writes
// once. Only the loop calls them: they share the loop's operands.
func (p *pump) rawRead(rc syscall.RawConn, b []byte) (int, error) {
	p.ioBuf = b
	err := rc.Read(p.readFn)
	return p.ioResult(err)
}

func (p *pump) rawWrite(rc syscall.RawConn, b []byte) (int, error) {
	p.ioBuf = b
	err := rc.Write(p.writeFn)
	return p.ioResult(err)
}

func (p *pump) ioResult(err error) (int, error) {
	p.ioBuf = nil
	switch {
	case err != nil:
		return 0, err
	case p.ioErr != nil:
		return 0, p.ioErr
	}
	return p.ioN, nil
}

// Registration keys: a flow's id and which of its sockets, packed into
// the 64 bits of epoll_event.data.
const (
	sideClient = 0 // the sandbox's socket: the source of direction up
	sideRemote = 1 // the upstream socket: the source of direction down
)

func eventKey(id uint64, side int) unix.EpollEvent {
	k := id<<1 | uint64(side)
	return unix.EpollEvent{Fd: int32(uint32(k)), Pad: int32(uint32(k >> 32))}
}

func (p *pump) event(ev unix.EpollEvent) {
	k := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
	p.mu.Lock()
	pf := p.flows[k>>1]
	p.mu.Unlock()
	if pf != nil {
		pf.event(int(k&1), ev.Events)
	}
}

// pumped is a flow in a pump. Its directions are stepped by the loop and
// ended by whoever gets there first: the loop (EOF, an error), kill (a
// cut, the idle sweep, shutdown) or handOn.
type pumped struct {
	p  *pump
	id uint64
	f  *flow
	// end is called once per direction when it ends, with its error
	// (forward's finish: the last one closes the flow).
	end func(err error)

	mu      sync.Mutex
	dirs    [2]direction // up (client → remote), down (remote → client); index = source side
	removed bool         // out of the pump (ended or handed on)
	cause   error        // the failure that killed the flow, if the loop met one
}

type dirState uint8

const (
	pumping dirState = iota
	ended
	handed // to a goroutine of its own
)

// direction is one way of a pumped flow.
type direction struct {
	src, dst     conn
	srcRC, dstRC syscall.RawConn
	count        *atomic.Int64
	state        dirState
	readable     bool    // the source may hold bytes not read yet
	shortDrains  bool    // a short read drains src: TCP, and the last event reported nothing but bytes
	pending      *[]byte // pooled buffer with bytes dst has not taken yet
	pend         []byte  // those bytes, within *pending
}

// add puts f, its upstream connected as remote, into the pump. end is
// called once per direction as it ends.
func (p *pump) add(f *flow, remote conn, end func(error)) error {
	pf := &pumped{p: p, f: f, end: end}
	// Not readable until an event says so: registering a socket queues
	// an event whose mask is the socket's state as of the loop's
	// epoll_wait, bytes or FIN that arrived before included.
	pf.dirs[sideClient] = direction{src: f.client, dst: remote, count: &f.up}
	pf.dirs[sideRemote] = direction{src: remote, dst: f.client, count: &f.down}
	crc, err := f.client.SyscallConn()
	if err != nil {
		return err
	}
	rrc, err := remote.SyscallConn()
	if err != nil {
		return err
	}
	pf.dirs[sideClient].srcRC, pf.dirs[sideClient].dstRC = crc, rrc
	pf.dirs[sideRemote].srcRC, pf.dirs[sideRemote].dstRC = rrc, crc
	p.mu.Lock()
	p.nextID++
	pf.id = p.nextID
	p.flows[pf.id] = pf
	p.mu.Unlock()
	if !f.setPumped(pf) {
		p.forget(pf)
		return errCut // killed meanwhile
	}
	// Both sockets are registered before the loop may step the flow (it
	// takes pf.mu), so a hand-off never misses one. They poll writable at
	// once, so each registration queues an event.
	pf.mu.Lock()
	for side := range pf.dirs {
		if err = pf.epollCtl(unix.EPOLL_CTL_ADD, side); err != nil {
			break
		}
	}
	pf.mu.Unlock()
	if err != nil {
		f.kill() // ends both directions through pf
	}
	return nil
}

// epollCtl adds side's socket to the pump's epoll set, or deletes it,
// holding both descriptors, so that neither can be closed (and its number
// reused) meanwhile.
func (pf *pumped) epollCtl(op, side int) error {
	p := pf.p
	p.ctlMu.Lock()
	defer p.ctlMu.Unlock()
	p.ctlOp, p.ctlErr = op, nil
	p.ctlEv = eventKey(pf.id, side)
	p.ctlEv.Events = unix.EPOLLIN | unix.EPOLLPRI | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	if err := pf.dirs[side].srcRC.Control(p.ctlSockFn); err != nil {
		return err
	}
	return p.ctlErr
}

func (p *pump) ctlSock(fd uintptr) {
	p.ctlFd = int(fd)
	if err := p.rc.Control(p.ctlEpollFn); err != nil {
		p.ctlErr = err
	}
}

func (p *pump) ctlEpoll(epfd uintptr) {
	p.ctlErr = unix.EpollCtl(int(epfd), p.ctlOp, p.ctlFd, &p.ctlEv)
}

func (p *pump) forget(pf *pumped) {
	p.mu.Lock()
	delete(p.flows, pf.id)
	p.mu.Unlock()
}

// event steps the directions a readiness change of side's socket
// concerns: the one it is the source of, and the one it is the
// destination of.
func (pf *pumped) event(side int, events uint32) {
	pf.mu.Lock()
	if pf.removed {
		pf.mu.Unlock()
		return
	}
	in := &pf.dirs[side]
	const more = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR | unix.EPOLLPRI // read on to EAGAIN or EOF
	if events&(unix.EPOLLIN|more) != 0 {
		_, tcp := in.src.(*net.TCPConn)
		in.readable, in.shortDrains = true, tcp && events&more == 0
	}
	var nEnded int
	var fail error
	for _, i := range [2]int{side, 1 - side} {
		if pf.dirs[i].state != pumping {
			continue
		}
		done, err := pf.step(i)
		if err != nil {
			fail = err
			break
		}
		if done {
			nEnded++
		}
	}
	switch {
	case fail != nil:
		pf.cause = fail // kill ends the rest with it
	case pf.bulk():
		pf.handOn()
	}
	pf.leaveIfDone()
	pf.mu.Unlock()
	if nEnded > 0 || fail != nil {
		// Ending a flow logs it and closes its sockets: not on the loop,
		// which a slow log sink would otherwise stall for every flow.
		go pf.finishOff(nEnded, fail != nil)
	}
}

// finishOff ends the directions the loop saw end, and kills the flow
// after a failure (which ends the rest with pf.cause).
func (pf *pumped) finishOff(ended int, failed bool) {
	for range ended {
		pf.end(nil)
	}
	if failed {
		pf.f.kill()
	}
}

// bulk reports whether a direction still pumped has carried spliceAfter
// bytes. Called with pf.mu held.
func (pf *pumped) bulk() bool {
	for i := range pf.dirs {
		if d := &pf.dirs[i]; d.state == pumping && d.count.Load() >= spliceAfter {
			return true
		}
	}
	return false
}

// handOn gives every direction still pumped a goroutine of its own, as
// forward does without a pump: it writes what dst had not taken, then
// relays on (splice(2) once past spliceAfter). The sockets leave the
// epoll instance, so the loop hears no more of them. Called with pf.mu
// held.
func (pf *pumped) handOn() {
	for i := range pf.dirs {
		d := &pf.dirs[i]
		if d.state != pumping {
			continue
		}
		d.state = handed
		go pf.relayOn(d, d.pend, d.pending)
		d.pend, d.pending = nil, nil
	}
	for side := range pf.dirs {
		pf.epollCtl(unix.EPOLL_CTL_DEL, side)
	}
}

// relayOn is a handed-on direction's goroutine: what dst had not taken
// first, then relayDirection.
func (pf *pumped) relayOn(d *direction, pend []byte, pending *[]byte) {
	if len(pend) > 0 {
		n, err := d.dst.Write(pend)
		d.count.Add(int64(n))
		if pending != nil {
			relayBufs.Put(pending)
		}
		if err != nil {
			pf.f.kill()
			pf.end(err)
			return
		}
	}
	pf.end(relayDirection(pf.f, d.dst, d.src, d.count))
}

// leaveIfDone takes pf out of the pump once no direction is pumped.
// Called with pf.mu held.
func (pf *pumped) leaveIfDone() {
	if pf.removed {
		return
	}
	for i := range pf.dirs {
		if pf.dirs[i].state == pumping {
			return
		}
	}
	pf.removed = true
	pf.p.forget(pf)
}

// endAll ends every direction still pumped: kill closed the sockets, and
// the loop will hear nothing of them any more. They end with the failure
// the loop met, if it met one.
func (pf *pumped) endAll() {
	pf.mu.Lock()
	err := pf.cause
	if err == nil {
		err = net.ErrClosed
	}
	var n int
	for i := range pf.dirs {
		if d := &pf.dirs[i]; d.state == pumping {
			d.state = ended
			d.releasePending()
			n++
		}
	}
	pf.leaveIfDone()
	pf.mu.Unlock()
	for range n {
		pf.end(err)
	}
}

// step moves what direction i can move now. done reports its EOF, passed
// on as a half-close; err a failure, which kills the flow.
func (pf *pumped) step(i int) (done bool, err error) {
	d := &pf.dirs[i]
	for {
		if len(d.pend) > 0 {
			blocked, err := d.flush(pf.p)
			if err != nil || blocked {
				return false, err // blocked: dst's EPOLLOUT steps us again
			}
			continue
		}
		if !d.readable || d.count.Load() >= spliceAfter {
			return false, nil
		}
		n, rerr := pf.p.rawRead(d.srcRC, pf.p.buf)
		switch {
		case rerr == unix.EAGAIN:
			d.readable = false
			return false, nil
		case rerr != nil:
			return false, os.NewSyscallError("read", rerr)
		case n == 0:
			d.state = ended
			d.dst.CloseWrite()
			return true, nil
		}
		if n < len(pf.p.buf) && d.shortDrains {
			d.readable = false // drained: what comes next wakes the socket
		}
		if err := d.write(pf.p, pf.p.buf[:n]); err != nil {
			return false, err
		}
	}
}

// write writes b to dst, keeping what dst does not take for flush.
func (d *direction) write(p *pump, b []byte) error {
	n, err := p.rawWrite(d.dstRC, b)
	d.count.Add(int64(n))
	if err != nil && err != unix.EAGAIN {
		return os.NewSyscallError("write", err)
	}
	if n == len(b) {
		return nil
	}
	d.pending = relayBufs.Get().(*[]byte)
	d.pend = (*d.pending)[:copy(*d.pending, b[n:])]
	return nil
}

// flush writes pending bytes; blocked reports that dst is full.
func (d *direction) flush(p *pump) (blocked bool, err error) {
	n, err := p.rawWrite(d.dstRC, d.pend)
	d.count.Add(int64(n))
	d.pend = d.pend[n:]
	if err == unix.EAGAIN {
		return true, nil
	}
	if len(d.pend) == 0 {
		d.releasePending()
	}
	if err != nil {
		return false, os.NewSyscallError("write", err)
	}
	return false, nil
}

func (d *direction) releasePending() {
	if d.pending != nil {
		relayBufs.Put(d.pending)
	}
	d.pending, d.pend = nil, nil
}
