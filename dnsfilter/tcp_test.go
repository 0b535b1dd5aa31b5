package dnsfilter

import (
	"net"
	"testing"
)

// TestConnSetPerSource: one source address gets at most
// maxTCPConnsPerSource connections; another source still gets in.
func TestConnSetPerSource(t *testing.T) {
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
	for i := range maxTCPConnsPerSource {
		c := accept(net.IPv4(127, 0, 0, 1))
		if !set.add(c) {
			t.Fatalf("connection %d refused", i+1)
		}
		if first == nil {
			first = c
		}
	}
	if set.add(accept(net.IPv4(127, 0, 0, 1))) {
		t.Fatal("connection over the per-source limit accepted")
	}
	if !set.add(accept(net.IPv4(127, 0, 0, 2))) {
		t.Fatal("another source refused")
	}
	set.remove(first)
	if !set.add(accept(net.IPv4(127, 0, 0, 1))) {
		t.Fatal("a freed slot was not reusable")
	}
}
