package admin

import (
	"context"
	"net"
	"net/http"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// peer is who is on the other end of an admin connection, from the
// kernel (SO_PEERCRED): the log of every change says who made it.
type peer struct {
	pid      int32
	uid, gid uint32
}

type peerKey struct{}

// withPeer is http.Server.ConnContext: it reads the peer's credentials
// once per connection.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, peer{pid: cred.Pid, uid: cred.Uid, gid: cred.Gid})
}

// peerFields are the log fields naming the request's sender.
func peerFields(r *http.Request) []zap.Field {
	p, ok := r.Context().Value(peerKey{}).(peer)
	if !ok {
		return []zap.Field{zap.String("peer", r.RemoteAddr)}
	}
	return []zap.Field{zap.Int32("peer_pid", p.pid), zap.Uint32("peer_uid", p.uid), zap.Uint32("peer_gid", p.gid)}
}
