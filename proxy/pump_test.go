package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pumpRig is one flow in a pump: the test speaks as the sandbox on
// sandbox and as the upstream on upstream; the pump relays between the
// two sockets in the middle.
type pumpRig struct {
	sandbox, upstream *net.TCPConn
	client, remote    *net.TCPConn // the pump's sockets
	f                 *flow
	mu                sync.Mutex
	ends              []error
	done              chan struct{} // closed when both directions ended
}

// newPumpRig builds the rig; before, if set, runs before the flow enters
// the pump.
func newPumpRig(t *testing.T, before func(r *pumpRig)) *pumpRig {
	t.Helper()
	p, err := newPump()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return newPumpRigIn(t, p, before)
}

// newPumpRigOn is a pumpRig in the pump p, which others share.
func newPumpRigOn(t *testing.T, p *pump) *pumpRig { return newPumpRigIn(t, p, nil) }

func newPumpRigIn(t *testing.T, p *pump, before func(r *pumpRig)) *pumpRig {
	t.Helper()
	sandbox, client := tcpPair(t)
	remote, upstream := tcpPair(t)
	r := &pumpRig{sandbox: sandbox, upstream: upstream, client: client, remote: remote,
		f: &flow{client: client, remote: remote}, done: make(chan struct{})}
	if before != nil {
		before(r)
	}
	end := func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.ends = append(r.ends, err)
		if len(r.ends) == 2 {
			client.Close()
			remote.Close()
			close(r.done)
		}
	}
	if err := p.add(r.f, remote, end); err != nil {
		t.Fatal(err)
	}
	return r
}

// wait returns the two directions' errors once both ended.
func (r *pumpRig) wait(t *testing.T) []error {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second): // a hang guard
		t.Fatal("the flow did not end")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ends
}

// readAll reads c to EOF, with a hang guard.
func readAll(t *testing.T, c *net.TCPConn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

// TestPumpExchange: a request, a reply, half-closes each way in turn;
// every byte arrives, counted, and the flow ends cleanly.
func TestPumpExchange(t *testing.T) {
	r := newPumpRig(t, nil)
	r.sandbox.Write([]byte("PING"))
	buf := make([]byte, 4)
	r.upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r.upstream, buf); err != nil || string(buf) != "PING" {
		t.Fatalf("upstream got %q, %v", buf, err)
	}
	r.sandbox.CloseWrite()
	if b := readAll(t, r.upstream); len(b) != 0 { // the half-close arrives as EOF
		t.Fatalf("upstream got %q after the half-close", b)
	}
	r.upstream.Write([]byte("PONG, after your EOF"))
	r.upstream.CloseWrite()
	if b := readAll(t, r.sandbox); string(b) != "PONG, after your EOF" {
		t.Fatalf("sandbox got %q", b)
	}
	for _, err := range r.wait(t) {
		if err != nil {
			t.Errorf("direction ended with %v", err)
		}
	}
	if r.f.up.Load() != 4 || r.f.down.Load() != 20 {
		t.Errorf("counted up %d down %d, want 4 and 20", r.f.up.Load(), r.f.down.Load())
	}
}

// TestPumpDataWithFIN: bytes and the FIN arriving together (a server that
// answers and closes at once) are relayed, then the EOF: a short read
// must not be taken for a drained socket once the peer has shut down. In
// odd rounds they are there before the flow enters the pump.
func TestPumpDataWithFIN(t *testing.T) {
	for i := range 50 {
		msg := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i*37)
		send := func(r *pumpRig) {
			r.upstream.Write(msg)
			r.upstream.Close()
		}
		var r *pumpRig
		if i%2 == 1 {
			r = newPumpRig(t, func(r *pumpRig) { send(r); time.Sleep(5 * time.Millisecond) })
		} else {
			r = newPumpRig(t, nil)
			send(r)
		}
		if b := readAll(t, r.sandbox); !bytes.Equal(b, msg) {
			t.Fatalf("round %d: sandbox got %d bytes, want %d", i, len(b), len(msg))
		}
		r.sandbox.Close()
		r.wait(t)
	}
}

