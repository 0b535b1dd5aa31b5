package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/egressd/egressd/internal/budget"
)

// TCP limits: an idle connection is closed after tcpIdle (RFC 7766 asks
// servers to keep idle timeouts short), one connection answers at most
// maxTCPQueries queries, and at most maxTCPConns are open at once.
const (
	tcpIdle       = 10 * time.Second
	tcpWrite      = 5 * time.Second
	maxTCPQueries = 1000
	maxTCPConns   = 1024
	// maxTCPConnsPerSandbox keeps one sandbox's idle connections from
	// taking every slot of maxTCPConns from the others, whatever number
	// of source addresses it has.
	maxTCPConnsPerSandbox = 64
)

// serveTCP accepts connections on ln until it is closed. A TPROXY'd
// connection's local address is already the address the client asked, so
// replies need nothing special.
func (r *Resolver) serveTCP(ctx context.Context, ln *net.TCPListener, conns *connSet, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			r.log.Warn("dns tcp accept failed", zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !conns.add(c, r.sandboxOf(addrPortOf(c.RemoteAddr()).Addr())) {
			r.stats.dropped.Add(1)
			c.Close()
			continue
		}
		wg.Add(1)
		go r.handleTCP(ctx, c, conns, wg)
	}
}

// handleTCP answers the queries of one connection in order. A query that
// gets no answer closes the connection.
func (r *Resolver) handleTCP(ctx context.Context, c *net.TCPConn, conns *connSet, wg *sync.WaitGroup) {
	defer wg.Done()
	defer conns.remove(c)
	src := addrPortOf(c.RemoteAddr()).Addr()
	var hdr [2]byte
	for range maxTCPQueries {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		out := r.answerWire(ctx, src, msg, true)
		if out == nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(tcpWrite))
		bufs := net.Buffers{binary.BigEndian.AppendUint16(nil, uint16(len(out))), out}
		if _, err := bufs.WriteTo(c); err != nil {
			return
		}
	}
}

// connSet tracks open TCP connections, by sandbox, so that the limits
// hold and shutdown can close them.
type connSet struct {
	slots *budget.Budget

	mu    sync.Mutex
	conns map[*net.TCPConn]string // → sandbox
	done  bool
}

func newConnSet() *connSet {
	return &connSet{slots: budget.New(maxTCPConnsPerSandbox, maxTCPConns), conns: make(map[*net.TCPConn]string)}
}

func (s *connSet) add(c *net.TCPConn, sandbox string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || !s.slots.Take(sandbox, 1) {
		return false
	}
	s.conns[c] = sandbox
	return true
}

func (s *connSet) remove(c *net.TCPConn) {
	s.mu.Lock()
	if sandbox, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.slots.Give(sandbox, 1)
	}
	s.mu.Unlock()
	c.Close()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	for c := range s.conns {
		c.Close()
	}
}
