package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestRelay sends small writes with pauses (the buffered phase), then
// bulk past spliceAfter (the splice phase), then EOF: every byte arrives in
// order and is counted.
func TestRelay(t *testing.T) {
	in, src := tcpPair(t)  // test writes in, relay reads src
	dst, out := tcpPair(t) // relay writes dst, test reads out
	want := make([]byte, 3*spliceAfter+12345)
	rand.Read(want)
	var count atomic.Int64
	errc := make(chan error, 1)
	go func() { errc <- relay(dst, src, &count) }()
	go func() {
		for i, p := 0, want; len(p) > 0; i++ {
			n := min(len(p), 1+i*i*97)
			in.Write(p[:n])
			p = p[n:]
			if i < 5 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		in.CloseWrite()
	}()
	out.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hang guard, not a timing assertion
	got := make([]byte, len(want))
	if _, err := io.ReadFull(out, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("relay: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("relayed bytes differ")
	}
	if count.Load() != int64(len(want)) {
		t.Errorf("count %d, want %d", count.Load(), len(want))
	}
}

// TestRelayUnblocksOnClose: closing the source, as kill does, ends a relay
// parked on an idle connection.
func TestRelayUnblocksOnClose(t *testing.T) {
	_, src := tcpPair(t)
	dst, _ := tcpPair(t)
	var count atomic.Int64
	errc := make(chan error, 1)
	go func() { errc <- relay(dst, src, &count) }()
	time.Sleep(20 * time.Millisecond)
	src.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("relay on a closed source returned no error")
		}
	case <-time.After(10 * time.Second): // a hang guard
		t.Fatal("relay still blocked after its source was closed")
	}
}
