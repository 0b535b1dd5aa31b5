package dnsfilter

import (
	"net"
	"testing"
)

// TestConnSetPerSandbox: one sandbox gets at most
// maxTCPConnsPerSandbox connections, whatever its source addresses; another
// sandbox still gets in.
func TestConnSetPerSandbox(t *testing.T) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func(from net.IP) *net.TCPConn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := ln.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	set := newConnSet()
	var first *net.TCPConn
	// One sandbox, many source addresses (a /120, say): one share.
	for i := range maxTCPConnsPerSandbox {
		c := accept(net.IPv4(127, 0, 0, byte(1+i%8)))
		if !set.add(c, "wide") {
			t.Fatalf("connection %d refused", i+1)
		}
		if first == nil {
			first = c
		}
	}
	if set.add(accept(net.IPv4(127, 0, 0, 9)), "wide") {
		t.Fatal("connection over the per-sandbox limit accepted from a new source address")
	}
	if !set.add(accept(net.IPv4(127, 0, 0, 10)), "other") {
		t.Fatal("another sandbox refused")
	}
	set.remove(first)
	if !set.add(accept(net.IPv4(127, 0, 0, 1)), "wide") {
		t.Fatal("a freed slot was not reusable")
	}
}
