package proxy

import (
	"context"
	"io"
	"net"
	"net/netip"
)

// forward dials target, replays the peeked bytes and splices both
// directions until both sides are done.
func (s *Server) forward(ctx context.Context, f *flow, target netip.AddrPort, peeked []byte) {
	remote, err := s.dial(ctx, f, target)
	if err != nil {
		s.refuse(f, f.decision, err)
		return
	}
	defer remote.Close()
	defer f.client.Close()
	if len(peeked) > 0 {
		n, err := remote.Write(peeked)
		f.up.Add(int64(n))
		if err != nil {
			s.logFlow(f, f.decision, err)
			return
		}
	}
	done := make(chan struct{})
	go proxyDown(f, remote, done)
	err = proxyUp(f, remote)
	<-done
	s.logFlow(f, f.decision, err)
}

// proxyUp copies sandbox → upstream. Between two *net.TCPConn io.Copy uses
// splice(2): the bytes never enter user space. Byte counts are therefore
// known when a direction ends, not while it runs.
func proxyUp(f *flow, remote *net.TCPConn) error {
	n, err := io.Copy(remote, f.client)
	f.up.Add(n)
	if err != nil {
		f.kill()
		return err
	}
	remote.CloseWrite()
	return nil
}

// proxyDown copies upstream → sandbox and closes done.
func proxyDown(f *flow, remote *net.TCPConn, done chan<- struct{}) {
	defer close(done)
	n, err := io.Copy(f.client, remote)
	f.down.Add(n)
	if err != nil {
		f.kill()
		return
	}
	f.client.CloseWrite()
}