// TestPumpBackpressure: a destination that does not read fills up; the
// pump keeps what it could not write and delivers it, in order, once the
// destination reads again.
func TestPumpBackpressure(t *testing.T) {
	r := newPumpRig(t, func(r *pumpRig) {
		r.remote.SetWriteBuffer(4096)
	})
	r.upstream.SetReadBuffer(4096)
	want := make([]byte, spliceAfter-1) // all of it through the pump
	rand.Read(want)
	go func() {
		r.sandbox.Write(want)
		r.sandbox.CloseWrite()
	}()
	time.Sleep(100 * time.Millisecond) // the sandbox writes; nobody reads
	if got := readAll(t, r.upstream); !bytes.Equal(got, want) {
		t.Fatalf("upstream got %d bytes, want %d, or in another order", len(got), len(want))
	}
	r.upstream.Close()
	r.wait(t)
	if r.f.up.Load() != int64(len(want)) {
		t.Errorf("counted %d, want %d", r.f.up.Load(), len(want))
	}
}

// TestPumpHandsBulkOn: past spliceAfter a flow leaves the pump for a
// goroutine per direction (splice), mid-stream, without losing a byte;
// the other direction goes on working.
func TestPumpHandsBulkOn(t *testing.T) {
	r := newPumpRig(t, nil)
	want := make([]byte, 3*spliceAfter+777)
	rand.Read(want)
	go func() {
		for p := want; len(p) > 0; {
			n := min(len(p), 10000)
			r.upstream.Write(p[:n])
			p = p[n:]
		}
	}()
	r.sandbox.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r.sandbox, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("sandbox read %v, or the bytes differ", err)
	}
	r.sandbox.Write([]byte("thanks"))
	r.sandbox.CloseWrite()
	buf := make([]byte, 6)
	r.upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r.upstream, buf); err != nil || string(buf) != "thanks" {
		t.Fatalf("upstream got %q, %v", buf, err)
	}
	r.upstream.CloseWrite()
	for _, err := range r.wait(t) {
		if err != nil {
			t.Errorf("direction ended with %v", err)
		}
	}
	if r.f.down.Load() != int64(len(want)) || r.f.up.Load() != 6 {
		t.Errorf("counted down %d up %d", r.f.down.Load(), r.f.up.Load())
	}
}

// TestPumpKill: kill (a cut, the idle sweep) ends an idle pumped flow at
// once: both directions end with an error and both peers see a reset.
func TestPumpKill(t *testing.T) {
	r := newPumpRig(t, nil)
	time.Sleep(20 * time.Millisecond) // idle in the pump
	r.f.kill()
	ends := r.wait(t)
	for _, err := range ends {
		if err == nil {
			t.Error("a killed direction ended without an error")
		}
	}
	r.sandbox.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.sandbox.Read(make([]byte, 1)); !errors.Is(err, unix.ECONNRESET) {
		t.Errorf("sandbox read after the kill: %v, want a reset", err)
	}
}

// TestPumpPeerReset: a reset from one peer kills the flow: the other
// peer is reset too, and the cause is the error the flow ends with.
func TestPumpPeerReset(t *testing.T) {
	r := newPumpRig(t, nil)
	r.upstream.SetLinger(0)
	r.upstream.Close()
	ends := r.wait(t)
	if !errors.Is(ends[0], unix.ECONNRESET) {
		t.Errorf("ended with %v, want the upstream's reset first", ends)
	}
	r.sandbox.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.sandbox.Read(make([]byte, 1)); !errors.Is(err, unix.ECONNRESET) {
		t.Errorf("sandbox read: %v, want a reset", err)
	}
}

