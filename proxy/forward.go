package proxy

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/egressd/egressd/policy"
)

// forward dials target, replays the peeked bytes and hands the flow to a
// pump (or, with none, to a goroutine per direction), then returns: the
// handler's goroutine, whose stack grew while it peeked and dialled,
// ends, and an idle flow keeps no goroutine at all. The last direction to
// finish closes both sides and ends the flow.
func (s *Server) forward(ctx context.Context, f *flow, target netip.AddrPort, peeked []byte) {
	remote, err := s.dial(ctx, f, target)
	if err == nil && f.postgres {
		if err = startPostgresTLS(remote, s.opts.DialTimeout); err != nil {
			remote.Close()
		}
	}
	if err != nil {
		f.mu.Lock()
		name := f.name
		f.mu.Unlock()
		d := policy.Decision{Reason: policy.ReasonDialFailed, Name: name, Addr: target.Addr()}
		if f.postgres { // the client is in its TLS handshake: tell it so
			s.refuseWithAlert(f, d, alertHandshakeFailure, err)
			return
		}
		s.refuse(f, d, err)
		return
	}
	var pending atomic.Int32
	pending.Store(2)
	var firstErr atomic.Pointer[error] // the cause; the other side's error follows from kill
	finish := func(err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
		if pending.Add(-1) > 0 {
			return
		}
		remote.Close()
		f.client.Close()
		err = nil
		if p := firstErr.Load(); p != nil {
			err = *p
		}
		s.endFlow(f, f.decision, err)
	}
	if len(peeked) > 0 {
		// Written here, while the peek budget still holds them.
		n, err := remote.Write(peeked)
		f.up.Add(int64(n))
		if err != nil {
			f.kill()
			finish(err)
			finish(err)
			return
		}
	}
	if p := s.pump(); p != nil {
		if err := p.add(f, remote, finish); err != nil {
			finish(err)
			finish(err)
		}
		return
	}
	go func() { finish(proxyDown(f, remote)) }()
	go func() { finish(proxyUp(f, remote)) }()
}

// proxyUp copies sandbox → upstream (relay: buffered while small, then
// splice(2)).
func proxyUp(f *flow, remote *net.TCPConn) error {
	return relayDirection(f, remote, f.client, &f.up)
}

// proxyDown copies upstream → sandbox.
func proxyDown(f *flow, remote *net.TCPConn) error {
	return relayDirection(f, f.client, remote, &f.down)
}

// relayDirection relays src → dst to src's EOF and passes the half-close
// on; an error kills f (both sides reset).
func relayDirection(f *flow, dst, src conn, count *atomic.Int64) error {
	if err := relay(dst, src, count); err != nil {
		f.kill()
		return err
	}
	dst.CloseWrite()
	return nil
}