// TestPumpIdleFlowsHoldNoGoroutine: flows idle in a pump add no
// goroutine.
func TestPumpIdleFlowsHoldNoGoroutine(t *testing.T) {
	p, err := newPump()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	base := runtime.NumGoroutine()
	for range 50 {
		_, client := tcpPair(t)
		remote, _ := tcpPair(t)
		if err := p.add(&flow{client: client, remote: remote}, remote, func(error) {}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines with 50 idle flows, %d before", n, base)
	}
}

// readN reads from c until it has n bytes or d passes.
func readN(c net.Conn, n int, d time.Duration) []byte {
	c.SetReadDeadline(time.Now().Add(d))
	got := make([]byte, n)
	k, _ := io.ReadFull(c, got)
	return got[:k]
}

// sendUrgent sends b as TCP urgent data.
func sendUrgent(t *testing.T, c *net.TCPConn, b []byte) {
	t.Helper()
	rc, _ := c.SyscallConn()
	var err error
	rc.Control(func(fd uintptr) { err = unix.Sendto(int(fd), b, unix.MSG_OOB, nil) })
	if err != nil {
		t.Fatal(err)
	}
}

// TestPumpUrgentData: TCP's read stops short at the urgent mark with
// bytes still queued; the pump must read on, not take the short read for
// a drained socket, whether the urgent byte was queued before the flow
// entered the pump or came later. (The urgent byte itself is out of
// band: not relayed, as before.)
func TestPumpUrgentData(t *testing.T) {
	r := newPumpRig(t, func(r *pumpRig) {
		r.sandbox.Write([]byte("AAAA"))
		sendUrgent(t, r.sandbox, []byte("B"))
		r.sandbox.Write([]byte("CCCC"))
		time.Sleep(20 * time.Millisecond) // all of it queued before the pump reads
	})
	if got := readN(r.upstream, 8, 5*time.Second); string(got) != "AAAACCCC" {
		t.Fatalf("queued before: upstream got %q, want AAAACCCC", got)
	}
	for i := range 20 { // later, against a pump that has seen short reads drain the socket
		r.sandbox.Write([]byte("DDDD"))
		time.Sleep(time.Millisecond)
		sendUrgent(t, r.sandbox, []byte("E"))
		r.sandbox.Write([]byte("FFFF"))
		if got := readN(r.upstream, 8, 5*time.Second); string(got) != "DDDDFFFF" {
			t.Fatalf("round %d: upstream got %q, want DDDDFFFF", i, got)
		}
	}
}

// TestPumpUnixClientWithDescriptors: an explicit proxy's client on a unix
// socket sends a message carrying a descriptor (SCM_RIGHTS), which ends a
// read early with bytes queued behind it: they are relayed too.
func TestPumpUnixClientWithDescriptors(t *testing.T) {
	p, err := newPump()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sandbox, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sandbox.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	remote, upstream := tcpPair(t)
	rights := unix.UnixRights(int(os.Stdin.Fd()))
	if _, _, err := sandbox.(*net.UnixConn).WriteMsgUnix([]byte("AAAA"), rights, nil); err != nil {
		t.Fatal(err)
	}
	sandbox.Write([]byte("CCCC"))
	time.Sleep(20 * time.Millisecond)
	if err := p.add(&flow{client: accepted.(*net.UnixConn), remote: remote}, remote, func(error) {}); err != nil {
		t.Fatal(err)
	}
	if got := readN(upstream, 8, 5*time.Second); string(got) != "AAAACCCC" {
		t.Errorf("upstream got %q, want AAAACCCC", got)
	}
}

// TestPumpFloodDoesNotStarve: flows of one pump that never stop sending
// (a flooding sandbox) leave another flow of the same pump its
// exchanges: each event moves a bounded amount, and bulk flows leave for
// goroutines of their own.
func TestPumpFloodDoesNotStarve(t *testing.T) {
	p, err := newPump()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	stop := make(chan struct{})
	defer close(stop)
	for range 8 {
		sandbox, client := tcpPair(t)
		remote, upstream := tcpPair(t)
		if err := p.add(&flow{client: client, remote: remote}, remote, func(error) {}); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, upstream)
		go func() {
			msg := bytes.Repeat([]byte("x"), 100)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := sandbox.Write(msg); err != nil {
					return
				}
			}
		}()
	}
	victim := newPumpRigOn(t, p)
	buf := make([]byte, 4)
	for i := range 10 {
		victim.sandbox.Write([]byte("PING"))
		victim.upstream.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard
		if _, err := io.ReadFull(victim.upstream, buf); err != nil {
			t.Fatalf("exchange %d: upstream read: %v", i, err)
		}
		victim.upstream.Write([]byte("PONG"))
		victim.sandbox.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(victim.sandbox, buf); err != nil || string(buf) != "PONG" {
			t.Fatalf("exchange %d: sandbox read %q, %v", i, buf, err)
		}
	}
}
